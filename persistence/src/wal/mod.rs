//! The write-ahead log: the server appends records while it holds a shard lock (no I/O there,
//! only a short queue lock), and one writer thread ("cartd-wal") writes everything queued
//! with one write call, syncing as the fsync policy says (group commit under `always`).
//!
//! This module owns the queue, the LSN counters and the public face; [`writer`] owns the
//! thread and the files it writes; [`reader`] follows the log for the PostgreSQL sink;
//! [`segment`] names and lists the files. Recovery (`crate::recovery`) reads them back.

mod reader;
pub(crate) mod segment;
pub mod tip;
mod waiters;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use crate::record::{self, ChangeRef, Lsn, RecordFormat};
pub use reader::WalReader;
use segment::{
    create_segment, list_segments, SegmentHeader, SegmentStart, SEGMENT_HEADER_BYTES_MAX,
};
use tip::{Tip, TipFile};

/// Default size at which the writer starts a new segment.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Bytes appended and not yet written past which writers are held back
/// ([`Wal::wait_for_room`]): the queue is memory, and a disk that cannot keep up must not
/// turn into an unbounded heap.
pub const QUEUE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// When the log is synced to disk, as Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsyncPolicy {
    /// After every write, before anyone is told the record is durable (group commit).
    Always,
    /// At most once a second when something was written since the last sync.
    EverySec,
    /// Never, except at segment rotation, `sync` and close: the OS decides.
    No,
}

impl FsyncPolicy {
    /// The name as `appendfsync` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fsync policy name that is none of `always`, `everysec`, `no`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fsync policy {0:?}: expected always, everysec or no")]
pub struct UnknownFsyncPolicy(pub String);

impl FromStr for FsyncPolicy {
    type Err = UnknownFsyncPolicy;

    /// Parses `always`, `everysec` or `no`, in any case.
    fn from_str(name: &str) -> Result<FsyncPolicy, UnknownFsyncPolicy> {
        match name.to_ascii_lowercase().as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::EverySec),
            "no" => Ok(FsyncPolicy::No),
            _ => Err(UnknownFsyncPolicy(name.to_string())),
        }
    }
}

/// How to open the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// The directory holding the segment files (created if missing).
    pub dir: PathBuf,
    /// When to sync.
    pub fsync: FsyncPolicy,
    /// A segment is closed and a new one started once the next record would take it past
    /// this size (a single larger record still gets a segment of its own).
    pub segment_bytes: u64,
}

impl WalOptions {
    /// Options for `dir` with the default segment size.
    pub fn new(dir: impl Into<PathBuf>, fsync: FsyncPolicy) -> WalOptions {
        WalOptions {
            dir: dir.into(),
            fsync,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
        }
    }
}

/// The log's state for `INFO persistence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalStats {
    /// The fsync policy.
    pub fsync: FsyncPolicy,
    /// Segment files on disk.
    pub segments: usize,
    /// Their total size.
    pub bytes_on_disk: u64,
    /// The first LSN of the oldest segment on disk (0 when there is none).
    pub oldest_lsn: Lsn,
    /// The last LSN handed out by `append`.
    pub last_lsn: Lsn,
    /// Every record up to this LSN is in the files.
    pub written_lsn: Lsn,
    /// Every record up to this LSN is synced to disk.
    pub durable_lsn: Lsn,
    /// Bytes appended but not yet written.
    pub queued_bytes: u64,
    /// Write calls so far.
    pub writes: u64,
    /// Syncs so far.
    pub fsyncs: u64,
    /// Write or sync failures so far.
    pub errors: u64,
    /// Whether the last write or sync succeeded.
    pub last_write_ok: bool,
    /// The last write or sync error, if there ever was one.
    pub last_error: Option<String>,
}

/// The write-ahead log. Share it behind an `Arc`; every method takes `&self`.
pub struct Wal {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The writer's state, shared with the thread for inline writes.
    writer: Arc<Mutex<writer::Writer>>,
}

/// Rounds of inline writing one `write_queued` call does for others' records before it
/// leaves a still refilling queue to the thread.
const INLINE_ROUNDS_MAX: usize = 4;

