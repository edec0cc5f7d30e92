//! Last-writer-wins stamps of the reference entries every primary of a cluster shares (catalog
//! entries and promotions; gift cards are decided by the node serving their code's slot and
//! are not stamped). Each entry, and each deleted entry for [`TOMBSTONE_TTL_MS`], has a
//! [`Stamp`]: when it was written and by which node. A node applies a peer's change only if its
//! stamp is newer, so nodes that receive the same changes in any order end with the same value.
//!
//! The table is split into [`STAMP_BUCKETS`] buckets by a hash of the entry that is the same
//! on every node; each bucket keeps the XOR of its entries' hashes (a digest that an insert or
//! a replacement updates in O(1)). Peers compare digests and pull only the buckets that differ.
//! A bucket's lock is held across the check, the registry change and the log append of a
//! write, so no write to an entry can slip between another's check and its apply. Lock order:
//! a stamp bucket, then the registry, then the log.

use parking_lot::{Mutex, MutexGuard};
use persistence::Space;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::limits::{REFERENCE_TOMBSTONES_MAX, TOMBSTONE_TTL_MS};

/// Buckets of the table, and digests a peer compares.
pub const STAMP_BUCKETS: usize = 256;

/// When an entry was written and by whom. Ordered by time, then by node, so two nodes writing
/// the same entry in the same millisecond agree on which write wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// Unix ms of the write; on one node strictly rising per entry.
    pub at_ms: u64,
    /// The writing node ([`origin_of`] its cluster id; 0 standalone or unknown).
    pub origin: u64,
}

/// An entry's stamp and whether the write deleted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    /// The last write.
    pub stamp: Stamp,
    /// That write was a DEL: the entry is a tombstone.
    pub gone: bool,
}

/// The origin number of node `node_id`: FNV-1a, the same on every node; never 0, and under
/// 2^63 so it travels as a RESP integer.
pub fn origin_of(node_id: &str) -> u64 {
    (fnv1a(&[node_id.as_bytes()]) >> 1) | 1
}

/// The bucket of an entry: the same on every node.
pub fn bucket_of(space: Space, key: &[u8]) -> usize {
    (fnv1a(&[&[space_code(space)], key]) % STAMP_BUCKETS as u64) as usize
}

/// A space as one byte on the wire and in stamp bodies.
pub fn space_code(space: Space) -> u8 {
    match space {
        Space::Cart => 0,
        Space::Catalog => 1,
        Space::Promotion => 2,
        Space::GiftCard => 3,
        Space::Handoff => 4,
    }
}

/// The space of a code from [`space_code`]; carts and gift cards are not shared.
pub fn shared_space(code: u8) -> Option<Space> {
    match code {
        1 => Some(Space::Catalog),
        2 => Some(Space::Promotion),
        _ => None,
    }
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn entry_hash(space: Space, key: &[u8], stamped: Stamped) -> u64 {
    fnv1a(&[
        &[space_code(space), u8::from(stamped.gone)],
        key,
        &stamped.stamp.at_ms.to_le_bytes(),
        &stamped.stamp.origin.to_le_bytes(),
    ])
}

impl Stamped {
    /// The body of its snapshot entry: `at_ms u64 LE | origin u64 LE | gone u8`.
    pub fn encode(&self) -> [u8; 17] {
        let mut body = [0; 17];
        body[..8].copy_from_slice(&self.stamp.at_ms.to_le_bytes());
        body[8..16].copy_from_slice(&self.stamp.origin.to_le_bytes());
        body[16] = u8::from(self.gone);
        body
    }

    /// Reads a body [`Stamped::encode`] wrote.
    pub fn decode(body: &[u8]) -> Result<Stamped, String> {
        let body: &[u8; 17] = body
            .try_into()
            .map_err(|_| format!("a stamp of {} bytes, not 17", body.len()))?;
        let word = |range: std::ops::Range<usize>| {
            u64::from_le_bytes(body[range].try_into().expect("8 bytes"))
        };
        Ok(Stamped {
            stamp: Stamp {
                at_ms: word(0..8),
                origin: word(8..16),
            },
            gone: body[16] != 0,
        })
    }
}

type EntryId = (Space, Box<[u8]>);

/// A shared entry's space, key and last write.
pub type StampedEntry = (Space, Box<[u8]>, Stamped);

#[derive(Debug, Default)]
struct Bucket {
    entries: HashMap<EntryId, Stamped>,
    /// XOR of `entry_hash` over `entries`.
    digest: u64,
}

/// The stamps of every shared entry and tombstone.
#[derive(Debug)]
pub struct Stamps {
    buckets: Box<[Mutex<Bucket>]>,
    tombstones: AtomicUsize,
}

impl Default for Stamps {
    fn default() -> Stamps {
        Stamps {
            buckets: (0..STAMP_BUCKETS).map(|_| Mutex::default()).collect(),
            tombstones: AtomicUsize::new(0),
        }
    }
}

/// One entry's stamp, its bucket locked while the guard lives.
pub struct StampGuard<'a> {
    bucket: MutexGuard<'a, Bucket>,
    tombstones: &'a AtomicUsize,
    id: EntryId,
}

