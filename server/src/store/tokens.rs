//! Remembered request tokens, one memory per shard: a mutation's `IDEMPOTENCY token` and a
//! completed checkout's token, each keyed by the cart's key hash, its kind and the token.
//!
//! A token is remembered with what its change left, not with the reply: the request's
//! fingerprint (to tell a retry from another request reusing the token) and the cart version
//! the change produced. A retry then replays from the cart as it is (its version, or its
//! view). That keeps each token to a few dozen bytes whatever the cart's size: entries are
//! packed one after another into fixed-size chunks (`[key_hash u64 | fingerprint u64 | next
//! u64 | expires_s u32 | version varint | kind u8 | token_len u8 | token]`), in arrival order,
//! and an index of their positions finds them. `next` links a cart's entries, oldest to
//! newest, so each cart's tokens are a queue of their own.
//!
//! Bounds, so that no client can make another cart's retry apply twice:
//! - per cart (`max_idempotency_keys_per_cart`): past it that cart's oldest token goes, and
//!   keeps a trace (its digest, its end, its cart: about 40 bytes) so its retry is refused
//!   (`Lookup::Forgotten`) rather than applied a second time. A cart keeps at most as many
//!   traces as tokens, its oldest going first; a trace goes only by its age or by that cart's
//!   own overflow.
//! - per shard (its share of `max_idempotency_keys`): a full memory takes no new token
//!   (`admits` says no and the request is refused); it never pushes out another cart's.
//!   Completed checkouts are remembered even then (each took a real checkout).
//!
//! Tokens go by age (`idempotency_ttl_s`) from the oldest end of the arena; entries dropped
//! from the middle (a cart's overflow) leave dead bytes that a compaction reclaims once they
//! outweigh the live ones.
//!
//! The log carries each token in the record of the change it guards, and snapshots carry the
//! memory itself ([`TokenMemory::encode`]), so a retry after a restart replays too.

use std::collections::VecDeque;

use hashbrown::HashTable;
use persistence::GuardKind;

/// Bytes of one arena chunk; an entry never straddles two.
const CHUNK_BYTES: usize = 4 * 1024;

/// Longest token (protocol's `TOKEN_BYTES_MAX`); a token length fits its one byte.
const TOKEN_BYTES_MAX: usize = protocol::TOKEN_BYTES_MAX;

/// Where an entry's `next` link is.
const NEXT_AT: usize = 16;

/// Where the fixed part of an entry ends.
const FIXED_BYTES: usize = 28;

/// Longest entry in the arena.
const ENTRY_BYTES_MAX: usize = FIXED_BYTES + 10 + 1 + 1 + TOKEN_BYTES_MAX;

/// No entry: the end of a cart's queue.
const NONE: u64 = u64::MAX;

/// The cart of a trace a format-1 snapshot kept (it did not say): counted for no cart.
const UNKNOWN_CART: u64 = u64::MAX;

/// Dead arena bytes tolerated before a compaction, beyond as many as there are live ones.
const DEAD_BYTES_SLACK: usize = 16 * CHUNK_BYTES;

const _: () = assert!(TOKEN_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(ENTRY_BYTES_MAX <= CHUNK_BYTES);

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Never seen, or forgotten long ago.
    Miss,
    /// The same request again; its change left the cart at `version`.
    Replay {
        /// The version the first request left the cart at.
        version: u64,
    },
    /// The token was used with other arguments.
    Conflict,
    /// The token was used, but what it did was pushed out of memory by newer tokens.
    Forgotten,
}

/// The trace of a token pushed out early: its digest, when its age would have run out, and
/// its cart's key hash.
pub type Trace = (u64, u32, u64);

/// How many tokens a memory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBounds {
    /// Tokens in the whole memory (0: none are remembered).
    pub total: usize,
    /// Tokens of one cart.
    pub per_cart: usize,
}

/// One remembered token, as the log and snapshots hand it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The cart's key hash.
    pub key_hash: u64,
    /// What kind of token.
    pub kind: GuardKind,
    /// The token.
    pub token: Box<[u8]>,
    /// Hash of the request (0 for a checkout token).
    pub fingerprint: u64,
    /// The cart version the change left.
    pub version: u64,
    /// Unix seconds when it is forgotten.
    pub expires_s: u32,
}

