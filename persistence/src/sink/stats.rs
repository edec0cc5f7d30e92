//! What the running sink reports (for `INFO persistence`), and the handle its spawner keeps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::record::Lsn;

/// Counters the sink task keeps as it goes; read them at any time.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// The last LSN committed to PostgreSQL: the lag is the log's last LSN minus this.
    pub checkpoint_lsn: AtomicU64,
    /// Records whose effects were committed.
    pub records_applied: AtomicU64,
    /// Cart rows inserted or replaced.
    pub carts_upserted: AtomicU64,
    /// Cart rows deleted.
    pub carts_deleted: AtomicU64,
    /// Event rows inserted.
    pub events_inserted: AtomicU64,
    /// Transactions committed.
    pub transactions: AtomicU64,
    /// Failed attempts (PostgreSQL or the log), each followed by a retry.
    pub failures: AtomicU64,
    /// Cart images the codec could not turn into rows (their rows were left as they were).
    pub codec_errors: AtomicU64,
    /// Whether the last attempt to reach PostgreSQL succeeded.
    pub connected: AtomicBool,
    /// The last failure, as a sentence; cleared by the next success.
    pub last_error: Mutex<Option<String>>,
}

impl SinkStats {
    /// Notes a failed attempt.
    pub(super) fn failed(&self, error: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .expect("no code panics holding this lock") = Some(error);
    }

    /// Notes that PostgreSQL answered.
    pub(super) fn reached(&self) {
        self.connected.store(true, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .expect("no code panics holding this lock") = None;
    }

    /// The last failure, if the sink has not succeeded since.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .expect("no code panics holding this lock")
            .clone()
    }

    /// The last LSN committed to PostgreSQL.
    pub fn checkpoint_lsn(&self) -> Lsn {
        self.checkpoint_lsn.load(Ordering::Relaxed)
    }
}

/// The running sink: its counters, and its task to wait for after cancelling its token.
#[derive(Debug)]
pub struct SinkHandle {
    /// The sink's counters.
    pub stats: Arc<SinkStats>,
    pub(super) task: JoinHandle<()>,
}

impl SinkHandle {
    /// Waits for the task to return (after its cancellation token fired, or a bug stopped it).
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!("the PostgreSQL sink task ended abnormally: {error}");
        }
    }
}
