//! The log with real files in temporary directories: LSNs, segments, group commit, syncs,
//! segment removal, and a reader following a live log.

use std::path::Path;
use std::sync::Arc;
use std::thread;

use bytes::Bytes;

use super::segment::list_segments;
use super::*;
use crate::record::{
    Event, EventKind, EventRef, Record, RecordSource, Space, State, StateRef, TombstoneReason,
};
use crate::recovery::replay;

/// The key of the `i`th test record.
pub(crate) fn key_of(i: u64) -> Vec<u8> {
    format!("cart:{}", i % 97).into_bytes()
}

/// The image of the `i`th test record: of varying size.
fn image_of(i: u64) -> String {
    format!("image {i} {}", "x".repeat((i % 50) as usize))
}

/// The state the `i`th test record leaves its cart in: an image, every 10th a tombstone.
pub(crate) fn state_of(i: u64) -> State {
    if i % 10 == 9 {
        State::Tombstone(TombstoneReason::Expired)
    } else {
        State::Image(Bytes::from(image_of(i)))
    }
}

/// The event's detail of every test record.
const DETAIL: &[u8] = br#"{"qty":1}"#;

/// An event for tests.
pub(crate) fn event() -> Event {
    Event {
        kind: EventKind::Update,
        detail: Bytes::from_static(DETAIL),
    }
}

/// Appends the `i`th test record (version `i`, at `i` ms).
pub(crate) fn append_nth(wal: &Wal, i: u64) -> Lsn {
    append_nth_as(wal, i, false)
}

/// Appends the `i`th test record, deferred (for [`Wal::write_queued`]) or not.
fn append_nth_as(wal: &Wal, i: u64, deferred: bool) -> Lsn {
    let image = image_of(i);
    let state = match state_of(i) {
        State::Tombstone(reason) => StateRef::Tombstone(reason),
        _ => StateRef::Image(image.as_bytes()),
    };
    let changes = [ChangeRef {
        space: Space::Cart,
        key: &key_of(i),
        version: i,
        at_ms: i,
        state,
        event: Some(EventRef {
            kind: EventKind::Update,
            detail: DETAIL,
        }),
        guard: None,
    }];
    if deferred {
        wal.append_deferred(&changes)
    } else {
        wal.append(&changes)
    }
}

/// Checks that `record` is the `i`th test record at LSN `lsn`.
pub(crate) fn assert_nth(record: &Record, i: u64, lsn: Lsn) {
    assert_eq!(record.lsn, lsn);
    let [change] = &record.changes[..] else {
        panic!("one change per test record: {record:?}")
    };
    assert_eq!(&change.key[..], &key_of(i)[..]);
    assert_eq!(
        (change.space, change.version, change.at_ms),
        (Space::Cart, i, i)
    );
    assert_eq!(change.state, state_of(i));
    assert_eq!(change.event, Some(event()));
}

/// Options for a log in `dir` with small segments.
pub(crate) fn small_segments(dir: &Path, fsync: FsyncPolicy) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        fsync,
        segment_bytes: 4096,
    }
}

/// Writes `count` test records (versions 1..=count) into a closed log in `dir`.
pub(crate) fn write_log(dir: &Path, count: u64) {
    let wal = Wal::open(small_segments(dir, FsyncPolicy::No), 1).unwrap();
    for i in 1..=count {
        append_nth(&wal, i);
    }
    wal.close().unwrap();
}

/// Every record in `dir`.
fn replay_all(dir: &Path) -> Vec<Record> {
    let mut records = Vec::new();
    replay(dir, 0, false, |record| records.push(record)).unwrap();
    records
}

#[test]
fn fsync_policies_parse_from_their_config_names() {
    assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
    assert_eq!("EverySec".parse(), Ok(FsyncPolicy::EverySec));
    assert_eq!("no".parse(), Ok(FsyncPolicy::No));
    assert!("sometimes".parse::<FsyncPolicy>().is_err());
    assert_eq!(FsyncPolicy::EverySec.to_string(), "everysec");
}

