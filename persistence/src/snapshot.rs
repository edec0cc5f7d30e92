//! Snapshot files, `{lsn:020}.snap`: everything live as of an LSN, entry by entry: carts with
//! the LSN of their last change, reference data (catalog entries, promotions, gift cards), and
//! opaque blocks the server keeps beside them (its remembered request tokens), and the stamps
//! of the reference entries a cluster shares. Written to a
//! `.tmp` file and renamed into place only when complete, then read back and checked, so a
//! `.snap` file is whole or damaged, never half-written. What an entry means is the server's
//! business.
//!
//! Two snapshots are kept: the newest, and the one before it (with the log from its LSN on), so
//! a newest snapshot damaged at rest costs nothing but a longer replay.
//!
//! Layout, format 2: header `magic | format u32 | lsn u64 | seed [u8; 32]`; per entry
//! `b'E' | kind u8 | key_len u32 | body_len u32 | lsn u64 | crc32c u32 | key | body`, the CRC
//! over everything of the entry but itself; trailer `b'T' | entries u64 | crc32c u32` of every
//! byte before that CRC. Integers little-endian. Format 1 (carts only, no seed, entries
//! `b'E' | key_len | image_len | crc | key | image`) is still read.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::record::{Lsn, Space, PAYLOAD_BYTES_MAX};
use crate::recovery::{io_error, Progress, RecoveryError};
use crate::wal::segment::sync_dir;

#[cfg(test)]
mod tests;

/// What every snapshot file starts with.
const SNAPSHOT_MAGIC: [u8; 8] = *b"CARTSNAP";

/// The snapshot format this code writes.
const SNAPSHOT_FORMAT: u32 = 2;

/// The format before reference data and per-cart LSNs, still read.
const SNAPSHOT_FORMAT_V1: u32 = 1;

/// Bytes of the server's key-hash seed a snapshot carries.
pub const SEED_BYTES: usize = 32;

/// Header bytes of format 1: magic, format, LSN.
const HEADER_V1_BYTES: usize = 20;

/// Header bytes of format 2: magic, format, LSN, seed.
const HEADER_BYTES: usize = HEADER_V1_BYTES + SEED_BYTES;

/// Bytes of a format-2 entry before its key: tag, kind, key length, body length, LSN, CRC.
const ENTRY_HEADER_BYTES: usize = 22;

/// Bytes of a format-1 entry before its key: tag, key length, image length, CRC.
const ENTRY_HEADER_V1_BYTES: usize = 13;

/// Tag of an entry.
const TAG_ENTRY: u8 = b'E';

/// Tag of the trailer.
const TAG_TRAILER: u8 = b'T';

/// Write buffer of the snapshot writer.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Complete snapshots kept: the newest and the one before it.
pub const SNAPSHOTS_KEPT: usize = 2;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A cart: its key, the LSN of its last change, its image.
    Cart,
    /// A catalog entry, promotion, gift card or handoff in progress: its key and image.
    Reference(Space),
    /// A block of whatever else the server keeps (its remembered request tokens).
    Block,
    /// The last-writer-wins stamp of a reference entry other nodes share, or of its tombstone:
    /// its key, and a body the server encodes. Written since server-wide data is shared across
    /// a cluster; snapshots without these entries read as entries without stamps.
    Stamp(Space),
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::Cart => 0,
            EntryKind::Reference(Space::Cart) => unreachable!("carts are EntryKind::Cart"),
            EntryKind::Reference(Space::Catalog) => 1,
            EntryKind::Reference(Space::Promotion) => 2,
            EntryKind::Reference(Space::GiftCard) => 3,
            EntryKind::Block => 4,
            EntryKind::Stamp(Space::Cart) => unreachable!("carts are not stamped"),
            EntryKind::Stamp(Space::Catalog) => 5,
            EntryKind::Stamp(Space::Promotion) => 6,
            EntryKind::Stamp(Space::GiftCard) => 7,
            EntryKind::Stamp(Space::Handoff) => unreachable!("handoffs are not stamped"),
            EntryKind::Reference(Space::Handoff) => 8,
        }
    }

    fn from_code(code: u8) -> Option<EntryKind> {
        Some(match code {
            0 => EntryKind::Cart,
            1 => EntryKind::Reference(Space::Catalog),
            2 => EntryKind::Reference(Space::Promotion),
            3 => EntryKind::Reference(Space::GiftCard),
            4 => EntryKind::Block,
            5 => EntryKind::Stamp(Space::Catalog),
            6 => EntryKind::Stamp(Space::Promotion),
            7 => EntryKind::Stamp(Space::GiftCard),
            8 => EntryKind::Reference(Space::Handoff),
            _ => return None,
        })
    }
}

