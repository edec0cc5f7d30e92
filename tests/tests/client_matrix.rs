//! The client matrix (README "Client matrix"): each client library runs one script
//! (`tests/clients/`) against a cartd of its own and prints what it observed; these tests say
//! what it must have observed. Each script exercises the client's handshake (HELLO 3 where it
//! speaks RESP3, CLIENT SETINFO where it sends it), CART.ADD and CART.GET through its generic
//! command call, a pipeline of 1,000 CART.ADDs, WATCH/MULTI/EXEC (a clean EXEC, then one a
//! second connection's change aborts), pub/sub (SUBSCRIBE and PSUBSCRIBE, PUBLISH from another
//! connection) and AUTH as an ACL user (its rights, a refused command and key, a wrong password).
//!
//! The same scripts run against Debian's redis-server too (`plain` mode: the same steps on
//! lists), so a failure against cartd is cartd's, not the script's. Pub/sub is checked last
//! in each test: it fails against cartd until SUBSCRIBE, PSUBSCRIBE and PUBLISH land.

use cartd_tests::matrix::{Client, Mode, Runner, SetInfo, MATRIX_USER, MATRIX_USER_RULES};
use cartd_tests::{Cartd, RedisServer};
use serde_json::{json, Map, Value as Json};

const fn redis_py(
    name: &'static str,
    script: &'static str,
    hiredis: bool,
    protocol: i64,
) -> Client {
    Client {
        name,
        runner: Runner::Python { script, hiredis },
        protocol,
        setinfo: Some(SetInfo {
            lib_name: "redis-py",
            lib_ver_is_version: true,
        }),
        watch_abort: "WatchError",
        missing: "null",
    }
}

const fn node_redis(
    name: &'static str,
    args: &'static [&'static str],
    package: &'static str,
    protocol: i64,
    lib_ver_is_version: bool,
) -> Client {
    Client {
        name,
        runner: Runner::Node {
            script: "node_redis.js",
            args,
            package,
        },
        protocol,
        setinfo: Some(SetInfo {
            lib_name: "node-redis",
            lib_ver_is_version,
        }),
        watch_abort: "WatchError",
        missing: "null",
    }
}

const REDIS_PY_RESP2: Client = redis_py("redis-py RESP2", "redis_py.py", false, 2);
const REDIS_PY_RESP3: Client = redis_py("redis-py RESP3", "redis_py.py", false, 3);
const REDIS_PY_HIREDIS_RESP2: Client = redis_py("redis-py + hiredis RESP2", "redis_py.py", true, 2);
const REDIS_PY_HIREDIS_RESP3: Client = redis_py("redis-py + hiredis RESP3", "redis_py.py", true, 3);
const REDIS_PY_ASYNCIO_RESP2: Client =
    redis_py("redis-py asyncio RESP2", "redis_py_async.py", false, 2);
const REDIS_PY_ASYNCIO_RESP3: Client =
    redis_py("redis-py asyncio RESP3", "redis_py_async.py", false, 3);
const IOREDIS: Client = Client {
    name: "ioredis",
    runner: Runner::Node {
        script: "ioredis.js",
        args: &[],
        package: "ioredis",
    },
    protocol: 2,
    setinfo: Some(SetInfo {
        lib_name: "ioredis",
        lib_ver_is_version: true,
    }),
    watch_abort: "null",
    missing: "null",
};
// node-redis 4 sends its @redis/client package's version as lib-ver.
const NODE_REDIS_4: Client = node_redis("node-redis 4", &["4", "2"], "redis4", 2, false);
const NODE_REDIS_5_RESP2: Client = node_redis("node-redis 5 RESP2", &["5", "2"], "redis5", 2, true);
const NODE_REDIS_5_RESP3: Client = node_redis("node-redis 5 RESP3", &["5", "3"], "redis5", 3, true);
const RUBY_REDIS: Client = Client {
    name: "redis-rb",
    runner: Runner::Ruby,
    protocol: 2,
    setinfo: None,
    watch_abort: "nil",
    missing: "null",
};
// phpredis reads a null bulk string as false.
const PHPREDIS: Client = Client {
    name: "phpredis",
    runner: Runner::Php,
    protocol: 2,
    setinfo: None,
    watch_abort: "false",
    missing: "false",
};
const REDIGO: Client = Client {
    name: "redigo",
    runner: Runner::Go {
        program: "redigo",
        debian: "golang-github-gomodule-redigo-dev",
        source: "github.com/gomodule/redigo/redis",
    },
    protocol: 2,
    setinfo: None,
    watch_abort: "nil",
    missing: "null",
};
// go-redis reports a null reply as its error redis.Nil.
const GO_REDIS_V5: Client = Client {
    name: "go-redis v5",
    runner: Runner::Go {
        program: "goredis_v5",
        debian: "golang-gopkg-redis.v5-dev",
        source: "gopkg.in/redis.v5",
    },
    protocol: 2,
    setinfo: None,
    watch_abort: "TxFailedErr",
    missing: r#""internal.RedisError: redis: nil""#,
};

