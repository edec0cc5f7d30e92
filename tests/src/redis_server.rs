//! A real redis-server (Debian's, which `scripts/test` installs) on a free 127.0.0.1 port, as
//! a reference: a test that runs the same client script against it and against cartd knows
//! the script is right. It saves nothing, and is killed when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::START_TIMEOUT;

/// A running redis-server with its own temporary directory; killed (SIGKILL) when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis-server with extra command-line `config` (directives and their words as
    /// separate arguments: `["--user", "matrix", "on", ">secret", "~*", "+@all"]`) and waits
    /// until it answers PING. Panics, saying to run scripts/test, when redis-server is not
    /// installed.
    pub fn start(config: &[&str]) -> RedisServer {
        let version = Command::new("redis-server").arg("--version").output();
        assert!(
            version.is_ok_and(|output| output.status.success()),
            "redis-server is missing: run scripts/test, which installs Debian's redis-server"
        );
        // The port is free when picked but may be taken before redis-server binds it.
        for _attempt in 0..3 {
            if let Some(server) = RedisServer::try_start(config) {
                return server;
            }
        }
        panic!("redis-server did not start on three free ports in a row");
    }

    fn try_start(config: &[&str]) -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a temp dir for redis-server");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .args(config);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let mut server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        server.wait_for_pong().then_some(server)
    }

    /// Waits up to [`START_TIMEOUT`] for `+PONG`; false once the process exited.
    fn wait_for_pong(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut reply = [0u8; 7];
                let answered = conn.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
                    && conn.write_all(b"PING\r\n").is_ok()
                    && conn.read_exact(&mut reply).is_ok();
                if answered && &reply == b"+PONG\r\n" {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// The listening port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
