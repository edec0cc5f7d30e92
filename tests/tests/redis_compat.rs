//! cartd behaves as a Redis server where it says it does (docs/PROTOCOL.md, "Redis commands"):
//! connection commands, authentication, CLIENT, COMMAND, INFO, CONFIG, the keyspace commands,
//! SCAN, pipelining, redis-cli, SHUTDOWN and maxclients, over real sockets with the `redis`
//! crate (RESP2 and RESP3), raw bytes and `redis-cli`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cartd_tests::{encode_command, fails, int, ok, view, Cartd, RawConn, WAIT};
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AUTH_CONFIG: &str = "[server]\nrequirepass = \"s3cret\"\n";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A string reply (bulk, simple, verbatim or OK) as text.
fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Okay => "OK".into(),
        other => panic!("expected a string reply, got {other:?}"),
    }
}

/// The elements of an array reply.
fn array(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        other => panic!("expected an array, got {other:?}"),
    }
}

/// The pairs of a map reply: a RESP3 map, or a RESP2 flat array of names and values.
fn pairs(value: &Value) -> Vec<(String, Value)> {
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

/// One field of a map reply.
fn field(value: &Value, name: &str) -> Value {
    pairs(value)
        .into_iter()
        .find(|(key, _)| key == name)
        .unwrap_or_else(|| panic!("no field {name} in {value:?}"))
        .1
}

/// Parses one raw reply.
fn parse(bytes: &[u8]) -> Value {
    redis::parse_redis_value(bytes).expect("a valid RESP reply")
}

/// The integer of a raw `:n\r\n` reply.
fn raw_int(bytes: &[u8]) -> i64 {
    let line = std::str::from_utf8(bytes).expect("ASCII");
    line.strip_prefix(':')
        .and_then(|rest| rest.strip_suffix("\r\n"))
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("expected an integer reply, got {line:?}"))
}

/// `INFO sections...` as text.
async fn info(conn: &mut MultiplexedConnection, sections: &[&str]) -> String {
    let mut args = vec!["INFO"];
    args.extend_from_slice(sections);
    text(&ok(conn, &args).await)
}

/// The value of `name:value` in an INFO text.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.split("\r\n")
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::to_string)
}

