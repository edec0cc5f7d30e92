//! The registry of connected clients behind `CLIENT LIST`, `CLIENT INFO` and `CLIENT KILL`.
//! Each connection updates its own entry once per batch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// What a connection shows of itself.
#[derive(Debug, Default, Clone)]
pub struct ClientMeta {
    /// `CLIENT SETNAME`.
    pub name: Bytes,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Bytes,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Bytes,
    /// Last command's name.
    pub last_command: &'static str,
    /// RESP version.
    pub protocol: i64,
    /// The ACL user it runs as.
    pub user: String,
    /// Channels it subscribes to.
    pub subscriptions: usize,
    /// Patterns it subscribes to.
    pub patterns: usize,
    /// While tracking: the client its invalidations go to (0: itself).
    pub tracking_redirect: Option<u64>,
    /// It runs MONITOR.
    pub monitor: bool,
}

/// One connected client.
#[derive(Debug)]
pub struct ClientHandle {
    /// `CLIENT ID`.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    /// Connected since.
    pub connected_at: Instant,
    /// Changing details.
    pub meta: Mutex<ClientMeta>,
    /// Last activity.
    pub last_active: Mutex<Instant>,
    /// Cancelled by `CLIENT KILL`.
    pub kill: CancellationToken,
    /// Bytes of requests and replies it holds (see [`Clients::account`]).
    pub memory: AtomicU64,
    /// CLIENT NO-EVICT ON: `maxmemory-clients` never closes it.
    pub no_evict: AtomicBool,
    /// CLIENT NO-TOUCH ON: its CART.GETs leave the cart's TTL (and idle time) as they were.
    pub no_touch: AtomicBool,
    /// CLIENT REPLY: whether its replies are sent.
    pub replies: ReplySwitch,
}

/// CLIENT REPLY's state, as Redis keeps it: ON, OFF, or SKIP (this command and the next go
/// unanswered). Only the connection itself changes it.
#[derive(Debug, Default)]
pub struct ReplySwitch(AtomicU8);

/// Replies are sent.
const REPLIES_ON: u8 = 0;
/// No replies at all.
const REPLIES_OFF: u8 = 1;
/// CLIENT REPLY SKIP is running: no reply to it, nor to the next command.
const REPLIES_SKIP_NEXT: u8 = 2;
/// The command running is the one after CLIENT REPLY SKIP: no reply to it.
const REPLIES_SKIP: u8 = 3;

impl ReplySwitch {
    /// CLIENT REPLY ON.
    pub fn on(&self) {
        self.0.store(REPLIES_ON, Ordering::Relaxed);
    }

    /// CLIENT REPLY OFF.
    pub fn off(&self) {
        self.0.store(REPLIES_OFF, Ordering::Relaxed);
    }

    /// CLIENT REPLY SKIP (ignored while replies are off, as in Redis).
    pub fn skip_next(&self) {
        if self.0.load(Ordering::Relaxed) != REPLIES_OFF {
            self.0.store(REPLIES_SKIP_NEXT, Ordering::Relaxed);
        }
    }

    /// Whether the reply of the command that just ran is sent; then moves on to the next
    /// command (a SKIP lasts one command).
    pub fn answer_and_advance(&self) -> bool {
        match self.0.load(Ordering::Relaxed) {
            REPLIES_ON => true,
            REPLIES_SKIP_NEXT => {
                self.0.store(REPLIES_SKIP, Ordering::Relaxed);
                false
            }
            REPLIES_SKIP => {
                self.0.store(REPLIES_ON, Ordering::Relaxed);
                false
            }
            _ => false,
        }
    }
}

impl ClientHandle {
    /// The `CLIENT LIST` line of this client.
    pub fn describe(&self) -> String {
        let meta = self.meta.lock().clone();
        let idle_s = self.last_active.lock().elapsed().as_secs();
        let flags = self.flags(&meta);
        let redirect = meta
            .tracking_redirect
            .filter(|id| *id != 0)
            .map_or(-1, |id| id as i64);
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={flags} db=0 sub={} psub={} ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem={} events=r cmd={} user={} redir={redirect} resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            String::from_utf8_lossy(&meta.name),
            self.connected_at.elapsed().as_secs(),
            idle_s,
            meta.subscriptions,
            meta.patterns,
            self.memory.load(Ordering::Relaxed),
            if meta.last_command.is_empty() { "NULL" } else { meta.last_command },
            meta.user,
            meta.protocol,
            String::from_utf8_lossy(&meta.lib_name),
            String::from_utf8_lossy(&meta.lib_ver),
        )
    }
}

