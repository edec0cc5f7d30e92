//! The token memory on its own: replay, conflict and expiry, eviction leaving a trace that
//! refuses a second application, the arena against a model, snapshots of it, and its size.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn token(key_hash: u64, token: &str, fingerprint: u64, version: u64, expires_s: u32) -> Remembered {
    Remembered {
        key_hash,
        kind: GuardKind::Idempotency,
        token: token.as_bytes().into(),
        fingerprint,
        version,
        expires_s,
    }
}

#[test]
fn replays_conflicts_and_expiry() {
    let mut memory = TokenMemory::new(10);
    memory.remember(&token(1, "t", 10, 5, 100), 0);
    assert_eq!(
        memory.lookup(1, b"t", 10, 50),
        Lookup::Replay { version: 5 }
    );
    assert_eq!(memory.lookup(1, b"t", 11, 50), Lookup::Conflict);
    assert_eq!(memory.lookup(2, b"t", 10, 50), Lookup::Miss, "another cart");
    assert_eq!(memory.lookup(1, b"u", 10, 50), Lookup::Miss);
    assert_eq!(
        memory.lookup(1, b"t", 10, 100),
        Lookup::Miss,
        "its age ran out"
    );
    memory.remember(&token(1, "t", 99, 7, 200), 10);
    assert_eq!(
        memory.lookup(1, b"t", 10, 50),
        Lookup::Replay { version: 5 },
        "remembered once: the second hand-over changes nothing"
    );
    memory.remember(&token(3, "x", 1, 1, 300), 150);
    assert_eq!(memory.len(), 1, "the expired one was pruned");
    let checkout = Remembered {
        kind: GuardKind::Checkout,
        ..token(3, "x", 0, 2, 300)
    };
    memory.remember(&checkout, 150);
    assert!(memory.completed_order(3, b"x", 150).is_some());
    assert_eq!(
        memory.lookup(3, b"x", 1, 150),
        Lookup::Replay { version: 1 },
        "kinds apart"
    );
    assert!(memory.completed_order(3, b"y", 150).is_none());
}

/// A token pushed out by count before its age leaves a trace: its retry is Forgotten, not a
/// Miss that would apply it again, until its age runs out; traces are bounded too.
#[test]
fn evicted_tokens_leave_a_trace() {
    let mut memory = TokenMemory::new(2);
    memory.remember(&token(1, "a", 1, 1, 100), 0);
    memory.remember(&token(1, "b", 1, 2, 100), 0);
    memory.remember(&token(1, "c", 1, 3, 100), 0);
    assert_eq!((memory.len(), memory.evicted), (2, 1));
    assert_eq!(memory.lookup(1, b"a", 1, 10), Lookup::Forgotten);
    assert_eq!(
        memory.lookup(1, b"a", 2, 10),
        Lookup::Forgotten,
        "whatever the arguments"
    );
    assert_eq!(memory.lookup(1, b"b", 1, 10), Lookup::Replay { version: 2 });
    for name in ["d", "e", "f"] {
        memory.remember(&token(1, name, 1, 9, 100), 0);
    }
    assert_eq!(
        memory.forgotten_len(),
        2,
        "traces are bounded by the same share"
    );
    assert_eq!(
        memory.lookup(1, b"a", 1, 10),
        Lookup::Miss,
        "pushed out of the traces too"
    );
    assert_eq!(memory.lookup(1, b"d", 1, 10), Lookup::Forgotten);
    memory.remember(&token(1, "g", 1, 9, 300), 100);
    assert_eq!(
        memory.lookup(1, b"d", 1, 100),
        Lookup::Miss,
        "its age ran out"
    );
    assert_eq!(memory.forgotten_len(), 0);
}

