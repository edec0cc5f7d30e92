//! Pub/sub as Redis has it (SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, PUBLISH,
//! PUBSUB; RESP2 subscriber mode, RESP3 pushes) and cartd's own event channels: every change
//! of a cart on `__cart__:<key>`, every change of a kind on `__cartevent__:<kind>`, price and
//! stock changes on `__product__:<product>`. Before this, every one of these commands was
//! unknown to cartd.

use std::time::Duration;

use cartd_tests::{encode_command, info, info_number, w, Cartd, RawConn};
use serde_json::Value as Json;

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 reply")
}

/// Reads replies until one is a message (RESP2 array or RESP3 push) whose first element is
/// `kind`, and returns its last element (the payload), skipping nothing else: anything
/// before it fails the test.
async fn next_message(raw: &mut RawConn) -> String {
    let reply = text(raw.read_reply().await);
    let lines: Vec<&str> = reply.split("\r\n").collect();
    assert!(
        lines[0] == "*3" || lines[0] == ">3" || lines[0] == "*4" || lines[0] == ">4",
        "not a message: {reply:?}"
    );
    lines[lines.len() - 2].to_owned()
}

/// The JSON payload of the next message.
async fn next_event(raw: &mut RawConn) -> Json {
    serde_json::from_str(&next_message(raw).await).expect("a JSON event")
}

