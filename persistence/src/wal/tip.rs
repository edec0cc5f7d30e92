//! `wal/tip`: how far the log is known to have got, so a start can tell a log that was cut or
//! lost from one that simply ended. It names the newest segment (synced whenever a segment is
//! started, so a newest segment that disappears is noticed) and the last LSN written (updated
//! without a sync at most every [`TIP_INTERVAL_MS`] and on close, so after a process crash it
//! is at most that much behind; after an OS crash it may be older, never ahead of what was
//! written and synced together with it).
//!
//! Layout: `magic [8] | newest_first_lsn u64 | written_lsn u64 | crc32c u32 | 0 u32`, little
//! endian, rewritten in place (one write of 32 bytes; a torn one fails its checksum and the
//! file is then ignored).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::record::Lsn;

/// The file's name in the log directory.
pub(crate) const TIP_FILE: &str = "tip";

/// How often the written LSN is noted at most while records are written.
pub(crate) const TIP_INTERVAL_MS: u64 = 100;

const TIP_MAGIC: [u8; 8] = *b"CARTDTIP";
const TIP_BYTES: usize = 32;

/// What the tip file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// The first LSN of the newest segment started.
    pub newest_first_lsn: Lsn,
    /// The log was written at least up to this LSN.
    pub written_lsn: Lsn,
}

impl Tip {
    fn encode(&self) -> [u8; TIP_BYTES] {
        let mut out = [0; TIP_BYTES];
        out[..8].copy_from_slice(&TIP_MAGIC);
        out[8..16].copy_from_slice(&self.newest_first_lsn.to_le_bytes());
        out[16..24].copy_from_slice(&self.written_lsn.to_le_bytes());
        let crc = crc32c::crc32c(&out[..24]);
        out[24..28].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Tip> {
        let bytes = bytes.get(..TIP_BYTES)?;
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
        (bytes[..8] == TIP_MAGIC && crc == crc32c::crc32c(&bytes[..24])).then(|| Tip {
            newest_first_lsn: word(8),
            written_lsn: word(16),
        })
    }
}

/// The tip file of the log in `dir`, if there is a readable one.
pub fn read(dir: &Path) -> Option<Tip> {
    let bytes = std::fs::read(dir.join(TIP_FILE)).ok()?;
    Tip::decode(&bytes)
}

/// The open tip file the writer keeps.
pub(crate) struct TipFile {
    file: File,
    path: PathBuf,
    tip: Tip,
}

impl TipFile {
    /// Opens (or creates) the tip file in `dir` and writes `tip`, synced.
    pub(crate) fn open(dir: &Path, tip: Tip) -> io::Result<TipFile> {
        let path = dir.join(TIP_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut opened = TipFile { file, path, tip };
        opened.write(tip, true)?;
        Ok(opened)
    }

    /// Notes a new segment, synced.
    pub(crate) fn started_segment(&mut self, first_lsn: Lsn) -> io::Result<()> {
        let tip = Tip {
            newest_first_lsn: first_lsn,
            ..self.tip
        };
        self.write(tip, true)
    }

    /// Notes the written LSN; `sync` when it must reach the disk now (on close).
    pub(crate) fn written(&mut self, written_lsn: Lsn, sync: bool) -> io::Result<()> {
        if written_lsn == self.tip.written_lsn && !sync {
            return Ok(());
        }
        let tip = Tip {
            written_lsn,
            ..self.tip
        };
        self.write(tip, sync)
    }

    fn write(&mut self, tip: Tip, sync: bool) -> io::Result<()> {
        let written = self.file.write_all_at(&tip.encode(), 0).and_then(|()| {
            if sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        written.map_err(|error| super::segment::with_path(&self.path, error))?;
        self.tip = tip;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tip_round_trips_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let tip = Tip {
            newest_first_lsn: 40,
            written_lsn: 57,
        };
        let mut file = TipFile::open(dir.path(), tip).unwrap();
        assert_eq!(read(dir.path()), Some(tip));
        file.written(90, false).unwrap();
        file.started_segment(91).unwrap();
        let expected = Tip {
            newest_first_lsn: 91,
            written_lsn: 90,
        };
        assert_eq!(read(dir.path()), Some(expected));
        let mut bytes = std::fs::read(dir.path().join(TIP_FILE)).unwrap();
        bytes[17] ^= 1;
        std::fs::write(dir.path().join(TIP_FILE), bytes).unwrap();
        assert_eq!(read(dir.path()), None);
    }
}