/// The memory as a snapshot carries it: tokens and traces come back in a memory seeded alike.
#[test]
fn a_snapshot_of_the_memory_round_trips() {
    let seed = [1, 2, 3, 4];
    let mut memory = TokenMemory::new(3);
    memory.seed(seed);
    for (index, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        memory.remember(&token(index as u64, name, 7, index as u64 * 10, 500), 0);
    }
    let (entries, traces) = TokenMemory::decode(&memory.encode()).unwrap();
    assert_eq!(entries, memory.entries());
    assert_eq!(entries.len(), 3);
    let mut restored = TokenMemory::new(3);
    restored.seed(seed);
    for entry in &entries {
        restored.remember(entry, 1);
    }
    restored.restore_forgotten(&traces, 1);
    assert_eq!(
        restored.lookup(4, b"e", 7, 1),
        Lookup::Replay { version: 40 }
    );
    assert_eq!(restored.lookup(0, b"a", 7, 1), Lookup::Forgotten);
    assert!(TokenMemory::decode(&memory.encode()[..5]).is_err());
}

/// A remembered UUID-length token costs at most 64 bytes plus the token, arena and index
/// together, once the memory holds many.
#[test]
fn a_token_costs_at_most_64_bytes_plus_itself() {
    let mut memory = TokenMemory::new(200_000);
    for index in 0..100_000u64 {
        let name = format!("{index:0>36}");
        memory.remember(&token(index, &name, index, index * 1000, u32::MAX), 0);
    }
    let per_token = memory.bytes() as f64 / memory.len() as f64;
    assert!(
        per_token <= 64.0 + 36.0,
        "{per_token:.1} bytes per 36-byte token"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Remember(u8, u8, u32),
    Look(u8, u8),
    Wait(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..40, 1u8..65, 1u32..400).prop_map(|(t, len, ttl)| Op::Remember(t, len, ttl)),
        (0u8..40, 1u8..65).prop_map(|(t, len)| Op::Look(t, len)),
        (0u32..50).prop_map(Op::Wait),
    ]
}

fn name(index: u8, len: u8) -> String {
    format!("{index}-{}", "z".repeat(len as usize))
        .chars()
        .take(64)
        .collect()
}

proptest! {
    /// Against a model that remembers everything: a remembered, unexpired token replays its
    /// version; one the memory no longer has was pushed out (counted as evicted) or expired;
    /// the memory never holds more than its bound, and walking it finds exactly its tokens.
    #[test]
    fn the_memory_agrees_with_a_model(ops in prop::collection::vec(op(), 1..400)) {
        let mut memory = TokenMemory::new(16);
        let mut model: HashMap<String, (u64, u32)> = HashMap::new();
        let mut now_s = 0u32;
        let mut version = 0u64;
        for op in ops {
            match op {
                Op::Remember(index, len, ttl) => {
                    let token_name = name(index, len);
                    if memory.lookup(5, token_name.as_bytes(), 1, now_s) != Lookup::Miss {
                        continue;
                    }
                    version += 1;
                    memory.remember(&token(5, &token_name, 1, version, now_s + ttl), now_s);
                    model.insert(token_name, (version, now_s + ttl));
                }
                Op::Look(index, len) => {
                    let token_name = name(index, len);
                    let found = memory.lookup(5, token_name.as_bytes(), 1, now_s);
                    match (found, model.get(&token_name)) {
                        (Lookup::Replay { version }, Some(&(expected, expires_s))) => {
                            prop_assert_eq!(version, expected);
                            prop_assert!(expires_s > now_s);
                        }
                        (Lookup::Replay { .. }, None) => prop_assert!(false, "a token never given"),
                        (Lookup::Forgotten, Some(&(_, expires_s))) => prop_assert!(expires_s > now_s),
                        (Lookup::Miss, _) | (Lookup::Forgotten, _) => {}
                        (Lookup::Conflict, _) => prop_assert!(false, "one fingerprint only"),
                    }
                }
                Op::Wait(seconds) => now_s += seconds,
            }
            prop_assert!(memory.len() <= 16);
            let walked = memory.entries();
            prop_assert_eq!(walked.len(), memory.len());
            for entry in &walked {
                let token_name = String::from_utf8(entry.token.to_vec()).unwrap();
                prop_assert_eq!(model.get(&token_name).map(|m| m.0), Some(entry.version));
            }
        }
    }
}
