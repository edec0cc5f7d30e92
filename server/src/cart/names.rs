//! Interned product and variant ids: a flash sale puts one product in 100K carts and it is
//! stored once, as a small number. Id memory follows live data: ids that no cart and no
//! catalog entry holds any more are freed by a background sweep, so no count of distinct ids
//! over time fills the table (see docs/SECURITY.md, "Interned ids").
//!
//! A sweep (`Store::sweep_names`) walks every cart and catalog entry and marks the ids they
//! hold. An id is freed only when two walks in a row found it nowhere and nothing looked it up
//! (`get`, `intern`) or stored or read a cart holding it during a sweep since the epoch before
//! last: that is, once it has been unused for at least a whole sweep period
//! (`interned_ids_sweep_s`, 60 s by default, and sweeps never run closer together). Anything
//! that holds an id outside a cart or a catalog entry (a command running, an upstream request
//! with its timeout of seconds) holds it for less than that. A freed id is first taken out of
//! the lookup table and kept one more sweep before its number is given out again, so even a
//! holder past that rule reads the old name rather than another product's.
//!
//! Names are read through [`Names::read`], a read guard (recursive: a reader that reads again
//! never waits on a queued writer) under which [`NamesRead::resolve`]
//! borrows them; the sweep takes the write side in short batches.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::{RecursiveRwLock as RwLock, RecursiveRwLockReadGuard as RwLockReadGuard};
use protocol::CommandError;

use super::Cart;

/// An interned product or variant id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameId(NonZeroU32);

impl NameId {
    /// The id as a number (from 0), as packed carts store it.
    pub fn into_usize(self) -> usize {
        self.0.get() as usize - 1
    }

    /// The id a number names, if it can be one.
    pub fn try_from_usize(index: usize) -> Option<NameId> {
        let plus_one = u32::try_from(index.checked_add(1)?).ok()?;
        NonZeroU32::new(plus_one).map(NameId)
    }

    fn index(self) -> usize {
        self.into_usize()
    }
}

/// Slots the sweep's write side handles per lock hold.
const SWEEP_SLOTS_PER_LOCK: usize = 64 * 1024;

/// One id's slot.
#[derive(Debug, Default)]
struct Slot {
    /// The name; `None` once freed.
    name: Option<Box<str>>,
    /// In the lookup table (false: free, or taken out and waiting one sweep to be reused).
    published: bool,
    /// The last epoch something looked it up or stored it during a sweep.
    seen: AtomicU32,
}

#[derive(Debug, Default)]
struct Inner {
    /// Slot indexes of the published names, by the hash of the name.
    map: HashTable<u32>,
    slots: Vec<Slot>,
    /// Free slot indexes, lowest first, so live ids stay packed at the bottom and the top of
    /// the table can be given back.
    free: BinaryHeap<Reverse<u32>>,
    /// Taken out of the table by the last sweep; reusable after the next.
    buried: Vec<u32>,
    /// What the last walk marked, by slot index.
    marked_before: Vec<u64>,
}

/// What the sweeps did, for INFO.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepStats {
    /// Sweeps run.
    pub sweeps: u64,
    /// Ids freed.
    pub freed: u64,
    /// Ids the last sweep found in use.
    pub live_at_last: usize,
}

/// The server's interner.
#[derive(Debug)]
pub struct Names {
    inner: RwLock<Inner>,
    hasher: ahash::RandomState,
    /// Ids that can be given out at most.
    max: AtomicUsize,
    /// Bumped by each sweep.
    epoch: AtomicU32,
    sweeping: AtomicBool,
    /// Published ids.
    published: AtomicUsize,
    /// Set when an intern was refused for want of room: the next sweep should not wait.
    pressed: AtomicBool,
    sweeps: AtomicU64,
    freed: AtomicU64,
    live_at_last: AtomicUsize,
    /// Carts removed (deleted, expired, checked out), and how many had been at the last sweep.
    carts_removed: AtomicU64,
    removed_at_last: AtomicU64,
    /// Carts held at the last sweep.
    carts_at_last: AtomicUsize,
    /// Sweeps still to run to finish freeing ids the last one found unheld.
    follow_ups: AtomicU32,
    /// Ids the last sweep found unheld but could not free yet.
    pending_at_last: AtomicUsize,
    /// Sweep periods since the last sweep (counted by [`Names::wants_sweep`]).
    idle_periods: AtomicU32,
}

