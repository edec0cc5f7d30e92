//! What cartd sends a client without being asked in that moment: pub/sub messages (PUBLISH
//! and cartd's own cart and product events), client-side caching's invalidations (`CLIENT
//! TRACKING`) and the `MONITOR` feed.
//!
//! A connection that listens has a [`Mailbox`]. Publishers encode a message once per protocol
//! and put it in every listener's mailbox; they never wait for a reader. A mailbox over its
//! `client-output-buffer-limit` (the `pubsub` class) closes its client, as Redis does, so a
//! subscriber that stops reading costs a bounded amount and never slows the writers.
//!
//! Changes reach this module from the store's log hook ([`PubSub::changed`]), under the
//! locks of what changed, so a cart's events arrive in the order its versions were made.
//! While nobody listens to cartd's own channels, subscribes to a pattern, tracks keys or
//! monitors, a change costs one atomic load here.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use persistence::{ChangeRef, Space, StateRef};
use protocol::glob::Pattern;
use protocol::{Protocol, Reply};
use smallvec::SmallVec;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::OutputBufferLimit;

/// Every change of one cart: `__cart__:<key>`.
pub const CART_CHANNEL_PREFIX: &[u8] = b"__cart__:";
/// Every change of one kind, over all carts: `__cartevent__:<kind>` (`add`, `remove`,
/// `merge`, `checkout`, `abandon`, ...).
pub const CART_EVENT_CHANNEL_PREFIX: &[u8] = b"__cartevent__:";
/// Price and stock changes of one product: `__product__:<product>`.
pub const PRODUCT_CHANNEL_PREFIX: &[u8] = b"__product__:";
/// Where a RESP2 client that redirects invalidations (`CLIENT TRACKING ON REDIRECT id`) reads
/// them, as in Redis.
pub const INVALIDATE_CHANNEL: &[u8] = b"__redis__:invalidate";

thread_local! {
    /// The client whose command this thread runs (0: none, a background change), so NOLOOP
    /// tracking skips a client's own changes.
    static ACTOR: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Runs `run` as client `id`'s command: the changes it makes are its own (for NOLOOP).
pub fn acting_as<R>(id: u64, run: impl FnOnce() -> R) -> R {
    struct Reset(u64);
    impl Drop for Reset {
        fn drop(&mut self) {
            ACTOR.set(self.0);
        }
    }
    let _reset = Reset(ACTOR.replace(id));
    run()
}

/// What waits to be sent to one listening connection.
#[derive(Debug)]
pub struct Mailbox {
    /// The connection's client id.
    pub client: u64,
    resp3: AtomicBool,
    queue: Mutex<Queue>,
    /// Set while something waits (read without the lock on every request of the connection).
    has_mail: AtomicBool,
    ready: Notify,
    kill: CancellationToken,
    limit: OutputBufferLimit,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Bytes>,
    bytes: usize,
    over_soft_since: Option<Instant>,
    closed: bool,
}

impl Mailbox {
    /// A mailbox for client `client`, closed with `kill` when over `limit`.
    pub fn new(
        client: u64,
        protocol: Protocol,
        kill: CancellationToken,
        limit: OutputBufferLimit,
    ) -> Mailbox {
        Mailbox {
            client,
            resp3: AtomicBool::new(protocol == Protocol::Resp3),
            queue: Mutex::new(Queue::default()),
            has_mail: AtomicBool::new(false),
            ready: Notify::new(),
            kill,
            limit,
        }
    }

    /// The protocol its messages are encoded in.
    pub fn protocol(&self) -> Protocol {
        if self.resp3.load(Ordering::Relaxed) {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        }
    }

    /// Encodes messages in `protocol` from now on (HELLO switched).
    pub fn set_protocol(&self, protocol: Protocol) {
        self.resp3
            .store(protocol == Protocol::Resp3, Ordering::Relaxed);
    }

    /// Puts one encoded message in; false when the mailbox is closed, or closes now because
    /// what waits passed the limit (its client is then closed).
    fn post(&self, message: Bytes, stats: &PubSubStats) -> bool {
        let mut queue = self.queue.lock();
        if queue.closed {
            return false;
        }
        queue.bytes += message.len();
        queue.items.push_back(message);
        let limit = self.limit;
        let waiting = queue.bytes as u64;
        let over_hard = limit.hard_bytes > 0 && waiting > limit.hard_bytes;
        let over_soft = if limit.soft_bytes > 0 && waiting > limit.soft_bytes {
            let since = *queue.over_soft_since.get_or_insert_with(Instant::now);
            since.elapsed().as_secs() >= limit.soft_s
        } else {
            queue.over_soft_since = None;
            false
        };
        if over_hard || over_soft {
            queue.closed = true;
            queue.items = VecDeque::new();
            queue.bytes = 0;
            drop(queue);
            stats.closed_over_limit.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                client = self.client,
                waiting_bytes = waiting,
                "client closed: over the pubsub client-output-buffer-limit (it does not read its messages)"
            );
            self.kill.cancel();
            return false;
        }
        drop(queue);
        self.has_mail.store(true, Ordering::Release);
        self.ready.notify_one();
        true
    }

    /// Whether messages wait.
    pub fn has_mail(&self) -> bool {
        self.has_mail.load(Ordering::Acquire)
    }

    /// Moves waiting messages into `out`, at least one and then while `out` holds less than
    /// `max_bytes`.
    pub fn take_into(&self, out: &mut BytesMut, max_bytes: usize) {
        let mut queue = self.queue.lock();
        while let Some(message) = queue.items.pop_front() {
            queue.bytes -= message.len();
            out.extend_from_slice(&message);
            if out.len() >= max_bytes {
                break;
            }
        }
        if queue.items.is_empty() {
            queue.over_soft_since = None;
            if queue.items.capacity() > 64 {
                queue.items = VecDeque::new();
            }
            self.has_mail.store(false, Ordering::Release);
        }
    }

    /// Waits until something is posted (returns at once if something was posted since the
    /// last wait).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }
}

