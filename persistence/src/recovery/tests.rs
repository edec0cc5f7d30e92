//! Recovery on logs damaged the ways crashes and disks damage them: torn tails cut, damage
//! in the middle refused with its place, or cut with `repair`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::*;
use crate::record::RecordFormat;
use crate::wal::segment::list_segments;
use crate::wal::tests::{append_nth, assert_nth, small_segments, write_log};
use crate::wal::{FsyncPolicy, Wal};

/// Byte offsets of every frame in the segment at `path`.
fn frame_offsets(path: &Path) -> Vec<u64> {
    let bytes = fs::read(path).unwrap();
    let mut offsets = Vec::new();
    let mut offset = crate::wal::segment::SEGMENT_HEADER_BYTES;
    while offset < bytes.len() {
        offsets.push(offset as u64);
        let (_, used) = Record::decode_frame(&bytes[offset..], RecordFormat::V2).unwrap();
        offset += used;
    }
    offsets
}

/// Flips one byte of `path` at `offset`.
fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

/// Every LSN replay visits, and its report.
fn replay_lsns(dir: &Path, repair: bool) -> Result<(Vec<Lsn>, ReplayReport), RecoveryError> {
    let mut lsns = Vec::new();
    let report = replay(dir, 0, repair, |record| lsns.push(record.lsn))?;
    Ok((lsns, report))
}

#[test]
fn a_missing_directory_is_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let report = replay(&dir.path().join("wal"), 0, false, |_| panic!("no records")).unwrap();
    assert_eq!(report, ReplayReport::default());
}

/// A frame cut mid-way at the end of the last segment, then zeros after it (as a crash can
/// leave a file extended but not written): cut off, the records before it kept; replay is
/// clean afterwards, and the log takes new records after it.
#[test]
fn a_torn_tail_is_cut_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 1000);
    let last = list_segments(dir.path()).unwrap().pop().unwrap();
    let offsets = frame_offsets(&last.path);
    let last_frame = *offsets.last().unwrap();
    let length = fs::metadata(&last.path).unwrap().len();
    let file = OpenOptions::new().append(true).open(&last.path).unwrap();
    file.set_len(length - 5).unwrap();
    (&file).write_all(&[0; 3000]).unwrap();
    drop(file);

    let (lsns, report) = replay_lsns(dir.path(), false).unwrap();
    assert_eq!(lsns, (1..=999).collect::<Vec<_>>());
    assert_eq!(report.last_lsn, 999);
    assert_eq!(report.torn_bytes_cut(), length - 5 + 3000 - last_frame);
    let torn = report.torn.as_ref().unwrap();
    assert_eq!((&torn.file, torn.offset), (&last.path, last_frame));
    assert_eq!(
        report.lost_at_end,
        Some(LsnRange {
            from: 1000,
            to: 1000
        }),
        "the tip file says LSN 1000 had been written"
    );
    assert!(report.repaired.is_empty());
    assert_eq!(fs::metadata(&last.path).unwrap().len(), last_frame);

    let (lsns, report) = replay_lsns(dir.path(), false).unwrap();
    assert_eq!(lsns.len(), 999);
    assert_eq!(report.torn_bytes_cut(), 0);

    let wal = Wal::open(small_segments(dir.path(), FsyncPolicy::Always), 1000).unwrap();
    for i in 1000..=1100 {
        append_nth(&wal, i);
    }
    wal.close().unwrap();
    let mut records = Vec::new();
    replay(dir.path(), 0, false, |record| records.push(record)).unwrap();
    assert_eq!(records.len(), 1100);
    for (i, record) in (1..).zip(&records) {
        assert_nth(record, i, i);
    }
}

/// A zero-filled tail after whole records is torn too; nothing before it is lost.
#[test]
fn a_zero_filled_tail_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 200);
    let last = list_segments(dir.path()).unwrap().pop().unwrap();
    let file = OpenOptions::new().append(true).open(&last.path).unwrap();
    (&file).write_all(&[0; 4096]).unwrap();
    let (lsns, report) = replay_lsns(dir.path(), false).unwrap();
    assert_eq!(lsns.len(), 200);
    assert_eq!(report.torn_bytes_cut(), 4096);
    assert_eq!(report.lost_at_end, None, "nothing written was lost");
}

/// A last segment whose header the crash cut short is removed.
#[test]
fn a_torn_segment_header_removes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 200);
    let torn = dir.path().join("00000000000000000201.wal");
    fs::write(&torn, b"CARTD").unwrap();
    let (lsns, report) = replay_lsns(dir.path(), false).unwrap();
    assert_eq!(lsns.len(), 200);
    assert_eq!(report.torn_bytes_cut(), 5);
    assert!(!torn.exists());
}