/// One cart's queue of tokens and the digests of its traces, oldest first (only a cart that
/// went past its bound has any).
#[derive(Debug)]
struct CartTokens {
    key_hash: u64,
    /// Positions of its oldest and newest live entries (`NONE` when it has none).
    oldest: u64,
    newest: u64,
    live: u32,
    // Boxed: 8 bytes in every cart's record, where few carts have traces at all.
    #[allow(clippy::box_collection)]
    traces: Option<Box<VecDeque<u64>>>,
}

impl CartTokens {
    fn new(key_hash: u64) -> CartTokens {
        CartTokens {
            key_hash,
            oldest: NONE,
            newest: NONE,
            live: 0,
            traces: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.live == 0 && self.traces.is_none()
    }
}

/// A kept trace.
#[derive(Debug, Clone, Copy)]
struct Kept {
    digest: u64,
    expires_s: u32,
    key_hash: u64,
}

/// One shard's remembered tokens.
#[derive(Debug)]
pub struct TokenMemory {
    arena: Arena,
    /// Positions of the live entries, by their digest.
    index: HashTable<u64>,
    /// Each cart with live entries or traces, by its key hash.
    carts: HashTable<CartTokens>,
    hasher: ahash::RandomState,
    bounds: TokenBounds,
    /// Bytes of the live entries.
    live_bytes: usize,
    /// Traces of tokens a cart pushed out before their age, by digest.
    forgotten: HashTable<Kept>,
    forgotten_order: VecDeque<u64>,
    /// Tokens pushed out early by their cart's bound.
    pub evicted: u64,
    /// Requests refused because the memory was full.
    pub refused: u64,
}

/// Entries back to back in fixed-size chunks, oldest first. A position is
/// `chunk number * CHUNK_BYTES + offset`; chunk numbers only grow.
#[derive(Debug, Default)]
struct Arena {
    /// The chunks still holding live entries, each with how many of its bytes are used.
    chunks: VecDeque<(Box<[u8]>, usize)>,
    /// The number of `chunks[0]`.
    first_chunk: u64,
    /// Position of the oldest entry still in the arena. Entries after it are live unless the
    /// index no longer lists them.
    head: u64,
}

impl Arena {
    fn locate(&self, at: u64) -> (usize, usize) {
        let chunk = (at / CHUNK_BYTES as u64 - self.first_chunk) as usize;
        (chunk, (at % CHUNK_BYTES as u64) as usize)
    }

    /// The bytes from position `at` to the end of its chunk's entries.
    fn bytes_at(&self, at: u64) -> &[u8] {
        let (chunk, offset) = self.locate(at);
        let (bytes, used) = &self.chunks[chunk];
        &bytes[offset..*used]
    }

    /// Sets the `next` link of the entry at `at`.
    fn set_next(&mut self, at: u64, next: u64) {
        let (chunk, offset) = self.locate(at);
        let bytes = &mut self.chunks[chunk].0;
        bytes[offset + NEXT_AT..offset + NEXT_AT + 8].copy_from_slice(&next.to_le_bytes());
    }

    /// Position where the next entry goes.
    fn tail(&self) -> u64 {
        match self.chunks.back() {
            Some((_, used)) => {
                (self.first_chunk + self.chunks.len() as u64 - 1) * CHUNK_BYTES as u64
                    + *used as u64
            }
            None => self.first_chunk * CHUNK_BYTES as u64,
        }
    }

    /// Copies `entry` to the tail, in a new chunk when it does not fit; returns its position.
    fn push(&mut self, entry: &[u8]) -> u64 {
        let fits = self
            .chunks
            .back()
            .is_some_and(|(_, used)| used + entry.len() <= CHUNK_BYTES);
        if !fits {
            if self.chunks.is_empty() {
                self.head = self.first_chunk * CHUNK_BYTES as u64;
            }
            self.chunks
                .push_back((vec![0; CHUNK_BYTES].into_boxed_slice(), 0));
        }
        let at = self.tail();
        let (bytes, used) = self.chunks.back_mut().expect("a chunk was made");
        bytes[*used..*used + entry.len()].copy_from_slice(entry);
        *used += entry.len();
        at
    }

