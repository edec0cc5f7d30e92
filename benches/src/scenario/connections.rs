//! The connection storm: open N connections (spread over several loopback source addresses,
//! each of which has only about 28,000 ephemeral ports), hold them all, then have every one
//! add the flash-sale product at the same instant. Each latency runs from that instant to the
//! connection's reply, so the spread shows how long the last shopper waited.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::{watch, Semaphore};

use super::closed::now_ms;
use super::workloads::flash_add;
use crate::record::Recorder;
use crate::resp::Conn;
use crate::target::{rss_bytes, Model, Target};

/// Connections one loopback source address is given at most (the ephemeral port range holds
/// about 28,000; the rest is headroom for TIME_WAIT and other programs).
const CONNECTIONS_PER_SOURCE_MAX: usize = 20_000;
/// Connects in flight at once (the listen backlog is finite).
const CONNECTS_IN_FLIGHT_MAX: usize = 512;
/// File descriptors this process keeps for itself besides the connections.
const SPARE_FDS: u64 = 64;
/// How long a connect or a reply may take before it counts as an error.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// The storm's size.
#[derive(Debug, Clone, Copy)]
pub struct ConnSpec {
    /// Connections to open.
    pub count: usize,
    /// Loopback source addresses to spread them over; 0 picks enough.
    pub sources: usize,
}

/// What the storm measured besides latencies.
#[derive(Debug, Clone, Copy)]
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

/// Runs the storm.
pub async fn run(
    target: &Target,
    model: &Model,
    spec: ConnSpec,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<(Recorder, Duration, ConnStats)> {
    ensure_fd_limit(spec.count)?;
    let rss_before = rss_bytes(target).await?;
    let sources = source_addresses(target, spec);
    let model = Arc::new(model.clone());
    let (go_tx, go_rx) = watch::channel(None::<Instant>);
    let (release_tx, release_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT_MAX));
    let settled = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(spec.count);
    for index in 0..spec.count {
        let shopper = Shopper {
            index,
            target: target.clone(),
            source: sources.get(index % sources.len().max(1)).copied(),
            model: model.clone(),
            gate: gate.clone(),
            settled: settled.clone(),
            connected: connected.clone(),
            counter: counter.clone(),
        };
        tasks.push(tokio::spawn(shopper.run(go_rx.clone(), release_rx.clone())));
    }
    loop {
        let done = settled.load(Ordering::Relaxed);
        counter.store(done, Ordering::Relaxed);
        if done >= spec.count as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_time = started.elapsed();
    // What the server holds per idle connection (read while every one is open and idle).
    let rss_connected = rss_bytes(target).await.unwrap_or(rss_before);
    counter.store(0, Ordering::Relaxed);
    let go = Instant::now();
    go_tx.send_replace(Some(go));
    let mut outcomes = Vec::with_capacity(spec.count);
    // Every shopper holds its connection until all have their answer, then all close.
    let mut answered = 0;
    while answered < tasks.len() {
        answered = counter.load(Ordering::Relaxed) as usize;
        if answered < tasks.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let elapsed = go.elapsed();
    release_tx.send_replace(true);
    for task in tasks {
        outcomes.push(task.await?);
    }
    let mut rec = Recorder::default();
    for outcome in outcomes {
        match outcome {
            Ok(latency) => rec.ok(latency),
            Err(error) => rec.error(error),
        }
    }
    let stats = ConnStats {
        connected: connected.load(Ordering::Relaxed),
        connect_time,
        sources: sources.len().max(1),
        rss_per_connection_bytes: rss_connected.saturating_sub(rss_before) as f64
            / connected.load(Ordering::Relaxed).max(1) as f64,
    };
    Ok((rec, elapsed, stats))
}

/// The loopback addresses to connect from: none (the OS picks) off loopback or when one
/// address has ports enough.
fn source_addresses(target: &Target, spec: ConnSpec) -> Vec<IpAddr> {
    let loopback_v4 = matches!(target.addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let wanted = match spec.sources {
        0 => spec.count.div_ceil(CONNECTIONS_PER_SOURCE_MAX),
        given => given,
    };
    if !loopback_v4 || wanted <= 1 {
        return Vec::new();
    }
    (0..wanted.min(250))
        .map(|index| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + index as u8)))
        .collect()
}

struct Shopper {
    index: usize,
    target: Target,
    source: Option<IpAddr>,
    model: Arc<Model>,
    gate: Arc<Semaphore>,
    settled: Arc<AtomicU64>,
    connected: Arc<AtomicU64>,
    counter: Arc<AtomicU64>,
}

impl Shopper {
    /// Connects, waits for the go, adds, replies its latency; the counter counts answers.
    async fn run(
        self,
        mut go: watch::Receiver<Option<Instant>>,
        mut release: watch::Receiver<bool>,
    ) -> Result<Duration, String> {
        let conn = {
            let _permit = self.gate.acquire().await.expect("the gate is never closed");
            tokio::time::timeout(WAIT_MAX, Conn::connect(self.target.addr, self.source)).await
        };
        self.settled.fetch_add(1, Ordering::Relaxed);
        let go_at = go
            .wait_for(Option::is_some)
            .await
            .map(|at| at.expect("waited for Some"));
        let outcome = match (conn, go_at) {
            (Ok(Ok(mut conn)), Ok(go_at)) => {
                self.connected.fetch_add(1, Ordering::Relaxed);
                let result = self.add(&mut conn, go_at).await;
                self.counter.fetch_add(1, Ordering::Relaxed);
                let _ = release.wait_for(|released| *released).await;
                drop(conn);
                return result;
            }
            (Ok(Err(error)), _) => Err(format!("connect failed: {error}")),
            (Err(_), _) => Err(format!("connect timed out after {WAIT_MAX:?}")),
            (_, Err(_)) => Err("the run ended before the go".to_string()),
        };
        self.counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    async fn add(&self, conn: &mut Conn, go_at: Instant) -> Result<Duration, String> {
        let cart = format!("fc{}", self.index);
        self.model.push(&mut conn.out, &flash_add(&cart), now_ms());
        let exchange = async {
            conn.flush().await?;
            conn.reply().await
        };
        match tokio::time::timeout(WAIT_MAX, exchange).await {
            Ok(Ok(reply)) => match reply.error() {
                Some(error) => Err(error),
                None => Ok(go_at.elapsed()),
            },
            Ok(Err(error)) => Err(format!("connection lost: {error}")),
            Err(_) => Err(format!("no reply within {WAIT_MAX:?}")),
        }
    }
}
