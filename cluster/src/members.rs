//! Who is in the cluster once it changes at run time (docs/CLUSTER.md "Adding and removing
//! nodes"): a node met with `CLUSTER MEET`, one that joined another shard group with
//! `CLUSTER REPLICATE`, one forgotten with `CLUSTER FORGET` or `CLUSTER RESET`. A node keeps
//! what it knows in `data_dir/cluster-members` (as Redis keeps nodes.conf), which stands in
//! for config.toml's `[[cluster.nodes]]` from then on; a new node gets it from the node it
//! meets.
//!
//! The entries are config.toml's: each shard group's slots are on the node it is named after,
//! whichever member holds its lease (the leases put them on the holder), and moved slots are
//! as the node knew them when it wrote the file (the recorded moves put later ones in place).

use serde::{Deserialize, Serialize};

use crate::layout::{ClusterConfig, Layout, LayoutError, NodeConfig};

/// The file in a node's data directory.
pub const MEMBERS_FILE: &str = "cluster-members";

/// The members a node knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    /// Every node known, in the layout's order.
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
}

impl Members {
    /// The members `layout` knows now.
    pub fn of(layout: &Layout) -> Members {
        let mut members = Members::default();
        for (at, node) in layout.nodes.iter().enumerate() {
            if node.forgotten {
                continue;
            }
            let slots = if node.group == at {
                layout.range_specs(layout.primary_of_group(at))
            } else {
                Vec::new()
            };
            members.nodes.push(NodeConfig {
                id: node.id.clone(),
                addr: node.addr(),
                slots,
                replica_of: (node.group != at).then(|| layout.nodes[node.group].id.clone()),
                region: node.region.clone(),
            });
        }
        members
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Members, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        toml::to_string(self).expect("members are plain TOML")
    }

    /// The layout of `config` (enabled, this node's id and `reach`) with these members in
    /// place of its `[[cluster.nodes]]`.
    pub fn layout(&self, config: &ClusterConfig) -> Result<Layout, LayoutError> {
        let mut config = config.clone();
        config.nodes = self.nodes.clone();
        config
            .reach
            .retain(|id, _| self.nodes.iter().any(|node| &node.id == id));
        Layout::new(&config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, port: u16, slots: &[&str], replica_of: Option<&str>) -> NodeConfig {
        NodeConfig {
            id: id.into(),
            addr: format!("127.0.0.1:{port}"),
            slots: slots.iter().map(|slot| (*slot).to_owned()).collect(),
            replica_of: replica_of.map(str::to_owned),
            region: String::new(),
        }
    }

    fn config(me: &str, nodes: Vec<NodeConfig>) -> ClusterConfig {
        ClusterConfig {
            enabled: true,
            node_id: me.into(),
            nodes,
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn a_met_node_joins_moves_groups_and_is_forgotten_and_the_file_keeps_it() {
        let seed = config(
            "n1",
            vec![
                node("n1", 7001, &["0-8191"], None),
                node("n2", 7002, &["8192-16383"], None),
                node("n3", 7003, &[], Some("n1")),
            ],
        );
        let layout = Layout::new(&seed).unwrap();
        let joined = layout
            .with_member(&node("n4", 7004, &[], None))
            .unwrap()
            .unwrap();
        assert_eq!(joined.index_of("n4"), Some(3));
        assert_eq!(joined.groups().count(), 3, "a group of its own");
        assert_eq!(joined.with_member(&node("n4", 7004, &[], None)), Ok(None));
        // Taken: the address of another node; a group that does not exist.
        assert!(joined.with_member(&node("n5", 7002, &[], None)).is_err());
        assert!(joined
            .with_member(&node("n5", 7005, &[], Some("n9")))
            .is_err());
        // n4 has no slots: it may become n2's replica; n1 serves slots and may not.
        let moved = joined
            .with_member(&node("n4", 7004, &[], Some("n2")))
            .unwrap()
            .unwrap();
        assert_eq!(moved.nodes[3].replica_of, Some(1));
        assert_eq!(moved.groups().count(), 2);
        assert!(moved
            .with_member(&node("n1", 7001, &[], Some("n2")))
            .is_err());
        // The file round-trips what the node knows, as config.toml entries.
        let promoted = moved.with_primary(0, 2, 4).unwrap();
        let members = Members::of(&promoted);
        let text = members.to_text();
        let back = Members::parse(&text).unwrap().layout(&seed).unwrap();
        assert_eq!(back.nodes.len(), 4);
        assert_eq!(back.owner(0).unwrap().id, "n1", "slots on the group's name");
        assert_eq!(back.nodes[3].replica_of, Some(1));
        // Forgetting: not a node with slots, not this node, not a group's primary with
        // replicas; a replica may go, and stays gone in the file.
        assert!(moved.without_member("n2").is_err());
        assert!(moved.without_member("n1").is_err());
        assert_eq!(moved.without_member("n9"), Ok(None));
        let forgotten = moved.without_member("n3").unwrap().unwrap();
        assert_eq!(forgotten.index_of("n3"), None);
        assert_eq!(forgotten.members(0).collect::<Vec<_>>(), vec![0]);
        let file = Members::of(&forgotten);
        assert!(file.nodes.iter().all(|entry| entry.id != "n3"));
        // The group's primary now serves slots; the node the group is named after stays while
        // the group has other members.
        assert!(promoted.without_member("n3").is_err());
        let seen_by_n3 = Members::of(&promoted)
            .layout(&config("n3", Vec::new()))
            .unwrap()
            .with_primary(0, 2, 4)
            .unwrap();
        assert!(seen_by_n3.without_member("n1").is_err());
    }

    #[test]
    fn a_reset_node_knows_only_itself_and_serves_nothing() {
        let layout = Layout::new(&config(
            "n3",
            vec![
                node("n1", 7001, &["0-16383"], None),
                node("n3", 7003, &[], Some("n1")),
            ],
        ))
        .unwrap();
        let reset = layout.reset();
        assert!(reset.alone());
        assert!(!layout.alone());
        assert_eq!(reset.assigned_slots(), 0);
        assert_eq!(reset.myself().replica_of, None);
        assert_eq!(reset.groups().collect::<Vec<_>>(), vec![1]);
    }
}
