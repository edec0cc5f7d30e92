//! One shard: its carts ordered by key hash (so SCAN can resume from a hash and never miss a
//! cart present for the whole scan), its timing wheel and its idempotency log. Everything here
//! runs under the shard's lock.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::idempotency::IdempotencyLog;
use super::wheel::{deadline_tick, tick_of, Wheel};
use crate::cart::Cart;

/// A cart and its key. Carts whose 63-bit key hashes collide share one bucket.
#[derive(Debug)]
pub struct Entry {
    /// The cart's key.
    pub key: Box<[u8]>,
    /// The cart.
    pub cart: Cart,
}

/// One shard's state.
#[derive(Debug)]
pub struct Shard {
    carts: BTreeMap<u64, Box<[Entry]>>,
    /// Expiry wheel.
    pub wheel: Wheel,
    /// Remembered idempotent replies.
    pub idempotency: IdempotencyLog,
    /// Carts in the whole store, shared by every shard (DBSIZE and `max_carts` read it).
    store_len: Arc<AtomicUsize>,
}

/// What one expiry pass did.
#[derive(Debug, Default)]
pub struct ExpirePass {
    /// Carts expired.
    pub expired: usize,
    /// Whether due entries remain (the budget ran out).
    pub more: bool,
}

impl Shard {
    /// An empty shard.
    pub fn new(now_ms: u64, idempotency_max: usize, store_len: Arc<AtomicUsize>) -> Shard {
        Shard {
            carts: BTreeMap::new(),
            wheel: Wheel::new(tick_of(now_ms)),
            idempotency: IdempotencyLog::new(idempotency_max),
            store_len,
        }
    }

    /// The cart under `key`, expired or not.
    pub fn find(&self, hash: u64, key: &[u8]) -> Option<&Cart> {
        self.carts
            .get(&hash)?
            .iter()
            .find(|entry| &*entry.key == key)
            .map(|entry| &entry.cart)
    }

    /// The cart under `key`, expired or not, for change.
    pub fn find_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut Cart> {
        self.carts
            .get_mut(&hash)?
            .iter_mut()
            .find(|entry| &*entry.key == key)
            .map(|entry| &mut entry.cart)
    }

    /// Removes and returns the cart under `key` if its deadline has passed (the wheel may not
    /// have come round yet).
    pub fn reap_if_expired(&mut self, hash: u64, key: &[u8], now_ms: u64) -> Option<Cart> {
        let expired = self
            .find(hash, key)
            .is_some_and(|cart| cart.expires_at_ms <= now_ms);
        if expired {
            self.remove(hash, key)
        } else {
            None
        }
    }

    /// Inserts a new cart (none may exist under `key`) and arms its wheel entry.
    pub fn insert(&mut self, hash: u64, key: &[u8], mut cart: Cart) {
        debug_assert!(self.find(hash, key).is_none());
        cart.wheel_tick = self.wheel.arm(hash, deadline_tick(cart.expires_at_ms));
        let entry = Entry {
            key: key.into(),
            cart,
        };
        match self.carts.remove(&hash) {
            None => {
                self.carts.insert(hash, Box::new([entry]));
            }
            Some(bucket) => {
                let mut entries = bucket.into_vec();
                entries.push(entry);
                self.carts.insert(hash, entries.into_boxed_slice());
            }
        }
        self.store_len.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes and returns the cart under `key`. Its wheel entry stays and is skipped when it
    /// fires.
    pub fn remove(&mut self, hash: u64, key: &[u8]) -> Option<Cart> {
        let bucket = self.carts.get(&hash)?;
        let index = bucket.iter().position(|entry| &*entry.key == key)?;
        let mut entries = self.carts.remove(&hash).expect("bucket exists").into_vec();
        let entry = entries.swap_remove(index);
        if !entries.is_empty() {
            self.carts.insert(hash, entries.into_boxed_slice());
        }
        self.store_len.fetch_sub(1, Ordering::Relaxed);
        Some(entry.cart)
    }

    /// Buckets with hash at or after `from`, in hash order.
    pub fn buckets_from(&self, from: u64) -> impl Iterator<Item = (u64, &[Entry])> {
        self.carts
            .range((Bound::Included(from), Bound::Unbounded))
            .map(|(hash, bucket)| (*hash, &bucket[..]))
    }

    /// Processes due wheel entries up to `now_ms`, looking at no more than `budget` of them:
    /// expired carts are removed and passed to `on_expired`, the others re-armed.
    pub fn expire_due(
        &mut self,
        now_ms: u64,
        budget: usize,
        mut on_expired: impl FnMut(Box<[u8]>, Cart),
    ) -> ExpirePass {
        let now_tick = tick_of(now_ms);
        let mut pass = ExpirePass::default();
        let mut looked_at = 0;
        while let Some(tick) = self.wheel.next_due(now_tick) {
            if looked_at >= budget {
                pass.more = true;
                break;
            }
            let (hashes, _finished) = self.wheel.take_due(tick, budget - looked_at);
            looked_at += hashes.len();
            for hash in hashes {
                self.fire(hash, tick, now_ms, &mut pass, &mut on_expired);
            }
        }
        pass
    }

    fn fire(
        &mut self,
        hash: u64,
        tick: u32,
        now_ms: u64,
        pass: &mut ExpirePass,
        on_expired: &mut impl FnMut(Box<[u8]>, Cart),
    ) {
        let Some(bucket) = self.carts.get_mut(&hash) else {
            return;
        };
        let mut expired_keys = Vec::new();
        for entry in bucket
            .iter_mut()
            .filter(|entry| entry.cart.wheel_tick == tick)
        {
            if entry.cart.expires_at_ms <= now_ms {
                expired_keys.push(entry.key.clone());
            } else {
                let next = deadline_tick(entry.cart.expires_at_ms).max(tick + 1);
                entry.cart.wheel_tick = self.wheel.arm(hash, next);
            }
        }
        for key in expired_keys {
            if let Some(cart) = self.remove(hash, &key) {
                pass.expired += 1;
                on_expired(key, cart);
            }
        }
    }
}
