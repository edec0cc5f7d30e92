//! The sharded cart store. A key's hash picks its shard; each shard is a `parking_lot::Mutex`
//! over its carts, wheel and remembered request tokens. One command locks one shard, MERGE
//! locks two in shard-index order. Every change goes through [`Store::mutate`] (or MERGE):
//! checked completely, then applied, then the version moves on and the after-image goes to the
//! write-ahead log, all under the shard lock. Reference data (catalog, promotions, gift cards)
//! is changed through the store too (`reference.rs`), so that it is logged.
//!
//! Key hashes are seeded: the seed is kept in snapshots and taken back at recovery
//! ([`Store::set_seed`]), so hashes (SCAN cursors, the remembered tokens' keys) stay the same
//! across restarts.

mod checkout;
pub mod durable;
mod gift_cards;
pub mod handoff;
mod index;
mod introspection;
mod log;
mod merge;
mod names_sweep;
mod pricing;
pub mod promotion;
pub mod reference;
mod shard;
pub mod shared;
pub mod stamps;
mod tokens;
mod transaction;
mod wheel;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use protocol::{CommandError, ErrorCode, Format, MutationOptions, Reply, ReplyMode};

use crate::cart::priced::CartPricing;
use crate::cart::view::{self, Validation};
use crate::cart::{Cart, CartKind, CartLimits, LineKey, Names};
use crate::catalog::{apply_plan, Catalog};
use crate::config::Config;
use crate::limits::{EXPIRE_CHECKS_PER_LOCK_MAX, VALIDATION_ATTEMPTS_MAX};
use crate::pricing::{GiftCards, Promotions};
pub use checkout::new_token;
pub use gift_cards::{CardOwners, HeldElsewhere, HoldAsks};
pub use introspection::{CartFootprint, TtlSample};
pub use log::{bare_event, deferring_writes, event, take_appended_lsn, take_touched};
pub use merge::{GuestFrom, Handed};
use persistence::{Event, EventKind, GuardKind, GuardRef, TombstoneReason, Wal};
use shard::Shard;
use tokens::{Lookup, Remembered, TokenBounds, TokenMemory};

/// Store settings, from the configuration.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Number of shards (power of two).
    pub shards: usize,
    /// Cart bounds.
    pub limits: CartLimits,
    /// Keys with this prefix are guest carts.
    pub guest_prefix: Vec<u8>,
    /// Guest cart lifetime.
    pub guest_ttl_ms: u64,
    /// User cart lifetime.
    pub user_ttl_ms: u64,
    /// Validation cache window.
    pub validation_cache_ms: u64,
    /// Idempotency memory.
    pub idempotency_ttl_ms: u64,
    /// Idempotency records server-wide.
    pub idempotency_max: usize,
    /// Idempotency records of one cart.
    pub idempotency_per_cart: usize,
    /// Distinct product and variant ids held at most.
    pub names_max: usize,
    /// Carts the store holds at most; creating one more fails with `OOM`.
    pub carts_max: usize,
    /// Checkout hold when CART.CHECKOUT names none.
    pub checkout_hold_ms: u64,
    /// Cluster mode: carts are ordered by their slot first (a key's hash is its slot in the
    /// top 14 of its 63 bits), so the carts of one slot are one range of the index.
    pub slot_ordered: bool,
}

impl StoreConfig {
    /// What one shard's token memory holds: its share of the server-wide bound.
    pub fn token_bounds(&self) -> TokenBounds {
        TokenBounds {
            total: self.idempotency_max.div_ceil(self.shards),
            per_cart: self.idempotency_per_cart,
        }
    }
}

impl From<&Config> for StoreConfig {
    fn from(config: &Config) -> StoreConfig {
        let carts = &config.carts;
        StoreConfig {
            shards: config.server.shards,
            limits: CartLimits {
                lines_max: carts.max_lines_per_cart,
                saved_max: carts.max_saved_per_cart,
                qty_max: carts.max_qty_per_line,
            },
            guest_prefix: carts.guest_prefix.as_bytes().to_vec(),
            guest_ttl_ms: carts.guest_ttl_s * 1000,
            user_ttl_ms: carts.user_ttl_s * 1000,
            validation_cache_ms: carts.validation_cache_s * 1000,
            idempotency_ttl_ms: carts.idempotency_ttl_s * 1000,
            idempotency_max: carts.max_idempotency_keys,
            idempotency_per_cart: carts.max_idempotency_keys_per_cart,
            names_max: carts.max_interned_ids,
            carts_max: carts.max_carts,
            checkout_hold_ms: carts.checkout_hold_s * 1000,
            slot_ordered: config.cluster.enabled,
        }
    }
}

/// Counters the store keeps for INFO.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Carts removed because their TTL ran out.
    pub expired_carts: AtomicU64,
    /// Reads that found a cart.
    pub keyspace_hits: AtomicU64,
    /// Reads that found none.
    pub keyspace_misses: AtomicU64,
}

