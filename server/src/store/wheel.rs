//! A shard's hashed timing wheel (1 s ticks). Each cart has exactly one entry, stamped in the
//! cart as `wheel_tick`: renewing a TTL only moves the cart's deadline, and when the entry fires
//! the cart is expired or its entry re-armed for the new deadline (lazy re-arming keeps every
//! access O(1)). Entries of deleted carts are skipped when they fire: a cart whose
//! `wheel_tick` is not the firing tick owns a different entry.

use crate::limits::WHEEL_SLOTS;

const SLOT_MASK: u32 = WHEEL_SLOTS as u32 - 1;

/// The wheel: slot `t % WHEEL_SLOTS` holds the key hashes whose entry fires at tick `t`.
#[derive(Debug)]
pub struct Wheel {
    slots: Box<[Vec<u64>]>,
    /// Every tick up to this one has been processed.
    tick_done: u32,
    entries: usize,
}

/// The tick (second) a time in milliseconds falls in.
pub fn tick_of(time_ms: u64) -> u32 {
    u32::try_from(time_ms / 1000).unwrap_or(u32::MAX)
}

/// The first tick at or after a deadline.
pub fn deadline_tick(deadline_ms: u64) -> u32 {
    u32::try_from(deadline_ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

impl Wheel {
    /// A wheel whose past ends at `now_tick`.
    pub fn new(now_tick: u32) -> Wheel {
        Wheel {
            slots: vec![Vec::new(); WHEEL_SLOTS].into_boxed_slice(),
            tick_done: now_tick,
            entries: 0,
        }
    }

    /// Adds an entry for `hash` firing at `tick`, pulled inside the wheel's window: a deadline
    /// beyond it fires early and is re-armed. Returns the tick the entry fires at.
    pub fn arm(&mut self, hash: u64, tick: u32) -> u32 {
        let earliest = self.tick_done + 1;
        let latest = self.tick_done + SLOT_MASK;
        let tick = tick.clamp(earliest, latest);
        self.slots[(tick & SLOT_MASK) as usize].push(hash);
        self.entries += 1;
        tick
    }

    /// The next tick to process, if it is not after `now_tick`.
    pub fn next_due(&self, now_tick: u32) -> Option<u32> {
        (self.tick_done < now_tick).then_some(self.tick_done + 1)
    }

    /// Takes up to `budget` entries of the slot of `tick` (the next due tick). Returns them and
    /// whether the slot is now empty, in which case the tick is done.
    pub fn take_due(&mut self, tick: u32, budget: usize) -> (Vec<u64>, bool) {
        assert_eq!(tick, self.tick_done + 1, "ticks are processed in order");
        let slot = &mut self.slots[(tick & SLOT_MASK) as usize];
        let taken: Vec<u64> = if slot.len() <= budget {
            std::mem::take(slot)
        } else {
            slot.split_off(slot.len() - budget)
        };
        self.entries -= taken.len();
        let finished = slot.is_empty();
        if finished {
            self.tick_done = tick;
        }
        (taken, finished)
    }

    /// Entries in the wheel.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fire_at_their_tick_and_far_deadlines_are_pulled_in() {
        let mut wheel = Wheel::new(100);
        assert_eq!(wheel.arm(7, 103), 103);
        assert_eq!(wheel.arm(8, 100), 101);
        assert_eq!(wheel.arm(9, 100 + 10 * WHEEL_SLOTS as u32), 100 + SLOT_MASK);
        assert_eq!(wheel.next_due(100), None);
        assert_eq!(wheel.take_due(101, 10), (vec![8], true));
        assert_eq!(wheel.take_due(102, 10), (vec![], true));
        assert_eq!(wheel.take_due(103, 10), (vec![7], true));
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn a_full_slot_is_taken_in_chunks() {
        let mut wheel = Wheel::new(0);
        for hash in 0..5 {
            wheel.arm(hash, 1);
        }
        let (first, finished) = wheel.take_due(1, 3);
        assert_eq!((first.len(), finished), (3, false));
        assert_eq!(wheel.next_due(1), Some(1));
        let (rest, finished) = wheel.take_due(1, 3);
        assert_eq!((rest.len(), finished), (2, true));
        assert_eq!(wheel.next_due(1), None);
    }
}
