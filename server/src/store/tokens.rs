//! Remembered request tokens, one memory per shard: a mutation's `IDEMPOTENCY token` and a
//! completed checkout's token, each keyed by the cart's key hash, its kind and the token.
//!
//! A token is remembered with what its change left, not with the reply: the request's
//! fingerprint (to tell a retry from another request reusing the token) and the cart version
//! the change produced. A retry then replays from the cart as it is (its version, or its
//! view). That keeps each token to a few dozen bytes whatever the cart's size: entries are
//! packed one after another into fixed-size chunks (`[key_hash u64 | fingerprint u64 |
//! expires_s u32 | version varint | kind u8 | token_len u8 | token]`), in arrival order, and
//! an index of their positions finds them. The oldest go first, by age (`idempotency_ttl_s`)
//! and by count (the shard's share of `max_idempotency_keys`).
//!
//! A token pushed out by count before its age keeps a 12-byte trace (a digest and its end) in
//! a bounded set of forgotten tokens, so a retry of it is refused (`Lookup::Forgotten`) rather
//! than applied a second time. Only a token pushed out of that set too, which takes as many
//! more evictions as `max_idempotency_keys` within the TTL, is not known any more.
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

/// Longest entry in the arena.
const ENTRY_BYTES_MAX: usize = 8 + 8 + 4 + 10 + 1 + 1 + TOKEN_BYTES_MAX;

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

/// The trace of a token pushed out early: its digest and when its age would have run out.
pub type Trace = (u64, u32);

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

/// One shard's remembered tokens.
#[derive(Debug)]
pub struct TokenMemory {
    arena: Arena,
    /// Positions of the live entries, by their digest.
    index: HashTable<u64>,
    hasher: ahash::RandomState,
    entries_max: usize,
    /// Digests of tokens pushed out by count before their age, with their end.
    forgotten: HashTable<(u64, u32)>,
    forgotten_order: VecDeque<u64>,
    /// Tokens pushed out early because the memory was full.
    pub evicted: u64,
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
    /// index no longer lists them (one whose age ran out and was remembered anew).
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
}

/// An entry read out of the arena.
struct Slot<'a> {
    key_hash: u64,
    fingerprint: u64,
    expires_s: u32,
    version: u64,
    kind: GuardKind,
    token: &'a [u8],
    bytes: usize,
}