    /// The position after the entry at `at`, which takes `bytes`: the next entry's, skipping
    /// the unused end of a chunk.
    fn next(&self, at: u64, bytes: usize) -> u64 {
        let after = at + bytes as u64;
        let (chunk, offset) = self.locate(at);
        if offset + bytes < self.chunks[chunk].1 || chunk + 1 == self.chunks.len() {
            after
        } else {
            (self.first_chunk + chunk as u64 + 1) * CHUNK_BYTES as u64
        }
    }

    /// Moves the head past the entry it stands on, freeing chunks left behind.
    fn advance_head(&mut self, bytes: usize) {
        self.head = self.next(self.head, bytes);
        while self.chunks.len() > 1 && self.head >= (self.first_chunk + 1) * CHUNK_BYTES as u64 {
            self.chunks.pop_front();
            self.first_chunk += 1;
        }
        if self.head >= self.tail() {
            // Nothing left: the last chunk goes too, the next entry starts a fresh one.
            self.chunks.clear();
            self.first_chunk += 1;
            self.head = self.first_chunk * CHUNK_BYTES as u64;
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes its chunks take.
    fn bytes(&self) -> usize {
        self.chunks.len() * CHUNK_BYTES
    }
}

/// An entry read out of the arena.
struct Slot<'a> {
    key_hash: u64,
    fingerprint: u64,
    next: u64,
    expires_s: u32,
    version: u64,
    kind: GuardKind,
    token: &'a [u8],
    bytes: usize,
}

impl<'a> Slot<'a> {
    fn read(bytes: &'a [u8]) -> Slot<'a> {
        let word = |from: usize| u64::from_le_bytes(bytes[from..from + 8].try_into().expect("8"));
        let expires_s = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
        let (version, used) = read_varint(&bytes[FIXED_BYTES..]);
        let at = FIXED_BYTES + used;
        let token_len = bytes[at + 1] as usize;
        Slot {
            key_hash: word(0),
            fingerprint: word(8),
            next: word(NEXT_AT),
            expires_s,
            version,
            kind: kind_of(bytes[at]),
            token: &bytes[at + 2..at + 2 + token_len],
            bytes: at + 2 + token_len,
        }
    }
}

fn kind_code(kind: GuardKind) -> u8 {
    match kind {
        GuardKind::Idempotency => 0,
        GuardKind::Checkout => 1,
    }
}

fn kind_of(code: u8) -> GuardKind {
    match code {
        0 => GuardKind::Idempotency,
        _ => GuardKind::Checkout,
    }
}

impl TokenMemory {
    /// An empty memory within `bounds`.
    pub fn new(bounds: TokenBounds) -> TokenMemory {
        TokenMemory {
            arena: Arena::default(),
            index: HashTable::new(),
            carts: HashTable::new(),
            hasher: ahash::RandomState::new(),
            bounds: TokenBounds {
                total: bounds.total,
                per_cart: bounds.per_cart.max(1),
            },
            live_bytes: 0,
            forgotten: HashTable::new(),
            forgotten_order: VecDeque::new(),
            evicted: 0,
            refused: 0,
        }
    }

    fn digest(&self, key_hash: u64, kind: GuardKind, token: &[u8]) -> u64 {
        digest_with(&self.hasher, key_hash, kind, token)
    }

    fn slot(&self, at: u64) -> Slot<'_> {
        Slot::read(self.arena.bytes_at(at))
    }

    fn find(&self, key_hash: u64, kind: GuardKind, token: &[u8]) -> Option<u64> {
        let digest = self.digest(key_hash, kind, token);
        self.index
            .find(digest, |&at| {
                let slot = self.slot(at);
                slot.key_hash == key_hash && slot.kind == kind && slot.token == token
            })
            .copied()
    }

