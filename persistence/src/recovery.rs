//! Reading the log back at start: every segment in LSN order, each record's checksum, LSNs
//! rising by one. A torn tail (the end of the last segment, cut by a crash mid-write) is cut
//! off with a warning; damage anywhere else stops the start with the file and byte offset,
//! unless the operator asked for `--repair`, which cuts the log there.
//!
//! What a record means is the caller's business: `replay` hands each one to `visit`.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::record::{Lsn, Record, RecordFormat};
use crate::wal::segment::{
    list_segments, sync_dir, SegmentFile, SegmentHeader, SegmentStart, SEGMENT_HEADER_BYTES,
};

#[cfg(test)]
mod tests;

/// Log a progress line at least this often while replaying or loading ...
const PROGRESS_INTERVAL_MS: u64 = 1000;

/// ... or after this many more records.
const PROGRESS_RECORDS: u64 = 1_000_000;

/// What `replay` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records handed to `visit` (those above `after`).
    pub records: u64,
    /// The highest LSN in the log, visited or not (0 when the log is empty).
    pub last_lsn: Lsn,
    /// Segment files read.
    pub segments: usize,
    /// Bytes of torn tail cut off the last segment.
    pub torn_bytes_cut: u64,
    /// With `repair`: the file and byte offset where damage was cut, everything after it lost.
    pub repaired: Option<(PathBuf, u64)>,
}

/// Why the log or a snapshot cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// Damage that is not a torn tail.
    #[error("{}", describe_corrupt(file, *offset, detail))]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage in it.
        offset: u64,
        /// What is wrong there.
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
        "move the snapshot aside to start from the log alone (carts it alone holds are lost)"
    } else {
        "start cartd with --repair to cut the log there (everything after that point is lost)"
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
/// `after`. Cuts a torn tail off the last segment; other damage is an error, or with
/// `repair` is cut off too (that file truncated, later segments deleted). A missing `dir` is
/// an empty log.
pub fn replay(
    dir: &Path,
    after: Lsn,
    repair: bool,
    mut visit: impl FnMut(Record),
) -> Result<ReplayReport, RecoveryError> {
    let segments = list_segments(dir).map_err(io_error(dir))?;
    let mut report = ReplayReport {
        segments: segments.len(),
        ..ReplayReport::default()
    };
    let mut scan = Scan {
        after,
        last_lsn: None,
        progress: Progress::new("replaying the log"),
    };
    for (index, segment) in segments.iter().enumerate() {
        let is_last = index + 1 == segments.len();
        let bytes = fs::read(&segment.path).map_err(io_error(&segment.path))?;
        let outcome = scan.segment(segment, &bytes, is_last, &mut |record| {
            report.records += 1;
            visit(record);
        });
        match outcome {
            Ok(()) => {}
            Err(Damage::Torn { offset }) => {
                report.torn_bytes_cut += cut_torn_tail(segment, offset, bytes.len() as u64)?;
            }
            Err(Damage::Corrupt { offset, detail }) if repair => {
                cut_for_repair(&segments[index..], offset, &detail)?;
                report.repaired = Some((segment.path.clone(), offset));
                break;
            }
            Err(Damage::Corrupt { offset, detail }) => {
                return Err(RecoveryError::Corrupt {
                    file: segment.path.clone(),
                    offset,
                    detail,
                });
            }
        }
    }
    report.last_lsn = scan.last_lsn.unwrap_or(0);
    scan.progress.finish(report.records);
    Ok(report)
}

/// What is wrong at a place in a segment.
enum Damage {
    /// The last segment ends in a torn write from here on.
    Torn { offset: u64 },
    /// Damage that is not a torn tail.
    Corrupt { offset: u64, detail: String },
}

/// Replay's state across segments.
struct Scan {
    after: Lsn,
    /// The LSN of the last record read, if any.
    last_lsn: Option<Lsn>,
    progress: Progress,
}

impl Scan {
    /// Checks one segment's header and records, visiting those above `after`.
    fn segment(
        &mut self,
        segment: &SegmentFile,
        bytes: &[u8],
        is_last: bool,
        visit: &mut dyn FnMut(Record),
    ) -> Result<(), Damage> {
        let header = match SegmentHeader::decode(bytes) {
            Ok(header) => header,
            Err(_) if is_last && (bytes.len() < SEGMENT_HEADER_BYTES || is_zeros(bytes)) => {
                return Err(Damage::Torn { offset: 0 });
            }
            Err(detail) => return Err(Damage::Corrupt { offset: 0, detail }),
        };
        self.check_start(segment, header)?;
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut expected = header.first_lsn;
        while offset < bytes.len() {
            let (record, used) = match Record::decode_frame(&bytes[offset..], header.format) {
                Ok(decoded) => decoded,
                Err(_)
                    if is_last
                        && !valid_frame_after(bytes, offset + 1, expected, header.format) =>
                {
                    return Err(Damage::Torn {
                        offset: offset as u64,
                    });
                }
                Err(error) => {
                    return Err(Damage::Corrupt {
                        offset: offset as u64,
                        detail: error.to_string(),
                    });
                }
            };
            if record.lsn != expected {
                let detail = format!("record has LSN {}, expected {expected}", record.lsn);
                return Err(Damage::Corrupt {
                    offset: offset as u64,
                    detail,
                });
            }
            offset += used;
            expected += 1;
            self.last_lsn = Some(record.lsn);
            self.progress.advance(used as u64);
            if record.lsn > self.after {
                visit(record);
            }
        }
        Ok(())
    }

    /// A segment's first LSN must match its name and follow on from the one before: equal
    /// to the next LSN after a rotation; after a restart it may jump forward. A jump is
    /// harmless when every record it skips is at or below `after`.
    fn check_start(&self, segment: &SegmentFile, header: SegmentHeader) -> Result<(), Damage> {
        let corrupt = |detail: String| Err(Damage::Corrupt { offset: 0, detail });
        if header.first_lsn != segment.first_lsn {
            return corrupt(format!(
                "the header says the first LSN is {}, the file name says {}",
                header.first_lsn, segment.first_lsn
            ));
        }
        let Some(previous) = self.last_lsn else {
            return Ok(());
        };
        if header.first_lsn <= previous {
            return corrupt(format!(
                "starts at LSN {}, but the log before it already reached LSN {previous}",
                header.first_lsn
            ));
        }
        let skipped_needed = header.first_lsn > previous + 1 && header.first_lsn > self.after + 1;
        if skipped_needed && header.start == SegmentStart::Rotation {
            return corrupt(format!(
                "records {} to {} are missing before it",
                previous + 1,
                header.first_lsn - 1
            ));
        }
        Ok(())
    }
}

/// Whether every byte is zero: a file the crash left extended but unwritten.
fn is_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| *byte == 0)
}