/// What the remembered request tokens take, for INFO.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TokenStats {
    /// Tokens remembered (IDEMPOTENCY tokens and completed checkouts).
    pub tokens: usize,
    /// Bytes they take.
    pub bytes: usize,
    /// Tokens pushed out early by their cart's `max_idempotency_keys_per_cart`.
    pub evicted: u64,
    /// Requests refused because the token memory was full (`max_idempotency_keys`).
    pub refused: u64,
    /// Traces of those kept, so their retries are refused rather than applied again.
    pub forgotten: usize,
    /// Bytes the traces take.
    pub forgotten_bytes: usize,
}

/// What a mutation did to the cart it was given.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing changed (the TTL is still renewed).
    Unchanged,
    /// The cart changed.
    Changed,
    /// There was no cart; this one is new.
    Create(Cart),
}

/// The store.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    carts: Arc<AtomicUsize>,
    shard_shift: u32,
    /// Interned product and variant ids.
    pub names: Arc<Names>,
    /// The catalog cache.
    pub catalog: Catalog,
    /// Promotions by code (`PROMO.SET`).
    pub promotions: Promotions,
    /// Gift cards by code (`GIFTCARD.SET`) and their checkout holds.
    pub gift_cards: GiftCards,
    /// The last-writer-wins stamps of the catalog entries and promotions a cluster shares.
    stamps: stamps::Stamps,
    /// This node's origin in stamps: 0 standalone.
    origin: AtomicU64,
    /// Who hears of every shared write accepted here (the peer links, in a cluster).
    outbox: OnceLock<shared::Outbox>,
    /// Who decides which gift card (the peer links, in a cluster); unset standalone.
    card_owners: OnceLock<Box<dyn CardOwners>>,
    /// Which carts may be made here (the slots, in a cluster); unset standalone.
    placement: OnceLock<Box<dyn Placement>>,
    /// Settings.
    pub config: StoreConfig,
    /// Counters.
    pub stats: StoreStats,
    /// The write-ahead log, once recovery has opened it (unit tests run without one).
    wal: OnceLock<Arc<Wal>>,
    /// Who hears of every change as it is made (pub/sub events, client-side caching).
    listener: OnceLock<Arc<crate::pubsub::PubSub>>,
    /// The seed of key hashes (and of the remembered tokens' digests), random unless recovery
    /// brings one back before anything is hashed.
    seed: Mutex<[u64; 4]>,
    hasher: OnceLock<ahash::RandomState>,
    /// While recovering: the keys of carts loaded frozen for checkout, whose gift card holds
    /// are put back once everything is loaded.
    frozen_at_recovery: Mutex<Vec<Bytes>>,
    /// While recovering: carts a replayed delta found absent; each must be gone or written
    /// whole by a later record (the snapshot held them deleted), else its state is lost.
    awaiting_base: Mutex<std::collections::HashMap<Bytes, u64>>,
    /// Taken shared by every command and background change, exclusively by EXEC
    /// ([`Store::transaction`]); per-thread shards, so the shared side costs no contention.
    transactions: crossbeam_utils::sync::ShardedLock<()>,
    /// A replica's store: it changes only by its primary's records ([`Store::apply_replicated`]);
    /// reads neither expire, renew nor revalidate a cart in place.
    read_only: std::sync::atomic::AtomicBool,
    /// CART.MERGE across nodes: the handoffs this node gave or received, until confirmed.
    handoffs: Mutex<handoff::Handoffs>,
}

/// A cart's lines and the unit prices they hold, to validate against the catalog.
fn priced_lines(cart: &Cart) -> Vec<(crate::cart::LineKey, i64)> {
    cart.lines
        .iter()
        .map(|line| (line.key, line.unit_price))
        .collect()
}

/// How far reads may move a cart's deadline past the one logged before a record of it is
/// written: 1% of its TTL, at most a minute.
fn touch_step_ms(ttl_ms: u64) -> u64 {
    (ttl_ms / 100).min(60_000)
}

/// Carts of a slot read per shard lock by [`Store::keys_in_slot`].
const SLOT_KEYS_PER_LOCK: usize = 1000;

/// The first 63-bit hash of `slot`'s range when carts are ordered by slot.
fn slot_start(slot: u16) -> u64 {
    u64::from(slot) << (63 - cluster::SLOT_BITS)
}

/// Whether a cart missing here may be made (or brought back from PostgreSQL) here now: in a
/// cluster, in a slot this node serves and is not moving away, or one moving here. Asked
/// under the cart's shard lock, so a MIGRATE that took the cart away after the request was
/// routed is seen: a cart made here then would be a second, stale copy that the next MIGRATE
/// sends over the one the target has.
pub trait Placement: Send + Sync {
    /// Why no cart under `key` may be made here now (`-ASK`, `-MOVED`), if none may.
    fn refuse_new(&self, key: &[u8]) -> Option<CommandError>;
}