    /// Whether the entry at `at` is still listed (not dropped from the middle).
    fn is_live(&self, at: u64) -> bool {
        let slot = self.slot(at);
        let digest = self.digest(slot.key_hash, slot.kind, slot.token);
        self.index.find(digest, |&other| other == at).is_some()
    }

    fn cart(&self, key_hash: u64) -> Option<&CartTokens> {
        self.carts.find(key_hash, |cart| cart.key_hash == key_hash)
    }

    fn cart_mut(&mut self, key_hash: u64) -> Option<&mut CartTokens> {
        self.carts
            .find_mut(key_hash, |cart| cart.key_hash == key_hash)
    }

    /// Forgets a cart that holds nothing any more.
    fn drop_cart_if_empty(&mut self, key_hash: u64) {
        if let Ok(entry) = self
            .carts
            .find_entry(key_hash, |cart| cart.key_hash == key_hash)
        {
            if entry.get().is_empty() {
                entry.remove();
            }
        }
    }

    /// Looks up a mutation's token for the cart with key hash `key_hash`.
    pub fn lookup(&self, key_hash: u64, token: &[u8], fingerprint: u64, now_s: u32) -> Lookup {
        let kind = GuardKind::Idempotency;
        match self.find(key_hash, kind, token).map(|at| self.slot(at)) {
            Some(slot) if slot.expires_s > now_s => {
                if slot.fingerprint == fingerprint {
                    Lookup::Replay {
                        version: slot.version,
                    }
                } else {
                    Lookup::Conflict
                }
            }
            _ if self.was_forgotten(self.digest(key_hash, kind, token), now_s) => Lookup::Forgotten,
            _ => Lookup::Miss,
        }
    }

    /// Whether a new IDEMPOTENCY token of the cart with key hash `key_hash` can be
    /// remembered: the memory has room, or the cart is at its own bound (its oldest goes).
    /// A refusal is counted.
    pub fn admits(&mut self, key_hash: u64, now_s: u32) -> bool {
        if self.bounds.total == 0 {
            return true;
        }
        self.prune(now_s);
        let full_cart = self
            .cart(key_hash)
            .is_some_and(|cart| cart.live as usize >= self.bounds.per_cart);
        let admitted = self.index.len() < self.bounds.total || full_cart;
        if !admitted {
            self.refused += 1;
        }
        admitted
    }

    /// Whether the checkout `token` of the cart with key hash `key_hash` was completed (and
    /// is still remembered, or known to have been): the fingerprint of the ORDER id it was
    /// completed with (0: none, or no longer known), or `None`.
    pub fn completed_order(&self, key_hash: u64, token: &[u8], now_s: u32) -> Option<u64> {
        let kind = GuardKind::Checkout;
        match self.find(key_hash, kind, token) {
            Some(at) => {
                let slot = self.slot(at);
                (slot.expires_s > now_s).then_some(slot.fingerprint)
            }
            None => self
                .was_forgotten(self.digest(key_hash, kind, token), now_s)
                .then_some(0),
        }
    }

    fn was_forgotten(&self, digest: u64, now_s: u32) -> bool {
        self.forgotten
            .find(digest, |kept| kept.digest == digest)
            .is_some_and(|kept| kept.expires_s > now_s)
    }

