//! The links from this cluster node to every other primary, which keep the server-wide data
//! (catalog entries, promotions) the same on all of them. Each shared write accepted here is
//! queued for every peer (bounded: a full queue drops it, the digest comparison brings it
//! over later) and pushed with `REFSYNC SET|DEL`; every [`PEER_SYNC_INTERVAL_MS`] and right
//! after connecting, a primary compares its stamp bucket digests with the peer's
//! (`REFSYNC DIGEST`) and pulls the buckets that differ (`REFSYNC PULL`), applying what is
//! newer. Both sides do so, so a node that was down or cut off has what it missed, and the
//! others have what it took while cut off, about a second after it is back.
//!
//! The store decides what a change does (`crate::store::shared`); this module only carries
//! changes. A replica has no links: it takes no writes of its own, and its primary's log
//! brings it everything.
//!
//! Gift cards are not copied but decided by one primary each, the one serving the slot of
//! the card's code: the other nodes ask it ([`gift_cards`], over request-and-reply
//! connections of their own, [`calls`]).

pub mod calls;
pub mod gift_cards;
pub mod link;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use protocol::Reply;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::limits::{PEER_PUSH_QUEUE_MAX, PEER_SYNC_INTERVAL_MS};
use crate::server::{now_ms, Server};
use crate::store::shared::SharedChange;
use crate::store::stamps::origin_of;
use crate::store::Store;

/// How often old tombstones are looked for.
const TOMBSTONE_PURGE_INTERVAL_MS: u64 = 60_000;

/// One other shard group and this node's link to its primary (whichever member that is now).
pub struct Peer {
    /// The group's name (its configured primary's cluster id).
    pub id: String,
    /// The group (its index in the layout).
    pub group: usize,
    queue: mpsc::Sender<SharedChange>,
    receiver: Mutex<Option<mpsc::Receiver<SharedChange>>>,
    /// The link is up.
    pub connected: AtomicBool,
    /// Changes pushed to it.
    pub pushed: AtomicU64,
    /// Changes not queued for it because its queue was full.
    pub dropped: AtomicU64,
    /// Changes pulled from it and applied here.
    pub pulled: AtomicU64,
    /// Digest comparisons with it.
    pub syncs: AtomicU64,
    /// Its group is gone (its nodes forgotten): the link stops.
    gone: tokio_util::sync::CancellationToken,
}

