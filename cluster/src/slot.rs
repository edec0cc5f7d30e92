//! Key slots, exactly as Redis Cluster computes them: CRC16 (XMODEM) of the key, or of its
//! hash tag, modulo 16384.

/// Slots in a cluster.
pub const SLOTS: u16 = 16384;

/// Bits of a slot number (16384 = 2^14).
pub const SLOT_BITS: u32 = 14;

/// Redis's CRC16: CCITT polynomial 0x1021, initial value 0, no reflection (XMODEM).
const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The part of `key` that is hashed: what is between the first `{` and the first `}` after
/// it, if that is not empty; else the whole key (Redis's hash tags, so `{user42}.cart` and
/// `{user42}.guest` share a slot).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&byte| byte == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&byte| byte == b'}') {
        Some(close) if close > 0 => &rest[..close],
        _ => key,
    }
}

/// The slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    CRC16.checksum(hash_tag(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_redis_s() {
        // The check value of CRC-16/XMODEM, and Redis's own examples (CLUSTER KEYSLOT).
        assert_eq!(CRC16.checksum(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn hash_tags_follow_redis_rules() {
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"user1000"));
        // An empty tag hashes the whole key; only the first braces count.
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"no close {brace"), b"no close {brace");
    }

    proptest::proptest! {
        #[test]
        fn every_key_has_a_slot_in_range(key in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            proptest::prop_assert!(key_slot(&key) < SLOTS);
            let tagged = [b"{".as_slice(), &key, b"}.suffix"].concat();
            if !key.is_empty() && !key.contains(&b'}') && !key.contains(&b'{') {
                proptest::prop_assert_eq!(key_slot(&tagged), key_slot(&key));
            }
        }
    }
}
