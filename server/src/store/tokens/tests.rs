//! The token memory on its own: replay, conflict and expiry, a cart's overflow leaving traces
//! that refuse a second application, other carts untouched by one cart's flood, a full memory
//! refusing rather than pushing out, the arena against a model, snapshots of it, and its size.

use std::collections::{HashMap, VecDeque};

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

fn bounds(total: usize, per_cart: usize) -> TokenBounds {
    TokenBounds { total, per_cart }
}

#[test]
fn replays_conflicts_and_expiry() {
    let mut memory = TokenMemory::new(bounds(10, 10));
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

/// A token its cart pushed out before its age leaves a trace: its retry is Forgotten, not a
/// Miss that would apply it again, until its age runs out; a cart keeps as many traces as
/// tokens, its oldest going first.
#[test]
fn a_carts_overflow_leaves_traces() {
    let mut memory = TokenMemory::new(bounds(100, 2));
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
    assert_eq!(memory.forgotten_len(), 2, "traces are bounded per cart");
    assert_eq!(
        memory.lookup(1, b"a", 1, 10),
        Lookup::Miss,
        "its cart's newer traces pushed it out"
    );
    assert_eq!(memory.lookup(1, b"c", 1, 10), Lookup::Forgotten);
    assert_eq!(memory.lookup(1, b"d", 1, 10), Lookup::Forgotten);
    memory.remember(&token(1, "g", 1, 9, 300), 100);
    assert_eq!(
        memory.lookup(1, b"d", 1, 100),
        Lookup::Miss,
        "its age ran out"
    );
    assert_eq!(memory.forgotten_len(), 0);
    assert_eq!(memory.len(), 1);
}

/// One cart flooded with tokens pushes out only its own; another cart's token still replays.
/// A full memory admits no new token for a cart under its bound (it is refused, counted), but
/// a cart at its bound may still take one, pushing out its own oldest.
#[test]
fn one_carts_flood_spares_the_others_and_a_full_memory_refuses() {
    let mut memory = TokenMemory::new(bounds(10, 3));
    memory.remember(&token(1, "victim", 7, 1, 1000), 0);
    for index in 0..10_000u64 {
        assert!(memory.admits(2, 0));
        memory.remember(&token(2, &format!("flood-{index}"), 1, index, 1000), 0);
    }
    assert_eq!(
        memory.lookup(1, b"victim", 7, 0),
        Lookup::Replay { version: 1 }
    );
    assert_eq!(memory.len(), 4);
    assert_eq!(
        memory.forgotten_len(),
        3,
        "the flooded cart keeps as many traces as tokens"
    );
    assert_eq!(memory.evicted, 9_997);
    let mut cart = 3;
    while memory.len() < 10 {
        assert!(memory.admits(cart, 0));
        memory.remember(&token(cart, "t", 1, 1, 1000), 0);
        cart += 1;
    }
    assert!(
        !memory.admits(cart, 0),
        "full: a new cart's token is refused"
    );
    assert_eq!(memory.refused, 1);
    assert!(
        memory.admits(2, 0),
        "a cart at its bound pushes out its own"
    );
    assert_eq!(
        memory.lookup(1, b"victim", 7, 0),
        Lookup::Replay { version: 1 }
    );
    assert!(memory.admits(cart, 1000), "tokens that aged out make room");
}

/// Entries a cart pushes out from the middle of the arena are reclaimed: a flood behind one
/// old token of another cart does not grow the memory.
#[test]
fn the_arena_stays_compact_behind_an_old_token() {
    let mut memory = TokenMemory::new(bounds(1_000, 4));
    memory.remember(&token(1, "old", 1, 1, u32::MAX), 0);
    for index in 0..200_000u64 {
        memory.remember(&token(2, &format!("{index:0>36}"), 1, index, u32::MAX), 0);
    }
    assert!(
        memory.arena.bytes() <= 2 * memory.live_bytes + DEAD_BYTES_SLACK + CHUNK_BYTES,
        "{} arena bytes for {} live",
        memory.arena.bytes(),
        memory.live_bytes
    );
    assert_eq!(memory.len(), 5);
    assert_eq!(
        memory.lookup(1, b"old", 1, 0),
        Lookup::Replay { version: 1 }
    );
    let newest = format!("{:0>36}", 199_999);
    assert_eq!(
        memory.lookup(2, newest.as_bytes(), 1, 0),
        Lookup::Replay { version: 199_999 }
    );
}

/// The memory as a snapshot carries it: tokens and traces come back in a memory seeded alike;
/// traces in the first format (no cart named) still refuse their retries.
#[test]
fn a_snapshot_of_the_memory_round_trips() {
    let seed = [1, 2, 3, 4];
    let mut memory = TokenMemory::new(bounds(10, 2));
    memory.seed(seed);
    for (index, name) in ["a", "b", "c"].iter().enumerate() {
        memory.remember(&token(0, name, 7, index as u64 * 10, 500), 0);
    }
    memory.remember(&token(4, "e", 7, 40, 500), 0);
    let (entries, traces) = TokenMemory::decode(&memory.encode()).unwrap();
    assert_eq!(entries, memory.entries());
    assert_eq!(entries.len(), 3);
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0].2, 0, "the trace names its cart");
    let restore = |traces: &[Trace]| {
        let mut restored = TokenMemory::new(bounds(10, 2));
        restored.seed(seed);
        for entry in &entries {
            restored.remember(entry, 1);
        }
        restored.restore_forgotten(traces, 1);
        restored
    };
    let restored = restore(&traces);
    assert_eq!(
        restored.lookup(4, b"e", 7, 1),
        Lookup::Replay { version: 40 }
    );
    assert_eq!(restored.lookup(0, b"a", 7, 1), Lookup::Forgotten);
    assert!(TokenMemory::decode(&memory.encode()[..5]).is_err());

    // Format 1: no tokens, then (digest, expires_s) pairs.
    let mut format_1 = vec![0, 1];
    format_1.extend_from_slice(&traces[0].0.to_le_bytes());
    format_1.extend_from_slice(&traces[0].1.to_le_bytes());
    let (none, old_traces) = TokenMemory::decode(&format_1).unwrap();
    assert!(none.is_empty());
    assert_eq!(old_traces, vec![(traces[0].0, traces[0].1, UNKNOWN_CART)]);
    assert_eq!(
        restore(&old_traces).lookup(0, b"a", 7, 1),
        Lookup::Forgotten
    );
}

