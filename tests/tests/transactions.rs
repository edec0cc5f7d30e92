//! MULTI/EXEC/DISCARD/WATCH/UNWATCH as Redis has them. Clients send MULTI, the commands and
//! EXEC in one write; cartd used to refuse MULTI, run every command at once and refuse EXEC,
//! so a transaction that should have failed had its writes applied.

use std::time::Duration;

use cartd_tests::scripts::{client_libs, run_script};
use cartd_tests::{ok, stored, w, Cartd};

fn encode(commands: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for command in commands {
        let words: Vec<&str> = command.split(' ').collect();
        out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
        for word in words {
            out.extend_from_slice(format!("${}\r\n{word}\r\n", word.len()).as_bytes());
        }
    }
    out
}

/// The transaction in one write, as clients send it: +OK, +QUEUED per command, then EXEC's
/// array of replies (a command's own error in its place).
#[tokio::test]
async fn a_transaction_sent_in_one_write_runs() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    raw.send(&encode(&[
        "MULTI",
        "CART.ADD cart:t mug - 1 PRICE 100 CURRENCY USD REPLY VERSION",
        "CART.SET cart:none mug - 2",
        "CART.ADD cart:t cup - 1 PRICE 50 CURRENCY USD REPLY VERSION",
        "EXEC",
    ]))
    .await;
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(String::from_utf8(raw.read_reply().await).unwrap());
    }
    assert_eq!(
        replies[..4],
        ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "+QUEUED\r\n"]
    );
    assert_eq!(replies[4], "*3\r\n:1\r\n-NOCART no such cart\r\n:2\r\n");
}

/// A command refused while queueing makes EXEC fail with EXECABORT, nothing applied; and
/// Redis's other answers (nesting, WATCH inside MULTI, EXEC and DISCARD without MULTI).
#[tokio::test]
async fn a_refused_command_aborts_the_transaction() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    raw.send(&encode(&[
        "MULTI",
        "CART.ADD cart:aborted mug - 1 PRICE 100 CURRENCY USD",
        "CART.NOPE cart:aborted",
        "CART.ADD cart:aborted",
        "EXEC",
    ]))
    .await;
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(String::from_utf8(raw.read_reply().await).unwrap());
    }
    assert_eq!(replies[1], "+QUEUED\r\n");
    assert!(
        replies[2].starts_with("-ERR unknown command 'CART.NOPE'"),
        "{}",
        replies[2]
    );
    assert!(
        replies[3].starts_with("-ERR wrong number of arguments"),
        "{}",
        replies[3]
    );
    assert_eq!(
        replies[4],
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(
        raw.call(&["EXISTS", "cart:aborted"]).await,
        b":0\r\n",
        "nothing of an aborted transaction is applied"
    );
    // Redis's other answers.
    assert_eq!(raw.call(&["EXEC"]).await, b"-ERR EXEC without MULTI\r\n");
    assert_eq!(
        raw.call(&["DISCARD"]).await,
        b"-ERR DISCARD without MULTI\r\n"
    );
    assert_eq!(raw.call(&["MULTI"]).await, b"+OK\r\n");
    assert_eq!(
        raw.call(&["MULTI"]).await,
        b"-ERR MULTI calls can not be nested\r\n"
    );
    assert_eq!(
        raw.call(&["WATCH", "cart:t"]).await,
        b"-ERR WATCH inside MULTI is not allowed\r\n"
    );
    let add = [
        "CART.ADD", "cart:t", "mug", "-", "1", "PRICE", "1", "CURRENCY", "USD",
    ];
    assert_eq!(raw.call(&add).await, b"+QUEUED\r\n");
    assert_eq!(raw.call(&["DISCARD"]).await, b"+OK\r\n");
    assert_eq!(
        raw.call(&["EXISTS", "cart:t"]).await,
        b":0\r\n",
        "discarded"
    );
}