/// Thousands of records over many small segments come back in order, each intact, from
/// consecutive LSNs; each segment stays within its size and is named by its first LSN.
#[test]
fn appended_records_replay_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path(), FsyncPolicy::No), 1).unwrap();
    for i in 1..=5000 {
        assert_eq!(append_nth(&wal, i), i, "LSNs are consecutive from next_lsn");
    }
    assert_eq!(wal.last_lsn(), 5000);
    wal.close().unwrap();
    assert_eq!(wal.written_lsn(), 5000);
    assert_eq!(wal.durable_lsn(), 5000, "close syncs");

    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() > 10, "{} segments", segments.len());
    for segment in &segments {
        assert!(std::fs::metadata(&segment.path).unwrap().len() <= 4096);
    }
    let mut first_lsns = Vec::new();
    let report = replay(dir.path(), 0, false, |record| first_lsns.push(record.lsn)).unwrap();
    assert_eq!(report.records, 5000);
    assert_eq!(report.last_lsn, 5000);
    assert_eq!(report.segments, segments.len());
    let records = replay_all(dir.path());
    for (i, record) in (1..).zip(&records) {
        assert_nth(record, i, i);
    }
    let mut after = Vec::new();
    let report = replay(dir.path(), 2500, false, |record| after.push(record.lsn)).unwrap();
    assert_eq!(report.records, 2500);
    assert_eq!(after, (2501..=5000).collect::<Vec<_>>());
}

/// A reopened log numbers on from where it is told and replays as one log.
#[test]
fn a_reopened_log_continues_with_the_next_lsn() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 300);
    let wal = Wal::open(small_segments(dir.path(), FsyncPolicy::EverySec), 301).unwrap();
    for i in 301..=600 {
        assert_eq!(append_nth(&wal, i), i);
    }
    drop(wal); // Drop closes: writes and syncs.
    let records = replay_all(dir.path());
    assert_eq!(records.len(), 600);
    for (i, record) in (1..).zip(&records) {
        assert_nth(record, i, i);
    }
}

/// Opening at an LSN a segment already holds is refused: records would be numbered twice.
#[test]
fn opening_below_an_existing_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 300);
    let newest = list_segments(dir.path()).unwrap().pop().unwrap();
    let error = Wal::open(
        small_segments(dir.path(), FsyncPolicy::No),
        newest.first_lsn,
    )
    .err()
    .expect("refused");
    assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
    assert!(
        error.to_string().contains("number records twice"),
        "{error}"
    );
}

/// Under `always`, every appender's `wait_durable` returns with its record synced, and
/// appenders on several threads share syncs: fewer fsyncs than records.
#[test]
fn always_makes_each_record_durable_and_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(small_segments(dir.path(), FsyncPolicy::Always), 1).unwrap());
    let threads_count = 8;
    let appends_per_thread = 200;
    let threads: Vec<_> = (0..threads_count)
        .map(|thread_index| {
            let wal = wal.clone();
            thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                for i in 0..appends_per_thread {
                    let lsn = append_nth(&wal, thread_index * 1000 + i);
                    runtime.block_on(wal.wait_durable(lsn));
                    assert!(wal.durable_lsn() >= lsn);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let appends = threads_count * appends_per_thread;
    let stats = wal.stats();
    assert_eq!(stats.last_lsn, appends);
    assert_eq!(stats.durable_lsn, appends);
    assert!(
        stats.fsyncs < appends,
        "{} fsyncs for {appends} records",
        stats.fsyncs
    );
    assert!(stats.last_write_ok);
    assert_eq!(stats.last_error, None);
    wal.close().unwrap();
    let mut lsns = Vec::new();
    replay(dir.path(), 0, false, |record| lsns.push(record.lsn)).unwrap();
    assert_eq!(lsns, (1..=appends).collect::<Vec<_>>());
}

/// `wait_durable` works from a task on a tokio runtime.
#[tokio::test]
async fn wait_durable_from_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(small_segments(dir.path(), FsyncPolicy::Always), 1).unwrap());
    let lsn = append_nth(&wal, 1);
    let waiter = {
        let wal = wal.clone();
        tokio::spawn(async move { wal.wait_durable(lsn).await })
    };
    waiter.await.unwrap();
    assert!(wal.durable_lsn() >= lsn);
}

