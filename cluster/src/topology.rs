//! The layout in force on a node, which changes at run time (a failover gives a shard group
//! another primary): readers take the current one without locking, a change replaces it
//! whole.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::layout::Layout;

/// The current layout.
pub struct Topology {
    current: ArcSwap<Layout>,
    /// Held by [`Topology::update`]: changes made from different tasks (a failover, a slot
    /// move) each start from the other's result.
    writer: std::sync::Mutex<()>,
}

impl Topology {
    /// Starts from `layout` (the configured one).
    pub fn new(layout: Layout) -> Topology {
        Topology {
            current: ArcSwap::from_pointee(layout),
            writer: std::sync::Mutex::new(()),
        }
    }

    /// The layout in force now (cheap: no lock, no allocation).
    pub fn load(&self) -> arc_swap::Guard<Arc<Layout>> {
        self.current.load()
    }

    /// The layout in force now, to keep.
    pub fn get(&self) -> Arc<Layout> {
        self.current.load_full()
    }

    /// Puts in force what `change` makes of the layout in force (nothing when it gives
    /// `None`), with no other change in between; whether it changed.
    pub fn update(&self, change: impl FnOnce(&Layout) -> Option<Layout>) -> bool {
        let _writing = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.load_full();
        match change(&current) {
            Some(next) => {
                self.current.store(Arc::new(next));
                true
            }
            None => false,
        }
    }
}
