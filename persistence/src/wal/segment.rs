//! Segment files: their names (`{first_lsn:020}.wal`), their header, and listing them in LSN
//! order. The writer, the reader and recovery all find segments through here.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::record::{Lsn, RecordFormat};

/// What every segment file starts with.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"CARTDWAL";

/// The segment format this code writes: records of [`RecordFormat::V2`]. Format 1 segments
/// (records of [`RecordFormat::V1`]) are still read.
pub(crate) const SEGMENT_FORMAT: u32 = 2;

/// Bytes before a format-1 segment's first record: magic, format, start kind, first LSN.
pub(crate) const SEGMENT_HEADER_V1_BYTES: usize = 24;

/// Bytes before a format-2 segment's first record: format 1's, then the first LSN of the
/// segment before it (0 for none), so a segment missing from the chain is noticed.
pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;

/// The most header bytes any format has.
pub(crate) const SEGMENT_HEADER_BYTES_MAX: usize = SEGMENT_HEADER_BYTES;

/// The file name suffix of segments.
const SEGMENT_SUFFIX: &str = ".wal";

/// Why a segment was started, which says whether its first LSN may jump ahead of the segment
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentStart {
    /// Started by `Wal::open`: the LSN may jump forward (numbering resumed from a snapshot or
    /// the PostgreSQL checkpoint beyond the local log).
    Open,
    /// Started because the previous segment was full: the first LSN follows on exactly.
    Rotation,
    /// Written by `--repair` in place of a damaged part of the log: the first LSN may jump
    /// forward over the records that were lost.
    Repaired,
}

/// A segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// Why the segment was started.
    pub start: SegmentStart,
    /// The LSN of its first record (the next one when it has none).
    pub first_lsn: Lsn,
    /// How its records are laid out.
    pub format: RecordFormat,
    /// The first LSN of the segment written before it (0: none, or not recorded, as in
    /// format 1).
    pub previous_first_lsn: Lsn,
}

impl SegmentHeader {
    /// How many bytes the header takes in its format.
    pub fn bytes(&self) -> usize {
        match self.format {
            RecordFormat::V1 => SEGMENT_HEADER_V1_BYTES,
            RecordFormat::V2 => SEGMENT_HEADER_BYTES,
        }
    }

    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0; self.bytes()];
        out[..8].copy_from_slice(&SEGMENT_MAGIC);
        let format: u32 = match self.format {
            RecordFormat::V1 => 1,
            RecordFormat::V2 => SEGMENT_FORMAT,
        };
        out[8..12].copy_from_slice(&format.to_le_bytes());
        out[12..16].copy_from_slice(&start_code(self.start).to_le_bytes());
        out[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        if self.format == RecordFormat::V2 {
            out[24..32].copy_from_slice(&self.previous_first_lsn.to_le_bytes());
        }
        out
    }

    /// Reads a header from the start of `bytes`; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, String> {
        let cut = || {
            format!(
                "the segment header is cut short ({} bytes)",
                bytes.len().min(SEGMENT_HEADER_BYTES)
            )
        };
        let header = bytes.get(..SEGMENT_HEADER_V1_BYTES).ok_or_else(cut)?;
        if header[..8] != SEGMENT_MAGIC {
            return Err("not a cartd log segment (bad magic)".into());
        }
        let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        let format = match word(8) {
            1 => RecordFormat::V1,
            SEGMENT_FORMAT => RecordFormat::V2,
            other => return Err(format!("unknown segment format {other}")),
        };
        let start = match word(12) {
            0 => SegmentStart::Open,
            1 => SegmentStart::Rotation,
            2 => SegmentStart::Repaired,
            other => return Err(format!("unknown segment start kind {other}")),
        };
        let first_lsn = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
        let previous_first_lsn = match format {
            RecordFormat::V1 => 0,
            RecordFormat::V2 => {
                let tail = bytes.get(24..SEGMENT_HEADER_BYTES).ok_or_else(cut)?;
                u64::from_le_bytes(tail.try_into().expect("8 bytes"))
            }
        };
        Ok(SegmentHeader {
            start,
            first_lsn,
            format,
            previous_first_lsn,
        })
    }
}

fn start_code(start: SegmentStart) -> u32 {
    match start {
        SegmentStart::Open => 0,
        SegmentStart::Rotation => 1,
        SegmentStart::Repaired => 2,
    }
}

/// Rewrites the start kind and the previous segment's first LSN in the header of the segment
/// at `path` (`--repair`, when the segment before it changed), and syncs it.
pub(crate) fn rewrite_header(path: &Path, header: SegmentHeader) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new().write(true).open(path)?;
    file.write_all_at(&header.encode(), 0)?;
    file.sync_data()
}

/// A segment file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    /// The first LSN, from the file name.
    pub first_lsn: Lsn,
    /// Where it is.
    pub path: PathBuf,
}

/// The file name of the segment starting at `first_lsn`.
pub(crate) fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// The first LSN a segment file name stands for; `None` for any other file.
pub(crate) fn parse_segment_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every segment in `dir`, oldest first; empty when the directory does not exist.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(first_lsn) = name.to_str().and_then(parse_segment_name) {
            segments.push(SegmentFile {
                first_lsn,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|segment| segment.first_lsn);
    Ok(segments)
}

/// Creates (or overwrites) the segment file for `header` in `dir`, writes and syncs its
/// header, and syncs the directory so the file survives a crash. Returns it positioned after
/// the header. Errors name the file.
pub(crate) fn create_segment(dir: &Path, header: SegmentHeader) -> io::Result<(File, PathBuf)> {
    let path = dir.join(segment_name(header.first_lsn));
    let create = || -> io::Result<File> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.write_all(&header.encode())?;
        file.sync_data()?;
        Ok(file)
    };
    let file = create().map_err(|error| with_path(&path, error))?;
    sync_dir(dir).map_err(|error| with_path(dir, error))?;
    Ok((file, path))
}

/// Makes the directory's entries (files created, renamed, removed) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `error` with the file it concerns in front, so a log line says which file failed.
pub(crate) fn with_path(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse_back() {
        assert_eq!(segment_name(42), "00000000000000000042.wal");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.wal"), None);
        assert_eq!(parse_segment_name("00000000000000000042.snap"), None);
    }

    #[test]
    fn headers_round_trip_and_refuse_garbage() {
        for format in [RecordFormat::V1, RecordFormat::V2] {
            for start in [
                SegmentStart::Open,
                SegmentStart::Rotation,
                SegmentStart::Repaired,
            ] {
                let header = SegmentHeader {
                    start,
                    first_lsn: 7,
                    format,
                    previous_first_lsn: if format == RecordFormat::V2 { 3 } else { 0 },
                };
                assert_eq!(SegmentHeader::decode(&header.encode()), Ok(header));
                assert_eq!(header.encode().len(), header.bytes());
            }
        }
        let header = SegmentHeader {
            start: SegmentStart::Open,
            first_lsn: 7,
            format: RecordFormat::V2,
            previous_first_lsn: 0,
        };
        assert!(SegmentHeader::decode(&[0; SEGMENT_HEADER_BYTES]).is_err());
        assert!(SegmentHeader::decode(&header.encode()[..10]).is_err());
        assert!(
            SegmentHeader::decode(&header.encode()[..28]).is_err(),
            "a cut v2 header"
        );
    }
}