const CLIENTS: [&Client; 14] = [
    &REDIS_PY_RESP2,
    &REDIS_PY_RESP3,
    &REDIS_PY_HIREDIS_RESP2,
    &REDIS_PY_HIREDIS_RESP3,
    &REDIS_PY_ASYNCIO_RESP2,
    &REDIS_PY_ASYNCIO_RESP3,
    &IOREDIS,
    &NODE_REDIS_4,
    &NODE_REDIS_5_RESP2,
    &NODE_REDIS_5_RESP3,
    &RUBY_REDIS,
    &PHPREDIS,
    &REDIGO,
    &GO_REDIS_V5,
];

/// Which server a script ran against: the facts differ only in what each server names itself
/// and in Redis 7.0's older NOPERM wording.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Cartd,
    Redis,
}

/// Runs `client`'s script against a cartd of its own (with the matrix's ACL user) and checks
/// every step; pub/sub last.
fn on_cartd(client: &Client) {
    let cartd = Cartd::start(&format!("[acl]\nusers = [\"user {MATRIX_USER_RULES}\"]\n"));
    let out = client.run(cartd.port(), Mode::Cart);
    check_handshake(client, &out, Server::Cartd);
    check_cart(client, &out);
    check_pipeline(client, &out);
    check_watch(client, &out);
    check_acl(client, &out, Server::Cartd);
    check_pubsub(client, &out);
}

/// A step's report, which must not be an error.
fn step<'a>(client: &Client, out: &'a Json, name: &str) -> &'a Json {
    let report = &out[name];
    assert!(
        report.is_object(),
        "{}: no {name} report in {out}",
        client.name
    );
    assert!(
        report.get("error").is_none(),
        "{} {}: {name} failed: {}",
        client.name,
        out["version"],
        report["error"]
    );
    report
}

fn check_handshake(client: &Client, out: &Json, server: Server) {
    let name = client.name;
    let handshake = step(client, out, "handshake");
    assert_eq!(
        handshake["resp"], client.protocol,
        "{name}: CLIENT INFO resp: {handshake}"
    );
    let hello = &handshake["hello"];
    assert_eq!(hello["proto"], client.protocol, "{name}: HELLO: {hello}");
    if let Runner::Python { hiredis, .. } = client.runner {
        assert_eq!(
            out["hiredis"], hiredis,
            "{name}: hiredis on PYTHONPATH: {out}"
        );
        if let Some(parser) = handshake.get("parser") {
            let expected = if hiredis {
                "_HiredisParser".to_string()
            } else {
                format!("_RESP{}Parser", client.protocol)
            };
            assert_eq!(parser, &json!(expected), "{name}: redis-py's parser");
        }
    }
    if server == Server::Redis {
        assert_eq!(hello["server"], "redis", "{name}: HELLO: {hello}");
        return;
    }
    assert_eq!(hello["server"], "redis", "{name}: HELLO: {hello}");
    assert_eq!(hello["version"], "7.4.0", "{name}: HELLO: {hello}");
    match &client.setinfo {
        Some(setinfo) => {
            assert_eq!(
                handshake["lib_name"], setinfo.lib_name,
                "{name}: CLIENT SETINFO lib-name: {handshake}"
            );
            if setinfo.lib_ver_is_version {
                assert_eq!(
                    handshake["lib_ver"], out["version"],
                    "{name}: CLIENT SETINFO lib-ver: {handshake}"
                );
            } else {
                assert_ne!(
                    handshake["lib_ver"], "",
                    "{name}: CLIENT SETINFO lib-ver: {handshake}"
                );
            }
        }
        None => assert_eq!(
            (&handshake["lib_name"], &handshake["lib_ver"]),
            (&json!(""), &json!("")),
            "{name} sends no CLIENT SETINFO: {handshake}"
        ),
    }
}

