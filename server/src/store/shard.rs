//! One shard: its carts ordered by key hash (so SCAN can resume from a hash and never miss a
//! cart present for the whole scan), its timing wheel and its remembered request tokens. Everything here
//! runs under the shard's lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::index::HashIndex;
use super::tokens::{TokenBounds, TokenMemory};
use super::wheel::{deadline_tick, tick_of, Wheel};
use crate::cart::packed::{self, PackedEntry};
use crate::cart::{Cart, Names};

/// One shard's state.
#[derive(Debug)]
pub struct Shard {
    /// Packed carts (`cart::packed`) by key hash: one entry per bucket, more only when 63-bit
    /// key hashes collide.
    carts: HashIndex<Box<[u8]>>,
    /// Where a bucket is re-packed before it is copied into its exact-size allocation.
    scratch: Vec<u8>,
    /// Expiry wheel.
    pub wheel: Wheel,
    /// Remembered request tokens.
    pub tokens: TokenMemory,
    /// Carts in the whole store, shared by every shard (DBSIZE and `max_carts` read it).
    store_len: Arc<AtomicUsize>,
    /// The store's interner: carts read and written while it sweeps stamp their ids.
    names: Arc<Names>,
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
    /// An empty shard, whose key hashes vary in their low `hash_bits` bits.
    pub fn new(
        now_ms: u64,
        hash_bits: u32,
        tokens: TokenBounds,
        store_len: Arc<AtomicUsize>,
        names: Arc<Names>,
    ) -> Shard {
        Shard {
            carts: HashIndex::new(hash_bits),
            scratch: Vec::new(),
            wheel: Wheel::new(tick_of(now_ms)),
            tokens: TokenMemory::new(tokens),
            store_len,
            names,
        }
    }

