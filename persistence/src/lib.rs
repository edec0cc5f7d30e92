//! cartd's durability layer.
//!
//! The server hands every cart change to the [`wal`] as a [`Record`]: the cart's after-image
//! (opaque bytes the server encodes) or a tombstone, with the event that caused it. Records are
//! numbered by LSN in apply order. Snapshots hold every live cart as of an LSN; recovery is the
//! newest valid snapshot plus the log after it. Nothing here knows what a cart is.

pub mod record;
pub mod recovery;
pub mod sink;
pub mod snapshot;
pub mod wal;

pub use record::{Change, Event, EventKind, Lsn, Record, RecordSource, TombstoneReason};
pub use recovery::{replay, RecoveryError, ReplayReport};
pub use snapshot::{SnapshotInfo, SnapshotWriter};
pub use wal::{FsyncPolicy, Wal, WalOptions, WalReader, WalStats};