/// A numeric INFO field.
fn info_number(info: &str, name: &str) -> u64 {
    info_field(info, name)
        .unwrap_or_else(|| panic!("INFO has no {name}:\n{info}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// `CART.ADD key product - qty PRICE 100 CURRENCY USD REPLY VERSION`; returns the version.
async fn add(conn: &mut MultiplexedConnection, key: &str, product: &str, qty: u32) -> i64 {
    let qty = qty.to_string();
    let args = [
        "CART.ADD", key, product, "-", &qty, "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION",
    ];
    int(&ok(conn, &args).await)
}

/// Creates one cart per key in one pipeline.
async fn add_many(conn: &mut MultiplexedConnection, keys: &[String]) {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("CART.ADD")
            .arg(key)
            .arg("sku-1")
            .arg("-")
            .arg(1)
            .arg("PRICE")
            .arg(100)
            .arg("CURRENCY")
            .arg("USD")
            .arg("REPLY")
            .arg("NONE");
    }
    let replies: Vec<Value> = tokio::time::timeout(WAIT, pipe.query_async(conn))
        .await
        .expect("pipeline in time")
        .expect("pipeline works");
    assert_eq!(replies.len(), keys.len());
    assert!(replies.iter().all(|reply| *reply == Value::Okay));
}

/// A full SCAN with `extra` options; returns every key returned and how many calls it took.
async fn scan_all(conn: &mut MultiplexedConnection, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let reply = ok(conn, &args).await;
        let parts = array(&reply);
        assert_eq!(parts.len(), 2, "SCAN replies [cursor, keys]");
        let next = text(&parts[0]);
        next.parse::<i64>()
            .expect("cursors fit a signed 64-bit integer");
        keys.extend(array(&parts[1]).iter().map(text));
        calls += 1;
        assert!(calls < 1_000_000, "SCAN never ends");
        if next == "0" {
            return (keys, calls);
        }
        cursor = next;
    }
}

/// Waits (bounded) until cartd's log holds `needle`; the log is read by another thread.
fn wait_for_log(cartd: &Cartd, needle: &str) {
    let deadline = Instant::now() + WAIT;
    while !cartd.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?}:\n{}",
            cartd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `field=value` pairs of one CLIENT LIST / CLIENT INFO line.
fn client_fields(line: &str) -> HashMap<String, String> {
    line.split(' ')
        .filter_map(|part| part.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Connects, sends PING and returns the first reply line, or `None` if the connection broke.
async fn ping_once(cartd: &Cartd) -> Option<String> {
    let mut stream = TcpStream::connect(cartd.addr()).await.ok()?;
    stream.write_all(b"PING\r\n").await.ok()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        let read = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("a reply in time")
            .ok()?;
        if read == 0 {
            return None;
        }
        line.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Connection commands
// ---------------------------------------------------------------------------------------------

/// PING answers PONG, PING msg and ECHO msg answer msg, in RESP2 and RESP3 alike.
#[tokio::test]
async fn ping_and_echo_answer_as_redis() {
    let cartd = Cartd::start_default();
    for resp3 in [false, true] {
        let mut conn = cartd.client(resp3).await;
        assert_eq!(
            ok(&mut conn, &["PING"]).await,
            Value::SimpleString("PONG".into())
        );
        assert_eq!(
            ok(&mut conn, &["PING", "hello world"]).await,
            Value::BulkString(b"hello world".to_vec())
        );
        assert_eq!(
            ok(&mut conn, &["ECHO", "a b\r\nc"]).await,
            Value::BulkString(b"a b\r\nc".to_vec())
        );
    }
    let mut raw = cartd.raw().await;
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
    assert_eq!(raw.call(&["PING", "hi"]).await, b"$2\r\nhi\r\n");
    assert_eq!(raw.call(&["ECHO", ""]).await, b"$0\r\n\r\n");
}

/// SELECT 0 is OK; any other database index is `ERR DB index is out of range`.
#[tokio::test]
async fn select_zero_works_and_other_databases_do_not() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    assert_eq!(ok(&mut conn, &["SELECT", "0"]).await, Value::Okay);
    assert_eq!(
        fails(&mut conn, &["SELECT", "1"]).await,
        "ERR DB index is out of range"
    );
    let mut raw = cartd.raw().await;
    assert_eq!(
        raw.call(&["SELECT", "15"]).await,
        b"-ERR DB index is out of range\r\n"
    );
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
}

/// QUIT replies +OK and the server closes; requests pipelined after it get no reply.
#[tokio::test]
async fn quit_replies_ok_then_closes() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    assert_eq!(raw.call(&["QUIT"]).await, b"+OK\r\n");
    assert_eq!(raw.read_until_closed().await, b"");

    let mut pipelined = cartd.raw().await;
    let mut batch = encode_command(&["PING"]);
    batch.extend(encode_command(&["QUIT"]));
    batch.extend(encode_command(&["ECHO", "after quit"]));
    pipelined.send(&batch).await;
    assert_eq!(pipelined.read_until_closed().await, b"+PONG\r\n+OK\r\n");
}

/// RESET replies +RESET, goes back to RESP2 (nulls are `$-1` again) and forgets the name.
#[tokio::test]
async fn reset_goes_back_to_resp2_and_forgets_the_name() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    let hello = raw.call(&["HELLO", "3", "SETNAME", "before-reset"]).await;
    assert!(hello.starts_with(b"%7\r\n"), "{hello:?}");
    assert_eq!(raw.call(&["CART.GET", "cart:missing"]).await, b"_\r\n");
    assert_eq!(raw.call(&["RESET"]).await, b"+RESET\r\n");
    assert_eq!(raw.call(&["CART.GET", "cart:missing"]).await, b"$-1\r\n");
    assert_eq!(raw.call(&["CLIENT", "GETNAME"]).await, b"$-1\r\n");
    let info = parse(&raw.call(&["CLIENT", "INFO"]).await);
    let fields = client_fields(text(&info).trim_end());
    assert_eq!(fields["resp"], "2");
    assert_eq!(fields["name"], "");
}

/// With requirepass, RESET makes the connection unauthenticated again.
#[tokio::test]
async fn reset_requires_authentication_again() {
    let cartd = Cartd::start(AUTH_CONFIG);
    let mut raw = cartd.raw().await;
    assert_eq!(raw.call(&["AUTH", "s3cret"]).await, b"+OK\r\n");
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
    assert_eq!(raw.call(&["RESET"]).await, b"+RESET\r\n");
    assert_eq!(
        raw.call(&["PING"]).await,
        b"-NOAUTH Authentication required.\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// HELLO and AUTH
// ---------------------------------------------------------------------------------------------

/// HELLO 3 switches to RESP3 and replies a map: server cartd, version 7.2.0, proto 3, the
/// client id, mode standalone, role master, modules [].
#[tokio::test]
async fn hello_3_replies_the_server_map() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    let id = raw_int(&raw.call(&["CLIENT", "ID"]).await);
    let reply = raw.call(&["HELLO", "3"]).await;
    assert!(reply.starts_with(b"%7\r\n"), "a RESP3 map: {reply:?}");
    let hello = parse(&reply);
    let names: Vec<String> = pairs(&hello).into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        ["server", "version", "proto", "id", "mode", "role", "modules"]
    );
    assert_eq!(text(&field(&hello, "server")), "cartd");
    assert_eq!(text(&field(&hello, "version")), "7.2.0");
    assert_eq!(field(&hello, "proto"), Value::Int(3));
    assert_eq!(field(&hello, "id"), Value::Int(id));
    assert_eq!(text(&field(&hello, "mode")), "standalone");
    assert_eq!(text(&field(&hello, "role")), "master");
    assert_eq!(field(&hello, "modules"), Value::Array(Vec::new()));
    // RESP3 from now on.
    assert_eq!(raw.call(&["CART.GET", "cart:none"]).await, b"_\r\n");
}

/// HELLO 2 replies the same fields as a flat array with proto 2 and keeps RESP2.
#[tokio::test]
async fn hello_2_replies_a_flat_array() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    let reply = raw.call(&["HELLO", "2"]).await;
    assert!(reply.starts_with(b"*14\r\n"), "a flat array: {reply:?}");
    let hello = parse(&reply);
    assert_eq!(text(&field(&hello, "server")), "cartd");
    assert_eq!(field(&hello, "proto"), Value::Int(2));
    assert_eq!(raw.call(&["CART.GET", "cart:none"]).await, b"$-1\r\n");
}

/// HELLO 4 is `NOPROTO`, and the connection stays in RESP2.
#[tokio::test]
async fn hello_4_is_noproto() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    let reply = raw.call(&["HELLO", "4"]).await;
    assert!(reply.starts_with(b"-NOPROTO "), "{reply:?}");
    assert_eq!(raw.call(&["CART.GET", "cart:none"]).await, b"$-1\r\n");
    let mut conn = cartd.client(false).await;
    assert!(fails(&mut conn, &["HELLO", "4"])
        .await
        .starts_with("NOPROTO"));
}

/// HELLO 3 SETNAME x names the connection: CLIENT GETNAME replies x.
#[tokio::test]
async fn hello_setname_names_the_connection() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    let reply = raw.call(&["HELLO", "3", "SETNAME", "x"]).await;
    assert!(reply.starts_with(b"%7\r\n"), "{reply:?}");
    assert_eq!(raw.call(&["CLIENT", "GETNAME"]).await, b"$1\r\nx\r\n");
}

