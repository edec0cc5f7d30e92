//! The start of cluster mode (issue 13): the `[cluster]` layout is checked at start, and
//! CLUSTER KEYSLOT, MYID and INFO answer in Redis's formats; a standalone server answers
//! every CLUSTER subcommand as a Redis without cluster support does. Before, CLUSTER was an
//! unknown command and `[cluster]` an unknown section.

use cartd_tests::{Cartd, RawConn};

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 reply")
}

const LAYOUT: &str = r#"
[cluster]
enabled = true
node_id = "n1"
[[cluster.nodes]]
id = "n1"
addr = "127.0.0.1:7001"
slots = ["0-16383"]
[[cluster.nodes]]
id = "n2"
addr = "127.0.0.1:7002"
replica_of = "n1"
"#;

async fn call(conn: &mut RawConn, args: &[&str]) -> String {
    text(conn.call(args).await)
}

/// Standalone: Redis's error for every subcommand.
#[tokio::test]
async fn a_standalone_server_has_cluster_support_disabled() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.raw().await;
    for args in [
        &["CLUSTER", "INFO"][..],
        &["CLUSTER", "KEYSLOT", "foo"],
        &["CLUSTER", "SLOTS"],
    ] {
        assert_eq!(
            call(&mut conn, args).await,
            "-ERR This instance has cluster support disabled\r\n"
        );
    }
}

/// In cluster mode: KEYSLOT is Redis's CRC16 with hash tags, MYID this node's id, INFO
/// Redis's fields with the layout's figures.
#[tokio::test]
async fn keyslot_myid_and_info_answer_as_redis() {
    let cartd = Cartd::start(LAYOUT);
    let mut conn = cartd.raw().await;
    assert_eq!(
        call(&mut conn, &["CLUSTER", "KEYSLOT", "foo"]).await,
        ":12182\r\n"
    );
    assert_eq!(
        call(&mut conn, &["CLUSTER", "KEYSLOT", "somekey"]).await,
        ":11058\r\n"
    );
    let tagged = call(&mut conn, &["CLUSTER", "KEYSLOT", "{user1000}.following"]).await;
    assert_eq!(
        tagged,
        call(&mut conn, &["CLUSTER", "KEYSLOT", "user1000"]).await
    );
    assert_eq!(call(&mut conn, &["CLUSTER", "MYID"]).await, "$2\r\nn1\r\n");
    let info = call(&mut conn, &["CLUSTER", "INFO"]).await;
    for field in [
        "cluster_enabled:1\r\n",
        "cluster_state:ok\r\n",
        "cluster_slots_assigned:16384\r\n",
        "cluster_known_nodes:2\r\n",
        "cluster_size:1\r\n",
    ] {
        assert!(info.contains(field), "{field:?} in {info:?}");
    }
    assert_eq!(
        call(&mut conn, &["CLUSTER", "KEYSLOT"]).await,
        "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n"
    );
}

/// A layout with a mistake stops the start and says where it is.
#[test]
fn a_wrong_layout_refuses_to_start_and_says_why() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("config.toml");
    let wrong = LAYOUT.replace("slots = [\"0-16383\"]", "slots = [\"0-16384\"]");
    std::fs::write(&config, format!("[server]\nport = 0\n{wrong}")).unwrap();
    let output = std::process::Command::new(cartd_tests::cartd_bin())
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run cartd");
    assert!(!output.status.success(), "cartd started with slot 16384");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("node \"n1\": slots entry \"0-16384\""),
        "the error names the node and the entry: {stderr}"
    );
}

