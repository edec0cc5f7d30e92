//! The store's side of the write-ahead log: every change leaves a record while the locks of
//! what it changed are still held, so log order is apply order for every cart, catalog entry,
//! promotion and gift card. A record holds everything one command changed together (a MERGE's
//! two carts, a checkout's cart and gift cards), so recovery applies all of it or none.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use persistence::{
    ChangeRef, Event, EventKind, EventRef, GuardRef, Lsn, Space, StateRef, TombstoneReason,
};
use smallvec::SmallVec;

use super::shard::Shard;
use super::{Location, Store};
use crate::cart::{delta, image, Cart};

thread_local! {
    /// The last LSN this thread appended: a connection reads it after its batch to know which
    /// LSN its replies must wait for.
    static APPENDED: Cell<Lsn> = const { Cell::new(0) };
    /// This thread's appends are written by the caller of [`deferring_writes`] afterwards.
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// This thread appended a TTL renewal (not in [`APPENDED`]: no reply waits for it), which
    /// the caller of [`deferring_writes`] must still have written.
    static TOUCHED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread appended a TTL renewal since the last call; resets it.
pub fn take_touched() -> bool {
    TOUCHED.replace(false)
}

/// Runs `run` with the log records it appends left for this thread to write once it is done
/// ([`persistence::Wal::write_queued`]), instead of waking the log's writer thread for them.
/// A connection uses it around a batch of requests: its replies wait for the write anyway.
pub fn deferring_writes<R>(run: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            DEFERRING.set(self.0);
        }
    }
    let _reset = Reset(DEFERRING.replace(true));
    run()
}

/// The highest LSN appended by this thread since the last call, 0 if none; resets it.
pub fn take_appended_lsn() -> Lsn {
    APPENDED.replace(0)
}

/// An event with no details.
pub fn bare_event(kind: EventKind) -> Event {
    event(kind, serde_json::json!({}))
}

/// An event whose details are a JSON object. Its time is the change's (`Change::at_ms`), which
/// the PostgreSQL sink adds to the payload.
pub fn event(kind: EventKind, detail: serde_json::Value) -> Event {
    Event {
        kind,
        detail: serde_json::to_vec(&detail)
            .expect("a JSON value always serializes")
            .into(),
    }
}

/// An event, borrowed for a change.
pub(super) fn event_ref(event: &Event) -> EventRef<'_> {
    EventRef {
        kind: event.kind,
        detail: &event.detail,
    }
}

/// A cart's new state, as one change of a record.
pub(super) struct CartChange<'a> {
    pub key: &'a [u8],
    pub version: u64,
    /// The cart's image, or why it is gone.
    pub state: CartState,
    pub event: Option<&'a Event>,
    pub guard: Option<GuardRef<'a>>,
}

/// A cart's image (encoded), a delta from its state after record `base_lsn`, or its
/// tombstone.
pub(super) enum CartState {
    Image(Vec<u8>),
    Delta { base_lsn: Lsn, delta: Vec<u8> },
    Gone(TombstoneReason),
}