/// A RESP2 flat array of names and values as an object (one level).
fn flat_map(client: &Client, value: &Json) -> Map<String, Json> {
    let items = value
        .as_array()
        .unwrap_or_else(|| panic!("{}: not a flat map: {value}", client.name));
    assert!(
        items.len().is_multiple_of(2),
        "{}: a flat map has an even length: {value}",
        client.name
    );
    items
        .chunks(2)
        .map(|pair| {
            (
                pair[0].as_str().expect("names are strings").to_owned(),
                pair[1].clone(),
            )
        })
        .collect()
}

/// A cart view as an object: a RESP3 map already is one; in RESP2 the view, its lines and its
/// totals are flat arrays, and booleans are 0/1.
fn view_object(client: &Client, view: &Json) -> Json {
    if client.protocol == 3 {
        assert!(
            view.is_object(),
            "{}: a RESP3 view is a map: {view}",
            client.name
        );
        return view.clone();
    }
    let mut fields = flat_map(client, view);
    let items = fields["items"]
        .as_array()
        .expect("items is an array")
        .clone();
    let items = items
        .iter()
        .map(|line| Json::Object(flat_map(client, line)));
    fields.insert("items".into(), Json::Array(items.collect()));
    let totals = flat_map(client, &fields["totals"]);
    fields.insert("totals".into(), Json::Object(totals));
    Json::Object(fields)
}

/// CART.ADD's reply or CART.GET NOVALIDATE's: one line of 2 at 1299, version 1, unvalidated.
fn check_view(client: &Client, call: &str, reply: &Json) {
    let view = view_object(client, reply);
    let line = &view["items"][0];
    let seen = json!({
        "id": view["id"], "kind": view["kind"], "version": view["version"],
        "currency": view["currency"], "lines": view["items"].as_array().map(Vec::len),
        "product": line["product"], "variant": line["variant"], "qty": line["qty"],
        "unit_price": line["unit_price"], "line_total": line["line_total"],
        "price_changed": line["price_changed"], "total": view["totals"]["total"],
        "validation": view["validation"],
    });
    // RESP2 has no booleans: 0.
    let no_price_change = if client.protocol == 3 {
        json!(false)
    } else {
        json!(0)
    };
    let expected = json!({
        "id": "cart:matrix:cart", "kind": "user", "version": 1, "currency": "USD", "lines": 1,
        "product": "sku-1", "variant": "-", "qty": 2, "unit_price": 1299, "line_total": 2598,
        "price_changed": no_price_change, "total": 2598, "validation": "skipped",
    });
    assert_eq!(seen, expected, "{}: {call}: {view}", client.name);
}

