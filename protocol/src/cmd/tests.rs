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

/// A word of `len` bytes, for the length limits.
fn long(len: usize) -> &'static str {
    Box::leak("x".repeat(len).into_boxed_str())
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
        (&["CART.PROMO", "k", "ADD"][..], "cart.promo"),
        (&["CART.GIFTCARD", "k", "REMOVE"][..], "cart.giftcard"),
        (&["CART.CHECKOUT"][..], "cart.checkout"),
        (&["CART.COMPLETE", "k"][..], "cart.complete"),
        (&["CART.RELEASE", "k"][..], "cart.release"),
        (&["PROMO.SET", "c"][..], "promo.set"),
        (&["PROMO.SET", "c", "{}", "x"][..], "promo.set"),
        (&["PROMO.GET"][..], "promo.get"),
        (&["PROMO.DEL", "a", "b"][..], "promo.del"),
        (&["GIFTCARD.SET", "c", "100"][..], "giftcard.set"),
        (&["GIFTCARD.GET"][..], "giftcard.get"),
        (&["GIFTCARD.DEL", "a", "b"][..], "giftcard.del"),
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
    assert_eq!(
        parse(&["CONFIG", "SET", "a", "b", "c", "d"]),
        Ok(Command::ConfigSet(vec![
            ("a".into(), "b".into()),
            ("c".into(), "d".into())
        ]))
    );
    assert_eq!(
        message(&["CONFIG", "SET", "timeout"]),
        "ERR wrong number of arguments for 'config|set' command"
    );
    assert_eq!(
        message(&["CONFIG", "SET", "timeout", "1", "2"]),
        "ERR syntax error"
    );
    assert_eq!(parse(&["config", "rewrite"]), Ok(Command::ConfigRewrite));
    assert_eq!(
        message(&["CONFIG", "REWRITE", "now"]),
        "ERR wrong number of arguments for 'config|rewrite' command"
    );
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

