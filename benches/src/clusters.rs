//! The clusters `compare --cluster` starts itself, of one shape: a cartd cluster made by
//! `scripts/cluster up` (the release cartd, in a fresh temp dir, stopped with `scripts/cluster
//! down`, which stops each node by its pid), and a Redis Cluster of Debian's redis-server
//! (`cluster-enabled yes`, durable as the single-node compare makes Redis, on free 127.0.0.1
//! ports) joined by `redis-cli --cluster create`, each node stopped by its pid. Both take the
//! `maxclients` the connections scenario needs of each node. Both are up
//! when every node says `cluster_state:ok` and every primary has its replicas connected.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use tempfile::TempDir;

use crate::resp::Conn;
use crate::servers::{spawn_logged, Binaries, Durability};
use crate::target::{Kind, Target};

/// How long a cluster may take to be up (every node `cluster_state:ok`, replicas connected).
const READY_WAIT_MAX: Duration = Duration::from_secs(60);
/// Redis Cluster's bus listens on each node's port plus this.
const REDIS_BUS_PORT_OFFSET: u16 = 10_000;
/// Highest first port tried, so the bus ports stay below 65536.
const PORT_FIRST_MAX: u16 = 55_000;
/// Attempts at a free block of ports.
const PORT_ATTEMPTS: usize = 200;

/// How many nodes: primaries, and replicas of each.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Shape {
    /// Primaries (the 16384 slots split evenly).
    pub primaries: u16,
    /// Replicas per primary.
    pub replicas: u16,
}

impl Shape {
    fn nodes(self) -> u16 {
        self.primaries * (1 + self.replicas)
    }
}

/// What every node of a cluster is started with.
#[derive(Debug, Clone, Copy)]
pub struct NodeSettings<'a> {
    /// fsync policy (and, for Redis, whether it keeps an AOF at all).
    pub durability: &'a Durability,
    /// `maxclients` of each node, when not the server's default (the connections scenario).
    pub clients_max: Option<usize>,
}

/// A cluster started for a comparison; stopped when dropped.
pub struct Cluster {
    /// Its first node, the seed the scenarios read CLUSTER SLOTS from.
    pub target: Target,
    dir: TempDir,
    addrs: Vec<SocketAddr>,
    nodes: Nodes,
}

enum Nodes {
    /// Started by `scripts/cluster up`: stopped by `scripts/cluster down`.
    Cartd { script: PathBuf },
    /// Started here: each stopped by its pid.
    Redis { children: Vec<Child> },
}

impl Drop for Cluster {
    fn drop(&mut self) {
        match &mut self.nodes {
            Nodes::Cartd { script } => {
                let _ = Command::new(script)
                    .args(["down", "--dir"])
                    .arg(self.dir.path())
                    .stdout(Stdio::null())
                    .status();
            }
            Nodes::Redis { children } => {
                for child in children.iter_mut() {
                    let _ = child.kill();
                }
                for child in children.iter_mut() {
                    let _ = child.wait();
                }
            }
        }
    }
}