/// With requirepass: commands before AUTH are `NOAUTH Authentication required.` and change
/// nothing; a wrong password or user is WRONGPASS; the right one, with or without the
/// `default` user, lets commands run.
#[tokio::test]
async fn auth_guards_every_command() {
    let cartd = Cartd::start(AUTH_CONFIG);
    let mut raw = cartd.raw().await;
    let noauth = b"-NOAUTH Authentication required.\r\n";
    assert_eq!(raw.call(&["PING"]).await, noauth);
    assert_eq!(
        raw.call(&["CART.ADD", "cart:a", "sku", "-", "1", "PRICE", "5", "CURRENCY", "USD"])
            .await,
        noauth
    );
    assert_eq!(raw.call(&["CART.GET", "cart:a"]).await, noauth);
    assert_eq!(raw.call(&["DBSIZE"]).await, noauth);
    assert_eq!(raw.call(&["CLIENT", "ID"]).await, noauth);
    assert_eq!(raw.call(&["INFO"]).await, noauth);

    for wrong in [
        vec!["AUTH", "wrong"],
        vec!["AUTH", "default", "wrong"],
        vec!["AUTH", "bob", "s3cret"],
    ] {
        let reply = raw.call(&wrong).await;
        assert!(reply.starts_with(b"-WRONGPASS "), "{wrong:?}: {reply:?}");
        assert_eq!(raw.call(&["PING"]).await, noauth, "still locked");
    }

    assert_eq!(raw.call(&["AUTH", "s3cret"]).await, b"+OK\r\n");
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
    assert_eq!(
        raw.call(&["DBSIZE"]).await,
        b":0\r\n",
        "the refused add did nothing"
    );

    let mut with_user = cartd.raw().await;
    assert_eq!(
        with_user.call(&["AUTH", "default", "s3cret"]).await,
        b"+OK\r\n"
    );
    assert_eq!(with_user.call(&["PING"]).await, b"+PONG\r\n");
}

/// With requirepass: HELLO without AUTH is NOAUTH; HELLO 3 AUTH default <pass> authenticates
/// and switches to RESP3 in one step; a wrong one is WRONGPASS.
#[tokio::test]
async fn hello_auth_authenticates() {
    let cartd = Cartd::start(AUTH_CONFIG);
    let mut raw = cartd.raw().await;
    let reply = raw.call(&["HELLO", "3"]).await;
    assert!(reply.starts_with(b"-NOAUTH "), "{reply:?}");
    let reply = raw.call(&["HELLO", "3", "AUTH", "default", "nope"]).await;
    assert!(reply.starts_with(b"-WRONGPASS "), "{reply:?}");
    assert_eq!(
        raw.call(&["PING"]).await,
        b"-NOAUTH Authentication required.\r\n"
    );
    let reply = raw.call(&["HELLO", "3", "AUTH", "default", "s3cret"]).await;
    assert!(reply.starts_with(b"%7\r\n"), "{reply:?}");
    assert_eq!(field(&parse(&reply), "proto"), Value::Int(3));
    assert_eq!(raw.call(&["CART.GET", "cart:none"]).await, b"_\r\n");
}

/// AUTH when no password is configured is an ERR, as in Redis.
#[tokio::test]
async fn auth_without_a_configured_password_is_an_error() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let error = fails(&mut conn, &["AUTH", "anything"]).await;
    assert!(
        error.starts_with("ERR AUTH <password> called without any password configured"),
        "{error}"
    );
    assert_eq!(
        ok(&mut conn, &["PING"]).await,
        Value::SimpleString("PONG".into())
    );
}

/// The redis crate connects with `redis://:pass@host:port/` (AUTH in RESP2, HELLO 3 AUTH in
/// RESP3) and then runs commands; a wrong password fails the connection.
#[tokio::test]
async fn redis_crate_authenticates_from_the_url() {
    let cartd = Cartd::start(AUTH_CONFIG);
    for query in ["", "?protocol=resp3"] {
        let url = format!("redis://:s3cret@127.0.0.1:{}/{query}", cartd.port());
        let client = redis::Client::open(url).expect("valid url");
        let mut conn = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
            .await
            .expect("connect in time")
            .expect("connect with the password");
        assert_eq!(
            ok(&mut conn, &["PING"]).await,
            Value::SimpleString("PONG".into())
        );
        assert_eq!(
            add(&mut conn, &format!("cart:url{query}"), "sku", 1).await,
            1
        );
    }
    let url = format!("redis://:wrong@127.0.0.1:{}/", cartd.port());
    let client = redis::Client::open(url).expect("valid url");
    let connected = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .expect("an answer in time");
    assert!(connected.is_err(), "a wrong password must not connect");
}

// ---------------------------------------------------------------------------------------------
// CLIENT
// ---------------------------------------------------------------------------------------------

/// CLIENT ID is a distinct positive integer per connection; GETNAME is null until SETNAME;
/// a name with a space is refused and the old name stays.
#[tokio::test]
async fn client_id_and_names() {
    let cartd = Cartd::start_default();
    let mut first = cartd.client(false).await;
    let mut second = cartd.client(true).await;
    let first_id = int(&ok(&mut first, &["CLIENT", "ID"]).await);
    let second_id = int(&ok(&mut second, &["CLIENT", "ID"]).await);
    assert!(first_id > 0 && second_id > 0);
    assert_ne!(first_id, second_id);

    assert_eq!(ok(&mut first, &["CLIENT", "GETNAME"]).await, Value::Nil);
    assert_eq!(
        ok(&mut first, &["CLIENT", "SETNAME", "checkout-7"]).await,
        Value::Okay
    );
    assert_eq!(
        text(&ok(&mut first, &["CLIENT", "GETNAME"]).await),
        "checkout-7"
    );
    let error = fails(&mut first, &["CLIENT", "SETNAME", "has space"]).await;
    assert!(
        error.starts_with("ERR Client names cannot contain spaces"),
        "{error}"
    );
    assert_eq!(
        text(&ok(&mut first, &["CLIENT", "GETNAME"]).await),
        "checkout-7"
    );
    assert_eq!(ok(&mut second, &["CLIENT", "GETNAME"]).await, Value::Nil);
}