    /// Remembers a token unless it is remembered already (replaying the log and loading a
    /// snapshot may both hand it over). The caller asked [`TokenMemory::admits`] first for a
    /// request's token; what the log and snapshots hand over was admitted when it was made.
    pub fn remember(&mut self, remembered: &Remembered, now_s: u32) {
        assert!(
            remembered.token.len() <= TOKEN_BYTES_MAX,
            "tokens are bounded"
        );
        self.prune(now_s);
        if self.bounds.total == 0 || remembered.expires_s <= now_s {
            return;
        }
        let (key_hash, kind, token) = (remembered.key_hash, remembered.kind, &remembered.token);
        if let Some(at) = self.find(key_hash, kind, token) {
            if self.slot(at).expires_s > now_s {
                return;
            }
            // Its age ran out behind a younger head: it goes now.
            self.unlink(at);
        }
        while self
            .cart(key_hash)
            .is_some_and(|cart| cart.live as usize >= self.bounds.per_cart)
        {
            self.evict_oldest_of(key_hash, now_s);
        }
        let mut entry = [0u8; ENTRY_BYTES_MAX];
        entry[..8].copy_from_slice(&key_hash.to_le_bytes());
        entry[8..16].copy_from_slice(&remembered.fingerprint.to_le_bytes());
        entry[NEXT_AT..NEXT_AT + 8].copy_from_slice(&NONE.to_le_bytes());
        entry[24..28].copy_from_slice(&remembered.expires_s.to_le_bytes());
        let mut length = FIXED_BYTES + write_varint(&mut entry[FIXED_BYTES..], remembered.version);
        entry[length] = kind_code(kind);
        entry[length + 1] = token.len() as u8;
        entry[length + 2..length + 2 + token.len()].copy_from_slice(token);
        length += 2 + token.len();
        self.append(&entry[..length]);
        self.compact_if_sparse();
    }

    /// Puts an encoded entry at the tail, indexes it and queues it behind its cart's newest.
    fn append(&mut self, entry: &[u8]) {
        let at = self.arena.push(entry);
        let slot = Slot::read(entry);
        let (key_hash, bytes) = (slot.key_hash, slot.bytes);
        let digest = self.digest(key_hash, slot.kind, slot.token);
        let (hasher, arena) = (&self.hasher, &self.arena);
        self.index.insert_unique(digest, at, |&other| {
            let slot = Slot::read(arena.bytes_at(other));
            digest_with(hasher, slot.key_hash, slot.kind, slot.token)
        });
        self.live_bytes += bytes;
        let newest = match self.cart_mut(key_hash) {
            Some(cart) => {
                let newest = cart.newest;
                cart.newest = at;
                if cart.oldest == NONE {
                    cart.oldest = at;
                }
                cart.live += 1;
                newest
            }
            None => {
                let cart = CartTokens {
                    oldest: at,
                    newest: at,
                    live: 1,
                    ..CartTokens::new(key_hash)
                };
                self.carts
                    .insert_unique(key_hash, cart, |cart| cart.key_hash);
                NONE
            }
        };
        if newest != NONE {
            self.arena.set_next(newest, at);
        }
    }

    /// Drops the live entry at `at` from the index and from its cart's queue (its bytes stay
    /// until the head passes them or a compaction).
    fn unlink(&mut self, at: u64) {
        let slot = self.slot(at);
        let (key_hash, next, bytes) = (slot.key_hash, slot.next, slot.bytes);
        let digest = self.digest(key_hash, slot.kind, slot.token);
        if let Ok(found) = self.index.find_entry(digest, |&other| other == at) {
            found.remove();
        } else {
            return;
        }
        self.live_bytes -= bytes;
        let oldest = self
            .cart(key_hash)
            .expect("a live entry's cart is listed")
            .oldest;
        let mut before = NONE;
        if oldest != at {
            // Not the oldest (a token whose age ran out before older ones'): walk to it.
            let mut walk = oldest;
            while walk != NONE {
                let following = self.slot(walk).next;
                if following == at {
                    before = walk;
                    break;
                }
                walk = following;
            }
            assert_ne!(before, NONE, "a live entry is in its cart's queue");
            self.arena.set_next(before, next);
        }
        let cart = self.cart_mut(key_hash).expect("listed");
        if cart.oldest == at {
            cart.oldest = next;
        }
        if cart.newest == at {
            cart.newest = before;
        }
        cart.live -= 1;
        if cart.live == 0 {
            cart.oldest = NONE;
            cart.newest = NONE;
        }
        self.drop_cart_if_empty(key_hash);
    }

    /// Pushes out the oldest token of a cart at its bound, keeping a trace while the cart has
    /// room for one.
    fn evict_oldest_of(&mut self, key_hash: u64, now_s: u32) {
        let Some(at) = self.cart(key_hash).map(|cart| cart.oldest) else {
            return;
        };
        let slot = self.slot(at);
        let (expires_s, digest) = (
            slot.expires_s,
            self.digest(slot.key_hash, slot.kind, slot.token),
        );
        self.unlink(at);
        if expires_s <= now_s {
            return;
        }
        self.evicted += 1;
        self.forget(Kept {
            digest,
            expires_s,
            key_hash,
        });
    }

