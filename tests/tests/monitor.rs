//! MONITOR as Redis has it: every command run, as `+<time> [0 <addr>] "arg" ...`, passwords
//! redacted; bounded: a monitor that stops reading is closed and never slows the writers.
//! Before this MONITOR was an unknown command.

use cartd_tests::{encode_command, info, info_number, w, Cartd};

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 reply")
}

/// The feed shows each command with its client's address, arguments quoted as Redis quotes
/// them, and no password.
#[tokio::test]
async fn monitor_shows_every_command_as_redis_does() {
    let cartd = Cartd::start("[server]\nrequirepass = \"s3cret\"\n");
    let mut monitor = cartd.raw().await;
    monitor.call(&["AUTH", "s3cret"]).await;
    assert_eq!(text(monitor.call(&["MONITOR"]).await), "+OK\r\n");
    let mut client = cartd.raw().await;
    client.call(&["AUTH", "s3cret"]).await;
    client
        .call(&[
            "CART.ADD",
            "cart:m",
            "say \"hi\"\n",
            "-",
            "1",
            "PRICE",
            "100",
            "CURRENCY",
            "USD",
        ])
        .await;
    client
        .call(&["HELLO", "3", "AUTH", "default", "s3cret"])
        .await;
    let auth = text(monitor.read_reply().await);
    let add = text(monitor.read_reply().await);
    let hello = text(monitor.read_reply().await);
    let port = client_port(&mut client).await;
    assert!(
        auth.starts_with('+')
            && auth.ends_with(&format!("[0 127.0.0.1:{port}] \"AUTH\" \"(redacted)\"\r\n")),
        "{auth:?}"
    );
    assert!(
        add.ends_with(
            "\"CART.ADD\" \"cart:m\" \"say \\\"hi\\\"\\n\" \"-\" \"1\" \"PRICE\" \"100\" \"CURRENCY\" \"USD\"\r\n"
        ),
        "{add:?}"
    );
    let time: f64 = add[1..add.find(' ').unwrap()]
        .parse()
        .expect("unix seconds with µs");
    assert!(time > 1.7e9);
    assert!(
        hello.ends_with("\"HELLO\" \"3\" \"AUTH\" \"(redacted)\" \"(redacted)\"\r\n"),
        "{hello:?}"
    );
    assert!(!hello.contains("s3cret") && !auth.contains("s3cret"));
    let list = text(client.call(&["CLIENT", "LIST"]).await);
    assert!(list.contains("flags=O"), "{list}");
}

async fn client_port(client: &mut cartd_tests::RawConn) -> String {
    let info = text(client.call(&["CLIENT", "INFO"]).await);
    let addr = info
        .split(' ')
        .find_map(|field| field.strip_prefix("addr="))
        .expect("addr= in CLIENT INFO")
        .to_owned();
    addr.rsplit(':').next().unwrap().to_owned()
}

/// A monitor that does not read is closed once its feed passes the pubsub output limit;
/// the writer gets every reply and nothing it wrote is lost.
#[tokio::test]
async fn a_monitor_that_does_not_read_is_closed_and_writers_go_on() {
    let cartd =
        Cartd::start("[server]\nclient_output_buffer_limit_pubsub = \"pubsub 1mb 512kb 60\"\n");
    let mut monitor = cartd.raw().await;
    monitor.call(&["MONITOR"]).await;
    let mut writer = cartd.raw().await;
    // About 16 MB of feed (big PUBLISH payloads nobody receives, and cart writes between
    // them), more than the kernel's socket buffers take for the monitor.
    let payload = "x".repeat(64 * 1024);
    for batch in 0..250 {
        let mut commands = encode_command(&["PUBLISH", "nobody", &payload]);
        commands.extend(encode_command(&w(&format!(
            "CART.ADD cart:big{} sku - 1 PRICE 100 CURRENCY USD REPLY NONE",
            batch % 10
        ))));
        writer.send(&commands).await;
        assert_eq!(text(writer.read_reply().await), ":0\r\n");
        assert_eq!(text(writer.read_reply().await), "+OK\r\n");
    }
    let mut closed = false;
    for _ in 0..20 {
        if monitor.is_closed().await {
            closed = true;
            break;
        }
    }
    assert!(closed, "the monitor that never reads is closed");
    let stats = info(&mut cartd.client(false).await, &["stats"]).await;
    assert_eq!(
        info_number(&stats, "client_output_buffer_limit_disconnections"),
        1
    );
    assert_eq!(
        text(writer.call(&["EXISTS", "cart:big0", "cart:big9"]).await),
        ":2\r\n"
    );
}
