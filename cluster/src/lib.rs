//! cartd's Redis-Cluster-compatible layer: key slots (CRC16 with hash tags, as Redis), the
//! node layout `config.toml` gives (`[cluster]`), checked, and who serves each slot.
//! docs/CLUSTER.md (with the cluster issue) describes how the server uses them.

pub mod layout;
pub mod members;
pub mod record;
pub mod slot;
pub mod topology;

pub use layout::{ClusterConfig, Layout, LayoutError, Node, NodeConfig};
pub use members::Members;
pub use slot::{key_slot, SLOTS, SLOT_BITS};
pub use topology::Topology;