impl Default for Names {
    fn default() -> Self {
        Names::with_max(crate::limits::NAMES_MAX)
    }
}

/// A read guard over the names: [`NamesRead::resolve`] borrows from it.
pub struct NamesRead<'a> {
    inner: RwLockReadGuard<'a, Inner>,
}

impl NamesRead<'_> {
    /// The text of an id ("" for an id no longer known: a bug elsewhere, never a crash).
    pub fn resolve(&self, id: NameId) -> &str {
        self.inner
            .slots
            .get(id.index())
            .and_then(|slot| slot.name.as_deref())
            .unwrap_or("")
    }
}

/// An ongoing sweep's marks.
#[derive(Debug)]
pub struct Sweep {
    epoch: u32,
    marked: Vec<u64>,
}

impl Sweep {
    /// Marks an id a cart or catalog entry holds.
    pub fn mark(&mut self, id: NameId) {
        let index = id.index();
        if let Some(word) = self.marked.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }

    /// Marks the ids of a cart's lines, saved lines and unavailable lines.
    pub fn mark_cart(&mut self, cart: &Cart) {
        for_each_id(cart, |id| self.mark(id));
    }

    fn is_marked(&self, index: usize) -> bool {
        // An id given out after the sweep began is beyond the marks: it counts as marked.
        self.marked
            .get(index / 64)
            .is_none_or(|word| word & (1 << (index % 64)) != 0)
    }
}

fn is_marked_in(bits: &[u64], index: usize) -> bool {
    bits.get(index / 64)
        .is_some_and(|word| word & (1 << (index % 64)) != 0)
}

fn for_each_id(cart: &Cart, mut each: impl FnMut(NameId)) {
    let extra = cart.extra.as_deref();
    let lines = cart.lines.iter().chain(extra.into_iter().flat_map(|extra| {
        extra
            .unavailable
            .iter()
            .chain(extra.saved.iter().map(|saved| &saved.line))
    }));
    for line in lines {
        each(line.key.product);
        each(line.key.variant);
    }
}

impl Names {
    /// An empty interner that gives out at most `max` ids at a time.
    pub fn with_max(max: usize) -> Names {
        Names {
            inner: RwLock::default(),
            hasher: ahash::RandomState::new(),
            max: AtomicUsize::new(max),
            epoch: AtomicU32::new(2),
            sweeping: AtomicBool::new(false),
            published: AtomicUsize::new(0),
            pressed: AtomicBool::new(false),
            sweeps: AtomicU64::new(0),
            freed: AtomicU64::new(0),
            live_at_last: AtomicUsize::new(0),
            carts_removed: AtomicU64::new(0),
            removed_at_last: AtomicU64::new(0),
            carts_at_last: AtomicUsize::new(0),
            follow_ups: AtomicU32::new(0),
            pending_at_last: AtomicUsize::new(0),
            idle_periods: AtomicU32::new(0),
        }
    }