impl Store {
    /// Appends one record of `changes`, at `now_ms`; returns its LSN (0 without a log).
    pub(super) fn append(&self, changes: &[ChangeRef<'_>]) -> Lsn {
        let in_transaction = super::transaction::in_transaction();
        if let Some(listener) = self.listener.get().filter(|_| !in_transaction) {
            // A transaction's changes are told once it commits, as its one record.
            listener.changed(changes);
        }
        let Some(wal) = self.wal.get() else {
            return 0;
        };
        if in_transaction {
            super::transaction::keep(changes);
            return self.transaction_lsn();
        }
        let lsn = if DEFERRING.get() {
            wal.append_deferred(changes)
        } else {
            wal.append(changes)
        };
        APPENDED.set(lsn);
        lsn
    }

    /// Appends one record of the carts' changes (and of `others`, reference data changed
    /// along with them); returns its LSN (0 without a log).
    pub(super) fn append_carts(
        &self,
        carts: &[CartChange<'_>],
        others: &[ChangeRef<'_>],
        now_ms: u64,
    ) -> Lsn {
        if self.wal.get().is_none() && self.listener.get().is_none() {
            return 0;
        }
        let mut changes: SmallVec<[ChangeRef<'_>; 4]> = carts
            .iter()
            .map(|cart| ChangeRef {
                space: Space::Cart,
                key: cart.key,
                version: cart.version,
                at_ms: now_ms,
                state: match &cart.state {
                    CartState::Image(image) => StateRef::Image(image),
                    CartState::Delta { base_lsn, delta } => StateRef::Delta {
                        base_lsn: *base_lsn,
                        delta,
                    },
                    CartState::Gone(reason) => StateRef::Tombstone(*reason),
                },
                event: cart.event.map(event_ref),
                guard: cart.guard,
            })
            .collect();
        changes.extend_from_slice(others);
        self.append(&changes)
    }

    /// Logs `cart` as it now is under `key`, as a delta from `before` (its state before the
    /// change, `None` for a new cart) where one fits, else as a full image; stamps it with the
    /// record's LSN.
    pub(super) fn log_cart(
        &self,
        key: &[u8],
        before: Option<&Cart>,
        cart: &mut Cart,
        event: Option<&Event>,
        guard: Option<GuardRef<'_>>,
        now_ms: u64,
    ) {
        if self.wal.get().is_none() && self.listener.get().is_none() {
            return;
        }
        // Inside a transaction a cart changed twice would need a delta from its own record:
        // full images keep every change of the record independent.
        let delta = before
            .filter(|_| !super::transaction::in_transaction())
            .and_then(|before| {
                let delta = delta::encode(before, cart, &self.names)?;
                Some(CartState::Delta {
                    base_lsn: before.lsn,
                    delta,
                })
            });
        let state = delta.unwrap_or_else(|| CartState::Image(image::encode(cart, &self.names)));
        let change = CartChange {
            key,
            version: cart.version,
            state,
            event,
            guard,
        };
        cart.lsn = self.append_carts(&[change], &[], now_ms);
        // The record holds the deadline the cart has now.
        cart.logged_expires_at_ms = 0;
    }

    /// Logs a read's renewal of the cart's TTL (`before` is the cart as it was). The reply
    /// does not wait for it to be durable: a renewal lost in a crash only shortens the TTL
    /// back to its last logged value, as it was before the read.
    pub(super) fn log_touch(&self, key: &[u8], before: &Cart, cart: &mut Cart, now_ms: u64) {
        let appended = APPENDED.get();
        self.log_cart(key, Some(before), cart, None, None, now_ms);
        APPENDED.set(appended);
        TOUCHED.set(true);
    }

    /// Logs that the cart under `key` (last at `version`) is gone.
    pub(super) fn log_gone(
        &self,
        key: &[u8],
        version: u64,
        reason: TombstoneReason,
        event: &Event,
        now_ms: u64,
    ) {
        let change = CartChange {
            key,
            version,
            state: CartState::Gone(reason),
            event: Some(event),
            guard: None,
        };
        self.append_carts(&[change], &[], now_ms);
    }

    /// Logs the expiry of a cart the wheel or an access found past its deadline, and lets go
    /// of what its checkout held on gift cards.
    pub(super) fn log_expired(&self, key: &[u8], cart: &Cart, now_ms: u64) {
        self.stats.expired_carts.fetch_add(1, Ordering::Relaxed);
        self.release_holds(cart);
        let event = bare_event(EventKind::Abandon);
        self.log_gone(key, cart.version, TombstoneReason::Expired, &event, now_ms);
    }

    /// Gives back what the checkout of `cart`, now gone, held on gift cards.
    pub(super) fn release_holds(&self, cart: &Cart) {
        if let Some(checkout) = cart.checkout() {
            self.gift_cards.release(&checkout.token);
            self.release_elsewhere(&checkout.token, &checkout.pricing, &[]);
        }
    }

    /// Removes the cart under `key` if its deadline passed, logging the expiry.
    pub(super) fn reap(&self, shard: &mut Shard, at: Location, key: &[u8], now_ms: u64) {
        if let Some(cart) = shard.reap_if_expired(at.hash, key, now_ms) {
            self.log_expired(key, &cart, now_ms);
        }
    }

    /// A copy of the live cart under `key`, reaping an expired one first. A change to it is
    /// kept once [`Shard::update`] stores it back.
    pub(super) fn live(
        &self,
        shard: &mut Shard,
        at: Location,
        key: &[u8],
        now_ms: u64,
    ) -> Option<Cart> {
        // One lookup: the copy tells its own deadline (an expired cart is rare).
        let cart = shard.find(at.hash, key)?;
        if cart.expires_at_ms > now_ms {
            return Some(cart);
        }
        if self.is_read_only() {
            return None; // A replica waits for its primary's tombstone.
        }
        shard.remove(at.hash, key);
        self.log_expired(key, &cart, now_ms);
        None
    }
}
