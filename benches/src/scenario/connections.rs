//! The connection storm: open N connections (spread over several loopback source addresses,
//! each of which has only about 28,000 ephemeral ports), hold them all, then have every one
//! add the flash-sale product at the same instant. Each latency runs from that instant to the
//! connection's reply, so the spread shows how long the last shopper waited.
//!
//! [`Storm`] is one process's part: its connections, each to a server of its own, opened, then
//! added at an instant it is given, then closed. [`run`] is the whole storm against one server;
//! `cluster_connections.rs` gives a storm to each of several client processes against a cluster.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::closed::now_ms;
use super::workloads::flash_add;
use crate::record::Recorder;
use crate::resp::Conn;
use crate::target::{rss_bytes, Model, Target};

/// Connections one loopback source address is given at most (the ephemeral port range holds
/// about 28,000; the rest is headroom for other programs).
pub const CONNECTIONS_PER_SOURCE_MAX: usize = 20_000;
/// Loopback source addresses there are to give: 127.0.0.2 to 127.0.0.251.
pub const SOURCES_MAX: usize = 250;
/// Connects in flight at once (the listen backlog is finite).
pub const CONNECTS_IN_FLIGHT_MAX: usize = 512;
/// File descriptors this process keeps for itself besides the connections.
const SPARE_FDS: u64 = 64;
/// How long a connect or a reply may take before it counts as an error.
const WAIT_MAX: Duration = Duration::from_secs(60);
/// How often the storm looks whether every connection has settled or been answered.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Characters of a server's error text that name its kind.
const ERROR_KIND_CHARS_MAX: usize = 60;

/// The storm's size.
#[derive(Debug, Clone, Copy)]
pub struct ConnSpec {
    /// Connections to open.
    pub count: usize,
    /// Loopback source addresses to spread them over; 0 picks enough.
    pub sources: usize,
}

/// What the storm measured besides latencies.
#[derive(Debug, Clone)]
pub struct ConnStats {
    /// Connections that opened.
    pub connected: u64,
    /// Time to open them all.
    pub connect_time: Duration,
    /// Source addresses used.
    pub sources: usize,
    /// Server memory per open, idle connection (resident size while all were open, less
    /// before, over the connections).
    pub rss_per_connection_bytes: f64,
    /// Failed connections and adds, by what went wrong.
    pub errors_by_kind: BTreeMap<String, u64>,
}

/// The open-file limit of this process, raised as far as allowed, less what it keeps for
/// itself: the connections one process can hold.
pub fn connections_per_process_max() -> anyhow::Result<usize> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(limit.saturating_sub(SPARE_FDS) as usize)
}

/// Raises this process's open-file limit as far as allowed and checks `count` fits under it.
pub fn ensure_fd_limit(count: usize) -> anyhow::Result<u64> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    let needed = count as u64 + SPARE_FDS;
    if needed > limit {
        bail!(
            "{count} connections need {needed} open files but this process may have {limit} \
             (the hard limit, `ulimit -Hn`): raise it (as root: ulimit -Hn {needed}, or \
             LimitNOFILE= in a systemd unit) or ask for fewer with --conn-count"
        );
    }
    Ok(limit)
}

/// Runs the storm against one server.
pub async fn run(
    target: &Target,
    model: &Model,
    spec: ConnSpec,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<(Recorder, Duration, ConnStats)> {
    ensure_fd_limit(spec.count)?;
    let rss_before = rss_bytes(target).await?;
    let sources = source_addresses(target, spec);
    let conns = (0..spec.count)
        .map(|index| StormConn {
            node: 0,
            source: sources.get(index % sources.len().max(1)).copied(),
            cart: format!("fc{index}"),
        })
        .collect();
    let storm = Storm::open(
        &[target.addr],
        conns,
        model,
        CONNECTS_IN_FLIGHT_MAX,
        &counter,
    )
    .await;
    // What the server holds per idle connection (read while every one is open and idle).
    let rss_connected = rss_bytes(target).await.unwrap_or(rss_before);
    counter.store(0, Ordering::Relaxed);
    let elapsed = storm.add_at(Instant::now(), &counter).await;
    let connected = storm.connected();
    let connect_time = storm.connect_time;
    let found = storm.close().await?;
    let stats = ConnStats {
        connected,
        connect_time,
        sources: sources.len().max(1),
        rss_per_connection_bytes: rss_connected.saturating_sub(rss_before) as f64
            / connected.max(1) as f64,
        errors_by_kind: found.errors_by_kind,
    };
    Ok((found.rec, elapsed, stats))
}

/// The loopback addresses to connect from: none (the OS picks) off loopback or when one
/// address has ports enough.
fn source_addresses(target: &Target, spec: ConnSpec) -> Vec<IpAddr> {
    let wanted = sources_wanted(spec.count, spec.sources);
    if !is_loopback_v4(target.addr) || wanted <= 1 {
        return Vec::new();
    }
    loopback_sources(0, wanted.min(SOURCES_MAX))
}

/// Source addresses `count` connections need (`asked` when not 0).
pub fn sources_wanted(count: usize, asked: usize) -> usize {
    match asked {
        0 => count.div_ceil(CONNECTIONS_PER_SOURCE_MAX),
        given => given,
    }
}

/// Whether `addr` is an IPv4 loopback address (whose machine answers on all of 127/8).
pub fn is_loopback_v4(addr: SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback())
}