/// What a remembered UUID-length token costs, arena, index and carts together, once the
/// memory holds many: within 48 bytes plus the token when carts have many, within 96 when
/// every token is of a cart of its own.
#[test]
fn a_token_costs_a_few_dozen_bytes_plus_itself() {
    for (carts, bound) in [(1_000u64, 48.0), (100_000, 96.0)] {
        let mut memory = TokenMemory::new(bounds(200_000, 1_000));
        for index in 0..100_000u64 {
            let name = format!("{index:0>36}");
            memory.remember(
                &token(index % carts, &name, index, index * 1000, u32::MAX),
                0,
            );
        }
        let per_token = memory.bytes() as f64 / memory.len() as f64;
        assert!(
            per_token <= bound + 36.0,
            "{per_token:.1} bytes per 36-byte token over {carts} carts"
        );
    }
}

#[derive(Debug, Clone)]
enum Op {
    Remember(u8, u8, u8),
    Look(u8, u8, u8),
    Wait(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, 0u8..30, 1u8..65).prop_map(|(cart, t, len)| Op::Remember(cart, t, len)),
        (0u8..4, 0u8..30, 1u8..65).prop_map(|(cart, t, len)| Op::Look(cart, t, len)),
        (0u32..50).prop_map(Op::Wait),
    ]
}