impl Peer {
    /// A link to `group` (named `id`), not running yet.
    fn new(id: String, group: usize) -> Arc<Peer> {
        let (queue, receiver) = mpsc::channel(PEER_PUSH_QUEUE_MAX);
        Arc::new(Peer {
            id,
            group,
            queue,
            receiver: Mutex::new(Some(receiver)),
            connected: AtomicBool::new(false),
            pushed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            pulled: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            gone: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// The address (`host:port`) this node reaches the group's primary at in `layout`.
    pub fn addr(&self, layout: &cluster::Layout) -> String {
        let primary = layout
            .members(self.group)
            .find(|&at| layout.nodes[at].replica_of.is_none())
            .unwrap_or(self.group);
        layout
            .nodes
            .get(primary)
            .map(cluster::Node::dial_addr)
            .unwrap_or_default()
    }

    /// Changes waiting to be pushed.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// The password the nodes share (`requirepass`), which the links authenticate with; set once
/// with the links.
static PASSWORD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The password the nodes share, when there is one.
pub fn shared_password() -> Option<&'static str> {
    PASSWORD
        .get()
        .map(String::as_str)
        .filter(|password| !password.is_empty())
}

/// Every link of this node.
pub struct Peers {
    /// The other primaries (more as nodes join, fewer as they are forgotten).
    peers: Arc<Mutex<Vec<Arc<Peer>>>>,
    /// The links run (this node is a primary): a peer added later starts at once.
    started: AtomicBool,
    /// Gift card calls to the other primaries.
    pub calls: calls::Calls,
    /// Who decides which gift card; the queue of holds to release at their owners.
    pub owners: Arc<gift_cards::Owners>,
    releases: Mutex<Option<mpsc::Receiver<gift_cards::Release>>>,
}

impl Peers {
    /// In cluster mode: the links of this node, one per other shard group, registered with
    /// the store as its outbox, and the store stamping with this node's origin. `None`
    /// standalone. They run only while this node is a primary ([`Peers::start`]): a replica
    /// takes no writes of its own (READONLY), its primary's log brings it every change.
    pub fn for_cluster(
        topology: Option<&Arc<cluster::Topology>>,
        store: &Store,
        password: &str,
    ) -> Option<Arc<Peers>> {
        let topology = topology?;
        let layout = topology.get();
        let _ = PASSWORD.set(password.to_owned());
        store.set_origin(origin_of(&layout.myself().id));
        let mine = layout.myself().group;
        let peers: Vec<Arc<Peer>> = layout
            .groups()
            .filter(|&group| group != mine)
            .map(|group| Peer::new(layout.group_name(group).to_owned(), group))
            .collect();
        let peers = Arc::new(Mutex::new(peers));
        let outbox_peers = peers.clone();
        store.set_outbox(Box::new(move |change| {
            for peer in outbox_peers.lock().iter() {
                if peer.queue.try_send(change.clone()).is_err() {
                    peer.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        let (owners, releases) = gift_cards::Owners::new(topology.clone());
        store.set_card_owners(Box::new(owners.clone()));
        Some(Arc::new(Peers {
            peers,
            started: AtomicBool::new(false),
            calls: calls::Calls::new(topology.clone()),
            owners,
            releases: Mutex::new(Some(releases)),
        }))
    }

    /// Starts one task per link and the tombstone purge, once recovery is done; they stop
    /// with the server.
    pub fn start(&self, server: &Arc<Server>, tracker: &TaskTracker) {
        self.started.store(true, Ordering::Release);
        for peer in self.list() {
            Self::run_link(server, &peer);
        }
        tracker.spawn(purge_tombstones(server.clone()));
        if let Some(releases) = self.releases.lock().take() {
            tracker.spawn(gift_cards::send_releases(server.clone(), releases));
        }
    }

    /// The links now.
    pub fn list(&self) -> Vec<Arc<Peer>> {
        self.peers.lock().clone()
    }

    /// Runs `peer`'s link, unless it runs already.
    fn run_link(server: &Arc<Server>, peer: &Arc<Peer>) {
        let Some(receiver) = peer.receiver.lock().take() else {
            return;
        };
        let (server, peer) = (server.clone(), peer.clone());
        server.tasks.clone().spawn(async move {
            let gone = peer.gone.clone();
            tokio::select! {
                () = link::run(server, peer, receiver) => {}
                () = gone.cancelled() => {}
            }
        });
    }

    /// One link per other shard group of the layout in force now: a link to a group that
    /// came (a node met the cluster) starts, one to a group that went stops.
    pub fn follow_layout(&self, server: &Arc<Server>) {
        let Some(layout) = server.layout() else {
            return;
        };
        let mine = layout.myself().group;
        let live: Vec<(usize, String)> = layout
            .groups()
            .filter(|&group| group != mine)
            .map(|group| (group, layout.group_name(group).to_owned()))
            .collect();
        let mut peers = self.peers.lock();
        peers.retain(|peer| {
            let keep = live
                .iter()
                .any(|(group, id)| *group == peer.group && *id == peer.id);
            if !keep {
                peer.gone.cancel();
            }
            keep
        });
        for (group, id) in live {
            if peers.iter().any(|peer| peer.group == group) {
                continue;
            }
            let peer = Peer::new(id, group);
            if self.started.load(Ordering::Acquire) {
                Self::run_link(server, &peer);
            }
            peers.push(peer);
        }
    }

    /// `REFSYNC STATUS`: one map per peer.
    pub fn status(&self, layout: &cluster::Layout) -> Reply {
        let field = |name: &'static str, value: u64| {
            (
                Reply::from_static(name),
                Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX)),
            )
        };
        let peers = self.list();
        let peers = peers.iter().map(|peer| {
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            Reply::Map(vec![
                (Reply::from_static("peer"), Reply::text(peer.id.clone())),
                (Reply::from_static("addr"), Reply::text(peer.addr(layout))),
                field(
                    "connected",
                    u64::from(peer.connected.load(Ordering::Relaxed)),
                ),
                field("queued", peer.queued() as u64),
                field("queue_max", PEER_PUSH_QUEUE_MAX as u64),
                field("pushed", load(&peer.pushed)),
                field("dropped", load(&peer.dropped)),
                field("pulled", load(&peer.pulled)),
                field("syncs", load(&peer.syncs)),
            ])
        });
        Reply::Array(peers.collect())
    }
}

/// Forgets old tombstones now and then (see `Stamps::purge`).
async fn purge_tombstones(server: Arc<Server>) {
    let period = Duration::from_millis(TOMBSTONE_PURGE_INTERVAL_MS);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let purged = server.store.purge_tombstones(now_ms());
                if purged > 0 {
                    tracing::debug!(purged, "old tombstones of shared entries forgotten");
                }
            }
            () = server.shutdown.cancelled() => return,
        }
    }
}

const _: () = assert!(PEER_SYNC_INTERVAL_MS < TOMBSTONE_PURGE_INTERVAL_MS);
