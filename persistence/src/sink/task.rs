//! The sink task: from the checkpoint on, read records, wait a moment for more, apply them in
//! one transaction, repeat. Failures (PostgreSQL down, a statement failing, the log unreadable)
//! are retried with exponential backoff and never skip a record; the first is logged at warn,
//! the recovery at info.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::batch::{bases_needed, Bases, Batch};
use super::stats::{SinkHandle, SinkStats};
use super::writer::{self, Applied};
use super::{migrate, RowCodec, SinkError};
use crate::record::{Lsn, Record, RecordSource};

/// How long the sink waits after a first record for more to join its batch, by default.
pub const COALESCE_MS_DEFAULT: u64 = 50;
/// Records in one transaction at most, by default.
pub const BATCH_RECORDS_MAX_DEFAULT: usize = 10_000;
/// The longest wait between retries, by default.
pub const RETRY_BACKOFF_MAX_MS_DEFAULT: u64 = 5_000;
/// The first wait after a failure; each further failure doubles it up to the maximum.
pub const RETRY_BACKOFF_MIN_MS: u64 = 100;
/// The shortest wait between two looks at an idle log, whatever `coalesce_ms` says.
const IDLE_POLL_MS_MIN: u64 = 5;
/// How long a transaction in flight when the sink is cancelled may take to commit.
const SHUTDOWN_COMMIT_GRACE_MS: u64 = 5_000;

/// How the sink runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// The node whose log this is: names its checkpoint and its events.
    pub node: String,
    /// How long to wait after a first record for more to join the batch; also how often an
    /// idle log is looked at again.
    pub coalesce_ms: u64,
    /// Records in one transaction at most.
    pub batch_records_max: usize,
    /// The longest wait between retries.
    pub retry_backoff_max_ms: u64,
    /// The lease term rows are written under (a cluster primary's), checked by each
    /// transaction; 0 and unchecked standalone.
    pub term: super::Term,
}

impl SinkOptions {
    /// The defaults for `node`.
    pub fn new(node: impl Into<String>) -> SinkOptions {
        SinkOptions {
            node: node.into(),
            coalesce_ms: COALESCE_MS_DEFAULT,
            batch_records_max: BATCH_RECORDS_MAX_DEFAULT,
            retry_backoff_max_ms: RETRY_BACKOFF_MAX_MS_DEFAULT,
            term: super::Term::default(),
        }
    }
}

/// Starts the sink task for `source` on the current tokio runtime. It applies the migrations,
/// reads the checkpoint, then follows the log until `cancel` fires, when it lets a transaction
/// in flight commit (within a grace period, else rolls it back) and returns.
pub fn spawn(
    pool: PgPool,
    source: impl RecordSource,
    codec: Arc<dyn RowCodec>,
    options: SinkOptions,
    cancel: CancellationToken,
) -> SinkHandle {
    assert!(
        options.batch_records_max > 0,
        "a batch holds at least one record"
    );
    let stats = Arc::new(SinkStats::default());
    let sink = Sink {
        pool,
        source: Mutex::new(Some(Box::new(source))),
        codec,
        options,
        cancel,
        stats: Arc::clone(&stats),
        checkpoint_lsn: 0,
        failing: None,
        backoff_ms: RETRY_BACKOFF_MIN_MS,
    };
    SinkHandle {
        stats,
        task: tokio::spawn(sink.run()),
    }
}

/// The task's state.
struct Sink {
    pool: PgPool,
    /// Taken while a blocking read holds it; `None` afterwards only if that read panicked.
    /// In a mutex only so the task's future is `Send`: nothing else ever locks it.
    source: Mutex<Option<Box<dyn RecordSource>>>,
    codec: Arc<dyn RowCodec>,
    options: SinkOptions,
    cancel: CancellationToken,
    stats: Arc<SinkStats>,
    /// The last LSN committed to PostgreSQL.
    checkpoint_lsn: Lsn,
    /// Since when and how often the sink has failed without a success since.
    failing: Option<Failing>,
    /// The wait before the next retry.
    backoff_ms: u64,
}

/// A run of failures.
struct Failing {
    since: Instant,
    attempts: u64,
}