/// What the appenders, the writer thread and the readers share.
struct Shared {
    dir: PathBuf,
    fsync: FsyncPolicy,
    segment_bytes: u64,
    queue: Mutex<Queue>,
    /// Wakes the writer: something was queued, a sync was asked for, or close.
    queue_ready: Condvar,
    last_lsn: AtomicU64,
    written_lsn: Arc<AtomicU64>,
    durable_lsn: AtomicU64,
    /// The durable LSN for async waiters.
    durable_watch: watch::Sender<Lsn>,
    /// Connections waiting to acknowledge changes ([`Wal::wait_ack`]).
    ack_waiters: waiters::Waiters,
    /// Bytes the writer has taken from the queue and not yet written.
    in_flight_bytes: AtomicU64,
    /// The first LSN of the segment being written, which is never removed.
    active_first_lsn: AtomicU64,
    writes: AtomicU64,
    fsyncs: AtomicU64,
    /// The longest fsync since [`Wal::take_slowest_fsync_us`] last read it, microseconds
    /// (the server's latency monitor samples it).
    slowest_fsync_us: AtomicU64,
    progress: Mutex<Progress>,
    /// Wakes `sync` callers: durable LSN moved, an error, or the writer stopped.
    progress_changed: Condvar,
    /// Whether the last write or sync failed, for writers to check without a lock.
    failing: std::sync::atomic::AtomicBool,
    /// Wakes writers held back by a full queue: the writer took the queue.
    room: tokio::sync::Notify,
}

/// Records appended but not yet taken by the writer.
struct Queue {
    /// Frames back to back, LSNs consecutive from the writer's written LSN + 1.
    buffer: Vec<u8>,
    next_lsn: Lsn,
    /// The highest LSN someone called `sync` or `wait_durable` for.
    sync_requested: Lsn,
    /// When the writer last synced, for the thread's `everysec` deadline.
    last_sync: std::time::Instant,
    closing: bool,
    warned_after_close: bool,
}

/// The writer's health, for `sync` callers and INFO.
#[derive(Default)]
struct Progress {
    errors: u64,
    failing: bool,
    last_error: Option<String>,
    /// The writer thread has ended.
    stopped: bool,
    /// Why it ended with records unwritten.
    exit_error: Option<String>,
}

impl Shared {
    /// Counts one fsync that began at `started`, and keeps the longest for the latency
    /// monitor.
    fn count_fsync(&self, started: std::time::Instant) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.slowest_fsync_us.fetch_max(took_us, Ordering::Relaxed);
    }

    /// Publishes that every record up to `lsn` is written to its file.
    fn publish_written(&self, lsn: Lsn) {
        self.written_lsn.store(lsn, Ordering::Release);
        if self.fsync != FsyncPolicy::Always {
            self.ack_waiters.wake_up_to(lsn);
        }
    }

    /// Publishes a new durable LSN to atomic readers, async waiters and `sync` callers.
    fn publish_durable(&self, lsn: Lsn) {
        self.durable_lsn.store(lsn, Ordering::Release);
        self.durable_watch.send_replace(lsn);
        if self.fsync == FsyncPolicy::Always {
            self.ack_waiters.wake_up_to(lsn);
        }
        let _progress = self.progress.lock();
        self.progress_changed.notify_all();
    }
}

impl Wal {
    /// Opens the log in `options.dir` for records numbered from `next_lsn` on (see
    /// [`Wal::open_after`]), when the segments on disk hold records up to `next_lsn - 1`.
    pub fn open(options: WalOptions, next_lsn: Lsn) -> io::Result<Wal> {
        Wal::open_after(options, next_lsn, next_lsn - 1)
    }