/// CLIENT SETINFO LIB-NAME / LIB-VER show up in CLIENT INFO, with this connection's id.
#[tokio::test]
async fn client_setinfo_shows_in_client_info() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    let id = raw_int(&raw.call(&["CLIENT", "ID"]).await);
    assert_eq!(
        raw.call(&["CLIENT", "SETINFO", "LIB-NAME", "shoplib"])
            .await,
        b"+OK\r\n"
    );
    assert_eq!(
        raw.call(&["CLIENT", "SETINFO", "LIB-VER", "1.2.3"]).await,
        b"+OK\r\n"
    );
    let info = text(&parse(&raw.call(&["CLIENT", "INFO"]).await));
    assert!(info.ends_with('\n'), "{info:?}");
    let fields = client_fields(info.trim_end());
    assert_eq!(fields["id"], id.to_string());
    assert_eq!(fields["lib-name"], "shoplib");
    assert_eq!(fields["lib-ver"], "1.2.3");
    assert_eq!(fields["resp"], "2");
}

/// CLIENT LIST has one line per open connection with id, addr, laddr, name and lib-name.
#[tokio::test]
async fn client_list_lists_every_connection() {
    let cartd = Cartd::start_default();
    let mut crate_conn = cartd.client(true).await;
    let mut named = cartd.raw().await;
    let mut plain = cartd.raw().await;
    let crate_id = int(&ok(&mut crate_conn, &["CLIENT", "ID"]).await);
    let named_id = raw_int(&named.call(&["CLIENT", "ID"]).await);
    let plain_id = raw_int(&plain.call(&["CLIENT", "ID"]).await);
    assert_eq!(
        named.call(&["CLIENT", "SETNAME", "worker-1"]).await,
        b"+OK\r\n"
    );

    let list = text(&ok(&mut crate_conn, &["CLIENT", "LIST"]).await);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    let by_id: HashMap<i64, HashMap<String, String>> = lines
        .iter()
        .map(|line| {
            let fields = client_fields(line);
            for name in ["id", "addr", "laddr", "name", "lib-name", "lib-ver", "resp"] {
                assert!(fields.contains_key(name), "{name} missing in {line}");
            }
            let addr: std::net::SocketAddr = fields["addr"].parse().expect("addr is ip:port");
            assert!(addr.ip().is_loopback());
            assert_eq!(fields["laddr"], cartd.addr().to_string());
            (fields["id"].parse().expect("numeric id"), fields)
        })
        .collect();
    let ids: HashSet<i64> = by_id.keys().copied().collect();
    assert_eq!(ids, HashSet::from([crate_id, named_id, plain_id]));
    assert_eq!(by_id[&named_id]["name"], "worker-1");
    assert_eq!(by_id[&plain_id]["name"], "");
    assert_eq!(by_id[&crate_id]["resp"], "3");
    assert_eq!(
        by_id[&crate_id]["lib-name"], "redis-rs",
        "the redis crate's CLIENT SETINFO is shown"
    );
}

/// CLIENT KILL ID <id> closes that other connection and replies 1; an unknown id replies 0;
/// the killer carries on.
#[tokio::test]
async fn client_kill_id_closes_the_other_connection() {
    let cartd = Cartd::start_default();
    let mut killer = cartd.client(false).await;
    let mut victim = cartd.raw().await;
    let victim_id = raw_int(&victim.call(&["CLIENT", "ID"]).await);
    let id = victim_id.to_string();
    assert_eq!(
        ok(&mut killer, &["CLIENT", "KILL", "ID", &id]).await,
        Value::Int(1)
    );
    assert_eq!(victim.read_until_closed().await, b"");
    assert_eq!(
        ok(&mut killer, &["CLIENT", "KILL", "ID", "987654"]).await,
        Value::Int(0)
    );
    assert_eq!(
        ok(&mut killer, &["PING"]).await,
        Value::SimpleString("PONG".into())
    );
    // The killed connection leaves the list once its task has ended.
    let deadline = Instant::now() + WAIT;
    loop {
        let list = text(&ok(&mut killer, &["CLIENT", "LIST"]).await);
        if !list.contains(&format!("id={victim_id} ")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "killed client still listed: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// COMMAND
// ---------------------------------------------------------------------------------------------

/// COMMAND COUNT equals the length of COMMAND LIST, which names cart.add and the Redis commands.
#[tokio::test]
async fn command_count_matches_command_list() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let count = int(&ok(&mut conn, &["COMMAND", "COUNT"]).await);
    let list = ok(&mut conn, &["COMMAND", "LIST"]).await;
    let names: Vec<String> = array(&list).iter().map(text).collect();
    assert_eq!(names.len() as i64, count);
    for name in ["cart.add", "cart.get", "ping", "hello", "scan", "info"] {
        assert!(names.iter().any(|listed| listed == name), "{name} missing");
    }
    let all = ok(&mut conn, &["COMMAND"]).await;
    assert_eq!(array(&all).len() as i64, count);
}

/// COMMAND INFO cart.add is Redis 7's ten-field row: name, arity -5, flags with write, keys at
/// 1..1 step 1; an unknown command's row is null.
#[tokio::test]
async fn command_info_describes_cart_add() {
    let cartd = Cartd::start_default();
    for resp3 in [false, true] {
        let mut conn = cartd.client(resp3).await;
        let reply = ok(&mut conn, &["COMMAND", "INFO", "cart.add", "nope"]).await;
        let rows = array(&reply);
        assert_eq!(rows.len(), 2);
        let row = array(&rows[0]);
        assert_eq!(row.len(), 10, "{row:?}");
        assert_eq!(text(&row[0]), "cart.add");
        assert_eq!(row[1], Value::Int(-5));
        let flags: Vec<String> = array(&row[2]).iter().map(text).collect();
        assert!(flags.iter().any(|flag| flag == "write"), "{flags:?}");
        assert_eq!(row[3], Value::Int(1));
        assert_eq!(row[4], Value::Int(1));
        assert_eq!(row[5], Value::Int(1));
        for list in &row[6..10] {
            array(list);
        }
        assert_eq!(rows[1], Value::Nil);

        let reply = ok(&mut conn, &["COMMAND", "INFO", "nope"]).await;
        assert_eq!(reply, Value::Array(vec![Value::Nil]));
    }
}

/// COMMAND DOCS cart.add has a summary and a non-empty arguments array.
#[tokio::test]
async fn command_docs_describe_cart_add() {
    let cartd = Cartd::start_default();
    for resp3 in [false, true] {
        let mut conn = cartd.client(resp3).await;
        let reply = ok(&mut conn, &["COMMAND", "DOCS", "cart.add"]).await;
        let docs = pairs(&reply);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].0, "cart.add");
        let doc = &docs[0].1;
        assert!(!text(&field(doc, "summary")).is_empty());
        let arguments = field(doc, "arguments");
        let arguments = array(&arguments);
        assert!(!arguments.is_empty());
        let names: Vec<String> = arguments
            .iter()
            .map(|argument| text(&field(argument, "name")))
            .collect();
        assert!(names.iter().any(|name| name == "key"), "{names:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// INFO
// ---------------------------------------------------------------------------------------------

/// INFO without arguments has the default sections (not commandstats), every line is
/// `# Section` or `key:value`, and lines end in CRLF.
#[tokio::test]
async fn info_default_sections_are_key_value_lines() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let text = info(&mut conn, &[]).await;
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# Keyspace",
    ] {
        assert!(
            text.lines().any(|line| line.trim_end() == section),
            "{section} missing"
        );
    }
    assert!(!text.contains("# Commandstats"));
    assert!(!text.replace("\r\n", "").contains('\n'), "bare LF in INFO");
    for line in text.split("\r\n") {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, _value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("not key:value: {line:?}"));
        assert!(
            !name.is_empty() && !name.contains(' '),
            "bad key in {line:?}"
        );
    }
    assert_eq!(info_field(&text, "redis_version").as_deref(), Some("7.2.0"));
    assert!(info_field(&text, "cartd_version").is_some());
    let all = info(&mut conn, &["everything"]).await;
    assert!(all.contains("# Commandstats") && all.contains("# Latencystats"));
}

