//! CLIENT PAUSE: one server-wide deadline. A connection checks it before it runs each request
//! (one relaxed load while no pause is on) and, while it holds, waits without blocking a
//! thread: on a timer for the deadline and on a notification for UNPAUSE or a longer pause.
//! `WRITE` holds only requests that may change data (and EXEC of a transaction that queued
//! one); `ALL` holds every request, the pausing client's own included, as in Redis. Expiry
//! waits too (the ticker checks [`ClientPause::is_active`]).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// No pause.
const MODE_NONE: u8 = 0;
/// Requests that may change data wait.
const MODE_WRITE: u8 = 1;
/// Every request waits.
const MODE_ALL: u8 = 2;

/// The server's pause.
#[derive(Debug, Default)]
pub struct ClientPause {
    /// `MODE_*`, read first on every request: `MODE_NONE` needs nothing more.
    mode: AtomicU8,
    /// When the pause ends, while `mode` is not `MODE_NONE`.
    until: Mutex<Option<Instant>>,
    /// Wakes the waiting connections: the pause ended early or changed.
    changed: Notify,
}

impl ClientPause {
    /// CLIENT PAUSE: pauses for `duration` (writes only, or everything). A pause already on
    /// keeps the later deadline and the stricter mode, as Redis's does.
    pub fn pause(&self, duration: Duration, writes_only: bool) {
        let mut until = self.until.lock();
        let end = Instant::now() + duration;
        let active = self.mode.load(Ordering::Acquire) != MODE_NONE;
        let mode = if writes_only { MODE_WRITE } else { MODE_ALL };
        let (end, mode) = match *until {
            Some(current) if active => (
                current.max(end),
                self.mode.load(Ordering::Acquire).max(mode),
            ),
            _ => (end, mode),
        };
        *until = Some(end);
        self.mode.store(mode, Ordering::Release);
        drop(until);
        self.changed.notify_waiters();
    }

    /// CLIENT UNPAUSE: every waiting request goes on.
    pub fn unpause(&self) {
        let mut until = self.until.lock();
        *until = None;
        self.mode.store(MODE_NONE, Ordering::Release);
        drop(until);
        self.changed.notify_waiters();
    }

    /// Whether a pause is on now (of either mode).
    pub fn is_active(&self) -> bool {
        self.holds(true).is_some()
    }

    /// When a request must wait until, if it must: `may_write` for one that may change data.
    /// A pause past its deadline is cleared here.
    pub fn holds(&self, may_write: bool) -> Option<Instant> {
        let mode = self.mode.load(Ordering::Acquire);
        if mode == MODE_NONE || (mode == MODE_WRITE && !may_write) {
            return None;
        }
        let mut until = self.until.lock();
        match *until {
            Some(end) if end > Instant::now() => Some(end),
            _ => {
                *until = None;
                self.mode.store(MODE_NONE, Ordering::Release);
                None
            }
        }
    }

    /// Waits while a request of that kind is held: until the deadline, or until the pause
    /// changes (then the caller checks again).
    pub async fn wait(&self, may_write: bool) {
        let changed = self.changed.notified();
        tokio::pin!(changed);
        // Registered before the check, so an UNPAUSE between the two is not missed.
        changed.as_mut().enable();
        let Some(end) = self.holds(may_write) else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep_until(end.into()) => {}
            () = changed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_pauses_hold_writes_only_and_end_at_their_deadline() {
        let pause = ClientPause::default();
        assert!(pause.holds(true).is_none());
        pause.pause(Duration::from_secs(60), true);
        assert!(pause.holds(true).is_some());
        assert!(pause.holds(false).is_none());
        pause.pause(Duration::from_millis(1), false);
        assert!(pause.holds(false).is_some(), "the stricter mode stays");
        pause.unpause();
        assert!(pause.holds(true).is_none());
        pause.pause(Duration::ZERO, false);
        assert!(!pause.is_active(), "a pause past its deadline is over");
    }
}