    /// Keeps a trace for its cart; a cart with as many traces as its token bound drops its
    /// oldest first.
    fn forget(&mut self, kept: Kept) {
        if self.was_forgotten(kept.digest, 0) {
            return;
        }
        if kept.key_hash == UNKNOWN_CART {
            // From a format-1 snapshot: bounded by the memory as a whole.
            if self.forgotten.len() >= self.bounds.total {
                return;
            }
        } else {
            let per_cart = self.bounds.per_cart;
            if self.cart(kept.key_hash).is_none() {
                let cart = CartTokens::new(kept.key_hash);
                self.carts
                    .insert_unique(kept.key_hash, cart, |cart| cart.key_hash);
            }
            let cart = self.cart_mut(kept.key_hash).expect("just listed");
            let traces = cart.traces.get_or_insert_with(Default::default);
            let dropped = (traces.len() >= per_cart)
                .then(|| traces.pop_front())
                .flatten();
            traces.push_back(kept.digest);
            if let Some(dropped) = dropped {
                self.remove_trace(dropped);
            }
        }
        self.forgotten
            .insert_unique(kept.digest, kept, |kept| kept.digest);
        self.forgotten_order.push_back(kept.digest);
        if self.forgotten_order.len() > 2 * self.forgotten.len() + 1024 {
            // Traces a cart dropped early leave their digests here: keep the order compact.
            let forgotten = &self.forgotten;
            self.forgotten_order.retain(|digest| {
                forgotten
                    .find(*digest, |kept| kept.digest == *digest)
                    .is_some()
            });
        }
    }

    /// Drops a trace from the table (not from its cart's list).
    fn remove_trace(&mut self, digest: u64) -> Option<Kept> {
        self.forgotten
            .find_entry(digest, |kept| kept.digest == digest)
            .ok()
            .map(|entry| entry.remove().0)
    }

    /// Drops the tokens whose age ran out and the dead bytes at the oldest end.
    fn prune(&mut self, now_s: u32) {
        while !self.arena.is_empty() {
            let head = self.arena.head;
            let (expires_s, bytes) = {
                let slot = self.slot(head);
                (slot.expires_s, slot.bytes)
            };
            if self.is_live(head) {
                if expires_s > now_s {
                    break;
                }
                self.unlink(head);
            }
            self.arena.advance_head(bytes);
        }
        self.prune_forgotten(now_s);
    }

    fn prune_forgotten(&mut self, now_s: u32) {
        // Traces end in (about) the order they were made: drop the ended ones from the front.
        while let Some(&oldest) = self.forgotten_order.front() {
            let found = self
                .forgotten
                .find(oldest, |kept| kept.digest == oldest)
                .copied();
            if found.is_some_and(|kept| kept.expires_s > now_s) {
                break;
            }
            self.forgotten_order.pop_front();
            let Some(kept) = found else {
                continue;
            };
            self.remove_trace(oldest);
            if let Some(cart) = self.cart_mut(kept.key_hash) {
                if let Some(traces) = &mut cart.traces {
                    if traces.front() == Some(&oldest) {
                        traces.pop_front();
                    } else {
                        traces.retain(|digest| *digest != oldest);
                    }
                    if traces.is_empty() {
                        cart.traces = None;
                    }
                }
                self.drop_cart_if_empty(kept.key_hash);
            }
        }
    }

