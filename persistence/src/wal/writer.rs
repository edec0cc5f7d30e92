//! The writer: takes the whole queue at once, writes it with one call per segment it lands
//! in, syncs as the policy says, publishes the written and durable LSNs, rotates segments,
//! and retries failed writes without ever dropping a queued record.
//!
//! Its state is behind a lock that two kinds of caller take. The writer thread does every
//! sync, rotation and retry, and all writing under `always`. Under `everysec` and `no` a
//! connection that has just queued records writes the queue itself when the lock is free
//! ([`Writer::write_inline`]), as Redis writes its AOF in its event loop before replying: its
//! replies need the write, and handing every small write to a thread and back cost a third of
//! the throughput in thread wake-ups. Whoever holds the lock when records are queued writes
//! them: an appender that finds it taken leaves them, and the holder looks at the queue again
//! before it lets go (under the queue's lock, so that look cannot miss them).

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::segment::{self, create_segment, SegmentHeader, SegmentStart, SEGMENT_HEADER_BYTES};
use super::tip::{TipFile, TIP_INTERVAL_MS};
use parking_lot::Mutex;

use super::{FsyncPolicy, Queue, Shared};
use crate::record::{Lsn, RecordFormat, FRAME_HEADER_BYTES};

/// How long the writer waits after a failed write or sync before trying again.
const RETRY_DELAY_MS: u64 = 100;

/// Under `everysec`, the most time between a write and its sync.
const EVERYSEC_INTERVAL_MS: u64 = 1000;

/// Failed attempts after `close` before the writer gives up (about 5 s of retrying).
const CLOSE_ATTEMPTS_MAX: u32 = 50;

/// Failures between two error log lines while writes keep failing (about 10 s).
const FAILURES_PER_LOG_LINE: u32 = 100;

/// A taken queue buffer bigger than this is freed after writing, not kept for reuse.
const BUFFER_KEEP_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Starts the writer thread on `file`, the fresh segment starting at `next_lsn`; returns it
/// and the writer's state, for inline writes.
pub(super) fn spawn(
    shared: Arc<Shared>,
    file: File,
    path: PathBuf,
    next_lsn: Lsn,
    tip: TipFile,
) -> io::Result<(JoinHandle<()>, Arc<Mutex<Writer>>)> {
    let writer = Writer {
        shared: shared.clone(),
        segment: Segment {
            file,
            path,
            first_lsn: next_lsn,
            bytes: SEGMENT_HEADER_BYTES as u64,
            records: 0,
            reposition: false,
        },
        pending: Vec::new(),
        pending_offset: 0,
        written_lsn: next_lsn - 1,
        durable_lsn: next_lsn - 1,
        last_sync: Instant::now(),
        failures: 0,
        tip,
        tip_noted: Instant::now(),
    };
    let core = Arc::new(Mutex::new(writer));
    let thread_core = core.clone();
    let thread = thread::Builder::new()
        .name("cartd-wal".into())
        .spawn(move || run(&thread_core, &shared))?;
    Ok((thread, core))
}

/// The segment being written.
struct Segment {
    file: File,
    path: PathBuf,
    first_lsn: Lsn,
    /// Bytes known good: the header and every record written successfully.
    bytes: u64,
    records: u64,
    /// A write failed part way: cut the file back to `bytes` before the next write.
    reposition: bool,
}

/// The writer's state.
pub(super) struct Writer {
    shared: Arc<Shared>,
    segment: Segment,
    /// Frames taken from the queue; those before `pending_offset` are written.
    pending: Vec<u8>,
    pending_offset: usize,
    written_lsn: Lsn,
    durable_lsn: Lsn,
    last_sync: Instant,
    /// Consecutive failed attempts.
    failures: u32,
    /// How far the log got, for the next start to check against.
    tip: TipFile,
    /// When the written LSN was last noted in it.
    tip_noted: Instant,
}

/// What the writer thread does next.
enum Next {
    /// Write what was taken and sync if due.
    Work {
        /// The highest LSN a `sync` caller waits for.
        sync_requested: Lsn,
        closing: bool,
    },
    /// Nothing after all: an inline write took care of it.
    Idle,
    /// Closed, and everything is written and synced.
    Exit,
}

/// How an inline write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inline {
    /// Everything taken is written.
    Done,
    /// The thread must go on: a rotation is due, a write failed (or writes are failing),
    /// or an `everysec` sync is now owed.
    NeedsThread,
}

/// Marks the writer stopped however its thread ends, so `sync` callers never wait forever.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        let mut progress = self.0.progress.lock();
        progress.stopped = true;
        if thread::panicking() && progress.exit_error.is_none() {
            progress.exit_error = Some("the log writer thread panicked".into());
        }
        self.0.progress_changed.notify_all();
    }
}

