//! One logged record, and its framing on disk: `len u32 LE | crc32c u32 LE | payload`, the
//! payload being the record in postcard encoding (LSN first).
//!
//! A record is one or more changes applied together: recovery, the PostgreSQL sink and later
//! replicas apply all of a record or none of it (a MERGE's two carts, a checkout's cart and the
//! gift cards it paid with). Each change names what it is about by a [`Space`] and a key, and
//! leaves it as an image, a delta on an earlier state, or gone.
//!
//! Two formats are read: format 2, written since durable reference data (this one), and format
//! 1, one cart change per record, which older segments hold ([`RecordFormat::V1`]).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Log sequence number: 1, 2, 3, ... in apply order across the node; 0 means "nothing".
pub type Lsn = u64;

/// Bytes before each record's payload: length and checksum.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Longest payload a frame may carry; a longer length is corruption, not a record.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Changes in one record at most (a checkout: its cart and up to ten gift cards).
pub const CHANGES_PER_RECORD_MAX: usize = 64;

/// One logged record: changes applied together, at one LSN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the log.
    pub lsn: Lsn,
    /// What changed, in the order it was applied; at least one.
    pub changes: Vec<Change>,
}

/// What a change is about. Each space has keys of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Space {
    /// A cart, by its key.
    Cart,
    /// A catalog entry (price, stock, per-cart limit), by product and variant.
    Catalog,
    /// A promotion, by its code.
    Promotion,
    /// A gift card's balance, by its code.
    GiftCard,
    /// A cart handover between cluster nodes (`CART.MERGE` across nodes), kept by the node
    /// that gave the guest cart and the one that merged it until both sides are done. Node-local:
    /// no PostgreSQL row. Last, so older logs decode as they were written.
    Handoff,
}

impl Space {
    /// Whether its entries are rows in PostgreSQL (a handoff is the node's own business).
    pub fn has_rows(self) -> bool {
        self != Space::Handoff
    }

    /// The name used in logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Space::Cart => "cart",
            Space::Catalog => "catalog",
            Space::Promotion => "promotion",
            Space::GiftCard => "gift card",
            Space::Handoff => "handoff",
        }
    }
}

/// One change to one thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What kind of thing.
    pub space: Space,
    /// Which one.
    pub key: Bytes,
    /// A cart's version after the change (a tombstone: the version it had); 0 elsewhere.
    pub version: u64,
    /// When the change happened (Unix ms; 0 if unknown, in records of format 1 without it).
    pub at_ms: u64,
    /// What the thing is now.
    pub state: State,
    /// Why, for the event stream (carts only).
    pub event: Option<Event>,
    /// The token the change answers to, remembered so a retry replays instead of re-applying.
    pub guard: Option<Guard>,
}

/// The state a change leaves its thing in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// The whole thing after the change, encoded by the server.
    Image(Bytes),
    /// What changed since the state the same thing had after record `base_lsn`, encoded by the
    /// server; applies only on exactly that state.
    Delta {
        /// The record that left the state this delta applies to.
        base_lsn: Lsn,
        /// The change, encoded by the server.
        delta: Bytes,
    },
    /// The thing is gone.
    Tombstone(TombstoneReason),
}

/// Why a thing is gone.
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
    /// Moved to another cluster node with its slot (MIGRATE): not gone, elsewhere. The sink
    /// leaves its row to the node that has it now.
    Moved,
}

impl TombstoneReason {
    /// The `reason` an event payload carries.
    pub fn as_str(self) -> &'static str {
        match self {
            TombstoneReason::Deleted => "deleted",
            TombstoneReason::Merged => "merged",
            TombstoneReason::Expired => "expired",
            TombstoneReason::CheckedOut => "checked_out",
            TombstoneReason::Moved => "moved",
        }
    }
}

/// A request token a change answers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    /// What kind of token.
    pub kind: GuardKind,
    /// The token.
    pub token: Bytes,
    /// Hash of the whole request that carried it (0 for a checkout token).
    pub fingerprint: u64,
}

/// Kinds of request tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GuardKind {
    /// `IDEMPOTENCY token` of a mutation.
    Idempotency,
    /// The checkout token a `CART.COMPLETE` completed.
    Checkout,
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

/// A change to append, borrowing its parts: the log encodes it straight into its queue. It
/// encodes exactly as the [`Change`] it reads back as (a round-trip test keeps the two equal).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChangeRef<'a> {
    /// What kind of thing.
    pub space: Space,
    /// Which one.
    pub key: &'a [u8],
    /// See [`Change::version`].
    pub version: u64,
    /// When the change happened (Unix ms).
    pub at_ms: u64,
    /// What the thing is now.
    pub state: StateRef<'a>,
    /// Why, for the event stream.
    pub event: Option<EventRef<'a>>,
    /// The token the change answers to.
    pub guard: Option<GuardRef<'a>>,
}

/// [`State`], borrowed.
#[derive(Debug, Clone, Copy, Serialize)]
pub enum StateRef<'a> {
    /// See [`State::Image`].
    Image(&'a [u8]),
    /// See [`State::Delta`].
    Delta {
        /// See [`State::Delta`].
        base_lsn: Lsn,
        /// See [`State::Delta`].
        delta: &'a [u8],
    },
    /// See [`State::Tombstone`].
    Tombstone(TombstoneReason),
}

