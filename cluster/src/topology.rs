//! The layout in force on a node, which changes at run time (a failover gives a shard group
//! another primary): readers take the current one without locking, a change replaces it
//! whole.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::layout::Layout;

/// The current layout.
pub struct Topology {
    current: ArcSwap<Layout>,
}

impl Topology {
    /// Starts from `layout` (the configured one).
    pub fn new(layout: Layout) -> Topology {
        Topology {
            current: ArcSwap::from_pointee(layout),
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

    /// Puts `layout` in force.
    pub fn replace(&self, layout: Layout) {
        self.current.store(Arc::new(layout));
    }
}
