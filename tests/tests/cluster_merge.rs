//! CART.MERGE across cluster nodes (issue 13): a merge sent to the user cart's node takes the
//! guest cart from the node serving it (CART.HANDOFF), merges it as a local merge does, and
//! tells that node once the merge is durable (CART.HANDOFF.DONE). A kill of either node at each
//! step of the handover (a `[debug] fault` point), a restart and the client's retry leave the
//! guest cart's lines in the user cart exactly once and the guest cart gone; the handoff's
//! records reach the replicas. Before (b3fb2ff), such a merge was refused with CROSSSLOT.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cartd_tests::cluster::LocalCluster;
use cartd_tests::raw::parse_reply;

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 reply")
}

/// A key of node `node`'s slots (two primaries: n1 serves 0-8191, n2 the rest), by asking.
async fn on_node(cluster: &LocalCluster, node: u16, prefix: &str) -> String {
    let mut conn = cluster.conn(0).await;
    for n in 0..1000 {
        let key = format!("{prefix}{n}");
        let reply = text(conn.call(&["CLUSTER", "KEYSLOT", &key]).await);
        let slot: u16 = reply.trim_start_matches(':').trim_end().parse().unwrap();
        if (slot >= 8192) == (node == 1) {
            return key;
        }
    }
    panic!("no key of n{}", node + 1);
}

/// A user cart on n1 and a guest cart on n2.
async fn carts(cluster: &LocalCluster) -> (String, String) {
    (
        on_node(cluster, 0, "cart:user:").await,
        on_node(cluster, 1, "cart:guest:").await,
    )
}

/// The cart's lines (product: qty), `None` when there is no cart.
async fn lines(cluster: &LocalCluster, node: u16, key: &str) -> Option<BTreeMap<String, u64>> {
    let mut conn = cluster.conn(node).await;
    let reply = conn
        .call(&["CART.GET", key, "NOVALIDATE", "FORMAT", "JSON"])
        .await;
    let json = match parse_reply(&reply) {
        redis::Value::Nil => return None,
        redis::Value::BulkString(json) => json,
        other => panic!("CART.GET {key}: {other:?}"),
    };
    let view: serde_json::Value = serde_json::from_slice(&json).expect("a JSON view");
    let items = view["items"].as_array().expect("items");
    Some(
        items
            .iter()
            .map(|item| {
                let product = item["product"].as_str().expect("product").to_owned();
                (product, item["qty"].as_u64().expect("qty"))
            })
            .collect(),
    )
}

async fn add(cluster: &LocalCluster, node: u16, key: &str, product: &str, qty: u32) {
    let mut conn = cluster.conn(node).await;
    let qty = qty.to_string();
    let reply = text(
        conn.call(&[
            "CART.ADD", key, product, "-", &qty, "PRICE", "250", "CURRENCY", "USD", "REPLY",
            "VERSION",
        ])
        .await,
    );
    assert!(reply.starts_with(':'), "CART.ADD {key}: {reply}");
}

/// The user cart holds a 1, the guest cart a 2 and b 3; merged with QTY SUM: a 3, b 3.
async fn fill(cluster: &LocalCluster, user: &str, guest: &str) {
    add(cluster, 0, user, "a", 1).await;
    add(cluster, 1, guest, "a", 2).await;
    add(cluster, 1, guest, "b", 3).await;
}

fn merged_lines() -> Option<BTreeMap<String, u64>> {
    Some(BTreeMap::from([("a".into(), 3), ("b".into(), 3)]))
}

fn merge_command<'a>(guest: &'a str, user: &'a str) -> [&'a str; 9] {
    [
        "CART.MERGE",
        guest,
        user,
        "QTY",
        "SUM",
        "IDEMPOTENCY",
        "merge-1",
        "REPLY",
        "VERSION",
    ]
}