/// Under `everysec` and `no`, appenders on many threads that write the queue themselves
/// (`append_deferred`, then `write_queued`) get every record written, none left behind for a
/// writer that never comes (the writer thread is not woken for them), in LSN order, across
/// the segment rotations the thread does for them. The threads append in rounds, all at
/// once, so a record left behind is not picked up by a later append.
#[test]
fn inline_writes_from_many_threads_leave_nothing_behind() {
    const THREADS: u64 = 4;
    const EACH: u64 = 1500;
    for policy in [FsyncPolicy::EverySec, FsyncPolicy::No] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(small_segments(dir.path(), policy), 1).unwrap());
        let round = Arc::new(std::sync::Barrier::new(THREADS as usize));
        let appenders: Vec<_> = (0..THREADS)
            .map(|t| {
                let wal = wal.clone();
                let round = round.clone();
                thread::spawn(move || {
                    for n in 0..EACH {
                        round.wait();
                        let lsn = append_nth_as(&wal, t * EACH + n + 1, true);
                        wal.write_queued();
                        // Written by this thread or by whoever held the writer: a record
                        // left behind would never be written under `no` (10 s is a hang).
                        let deadline =
                            std::time::Instant::now() + std::time::Duration::from_secs(10);
                        while wal.written_lsn() < lsn {
                            assert!(
                                std::time::Instant::now() < deadline,
                                "{policy}: LSN {lsn} never written (written {})",
                                wal.written_lsn()
                            );
                            thread::yield_now();
                        }
                        assert!(wal.ack_lsn() >= lsn, "{policy}");
                    }
                })
            })
            .collect();
        for appender in appenders {
            appender.join().unwrap();
        }
        wal.close().unwrap();
        assert!(
            list_segments(dir.path()).unwrap().len() > 10,
            "{policy}: the test must rotate segments"
        );
        let mut lsns = Vec::new();
        let mut versions = Vec::new();
        replay(dir.path(), 0, false, |record| {
            lsns.push(record.lsn);
            versions.push(record.changes[0].version);
        })
        .unwrap();
        assert_eq!(lsns, (1..=THREADS * EACH).collect::<Vec<_>>(), "{policy}");
        versions.sort_unstable();
        assert_eq!(
            versions,
            (1..=THREADS * EACH).collect::<Vec<_>>(),
            "{policy}"
        );
    }
}

/// `wait_ack` returns once a change may be acknowledged, under every policy: synced under
/// `always`, written under the others; many tasks waiting at once are each woken, and none
/// is left registered (a dropped wait unregisters itself).
#[tokio::test]
async fn wait_ack_returns_once_written_or_synced() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(small_segments(dir.path(), policy), 1).unwrap());
        let waiters: Vec<_> = (0..200)
            .map(|i| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    let lsn = append_nth(&wal, i);
                    wal.wait_ack(lsn).await;
                    (lsn, wal.ack_lsn())
                })
            })
            .collect();
        for waiter in waiters {
            let (lsn, acked) = waiter.await.unwrap();
            assert!(acked >= lsn, "{policy}: woken at {acked} for {lsn}");
            assert!(wal.written_lsn() >= lsn, "{policy}");
            if policy == FsyncPolicy::Always {
                assert!(wal.durable_lsn() >= lsn, "{policy}");
            }
        }
        // A wait dropped before its LSN came leaves nothing behind.
        let never = wal.last_lsn() + 1_000;
        let abandoned =
            tokio::time::timeout(std::time::Duration::from_millis(20), wal.wait_ack(never)).await;
        assert!(abandoned.is_err(), "{policy}");
        assert_eq!(wal.shared.ack_waiters.len(), 0, "{policy}");
        wal.close().unwrap();
    }
}

