//! cartd as a Redis server, as one connection sees it (docs/PROTOCOL.md, "Redis commands"): the
//! connection commands (PING, ECHO, SELECT, QUIT, RESET), HELLO and AUTH with requirepass,
//! CLIENT (ID, names, SETINFO, INFO, LIST, KILL) and redis-cli, over real sockets with the
//! `redis` crate (RESP2 and RESP3), raw bytes and `redis-cli`.
//!
//! COMMAND, INFO and CONFIG are in `redis_introspection.rs`; the keyspace commands, SCAN,
//! pipelining, SHUTDOWN and maxclients in `redis_keyspace.rs`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cartd_tests::{
    cart_add_version, encode_command, fails, field, int, ok, pairs, parse_reply, text, Cartd, WAIT,
};
use redis::Value;

const AUTH_CONFIG: &str = "[server]\nrequirepass = \"s3cret\"\n";

/// The integer of a raw `:n\r\n` reply.
fn raw_int(bytes: &[u8]) -> i64 {
    let line = std::str::from_utf8(bytes).expect("ASCII");
    line.strip_prefix(':')
        .and_then(|rest| rest.strip_suffix("\r\n"))
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("expected an integer reply, got {line:?}"))
}

/// The `field=value` pairs of one CLIENT LIST / CLIENT INFO line.
fn client_fields(line: &str) -> HashMap<String, String> {
    line.split(' ')
        .filter_map(|part| part.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
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
    let info = parse_reply(&raw.call(&["CLIENT", "INFO"]).await);
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

/// HELLO 3 switches to RESP3 and replies a map: server redis, version 7.4.0, proto 3, the
/// client id, mode standalone, role master, modules [].
#[tokio::test]
async fn hello_3_replies_the_server_map() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    let id = raw_int(&raw.call(&["CLIENT", "ID"]).await);
    let reply = raw.call(&["HELLO", "3"]).await;
    assert!(reply.starts_with(b"%7\r\n"), "a RESP3 map: {reply:?}");
    let hello = parse_reply(&reply);
    let names: Vec<String> = pairs(&hello).into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        ["server", "version", "proto", "id", "mode", "role", "modules"]
    );
    assert_eq!(text(&field(&hello, "server")), "redis");
    assert_eq!(text(&field(&hello, "version")), "7.4.0");
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
    let hello = parse_reply(&reply);
    assert_eq!(text(&field(&hello, "server")), "redis");
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
    assert_eq!(field(&parse_reply(&reply), "proto"), Value::Int(3));
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
            cart_add_version(&mut conn, &format!("cart:url{query}"), "sku", 1).await,
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
    let info = text(&parse_reply(&raw.call(&["CLIENT", "INFO"]).await));
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
        "server redis",
        "version 7.4.0",
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