/// Sends the merge on n1 until it answers with a version (nodes coming back, links made
/// again), 15 s at most; the reply.
async fn merge_until_answered(cluster: &LocalCluster, guest: &str, user: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut conn = cluster.conn(0).await;
        let reply = text(conn.call(&merge_command(guest, user)).await);
        if reply.starts_with(':') {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "the merge keeps failing: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A merge sent to the user cart's node merges a guest cart of another node as a local merge
/// does (QTY SUM sums the lines); the guest cart is gone there; a retry with the token replays
/// the reply, and one without changes nothing. Once the guest cart's node has its DONE, a new
/// guest cart under the same key merges in its turn.
#[tokio::test]
async fn a_merge_takes_the_guest_cart_from_its_node() {
    let cluster = LocalCluster::up(2, 0);
    let (user, guest) = carts(&cluster).await;
    fill(&cluster, &user, &guest).await;
    let mut n1 = cluster.conn(0).await;
    let first = text(n1.call(&merge_command(&guest, &user)).await);
    assert_eq!(first, ":2\r\n", "the user cart's version after the merge");
    assert_eq!(lines(&cluster, 0, &user).await, merged_lines());
    assert_eq!(
        lines(&cluster, 1, &guest).await,
        None,
        "the guest cart is gone"
    );
    let retried = text(n1.call(&merge_command(&guest, &user)).await);
    assert_eq!(retried, first, "a retry replays the reply");
    let untokened = text(
        n1.call(&[
            "CART.MERGE",
            &guest,
            &user,
            "QTY",
            "SUM",
            "REPLY",
            "VERSION",
        ])
        .await,
    );
    assert_eq!(untokened, ":2\r\n", "nothing left to merge");
    assert_eq!(lines(&cluster, 0, &user).await, merged_lines());
    let mut n2 = cluster.conn(1).await;
    let moved = text(n2.call(&merge_command(&guest, &user)).await);
    assert!(
        moved.starts_with("-MOVED"),
        "routed by the user cart: {moved}"
    );

    add(&cluster, 1, &guest, "c", 1).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines(&cluster, 1, &guest).await.is_some() {
        // Until n2 has the DONE of the first handoff, it hands that one again (merged already).
        assert!(
            Instant::now() < deadline,
            "the second guest cart is never taken"
        );
        let mut n1 = cluster.conn(0).await;
        n1.call(&["CART.MERGE", &guest, &user, "QTY", "SUM"]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut expected = merged_lines().unwrap();
    expected.insert("c".into(), 1);
    assert_eq!(lines(&cluster, 0, &user).await, Some(expected));
}

/// The cart's lines as replica `node` reads them (READONLY), `None` when it has no cart.
async fn replica_lines(
    cluster: &LocalCluster,
    node: u16,
    key: &str,
) -> Option<BTreeMap<String, u64>> {
    let mut conn = cluster.conn(node).await;
    assert_eq!(text(conn.call(&["READONLY"]).await), "+OK\r\n");
    let reply = conn
        .call(&["CART.GET", key, "NOVALIDATE", "FORMAT", "JSON"])
        .await;
    let json = match parse_reply(&reply) {
        redis::Value::Nil => return None,
        redis::Value::BulkString(json) => json,
        other => panic!("CART.GET {key} on n{}: {other:?}", node + 1),
    };
    let view: serde_json::Value = serde_json::from_slice(&json).expect("a JSON view");
    let items = view["items"].as_array().expect("items").iter();
    let lines = items.map(|item| {
        let product = item["product"].as_str().expect("product").to_owned();
        (product, item["qty"].as_u64().expect("qty"))
    });
    Some(lines.collect())
}

/// The handoff's records reach the replicas as any others do: n1's replica (n3) holds the
/// merged cart, n2's (n4) no guest cart, and both go on following their primaries after the
/// handoff's records (a cart written after them arrives too).
#[tokio::test]
async fn a_merge_across_nodes_reaches_the_replicas() {
    let cluster = LocalCluster::up(2, 1);
    let (user, guest) = carts(&cluster).await;
    fill(&cluster, &user, &guest).await;
    let mut n1 = cluster.conn(0).await;
    assert_eq!(text(n1.call(&merge_command(&guest, &user)).await), ":2\r\n");
    let later = on_node(&cluster, 1, "cart:later:").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // After the DONE (the courier's, soon after the merge): n2's last handoff record.
        tokio::time::sleep(Duration::from_millis(300)).await;
        add(&cluster, 1, &later, "x", 1).await;
        let followed = replica_lines(&cluster, 3, &later).await.is_some()
            && replica_lines(&cluster, 2, &user).await == merged_lines()
            && replica_lines(&cluster, 3, &guest).await.is_none();
        if followed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas do not follow the merge"
        );
    }
}

/// Whether node `node`'s process is gone (aborted at its fault point).
fn exited(cluster: &LocalCluster, node: u16) -> bool {
    let Some(pid) = cluster.pid(node) else {
        return true;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z")
}

/// Node `node` (0: n1, the user cart's; 1: n2, the guest cart's) aborts at `point` during the
/// merge; it is started again without the fault and the client retries the merge: the user
/// cart holds the guest cart's lines exactly once, the guest cart is gone, and so it stays
/// after the handoff is confirmed and after another restart of both nodes. Both nodes save a
/// snapshot and restart before the retry, so a handoff in flight is recovered from it.
async fn crash_at(node: u16, point: &str) {
    let fault = format!("[debug]\nfault = \"n{}:{point}\"\n", node + 1);
    let cluster = LocalCluster::up_with(2, 0, &fault);
    let (user, guest) = carts(&cluster).await;
    fill(&cluster, &user, &guest).await;
    let mut n1 = cluster.conn(0).await;
    let merge = cartd_tests::raw::encode_command(&merge_command(&guest, &user));
    n1.send(&merge).await;
    // An error, a reply, or nothing: n1 may be the one that stops.
    let _ = n1.try_read_reply().await;
    restart_without_fault(&cluster, node, point).await;
    // The handoff entries (n2's given one, n1's received one) come back from snapshots too.
    for saved in [0, 1] {
        let mut conn = cluster.conn(saved).await;
        assert_eq!(text(conn.call(&["SAVE"]).await), "+OK\r\n");
        cluster.kill9(saved);
        cluster.restart(saved);
    }
    let reply = merge_until_answered(&cluster, &guest, &user).await;
    assert_eq!(reply, ":2\r\n", "{point}");
    assert_merged_once(&cluster, &guest, &user, point).await;
    // The DONE goes through (or went before the crash); nothing comes back or doubles.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for restarted in [0, 1] {
        cluster.kill9(restarted);
        cluster.restart(restarted);
    }
    let reply = merge_until_answered(&cluster, &guest, &user).await;
    assert_eq!(reply, ":2\r\n", "{point}: the retry replays");
    let mut n1 = cluster.conn(0).await;
    let untokened = [
        "CART.MERGE",
        &guest,
        &user,
        "QTY",
        "SUM",
        "REPLY",
        "VERSION",
    ];
    let untokened = text(n1.call(&untokened).await);
    assert_eq!(untokened, ":2\r\n", "{point}: nothing is merged twice");
    assert_merged_once(&cluster, &guest, &user, point).await;
    // Restarted nodes are this process's children: `down` would wait on their zombies.
    for restarted in [0, 1] {
        cluster.kill9(restarted);
    }
}

/// Waits until node `node` aborted at `point`, then starts it again without the fault.
async fn restart_without_fault(cluster: &LocalCluster, node: u16, point: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exited(cluster, node) {
        assert!(
            Instant::now() < deadline,
            "n{} never reached {point}",
            node + 1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = cluster.log(node);
    let reached = log.contains(&format!("fault point {point} reached"));
    assert!(reached, "n{} stopped otherwise: {log}", node + 1);
    cluster.kill9(node);
    let config = cluster.node_dir(node).join("config.toml");
    let without = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("n{}:{point}", node + 1), "");
    std::fs::write(&config, without).unwrap();
    cluster.restart(node);
}

/// The user cart holds the guest cart's lines once; the guest cart is gone.
async fn assert_merged_once(cluster: &LocalCluster, guest: &str, user: &str, point: &str) {
    assert_eq!(lines(cluster, 0, user).await, merged_lines(), "{point}");
    assert_eq!(lines(cluster, 1, guest).await, None, "{point}");
}

/// n2 took the guest cart (logged) and dies before replying.
#[tokio::test]
async fn the_guest_node_dies_after_the_take() {
    crash_at(1, "handoff-after-take").await;
}

/// n1 has the guest cart's image and dies before merging it.
#[tokio::test]
async fn the_user_node_dies_before_merging() {
    crash_at(0, "merge-after-take").await;
}

/// n1's merge is durable; it dies before telling n2.
#[tokio::test]
async fn the_user_node_dies_before_the_done() {
    crash_at(0, "merge-after-log").await;
}

/// n2 logged the DONE and dies before replying.
#[tokio::test]
async fn the_guest_node_dies_after_the_done() {
    crash_at(1, "done-after-log").await;
}

/// n1 has the DONE's reply and dies before logging the handoff over.
#[tokio::test]
async fn the_user_node_dies_after_the_done() {
    crash_at(0, "done-after-reply").await;
}