    /// Opens the log in `options.dir` for records numbered from `next_lsn` on: starts a new
    /// segment named by `next_lsn` (its header names the newest segment before it), notes it
    /// in the tip file with `log_end_lsn`, the last LSN the segments on disk hold (recovery
    /// read them), and starts the writer thread. Existing segments are left as they are; one
    /// that already holds `next_lsn` or later is refused.
    pub fn open_after(options: WalOptions, next_lsn: Lsn, log_end_lsn: Lsn) -> io::Result<Wal> {
        assert!(next_lsn >= 1, "LSNs start at 1");
        assert!(log_end_lsn < next_lsn, "new records come after the log's");
        fs::create_dir_all(&options.dir)
            .map_err(|error| segment::with_path(&options.dir, error))?;
        let previous_first_lsn = check_no_later_segment(&options.dir, next_lsn)?;
        let header = SegmentHeader {
            start: SegmentStart::Open,
            first_lsn: next_lsn,
            format: RecordFormat::V2,
            previous_first_lsn,
        };
        let (file, path) = create_segment(&options.dir, header)?;
        let tip = Tip {
            newest_first_lsn: next_lsn,
            written_lsn: log_end_lsn,
        };
        let tip = TipFile::open(&options.dir, tip)?;
        let last_lsn = next_lsn - 1;
        let (durable_watch, _) = watch::channel(last_lsn);
        let shared = Arc::new(Shared {
            dir: options.dir.clone(),
            fsync: options.fsync,
            segment_bytes: options.segment_bytes,
            queue: Mutex::new(Queue {
                buffer: Vec::new(),
                next_lsn,
                sync_requested: 0,
                last_sync: std::time::Instant::now(),
                closing: false,
                warned_after_close: false,
            }),
            queue_ready: Condvar::new(),
            last_lsn: AtomicU64::new(last_lsn),
            written_lsn: Arc::new(AtomicU64::new(last_lsn)),
            durable_lsn: AtomicU64::new(last_lsn),
            durable_watch,
            ack_waiters: waiters::Waiters::default(),
            in_flight_bytes: AtomicU64::new(0),
            active_first_lsn: AtomicU64::new(next_lsn),
            writes: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            slowest_fsync_us: AtomicU64::new(0),
            progress: Mutex::new(Progress::default()),
            progress_changed: Condvar::new(),
            failing: std::sync::atomic::AtomicBool::new(false),
            room: tokio::sync::Notify::new(),
        });
        let (thread, writer) = writer::spawn(shared.clone(), file, path, next_lsn, tip)?;
        Ok(Wal {
            shared,
            thread: Mutex::new(Some(thread)),
            writer,
        })
    }

