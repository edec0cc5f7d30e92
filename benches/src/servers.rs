//! The servers `compare` starts itself: cartd from the build and Debian's redis-server
//! (installed with apt-get when missing), each on a free 127.0.0.1 port in a throwaway
//! directory, fresh for every scenario so one scenario's carts never weigh on the next.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use tempfile::TempDir;

use crate::resp::Conn;
use crate::target::{Kind, Target};

/// How long a server may take to answer PING after it starts.
const START_WAIT_MAX: Duration = Duration::from_secs(60);
/// Attempts at a free port (another program may take the one picked before the server binds).
const START_ATTEMPTS: usize = 3;

/// How both servers keep their data: the same fsync policy for cartd's log and Redis's AOF.
#[derive(Debug, Clone, Serialize)]
pub struct Durability {
    /// `always`, `everysec` or `no`.
    pub appendfsync: String,
    /// Whether Redis keeps an append-only file at all (cartd always logs).
    pub redis_appendonly: bool,
}

/// A server started for a comparison; stopped when dropped.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub target: Target,
    dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts one server of `kind`, able to take `clients_max` connections.
    pub async fn start(
        kind: Kind,
        binaries: &Binaries,
        durability: &Durability,
        clients_max: usize,
    ) -> anyhow::Result<Server> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("cartd-bench-")
                .tempdir()
                .context("cannot create a directory for the server")?;
            let port = free_port()?;
            let child = match kind {
                Kind::Cartd => {
                    spawn_cartd(&binaries.cartd, dir.path(), port, durability, clients_max)?
                }
                Kind::Redis => {
                    spawn_redis(&binaries.redis, dir.path(), port, durability, clients_max)?
                }
            };
            let target = Target {
                kind,
                addr: ([127, 0, 0, 1], port).into(),
            };
            let mut server = Server { child, target, dir };
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}); its log:\n{}",
                    self.target.kind.as_str(),
                    self.log_tail()
                );
            }
            if let Ok(mut conn) = Conn::connect(self.target.addr, None).await {
                if let Ok(reply) = conn.call(&[b"PING"]).await {
                    if reply.text().as_deref() == Some("PONG") {
                        return Ok(());
                    }
                }
            }
            if started.elapsed() > START_WAIT_MAX {
                bail!(
                    "{} did not answer PING within {START_WAIT_MAX:?}; its log:\n{}",
                    self.target.kind.as_str(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn spawn_cartd(
    binary: &Path,
    dir: &Path,
    port: u16,
    durability: &Durability,
    clients_max: usize,
) -> anyhow::Result<Child> {
    let config = format!(
        "[server]\nbind = \"127.0.0.1\"\nport = {port}\ndata_dir = {data:?}\nmaxclients = {clients_max}\n\n\
         [persistence]\nappendfsync = {fsync:?}\n\n[log]\nlevel = \"warn\"\n",
        data = dir.join("data").display().to_string(),
        fsync = durability.appendfsync,
    );
    let config_path = dir.join("cartd.toml");
    std::fs::write(&config_path, config)?;
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(&config_path)
        .env_remove("DATABASE_URL");
    spawn_logged(command, dir)
}

fn spawn_redis(
    binary: &Path,
    dir: &Path,
    port: u16,
    durability: &Durability,
    clients_max: usize,
) -> anyhow::Result<Child> {
    let appendonly = if durability.redis_appendonly {
        "yes"
    } else {
        "no"
    };
    let mut command = Command::new(binary);
    command
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", appendonly])
        // Bound to 127.0.0.1 alone. Protected mode (Redis 7.0) takes connections from
        // 127.0.0.1 only, not from the storm's other loopback sources (127.0.0.2, ...).
        .args(["--protected-mode", "no"])
        .args(["--appendfsync", &durability.appendfsync])
        .args(["--maxclients", &clients_max.to_string()])
        .args(["--daemonize", "no", "--logfile", ""])
        .arg("--dir")
        .arg(dir);
    spawn_logged(command, dir)
}

/// Starts a server with no stdin and its stdout and stderr in `dir/server.log`.
pub fn spawn_logged(mut command: Command, dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("server.log"))?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", command.get_program().to_string_lossy()))
}

/// The server programs a comparison starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// cartd.
    pub cartd: PathBuf,
    /// redis-server.
    pub redis: PathBuf,
}

impl Binaries {
    /// cartd from `--cartd` or beside this program; redis-server from `--redis-server` or PATH,
    /// installed with apt-get (as root) when missing.
    pub fn find(cartd: Option<PathBuf>, redis: Option<PathBuf>) -> anyhow::Result<Binaries> {
        let cartd = match cartd {
            Some(path) => path,
            None => {
                let me = std::env::current_exe()?;
                let beside = me.with_file_name("cartd");
                if !beside.exists() {
                    bail!(
                        "no cartd binary beside {} (build it: cargo build --release --bin cartd), \
                         or pass --cartd PATH",
                        me.display()
                    );
                }
                beside
            }
        };
        let redis = match redis {
            Some(path) => path,
            None => match on_path("redis-server") {
                Some(path) => path,
                None => install_redis()?,
            },
        };
        Ok(Binaries { cartd, redis })
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn install_redis() -> anyhow::Result<PathBuf> {
    eprintln!("redis-server is missing: installing Debian's redis-server with apt-get");
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context(
                "cannot run apt-get (install redis-server yourself, or pass --redis-server)",
            )?;
        if !status.success() {
            bail!("apt-get {} failed ({status}); install redis-server yourself (as root), or pass --redis-server", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "redis-server"])?;
    on_path("redis-server")
        .ok_or_else(|| anyhow!("apt-get installed redis-server but it is not on PATH"))
}
