//! Snapshot files, `{lsn:020}.snap`: every live cart as (key, after-image) as of an LSN.
//! Written to a `.tmp` file and renamed into place only when complete, so a `.snap` file is
//! whole or damaged, never half-written. The newest one plus the log after its LSN is the
//! node's state. What an image means is the server's business.
//!
//! Layout: header (magic, format, LSN); per cart `b'E' | key_len u32 | image_len u32 |
//! crc32c u32 | key | image`, the CRC over everything of the entry but itself; trailer
//! `b'T' | carts u64 | crc32c u32` of every byte before that CRC. Integers little-endian.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::record::{Lsn, PAYLOAD_BYTES_MAX};
use crate::recovery::{io_error, Progress, RecoveryError};
use crate::wal::segment::sync_dir;

#[cfg(test)]
mod tests;

/// What every snapshot file starts with.
const SNAPSHOT_MAGIC: [u8; 8] = *b"CARTSNAP";

/// The snapshot format this code writes and reads.
const SNAPSHOT_FORMAT: u32 = 1;

/// Header bytes: magic, format, LSN.
const HEADER_BYTES: usize = 20;

/// Bytes of an entry before its key: tag, key length, image length, CRC.
const ENTRY_HEADER_BYTES: usize = 13;

/// Tag of an entry.
const TAG_ENTRY: u8 = b'E';

/// Tag of the trailer.
const TAG_TRAILER: u8 = b'T';

/// Write buffer of the snapshot writer.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// A finished (or loaded) snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its file.
    pub path: PathBuf,
    /// The log position it was started at: replay the log after it.
    pub lsn: Lsn,
    /// Carts in it.
    pub carts: u64,
    /// Its size.
    pub bytes: u64,
}

/// Writes one snapshot: `create`, `push` every cart, `finish`. Dropped unfinished, it
/// removes its `.tmp` file.
pub struct SnapshotWriter {
    dir: PathBuf,
    lsn: Lsn,
    tmp_path: PathBuf,
    out: Option<BufWriter<File>>,
    /// CRC32C of every byte written so far.
    crc: u32,
    carts: u64,
    bytes: u64,
}

/// The file name of the snapshot at `lsn`.
fn snapshot_name(lsn: Lsn) -> String {
    format!("{lsn:020}.snap")
}

/// The LSN a snapshot file name stands for; `None` for any other file.
fn parse_snapshot_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl SnapshotWriter {
    /// Starts the snapshot at `lsn` in `dir` (created if missing), as a `.tmp` file.
    pub fn create(dir: &Path, lsn: Lsn) -> io::Result<SnapshotWriter> {
        fs::create_dir_all(dir)?;
        let tmp_path = dir.join(format!("{}.tmp", snapshot_name(lsn)));
        let file = File::create(&tmp_path)?;
        let mut writer = SnapshotWriter {
            dir: dir.to_path_buf(),
            lsn,
            tmp_path,
            out: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            crc: 0,
            carts: 0,
            bytes: 0,
        };
        let mut header = [0; HEADER_BYTES];
        header[..8].copy_from_slice(&SNAPSHOT_MAGIC);
        header[8..12].copy_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
        header[12..20].copy_from_slice(&lsn.to_le_bytes());
        writer.write(&header)?;
        Ok(writer)
    }

    /// Adds one cart.
    pub fn push(&mut self, key: &[u8], image: &[u8]) -> io::Result<()> {
        if key.len() > PAYLOAD_BYTES_MAX || image.len() > PAYLOAD_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a snapshot entry is too large ({} byte key, {} byte image)",
                    key.len(),
                    image.len()
                ),
            ));
        }
        let mut head = [0; ENTRY_HEADER_BYTES];
        head[0] = TAG_ENTRY;
        head[1..5].copy_from_slice(&(key.len() as u32).to_le_bytes());
        head[5..9].copy_from_slice(&(image.len() as u32).to_le_bytes());
        let crc = entry_crc(&head[..9], key, image);
        head[9..13].copy_from_slice(&crc.to_le_bytes());
        self.write(&head)?;
        self.write(key)?;
        self.write(image)?;
        self.carts += 1;
        Ok(())
    }

    /// Writes the trailer, syncs, renames the file into place, syncs the directory, and
    /// deletes older snapshots and stale `.tmp` files.
    pub fn finish(mut self) -> io::Result<SnapshotInfo> {
        let mut trailer = [0; 9];
        trailer[0] = TAG_TRAILER;
        trailer[1..9].copy_from_slice(&self.carts.to_le_bytes());
        self.write(&trailer)?;
        let crc = self.crc;
        self.write(&crc.to_le_bytes())?;
        let out = self
            .out
            .take()
            .expect("only finish takes the file, and only once");
        let file = out.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        drop(file);
        let path = self.dir.join(snapshot_name(self.lsn));
        fs::rename(&self.tmp_path, &path)?;
        sync_dir(&self.dir)?;
        remove_older(&self.dir, self.lsn);
        Ok(SnapshotInfo {
            path,
            lsn: self.lsn,
            carts: self.carts,
            bytes: self.bytes,
        })
    }

    /// Writes `bytes` through the buffer, counting them into the file CRC.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let out = self.out.as_mut().expect("the file is open until finish");
        out.write_all(bytes)?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Unfinished: the partial file is worthless.
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