/// A message before it is encoded, encoded at most once per protocol however many receive it.
struct Outgoing {
    reply: Reply,
    resp2: Option<Bytes>,
    resp3: Option<Bytes>,
}

impl Outgoing {
    fn new(reply: Reply) -> Outgoing {
        Outgoing {
            reply,
            resp2: None,
            resp3: None,
        }
    }

    fn bytes(&mut self, protocol: Protocol) -> Bytes {
        let slot = match protocol {
            Protocol::Resp2 => &mut self.resp2,
            Protocol::Resp3 => &mut self.resp3,
        };
        slot.get_or_insert_with(|| {
            let mut out = BytesMut::new();
            self.reply.encode(protocol, &mut out);
            out.freeze()
        })
        .clone()
    }
}

/// A `message` push: what a channel's subscribers receive.
fn message(channel: &[u8], payload: Reply) -> Outgoing {
    Outgoing::new(Reply::Push(vec![
        Reply::from_static("message"),
        Reply::Bulk(Bytes::copy_from_slice(channel)),
        payload,
    ]))
}

/// A `pmessage` push: what a pattern's subscribers receive.
fn pmessage(pattern: &Bytes, channel: &[u8], payload: Reply) -> Outgoing {
    Outgoing::new(Reply::Push(vec![
        Reply::from_static("pmessage"),
        Reply::Bulk(pattern.clone()),
        Reply::Bulk(Bytes::copy_from_slice(channel)),
        payload,
    ]))
}

/// Counters for INFO.
#[derive(Debug, Default)]
pub struct PubSubStats {
    /// Messages put in a mailbox (each receiver counts).
    pub delivered: AtomicU64,
    /// Listeners closed for not reading (over the pubsub output limit).
    pub closed_over_limit: AtomicU64,
    /// Invalidation messages sent (client-side caching).
    pub invalidations: AtomicU64,
}

type Listeners = HashMap<u64, Arc<Mailbox>>;

#[derive(Default)]
struct Registry {
    channels: HashMap<Bytes, Listeners>,
    patterns: HashMap<Bytes, (Pattern, Listeners)>,
}

