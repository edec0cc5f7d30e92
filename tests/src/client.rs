//! Talking to cartd through the `redis` crate (the client real users run, not ours): opening
//! RESP2 or RESP3 connections, sending commands given as lists of strings, and taking replies
//! apart (integers, strings, arrays, maps in either protocol).

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Value};

use crate::{Cartd, WAIT};

impl Cartd {
    /// A `redis` crate connection speaking RESP2, or RESP3 (`?protocol=resp3`: the crate sends
    /// `HELLO 3` on connect). Connecting and every reply may take up to [`WAIT`] (the crate's
    /// own default of 500 ms per reply is too little on a loaded test machine).
    pub async fn client(&self, resp3: bool) -> MultiplexedConnection {
        let query = if resp3 { "?protocol=resp3" } else { "" };
        let client = redis::Client::open(format!("redis://{}/{query}", self.addr()))
            .expect("a valid redis:// url");
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(WAIT))
            .set_response_timeout(Some(WAIT));
        tokio::time::timeout(
            WAIT,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .unwrap_or_else(|_| panic!("connect to cartd at {} in time", self.addr()))
        .unwrap_or_else(|error| panic!("connect to cartd at {}: {error}", self.addr()))
    }
}

/// Builds a `redis::Cmd` from `args` (the command name first).
fn build(args: &[&str]) -> redis::Cmd {
    let (name, rest) = args.split_first().expect("a command has a name");
    let mut command = redis::cmd(name);
    for arg in rest {
        command.arg(*arg);
    }
    command
}

/// Sends one command and returns the `redis` crate's own result: an error reply is an `Err`
/// (never `Ok(Value::ServerError)`), and so is a reply that takes longer than [`WAIT`].
pub async fn query(conn: &mut MultiplexedConnection, args: &[&str]) -> RedisResult<Value> {
    let reply = tokio::time::timeout(WAIT, build(args).query_async::<Value>(conn))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no reply to {args:?} within {WAIT:?}"),
            )
        })??;
    match reply {
        Value::ServerError(error) => Err(error.into()),
        value => Ok(value),
    }
}

/// Sends one command; `Err` holds the error reply as `CODE message` (e.g.
/// `NOCART no such cart`). Panics if no reply comes within [`WAIT`].
pub async fn cmd(conn: &mut MultiplexedConnection, args: &[&str]) -> Result<Value, String> {
    let reply = tokio::time::timeout(WAIT, build(args).query_async::<Value>(conn))
        .await
        .unwrap_or_else(|_| panic!("no reply to {args:?} within {WAIT:?}"));
    match reply {
        Ok(Value::ServerError(error)) => Err(format!(
            "{} {}",
            error.code(),
            error.details().unwrap_or_default()
        )),
        Ok(value) => Ok(value),
        Err(error) => Err(format!(
            "{} {}",
            error.code().unwrap_or("?"),
            error.detail().unwrap_or_default()
        )),
    }
}

/// Like [`cmd`] but the command must succeed.
pub async fn ok(conn: &mut MultiplexedConnection, args: &[&str]) -> Value {
    match cmd(conn, args).await {
        Ok(value) => value,
        Err(error) => panic!("{args:?} failed: {error}"),
    }
}

/// Like [`cmd`] but the command must fail; returns `CODE message`.
pub async fn fails(conn: &mut MultiplexedConnection, args: &[&str]) -> String {
    match cmd(conn, args).await {
        Ok(value) => panic!("{args:?} should have failed but replied {value:?}"),
        Err(error) => error,
    }
}

/// An integer reply.
pub fn int(value: &Value) -> i64 {
    match value {
        Value::Int(number) => *number,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// A simple-string or bulk-string reply as text (`+OK` is `"OK"`).
pub fn text(value: &Value) -> String {
    match value {
        Value::SimpleString(text) => text.clone(),
        Value::Okay => "OK".to_owned(),
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// The elements of an array reply.
pub fn array(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        other => panic!("expected an array, got {other:?}"),
    }
}

/// The pairs of a map reply: a RESP3 map, or a RESP2 flat array of names and values.
pub fn pairs(value: &Value) -> Vec<(String, Value)> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .map(|(key, value)| (text(key), value.clone()))
            .collect(),
        Value::Array(items) => {
            assert!(items.len() % 2 == 0, "a flattened map has an even length");
            items
                .chunks(2)
                .map(|pair| (text(&pair[0]), pair[1].clone()))
                .collect()
        }
        other => panic!("expected a map, got {other:?}"),
    }
}

/// One field of a map reply (see [`pairs`]); panics if it is missing.
pub fn field(value: &Value, name: &str) -> Value {
    pairs(value)
        .into_iter()
        .find(|(key, _)| key == name)
        .unwrap_or_else(|| panic!("no field {name} in {value:?}"))
        .1
}