/// The CRC of an entry: its tag and lengths, key and image.
fn entry_crc(head: &[u8], key: &[u8], image: &[u8]) -> u32 {
    let crc = crc32c::crc32c(head);
    let crc = crc32c::crc32c_append(crc, key);
    crc32c::crc32c_append(crc, image)
}

/// Deletes snapshots older than `lsn` and every `.tmp` file; failures are only logged.
fn remove_older(dir: &Path, lsn: Lsn) {
    let Ok(files) = list_snapshot_dir(dir) else {
        return;
    };
    let older = files.snapshots.iter().filter(|(old, _)| *old < lsn);
    for path in older.map(|(_, path)| path).chain(&files.tmp) {
        if let Err(error) = fs::remove_file(path) {
            tracing::warn!(file = %path.display(), %error, "cannot delete an old snapshot file");
        }
    }
}

/// What a snapshot directory holds.
struct SnapshotDir {
    /// Complete snapshots, oldest first.
    snapshots: Vec<(Lsn, PathBuf)>,
    /// Leftovers of unfinished ones.
    tmp: Vec<PathBuf>,
}

/// Lists `dir`; a missing directory is an empty one.
fn list_snapshot_dir(dir: &Path) -> io::Result<SnapshotDir> {
    let mut found = SnapshotDir {
        snapshots: Vec::new(),
        tmp: Vec::new(),
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(lsn) = parse_snapshot_name(name) {
            found.snapshots.push((lsn, entry.path()));
        } else if name.ends_with(".snap.tmp") {
            found.tmp.push(entry.path());
        }
    }
    found.snapshots.sort();
    Ok(found)
}

/// The LSN of the newest snapshot in `dir`, without reading it.
pub fn latest_lsn(dir: &Path) -> Option<Lsn> {
    let files = list_snapshot_dir(dir).ok()?;
    files.snapshots.last().map(|(lsn, _)| *lsn)
}

/// Loads the newest snapshot in `dir`, calling `visit(key, image)` for each cart, and deletes
/// `.tmp` leftovers. `None` when there is no snapshot. A snapshot failing its checks is an
/// error naming the file and byte offset.
pub fn load_latest(
    dir: &Path,
    mut visit: impl FnMut(Bytes, Bytes),
) -> Result<Option<SnapshotInfo>, RecoveryError> {
    let files = list_snapshot_dir(dir).map_err(io_error(dir))?;
    for path in &files.tmp {
        tracing::info!(file = %path.display(), "deleting an unfinished snapshot");
        fs::remove_file(path).map_err(io_error(path))?;
    }
    let Some((lsn, path)) = files.snapshots.last() else {
        return Ok(None);
    };
    let file = File::open(path).map_err(io_error(path))?;
    let mut loader = Loader {
        path,
        input: BufReader::with_capacity(WRITE_BUFFER_BYTES, file),
        offset: 0,
        crc: 0,
        progress: Progress::new("loading the snapshot"),
    };
    let carts = loader.load(*lsn, &mut visit)?;
    loader.progress.finish(carts);
    Ok(Some(SnapshotInfo {
        path: path.clone(),
        lsn: *lsn,
        carts,
        bytes: loader.offset,
    }))
}

/// Reads one snapshot file front to back, checking as it goes.
struct Loader<'a> {
    path: &'a Path,
    input: BufReader<File>,
    /// Bytes read so far: the offset of what comes next.
    offset: u64,
    /// CRC32C of every byte read so far.
    crc: u32,
    progress: Progress,
}