/// The thread's loop: wait for work, write, sync; retry failures until closed.
fn run(core: &Mutex<Writer>, shared: &Arc<Shared>) {
    let _stop_guard = StopGuard(shared.clone());
    let mut held = None;
    loop {
        {
            let mut queue = shared.queue.lock();
            // Let go of the writer only with the queue locked: records queued while it was
            // held are seen below.
            drop(held.take());
            while !work_visible(shared, &queue) {
                match sync_deadline(shared, &queue) {
                    Some(deadline) => {
                        shared.queue_ready.wait_until(&mut queue, deadline);
                    }
                    None => shared.queue_ready.wait(&mut queue),
                }
            }
        }
        let mut writer = core.lock();
        let (sync_requested, closing) = match writer.take_work() {
            Next::Exit => {
                writer.note_tip(true);
                return;
            }
            Next::Idle => {
                held = Some(writer);
                continue;
            }
            Next::Work {
                sync_requested,
                closing,
            } => (sync_requested, closing),
        };
        match writer.write_and_sync(sync_requested, closing) {
            Ok(()) => {
                writer.succeeded();
                held = Some(writer);
            }
            Err(error) => {
                writer.failed(&error);
                if closing && writer.failures >= CLOSE_ATTEMPTS_MAX {
                    writer.give_up(&error);
                    return;
                }
                drop(writer);
                thread::sleep(Duration::from_millis(RETRY_DELAY_MS));
            }
        }
    }
}

/// Whether the thread may have something to do, from what it can see without the writer's
/// lock: records queued or taken and unwritten, a sync owed, failing writes, or close.
fn work_visible(shared: &Shared, queue: &Queue) -> bool {
    let durable = shared.durable_lsn.load(Ordering::Acquire);
    let unsynced = durable < shared.written_lsn.load(Ordering::Acquire);
    let has_data = !queue.buffer.is_empty() || shared.in_flight_bytes.load(Ordering::Acquire) > 0;
    let sync_due = unsynced
        && (queue.sync_requested > durable
            || (shared.fsync == FsyncPolicy::EverySec
                && queue.last_sync.elapsed() >= Duration::from_millis(EVERYSEC_INTERVAL_MS)));
    has_data || sync_due || queue.closing || shared.failing.load(Ordering::Acquire)
}

/// When the thread must wake up by itself to sync, if ever.
fn sync_deadline(shared: &Shared, queue: &Queue) -> Option<Instant> {
    let unsynced =
        shared.durable_lsn.load(Ordering::Acquire) < shared.written_lsn.load(Ordering::Acquire);
    (unsynced && shared.fsync == FsyncPolicy::EverySec)
        .then(|| queue.last_sync + Duration::from_millis(EVERYSEC_INTERVAL_MS))
}

impl Writer {
    /// With the writer's lock held: whether there is anything to write or sync after all,
    /// taking the whole queue if so.
    fn take_work(&mut self) -> Next {
        let shared = self.shared.clone();
        let mut queue = shared.queue.lock();
        let unsynced = self.durable_lsn < self.written_lsn;
        let has_data = !queue.buffer.is_empty() || self.pending_offset < self.pending.len();
        let sync_due = unsynced
            && (queue.sync_requested > self.durable_lsn || queue.closing || self.sync_due());
        if !(has_data || sync_due || self.failures > 0) {
            return if queue.closing {
                Next::Exit
            } else {
                Next::Idle
            };
        }
        self.take_queue(&mut queue);
        Next::Work {
            sync_requested: queue.sync_requested,
            closing: queue.closing,
        }
    }

    /// Moves the queued records behind those taken before.
    fn take_queue(&mut self, queue: &mut Queue) {
        if queue.buffer.is_empty() {
            return;
        }
        if self.pending.is_empty() {
            // The emptied buffer goes back to the queue with its capacity.
            std::mem::swap(&mut queue.buffer, &mut self.pending);
        } else {
            self.pending.extend_from_slice(&queue.buffer);
            queue.buffer.clear();
        }
        self.publish_in_flight();
        self.shared.room.notify_waiters();
    }

