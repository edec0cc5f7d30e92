//! cartd describes itself as a Redis server does (docs/PROTOCOL.md, "Redis commands"): COMMAND
//! (COUNT, LIST, INFO, DOCS), the INFO sections and their counters, and CONFIG (GET, SET,
//! RESETSTAT), through the `redis` crate in RESP2 and RESP3.
//!
//! Connection commands, AUTH and CLIENT are in `redis_connection.rs`; the keyspace commands,
//! SCAN, pipelining, SHUTDOWN and maxclients in `redis_keyspace.rs`.

use std::collections::{HashMap, HashSet};

use cartd_tests::{
    array, cart_add_version, fails, field, info, info_field, info_number, int, ok, pairs, text,
    Cartd,
};
use redis::Value;

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
    assert_eq!(info_field(&text, "redis_version").as_deref(), Some("7.4.0"));
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
        cart_add_version(&mut conn, key, "sku", 1).await;
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
        cart_add_version(&mut conn, "cart:stats", "sku", qty).await;
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
        cart_add_version(&mut conn, key, "sku", 1).await;
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
            HashSet::from(
                [
                    "guest_ttl_s",
                    "user_ttl_s",
                    "idempotency_ttl_s",
                    "upstream_price_ttl_s",
                    "upstream_stock_ttl_s"
                ]
                .map(String::from)
            )
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
        let pricing = pairs(&ok(conn, &["CONFIG", "GET", "checkout_hold_s", "upstream_t*"]).await);
        let pricing: HashMap<String, String> = pricing
            .into_iter()
            .map(|(name, value)| (name, text(&value)))
            .collect();
        assert_eq!(pricing["checkout_hold_s"], "900");
        assert_eq!(pricing["upstream_timeout_ms"], "30");
    }
}

/// CONFIG SET of a parameter fixed at start is refused as Redis refuses an immutable one, and
/// the other pairs of the request change nothing (the run-time ones are in
/// introspection_tools.rs).
#[tokio::test]
async fn config_set_refuses_parameters_fixed_at_start() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let error = fails(
        &mut conn,
        &["CONFIG", "SET", "maxclients", "5", "shards", "8"],
    )
    .await;
    assert_eq!(
        error,
        "ERR CONFIG SET failed (possibly related to argument 'shards') - can't set immutable config"
    );
    let value = ok(&mut conn, &["CONFIG", "GET", "maxclients"]).await;
    assert_eq!(text(&pairs(&value)[0].1), "10000");
}

/// CONFIG RESETSTAT zeroes the command statistics.
#[tokio::test]
async fn config_resetstat_zeroes_commandstats() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    cart_add_version(&mut conn, "cart:reset", "sku", 1).await;
    cart_add_version(&mut conn, "cart:reset", "sku", 1).await;
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
    cart_add_version(&mut conn, "cart:reset", "sku", 1).await;
    let again = info(&mut conn, &["commandstats"]).await;
    assert!(info_field(&again, "cmdstat_cart.add")
        .expect("counted again")
        .starts_with("calls=1,"));
}