/// RESP2: each channel confirmed with its own reply and the running count; a message as
/// `message channel payload`, a pattern's as `pmessage pattern channel payload`.
#[tokio::test]
async fn resp2_subscriber_mode_is_redis_s() {
    let cartd = Cartd::start_default();
    let mut sub = cartd.raw().await;
    sub.send(&encode_command(&["SUBSCRIBE", "news", "sport"]))
        .await;
    assert_eq!(
        text(sub.read_reply().await),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        text(sub.read_reply().await),
        "*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n"
    );
    sub.send(&encode_command(&["PSUBSCRIBE", "n*"])).await;
    assert_eq!(
        text(sub.read_reply().await),
        "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n"
    );

    let mut publisher = cartd.raw().await;
    assert_eq!(
        text(publisher.call(&["PUBLISH", "news", "hello"]).await),
        ":2\r\n",
        "the channel subscriber and the pattern both receive it"
    );
    assert_eq!(
        text(sub.read_reply().await),
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    assert_eq!(
        text(sub.read_reply().await),
        "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    assert_eq!(
        text(publisher.call(&["PUBLISH", "nobody", "x"]).await),
        ":1\r\n",
        "the pattern n* matches nobody"
    );
    assert_eq!(
        text(sub.read_reply().await),
        "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$6\r\nnobody\r\n$1\r\nx\r\n"
    );
}

/// While subscribed in RESP2 only the subscriber commands (and PING, answered as `pong ""`)
/// run; PUBSUB tells channels and counts; UNSUBSCRIBE without arguments leaves every
/// channel, one reply each, and the connection is a normal one again.
#[tokio::test]
async fn resp2_subscribed_connections_run_only_subscriber_commands() {
    let cartd = Cartd::start_default();
    let mut sub = cartd.raw().await;
    sub.send(&encode_command(&["SUBSCRIBE", "news", "sport"]))
        .await;
    sub.read_reply().await;
    sub.read_reply().await;
    sub.call(&["PSUBSCRIBE", "n*"]).await;
    let mut publisher = cartd.raw().await;
    let refused = text(sub.call(&["CART.GET", "cart:1"]).await);
    assert_eq!(
        refused,
        "-ERR Can't execute 'cart.get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    assert_eq!(
        text(sub.call(&["PING"]).await),
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    );

    let introspection = text(
        publisher
            .call(&["PUBSUB", "NUMSUB", "news", "sport", "none"])
            .await,
    );
    assert_eq!(
        introspection,
        "*6\r\n$4\r\nnews\r\n:1\r\n$5\r\nsport\r\n:1\r\n$4\r\nnone\r\n:0\r\n"
    );
    assert_eq!(text(publisher.call(&["PUBSUB", "NUMPAT"]).await), ":1\r\n");
    let channels = text(publisher.call(&["PUBSUB", "CHANNELS", "s*"]).await);
    assert_eq!(channels, "*1\r\n$5\r\nsport\r\n");

    sub.send(&encode_command(&["UNSUBSCRIBE"])).await;
    let first = text(sub.read_reply().await);
    let second = text(sub.read_reply().await);
    assert!(
        first.starts_with("*3\r\n$11\r\nunsubscribe\r\n") && first.ends_with(":2\r\n"),
        "{first:?}"
    );
    assert!(
        second.starts_with("*3\r\n$11\r\nunsubscribe\r\n") && second.ends_with(":1\r\n"),
        "{second:?}"
    );
    let mut names = [&first, &second].map(|reply| reply.split("\r\n").nth(4).unwrap().to_owned());
    names.sort();
    assert_eq!(names, ["news".to_owned(), "sport".to_owned()]);
    assert_eq!(
        text(sub.call(&["PUNSUBSCRIBE"]).await),
        "*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:0\r\n"
    );
    assert_eq!(
        text(sub.call(&["UNSUBSCRIBE"]).await),
        "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
        "nothing left: one reply with a null channel"
    );
    assert_eq!(text(sub.call(&["PING"]).await), "+PONG\r\n");
    assert_eq!(text(sub.call(&["EXISTS", "cart:1"]).await), ":0\r\n");
    assert_eq!(
        text(publisher.call(&["PUBLISH", "news", "again"]).await),
        ":0\r\n"
    );
}

/// RESP3: confirmations and messages are pushes (`>`), and a subscribed connection goes on
/// running every command, its replies and the pushes each whole and in order.
#[tokio::test]
async fn resp3_messages_are_pushes_between_replies() {
    let cartd = Cartd::start_default();
    let mut sub = cartd.raw().await;
    sub.call(&["HELLO", "3"]).await;
    assert_eq!(
        text(sub.call(&["SUBSCRIBE", "news"]).await),
        ">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        text(sub.call(&["PUBLISH", "news", "to myself"]).await),
        ">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$9\r\nto myself\r\n",
        "its own message comes first, as in Redis"
    );
    assert_eq!(text(sub.read_reply().await), ":1\r\n");
    let mut publisher = cartd.raw().await;
    for at in 0..100 {
        publisher
            .send(&encode_command(&["PUBLISH", "news", &format!("m{at}")]))
            .await;
    }
    let mut received = 0;
    let mut answered = false;
    sub.send(&encode_command(&["PING"])).await;
    while received < 100 || !answered {
        let reply = text(sub.read_reply().await);
        if reply.starts_with(">3\r\n$7\r\nmessage") {
            assert!(
                reply.ends_with(&format!("m{received}\r\n")),
                "in order: {reply:?}"
            );
            received += 1;
        } else {
            assert_eq!(reply, "+PONG\r\n");
            answered = true;
        }
    }
    for _ in 0..100 {
        publisher.read_reply().await;
    }
}

/// Every change of a cart reaches its channel, with its kind, version and what changed;
/// the same events reach each kind's channel; expiry is `abandon`, DEL `delete`.
#[tokio::test]
async fn cart_changes_are_published_on_the_cart_and_kind_channels() {
    let cartd =
        Cartd::start("[carts]\nguest_prefix = \"guest:\"\nguest_ttl_s = 1\nuser_ttl_s = 3600\n");
    let mut per_cart = cartd.raw().await;
    per_cart.call(&["SUBSCRIBE", "__cart__:cart:alice"]).await;
    let mut adds = cartd.raw().await;
    adds.call(&["SUBSCRIBE", "__cartevent__:add"]).await;
    let mut gone = cartd.raw().await;
    gone.send(&encode_command(&[
        "SUBSCRIBE",
        "__cartevent__:abandon",
        "__cartevent__:delete",
        "__cartevent__:merge",
    ]))
    .await;
    for _ in 0..3 {
        gone.read_reply().await;
    }

    let mut conn = cartd.raw().await;
    let add = w("CART.ADD cart:alice mug - 2 PRICE 1299 CURRENCY USD REPLY VERSION");
    assert_eq!(text(conn.call(&add).await), ":1\r\n");
    let event = next_event(&mut per_cart).await;
    assert_eq!(event["key"], "cart:alice");
    assert_eq!(event["kind"], "add");
    assert_eq!(event["version"], 1);
    assert_eq!(event["detail"]["product"], "mug");
    assert_eq!(event["detail"]["qty"], 2);
    assert!(event["at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        next_event(&mut adds).await,
        event,
        "the same event on the kind channel"
    );

    conn.call(&w("CART.SET cart:alice mug - 5")).await;
    let event = next_event(&mut per_cart).await;
    assert_eq!(
        (event["kind"].as_str(), event["version"].as_u64()),
        (Some("update"), Some(2))
    );
    conn.call(&w("CART.REMOVE cart:alice mug -")).await;
    let event = next_event(&mut per_cart).await;
    assert_eq!(
        (event["kind"].as_str(), event["version"].as_u64()),
        (Some("remove"), Some(3))
    );

    // Another cart's changes are not on this cart's channel.
    conn.call(&w("CART.ADD cart:bob mug - 1 PRICE 1299 CURRENCY USD"))
        .await;
    assert_eq!(next_event(&mut adds).await["key"], "cart:bob");
    conn.call(&w("CART.ADD guest:9 cup - 1 PRICE 500 CURRENCY USD"))
        .await;
    assert_eq!(next_event(&mut adds).await["key"], "guest:9");
    conn.call(&w("CART.MERGE guest:9 cart:alice")).await;
    let merges = [next_event(&mut gone).await, next_event(&mut gone).await];
    assert!(merges.iter().all(|event| event["kind"] == "merge"));
    let event = next_event(&mut per_cart).await;
    assert_eq!(
        (event["kind"].as_str(), event["version"].as_u64()),
        (Some("merge"), Some(4))
    );
}

/// A cart that expires is published as `abandon`, a deleted one as `delete`, both gone.
#[tokio::test]
async fn expiry_and_deletion_are_published() {
    let cartd =
        Cartd::start("[carts]\nguest_prefix = \"guest:\"\nguest_ttl_s = 1\nuser_ttl_s = 3600\n");
    let mut per_cart = cartd.raw().await;
    per_cart.call(&["SUBSCRIBE", "__cart__:cart:alice"]).await;
    let mut adds = cartd.raw().await;
    adds.call(&["SUBSCRIBE", "__cartevent__:add"]).await;
    let mut gone = cartd.raw().await;
    gone.send(&encode_command(&[
        "SUBSCRIBE",
        "__cartevent__:abandon",
        "__cartevent__:delete",
    ]))
    .await;
    gone.read_reply().await;
    gone.read_reply().await;
    let mut conn = cartd.raw().await;
    conn.call(&w("CART.ADD cart:alice mug - 2 PRICE 1299 CURRENCY USD"))
        .await;
    next_event(&mut per_cart).await;
    next_event(&mut adds).await;
    conn.call(&w("CART.ADD guest:10 cup - 1 PRICE 500 CURRENCY USD"))
        .await;
    next_event(&mut adds).await;
    let abandoned = next_event(&mut gone).await;
    assert_eq!(
        abandoned["kind"], "abandon",
        "a guest cart expires after 1 s"
    );
    assert_eq!(abandoned["key"], "guest:10");
    assert_eq!(abandoned["gone"], true);

    assert_eq!(text(conn.call(&["DEL", "cart:alice"]).await), ":1\r\n");
    let deleted = next_event(&mut gone).await;
    assert_eq!(
        (deleted["kind"].as_str(), deleted["key"].as_str()),
        (Some("delete"), Some("cart:alice"))
    );
    let event = next_event(&mut per_cart).await;
    assert_eq!(event["kind"], "delete");
    assert!(
        !per_cart.is_closed().await && per_cart.buffered().is_empty(),
        "nothing else on the cart's channel: {:?}",
        String::from_utf8_lossy(per_cart.buffered())
    );
}

/// One price change of a product held in thousands of carts is one message on the
/// product's channel, not one per cart; stock changes and deletions too. No cart event is
/// published for it: the carts did not change.
#[tokio::test]
async fn a_price_change_is_one_message_on_the_product_channel() {
    const CARTS: usize = 20_000;
    let cartd = Cartd::start_default();
    let mut conn = cartd.raw().await;
    let mut pipeline = Vec::new();
    for cart in 0..CARTS {
        pipeline.extend(encode_command(&w(&format!(
            "CART.ADD cart:{cart} sku-9 - 1 PRICE 1000 CURRENCY USD REPLY NONE"
        ))));
    }
    conn.send(&pipeline).await;
    for _ in 0..CARTS {
        conn.read_reply().await;
    }
    let mut product = cartd.raw().await;
    product.call(&["SUBSCRIBE", "__product__:sku-9"]).await;
    let mut everything = cartd.raw().await;
    everything.call(&["PSUBSCRIBE", "__cart*"]).await;

    assert_eq!(
        text(conn.call(&w("CATALOG.SET sku-9 - 900 USD")).await),
        "+OK\r\n"
    );
    let change: Json = serde_json::from_str(&next_message(&mut product).await).unwrap();
    assert_eq!(change["product"], "sku-9");
    assert_eq!(change["variant"], "-");
    assert_eq!(change["price"], 900);
    assert_eq!(change["currency"], "USD");
    assert_eq!(change["deleted"], false);
    assert_eq!(text(conn.call(&w("STOCK.SET sku-9 - 3")).await), "+OK\r\n");
    let change: Json = serde_json::from_str(&next_message(&mut product).await).unwrap();
    assert_eq!(
        (change["stock"].as_i64(), change["price"].as_i64()),
        (Some(3), Some(900))
    );
    assert_eq!(text(conn.call(&w("CATALOG.DEL sku-9 -")).await), ":1\r\n");
    let change: Json = serde_json::from_str(&next_message(&mut product).await).unwrap();
    assert_eq!(change["deleted"], true);
    assert!(!product.is_closed().await);
    assert!(
        product.buffered().is_empty(),
        "exactly one message per change"
    );
    assert!(
        everything.buffered().is_empty(),
        "no cart event: {:?}",
        String::from_utf8_lossy(everything.buffered())
    );
    let stats = info(&mut cartd.client(false).await, &["stats"]).await;
    assert_eq!(info_number(&stats, "pubsub_messages_delivered"), 3);
}

/// A transaction's changes are published as they apply, each cart's in version order.
#[tokio::test]
async fn a_transaction_publishes_each_change() {
    let cartd = Cartd::start_default();
    let mut sub = cartd.raw().await;
    sub.call(&["PSUBSCRIBE", "__cart__:cart:t*"]).await;
    let mut conn = cartd.raw().await;
    let mut batch = encode_command(&["MULTI"]);
    batch.extend(encode_command(&w(
        "CART.ADD cart:t1 mug - 1 PRICE 100 CURRENCY USD",
    )));
    batch.extend(encode_command(&w(
        "CART.ADD cart:t2 mug - 1 PRICE 100 CURRENCY USD",
    )));
    batch.extend(encode_command(&w(
        "CART.ADD cart:t1 cup - 1 PRICE 100 CURRENCY USD",
    )));
    batch.extend(encode_command(&["EXEC"]));
    conn.send(&batch).await;
    for _ in 0..5 {
        conn.read_reply().await;
    }
    let events: Vec<(String, u64)> = {
        let mut events = Vec::new();
        for _ in 0..3 {
            let event = next_event(&mut sub).await;
            events.push((
                event["key"].as_str().unwrap().to_owned(),
                event["version"].as_u64().unwrap(),
            ));
        }
        events
    };
    assert_eq!(
        events,
        [
            ("cart:t1".to_owned(), 1),
            ("cart:t2".to_owned(), 1),
            ("cart:t1".to_owned(), 2)
        ]
    );
    assert!(!sub.is_closed().await);
    assert!(
        sub.buffered().is_empty(),
        "each change once: {:?}",
        String::from_utf8_lossy(sub.buffered())
    );
    // Subscribing cannot be queued: it would mix its replies into EXEC's.
    let mut batch = encode_command(&["MULTI"]);
    batch.extend(encode_command(&["SUBSCRIBE", "x"]));
    batch.extend(encode_command(&["EXEC"]));
    conn.send(&batch).await;
    assert_eq!(text(conn.read_reply().await), "+OK\r\n");
    assert!(text(conn.read_reply().await).starts_with("-ERR SUBSCRIBE is not allowed inside MULTI"));
    assert!(text(conn.read_reply().await).starts_with("-EXECABORT"));
}

/// cartd's event channels carry only the store's own events, and who may hear them follows
/// the ACL: channel rules (`&pattern`, `allchannels`; none for a new user, as Redis 7's
/// default), and cart events only for carts the user may read.
#[tokio::test]
async fn who_may_listen_follows_the_acl() {
    let cartd = Cartd::start_default();
    let mut admin = cartd.raw().await;
    assert!(
        text(admin.call(&["PUBLISH", "__cart__:cart:1", "fake"]).await)
            .starts_with("-ERR channels under __cart__:")
    );
    assert!(text(admin.call(&["PUBLISH", "__product__:sku", "fake"]).await).starts_with("-ERR"));
    for rules in [
        "ACL SETUSER nochannels on >pw ~* +@all",
        "ACL SETUSER alice on >pw ~cart:alice* &* +@all",
        "ACL SETUSER feed on >pw ~* &__product__:* &news +@all",
    ] {
        assert_eq!(text(admin.call(&w(rules)).await), "+OK\r\n", "{rules}");
    }
    let denied = "-NOPERM No permissions to access a channel\r\n";

    let mut nochannels = cartd.raw().await;
    nochannels.call(&["AUTH", "nochannels", "pw"]).await;
    assert_eq!(text(nochannels.call(&["SUBSCRIBE", "news"]).await), denied);
    assert_eq!(
        text(nochannels.call(&["PUBLISH", "news", "x"]).await),
        denied
    );

    let mut alice = cartd.raw().await;
    alice.call(&["AUTH", "alice", "pw"]).await;
    assert_eq!(
        text(alice.call(&["SUBSCRIBE", "__cart__:cart:bob"]).await),
        denied
    );
    assert_eq!(
        text(alice.call(&["SUBSCRIBE", "__cartevent__:add"]).await),
        denied
    );
    assert_eq!(
        text(alice.call(&["PSUBSCRIBE", "__cart__:*"]).await),
        denied
    );
    assert_eq!(
        text(alice.call(&["SUBSCRIBE", "__cart__:cart:alice"]).await),
        "*3\r\n$9\r\nsubscribe\r\n$19\r\n__cart__:cart:alice\r\n:1\r\n"
    );

    let mut feed = cartd.raw().await;
    feed.call(&["AUTH", "feed", "pw"]).await;
    assert!(text(feed.call(&["SUBSCRIBE", "__product__:sku"]).await).starts_with("*3"));
    let mut feed2 = cartd.raw().await;
    feed2.call(&["AUTH", "feed", "pw"]).await;
    assert_eq!(
        text(feed2.call(&["PSUBSCRIBE", "n*"]).await),
        denied,
        "a pattern only as granted"
    );
    assert!(text(feed2.call(&["PSUBSCRIBE", "__product__:*"]).await).starts_with("*3"));
    let getuser = text(admin.call(&["ACL", "GETUSER", "feed"]).await);
    assert!(getuser.contains("&__product__:* &news"), "{getuser}");
    let log = text(admin.call(&["ACL", "LOG"]).await);
    assert!(log.contains("channel"), "denials are logged: {log}");
    let stats = info(&mut cartd.client(false).await, &["stats"]).await;
    assert!(info_number(&stats, "acl_access_denied_channel") >= 6);
}

/// A subscriber that stops reading is closed once its messages pass the pubsub output
/// limit, and the publisher is never slowed: it gets its replies while the subscriber
/// holds nothing more.
#[tokio::test]
async fn a_subscriber_that_does_not_read_is_closed_and_never_slows_publishers() {
    let cartd =
        Cartd::start("[server]\nclient_output_buffer_limit_pubsub = \"pubsub 2mb 1mb 60\"\n");
    let mut slow = cartd.raw().await;
    slow.call(&["SUBSCRIBE", "flood"]).await;
    let mut fast = cartd.raw().await;
    fast.call(&["SUBSCRIBE", "flood"]).await;
    let mut publisher = cartd.raw().await;
    let payload = "x".repeat(64 * 1024);
    // One message at a time, the reading subscriber taking each before the next is sent: it
    // never holds more than one (however slow this machine is), while the other never reads.
    let mut counts = Vec::new();
    for _ in 0..400 {
        counts.push(text(publisher.call(&["PUBLISH", "flood", &payload]).await));
        assert!(
            text(fast.read_reply().await).starts_with("*3\r\n$7\r\nmessage"),
            "the reading subscriber gets every message"
        );
    }
    assert_eq!(counts.first().map(String::as_str), Some(":2\r\n"));
    assert_eq!(
        counts.last().map(String::as_str),
        Some(":1\r\n"),
        "the slow subscriber was closed along the way"
    );
    let mut closed = false;
    for _ in 0..50 {
        if slow.is_closed().await {
            closed = true;
            break;
        }
    }
    assert!(closed, "the slow subscriber's connection is closed");
    // Closed by whichever saw it first: its mailbox (messages not yet taken) or its
    // connection (messages taken, not read): both count here.
    let stats = info(&mut cartd.client(false).await, &["stats"]).await;
    assert_eq!(
        info_number(&stats, "client_output_buffer_limit_disconnections"),
        1
    );
    assert!(cartd.log().contains("client-output-buffer-limit"));
}

/// A connection's subscriptions end with it: a publish afterwards reaches nobody.
#[tokio::test]
async fn subscriptions_end_with_the_connection() {
    let cartd = Cartd::start_default();
    let mut sub = cartd.raw().await;
    sub.call(&["SUBSCRIBE", "news"]).await;
    sub.call(&["PSUBSCRIBE", "n*"]).await;
    drop(sub);
    let mut conn = cartd.raw().await;
    let mut gone = false;
    for _ in 0..100 {
        if text(conn.call(&["PUBLISH", "news", "x"]).await) == ":0\r\n" {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the closed subscriber still receives");
    assert_eq!(text(conn.call(&["PUBSUB", "NUMPAT"]).await), ":0\r\n");
    let mut reset = cartd.raw().await;
    reset.call(&["SUBSCRIBE", "news"]).await;
    assert_eq!(text(reset.call(&["RESET"]).await), "+RESET\r\n");
    assert_eq!(
        text(conn.call(&["PUBLISH", "news", "x"]).await),
        ":0\r\n",
        "RESET unsubscribes"
    );
}

/// Limits, one past each: a channel name over 1,024 bytes, a client's 100,001st
/// subscription; each refused with LIMIT and nothing subscribed.
#[tokio::test]
async fn subscriptions_are_bounded() {
    let cartd = Cartd::start_default();
    let mut sub = cartd.raw().await;
    let long = "c".repeat(1025);
    let refused = text(sub.call(&["SUBSCRIBE", "ok", &long]).await);
    assert!(
        refused.starts_with("-LIMIT channel and pattern names are at most 1024 bytes"),
        "{refused}"
    );
    let mut admin = cartd.raw().await;
    assert_eq!(
        text(admin.call(&["PUBSUB", "NUMSUB", "ok"]).await),
        "*2\r\n$2\r\nok\r\n:0\r\n"
    );
    let mut subscribed = 0;
    while subscribed < 100_000 {
        let mut args = vec!["SUBSCRIBE".to_owned()];
        args.extend((subscribed..subscribed + 4_000).map(|n| format!("ch:{n}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sub.send(&encode_command(&args)).await;
        for _ in 0..4_000 {
            sub.read_reply().await;
        }
        subscribed += 4_000;
    }
    let refused = text(sub.call(&["PSUBSCRIBE", "one-more*"]).await);
    assert!(
        refused.starts_with("-LIMIT a client subscribes to at most 100000"),
        "{refused}"
    );
    assert_eq!(text(admin.call(&["PUBSUB", "NUMPAT"]).await), ":0\r\n");
    let refused = text(
        admin
            .call(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", &long])
            .await,
    );
    assert!(
        refused.starts_with("-LIMIT a client tracks at most"),
        "{refused}"
    );
}