fn check_cart(client: &Client, out: &Json) {
    let name = client.name;
    let cart = step(client, out, "cart");
    check_view(client, "CART.ADD", &cart["add"]);
    check_view(client, "CART.GET NOVALIDATE", &cart["get"]);
    let text = cart["json"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: FORMAT JSON is a string: {cart}"));
    let view: Json = serde_json::from_str(text)
        .unwrap_or_else(|error| panic!("{name}: FORMAT JSON ({error}): {text}"));
    assert_eq!(
        (&view["version"], &view["items"][0]["qty"]),
        (&json!(1), &json!(2)),
        "{name}: {view}"
    );
    assert_eq!(view["items"][0]["price_changed"], false, "{name}: {view}");
    let missing: Json = serde_json::from_str(client.missing).expect("Client::missing is JSON");
    assert_eq!(
        cart["missing"], missing,
        "{name}: CART.GET of a missing cart"
    );
    let error = cart["refused"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: CART.SET of a missing line raised nothing: {cart}"));
    assert!(
        error.contains("NOITEM no such line in the cart"),
        "{name}: CART.SET of a missing line: {error}"
    );
}

fn check_pipeline(client: &Client, out: &Json) {
    let pipeline = step(client, out, "pipeline");
    assert_eq!(
        pipeline,
        &json!({
            "replies": 1000, "integers": 1000, "sum": 10 * (1..=100).sum::<i64>(), "errors": [],
            "lines": 1000, "versions": vec![100; 10],
        }),
        "{}: 1,000 adds in one pipeline: 100 lines in each of 10 carts, each at version 100",
        client.name
    );
}

fn check_watch(client: &Client, out: &Json) {
    let name = client.name;
    let watch = step(client, out, "watch");
    assert_eq!(
        watch["clean"],
        json!([1]),
        "{name}: EXEC under an untouched WATCH: {watch}"
    );
    assert_eq!(
        watch["aborted"], true,
        "{name}: EXEC after another connection's change: {watch}"
    );
    let reported_as = watch["reported_as"].as_str().unwrap_or_default();
    assert!(
        reported_as.starts_with(client.watch_abort),
        "{name}: the abort is reported as {}: {watch}",
        client.watch_abort
    );
    assert_eq!(watch["lines"], 2, "{name}: the first transaction's and the other connection's lines, not the aborted one: {watch}");
}

fn check_acl(client: &Client, out: &Json, server: Server) {
    let name = client.name;
    let acl = step(client, out, "acl");
    assert_eq!(acl["whoami"], MATRIX_USER, "{name}: {acl}");
    assert_eq!(acl["added"], 1, "{name}: the ACL user's add: {acl}");
    let text = |field: &str| {
        acl[field]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {field} was not refused: {acl}"))
            .to_owned()
    };
    let (refused_command, refused_key) = (text("refused_command"), text("refused_key"));
    // redis-py names the code by its exception class (NoPermissionError) and drops it.
    for refusal in [&refused_command, &refused_key] {
        assert!(
            refusal.contains("NOPERM") || refusal.contains("NoPermissionError"),
            "{name}: {refusal}"
        );
    }
    let (command_text, key_text) = match server {
        Server::Cartd => (
            "User matrix has no permissions to run the 'save' command",
            "No permissions to access a key",
        ),
        Server::Redis => (
            "no permissions to run the 'save' command",
            "ermissions to access",
        ),
    };
    assert!(
        refused_command.contains(command_text),
        "{name}: SAVE by a -@admin user: {refused_command}"
    );
    assert!(
        refused_key.contains(key_text),
        "{name}: a key outside ~cart:*: {refused_key}"
    );
    let wrong = text("wrong_password");
    assert!(
        wrong.contains("invalid username-password pair or user is disabled."),
        "{name}: a wrong password: {wrong}"
    );
}

fn check_pubsub(client: &Client, out: &Json) {
    let pubsub = step(client, out, "pubsub");
    assert_eq!(
        pubsub,
        &json!({
            "subscribed": true, "published": 1,
            "message": {"channel": "matrix.news", "data": "hello"},
            "psubscribed": true, "ppublished": 1,
            "pmessage": {"channel": "matrix.p.sale", "data": "half-price", "pattern": "matrix.p.*"},
        }),
        "{}: SUBSCRIBE matrix.news, PUBLISH from another connection; PSUBSCRIBE matrix.p.*, PUBLISH matrix.p.sale",
        client.name
    );
}

/// The scripts are right: each, against a real redis-server, sees Redis's own behaviour in
/// every generic step, pub/sub included.
#[test]
fn every_script_sees_redis_server_behave_as_redis() {
    let user: Vec<&str> = ["--user"]
        .into_iter()
        .chain(MATRIX_USER_RULES.split(' '))
        .collect();
    for client in CLIENTS {
        let redis = RedisServer::start(&user);
        let out = client.run(redis.port(), Mode::Plain);
        assert!(
            out.get("cart").is_none(),
            "{}: no CART.* against Redis: {out}",
            client.name
        );
        check_handshake(client, &out, Server::Redis);
        check_pipeline(client, &out);
        check_watch(client, &out);
        check_acl(client, &out, Server::Redis);
        check_pubsub(client, &out);
    }
}

#[test]
fn redis_py_resp2() {
    on_cartd(&REDIS_PY_RESP2);
}

#[test]
fn redis_py_resp3() {
    on_cartd(&REDIS_PY_RESP3);
}

#[test]
fn redis_py_hiredis_resp2() {
    on_cartd(&REDIS_PY_HIREDIS_RESP2);
}

#[test]
fn redis_py_hiredis_resp3() {
    on_cartd(&REDIS_PY_HIREDIS_RESP3);
}

#[test]
fn redis_py_asyncio_resp2() {
    on_cartd(&REDIS_PY_ASYNCIO_RESP2);
}

#[test]
fn redis_py_asyncio_resp3() {
    on_cartd(&REDIS_PY_ASYNCIO_RESP3);
}

#[test]
fn ioredis() {
    on_cartd(&IOREDIS);
}

#[test]
fn node_redis_4() {
    on_cartd(&NODE_REDIS_4);
}

#[test]
fn node_redis_5_resp2() {
    on_cartd(&NODE_REDIS_5_RESP2);
}

#[test]
fn node_redis_5_resp3() {
    on_cartd(&NODE_REDIS_5_RESP3);
}

#[test]
fn ruby_redis() {
    on_cartd(&RUBY_REDIS);
}

#[test]
fn phpredis() {
    on_cartd(&PHPREDIS);
}

#[test]
fn redigo() {
    on_cartd(&REDIGO);
}

#[test]
fn go_redis_v5() {
    on_cartd(&GO_REDIS_V5);
}