/// A damaged record in an earlier segment is refused with its file and offset, which LSNs are
/// unreadable and how many records after them are readable, and the advice to repair;
/// `repair` drops only the damaged record and keeps every readable one after it (in a segment
/// of their own), and the repaired log replays cleanly.
#[test]
fn damage_mid_log_is_refused_then_repaired_keeping_what_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 2000);
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() > 4);
    let damaged = &segments[2];
    let offsets = frame_offsets(&damaged.path);
    let bad_frame = offsets[3];
    let bad_lsn = damaged.first_lsn + 3;
    flip_byte(&damaged.path, bad_frame + 12);

    let error = replay_lsns(dir.path(), false).unwrap_err();
    match &error {
        RecoveryError::Corrupt { file, offset, .. } => {
            assert_eq!(file, &damaged.path);
            assert_eq!(*offset, bad_frame);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&damaged.path.display().to_string()),
        "{message}"
    );
    assert!(message.contains(&format!("byte {bad_frame}")), "{message}");
    assert!(
        message.contains(&format!("LSNs {bad_lsn}..={bad_lsn} (1 records")),
        "{message}"
    );
    let readable = 2000 - bad_lsn;
    assert!(
        message.contains(&format!(
            "{readable} records (LSNs {}..=2000) are still readable",
            bad_lsn + 1
        )),
        "{message}"
    );
    assert!(message.contains("--repair"), "{message}");
    assert_eq!(
        list_segments(dir.path()).unwrap().len(),
        segments.len(),
        "nothing cut"
    );

    let (lsns, report) = replay_lsns(dir.path(), true).unwrap();
    let expected: Vec<Lsn> = (1..=2000).filter(|lsn| *lsn != bad_lsn).collect();
    assert_eq!(lsns, expected, "every readable record is kept");
    assert_eq!(report.last_lsn, 2000);
    assert_eq!(report.repaired.len(), 1);
    assert_eq!(
        report.repaired[0].lost,
        LsnRange {
            from: bad_lsn,
            to: bad_lsn
        }
    );
    assert_eq!(fs::metadata(&damaged.path).unwrap().len(), bad_frame);
    let after_repair = list_segments(dir.path()).unwrap();
    assert_eq!(
        after_repair.len(),
        segments.len() + 1,
        "the salvaged records' segment"
    );
    assert_eq!(after_repair[3].first_lsn, bad_lsn + 1);

    let (lsns, report) = replay_lsns(dir.path(), false).unwrap();
    assert_eq!(lsns, expected);
    assert!(report.repaired.is_empty() && report.missing.is_empty());
}

/// Damage in records the snapshot covers costs nothing: segments wholly below the snapshot's
/// LSN are not read, a damaged record in the segment that straddles it is stepped over, and
/// every record after the snapshot is replayed.
#[test]
fn damage_the_snapshot_covers_costs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 2000);
    let segments = list_segments(dir.path()).unwrap();
    // A whole early segment ruined, and a record in the straddling one.
    fs::write(&segments[0].path, b"garbage").unwrap();
    let straddling = &segments[3];
    let offsets = frame_offsets(&straddling.path);
    flip_byte(&straddling.path, offsets[2] + 12);
    let after = straddling.first_lsn + 5;
    let mut lsns = Vec::new();
    let report = replay(dir.path(), after, false, |record| lsns.push(record.lsn)).unwrap();
    assert_eq!(lsns, (after + 1..=2000).collect::<Vec<_>>());
    assert_eq!(report.segments_skipped, 3);
    assert_eq!(report.covered.len(), 1);
    let lost = straddling.first_lsn + 2;
    assert_eq!(
        report.covered[0].lost,
        LsnRange {
            from: lost,
            to: lost
        }
    );
    // The same damage, not covered, is refused.
    assert!(matches!(
        replay(dir.path(), lost - 1, false, |_| {}),
        Err(RecoveryError::Corrupt { .. })
    ));
}