    /// Copies the live entries into a fresh arena once dead bytes outweigh them, so a cart
    /// that overflows its bound cannot grow the arena behind an old token of another cart.
    fn compact_if_sparse(&mut self) {
        let dead = self.arena.bytes().saturating_sub(self.live_bytes);
        if dead <= self.live_bytes + DEAD_BYTES_SLACK {
            return;
        }
        let mut live = Vec::with_capacity(self.live_bytes);
        let mut ends = Vec::with_capacity(self.index.len());
        if !self.arena.is_empty() {
            let tail = self.arena.tail();
            let mut at = self.arena.head;
            while at < tail {
                let bytes = self.slot(at).bytes;
                if self.is_live(at) {
                    live.extend_from_slice(&self.arena.bytes_at(at)[..bytes]);
                    ends.push(live.len());
                }
                at = self.arena.next(at, bytes);
            }
        }
        let first_chunk = self.arena.first_chunk + self.arena.chunks.len() as u64 + 1;
        self.arena = Arena {
            chunks: VecDeque::new(),
            first_chunk,
            head: first_chunk * CHUNK_BYTES as u64,
        };
        self.index.clear();
        self.live_bytes = 0;
        for cart in self.carts.iter_mut() {
            (cart.oldest, cart.newest, cart.live) = (NONE, NONE, 0);
        }
        let mut start = 0;
        for end in ends {
            let mut entry = live[start..end].to_vec();
            entry[NEXT_AT..NEXT_AT + 8].copy_from_slice(&NONE.to_le_bytes());
            self.append(&entry);
            start = end;
        }
        self.carts.retain(|cart| !cart.is_empty());
    }

    /// Tokens remembered.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Traces of tokens pushed out early that are still kept.
    pub fn forgotten_len(&self) -> usize {
        self.forgotten.len()
    }

    /// Bytes the remembered tokens take: their arena chunks, index and carts' queues. The
    /// traces of forgotten ones are counted apart ([`TokenMemory::forgotten_bytes`]).
    pub fn bytes(&self) -> usize {
        self.arena.bytes()
            + self.index.capacity() * (std::mem::size_of::<u64>() + 1)
            + self.carts.capacity() * (std::mem::size_of::<CartTokens>() + 1)
    }

    /// Bytes the traces of forgotten tokens take (with their carts' lists of them).
    pub fn forgotten_bytes(&self) -> usize {
        // Each trace is in its cart's list too (about a u64 each; the lists' own headers are
        // not counted, to keep this cheap).
        self.forgotten.capacity() * (std::mem::size_of::<Kept>() + 1)
            + self.forgotten_order.capacity() * std::mem::size_of::<u64>()
            + self.forgotten.len() * std::mem::size_of::<u64>()
    }

    /// Every live token, oldest first.
    pub fn entries(&self) -> Vec<Remembered> {
        let mut out = Vec::with_capacity(self.len());
        if self.arena.is_empty() {
            return out;
        }
        let tail = self.arena.tail();
        let mut at = self.arena.head;
        while at < tail {
            let slot = self.slot(at);
            if self.is_live(at) {
                out.push(Remembered {
                    key_hash: slot.key_hash,
                    kind: slot.kind,
                    token: slot.token.into(),
                    fingerprint: slot.fingerprint,
                    version: slot.version,
                    expires_s: slot.expires_s,
                });
            }
            at = self.arena.next(at, slot.bytes);
        }
        out
    }

    /// The memory as bytes for a snapshot: every live token, an empty list where format 1
    /// put its traces, then the traces with their carts.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let entries = self.entries();
        put_varint(&mut out, entries.len() as u64);
        for entry in &entries {
            out.extend_from_slice(&entry.key_hash.to_le_bytes());
            out.extend_from_slice(&entry.fingerprint.to_le_bytes());
            out.extend_from_slice(&entry.expires_s.to_le_bytes());
            put_varint(&mut out, entry.version);
            out.push(kind_code(entry.kind));
            out.push(entry.token.len() as u8);
            out.extend_from_slice(&entry.token);
        }
        put_varint(&mut out, 0);
        let traces: Vec<Kept> = self
            .forgotten_order
            .iter()
            .filter_map(|digest| {
                self.forgotten
                    .find(*digest, |kept| kept.digest == *digest)
                    .copied()
            })
            .collect();
        put_varint(&mut out, traces.len() as u64);
        for kept in traces {
            out.extend_from_slice(&kept.digest.to_le_bytes());
            out.extend_from_slice(&kept.expires_s.to_le_bytes());
            out.extend_from_slice(&kept.key_hash.to_le_bytes());
        }
        out
    }

