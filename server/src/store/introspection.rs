//! What OBJECT, MEMORY USAGE and INFO keyspace read of carts without touching them: a cart's
//! size and idle time, and a sample of the carts' remaining lifetimes. Nothing here renews a
//! TTL, decodes a cart or changes anything.

use super::Store;

/// Bytes one entry of a shard's hash index takes: the 63-bit hash and the boxed slice's
/// pointer and length.
const INDEX_SLOT_BYTES: usize = std::mem::size_of::<(u64, Box<[u8]>)>();
/// Bytes one timing wheel entry takes (the key hash).
const WHEEL_ENTRY_BYTES: usize = std::mem::size_of::<u64>();
/// Carts looked at per shard for the `avg_ttl` estimate (INFO keyspace).
const TTL_SAMPLES_PER_SHARD_MAX: usize = 16;

/// A cart's size and last access, as OBJECT and MEMORY USAGE report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartFootprint {
    /// Bytes the cart takes: its packed entry rounded up to jemalloc's size class, its slot in
    /// the shard's index and its timing wheel entry.
    pub bytes: u64,
    /// Milliseconds since its last access (CART.GET or a change), which set its deadline to
    /// that moment plus its TTL.
    pub idle_ms: u64,
}

/// Remaining lifetimes of a sample of carts (INFO keyspace `avg_ttl`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtlSample {
    /// Carts sampled.
    pub carts: u64,
    /// Their remaining lifetimes added up, milliseconds.
    pub ttl_ms_sum: u64,
}

impl Store {
    /// The live cart's footprint, or `None` when there is none. Does not renew it.
    pub fn footprint(&self, key: &[u8], now_ms: u64) -> Option<CartFootprint> {
        let at = self.locate(key);
        let shard = self.shards[at.shard].lock();
        let (entry_bytes, expires_at_ms) = shard.entry_size(at.hash, key)?;
        drop(shard);
        if expires_at_ms <= now_ms {
            return None;
        }
        let accessed_at_ms = expires_at_ms.saturating_sub(self.ttl_ms(self.kind_of(key)));
        let bytes = jemalloc_size_class(entry_bytes) + INDEX_SLOT_BYTES + WHEEL_ENTRY_BYTES;
        Some(CartFootprint {
            bytes: bytes as u64,
            idle_ms: now_ms.saturating_sub(accessed_at_ms),
        })
    }

    /// The remaining lifetimes of up to [`TTL_SAMPLES_PER_SHARD_MAX`] live carts per shard,
    /// from a random point of each shard's hash order, wrapping round (one short lock per
    /// shard; expired carts not yet reaped are passed over, at most a wheel tick's worth).
    pub fn sample_ttls(&self, now_ms: u64) -> TtlSample {
        let mut sample = TtlSample::default();
        for shard in self.shards.iter() {
            let from: u64 = rand::random::<u64>() >> 1;
            let shard = shard.lock();
            // From the random point to the end, then round from the start back to it, so a
            // shard of few carts is sampled whole.
            let wrapped = shard.buckets_from(0).take_while(|(hash, _)| *hash < from);
            let deadlines = shard
                .buckets_from(from)
                .chain(wrapped)
                .flat_map(|(_, entries)| entries)
                .map(|entry| entry.deadline().0)
                .filter(|expires_at_ms| *expires_at_ms > now_ms)
                .take(TTL_SAMPLES_PER_SHARD_MAX);
            for expires_at_ms in deadlines {
                sample.carts += 1;
                sample.ttl_ms_sum += expires_at_ms - now_ms;
            }
        }
        sample
    }
}

/// The size jemalloc hands out for a request of `bytes`: 8 and 16, then four classes per
/// doubling, spaced at least 16 bytes apart (5.x's small and large size classes).
pub fn jemalloc_size_class(bytes: usize) -> usize {
    if bytes <= 8 {
        return 8;
    }
    if bytes <= 16 {
        return 16;
    }
    let group_bits = usize::BITS - 1 - (bytes - 1).leading_zeros();
    let spacing = (1usize << group_bits.saturating_sub(2)).max(16);
    bytes.div_ceil(spacing) * spacing
}

#[cfg(test)]
mod tests {
    use super::jemalloc_size_class;

    #[test]
    fn size_classes_are_jemallocs() {
        let classes: Vec<usize> = [1, 9, 17, 33, 48, 49, 65, 129, 257, 1000, 4097]
            .into_iter()
            .map(jemalloc_size_class)
            .collect();
        assert_eq!(classes, [8, 16, 32, 48, 48, 64, 80, 160, 320, 1024, 5120]);
    }
}
