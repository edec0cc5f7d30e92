//! Tasks waiting for the log to reach an LSN, woken only once it has: the writer publishes
//! a new position after every write, and waking every waiting connection each time (as a
//! watch channel does) made most of the wake-ups spurious once replies wait for the write.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::record::Lsn;

/// Wakers by the LSN they wait for (and a registration id, since many wait for one LSN).
#[derive(Default)]
pub(super) struct Waiters {
    waiting: Mutex<BTreeMap<(Lsn, u64), Waker>>,
    next_id: AtomicU64,
}

impl Waiters {
    /// Wakes every waiter for an LSN up to `reached`. The caller has already published
    /// `reached` where [`Waiters::wait`]'s `reached` reads it.
    pub(super) fn wake_up_to(&self, reached: Lsn) {
        let due = {
            let mut waiting = self.waiting.lock();
            let later = waiting.split_off(&(reached + 1, 0));
            std::mem::replace(&mut *waiting, later)
        };
        for waker in due.into_values() {
            waker.wake();
        }
    }

    /// Waiting tasks, for tests.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.waiting.lock().len()
    }

    /// Resolves once `reached()` is at least `lsn`; `reached` reads the position that
    /// [`Waiters::wake_up_to`] is called after.
    pub(super) fn wait<'a, F: Fn() -> Lsn + Unpin>(
        &'a self,
        lsn: Lsn,
        reached: F,
    ) -> WaitFor<'a, F> {
        WaitFor {
            waiters: self,
            lsn,
            reached,
            id: None,
        }
    }
}

/// The future of [`Waiters::wait`]; dropping it unregisters it.
pub(super) struct WaitFor<'a, F> {
    waiters: &'a Waiters,
    lsn: Lsn,
    reached: F,
    id: Option<u64>,
}

impl<F: Fn() -> Lsn + Unpin> Future for WaitFor<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if (this.reached)() >= this.lsn {
            return Poll::Ready(());
        }
        let mut waiting = this.waiters.waiting.lock();
        // Checked again under the lock: a writer that published after the first check wakes
        // only what it finds registered once it takes the lock, which is after this.
        if (this.reached)() >= this.lsn {
            if let Some(id) = this.id.take() {
                waiting.remove(&(this.lsn, id));
            }
            return Poll::Ready(());
        }
        let id = *this
            .id
            .get_or_insert_with(|| this.waiters.next_id.fetch_add(1, Ordering::Relaxed));
        match waiting.get_mut(&(this.lsn, id)) {
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                waiting.insert((this.lsn, id), cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl<F> Drop for WaitFor<'_, F> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.waiters.waiting.lock().remove(&(self.lsn, id));
        }
    }
}
