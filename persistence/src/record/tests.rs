//! Records and their frames: both formats read back, borrowed changes encode exactly as the
//! owned ones read, and damage is told from a frame cut short.

use super::*;

fn event() -> Event {
    Event {
        kind: EventKind::Add,
        detail: Bytes::from_static(br#"{"product":"p1"}"#),
    }
}

fn change(space: Space, state: State) -> Change {
    Change {
        space,
        key: Bytes::from_static(b"cart:42"),
        version: 3,
        at_ms: 1_764_000_000_123,
        state,
        event: Some(event()),
        guard: None,
    }
}

fn record(lsn: Lsn, changes: Vec<Change>) -> Record {
    Record { lsn, changes }
}

#[test]
fn frames_round_trip_back_to_back() {
    let guarded = Change {
        guard: Some(Guard {
            kind: GuardKind::Idempotency,
            token: Bytes::from_static(b"tok-1"),
            fingerprint: u64::MAX - 7,
        }),
        event: None,
        ..change(Space::GiftCard, State::Image(Bytes::from_static(b"card")))
    };
    let first = record(
        1,
        vec![
            change(
                Space::Cart,
                State::Image(Bytes::from_static(b"image bytes")),
            ),
            guarded,
        ],
    );
    let delta = State::Delta {
        base_lsn: 1,
        delta: Bytes::from_static(b"d"),
    };
    let second = record(2, vec![change(Space::Cart, delta)]);
    let third = record(
        3,
        vec![change(
            Space::Promotion,
            State::Tombstone(TombstoneReason::Merged),
        )],
    );
    let mut out = Vec::new();
    for record in [&first, &second, &third] {
        record.encode_frame(&mut out);
    }
    let mut at = 0;
    for expected in [first, second, third] {
        let (decoded, used) = Record::decode_frame(&out[at..], RecordFormat::V2).unwrap();
        assert_eq!(decoded, expected);
        at += used;
    }
    assert_eq!(at, out.len());
}

/// A format-1 record (one cart change, its time in the detail) reads as a one-change record.
#[test]
fn a_format_1_record_reads_as_one_cart_change() {
    let old = v1::Record {
        lsn: 9,
        key: Bytes::from_static(b"cart:7"),
        version: 4,
        change: v1::Change::Tombstone(TombstoneReason::Expired),
        event: Event {
            kind: EventKind::Abandon,
            detail: Bytes::from_static(br#"{"at_ms":1700000000000}"#),
        },
    };
    let payload = postcard::to_allocvec(&old).unwrap();
    let mut frame = Vec::new();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    let (record, used) = Record::decode_frame(&frame, RecordFormat::V1).unwrap();
    assert_eq!(used, frame.len());
    assert_eq!(record.lsn, 9);
    let [change] = &record.changes[..] else {
        panic!("one change: {record:?}")
    };
    assert_eq!(
        (change.space, &change.key[..], change.version),
        (Space::Cart, &b"cart:7"[..], 4)
    );
    assert_eq!(change.at_ms, 1_700_000_000_000);
    assert_eq!(change.state, State::Tombstone(TombstoneReason::Expired));
    assert_eq!(
        change.event.as_ref().map(|e| e.kind),
        Some(EventKind::Abandon)
    );
}

#[test]
fn a_cut_frame_is_incomplete_and_a_flipped_bit_is_corrupt() {
    let mut out = Vec::new();
    let image = State::Image(Bytes::from_static(b"abc"));
    record(7, vec![change(Space::Cart, image)]).encode_frame(&mut out);
    for cut in 0..out.len() {
        assert!(matches!(
            Record::decode_frame(&out[..cut], RecordFormat::V2),
            Err(FrameError::Incomplete { .. })
        ));
    }
    for at in FRAME_HEADER_BYTES..out.len() {
        let mut bad = out.clone();
        bad[at] ^= 0x10;
        assert!(matches!(
            Record::decode_frame(&bad, RecordFormat::V2),
            Err(FrameError::Corrupt(_))
        ));
    }
}

#[test]
#[should_panic(expected = "a record holds")]
fn a_record_of_no_changes_is_refused() {
    encode_frame(1, &[], &mut Vec::new());
}