/// A node records the layout it first serves; restarted with another one (a slot moved in
/// its config.toml alone), it refuses to start and says what differs, so two nodes never both
/// serve a slot. The same layout starts again.
#[test]
fn a_node_restarted_with_another_layout_refuses_and_says_what_differs() {
    let mut cartd = Cartd::start(LAYOUT);
    let data = cartd.data_dir();
    cartd.stop_gracefully();
    let recorded =
        std::fs::read_to_string(data.join("cluster-layout")).expect("the layout is recorded");
    assert!(
        recorded.contains("node n1 127.0.0.1:7001 primary 0-16383"),
        "{recorded}"
    );
    let dir = tempfile::tempdir().unwrap();
    let run = |layout: &str| {
        let config = dir.path().join("config.toml");
        std::fs::write(&config, layout).unwrap();
        let mut child = std::process::Command::new(cartd_tests::cartd_bin())
            .arg("--config")
            .arg(&config)
            .args(["--port", "0", "--data-dir"])
            .arg(&data)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run cartd");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                return (Some(status), stderr);
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                return (None, String::new());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let moved = LAYOUT.replace("slots = [\"0-16383\"]", "slots = [\"0-8191\"]");
    let (status, stderr) = run(&moved);
    assert!(
        status.is_some_and(|status| !status.success()),
        "started with another layout"
    );
    assert!(
        stderr.contains("differs from what this node served before")
            && stderr.contains("node n1: recorded `node n1 127.0.0.1:7001 primary 0-16383`, configured `node n1 127.0.0.1:7001 primary 0-8191`"),
        "{stderr}"
    );
    let (status, _) = run(LAYOUT);
    assert!(
        status.is_none(),
        "the recorded layout starts (and runs until killed)"
    );
}

/// Two cluster nodes streaming to one PostgreSQL keep a checkpoint each, named after their
/// cluster ids (the shared default name would have them fight over one row), and each
/// streams the carts of its own slots.
#[tokio::test]
async fn cluster_nodes_stream_under_their_own_names() {
    let db = cartd_tests::TestDb::create().await;
    let layout = |me: &str| {
        format!(
            "[postgres]\nurl = \"{}\"\n[cluster]\nenabled = true\nnode_id = \"{me}\"\n\
             [[cluster.nodes]]\nid = \"n1\"\naddr = \"127.0.0.1:7001\"\nslots = [\"0-8191\"]\n\
             [[cluster.nodes]]\nid = \"n2\"\naddr = \"127.0.0.1:7002\"\nslots = [\"8192-16383\"]\n",
            db.url
        )
    };
    let n1 = Cartd::start_async(&layout("n1")).await;
    let n2 = Cartd::start_async(&layout("n2")).await;
    // cart:1 is in slot 6801 (n1's), cart:2 in 13807 (n2's).
    for (node, key) in [(&n1, "cart:1"), (&n2, "cart:2")] {
        let mut conn = node.raw().await;
        let add = [
            "CART.ADD", key, "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION",
        ];
        assert_eq!(call(&mut conn, &add).await, ":1\r\n", "{key}");
        cartd_tests::wait_for_sink(&mut node.client(false).await).await;
    }
    assert_eq!(
        db.count("SELECT count(*) FROM sink_checkpoint WHERE node IN ('n1', 'n2')")
            .await,
        2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM carts WHERE key IN ('cart:1', 'cart:2')")
            .await,
        2
    );
}

/// A cluster node started on an empty data directory restores from PostgreSQL the carts of
/// its own slots only: before, it restored every shard group's carts, which it could not
/// serve (MOVED) and whose expiry would have deleted the rows of carts live on other nodes.
#[tokio::test]
async fn a_wiped_node_restores_only_its_own_slots() {
    let db = cartd_tests::TestDb::create().await;
    let layout = |me: &str| {
        format!(
            "[postgres]\nurl = \"{}\"\n[cluster]\nenabled = true\nnode_id = \"{me}\"\n\
             [[cluster.nodes]]\nid = \"n1\"\naddr = \"127.0.0.1:7001\"\nslots = [\"0-8191\"]\n\
             [[cluster.nodes]]\nid = \"n2\"\naddr = \"127.0.0.1:7002\"\nslots = [\"8192-16383\"]\n",
            db.url
        )
    };
    let mut n1 = Cartd::start_async(&layout("n1")).await;
    let n2 = Cartd::start_async(&layout("n2")).await;
    // cart:1 is in slot 6801 (n1's), cart:2 in 13807 (n2's).
    for (node, key) in [(&n1, "cart:1"), (&n2, "cart:2")] {
        let mut conn = node.raw().await;
        let add = [
            "CART.ADD", key, "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION",
        ];
        assert_eq!(call(&mut conn, &add).await, ":1\r\n", "{key}");
        cartd_tests::wait_for_sink(&mut node.client(false).await).await;
    }
    assert_eq!(db.count("SELECT count(*) FROM carts").await, 2);
    n1.kill();
    // Another data directory: empty, so n1 restores from PostgreSQL.
    let n1 = Cartd::start_async(&layout("n1")).await;
    let mut conn = n1.raw().await;
    assert_eq!(call(&mut conn, &["DBSIZE"]).await, ":1\r\n", "cart:1 only");
    assert!(call(&mut conn, &["CART.GET", "cart:1"])
        .await
        .starts_with('*'));
    assert_eq!(db.count("SELECT count(*) FROM carts").await, 2);
}
