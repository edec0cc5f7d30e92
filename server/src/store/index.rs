//! A shard's index of carts by key hash: a directory of small buckets, each sorted by hash,
//! where bucket `i` holds the hashes whose top bits (below the shard's) are `i`. Lookups read
//! one directory slot and one short sorted run (one or two cache misses, where a B-tree of a
//! million carts took four or five), and iterating the buckets in order visits hashes in
//! ascending order, so SCAN resumes from a hash exactly as it did over the B-tree.
//!
//! The directory doubles when buckets hold `LOAD_MAX` entries on average: bucket `i` splits
//! into `2i` and `2i + 1` by the next bit, which keeps the order. It halves, merging pairs,
//! when they hold a sixteenth of that. A doubling moves every entry of the shard under its
//! lock (pointers only, no key hashed again): a pause proportional to the shard's size, once
//! per power of two it grows through.

/// Entries per bucket, on average, at which the directory doubles.
const LOAD_MAX: usize = 8;
/// The directory never shrinks below this many buckets.
const BUCKETS_MIN_BITS: u32 = 4;

/// The index: values by 63-bit hash, ordered by hash.
#[derive(Debug)]
pub struct HashIndex<V> {
    buckets: Vec<Vec<(u64, V)>>,
    /// log2 of the number of buckets.
    bits: u32,
    /// Shifts the bits that vary within the shard to the top of a `u64`.
    varying_shift: u32,
    len: usize,
}

impl<V> HashIndex<V> {
    /// An empty index for hashes that vary only in their low `varying_bits` bits (the bits
    /// above select the shard).
    pub fn new(varying_bits: u32) -> HashIndex<V> {
        assert!((BUCKETS_MIN_BITS..=64).contains(&varying_bits));
        HashIndex {
            buckets: (0..1usize << BUCKETS_MIN_BITS)
                .map(|_| Vec::new())
                .collect(),
            bits: BUCKETS_MIN_BITS,
            varying_shift: 64 - varying_bits,
            len: 0,
        }
    }

