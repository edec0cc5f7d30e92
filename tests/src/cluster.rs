//! [`LocalCluster`]: a local cartd cluster made by `scripts/cluster up`, whose nodes a test can
//! talk to, kill (SIGKILL, by pid) and start again on the same configuration and data.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cartd_bin, RawConn};

/// A cluster up for the test, down (by pid) when dropped. Node `i` (0-based) is `n{i+1}`
/// on port `port + i`: the primaries first, then their replicas.
pub struct LocalCluster {
    dir: tempfile::TempDir,
    /// The first node's port.
    pub port: u16,
    /// Nodes in all.
    pub nodes: u16,
    /// The password every node requires (`requirepass`), if any.
    password: Option<String>,
}

/// The `scripts/cluster` script.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

/// The lowest port [`free_ports`] gives, and one past the highest: below the kernel's
/// ephemeral range (32768-60999 by default), so a client's outgoing connection (the suite
/// runs tests in parallel) never takes one between the check and a node's bind.
const CLUSTER_PORTS: std::ops::Range<u16> = 20_000..32_700;

/// A first port with `count` free ports after it on 127.0.0.1, picked at random in
/// [`CLUSTER_PORTS`].
pub fn free_ports(count: u16) -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let span = u64::from(CLUSTER_PORTS.end - CLUSTER_PORTS.start - count);
    for attempt in 0..400u32 {
        let random = RandomState::new().hash_one((std::time::SystemTime::now(), attempt));
        let base = CLUSTER_PORTS.start + u16::try_from(random % span).expect("within the span");
        if (0..count).all(|offset| TcpListener::bind(("127.0.0.1", base + offset)).is_ok()) {
            return base;
        }
    }
    panic!("no {count} free consecutive ports");
}

impl LocalCluster {
    /// `primaries` primaries with `replicas` replicas each.
    pub fn up(primaries: u16, replicas: u16) -> LocalCluster {
        LocalCluster::up_with(primaries, replicas, "")
    }

    /// As [`LocalCluster::up`], with `extra` TOML appended to every node's configuration.
    pub fn up_with(primaries: u16, replicas: u16, extra: &str) -> LocalCluster {
        LocalCluster::start(primaries, replicas, extra, &[], None)
    }

    /// As [`LocalCluster::up_with`], but the nodes of `each` (0-based) get their own TOML
    /// instead of `extra`.
    pub fn up_with_each(
        primaries: u16,
        replicas: u16,
        extra: &str,
        each: &[(u16, String)],
    ) -> LocalCluster {
        LocalCluster::start(primaries, replicas, extra, each, None)
    }

    /// As [`LocalCluster::up`], every node requiring `password` (`requirepass`).
    pub fn up_with_password(primaries: u16, replicas: u16, password: &str) -> LocalCluster {
        LocalCluster::start(primaries, replicas, "", &[], Some(password))
    }

    fn start(
        primaries: u16,
        replicas: u16,
        extra: &str,
        each: &[(u16, String)],
        password: Option<&str>,
    ) -> LocalCluster {
        // Another test may bind a port between the check and a node's bind: once more, on
        // other ports (the script stops the nodes it started when one fails).
        let mut last = String::new();
        for _ in 0..3 {
            match LocalCluster::try_start(primaries, replicas, extra, each, password) {
                Ok(cluster) => return cluster,
                Err(output) if output.contains("Address already in use") => last = output,
                Err(output) => panic!("scripts/cluster up failed: {output}"),
            }
        }
        panic!("scripts/cluster up failed three times on taken ports: {last}");
    }

    fn try_start(
        primaries: u16,
        replicas: u16,
        extra: &str,
        each: &[(u16, String)],
        password: Option<&str>,
    ) -> Result<LocalCluster, String> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let nodes = primaries * (1 + replicas);
        let port = free_ports(nodes);
        let extra_file = dir.path().join("extra.toml");
        std::fs::write(&extra_file, extra).expect("write the extra configuration");
        let mut command = Command::new(script());
        command.args(["up", "--primaries", &primaries.to_string()]);
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        for (node, toml) in each {
            let file = dir.path().join(format!("extra-n{}.toml", node + 1));
            std::fs::write(&file, toml).expect("write a node's extra configuration");
            command
                .arg("--extra-for")
                .arg(format!("n{}", node + 1))
                .arg(&file);
        }
        let output = command
            .args(["--replicas", &replicas.to_string()])
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .arg("--bin")
            .arg(cartd_bin())
            .arg("--extra")
            .arg(&extra_file)
            .output()
            .expect("run scripts/cluster");
        if !output.status.success() {
            return Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(LocalCluster {
            dir,
            port,
            nodes,
            password: password.map(str::to_owned),
        })
    }

    /// The cluster's directory (`n1/`, `n2/`, ...: config.toml, pid, log, data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `node`'s own directory.
    pub fn node_dir(&self, node: u16) -> PathBuf {
        self.dir.path().join(format!("n{}", node + 1))
    }

    /// A raw connection to node `node`.
    pub async fn conn(&self, node: u16) -> RawConn {
        RawConn::connect(([127, 0, 0, 1], self.port + node).into()).await
    }

    /// Node `node`'s pid, while it runs.
    pub fn pid(&self, node: u16) -> Option<u32> {
        pid_in(&self.node_dir(node))
    }

    /// Node `node`'s log so far.
    pub fn log(&self, node: u16) -> String {
        std::fs::read_to_string(self.node_dir(node).join("log")).unwrap_or_default()
    }

    /// SIGKILLs node `node` and waits until it is gone.
    pub fn kill9(&self, node: u16) {
        kill9_in(&self.node_dir(node));
    }

