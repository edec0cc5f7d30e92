//! The store's side of snapshots and recovery: writing everything out (reference data, then
//! one shard at a time its carts and remembered tokens), and putting recovered state back
//! without logging it again.
//!
//! Replaying a record after a fuzzy snapshot: a cart whose last change (`Cart::lsn`) is at or
//! after the record already holds it, so the record is skipped; otherwise an image replaces
//! the cart and a tombstone removes it. Reference data records are whole states, applied in
//! order, each shared one (catalog, promotion) with its stamp. Each change's token is
//! remembered again. Once everything is loaded, the gift card holds of the carts frozen for
//! checkout are put back ([`Store::rebuild_gift_card_holds`]).

use std::path::Path;

use bytes::Bytes;
use persistence::snapshot::{Entry, EntryKind, EntryRef, SnapshotInfo, SnapshotWriter, SEED_BYTES};
use persistence::{Change, Lsn, Record, Space, State};
use tracing::warn;

use super::reference::{catalog_key, gift_card_image, CatalogImage};
use super::shard::Shard;
use super::tokens::{Remembered, TokenMemory};
use super::{seconds, Store};
use crate::cart::priced::CartPricing;
use crate::cart::{delta, image, packed, Cart};

/// A key as text for messages.
fn shown(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// Carts copied per shard-lock hold while snapshotting, so a snapshot never stalls a shard
/// for longer than it takes to copy a bounded number of packed carts.
const SNAPSHOT_CARTS_PER_LOCK_MAX: usize = 4096;

/// The key of a shard's token block: its index and the shard count, little-endian u32s.
fn block_key(index: usize, count: usize) -> [u8; 8] {
    let mut key = [0; 8];
    key[..4].copy_from_slice(&(index as u32).to_le_bytes());
    key[4..].copy_from_slice(&(count as u32).to_le_bytes());
    key
}

fn parse_block_key(key: &[u8]) -> Option<(usize, usize)> {
    let index = u32::from_le_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let count = u32::from_le_bytes(key.get(4..8)?.try_into().ok()?) as usize;
    Some((index, count))
}

/// A key-hash seed as the bytes a snapshot keeps.
pub fn seed_bytes(seed: [u64; 4]) -> [u8; SEED_BYTES] {
    let mut bytes = [0; SEED_BYTES];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(seed) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// The seed a snapshot kept.
pub fn seed_of(bytes: [u8; SEED_BYTES]) -> [u64; 4] {
    let mut seed = [0; 4];
    for (word, chunk) in seed.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    seed
}

impl Store {
    /// Writes a snapshot of everything into `dir` and returns it. The snapshot is fuzzy: it
    /// starts at the log's current LSN and then visits the registries and the shards one at a
    /// time, so an entry may be newer than that LSN; replaying the log after the LSN over it
    /// still ends exactly at the logged state (see the module notes).
    pub fn write_snapshot(&self, dir: &Path) -> std::io::Result<SnapshotInfo> {
        let lsn = self.wal().map_or(0, |wal| wal.last_lsn());
        let mut writer = SnapshotWriter::create(dir, lsn, seed_bytes(self.seed()))?;
        self.snapshot_reference(&mut writer)?;
        for (index, shard) in self.shards.iter().enumerate() {
            let tokens = shard.lock().tokens.encode();
            writer.push(EntryRef {
                kind: EntryKind::Block,
                key: &block_key(index, self.shards.len()),
                lsn: 0,
                body: &tokens,
            })?;
            self.walk_shard(index, |entry| {
                let cart = entry.cart();
                let image = image::encode(&cart, &self.names);
                writer.push(EntryRef {
                    kind: EntryKind::Cart,
                    key: entry.key(),
                    lsn: cart.lsn,
                    body: &image,
                })
            })?;
        }
        writer.finish()
    }

    /// Visits every cart of shard `index`: under the lock only the packed bytes of a batch
    /// are copied (tens of microseconds); `visit` decodes them after it, so a walk running
    /// through a flash sale delays no request by more than a copy. Stops at `visit`'s error.
    pub(super) fn walk_shard<E>(
        &self,
        index: usize,
        mut visit: impl FnMut(packed::PackedEntry<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut batch: Vec<u8> = Vec::new();
        let mut from = 0;
        loop {
            let next = {
                let shard = self.shards[index].lock();
                let mut next = None;
                let mut carts = 0;
                for (hash, bucket) in shard.packed_buckets_from(from) {
                    if carts >= SNAPSHOT_CARTS_PER_LOCK_MAX {
                        next = Some(hash);
                        break;
                    }
                    carts += packed::entries(bucket).count();
                    batch.extend_from_slice(bucket);
                }
                next
            };
            for entry in packed::entries(&batch) {
                visit(entry)?;
            }
            batch.clear();
            match next {
                Some(hash) => from = hash,
                None => return Ok(()),
            }
        }
    }

    /// The catalog entries, promotions and gift card balances, into a snapshot.
    fn snapshot_reference(&self, writer: &mut SnapshotWriter) -> std::io::Result<()> {
        let mut entries: Vec<(Space, Vec<u8>, Vec<u8>)> = Vec::new();
        self.catalog.for_each(|key, entry| {
            let image = postcard::to_allocvec(&CatalogImage::of(entry)).expect("into a Vec");
            entries.push((Space::Catalog, catalog_key(&self.names, key), image));
        });
        for (code, promo) in self.promotions.entries() {
            let image = promo.to_json().to_string().into_bytes();
            entries.push((Space::Promotion, code.as_bytes().to_vec(), image));
        }
        for (code, balance, currency, peer_holds) in self.gift_cards.balances() {
            let image = gift_card_image(balance, currency, &peer_holds);
            entries.push((Space::GiftCard, code.as_bytes().to_vec(), image));
        }
        for (key, image) in self.handoff_entries() {
            entries.push((Space::Handoff, key, image));
        }
        for (space, key, image) in &entries {
            writer.push(EntryRef {
                kind: EntryKind::Reference(*space),
                key,
                lsn: 0,
                body: image,
            })?;
        }
        // Standalone, snapshots stay as they were (no stamp entries): only a cluster shares.
        if self.shares_reference() {
            for (space, key, stamped) in self.stamps.all() {
                writer.push(EntryRef {
                    kind: EntryKind::Stamp(space),
                    key: &key,
                    lsn: 0,
                    body: &stamped.encode(),
                })?;
            }
        }
        Ok(())
    }

    /// Puts one snapshot entry in place. Nothing is logged: it is already durable.
    pub fn load_entry(&self, entry: Entry, now_ms: u64) -> Result<(), String> {
        match entry.kind {
            EntryKind::Cart => {
                let mut cart = image::decode(&entry.body, &self.names).map_err(|e| e.message)?;
                cart.lsn = entry.lsn;
                self.put_recovered(&entry.key, cart);
                Ok(())
            }
            EntryKind::Reference(space) => {
                self.load_reference(space, &entry.key, Some(&entry.body))
            }
            EntryKind::Block => self.load_tokens(&entry.key, &entry.body, now_ms),
            EntryKind::Stamp(space) => self.load_stamp(space, &entry.key, &entry.body),
        }
    }

    /// Takes back a shard's remembered tokens from a snapshot, each into the shard of its key,
    /// and the traces of its forgotten ones into that same shard (when the shard count is
    /// still the one the snapshot was written with: a trace carries no key to route it by).
    fn load_tokens(&self, key: &[u8], block: &[u8], now_ms: u64) -> Result<(), String> {
        let (tokens, forgotten) = TokenMemory::decode(block)?;
        let now_s = seconds(now_ms);
        for token in &tokens {
            self.shard_of_hash(token.key_hash)
                .tokens
                .remember(token, now_s);
        }
        match parse_block_key(key) {
            Some((index, count)) if count == self.shards.len() && index < count => {
                self.shards[index]
                    .lock()
                    .tokens
                    .restore_forgotten(&forgotten, now_s);
            }
            _ if forgotten.is_empty() => {}
            _ => warn!(
                traces = forgotten.len(),
                "the shard count changed since the snapshot: the traces of forgotten request \
                 tokens are dropped (their retries would be applied again)"
            ),
        }
        Ok(())
    }

    fn shard_of_hash(&self, hash: u64) -> parking_lot::MutexGuard<'_, Shard> {
        let index = if self.shard_shift == 63 {
            0
        } else {
            (hash >> self.shard_shift) as usize
        };
        self.shards[index.min(self.shards.len() - 1)].lock()
    }

    /// Applies one record of the primary's log (a replica), as a replayed record is applied;
    /// a delta whose base state is not here means this replica's data no longer follows the
    /// primary's log (only a snapshot mends it). Carts frozen for checkout are not noted:
    /// a replica keeps no gift card holds.
    pub fn apply_replicated(&self, record: &Record, now_ms: u64) -> Result<(), String> {
        self.apply_record(record, now_ms, false)?;
        self.frozen_at_recovery.lock().clear();
        let missing = std::mem::take(&mut *self.awaiting_base.lock());
        match missing.iter().next() {
            None => Ok(()),
            Some((key, lsn)) => Err(format!(
                "the record at LSN {lsn} changes cart {} from a state this replica does not hold",
                shown(key)
            )),
        }
    }

    /// Applies one replayed log record, all its changes. Returns the record's LSN. `lenient`
    /// (a repair): a delta whose base state is gone is skipped with a warning instead of
    /// stopping the start.
    pub fn apply_record(&self, record: &Record, now_ms: u64, lenient: bool) -> Result<Lsn, String> {
        for change in &record.changes {
            match change.space {
                Space::Cart => self.apply_cart_change(record.lsn, change, lenient)?,
                Space::Catalog | Space::Promotion => self.replay_shared(change)?,
                space => {
                    let image = match &change.state {
                        State::Image(image) => Some(&image[..]),
                        State::Tombstone(_) => None,
                        State::Delta { .. } => {
                            return Err(format!("a delta for a {}", space.as_str()))
                        }
                    };
                    self.load_reference(space, &change.key, image)?;
                }
            }
            self.remember_guard(change, now_ms);
        }
        Ok(record.lsn)
    }

    /// Applies one cart change of the record at `lsn` (see the module notes).
    fn apply_cart_change(&self, lsn: Lsn, change: &Change, lenient: bool) -> Result<(), String> {
        let key = &change.key;
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        let present_lsn = shard.lsn_of(at.hash, key);
        // A cart at this very LSN holds this record already (the snapshot) or an earlier
        // change of it: a transaction's record changes a cart several times, each a whole
        // image or tombstone, so those are applied again in order and end where the record
        // does. A delta at its own record's LSN is always covered.
        let covered = match &change.state {
            State::Delta { .. } => present_lsn.is_some_and(|present| present >= lsn),
            _ => present_lsn.is_some_and(|present| present > lsn),
        };
        if covered {
            return Ok(()); // The snapshot holds this change already.
        }
        match &change.state {
            State::Image(image) => {
                self.no_longer_awaiting(key);
                let mut cart = image::decode(image, &self.names).map_err(|e| e.message)?;
                cart.lsn = lsn;
                if cart.checkout().is_some() {
                    self.frozen_at_recovery.lock().push(key.clone());
                }
                shard.put(at.hash, key, &cart);
            }
            State::Tombstone(_) => {
                self.no_longer_awaiting(key);
                shard.discard(at.hash, key);
            }
            State::Delta { base_lsn, delta } => match present_lsn {
                Some(present) if present == *base_lsn => {
                    let mut cart = shard.find(at.hash, key).expect("the cart is present");
                    delta::apply(&mut cart, delta, change.version, &self.names)
                        .map_err(|error| format!("cart {}: {error}", shown(key)))?;
                    cart.lsn = lsn;
                    let frozen = cart.checkout().is_some();
                    shard.update(at.hash, key, &cart);
                    if frozen {
                        self.frozen_at_recovery.lock().push(key.clone());
                    }
                }
                Some(present) => {
                    let why = format!(
                        "cart {}: the record at LSN {lsn} changes its state of LSN {base_lsn}, \
                         but the cart is at LSN {present} (a record of it is missing)",
                        shown(key),
                    );
                    if !lenient {
                        return Err(why);
                    }
                    warn!("repair: {why}; the change is skipped");
                }
                None => {
                    // Deleted after this record, as the snapshot has it, or lost: a later
                    // record must tell (see `finish_replay`).
                    self.awaiting_base.lock().insert(key.clone(), lsn);
                }
            },
        }
        Ok(())
    }

    /// A cart written whole or deleted by the replay no longer waits for its base state.
    fn no_longer_awaiting(&self, key: &[u8]) {
        let mut awaiting = self.awaiting_base.lock();
        if !awaiting.is_empty() {
            awaiting.remove(key);
        }
    }

    /// After the replay: a cart a delta found absent that no later record deleted or wrote
    /// whole lost its state. An error, or with `lenient` (a repair) a warning per cart.
    pub fn finish_replay(&self, lenient: bool) -> Result<(), String> {
        let awaiting = std::mem::take(&mut *self.awaiting_base.lock());
        let Some((key, lsn)) = awaiting.iter().next() else {
            return Ok(());
        };
        let why = format!(
            "{} carts changed by deltas have no state to apply them to (cart {} at LSN {lsn}, \
             ...): records of them are missing",
            awaiting.len(),
            shown(key)
        );
        if !lenient {
            return Err(why);
        }
        warn!("repair: {why}; those carts stay as the snapshot and log left them");
        Ok(())
    }

    /// Remembers the token a replayed change carries, if its age has not run out.
    fn remember_guard(&self, change: &Change, now_ms: u64) {
        let Some(guard) = &change.guard else {
            return;
        };
        if guard.token.len() > protocol::TOKEN_BYTES_MAX {
            // Only a damaged or crafted log holds one (the server never logs such a token).
            warn!(
                key = %shown(&change.key),
                bytes = guard.token.len(),
                "a logged request token is longer than tokens may be; it is not remembered"
            );
            return;
        }
        let at = self.locate(&change.key);
        let remembered = Remembered {
            key_hash: at.hash,
            kind: guard.kind,
            token: guard.token[..].into(),
            fingerprint: guard.fingerprint,
            version: change.version,
            expires_s: seconds(change.at_ms.saturating_add(self.config.idempotency_ttl_ms)),
        };
        let mut shard = self.shards[at.shard].lock();
        shard.tokens.remember(&remembered, seconds(now_ms));
    }

    /// Puts a cart loaded from PostgreSQL in place unless one exists by now (restore-on-miss
    /// raced with a command that created it) or may not be made here now (its slot moving
    /// away: PostgreSQL's copy is older than the one MIGRATE sent), logging it so the local log has it from now on
    /// (without an event: nothing happened to the cart). Returns whether it was put.
    pub fn load_if_absent(&self, key: &[u8], image: &[u8], now_ms: u64) -> Result<bool, String> {
        let _shared = self.shared();
        let mut cart = image::decode(image, &self.names).map_err(|error| error.to_string())?;
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        if shard.contains(at.hash, key) || self.may_make(key).is_err() {
            return Ok(false);
        }
        self.log_cart(key, None, &mut cart, None, None, now_ms);
        shard.insert(at.hash, key, &cart);
        Ok(true)
    }

    /// Puts a cart from PostgreSQL in place, last changed by the record at `lsn`, replacing
    /// any cart under that key. Nothing is logged: it is already durable (the restore is
    /// followed by a snapshot).
    pub fn load_image_at(&self, key: &[u8], image: &[u8], lsn: Lsn) -> Result<(), String> {
        let mut cart = image::decode(image, &self.names).map_err(|error| error.to_string())?;
        cart.lsn = lsn;
        self.put_recovered(key, cart);
        Ok(())
    }

    /// Puts a recovered cart in place (replacing any under its key), noting a frozen one.
    pub fn put_recovered(&self, key: &[u8], cart: Cart) {
        if cart.checkout().is_some() {
            self.frozen_at_recovery
                .lock()
                .push(Bytes::copy_from_slice(key));
        }
        let at = self.locate(key);
        self.shards[at.shard].lock().put(at.hash, key, &cart);
    }

    /// After recovery: puts back the gift card holds of every cart still frozen for checkout,
    /// as its frozen pricing shows them. A hold that cannot be taken whole (its card gone or
    /// short) is reported; that checkout's COMPLETE will then be refused, changing nothing.
    /// Returns how many holds were put back.
    pub fn rebuild_gift_card_holds(&self, now_ms: u64) -> usize {
        let mut keys = std::mem::take(&mut *self.frozen_at_recovery.lock());
        keys.sort();
        keys.dedup();
        let mut restored = 0;
        for key in keys {
            let at = self.locate(&key);
            let Some(cart) = self.shards[at.shard].lock().find(at.hash, &key) else {
                continue;
            };
            let Some(checkout) = cart.frozen(now_ms) else {
                continue;
            };
            let pricing = CartPricing::decode(&checkout.pricing).unwrap_or_default();
            let paying = pricing.gift_cards.iter().filter(|card| card.applied > 0);
            // A card another node decides keeps its hold there, logged by that node.
            for card in paying.filter(|card| !self.decided_elsewhere(&card.code)) {
                let held = self.gift_cards.restore_hold(
                    &card.code,
                    &checkout.token,
                    card.applied,
                    checkout.hold_until_ms,
                    now_ms,
                );
                match held {
                    Ok(()) => restored += 1,
                    Err(why) => warn!(
                        cart = %String::from_utf8_lossy(&key),
                        %why,
                        "a checkout's gift card hold could not be put back; its CART.COMPLETE \
                         will be refused"
                    ),
                }
            }
        }
        restored
    }

    /// Empties the store (carts, tokens, reference data) before another recovery attempt.
    pub fn clear_for_recovery(&self, now_ms: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let keys: Vec<Box<[u8]>> = shard
                .buckets_from(0)
                .flat_map(|(_, entries)| entries.map(|entry| Box::from(entry.key())))
                .collect();
            for key in keys {
                let hash = self.locate(&key).hash;
                shard.remove(hash, &key);
            }
            let mut tokens = TokenMemory::new(self.config.token_bounds());
            tokens.seed(self.seed());
            shard.tokens = tokens;
        }
        let _ = now_ms;
        self.catalog.clear();
        self.promotions.clear();
        self.gift_cards.clear();
        self.stamps.clear();
        self.frozen_at_recovery.lock().clear();
        self.awaiting_base.lock().clear();
        *self.handoffs.lock() = super::handoff::Handoffs::default();
    }
}
