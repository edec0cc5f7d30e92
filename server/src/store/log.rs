//! The store's side of the write-ahead log: every change leaves an after-image or a tombstone
//! in the log while its shard lock is still held, so log order is apply order for every cart.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use persistence::{Change, Event, EventKind, Lsn, TombstoneReason};

use super::shard::Shard;
use super::{Location, Store};
use crate::cart::{image, Cart};

thread_local! {
    /// The last LSN this thread appended: a connection reads it after its batch to know which
    /// LSN its replies must wait for under `appendfsync always`.
    static APPENDED: Cell<Lsn> = const { Cell::new(0) };
}

/// The highest LSN appended by this thread since the last call, 0 if none; resets it.
pub fn take_appended_lsn() -> Lsn {
    APPENDED.replace(0)
}

/// An event with no details but its time.
pub fn bare_event(kind: EventKind) -> Event {
    event(kind, serde_json::json!({}))
}

/// An event whose details are a JSON object; its time (`at_ms`) is added, so PostgreSQL
/// records when it happened even when the sink catches up later.
pub fn event(kind: EventKind, mut detail: serde_json::Value) -> Event {
    detail["at_ms"] = crate::server::now_ms().into();
    Event {
        kind,
        detail: serde_json::to_vec(&detail)
            .expect("a JSON value always serializes")
            .into(),
    }
}

impl Store {
    /// Logs `cart` as it now is under `key`.
    pub(super) fn log_image(&self, key: &[u8], cart: &Cart, event: Event) {
        if let Some(wal) = self.wal.get() {
            let image = image::encode(cart, &self.names);
            let lsn = wal.append(key, cart.version, Change::Image(image.into()), event);
            APPENDED.set(lsn);
        }
    }

    /// Logs that the cart under `key` (last at `version`) is gone.
    pub(super) fn log_tombstone(
        &self,
        key: &[u8],
        version: u64,
        reason: TombstoneReason,
        event: Event,
    ) {
        if let Some(wal) = self.wal.get() {
            let lsn = wal.append(key, version, Change::Tombstone(reason), event);
            APPENDED.set(lsn);
        }
    }

    /// Logs the expiry of a cart the wheel or an access found past its deadline, and lets go
    /// of what its checkout held on gift cards.
    pub(super) fn log_expired(&self, key: &[u8], cart: &Cart) {
        self.stats.expired_carts.fetch_add(1, Ordering::Relaxed);
        self.release_holds(cart);
        let event = bare_event(EventKind::Abandon);
        self.log_tombstone(key, cart.version, TombstoneReason::Expired, event);
    }

    /// Gives back what the checkout of `cart`, now gone, held on gift cards.
    pub(super) fn release_holds(&self, cart: &Cart) {
        if let Some(checkout) = cart.checkout() {
            self.gift_cards.release(&checkout.token);
        }
    }

    /// Removes the cart under `key` if its deadline passed, logging the expiry.
    pub(super) fn reap(&self, shard: &mut Shard, at: Location, key: &[u8], now_ms: u64) {
        if let Some(cart) = shard.reap_if_expired(at.hash, key, now_ms) {
            self.log_expired(key, &cart);
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
        shard.remove(at.hash, key);
        self.log_expired(key, &cart);
        None
    }
}