    /// Sets how many ids can be given out at most.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// How many ids can be given out at most.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    fn find(&self, inner: &Inner, name: &str) -> Option<u32> {
        inner
            .map
            .find(self.hash(name), |&index| {
                inner.slots[index as usize].name.as_deref() == Some(name)
            })
            .copied()
    }

    fn stamp_slot(&self, inner: &Inner, index: usize) {
        let epoch = self.epoch.load(Ordering::Relaxed);
        if let Some(slot) = inner.slots.get(index) {
            if slot.seen.load(Ordering::Relaxed) != epoch {
                slot.seen.store(epoch, Ordering::Relaxed);
            }
        }
    }

    /// The id of `name`, interning it if new. The parser guarantees UTF-8.
    pub fn intern(&self, name: &[u8]) -> Result<NameId, CommandError> {
        let text =
            std::str::from_utf8(name).map_err(|_| CommandError::err("ids must be valid UTF-8"))?;
        if let Some(id) = self.get_text(text) {
            return Ok(id);
        }
        let mut inner = self.inner.write();
        if let Some(index) = self.find(&inner, text) {
            self.stamp_slot(&inner, index as usize);
            return Ok(id_of(index));
        }
        let max = self.max();
        if self.published.load(Ordering::Relaxed) >= max {
            self.pressed.store(true, Ordering::Relaxed);
            return Err(CommandError::limit(format!(
                "the server holds {max} distinct product and variant ids in carts and the \
                 catalog (interned_ids_max); ids no cart or catalog entry holds are freed within \
                 a few sweeps"
            )));
        }
        let index = match inner.free.pop() {
            Some(Reverse(index)) => index,
            None => {
                let index = u32::try_from(inner.slots.len())
                    .map_err(|_| CommandError::limit("too many distinct ids"))?;
                inner.slots.push(Slot::default());
                index
            }
        };
        let epoch = self.epoch.load(Ordering::Relaxed);
        let slot = &mut inner.slots[index as usize];
        slot.name = Some(text.into());
        slot.published = true;
        *slot.seen.get_mut() = epoch;
        let hash = self.hash(text);
        let Inner { map, slots, .. } = &mut *inner;
        map.insert_unique(hash, index, |&other| {
            self.hash(slots[other as usize].name.as_deref().unwrap_or(""))
        });
        self.published.fetch_add(1, Ordering::Relaxed);
        Ok(id_of(index))
    }

    /// The id of `name` if it is interned (a lookup that must not grow the set).
    pub fn get(&self, name: &[u8]) -> Option<NameId> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|text| self.get_text(text))
    }

    fn get_text(&self, text: &str) -> Option<NameId> {
        let inner = self.inner.read();
        let index = self.find(&inner, text)?;
        self.stamp_slot(&inner, index as usize);
        Some(id_of(index))
    }

    /// A read guard to resolve ids with. Take it for a whole rendering, not per id; never
    /// intern while holding it.
    pub fn read(&self) -> NamesRead<'_> {
        NamesRead {
            inner: self.inner.read(),
        }
    }

    /// The text of an id, copied (for callers that keep it).
    pub fn resolve_owned(&self, id: NameId) -> Box<str> {
        self.read().resolve(id).into()
    }

    /// How many ids are interned (published).
    pub fn len(&self) -> usize {
        self.published.load(Ordering::Relaxed)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the sweeps did.
    pub fn sweep_stats(&self) -> SweepStats {
        SweepStats {
            sweeps: self.sweeps.load(Ordering::Relaxed),
            freed: self.freed.load(Ordering::Relaxed),
            live_at_last: self.live_at_last.load(Ordering::Relaxed),
        }
    }

    /// While a sweep runs, marks the ids of a cart being stored or read as seen now (a cart
    /// moved behind the walk, as MERGE moves lines, is not missed). Free otherwise.
    pub fn stamp_cart(&self, cart: &Cart) {
        if !self.sweeping.load(Ordering::Relaxed) {
            return;
        }
        let inner = self.inner.read();
        for_each_id(cart, |id| self.stamp_slot(&inner, id.index()));
    }

    /// Marks ids held outside carts (a catalog entry being written) as seen now.
    pub fn stamp(&self, ids: &[NameId]) {
        let inner = self.inner.read();
        for id in ids {
            self.stamp_slot(&inner, id.index());
        }
    }

    /// Counts a cart removed from the store (its ids may be held by nothing now).
    pub fn cart_removed(&self) {
        self.carts_removed.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a sweep is worth running, asked once per sweep period, the store holding
    /// `carts` carts: ids grew by a quarter (at least 1,000) since the last sweep found what is
    /// live, a quarter of the carts there were then (at least 1,000) went since, any cart went
    /// and ten periods passed, an intern was refused for want of room, or the last sweeps found
    /// ids nothing held and need to run again to free them (three times at most, as ids still
    /// looked up stay).
    pub fn wants_sweep(&self, carts: usize) -> bool {
        let idle = self.idle_periods.fetch_add(1, Ordering::Relaxed) + 1;
        let live = self.live_at_last.load(Ordering::Relaxed);
        let carts_then = self.carts_at_last.load(Ordering::Relaxed).max(carts);
        let removed = self.carts_removed.load(Ordering::Relaxed)
            - self.removed_at_last.load(Ordering::Relaxed);
        self.pressed.load(Ordering::Relaxed)
            || self.len() >= live + (live / 4).max(1_000)
            || removed >= (carts_then as u64 / 4).max(1_000)
            || (removed > 0 && idle >= 10)
            || self.follow_ups.load(Ordering::Relaxed) > 0
    }

    /// Starts a sweep: a new epoch, and cart reads and writes stamp what they touch until it
    /// finishes. The caller marks every id carts and catalog entries hold, then calls
    /// [`Names::finish_sweep`].
    pub fn begin_sweep(&self, carts: usize) -> Sweep {
        self.idle_periods.store(0, Ordering::Relaxed);
        self.carts_at_last.store(carts, Ordering::Relaxed);
        self.removed_at_last.store(
            self.carts_removed.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.sweeping.store(true, Ordering::SeqCst);
        self.pressed.store(false, Ordering::Relaxed);
        let slots = self.inner.read().slots.len();
        Sweep {
            epoch,
            marked: vec![0; slots.div_ceil(64)],
        }
    }

    /// Ends a sweep: frees what the last one took out, takes out what neither walk found and
    /// nothing used since the epoch before last, and gives back the top of the table.
    /// Returns how many ids it freed.
    pub fn finish_sweep(&self, sweep: Sweep) -> usize {
        let freed = self.free_buried();
        let (buried, unheld) = self.bury_unused(&sweep);
        // Ids nothing held but still too recent: sweep again (three more times whenever
        // their count changes, so ids kept alive by lookups alone stop the follow-ups); ids
        // buried now: once more, to free them.
        let pending = unheld - buried.len();
        let changed = pending != self.pending_at_last.swap(pending, Ordering::Relaxed);
        let follow_ups = self.follow_ups.load(Ordering::Relaxed);
        let mut next = match (pending > 0, changed) {
            (false, _) => 0,
            (true, true) => 3,
            (true, false) => follow_ups.saturating_sub(1),
        };
        if !buried.is_empty() {
            next = next.max(1); // what it buried is freed by the next one
        }
        self.follow_ups.store(next, Ordering::Relaxed);
        let mut inner = self.inner.write();
        inner.buried = buried;
        self.give_back_top(&mut inner);
        inner.marked_before = sweep.marked;
        self.sweeping.store(false, Ordering::SeqCst);
        self.sweeps.fetch_add(1, Ordering::Relaxed);
        self.freed.fetch_add(freed as u64, Ordering::Relaxed);
        self.live_at_last.store(self.len(), Ordering::Relaxed);
        freed
    }

    /// Frees the names the last sweep took out; their slots can be given out again.
    fn free_buried(&self) -> usize {
        let mut inner = self.inner.write();
        let buried = std::mem::take(&mut inner.buried);
        for &index in &buried {
            inner.slots[index as usize].name = None;
            inner.free.push(Reverse(index));
        }
        buried.len()
    }

    /// Takes out of the lookup table, a batch of slots per write lock, the ids neither walk
    /// marked and nothing used since the epoch before last. Returns them and how many ids the
    /// walk found unheld.
    fn bury_unused(&self, sweep: &Sweep) -> (Vec<u32>, usize) {
        let mut start = 0;
        let mut buried = Vec::new();
        let mut unheld = 0;
        loop {
            let mut inner = self.inner.write();
            let end = (start + SWEEP_SLOTS_PER_LOCK).min(inner.slots.len());
            for index in start..end {
                let slot = &inner.slots[index];
                if !slot.published || sweep.is_marked(index) {
                    continue;
                }
                unheld += 1;
                let unused = !is_marked_in(&inner.marked_before, index)
                    && slot.seen.load(Ordering::Relaxed) + 2 <= sweep.epoch;
                if !unused {
                    continue;
                }
                let hash = self.hash(slot.name.as_deref().unwrap_or(""));
                let index = index as u32;
                if let Ok(entry) = inner.map.find_entry(hash, |&other| other == index) {
                    entry.remove();
                }
                inner.slots[index as usize].published = false;
                self.published.fetch_sub(1, Ordering::Relaxed);
                buried.push(index);
            }
            start = end;
            if end >= inner.slots.len() {
                return (buried, unheld);
            }
        }
    }

    /// Drops the free slots at the top of the table and shrinks what is mostly empty.
    fn give_back_top(&self, inner: &mut Inner) {
        while inner
            .slots
            .last()
            .is_some_and(|slot| slot.name.is_none() && !slot.published)
        {
            inner.slots.pop();
        }
        let len = inner.slots.len() as u32;
        if inner.free.iter().any(|&Reverse(index)| index >= len) {
            let kept: BinaryHeap<Reverse<u32>> = inner
                .free
                .drain()
                .filter(|&Reverse(index)| index < len)
                .collect();
            inner.free = kept;
        }
        if inner.slots.capacity() > 2 * inner.slots.len() + 1024 {
            inner.slots.shrink_to_fit();
            inner.free.shrink_to_fit();
        }
        if inner.map.capacity() > 2 * inner.map.len() + 1024 {
            let Inner { map, slots, .. } = inner;
            map.shrink_to_fit(|&index| {
                self.hash(slots[index as usize].name.as_deref().unwrap_or(""))
            });
        }
    }
}

fn id_of(index: u32) -> NameId {
    NameId::try_from_usize(index as usize).expect("slot indexes fit an id")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids nothing marks are freed after two sweeps that found them nowhere and one more that
    /// buries them; a marked or recently looked-up id stays; the table's top is given back.
    #[test]
    fn unused_ids_are_freed_and_used_ones_stay() {
        let names = Names::with_max(10);
        let kept = names.intern(b"kept").unwrap();
        let looked_up = names.intern(b"looked-up").unwrap();
        let gone: Vec<NameId> = (0..8)
            .map(|index| names.intern(format!("gone-{index}").as_bytes()).unwrap())
            .collect();
        assert!(names.intern(b"one-too-many").is_err(), "bounded");
        for round in 0..4 {
            let mut sweep = names.begin_sweep(0);
            sweep.mark(kept);
            if round < 3 {
                assert_eq!(names.get(b"looked-up"), Some(looked_up));
            }
            names.finish_sweep(sweep);
        }
        assert_eq!(names.get(b"kept"), Some(kept));
        assert_eq!(names.read().resolve(kept), "kept");
        assert_eq!(names.get(b"gone-3"), None);
        assert_eq!(
            names.get(b"looked-up"),
            Some(looked_up),
            "seen in the last rounds"
        );
        assert_eq!(names.len(), 2);
        assert_eq!(names.sweep_stats().freed, 8);
        let new = names.intern(b"new").unwrap();
        assert!(
            new.into_usize() < gone[7].into_usize(),
            "low ids are reused first"
        );
        assert_eq!(names.read().resolve(new), "new");
    }

    /// A stale id whose slot was taken out still resolves to its own name until it is freed.
    #[test]
    fn a_buried_id_keeps_its_name_one_sweep() {
        let names = Names::with_max(10);
        let id = names.intern(b"x").unwrap();
        for _ in 0..2 {
            let sweep = names.begin_sweep(0);
            names.finish_sweep(sweep);
        }
        assert_eq!(names.get(b"x"), None, "taken out of the table");
        assert_eq!(names.read().resolve(id), "x", "still its own name");
        let sweep = names.begin_sweep(0);
        names.finish_sweep(sweep);
        assert_eq!(names.read().resolve(id), "");
    }

    /// Follow-up sweeps run until ids their carts let go of are freed, whatever follow-ups
    /// were left from before; ids kept alive by lookups alone stop them after three.
    #[test]
    fn follow_ups_run_until_let_go_ids_are_freed() {
        let names = Names::with_max(1_000);
        let looked_up = names.intern(b"looked-up").unwrap();
        let held: Vec<NameId> = (0..100)
            .map(|index| names.intern(format!("held-{index}").as_bytes()).unwrap())
            .collect();
        let sweep_holding = |hold: bool| {
            let mut sweep = names.begin_sweep(0);
            if hold {
                held.iter().for_each(|&id| sweep.mark(id));
            }
            assert_eq!(names.get(b"looked-up"), Some(looked_up));
            names.finish_sweep(sweep);
        };
        for _ in 0..2 {
            sweep_holding(true);
        }
        assert!(names.wants_sweep(0), "the looked-up id is pending");
        sweep_holding(true); // follow-ups now left: fewer than three
        sweep_holding(false); // the carts went
        let mut sweeps = 0;
        while names.wants_sweep(0) && sweeps < 10 {
            sweep_holding(false);
            sweeps += 1;
        }
        assert_eq!(names.len(), 1, "only the looked-up id stays");
        assert!(!names.wants_sweep(0), "lookups alone stop the follow-ups");
    }
}