/// `sync` blocks until everything appended is synced, under every policy; `wait_durable`
/// also returns under `everysec` and `no`.
#[test]
fn sync_covers_everything_appended() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(small_segments(dir.path(), policy), 10).unwrap();
        for i in 0..100 {
            append_nth(&wal, i);
        }
        assert_eq!(wal.sync().unwrap(), 109, "{policy}");
        assert_eq!(wal.durable_lsn(), 109);
        assert_eq!(wal.written_lsn(), 109);
        assert_eq!(wal.queued_bytes(), 0);
        let lsn = append_nth(&wal, 100);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(wal.wait_durable(lsn));
        assert_eq!(wal.durable_lsn(), 110);
        let stats = wal.stats();
        assert!(stats.fsyncs >= 1);
        assert!(stats.writes >= 1);
        assert_eq!(stats.oldest_lsn, 10);
        assert!(stats.bytes_on_disk > 0);
        wal.close().unwrap();
        wal.close().unwrap();
    }
}

/// Under `everysec` a write is synced within about a second without anyone asking.
#[test]
fn everysec_syncs_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path(), FsyncPolicy::EverySec), 1).unwrap();
    // Let the first second pass, so the next write is not synced at once.
    thread::sleep(std::time::Duration::from_millis(1100));
    append_nth(&wal, 1);
    append_nth(&wal, 2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while wal.durable_lsn() < 2 {
        assert!(std::time::Instant::now() < deadline, "never synced");
        thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(wal.stats().fsyncs >= 1);
}

/// Segments whose records are all below the LSN go, the active one never; the log after
/// the LSN still replays.
#[test]
fn remove_segments_below_keeps_what_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path(), FsyncPolicy::No), 1).unwrap();
    for i in 1..=2000 {
        append_nth(&wal, i);
    }
    wal.sync().unwrap();
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() > 5);
    let keep_from = segments[3].first_lsn + 1; // inside segment 3: it must stay
    assert_eq!(wal.remove_segments_below(keep_from).unwrap(), 3);
    let left = list_segments(dir.path()).unwrap();
    assert_eq!(left, segments[3..].to_vec());
    assert_eq!(wal.stats().oldest_lsn, segments[3].first_lsn);
    assert_eq!(wal.remove_segments_below(keep_from).unwrap(), 0);

    let mut lsns = Vec::new();
    replay(dir.path(), keep_from - 1, false, |record| {
        lsns.push(record.lsn)
    })
    .unwrap();
    assert_eq!(lsns, (keep_from..=2000).collect::<Vec<_>>());

    wal.remove_segments_below(Lsn::MAX).unwrap();
    let left = list_segments(dir.path()).unwrap();
    assert_eq!(left.len(), 1, "the active segment stays");
    append_nth(&wal, 2001);
    wal.close().unwrap();
    let mut last = 0;
    let oldest = list_segments(dir.path()).unwrap()[0].first_lsn;
    replay(dir.path(), oldest - 1, false, |record| last = record.lsn).unwrap();
    assert_eq!(last, 2001);
    assert!(
        replay(dir.path(), 0, false, |_| {}).is_err(),
        "from LSN 1 the released records are missing"
    );
}

/// A reader follows a live log: what is written, then more after later appends across
/// segments, going back on request, and across a restart that jumped the LSN forward.
#[test]
fn reader_follows_a_live_log() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path(), FsyncPolicy::EverySec), 1).unwrap();
    let mut reader = wal.reader();
    assert!(reader.read_after(0, 100).unwrap().is_empty());
    for i in 1..=100 {
        append_nth(&wal, i);
    }
    // Without waiting: only written records, never a frame in progress.
    let early = reader.read_after(0, 1000).unwrap();
    assert!(early.len() as u64 <= wal.written_lsn());
    wal.sync().unwrap();
    let records = reader.read_after(0, 1000).unwrap();
    assert_eq!(records.len(), 100);
    for (i, record) in (1..).zip(&records) {
        assert_nth(record, i, i);
    }
    assert!(reader.read_after(100, 1000).unwrap().is_empty());

    for i in 101..=400 {
        append_nth(&wal, i);
    }
    wal.sync().unwrap();
    let next = reader.read_after(100, 30).unwrap();
    assert_eq!(
        next.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        (101..=130).collect::<Vec<_>>()
    );
    let rest = reader.read_after(130, 1000).unwrap();
    assert_eq!(rest.len(), 270);
    for (i, record) in (131..).zip(&rest) {
        assert_nth(record, i, i);
    }
    let again = reader.read_after(10, 5).unwrap();
    assert_eq!(
        again.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15]
    );
    drop(wal);

    // A restart numbering on from 1000 (say, the PostgreSQL checkpoint was ahead).
    let wal = Wal::open(small_segments(dir.path(), FsyncPolicy::No), 1000).unwrap();
    let mut reader = WalReader::new(dir.path().to_path_buf(), wal.written_lsn_counter());
    append_nth(&wal, 1000);
    wal.sync().unwrap();
    let across = reader.read_after(398, 10).unwrap();
    assert_eq!(
        across.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        vec![399, 400, 1000]
    );
    wal.close().unwrap();
    let report = replay(dir.path(), 0, false, |_| {}).unwrap();
    assert_eq!((report.records, report.last_lsn), (401, 1000));
}

