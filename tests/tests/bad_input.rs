//! Bad input: a well-framed but wrong request gets one Redis-style error, changes nothing and
//! leaves the connection usable (docs/PROTOCOL.md, "Errors"). Broken framing is in
//! bad_framing.rs.

mod bad_common;

use bad_common::*;
use cartd_tests::{ok, view, Cartd};
use redis::aio::MultiplexedConnection;
use redis::Value;

// ---------------------------------------------------------------------------------------------
// Well-framed but wrong requests
// ---------------------------------------------------------------------------------------------

/// Wrong arity is `ERR wrong number of arguments for '<command>' command`, with the command's
/// lower-case name; the connection carries on and the cart is unchanged.
#[tokio::test]
async fn wrong_arity_names_the_command() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let cases: &[(&[&str], &str)] = &[
        (&["CART.ADD", CART, "sku-1", "-"], "cart.add"),
        (&["cart.add", CART], "cart.add"),
        (&["CART.SET", CART, "sku-1", "-"], "cart.set"),
        (&["CART.REMOVE", CART, "sku-1"], "cart.remove"),
        (&["CART.GET"], "cart.get"),
        (&["CART.CLEAR"], "cart.clear"),
        (&["CART.MERGE", CART], "cart.merge"),
        (&["CART.SAVE", CART, "sku-1"], "cart.save"),
        (&["CATALOG.GET", "sku-1"], "catalog.get"),
        (&["ECHO"], "echo"),
        (&["ECHO", "a", "b"], "echo"),
        (&["SELECT"], "select"),
        (&["TYPE", CART, CART], "type"),
        (&["DEL"], "del"),
        (&["DBSIZE", "x"], "dbsize"),
    ];
    for (args, name) in cases {
        let expected = format!("ERR wrong number of arguments for '{name}' command");
        refused_exactly(&mut conn, args, &expected).await;
    }
}

/// An unknown command is `ERR unknown command 'FOO', with args beginning with: 'a' 'b' `, as
/// Redis words it; a misspelt cart command is unknown too.
#[tokio::test]
async fn unknown_commands_are_named() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    refused(
        &mut conn,
        &["FOO", "a", "b"],
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b'",
    )
    .await;
    refused(
        &mut conn,
        &["CART.CHEKOUT", CART],
        "ERR unknown command 'CART.CHEKOUT', with args beginning with: 'cart:bad'",
    )
    .await;
    let mut raw = cartd.raw().await;
    assert_eq!(
        raw.call(&["FOO", "a", "b"]).await,
        b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"
    );
    assert_eq!(
        raw.call(&["FOO"]).await,
        b"-ERR unknown command 'FOO', with args beginning with: \r\n"
    );
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
}

/// An unknown command with long non-ASCII arguments still gets the unknown-command error (the
/// echoed arguments are cut to a bounded length), the connection carries on, and it is not
/// left behind in CLIENT LIST.
#[tokio::test]
async fn unknown_command_with_long_non_ascii_args_is_an_error() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let euros = "€".repeat(64);
    let args = [
        "FOO", &euros, &euros, &euros, &euros, &euros, &euros, &euros, &euros,
    ];
    let mut raw = cartd.raw().await;
    let reply = String::from_utf8_lossy(&raw.call(&args).await).into_owned();
    assert!(
        reply.starts_with("-ERR unknown command 'FOO', with args beginning with: '€€€"),
        "{reply:?}"
    );
    assert!(
        reply.len() < 1024,
        "the echo is bounded: {} bytes",
        reply.len()
    );
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
    drop(raw);
    refused(&mut conn, &args, "ERR unknown command 'FOO'").await;
    wait_for_clients(&mut conn, 1).await;
}

/// An unknown option, or an option with a value it does not take, is `ERR syntax error`.
#[tokio::test]
async fn unknown_options_are_syntax_errors() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let cases: &[&[&str]] = &[
        &["CART.ADD", CART, "sku-1", "-", "1", "BOGUS"],
        &["CART.ADD", CART, "sku-1", "-", "1", "BOGUS", "1"],
        &["CART.ADD", CART, "sku-1", "-", "1", "REPLY", "SOMETIMES"],
        &["CART.ADD", CART, "sku-1", "-", "1", "FORMAT", "XML"],
        &["CART.ADD", CART, "sku-1", "-", "1", "REPLY"],
        &["CART.SET", CART, "sku-1", "-", "3", "NOW"],
        &["CART.REMOVE", CART, "sku-1", "-", "FROM", "NOWHERE"],
        &["CART.CLEAR", CART, "ALL"],
        &["CART.GET", CART, "BOGUS"],
        &["SCAN", "0", "BOGUS", "1"],
    ];
    for args in cases {
        refused_exactly(&mut conn, args, "ERR syntax error").await;
    }
}

