//! Following the log from its files: the PostgreSQL sink (and later replicas) read records up
//! to the written LSN, never a frame still being written. The reader keeps its file and
//! offset between calls, so following a live log reads each byte once.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::segment::{
    list_segments, with_path, SegmentFile, SegmentHeader, SEGMENT_HEADER_BYTES,
    SEGMENT_HEADER_V1_BYTES,
};
use crate::record::{
    Lsn, Record, RecordFormat, RecordSource, FRAME_HEADER_BYTES, PAYLOAD_BYTES_MAX,
};

/// Read buffer per open segment.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Reads a log's records from its segment files. See [`RecordSource`].
pub struct WalReader {
    dir: PathBuf,
    written_lsn: Arc<AtomicU64>,
    cursor: Option<Cursor>,
}

/// Where the reader is: an open segment and the next frame in it.
struct Cursor {
    segment: SegmentFile,
    file: BufReader<File>,
    /// Byte offset of the next frame, for error messages.
    offset: u64,
    /// The LSN the next frame in this segment carries.
    next_lsn: Lsn,
    /// How the segment's records are laid out.
    format: RecordFormat,
}

impl WalReader {
    /// A reader of the segments in `dir`, trusting records up to `written_lsn` (the counter
    /// the log's writer publishes, [`super::Wal::written_lsn_counter`]).
    pub fn new(dir: PathBuf, written_lsn: Arc<AtomicU64>) -> WalReader {
        WalReader {
            dir,
            written_lsn,
            cursor: None,
        }
    }

    /// Opens the segment that holds `after + 1` (or the oldest one, if all start later).
    fn position(&mut self, after: Lsn) -> io::Result<()> {
        self.cursor = None;
        let segments = list_segments(&self.dir).map_err(|error| with_path(&self.dir, error))?;
        let holding = segments
            .iter()
            .rev()
            .find(|segment| segment.first_lsn <= after.saturating_add(1))
            .or(segments.first());
        if let Some(segment) = holding {
            self.cursor = Some(Cursor::open(segment.clone())?);
        }
        Ok(())
    }

    /// Moves to the segment after the current one; false when there is none yet.
    fn next_segment(&mut self) -> io::Result<bool> {
        let current = match &self.cursor {
            Some(cursor) => cursor.segment.first_lsn,
            None => return Ok(false),
        };
        let segments = list_segments(&self.dir).map_err(|error| with_path(&self.dir, error))?;
        match segments
            .into_iter()
            .find(|segment| segment.first_lsn > current)
        {
            Some(segment) => {
                self.cursor = Some(Cursor::open(segment)?);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl RecordSource for WalReader {
    fn read_after(&mut self, after: Lsn, max: usize) -> io::Result<Vec<Record>> {
        let written = self.written_lsn.load(Ordering::Acquire);
        let mut records = Vec::new();
        if after >= written || max == 0 {
            return Ok(records);
        }
        // Going back (a sink retrying) or a first call: find the place again. Going forward
        // from where we are just skips records.
        let behind = self
            .cursor
            .as_ref()
            .is_none_or(|cursor| cursor.next_lsn > after.saturating_add(1));
        if behind {
            self.position(after)?;
        }
        if let Err(error) = self.read_into(&mut records, after, written, max) {
            // The cursor may stand inside a frame now: find the place again next time.
            self.cursor = None;
            return Err(error);
        }
        Ok(records)
    }
}

impl WalReader {
    /// Appends records after `after` and up to `written` to `records`, until `max`.
    fn read_into(
        &mut self,
        records: &mut Vec<Record>,
        after: Lsn,
        written: Lsn,
        max: usize,
    ) -> io::Result<()> {
        while records.len() < max {
            let Some(cursor) = self.cursor.as_mut() else {
                break;
            };
            if cursor.next_lsn > written {
                break;
            }
            match cursor.read_frame()? {
                Some(record) if record.lsn > after => records.push(record),
                Some(_) => {}
                None => {
                    if !self.next_segment()? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Cursor {
    /// Opens `segment` and checks its header.
    fn open(segment: SegmentFile) -> io::Result<Cursor> {
        let file = File::open(&segment.path).map_err(|error| with_path(&segment.path, error))?;
        let mut file = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        // Format 1's header is the shorter one: read it, then what format 2 adds.
        let mut header = [0; SEGMENT_HEADER_BYTES];
        file.read_exact(&mut header[..SEGMENT_HEADER_V1_BYTES])
            .map_err(|error| with_path(&segment.path, error))?;
        let format_two = header[8..12] != 1u32.to_le_bytes();
        if format_two {
            file.read_exact(&mut header[SEGMENT_HEADER_V1_BYTES..])
                .map_err(|error| with_path(&segment.path, error))?;
        }
        let header =
            SegmentHeader::decode(&header).map_err(|detail| corrupt(&segment, 0, &detail))?;
        Ok(Cursor {
            next_lsn: header.first_lsn,
            format: header.format,
            segment,
            file,
            offset: header.bytes() as u64,
        })
    }

    /// The next record of this segment, or `None` at its clean end. Only called for a
    /// written LSN, so a frame cut short or damaged is an error, not a frame in progress.
    fn read_frame(&mut self) -> io::Result<Option<Record>> {
        let mut frame = vec![0; FRAME_HEADER_BYTES];
        let got = read_full(&mut self.file, &mut frame)
            .map_err(|error| with_path(&self.segment.path, error))?;
        if got == 0 {
            return Ok(None);
        }
        if got < FRAME_HEADER_BYTES {
            return Err(corrupt(
                &self.segment,
                self.offset,
                "a written record is cut short",
            ));
        }
        let length = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
        if length == 0 || length > PAYLOAD_BYTES_MAX {
            let detail = format!("impossible record length {length}");
            return Err(corrupt(&self.segment, self.offset, &detail));
        }
        frame.resize(FRAME_HEADER_BYTES + length, 0);
        let got = read_full(&mut self.file, &mut frame[FRAME_HEADER_BYTES..])
            .map_err(|error| with_path(&self.segment.path, error))?;
        if got < length {
            return Err(corrupt(
                &self.segment,
                self.offset,
                "a written record is cut short",
            ));
        }
        let (record, used) = Record::decode_frame(&frame, self.format)
            .map_err(|error| corrupt(&self.segment, self.offset, &error.to_string()))?;
        if record.lsn != self.next_lsn {
            let detail = format!("record has LSN {}, expected {}", record.lsn, self.next_lsn);
            return Err(corrupt(&self.segment, self.offset, &detail));
        }
        self.offset += used as u64;
        self.next_lsn = record.lsn + 1;
        Ok(Some(record))
    }
}

/// Reads until `buf` is full or the file ends; returns how many bytes came.
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(read) => got += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(got)
}

/// A damaged segment, naming the file and the byte offset.
fn corrupt(segment: &SegmentFile, offset: u64, detail: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} at byte {offset}: {detail}", segment.path.display()),
    )
}