/// INFO memory has used_memory, carts (the number of carts) and cart_bytes_avg.
#[tokio::test]
async fn info_memory_counts_carts() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    for key in ["cart:m1", "cart:m2", "cart:m3"] {
        add(&mut conn, key, "sku", 1).await;
    }
    let memory = info(&mut conn, &["memory"]).await;
    assert!(memory.starts_with("# Memory\r\n"), "{memory}");
    assert!(info_number(&memory, "used_memory") > 0);
    assert_eq!(info_number(&memory, "carts"), 3);
    info_number(&memory, "cart_bytes_avg");
    assert!(!memory.contains("# Server"), "only the asked section");
}

/// After N CART.ADDs, INFO commandstats has cmdstat_cart.add with calls=N and INFO
/// latencystats has its p50, p99 and p99.9.
#[tokio::test]
async fn info_commandstats_and_latencystats_count_cart_add() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    for qty in 1..=7 {
        add(&mut conn, "cart:stats", "sku", qty).await;
    }
    let stats = info(&mut conn, &["commandstats"]).await;
    let line = info_field(&stats, "cmdstat_cart.add")
        .unwrap_or_else(|| panic!("no cmdstat_cart.add in\n{stats}"));
    assert!(line.starts_with("calls=7,"), "{line}");
    assert!(line.contains("failed_calls=0"), "{line}");

    let latency = info(&mut conn, &["latencystats"]).await;
    let line = info_field(&latency, "latency_percentiles_usec_cart.add")
        .unwrap_or_else(|| panic!("no cart.add latency in\n{latency}"));
    let percentiles: HashMap<&str, f64> = line
        .split(',')
        .map(|part| {
            let (name, value) = part.split_once('=').expect("p=value");
            (name, value.parse().expect("a number"))
        })
        .collect();
    let p50 = percentiles["p50"];
    let p99 = percentiles["p99"];
    let p999 = percentiles["p99.9"];
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{line}");
}

/// INFO keyspace says db0:keys=N for N carts, and nothing without carts.
#[tokio::test]
async fn info_keyspace_counts_keys() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let empty = info(&mut conn, &["keyspace"]).await;
    assert!(info_field(&empty, "db0").is_none(), "{empty}");
    for key in ["cart:k1", "cart:k2", "cart:guest:k3", "cart:k4"] {
        add(&mut conn, key, "sku", 1).await;
    }
    let keyspace = info(&mut conn, &["keyspace"]).await;
    let db0 = info_field(&keyspace, "db0").expect("db0 line");
    assert!(db0.starts_with("keys=4,"), "{db0}");
}

/// INFO stats counters grow: commands processed, connections received, error replies.
#[tokio::test]
async fn info_stats_counters_grow() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let before = info(&mut conn, &["stats"]).await;
    for _ in 0..5 {
        ok(&mut conn, &["PING"]).await;
    }
    fails(&mut conn, &["SELECT", "3"]).await;
    let _other = cartd.client(false).await;
    let after = info(&mut conn, &["stats"]).await;
    let grew = |name: &str| info_number(&after, name) - info_number(&before, name);
    assert!(grew("total_commands_processed") >= 6);
    assert!(grew("total_connections_received") >= 1);
    assert!(grew("total_error_replies") >= 1);
    assert!(grew("total_net_input_bytes") > 0);
    assert!(grew("total_net_output_bytes") > 0);
}

// ---------------------------------------------------------------------------------------------
// CONFIG
// ---------------------------------------------------------------------------------------------