/// An entry to write, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    /// What it holds.
    pub kind: EntryKind,
    /// The key (empty for a block).
    pub key: &'a [u8],
    /// A cart's last change (0 elsewhere, and for carts of format-1 snapshots).
    pub lsn: Lsn,
    /// The image or block.
    pub body: &'a [u8],
}

/// An entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it holds.
    pub kind: EntryKind,
    /// The key.
    pub key: Bytes,
    /// A cart's last change (0 elsewhere, and for carts of format-1 snapshots).
    pub lsn: Lsn,
    /// The image or block.
    pub body: Bytes,
}

/// A finished (or loaded) snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its file.
    pub path: PathBuf,
    /// The log position it was started at: replay the log after it.
    pub lsn: Lsn,
    /// Cart entries in it.
    pub carts: u64,
    /// Entries of every kind in it.
    pub entries: u64,
    /// Its size.
    pub bytes: u64,
    /// The server's key-hash seed it was written with (format 1 has none).
    pub seed: Option<[u8; SEED_BYTES]>,
}

/// Writes one snapshot: `create`, `push` every entry, `finish`. Dropped unfinished, it
/// removes its `.tmp` file.
pub struct SnapshotWriter {
    dir: PathBuf,
    lsn: Lsn,
    seed: [u8; SEED_BYTES],
    tmp_path: PathBuf,
    out: Option<BufWriter<File>>,
    /// CRC32C of every byte written so far.
    crc: u32,
    carts: u64,
    entries: u64,
    bytes: u64,
}