impl Sink {
    async fn run(mut self) {
        if !self.start().await {
            return;
        }
        while !self.cancel.is_cancelled() {
            let Some(records) = self.gather().await else {
                return;
            };
            if records.is_empty() {
                let poll_ms = self.options.coalesce_ms.max(IDLE_POLL_MS_MIN);
                self.sleep(poll_ms).await;
                continue;
            }
            let needed = bases_needed(&records);
            let bases = if needed.is_empty() {
                Bases::new()
            } else {
                let Some(bases) = self.load_bases(&needed).await else {
                    return;
                };
                bases
            };
            let batch = Batch::build(&records, &*self.codec, now_ms(), &bases);
            drop(records);
            self.report_codec_errors(&batch);
            if !self.commit(&batch).await {
                return;
            }
        }
        tracing::info!(
            "PostgreSQL sink for node {:?} stopped at LSN {}",
            self.options.node,
            self.checkpoint_lsn
        );
    }

    /// Applies the migrations and reads the checkpoint, retrying; false if cancelled first.
    async fn start(&mut self) -> bool {
        loop {
            let started = async {
                migrate(&self.pool).await?;
                if self.options.term.leased {
                    let node = &self.options.node;
                    super::lease::adopt_checkpoint(&self.pool, node, self.options.term.term)
                        .await?;
                }
                super::checkpoint_at(&self.pool, &self.options.node).await
            };
            match started.await {
                Ok((term, lsn)) => {
                    if self.options.term.leased && term > self.options.term.term {
                        tracing::error!(
                            "PostgreSQL sink for node {:?}: the checkpoint is at term {term}, \
                             past this sink's {}: another node took the group over; not \
                             streaming",
                            self.options.node,
                            self.options.term.term
                        );
                        return false;
                    }
                    self.checkpoint_lsn = lsn;
                    self.stats.checkpoint_lsn.store(lsn, Ordering::Relaxed);
                    self.succeeded();
                    tracing::info!(
                        "PostgreSQL sink for node {:?} following the log after LSN {lsn}",
                        self.options.node
                    );
                    return true;
                }
                Err(error) => {
                    if !self.failed(error).await {
                        return false;
                    }
                }
            }
        }
    }

    /// The next batch's records: what the log has after the checkpoint, plus what arrives
    /// within the coalescing window. Empty when the log has nothing new; `None` when the sink
    /// must stop (cancelled, or the log reader lost).
    async fn gather(&mut self) -> Option<Vec<Record>> {
        let max = self.options.batch_records_max;
        let mut records = self.read(self.checkpoint_lsn, max).await?;
        if records.is_empty() || records.len() >= max {
            return Some(records);
        }
        if !self.sleep(self.options.coalesce_ms).await {
            return None;
        }
        let after = records.last().expect("not empty").lsn;
        let more = self.read(after, max - records.len()).await?;
        records.extend(more);
        Some(records)
    }

    /// Up to `max` records after `after`, read on a blocking thread; retries a failing read.
    async fn read(&mut self, after: Lsn, max: usize) -> Option<Vec<Record>> {
        loop {
            let mut source = self.source_slot().take()?;
            let read = tokio::task::spawn_blocking(move || {
                let records = source.read_after(after, max);
                (source, records)
            });
            let (source, records) = match read.await {
                Ok(done) => done,
                Err(error) => {
                    tracing::error!("PostgreSQL sink stopping: the log reader failed: {error}");
                    return None;
                }
            };
            *self.source_slot() = Some(source);
            match records {
                Ok(records) => {
                    assert!(records.len() <= max, "the log returned more than asked");
                    assert!(records.first().is_none_or(|first| first.lsn > after));
                    return Some(records);
                }
                Err(error) => {
                    if !self.failed(SinkError::Source { after, error }).await {
                        return None;
                    }
                }
            }
        }
    }