/// One client's tracking mode (`CLIENT TRACKING ON ...`).
#[derive(Debug, Clone)]
pub struct TrackingMode {
    /// Who receives the invalidations: the client itself, or the client it redirects to.
    pub target: u64,
    /// BCAST prefixes (`Some(empty)`: every key); `None` in the default mode.
    pub bcast: Option<Vec<Bytes>>,
    /// Its own changes are not announced to it.
    pub noloop: bool,
}

#[derive(Default)]
struct TrackingTable {
    /// Tracking clients and their modes.
    clients: HashMap<u64, TrackingMode>,
    /// Keys read by clients in the default mode, and who read each.
    keys: HashMap<Bytes, SmallVec<[u64; 2]>>,
    /// Clients in BCAST mode.
    bcast: Vec<u64>,
}

/// Pub/sub channels and patterns, tracking and monitors.
pub struct PubSub {
    registry: RwLock<Registry>,
    /// Every listening connection's mailbox, by client id (REDIRECT targets are found here).
    mailboxes: RwLock<HashMap<u64, Arc<Mailbox>>>,
    /// Channels subscribed under cartd's own prefixes.
    own_channels: AtomicUsize,
    /// Patterns subscribed to (each may match cartd's channels).
    patterns: AtomicUsize,
    /// Subscriptions over all clients (a client to a channel or a pattern).
    subscriptions: AtomicUsize,
    tracking: Mutex<TrackingTable>,
    /// Tracking clients.
    trackers: AtomicUsize,
    /// Most keys the tracking table remembers (`tracking-table-max-keys`); past it the
    /// oldest-found keys are invalidated and forgotten.
    tracking_keys_max: usize,
    monitors: RwLock<Vec<Arc<Mailbox>>>,
    monitor_count: AtomicUsize,
    /// Counters.
    pub stats: PubSubStats,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("own_channels", &self.own_channels)
            .field("patterns", &self.patterns)
            .field("trackers", &self.trackers)
            .finish_non_exhaustive()
    }
}

fn is_own_channel(channel: &[u8]) -> bool {
    [
        CART_CHANNEL_PREFIX,
        CART_EVENT_CHANNEL_PREFIX,
        PRODUCT_CHANNEL_PREFIX,
    ]
    .iter()
    .any(|prefix| channel.starts_with(prefix))
}

impl PubSub {
    /// An empty registry; the tracking table remembers at most `tracking_keys_max` keys.
    pub fn new(tracking_keys_max: usize) -> PubSub {
        PubSub {
            registry: RwLock::new(Registry::default()),
            mailboxes: RwLock::new(HashMap::new()),
            own_channels: AtomicUsize::new(0),
            patterns: AtomicUsize::new(0),
            subscriptions: AtomicUsize::new(0),
            tracking: Mutex::new(TrackingTable::default()),
            trackers: AtomicUsize::new(0),
            tracking_keys_max: tracking_keys_max.max(1),
            monitors: RwLock::new(Vec::new()),
            monitor_count: AtomicUsize::new(0),
            stats: PubSubStats::default(),
        }
    }

    /// Makes the mailbox of a connection that starts listening, findable by its id.
    pub fn open_mailbox(&self, mailbox: Arc<Mailbox>) {
        self.mailboxes.write().insert(mailbox.client, mailbox);
    }

    /// Forgets a closed connection: its subscriptions, tracking and monitor.
    pub fn close(&self, client: u64, channels: &[Bytes], patterns: &[Bytes]) {
        for channel in channels {
            self.unsubscribe(channel, client);
        }
        for pattern in patterns {
            self.punsubscribe(pattern, client);
        }
        self.stop_tracking(client);
        self.stop_monitor(client);
        self.mailboxes.write().remove(&client);
    }

