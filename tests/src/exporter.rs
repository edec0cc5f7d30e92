//! Running Debian's `prometheus-redis-exporter` (which `scripts/test` installs) against cartd
//! on a free 127.0.0.1 port, fetching `/metrics` over plain HTTP, and reading what it logged.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Cartd, WAIT};

/// Where the exporter is on `PATH` (Debian names it `prometheus-redis-exporter`, upstream
/// `redis_exporter`), if it is installed.
pub fn redis_exporter() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            [
                dir.join("prometheus-redis-exporter"),
                dir.join("redis_exporter"),
            ]
        })
        .find(|candidate| candidate.is_file())
}

/// A running exporter; killed when dropped.
pub struct Exporter {
    child: Child,
    /// Where it serves `/metrics`.
    pub addr: std::net::SocketAddr,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on at 127.0.0.1 right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Exporter {
    /// Starts `bin` against `cartd` with `extra` flags and waits (up to [`WAIT`]) until it
    /// serves HTTP.
    pub fn start(bin: &PathBuf, cartd: &Cartd, extra: &[&str]) -> Exporter {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("an address");
        let child = Command::new(bin)
            .arg(format!("--redis.addr=redis://127.0.0.1:{}", cartd.port()))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", bin.display()));
        let exporter = Exporter { child, addr };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the exporter never listened on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        exporter
    }

    /// One scrape: the body of `GET /metrics`.
    pub async fn scrape(&self) -> String {
        let fetch = async {
            let mut stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            std::io::Result::Ok(String::from_utf8_lossy(&response).into_owned())
        };
        let response = tokio::time::timeout(WAIT, fetch)
            .await
            .expect("the exporter answers in time")
            .expect("GET /metrics");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("an HTTP response has a head and a body");
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "{head}"
        );
        body.to_owned()
    }

    /// Stops it and returns everything it logged (stdout and stderr).
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut log);
        }
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut log);
        }
        log
    }
}

/// The value of the sample `name` (with its labels as written, e.g.
/// `redis_errors_total{err="ERR"}`) in a `/metrics` body.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