/// Repeating an option is `ERR syntax error` (PROTOCOL.md: "Repeating an option is `ERR syntax
/// error`") and changes nothing, for every mutation option and for PRICE.
#[tokio::test]
async fn repeated_options_are_syntax_errors() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let add = ["CART.ADD", CART, "sku-1", "-", "1"];
    let repeats: &[&[&str]] = &[
        &["IFVERSION", "2", "IFVERSION", "2"],
        &["IDEMPOTENCY", "t1", "IDEMPOTENCY", "t1"],
        &[
            "PRICE", "250", "CURRENCY", "USD", "PRICE", "250", "CURRENCY", "USD",
        ],
        &["REPLY", "VERSION", "REPLY", "VERSION"],
        &["FORMAT", "JSON", "FORMAT", "JSON"],
        &["REPLY", "VERSION", "REPLY", "NONE"],
    ];
    let mut wrong = Vec::new();
    for options in repeats {
        let args: Vec<&str> = add.iter().chain(options.iter()).copied().collect();
        let before = snapshot(&mut conn, CART).await;
        match cmd_result(&mut conn, &args).await {
            Err(error) if error == "ERR syntax error" => {}
            other => wrong.push(format!("{options:?} replied {other:?}")),
        }
        if snapshot(&mut conn, CART).await != before {
            wrong.push(format!("{options:?} changed the cart"));
        }
        assert_alive(&mut conn).await;
    }
    assert!(
        wrong.is_empty(),
        "repeated options accepted:\n{}",
        wrong.join("\n")
    );
}

/// `cmd` as a `Result` with a short description of a success.
async fn cmd_result(conn: &mut MultiplexedConnection, args: &[&str]) -> Result<String, String> {
    cartd_tests::cmd(conn, args)
        .await
        .map(|value| format!("{value:?}").chars().take(80).collect())
}

/// A quantity, version or count that is not a canonical decimal integer is
/// `ERR value is not an integer or out of range`.
#[tokio::test]
async fn non_integers_are_refused() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let not_integer = "ERR value is not an integer or out of range";
    for qty in ["abc", "1.5", "+1", "01", " 1", "1 ", "1e3", "", "0x10", "١"] {
        refused_exactly(
            &mut conn,
            &["CART.ADD", CART, "sku-1", "-", qty],
            not_integer,
        )
        .await;
        refused_exactly(
            &mut conn,
            &["CART.SET", CART, "sku-1", "-", qty],
            not_integer,
        )
        .await;
    }
    for price in ["12.50", "ten", "-", "99999999999999999999"] {
        refused_exactly(
            &mut conn,
            &[
                "CART.ADD", CART, "sku-1", "-", "1", "PRICE", price, "CURRENCY", "USD",
            ],
            not_integer,
        )
        .await;
    }
    refused_exactly(
        &mut conn,
        &["CART.ADD", CART, "sku-1", "-", "1", "IFVERSION", "two"],
        not_integer,
    )
    .await;
    refused_exactly(
        &mut conn,
        &["CART.ADD", CART, "sku-1", "-", "1", "IFVERSION", "-1"],
        not_integer,
    )
    .await;
    refused_exactly(&mut conn, &["SCAN", "0", "COUNT", "many"], not_integer).await;
}

/// Zero, negative and overflowing quantities, and quantities over max_qty_per_line (999), are
/// refused, and a line is never left partly changed.
#[tokio::test]
async fn bad_quantities_are_refused() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    refused(&mut conn, &["CART.ADD", CART, "sku-1", "-", "0"], "ERR ").await;
    refused(&mut conn, &["CART.ADD", CART, "sku-1", "-", "-1"], "ERR ").await;
    refused(&mut conn, &["CART.SET", CART, "sku-1", "-", "-1"], "ERR ").await;
    let not_integer = "ERR value is not an integer or out of range";
    for huge in ["4294967296", "9223372036854775807", "9223372036854775808"] {
        refused_exactly(
            &mut conn,
            &["CART.ADD", CART, "sku-1", "-", huge],
            not_integer,
        )
        .await;
        refused_exactly(
            &mut conn,
            &["CART.SET", CART, "sku-1", "-", huge],
            not_integer,
        )
        .await;
    }
    refused(
        &mut conn,
        &[
            "CART.ADD", CART, "sku-9", "-", "1000", "PRICE", "1", "CURRENCY", "USD",
        ],
        "LIMIT ",
    )
    .await;
    // sku-1 holds 2: adding 998 would make 1000.
    refused(
        &mut conn,
        &["CART.ADD", CART, "sku-1", "-", "998"],
        "LIMIT ",
    )
    .await;
    refused(
        &mut conn,
        &["CART.SET", CART, "sku-1", "-", "1000"],
        "LIMIT ",
    )
    .await;
    // The boundary itself is fine.
    let cart = ok(
        &mut conn,
        &["CART.ADD", CART, "sku-1", "-", "997", "REPLY", "VERSION"],
    )
    .await;
    assert_eq!(cart, Value::Int(3));
    assert_eq!(view(&mut conn, CART).await["items"][0]["qty"], 999);
}

