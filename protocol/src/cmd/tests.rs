//! Parse tests: every command's happy path and each way its arguments can be wrong.

use bytes::Bytes;

use super::*;
use crate::error::ErrorCode;

fn parse(words: &[&str]) -> Result<Command, CommandError> {
    Command::parse(
        words
            .iter()
            .map(|word| Bytes::copy_from_slice(word.as_bytes()))
            .collect(),
    )
}

fn error(words: &[&str]) -> CommandError {
    parse(words).expect_err("the request must be refused")
}

fn message(words: &[&str]) -> String {
    error(words).to_string()
}

#[test]
fn unknown_command_names_the_arguments() {
    assert_eq!(
        message(&["NOPE", "a", "b"]),
        "ERR unknown command 'NOPE', with args beginning with: 'a' 'b' "
    );
}

#[test]
fn unknown_command_with_many_wide_characters_is_shown_whole_characters() {
    let wide = "\u{00e9}".repeat(100);
    let words: Vec<&str> = std::iter::once("NOPE")
        .chain(std::iter::repeat_n(wide.as_str(), 10))
        .collect();
    let shown = message(&words);
    assert!(shown.starts_with("ERR unknown command 'NOPE'"));
    assert!(shown.len() < 600, "{shown}");
}

#[test]
fn arity_errors_use_the_lower_case_name() {
    for (words, name) in [
        (&["CART.ADD", "k", "p", "v"][..], "cart.add"),
        (&["cart.set", "k", "p", "v"][..], "cart.set"),
        (&["CART.REMOVE", "k", "p"][..], "cart.remove"),
        (&["CART.GET"][..], "cart.get"),
        (&["CART.CLEAR"][..], "cart.clear"),
        (&["CART.MERGE", "g"][..], "cart.merge"),
        (&["CART.SAVE", "k", "p"][..], "cart.save"),
        (&["CART.RESTORE", "k"][..], "cart.restore"),
        (&["CATALOG.SET", "p", "v", "1"][..], "catalog.set"),
        (&["CATALOG.GET", "p"][..], "catalog.get"),
        (&["CATALOG.DEL", "p", "v", "x"][..], "catalog.del"),
        (&["STOCK.SET", "p", "v"][..], "stock.set"),
        (&["ECHO"][..], "echo"),
        (&["SELECT"][..], "select"),
        (&["DBSIZE", "x"][..], "dbsize"),
        (&["EXISTS"][..], "exists"),
        (&["DEL"][..], "del"),
        (&["TYPE"][..], "type"),
        (&["TTL", "a", "b"][..], "ttl"),
        (&["PTTL"][..], "pttl"),
        (&["SCAN"][..], "scan"),
        (&["TIME", "x"][..], "time"),
        (&["CLIENT"][..], "client"),
        (&["CONFIG"][..], "config"),
        (&["AUTH"][..], "auth"),
        (&["RESET", "x"][..], "reset"),
    ] {
        assert_eq!(
            message(words),
            format!("ERR wrong number of arguments for '{name}' command"),
            "{words:?}"
        );
    }
}

#[test]
fn cart_add_parses_price_and_options_in_any_order() {
    let command = parse(&[
        "cart.add",
        "cart:1",
        "sku",
        "-",
        "2",
        "reply",
        "version",
        "PRICE",
        "999",
        "currency",
        "usd",
        "IFVERSION",
        "3",
        "IDEMPOTENCY",
        "t1",
    ])
    .unwrap();
    let Command::CartAdd(add) = command else {
        panic!("not an add")
    };
    assert_eq!(add.qty, 2);
    assert_eq!(add.price, Some((999, Currency(*b"USD"))));
    assert_eq!(add.mutation.if_version, Some(3));
    assert_eq!(add.mutation.reply, ReplyMode::Version);
    assert_eq!(add.mutation.idempotency, Some(Bytes::from("t1")));
    assert_ne!(add.mutation.fingerprint, 0);
}