#[test]
fn promo_commands_parse_any_json_under_a_bounded_code() {
    assert_eq!(
        parse(&[
            "promo.set",
            "SAVE10",
            r#"{"kind": "percent", "percent": 10}"#
        ]),
        Ok(Command::PromoSet(PromoSet {
            code: Bytes::from("SAVE10"),
            json: Bytes::from(r#"{"kind": "percent", "percent": 10}"#),
        }))
    );
    // The server checks the document; the parser passes any bytes through.
    assert!(matches!(
        parse(&["PROMO.SET", "c", "not json"]),
        Ok(Command::PromoSet(set)) if set.json == "not json"
    ));
    assert_eq!(
        parse(&["Promo.Get", "SAVE10"]),
        Ok(Command::PromoGet(PromoGet {
            code: Bytes::from("SAVE10")
        }))
    );
    assert_eq!(
        parse(&["PROMO.DEL", "SAVE10"]),
        Ok(Command::PromoDel(PromoDel {
            code: Bytes::from("SAVE10")
        }))
    );
    assert!(parse(&["PROMO.SET", long(64), "{}"]).is_ok());
    for words in [
        &["PROMO.SET", long(65), "{}"][..],
        &["PROMO.GET", long(65)][..],
        &["PROMO.DEL", long(65)][..],
    ] {
        let refused = error(words);
        assert_eq!(refused.code, ErrorCode::Limit, "{words:?}");
        assert_eq!(refused.message, "promo code is 65 bytes, the limit is 64");
    }
    for words in [
        &["PROMO.SET", "", "{}"][..],
        &["PROMO.GET", ""][..],
        &["PROMO.DEL", ""][..],
    ] {
        assert_eq!(
            message(words),
            "ERR promo code must not be empty",
            "{words:?}"
        );
    }
}

#[test]
fn giftcard_commands_parse_a_balance_and_a_currency() {
    assert_eq!(
        parse(&["giftcard.set", "GC-1", "5000", "usd"]),
        Ok(Command::GiftCardSet(GiftCardSet {
            code: Bytes::from("GC-1"),
            balance: 5000,
            currency: Currency(*b"USD"),
        }))
    );
    assert!(matches!(
        parse(&["GIFTCARD.SET", "GC-1", "0", "EUR"]),
        Ok(Command::GiftCardSet(set)) if set.balance == 0
    ));
    assert_eq!(
        parse(&["GIFTCARD.GET", "GC-1"]),
        Ok(Command::GiftCardGet(GiftCardGet {
            code: Bytes::from("GC-1")
        }))
    );
    assert_eq!(
        parse(&["GiftCard.Del", "GC-1"]),
        Ok(Command::GiftCardDel(GiftCardDel {
            code: Bytes::from("GC-1")
        }))
    );
    assert_eq!(
        message(&["GIFTCARD.SET", "GC-1", "-1", "USD"]),
        "ERR balance must be between 0 and 1000000000000 minor units, got -1"
    );
    assert_eq!(
        message(&["GIFTCARD.SET", "GC-1", "1000000000001", "USD"]),
        "ERR balance must be between 0 and 1000000000000 minor units, got 1000000000001"
    );
    assert_eq!(
        message(&["GIFTCARD.SET", "GC-1", "ten", "USD"]),
        "ERR value is not an integer or out of range"
    );
    assert!(message(&["GIFTCARD.SET", "GC-1", "10", "DOLLARS"]).starts_with("ERR currency must be"));
    assert!(message(&["GIFTCARD.SET", "GC-1", "10", "U5D"]).starts_with("ERR currency must be"));
    for words in [
        &["GIFTCARD.SET", long(65), "10", "USD"][..],
        &["GIFTCARD.GET", long(65)][..],
        &["GIFTCARD.DEL", long(65)][..],
    ] {
        let refused = error(words);
        assert_eq!(refused.code, ErrorCode::Limit, "{words:?}");
        assert_eq!(
            refused.message,
            "gift card code is 65 bytes, the limit is 64"
        );
    }
    assert_eq!(
        message(&["GIFTCARD.SET", "", "10", "USD"]),
        "ERR gift card code must not be empty"
    );
    assert_eq!(
        message(&["GIFTCARD.GET", ""]),
        "ERR gift card code must not be empty"
    );
}

#[test]
fn cart_promo_and_giftcard_read_an_action_a_code_and_options_in_any_order() {
    let Ok(Command::CartPromo(promo)) = parse(&[
        "cart.promo",
        "cart:1",
        "add",
        "SAVE10",
        "reply",
        "version",
        "IFVERSION",
        "4",
    ]) else {
        panic!("not a promo")
    };
    assert_eq!(
        (promo.key, promo.action, promo.code),
        (
            Bytes::from("cart:1"),
            CodeAction::Add,
            Bytes::from("SAVE10")
        )
    );
    assert_eq!(promo.mutation.if_version, Some(4));
    assert_eq!(promo.mutation.reply, ReplyMode::Version);
    let Ok(Command::CartGiftCard(card)) = parse(&[
        "CART.GIFTCARD",
        "cart:1",
        "Remove",
        "GC-1",
        "ifversion",
        "4",
        "REPLY",
        "VERSION",
    ]) else {
        panic!("not a gift card")
    };
    assert_eq!(
        (card.key, card.action, card.code),
        (
            Bytes::from("cart:1"),
            CodeAction::Remove,
            Bytes::from("GC-1")
        )
    );
    assert_eq!(card.mutation, promo.mutation);
    assert_eq!(
        parse(&["CART.PROMO", "k", "ADD", "SAVE10"]),
        Ok(Command::CartPromo(CartPromo {
            key: Bytes::from("k"),
            action: CodeAction::Add,
            code: Bytes::from("SAVE10"),
            mutation: MutationOptions::default(),
        }))
    );
}

#[test]
fn cart_promo_and_giftcard_refuse_bad_input() {
    for name in ["CART.PROMO", "CART.GIFTCARD"] {
        for action in ["APPLY", "ADDD", "", "DEL"] {
            assert_eq!(
                message(&[name, "k", action, "c"]),
                "ERR syntax error",
                "{name} {action}"
            );
        }
        assert_eq!(
            message(&[name, "k", "ADD", "c", "HOLD", "5"]),
            "ERR syntax error"
        );
        assert_eq!(
            message(&[name, "k", "ADD", "c", "IFVERSION"]),
            "ERR syntax error"
        );
        assert_eq!(error(&[name, "k", "ADD", long(65)]).code, ErrorCode::Limit);
        assert!(parse(&[name, "k", "ADD", long(64)]).is_ok());
        assert_eq!(error(&[name, "", "ADD", "c"]).code, ErrorCode::Err);
        assert_eq!(error(&[name, long(257), "ADD", "c"]).code, ErrorCode::Limit);
    }
    assert_eq!(
        message(&["CART.PROMO", "k", "REMOVE", ""]),
        "ERR promo code must not be empty"
    );
    assert_eq!(
        message(&["CART.GIFTCARD", "k", "REMOVE", ""]),
        "ERR gift card code must not be empty"
    );
}

#[test]
fn cart_checkout_reads_hold_among_the_mutation_options() {
    assert_eq!(
        parse(&["CART.CHECKOUT", "cart:1"]),
        Ok(Command::CartCheckout(CartCheckout {
            key: Bytes::from("cart:1"),
            hold_s: None,
            mutation: MutationOptions::default(),
        }))
    );
    let orders: [&[&str]; 3] = [
        &["HOLD", "900", "IFVERSION", "2", "FORMAT", "JSON"],
        &["ifversion", "2", "hold", "900", "format", "json"],
        &["Format", "Json", "IfVersion", "2", "Hold", "900"],
    ];
    for options in orders {
        let words: Vec<&str> = ["cart.checkout", "cart:1"]
            .iter()
            .chain(options)
            .copied()
            .collect();
        let Ok(Command::CartCheckout(checkout)) = parse(&words) else {
            panic!("not a checkout: {words:?}")
        };
        assert_eq!(checkout.hold_s, Some(900), "{words:?}");
        assert_eq!(checkout.mutation.if_version, Some(2), "{words:?}");
        assert_eq!(checkout.mutation.format, Format::Json, "{words:?}");
    }
    for (hold, expected) in [("1", 1), ("86400", 86_400)] {
        assert!(matches!(
            parse(&["CART.CHECKOUT", "k", "HOLD", hold]),
            Ok(Command::CartCheckout(checkout)) if checkout.hold_s == Some(expected)
        ));
    }
}

#[test]
fn cart_checkout_refuses_a_hold_out_of_range_or_repeated() {
    for hold in ["0", "86401", "-5"] {
        assert_eq!(
            message(&["CART.CHECKOUT", "k", "HOLD", hold]),
            format!("ERR HOLD must be between 1 and 86400 seconds, got {hold}")
        );
    }
    assert_eq!(
        message(&["CART.CHECKOUT", "k", "HOLD", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        message(&["CART.CHECKOUT", "k", "HOLD", "99999999999999999999"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(message(&["CART.CHECKOUT", "k", "HOLD"]), "ERR syntax error");
    assert_eq!(
        message(&[
            "CART.CHECKOUT",
            "k",
            "HOLD",
            "60",
            "REPLY",
            "NONE",
            "hold",
            "60"
        ]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["CART.CHECKOUT", "k", "REPLY", "NONE", "REPLY", "CART"]),
        "ERR syntax error"
    );
    assert_eq!(message(&["CART.CHECKOUT", "k", "60"]), "ERR syntax error");
    assert_eq!(
        message(&["CART.CHECKOUT", "k", "ORDER", "o"]),
        "ERR syntax error"
    );
    assert_eq!(error(&["CART.CHECKOUT", long(257)]).code, ErrorCode::Limit);
}

#[test]
fn cart_complete_reads_a_token_and_an_order_in_any_order() {
    assert_eq!(
        parse(&["CART.COMPLETE", "cart:1", "tok"]),
        Ok(Command::CartComplete(CartComplete {
            key: Bytes::from("cart:1"),
            token: Bytes::from("tok"),
            order_id: None,
            mutation: MutationOptions::default(),
        }))
    );
    let orders: [&[&str]; 2] = [
        &["ORDER", "o-17", "IDEMPOTENCY", "t1", "REPLY", "NONE"],
        &["reply", "none", "order", "o-17", "idempotency", "t1"],
    ];
    for options in orders {
        let words: Vec<&str> = ["cart.complete", "cart:1", "tok"]
            .iter()
            .chain(options)
            .copied()
            .collect();
        let Ok(Command::CartComplete(complete)) = parse(&words) else {
            panic!("not a complete: {words:?}")
        };
        assert_eq!(complete.token, Bytes::from("tok"));
        assert_eq!(complete.order_id, Some(Bytes::from("o-17")));
        assert_eq!(complete.mutation.idempotency, Some(Bytes::from("t1")));
        assert_eq!(complete.mutation.reply, ReplyMode::None);
    }
    assert!(parse(&["CART.COMPLETE", "k", long(64), "ORDER", long(128)]).is_ok());
}

#[test]
fn cart_complete_refuses_bad_tokens_and_orders() {
    let refused = error(&["CART.COMPLETE", "k", long(65)]);
    assert_eq!(refused.code, ErrorCode::Limit);
    assert_eq!(
        refused.message,
        "checkout token is 65 bytes, the limit is 64"
    );
    assert_eq!(
        message(&["CART.COMPLETE", "k", ""]),
        "ERR checkout token must not be empty"
    );
    let refused = error(&["CART.COMPLETE", "k", "tok", "ORDER", long(129)]);
    assert_eq!(refused.code, ErrorCode::Limit);
    assert_eq!(refused.message, "order id is 129 bytes, the limit is 128");
    assert_eq!(
        message(&["CART.COMPLETE", "k", "tok", "ORDER", ""]),
        "ERR order id must not be empty"
    );
    assert_eq!(
        message(&["CART.COMPLETE", "k", "tok", "ORDER"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["CART.COMPLETE", "k", "tok", "ORDER", "a", "order", "b"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["CART.COMPLETE", "k", "tok", "HOLD", "5"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["CART.COMPLETE", "k", "tok", "o-17"]),
        "ERR syntax error"
    );
}

#[test]
fn cart_release_reads_a_token_and_mutation_options_only() {
    let Ok(Command::CartRelease(release)) = parse(&[
        "cart.release",
        "cart:1",
        "tok",
        "reply",
        "version",
        "IFVERSION",
        "3",
    ]) else {
        panic!("not a release")
    };
    assert_eq!(
        (release.key, release.token),
        (Bytes::from("cart:1"), Bytes::from("tok"))
    );
    assert_eq!(release.mutation.reply, ReplyMode::Version);
    assert_eq!(release.mutation.if_version, Some(3));
    assert_eq!(
        error(&["CART.RELEASE", "k", long(65)]).code,
        ErrorCode::Limit
    );
    assert_eq!(
        message(&["CART.RELEASE", "k", ""]),
        "ERR checkout token must not be empty"
    );
    assert_eq!(
        message(&["CART.RELEASE", "k", "tok", "ORDER", "o"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&[
            "CART.RELEASE",
            "k",
            "tok",
            "IFVERSION",
            "1",
            "IFVERSION",
            "1"
        ]),
        "ERR syntax error"
    );
}

#[test]
fn new_commands_map_to_their_rows_and_new_mutations_carry_a_fingerprint() {
    let cases: [(&[&str], CommandId); 11] = [
        (
            &["CART.PROMO", "k", "ADD", "c", "IDEMPOTENCY", "t"],
            CommandId::CartPromo,
        ),
        (
            &["CART.GIFTCARD", "k", "ADD", "c", "IDEMPOTENCY", "t"],
            CommandId::CartGiftCard,
        ),
        (
            &["CART.CHECKOUT", "k", "IDEMPOTENCY", "t"],
            CommandId::CartCheckout,
        ),
        (
            &["CART.COMPLETE", "k", "tok", "IDEMPOTENCY", "t"],
            CommandId::CartComplete,
        ),
        (
            &["CART.RELEASE", "k", "tok", "IDEMPOTENCY", "t"],
            CommandId::CartRelease,
        ),
        (&["PROMO.SET", "c", "{}"], CommandId::PromoSet),
        (&["PROMO.GET", "c"], CommandId::PromoGet),
        (&["PROMO.DEL", "c"], CommandId::PromoDel),
        (&["GIFTCARD.SET", "c", "1", "USD"], CommandId::GiftCardSet),
        (&["GIFTCARD.GET", "c"], CommandId::GiftCardGet),
        (&["GIFTCARD.DEL", "c"], CommandId::GiftCardDel),
    ];
    for (words, id) in cases {
        let mut command = parse(words).unwrap();
        assert_eq!(command.id(), id, "{words:?}");
        assert_eq!(
            id.spec().is_write(),
            !words[0].ends_with(".GET"),
            "{words:?}"
        );
        let cart_command = id.spec().keys.first == 1;
        assert_eq!(command.mutation_mut().is_some(), cart_command, "{words:?}");
        if let Some(mutation) = command.mutation_mut() {
            assert_ne!(mutation.fingerprint, 0, "{words:?}");
        }
    }
}

#[test]
fn slowlog_parses_as_redis_does() {
    assert_eq!(
        parse(&["SLOWLOG", "GET"]),
        Ok(Command::Slowlog(SlowlogCommand::Get(Some(10))))
    );
    assert_eq!(
        parse(&["slowlog", "get", "-1"]),
        Ok(Command::Slowlog(SlowlogCommand::Get(None)))
    );
    for count in ["-2", "x"] {
        assert_eq!(
            message(&["SLOWLOG", "GET", count]),
            "ERR count should be greater than or equal to -1"
        );
    }
    assert_eq!(
        message(&["SLOWLOG", "GET", "1", "2"]),
        "ERR unknown subcommand or wrong number of arguments for 'get'. Try SLOWLOG HELP."
    );
    assert_eq!(
        message(&["SLOWLOG", "LEN", "3"]),
        "ERR wrong number of arguments for 'slowlog|len' command"
    );
    assert_eq!(
        message(&["SLOWLOG", "FOO"]),
        "ERR unknown subcommand 'FOO'. Try SLOWLOG HELP."
    );
}

#[test]
fn latency_memory_and_object_parse_as_redis_does() {
    assert_eq!(
        message(&["LATENCY", "HISTORY"]),
        "ERR wrong number of arguments for 'latency|history' command"
    );
    assert_eq!(
        parse(&["LATENCY", "RESET"]),
        Ok(Command::Latency(LatencyCommand::Reset(Vec::new())))
    );
    assert_eq!(
        message(&["LATENCY", "FOO"]),
        "ERR unknown subcommand 'FOO'. Try LATENCY HELP."
    );
    assert_eq!(
        parse(&["MEMORY", "USAGE", "k", "SAMPLES", "0"]),
        Ok(Command::Memory(MemoryCommand::Usage("k".into())))
    );
    assert_eq!(
        message(&["MEMORY", "USAGE", "k", "SAMPLES"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["MEMORY", "USAGE", "k", "bar", "1"]),
        "ERR syntax error"
    );
    assert_eq!(
        message(&["MEMORY", "USAGE", "k", "SAMPLES", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        message(&["OBJECT", "ENCODING"]),
        "ERR wrong number of arguments for 'object|encoding' command"
    );
    assert_eq!(
        parse(&["object", "freq", "k"]),
        Ok(Command::Object(ObjectCommand::Freq("k".into())))
    );
    assert_eq!(
        message(&["OBJECT", "FOO", "k"]),
        "ERR unknown subcommand 'FOO'. Try OBJECT HELP."
    );
}

#[test]
fn client_reply_pause_and_flags_parse_as_redis_does() {
    let client = |words: &[&str]| match parse(words) {
        Ok(Command::Client(client)) => client,
        other => panic!("{words:?}: {other:?}"),
    };
    assert_eq!(
        client(&["CLIENT", "REPLY", "skip"]),
        ClientCommand::Reply(ClientReply::Skip)
    );
    assert_eq!(message(&["CLIENT", "REPLY", "maybe"]), "ERR syntax error");
    assert_eq!(
        client(&["CLIENT", "PAUSE", "100", "write"]),
        ClientCommand::Pause {
            timeout_ms: 100,
            writes_only: true
        }
    );
    assert_eq!(
        message(&["CLIENT", "PAUSE", "x"]),
        "ERR timeout is not an integer or out of range"
    );
    assert_eq!(
        message(&["CLIENT", "PAUSE", "-1"]),
        "ERR timeout is negative"
    );
    assert_eq!(
        message(&["CLIENT", "PAUSE", "1", "bogus"]),
        "ERR CLIENT PAUSE mode must be WRITE or ALL"
    );
    assert_eq!(
        message(&["CLIENT", "PAUSE"]),
        "ERR wrong number of arguments for 'client|pause' command"
    );
    assert_eq!(
        client(&["CLIENT", "NO-EVICT", "on"]),
        ClientCommand::NoEvict(true)
    );
    assert_eq!(message(&["CLIENT", "NO-TOUCH", "x"]), "ERR syntax error");
    assert_eq!(
        message(&["CLIENT", "NO-EVICT"]),
        "ERR wrong number of arguments for 'client|no-evict' command"
    );
}
