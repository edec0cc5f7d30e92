//! [`Load`]: a steady write load from several cluster-aware clients, each recording every
//! write the cluster acknowledged and every error, with its time. Verifying is left to
//! `check`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use tokio::task::JoinSet;

use super::router::{slot, Router};
use super::Groups;

/// Carts each client writes to in turn.
pub const CARTS_PER_CLIENT: u64 = 64;

/// Lines a cart gets before the client moves on to a new one (`max_lines_per_cart` is 200).
pub const LINES_PER_CART_MAX: u64 = 150;

/// A client's pause between two writes: the load stays steady, not a flood that starves the
/// nodes of the two cores they share.
const PAUSE_MS: u64 = 10;

/// A client's pause after an error, before its next write.
const PAUSE_AFTER_ERROR_MS: u64 = 20;

/// What one load is: how many clients, how many of them WAIT after each write.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Clients writing at once.
    pub clients: usize,
    /// The first this many clients send `WAIT 1 2000` after every write.
    pub waiting_clients: usize,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            clients: 6,
            waiting_clients: 3,
        }
    }
}

/// A write the cluster acknowledged.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The cart.
    pub key: String,
    /// The line this write added (one of its own: a lost write is a missing line).
    pub sku: String,
    /// The cart's version in the reply (`REPLY VERSION`).
    pub version: i64,
    /// `WAIT 1 2000` after it returned 1 or more.
    pub waited: bool,
    /// When the CART.ADD was sent to the node that acknowledged it, from the load's start.
    pub sent: Duration,
    /// When the reply came, from the load's start.
    pub at: Duration,
    /// The address of the node that acknowledged it.
    pub acked_by: SocketAddr,
    /// The shard group of its slot.
    pub group: usize,
}

/// A write that failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// When, from the load's start.
    pub at: Duration,
    /// The shard group of its key's slot.
    pub group: usize,
    /// What the client saw.
    pub error: String,
}

/// Everything one load's clients saw.
#[derive(Debug, Default)]
pub struct Records {
    /// Every acknowledged write.
    pub acks: Vec<Ack>,
    /// Every failed write.
    pub failures: Vec<Failure>,
}

/// A load running until [`Load::stop`].
pub struct Load {
    origin: Instant,
    stop: Arc<AtomicBool>,
    clients: JoinSet<Records>,
    /// The keys' prefix: `<prefix>:<client>:<cart>`.
    pub prefix: String,
}

impl Load {
    /// Starts `options.clients` clients writing carts under `prefix` to the cluster whose
    /// nodes are at `seeds`.
    pub fn start(seeds: &[SocketAddr], groups: Groups, prefix: &str, options: LoadOptions) -> Load {
        let origin = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = JoinSet::new();
        for client in 0..options.clients {
            let writer = Writer {
                router: Router::new(seeds.to_vec()),
                groups,
                prefix: format!("{prefix}:{client}"),
                waits: client < options.waiting_clients,
                origin,
                stop: stop.clone(),
            };
            clients.spawn(writer.run());
        }
        Load {
            origin,
            stop,
            clients,
            prefix: prefix.to_owned(),
        }
    }

    /// Time since the load started (the records' clock).
    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Stops every client and gathers what they saw, ordered by time.
    pub async fn stop(mut self) -> Records {
        self.stop.store(true, Ordering::Release);
        let mut records = Records::default();
        while let Some(done) = self.clients.join_next().await {
            let done = done.expect("a load client does not panic");
            records.acks.extend(done.acks);
            records.failures.extend(done.failures);
        }
        records.acks.sort_by_key(|ack| ack.at);
        records.failures.sort_by_key(|failure| failure.at);
        records
    }
}

/// One client of the load.
struct Writer {
    router: Router,
    groups: Groups,
    prefix: String,
    waits: bool,
    origin: Instant,
    stop: Arc<AtomicBool>,
}

impl Writer {
    /// Writes a new line to one cart after another until the load stops; what it saw.
    async fn run(mut self) -> Records {
        let mut records = Records::default();
        let mut sequence: u64 = 0;
        while !self.stop.load(Ordering::Acquire) {
            sequence += 1;
            let cart = sequence % CARTS_PER_CLIENT
                + CARTS_PER_CLIENT * (sequence / (CARTS_PER_CLIENT * LINES_PER_CART_MAX));
            let key = format!("{}:{cart}", self.prefix);
            let sku = format!("s{sequence}");
            let group = self.groups.of_slot(slot(&key));
            match self.write(&key, &sku).await {
                Ok(written) => records.acks.push(Ack {
                    key,
                    sku,
                    version: written.version,
                    waited: written.waited,
                    sent: written.sent,
                    at: written.at,
                    acked_by: written.acked_by,
                    group,
                }),
                Err(error) => {
                    records.failures.push(Failure {
                        at: self.origin.elapsed(),
                        group,
                        error,
                    });
                    tokio::time::sleep(Duration::from_millis(PAUSE_AFTER_ERROR_MS)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(PAUSE_MS)).await;
        }
        records
    }

    /// `CART.ADD key sku - 1 ... REPLY VERSION`, then `WAIT 1 2000` on the same connection if
    /// this client waits.
    async fn write(&mut self, key: &str, sku: &str) -> Result<Written, String> {
        let add = cart_add(key, sku);
        let replied = self.router.send(key, &add).await?;
        let at = self.origin.elapsed();
        let Value::Int(version) = replied.value else {
            return Err(format!("CART.ADD replied {:?}", replied.value));
        };
        let mut waited = false;
        if self.waits {
            let wait = redis::cmd("WAIT").arg(1).arg(2_000).clone();
            let replicas = self.router.send_to(replied.from, &wait).await;
            waited = matches!(replicas, Ok(Value::Int(n)) if n >= 1);
        }
        Ok(Written {
            version,
            acked_by: replied.from,
            waited,
            sent: replied.sent_at.duration_since(self.origin),
            at,
        })
    }
}

/// One write taken: the cart's version, the node that took it, whether a replica had it, and
/// when the CART.ADD was sent and its reply came (before the WAIT).
struct Written {
    version: i64,
    acked_by: SocketAddr,
    waited: bool,
    sent: Duration,
    at: Duration,
}

/// `CART.ADD key sku - 1 PRICE 250 CURRENCY USD REPLY VERSION`.
pub fn cart_add(key: &str, sku: &str) -> redis::Cmd {
    redis::cmd("CART.ADD")
        .arg(key)
        .arg(sku)
        .arg("-")
        .arg(1)
        .arg("PRICE")
        .arg(250)
        .arg("CURRENCY")
        .arg("USD")
        .arg("REPLY")
        .arg("VERSION")
        .clone()
}

/// The version of the cart under `key` on the node `conn` talks to (`CART.GET NOVALIDATE
/// FORMAT JSON`), if it has the cart.
pub async fn cart_version(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<i64> {
    let reply: Value = redis::cmd("CART.GET")
        .arg(key)
        .arg("NOVALIDATE")
        .arg("FORMAT")
        .arg("JSON")
        .query_async(conn)
        .await
        .expect("CART.GET");
    let Value::BulkString(json) = reply else {
        return None;
    };
    let view: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    view["version"].as_i64()
}
