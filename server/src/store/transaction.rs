//! Transactions (MULTI/EXEC): the queued commands run with nothing else running (the
//! store's transaction lock held exclusively; every command and background change takes it
//! shared), and every change they log goes into one record appended at the end, so recovery,
//! the PostgreSQL sink and later replicas apply all of the transaction or none of it.

use std::cell::RefCell;

use crossbeam_utils::sync::ShardedLockReadGuard;
use persistence::{Change, ChangeRef, Lsn};

use super::Store;

thread_local! {
    /// The changes of the transaction this thread runs, not yet appended.
    static PENDING: RefCell<Option<Vec<Change>>> = const { RefCell::new(None) };
}

/// Takes the pending changes away when the transaction ends, even by a panic.
struct Pending;

impl Pending {
    fn begin() -> Pending {
        PENDING.with_borrow_mut(|pending| *pending = Some(Vec::new()));
        Pending
    }

    fn take(&self) -> Vec<Change> {
        PENDING.with_borrow_mut(|pending| pending.replace(Vec::new()).unwrap_or_default())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        PENDING.with_borrow_mut(|pending| *pending = None);
    }
}

/// Whether this thread is inside [`Store::transaction`].
pub(super) fn in_transaction() -> bool {
    PENDING.with_borrow(Option::is_some)
}

/// Keeps `changes` for the transaction's record instead of appending them now.
pub(super) fn keep(changes: &[ChangeRef<'_>]) {
    PENDING.with_borrow_mut(|pending| {
        let pending = pending.as_mut().expect("only inside a transaction");
        for change in changes {
            // A ChangeRef encodes exactly as the Change it reads back as.
            let bytes = postcard::to_allocvec(change).expect("encoding into a Vec cannot fail");
            pending.push(postcard::from_bytes(&bytes).expect("a ChangeRef reads back as a Change"));
        }
    });
}

impl Store {
    /// The transaction lock, shared: held around every command and background change.
    pub fn shared(&self) -> ShardedLockReadGuard<'_, ()> {
        self.transactions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `run` alone (no other command or background change meanwhile); every change it
    /// logs is appended as one record when it returns. The changes it makes to memory are
    /// made as it goes, seen by nobody else until it returns.
    pub fn transaction<R>(&self, run: impl FnOnce() -> R) -> R {
        let _alone = self
            .transactions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pending = Pending::begin();
        let result = run();
        let changes = pending.take();
        drop(pending);
        if !changes.is_empty() {
            let refs: Vec<ChangeRef<'_>> = changes.iter().map(Change::as_ref).collect();
            let predicted = self.transaction_lsn();
            let lsn = self.append(&refs);
            // Nothing else appends while the lock is held exclusively, so the LSN the
            // changed carts were stamped with is the record's.
            assert_eq!(lsn, predicted, "a record was appended during a transaction");
        }
        result
    }

    /// What a WATCHed cart is now ([`crate::transaction::Watched`]): absent once expired.
    pub fn watch_state(&self, key: &[u8], now_ms: u64) -> crate::transaction::Watched {
        let at = self.locate(key);
        let shard = self.shards[at.shard].lock();
        let cart = shard.find(at.hash, key)?;
        (cart.expires_at_ms > now_ms).then_some((cart.lsn, cart.version, cart.created_at_ms))
    }

    /// The LSN the running transaction's record will have (0 without a log).
    pub(super) fn transaction_lsn(&self) -> Lsn {
        self.wal.get().map_or(0, |wal| wal.last_lsn() + 1)
    }
}