/// In the last segment, a damaged record with valid records after it is damage, not a torn
/// tail: cutting there would lose records that were written whole.
#[test]
fn damage_with_valid_records_after_it_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 1000);
    let last = list_segments(dir.path()).unwrap().pop().unwrap();
    let offsets = frame_offsets(&last.path);
    assert!(offsets.len() > 3);
    flip_byte(&last.path, offsets[1] + 9);
    match replay_lsns(dir.path(), false).unwrap_err() {
        RecoveryError::Corrupt { file, offset, .. } => {
            assert_eq!(file, last.path);
            assert_eq!(offset, offsets[1]);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// A segment missing from the middle is refused when the records it held are needed, and
/// harmless when a snapshot already covers them.
#[test]
fn a_missing_segment_is_refused_only_when_needed() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 2000);
    let segments = list_segments(dir.path()).unwrap();
    fs::remove_file(&segments[1].path).unwrap();
    match replay_lsns(dir.path(), false).unwrap_err() {
        RecoveryError::Missing { detail } => {
            assert!(detail.contains("is missing"), "{detail}");
            let name = segments[1]
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(detail.contains(&name), "{detail}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    let after = segments[2].first_lsn - 1;
    let mut lsns = Vec::new();
    replay(dir.path(), after, false, |record| lsns.push(record.lsn)).unwrap();
    assert_eq!(lsns, (after + 1..=2000).collect::<Vec<_>>());
}

/// The newest segment gone (the tip file names it) is refused; so is an emptied log
/// directory under a snapshot. `repair` goes on, saying what is missing.
#[test]
fn a_lost_end_of_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 2000);
    let newest = list_segments(dir.path()).unwrap().pop().unwrap();
    fs::remove_file(&newest.path).unwrap();
    match replay_lsns(dir.path(), false).unwrap_err() {
        RecoveryError::Missing { detail } => {
            assert!(detail.contains("newest log segment"), "{detail}");
            assert!(detail.contains("up to LSN 2000"), "{detail}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    let (lsns, report) = replay_lsns(dir.path(), true).unwrap();
    assert_eq!(lsns.last(), Some(&(newest.first_lsn - 1)));
    assert_eq!(report.missing.len(), 1);
    assert_eq!(
        report.lost_at_end,
        Some(LsnRange {
            from: newest.first_lsn,
            to: 2000
        })
    );

    let empty = tempfile::tempdir().unwrap();
    match replay(empty.path(), 500, false, |_| {}).unwrap_err() {
        RecoveryError::Missing { detail } => {
            assert!(detail.contains("after the snapshot"), "{detail}")
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(replay(empty.path(), 500, true, |_| {}).is_ok());
}

/// A record whose LSN does not follow on (a valid frame in the wrong place) is damage.
#[test]
fn an_lsn_out_of_order_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 1000);
    let segments = list_segments(dir.path()).unwrap();
    let (first, second) = (&segments[0], &segments[1]);
    // Copy the first record of the first segment to the end of the first segment.
    let first_bytes = fs::read(&first.path).unwrap();
    let offsets = frame_offsets(&first.path);
    let record = &first_bytes[offsets[0] as usize..offsets[1] as usize];
    let mut bytes = first_bytes.clone();
    bytes.extend_from_slice(record);
    fs::write(&first.path, &bytes).unwrap();
    match replay_lsns(dir.path(), false).unwrap_err() {
        RecoveryError::Corrupt {
            file,
            offset,
            detail,
        } => {
            assert_eq!(file, first.path);
            assert_eq!(offset, first_bytes.len() as u64);
            assert!(detail.contains("expected"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(second.path.exists());
}

/// A log written before records held several changes (segment format 1) still replays, and
/// the log goes on after it in the new format.
#[test]
fn a_format_1_segment_still_replays_before_new_ones() {
    use crate::record::{v1, Event, EventKind, Space, State, TombstoneReason};
    use crate::wal::segment::{create_segment, SegmentHeader, SegmentStart};
    use bytes::Bytes;
    let dir = tempfile::tempdir().unwrap();
    let header = SegmentHeader {
        start: SegmentStart::Open,
        first_lsn: 1,
        format: RecordFormat::V1,
        previous_first_lsn: 0,
    };
    let (mut file, _) = create_segment(dir.path(), header).unwrap();
    for lsn in 1..=3 {
        let old = v1::Record {
            lsn,
            key: Bytes::from(format!("cart:{lsn}")),
            version: lsn,
            change: if lsn == 3 {
                v1::Change::Tombstone(TombstoneReason::Deleted)
            } else {
                v1::Change::Image(Bytes::from_static(b"old image"))
            },
            event: Event {
                kind: EventKind::Add,
                detail: Bytes::from(format!("{{\"at_ms\":{}}}", 1000 + lsn)),
            },
        };
        let payload = postcard::to_allocvec(&old).unwrap();
        file.write_all(&(payload.len() as u32).to_le_bytes())
            .unwrap();
        file.write_all(&crc32c::crc32c(&payload).to_le_bytes())
            .unwrap();
        file.write_all(&payload).unwrap();
    }
    drop(file);
    let wal = Wal::open(small_segments(dir.path(), FsyncPolicy::No), 4).unwrap();
    append_nth(&wal, 4);
    wal.close().unwrap();
    let mut records = Vec::new();
    replay(dir.path(), 0, false, |record| records.push(record)).unwrap();
    let lsns: Vec<Lsn> = records.iter().map(|record| record.lsn).collect();
    assert_eq!(lsns, [1, 2, 3, 4]);
    let old = &records[1].changes[0];
    assert_eq!(
        (old.space, &old.key[..], old.at_ms),
        (Space::Cart, &b"cart:2"[..], 1002)
    );
    assert_eq!(old.state, State::Image(Bytes::from_static(b"old image")));
    assert_eq!(
        records[2].changes[0].state,
        State::Tombstone(TombstoneReason::Deleted)
    );
    assert_nth(&records[3], 4, 4);
}

/// A replica's full synchronization leaves the primary's snapshot (here at LSN 500) and an
/// empty log after it whose tip says it was written up to 500: nothing is lost at the end,
/// and the replay (which logged "the log ends before records that had been written" on every
/// first start after a synchronization before) reports nothing.
#[test]
fn a_log_started_after_a_snapshot_has_lost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    Wal::open_after(small_segments(dir.path(), FsyncPolicy::Always), 501, 500)
        .unwrap()
        .close()
        .unwrap();
    let report = replay(dir.path(), 500, false, |_| {}).unwrap();
    assert_eq!(report.lost_at_end, None, "the snapshot holds up to 500");
}