/// Negative, too large and overflowing prices, bad currencies and a PRICE without CURRENCY
/// are refused; so is a price in another currency than the cart's.
#[tokio::test]
async fn bad_prices_and_currencies_are_refused() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let with_price = |price: &'static str, label: &'static str, currency: &'static str| {
        vec![
            "CART.ADD", CART, "sku-3", "-", "1", "PRICE", price, label, currency,
        ]
    };
    for price in ["-1", "1000000000001", "-9223372036854775808"] {
        refused(&mut conn, &with_price(price, "CURRENCY", "USD"), "ERR ").await;
    }
    for currency in ["US", "USDX", "U$D", "12A", ""] {
        refused(&mut conn, &with_price("100", "CURRENCY", currency), "ERR ").await;
    }
    refused(&mut conn, &with_price("100", "CUR", "USD"), "ERR ").await;
    refused(
        &mut conn,
        &["CART.ADD", CART, "sku-3", "-", "1", "PRICE", "100"],
        "ERR ",
    )
    .await;
    refused(
        &mut conn,
        &with_price("100", "CURRENCY", "EUR"),
        "ERR cart is priced in USD",
    )
    .await;
    // A new line without any price anywhere.
    refused(
        &mut conn,
        &["CART.ADD", CART, "sku-4", "-", "1"],
        "NOPRICE ",
    )
    .await;
    // The largest price is accepted.
    ok(&mut conn, &with_price("1000000000000", "CURRENCY", "usd")).await;
}

/// A key over 256 bytes and a product or variant over 64 bytes are `LIMIT` errors; empty ids
/// are `ERR`; the limits themselves are accepted.
#[tokio::test]
async fn oversized_ids_hit_limits() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let long_key = "k".repeat(257);
    let long_id = "p".repeat(65);
    let long_token = "t".repeat(65);
    let price = ["PRICE", "100", "CURRENCY", "USD"];
    let add = |key: &str, product: &str, variant: &str| -> Vec<String> {
        ["CART.ADD", key, product, variant, "1"]
            .iter()
            .chain(price.iter())
            .map(|arg| arg.to_string())
            .collect()
    };
    let cases = [
        (add(&long_key, "sku-1", "-"), "LIMIT "),
        (add(CART, &long_id, "-"), "LIMIT "),
        (add(CART, "sku-1", &long_id), "LIMIT "),
        (add("", "sku-1", "-"), "ERR "),
        (add(CART, "", "-"), "ERR "),
        (add(CART, "sku-1", ""), "ERR "),
    ];
    for (args, prefix) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&mut conn, &args, prefix).await;
    }
    refused(&mut conn, &["CART.GET", &long_key], "LIMIT ").await;
    refused(
        &mut conn,
        &[
            "CART.ADD",
            CART,
            "sku-1",
            "-",
            "1",
            "IDEMPOTENCY",
            &long_token,
        ],
        "LIMIT ",
    )
    .await;
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(1));

    let longest_key = "k".repeat(256);
    let longest_id = "p".repeat(64);
    let args = add(&longest_key, &longest_id, &longest_id);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&mut conn, &args).await;
    assert_eq!(
        view(&mut conn, &longest_key).await["items"][0]["product"],
        longest_id
    );
}

/// More than max_args_per_command (16) arguments is a `LIMIT` error, before arity or parsing;
/// 16 are fine.
#[tokio::test]
async fn too_many_arguments_is_a_limit() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let mut exists = vec!["EXISTS"];
    exists.extend(std::iter::repeat_n(CART, 15));
    assert_eq!(ok(&mut conn, &exists).await, Value::Int(15), "16 arguments");
    exists.push(CART);
    refused(&mut conn, &exists, "LIMIT ").await;

    let mut add = vec!["CART.ADD", CART, "sku-1", "-", "1", "REPLY", "VERSION"];
    add.extend(std::iter::repeat_n("IFVERSION", 10));
    assert_eq!(add.len(), 17);
    refused(&mut conn, &add, "LIMIT ").await;
    let mut echo = vec!["ECHO"; 17];
    echo[1] = "x";
    refused(&mut conn, &echo, "LIMIT ").await;
}

/// Any three letters used to pass as a currency; only ISO 4217 codes do now (lower case
/// accepted).
#[tokio::test]
async fn a_currency_must_be_an_iso_4217_code() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    for code in ["ZZZ", "QQQ", "US", "USDX"] {
        let refused = cartd_tests::fails(
            &mut conn,
            &[
                "CART.ADD", "cart:ccy", "sku", "-", "1", "PRICE", "5", "CURRENCY", code,
            ],
        )
        .await;
        assert_eq!(
            refused,
            format!("ERR currency must be an ISO 4217 code such as USD or EUR, got '{code}'")
        );
    }
    for code in ["usd", "EUR", "JPY"] {
        let key = format!("cart:{code}");
        cartd_tests::ok(
            &mut conn,
            &[
                "CART.ADD", &key, "sku", "-", "1", "PRICE", "5", "CURRENCY", code,
            ],
        )
        .await;
    }
}