/// The file name of the snapshot at `lsn` (`{lsn:020}.snap`).
pub fn snapshot_name(lsn: Lsn) -> String {
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
    /// Starts the snapshot at `lsn` in `dir` (created if missing), as a `.tmp` file, for a
    /// server whose key hashes are seeded with `seed`.
    pub fn create(dir: &Path, lsn: Lsn, seed: [u8; SEED_BYTES]) -> io::Result<SnapshotWriter> {
        fs::create_dir_all(dir)?;
        let tmp_path = dir.join(format!("{}.tmp", snapshot_name(lsn)));
        let file = File::create(&tmp_path)?;
        let mut writer = SnapshotWriter {
            dir: dir.to_path_buf(),
            lsn,
            seed,
            tmp_path,
            out: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            crc: 0,
            carts: 0,
            entries: 0,
            bytes: 0,
        };
        writer.write(&header_bytes(lsn, seed))?;
        Ok(writer)
    }

    /// Adds one entry.
    pub fn push(&mut self, entry: EntryRef<'_>) -> io::Result<()> {
        let (key, body) = (entry.key, entry.body);
        if key.len() > PAYLOAD_BYTES_MAX || body.len() > PAYLOAD_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a snapshot entry is too large ({} byte key, {} byte body)",
                    key.len(),
                    body.len()
                ),
            ));
        }
        self.write(&entry_head(&entry))?;
        self.write(key)?;
        self.write(body)?;
        self.entries += 1;
        self.carts += u64::from(entry.kind == EntryKind::Cart);
        Ok(())
    }

    /// Writes the trailer, syncs, renames the file into place, syncs the directory, reads the
    /// file back to check it, and only then deletes snapshots older than the one before it
    /// and stale `.tmp` files. A snapshot that does not read back is deleted and is an error.
    pub fn finish(mut self) -> io::Result<SnapshotInfo> {
        self.write(&trailer_bytes(self.entries))?;
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
        let written = SnapshotInfo {
            path: path.clone(),
            lsn: self.lsn,
            carts: self.carts,
            entries: self.entries,
            bytes: self.bytes,
            seed: Some(self.seed),
        };
        match verify(&path) {
            Ok(read) if read == written => {}
            outcome => {
                let _ = fs::remove_file(&path);
                let why = match outcome {
                    Ok(read) => format!("it reads back as {read:?}, not {written:?}"),
                    Err(error) => error.to_string(),
                };
                return Err(io::Error::other(format!(
                    "the snapshot just written does not read back ({why}); it was deleted and \
                     the older snapshots are kept"
                )));
            }
        }
        remove_superseded(&self.dir);
        Ok(written)
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

/// The format-2 header of the snapshot at `lsn` written with `seed`.
fn header_bytes(lsn: Lsn, seed: [u8; SEED_BYTES]) -> [u8; HEADER_BYTES] {
    let mut header = [0; HEADER_BYTES];
    header[..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
    header[12..20].copy_from_slice(&lsn.to_le_bytes());
    header[20..].copy_from_slice(&seed);
    header
}

/// The format-2 header of `entry`, its CRC included; its key and body follow it. The lengths
/// must be checked against [`PAYLOAD_BYTES_MAX`] first.
fn entry_head(entry: &EntryRef<'_>) -> [u8; ENTRY_HEADER_BYTES] {
    let mut head = [0; ENTRY_HEADER_BYTES];
    head[0] = TAG_ENTRY;
    head[1] = entry.kind.code();
    head[2..6].copy_from_slice(&(entry.key.len() as u32).to_le_bytes());
    head[6..10].copy_from_slice(&(entry.body.len() as u32).to_le_bytes());
    head[10..18].copy_from_slice(&entry.lsn.to_le_bytes());
    let crc = entry_crc(&head[..18], entry.key, entry.body);
    head[18..22].copy_from_slice(&crc.to_le_bytes());
    head
}

/// The trailer's tag and entry count; the CRC of every byte before it follows.
fn trailer_bytes(entries: u64) -> [u8; 9] {
    let mut trailer = [0; 9];
    trailer[0] = TAG_TRAILER;
    trailer[1..9].copy_from_slice(&entries.to_le_bytes());
    trailer
}

/// A whole format-2 snapshot in memory, byte for byte what [`SnapshotWriter`] writes for the
/// same entries (the fuzz harnesses re-encode what they decode with it).
pub(crate) fn encode(lsn: Lsn, seed: [u8; SEED_BYTES], entries: &[EntryRef<'_>]) -> Vec<u8> {
    let mut out = header_bytes(lsn, seed).to_vec();
    for entry in entries {
        out.extend_from_slice(&entry_head(entry));
        out.extend_from_slice(entry.key);
        out.extend_from_slice(entry.body);
    }
    out.extend_from_slice(&trailer_bytes(entries.len() as u64));
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The CRC of an entry: its header without the CRC, key and body.
fn entry_crc(head: &[u8], key: &[u8], body: &[u8]) -> u32 {
    let crc = crc32c::crc32c(head);
    let crc = crc32c::crc32c_append(crc, key);
    crc32c::crc32c_append(crc, body)
}

/// Deletes every snapshot but the newest [`SNAPSHOTS_KEPT`], and every `.tmp` file; failures
/// are only logged.
fn remove_superseded(dir: &Path) {
    let Ok(files) = list_snapshot_dir(dir) else {
        return;
    };
    let superseded = files.snapshots.len().saturating_sub(SNAPSHOTS_KEPT);
    let old = files.snapshots[..superseded].iter().map(|(_, path)| path);
    for path in old.chain(&files.tmp) {
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

/// The complete snapshots in `dir`, newest first, after deleting `.tmp` leftovers of
/// unfinished ones.
pub fn list(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, RecoveryError> {
    let files = list_snapshot_dir(dir).map_err(io_error(dir))?;
    for path in &files.tmp {
        tracing::info!(file = %path.display(), "deleting an unfinished snapshot");
        fs::remove_file(path).map_err(io_error(path))?;
    }
    Ok(files.snapshots.into_iter().rev().collect())
}

/// The LSN of the newest snapshot in `dir`, without reading it.
pub fn latest_lsn(dir: &Path) -> Option<Lsn> {
    let files = list_snapshot_dir(dir).ok()?;
    files.snapshots.last().map(|(lsn, _)| *lsn)
}

/// The LSN of the oldest snapshot kept in `dir`: the log from there on is needed should the
/// newer ones turn out damaged.
pub fn oldest_lsn(dir: &Path) -> Option<Lsn> {
    let files = list_snapshot_dir(dir).ok()?;
    files.snapshots.first().map(|(lsn, _)| *lsn)
}

/// Loads the snapshot at `path`, calling `visit` for each entry. A snapshot failing its checks
/// is an error naming the file and byte offset; entries visited before the damage was found
/// are the caller's to discard.
pub fn load(path: &Path, mut visit: impl FnMut(Entry)) -> Result<SnapshotInfo, RecoveryError> {
    let lsn = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(parse_snapshot_name)
        .ok_or_else(|| RecoveryError::Corrupt {
            file: path.to_path_buf(),
            offset: 0,
            detail: "not named as a snapshot ({lsn:020}.snap)".into(),
        })?;
    let file = File::open(path).map_err(io_error(path))?;
    let input = BufReader::with_capacity(WRITE_BUFFER_BYTES, file);
    load_from(path, input, lsn, &mut visit)
}

/// Loads a snapshot from `input` as [`load`] loads a file: `path` is what errors name, `lsn`
/// what its file name says.
fn load_from(
    path: &Path,
    input: impl Read,
    lsn: Lsn,
    visit: &mut dyn FnMut(Entry),
) -> Result<SnapshotInfo, RecoveryError> {
    let mut loader = Loader {
        path,
        input,
        offset: 0,
        crc: 0,
        progress: Progress::new("loading the snapshot"),
    };
    let mut info = loader.load(lsn, visit)?;
    loader.progress.finish(info.entries);
    info.bytes = loader.offset;
    Ok(info)
}

/// Loads the snapshot held in `bytes`, exactly as [`load`] loads a file of these bytes named
/// for `lsn` (the fuzz harnesses read snapshots with it, without files).
pub(crate) fn load_bytes(
    bytes: &[u8],
    lsn: Lsn,
    visit: &mut dyn FnMut(Entry),
) -> Result<SnapshotInfo, RecoveryError> {
    let path = PathBuf::from(snapshot_name(lsn));
    load_from(&path, bytes, lsn, visit)
}

/// The key-hash seed in the header of the snapshot at `path` (format 1 has none), read
/// without the rest: a server sets it before it loads anything.
pub fn read_seed(path: &Path) -> Result<Option<[u8; SEED_BYTES]>, RecoveryError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut header = [0; HEADER_BYTES];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(count) => read += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(io_error(path)(error)),
        }
    }
    let corrupt = |detail: &str| RecoveryError::Corrupt {
        file: path.to_path_buf(),
        offset: 0,
        detail: detail.into(),
    };
    if read < HEADER_V1_BYTES || header[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("not a cartd snapshot (bad or cut header)"));
    }
    match u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) {
        SNAPSHOT_FORMAT_V1 => Ok(None),
        SNAPSHOT_FORMAT if read == HEADER_BYTES => {
            Ok(Some(header[20..].try_into().expect("32 bytes")))
        }
        _ => Err(corrupt("unknown snapshot format, or a cut header")),
    }
}

/// Reads the snapshot at `path` through, checking every entry and the trailer.
pub fn verify(path: &Path) -> Result<SnapshotInfo, RecoveryError> {
    load(path, |_| {})
}

/// Loads the newest snapshot in `dir` (see [`load`]); `None` when there is none.
pub fn load_latest(
    dir: &Path,
    visit: impl FnMut(Entry),
) -> Result<Option<SnapshotInfo>, RecoveryError> {
    match list(dir)?.first() {
        Some((_, path)) => load(path, visit).map(Some),
        None => Ok(None),
    }
}

/// Reads one snapshot file front to back, checking as it goes.
struct Loader<'a, R> {
    path: &'a Path,
    input: R,
    /// Bytes read so far: the offset of what comes next.
    offset: u64,
    /// CRC32C of every byte read so far.
    crc: u32,
    progress: Progress,
}

impl<R: Read> Loader<'_, R> {
    /// Checks the header, visits every entry, checks the trailer.
    fn load(
        &mut self,
        lsn: Lsn,
        visit: &mut dyn FnMut(Entry),
    ) -> Result<SnapshotInfo, RecoveryError> {
        let mut header = [0; HEADER_V1_BYTES];
        self.read(&mut header, "the header")?;
        if header[..8] != SNAPSHOT_MAGIC {
            return Err(self.corrupt(0, "not a cartd snapshot (bad magic)".into()));
        }
        let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if format != SNAPSHOT_FORMAT && format != SNAPSHOT_FORMAT_V1 {
            return Err(self.corrupt(8, format!("unknown snapshot format {format}")));
        }
        let header_lsn = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        if header_lsn != lsn {
            let detail = format!("the header says LSN {header_lsn}, the file name says {lsn}");
            return Err(self.corrupt(12, detail));
        }
        let seed = if format == SNAPSHOT_FORMAT {
            let mut seed = [0; SEED_BYTES];
            self.read(&mut seed, "the header")?;
            Some(seed)
        } else {
            None
        };
        let mut info = SnapshotInfo {
            path: self.path.to_path_buf(),
            lsn,
            carts: 0,
            entries: 0,
            bytes: 0,
            seed,
        };
        loop {
            let at = self.offset;
            let mut tag = [0; 1];
            self.read(&mut tag, "the next entry or the trailer")?;
            match tag[0] {
                TAG_ENTRY => {
                    let entry = if format == SNAPSHOT_FORMAT {
                        self.read_entry(at)?
                    } else {
                        self.read_entry_v1(at)?
                    };
                    self.progress.advance(self.offset - at);
                    info.entries += 1;
                    info.carts += u64::from(entry.kind == EntryKind::Cart);
                    visit(entry);
                }
                TAG_TRAILER => {
                    self.read_trailer(at, info.entries)?;
                    return Ok(info);
                }
                other => return Err(self.corrupt(at, format!("unknown entry tag {other:#04x}"))),
            }
        }
    }

    /// Reads the rest of the format-2 entry that started at `at` (its tag already read).
    fn read_entry(&mut self, at: u64) -> Result<Entry, RecoveryError> {
        let mut head = [0; ENTRY_HEADER_BYTES];
        head[0] = TAG_ENTRY;
        self.read(&mut head[1..], "an entry header")?;
        let kind = EntryKind::from_code(head[1])
            .ok_or_else(|| self.corrupt(at, format!("unknown entry kind {}", head[1])))?;
        let length = |from: usize| {
            u32::from_le_bytes(head[from..from + 4].try_into().expect("4 bytes")) as usize
        };
        let (key_len, body_len) = (length(2), length(6));
        let lsn = u64::from_le_bytes(head[10..18].try_into().expect("8 bytes"));
        let expected_crc = u32::from_le_bytes(head[18..22].try_into().expect("4 bytes"));
        let (key, body) = self.read_key_and_body(at, key_len, body_len)?;
        if entry_crc(&head[..18], &key, &body) != expected_crc {
            return Err(self.corrupt(at, "entry checksum mismatch".into()));
        }
        Ok(Entry {
            kind,
            key: Bytes::from(key),
            lsn,
            body: Bytes::from(body),
        })
    }

    /// Reads the rest of the format-1 (cart) entry that started at `at`.
    fn read_entry_v1(&mut self, at: u64) -> Result<Entry, RecoveryError> {
        let mut head = [0; ENTRY_HEADER_V1_BYTES];
        head[0] = TAG_ENTRY;
        self.read(&mut head[1..], "an entry header")?;
        let length = |from: usize| {
            u32::from_le_bytes(head[from..from + 4].try_into().expect("4 bytes")) as usize
        };
        let (key_len, image_len) = (length(1), length(5));
        let expected_crc = u32::from_le_bytes(head[9..13].try_into().expect("4 bytes"));
        let (key, image) = self.read_key_and_body(at, key_len, image_len)?;
        if entry_crc(&head[..9], &key, &image) != expected_crc {
            return Err(self.corrupt(at, "entry checksum mismatch".into()));
        }
        Ok(Entry {
            kind: EntryKind::Cart,
            key: Bytes::from(key),
            lsn: 0,
            body: Bytes::from(image),
        })
    }

    /// Reads an entry's key and body after checking their lengths.
    fn read_key_and_body(
        &mut self,
        at: u64,
        key_len: usize,
        body_len: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), RecoveryError> {
        if key_len > PAYLOAD_BYTES_MAX || body_len > PAYLOAD_BYTES_MAX {
            let detail = format!("impossible entry lengths (key {key_len}, body {body_len})");
            return Err(self.corrupt(at, detail));
        }
        let mut key = vec![0; key_len];
        self.read(&mut key, "an entry key")?;
        let mut body = vec![0; body_len];
        self.read(&mut body, "an entry body")?;
        Ok((key, body))
    }

    /// Checks the trailer that started at `at` and that nothing follows it.
    fn read_trailer(&mut self, at: u64, entries: u64) -> Result<(), RecoveryError> {
        let mut count = [0; 8];
        self.read(&mut count, "the trailer")?;
        let expected_crc = self.crc;
        let mut crc = [0; 4];
        self.read(&mut crc, "the trailer")?;
        let count = u64::from_le_bytes(count);
        if count != entries {
            let detail = format!("the trailer counts {count} entries, the file holds {entries}");
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