impl<'a> Slot<'a> {
    fn read(bytes: &'a [u8]) -> Slot<'a> {
        let word = |from: usize| u64::from_le_bytes(bytes[from..from + 8].try_into().expect("8"));
        let expires_s = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let (version, used) = read_varint(&bytes[20..]);
        let at = 20 + used;
        let token_len = bytes[at + 1] as usize;
        Slot {
            key_hash: word(0),
            fingerprint: word(8),
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
    /// An empty memory holding at most `entries_max` tokens.
    pub fn new(entries_max: usize) -> TokenMemory {
        TokenMemory {
            arena: Arena::default(),
            index: HashTable::new(),
            hasher: ahash::RandomState::new(),
            entries_max,
            forgotten: HashTable::new(),
            forgotten_order: VecDeque::new(),
            evicted: 0,
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
            .find(digest, |&(known, _)| known == digest)
            .is_some_and(|&(_, expires_s)| expires_s > now_s)
    }

    /// Remembers a token unless it is remembered already (replaying the log and loading a
    /// snapshot may both hand it over).
    pub fn remember(&mut self, remembered: &Remembered, now_s: u32) {
        assert!(
            remembered.token.len() <= TOKEN_BYTES_MAX,
            "tokens are bounded"
        );
        self.prune(now_s);
        if self.entries_max == 0 || remembered.expires_s <= now_s {
            return;
        }
        let (key_hash, kind, token) = (remembered.key_hash, remembered.kind, &remembered.token);
        if let Some(at) = self.find(key_hash, kind, token) {
            if self.slot(at).expires_s > now_s {
                return;
            }
            // Its age ran out behind a younger head: it stops counting now; its bytes go when
            // the head passes them.
            let digest = self.digest(key_hash, kind, token);
            if let Ok(found) = self.index.find_entry(digest, |&other| other == at) {
                found.remove();
            }
        }
        while self.index.len() >= self.entries_max {
            self.drop_head(true, now_s);
        }
        let mut entry = [0u8; ENTRY_BYTES_MAX];
        entry[..8].copy_from_slice(&key_hash.to_le_bytes());
        entry[8..16].copy_from_slice(&remembered.fingerprint.to_le_bytes());
        entry[16..20].copy_from_slice(&remembered.expires_s.to_le_bytes());
        let mut length = 20 + write_varint(&mut entry[20..], remembered.version);
        entry[length] = kind_code(kind);
        entry[length + 1] = token.len() as u8;
        entry[length + 2..length + 2 + token.len()].copy_from_slice(token);
        length += 2 + token.len();
        let at = self.arena.push(&entry[..length]);
        let digest = self.digest(key_hash, kind, token);
        let (hasher, arena) = (&self.hasher, &self.arena);
        self.index.insert_unique(digest, at, |&other| {
            let slot = Slot::read(arena.bytes_at(other));
            digest_with(hasher, slot.key_hash, slot.kind, slot.token)
        });
    }

    /// Drops the tokens whose age ran out, oldest first.
    fn prune(&mut self, now_s: u32) {
        while !self.arena.is_empty() {
            if self.slot(self.arena.head).expires_s > now_s {
                break;
            }
            self.drop_head(false, now_s);
        }
        self.prune_forgotten(now_s);
    }

    /// Removes the oldest entry; `early`: pushed out by count, so its trace is kept.
    fn drop_head(&mut self, early: bool, now_s: u32) {
        if self.arena.is_empty() {
            return;
        }
        let at = self.arena.head;
        let slot = self.slot(at);
        let (expires_s, bytes) = (slot.expires_s, slot.bytes);
        let digest = self.digest(slot.key_hash, slot.kind, slot.token);
        if let Ok(found) = self.index.find_entry(digest, |&other| other == at) {
            found.remove();
            if early && expires_s > now_s {
                self.evicted += 1;
                self.forget(digest, expires_s);
            }
        }
        self.arena.advance_head(bytes);
    }

    fn forget(&mut self, digest: u64, expires_s: u32) {
        while self.forgotten.len() >= self.entries_max.max(1) {
            let Some(oldest) = self.forgotten_order.pop_front() else {
                break;
            };
            if let Ok(entry) = self
                .forgotten
                .find_entry(oldest, |&(known, _)| known == oldest)
            {
                entry.remove();
            }
        }
        self.forgotten
            .insert_unique(digest, (digest, expires_s), |&(known, _)| known);
        self.forgotten_order.push_back(digest);
    }

    fn prune_forgotten(&mut self, now_s: u32) {
        // Traces end in (about) the order they were made: drop the ended ones from the front.
        while let Some(&oldest) = self.forgotten_order.front() {
            let ended = self
                .forgotten
                .find(oldest, |&(known, _)| known == oldest)
                .is_none_or(|&(_, expires_s)| expires_s <= now_s);
            if !ended {
                break;
            }
            self.forgotten_order.pop_front();
            if let Ok(entry) = self
                .forgotten
                .find_entry(oldest, |&(known, _)| known == oldest)
            {
                entry.remove();
            }
        }
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

    /// Bytes the remembered tokens take: their arena chunks and index. The traces of forgotten
    /// ones are counted apart ([`TokenMemory::forgotten_bytes`]).
    pub fn bytes(&self) -> usize {
        self.arena.chunks.len() * CHUNK_BYTES
            + self.index.capacity() * (std::mem::size_of::<u64>() + 1)
    }

    /// Bytes the traces of forgotten tokens take.
    pub fn forgotten_bytes(&self) -> usize {
        self.forgotten.capacity() * (std::mem::size_of::<(u64, u32)>() + 1)
            + self.forgotten_order.capacity() * std::mem::size_of::<u64>()
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
            let digest = self.digest(slot.key_hash, slot.kind, slot.token);
            if self.index.find(digest, |&other| other == at).is_some() {
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

    /// The memory as bytes for a snapshot: every live token, then the traces of forgotten ones.
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
        let traces: Vec<(u64, u32)> = self
            .forgotten_order
            .iter()
            .filter_map(|digest| {
                self.forgotten
                    .find(*digest, |&(known, _)| known == *digest)
                    .copied()
            })
            .collect();
        put_varint(&mut out, traces.len() as u64);
        for (digest, expires_s) in traces {
            out.extend_from_slice(&digest.to_le_bytes());
            out.extend_from_slice(&expires_s.to_le_bytes());
        }
        out
    }

    /// Reads what [`TokenMemory::encode`] wrote: the tokens and the traces of forgotten ones.
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
        let forgotten_count = reader.varint()?;
        let mut forgotten = Vec::new();
        for _ in 0..forgotten_count {
            let digest = reader.u64()?;
            let expires_s = reader.u32()?;
            forgotten.push((digest, expires_s));
        }
        if reader.at != bytes.len() {
            return Err("bytes after the remembered tokens".into());
        }
        Ok((entries, forgotten))
    }

    /// Takes back the traces of forgotten tokens a snapshot kept, for a memory that started
    /// with the same hasher seed as the one that wrote them.
    pub fn restore_forgotten(&mut self, forgotten: &[Trace], now_s: u32) {
        for &(digest, expires_s) in forgotten {
            if expires_s > now_s && !self.was_forgotten(digest, now_s) {
                self.forget(digest, expires_s);
            }
        }
    }

    /// How many tokens it holds at most.
    pub fn capacity(&self) -> usize {
        self.entries_max
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
