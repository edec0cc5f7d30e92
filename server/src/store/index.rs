//! A shard's index of carts by key hash: a directory of small buckets, each sorted by hash,
//! where bucket `i` holds the hashes whose top bits (below the shard's) are `i`. Lookups read
//! one directory slot and one short sorted run (one or two cache misses, where a B-tree of a
//! million carts took four or five), and iterating the buckets in order visits hashes in
//! ascending order, so SCAN resumes from a hash exactly as it did over the B-tree.
//!
//! The directory doubles when buckets hold `LOAD_MAX` entries on average: bucket `i` splits
//! into `2i` and `2i + 1` by the next bit, which keeps the order. The split is incremental, as
//! Redis rehashes: every insert or removal moves a few buckets of the old directory into the
//! new one, lookups and iteration read whichever holds a bucket, so no operation pays for the
//! whole shard (all at once, a doubling at 262,000 entries took 22 ms under the shard lock).
//! The directory halves, merging pairs, when buckets hold a sixteenth of `LOAD_MAX`.

/// Entries per bucket, on average, at which the directory doubles.
const LOAD_MAX: usize = 8;
/// The directory never shrinks below this many buckets.
const BUCKETS_MIN_BITS: u32 = 4;
/// Old buckets moved into the doubled directory per insert or removal while doubling.
const SPLITS_PER_CHANGE: usize = 16;

type Bucket<V> = Vec<(u64, V)>;

/// The index: values by 63-bit hash, ordered by hash.
#[derive(Debug)]
pub struct HashIndex<V> {
    /// The directory, `1 << bits` buckets.
    buckets: Vec<Bucket<V>>,
    /// While doubling: the previous directory. Its buckets below `split` have moved into
    /// `buckets` (and are empty); from `split` on they still hold their entries, and their two
    /// halves in `buckets` are empty.
    old: Vec<Bucket<V>>,
    split: usize,
    /// log2 of the number of buckets.
    bits: u32,
    /// Shifts the bits that vary within the shard to the top of a `u64`.
    varying_shift: u32,
    len: usize,
    splits_per_change: usize,
}

impl<V> HashIndex<V> {
    /// An empty index for hashes that vary only in their low `varying_bits` bits (the bits
    /// above select the shard).
    pub fn new(varying_bits: u32) -> HashIndex<V> {
        HashIndex::with_splits(varying_bits, SPLITS_PER_CHANGE)
    }

