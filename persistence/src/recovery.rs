//! Reading the log back at start: every segment in LSN order, each record's checksum, LSNs
//! rising by one, segments chained to the one before them, and the log reaching as far as the
//! tip file says it got. What the start keeps and what it refuses:
//!
//! - A **torn tail** (the end of the last segment, cut by a crash mid-write) is cut off, and the
//!   report says what went: the bytes, where the log now ends, and (from the tip file) how many
//!   records that had been written are gone with it.
//! - **Damage the snapshot covers** (every record it makes unreadable is at or below the LSN
//!   the replay starts after) costs nothing: the segments wholly before that LSN are not even
//!   read, and a damaged record in the segment that straddles it is stepped over (reported).
//! - **Other damage** stops the start, naming the file and byte offset, which LSNs are
//!   unreadable, and how many records after it are still readable. With `repair` only the
//!   unreadable bytes are dropped: the readable records after them are kept, in a segment of
//!   their own marked repaired, so nothing written whole is lost.
//! - A **missing segment** the replay needs (the log from the snapshot on, a segment missing
//!   from the chain, the newest segment the tip names) stops the start too, unless `repair`.
//!
//! What a record means is the caller's business: `replay` hands each one to `visit`.

mod scan;

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::record::{Lsn, Record};
use crate::wal::segment::{list_segments, sync_dir, SegmentFile, SEGMENT_HEADER_V1_BYTES};
use crate::wal::tip;

#[cfg(test)]
mod tests;

/// Log a progress line at least this often while replaying or loading ...
const PROGRESS_INTERVAL_MS: u64 = 1000;

/// ... or after this many more records.
const PROGRESS_RECORDS: u64 = 1_000_000;

/// A range of LSNs, both ends included (`from > to`: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsnRange {
    /// The first.
    pub from: Lsn,
    /// The last.
    pub to: Lsn,
}

impl LsnRange {
    /// How many LSNs it holds.
    pub fn len(&self) -> u64 {
        (self.to + 1).saturating_sub(self.from)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for LsnRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..={}", self.from, self.to)
    }
}

/// A torn tail that was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub file: PathBuf,
    /// Where it was cut.
    pub offset: u64,
    /// Bytes cut.
    pub bytes: u64,
}

/// Damage found and stepped over (covered by the snapshot) or dropped (`repair`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damaged segment.
    pub file: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// Unreadable bytes.
    pub bytes: u64,
    /// The LSNs it made unreadable.
    pub lost: LsnRange,
    /// What was wrong.
    pub detail: String,
}

/// What `replay` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records handed to `visit` (those above `after`).
    pub records: u64,
    /// The highest LSN in the log, visited or not (0 when the log is empty).
    pub last_lsn: Lsn,
    /// Segment files found.
    pub segments: usize,
    /// Segments not read because the snapshot covers all their records.
    pub segments_skipped: usize,
    /// The torn tail cut off the last segment, if any.
    pub torn: Option<TornTail>,
    /// Records the tip file says were written after the log's end now: lost with a cut or
    /// lost file (after a process crash the tip lags by at most ~100 ms, so this is a floor).
    pub lost_at_end: Option<LsnRange>,
    /// Damage the snapshot covers, stepped over.
    pub covered: Vec<Damage>,
    /// Damage `repair` dropped, keeping the readable records after it.
    pub repaired: Vec<Damage>,
    /// Missing segments `repair` went on without, as sentences.
    pub missing: Vec<String>,
}

impl ReplayReport {
    /// Bytes of torn tail cut.
    pub fn torn_bytes_cut(&self) -> u64 {
        self.torn.as_ref().map_or(0, |torn| torn.bytes)
    }
}

/// Why the log or a snapshot cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// Damage that is neither a torn tail nor covered by the snapshot.
    #[error("{}", describe_corrupt(file, *offset, detail))]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage in it.
        offset: u64,
        /// What is wrong there (and, for the log, what a repair would keep).
        detail: String,
    },
    /// Part of the log the start needs is not there.
    #[error(
        "{detail}; restore the missing files, or move the data directory aside to restore \
         from PostgreSQL (if configured), or start cartd with --repair to go on without them"
    )]
    Missing {
        /// What is missing.
        detail: String,
    },
    /// A file could not be read, cut or removed.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file (or directory).
        file: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The message for damaged files: where, what, and what the operator can do.
fn describe_corrupt(file: &Path, offset: u64, detail: &str) -> String {
    let is_snapshot = file
        .extension()
        .is_some_and(|extension| extension == "snap");
    let advice = if is_snapshot {
        "move the snapshot aside to start from the one before it, or from the log alone"
    } else {
        "start cartd with --repair to drop only the unreadable bytes (the readable records after \
         them are kept)"
    };
    format!(
        "{} is damaged at byte {offset}: {detail}; {advice}",
        file.display()
    )
}

/// `io::Error` on `file` as a `RecoveryError`.
pub(crate) fn io_error(file: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io {
        file: file.to_path_buf(),
        source,
    }
}

