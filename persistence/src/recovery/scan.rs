//! The checks of one replay: that the segments it needs are there ([`check_present`]), and
//! the scan of each segment's records ([`Scan::segment`]): torn tails, damage the snapshot
//! covers, damage to refuse, and `--repair`'s salvage of the readable records after damage.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use super::{cut_file, io_error, Damage, LsnRange, Progress, RecoveryError, ReplayReport};
use crate::record::{Lsn, Record, RecordFormat};
use crate::wal::segment::{
    rewrite_header, segment_name, sync_dir, SegmentFile, SegmentHeader, SegmentStart,
    SEGMENT_HEADER_BYTES, SEGMENT_HEADER_V1_BYTES,
};
use crate::wal::tip::Tip;

/// Checks that every segment the replay needs is there: the newest one the tip file names,
/// the one holding the first LSN after `after` (the log from the snapshot on), and every one
/// in the chain of segments from there. With `repair`, what is missing is reported instead.
pub(super) fn check_present(
    dir: &Path,
    segments: &[SegmentFile],
    tip: Option<Tip>,
    after: Lsn,
    repair: bool,
    report: &mut ReplayReport,
) -> Result<(), RecoveryError> {
    let mut missing = Vec::new();
    let newest = segments.last().map_or(0, |segment| segment.first_lsn);
    if let Some(tip) = tip {
        let wrote_there = tip.written_lsn >= tip.newest_first_lsn;
        if tip.newest_first_lsn > newest && wrote_there {
            missing.push(format!(
                "the newest log segment {} is missing (the log had been written up to LSN {})",
                segment_name(tip.newest_first_lsn),
                tip.written_lsn
            ));
        }
    }
    let needed = after + 1;
    match segments.first() {
        None if after > 0 => missing.push(format!(
            "the log from LSN {needed} on (after the snapshot) is missing: {} holds no segment",
            dir.display()
        )),
        Some(first) if first.first_lsn > needed => missing.push(format!(
            "records {needed}..={} are missing: the oldest log segment starts at LSN {}",
            first.first_lsn - 1,
            first.first_lsn
        )),
        _ => {}
    }
    for pair in segments.windows(2) {
        let (before, segment) = (&pair[0], &pair[1]);
        let Some(header) = read_header(&segment.path) else {
            continue; // A damaged header is the scan's to report.
        };
        let gone = header.previous_first_lsn;
        let covered = segment.first_lsn <= needed;
        if gone > before.first_lsn && !covered {
            missing.push(format!(
                "log segment {} is missing between {} and {}",
                segment_name(gone),
                segment_name(before.first_lsn),
                segment_name(segment.first_lsn)
            ));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !repair {
        return Err(RecoveryError::Missing {
            detail: missing.join("; "),
        });
    }
    for what in &missing {
        tracing::warn!("repair: {what}; going on without it");
    }
    report.missing = missing;
    Ok(())
}

/// The header of the segment at `path`, if it reads.
fn read_header(path: &Path) -> Option<SegmentHeader> {
    let mut bytes = [0; SEGMENT_HEADER_BYTES];
    let mut file = File::open(path).ok()?;
    let mut read = 0;
    while read < bytes.len() {
        match file.read(&mut bytes[read..]) {
            Ok(0) | Err(_) => break,
            Ok(count) => read += count,
        }
    }
    SegmentHeader::decode(&bytes[..read]).ok()
}

/// How a segment's scan ended.
pub(super) enum Ended {
    /// Every record read.
    Clean,
    /// The last segment ends in a torn write from here on: cut it.
    Torn { offset: u64 },
    /// `repair` dropped damaged bytes; the readable records after them, if any, are in the
    /// segment returned, to be scanned next.
    Repaired {
        damage: Damage,
        salvaged: Option<SegmentFile>,
    },
}

/// Replay's state across segments.
pub(super) struct Scan {
    after: Lsn,
    repair: bool,
    /// The LSN of the last record read (or known to be before what is read next).
    last_lsn: Option<Lsn>,
    progress: Progress,
    /// Damage the snapshot covers, stepped over so far.
    pub(super) covered: Vec<Damage>,
}

impl Scan {
    pub(super) fn new(after: Lsn, repair: bool) -> Scan {
        Scan {
            after,
            repair,
            last_lsn: None,
            progress: Progress::new("replaying the log"),
            covered: Vec::new(),
        }
    }

    /// A segment was skipped whose records end at `lsn`.
    pub(super) fn skip_to(&mut self, lsn: Lsn) {
        self.last_lsn = Some(lsn);
    }

    pub(super) fn last_lsn(&self) -> Option<Lsn> {
        self.last_lsn
    }

    pub(super) fn finish(&self, visited: u64) {
        self.progress.finish(visited);
    }

    /// Checks one segment's header and records, visiting those above `after`; `next_first` is
    /// the first LSN of the segment after it (`None`: it is the last).
    pub(super) fn segment(
        &mut self,
        segment: &SegmentFile,
        bytes: &[u8],
        next_first: Option<Lsn>,
        visit: &mut dyn FnMut(Record),
    ) -> Result<Ended, RecoveryError> {
        let is_last = next_first.is_none();
        let header = match SegmentHeader::decode(bytes) {
            Ok(header) => header,
            Err(_) if is_last && (bytes.len() < SEGMENT_HEADER_V1_BYTES || is_zeros(bytes)) => {
                return Ok(Ended::Torn { offset: 0 });
            }
            Err(detail) => return self.damaged_header(segment, bytes, next_first, detail),
        };
        self.check_start(segment, header)?;
        let mut offset = header.bytes();
        let mut expected = header.first_lsn;
        while offset < bytes.len() {
            let problem = match Record::decode_frame(&bytes[offset..], header.format) {
                Ok((record, used)) if record.lsn == expected => {
                    offset += used;
                    expected += 1;
                    self.last_lsn = Some(record.lsn);
                    self.progress.advance(used as u64);
                    if record.lsn > self.after {
                        visit(record);
                    }
                    continue;
                }
                Ok((record, _)) => format!("record has LSN {}, expected {expected}", record.lsn),
                Err(error) => error.to_string(),
            };
            let resync = find_resync(bytes, offset + 1, expected, next_first, header.format);
            if resync.is_none() && is_last {
                return Ok(Ended::Torn {
                    offset: offset as u64,
                });
            }
            let (resume_at, resume_lsn) = match resync {
                Some(found) => found,
                None => (bytes.len(), next_first.expect("not the last segment")),
            };
            let damage = Damage {
                file: segment.path.clone(),
                offset: offset as u64,
                bytes: (resume_at - offset) as u64,
                lost: LsnRange {
                    from: expected,
                    to: resume_lsn - 1,
                },
                detail: problem,
            };
            if damage.lost.to <= self.after {
                // Covered by the snapshot: step over it and read on.
                offset = resume_at;
                expected = resume_lsn;
                self.last_lsn = Some(resume_lsn - 1);
                self.covered.push(damage);
                continue;
            }
            if self.repair {
                let salvaged = self.salvage(segment, header, bytes, &damage, resync, next_first)?;
                return Ok(Ended::Repaired { damage, salvaged });
            }
            return Err(refusal(segment, &damage, bytes, resync, header.format));
        }
        Ok(Ended::Clean)
    }

    /// A segment whose header does not read: covered, repaired (the file goes) or refused.
    fn damaged_header(
        &mut self,
        segment: &SegmentFile,
        bytes: &[u8],
        next_first: Option<Lsn>,
        detail: String,
    ) -> Result<Ended, RecoveryError> {
        let until = next_first.map_or(Lsn::MAX, |next| next - 1);
        let damage = Damage {
            file: segment.path.clone(),
            offset: 0,
            bytes: bytes.len() as u64,
            lost: LsnRange {
                from: segment.first_lsn,
                to: until,
            },
            detail,
        };
        if until <= self.after {
            self.last_lsn = Some(until);
            self.covered.push(damage);
            return Ok(Ended::Clean);
        }
        if self.repair {
            cut_file(&segment.path, 0)?;
            self.last_lsn = next_first.map(|next| next - 1).or(self.last_lsn);
            tracing::warn!(file = %segment.path.display(), "repair: removed a segment whose header is unreadable");
            return Ok(Ended::Repaired {
                damage,
                salvaged: None,
            });
        }
        Err(RecoveryError::Corrupt {
            file: segment.path.clone(),
            offset: 0,
            detail: format!(
                "{}; the segment's records (LSNs from {}) cannot be read",
                damage.detail, segment.first_lsn
            ),
        })
    }

    /// A segment's first LSN must match its name and follow on from the one before: equal
    /// to the next LSN after a rotation; after a restart (or a repair) it may jump forward. A
    /// jump is harmless when every record it skips is at or below `after`.
    fn check_start(
        &self,
        segment: &SegmentFile,
        header: SegmentHeader,
    ) -> Result<(), RecoveryError> {
        let corrupt = |detail: String| {
            Err(RecoveryError::Corrupt {
                file: segment.path.clone(),
                offset: 0,
                detail,
            })
        };
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
        if skipped_needed && header.start == SegmentStart::Rotation && !self.repair {
            return Err(RecoveryError::Missing {
                detail: format!(
                    "records {} to {} are missing before {}",
                    previous + 1,
                    header.first_lsn - 1,
                    segment.path.display()
                ),
            });
        }
        Ok(())
    }

    /// `--repair` of damage in `segment`: cuts the segment at the damage and moves the
    /// readable records after it (from `resync`) into a segment of their own, marked
    /// repaired; the next segment's header is told. Returns that new segment.
    fn salvage(
        &mut self,
        segment: &SegmentFile,
        header: SegmentHeader,
        bytes: &[u8],
        damage: &Damage,
        resync: Option<(usize, Lsn)>,
        next_first: Option<Lsn>,
    ) -> Result<Option<SegmentFile>, RecoveryError> {
        let dir = segment
            .path
            .parent()
            .expect("a segment lives in a directory");
        let salvaged = match resync {
            Some((resume_at, resume_lsn)) => {
                let repaired = SegmentHeader {
                    start: SegmentStart::Repaired,
                    first_lsn: resume_lsn,
                    format: header.format,
                    previous_first_lsn: if header.format == RecordFormat::V2 {
                        segment.first_lsn
                    } else {
                        0
                    },
                };
                let path = dir.join(segment_name(resume_lsn));
                let mut file = File::create(&path).map_err(io_error(&path))?;
                file.write_all(&repaired.encode())
                    .and_then(|()| file.write_all(&bytes[resume_at..]))
                    .and_then(|()| file.sync_all())
                    .map_err(io_error(&path))?;
                Some(SegmentFile {
                    first_lsn: resume_lsn,
                    path,
                })
            }
            None => None,
        };
        cut_file(&segment.path, damage.offset)?;
        if let Some(next_first) = next_first {
            let next_path = dir.join(segment_name(next_first));
            if let Some(mut next) = read_header(&next_path) {
                next.start = SegmentStart::Repaired;
                if let Some(salvaged) = &salvaged {
                    next.previous_first_lsn = salvaged.first_lsn;
                }
                rewrite_header(&next_path, next).map_err(io_error(&next_path))?;
            }
        }
        sync_dir(dir).map_err(io_error(dir))?;
        tracing::warn!(
            file = %segment.path.display(),
            offset = damage.offset,
            unreadable_bytes = damage.bytes,
            lost = %damage.lost,
            detail = %damage.detail,
            "repair: dropped the unreadable records; the readable ones after them are kept"
        );
        Ok(salvaged)
    }
}

/// Where reading can resume after damage at `from - 1`: the first offset at or after `from`
/// where a frame with an LSN of at least `lsn_min` (and below `lsn_end`) decodes and is
/// followed by its successor or the segment's end. Two frames in a row make a false match of
/// the checksum (about 1 in 2^32 per offset tried) out of the question.
fn find_resync(
    bytes: &[u8],
    from: usize,
    lsn_min: Lsn,
    lsn_end: Option<Lsn>,
    format: RecordFormat,
) -> Option<(usize, Lsn)> {
    (from..bytes.len()).find_map(|start| {
        let (record, used) = Record::decode_frame(&bytes[start..], format).ok()?;
        let in_range = record.lsn >= lsn_min && lsn_end.is_none_or(|end| record.lsn < end);
        if !in_range {
            return None;
        }
        let after = start + used;
        let chained = after == bytes.len()
            || matches!(Record::decode_frame(&bytes[after..], format),
                Ok((next, _)) if next.lsn == record.lsn + 1);
        chained.then_some((start, record.lsn))
    })
}

/// The refusal of damage not covered by the snapshot, saying what a repair would keep.
fn refusal(
    segment: &SegmentFile,
    damage: &Damage,
    bytes: &[u8],
    resync: Option<(usize, Lsn)>,
    format: RecordFormat,
) -> RecoveryError {
    let later = readable_after(segment, bytes, resync, format);
    let kept = match later {
        Some(range) => format!(
            "after them {} records (LSNs {range}) are still readable, and --repair keeps them",
            range.len()
        ),
        None => "no record after them is readable".into(),
    };
    RecoveryError::Corrupt {
        file: segment.path.clone(),
        offset: damage.offset,
        detail: format!(
            "{}; LSNs {} ({} records, {} bytes) are unreadable; {kept}",
            damage.detail,
            damage.lost,
            damage.lost.len(),
            damage.bytes
        ),
    }
}

/// The LSNs readable after damage: the frames from `resync` on in this segment and every
/// whole frame of the segments after it, as one range from the first to the last.
fn readable_after(
    segment: &SegmentFile,
    bytes: &[u8],
    resync: Option<(usize, Lsn)>,
    format: RecordFormat,
) -> Option<LsnRange> {
    let mut range: Option<LsnRange> = None;
    let mut note = |lsn: Lsn| {
        let found = range.get_or_insert(LsnRange { from: lsn, to: lsn });
        found.to = found.to.max(lsn);
    };
    if let Some((at, _)) = resync {
        each_frame(&bytes[at..], format, &mut note);
    }
    let dir = segment.path.parent()?;
    let mut later = crate::wal::segment::list_segments(dir).ok()?;
    later.retain(|other| other.first_lsn > segment.first_lsn);
    for other in later {
        let Ok(bytes) = fs::read(&other.path) else {
            continue;
        };
        let Ok(header) = SegmentHeader::decode(&bytes) else {
            continue;
        };
        each_frame(&bytes[header.bytes()..], header.format, &mut note);
    }
    range
}

/// Calls `note` with the LSN of each whole frame from the start of `bytes`, up to the first
/// that does not read.
fn each_frame(bytes: &[u8], format: RecordFormat, note: &mut dyn FnMut(Lsn)) {
    let mut at = 0;
    while let Ok((record, used)) = Record::decode_frame(&bytes[at..], format) {
        note(record.lsn);
        at += used;
    }
}

/// Whether every byte is zero: a file the crash left extended but unwritten.
fn is_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| *byte == 0)
}