fn name(index: u8, len: u8) -> String {
    format!("{index}-{}", "z".repeat(len as usize))
        .chars()
        .take(64)
        .collect()
}

/// What the memory should hold for one cart: its live tokens and its traces, oldest first.
#[derive(Default)]
struct ModelCart {
    live: VecDeque<(String, u64, u32)>,
    traces: VecDeque<(String, u32)>,
}

const PER_CART: usize = 3;
const TOTAL: usize = 7;

proptest! {
    /// Against an exact model (one TTL for every token, as the server has): each cart keeps
    /// its newest PER_CART tokens and traces of the ones it pushed out, a full memory refuses
    /// a cart under its bound, and walking the memory finds exactly its tokens.
    #[test]
    fn the_memory_agrees_with_a_model(
        ops in prop::collection::vec(op(), 1..400),
        ttl in 1u32..200,
    ) {
        let mut memory = TokenMemory::new(bounds(TOTAL, PER_CART));
        let mut model: HashMap<u64, ModelCart> = HashMap::new();
        let mut now_s = 0u32;
        let mut version = 0u64;
        for op in ops {
            for cart in model.values_mut() {
                cart.live.retain(|(_, _, expires_s)| *expires_s > now_s);
                cart.traces.retain(|(_, expires_s)| *expires_s > now_s);
            }
            match op {
                Op::Remember(cart, index, len) => {
                    let (cart, token_name) = (u64::from(cart), name(index, len));
                    if memory.lookup(cart, token_name.as_bytes(), 1, now_s) != Lookup::Miss {
                        continue;
                    }
                    let live: usize = model.values().map(|cart| cart.live.len()).sum();
                    let entry = model.entry(cart).or_default();
                    let expected = live < TOTAL || entry.live.len() >= PER_CART;
                    prop_assert_eq!(memory.admits(cart, now_s), expected);
                    if !expected {
                        continue;
                    }
                    version += 1;
                    memory.remember(&token(cart, &token_name, 1, version, now_s + ttl), now_s);
                    if entry.live.len() >= PER_CART {
                        let (gone, _, expires_s) = entry.live.pop_front().unwrap();
                        entry.traces.retain(|(traced, _)| *traced != gone);
                        if entry.traces.len() >= PER_CART {
                            entry.traces.pop_front();
                        }
                        entry.traces.push_back((gone, expires_s));
                    }
                    entry.traces.retain(|(traced, _)| *traced != token_name);
                    entry.live.push_back((token_name, version, now_s + ttl));
                }
                Op::Look(cart, index, len) => {
                    let (cart, token_name) = (u64::from(cart), name(index, len));
                    let found = memory.lookup(cart, token_name.as_bytes(), 1, now_s);
                    let entry = model.entry(cart).or_default();
                    let expected = if let Some((_, version, _)) =
                        entry.live.iter().find(|(live, _, _)| *live == token_name)
                    {
                        Lookup::Replay { version: *version }
                    } else if entry.traces.iter().any(|(traced, _)| *traced == token_name) {
                        Lookup::Forgotten
                    } else {
                        Lookup::Miss
                    };
                    prop_assert_eq!(found, expected, "{} of cart {}", token_name, cart);
                }
                Op::Wait(seconds) => now_s += seconds,
            }
            prop_assert!(memory.len() <= TOTAL);
            let walked = memory.entries();
            prop_assert_eq!(walked.len(), memory.len());
            for entry in &walked {
                let token_name = String::from_utf8(entry.token.to_vec()).unwrap();
                let cart = model.get(&entry.key_hash).expect("a cart the model knows");
                let live = cart.live.iter().any(|(live, version, _)| {
                    *live == token_name && *version == entry.version
                });
                // The memory may still hold a token whose age ran out (it goes when the head
                // passes it); the model dropped it.
                prop_assert!(live || entry.expires_s <= now_s);
            }
        }
    }
}