/// Where a key lives: its shard and its 63-bit hash (63 bits so a SCAN cursor fits a signed
/// 64-bit integer in every client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    shard: usize,
    hash: u64,
}

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig, now_ms: u64) -> Store {
        assert!(config.shards.is_power_of_two());
        let bounds = config.token_bounds();
        let carts = Arc::new(AtomicUsize::new(0));
        // A 63-bit hash: the top bits pick the shard, the `shard_shift` below vary within it.
        let shard_shift = 63 - config.shards.trailing_zeros();
        let seed: [u64; 4] = rand::random();
        let names = Arc::new(Names::with_max(config.names_max));
        let shards = (0..config.shards)
            .map(|_| {
                let mut shard =
                    Shard::new(now_ms, shard_shift, bounds, carts.clone(), names.clone());
                shard.tokens.seed(seed);
                Mutex::new(shard)
            })
            .collect();
        Store {
            shards,
            carts,
            shard_shift,
            names,
            catalog: Catalog::default(),
            promotions: Promotions::default(),
            gift_cards: GiftCards::default(),
            stamps: stamps::Stamps::default(),
            origin: AtomicU64::new(0),
            outbox: OnceLock::new(),
            card_owners: OnceLock::new(),
            placement: OnceLock::new(),
            config,
            stats: StoreStats::default(),
            wal: OnceLock::new(),
            listener: OnceLock::new(),
            seed: Mutex::new(seed),
            hasher: OnceLock::new(),
            frozen_at_recovery: Mutex::default(),
            awaiting_base: Mutex::default(),
            transactions: crossbeam_utils::sync::ShardedLock::new(()),
            read_only: std::sync::atomic::AtomicBool::new(false),
            handoffs: Mutex::default(),
        }
    }

    /// Registers which carts may be made here (once, at a cluster node's start).
    pub fn set_placement(&self, placement: Box<dyn Placement>) {
        if self.placement.set(placement).is_err() {
            tracing::warn!("the store's placement was set twice; the first stays");
        }
    }

    /// Refuses a cart under `key` that may not be made here now ([`Placement`]).
    fn may_make(&self, key: &[u8]) -> Result<(), CommandError> {
        match self
            .placement
            .get()
            .and_then(|placement| placement.refuse_new(key))
        {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// Makes this a replica's store (see [`Store::is_read_only`]).
    pub fn set_read_only(&self) {
        self.read_only
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether this is a replica's store: it changes only by its primary's records; reads
    /// neither expire a cart (the primary's tombstone will), renew its TTL nor store a
    /// revalidation.
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The seed of key hashes.
    pub fn seed(&self) -> [u64; 4] {
        *self.seed.lock()
    }

    /// Seeds key hashes with what a snapshot kept, before anything is hashed. Returns false
    /// when hashing had already begun (the seed then stays).
    pub fn set_seed(&self, seed: [u64; 4]) -> bool {
        let mut current = self.seed.lock();
        if self.hasher.get().is_some() {
            return *current == seed;
        }
        *current = seed;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.tokens = TokenMemory::new(shard.tokens.bounds());
            shard.tokens.seed(seed);
        }
        true
    }

    fn hasher(&self) -> &ahash::RandomState {
        self.hasher.get_or_init(|| {
            let [a, b, c, d] = self.seed();
            ahash::RandomState::with_seeds(a, b, c, d)
        })
    }

    /// From now on every change is logged to `wal`. Set once, after recovery.
    pub fn attach_wal(&self, wal: Arc<Wal>) {
        if self.wal.set(wal).is_err() {
            panic!("the write-ahead log is attached once");
        }
    }

    /// Tells `listener` of every change from now on, as it is made.
    pub fn set_listener(&self, listener: Arc<crate::pubsub::PubSub>) {
        if self.listener.set(listener).is_err() {
            tracing::warn!("the store's change listener was set twice; the first stays");
        }
    }

    /// The write-ahead log, once attached.
    pub fn wal(&self) -> Option<&Arc<Wal>> {
        self.wal.get()
    }

    fn locate(&self, key: &[u8]) -> Location {
        let mut hash = self.hasher().hash_one(key) >> 1;
        if self.config.slot_ordered {
            hash = slot_start(cluster::key_slot(key)) | (hash >> cluster::SLOT_BITS);
        }
        // The top bits pick the shard, so hash order is shard order: one cursor walks them all.
        let shard = if self.shard_shift == 63 {
            0
        } else {
            (hash >> self.shard_shift) as usize
        };
        Location { shard, hash }
    }

    /// Guest or user, from the key.
    pub fn kind_of(&self, key: &[u8]) -> CartKind {
        if key.starts_with(&self.config.guest_prefix) {
            CartKind::Guest
        } else {
            CartKind::User
        }
    }

    fn ttl_ms(&self, kind: CartKind) -> u64 {
        match kind {
            CartKind::Guest => self.config.guest_ttl_ms,
            CartKind::User => self.config.user_ttl_ms,
        }
    }

    fn count_read(&self, hit: bool) {
        let counter = if hit {
            &self.stats.keyspace_hits
        } else {
            &self.stats.keyspace_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs one mutation: idempotency replay, IFVERSION, then `apply` on the live cart (or
    /// `None`), then the version, times and TTL move on. `apply` must check everything before
    /// it changes anything: an error leaves the cart as it was. A cart frozen for checkout is
    /// refused with `FROZEN`; one whose hold ran out is active again.
    pub fn mutate(
        &self,
        key: &[u8],
        options: &MutationOptions,
        now_ms: u64,
        event: Event,
        apply: impl FnOnce(Option<&mut Cart>) -> Result<Outcome, CommandError>,
    ) -> Result<Reply, CommandError> {
        let apply = |cart: Option<&mut Cart>| match cart {
            Some(cart) => {
                if let Some(checkout) = cart.frozen(now_ms) {
                    return Err(frozen(checkout.hold_until_ms));
                }
                // A hold that ran out: the change applies to the cart as it is again.
                cart.end_checkout();
                apply(Some(cart))
            }
            None => apply(None),
        };
        self.mutate_with(key, options, now_ms, event, Validation::Skipped, apply)
    }

    /// [`Store::mutate`] for the checkout commands, which see a frozen cart as it is;
    /// `validation` is what the reply's view reports.
    pub fn mutate_with(
        &self,
        key: &[u8],
        options: &MutationOptions,
        now_ms: u64,
        event: Event,
        validation: Validation,
        apply: impl FnOnce(Option<&mut Cart>) -> Result<Outcome, CommandError>,
    ) -> Result<Reply, CommandError> {
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        if let Some(version) = self.replayed(&mut shard, at.hash, options, now_ms)? {
            let cart = self.touch(&mut shard, at, key, now_ms);
            drop(shard);
            return Ok(self.replay_reply(key, version, cart.as_ref(), options, now_ms));
        }
        let kind = self.kind_of(key);
        let expires_at_ms = now_ms + self.ttl_ms(kind);
        let guard = idempotency_guard(options);
        let cart = self.live(&mut shard, at, key, now_ms);
        check_version(options, cart.as_ref())?;
        let (cart, validation) = match cart {
            Some(mut cart) => {
                // The state before, for the log's delta (a copy of the lines: cheaper than
                // encoding the whole cart, which the delta replaces).
                let before = self.wal().is_some().then(|| cart.clone());
                if let Outcome::Changed = apply(Some(&mut cart))? {
                    cart.version += 1;
                    cart.updated_at_ms = now_ms;
                    // A change drops the validation, unless the change was one (CHECKOUT).
                    cart.validated_at_ms = match validation {
                        Validation::Fresh => now_ms.max(1),
                        _ => 0,
                    };
                    cart.debug_check(&self.config.limits);
                    cart.expires_at_ms = expires_at_ms;
                    self.log_cart(key, before.as_ref(), &mut cart, Some(&event), guard, now_ms);
                } else if guard.is_some() {
                    // Nothing changed, but a retry must still replay after a restart: the
                    // token goes to the log with the cart as it is.
                    cart.expires_at_ms = expires_at_ms;
                    self.log_cart(key, before.as_ref(), &mut cart, None, guard, now_ms);
                }
                cart.expires_at_ms = expires_at_ms;
                shard.update(at.hash, key, &cart);
                (cart, validation)
            }
            None => {
                self.may_make(key)?;
                let carts_max = self.config.carts_max;
                if self.len() >= carts_max {
                    return Err(CommandError::new(
                        ErrorCode::Oom,
                        format!(
                            "command not allowed: the store holds max_carts ({carts_max}) carts"
                        ),
                    ));
                }
                let Outcome::Create(mut cart) = apply(None)? else {
                    unreachable!("an operation on a missing cart either creates one or fails")
                };
                cart.version = 1;
                cart.created_at_ms = now_ms;
                cart.updated_at_ms = now_ms;
                cart.expires_at_ms = expires_at_ms;
                cart.validated_at_ms = 0;
                cart.debug_check(&self.config.limits);
                self.log_cart(key, None, &mut cart, Some(&event), guard, now_ms);
                shard.insert(at.hash, key, &cart);
                (cart, Validation::Skipped)
            }
        };
        self.remember(&mut shard, at.hash, options, cart.version, now_ms);
        // The reply (pricing and rendering) is made from the copy, with the shard free.
        drop(shard);
        let (mode, format) = (options.reply, options.format);
        Ok(self.reply_for(key, &cart, mode, format, now_ms, validation))
    }

    /// The version an idempotent retry's first request left the cart at, or an error for a
    /// token reused with other arguments (or used, but forgotten since).
    fn replayed(
        &self,
        shard: &mut Shard,
        hash: u64,
        options: &MutationOptions,
        now_ms: u64,
    ) -> Result<Option<u64>, CommandError> {
        let Some(token) = &options.idempotency else {
            return Ok(None);
        };
        match shard
            .tokens
            .lookup(hash, token, options.fingerprint, seconds(now_ms))
        {
            Lookup::Replay { version } => Ok(Some(version)),
            Lookup::Conflict => Err(CommandError::new(
                ErrorCode::Idempotency,
                "token reused with different arguments",
            )),
            Lookup::Forgotten => Err(CommandError::new(
                ErrorCode::Idempotency,
                "token was used already, but what it did is no longer remembered (this cart \
                 took more than max_idempotency_keys_per_cart tokens since); the request is \
                 not applied again",
            )),
            Lookup::Miss if !shard.tokens.admits(hash, seconds(now_ms)) => Err(CommandError::new(
                ErrorCode::Oom,
                format!(
                    "command not allowed: max_idempotency_keys ({}) tokens are remembered, each \
                     for idempotency_ttl_s; the request was not applied",
                    self.config.idempotency_max
                ),
            )),
            Lookup::Miss => Ok(None),
        }
    }

    /// The reply to an idempotent retry. `REPLY VERSION`: the version the first request
    /// left (null if the cart is gone since: no version of it exists); `REPLY CART`: the cart
    /// as it is. While the cart is still at that version this is
    /// the original reply (the retry renews the TTL as the first request did, and a cart the
    /// change validated says `fresh` again); if it changed since, the retry shows it as it is
    /// now, and a cart gone since is a null reply.
    fn replay_reply(
        &self,
        key: &[u8],
        version: u64,
        cart: Option<&Cart>,
        options: &MutationOptions,
        now_ms: u64,
    ) -> Reply {
        match (options.reply, cart) {
            (ReplyMode::Version, Some(_)) => {
                Reply::Integer(i64::try_from(version).unwrap_or(i64::MAX))
            }
            (ReplyMode::Version, None) => Reply::Null,
            (ReplyMode::None, _) => Reply::ok(),
            (ReplyMode::Cart, Some(cart)) => {
                // CHECKOUT and MERGE validate as they change the cart: both times are the same.
                let validated_by_change =
                    cart.validated_at_ms != 0 && cart.validated_at_ms == cart.updated_at_ms;
                let validation = if validated_by_change {
                    Validation::Fresh
                } else {
                    Validation::Skipped
                };
                self.render(key, cart, options.format, now_ms, validation)
            }
            (ReplyMode::Cart, None) => Reply::Null,
        }
    }

    /// Renews the TTL of `cart` (read from `shard` under `key`) as of `now_ms`, if `touch`
    /// (a read from a CLIENT NO-TOUCH connection does not).
    fn renew_if(
        &self,
        touch: bool,
        shard: &mut Shard,
        at: Location,
        key: &[u8],
        cart: &mut Cart,
        now_ms: u64,
    ) {
        if !touch || self.is_read_only() {
            return;
        }
        let ttl_ms = self.ttl_ms(cart.kind);
        let renewed = now_ms + ttl_ms;
        let logged = match cart.logged_expires_at_ms {
            0 => cart.expires_at_ms,
            logged => logged,
        };
        // Renewals are logged, so replicas and a restart keep them, in steps of at least 1% of
        // the TTL (at most a minute): a cart read constantly costs a record a minute, and a
        // replica's deadline is at most one step behind its primary's.
        if renewed >= logged.saturating_add(touch_step_ms(ttl_ms)) {
            let before = cart.clone();
            cart.expires_at_ms = renewed;
            self.log_touch(key, &before, cart, now_ms);
        } else {
            cart.expires_at_ms = renewed;
            cart.logged_expires_at_ms = logged;
        }
        shard.update(at.hash, key, cart);
    }

    /// The live cart under `key` with its TTL renewed (an access), if there is one.
    fn touch(&self, shard: &mut Shard, at: Location, key: &[u8], now_ms: u64) -> Option<Cart> {
        let mut cart = self.live(shard, at, key, now_ms)?;
        cart.expires_at_ms = now_ms + self.ttl_ms(cart.kind);
        shard.update(at.hash, key, &cart);
        Some(cart)
    }

    /// Remembers a mutation's idempotency token, if it has one, with the version it left.
    fn remember(
        &self,
        shard: &mut Shard,
        hash: u64,
        options: &MutationOptions,
        version: u64,
        now_ms: u64,
    ) {
        if let Some(token) = &options.idempotency {
            let remembered = Remembered {
                key_hash: hash,
                kind: GuardKind::Idempotency,
                token: token[..].into(),
                fingerprint: options.fingerprint,
                version,
                expires_s: seconds(now_ms + self.config.idempotency_ttl_ms),
            };
            shard.tokens.remember(&remembered, seconds(now_ms));
        }
    }

    /// The reply a mutation asked for.
    fn reply_for(
        &self,
        key: &[u8],
        cart: &Cart,
        mode: ReplyMode,
        format: Format,
        now_ms: u64,
        validation: Validation,
    ) -> Reply {
        match mode {
            ReplyMode::Version => Reply::Integer(i64::try_from(cart.version).unwrap_or(i64::MAX)),
            ReplyMode::None => Reply::ok(),
            ReplyMode::Cart => self.render(key, cart, format, now_ms, validation),
        }
    }

    fn render(
        &self,
        key: &[u8],
        cart: &Cart,
        format: Format,
        now_ms: u64,
        validation: Validation,
    ) -> Reply {
        let view = match cart.frozen(now_ms) {
            Some(checkout) => {
                let pricing = CartPricing::decode(&checkout.pricing).unwrap_or_default();
                view::render(
                    key,
                    cart,
                    &self.names,
                    now_ms,
                    validation,
                    &pricing,
                    Some(checkout),
                )
            }
            None => {
                let pricing = self.price(cart, now_ms);
                view::render(key, cart, &self.names, now_ms, validation, &pricing, None)
            }
        };
        match format {
            Format::Resp => view,
            Format::Json => Reply::Bulk(Bytes::from(view.to_json().to_string())),
        }
    }

    /// `CART.GET ... IFCHANGED version`'s first step: `Some(reply)` (null: still at
    /// `version`; NOCART: gone) when the view is not needed, counted as a read with the TTL
    /// renewed; `None` when the cart moved on and [`Store::get`] renders it (and counts it).
    pub fn unchanged(&self, key: &[u8], version: u64, now_ms: u64, touch: bool) -> Option<Reply> {
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        let Some(mut cart) = self.live(&mut shard, at, key, now_ms) else {
            self.count_read(false);
            return Some(Reply::Error(no_cart()));
        };
        if cart.version != version {
            return None;
        }
        self.count_read(true);
        self.renew_if(touch, &mut shard, at, key, &mut cart, now_ms);
        Some(Reply::Null)
    }

    /// A replica's view: validated against its own catalog copy, changing nothing.
    fn render_unstored(
        &self,
        shard: parking_lot::MutexGuard<'_, Shard>,
        key: &[u8],
        mut cart: Cart,
        plan: &crate::catalog::ValidationPlan,
        format: Format,
        now_ms: u64,
    ) -> Reply {
        drop(shard);
        apply_plan(&mut cart, plan);
        self.render(key, &cart, format, now_ms, Validation::Fresh)
    }

    /// `CART.GET`: renews the TTL (unless not `touch`: CLIENT NO-TOUCH) and returns the view,
    /// validated unless `novalidate` or cached. Pricing runs on a copy of the lines with no lock held; the result is applied
    /// only if the cart did not change meanwhile. `upstream_stale`: the upstream services
    /// failed to refresh the cache, so the view is priced from it but marked stale, and the
    /// validation is not cached (the next view tries again).
    pub fn get(
        &self,
        key: &[u8],
        novalidate: bool,
        format: Format,
        now_ms: u64,
        upstream_stale: bool,
        touch: bool,
    ) -> Reply {
        let at = self.locate(key);
        for _ in 0..VALIDATION_ATTEMPTS_MAX {
            let (version, currency, lines) = {
                let mut shard = self.shards[at.shard].lock();
                let cart = self.live(&mut shard, at, key, now_ms);
                self.count_read(cart.is_some());
                let Some(mut cart) = cart else {
                    // None here, but its slot moving away: the cart is on the target now.
                    return self.may_make(key).err().map_or(Reply::Null, Reply::Error);
                };
                self.renew_if(touch, &mut shard, at, key, &mut cart, now_ms);
                let cached = cart.validated_at_ms > 0
                    && now_ms.saturating_sub(cart.validated_at_ms)
                        < self.config.validation_cache_ms;
                // A cart in checkout shows what it was frozen with, never re-priced.
                let frozen = cart.frozen(now_ms).is_some();
                if novalidate || cached || frozen {
                    drop(shard);
                    let validation = if novalidate && !frozen {
                        Validation::Skipped
                    } else {
                        Validation::Cached
                    };
                    return self.render(key, &cart, format, now_ms, validation);
                }
                (cart.version, cart.currency, priced_lines(&cart))
            };
            let plan = self.catalog.plan(currency, &lines);
            let mut shard = self.shards[at.shard].lock();
            let Some(mut cart) = shard.find(at.hash, key) else {
                return Reply::Null;
            };
            if cart.version != version {
                continue; // Changed while we priced it: price the new state.
            }
            let log_failing = self.wal().is_some_and(|wal| wal.failing());
            if log_failing && !plan.is_empty() {
                // The validation would be a change the log cannot take: the view is shown
                // as the cart holds it, marked stale, and validated when the disk recovers.
                drop(shard);
                return self.render(key, &cart, format, now_ms, Validation::Stale);
            }
            if self.is_read_only() {
                return self.render_unstored(shard, key, cart, &plan, format, now_ms);
            }
            let before = (!plan.is_empty()).then(|| cart.clone());
            if apply_plan(&mut cart, &plan) {
                cart.version += 1;
                cart.updated_at_ms = now_ms;
                let event = event(
                    EventKind::Update,
                    serde_json::json!({"reason": "validation"}),
                );
                self.log_cart(key, before.as_ref(), &mut cart, Some(&event), None, now_ms);
            }
            let validation = if upstream_stale {
                Validation::Stale
            } else {
                cart.validated_at_ms = now_ms.max(1);
                Validation::Fresh
            };
            shard.update(at.hash, key, &cart);
            drop(shard);
            return self.render(key, &cart, format, now_ms, validation);
        }
        let shard = self.shards[at.shard].lock();
        match shard.find(at.hash, key) {
            Some(cart) => self.render(key, &cart, format, now_ms, Validation::Stale),
            None => Reply::Null,
        }
    }

    /// `DEL`: removes each cart; returns how many existed.
    pub fn delete(&self, key: &[u8], now_ms: u64) -> bool {
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        self.reap(&mut shard, at, key, now_ms);
        let Some(cart) = shard.remove(at.hash, key) else {
            return false;
        };
        self.release_holds(&cart);
        let event = bare_event(EventKind::Delete);
        self.log_gone(key, cart.version, TombstoneReason::Deleted, &event, now_ms);
        true
    }

    /// The live cart's remaining lifetime in ms, or `None` when there is no cart. Does not
    /// renew it (EXISTS, TYPE, TTL and PTTL do not count as access, as in Redis).
    pub fn ttl_left_ms(&self, key: &[u8], now_ms: u64) -> Option<u64> {
        let at = self.locate(key);
        let shard = self.shards[at.shard].lock();
        let expires_at_ms = shard.expires_at_ms(at.hash, key)?;
        (expires_at_ms > now_ms).then(|| expires_at_ms - now_ms)
    }

    /// Carts held, expired ones not yet reaped included (as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.carts.load(Ordering::Relaxed)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembered request tokens over all shards.
    pub fn token_stats(&self) -> TokenStats {
        let mut stats = TokenStats::default();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            stats.tokens += shard.tokens.len();
            stats.bytes += shard.tokens.bytes();
            stats.evicted += shard.tokens.evicted;
            stats.refused += shard.tokens.refused;
            stats.forgotten += shard.tokens.forgotten_len();
            stats.forgotten_bytes += shard.tokens.forgotten_bytes();
        }
        stats
    }

    /// Up to `count` live carts of `slot`, in index order. With carts ordered by slot
    /// (cluster mode) only that slot's range of one shard is read, a batch per lock;
    /// otherwise every cart is walked.
    pub fn keys_in_slot(&self, slot: u16, count: usize, now_ms: u64) -> Vec<Bytes> {
        let mut keys = Vec::new();
        if !self.config.slot_ordered {
            let mut cursor = 0;
            loop {
                let (next, batch) = self.scan(cursor, 1000, None, now_ms);
                keys.extend(
                    batch
                        .into_iter()
                        .filter(|key| cluster::key_slot(key) == slot),
                );
                if next == 0 || keys.len() >= count {
                    keys.truncate(count);
                    return keys;
                }
                cursor = next;
            }
        }
        let end = slot_start(slot) + (1u64 << (63 - cluster::SLOT_BITS));
        let mut from = slot_start(slot);
        let shard = self.locate_hash(from);
        while keys.len() < count {
            let mut next = None;
            {
                let shard = self.shards[shard].lock();
                for (visited, (hash, entries)) in shard.buckets_from(from).enumerate() {
                    if hash >= end {
                        break;
                    }
                    if keys.len() >= count || visited >= SLOT_KEYS_PER_LOCK {
                        next = Some(hash);
                        break;
                    }
                    keys.extend(
                        entries
                            .filter(|entry| entry.deadline().0 > now_ms)
                            .map(|entry| Bytes::copy_from_slice(entry.key())),
                    );
                }
            }
            match next {
                Some(hash) if keys.len() < count => from = hash,
                _ => break,
            }
        }
        keys.truncate(count);
        keys
    }

    /// The shard holding 63-bit hash `hash`.
    fn locate_hash(&self, hash: u64) -> usize {
        if self.shard_shift == 63 {
            0
        } else {
            ((hash >> self.shard_shift) as usize).min(self.shards.len() - 1)
        }
    }

    /// `SCAN`: visits about `count` carts from `cursor` (a key hash) on, returning the keys
    /// that match and the next cursor (0: done). Hash order never changes while a cart exists,
    /// so a cart present for the whole scan is returned exactly once. Keys are copied under
    /// each shard's lock and matched after it is released: no pattern holds up the shard.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        pattern: Option<&protocol::glob::Pattern>,
        now_ms: u64,
    ) -> (u64, Vec<Bytes>) {
        let mut keys = Vec::new();
        let mut visited = 0;
        let mut from = cursor;
        let shard_span = 1u64 << self.shard_shift.min(63);
        let keep = |keys: &mut Vec<Bytes>, candidates: Vec<Bytes>| {
            keys.extend(
                candidates
                    .into_iter()
                    .filter(|key| pattern.is_none_or(|pattern| pattern.matches(key))),
            );
        };
        loop {
            let shard_index = if self.shard_shift == 63 {
                0
            } else {
                (from >> self.shard_shift) as usize
            };
            if shard_index >= self.shards.len() {
                return (0, keys);
            }
            let mut candidates = Vec::new();
            let mut stopped_at = None;
            {
                let shard = self.shards[shard_index].lock();
                for (hash, entries) in shard.buckets_from(from) {
                    if visited >= count {
                        stopped_at = Some(hash);
                        break;
                    }
                    for entry in entries {
                        visited += 1;
                        if entry.deadline().0 > now_ms {
                            candidates.push(Bytes::copy_from_slice(entry.key()));
                        }
                    }
                }
            }
            keep(&mut keys, candidates);
            if let Some(hash) = stopped_at {
                return (hash, keys);
            }
            from = match (shard_index as u64 + 1).checked_mul(shard_span) {
                Some(next) if next < (1 << 63) => next,
                _ => return (0, keys),
            };
            if visited >= count {
                return (from, keys);
            }
        }
    }

    /// Expires every cart whose deadline has passed, shard by shard, never holding a shard lock
    /// for more than a bounded number of carts. Returns how many expired.
    pub fn expire_due(&self, now_ms: u64) -> usize {
        let _shared = self.shared();
        let mut expired = 0;
        for shard in self.shards.iter() {
            loop {
                let pass =
                    shard
                        .lock()
                        .expire_due(now_ms, EXPIRE_CHECKS_PER_LOCK_MAX, |key, cart| {
                            self.log_expired(&key, &cart, now_ms)
                        });
                expired += pass.expired;
                if !pass.more {
                    break;
                }
            }
        }
        expired
    }

    /// Lock a shard by index (MERGE locks two).
    fn shard(&self, index: usize) -> parking_lot::MutexGuard<'_, Shard> {
        self.shards[index].lock()
    }

    /// The active lines of the cart a view is about to validate, read without renewing or
    /// changing it, so the upstream services can be asked about them first. `None`: no cart,
    /// or (unless `force`) its validation is still cached and the view will not validate.
    pub fn line_keys_to_validate(
        &self,
        key: &[u8],
        now_ms: u64,
        force: bool,
    ) -> Option<Vec<LineKey>> {
        let at = self.locate(key);
        let cart = self.shards[at.shard].lock().find(at.hash, key)?;
        let cached = cart.validated_at_ms > 0
            && now_ms.saturating_sub(cart.validated_at_ms) < self.config.validation_cache_ms;
        // A cart in checkout is never re-priced: its view and a retried CHECKOUT are frozen.
        if cart.expires_at_ms <= now_ms || (cached && !force) || cart.frozen(now_ms).is_some() {
            return None;
        }
        Some(cart.lines.iter().map(|line| line.key).collect())
    }
}

/// Unix milliseconds as the whole seconds remembered tokens keep.
fn seconds(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

/// The guard a mutation's change carries: its idempotency token and fingerprint.
fn idempotency_guard(options: &MutationOptions) -> Option<GuardRef<'_>> {
    options.idempotency.as_ref().map(|token| GuardRef {
        kind: GuardKind::Idempotency,
        token,
        fingerprint: options.fingerprint,
    })
}

/// The error for a command on a cart that does not exist.
pub fn no_cart() -> CommandError {
    CommandError::new(ErrorCode::NoCart, "no such cart")
}

/// The error for a change to a cart in checkout.
pub fn frozen(hold_until_ms: u64) -> CommandError {
    CommandError::new(
        ErrorCode::Frozen,
        format!(
            "cart is in checkout until {hold_until_ms} (unix ms); CART.COMPLETE or CART.RELEASE it first"
        ),
    )
}

fn check_version(options: &MutationOptions, cart: Option<&Cart>) -> Result<(), CommandError> {
    let Some(expected) = options.if_version else {
        return Ok(());
    };
    let current = cart.map_or(0, |cart| cart.version);
    if current != expected {
        return Err(CommandError::new(
            ErrorCode::Version,
            format!("expected {expected}, cart is at {current}"),
        ));
    }
    Ok(())
}
