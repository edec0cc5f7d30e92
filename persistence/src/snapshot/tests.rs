//! Snapshots in temporary directories: round trip, replacement of older ones, leftovers of
//! unfinished ones, and damaged files refused with their offset.

use std::fs;

use super::*;

/// The `i`th test cart.
fn cart(i: u64) -> (Vec<u8>, Vec<u8>) {
    let key = format!("cart:{i}").into_bytes();
    let image = format!("image of cart {i} {}", "y".repeat((i % 300) as usize)).into_bytes();
    (key, image)
}

/// Writes a snapshot of `count` test carts at `lsn`.
fn write_snapshot(dir: &Path, lsn: Lsn, count: u64) -> SnapshotInfo {
    let mut writer = SnapshotWriter::create(dir, lsn).unwrap();
    for i in 0..count {
        let (key, image) = cart(i);
        writer.push(&key, &image).unwrap();
    }
    writer.finish().unwrap()
}

/// Every cart a snapshot load visited, and what it returned.
type Loaded = (Vec<(Bytes, Bytes)>, Option<SnapshotInfo>);

/// Every cart the newest snapshot holds, or its error.
fn load(dir: &Path) -> Result<Loaded, RecoveryError> {
    let mut carts = Vec::new();
    let info = load_latest(dir, |key, image| carts.push((key, image)))?;
    Ok((carts, info))
}

#[test]
fn no_snapshot_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load(&dir.path().join("missing")).unwrap().1, None);
    assert_eq!(latest_lsn(dir.path()), None);
}

/// Every cart comes back in order, and the info written is the info loaded.
#[test]
fn a_snapshot_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_snapshot(dir.path(), 1234, 5000);
    assert_eq!(written.lsn, 1234);
    assert_eq!(written.carts, 5000);
    assert_eq!(written.path, dir.path().join("00000000000000001234.snap"));
    assert_eq!(written.bytes, fs::metadata(&written.path).unwrap().len());
    assert_eq!(latest_lsn(dir.path()), Some(1234));

    let (carts, loaded) = load(dir.path()).unwrap();
    assert_eq!(loaded, Some(written));
    assert_eq!(carts.len(), 5000);
    for (i, (key, image)) in (0..).zip(&carts) {
        let (expected_key, expected_image) = cart(i);
        assert_eq!(&key[..], &expected_key[..]);
        assert_eq!(&image[..], &expected_image[..]);
    }
}

/// An empty store makes a valid, empty snapshot.
#[test]
fn an_empty_snapshot_loads() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 0, 0);
    let (carts, info) = load(dir.path()).unwrap();
    assert!(carts.is_empty());
    assert_eq!(info.unwrap().carts, 0);
}

/// A newer snapshot replaces older ones and stale `.tmp` files; a `.tmp` left by a crash is
/// ignored by loading (even with a higher LSN) and deleted.
#[test]
fn newer_snapshots_replace_older_ones_and_tmp_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_snapshot(dir.path(), 10, 5);
    let stale = dir.path().join("00000000000000000005.snap.tmp");
    fs::write(&stale, b"half a snapshot").unwrap();
    let new = write_snapshot(dir.path(), 20, 7);
    assert!(!old.path.exists());
    assert!(!stale.exists());
    assert!(new.path.exists());

    let crashed = dir.path().join("00000000000000000099.snap.tmp");
    fs::write(&crashed, b"CARTSNAP and then the crash").unwrap();
    let (carts, info) = load(dir.path()).unwrap();
    assert_eq!(info.unwrap().lsn, 20);
    assert_eq!(carts.len(), 7);
    assert!(!crashed.exists());
    assert_eq!(latest_lsn(dir.path()), Some(20));
}

/// A writer dropped before `finish` leaves nothing behind.
#[test]
fn an_unfinished_writer_removes_its_tmp_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = SnapshotWriter::create(dir.path(), 3).unwrap();
    writer.push(b"cart:1", b"image").unwrap();
    drop(writer);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A flipped byte inside an entry is refused, naming the file and the entry's offset.
#[test]
fn a_damaged_entry_is_refused_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let info = write_snapshot(dir.path(), 7, 100);
    let mut bytes = fs::read(&info.path).unwrap();
    // Entry 0 starts after the header; find entry 10's offset by walking the lengths.
    let mut offset = HEADER_BYTES;
    for i in 0..10 {
        let (key, image) = cart(i);
        offset += ENTRY_HEADER_BYTES + key.len() + image.len();
    }
    bytes[offset + ENTRY_HEADER_BYTES + 2] ^= 0x01;
    fs::write(&info.path, &bytes).unwrap();

    let error = load(dir.path()).unwrap_err();
    match &error {
        RecoveryError::Corrupt {
            file,
            offset: at,
            detail,
        } => {
            assert_eq!(file, &info.path);
            assert_eq!(*at, offset as u64);
            assert!(detail.contains("checksum"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&info.path.display().to_string()),
        "{message}"
    );
    assert!(message.contains(&format!("byte {offset}")), "{message}");
}

/// A snapshot cut short (no trailer) or with a wrong trailer is refused.
#[test]
fn a_cut_or_miscounted_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let info = write_snapshot(dir.path(), 7, 100);
    let bytes = fs::read(&info.path).unwrap();

    fs::write(&info.path, &bytes[..bytes.len() - 30]).unwrap();
    match load(dir.path()).unwrap_err() {
        RecoveryError::Corrupt { detail, .. } => assert!(detail.contains("ends"), "{detail}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }

    let mut miscounted = bytes.clone();
    let count_at = bytes.len() - 12;
    miscounted[count_at] ^= 0x01;
    fs::write(&info.path, &miscounted).unwrap();
    match load(dir.path()).unwrap_err() {
        RecoveryError::Corrupt { offset, detail, .. } => {
            assert_eq!(offset, (bytes.len() - 13) as u64, "the trailer's offset");
            assert!(detail.contains("counts"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    let mut trailing = bytes.clone();
    trailing.push(0);
    fs::write(&info.path, &trailing).unwrap();
    assert!(load(dir.path()).is_err());
}
