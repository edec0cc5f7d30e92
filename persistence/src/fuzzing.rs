//! Fuzz harnesses for the durability layer's decoders: one function per fuzz target, each
//! taking any bytes and panicking only when a property of the code under test fails. The
//! cargo-fuzz targets in `tests/fuzz/` call them (through the server's harnesses, which go on
//! to apply what was decoded), and so does the stable corpus replay test
//! (`tests/tests/fuzz_corpora.rs`). See docs/FUZZING.md.
//!
//! Frames and snapshot entries carry CRCs, which random bytes almost never match; so besides
//! the input as it is, each harness also decodes a copy with the checksums made right, which
//! takes the fuzzer past them into the decoding proper.

use bytes::Bytes;

use crate::record::v1;
use crate::record::{
    Change, ChangeRef, Event, EventKind, EventRef, FrameError, Guard, GuardKind, GuardRef, Record,
    RecordFormat, Space, State, StateRef, TombstoneReason, CHANGES_PER_RECORD_MAX,
    FRAME_HEADER_BYTES, PAYLOAD_BYTES_MAX,
};
use crate::snapshot::{self, Entry, EntryKind, EntryRef, SnapshotInfo, SEED_BYTES};
use crate::wal::segment::{SegmentHeader, SegmentStart};

/// `wal_frame`: `data` is read as a log segment (a header, then frames back to back; without
/// a valid header, as frames of either record format), and its bytes are also framed whole,
/// with a correct length and checksum, as one record's payload in either format. A segment
/// header that decodes encodes back to the same bytes. Every frame that decodes says how many
/// bytes it took (all of the input it was given, for a framed payload), holds 1..=64 changes
/// (a format-1 frame exactly one cart change), and re-encodes to a frame that decodes to the
/// same record and encodes to the same bytes again. A frame cut anywhere short is `Incomplete`,
/// never corrupt. Returns every record decoded, for the server's harness to apply.
pub fn wal_frame(data: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    match SegmentHeader::decode(data) {
        Ok(header) => {
            let encoded = header.encode();
            assert_eq!(encoded.len(), header.bytes());
            assert_eq!(&encoded[..], &data[..header.bytes()], "header bytes");
            assert_eq!(SegmentHeader::decode(&encoded), Ok(header));
            frames(&data[header.bytes()..], header.format, &mut records);
        }
        Err(_) => {
            for format in [RecordFormat::V2, RecordFormat::V1] {
                frames(data, format, &mut records);
            }
        }
    }
    if !data.is_empty() && data.len() <= PAYLOAD_BYTES_MAX {
        let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + data.len());
        frame.extend_from_slice(&(data.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
        frame.extend_from_slice(data);
        for format in [RecordFormat::V2, RecordFormat::V1] {
            match Record::decode_frame(&frame, format) {
                Ok((record, used)) => {
                    assert_eq!(used, frame.len(), "a frame takes its declared length");
                    check_record(&record, format);
                    records.push(record);
                }
                Err(FrameError::Corrupt(_)) => {}
                Err(error @ FrameError::Incomplete { .. }) => {
                    panic!("a whole frame is not incomplete: {error}")
                }
            }
            for cut in [0, 3, FRAME_HEADER_BYTES, frame.len() / 2, frame.len() - 1] {
                let cut = cut.min(frame.len() - 1);
                match Record::decode_frame(&frame[..cut], format) {
                    Err(FrameError::Incomplete { needed, available }) => {
                        assert_eq!(available, cut);
                        assert!(needed > available && needed <= frame.len());
                    }
                    other => panic!("a frame cut at {cut} reads as {other:?}"),
                }
            }
        }
    }
    records
}

/// Decodes frames from the start of `bytes` until one does not decode, checking each.
fn frames(bytes: &[u8], format: RecordFormat, records: &mut Vec<Record>) {
    let mut at = 0;
    while at < bytes.len() {
        match Record::decode_frame(&bytes[at..], format) {
            Ok((record, used)) => {
                assert!(used > FRAME_HEADER_BYTES && used <= bytes.len() - at);
                check_record(&record, format);
                records.push(record);
                at += used;
            }
            Err(FrameError::Incomplete { needed, available }) => {
                assert_eq!(available, bytes.len() - at);
                assert!(needed > available);
                break;
            }
            Err(FrameError::Corrupt(_)) => break,
        }
    }
}

/// The properties of one decoded record (see [`wal_frame`]).
fn check_record(record: &Record, format: RecordFormat) {
    assert!((1..=CHANGES_PER_RECORD_MAX).contains(&record.changes.len()));
    if format == RecordFormat::V1 {
        let [change] = &record.changes[..] else {
            panic!("a format-1 record of {} changes", record.changes.len());
        };
        assert_eq!(change.space, Space::Cart);
        assert!(change.event.is_some() && change.guard.is_none());
        assert!(!matches!(change.state, State::Delta { .. }));
    }
    let mut encoded = Vec::new();
    record.encode_frame(&mut encoded);
    let (again, used) =
        Record::decode_frame(&encoded, RecordFormat::V2).expect("a re-encoded record decodes");
    assert_eq!(used, encoded.len());
    assert_eq!(&again, record, "a re-encoded record");
    let mut twice = Vec::new();
    again.encode_frame(&mut twice);
    assert_eq!(twice, encoded, "encoding is stable");
    for change in &record.changes {
        let _ = (change.space.as_str(), change.as_ref());
        if let Some(event) = &change.event {
            let _ = event.kind.as_str();
        }
        if let State::Tombstone(reason) = change.state {
            let _ = reason.as_str();
        }
    }
}

/// `snapshot`: `data` is loaded as a snapshot file named for the LSN its header gives (a
/// mismatching name must be refused), and so is a copy with every entry checksum, the entry
/// count and the file checksum made right. A snapshot that loads says how many entries and
/// bytes it holds; re-encoded, a format-2 snapshot is byte for byte the input, and a format-1
/// one loads as format 2 to the same entries. Returns the entries each load visited (also
/// those before the damage that stopped a load), for the server's harness to load.
pub fn snapshot(data: &[u8]) -> Vec<Entry> {
    let mut entries = load_and_check(data);
    if let Some(fixed) = fix_checksums(data) {
        if fixed != data {
            entries.extend(load_and_check(&fixed));
        }
    }
    entries
}

/// Loads one snapshot from bytes and checks what a load promises (see [`snapshot`]).
fn load_and_check(data: &[u8]) -> Vec<Entry> {
    let lsn = data.get(12..20).map_or(0, |bytes| {
        u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
    });
    let mut entries = Vec::new();
    let loaded = snapshot::load_bytes(data, lsn, &mut |entry| entries.push(entry));
    if let Ok(info) = loaded {
        check_loaded(data, &info, &entries);
        let renamed = snapshot::load_bytes(data, lsn.wrapping_add(1), &mut |_| {});
        assert!(
            renamed.is_err(),
            "a snapshot loads under another LSN's name"
        );
    }
    entries
}

fn check_loaded(data: &[u8], info: &SnapshotInfo, entries: &[Entry]) {
    assert_eq!(info.entries, entries.len() as u64);
    let carts = entries
        .iter()
        .filter(|entry| entry.kind == EntryKind::Cart)
        .count();
    assert_eq!(info.carts, carts as u64);
    assert_eq!(
        info.bytes,
        data.len() as u64,
        "a snapshot is read to its end"
    );
    let refs: Vec<EntryRef<'_>> = entries
        .iter()
        .map(|entry| EntryRef {
            kind: entry.kind,
            key: &entry.key,
            lsn: entry.lsn,
            body: &entry.body,
        })
        .collect();
    let encoded = snapshot::encode(info.lsn, info.seed.unwrap_or_default(), &refs);
    if info.seed.is_some() {
        assert_eq!(encoded, data, "a format-2 snapshot re-encodes to itself");
    } else {
        let mut again = Vec::new();
        let info_again = snapshot::load_bytes(&encoded, info.lsn, &mut |entry| again.push(entry))
            .expect("a format-1 snapshot re-encoded as format 2 loads");
        assert_eq!(again, entries, "a format-1 snapshot's entries in format 2");
        assert_eq!(info_again.entries, info.entries);
    }
}

/// Offsets of an entry's lengths and CRC, and its header size, by snapshot format.
struct EntryLayout {
    header_bytes: usize,
    entry_bytes: usize,
    key_len_at: usize,
    body_len_at: usize,
    crc_at: usize,
}

/// `data` with the checksums of every entry laid out whole (and of the trailer, if one
/// follows them) recomputed; `None` for a header of neither format.
fn fix_checksums(data: &[u8]) -> Option<Vec<u8>> {
    let format = u32::from_le_bytes(data.get(8..12)?.try_into().expect("4 bytes"));
    let layout = match format {
        2 => EntryLayout {
            header_bytes: 20 + SEED_BYTES,
            entry_bytes: 22,
            key_len_at: 2,
            body_len_at: 6,
            crc_at: 18,
        },
        1 => EntryLayout {
            header_bytes: 20,
            entry_bytes: 13,
            key_len_at: 1,
            body_len_at: 5,
            crc_at: 9,
        },
        _ => return None,
    };
    let mut out = data.to_vec();
    let mut at = layout.header_bytes;
    let mut count: u64 = 0;
    let word = |bytes: &[u8], at: usize| {
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
    };
    loop {
        match out.get(at) {
            Some(b'E') if at + layout.entry_bytes <= out.len() => {
                let key_len = word(&out, at + layout.key_len_at);
                let body_len = word(&out, at + layout.body_len_at);
                let key_at = at + layout.entry_bytes;
                let end = key_at + key_len + body_len;
                if end > out.len() {
                    break;
                }
                let crc = crc32c::crc32c(&out[at..at + layout.crc_at]);
                let crc = crc32c::crc32c_append(crc, &out[key_at..end]);
                out[at + layout.crc_at..at + layout.crc_at + 4].copy_from_slice(&crc.to_le_bytes());
                count += 1;
                at = end;
            }
            Some(b'T') if at + 13 <= out.len() => {
                out[at + 1..at + 9].copy_from_slice(&count.to_le_bytes());
                let crc = crc32c::crc32c(&out[..at + 9]);
                out[at + 9..at + 13].copy_from_slice(&crc.to_le_bytes());
                break;
            }
            _ => break,
        }
    }
    Some(out)
}

/// A named seed input: `(target, file name, bytes)`.
pub type Seed = (&'static str, String, Vec<u8>);

/// Seed inputs for the `wal_frame` and `snapshot` targets, made by the code itself: segment
/// headers of both formats followed by frames of every kind of change, bare frames of format 1,
/// and snapshots of both formats with an entry of every kind. `tests/tests/fuzz_corpora.rs`
/// writes them into the corpora (see docs/FUZZING.md). `image` is a real cart image to carry,
/// `delta` a real delta on it, `block` a real token block.
pub fn seed_inputs(image: &[u8], delta: &[u8], block: &[u8]) -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut frames = Vec::new();
    for record in seed_records(image, delta) {
        let mut frame = Vec::new();
        record.encode_frame(&mut frame);
        let name = format!("gen-frame-v2-lsn{}", record.lsn);
        seeds.push(("wal_frame", name, frame.clone()));
        frames.extend_from_slice(&frame);
    }
    let header = |format, start, first_lsn, previous_first_lsn| {
        SegmentHeader {
            start,
            first_lsn,
            format,
            previous_first_lsn,
        }
        .encode()
    };
    let segment = [header(RecordFormat::V2, SegmentStart::Open, 1, 0), frames].concat();
    seeds.push(("wal_frame", "gen-segment-v2".into(), segment));
    let rotation = header(RecordFormat::V2, SegmentStart::Rotation, 7, 1);
    seeds.push((
        "wal_frame",
        "gen-segment-v2-rotation-empty".into(),
        rotation,
    ));
    let repaired = header(RecordFormat::V2, SegmentStart::Repaired, 40, 7);
    seeds.push(("wal_frame", "gen-segment-v2-repaired".into(), repaired));
    let v1_frames = v1_frames(image);
    seeds.push(("wal_frame", "gen-frames-v1".into(), v1_frames.clone()));
    let segment_v1 = [
        header(RecordFormat::V1, SegmentStart::Open, 1, 0),
        v1_frames,
    ]
    .concat();
    seeds.push(("wal_frame", "gen-segment-v1".into(), segment_v1));
    seeds.push((
        "wal_frame",
        "gen-frame-v2-borrowed".into(),
        borrowed_frame(),
    ));
    seeds.extend(snapshot_seeds(image, block));
    seeds
}

/// The event of a seed change.
fn seed_event(kind: EventKind) -> Event {
    Event {
        kind,
        detail: Bytes::from_static(
            br#"{"product":"p1","variant":"-","qty":2,"at_ms":1764000000123}"#,
        ),
    }
}

/// A change to the seed cart.
fn seed_cart(version: u64, state: State) -> Change {
    Change {
        space: Space::Cart,
        key: Bytes::from_static(b"cart:guest:42"),
        version,
        at_ms: 1_764_000_000_123,
        state,
        event: Some(seed_event(EventKind::Add)),
        guard: None,
    }
}

/// Records of every kind of change: cart images, a guarded one, a delta on it, a merge's two
/// carts, reference data, a completed checkout.
fn seed_records(image: &[u8], delta: &[u8]) -> Vec<Record> {
    let cart = seed_cart;
    let image = || State::Image(Bytes::copy_from_slice(image));
    let guard = |kind, token: &'static [u8], fingerprint| Guard {
        kind,
        token: Bytes::from_static(token),
        fingerprint,
    };
    let reference = |space, key: &'static [u8], state| Change {
        space,
        key: Bytes::from_static(key),
        version: 0,
        at_ms: 1_764_000_000_500,
        state,
        event: None,
        guard: None,
    };
    let promotion = State::Image(Bytes::from_static(br#"{"kind":"percent","percent":10}"#));
    let record = |lsn, changes| Record { lsn, changes };
    let delta = State::Delta {
        base_lsn: 2,
        delta: Bytes::copy_from_slice(delta),
    };
    vec![
        record(1, vec![cart(1, image())]),
        record(
            2,
            vec![Change {
                guard: Some(guard(GuardKind::Idempotency, b"req-7f3a", 0x1234_5678)),
                ..cart(2, image())
            }],
        ),
        record(3, vec![cart(3, delta)]),
        record(
            4,
            vec![
                Change {
                    event: Some(seed_event(EventKind::Merge)),
                    ..cart(4, State::Tombstone(TombstoneReason::Merged))
                },
                Change {
                    key: Bytes::from_static(b"cart:user:7"),
                    event: Some(seed_event(EventKind::Merge)),
                    ..cart(9, image())
                },
            ],
        ),
        record(
            5,
            vec![
                reference(Space::Promotion, b"SAVE10", promotion),
                reference(
                    Space::GiftCard,
                    b"GC-1",
                    State::Tombstone(TombstoneReason::Deleted),
                ),
            ],
        ),
        record(
            6,
            vec![Change {
                event: Some(seed_event(EventKind::Checkout)),
                guard: Some(guard(GuardKind::Checkout, b"chk-1", 0)),
                ..cart(5, State::Tombstone(TombstoneReason::CheckedOut))
            }],
        ),
    ]
}

/// Two format-1 frames: a cart image and a tombstone.
fn v1_frames(image: &[u8]) -> Vec<u8> {
    let mut frames = Vec::new();
    for (lsn, change) in [
        (1, v1::Change::Image(Bytes::copy_from_slice(image))),
        (2, v1::Change::Tombstone(TombstoneReason::Expired)),
    ] {
        let old = v1::Record {
            lsn,
            key: Bytes::from_static(b"cart:9"),
            version: lsn,
            change,
            event: seed_event(EventKind::Abandon),
        };
        let payload = postcard::to_allocvec(&old).expect("into a Vec");
        frames.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frames.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        frames.extend_from_slice(&payload);
    }
    frames
}

/// A frame of a borrowed change, written the way the log writes (it encodes as the owned one).
fn borrowed_frame() -> Vec<u8> {
    let mut frame = Vec::new();
    crate::record::encode_frame(
        8,
        &[ChangeRef {
            space: Space::Catalog,
            key: b"p1\0-",
            version: 0,
            at_ms: 1,
            state: StateRef::Image(b"\x90\x03\x00"),
            event: Some(EventRef {
                kind: EventKind::Update,
                detail: b"{}",
            }),
            guard: Some(GuardRef {
                kind: GuardKind::Idempotency,
                token: b"t",
                fingerprint: 1,
            }),
        }],
        &mut frame,
    );
    frame
}

/// Snapshots: format 2 with an entry of each kind, format 2 empty, format 1 of two carts.
fn snapshot_seeds(image: &[u8], block: &[u8]) -> Vec<Seed> {
    let entries = [
        EntryRef {
            kind: EntryKind::Reference(Space::Promotion),
            key: b"SAVE10",
            lsn: 0,
            body: br#"{"kind":"percent","percent":10,"stackable":false,"automatic":false}"#,
        },
        EntryRef {
            kind: EntryKind::Block,
            key: &[0, 0, 0, 0, 2, 0, 0, 0],
            lsn: 0,
            body: block,
        },
        EntryRef {
            kind: EntryKind::Cart,
            key: b"cart:guest:42",
            lsn: 17,
            body: image,
        },
    ];
    let seed = *b"0123456789abcdef0123456789abcdef";
    let full = snapshot::encode(17, seed, &entries);
    let empty = snapshot::encode(0, [0; SEED_BYTES], &[]);
    // Format 1: carts only, no seed, no per-entry LSN or kind.
    let mut v1 = b"CARTSNAP".to_vec();
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&5u64.to_le_bytes());
    for key in [&b"cart:1"[..], b"cart:guest:2"] {
        let mut head = vec![b'E'];
        head.extend_from_slice(&(key.len() as u32).to_le_bytes());
        head.extend_from_slice(&(image.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&head), key), image);
        head.extend_from_slice(&crc.to_le_bytes());
        v1.extend_from_slice(&head);
        v1.extend_from_slice(key);
        v1.extend_from_slice(image);
    }
    v1.push(b'T');
    v1.extend_from_slice(&2u64.to_le_bytes());
    let crc = crc32c::crc32c(&v1);
    v1.extend_from_slice(&crc.to_le_bytes());
    vec![
        ("snapshot", "gen-snapshot-v2".into(), full),
        ("snapshot", "gen-snapshot-v2-empty".into(), empty),
        ("snapshot", "gen-snapshot-v1".into(), v1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harnesses_take_their_seeds_and_garbage() {
        for (target, name, bytes) in seed_inputs(b"\x02\x01", b"\x01\x02", b"\x00\x00\x00") {
            match target {
                "wal_frame" => {
                    let records = wal_frame(&bytes);
                    assert!(
                        !name.starts_with("gen-frame") || !records.is_empty(),
                        "{name}"
                    );
                }
                _ => {
                    let lsn = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
                    assert!(
                        snapshot::load_bytes(&bytes, lsn, &mut |_| {}).is_ok(),
                        "{name}"
                    );
                    snapshot(&bytes);
                }
            }
        }
        for garbage in [
            &b""[..],
            b"CARTDWAL",
            b"CARTSNAP\x02\x00\x00\x00",
            b"\x01\0\0\0\0",
        ] {
            wal_frame(garbage);
            snapshot(garbage);
        }
    }

    #[test]
    fn checksums_are_fixed_so_damage_past_them_is_reached() {
        let seeds = seed_inputs(b"\x02\x01", b"", b"");
        let (_, _, good) = seeds
            .iter()
            .find(|(_, name, _)| name == "gen-snapshot-v2")
            .expect("a format-2 seed");
        let mut damaged = good.clone();
        let last = damaged.len() - 20;
        damaged[last] ^= 1;
        assert!(snapshot::load_bytes(&damaged, 17, &mut |_| {}).is_err());
        let fixed = fix_checksums(&damaged).expect("format 2");
        assert!(snapshot::load_bytes(&fixed, 17, &mut |_| {}).is_ok());
    }
}
