//! Test hosts in Linux network namespaces (issue 14's partitions, without iptables or netem):
//! [`Network`] makes one hub namespace holding a bridge, and one namespace per host with a
//! veth `eth0` into that bridge and an address in a /24 of its own (10.77.N.0/24, N picked at
//! random among those no address or route of the root namespace uses). The root namespace
//! joins the bridge too (address .254), so the test process connects to every host; it never
//! listens there. A host is cut off entirely by taking its bridge port down
//! ([`Network::cut_off`]), or partitioned from some peers only by blackhole routes inside its
//! namespace ([`Network::partition`]): clients in the root namespace still reach it. A thread
//! of the test may enter a host ([`enter_namespace`]) to run a relay there
//! ([`crate::proxy::TcpProxy::start_in`]).
//! Everything is removed when the network drops, on a panic too: what still runs in a host is
//! killed by pid, then the namespaces are deleted (the root's veth goes with its peer).
//!
//! - [`postgres`]: [`NetnsPostgres`], a PostgreSQL server in a host.
//! - [`cluster`]: [`NetnsCluster`], a cartd cluster with each node in a host of its own.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod cluster;
pub mod postgres;

pub use cluster::NetnsCluster;
pub use postgres::NetnsPostgres;

/// The address of the root namespace on every test network (`10.77.N.254`).
const ROOT_HOST: u8 = 254;

/// Hosts a network holds at most: their addresses are `.1` to `.253`.
pub const HOSTS_MAX: usize = 253;

/// Networks made by this process so far: with the pid, it makes every name unique.
static NETWORKS_MADE: AtomicU32 = AtomicU32::new(0);

/// The subnets (`N` of 10.77.N.0/24) this process's live networks hold: two tests picking
/// at once must not pick the same.
static SUBNETS_HELD: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// One host: a namespace with `eth0` on the bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// What the test calls it (`pg`, `n1`, ...).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its address on the network.
    pub ip: Ipv4Addr,
    /// The hub's end of its veth (its port on the bridge).
    bridge_port: String,
}

/// A test network: the hub with its bridge, the hosts, and the root namespace's veth.
pub struct Network {
    /// The hub namespace (holds the bridge `br0`).
    hub: String,
    /// The root namespace's end of its veth into the bridge.
    root_link: String,
    /// `N` of 10.77.N.0/24.
    subnet: u8,
    hosts: Vec<Host>,
}

impl Network {
    /// A network with one host per name in `names` (host `i` at `10.77.N.{i+1}`). Panics,
    /// saying why, when `ip netns` does not work here (no skip: the test must run).
    pub fn new(names: &[&str]) -> Network {
        assert!(names.len() <= HOSTS_MAX, "at most {HOSTS_MAX} hosts");
        check_ip_netns();
        let made = NETWORKS_MADE.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{made}", std::process::id());
        let subnet = pick_subnet();
        let mut network = Network {
            hub: format!("cartd-{tag}-hub"),
            // 15 bytes at most: "ct" + pid (7 digits at most) + "x" + counter.
            root_link: format!("ct{tag}"),
            subnet,
            hosts: Vec::new(),
        };
        assert!(
            network.root_link.len() <= 15,
            "{} too long",
            network.root_link
        );
        network.make_hub();
        for (index, name) in names.iter().enumerate() {
            network.add_host(index, name, &tag);
        }
        network
    }

    /// The hub, its bridge, and the root namespace's veth into it.
    fn make_hub(&self) {
        ip(&["netns", "add", &self.hub]);
        ip(&["-n", &self.hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &self.hub, "link", "set", "br0", "up"]);
        let root = self.root_link.as_str();
        ip(&[
            "link", "add", root, "type", "veth", "peer", "name", "root", "netns", &self.hub,
        ]);
        ip(&[
            "-n", &self.hub, "link", "set", "root", "master", "br0", "up",
        ]);
        let address = format!("{}/24", self.ip_of(ROOT_HOST));
        ip(&["addr", "add", &address, "dev", root]);
        ip(&["link", "set", root, "up"]);
    }

    /// Host `index` named `name`: its namespace, its veth into the bridge, its address.
    fn add_host(&mut self, index: usize, name: &str, tag: &str) {
        let namespace = format!("cartd-{tag}-{name}");
        let bridge_port = format!("h{index}");
        let last = u8::try_from(index + 1).expect("at most HOSTS_MAX hosts");
        let host = Host {
            name: name.to_owned(),
            namespace,
            ip: self.ip_of(last),
            bridge_port,
        };
        // Held before it is made, so a failure half-way is cleaned up too.
        self.hosts.push(host.clone());
        let ns = host.namespace.as_str();
        ip(&["netns", "add", ns]);
        // Made in the hub with its peer straight in the host: no name in the root namespace.
        let port = host.bridge_port.as_str();
        ip(&[
            "-n", &self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
            ns,
        ]);
        ip(&["-n", &self.hub, "link", "set", port, "master", "br0", "up"]);
        let address = format!("{}/24", host.ip);
        ip(&["-n", ns, "addr", "add", &address, "dev", "eth0"]);
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }

    /// `10.77.N.last`.
    fn ip_of(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, last)
    }

    /// Host `index`.
    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index]
    }

    /// Every host, in the order made.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The subnet, `10.77.N.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}/24", self.ip_of(0))
    }

    /// `program` to run inside host `index` (`ip netns exec NS program`, which execs: the
    /// child's pid is the program's).
    pub fn command(&self, index: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.hosts[index].namespace])
            .arg(program);
        command
    }

    /// Cuts host `index` off everything: its port on the bridge goes down.
    pub fn cut_off(&self, index: usize) {
        let port = self.hosts[index].bridge_port.as_str();
        ip(&["-n", &self.hub, "link", "set", port, "down"]);
    }

    /// Connects host `index` again after [`Network::cut_off`].
    pub fn reconnect(&self, index: usize) {
        let port = self.hosts[index].bridge_port.as_str();
        ip(&["-n", &self.hub, "link", "set", port, "up"]);
    }

    /// Partitions host `index` from the hosts `peers`: inside its namespace, a blackhole
    /// route to each, so nothing it sends reaches them (a connection either way stalls). The
    /// root namespace and the other hosts still reach it.
    pub fn partition(&self, index: usize, peers: &[usize]) {
        for &peer in peers {
            self.blackhole(index, peer, "add");
        }
    }

    /// Removes the routes [`Network::partition`] added for the same `peers`.
    pub fn mend(&self, index: usize, peers: &[usize]) {
        for &peer in peers {
            self.blackhole(index, peer, "del");
        }
    }

    /// `ip -n NS route add|del blackhole PEER/32`.
    fn blackhole(&self, index: usize, peer: usize, verb: &str) {
        assert_ne!(index, peer, "a host is not partitioned from itself");
        let target = format!("{}/32", self.hosts[peer].ip);
        let ns = self.hosts[index].namespace.as_str();
        ip(&["-n", ns, "route", verb, "blackhole", &target]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            kill_everything_in(&host.namespace);
        }
        for namespace in self.hosts.iter().map(|host| &host.namespace) {
            let _ = ip_status(&["netns", "del", namespace]);
        }
        // The root's veth goes with its peer in the hub.
        let _ = ip_status(&["netns", "del", &self.hub]);
        if let Ok(mut held) = SUBNETS_HELD.lock() {
            held.retain(|subnet| *subnet != self.subnet);
        }
    }
}

/// SIGKILLs what still runs in `namespace` (each by its pid, as `ip netns pids` lists them)
/// and waits a moment for them to go: a process left in it keeps it alive.
fn kill_everything_in(namespace: &str) {
    let Ok(output) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
    else {
        return;
    };
    let pids: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    for pid in &pids {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids
        .iter()
        .any(|pid| std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Panics with what to do unless `ip netns` works (root, iproute2).
fn check_ip_netns() {
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "`ip netns list` failed ({}): the network namespace tests need root and a kernel \
             with network namespaces: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => panic!(
            "cannot run `ip` ({error}): the network namespace tests need iproute2 \
             (scripts/test installs it)"
        ),
    }
}

/// A random `N` whose 10.77.N.0/24 no address or route of the root namespace uses, nor a
/// live network of this process; held until that network drops.
fn pick_subnet() -> u8 {
    use std::hash::{BuildHasher, RandomState};
    let mut held = SUBNETS_HELD.lock().expect("no panic while held");
    let used = used_subnets();
    for attempt in 0..1_000u32 {
        let random = RandomState::new().hash_one((std::time::SystemTime::now(), attempt));
        let subnet = u8::try_from(random % 254).expect("below 254") + 1;
        if !used.contains(&subnet) && !held.contains(&subnet) {
            held.push(subnet);
            return subnet;
        }
    }
    panic!("no free 10.77.N.0/24 (used: {used:?})");
}

/// Every `N` of a 10.77.N.x the root namespace's addresses and routes (all tables) name.
fn used_subnets() -> HashSet<u8> {
    let mut text = String::new();
    for args in [
        &["-4", "-o", "addr", "show"][..],
        &["-4", "route", "show", "table", "all"][..],
    ] {
        let output = Command::new("ip").args(args).output().expect("run ip");
        text.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|word| word.strip_prefix("10.77."))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect()
}

/// Moves the calling thread (alone) into the network namespace `namespace` (`ip netns`'s
/// `/var/run/netns/NAME`): the sockets it makes from then on are that namespace's, and so
/// are the threads it starts. For a thread of the test's own (a relay inside a host); the
/// test process's other threads stay in the root namespace.
pub fn enter_namespace(namespace: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(format!("/var/run/netns/{namespace}"))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// Runs `ip args...`; panics with its error output if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run `ip` ({error}); install iproute2"));
    assert!(
        output.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Runs `ip args...` quietly; whether it succeeded (for the clean-up, which goes on).
fn ip_status(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}