impl Cluster {
    /// Starts a cluster of `kind` in `shape` and waits until it is up; a cartd cluster with
    /// `script` (scripts/cluster).
    pub async fn start(
        kind: Kind,
        shape: Shape,
        binaries: &Binaries,
        script: &Path,
        nodes: NodeSettings<'_>,
    ) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("cartd-bench-cluster-")
            .tempdir()
            .context("cannot create a directory for the cluster")?;
        let base = free_ports(shape.nodes())?;
        let addrs: Vec<SocketAddr> = (0..shape.nodes())
            .map(|offset| SocketAddr::from(([127, 0, 0, 1], base + offset)))
            .collect();
        let mut cluster = Cluster {
            target: Target {
                kind,
                addr: addrs[0],
            },
            dir,
            addrs,
            nodes: match kind {
                Kind::Cartd => Nodes::Cartd {
                    script: script.to_path_buf(),
                },
                Kind::Redis => Nodes::Redis {
                    children: Vec::new(),
                },
            },
        };
        match kind {
            Kind::Cartd => cluster.start_cartd(shape, binaries, script, nodes)?,
            Kind::Redis => cluster.start_redis(shape, binaries, nodes).await?,
        }
        cluster.wait_ready(shape).await?;
        Ok(cluster)
    }

    fn start_cartd(
        &self,
        shape: Shape,
        binaries: &Binaries,
        script: &Path,
        nodes: NodeSettings<'_>,
    ) -> anyhow::Result<()> {
        // Durable as the single-node compare makes cartd; scripts/cluster writes [server].
        let extra = self.dir.path().join("extra.toml");
        let config = format!(
            "\n[persistence]\nappendfsync = {:?}\n\n[log]\nlevel = \"warn\"\n",
            nodes.durability.appendfsync
        );
        std::fs::write(&extra, config)?;
        let mut command = Command::new(script);
        command.args(["up", "--primaries", &shape.primaries.to_string()]);
        if let Some(clients_max) = nodes.clients_max {
            command.args(["--maxclients", &clients_max.to_string()]);
        }
        let output = command
            .args(["--replicas", &shape.replicas.to_string()])
            .args(["--port", &self.target.addr.port().to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--bin")
            .arg(&binaries.cartd)
            .arg("--extra")
            .arg(&extra)
            .env_remove("DATABASE_URL")
            .output()
            .with_context(|| format!("cannot run {}", script.display()))?;
        check(&output, "scripts/cluster up")
    }

    async fn start_redis(
        &mut self,
        shape: Shape,
        binaries: &Binaries,
        nodes: NodeSettings<'_>,
    ) -> anyhow::Result<()> {
        for addr in self.addrs.clone() {
            let node_dir = self.dir.path().join(addr.port().to_string());
            std::fs::create_dir_all(&node_dir)?;
            let child = spawn_redis_node(&binaries.redis, &node_dir, addr.port(), nodes)?;
            if let Nodes::Redis { children } = &mut self.nodes {
                children.push(child);
            }
        }
        for addr in self.addrs.clone() {
            self.wait_ping(addr).await?;
        }
        let redis_cli = binaries.redis.with_file_name("redis-cli");
        let redis_cli = if redis_cli.is_file() {
            redis_cli
        } else {
            PathBuf::from("redis-cli")
        };
        let output = Command::new(&redis_cli)
            .arg("--cluster")
            .arg("create")
            .args(self.addrs.iter().map(ToString::to_string))
            .args(["--cluster-replicas", &shape.replicas.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", redis_cli.display()))?;
        check(&output, "redis-cli --cluster create")
    }

    /// Waits until the Redis node on `addr` answers PING; fails if a node exited.
    async fn wait_ping(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Nodes::Redis { children } = &mut self.nodes {
                for child in children.iter_mut() {
                    if let Some(status) = child.try_wait()? {
                        bail!(
                            "a redis-server of the cluster exited at start ({status}); logs in {}",
                            self.dir.path().display()
                        );
                    }
                }
            }
            if let Ok(mut conn) = Conn::connect(addr, None).await {
                if let Ok(reply) = conn.call(&[b"PING"]).await {
                    if reply.text().as_deref() == Some("PONG") {
                        return Ok(());
                    }
                }
            }
            if started.elapsed() > READY_WAIT_MAX {
                bail!("redis-server on {addr} does not answer PING");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every node says `cluster_state:ok` and, on Redis, every primary has its
    /// replicas connected (so a WAIT can count them). cartd's replicas do not replicate yet:
    /// its cluster state alone is checked.
    async fn wait_ready(&self, shape: Shape) -> anyhow::Result<()> {
        let started = Instant::now();
        let replicas = match self.target.kind {
            Kind::Cartd => 0,
            Kind::Redis => shape.replicas,
        };
        let mut last = String::from("no node answered yet");
        while started.elapsed() < READY_WAIT_MAX {
            match nodes_ready(&self.addrs, replicas).await {
                Ok(()) => return Ok(()),
                Err(error) => last = format!("{error:#}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "the {} cluster in {} is not up after {READY_WAIT_MAX:?}: {last}",
            self.target.kind.as_str(),
            self.dir.path().display()
        )
    }
}

/// Ok when every node is `cluster_state:ok` and each primary has `replicas` replicas connected.
async fn nodes_ready(addrs: &[SocketAddr], replicas: u16) -> anyhow::Result<()> {
    for &addr in addrs {
        let mut conn = Conn::connect(addr, None).await?;
        let info = conn.call(&[b"CLUSTER", b"INFO"]).await?.text();
        let info = info.ok_or_else(|| anyhow!("{addr}: CLUSTER INFO failed"))?;
        if !info.contains("cluster_state:ok") {
            bail!("{addr}: not cluster_state:ok yet");
        }
        if replicas == 0 {
            continue;
        }
        let replication = conn.call(&[b"INFO", b"replication"]).await?.text();
        let replication = replication.unwrap_or_default();
        if !replication.contains("role:master") {
            continue;
        }
        // A replica counts for WAIT once its initial sync is done and it acks: `state=online`.
        let online = replication
            .lines()
            .filter(|line| line.starts_with("slave") && line.contains("state=online"))
            .count();
        if online < usize::from(replicas) {
            bail!("{addr}: {online} of {replicas} replicas online");
        }
    }
    Ok(())
}

fn spawn_redis_node(
    binary: &Path,
    dir: &Path,
    port: u16,
    nodes: NodeSettings<'_>,
) -> anyhow::Result<Child> {
    let durability = nodes.durability;
    let appendonly = if durability.redis_appendonly {
        "yes"
    } else {
        "no"
    };
    let mut command = Command::new(binary);
    command
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .args(["--save", "", "--appendonly", appendonly])
        // Bound to 127.0.0.1 alone. Protected mode (Redis 7.0) takes connections from
        // 127.0.0.1 only, not from the storm's other loopback sources (127.0.0.2, ...).
        .args(["--protected-mode", "no"])
        .args(["--appendfsync", &durability.appendfsync])
        .args(["--daemonize", "no", "--logfile", ""])
        .arg("--dir")
        .arg(dir);
    if let Some(clients_max) = nodes.clients_max {
        command.args(["--maxclients", &clients_max.to_string()]);
    }
    spawn_logged(command, dir)
}

/// A first port with `count` free ports after it, each with its bus port free too.
fn free_ports(count: u16) -> anyhow::Result<u16> {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..PORT_ATTEMPTS {
        let base = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if base > PORT_FIRST_MAX {
            continue;
        }
        let all_free = (0..count)
            .all(|offset| free(base + offset) && free(base + offset + REDIS_BUS_PORT_OFFSET));
        if all_free {
            return Ok(base);
        }
    }
    bail!("found no {count} free consecutive ports on 127.0.0.1")
}

/// `scripts/cluster`: `--cluster-script`, else the repository's above the build (the
/// harness is `target/<profile>/cartd-bench`), else where it was built from.
pub fn find_script(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let me = std::env::current_exe()?;
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster");
    me.ancestors()
        .map(|dir| dir.join("scripts/cluster"))
        .chain([built_from])
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow!(
                "no scripts/cluster above {} (pass --cluster-script PATH)",
                me.display()
            )
        })
}

fn check(output: &Output, what: &str) -> anyhow::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