/// `count` loopback source addresses from the `first`-th on: 127.0.0.{2 + first}, ...
pub fn loopback_sources(first: usize, count: usize) -> Vec<IpAddr> {
    assert!(
        first + count <= SOURCES_MAX,
        "callers stay within SOURCES_MAX"
    );
    (first..first + count)
        .map(|index| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + index as u8)))
        .collect()
}

/// One connection of a storm: the server it goes to (an index into the storm's nodes), the
/// address it connects from, and the cart it adds to.
#[derive(Debug, Clone)]
pub struct StormConn {
    /// Index of its server in the nodes given to [`Storm::open`].
    pub node: usize,
    /// Loopback source address, or `None` for the OS's choice.
    pub source: Option<IpAddr>,
    /// The cart id it adds the flash-sale product to.
    pub cart: String,
}

/// How one connection's add went wrong: a kind to count by, and the text.
#[derive(Debug)]
struct Failure {
    kind: String,
    text: String,
}

/// A connection's end: its node and its add's latency from the go, or why it failed.
type Ended = (usize, Result<Duration, Failure>);

/// What a storm's connections found, tallied.
#[derive(Debug)]
pub struct StormFound {
    /// Latencies from the go instant, and errors.
    pub rec: Recorder,
    /// Errors by kind (`connect: ConnectionRefused`, `reply: ERR max number of clients`, ...).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Adds acknowledged per node.
    pub added_per_node: Vec<u64>,
}

/// One process's storm: every connection open and idle until [`Storm::add_at`], held until
/// [`Storm::close`].
pub struct Storm {
    tasks: Vec<JoinHandle<Ended>>,
    go_tx: watch::Sender<Option<Instant>>,
    release_tx: watch::Sender<bool>,
    connected_per_node: Arc<Vec<AtomicU64>>,
    answered: Arc<AtomicU64>,
    /// Time from the first connect to the last connection opened or failed.
    pub connect_time: Duration,
}

