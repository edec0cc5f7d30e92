//! Replication: a replica follows its primary's log, record by record, under the primary's
//! LSNs, so its log and its carts are the primary's up to the LSN it acknowledged.
//!
//! The link, over the primary's client port (docs/CLUSTER.md has the whole story):
//!
//! 1. replica: `REPLCONF listening-port <port>` and `REPLCONF cartd-node <id>` (`+OK`), then
//!    `PSYNC <replication id> <lsn>`, its log's last LSN and the history it belongs to (`?`
//!    when it has none);
//! 2. primary: `+CONTINUE <id>` when its log still holds everything after that LSN of that
//!    history (or of the history its own forked from, up to the fork: a promoted replica's
//!    fellow replicas continue), else `+FULLRESYNC <id> <lsn> [<fork>]`, `$<bytes>` and a
//!    snapshot at that LSN; `<fork>` is where the replica's history and the primary's part,
//!    when the primary knows (the replica sets aside what it holds past it);
//! 3. primary: the log's records after the LSN, framed as in the log files, as soon as it may
//!    acknowledge them to its own clients, and a ping every [`PING_MS`]: 8 zero bytes (a
//!    frame header of length 0, which no record has) then the primary's clock (8 bytes,
//!    milliseconds, big-endian);
//! 4. replica: logs and applies each record, and sends `REPLCONF ACK <lsn> PING <clock>` once
//!    its own log has it (and each second): the LSN is what `WAIT` counts, the clock echoes
//!    the last ping (failsafe: docs/CLUSTER.md).
//!
//! A replica installs a full synchronization's snapshot only at its start, before it loads
//! anything ([`install_staged`]): received while it runs, the snapshot is staged in
//! `data_dir/replica-sync` and the process starts itself over (same pid, same arguments).

mod primary;
mod replica;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use persistence::Lsn;

pub use primary::serve_replica;
pub use replica::{
    first_sync, install_staged, scan_set_aside, set_aside_after, staged, start_over,
};

/// Longest a link may stay silent before the other side counts it dead.
pub const LINK_TIMEOUT_MS: u64 = 5_000;

/// How often an idle link carries an ACK (replica).
pub const HEARTBEAT_MS: u64 = 1_000;

/// How often a primary pings each replica, busy or idle.
pub const PING_MS: u64 = 250;

/// A ping's frame: the 8-byte header of length 0, then 8 bytes of the primary's clock.
pub const PING_BYTES: usize = 16;

/// The file holding the name of the history this node's log belongs to.
const ID_FILE: &str = "replication-id";

/// Replication's state on a node: the replicas following it (a primary) and its link to its
/// primary (a replica).
pub struct Replication {
    /// The name of the history of this node's log (40 hex digits): a primary makes one for a
    /// new or wiped data directory, a replica takes its primary's at a full synchronization.
    id: RwLock<String>,
    /// The replicas connected to this node.
    replicas: Mutex<Vec<Follower>>,
    /// Told whenever a replica acknowledges more (WAIT waits on it).
    pub acked: tokio::sync::Notify,
    next_follower: AtomicU64,
    /// A replica's link to its primary.
    pub link: Link,
    /// The history this node's forked from, and the last LSN they share (a promoted
    /// replica's: its fellow replicas continue from the old history up to there).
    previous: RwLock<Option<(String, Lsn)>>,
    /// The task following the primary, while this node is a replica, and its stop.
    following: Mutex<
        Option<(
            tokio_util::sync::CancellationToken,
            tokio::task::JoinHandle<()>,
        )>,
    >,
    /// What this node set aside when it rejoined a shard group whose new primary never had
    /// its last records: (records, the file holding them).
    pub set_aside: Mutex<Option<(u64, PathBuf)>>,
}

/// One replica following this node, as INFO replication shows it.
#[derive(Debug, Clone)]
pub struct Follower {
    /// Registry id.
    pub id: u64,
    /// Its address, as the connection came from.
    pub ip: String,
    /// The port it serves clients on (REPLCONF listening-port).
    pub port: u16,
    /// `wait_bgsave` while its snapshot is written, `send_bulk` while sent, `online` after.
    pub state: &'static str,
    /// The last LSN it acknowledged having logged.
    pub acked_lsn: Lsn,
    /// When it last acknowledged.
    pub last_ack: Instant,
    /// Its cluster id (REPLCONF cartd-node), when it said.
    pub node: Option<String>,
    /// The clock of the last ping it echoed (this node's [`crate::failover::Failover::clock_ms`]).
    pub ping_echo: u64,
}

/// A replica's link to its primary.
#[derive(Debug, Default)]
pub struct Link {
    /// The link is up: records flow.
    pub up: AtomicBool,
    /// A full synchronization is being received.
    pub syncing: AtomicBool,
    /// When something last came from the primary (Unix ms; 0: never).
    pub last_io_ms: AtomicU64,
    /// Records applied from the primary since the start.
    pub records: AtomicU64,
    /// Links made since the start.
    pub connects: AtomicU64,
    /// The primary's clock in its last ping (0: none yet).
    pub last_ping: AtomicU64,
    /// When a ping last came, on this node's clock ([`crate::failover::Failover::clock_ms`]).
    pub last_ping_at: AtomicU64,
}

