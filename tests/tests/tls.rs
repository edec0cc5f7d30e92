//! Client TLS with Redis's option names (docs/SECURITY.md): the test makes its own CA and
//! certificates with openssl, and connects with `redis-cli --tls` and redis-py `ssl=True`;
//! mutual TLS refuses a client without a certificate of the CA; with a TLS port, `port 0`
//! means no plain listener, as in Redis.

use std::path::{Path, PathBuf};
use std::process::Command;

use cartd_tests::{redis_cli, Cartd};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=cartd test CA",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            ext,
        ]);
    }
}

/// A port nothing listens on right now (the OS picks it; a TLS port cannot be 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn tls_config(dir: &Path, port: u16, auth: &str) -> String {
    format!(
        "[server]\ntls-port = {port}\ntls-cert-file = \"{}\"\ntls-key-file = \"{}\"\n\
         tls-ca-cert-file = \"{}\"\ntls-auth-clients = \"{auth}\"\n",
        dir.join("server.crt").display(),
        dir.join("server.key").display(),
        dir.join("ca.crt").display(),
    )
}

/// redis-cli over TLS, with or without the client certificate; its stdout and stderr.
fn cli_tls(dir: &Path, port: u16, with_cert: bool, args: &[&str]) -> (String, String) {
    let cli: PathBuf = redis_cli().expect("redis-cli is installed by scripts/test");
    let mut command = Command::new(cli);
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--tls",
            "--cacert",
        ])
        .arg(dir.join("ca.crt"));
    if with_cert {
        command
            .arg("--cert")
            .arg(dir.join("client.crt"))
            .arg("--key")
            .arg(dir.join("client.key"));
    }
    let output = command.args(args).output().expect("run redis-cli");
    (
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

#[tokio::test]
async fn mutual_tls_serves_clients_with_a_certificate_of_the_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let port = free_port();
    let cartd = Cartd::start_async(&tls_config(dir.path(), port, "yes")).await;
    assert_eq!(
        cartd.port(),
        port,
        "no plain listener: the TLS one is logged"
    );
    let (out, err) = cli_tls(
        dir.path(),
        port,
        true,
        &[
            "CART.ADD", "cart:tls", "sku", "-", "2", "PRICE", "5", "CURRENCY", "USD", "REPLY",
            "VERSION",
        ],
    );
    assert_eq!(out, "1", "{err}");
    let (out, _) = cli_tls(dir.path(), port, false, &["PING"]);
    assert_ne!(
        out, "PONG",
        "a client without a certificate must be refused"
    );
    let python = r#"
import json, sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), ssl=True, ssl_ca_certs=sys.argv[2] + "/ca.crt",
                ssl_certfile=sys.argv[2] + "/client.crt", ssl_keyfile=sys.argv[2] + "/client.key", decode_responses=True)
v = r.execute_command("CART.ADD", "cart:tls", "sku", "-", "1", "PRICE", "5", "CURRENCY", "USD", "REPLY", "VERSION")
print(json.dumps({"version": v, "ping": r.ping()}))
"#;
    let dir_arg = dir.path().to_str().expect("a UTF-8 temp dir");
    let out = cartd_tests::run_script(
        "python3",
        &["-c", python, &port.to_string(), dir_arg],
        ("PYTHONPATH", cartd_tests::client_libs().join("python")),
    );
    assert_eq!(out["version"], 2);
    assert_eq!(out["ping"], true);
}

/// `tls-auth-clients no` serves clients without a certificate; `tls-protocols TLSv1.3`
/// refuses a TLS 1.2 handshake (and rustls never speaks 1.1 or older).
#[tokio::test]
async fn tls_without_client_certificates_and_only_the_protocols_configured() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let tls_port = free_port();
    let config = format!(
        "{}tls-protocols = \"TLSv1.3\"\n",
        tls_config(dir.path(), tls_port, "no")
    );
    let cartd = Cartd::start_async(&config).await;
    let (out, err) = cli_tls(dir.path(), tls_port, false, &["PING"]);
    assert_eq!(out, "PONG", "{err}");
    for (flag, refused) in [("-tls1_3", false), ("-tls1_2", true), ("-tls1_1", true)] {
        let output = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{tls_port}"),
                flag,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run openssl s_client");
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(text.contains("Cipher is (NONE)"), refused, "{flag}: {text}");
    }
    drop(cartd);
}

/// TLS to PostgreSQL: `sslmode` in the URL. The cluster here takes TLS connections only
/// (`hostnossl` rejects); cartd streams to it with `sslmode=verify-full` against the test's
/// CA. cartd was built without a TLS backend for PostgreSQL before, so it could not connect.
#[tokio::test]
async fn cartd_streams_to_postgres_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let cluster = cartd_tests::PgCluster::start_tls(
        &dir.path().join("server.crt"),
        &dir.path().join("server.key"),
    );
    let plain = sqlx::PgPool::connect(&format!("{}?sslmode=disable", cluster.url())).await;
    assert!(
        plain.is_err(),
        "the cluster must refuse connections without TLS"
    );
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url(),
        dir.path().join("ca.crt").display()
    );
    let cartd =
        Cartd::start_async(&format!("[postgres]\nurl = \"{url}\"\ncoalesce_ms = 10\n")).await;
    let mut conn = cartd.client(false).await;
    cartd_tests::ok(
        &mut conn,
        &cartd_tests::w("CART.ADD cart:pg sku - 1 PRICE 5 CURRENCY USD"),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = cartd_tests::info(&mut conn, &["persistence"]).await;
        let done = cartd_tests::info_number(&text, "postgres_connected") == 1
            && cartd_tests::info_number(&text, "postgres_checkpoint_lsn")
                == cartd_tests::info_number(&text, "wal_last_lsn");
        if done {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