impl Loader<'_> {
    /// Checks the header, visits every entry, checks the trailer; returns the cart count.
    fn load(
        &mut self,
        lsn: Lsn,
        visit: &mut dyn FnMut(Bytes, Bytes),
    ) -> Result<u64, RecoveryError> {
        let mut header = [0; HEADER_BYTES];
        self.read(&mut header, "the header")?;
        if header[..8] != SNAPSHOT_MAGIC {
            return Err(self.corrupt(0, "not a cartd snapshot (bad magic)".into()));
        }
        let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if format != SNAPSHOT_FORMAT {
            return Err(self.corrupt(8, format!("unknown snapshot format {format}")));
        }
        let header_lsn = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        if header_lsn != lsn {
            let detail = format!("the header says LSN {header_lsn}, the file name says {lsn}");
            return Err(self.corrupt(12, detail));
        }
        let mut carts = 0;
        loop {
            let at = self.offset;
            let mut tag = [0; 1];
            self.read(&mut tag, "the next entry or the trailer")?;
            match tag[0] {
                TAG_ENTRY => {
                    let (key, image) = self.read_entry(at)?;
                    self.progress.advance(self.offset - at);
                    visit(key, image);
                    carts += 1;
                }
                TAG_TRAILER => {
                    self.read_trailer(at, carts)?;
                    return Ok(carts);
                }
                other => return Err(self.corrupt(at, format!("unknown entry tag {other:#04x}"))),
            }
        }
    }

    /// Reads the rest of the entry that started at `at` (its tag already read).
    fn read_entry(&mut self, at: u64) -> Result<(Bytes, Bytes), RecoveryError> {
        let mut head = [0; ENTRY_HEADER_BYTES];
        head[0] = TAG_ENTRY;
        self.read(&mut head[1..], "an entry header")?;
        let length = |from: usize| {
            u32::from_le_bytes(head[from..from + 4].try_into().expect("4 bytes")) as usize
        };
        let (key_len, image_len) = (length(1), length(5));
        if key_len > PAYLOAD_BYTES_MAX || image_len > PAYLOAD_BYTES_MAX {
            let detail = format!("impossible entry lengths (key {key_len}, image {image_len})");
            return Err(self.corrupt(at, detail));
        }
        let expected_crc = u32::from_le_bytes(head[9..13].try_into().expect("4 bytes"));
        let mut key = vec![0; key_len];
        self.read(&mut key, "a cart key")?;
        let mut image = vec![0; image_len];
        self.read(&mut image, "a cart image")?;
        if entry_crc(&head[..9], &key, &image) != expected_crc {
            return Err(self.corrupt(at, "entry checksum mismatch".into()));
        }
        Ok((Bytes::from(key), Bytes::from(image)))
    }

    /// Checks the trailer that started at `at` and that nothing follows it.
    fn read_trailer(&mut self, at: u64, carts: u64) -> Result<(), RecoveryError> {
        let mut count = [0; 8];
        self.read(&mut count, "the trailer")?;
        let expected_crc = self.crc;
        let mut crc = [0; 4];
        self.read(&mut crc, "the trailer")?;
        let count = u64::from_le_bytes(count);
        if count != carts {
            let detail = format!("the trailer counts {count} carts, the file holds {carts}");
            return Err(self.corrupt(at, detail));
        }
        if u32::from_le_bytes(crc) != expected_crc {
            return Err(self.corrupt(at, "file checksum mismatch".into()));
        }
        let mut extra = [0; 1];
        match self.input.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(self.corrupt(self.offset, "bytes after the trailer".into())),
            Err(error) => Err(io_error(self.path)(error)),
        }
    }

    /// Fills `buf`; the end of the file here means the snapshot is cut short.
    fn read(&mut self, buf: &mut [u8], what: &str) -> Result<(), RecoveryError> {
        match self.input.read_exact(buf) {
            Ok(()) => {
                self.crc = crc32c::crc32c_append(self.crc, buf);
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                let detail = format!("the file ends inside {what}");
                Err(self.corrupt(self.offset, detail))
            }
            Err(error) => Err(io_error(self.path)(error)),
        }
    }

    /// A damaged snapshot at `offset`.
    fn corrupt(&self, offset: u64, detail: String) -> RecoveryError {
        RecoveryError::Corrupt {
            file: self.path.to_path_buf(),
            offset,
            detail,
        }
    }
}