/// EXEC is a null array when a WATCHed cart changed since WATCH: by another client, by its
/// deletion, by its expiry; UNWATCH and a clean EXEC forget the watch.
#[tokio::test]
async fn watch_fails_the_exec_on_any_change_expiry_included() {
    let cartd = Cartd::start_async("[carts]\nguest_ttl_s = 1\n").await;
    let mut raw = cartd.raw().await;
    let mut other = cartd.client(false).await;
    ok(
        &mut other,
        &w("CART.ADD cart:w mug - 1 PRICE 100 CURRENCY USD"),
    )
    .await;
    for (label, change) in [
        ("another client's add", "CART.ADD cart:w mug - 1"),
        ("a delete", "DEL cart:w"),
    ] {
        ok(
            &mut other,
            &w("CART.ADD cart:w mug - 1 PRICE 100 CURRENCY USD"),
        )
        .await;
        assert_eq!(raw.call(&["WATCH", "cart:w"]).await, b"+OK\r\n");
        ok(&mut other, &w(change)).await;
        raw.send(&encode(&[
            "MULTI",
            "CART.ADD cart:w cup - 1 PRICE 5 CURRENCY USD",
            "EXEC",
        ]))
        .await;
        assert_eq!(raw.read_reply().await, b"+OK\r\n");
        assert_eq!(raw.read_reply().await, b"+QUEUED\r\n");
        assert_eq!(raw.read_reply().await, b"*-1\r\n", "{label}");
        let view = stored(&mut other, "cart:w").await;
        assert!(
            view["items"]
                .as_array()
                .is_none_or(|items| items.iter().all(|item| item["product"] != "cup")),
            "{label}: the transaction's add must not be applied: {view}"
        );
    }
    // Expiry: a guest cart watched, then past its TTL.
    ok(
        &mut other,
        &w("CART.ADD cart:guest:g mug - 1 PRICE 100 CURRENCY USD"),
    )
    .await;
    assert_eq!(raw.call(&["WATCH", "cart:guest:g"]).await, b"+OK\r\n");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    raw.send(&encode(&["MULTI", "PING", "EXEC"])).await;
    let _ = (raw.read_reply().await, raw.read_reply().await);
    assert_eq!(
        raw.read_reply().await,
        b"*-1\r\n",
        "the watched cart expired"
    );
    // Unchanged: the EXEC runs; UNWATCH forgets.
    assert_eq!(raw.call(&["WATCH", "cart:w"]).await, b"+OK\r\n");
    raw.send(&encode(&["MULTI", "PING", "EXEC"])).await;
    let _ = (raw.read_reply().await, raw.read_reply().await);
    assert_eq!(raw.read_reply().await, b"*1\r\n+PONG\r\n");
    assert_eq!(raw.call(&["WATCH", "cart:w"]).await, b"+OK\r\n");
    assert_eq!(raw.call(&["UNWATCH"]).await, b"+OK\r\n");
    ok(
        &mut other,
        &w("CART.ADD cart:w mug - 1 PRICE 100 CURRENCY USD"),
    )
    .await;
    raw.send(&encode(&["MULTI", "PING", "EXEC"])).await;
    let _ = (raw.read_reply().await, raw.read_reply().await);
    assert_eq!(raw.read_reply().await, b"*1\r\n+PONG\r\n");
}

/// Moves a unit from cart:a to cart:b and back, 300 times each way, in transactions.
async fn move_back_and_forth(mut mover: cartd_tests::RawConn) {
    for round in 0..600 {
        let (from, to, qty) = match round % 4 {
            0 => ("a", "b", (499, 501)),
            1 => ("a", "b", (500, 500)),
            2 => ("b", "a", (499, 501)),
            _ => ("b", "a", (500, 500)),
        };
        mover
            .send(&encode(&[
                "MULTI",
                &format!("CART.SET cart:{from} mug - {}", qty.0),
                &format!("CART.SET cart:{to} mug - {}", qty.1),
                "EXEC",
            ]))
            .await;
        for _ in 0..4 {
            mover.read_reply().await;
        }
    }
}