/// CONFIG GET replies a map in RESP3 and a flat array in RESP2; patterns glob.
#[tokio::test]
async fn config_get_replies_name_value_pairs() {
    let cartd = Cartd::start("[server]\nmaxclients = 77\n");
    let mut resp2 = cartd.client(false).await;
    assert_eq!(
        ok(&mut resp2, &["CONFIG", "GET", "maxclients"]).await,
        Value::Array(vec![
            Value::BulkString(b"maxclients".to_vec()),
            Value::BulkString(b"77".to_vec()),
        ])
    );
    let mut resp3 = cartd.client(true).await;
    assert_eq!(
        ok(&mut resp3, &["CONFIG", "GET", "maxclients"]).await,
        Value::Map(vec![(
            Value::BulkString(b"maxclients".to_vec()),
            Value::BulkString(b"77".to_vec()),
        )])
    );
    for conn in [&mut resp2, &mut resp3] {
        let ttl = pairs(&ok(conn, &["CONFIG", "GET", "*ttl*"]).await);
        let names: HashSet<String> = ttl.iter().map(|(name, _)| name.clone()).collect();
        assert_eq!(
            names,
            HashSet::from(["guest_ttl_s", "user_ttl_s", "idempotency_ttl_s"].map(String::from))
        );
        let values: HashMap<String, String> = ttl
            .into_iter()
            .map(|(name, value)| (name, text(&value)))
            .collect();
        assert_eq!(values["guest_ttl_s"], "86400");
        assert_eq!(values["user_ttl_s"], "2592000");
        let port = pairs(&ok(conn, &["CONFIG", "GET", "port", "databases"]).await);
        let port: HashMap<String, String> = port
            .into_iter()
            .map(|(name, value)| (name, text(&value)))
            .collect();
        assert_eq!(port["port"], cartd.port().to_string());
        assert_eq!(port["databases"], "1");
    }
}

/// CONFIG SET is refused and changes nothing.
#[tokio::test]
async fn config_set_is_refused() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let error = fails(&mut conn, &["CONFIG", "SET", "maxclients", "5"]).await;
    assert!(error.starts_with("ERR "), "{error}");
    let value = ok(&mut conn, &["CONFIG", "GET", "maxclients"]).await;
    assert_eq!(text(&pairs(&value)[0].1), "10000");
}

/// CONFIG RESETSTAT zeroes the command statistics.
#[tokio::test]
async fn config_resetstat_zeroes_commandstats() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:reset", "sku", 1).await;
    add(&mut conn, "cart:reset", "sku", 1).await;
    let before = info(&mut conn, &["commandstats"]).await;
    assert!(
        info_field(&before, "cmdstat_cart.add").is_some(),
        "{before}"
    );
    assert_eq!(ok(&mut conn, &["CONFIG", "RESETSTAT"]).await, Value::Okay);
    let after = info(&mut conn, &["commandstats"]).await;
    assert!(info_field(&after, "cmdstat_cart.add").is_none(), "{after}");
    let latency = info(&mut conn, &["latencystats"]).await;
    assert!(
        info_field(&latency, "latency_percentiles_usec_cart.add").is_none(),
        "{latency}"
    );
    add(&mut conn, "cart:reset", "sku", 1).await;
    let again = info(&mut conn, &["commandstats"]).await;
    assert!(info_field(&again, "cmdstat_cart.add")
        .expect("counted again")
        .starts_with("calls=1,"));
}

// ---------------------------------------------------------------------------------------------
// Keyspace
// ---------------------------------------------------------------------------------------------

/// DBSIZE counts carts; EXISTS counts every named key that exists (repeats included); DEL
/// deletes and counts; TYPE is cart or none.
#[tokio::test]
async fn dbsize_exists_del_type() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(0));
    for key in ["cart:a", "cart:b", "cart:c"] {
        add(&mut conn, key, "sku", 1).await;
    }
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(3));
    assert_eq!(
        ok(
            &mut conn,
            &["EXISTS", "cart:a", "cart:b", "cart:missing", "cart:a"]
        )
        .await,
        Value::Int(3)
    );
    assert_eq!(
        ok(&mut conn, &["EXISTS", "cart:missing"]).await,
        Value::Int(0)
    );
    assert_eq!(
        ok(&mut conn, &["TYPE", "cart:b"]).await,
        Value::SimpleString("cart".into())
    );
    assert_eq!(
        ok(&mut conn, &["TYPE", "cart:missing"]).await,
        Value::SimpleString("none".into())
    );
    assert_eq!(
        ok(&mut conn, &["DEL", "cart:a", "cart:missing", "cart:c"]).await,
        Value::Int(2)
    );
    assert_eq!(ok(&mut conn, &["DEL", "cart:a"]).await, Value::Int(0));
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(1));
    assert_eq!(ok(&mut conn, &["EXISTS", "cart:a"]).await, Value::Int(0));
    assert_eq!(view(&mut conn, "cart:a").await, serde_json::Value::Null);
    assert_eq!(
        ok(&mut conn, &["TYPE", "cart:a"]).await,
        Value::SimpleString("none".into())
    );
}

/// TTL and PTTL: about 30 days for user carts, 24 hours for `cart:guest:` carts, -2 for none.
#[tokio::test]
async fn ttl_and_pttl_follow_the_cart_kind() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:user-1", "sku", 1).await;
    add(&mut conn, "cart:guest:g1", "sku", 1).await;
    let slack_s = 60;
    let user_ttl = int(&ok(&mut conn, &["TTL", "cart:user-1"]).await);
    assert!(
        (2_592_000 - slack_s..=2_592_000).contains(&user_ttl),
        "{user_ttl}"
    );
    let user_pttl = int(&ok(&mut conn, &["PTTL", "cart:user-1"]).await);
    assert!(
        (2_592_000_000 - slack_s * 1000..=2_592_000_000).contains(&user_pttl),
        "{user_pttl}"
    );
    let guest_ttl = int(&ok(&mut conn, &["TTL", "cart:guest:g1"]).await);
    assert!(
        (86_400 - slack_s..=86_400).contains(&guest_ttl),
        "{guest_ttl}"
    );
    let guest_pttl = int(&ok(&mut conn, &["PTTL", "cart:guest:g1"]).await);
    assert!(
        (86_400_000 - slack_s * 1000..=86_400_000).contains(&guest_pttl),
        "{guest_pttl}"
    );
    assert_eq!(ok(&mut conn, &["TTL", "cart:none"]).await, Value::Int(-2));
    assert_eq!(ok(&mut conn, &["PTTL", "cart:none"]).await, Value::Int(-2));
}

