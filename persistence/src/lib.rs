//! cartd's durability layer.
//!
//! The server hands every change to the [`wal`] as a [`Record`] of one or more changes applied
//! together: a cart's, a catalog entry's, a promotion's or a gift card's new state (an image or
//! a delta, opaque bytes the server encodes) or a tombstone, with the event that caused it and
//! the request token it answers to. Records are numbered by LSN in apply order. Snapshots hold
//! everything live as of an LSN; recovery is the newest valid snapshot plus the log after it.
//! Nothing here knows what a cart is.

#[doc(hidden)]
pub mod fuzzing;
pub mod record;
pub mod recovery;
pub mod sink;
pub mod snapshot;
pub mod wal;

pub use record::{
    Change, ChangeRef, Event, EventKind, EventRef, Guard, GuardKind, GuardRef, Lsn, Record,
    RecordSource, Space, State, StateRef, TombstoneReason,
};
pub use recovery::{replay, RecoveryError, ReplayReport};
pub use snapshot::{SnapshotInfo, SnapshotWriter};
pub use wal::{FsyncPolicy, Wal, WalOptions, WalReader, WalStats};