    /// Under `everysec` and `no`, on an appender's thread: takes the queue and writes it, as
    /// far as the current segment goes. Rotating, retrying and syncing are left to the thread.
    pub(super) fn write_inline(&mut self) -> Inline {
        if self.failures > 0 {
            return Inline::NeedsThread;
        }
        let shared = self.shared.clone();
        self.take_queue(&mut shared.queue.lock());
        let was_synced = self.durable_lsn == self.written_lsn;
        while self.pending_offset < self.pending.len() {
            let first_frame = frame_bytes(&self.pending, self.pending_offset);
            if self.needs_rotation(first_frame) {
                return Inline::NeedsThread;
            }
            let (end, frames) = self.fitting_piece();
            if let Err(error) = self.write_piece(end, frames) {
                self.failed(&segment::with_path(&self.segment.path, error));
                return Inline::NeedsThread;
            }
            self.succeeded();
        }
        self.finish_pending();
        let owes_sync = self.shared.fsync == FsyncPolicy::EverySec
            && was_synced
            && self.durable_lsn < self.written_lsn;
        if owes_sync {
            Inline::NeedsThread
        } else {
            Inline::Done
        }
    }

    /// Under `everysec`, whether the interval since the last sync is over.
    fn sync_due(&self) -> bool {
        self.shared.fsync == FsyncPolicy::EverySec
            && self.last_sync.elapsed() >= Duration::from_millis(EVERYSEC_INTERVAL_MS)
    }

    /// Writes everything taken, then syncs if the policy, a caller or close wants it.
    fn write_and_sync(&mut self, sync_requested: Lsn, closing: bool) -> io::Result<()> {
        while self.pending_offset < self.pending.len() {
            let (end, frames) = self.next_piece()?;
            self.write_piece(end, frames)
                .map_err(|error| segment::with_path(&self.segment.path, error))?;
        }
        self.finish_pending();
        let unsynced = self.durable_lsn < self.written_lsn;
        let wanted = self.shared.fsync == FsyncPolicy::Always
            || sync_requested > self.durable_lsn
            || closing
            || self.failures > 0
            || self.sync_due();
        if unsynced && wanted {
            self.sync()
                .map_err(|error| segment::with_path(&self.segment.path, error))?;
        }
        Ok(())
    }

    /// Empties the taken buffer once all of it is written.
    fn finish_pending(&mut self) {
        self.pending.clear();
        self.pending_offset = 0;
        if self.pending.capacity() > BUFFER_KEEP_BYTES_MAX {
            self.pending = Vec::new();
        }
    }

    /// Whether a frame of `frame` bytes would take the current segment past its size (a
    /// segment with no record yet takes it anyway).
    fn needs_rotation(&self, frame: usize) -> bool {
        self.segment.records > 0 && self.segment.bytes + frame as u64 > self.shared.segment_bytes
    }

    /// The end offset and frame count of the next write: as many whole frames as fit in the
    /// current segment, at least one; rotates first when not even one fits.
    fn next_piece(&mut self) -> io::Result<(usize, u64)> {
        if self.needs_rotation(frame_bytes(&self.pending, self.pending_offset)) {
            self.rotate()?;
        }
        Ok(self.fitting_piece())
    }

    /// As many whole frames from `pending_offset` as fit in the current segment, at least one.
    fn fitting_piece(&self) -> (usize, u64) {
        let room = self.shared.segment_bytes.saturating_sub(self.segment.bytes);
        let mut end = self.pending_offset;
        let mut frames = 0;
        while end < self.pending.len() {
            let frame = frame_bytes(&self.pending, end);
            if frames > 0 && (end + frame - self.pending_offset) as u64 > room {
                break;
            }
            end += frame;
            frames += 1;
        }
        (end, frames)
    }

    /// Writes `pending[pending_offset..end]` (`frames` records) with one call; under `always`
    /// syncs it too. Only then counts it written, so a failure leaves it to be written again
    /// at the same place: the kernel may have dropped pages whose sync failed.
    fn write_piece(&mut self, end: usize, frames: u64) -> io::Result<()> {
        let segment = &mut self.segment;
        if segment.reposition {
            segment.file.set_len(segment.bytes)?;
            segment.file.seek(SeekFrom::Start(segment.bytes))?;
            segment.reposition = false;
        }
        let piece = &self.pending[self.pending_offset..end];
        segment.reposition = true;
        segment.file.write_all(piece)?;
        self.shared.writes.fetch_add(1, Ordering::Relaxed);
        if self.shared.fsync == FsyncPolicy::Always {
            let started = Instant::now();
            segment.file.sync_data()?;
            self.shared.count_fsync(started);
            self.last_sync = Instant::now();
        }
        segment.reposition = false;
        segment.bytes += piece.len() as u64;
        segment.records += frames;
        self.pending_offset = end;
        self.publish_in_flight();
        self.written_lsn += frames;
        if self.tip_noted.elapsed() >= Duration::from_millis(TIP_INTERVAL_MS) {
            self.note_tip(false);
        }
        // Clear the failing state before anyone waiting is told: a `sync` that returns Ok
        // must find the log healthy.
        self.succeeded();
        self.shared.publish_written(self.written_lsn);
        if self.shared.fsync == FsyncPolicy::Always {
            self.durable_lsn = self.written_lsn;
            self.shared.publish_durable(self.durable_lsn);
        }
        Ok(())
    }

