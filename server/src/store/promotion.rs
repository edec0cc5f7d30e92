//! What a replica's store needs to become a primary's (docs/CLUSTER.md "Failover"): writes
//! allowed again, every cart's deadline one touch step later (a replica's deadlines may lag
//! its old primary's by up to one step, and a promoted replica must not expire carts early),
//! the gift card holds of carts frozen for checkout rebuilt, and the carts PostgreSQL holds at
//! a newer position than this node (the replication lag window) taken back.

use super::{touch_step_ms, Store};
use crate::cart::image;

/// Carts re-read per shard lock while deadlines are moved.
const CARTS_PER_LOCK: usize = 256;

/// What a promotion did to the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Promoted {
    /// Carts whose deadline moved one touch step on.
    pub deadlines_moved: usize,
    /// Gift card holds rebuilt for carts frozen for checkout.
    pub holds: usize,
}

impl Store {
    /// Lets this store take writes again (a promoted replica's).
    pub fn set_writable(&self) {
        self.read_only
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Moves every cart's deadline one touch step on and rebuilds the gift card holds of the
    /// carts frozen for checkout. Runs before the promoted node takes writes; each shard lock
    /// is held for [`CARTS_PER_LOCK`] carts at most.
    pub fn prepare_promotion(&self, now_ms: u64) -> Promoted {
        let mut promoted = Promoted::default();
        for index in 0..self.shards.len() {
            let mut keys: Vec<Vec<u8>> = Vec::new();
            let walked: Result<(), ()> = self.walk_shard(index, |entry| {
                keys.push(entry.key().to_vec());
                Ok(())
            });
            walked.expect("the visit never fails");
            for chunk in keys.chunks(CARTS_PER_LOCK) {
                let mut shard = self.shards[index].lock();
                for key in chunk {
                    let at = self.locate(key);
                    let Some(mut cart) = shard.find(at.hash, key) else {
                        continue;
                    };
                    if cart.checkout().is_some() {
                        self.frozen_at_recovery
                            .lock()
                            .push(bytes::Bytes::copy_from_slice(key));
                    }
                    if cart.expires_at_ms == u64::MAX {
                        continue;
                    }
                    let step = touch_step_ms(self.ttl_ms(cart.kind));
                    cart.expires_at_ms = cart.expires_at_ms.saturating_add(step);
                    shard.update(at.hash, key, &cart);
                    promoted.deadlines_moved += 1;
                }
            }
        }
        promoted.holds = self.rebuild_gift_card_holds(now_ms);
        promoted
    }

    /// Puts the cart `image` under `key` in place of whatever this node holds (a cart of the
    /// lag window, from PostgreSQL), logged whole so this node's replicas, its log and its
    /// sink have it too.
    pub fn reload_cart(&self, key: &[u8], image: &[u8], now_ms: u64) -> Result<(), String> {
        let _shared = self.shared();
        let mut cart = image::decode(image, &self.names).map_err(|error| error.message)?;
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        self.log_cart(key, None, &mut cart, None, None, now_ms);
        shard.put(at.hash, key, &cart);
        Ok(())
    }
}

impl Store {
    /// Logs the cart under `key` again, whole, as it is here (PostgreSQL may lack the record
    /// that made it: one its sink is not to stream); false when there is none.
    pub fn relog_cart(&self, key: &[u8], now_ms: u64) -> bool {
        let _shared = self.shared();
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        let Some(mut cart) = shard.find(at.hash, key) else {
            return false;
        };
        self.log_cart(key, None, &mut cart, None, None, now_ms);
        shard.update(at.hash, key, &cart);
        true
    }
}

impl Store {
    /// The live cart under `key` as MIGRATE sends it: its image and version.
    pub fn export_cart(&self, key: &[u8], now_ms: u64) -> Option<(Vec<u8>, u64)> {
        let at = self.locate(key);
        let shard = self.shards[at.shard].lock();
        let cart = shard.find(at.hash, key)?;
        if cart.expires_at_ms <= now_ms {
            return None;
        }
        Some((image::encode(&cart, &self.names), cart.version))
    }

    /// A digest of the live cart under `key` (DEBUG DIGEST-VALUE): 20 bytes of a SHA-256 of
    /// its image with the deadline left out (two copies of one cart differ in nothing else).
    pub fn digest_value(&self, key: &[u8], now_ms: u64) -> Option<[u8; 20]> {
        use sha2::Digest;
        let at = self.locate(key);
        let shard = self.shards[at.shard].lock();
        let mut cart = shard.find(at.hash, key)?;
        drop(shard);
        if cart.expires_at_ms <= now_ms {
            return None;
        }
        cart.expires_at_ms = 0;
        let hash = sha2::Sha256::digest(image::encode(&cart, &self.names));
        let mut digest = [0u8; 20];
        digest.copy_from_slice(&hash[..20]);
        Some(digest)
    }

    /// Takes the cart `image` under `key` from another node (CART.IMPORT), logged whole;
    /// `Ok(false)` when a live cart is here already and `replace` is not asked.
    pub fn import_cart(
        &self,
        key: &[u8],
        image: &[u8],
        replace: bool,
        now_ms: u64,
    ) -> Result<bool, String> {
        let _shared = self.shared();
        let mut cart = image::decode(image, &self.names).map_err(|error| error.message)?;
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        self.reap(&mut shard, at, key, now_ms);
        if !replace && shard.contains(at.hash, key) {
            return Ok(false);
        }
        if cart.checkout().is_some() {
            self.frozen_at_recovery
                .lock()
                .push(bytes::Bytes::copy_from_slice(key));
        }
        self.log_cart(key, None, &mut cart, None, None, now_ms);
        shard.put(at.hash, key, &cart);
        Ok(true)
    }

    /// Removes the cart under `key` once it is on another node (MIGRATE), if it is still at
    /// `version` (a write since it was sent means it must be sent again), never while an EXEC
    /// runs (which checked its carts were here); logged as moved,
    /// so the sink leaves its row to the node that has it now.
    pub fn remove_moved(&self, key: &[u8], version: u64, to: &str, now_ms: u64) -> bool {
        // Not while an EXEC runs: it checked its carts were here before it ran.
        let _shared = self.shared();
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        let frozen_token = match shard.find(at.hash, key) {
            Some(cart) if cart.version == version => {
                cart.frozen(now_ms).map(|checkout| checkout.token.clone())
            }
            _ => return false,
        };
        shard.remove(at.hash, key);
        if let Some(token) = frozen_token {
            self.hand_holds_to_peer(&token, now_ms);
        }
        let event = super::log::event(
            persistence::EventKind::Delete,
            serde_json::json!({ "moved_to": to }),
        );
        self.log_gone(
            key,
            version,
            persistence::TombstoneReason::Moved,
            &event,
            now_ms,
        );
        true
    }
}