    fn entry(&self, hash: u64, key: &[u8]) -> Option<PackedEntry<'_>> {
        let bucket = self.carts.get(hash)?;
        packed::find(bucket, key).map(|(_, entry)| entry)
    }

    /// A copy of the cart under `key`, expired or not. A change to it is kept only once
    /// [`Shard::update`] stores it back.
    pub fn find(&self, hash: u64, key: &[u8]) -> Option<Cart> {
        let cart = self.entry(hash, key).map(|entry| entry.cart())?;
        self.names.stamp_cart(&cart);
        Some(cart)
    }

    /// The bytes the packed entry under `key` takes (its key and length prefix included) and
    /// its deadline, read without decoding the cart.
    pub fn entry_size(&self, hash: u64, key: &[u8]) -> Option<(usize, u64)> {
        self.entry(hash, key)
            .map(|entry| (entry.len(), entry.deadline().0))
    }

    /// Whether a cart, expired or not, is stored under `key`.
    pub fn contains(&self, hash: u64, key: &[u8]) -> bool {
        self.entry(hash, key).is_some()
    }

    /// The deadline of the cart under `key`, expired or not, read without decoding it.
    pub fn expires_at_ms(&self, hash: u64, key: &[u8]) -> Option<u64> {
        self.entry(hash, key).map(|entry| entry.deadline().0)
    }

    /// Removes and returns the cart under `key` if its deadline has passed (the wheel may not
    /// have come round yet).
    pub fn reap_if_expired(&mut self, hash: u64, key: &[u8], now_ms: u64) -> Option<Cart> {
        let expired = self
            .expires_at_ms(hash, key)
            .is_some_and(|expires_at_ms| expires_at_ms <= now_ms);
        if expired {
            self.remove(hash, key)
        } else {
            None
        }
    }

    /// Inserts a new cart (none may exist under `key`) and arms its wheel entry.
    pub fn insert(&mut self, hash: u64, key: &[u8], cart: &Cart) {
        debug_assert!(!self.contains(hash, key));
        let wheel_tick = self.wheel.arm(hash, deadline_tick(cart.expires_at_ms));
        self.scratch.clear();
        if let Some(bucket) = self.carts.get(hash) {
            self.scratch.extend_from_slice(bucket);
        }
        packed::encode_entry(&mut self.scratch, key, cart, wheel_tick);
        self.names.stamp_cart(cart);
        self.carts.insert(hash, self.scratch[..].into());
        self.store_len.fetch_add(1, Ordering::Relaxed);
    }

    /// The LSN of the last change of the cart under `key`, read without decoding it.
    pub fn lsn_of(&self, hash: u64, key: &[u8]) -> Option<u64> {
        self.entry(hash, key).map(|entry| entry.lsn())
    }

    /// Stores `cart` under `key`, replacing any cart there, with a wheel entry for its
    /// deadline (a replaced cart's old entry stays and is skipped when it fires).
    pub fn put(&mut self, hash: u64, key: &[u8], cart: &Cart) {
        if !self.contains(hash, key) {
            self.insert(hash, key, cart);
            return;
        }
        let wheel_tick = self.wheel.arm(hash, deadline_tick(cart.expires_at_ms));
        self.names.stamp_cart(cart);
        self.repack(hash, key, |out, _| {
            packed::encode_entry(out, key, cart, wheel_tick);
        });
    }

    /// Removes the cart under `key` without decoding it; whether there was one.
    pub fn discard(&mut self, hash: u64, key: &[u8]) -> bool {
        let Some(bucket) = self.carts.get(hash) else {
            return false;
        };
        let Some((at, entry)) = packed::find(bucket, key) else {
            return false;
        };
        let end = at + entry.len();
        if at == 0 && end == bucket.len() {
            self.carts.remove(hash);
        } else {
            let rest = [&bucket[..at], &bucket[end..]].concat();
            self.carts.insert(hash, rest.into_boxed_slice());
        }
        self.store_len.fetch_sub(1, Ordering::Relaxed);
        self.names.cart_removed();
        true
    }

    /// Stores `cart` back under `key`, where it must exist. Its wheel entry is the shard's
    /// business: the stored tick is kept, whatever `cart.wheel_tick` says.
    pub fn update(&mut self, hash: u64, key: &[u8], cart: &Cart) {
        self.names.stamp_cart(cart);
        self.repack(hash, key, |out, entry| {
            packed::encode_entry(out, key, cart, entry.deadline().1);
        });
    }

    /// Re-packs the entry under `key` (which must exist) in its bucket with `write`, which
    /// appends the new entry given the old one.
    fn repack(&mut self, hash: u64, key: &[u8], write: impl FnOnce(&mut Vec<u8>, PackedEntry<'_>)) {
        let bucket = self.carts.get_mut(hash).expect("re-packed carts exist");
        let (at, entry) = packed::find(bucket, key).expect("re-packed carts exist");
        let end = at + entry.len();
        self.scratch.clear();
        self.scratch.extend_from_slice(&bucket[..at]);
        write(&mut self.scratch, entry);
        self.scratch.extend_from_slice(&bucket[end..]);
        if self.scratch.len() == bucket.len() {
            // Same size (a TTL renewal, most quantity changes): no allocation.
            bucket.copy_from_slice(&self.scratch);
        } else {
            *bucket = self.scratch[..].into();
        }
    }

    /// Removes and returns the cart under `key`. Its wheel entry stays and is skipped when it
    /// fires.
    pub fn remove(&mut self, hash: u64, key: &[u8]) -> Option<Cart> {
        let cart = self.find(hash, key)?;
        self.discard(hash, key);
        Some(cart)
    }

    /// Buckets with hash at or after `from`, in hash order, each with its entries.
    pub fn buckets_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = (u64, impl Iterator<Item = PackedEntry<'_>>)> {
        self.carts
            .range_from(from)
            .map(|(hash, bucket)| (hash, packed::entries(bucket)))
    }

    /// Buckets with hash at or after `from`, in hash order, as their packed bytes (for copying
    /// out under the lock and decoding after it).
    pub fn packed_buckets_from(&self, from: u64) -> impl Iterator<Item = (u64, &[u8])> {
        self.carts
            .range_from(from)
            .map(|(hash, bucket)| (hash, &bucket[..]))
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
        let Some(bucket) = self.carts.get(hash) else {
            return;
        };
        let mut expired_keys = Vec::new();
        let mut rearmed_keys = Vec::new();
        for entry in packed::entries(bucket) {
            let (expires_at_ms, wheel_tick) = entry.deadline();
            if wheel_tick != tick {
                continue;
            }
            if expires_at_ms <= now_ms {
                expired_keys.push(Box::<[u8]>::from(entry.key()));
            } else {
                let next = deadline_tick(expires_at_ms).max(tick + 1);
                rearmed_keys.push((Box::<[u8]>::from(entry.key()), next));
            }
        }
        for (key, next) in rearmed_keys {
            let wheel_tick = self.wheel.arm(hash, next);
            self.rearm(hash, &key, wheel_tick);
        }
        for key in expired_keys {
            if let Some(cart) = self.remove(hash, &key) {
                pass.expired += 1;
                on_expired(key, cart);
            }
        }
    }

    /// Stamps the cart under `key` with the tick of its new wheel entry.
    fn rearm(&mut self, hash: u64, key: &[u8], wheel_tick: u32) {
        self.repack(hash, key, |out, entry| {
            packed::encode_entry(out, key, &entry.cart(), wheel_tick);
        });
    }
}