/// TIME replies two integers as strings: seconds near the local clock and microseconds.
#[tokio::test]
async fn time_replies_seconds_and_microseconds() {
    let cartd = Cartd::start_default();
    for resp3 in [false, true] {
        let mut conn = cartd.client(resp3).await;
        let reply = ok(&mut conn, &["TIME"]).await;
        let parts = array(&reply);
        assert_eq!(parts.len(), 2);
        assert!(matches!(parts[0], Value::BulkString(_)), "{parts:?}");
        let seconds: u64 = text(&parts[0]).parse().expect("seconds are an integer");
        let micros: u64 = text(&parts[1]).parse().expect("micros are an integer");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert!(seconds.abs_diff(now) < 3600, "{seconds} vs {now}");
        assert!(micros < 1_000_000);
    }
}

// ---------------------------------------------------------------------------------------------
// SCAN
// ---------------------------------------------------------------------------------------------

/// With 2,000 carts, a full SCAN COUNT 100 returns every key exactly once, over several calls.
#[tokio::test]
async fn scan_returns_every_cart_exactly_once() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let keys: Vec<String> = (0..2000).map(|i| format!("scan:{i}")).collect();
    add_many(&mut conn, &keys).await;
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(2000));
    let (found, calls) = scan_all(&mut conn, &["COUNT", "100"]).await;
    assert!(calls > 1, "COUNT 100 over 2,000 carts takes several calls");
    assert_eq!(found.len(), 2000, "no key twice, none missed");
    let found: HashSet<String> = found.into_iter().collect();
    assert_eq!(found, keys.into_iter().collect::<HashSet<_>>());
}

/// SCAN MATCH returns exactly the keys that match; TYPE cart returns carts, any other TYPE
/// returns nothing.
#[tokio::test]
async fn scan_match_and_type_filter() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    let mut keys: Vec<String> = (0..300).map(|i| format!("scan:{i}")).collect();
    keys.extend((0..50).map(|i| format!("other:{i}")));
    add_many(&mut conn, &keys).await;

    let (found, _) = scan_all(&mut conn, &["MATCH", "scan:1*", "COUNT", "100"]).await;
    let expected: HashSet<String> = keys
        .iter()
        .filter(|key| key.starts_with("scan:1"))
        .cloned()
        .collect();
    assert_eq!(found.len(), expected.len());
    assert_eq!(found.into_iter().collect::<HashSet<_>>(), expected);

    let (others, _) = scan_all(&mut conn, &["MATCH", "other:*"]).await;
    assert_eq!(others.len(), 50);

    let (carts, _) = scan_all(&mut conn, &["TYPE", "cart", "COUNT", "1000"]).await;
    assert_eq!(carts.len(), 350);
    let (strings, calls) = scan_all(&mut conn, &["TYPE", "string", "COUNT", "1000"]).await;
    assert!(strings.is_empty(), "{strings:?}");
    assert_eq!(calls, 1);
}

/// A SCAN iterated while other carts are being added returns every cart that existed before
/// the scan started exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scan_misses_nothing_while_carts_are_added() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let old_keys: Vec<String> = (0..2000).map(|i| format!("old:{i}")).collect();
    add_many(&mut conn, &old_keys).await;

    let mut writer = cartd.client(false).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let adder = tokio::spawn(async move {
        let mut started_tx = Some(started_tx);
        for batch in 0..60 {
            let keys: Vec<String> = (0..50).map(|i| format!("new:{batch}:{i}")).collect();
            add_many(&mut writer, &keys).await;
            if let Some(tx) = started_tx.take() {
                let _ = tx.send(());
            }
        }
    });
    started_rx.await.expect("the adder started");
    let (found, calls) = scan_all(&mut conn, &["COUNT", "20"]).await;
    adder.await.expect("the adder finished");
    assert!(calls > 10);

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for key in &found {
        *seen.entry(key.as_str()).or_default() += 1;
    }
    let missed: Vec<&String> = old_keys
        .iter()
        .filter(|key| !seen.contains_key(key.as_str()))
        .collect();
    assert!(
        missed.is_empty(),
        "{} old carts missed: {missed:?}",
        missed.len()
    );
    let twice: Vec<&String> = old_keys
        .iter()
        .filter(|key| seen[key.as_str()] > 1)
        .collect();
    assert!(twice.is_empty(), "old carts returned twice: {twice:?}");
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(2000 + 60 * 50));
}

// ---------------------------------------------------------------------------------------------
// Pipelining
// ---------------------------------------------------------------------------------------------

/// 10,000 CART.ADD ... REPLY VERSION sent in one write on a raw socket are answered in order:
/// versions 1..=10000.
#[tokio::test]
async fn raw_pipeline_of_ten_thousand_is_answered_in_order() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    let mut batch = Vec::new();
    for i in 0..10_000 {
        // 100 lines of 100 each: under max_qty_per_line and max_lines_per_cart.
        let product = format!("p{}", i % 100);
        batch.extend(encode_command(&[
            "CART.ADD",
            "cart:pipe",
            &product,
            "-",
            "1",
            "PRICE",
            "5",
            "CURRENCY",
            "USD",
            "REPLY",
            "VERSION",
        ]));
    }
    raw.send(&batch).await;
    for version in 1..=10_000 {
        let reply = raw.read_reply().await;
        assert_eq!(
            reply,
            format!(":{version}\r\n").into_bytes(),
            "reply #{version}"
        );
    }
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
}