/// Reads every segment in `dir` in LSN order and calls `visit` for each record with LSN above
/// `after` (the snapshot's LSN, 0 without one). See the module notes for what is cut, stepped
/// over, refused, or with `repair` dropped. A missing `dir` is an empty log.
pub fn replay(
    dir: &Path,
    after: Lsn,
    repair: bool,
    mut visit: impl FnMut(Record),
) -> Result<ReplayReport, RecoveryError> {
    let mut segments = list_segments(dir).map_err(io_error(dir))?;
    let mut report = ReplayReport {
        segments: segments.len(),
        ..ReplayReport::default()
    };
    let tip = tip::read(dir);
    scan::check_present(dir, &segments, tip, after, repair, &mut report)?;
    let mut scan = scan::Scan::new(after, repair);
    let mut index = 0;
    while index < segments.len() {
        let next_first = segments.get(index + 1).map(|next| next.first_lsn);
        // Every record of this segment is at or below `after`: not needed, not read.
        if next_first.is_some_and(|next| next <= after + 1) {
            scan.skip_to(next_first.expect("checked") - 1);
            report.segments_skipped += 1;
            index += 1;
            continue;
        }
        let segment = segments[index].clone();
        let bytes = fs::read(&segment.path).map_err(io_error(&segment.path))?;
        let outcome = scan.segment(&segment, &bytes, next_first, &mut |record| {
            report.records += 1;
            visit(record);
        });
        match outcome? {
            scan::Ended::Clean => {}
            scan::Ended::Torn { offset } => {
                let cut = cut_torn_tail(&segment, offset, bytes.len() as u64)?;
                report.torn = Some(TornTail {
                    file: segment.path.clone(),
                    offset,
                    bytes: cut,
                });
            }
            scan::Ended::Repaired { damage, salvaged } => {
                report.repaired.push(damage);
                if let Some(salvaged) = salvaged {
                    segments.insert(index + 1, salvaged);
                }
            }
        }
        index += 1;
    }
    report.last_lsn = scan.last_lsn().unwrap_or(0);
    report.covered = std::mem::take(&mut scan.covered);
    // Records the snapshot holds are not lost, whatever the log kept of them: a replica's
    // full synchronization leaves the snapshot and an empty segment after it, with a tip
    // written up to the snapshot's LSN.
    if let Some(tip) = tip {
        let kept = report.last_lsn.max(after);
        if tip.written_lsn > kept {
            report.lost_at_end = Some(LsnRange {
                from: kept + 1,
                to: tip.written_lsn,
            });
        }
    }
    scan.finish(report.records);
    log_report(&report);
    Ok(report)
}

/// Logs what a replay cut or stepped over.
fn log_report(report: &ReplayReport) {
    for damage in &report.covered {
        tracing::warn!(
            file = %damage.file.display(),
            offset = damage.offset,
            lost = %damage.lost,
            detail = %damage.detail,
            "damage in records the snapshot covers: stepped over, nothing lost"
        );
    }
    if let Some(torn) = &report.torn {
        tracing::warn!(
            file = %torn.file.display(),
            offset = torn.offset,
            cut_bytes = torn.bytes,
            log_ends_at_lsn = report.last_lsn,
            "cut a torn tail off the log (a write the crash interrupted)"
        );
    }
    if let Some(lost) = report.lost_at_end {
        tracing::warn!(
            lost = %lost,
            records = lost.len(),
            log_ends_at_lsn = report.last_lsn,
            "the log ends before records that had been written (its tip file says so): they \
             are lost; under appendfsync everysec or no, a crash of the machine can lose that \
             much, anything else means the log was cut or a file removed"
        );
    }
}

/// Cuts the torn tail of the last segment at `offset` (the whole file when even its header
/// is torn) and returns the bytes cut.
fn cut_torn_tail(segment: &SegmentFile, offset: u64, length: u64) -> Result<u64, RecoveryError> {
    cut_file(&segment.path, offset)?;
    Ok(length - offset)
}

/// Truncates `path` at `offset` and syncs it; removes it when not even its header is kept.
pub(crate) fn cut_file(path: &Path, offset: u64) -> Result<(), RecoveryError> {
    if offset < SEGMENT_HEADER_V1_BYTES as u64 {
        fs::remove_file(path).map_err(io_error(path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(io_error(dir))?;
        }
        return Ok(());
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    file.set_len(offset).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// Progress lines for long loads: every second or every million records.
pub(crate) struct Progress {
    what: &'static str,
    started: Instant,
    last_line: Instant,
    records: u64,
    bytes: u64,
    next_line_records: u64,
}

impl Progress {
    /// Starts counting; `what` names the work in each line.
    pub(crate) fn new(what: &'static str) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            started: now,
            last_line: now,
            records: 0,
            bytes: 0,
            next_line_records: PROGRESS_RECORDS,
        }
    }

    /// Counts one record of `bytes`, logging a line when one is due.
    pub(crate) fn advance(&mut self, bytes: u64) {
        self.records += 1;
        self.bytes += bytes;
        // The clock is read once per thousand records: cheap on millions of them.
        let due = self.records >= self.next_line_records
            || (self.records & 1023 == 0
                && self.last_line.elapsed() >= Duration::from_millis(PROGRESS_INTERVAL_MS));
        if due {
            tracing::info!(records = self.records, bytes = self.bytes, "{}", self.what);
            self.last_line = Instant::now();
            self.next_line_records = self.records + PROGRESS_RECORDS;
        }
    }

    /// Logs the total when the work was long enough to have shown progress.
    pub(crate) fn finish(&self, visited: u64) {
        if self.records >= PROGRESS_RECORDS
            || self.started.elapsed() >= Duration::from_millis(PROGRESS_INTERVAL_MS)
        {
            tracing::info!(
                records = self.records,
                visited,
                bytes = self.bytes,
                ms = self.started.elapsed().as_millis() as u64,
                "{}: done",
                self.what
            );
        }
    }
}