    /// Adds `mailbox` to `channel`'s subscribers.
    pub fn subscribe(&self, channel: Bytes, mailbox: &Arc<Mailbox>) {
        let own = is_own_channel(&channel);
        let mut registry = self.registry.write();
        let listeners = registry.channels.entry(channel).or_default();
        let first = listeners.is_empty();
        if listeners.insert(mailbox.client, mailbox.clone()).is_none() {
            self.subscriptions.fetch_add(1, Ordering::Relaxed);
        }
        if own && first {
            self.own_channels.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes `client` off `channel`'s subscribers.
    pub fn unsubscribe(&self, channel: &[u8], client: u64) {
        let mut registry = self.registry.write();
        let Some(listeners) = registry.channels.get_mut(channel) else {
            return;
        };
        if listeners.remove(&client).is_some() {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        if listeners.is_empty() {
            registry.channels.remove(channel);
            if is_own_channel(channel) {
                self.own_channels.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Adds `mailbox` to `pattern`'s subscribers.
    pub fn psubscribe(&self, pattern: Bytes, mailbox: &Arc<Mailbox>) {
        let mut registry = self.registry.write();
        let compiled = Pattern::new(&pattern);
        let (_, listeners) = registry
            .patterns
            .entry(pattern)
            .or_insert_with(|| (compiled, HashMap::new()));
        if listeners.is_empty() {
            self.patterns.fetch_add(1, Ordering::Relaxed);
        }
        if listeners.insert(mailbox.client, mailbox.clone()).is_none() {
            self.subscriptions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes `client` off `pattern`'s subscribers.
    pub fn punsubscribe(&self, pattern: &[u8], client: u64) {
        let mut registry = self.registry.write();
        let Some((_, listeners)) = registry.patterns.get_mut(pattern) else {
            return;
        };
        if listeners.remove(&client).is_some() {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        if listeners.is_empty() {
            registry.patterns.remove(pattern);
            self.patterns.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Publishes `payload` on `channel`; returns how many subscriptions received it (channel
    /// subscribers and matching patterns), as PUBLISH replies.
    pub fn publish(&self, channel: &[u8], payload: &Bytes) -> usize {
        self.publish_reply(channel, || Reply::Bulk(payload.clone()))
    }

    fn publish_reply(&self, channel: &[u8], payload: impl Fn() -> Reply) -> usize {
        let registry = self.registry.read();
        let mut received = 0;
        if let Some(listeners) = registry.channels.get(channel) {
            let mut outgoing = message(channel, payload());
            for mailbox in listeners.values() {
                if mailbox.post(outgoing.bytes(mailbox.protocol()), &self.stats) {
                    received += 1;
                }
            }
        }
        for (pattern, (compiled, listeners)) in &registry.patterns {
            if !compiled.matches(channel) {
                continue;
            }
            let mut outgoing = pmessage(pattern, channel, payload());
            for mailbox in listeners.values() {
                if mailbox.post(outgoing.bytes(mailbox.protocol()), &self.stats) {
                    received += 1;
                }
            }
        }
        self.stats
            .delivered
            .fetch_add(received as u64, Ordering::Relaxed);
        received
    }

    /// Channels with subscribers, matching `pattern` if given (`PUBSUB CHANNELS`).
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let pattern = pattern.map(Pattern::new);
        self.registry
            .read()
            .channels
            .keys()
            .filter(|channel| {
                pattern
                    .as_ref()
                    .is_none_or(|pattern| pattern.matches(channel))
            })
            .cloned()
            .collect()
    }

    /// Subscribers of `channel` (`PUBSUB NUMSUB`).
    pub fn subscribers(&self, channel: &[u8]) -> usize {
        self.registry
            .read()
            .channels
            .get(channel)
            .map_or(0, HashMap::len)
    }

    /// Patterns with subscribers (`PUBSUB NUMPAT`).
    pub fn pattern_count(&self) -> usize {
        self.registry.read().patterns.len()
    }

    /// Subscriptions over all clients.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Channels with subscribers.
    pub fn channel_count(&self) -> usize {
        self.registry.read().channels.len()
    }

    /// Whether a change has anyone to tell: one atomic load each while nobody listens.
    fn anyone_listens(&self) -> bool {
        self.own_channels.load(Ordering::Relaxed) > 0
            || self.patterns.load(Ordering::Relaxed) > 0
            || self.trackers.load(Ordering::Relaxed) > 0
    }

    /// The store's hook: `changes` were just made (one log record's worth), under the locks
    /// of what they changed. Publishes cart events on `__cart__:<key>` and
    /// `__cartevent__:<kind>`, catalog changes on `__product__:<product>`, and invalidates
    /// the carts tracking clients read.
    pub fn changed(&self, changes: &[ChangeRef<'_>]) {
        if !self.anyone_listens() {
            return;
        }
        for change in changes {
            match change.space {
                Space::Cart => {
                    if self.trackers.load(Ordering::Relaxed) > 0 {
                        self.invalidate(change.key);
                    }
                    if let Some(event) = &change.event {
                        self.publish_cart_event(change, event.kind.as_str(), event.detail);
                    }
                }
                Space::Catalog => self.publish_product_change(change),
                Space::Promotion | Space::GiftCard | Space::Handoff => {}
            }
        }
    }

    /// Whether `channel` could have a receiver: it has subscribers, or some pattern exists.
    fn may_receive(&self, registry: &Registry, channel: &[u8]) -> bool {
        !registry.patterns.is_empty() || registry.channels.contains_key(channel)
    }

    fn publish_cart_event(&self, change: &ChangeRef<'_>, kind: &str, detail: &[u8]) {
        let mut cart_channel = Vec::with_capacity(CART_CHANNEL_PREFIX.len() + change.key.len());
        cart_channel.extend_from_slice(CART_CHANNEL_PREFIX);
        cart_channel.extend_from_slice(change.key);
        let mut kind_channel = Vec::with_capacity(CART_EVENT_CHANNEL_PREFIX.len() + kind.len());
        kind_channel.extend_from_slice(CART_EVENT_CHANNEL_PREFIX);
        kind_channel.extend_from_slice(kind.as_bytes());
        let (to_cart, to_kind) = {
            let registry = self.registry.read();
            (
                self.may_receive(&registry, &cart_channel),
                self.may_receive(&registry, &kind_channel),
            )
        };
        if !to_cart && !to_kind {
            return;
        }
        let payload = Bytes::from(cart_event_json(change, kind, detail));
        if to_cart {
            self.publish_reply(&cart_channel, || Reply::Bulk(payload.clone()));
        }
        if to_kind {
            self.publish_reply(&kind_channel, || Reply::Bulk(payload.clone()));
        }
    }

    fn publish_product_change(&self, change: &ChangeRef<'_>) {
        let Ok((product, variant)) = crate::store::reference::split_catalog_key(change.key) else {
            return;
        };
        let mut channel = Vec::with_capacity(PRODUCT_CHANNEL_PREFIX.len() + product.len());
        channel.extend_from_slice(PRODUCT_CHANNEL_PREFIX);
        channel.extend_from_slice(product);
        if !self.may_receive(&self.registry.read(), &channel) {
            return;
        }
        let payload = Bytes::from(product_change_json(change, product, variant));
        self.publish_reply(&channel, || Reply::Bulk(payload.clone()));
    }

    /// Turns tracking on (or changes its mode) for `client`.
    pub fn track(&self, client: u64, mode: TrackingMode) {
        let mut table = self.tracking.lock();
        table.bcast.retain(|id| *id != client);
        if mode.bcast.is_some() {
            table.bcast.push(client);
        }
        if table.clients.insert(client, mode).is_none() {
            self.trackers.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Turns tracking off for `client`. The keys it read are forgotten lazily: an
    /// invalidation finds it no longer tracking and skips it.
    pub fn stop_tracking(&self, client: u64) {
        let mut table = self.tracking.lock();
        if table.clients.remove(&client).is_some() {
            self.trackers.fetch_sub(1, Ordering::Relaxed);
            table.bcast.retain(|id| *id != client);
        }
    }

    /// Remembers that `client` (tracking in the default mode) read `key`; past the table's
    /// bound, keys are invalidated and forgotten to make room.
    pub fn remember_read(&self, client: u64, key: &[u8]) {
        let mut table = self.tracking.lock();
        if let Some(readers) = table.keys.get_mut(key) {
            if !readers.contains(&client) {
                readers.push(client);
            }
            return;
        }
        table
            .keys
            .insert(Bytes::copy_from_slice(key), SmallVec::from_slice(&[client]));
        while table.keys.len() > self.tracking_keys_max {
            let Some(victim) = table
                .keys
                .keys()
                .find(|victim| victim.as_ref() != key)
                .cloned()
            else {
                break;
            };
            self.invalidate_locked(&mut table, &victim, 0);
        }
    }

    /// Sends the invalidation of `key` to every client that read it or broadcasts it.
    fn invalidate(&self, key: &[u8]) {
        let actor = ACTOR.get();
        let mut table = self.tracking.lock();
        self.invalidate_locked(&mut table, key, actor);
    }

    fn invalidate_locked(&self, table: &mut TrackingTable, key: &[u8], actor: u64) {
        let readers = table.keys.remove(key).unwrap_or_default();
        let mut targets: SmallVec<[u64; 4]> = SmallVec::new();
        for reader in readers {
            if let Some(mode) = table.clients.get(&reader) {
                if mode.bcast.is_none() && !(mode.noloop && reader == actor) {
                    targets.push(mode.target);
                }
            }
        }
        for client in &table.bcast {
            let Some(mode) = table.clients.get(client) else {
                continue;
            };
            let Some(prefixes) = &mode.bcast else {
                continue;
            };
            let matches =
                prefixes.is_empty() || prefixes.iter().any(|prefix| key.starts_with(prefix));
            if matches && !(mode.noloop && *client == actor) {
                targets.push(mode.target);
            }
        }
        if targets.is_empty() {
            return;
        }
        targets.sort_unstable();
        targets.dedup();
        let mailboxes = self.mailboxes.read();
        let keys = Reply::Array(vec![Reply::Bulk(Bytes::copy_from_slice(key))]);
        let mut push = Outgoing::new(Reply::Push(vec![
            Reply::from_static("invalidate"),
            keys.clone(),
        ]));
        let mut redirected = message(INVALIDATE_CHANNEL, keys);
        for target in targets {
            let Some(mailbox) = mailboxes.get(&target) else {
                continue;
            };
            let bytes = match mailbox.protocol() {
                Protocol::Resp3 => push.bytes(Protocol::Resp3),
                Protocol::Resp2 => redirected.bytes(Protocol::Resp2),
            };
            if mailbox.post(bytes, &self.stats) {
                self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Tracking figures for INFO: clients, keys remembered, (key, client) pairs, prefixes.
    pub fn tracking_figures(&self) -> (usize, usize, usize, usize) {
        let table = self.tracking.lock();
        let items = table.keys.values().map(SmallVec::len).sum();
        let prefixes = table
            .clients
            .values()
            .filter_map(|mode| mode.bcast.as_ref().map(Vec::len))
            .sum();
        (table.clients.len(), table.keys.len(), items, prefixes)
    }

    /// Makes `mailbox` a monitor: it receives every command run from now on.
    pub fn start_monitor(&self, mailbox: &Arc<Mailbox>) {
        let mut monitors = self.monitors.write();
        if monitors
            .iter()
            .all(|monitor| monitor.client != mailbox.client)
        {
            monitors.push(mailbox.clone());
            self.monitor_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stop_monitor(&self, client: u64) {
        let mut monitors = self.monitors.write();
        let before = monitors.len();
        monitors.retain(|monitor| monitor.client != client);
        let removed = before - monitors.len();
        if removed > 0 {
            self.monitor_count.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    /// Whether any client monitors.
    pub fn monitored(&self) -> bool {
        self.monitor_count.load(Ordering::Relaxed) > 0
    }

    /// Feeds the monitors one command (`id`) as Redis shows it: `+<unix s.µs> [0 <addr>]
    /// "name" "arg" ...`, passwords redacted as the slow log redacts them.
    pub fn feed_monitors(
        &self,
        addr: &std::net::SocketAddr,
        id: protocol::CommandId,
        args: &[Bytes],
    ) {
        let monitors = self.monitors.read();
        if monitors.is_empty() {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = String::with_capacity(64);
        let _ = write!(
            line,
            "{}.{:06} [0 {addr}]",
            now.as_secs(),
            now.subsec_micros()
        );
        for (at, arg) in args.iter().enumerate() {
            line.push(' ');
            if crate::slowlog::redacted(id, args, at) {
                line.push_str("\"(redacted)\"");
            } else {
                quote_into(&mut line, arg);
            }
        }
        let mut outgoing = Outgoing::new(Reply::Simple(line.into()));
        for monitor in monitors.iter() {
            monitor.post(outgoing.bytes(monitor.protocol()), &self.stats);
        }
    }
}

/// Appends `arg` quoted as Redis's `sdscatrepr` shows it.
fn quote_into(line: &mut String, arg: &[u8]) {
    line.push('"');
    for &byte in arg {
        match byte {
            b'\\' => line.push_str("\\\\"),
            b'"' => line.push_str("\\\""),
            b'\n' => line.push_str("\\n"),
            b'\r' => line.push_str("\\r"),
            b'\t' => line.push_str("\\t"),
            0x07 => line.push_str("\\a"),
            0x08 => line.push_str("\\b"),
            byte if byte.is_ascii_graphic() || byte == b' ' => line.push(char::from(byte)),
            byte => {
                let _ = write!(line, "\\x{byte:02x}");
            }
        }
    }
    line.push('"');
}

/// A cart event as JSON: `{"key":..,"kind":..,"version":..,"at_ms":..,"gone":..,"detail":{..}}`.
/// The detail is the event's own JSON object, as the store wrote it for the log: spliced in
/// as it is rather than parsed and written again, under the cart's lock.
fn cart_event_json(change: &ChangeRef<'_>, kind: &str, detail: &[u8]) -> Vec<u8> {
    let key = serde_json::to_string(&String::from_utf8_lossy(change.key))
        .expect("a string always serializes");
    let gone = matches!(change.state, StateRef::Tombstone(_));
    let detail = if detail.is_empty() {
        &b"{}"[..]
    } else {
        detail
    };
    let mut json = Vec::with_capacity(96 + key.len() + detail.len());
    let _ = write!(
        json,
        r#"{{"key":{key},"kind":"{kind}","version":{},"at_ms":{},"gone":{gone},"detail":"#,
        change.version, change.at_ms
    );
    json.extend_from_slice(detail);
    json.push(b'}');
    json
}

/// A catalog change as JSON: the variant's price, currency, stock and per-cart limit now
/// (null where unset; `deleted` after CATALOG.DEL).
fn product_change_json(change: &ChangeRef<'_>, product: &[u8], variant: &[u8]) -> Vec<u8> {
    let mut json = serde_json::json!({
        "product": String::from_utf8_lossy(product),
        "variant": String::from_utf8_lossy(variant),
        "at_ms": change.at_ms,
    });
    match change.state {
        StateRef::Image(image) => {
            if let Ok(persistence::sink::ReferenceValue::Catalog {
                price,
                currency,
                stock,
                max_qty,
                ..
            }) = crate::store::reference::row_value(Space::Catalog, image)
            {
                json["price"] = serde_json::json!(price);
                json["currency"] = serde_json::json!(currency);
                json["stock"] = serde_json::json!(stock);
                json["max_qty"] = serde_json::json!(max_qty);
            }
            json["deleted"] = serde_json::json!(false);
        }
        StateRef::Tombstone(_) | StateRef::Delta { .. } => {
            json["deleted"] = serde_json::json!(true);
        }
    }
    serde_json::to_vec(&json).expect("a JSON value always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(client: u64, protocol: Protocol, hard: u64) -> Arc<Mailbox> {
        Arc::new(Mailbox::new(
            client,
            protocol,
            CancellationToken::new(),
            OutputBufferLimit {
                hard_bytes: hard,
                soft_bytes: 0,
                soft_s: 0,
            },
        ))
    }

    fn drain(mailbox: &Mailbox) -> Vec<u8> {
        let mut out = BytesMut::new();
        mailbox.take_into(&mut out, usize::MAX);
        out.to_vec()
    }

    #[test]
    fn a_message_reaches_channel_and_pattern_subscribers_in_their_protocol() {
        let pubsub = PubSub::new(100);
        let resp2 = mailbox(1, Protocol::Resp2, 0);
        let resp3 = mailbox(2, Protocol::Resp3, 0);
        pubsub.subscribe(Bytes::from_static(b"news"), &resp2);
        pubsub.psubscribe(Bytes::from_static(b"ne*"), &resp3);
        assert_eq!(pubsub.publish(b"news", &Bytes::from_static(b"hi")), 2);
        assert_eq!(
            drain(&resp2),
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert_eq!(
            drain(&resp3),
            b">4\r\n$8\r\npmessage\r\n$3\r\nne*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert!(!resp2.has_mail());
        pubsub.unsubscribe(b"news", 1);
        pubsub.punsubscribe(b"ne*", 2);
        assert_eq!(pubsub.publish(b"news", &Bytes::from_static(b"hi")), 0);
        assert_eq!(pubsub.channel_count(), 0);
        assert_eq!(pubsub.pattern_count(), 0);
    }

    #[test]
    fn a_mailbox_past_its_hard_limit_closes_its_client_and_takes_no_more() {
        let pubsub = PubSub::new(100);
        let slow = mailbox(1, Protocol::Resp2, 100);
        pubsub.subscribe(Bytes::from_static(b"c"), &slow);
        assert_eq!(pubsub.publish(b"c", &Bytes::from(vec![b'x'; 40])), 1);
        assert_eq!(pubsub.publish(b"c", &Bytes::from(vec![b'x'; 40])), 0);
        assert!(slow.kill.is_cancelled());
        assert_eq!(pubsub.publish(b"c", &Bytes::from(vec![b'x'; 1])), 0);
        assert_eq!(pubsub.stats.closed_over_limit.load(Ordering::Relaxed), 1);
        assert!(drain(&slow).is_empty());
    }

    #[test]
    fn own_channels_are_counted_so_changes_cost_nothing_without_listeners() {
        let pubsub = PubSub::new(100);
        let listener = mailbox(1, Protocol::Resp3, 0);
        pubsub.subscribe(Bytes::from_static(b"unrelated"), &listener);
        assert!(!pubsub.anyone_listens());
        pubsub.subscribe(Bytes::from_static(b"__cart__:cart:1"), &listener);
        assert!(pubsub.anyone_listens());
        pubsub.unsubscribe(b"__cart__:cart:1", 1);
        assert!(!pubsub.anyone_listens());
    }

    #[test]
    fn tracking_invalidates_readers_once_and_skips_noloop_actors() {
        let pubsub = PubSub::new(2);
        let reader = mailbox(1, Protocol::Resp3, 0);
        let noloop = mailbox(2, Protocol::Resp3, 0);
        pubsub.open_mailbox(reader.clone());
        pubsub.open_mailbox(noloop.clone());
        let default = |target, noloop| TrackingMode {
            target,
            bcast: None,
            noloop,
        };
        pubsub.track(1, default(1, false));
        pubsub.track(2, default(2, true));
        pubsub.remember_read(1, b"cart:a");
        pubsub.remember_read(2, b"cart:a");
        acting_as(2, || pubsub.invalidate(b"cart:a"));
        assert_eq!(
            drain(&reader),
            b">2\r\n$10\r\ninvalidate\r\n*1\r\n$6\r\ncart:a\r\n"
        );
        assert!(drain(&noloop).is_empty());
        // Forgotten once invalidated: a second change tells nobody until it is read again.
        pubsub.invalidate(b"cart:a");
        assert!(drain(&reader).is_empty());
        // Past the table's bound, the oldest keys are invalidated to make room.
        pubsub.remember_read(1, b"cart:b");
        pubsub.remember_read(1, b"cart:c");
        pubsub.remember_read(1, b"cart:d");
        assert_eq!(pubsub.tracking_figures().1, 2);
        assert!(!drain(&reader).is_empty());
    }

    #[test]
    fn monitor_lines_quote_as_redis() {
        let mut line = String::new();
        quote_into(&mut line, b"a\"b\\c\n\x01");
        assert_eq!(line, r#""a\"b\\c\n\x01""#);
    }
}