    /// Syncs the current segment and publishes everything written as durable.
    fn sync(&mut self) -> io::Result<()> {
        let started = Instant::now();
        self.segment.file.sync_data()?;
        self.shared.count_fsync(started);
        self.last_sync = Instant::now();
        self.shared.queue.lock().last_sync = self.last_sync;
        self.succeeded();
        self.durable_lsn = self.written_lsn;
        self.shared.publish_durable(self.durable_lsn);
        Ok(())
    }

    /// Syncs and leaves the full segment, and starts the next one at the next LSN.
    fn rotate(&mut self) -> io::Result<()> {
        let old_path = self.segment.path.clone();
        if self.segment.reposition {
            let bytes = self.segment.bytes;
            self.segment
                .file
                .set_len(bytes)
                .map_err(|error| segment::with_path(&old_path, error))?;
        }
        if self.durable_lsn < self.written_lsn {
            self.sync()
                .map_err(|error| segment::with_path(&old_path, error))?;
        }
        let header = SegmentHeader {
            start: SegmentStart::Rotation,
            first_lsn: self.written_lsn + 1,
            format: RecordFormat::V2,
            previous_first_lsn: self.segment.first_lsn,
        };
        let (file, path) = create_segment(&self.shared.dir, header)?;
        // The tip names the newest segment, synced: a start that cannot find it knows the log
        // lost its end.
        self.tip.started_segment(header.first_lsn)?;
        tracing::debug!(path = %path.display(), "log segment started");
        self.segment = Segment {
            file,
            path,
            first_lsn: header.first_lsn,
            bytes: SEGMENT_HEADER_BYTES as u64,
            records: 0,
            reposition: false,
        };
        self.shared
            .active_first_lsn
            .store(self.segment.first_lsn, Ordering::Release);
        Ok(())
    }

    /// Notes the written LSN in the tip file (`sync` on close). A failure only costs the next
    /// start its check of the log's end, so it is logged and the log goes on.
    fn note_tip(&mut self, sync: bool) {
        self.tip_noted = Instant::now();
        if let Err(error) = self.tip.written(self.written_lsn, sync) {
            tracing::warn!(%error, "cannot note the log's end in its tip file");
        }
    }

    /// Tells INFO how many taken bytes are still unwritten.
    fn publish_in_flight(&self) {
        let in_flight = (self.pending.len() - self.pending_offset) as u64;
        self.shared
            .in_flight_bytes
            .store(in_flight, Ordering::Release);
    }

    /// After a successful round: clears the failing state, if there was one.
    fn succeeded(&mut self) {
        if self.failures == 0 {
            return;
        }
        tracing::info!(failures = self.failures, "the log is being written again");
        self.failures = 0;
        self.shared.progress.lock().failing = false;
        self.shared.failing.store(false, Ordering::Release);
    }

    /// Remembers a failed write or sync for INFO and `sync` callers, and logs it.
    fn failed(&mut self, error: &io::Error) {
        self.failures += 1;
        let message = error.to_string();
        if self.failures % FAILURES_PER_LOG_LINE == 1 {
            tracing::error!(
                error = %message,
                failures = self.failures,
                queued_bytes = self.pending.len() - self.pending_offset,
                "cannot write the log; retrying every {RETRY_DELAY_MS} ms, records stay queued"
            );
        }
        let mut progress = self.shared.progress.lock();
        progress.errors += 1;
        progress.failing = true;
        progress.last_error = Some(message);
        self.shared.failing.store(true, Ordering::Release);
        self.shared.progress_changed.notify_all();
    }

    /// Closing, and writes keep failing: stops, saying what was not written.
    fn give_up(&mut self, error: &io::Error) {
        let unwritten =
            self.pending.len() - self.pending_offset + self.shared.queue.lock().buffer.len();
        let message = format!(
            "the log could not be written before closing ({error}); {unwritten} bytes of \
             records after LSN {} are not written, and records after LSN {} are not synced",
            self.written_lsn, self.durable_lsn
        );
        tracing::error!("{message}");
        self.shared.progress.lock().exit_error = Some(message);
    }
}

/// The size of the frame at `offset` in a buffer of frames this process encoded.
fn frame_bytes(frames: &[u8], offset: usize) -> usize {
    let length: [u8; 4] = frames[offset..offset + 4]
        .try_into()
        .expect("the queue holds whole frames, each starting with a 4-byte length");
    FRAME_HEADER_BYTES + u32::from_le_bytes(length) as usize
}