/// Whether any valid frame with an LSN of at least `lsn_min` starts at or after `from`:
/// if so, damage before it is in the middle of the log, not a torn tail.
fn valid_frame_after(bytes: &[u8], from: usize, lsn_min: Lsn, format: RecordFormat) -> bool {
    (from..bytes.len()).any(|start| {
        matches!(Record::decode_frame(&bytes[start..], format), Ok((record, _)) if record.lsn >= lsn_min)
    })
}

/// Cuts the torn tail of the last segment at `offset` (the whole file when even its header
/// is torn) and returns the bytes cut.
fn cut_torn_tail(segment: &SegmentFile, offset: u64, length: u64) -> Result<u64, RecoveryError> {
    cut_file(&segment.path, offset)?;
    let cut_bytes = length - offset;
    tracing::warn!(
        file = %segment.path.display(),
        offset,
        cut_bytes,
        "cut a torn tail off the log (a write the crash interrupted)"
    );
    Ok(cut_bytes)
}

/// `--repair`: cuts the first of `segments` at `offset` and deletes the rest.
fn cut_for_repair(
    segments: &[SegmentFile],
    offset: u64,
    detail: &str,
) -> Result<(), RecoveryError> {
    let (damaged, later) = segments
        .split_first()
        .expect("the damaged segment is listed");
    cut_file(&damaged.path, offset)?;
    for segment in later {
        fs::remove_file(&segment.path).map_err(io_error(&segment.path))?;
    }
    if let Some(dir) = damaged.path.parent() {
        sync_dir(dir).map_err(io_error(dir))?;
    }
    tracing::warn!(
        file = %damaged.path.display(),
        offset,
        detail,
        segments_deleted = later.len(),
        "repair: cut the log at the damage; every record after it is lost"
    );
    Ok(())
}

/// Truncates `path` at `offset` and syncs it; removes it when not even its header is kept.
fn cut_file(path: &Path, offset: u64) -> Result<(), RecoveryError> {
    if offset < SEGMENT_HEADER_BYTES as u64 {
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
