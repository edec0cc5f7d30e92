//! The sweep that frees interned ids nothing holds (see `cart::names`): it walks every cart
//! (`Store::walk_shard`, as a snapshot does) and every catalog entry, marking the ids they
//! hold.

use std::time::Instant;

use tracing::{debug, info};

use super::Store;

/// What one sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamesSwept {
    /// Carts walked.
    pub carts: usize,
    /// Ids freed (taken out by the sweep before).
    pub freed: usize,
    /// Ids in use after it.
    pub live: usize,
}

impl Store {
    /// Whether a sweep of the interned ids is worth running now ([`Names::wants_sweep`]).
    ///
    /// [`Names::wants_sweep`]: crate::cart::Names::wants_sweep
    pub fn wants_names_sweep(&self) -> bool {
        self.names.wants_sweep(self.len())
    }

    /// Runs one sweep of the interned ids.
    pub fn sweep_names(&self) -> NamesSwept {
        let started = Instant::now();
        let mut sweep = self.names.begin_sweep(self.len());
        let mut carts = 0;
        for index in 0..self.shards.len() {
            let walked: Result<(), std::convert::Infallible> = self.walk_shard(index, |entry| {
                sweep.mark_cart(&entry.cart());
                carts += 1;
                Ok(())
            });
            let Ok(()) = walked;
        }
        self.catalog.for_each(|key, _| {
            sweep.mark(key.product);
            sweep.mark(key.variant);
        });
        let freed = self.names.finish_sweep(sweep);
        let live = self.names.len();
        let elapsed_ms = started.elapsed().as_millis();
        if freed > 0 {
            info!(
                freed,
                live, carts, elapsed_ms, "freed interned ids no cart or catalog entry holds"
            );
        } else {
            debug!(live, carts, elapsed_ms, "swept interned ids");
        }
        NamesSwept { carts, freed, live }
    }
}
