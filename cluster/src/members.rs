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
    /// Every node known, in the layout's order, and the forgotten nodes whose names shard
    /// groups still carry (entries that hold their groups' slots).
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
    /// The ids of those forgotten nodes among `nodes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forgotten: Vec<String>,
}

impl Members {
    /// The members `layout` knows now.
    pub fn of(layout: &Layout) -> Members {
        let mut members = Members::default();
        for (at, node) in layout.nodes.iter().enumerate() {
            let names_a_group = node.group == at && layout.members(at).next().is_some();
            if node.forgotten && !names_a_group {
                continue;
            }
            if node.forgotten {
                members.forgotten.push(node.id.clone());
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
        let mut layout = Layout::new(&config)?;
        for id in &self.forgotten {
            let Some(at) = layout.index_of(id) else {
                continue;
            };
            // The group goes on under its name: a member left serves its slots until the
            // leases say which one holds it.
            if layout.nodes[at].group == at && layout.nodes[at].replica_of.is_none() {
                let Some(heir) = layout.members(at).find(|&other| other != at) else {
                    continue;
                };
                let epoch = layout.nodes[at].epoch;
                layout = layout.with_primary(at, heir, epoch).unwrap_or(layout);
            }
            layout = layout.forgetting(at);
        }
        Ok(layout)
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
        // n3 is the primary of n1's group now (a failover): not forgotten while n1 follows it.
        assert!(promoted.without_member("n3").is_err());
    }

    /// n1, the dead old primary its group is named after, goes once n3 took over: the group
    /// keeps its name, its slots and n3, in the file too.
    #[test]
    fn the_node_a_group_is_named_after_is_forgotten_and_the_group_goes_on() {
        let seed = config(
            "n4",
            vec![
                node("n1", 7001, &["0-8191"], None),
                node("n2", 7002, &["8192-16383"], None),
                node("n3", 7003, &[], Some("n1")),
                node("n4", 7004, &[], Some("n2")),
            ],
        );
        let promoted = Layout::new(&seed).unwrap().with_primary(0, 2, 4).unwrap();
        let without_n1 = promoted.without_member("n1").unwrap().unwrap();
        assert_eq!(without_n1.index_of("n1"), None);
        assert_eq!(without_n1.group_named("n1"), Some(0));
        assert_eq!(without_n1.owner(0).unwrap().id, "n3");
        let file = Members::of(&without_n1);
        assert_eq!(file.forgotten, vec!["n1".to_owned()]);
        let back = Members::parse(&file.to_text())
            .unwrap()
            .layout(&config("n4", Vec::new()))
            .unwrap();
        assert_eq!(back.index_of("n1"), None, "still forgotten after a restart");
        assert_eq!(back.group_named("n1"), Some(0));
        assert_eq!(
            back.owner(0).unwrap().id,
            "n3",
            "its member serves the slots"
        );
        assert_eq!(back.assigned_slots(), 16_384);
        assert_eq!(back.known().count(), 3);
        // Once its group has no member left, the forgotten node is gone from the file.
        let emptied = without_n1.forgetting(2);
        assert!(Members::of(&emptied)
            .nodes
            .iter()
            .all(|entry| entry.id != "n1"));
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