impl Storm {
    /// Opens every connection of `conns` to its node of `nodes`, at most `in_flight` connects
    /// at once, and returns when each has opened or failed; `progress` counts them.
    pub async fn open(
        nodes: &[SocketAddr],
        conns: Vec<StormConn>,
        model: &Model,
        in_flight: usize,
        progress: &AtomicU64,
    ) -> Storm {
        let model = Arc::new(model.clone());
        let (go_tx, go_rx) = watch::channel(None::<Instant>);
        let (release_tx, release_rx) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(in_flight.max(1)));
        let settled = Arc::new(AtomicU64::new(0));
        let connected_per_node: Arc<Vec<AtomicU64>> =
            Arc::new(nodes.iter().map(|_| AtomicU64::new(0)).collect());
        let answered = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let count = conns.len() as u64;
        let mut tasks = Vec::with_capacity(conns.len());
        for conn in conns {
            let shopper = Shopper {
                addr: nodes[conn.node],
                conn,
                model: model.clone(),
                gate: gate.clone(),
                settled: settled.clone(),
                connected_per_node: connected_per_node.clone(),
                answered: answered.clone(),
            };
            tasks.push(tokio::spawn(shopper.run(go_rx.clone(), release_rx.clone())));
        }
        loop {
            let done = settled.load(Ordering::Relaxed);
            progress.store(done, Ordering::Relaxed);
            if done >= count {
                break;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Storm {
            tasks,
            go_tx,
            release_tx,
            connected_per_node,
            answered,
            connect_time: started.elapsed(),
        }
    }

    /// Connections open now, per node.
    pub fn connected_per_node(&self) -> Vec<u64> {
        self.connected_per_node
            .iter()
            .map(|connected| connected.load(Ordering::Relaxed))
            .collect()
    }

    /// Connections open now.
    pub fn connected(&self) -> u64 {
        self.connected_per_node().iter().sum()
    }

    /// Every connection adds at `at` (now or soon: all start together); returns when each has
    /// its answer, with the time from `at` to the last. `progress` counts the answers.
    pub async fn add_at(&self, at: Instant, progress: &AtomicU64) -> Duration {
        wait_until(at).await;
        self.go_tx.send_replace(Some(at));
        let count = self.tasks.len() as u64;
        loop {
            let answered = self.answered.load(Ordering::Relaxed);
            progress.store(answered, Ordering::Relaxed);
            if answered >= count {
                return at.elapsed();
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Closes every connection and tallies what each found.
    pub async fn close(self) -> anyhow::Result<StormFound> {
        self.release_tx.send_replace(true);
        let mut found = StormFound {
            rec: Recorder::default(),
            errors_by_kind: BTreeMap::new(),
            added_per_node: vec![0; self.connected_per_node.len()],
        };
        for task in self.tasks {
            match task.await.context("a connection's task panicked")? {
                (node, Ok(latency)) => {
                    found.rec.ok(latency);
                    found.added_per_node[node] += 1;
                }
                (_, Err(failure)) => {
                    *found.errors_by_kind.entry(failure.kind).or_default() += 1;
                    found.rec.error(failure.text);
                }
            }
        }
        Ok(found)
    }
}

/// Sleeps until `at`: tokio's timer has millisecond steps, so it sleeps to just before and
/// yields until the instant.
async fn wait_until(at: Instant) {
    if let Some(early) = at.checked_sub(Duration::from_millis(2)) {
        tokio::time::sleep_until(early.into()).await;
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

struct Shopper {
    addr: SocketAddr,
    conn: StormConn,
    model: Arc<Model>,
    gate: Arc<Semaphore>,
    settled: Arc<AtomicU64>,
    connected_per_node: Arc<Vec<AtomicU64>>,
    answered: Arc<AtomicU64>,
}

impl Shopper {
    /// Connects, waits for the go, adds, holds the connection until released; `answered`
    /// counts answers and failures.
    async fn run(
        self,
        mut go: watch::Receiver<Option<Instant>>,
        mut release: watch::Receiver<bool>,
    ) -> Ended {
        let node = self.conn.node;
        let conn = {
            let _permit = self.gate.acquire().await.expect("the gate is never closed");
            tokio::time::timeout(WAIT_MAX, Conn::connect(self.addr, self.conn.source)).await
        };
        if matches!(conn, Ok(Ok(_))) {
            self.connected_per_node[node].fetch_add(1, Ordering::Relaxed);
        }
        self.settled.fetch_add(1, Ordering::Relaxed);
        let go_at = go
            .wait_for(Option::is_some)
            .await
            .map(|at| at.expect("waited for Some"));
        let outcome = match (conn, go_at) {
            (Ok(Ok(mut conn)), Ok(go_at)) => {
                let result = self.add(&mut conn, go_at).await;
                self.answered.fetch_add(1, Ordering::Relaxed);
                let _ = release.wait_for(|released| *released).await;
                let _ = conn.close_now();
                return (node, result);
            }
            (Ok(Err(error)), _) => Err(Failure {
                kind: format!("connect: {:?}", error.kind()),
                text: format!("connect to {} failed: {error}", self.addr),
            }),
            (Err(_), _) => Err(Failure {
                kind: "connect: timed out".to_string(),
                text: format!("connect to {} timed out after {WAIT_MAX:?}", self.addr),
            }),
            (_, Err(_)) => Err(Failure {
                kind: "ended before the go".to_string(),
                text: "the run ended before the go".to_string(),
            }),
        };
        self.answered.fetch_add(1, Ordering::Relaxed);
        (node, outcome)
    }

    async fn add(&self, conn: &mut Conn, go_at: Instant) -> Result<Duration, Failure> {
        self.model
            .push(&mut conn.out, &flash_add(&self.conn.cart), now_ms());
        let exchange = async {
            conn.flush().await?;
            conn.reply().await
        };
        match tokio::time::timeout(WAIT_MAX, exchange).await {
            Ok(Ok(reply)) => match reply.error() {
                Some(error) => Err(Failure {
                    kind: server_error_kind(&error),
                    text: error,
                }),
                None => Ok(go_at.elapsed()),
            },
            Ok(Err(error)) => Err(Failure {
                kind: format!("connection lost: {:?}", error.kind()),
                text: format!("connection lost: {error}"),
            }),
            Err(_) => Err(Failure {
                kind: "no reply in time".to_string(),
                text: format!("no reply within {WAIT_MAX:?}"),
            }),
        }
    }
}

/// The kind of a server's error reply: its text up to the first digit (slots, ports and counts
/// vary from one reply to the next), at most [`ERROR_KIND_CHARS_MAX`] characters.
fn server_error_kind(error: &str) -> String {
    let cut = error
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(error.len());
    let kind: String = error[..cut]
        .trim_end()
        .chars()
        .take(ERROR_KIND_CHARS_MAX)
        .collect();
    format!("reply: {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_leave_out_the_numbers() {
        assert_eq!(
            server_error_kind("MOVED 3999 127.0.0.1:7002"),
            "reply: MOVED"
        );
        assert_eq!(
            server_error_kind("ERR max number of clients reached"),
            "reply: ERR max number of clients reached"
        );
    }

    #[test]
    fn sources_are_distinct_loopback_addresses() {
        assert_eq!(sources_wanted(100_000, 0), 5);
        assert_eq!(sources_wanted(100, 3), 3);
        let sources = loopback_sources(3, 2);
        assert_eq!(
            sources,
            vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6))
            ]
        );
    }
}
