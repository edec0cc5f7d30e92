//! The store's side of snapshots and recovery: writing every cart out one shard at a time, and
//! putting recovered carts back without logging them again.

use std::path::Path;

use persistence::snapshot::{SnapshotInfo, SnapshotWriter};
use persistence::{Change, Lsn, Record};

use super::Store;
use crate::cart::{image, packed, Cart};

/// Carts copied per shard-lock hold while snapshotting, so a snapshot never stalls a shard
/// for longer than it takes to copy a bounded number of packed carts.
const SNAPSHOT_CARTS_PER_LOCK_MAX: usize = 4096;

impl Store {
    /// Writes a snapshot of every cart into `dir` and returns it. The snapshot is fuzzy: it
    /// starts at the log's current LSN and then visits the shards one at a time, so a cart may
    /// be newer than that LSN; replaying the log after the LSN over it still ends exactly at
    /// the logged state, because every later change of a cart is replayed in order.
    pub fn write_snapshot(&self, dir: &Path) -> std::io::Result<SnapshotInfo> {
        let lsn = self.wal().map_or(0, |wal| wal.last_lsn());
        let mut writer = SnapshotWriter::create(dir, lsn)?;
        // Under the lock only the packed bytes are copied (tens of microseconds per batch);
        // decoding and encoding the images happens after it, so a snapshot running through a
        // flash sale delays no request by more than a copy.
        let mut batch: Vec<u8> = Vec::new();
        for shard in self.shards.iter() {
            let mut from = 0;
            loop {
                let next = {
                    let shard = shard.lock();
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
                    let image = image::encode(&entry.cart(), &self.names);
                    writer.push(entry.key(), &image)?;
                }
                batch.clear();
                match next {
                    Some(hash) => from = hash,
                    None => break,
                }
            }
        }
        writer.finish()
    }

    /// Puts a cart from a snapshot or from PostgreSQL in place, replacing any cart under that
    /// key. Nothing is logged: it is already durable.
    pub fn load_image(&self, key: &[u8], image: &[u8]) -> Result<(), String> {
        let cart = image::decode(image, &self.names).map_err(|error| error.to_string())?;
        self.put_recovered(key, cart);
        Ok(())
    }

    /// Applies one replayed log record: its after-image replaces the cart, its tombstone
    /// removes it. Returns the record's LSN.
    pub fn apply_record(&self, record: &Record) -> Result<Lsn, String> {
        match &record.change {
            Change::Image(image) => self.load_image(&record.key, image)?,
            Change::Tombstone(_) => {
                let at = self.locate(&record.key);
                self.shards[at.shard].lock().remove(at.hash, &record.key);
            }
        }
        Ok(record.lsn)
    }

    /// Puts a cart loaded from PostgreSQL in place unless one exists by now (restore-on-miss
    /// raced with a command that created it). Returns whether it was put.
    pub fn load_if_absent(&self, key: &[u8], image: &[u8]) -> Result<bool, String> {
        let cart = image::decode(image, &self.names).map_err(|error| error.to_string())?;
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        if shard.contains(at.hash, key) {
            return Ok(false);
        }
        shard.insert(at.hash, key, &cart);
        Ok(true)
    }

    fn put_recovered(&self, key: &[u8], cart: Cart) {
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        shard.remove(at.hash, key);
        shard.insert(at.hash, key, &cart);
    }
}
