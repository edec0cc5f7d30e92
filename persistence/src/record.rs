//! One logged change, and its framing on disk: `len u32 LE | crc32c u32 LE | payload`, the
//! payload being the record in postcard encoding (LSN first).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Log sequence number: 1, 2, 3, ... in apply order across the node; 0 means "nothing".
pub type Lsn = u64;

/// Bytes before each record's payload: length and checksum.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Longest payload a frame may carry; a longer length is corruption, not a record.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One change to one cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the log.
    pub lsn: Lsn,
    /// The cart's key.
    pub key: Bytes,
    /// The cart's version after the change (a tombstone: the version it had).
    pub version: u64,
    /// What the cart is now.
    pub change: Change,
    /// Why, for the event stream.
    pub event: Event,
}

/// The state a record leaves the cart in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The whole cart after the change, encoded by the server.
    Image(Bytes),
    /// The cart is gone.
    Tombstone(TombstoneReason),
}

/// Why a cart is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TombstoneReason {
    /// `DEL`, or cleared away by an operator.
    Deleted,
    /// Merged into another cart (the guest side of `CART.MERGE`).
    Merged,
    /// Its TTL ran out.
    Expired,
    /// Handed to checkout and completed.
    CheckedOut,
}

/// What happened, as the `cart_events` table records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The kind of change.
    pub kind: EventKind,
    /// Details as a JSON object (`{"product":"p1","variant":"v1","qty":2}`), or empty.
    pub detail: Bytes,
}

/// Kinds of cart events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A line added or its quantity raised (`CART.ADD`).
    Add,
    /// A quantity set, or prices and stock revalidated.
    Update,
    /// A line removed, or the cart cleared.
    Remove,
    /// A guest cart merged in (both sides).
    Merge,
    /// A line saved for later.
    Save,
    /// A line restored to the cart.
    Restore,
    /// The cart expired unused.
    Abandon,
    /// The cart was deleted.
    Delete,
    /// The cart went through checkout.
    Checkout,
}

impl EventKind {
    /// The name stored in `cart_events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Add => "add",
            EventKind::Update => "update",
            EventKind::Remove => "remove",
            EventKind::Merge => "merge",
            EventKind::Save => "save",
            EventKind::Restore => "restore",
            EventKind::Abandon => "abandon",
            EventKind::Delete => "delete",
            EventKind::Checkout => "checkout",
        }
    }
}

/// Where readers of the log (the PostgreSQL sink, later replicas) get records from.
pub trait RecordSource: Send + 'static {
    /// Up to `max` records with LSN above `after`, in LSN order; empty when there are none yet.
    /// Never returns a record that is not completely written.
    fn read_after(&mut self, after: Lsn, max: usize) -> std::io::Result<Vec<Record>>;
}

/// Why bytes could not be read back as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes end inside the frame: a torn write, or more is still coming.
    #[error("incomplete frame: {needed} bytes needed, {available} available")]
    Incomplete {
        /// Bytes the whole frame needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The frame is complete but wrong: bad length, checksum or encoding.
    #[error("corrupt frame: {0}")]
    Corrupt(String),
}

impl Record {
    /// Appends this record, framed, to `out`.
    pub fn encode_frame(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        let payload = postcard::to_extend(self, std::mem::take(out))
            .expect("writing a record into a Vec cannot fail");
        *out = payload;
        let length = out.len() - start - FRAME_HEADER_BYTES;
        let crc = crc32c::crc32c(&out[start + FRAME_HEADER_BYTES..]);
        out[start..start + 4].copy_from_slice(&(length as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads the frame at the start of `bytes`: the record and the bytes the frame took.
    pub fn decode_frame(bytes: &[u8]) -> Result<(Record, usize), FrameError> {
        let incomplete = |needed| FrameError::Incomplete {
            needed,
            available: bytes.len(),
        };
        let header = bytes
            .get(..FRAME_HEADER_BYTES)
            .ok_or_else(|| incomplete(FRAME_HEADER_BYTES))?;
        let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if length == 0 || length > PAYLOAD_BYTES_MAX {
            return Err(FrameError::Corrupt(format!("impossible length {length}")));
        }
        let total = FRAME_HEADER_BYTES + length;
        let payload = bytes
            .get(FRAME_HEADER_BYTES..total)
            .ok_or_else(|| incomplete(total))?;
        if crc32c::crc32c(payload) != crc {
            return Err(FrameError::Corrupt("checksum mismatch".into()));
        }
        let record: Record = postcard::from_bytes(payload)
            .map_err(|error| FrameError::Corrupt(format!("undecodable record: {error}")))?;
        Ok((record, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(lsn: Lsn, change: Change) -> Record {
        Record {
            lsn,
            key: Bytes::from_static(b"cart:42"),
            version: 3,
            change,
            event: Event {
                kind: EventKind::Add,
                detail: Bytes::from_static(br#"{"product":"p1"}"#),
            },
        }
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let first = record(1, Change::Image(Bytes::from_static(b"image bytes")));
        let second = record(2, Change::Tombstone(TombstoneReason::Merged));
        let mut out = Vec::new();
        first.encode_frame(&mut out);
        second.encode_frame(&mut out);
        let (decoded, used) = Record::decode_frame(&out).unwrap();
        assert_eq!(decoded, first);
        let (decoded, rest) = Record::decode_frame(&out[used..]).unwrap();
        assert_eq!(decoded, second);
        assert_eq!(used + rest, out.len());
    }

    #[test]
    fn a_cut_frame_is_incomplete_and_a_flipped_bit_is_corrupt() {
        let mut out = Vec::new();
        record(7, Change::Image(Bytes::from_static(b"abc"))).encode_frame(&mut out);
        for cut in 0..out.len() {
            assert!(matches!(
                Record::decode_frame(&out[..cut]),
                Err(FrameError::Incomplete { .. })
            ));
        }
        for at in FRAME_HEADER_BYTES..out.len() {
            let mut bad = out.clone();
            bad[at] ^= 0x10;
            assert!(matches!(
                Record::decode_frame(&bad),
                Err(FrameError::Corrupt(_))
            ));
        }
    }
}