    /// The log reader's place, locked.
    fn source_slot(&self) -> std::sync::MutexGuard<'_, Option<Box<dyn RecordSource>>> {
        self.source
            .lock()
            .expect("no code panics holding this lock")
    }

    /// The stored images the batch's deltas apply to, retried until PostgreSQL answers;
    /// `None` if the sink must stop instead.
    async fn load_bases(&mut self, keys: &[Vec<u8>]) -> Option<Bases> {
        loop {
            match writer::load_bases(&self.pool, keys).await {
                Ok(bases) => return Some(bases),
                Err(error) => {
                    if !self.failed(error).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Applies `batch`, retrying until it commits; false if the sink must stop instead.
    async fn commit(&mut self, batch: &Batch) -> bool {
        loop {
            let outcome = {
                let attempt = writer::apply(
                    &self.pool,
                    &self.options.node,
                    self.options.term,
                    self.checkpoint_lsn,
                    batch,
                );
                tokio::pin!(attempt);
                tokio::select! {
                    outcome = &mut attempt => Some(outcome),
                    () = self.cancel.cancelled() => {
                        let grace = Duration::from_millis(SHUTDOWN_COMMIT_GRACE_MS);
                        tokio::time::timeout(grace, &mut attempt).await.ok()
                    }
                }
            };
            match outcome {
                Some(Ok(applied)) => {
                    self.committed(batch, applied);
                    return true;
                }
                Some(Err(error @ SinkError::Fenced { .. })) => {
                    tracing::error!("PostgreSQL sink stopping: {error}");
                    self.stats.failed(error.to_string());
                    return false;
                }
                Some(Err(error @ SinkError::CheckpointMoved { found, .. })) => {
                    tracing::error!("PostgreSQL sink: {error}; going on from LSN {found}");
                    self.checkpoint_lsn = found;
                    self.stats.checkpoint_lsn.store(found, Ordering::Relaxed);
                    return self.failed(error).await;
                }
                Some(Err(error)) => {
                    if !self.failed(error).await {
                        return false;
                    }
                }
                None => {
                    tracing::warn!(
                        "PostgreSQL sink stopping: the transaction for LSNs {}..={} did not \
                         commit within {SHUTDOWN_COMMIT_GRACE_MS} ms and rolls back",
                        batch.first_lsn,
                        batch.last_lsn
                    );
                    return false;
                }
            }
        }
    }

    /// Notes a committed batch.
    fn committed(&mut self, batch: &Batch, applied: Applied) {
        self.checkpoint_lsn = batch.last_lsn;
        let stats = &self.stats;
        stats
            .checkpoint_lsn
            .store(batch.last_lsn, Ordering::Relaxed);
        stats
            .records_applied
            .fetch_add(batch.records as u64, Ordering::Relaxed);
        stats
            .carts_upserted
            .fetch_add(applied.carts_upserted, Ordering::Relaxed);
        stats
            .carts_deleted
            .fetch_add(applied.carts_deleted, Ordering::Relaxed);
        stats
            .events_inserted
            .fetch_add(applied.events_inserted, Ordering::Relaxed);
        stats.transactions.fetch_add(1, Ordering::Relaxed);
        self.succeeded();
    }

    /// Logs the images the codec refused: their rows stay as they were, loudly.
    fn report_codec_errors(&self, batch: &Batch) {
        for error in &batch.codec_errors {
            tracing::error!("PostgreSQL sink: {error}; its row is left as it was");
        }
        let count = batch.codec_errors.len() as u64;
        self.stats.codec_errors.fetch_add(count, Ordering::Relaxed);
    }

    /// Notes a failure and waits out the backoff; false if cancelled meanwhile.
    async fn failed(&mut self, error: SinkError) -> bool {
        if !matches!(error, SinkError::Source { .. }) {
            self.stats.connected.store(false, Ordering::Relaxed);
        }
        let message = error.to_string();
        match &mut self.failing {
            None => {
                tracing::warn!(
                    "PostgreSQL sink for node {:?}: {message}; retrying every {}..{} ms \
                     from LSN {}",
                    self.options.node,
                    RETRY_BACKOFF_MIN_MS,
                    self.options.retry_backoff_max_ms,
                    self.checkpoint_lsn
                );
                self.failing = Some(Failing {
                    since: Instant::now(),
                    attempts: 1,
                });
            }
            Some(failing) => {
                failing.attempts += 1;
                tracing::debug!("PostgreSQL sink, attempt {}: {message}", failing.attempts);
            }
        }
        self.stats.failed(message);
        let delay_ms = self.backoff_ms;
        self.backoff_ms = (delay_ms * 2).min(self.options.retry_backoff_max_ms.max(1));
        self.sleep(delay_ms).await
    }

    /// Notes that PostgreSQL answered, ending any run of failures.
    fn succeeded(&mut self) {
        self.stats.reached();
        self.backoff_ms = RETRY_BACKOFF_MIN_MS;
        if let Some(failing) = self.failing.take() {
            tracing::info!(
                "PostgreSQL sink for node {:?} recovered after {} failed attempts over {:.1} s; \
                 checkpoint at LSN {}",
                self.options.node,
                failing.attempts,
                failing.since.elapsed().as_secs_f64(),
                self.checkpoint_lsn
            );
        }
    }

    /// Sleeps `ms`; false if cancelled first.
    async fn sleep(&self, ms: u64) -> bool {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => true,
            () = self.cancel.cancelled() => false,
        }
    }
}

/// Wall-clock Unix milliseconds, 0 before 1970.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}