    /// Entries held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    fn slot(&self, hash: u64) -> usize {
        ((hash << self.varying_shift) >> (64 - self.bits)) as usize
    }

    /// The value under `hash`.
    pub fn get(&self, hash: u64) -> Option<&V> {
        let bucket = &self.buckets[self.slot(hash)];
        let at = bucket.binary_search_by_key(&hash, |entry| entry.0).ok()?;
        Some(&bucket[at].1)
    }

    /// The value under `hash`, for change.
    pub fn get_mut(&mut self, hash: u64) -> Option<&mut V> {
        let slot = self.slot(hash);
        let bucket = &mut self.buckets[slot];
        let at = bucket.binary_search_by_key(&hash, |entry| entry.0).ok()?;
        Some(&mut bucket[at].1)
    }

    /// Puts `value` under `hash`; returns the value it replaced.
    pub fn insert(&mut self, hash: u64, value: V) -> Option<V> {
        let slot = self.slot(hash);
        let bucket = &mut self.buckets[slot];
        match bucket.binary_search_by_key(&hash, |entry| entry.0) {
            Ok(at) => Some(std::mem::replace(&mut bucket[at].1, value)),
            Err(at) => {
                bucket.insert(at, (hash, value));
                self.len += 1;
                if self.len > self.buckets.len() * LOAD_MAX {
                    self.grow();
                }
                None
            }
        }
    }

    /// Takes the value under `hash` out.
    pub fn remove(&mut self, hash: u64) -> Option<V> {
        let slot = self.slot(hash);
        let bucket = &mut self.buckets[slot];
        let at = bucket.binary_search_by_key(&hash, |entry| entry.0).ok()?;
        let (_, value) = bucket.remove(at);
        if bucket.is_empty() {
            *bucket = Vec::new();
        }
        self.len -= 1;
        if self.bits > BUCKETS_MIN_BITS && self.len * 16 < self.buckets.len() * LOAD_MAX {
            self.shrink();
        }
        Some(value)
    }

    /// Entries with hash at or after `from`, in hash order.
    pub fn range_from(&self, from: u64) -> impl Iterator<Item = (u64, &V)> {
        let first = self.slot(from);
        self.buckets[first..]
            .iter()
            .flat_map(|bucket| bucket.iter())
            .skip_while(move |entry| entry.0 < from)
            .map(|(hash, value)| (*hash, value))
    }

    /// Entries in hash order within `(from, to)` bounds; for tests against a `BTreeMap`.
    #[cfg(test)]
    fn range(&self, from: std::ops::Bound<u64>, to: std::ops::Bound<u64>) -> Vec<u64> {
        use std::ops::Bound;
        let start = match from {
            Bound::Included(from) => from,
            Bound::Excluded(from) => from.saturating_add(1),
            Bound::Unbounded => 0,
        };
        self.range_from(start)
            .map(|(hash, _)| hash)
            .filter(|hash| match to {
                Bound::Included(to) => *hash <= to,
                Bound::Excluded(to) => *hash < to,
                Bound::Unbounded => true,
            })
            .collect()
    }

    /// Doubles the directory: bucket `i` becomes `2i` (next bit clear) and `2i + 1` (set).
    fn grow(&mut self) {
        self.bits += 1;
        let next_bit_shift = 64 - self.bits;
        let old = std::mem::take(&mut self.buckets);
        let mut buckets = Vec::with_capacity(old.len() * 2);
        for mut low in old {
            let varying_shift = self.varying_shift;
            let split = low
                .partition_point(|entry| ((entry.0 << varying_shift) >> next_bit_shift) & 1 == 0);
            let high = low.split_off(split);
            low.shrink_to_fit();
            buckets.push(low);
            buckets.push(high);
        }
        self.buckets = buckets;
    }

    /// Halves the directory: buckets `2i` and `2i + 1` become `i`.
    fn shrink(&mut self) {
        self.bits -= 1;
        let old = std::mem::take(&mut self.buckets);
        let mut buckets = Vec::with_capacity(old.len() / 2);
        let mut pairs = old.into_iter();
        while let (Some(mut low), Some(high)) = (pairs.next(), pairs.next()) {
            low.extend(high);
            buckets.push(low);
        }
        self.buckets = buckets;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use std::ops::Bound;

    use proptest::prelude::*;

    use super::*;

    /// Hashes as a shard of 64 sees them: 57 varying bits under a fixed shard prefix.
    const VARYING_BITS: u32 = 57;
    const SHARD_PREFIX: u64 = 5 << VARYING_BITS;

    fn hash(low: u64) -> u64 {
        SHARD_PREFIX | (low & ((1 << VARYING_BITS) - 1))
    }

    #[test]
    fn grows_and_shrinks_keeping_every_entry_in_order() {
        let mut index = HashIndex::new(VARYING_BITS);
        let hashes: Vec<u64> = (0..10_000u64)
            .map(|n| hash(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        for (n, h) in hashes.iter().enumerate() {
            assert!(index.insert(*h, n).is_none());
        }
        assert_eq!(index.len(), hashes.len());
        assert!(index.bits > BUCKETS_MIN_BITS, "the directory grew");
        let mut sorted = hashes.clone();
        sorted.sort_unstable();
        let walked: Vec<u64> = index.range_from(0).map(|(h, _)| h).collect();
        assert_eq!(walked, sorted);
        for (n, h) in hashes.iter().enumerate() {
            assert_eq!(index.get(*h), Some(&n));
        }
        for h in &hashes[..9_990] {
            assert!(index.remove(*h).is_some());
        }
        assert_eq!(index.len(), 10);
        assert_eq!(index.bits, BUCKETS_MIN_BITS, "the directory shrank back");
        for (n, h) in hashes.iter().enumerate().skip(9_990) {
            assert_eq!(index.get(*h), Some(&n));
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u64, u32),
        Remove(u64),
        Range(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        // Few distinct low values, so inserts replace and removes hit.
        let low = prop_oneof![0u64..64, any::<u64>()];
        prop_oneof![
            (low.clone(), any::<u32>()).prop_map(|(h, v)| Step::Insert(hash(h), v)),
            low.clone().prop_map(|h| Step::Remove(hash(h))),
            low.prop_map(|h| Step::Range(hash(h))),
        ]
    }

    proptest! {
        /// Whatever the operations, the index answers as a `BTreeMap` does.
        #[test]
        fn behaves_as_an_ordered_map(steps in proptest::collection::vec(step(), 1..400)) {
            let mut index = HashIndex::new(VARYING_BITS);
            let mut model = BTreeMap::new();
            for step in steps {
                match step {
                    Step::Insert(h, v) => prop_assert_eq!(index.insert(h, v), model.insert(h, v)),
                    Step::Remove(h) => prop_assert_eq!(index.remove(h), model.remove(&h)),
                    Step::Range(h) => {
                        let want: Vec<u64> = model.range(h..).map(|(k, _)| *k).collect();
                        prop_assert_eq!(index.range(Bound::Included(h), Bound::Unbounded), want);
                    }
                }
                prop_assert_eq!(index.len(), model.len());
            }
            for (h, v) in &model {
                prop_assert_eq!(index.get(*h), Some(v));
            }
        }
    }
}