/// Removes a follower from the registry when its connection ends, however it ends.
pub struct FollowerGuard<'a> {
    replication: &'a Replication,
    id: u64,
}

impl Drop for FollowerGuard<'_> {
    fn drop(&mut self) {
        self.replication
            .replicas
            .lock()
            .retain(|follower| follower.id != self.id);
        self.replication.acked.notify_waiters();
    }
}

impl Replication {
    /// Replication state for a node whose history is named `id`.
    pub fn new(id: String) -> Replication {
        Replication {
            id: RwLock::new(id),
            replicas: Mutex::new(Vec::new()),
            acked: tokio::sync::Notify::new(),
            next_follower: AtomicU64::new(1),
            link: Link::default(),
            previous: RwLock::new(None),
            following: Mutex::new(None),
            set_aside: Mutex::new(None),
        }
    }

    /// The history this node's forked from and the last LSN they share, if any.
    pub fn previous(&self) -> Option<(String, Lsn)> {
        self.previous.read().clone()
    }

    /// Records that this node's history forks from `previous` after LSN `fork`.
    pub fn set_previous(&self, previous: Option<(String, Lsn)>) {
        *self.previous.write() = previous;
    }

    /// Starts following the primary (a replica, once loaded).
    pub fn start_following(&self, server: &std::sync::Arc<crate::server::Server>) {
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(replica::follow_primary(server.clone(), stop.clone()));
        *self.following.lock() = Some((stop, task));
    }

    /// Stops following the primary and waits until no more of its records are applied.
    pub async fn stop_following(&self) {
        let following = self.following.lock().take();
        if let Some((stop, task)) = following {
            stop.cancel();
            let _ = task.await;
        }
        self.link.up.store(false, Ordering::Release);
    }

    /// Names this node's log history (at the start, and when a replica takes its primary's).
    pub fn set_id(&self, id: String) {
        *self.id.write() = id;
    }

    /// The name of this node's log history.
    pub fn id(&self) -> String {
        self.id.read().clone()
    }

    /// The replicas connected now.
    pub fn followers(&self) -> Vec<Follower> {
        self.replicas.lock().clone()
    }

    /// How many replicas have acknowledged the record at `lsn` (every online replica has
    /// LSN 0, nothing).
    pub fn acked_at_least(&self, lsn: Lsn) -> usize {
        self.replicas
            .lock()
            .iter()
            .filter(|follower| follower.state == "online" && follower.acked_lsn >= lsn)
            .count()
    }

    /// Registers a replica; it leaves the registry when the guard goes.
    fn register(&self, ip: String, port: u16) -> FollowerGuard<'_> {
        let id = self.next_follower.fetch_add(1, Ordering::Relaxed);
        self.replicas.lock().push(Follower {
            id,
            ip,
            port,
            state: "wait_bgsave",
            acked_lsn: 0,
            last_ack: Instant::now(),
            node: None,
            ping_echo: 0,
        });
        FollowerGuard {
            replication: self,
            id,
        }
    }

    /// Updates a registered replica.
    fn update(&self, id: u64, change: impl FnOnce(&mut Follower)) {
        if let Some(follower) = self.replicas.lock().iter_mut().find(|f| f.id == id) {
            change(follower);
        }
        self.acked.notify_waiters();
    }
}

/// The history name recorded in `data_dir`, if any (the file's first line).
pub fn recorded_id(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(ID_FILE))
        .ok()
        .and_then(|text| text.lines().next().map(|id| id.trim().to_owned()))
        .filter(|id| !id.is_empty())
}

/// The history `data_dir`'s forked from and the last LSN they share, if it records one (the
/// line `previous <id> <lsn>`).
pub fn recorded_previous(data_dir: &Path) -> Option<(String, Lsn)> {
    let text = std::fs::read_to_string(data_dir.join(ID_FILE)).ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == "previous").then_some(())?;
        Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
    })
}

/// Records `id` as the history of `data_dir`'s log (written whole, then renamed into place).
pub fn record_id(data_dir: &Path, id: &str) -> std::io::Result<()> {
    record_history(data_dir, id, None)
}

/// Records `id` as the history of `data_dir`'s log, forked from `previous` after its LSN.
pub fn record_history(
    data_dir: &Path,
    id: &str,
    previous: Option<&(String, Lsn)>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let mut text = format!("{id}\n");
    if let Some((previous, fork)) = previous {
        text.push_str(&format!("previous {previous} {fork}\n"));
    }
    crate::durability::replace_file(&data_dir.join(ID_FILE), text)
}

/// A new history name: 40 random hex digits, as Redis's replication ids.
pub fn new_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("a hex digit"))
        .collect()
}