#[cfg(test)]
mod tests {
    use protocol::Currency;

    use super::*;
    use crate::cart::CartKind;

    fn cart(version: u64, expires_at_ms: u64) -> Cart {
        let mut cart = Cart::new(CartKind::User, Currency(*b"USD"), 1_000);
        cart.version = version;
        cart.expires_at_ms = expires_at_ms;
        cart
    }

    /// Keys whose hashes collide share a bucket: each is found, changed, expired and removed
    /// on its own.
    #[test]
    fn colliding_keys_live_side_by_side() {
        let mut shard = Shard::new(
            1_000,
            63,
            TokenBounds {
                total: 16,
                per_cart: 16,
            },
            Arc::new(AtomicUsize::new(0)),
            Arc::default(),
        );
        shard.insert(7, b"a", &cart(1, 5_000));
        shard.insert(7, b"bb", &cart(2, 9_000));
        shard.insert(8, b"c", &cart(3, 5_000));
        assert_eq!(shard.store_len.load(Ordering::Relaxed), 3);
        assert_eq!(shard.find(7, b"bb").map(|cart| cart.version), Some(2));
        assert!(!shard.contains(7, b"c"));

        let mut changed = shard.find(7, b"a").expect("inserted");
        changed.version = 10;
        changed.wheel_tick = 0; // Ignored: the shard keeps the stored tick.
        shard.update(7, b"a", &changed);
        let stored = shard.find(7, b"a").expect("updated");
        assert_eq!(stored.version, 10);
        assert_eq!(stored.wheel_tick, 5);
        assert_eq!(shard.expires_at_ms(7, b"bb"), Some(9_000));

        let mut expired = Vec::new();
        let pass = shard.expire_due(6_000, 100, |key, cart| expired.push((key, cart.version)));
        assert_eq!(pass.expired, 2);
        expired.sort();
        assert_eq!(expired, [(b"a"[..].into(), 10), (b"c"[..].into(), 3)]);
        assert_eq!(shard.find(7, b"bb").map(|cart| cart.version), Some(2));
        assert_eq!(shard.remove(7, b"bb").map(|cart| cart.version), Some(2));
        assert_eq!(shard.store_len.load(Ordering::Relaxed), 0);
        assert_eq!(shard.buckets_from(0).count(), 0);
    }

    /// A cart whose deadline moved on is re-armed when its entry fires, not expired.
    #[test]
    fn a_renewed_cart_is_rearmed() {
        let mut shard = Shard::new(
            1_000,
            63,
            TokenBounds {
                total: 16,
                per_cart: 16,
            },
            Arc::new(AtomicUsize::new(0)),
            Arc::default(),
        );
        shard.insert(1, b"k", &cart(1, 3_000));
        let mut renewed = shard.find(1, b"k").expect("inserted");
        renewed.expires_at_ms = 20_000;
        shard.update(1, b"k", &renewed);
        let pass = shard.expire_due(4_000, 100, |_, _| panic!("not due"));
        assert_eq!(pass.expired, 0);
        assert_eq!(shard.find(1, b"k").map(|cart| cart.wheel_tick), Some(20));
        let pass = shard.expire_due(21_000, 100, |_, _| {});
        assert_eq!(pass.expired, 1);
    }
}