impl ClientHandle {
    /// CLIENT LIST's `flags`: `e` for NO-EVICT, `T` for NO-TOUCH, `N` for none (Redis's
    /// letters).
    /// CLIENT LIST's flags, as Redis's letters: `O` monitor, `P` subscribed, `t` tracking,
    /// `e` no-evict, `T` no-touch; `N` for none.
    fn flags(&self, meta: &ClientMeta) -> String {
        let mut flags = String::new();
        if meta.monitor {
            flags.push('O');
        }
        if meta.subscriptions + meta.patterns > 0 {
            flags.push('P');
        }
        if meta.tracking_redirect.is_some() {
            flags.push('t');
        }
        if self.no_evict.load(Ordering::Relaxed) {
            flags.push('e');
        }
        if self.no_touch.load(Ordering::Relaxed) {
            flags.push('T');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        flags
    }
}

/// All connected clients.
#[derive(Debug, Default)]
pub struct Clients {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    /// What every client holds together (the sum of their `memory`).
    memory_total: AtomicU64,
    /// Clients closed to bring `memory_total` back under `maxmemory-clients`.
    evicted: AtomicU64,
}

impl Clients {
    /// Registers a new connection; `None` when `maxclients` are connected already.
    pub fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        maxclients: usize,
        shutdown: &CancellationToken,
    ) -> Option<Arc<ClientHandle>> {
        let mut clients = self.clients.lock();
        if clients.len() >= maxclients {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let handle = Arc::new(ClientHandle {
            id,
            addr,
            laddr,
            connected_at: Instant::now(),
            meta: Mutex::new(ClientMeta {
                protocol: 2,
                user: "default".into(),
                ..ClientMeta::default()
            }),
            last_active: Mutex::new(Instant::now()),
            kill: shutdown.child_token(),
            memory: AtomicU64::new(0),
            no_evict: AtomicBool::new(false),
            no_touch: AtomicBool::new(false),
            replies: ReplySwitch::default(),
        });
        clients.insert(id, handle.clone());
        Some(handle)
    }

    /// Forgets a closed connection, and what it held.
    pub fn unregister(&self, id: u64) {
        if let Some(handle) = self.clients.lock().remove(&id) {
            self.memory_total
                .fetch_sub(handle.memory.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Notes that `handle` now holds `bytes` of requests still arriving and replies not yet
    /// sent; past `limit` (`maxmemory-clients`, 0: none) closes the clients holding the
    /// most, however many it takes to get back under it (this one too, if it is among them).
    pub fn account(&self, handle: &ClientHandle, bytes: u64, limit: u64) {
        let before = handle.memory.swap(bytes, Ordering::Relaxed);
        let total = if bytes >= before {
            self.memory_total
                .fetch_add(bytes - before, Ordering::Relaxed)
                .wrapping_add(bytes - before)
        } else {
            self.memory_total
                .fetch_sub(before - bytes, Ordering::Relaxed)
                .wrapping_sub(before - bytes)
        };
        if limit > 0 && total > limit {
            self.evict_biggest(total, limit);
        }
    }

    /// Closes the clients holding the most until the rest hold at most `limit`.
    fn evict_biggest(&self, total: u64, limit: u64) {
        let (going, mut candidates): (Vec<Arc<ClientHandle>>, Vec<Arc<ClientHandle>>) = self
            .clients
            .lock()
            .values()
            .cloned()
            .partition(|handle| handle.kill.is_cancelled());
        // CLIENT NO-EVICT clients count towards the total but are never chosen.
        candidates.retain(|handle| !handle.no_evict.load(Ordering::Relaxed));
        // Clients closed already still count until their tasks end: what they hold is going.
        let going: u64 = going
            .iter()
            .map(|handle| handle.memory.load(Ordering::Relaxed))
            .sum();
        candidates.sort_by_key(|handle| std::cmp::Reverse(handle.memory.load(Ordering::Relaxed)));
        let mut left = total.saturating_sub(going);
        for handle in candidates {
            if left <= limit {
                break;
            }
            let holds = handle.memory.load(Ordering::Relaxed);
            if holds == 0 {
                break;
            }
            tracing::info!(
                client = handle.id,
                holds_bytes = holds,
                clients_bytes = left,
                "client closed: the clients' buffers are over maxmemory-clients and it holds the most"
            );
            handle.kill.cancel();
            self.evicted.fetch_add(1, Ordering::Relaxed);
            left = left.saturating_sub(holds);
        }
    }

    /// What all clients hold together, in bytes.
    pub fn memory_total(&self) -> u64 {
        self.memory_total.load(Ordering::Relaxed)
    }

    /// Clients closed for `maxmemory-clients`.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Connected clients.
    pub fn len(&self) -> usize {
        self.clients.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of every client, in id order.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.clients.lock().values().cloned().collect()
    }
}