    /// Reads what [`TokenMemory::encode`] wrote (or format 1, whose traces name no cart): the
    /// tokens and the traces of forgotten ones.
    pub fn decode(bytes: &[u8]) -> Result<(Vec<Remembered>, Vec<Trace>), String> {
        let mut reader = Reader { bytes, at: 0 };
        let count = reader.varint()?;
        let mut entries = Vec::new();
        for _ in 0..count {
            let key_hash = reader.u64()?;
            let fingerprint = reader.u64()?;
            let expires_s = reader.u32()?;
            let version = reader.varint()?;
            let kind = kind_of(reader.take(1)?[0]);
            let token_len = reader.take(1)?[0] as usize;
            if token_len > TOKEN_BYTES_MAX {
                return Err(format!("a token of {token_len} bytes"));
            }
            let token = reader.take(token_len)?.into();
            entries.push(Remembered {
                key_hash,
                kind,
                token,
                fingerprint,
                version,
                expires_s,
            });
        }
        let mut forgotten = Vec::new();
        for _ in 0..reader.varint()? {
            let digest = reader.u64()?;
            let expires_s = reader.u32()?;
            forgotten.push((digest, expires_s, UNKNOWN_CART));
        }
        if reader.at != bytes.len() {
            for _ in 0..reader.varint()? {
                let digest = reader.u64()?;
                let expires_s = reader.u32()?;
                let key_hash = reader.u64()?;
                forgotten.push((digest, expires_s, key_hash));
            }
        }
        if reader.at != bytes.len() {
            return Err("bytes after the remembered tokens".into());
        }
        Ok((entries, forgotten))
    }

    /// Takes back the traces of forgotten tokens a snapshot kept, for a memory that started
    /// with the same hasher seed as the one that wrote them.
    pub fn restore_forgotten(&mut self, forgotten: &[Trace], now_s: u32) {
        for &(digest, expires_s, key_hash) in forgotten {
            if expires_s > now_s {
                self.forget(Kept {
                    digest,
                    expires_s,
                    key_hash,
                });
            }
        }
    }

    /// Its bounds.
    pub fn bounds(&self) -> TokenBounds {
        self.bounds
    }

    /// Uses `seed` for the digests of tokens, so traces kept in a snapshot match after a
    /// restart. Only on an empty memory.
    pub fn seed(&mut self, seed: [u64; 4]) {
        assert!(
            self.is_empty() && self.forgotten.is_empty(),
            "seeded before use"
        );
        let [a, b, c, d] = seed;
        self.hasher = ahash::RandomState::with_seeds(a ^ 0x746f6b656e, b, c, d);
    }
}

fn digest_with(hasher: &ahash::RandomState, key_hash: u64, kind: GuardKind, token: &[u8]) -> u64 {
    hasher.hash_one((key_hash, kind_code(kind), token))
}

fn write_varint(out: &mut [u8], mut value: u64) -> usize {
    let mut at = 0;
    while value >= 0x80 {
        out[at] = (value as u8) | 0x80;
        value >>= 7;
        at += 1;
    }
    out[at] = value as u8;
    at + 1
}

fn put_varint(out: &mut Vec<u8>, value: u64) {
    let mut bytes = [0; 10];
    let used = write_varint(&mut bytes, value);
    out.extend_from_slice(&bytes[..used]);
}

fn read_varint(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    let mut shift = 0;
    for (at, byte) in bytes.iter().enumerate() {
        value |= u64::from(byte & 0x7f) << shift;
        if *byte < 0x80 {
            return (value, at + 1);
        }
        shift += 7;
    }
    unreachable!("the arena holds whole varints it wrote")
}

/// Reads a snapshot's token block, refusing what is cut short.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], String> {
        let taken = self
            .bytes
            .get(self.at..self.at + count)
            .ok_or("the remembered tokens are cut short")?;
        self.at += count;
        Ok(taken)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("a varint runs on".into())
    }
}

#[cfg(test)]
mod tests;