    fn with_splits(varying_bits: u32, splits_per_change: usize) -> HashIndex<V> {
        assert!((BUCKETS_MIN_BITS..=64).contains(&varying_bits));
        HashIndex {
            buckets: empty_buckets(1 << BUCKETS_MIN_BITS),
            old: Vec::new(),
            split: 0,
            bits: BUCKETS_MIN_BITS,
            varying_shift: 64 - varying_bits,
            len: 0,
            splits_per_change,
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

    fn doubling(&self) -> bool {
        !self.old.is_empty()
    }

    /// The bucket that holds `hash`, wherever it is now.
    fn bucket(&self, hash: u64) -> &Bucket<V> {
        let slot = self.slot(hash);
        if self.doubling() && slot / 2 >= self.split {
            &self.old[slot / 2]
        } else {
            &self.buckets[slot]
        }
    }

    fn bucket_mut(&mut self, hash: u64) -> &mut Bucket<V> {
        let slot = self.slot(hash);
        if self.doubling() && slot / 2 >= self.split {
            &mut self.old[slot / 2]
        } else {
            &mut self.buckets[slot]
        }
    }

    /// The value under `hash`.
    pub fn get(&self, hash: u64) -> Option<&V> {
        let bucket = self.bucket(hash);
        let at = bucket.binary_search_by_key(&hash, |entry| entry.0).ok()?;
        Some(&bucket[at].1)
    }

    /// The value under `hash`, for change.
    pub fn get_mut(&mut self, hash: u64) -> Option<&mut V> {
        let bucket = self.bucket_mut(hash);
        let at = bucket.binary_search_by_key(&hash, |entry| entry.0).ok()?;
        Some(&mut bucket[at].1)
    }

    /// Puts `value` under `hash`; returns the value it replaced.
    pub fn insert(&mut self, hash: u64, value: V) -> Option<V> {
        let bucket = self.bucket_mut(hash);
        match bucket.binary_search_by_key(&hash, |entry| entry.0) {
            Ok(at) => Some(std::mem::replace(&mut bucket[at].1, value)),
            Err(at) => {
                bucket.insert(at, (hash, value));
                self.len += 1;
                self.rebalance();
                None
            }
        }
    }

    /// Takes the value under `hash` out.
    pub fn remove(&mut self, hash: u64) -> Option<V> {
        let bucket = self.bucket_mut(hash);
        let at = bucket.binary_search_by_key(&hash, |entry| entry.0).ok()?;
        let (_, value) = bucket.remove(at);
        if bucket.is_empty() {
            *bucket = Vec::new();
        }
        self.len -= 1;
        self.rebalance();
        Some(value)
    }

    /// Entries with hash at or after `from`, in hash order.
    pub fn range_from(&self, from: u64) -> impl Iterator<Item = (u64, &V)> {
        // Units in order: while doubling, old bucket `j` or (once split) its two halves.
        let units = if self.doubling() {
            self.old.len()
        } else {
            self.buckets.len()
        };
        let first = if self.doubling() {
            self.slot(from) / 2
        } else {
            self.slot(from)
        };
        (first..units)
            .flat_map(move |unit| {
                let (low, high): (&[_], &[_]) = if !self.doubling() {
                    (&self.buckets[unit], &[])
                } else if unit < self.split {
                    (&self.buckets[2 * unit], &self.buckets[2 * unit + 1])
                } else {
                    (&self.old[unit], &[])
                };
                low.iter().chain(high)
            })
            .skip_while(move |entry| entry.0 < from)
            .map(|(hash, value)| (*hash, value))
    }

    /// Moves a doubling on, starts one when buckets are full, or halves a sparse directory.
    fn rebalance(&mut self) {
        if self.doubling() {
            for _ in 0..self.splits_per_change {
                self.split_one();
                if !self.doubling() {
                    break;
                }
            }
        } else if self.len > self.buckets.len() * LOAD_MAX {
            self.bits += 1;
            self.old = std::mem::replace(&mut self.buckets, empty_buckets(1 << self.bits));
            self.split = 0;
            self.split_one();
        } else if self.bits > BUCKETS_MIN_BITS && self.len * 16 < self.buckets.len() * LOAD_MAX {
            self.shrink();
        }
    }

    /// Moves old bucket `split` into its two halves (next bit clear, then set).
    fn split_one(&mut self) {
        let unit = self.split;
        let mut low = std::mem::take(&mut self.old[unit]);
        let at = low.partition_point(|entry| self.slot(entry.0) & 1 == 0);
        let high = low.split_off(at);
        low.shrink_to_fit();
        self.buckets[2 * unit] = low;
        self.buckets[2 * unit + 1] = high;
        self.split += 1;
        if self.split == self.old.len() {
            self.old = Vec::new();
            self.split = 0;
        }
    }

    /// Halves the directory: buckets `2i` and `2i + 1` become `i` (never while doubling).
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

fn empty_buckets<V>(count: usize) -> Vec<Bucket<V>> {
    (0..count).map(|_| Vec::new()).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Hashes as a shard of 64 sees them: 57 varying bits under a fixed shard prefix.
    const VARYING_BITS: u32 = 57;
    const SHARD_PREFIX: u64 = 5 << VARYING_BITS;

    fn hash(low: u64) -> u64 {
        SHARD_PREFIX | (low & ((1 << VARYING_BITS) - 1))
    }

    fn walk<V>(index: &HashIndex<V>, from: u64) -> Vec<u64> {
        index.range_from(from).map(|(hash, _)| hash).collect()
    }

    #[test]
    fn grows_and_shrinks_keeping_every_entry_in_order() {
        for splits in [1, SPLITS_PER_CHANGE] {
            let mut index = HashIndex::with_splits(VARYING_BITS, splits);
            let hashes: Vec<u64> = (0..10_000u64)
                .map(|n| hash(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .collect();
            let mut seen_doubling = false;
            for (n, h) in hashes.iter().enumerate() {
                assert!(index.insert(*h, n).is_none());
                seen_doubling |= index.doubling();
                if index.doubling() && n % 97 == 0 {
                    // Mid-doubling, every entry is found and the walk is in order.
                    let mut sorted = hashes[..=n].to_vec();
                    sorted.sort_unstable();
                    assert_eq!(walk(&index, 0), sorted, "after {n} inserts");
                    assert!(hashes[..=n].iter().all(|h| index.get(*h).is_some()));
                }
            }
            assert!(
                seen_doubling,
                "splits={splits}: a doubling was seen in progress"
            );
            assert_eq!(index.len(), hashes.len());
            assert!(index.bits > BUCKETS_MIN_BITS, "the directory grew");
            let mut sorted = hashes.clone();
            sorted.sort_unstable();
            assert_eq!(walk(&index, 0), sorted);
            assert_eq!(walk(&index, sorted[5_000]), sorted[5_000..]);
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
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u64, u32),
        Remove(u64),
        Range(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        // Few distinct low values half the time, so inserts replace and removes hit.
        let low = prop_oneof![0u64..64, any::<u64>()];
        prop_oneof![
            (low.clone(), any::<u32>()).prop_map(|(h, v)| Step::Insert(hash(h), v)),
            low.clone().prop_map(|h| Step::Remove(hash(h))),
            low.prop_map(|h| Step::Range(hash(h))),
        ]
    }

    proptest! {
        /// Whatever the operations, and however far a doubling has got (one bucket split per
        /// change here), the index answers as a `BTreeMap` does.
        #[test]
        fn behaves_as_an_ordered_map(steps in proptest::collection::vec(step(), 1..600)) {
            let mut index = HashIndex::with_splits(VARYING_BITS, 1);
            let mut model = BTreeMap::new();
            for step in steps {
                match step {
                    Step::Insert(h, v) => prop_assert_eq!(index.insert(h, v), model.insert(h, v)),
                    Step::Remove(h) => prop_assert_eq!(index.remove(h), model.remove(&h)),
                    Step::Range(h) => {
                        let want: Vec<u64> = model.range(h..).map(|(k, _)| *k).collect();
                        prop_assert_eq!(walk(&index, h), want);
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