/// When writing fails (here: the next segment cannot be created), records stay queued, INFO
/// shows the error, `sync` reports it, and once the cause is gone every record is written.
#[test]
fn failed_writes_keep_records_and_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_bytes: 1, // one record per segment: record 3 needs a new segment
        ..small_segments(dir.path(), FsyncPolicy::No)
    };
    let wal = Wal::open(options, 1).unwrap();
    let blocker = dir.path().join(super::segment::segment_name(3));
    std::fs::create_dir(&blocker).unwrap();
    for i in 1..=5 {
        append_nth(&wal, i);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while wal.stats().last_write_ok {
        assert!(
            std::time::Instant::now() < deadline,
            "the failure never showed"
        );
        thread::sleep(std::time::Duration::from_millis(10));
    }
    let stats = wal.stats();
    assert_eq!(stats.written_lsn, 2);
    assert!(stats.queued_bytes > 0);
    assert!(stats.errors >= 1);
    assert!(stats
        .last_error
        .as_deref()
        .unwrap()
        .contains("00000000000000000003.wal"));
    let error = wal.sync().unwrap_err();
    assert!(error.to_string().contains("could not be synced"), "{error}");

    std::fs::remove_dir(&blocker).unwrap();
    let synced = loop {
        match wal.sync() {
            Ok(lsn) => break lsn,
            Err(_) => assert!(std::time::Instant::now() < deadline, "never recovered"),
        }
    };
    assert_eq!(synced, 5);
    let stats = wal.stats();
    assert!(stats.last_write_ok);
    assert!(stats.last_error.is_some(), "the last error is remembered");
    wal.close().unwrap();
    let records = replay_all(dir.path());
    assert_eq!(records.len(), 5);
    for (i, record) in (1..).zip(&records) {
        assert_nth(record, i, i);
    }
}

/// A log opened and closed without records leaves an empty segment; opening at the same LSN
/// again reuses its name.
#[test]
fn an_empty_segment_is_reused_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    Wal::open(small_segments(dir.path(), FsyncPolicy::No), 7)
        .unwrap()
        .close()
        .unwrap();
    let wal = Wal::open(small_segments(dir.path(), FsyncPolicy::No), 7).unwrap();
    assert_eq!(append_nth(&wal, 7), 7);
    wal.close().unwrap();
    assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
    // Numbering began at 7 (after a snapshot at 6, say): the replay starts after it.
    let mut records = Vec::new();
    replay(dir.path(), 6, false, |record| records.push(record)).unwrap();
    assert_eq!(records.len(), 1);
    assert_nth(&records[0], 7, 7);
}

/// Two releases overlapping (SAVE's and the periodic one): a segment the other already
/// deleted is skipped, not an error that stops the release half-way.
#[test]
fn a_segment_already_removed_does_not_stop_the_release() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path(), FsyncPolicy::No), 1).unwrap();
    for i in 1..=2000 {
        append_nth(&wal, i);
    }
    wal.sync().unwrap();
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() > 5);
    std::fs::remove_file(&segments[1].path).unwrap();
    let keep_from = segments[4].first_lsn;
    assert_eq!(wal.remove_segments_below(keep_from).unwrap(), 3);
    assert_eq!(list_segments(dir.path()).unwrap(), segments[4..].to_vec());
}