    /// Starts node `node` again on its configuration and data (after [`LocalCluster::kill9`])
    /// and waits until it answers PING.
    pub fn restart(&self, node: u16) {
        self.spawn(node);
        self.wait_ready(node);
    }

    /// Starts node `node` again on its configuration and data, not waiting for it: a node
    /// whose primary is down too may answer only once that one is back.
    pub fn spawn(&self, node: u16) {
        spawn_in(&self.node_dir(node));
    }

    /// Waits until node `node` answers PING (30 s at most).
    pub fn wait_ready(&self, node: u16) {
        let name = format!("n{}", node + 1);
        wait_answering(self.port + node, self.password.as_deref(), &name, || {
            self.log(node)
        });
    }
}

/// The pid in `dir/pid`, if the node there runs.
fn pid_in(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("pid"))
        .ok()
        .and_then(|pid| pid.trim().parse().ok())
}

/// SIGKILLs the node whose directory is `dir` and waits until it is gone.
fn kill9_in(dir: &Path) {
    let Some(pid) = pid_in(dir) else { return };
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        // A zombie of the script's background job counts as gone once it is a zombie with
        // no thread left: a zombie leader's other threads may still be exiting (one in an
        // fsync), holding the listening socket a restart needs.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.split_whitespace().collect();
        if fields.get(2) == Some(&"Z") && fields.get(19).is_none_or(|threads| *threads == "1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(dir.join("pid"));
}

/// Starts cartd on `dir/config.toml`, its output appended to `dir/log` and its pid in
/// `dir/pid`; not waited for.
fn spawn_in(dir: &Path) {
    let child = start_cartd(Command::new(cartd_bin()), dir).expect("start the node");
    std::fs::write(dir.join("pid"), child.id().to_string()).expect("write the pid");
    // The child is reaped by `down` (by pid) or at the test's end; not waited for here.
    std::mem::forget(child);
}

/// Runs `command` (cartd, or a wrapper that runs it, as `ip netns exec`) on
/// `dir/config.toml`, without DATABASE_URL, its output appended to `dir/log`.
pub(crate) fn start_cartd(
    mut command: Command,
    dir: &Path,
) -> std::io::Result<std::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))?;
    command
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// Waits until the node on `port` (node `name`, after AUTH `password` if any) answers PING,
/// 30 s at most; else fails with its `log`.
fn wait_answering(port: u16, password: Option<&str>, name: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut stream| {
                use std::io::{Read, Write};
                stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                if let Some(password) = password {
                    stream.write_all(format!("AUTH {password}\r\n").as_bytes())?;
                    let mut ok = [0u8; 5];
                    stream.read_exact(&mut ok)?;
                }
                stream.write_all(b"PING\r\n")?;
                let mut reply = [0u8; 7];
                stream.read_exact(&mut reply)?;
                Ok(&reply == b"+PONG\r\n")
            })
            .unwrap_or(false);
        if answered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {name} does not answer after 30 s; its log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Keeps `dir` when the test is failing and `CARTD_KEEP_FAILED` is set, saying where, so a
/// failed run's logs and data can be read afterwards.
fn keep_if_failing(dir: &mut tempfile::TempDir) {
    if std::thread::panicking() && std::env::var_os("CARTD_KEEP_FAILED").is_some() {
        dir.disable_cleanup(true);
        eprintln!("kept {}", dir.path().display());
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        keep_if_failing(&mut self.dir);
        let _ = Command::new(script())
            .args(["down", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

/// A cluster node that knows only itself (`[[cluster.nodes]]` of one entry, no slots), as a
/// node is before `redis-cli --cluster add-node` brings it in; stopped (by pid) when dropped.
pub struct LoneNode {
    dir: tempfile::TempDir,
    /// Its id.
    pub id: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl LoneNode {
    /// Starts node `id` with `extra` TOML appended to its configuration, and waits until it
    /// answers PING.
    pub fn start(id: &str, extra: &str) -> LoneNode {
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_ports(1);
        let config = format!(
            "[server]\nbind = \"127.0.0.1\"\nport = {port}\ndata_dir = \"{data}\"\n\n\
             [cluster]\nenabled = true\nnode_id = \"{id}\"\n\n\
             [[cluster.nodes]]\nid = \"{id}\"\naddr = \"127.0.0.1:{port}\"\n\n{extra}\n",
            data = dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("write the configuration");
        let node = LoneNode {
            dir,
            id: id.to_owned(),
            port,
        };
        node.restart();
        node
    }

    /// Its directory (config.toml, pid, log, data/).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A raw connection to it.
    pub async fn conn(&self) -> RawConn {
        RawConn::connect(([127, 0, 0, 1], self.port).into()).await
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("log")).unwrap_or_default()
    }

    /// SIGKILLs it and waits until it is gone.
    pub fn kill9(&self) {
        kill9_in(self.dir());
    }

    /// Starts it (again) on its configuration and data and waits until it answers PING.
    pub fn restart(&self) {
        spawn_in(self.dir());
        wait_answering(self.port, None, &self.id, || self.log());
    }
}

impl Drop for LoneNode {
    fn drop(&mut self) {
        keep_if_failing(&mut self.dir);
        self.kill9();
    }
}

/// A cluster client (redis-rs, 20 retries on redirections and errors) seeded with the nodes
/// on `ports` of 127.0.0.1.
pub async fn cluster_client(ports: &[u16]) -> redis::cluster_async::ClusterConnection {
    let nodes: Vec<String> = ports
        .iter()
        .map(|port| format!("redis://127.0.0.1:{port}/"))
        .collect();
    redis::cluster::ClusterClientBuilder::new(nodes)
        .retries(20)
        .build()
        .expect("a cluster client")
        .get_async_connection()
        .await
        .expect("connect to the cluster")
}