    /// Queues one record of `changes` (applied together) and returns its LSN. No I/O: callers
    /// hold a shard lock. LSNs are consecutive in call order.
    pub fn append(&self, changes: &[ChangeRef<'_>]) -> Lsn {
        self.queue_record(changes, false)
    }

    /// As [`Wal::append`], for a caller that calls [`Wal::write_queued`] once its locks are
    /// released: under `everysec` and `no` the writer thread is not woken for it.
    pub fn append_deferred(&self, changes: &[ChangeRef<'_>]) -> Lsn {
        self.queue_record(changes, true)
    }

    fn queue_record(&self, changes: &[ChangeRef<'_>], deferred: bool) -> Lsn {
        let mut queue = self.shared.queue.lock();
        let lsn = queue.next_lsn;
        // The writer sleeps only on an empty queue: only its filling needs waking it (no
        // futex call per append while it is busy writing).
        let wake =
            queue.buffer.is_empty() && !(deferred && self.shared.fsync != FsyncPolicy::Always);
        record::encode_frame(lsn, changes, &mut queue.buffer);
        queue.next_lsn = lsn + 1;
        self.shared.last_lsn.store(lsn, Ordering::Release);
        if queue.closing && !queue.warned_after_close {
            queue.warned_after_close = true;
            tracing::error!(
                lsn,
                "a record was appended after the log was closed; it is not written"
            );
        }
        drop(queue);
        if wake {
            self.shared.queue_ready.notify_one();
        }
        lsn
    }

    /// The last LSN handed out (0 before the first record ever).
    pub fn last_lsn(&self) -> Lsn {
        self.shared.last_lsn.load(Ordering::Acquire)
    }

    /// Every record up to this LSN is in the segment files (perhaps not yet synced).
    pub fn written_lsn(&self) -> Lsn {
        self.shared.written_lsn.load(Ordering::Acquire)
    }

    /// Every record up to this LSN is synced to disk.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable_lsn.load(Ordering::Acquire)
    }

    /// Bytes appended and not yet written.
    pub fn queued_bytes(&self) -> u64 {
        let queued = self.shared.queue.lock().buffer.len() as u64;
        queued + self.shared.in_flight_bytes.load(Ordering::Acquire)
    }

    /// Whether the last write or sync failed (the writer keeps retrying): new changes must be
    /// refused until it succeeds again.
    pub fn failing(&self) -> bool {
        self.shared.failing.load(Ordering::Acquire)
    }

    /// The last write or sync error, while the log is failing.
    pub fn failure(&self) -> Option<String> {
        if !self.failing() {
            return None;
        }
        self.shared.progress.lock().last_error.clone()
    }

    /// Waits while more than [`QUEUE_BYTES_MAX`] bytes are appended and not yet written, so
    /// a disk that cannot keep up holds writers back instead of growing the queue.
    pub async fn wait_for_room(&self) {
        loop {
            if self.queued_bytes() <= QUEUE_BYTES_MAX {
                return;
            }
            let room = self.shared.room.notified();
            // The writer may have taken the queue between the check and the subscription: look
            // again every few milliseconds whatever happens.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(5), room).await;
        }
    }

    /// The fsync policy the log was opened with.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.shared.fsync
    }

    /// The directory of the segment files.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Returns once every record up to `lsn` is synced, without blocking a runtime thread.
    /// Meant for `always`; under the other policies it asks the writer for a sync so that it
    /// still returns promptly. While writes fail it keeps waiting: the writer retries.
    pub async fn wait_durable(&self, lsn: Lsn) {
        if self.durable_lsn() >= lsn {
            return;
        }
        let mut durable = self.shared.durable_watch.subscribe();
        if self.shared.fsync != FsyncPolicy::Always {
            self.request_sync(lsn);
        }
        // The sender lives in `shared`, which `self` keeps alive: this cannot fail.
        let _ = durable.wait_for(|durable_lsn| *durable_lsn >= lsn).await;
    }

    /// Under `everysec` and `no`, writes what is queued on this thread, unless the writer is
    /// busy: its holder then writes it. Leaves to the thread what needs it (a rotation, a
    /// retry, an owed sync) and a queue that keeps refilling. No-op under `always`, whose
    /// syncs the thread does. Call it with no lock held: it does I/O.
    pub fn write_queued(&self) {
        if self.shared.fsync == FsyncPolicy::Always {
            return;
        }
        for _ in 0..INLINE_ROUNDS_MAX {
            let Some(mut writer) = self.writer.try_lock() else {
                return;
            };
            let outcome = writer.write_inline();
            let queue = self.shared.queue.lock();
            if outcome == writer::Inline::NeedsThread {
                self.shared.queue_ready.notify_one();
                return;
            }
            let more = !queue.buffer.is_empty();
            // Let go of the writer with the queue locked: what was queued meanwhile is in
            // `more`, or its appender finds the writer free.
            drop(writer);
            drop(queue);
            if !more {
                return;
            }
        }
        let _queue = self.shared.queue.lock();
        self.shared.queue_ready.notify_one();
    }

    /// The last LSN whose change may be acknowledged to a client: synced under `always`,
    /// written to its file (so a process crash cannot lose it) under `everysec` and `no`.
    pub fn ack_lsn(&self) -> Lsn {
        match self.shared.fsync {
            FsyncPolicy::Always => self.durable_lsn(),
            FsyncPolicy::EverySec | FsyncPolicy::No => self.written_lsn(),
        }
    }

    /// Returns once the change at `lsn` may be acknowledged ([`Wal::ack_lsn`]), without
    /// blocking a runtime thread. While writes fail it keeps waiting: the writer retries.
    pub async fn wait_ack(&self, lsn: Lsn) {
        self.shared.ack_waiters.wait(lsn, || self.ack_lsn()).await;
    }

    /// Blocks until everything appended so far is written and synced; returns that LSN.
    /// Fails when a write or sync fails meanwhile (the writer keeps retrying) or the writer
    /// has stopped.
    pub fn sync(&self) -> io::Result<Lsn> {
        let target = self.last_lsn();
        let mut progress = self.shared.progress.lock();
        let errors_before = progress.errors;
        if self.durable_lsn() < target {
            self.request_sync(target);
        }
        loop {
            if self.durable_lsn() >= target {
                return Ok(target);
            }
            if progress.errors != errors_before {
                let error = progress.last_error.clone().unwrap_or_default();
                return Err(io::Error::other(format!(
                    "the log could not be synced: {error}"
                )));
            }
            if progress.stopped {
                return Err(io::Error::other(format!(
                    "the log writer has stopped with records up to LSN {target} not synced"
                )));
            }
            self.shared.progress_changed.wait(&mut progress);
        }
    }

    /// Asks the writer to sync at least up to `lsn`.
    fn request_sync(&self, lsn: Lsn) {
        let mut queue = self.shared.queue.lock();
        queue.sync_requested = queue.sync_requested.max(lsn);
        drop(queue);
        self.shared.queue_ready.notify_one();
    }

    /// The longest fsync of the log since the last call, microseconds (0: none), and starts
    /// over: the latency monitor's `wal-fsync` event reads it a few times a second.
    pub fn take_slowest_fsync_us(&self) -> u64 {
        self.shared.slowest_fsync_us.swap(0, Ordering::Relaxed)
    }

    /// The log's state for INFO. Lists the directory, so not for hot paths.
    pub fn stats(&self) -> WalStats {
        let (segments, bytes_on_disk, oldest_lsn) = match list_segments(&self.shared.dir) {
            Ok(files) => {
                let bytes = files
                    .iter()
                    .filter_map(|file| fs::metadata(&file.path).ok())
                    .map(|metadata| metadata.len())
                    .sum();
                (
                    files.len(),
                    bytes,
                    files.first().map_or(0, |file| file.first_lsn),
                )
            }
            Err(_) => (0, 0, 0),
        };
        let progress = self.shared.progress.lock();
        WalStats {
            fsync: self.shared.fsync,
            segments,
            bytes_on_disk,
            oldest_lsn,
            last_lsn: self.last_lsn(),
            written_lsn: self.written_lsn(),
            durable_lsn: self.durable_lsn(),
            queued_bytes: self.queued_bytes(),
            writes: self.shared.writes.load(Ordering::Relaxed),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            errors: progress.errors,
            last_write_ok: !progress.failing,
            last_error: progress.last_error.clone(),
        }
    }

    /// Deletes the segments all of whose records have LSN below `lsn` (the next segment
    /// starts at or below `lsn`), never the one being written. Returns how many went.
    pub fn remove_segments_below(&self, lsn: Lsn) -> io::Result<usize> {
        let dir = &self.shared.dir;
        let files = list_segments(dir).map_err(|error| segment::with_path(dir, error))?;
        let active_first_lsn = self.shared.active_first_lsn.load(Ordering::Acquire);
        let mut removed = 0;
        for pair in files.windows(2) {
            let (file, next) = (&pair[0], &pair[1]);
            if next.first_lsn > lsn || file.first_lsn >= active_first_lsn {
                break;
            }
            match fs::remove_file(&file.path) {
                Ok(()) => removed += 1,
                // Another release (SAVE's and the periodic one may overlap) got there first.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(segment::with_path(&file.path, error)),
            }
        }
        if removed > 0 {
            segment::sync_dir(dir).map_err(|error| segment::with_path(dir, error))?;
        }
        Ok(removed)
    }

    /// A reader that follows this log from its files.
    pub fn reader(&self) -> WalReader {
        WalReader::new(self.shared.dir.clone(), self.written_lsn_counter())
    }

    /// The written-LSN counter the writer publishes, for a [`WalReader`] made elsewhere.
    pub fn written_lsn_counter(&self) -> Arc<AtomicU64> {
        self.shared.written_lsn.clone()
    }

    /// Writes and syncs everything appended, then stops the writer thread. Later calls
    /// return at once. Fails when records could not be written (after retrying a while).
    pub fn close(&self) -> io::Result<()> {
        self.shared.queue.lock().closing = true;
        self.shared.queue_ready.notify_one();
        if let Some(thread) = self.thread.lock().take() {
            thread
                .join()
                .map_err(|_| io::Error::other("the log writer thread panicked"))?;
        }
        match &self.shared.progress.lock().exit_error {
            Some(error) => Err(io::Error::other(error.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(%error, "closing the log");
        }
    }
}

/// Refuses to open at `next_lsn` when a segment already holds records from there on; an
/// empty segment of that very name (left by the last run) is overwritten. Returns the first
/// LSN of the newest segment that stays before the new one (0 for none).
fn check_no_later_segment(dir: &Path, next_lsn: Lsn) -> io::Result<Lsn> {
    let files = list_segments(dir).map_err(|error| segment::with_path(dir, error))?;
    let Some(newest) = files.last() else {
        return Ok(0);
    };
    let reused = newest.first_lsn == next_lsn
        && fs::metadata(&newest.path)?.len() <= SEGMENT_HEADER_BYTES_MAX as u64;
    if newest.first_lsn < next_lsn {
        return Ok(newest.first_lsn);
    }
    if reused {
        let before = files
            .len()
            .checked_sub(2)
            .map_or(0, |at| files[at].first_lsn);
        return Ok(before);
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} already holds records from LSN {}; opening the log at LSN {next_lsn} would number \
             records twice",
            newest.path.display(),
            newest.first_lsn
        ),
    ))
}
