//! Snapshots in temporary directories: round trip of every entry kind, format 1 still read,
//! the two newest kept, leftovers of unfinished ones, and damaged files refused with their
//! offset.

use std::fs;

use super::*;

const SEED: [u8; SEED_BYTES] = [7; SEED_BYTES];

/// The `i`th test entry: mostly carts, every 7th a reference entry (every 13th a handoff),
/// every 50th a block.
fn entry(i: u64) -> Entry {
    let kind = match i {
        _ if i % 50 == 49 => EntryKind::Block,
        _ if i % 13 == 12 => EntryKind::Reference(Space::Handoff),
        _ if i % 7 == 6 => EntryKind::Reference(Space::GiftCard),
        _ => EntryKind::Cart,
    };
    let key = format!("cart:{i}").into_bytes();
    let body = format!("image of cart {i} {}", "y".repeat((i % 300) as usize)).into_bytes();
    Entry {
        kind,
        key: key.into(),
        lsn: if kind == EntryKind::Cart { i * 3 } else { 0 },
        body: body.into(),
    }
}

fn entry_ref(entry: &Entry) -> EntryRef<'_> {
    EntryRef {
        kind: entry.kind,
        key: &entry.key,
        lsn: entry.lsn,
        body: &entry.body,
    }
}

/// Writes a snapshot of `count` test entries at `lsn`.
fn write_snapshot(dir: &Path, lsn: Lsn, count: u64) -> SnapshotInfo {
    let mut writer = SnapshotWriter::create(dir, lsn, SEED).unwrap();
    for i in 0..count {
        writer.push(entry_ref(&entry(i))).unwrap();
    }
    writer.finish().unwrap()
}

/// Every entry a snapshot load visited, and what it returned.
type Loaded = (Vec<Entry>, Option<SnapshotInfo>);

/// Every entry the newest snapshot holds, or its error.
fn load(dir: &Path) -> Result<Loaded, RecoveryError> {
    let mut entries = Vec::new();
    let info = load_latest(dir, |entry| entries.push(entry))?;
    Ok((entries, info))
}

#[test]
fn no_snapshot_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(load(&dir.path().join("missing")).unwrap().1, None);
    assert_eq!(latest_lsn(dir.path()), None);
}

/// Every entry comes back in order, and the info written is the info loaded.
#[test]
fn a_snapshot_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_snapshot(dir.path(), 1234, 5000);
    assert_eq!(written.lsn, 1234);
    assert_eq!(written.entries, 5000);
    assert_eq!(
        written.carts,
        (0..5000)
            .filter(|i| entry(*i).kind == EntryKind::Cart)
            .count() as u64
    );
    assert_eq!(written.seed, Some(SEED));
    assert_eq!(written.path, dir.path().join("00000000000000001234.snap"));
    assert_eq!(written.bytes, fs::metadata(&written.path).unwrap().len());
    assert_eq!(latest_lsn(dir.path()), Some(1234));

    let (entries, loaded) = load(dir.path()).unwrap();
    assert_eq!(loaded, Some(written));
    assert_eq!(entries.len(), 5000);
    for (i, loaded) in (0..).zip(&entries) {
        assert_eq!(loaded, &entry(i));
    }
}

/// A format-1 snapshot (carts only, no seed) still loads, its carts with LSN 0.
#[test]
fn a_format_1_snapshot_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_FORMAT_V1.to_le_bytes());
    bytes.extend_from_slice(&42u64.to_le_bytes());
    for (key, image) in [(&b"cart:1"[..], &b"one"[..]), (b"cart:2", b"two")] {
        let mut head = vec![TAG_ENTRY];
        head.extend_from_slice(&(key.len() as u32).to_le_bytes());
        head.extend_from_slice(&(image.len() as u32).to_le_bytes());
        let crc = entry_crc(&head, key, image);
        bytes.extend_from_slice(&head);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(image);
    }
    bytes.push(TAG_TRAILER);
    bytes.extend_from_slice(&2u64.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    fs::write(dir.path().join(snapshot_name(42)), &bytes).unwrap();
    let (entries, info) = load(dir.path()).unwrap();
    let info = info.unwrap();
    assert_eq!((info.lsn, info.carts, info.seed), (42, 2, None));
    assert_eq!(entries[1].kind, EntryKind::Cart);
    assert_eq!(
        (&entries[1].key[..], entries[1].lsn, &entries[1].body[..]),
        (&b"cart:2"[..], 0, &b"two"[..])
    );
}

/// An empty store makes a valid, empty snapshot.
#[test]
fn an_empty_snapshot_loads() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 0, 0);
    let (entries, info) = load(dir.path()).unwrap();
    assert!(entries.is_empty());
    assert_eq!(info.unwrap().entries, 0);
}

/// A newer snapshot replaces all but the one before it, and stale `.tmp` files; a `.tmp` left
/// by a crash is ignored by loading (even with a higher LSN) and deleted.
#[test]
fn the_two_newest_snapshots_are_kept_and_tmp_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let oldest = write_snapshot(dir.path(), 10, 5);
    let stale = dir.path().join("00000000000000000005.snap.tmp");
    fs::write(&stale, b"half a snapshot").unwrap();
    let previous = write_snapshot(dir.path(), 20, 7);
    assert!(oldest.path.exists(), "two are kept");
    assert!(!stale.exists());
    assert_eq!(oldest_lsn(dir.path()), Some(10));
    let newest = write_snapshot(dir.path(), 30, 9);
    assert!(!oldest.path.exists());
    assert!(previous.path.exists() && newest.path.exists());
    assert_eq!(oldest_lsn(dir.path()), Some(20));
    let listed: Vec<Lsn> = list(dir.path())
        .unwrap()
        .into_iter()
        .map(|(lsn, _)| lsn)
        .collect();
    assert_eq!(listed, [30, 20], "newest first");

    let crashed = dir.path().join("00000000000000000099.snap.tmp");
    fs::write(&crashed, b"CARTSNAP and then the crash").unwrap();
    let (entries, info) = load(dir.path()).unwrap();
    assert_eq!(info.unwrap().lsn, 30);
    assert_eq!(entries.len(), 9);
    assert!(!crashed.exists());
    assert_eq!(latest_lsn(dir.path()), Some(30));
    assert_eq!(verify(&previous.path).unwrap(), previous);
}

/// A writer dropped before `finish` leaves nothing behind.
#[test]
fn an_unfinished_writer_removes_its_tmp_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = SnapshotWriter::create(dir.path(), 3, SEED).unwrap();
    writer.push(entry_ref(&entry(1))).unwrap();
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
        let entry = entry(i);
        offset += ENTRY_HEADER_BYTES + entry.key.len() + entry.body.len();
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
