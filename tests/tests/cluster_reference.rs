//! Server-wide data on every node (issue 13): a CATALOG.SET, STOCK.SET or PROMO.SET (and DEL)
//! acknowledged by one primary is in effect on every primary soon after, a node that was
//! killed catches up once it is back, and two nodes setting the same entry at once end with
//! the same value everywhere. Three primaries, real processes (`scripts/cluster`). Before,
//! every one of these timed out: a change stayed on the node that took it.

use std::time::{Duration, Instant};

use cartd_tests::cluster::LocalCluster;
use cartd_tests::RawConn;

/// How long a change may take to show everywhere before a test gives up: far more than the
/// second the issue asks for, so a slow machine does not fail it; the links push at once and
/// compare digests every 500 ms.
const DEADLINE: Duration = Duration::from_secs(10);

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 reply")
}

async fn call(conn: &mut RawConn, args: &[&str]) -> String {
    text(conn.call(args).await)
}

/// Asks every node in `nodes` `args` until each answers `expected`, or fails at the deadline
/// with what each answered last.
async fn wait_everywhere(cluster: &LocalCluster, nodes: &[u16], args: &[&str], expected: &str) {
    let started = Instant::now();
    let mut conns = Vec::new();
    for &node in nodes {
        conns.push((node, cluster.conn(node).await));
    }
    loop {
        let mut differing = Vec::new();
        for (node, conn) in &mut conns {
            let answer = call(conn, args).await;
            if answer != expected {
                differing.push(format!("n{}: {answer:?}", *node + 1));
            }
        }
        if differing.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{args:?} should answer {expected:?} on every node; after {DEADLINE:?}: {}",
            differing.join(", ")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A CATALOG.SET, a STOCK.SET and a CATALOG.DEL on n1 reach n2 and n3, each exactly as n1
/// has it (same price, stock, limit and update time).
#[tokio::test]
async fn catalog_changes_on_one_node_reach_every_node() {
    let cluster = LocalCluster::up(3, 0);
    let mut n1 = cluster.conn(0).await;
    let set = [
        "CATALOG.SET",
        "mug",
        "red",
        "1299",
        "USD",
        "STOCK",
        "7",
        "MAXQTY",
        "3",
    ];
    assert_eq!(call(&mut n1, &set).await, "+OK\r\n");
    let get = ["CATALOG.GET", "mug", "red"];
    let entry = call(&mut n1, &get).await;
    assert!(entry.contains(":1299\r\n"), "{entry}");
    wait_everywhere(&cluster, &[1, 2], &get, &entry).await;

    assert_eq!(
        call(&mut n1, &["STOCK.SET", "mug", "red", "0"]).await,
        "+OK\r\n"
    );
    let entry = call(&mut n1, &get).await;
    assert!(entry.contains("stock\r\n:0\r\n"), "{entry}");
    wait_everywhere(&cluster, &[1, 2], &get, &entry).await;

    assert_eq!(
        call(&mut n1, &["CATALOG.DEL", "mug", "red"]).await,
        ":1\r\n"
    );
    wait_everywhere(&cluster, &[0, 1, 2], &get, "$-1\r\n").await;
}

/// A PROMO.SET on n2 reaches n1 and n3; its PROMO.DEL too.
#[tokio::test]
async fn promotions_on_one_node_reach_every_node() {
    let cluster = LocalCluster::up(3, 0);
    let mut n2 = cluster.conn(1).await;
    let document = r#"{"kind":"percent","percent":10}"#;
    assert_eq!(
        call(&mut n2, &["PROMO.SET", "TEN", document]).await,
        "+OK\r\n"
    );
    let promo = call(&mut n2, &["PROMO.GET", "TEN"]).await;
    assert!(promo.contains("percent"), "{promo}");
    wait_everywhere(&cluster, &[0, 2], &["PROMO.GET", "TEN"], &promo).await;
    assert_eq!(call(&mut n2, &["PROMO.DEL", "TEN"]).await, ":1\r\n");
    wait_everywhere(&cluster, &[0, 1, 2], &["PROMO.GET", "TEN"], "$-1\r\n").await;
}

/// n2 is killed (-9); what n1 takes meanwhile (a new entry, a changed one, a deleted one, a
/// promotion) n2 has once it is started again, and keeps across another kill -9 and restart.
#[tokio::test]
async fn a_node_that_was_down_catches_up() {
    let cluster = LocalCluster::up(3, 0);
    let mut n1 = cluster.conn(0).await;
    for set in [
        &["CATALOG.SET", "old", "-", "100", "USD"][..],
        &["CATALOG.SET", "gone", "-", "100", "USD"],
    ] {
        assert_eq!(call(&mut n1, set).await, "+OK\r\n");
    }
    for product in ["old", "gone"] {
        let get = ["CATALOG.GET", product, "-"];
        let entry = call(&mut n1, &get).await;
        wait_everywhere(&cluster, &[1], &get, &entry).await;
    }

    cluster.kill9(1);
    assert_eq!(
        call(&mut n1, &["CATALOG.SET", "new", "-", "500", "EUR"]).await,
        "+OK\r\n"
    );
    assert_eq!(
        call(&mut n1, &["CATALOG.SET", "old", "-", "200", "USD"]).await,
        "+OK\r\n"
    );
    assert_eq!(call(&mut n1, &["CATALOG.DEL", "gone", "-"]).await, ":1\r\n");
    let document = r#"{"kind":"percent","percent":5}"#;
    assert_eq!(
        call(&mut n1, &["PROMO.SET", "FIVE", document]).await,
        "+OK\r\n"
    );
    let expected = [
        (
            ["CATALOG.GET", "new", "-"],
            call(&mut n1, &["CATALOG.GET", "new", "-"]).await,
        ),
        (
            ["CATALOG.GET", "old", "-"],
            call(&mut n1, &["CATALOG.GET", "old", "-"]).await,
        ),
        (["CATALOG.GET", "gone", "-"], "$-1\r\n".to_string()),
        (
            ["PROMO.GET", "FIVE", ""],
            call(&mut n1, &["PROMO.GET", "FIVE"]).await,
        ),
    ];
    for round in 0..2 {
        cluster.restart(1);
        for (args, answer) in &expected {
            let args: Vec<&str> = args.iter().copied().filter(|arg| !arg.is_empty()).collect();
            wait_everywhere(&cluster, &[1], &args, answer).await;
        }
        if round == 0 {
            // What it took from its peers is in its own log: it has it at once after this.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            cluster.kill9(1);
        }
    }
}

/// n1 and n2 set the same 20 variants to different prices at the same moment: every node
/// ends with the same entry for each, one of the two prices.
#[tokio::test]
async fn conflicting_sets_converge_everywhere() {
    let cluster = LocalCluster::up(3, 0);
    let (mut n1, mut n2) = (cluster.conn(0).await, cluster.conn(1).await);
    for variant in 0..20 {
        let variant = variant.to_string();
        let one = ["CATALOG.SET", "tv", &variant, "111", "USD"];
        let two = ["CATALOG.SET", "tv", &variant, "222", "USD"];
        let (first, second) = tokio::join!(call(&mut n1, &one), call(&mut n2, &two));
        assert_eq!((first.as_str(), second.as_str()), ("+OK\r\n", "+OK\r\n"));
    }
    for variant in 0..20 {
        let variant = variant.to_string();
        let get = ["CATALOG.GET", "tv", &variant];
        let started = Instant::now();
        loop {
            let mut answers = Vec::new();
            for node in 0..3 {
                answers.push(call(&mut cluster.conn(node).await, &get).await);
            }
            let agreed = answers.iter().all(|answer| *answer == answers[0]);
            if agreed {
                let price = &answers[0];
                assert!(
                    price.contains(":111\r\n") || price.contains(":222\r\n"),
                    "{price}"
                );
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "tv/{variant} still differs after {DEADLINE:?}: {answers:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// With `requirepass` on every node, the links between the nodes authenticate with it: a
/// CATALOG.SET on n1 reaches n2 and the replica of n1 follows it. Before, the peer links sent
/// no AUTH and every REFSYNC was refused (NOAUTH), so the entry stayed on n1.
#[tokio::test]
async fn links_between_password_protected_nodes_authenticate() {
    let cluster = LocalCluster::up_with_password(2, 1, "s3cret");
    let mut conns = Vec::new();
    for node in 0..3 {
        let mut conn = cluster.conn(node).await;
        assert_eq!(call(&mut conn, &["AUTH", "s3cret"]).await, "+OK\r\n");
        conns.push(conn);
    }
    let set = ["CATALOG.SET", "tv", "-", "499", "USD"];
    assert_eq!(call(&mut conns[0], &set).await, "+OK\r\n");
    let started = Instant::now();
    loop {
        let on_n2 = call(&mut conns[1], &["CATALOG.GET", "tv", "-"]).await;
        let on_replica = call(&mut conns[2], &["CATALOG.GET", "tv", "-"]).await;
        if on_n2.contains("499") && on_replica.contains("499") {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "n2: {on_n2:?}, n1's replica: {on_replica:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