/// A 10,000-command `redis::pipe()` through the redis crate (RESP3) gets 10,000 replies in order.
#[tokio::test]
async fn redis_crate_pipeline_of_ten_thousand() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.cmd("CART.ADD")
            .arg("cart:crate-pipe")
            .arg(format!("p{}", i % 100))
            .arg("-")
            .arg(1)
            .arg("PRICE")
            .arg(5)
            .arg("CURRENCY")
            .arg("USD")
            .arg("REPLY")
            .arg("VERSION");
    }
    let versions: Vec<i64> = tokio::time::timeout(WAIT, pipe.query_async(&mut conn))
        .await
        .expect("pipeline in time")
        .expect("pipeline works");
    assert_eq!(versions, (1..=10_000).collect::<Vec<i64>>());
    let cart = view(&mut conn, "cart:crate-pipe").await;
    assert_eq!(cart["version"], 10_000);
    assert_eq!(cart["totals"]["item_count"], 10_000);
}

// ---------------------------------------------------------------------------------------------
// redis-cli
// ---------------------------------------------------------------------------------------------

/// redis-cli works: PING, CART.ADD, `-3 HELLO 3`, INFO server, and `(nil)` for a missing cart.
#[tokio::test]
async fn redis_cli_talks_to_cartd() {
    let cartd = Cartd::start_default();
    assert_eq!(cartd.redis_cli(&["PING"]), "PONG\n");
    assert_eq!(
        cartd.redis_cli(&[
            "CART.ADD", "cart:cli", "sku-1", "-", "2", "PRICE", "100", "CURRENCY", "USD", "REPLY",
            "VERSION"
        ]),
        "1\n"
    );
    assert_eq!(
        cartd.redis_cli(&[
            "--no-raw", "CART.ADD", "cart:cli", "sku-1", "-", "1", "REPLY", "VERSION"
        ]),
        "(integer) 2\n"
    );
    let hello = cartd.redis_cli(&["-3", "HELLO", "3"]);
    // redis-cli prints a map one `key value` pair per line when not on a terminal.
    let lines: Vec<&str> = hello.lines().collect();
    for pair in [
        "server cartd",
        "version 7.2.0",
        "proto 3",
        "mode standalone",
    ] {
        assert!(lines.contains(&pair), "{pair:?} missing in {hello}");
    }
    let info = cartd.redis_cli(&["INFO", "server"]);
    assert!(info.contains("redis_version:"), "{info}");
    assert_eq!(
        cartd.redis_cli(&["--no-raw", "CART.GET", "cart:missing"]),
        "(nil)\n"
    );
    let json = cartd.redis_cli(&["CART.GET", "cart:cli", "NOVALIDATE", "FORMAT", "JSON"]);
    let cart: serde_json::Value = serde_json::from_str(json.trim_end()).expect("JSON");
    assert_eq!(cart["items"][0]["qty"], 3);
}

// ---------------------------------------------------------------------------------------------
// SHUTDOWN, SIGTERM, maxclients
// ---------------------------------------------------------------------------------------------

/// SHUTDOWN: requests pipelined before it are answered, it sends no reply, every connection
/// closes, and the process exits 0 after logging "cartd stopped".
#[tokio::test]
async fn shutdown_answers_the_batch_then_exits_zero() {
    let mut cartd = Cartd::start_default();
    let mut idle = cartd.raw().await;
    assert_eq!(idle.call(&["PING"]).await, b"+PONG\r\n");
    let mut raw = cartd.raw().await;
    let mut batch = Vec::new();
    for i in 0..300 {
        let product = format!("p{}", i % 10);
        batch.extend(encode_command(&[
            "CART.ADD", "cart:sd", &product, "-", "1", "PRICE", "5", "CURRENCY", "USD", "REPLY",
            "VERSION",
        ]));
    }
    batch.extend(encode_command(&["SHUTDOWN"]));
    batch.extend(encode_command(&["PING"]));
    raw.send(&batch).await;
    for version in 1..=300 {
        assert_eq!(
            raw.read_reply().await,
            format!(":{version}\r\n").into_bytes()
        );
    }
    assert_eq!(
        raw.read_until_closed().await,
        b"",
        "no reply after SHUTDOWN"
    );
    assert_eq!(idle.read_until_closed().await, b"");
    let status = cartd.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    wait_for_log(&cartd, "cartd stopped");
}

/// SIGTERM stops cartd the same way: exit status 0, "cartd stopped" logged, clients closed.
#[tokio::test]
async fn sigterm_exits_zero() {
    let mut cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
    let status = cartd.terminate();
    assert!(status.success(), "exit status {status:?}");
    wait_for_log(&cartd, "cartd stopped");
    assert_eq!(raw.read_until_closed().await, b"");
}

/// With maxclients = 3 the 4th connection reads `-ERR max number of clients reached` and is
/// closed; once one of the three leaves, a new connection is served.
#[tokio::test]
async fn maxclients_turns_away_the_extra_connection() {
    let cartd = Cartd::start("[server]\nmaxclients = 3\n");
    let mut open: Vec<RawConn> = Vec::new();
    for _ in 0..3 {
        let mut raw = cartd.raw().await;
        assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
        open.push(raw);
    }
    let mut fourth = cartd.raw().await;
    assert_eq!(
        fourth.read_until_closed().await,
        b"-ERR max number of clients reached\r\n"
    );
    for raw in &mut open {
        assert_eq!(
            raw.call(&["PING"]).await,
            b"+PONG\r\n",
            "the three still work"
        );
    }
    let stats = text(&parse(&open[0].call(&["INFO", "stats"]).await));
    assert_eq!(info_number(&stats, "rejected_connections"), 1);

    let mut leaving = open.pop().expect("three open");
    assert_eq!(leaving.call(&["QUIT"]).await, b"+OK\r\n");
    assert_eq!(leaving.read_until_closed().await, b"");
    // The server forgets the closed connection right after closing it; retry until it has.
    let deadline = Instant::now() + WAIT;
    loop {
        match ping_once(&cartd).await.as_deref() {
            Some("+PONG\r\n") => break,
            Some("-ERR max number of clients reached\r\n") | None => {}
            Some(other) => panic!("unexpected reply {other:?}"),
        }
        assert!(Instant::now() < deadline, "a freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