#[test]
fn cart_add_refuses_bad_values() {
    let base = ["CART.ADD", "cart:1", "sku", "-"];
    let with =
        |rest: &[&'static str]| -> Vec<&'static str> { base.iter().chain(rest).copied().collect() };
    assert_eq!(
        message(&with(&["0"])),
        "ERR quantity must be at least 1, got 0"
    );
    assert_eq!(
        message(&with(&["-3"])),
        "ERR quantity must be at least 1, got -3"
    );
    assert_eq!(
        message(&with(&["two"])),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        message(&with(&["99999999999999999999"])),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        message(&with(&["1", "PRICE", "-5", "CURRENCY", "USD"]))
            .split(',')
            .next()
            .unwrap(),
        "ERR price must be between 0 and 1000000000000 minor units"
    );
    assert!(message(&with(&["1", "PRICE", "5", "CURRENCY", "DOLLARS"]))
        .starts_with("ERR currency must be"));
    assert_eq!(
        message(&with(&["1", "PRICE", "5", "USD"])),
        "ERR PRICE must be followed by CURRENCY code"
    );
    assert_eq!(message(&with(&["1", "PRICE", "5"])), "ERR syntax error");
    assert_eq!(message(&with(&["1", "BOGUS"])), "ERR syntax error");
    assert_eq!(
        message(&with(&["1", "IFVERSION", "1", "IFVERSION", "2"])),
        "ERR syntax error"
    );
    assert_eq!(
        message(&with(&["1", "IFVERSION", "-1"])),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(message(&with(&["1", "REPLY", "ALL"])), "ERR syntax error");
    assert_eq!(message(&with(&["1", "FORMAT", "XML"])), "ERR syntax error");
    let token = "t".repeat(65);
    assert_eq!(
        error(&with(&[
            "1",
            "IDEMPOTENCY",
            Box::leak(token.into_boxed_str())
        ]))
        .code,
        ErrorCode::Limit
    );
    let long_key = Box::leak("k".repeat(257).into_boxed_str());
    assert_eq!(
        error(&["CART.ADD", long_key, "sku", "-", "1"]).code,
        ErrorCode::Limit
    );
    let long_product = Box::leak("p".repeat(65).into_boxed_str());
    assert_eq!(
        error(&["CART.ADD", "k", long_product, "-", "1"]).code,
        ErrorCode::Limit
    );
}

#[test]
fn repeated_reply_or_format_is_a_syntax_error() {
    for repeated in [
        ["REPLY", "NONE", "REPLY", "CART"],
        ["FORMAT", "JSON", "FORMAT", "RESP"],
    ] {
        let mut words = vec!["CART.ADD", "cart:1", "sku", "-", "1"];
        words.extend(repeated);
        assert_eq!(message(&words), "ERR syntax error");
    }
}

#[test]
fn cart_set_allows_zero_but_not_negative() {
    assert!(
        matches!(parse(&["CART.SET", "k", "p", "v", "0"]), Ok(Command::CartSet(set)) if set.qty == 0)
    );
    assert_eq!(
        message(&["CART.SET", "k", "p", "v", "-1"]),
        "ERR quantity must be at least 0, got -1"
    );
    assert_eq!(
        message(&["CART.SET", "k", "p", "v", "1", "PRICE", "5"]),
        "ERR syntax error"
    );
}

#[test]
fn cart_remove_reads_from() {
    let Ok(Command::CartRemove(remove)) = parse(&["CART.REMOVE", "k", "p", "v", "from", "saved"])
    else {
        panic!("not a remove")
    };
    assert_eq!(remove.from, LineList::Saved);
    assert_eq!(
        message(&["CART.REMOVE", "k", "p", "v", "FROM", "BASKET"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["CART.REMOVE", "k", "p", "v", "FROM"]),
        "ERR syntax error"
    );
}

#[test]
fn cart_get_reads_its_flags() {
    let Ok(Command::CartGet(get)) = parse(&["CART.GET", "k", "novalidate", "FORMAT", "json"])
    else {
        panic!("not a get")
    };
    assert!(get.novalidate);
    assert_eq!(get.format, Format::Json);
    assert_eq!(
        message(&["CART.GET", "k", "IFVERSION", "1"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["CART.GET", "k", "NOVALIDATE", "NOVALIDATE"]),
        "ERR syntax error"
    );
}

#[test]
fn cart_merge_reads_qty_and_refuses_self_merge() {
    let Ok(Command::CartMerge(merge)) = parse(&["CART.MERGE", "g", "u", "QTY", "sum"]) else {
        panic!("not a merge")
    };
    assert_eq!(merge.qty, MergeQty::Sum);
    assert_eq!(
        message(&["CART.MERGE", "g", "g"]),
        "ERR cannot merge a cart into itself"
    );
    assert_eq!(
        message(&["CART.MERGE", "g", "u", "QTY", "MIN"]),
        "ERR syntax error"
    );
}

#[test]
fn line_commands_take_mutation_options_only() {
    assert!(parse(&["CART.SAVE", "k", "p", "v", "REPLY", "NONE"]).is_ok());
    assert!(parse(&["CART.RESTORE", "k", "p", "v", "IDEMPOTENCY", "x"]).is_ok());
    assert_eq!(
        message(&["CART.SAVE", "k", "p", "v", "FROM", "CART"]),
        "ERR syntax error"
    );
    assert_eq!(message(&["CART.CLEAR", "k", "extra"]), "ERR syntax error");
    assert_eq!(
        message(&["CART.SAVE", "k", "", "v"]),
        "ERR product id must not be empty"
    );
}

#[test]
fn catalog_commands_check_their_values() {
    let Ok(Command::CatalogSet(set)) = parse(&[
        "CATALOG.SET",
        "p",
        "v",
        "1999",
        "eur",
        "STOCK",
        "5",
        "MAXQTY",
        "2",
    ]) else {
        panic!("not a catalog set")
    };
    assert_eq!(
        (set.price, set.currency.as_str(), set.stock, set.max_qty),
        (1999, "EUR", Some(5), Some(2))
    );
    assert_eq!(
        message(&["CATALOG.SET", "p", "v", "x", "USD"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        message(&["CATALOG.SET", "p", "v", "1", "USD", "STOCK", "-1"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        message(&["CATALOG.SET", "p", "v", "1", "USD", "COLOR", "red"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["STOCK.SET", "p", "v", "-2"]),
        "ERR value is not an integer or out of range"
    );
    assert!(parse(&["CATALOG.GET", "p", "v"]).is_ok());
    assert!(parse(&["CATALOG.DEL", "p", "v"]).is_ok());
}

#[test]
fn connection_commands_parse() {
    assert_eq!(parse(&["PING"]), Ok(Command::Ping(None)));
    assert_eq!(message(&["PING", "a", "b"]), "ERR syntax error");
    assert_eq!(error(&["HELLO", "4"]).code, ErrorCode::NoProto);
    assert_eq!(
        message(&["HELLO", "x"]),
        "ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(
        message(&["HELLO", "3", "AUTH", "default"]),
        "ERR syntax error"
    );
    assert!(
        message(&["HELLO", "3", "COLOR", "blue"]).starts_with("ERR Syntax error in HELLO option")
    );
    let Ok(Command::Hello(hello)) =
        parse(&["hello", "3", "auth", "default", "pw", "setname", "me"])
    else {
        panic!("not a hello")
    };
    assert_eq!(hello.protocol, Some(crate::Protocol::Resp3));
    assert_eq!(hello.setname, Some(Bytes::from("me")));
    assert_eq!(
        parse(&["AUTH", "pw"]),
        Ok(Command::Auth {
            user: None,
            password: Bytes::from("pw")
        })
    );
    assert_eq!(message(&["AUTH", "a", "b", "c"]), "ERR syntax error");
    assert_eq!(
        message(&["SELECT", "x"]),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn client_subcommands_parse() {
    assert_eq!(
        parse(&["CLIENT", "id"]),
        Ok(Command::Client(ClientCommand::Id))
    );
    assert!(message(&["CLIENT", "SETNAME", "a b"])
        .starts_with("ERR Client names cannot contain spaces"));
    assert!(message(&["CLIENT", "FLY"]).starts_with("ERR unknown subcommand 'FLY'"));
    assert!(message(&["CLIENT", "SETINFO", "COLOR", "x"]).starts_with("ERR Unrecognized option"));
    assert!(
        matches!(parse(&["CLIENT", "KILL", "ID", "7"]), Ok(Command::Client(ClientCommand::Kill(kill))) if kill.id == Some(7))
    );
    assert_eq!(
        message(&["CLIENT", "KILL", "ID", "7", "SKIPME"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["CLIENT", "KILL", "SKIPME", "maybe"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["CLIENT", "LIST", "ID", "x"]),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn server_commands_parse() {
    assert_eq!(
        parse(&["COMMAND"]),
        Ok(Command::Command(CommandCommand::All))
    );
    assert!(message(&["COMMAND", "FLY"]).starts_with("ERR unknown subcommand"));
    assert_eq!(
        message(&["COMMAND", "LIST", "FILTERBY"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["CONFIG", "GET"]),
        "ERR wrong number of arguments for 'config|get' command"
    );
    assert!(message(&["CONFIG", "SET", "a", "b"]).contains("not supported"));
    assert_eq!(message(&["SHUTDOWN", "SAVE", "NOSAVE"]), "ERR syntax error");
    assert_eq!(message(&["SHUTDOWN", "LATER"]), "ERR syntax error");
    assert_eq!(
        parse(&["INFO", "Memory"]),
        Ok(Command::Info(vec!["memory".into()]))
    );
}

#[test]
fn scan_parses_its_options() {
    let Ok(Command::Scan(scan)) = parse(&["SCAN", "0", "MATCH", "cart:*", "COUNT", "100"]) else {
        panic!("not a scan")
    };
    assert_eq!((scan.cursor, scan.count), (0, 100));
    assert_eq!(message(&["SCAN", "x"]), "ERR invalid cursor");
    assert_eq!(message(&["SCAN", "0", "COUNT", "0"]), "ERR syntax error");
    assert_eq!(message(&["SCAN", "0", "MATCH"]), "ERR syntax error");
}

#[test]
fn same_request_same_fingerprint_other_request_other_fingerprint() {
    let fingerprint = |words: &[&str]| match parse(words).unwrap() {
        Command::CartAdd(add) => add.mutation.fingerprint,
        _ => unreachable!(),
    };
    let first = fingerprint(&["CART.ADD", "k", "p", "v", "1", "IDEMPOTENCY", "t"]);
    assert_eq!(
        first,
        fingerprint(&["cart.add", "k", "p", "v", "1", "IDEMPOTENCY", "t"])
    );
    assert_ne!(
        first,
        fingerprint(&["CART.ADD", "k", "p", "v", "2", "IDEMPOTENCY", "t"])
    );
}