/// [`Event`], borrowed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventRef<'a> {
    /// See [`Event::kind`].
    pub kind: EventKind,
    /// See [`Event::detail`].
    pub detail: &'a [u8],
}

/// [`Guard`], borrowed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GuardRef<'a> {
    /// See [`Guard::kind`].
    pub kind: GuardKind,
    /// See [`Guard::token`].
    pub token: &'a [u8],
    /// See [`Guard::fingerprint`].
    pub fingerprint: u64,
}

impl Change {
    /// This change, borrowed, to append again (tests, tools).
    pub fn as_ref(&self) -> ChangeRef<'_> {
        ChangeRef {
            space: self.space,
            key: &self.key,
            version: self.version,
            at_ms: self.at_ms,
            state: match &self.state {
                State::Image(image) => StateRef::Image(image),
                State::Delta { base_lsn, delta } => StateRef::Delta {
                    base_lsn: *base_lsn,
                    delta,
                },
                State::Tombstone(reason) => StateRef::Tombstone(*reason),
            },
            event: self.event.as_ref().map(|event| EventRef {
                kind: event.kind,
                detail: &event.detail,
            }),
            guard: self.guard.as_ref().map(|guard| GuardRef {
                kind: guard.kind,
                token: &guard.token,
                fingerprint: guard.fingerprint,
            }),
        }
    }
}

/// Which layout a segment's records have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// One cart change per record, the event's time inside its JSON detail.
    V1,
    /// [`Record`] as it is now.
    V2,
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

/// Appends one record at `lsn` of `changes`, framed, to `out`.
pub fn encode_frame(lsn: Lsn, changes: &[ChangeRef<'_>], out: &mut Vec<u8>) {
    assert!(
        (1..=CHANGES_PER_RECORD_MAX).contains(&changes.len()),
        "a record holds 1..={CHANGES_PER_RECORD_MAX} changes"
    );
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    let payload = postcard::to_extend(&(lsn, changes), std::mem::take(out))
        .expect("writing a record into a Vec cannot fail");
    *out = payload;
    let length = out.len() - start - FRAME_HEADER_BYTES;
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&(length as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

impl Record {
    /// Appends this record, framed, to `out`.
    pub fn encode_frame(&self, out: &mut Vec<u8>) {
        let changes: Vec<ChangeRef<'_>> = self.changes.iter().map(Change::as_ref).collect();
        encode_frame(self.lsn, &changes, out);
    }

    /// Reads the frame at the start of `bytes`, of `format`: the record and the bytes the
    /// frame took.
    pub fn decode_frame(bytes: &[u8], format: RecordFormat) -> Result<(Record, usize), FrameError> {
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
        let undecodable =
            |error: postcard::Error| FrameError::Corrupt(format!("undecodable record: {error}"));
        let record = match format {
            RecordFormat::V2 => {
                let record: Record = postcard::from_bytes(payload).map_err(undecodable)?;
                if !(1..=CHANGES_PER_RECORD_MAX).contains(&record.changes.len()) {
                    let count = record.changes.len();
                    return Err(FrameError::Corrupt(format!("a record of {count} changes")));
                }
                record
            }
            RecordFormat::V1 => postcard::from_bytes::<v1::Record>(payload)
                .map_err(undecodable)?
                .into(),
        };
        Ok((record, total))
    }
}

/// The layout of format-1 records, read from older segments and turned into [`Record`]s.
pub(crate) mod v1 {
    use bytes::Bytes;
    use serde::{Deserialize, Serialize};

    use super::{Event, Lsn, TombstoneReason};

    /// One cart change.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Record {
        pub lsn: Lsn,
        pub key: Bytes,
        pub version: u64,
        pub change: Change,
        pub event: Event,
    }

    /// The state it left the cart in.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub enum Change {
        Image(Bytes),
        Tombstone(TombstoneReason),
    }

    impl From<Record> for super::Record {
        fn from(old: Record) -> super::Record {
            #[derive(Deserialize)]
            struct At {
                at_ms: Option<u64>,
            }
            let at_ms = serde_json::from_slice::<At>(&old.event.detail)
                .ok()
                .and_then(|at| at.at_ms)
                .unwrap_or(0);
            let state = match old.change {
                Change::Image(image) => super::State::Image(image),
                Change::Tombstone(reason) => super::State::Tombstone(reason),
            };
            super::Record {
                lsn: old.lsn,
                changes: vec![super::Change {
                    space: super::Space::Cart,
                    key: old.key,
                    version: old.version,
                    at_ms,
                    state,
                    event: Some(old.event),
                    guard: None,
                }],
            }
        }
    }
}

/// Where readers of the log (the PostgreSQL sink, later replicas) get records from.
pub trait RecordSource: Send + 'static {
    /// Up to `max` records with LSN above `after`, in LSN order; empty when there are none yet.
    /// Never returns a record that is not completely written.
    fn read_after(&mut self, after: Lsn, max: usize) -> std::io::Result<Vec<Record>>;
}

#[cfg(test)]
mod tests;