/// The `"qty":n` values in a reply, in order.
fn quantities(reply: &str) -> Vec<i64> {
    reply
        .match_indices("\"qty\":")
        .map(|(at, _)| {
            let digits: String = reply[at + 6..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap()
        })
        .collect()
}

/// No client sees a transaction half done: one client moves a unit between two carts in
/// transactions while another reads both in transactions; every read sees the sum intact.
#[tokio::test]
async fn a_transaction_is_isolated_from_other_clients() {
    let cartd = Cartd::start_default();
    let mut setup = cartd.client(false).await;
    ok(
        &mut setup,
        &w("CART.ADD cart:a mug - 500 PRICE 100 CURRENCY USD"),
    )
    .await;
    ok(
        &mut setup,
        &w("CART.ADD cart:b mug - 500 PRICE 100 CURRENCY USD"),
    )
    .await;
    let moves = tokio::spawn(move_back_and_forth(cartd.raw().await));
    let mut reader = cartd.raw().await;
    let mut reads = 0;
    while !moves.is_finished() {
        reader
            .send(&encode(&[
                "MULTI",
                "CART.GET cart:a FORMAT JSON",
                "CART.GET cart:b FORMAT JSON",
                "EXEC",
            ]))
            .await;
        let _ = (
            reader.read_reply().await,
            reader.read_reply().await,
            reader.read_reply().await,
        );
        let exec = String::from_utf8(reader.read_reply().await).unwrap();
        let qty = quantities(&exec);
        assert_eq!(qty.len(), 2, "{exec}");
        assert_eq!(
            qty[0] + qty[1],
            1000,
            "a transaction seen half done: {exec}"
        );
        reads += 1;
    }
    moves.await.unwrap();
    assert!(reads > 10, "{reads} reads");
}

/// cart:twice changed twice in one transaction, and cart:0.. each at 100, in another.
async fn set_up_carts(cartd: &Cartd, carts: usize) {
    let mut raw = cartd.raw().await;
    let mut setup = vec![
        "MULTI".to_string(),
        "CART.ADD cart:twice mug - 1 PRICE 100 CURRENCY USD".into(),
        "CART.ADD cart:twice cup - 1 PRICE 50 CURRENCY USD".into(),
    ];
    for cart in 0..carts {
        setup.push(format!(
            "CART.ADD cart:{cart} mug - 100 PRICE 100 CURRENCY USD"
        ));
    }
    setup.push("EXEC".into());
    let setup: Vec<&str> = setup.iter().map(String::as_str).collect();
    raw.send(&encode(&setup)).await;
    for _ in 0..setup.len() - 1 {
        raw.read_reply().await;
    }
    let exec = String::from_utf8(raw.read_reply().await).unwrap();
    assert!(exec.starts_with(&format!("*{}\r\n", carts + 2)), "{exec}");
}

/// A transaction's changes are one log record: a cart changed twice in it comes back with
/// both changes after kill -9, and transactions that move units among ten carts (the total
/// stays 1,000 after each), killed at random points, come back whole or not at all.
#[tokio::test]
async fn a_transaction_survives_kill_9_whole_or_not_at_all() {
    const CARTS: usize = 10;
    let mut cartd = Cartd::start_async("[persistence]\nappendfsync = \"always\"\n").await;
    set_up_carts(&cartd, CARTS).await;
    // Odd carts give one unit to the even ones, then it goes back.
    let shift = |give: i64| {
        let mut commands = vec!["MULTI".to_string()];
        for cart in 0..CARTS {
            let qty = if cart % 2 == 0 {
                100 + give
            } else {
                100 - give
            };
            commands.push(format!("CART.SET cart:{cart} mug - {qty}"));
        }
        commands.push("EXEC".into());
        commands
    };
    let (there, back) = (shift(1), shift(0));
    for round in 0..3u64 {
        let mut mover = cartd.raw().await;
        let (there, back) = (there.clone(), back.clone());
        let moves = tokio::spawn(async move {
            for step in 0u64.. {
                let commands = if step % 2 == 0 { &there } else { &back };
                let words: Vec<&str> = commands.iter().map(String::as_str).collect();
                if !mover.try_send(&encode(&words)).await {
                    return;
                }
                for _ in 0..words.len() {
                    if mover.try_read_reply().await.is_none() {
                        return;
                    }
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(200 + 170 * round)).await;
        cartd.kill();
        let _ = moves.await;
        cartd.restart();
        let mut conn = cartd.client(false).await;
        let twice = stored(&mut conn, "cart:twice").await;
        assert_eq!(
            twice["items"].as_array().map(Vec::len),
            Some(2),
            "round {round}: {twice}"
        );
        let mut total = 0;
        for cart in 0..CARTS {
            let view = stored(&mut conn, &format!("cart:{cart}")).await;
            total += view["items"][0]["qty"].as_i64().unwrap();
        }
        assert_eq!(
            total,
            100 * CARTS as i64,
            "round {round}: part of a transaction came back"
        );
    }
}

/// Real clients: redis-py's pipeline (a transaction by default) and a WATCH retry loop,
/// ioredis multi().
#[tokio::test]
async fn client_libraries_run_transactions() {
    let cartd = Cartd::start_default();
    let port = cartd.port().to_string();
    let libs = client_libs();
    let out = run_script(
        "python3",
        &["-c", REDIS_PY_TRANSACTIONS, &port],
        ("PYTHONPATH", libs.join("python")),
    );
    assert_eq!(out["pipeline"], serde_json::json!([1, 2]));
    assert_eq!(out["retries"], 1, "{out}");
    assert_eq!(out["qty"], 3, "{out}");
    let out = run_script(
        "node",
        &["-e", IOREDIS_TRANSACTIONS, &port],
        ("NODE_PATH", libs.join("node").join("node_modules")),
    );
    assert_eq!(
        out["exec"],
        serde_json::json!([[null, 1], [null, 2]]),
        "{out}"
    );
    assert_eq!(out["watched"], serde_json::Value::Null, "{out}");
}

const REDIS_PY_TRANSACTIONS: &str = r#"
import json, sys, redis
r = redis.Redis(port=int(sys.argv[1]))
pipe = r.pipeline()  # transaction=True by default
pipe.execute_command("CART.ADD", "cart:py", "mug", "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION")
pipe.execute_command("CART.ADD", "cart:py", "mug", "-", "1", "REPLY", "VERSION")
pipeline = pipe.execute()
other = redis.Redis(port=int(sys.argv[1]))
retries = 0
with r.pipeline() as pipe:
    while True:
        try:
            pipe.watch("cart:py")
            if retries == 0:
                other.execute_command("CART.ADD", "cart:py", "cup", "-", "1", "PRICE", "5", "CURRENCY", "USD")
            pipe.multi()
            pipe.execute_command("CART.ADD", "cart:py", "mug", "-", "1")
            pipe.execute()
            break
        except redis.WatchError:
            retries += 1
view = json.loads(r.execute_command("CART.GET", "cart:py", "FORMAT", "JSON"))
qty = [item["qty"] for item in view["items"] if item["product"] == "mug"][0]
print(json.dumps({"pipeline": pipeline, "retries": retries, "qty": qty}))
"#;

const IOREDIS_TRANSACTIONS: &str = r#"
const Redis = require("ioredis");
(async () => {
  const r = new Redis({ port: Number(process.argv[1]) });
  const other = new Redis({ port: Number(process.argv[1]) });
  const exec = await r.multi()
    .call("CART.ADD", "cart:js", "mug", "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION")
    .call("CART.ADD", "cart:js", "mug", "-", "1", "REPLY", "VERSION")
    .exec();
  await r.watch("cart:js");
  await other.call("CART.ADD", "cart:js", "cup", "-", "1", "PRICE", "5", "CURRENCY", "USD");
  const watched = await r.multi().call("CART.ADD", "cart:js", "mug", "-", "1").exec();
  console.log(JSON.stringify({ exec, watched }));
  r.disconnect(); other.disconnect();
})().catch((error) => { console.error(error); process.exit(1); });
"#;

/// redis-rs atomic pipelines (MULTI ... EXEC under the hood) and its WATCH loop: the
/// pipeline's replies come back as the EXEC array, and a WATCHed cart changed by another
/// connection makes EXEC answer null, which redis-rs reports as no result.
#[tokio::test]
async fn redis_rs_atomic_pipelines_run_as_transactions() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let versions: (i64, i64) = redis::pipe()
        .atomic()
        .cmd("CART.ADD")
        .arg(w("cart:rs mug - 1 PRICE 100 CURRENCY USD REPLY VERSION"))
        .cmd("CART.ADD")
        .arg(w("cart:rs cup - 2 PRICE 50 CURRENCY USD REPLY VERSION"))
        .query_async(&mut conn)
        .await
        .expect("an atomic pipeline");
    assert_eq!(versions, (1, 2));

    // WATCH on a connection of its own, changed meanwhile by another: EXEC answers null.
    let client = redis::Client::open(format!("redis://{}/", cartd.addr())).unwrap();
    let mut watcher = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("WATCH")
        .arg("cart:rs")
        .query_async(&mut watcher)
        .await
        .unwrap();
    ok(&mut conn, &w("CART.ADD cart:rs mug - 1")).await;
    let aborted: Option<(i64,)> = redis::pipe()
        .atomic()
        .cmd("CART.ADD")
        .arg(w("cart:rs plate - 1 PRICE 10 CURRENCY USD REPLY VERSION"))
        .query_async(&mut watcher)
        .await
        .expect("EXEC answers");
    assert_eq!(aborted, None, "the watched cart changed: nothing ran");
    let view = stored(&mut conn, "cart:rs").await;
    assert_eq!(view["version"], 3);
    assert!(view["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|item| item["product"] != "plate"));
}

/// Commands count in INFO commandstats when EXEC runs them, not when queued: a discarded
/// transaction's commands never ran; an error inside EXEC is a failed call.
#[tokio::test]
async fn commandstats_count_what_exec_runs() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    raw.send(&encode(&[
        "MULTI",
        "CART.ADD cart:s mug - 1 PRICE 100 CURRENCY USD",
        "DISCARD",
        "MULTI",
        "CART.ADD cart:s mug - 1 PRICE 100 CURRENCY USD",
        "CART.SET cart:none mug - 2",
        "EXEC",
    ]))
    .await;
    for _ in 0..7 {
        raw.read_reply().await;
    }
    let stats = String::from_utf8(raw.call(&["INFO", "commandstats"]).await).unwrap();
    let line = |name: &str| {
        stats
            .lines()
            .find(|line| line.starts_with(&format!("cmdstat_{name}:")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("cart.add").starts_with("cmdstat_cart.add:calls=1,"),
        "{stats}"
    );
    assert!(
        line("cart.set").contains("calls=1,") && line("cart.set").contains("failed_calls=1"),
        "{stats}"
    );
    assert!(line("exec").starts_with("cmdstat_exec:calls=1,"), "{stats}");
    let errors = String::from_utf8(raw.call(&["INFO", "errorstats"]).await).unwrap();
    assert!(errors.contains("errorstat_NOCART:count=1"), "{errors}");
}