impl StampGuard<'_> {
    /// The entry's last write, if it has one.
    pub fn current(&self) -> Option<Stamped> {
        self.bucket.entries.get(&self.id).copied()
    }

    /// The stamp of a write made here now: `now_ms`, or just after the last write if that
    /// is not older (a peer's clock ahead of ours), so a local write always wins over what
    /// this node holds.
    pub fn next(&self, now_ms: u64, origin: u64) -> Stamp {
        let at_ms = match self.current() {
            Some(last) => now_ms.max(last.stamp.at_ms + 1),
            None => now_ms,
        };
        Stamp { at_ms, origin }
    }

    /// Records the entry's new last write.
    pub fn set(&mut self, stamped: Stamped) {
        let hash = entry_hash(self.id.0, &self.id.1, stamped);
        let old = self.bucket.entries.insert(self.id.clone(), stamped);
        let bucket = &mut *self.bucket;
        bucket.digest ^= hash;
        if let Some(old) = old {
            bucket.digest ^= entry_hash(self.id.0, &self.id.1, old);
            if old.gone {
                self.tombstones.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if stamped.gone {
            self.tombstones.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Stamps {
    /// Locks the bucket of one entry.
    pub fn lock(&self, space: Space, key: &[u8]) -> StampGuard<'_> {
        StampGuard {
            bucket: self.buckets[bucket_of(space, key)].lock(),
            tombstones: &self.tombstones,
            id: (space, key.into()),
        }
    }

    /// Every bucket's digest, in bucket order.
    pub fn digests(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|bucket| bucket.lock().digest)
            .collect()
    }

    /// The entries of one bucket with their stamps (`None` past the last bucket).
    pub fn bucket(&self, index: usize) -> Option<Vec<StampedEntry>> {
        let bucket = self.buckets.get(index)?.lock();
        let entries = bucket.entries.iter();
        Some(
            entries
                .map(|((space, key), stamped)| (*space, key.clone(), *stamped))
                .collect(),
        )
    }

    /// Every stamp, for a snapshot (a bucket at a time).
    pub fn all(&self) -> Vec<StampedEntry> {
        (0..STAMP_BUCKETS)
            .flat_map(|index| self.bucket(index).expect("a bucket index"))
            .collect()
    }

    /// How many stamps there are, and how many of them are tombstones.
    pub fn counts(&self) -> (usize, usize) {
        let stamps = self
            .buckets
            .iter()
            .map(|bucket| bucket.lock().entries.len());
        (stamps.sum(), self.tombstones.load(Ordering::Relaxed))
    }

    /// Forgets tombstones older than [`TOMBSTONE_TTL_MS`] (every node does so at about the
    /// same time, as the age is the stamp's), and the oldest beyond
    /// [`REFERENCE_TOMBSTONES_MAX`]. Returns how many went.
    pub fn purge(&self, now_ms: u64) -> usize {
        let mut oldest_kept = now_ms.saturating_sub(TOMBSTONE_TTL_MS);
        let over = self
            .tombstones
            .load(Ordering::Relaxed)
            .saturating_sub(REFERENCE_TOMBSTONES_MAX);
        if over > 0 {
            let mut ages: Vec<u64> = self
                .all()
                .into_iter()
                .filter(|(_, _, stamped)| stamped.gone)
                .map(|(_, _, stamped)| stamped.stamp.at_ms)
                .collect();
            ages.sort_unstable();
            let dropped = over.min(ages.len());
            if dropped > 0 {
                oldest_kept = oldest_kept.max(ages[dropped - 1] + 1);
            }
        }
        let mut purged = 0;
        for bucket in self.buckets.iter() {
            let mut bucket = bucket.lock();
            let Bucket { entries, digest } = &mut *bucket;
            entries.retain(|(space, key), stamped| {
                let keep = !stamped.gone || stamped.stamp.at_ms >= oldest_kept;
                if !keep {
                    *digest ^= entry_hash(*space, key, *stamped);
                    purged += 1;
                }
                keep
            });
        }
        self.tombstones.fetch_sub(purged, Ordering::Relaxed);
        purged
    }

    /// Forgets every stamp (before another recovery attempt).
    pub fn clear(&self) {
        for bucket in self.buckets.iter() {
            *bucket.lock() = Bucket::default();
        }
        self.tombstones.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(at_ms: u64, origin: u64, gone: bool) -> Stamped {
        Stamped {
            stamp: Stamp { at_ms, origin },
            gone,
        }
    }

    /// Two tables given the same last writes in different orders have the same digests.
    #[test]
    fn digests_depend_on_the_last_writes_only() {
        let (one, two) = (Stamps::default(), Stamps::default());
        one.lock(Space::Catalog, b"a").set(stamped(1, 7, false));
        one.lock(Space::Catalog, b"a").set(stamped(5, 7, true));
        one.lock(Space::Promotion, b"a").set(stamped(2, 9, false));
        two.lock(Space::Promotion, b"a").set(stamped(2, 9, false));
        two.lock(Space::Catalog, b"a").set(stamped(5, 7, true));
        assert_eq!(one.digests(), two.digests());
        assert_eq!(one.counts(), (2, 1));
        two.lock(Space::Catalog, b"a").set(stamped(6, 7, false));
        assert_ne!(one.digests(), two.digests());
        assert_eq!(two.counts(), (2, 0));
    }

    /// A local write after a peer's from the future still gets the later stamp.
    #[test]
    fn a_local_write_follows_the_last_one() {
        let stamps = Stamps::default();
        let mut guard = stamps.lock(Space::Catalog, b"a");
        assert_eq!(guard.next(100, 3).at_ms, 100);
        guard.set(stamped(500, 9, false));
        assert_eq!(
            guard.next(100, 3),
            Stamp {
                at_ms: 501,
                origin: 3
            }
        );
        assert!(stamped(501, 3, false).stamp > stamped(500, 9, false).stamp);
        assert!(stamped(500, 9, false).stamp > stamped(500, 3, false).stamp);
    }

    /// Tombstones go once old; live entries stay whatever their age.
    #[test]
    fn old_tombstones_are_purged() {
        let stamps = Stamps::default();
        stamps
            .lock(Space::Catalog, b"gone")
            .set(stamped(1, 1, true));
        stamps
            .lock(Space::Catalog, b"kept")
            .set(stamped(1, 1, false));
        stamps
            .lock(Space::Catalog, b"new")
            .set(stamped(TOMBSTONE_TTL_MS, 1, true));
        assert_eq!(stamps.purge(TOMBSTONE_TTL_MS + 10), 1);
        assert_eq!(stamps.counts(), (2, 1));
        let body = stamped(3, 4, true).encode();
        assert_eq!(Stamped::decode(&body), Ok(stamped(3, 4, true)));
    }
}
