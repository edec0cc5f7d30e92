//! The cluster's layout as `config.toml` gives it (`[cluster]`: this node's id and the same
//! list of nodes on every node), checked, and the slot table built from it.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::slot::SLOTS;

/// How long a shard group's lease lasts by default (`cluster.lease_ms`).
pub const LEASE_MS_DEFAULT: u64 = 3_000;

/// The shortest lease `cluster.lease_ms` may ask for: renewals go every quarter of it.
pub const LEASE_MS_MIN: u64 = 400;

/// `[cluster]` in config.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Whether this node runs as part of a cluster (off: a standalone server).
    pub enabled: bool,
    /// This node: one of the ids of `nodes`.
    pub node_id: String,
    /// Every node of the cluster, the same list on every node.
    pub nodes: Vec<NodeConfig>,
    /// How long a shard group's lease in PostgreSQL lasts (with `[postgres]`): a primary
    /// renews it every quarter of this and stops taking writes before it ends; a replica
    /// takes a lapsed one over.
    pub lease_ms: u64,
    /// Where this node connects to the named nodes instead of their `addr` (a gateway or a
    /// tunnel between regions): replication, CLUSTER FAILOVER and cross-node calls go there;
    /// clients are still told `addr`. This node's own, not the shared list's.
    pub reach: BTreeMap<String, String>,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            enabled: false,
            node_id: String::new(),
            nodes: Vec::new(),
            lease_ms: LEASE_MS_DEFAULT,
            reach: BTreeMap::new(),
        }
    }
}

/// One `[[cluster.nodes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's id.
    pub id: String,
    /// `host:port` clients are told (MOVED, CLUSTER SLOTS).
    pub addr: String,
    /// Slots it serves as a primary: ranges (`"0-5460"`) or single slots (`"5461"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<String>,
    /// The primary it replicates, for a replica (which serves no slots of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
    /// The region (data centre) it runs in; empty: the one region. A replica in another
    /// region than its group's primary takes over only when no member in the primary's
    /// region is left (docs/CLUSTER.md "Two regions").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
}

/// What is wrong with a `[cluster]` section: each names the node and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// `enabled` without `node_id`.
    #[error("[cluster] node_id is empty: name this node (one of the ids in [[cluster.nodes]])")]
    NoNodeId,
    /// `node_id` names no node of the list.
    #[error("[cluster] node_id {0:?} is not among [[cluster.nodes]] (ids: {1})")]
    UnknownSelf(String, String),
    /// No nodes at all.
    #[error("[cluster] is enabled with no [[cluster.nodes]]")]
    NoNodes,
    /// Two entries with one id.
    #[error("[[cluster.nodes]] id {0:?} appears twice")]
    DuplicateId(String),
    /// An empty or overlong id, or one with spaces (CLUSTER NODES lines are split on them).
    #[error(
        "[[cluster.nodes]] id {0:?}: ids are 1 to 40 characters, letters, digits, '-' and '_'"
    )]
    BadId(String),
    /// An address that is not `host:port`.
    #[error("node {0:?}: addr {1:?} is not host:port with a port from 1 to 65535")]
    BadAddr(String, String),
    /// Two nodes with one address.
    #[error("nodes {0:?} and {1:?} both have addr {2:?}")]
    DuplicateAddr(String, String, String),
    /// `cluster.reach` naming no node of the list.
    #[error("[cluster.reach] names {0:?}, which is not among [[cluster.nodes]]")]
    UnknownReach(String),
    /// A lease too short to renew.
    #[error("[cluster] lease_ms = {0}: a lease lasts at least {LEASE_MS_MIN} ms")]
    LeaseTooShort(u64),
    /// A slot spec that does not parse, or is out of range.
    #[error("node {0:?}: slots entry {1:?} is not a slot or a range of slots within 0-16383 (\"0-5460\" or \"5461\")")]
    BadSlots(String, String),
    /// A slot given to two nodes.
    #[error("slot {slot} is given to both {first:?} and {second:?}")]
    SlotTwice {
        /// The slot.
        slot: u16,
        /// The node that has it first in the list.
        first: String,
        /// The other.
        second: String,
    },
    /// A replica with slots of its own.
    #[error("node {0:?} is a replica (replica_of) and lists slots: only primaries serve slots")]
    ReplicaWithSlots(String),
    /// A member that cannot change as asked (join another group, be forgotten).
    #[error("node {0:?} {1}")]
    MemberBusy(String, String),
    /// `replica_of` naming no node, itself, or another replica.
    #[error("node {0:?}: replica_of {1:?} is not a primary of the list")]
    BadPrimary(String, String),
}

/// One node of the checked layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its id.
    pub id: String,
    /// Host clients are told.
    pub host: String,
    /// Port clients are told.
    pub port: u16,
    /// The slot ranges it serves (a primary), in order; empty for a replica.
    pub ranges: Vec<RangeInclusive<u16>>,
    /// The primary it replicates (an index into [`Layout::nodes`]).
    pub replica_of: Option<usize>,
    /// Its shard group: the index of the node `config.toml` makes the group's primary (the
    /// group keeps that node's id as its name whoever holds its lease).
    pub group: usize,
    /// The term of its shard group's lease (Redis's configEpoch): 0 until PostgreSQL gives one.
    pub epoch: u64,
    /// Its region (`region` in config.toml; empty: the one region).
    pub region: String,
    /// Where this node connects to it, when not `addr` (`cluster.reach`).
    pub reach: Option<String>,
    /// Forgotten (`CLUSTER FORGET`, `CLUSTER RESET`): kept so that indexes stay put, but no
    /// member of any group, listed nowhere, and no node of that id is known.
    pub forgotten: bool,
}

impl Node {
    /// A primary of `group` serving no slots, at term 0.
    fn fresh(id: &str, host: String, port: u16, group: usize, region: &str) -> Node {
        Node {
            id: id.to_owned(),
            host,
            port,
            ranges: Vec::new(),
            replica_of: None,
            group,
            epoch: 0,
            region: region.to_owned(),
            reach: None,
            forgotten: false,
        }
    }

    /// `host:port` clients are told.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host:port` this node connects to it at: `addr`, unless `cluster.reach` names another.
    pub fn dial_addr(&self) -> String {
        self.reach.clone().unwrap_or_else(|| self.addr())
    }
}

/// No node serves the slot.
const UNASSIGNED: u16 = u16::MAX;

/// The checked layout: the nodes, which one this is, and who serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Every node, in the config's order.
    pub nodes: Vec<Node>,
    /// This node (an index into `nodes`).
    pub me: usize,
    /// The primary serving each slot (an index into `nodes`), or `UNASSIGNED`.
    owners: Box<[u16]>,
}

impl Layout {
    /// Checks `config` (which must be enabled) and builds the slot table.
    pub fn new(config: &ClusterConfig) -> Result<Layout, LayoutError> {
        if config.node_id.is_empty() {
            return Err(LayoutError::NoNodeId);
        }
        if config.nodes.is_empty() {
            return Err(LayoutError::NoNodes);
        }
        if config.lease_ms < LEASE_MS_MIN {
            return Err(LayoutError::LeaseTooShort(config.lease_ms));
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut addrs: HashMap<String, &str> = HashMap::new();
        let mut nodes = Vec::with_capacity(config.nodes.len());
        for (at, entry) in config.nodes.iter().enumerate() {
            check_id(&entry.id)?;
            if index.insert(&entry.id, at).is_some() {
                return Err(LayoutError::DuplicateId(entry.id.clone()));
            }
            let (host, port) = parse_addr(&entry.id, &entry.addr)?;
            let normalized = format!("{host}:{port}");
            if let Some(other) = addrs.insert(normalized, &entry.id) {
                return Err(LayoutError::DuplicateAddr(
                    other.to_owned(),
                    entry.id.clone(),
                    entry.addr.clone(),
                ));
            }
            let ranges = entry
                .slots
                .iter()
                .map(|spec| parse_range(&entry.id, spec))
                .collect::<Result<Vec<_>, _>>()?;
            if entry.replica_of.is_some() && !ranges.is_empty() {
                return Err(LayoutError::ReplicaWithSlots(entry.id.clone()));
            }
            let mut node = Node::fresh(&entry.id, host, port, at, &entry.region);
            node.ranges = ranges;
            nodes.push(node);
        }
        for (at, entry) in config.nodes.iter().enumerate() {
            if let Some(primary) = &entry.replica_of {
                let target = index
                    .get(primary.as_str())
                    .copied()
                    .filter(|&target| target != at && config.nodes[target].replica_of.is_none())
                    .ok_or_else(|| LayoutError::BadPrimary(entry.id.clone(), primary.clone()))?;
                nodes[at].replica_of = Some(target);
                nodes[at].group = target;
            }
        }
        let me = *index.get(config.node_id.as_str()).ok_or_else(|| {
            let ids: Vec<&str> = config.nodes.iter().map(|node| node.id.as_str()).collect();
            LayoutError::UnknownSelf(config.node_id.clone(), ids.join(", "))
        })?;
        for (id, addr) in &config.reach {
            let at = *index
                .get(id.as_str())
                .ok_or_else(|| LayoutError::UnknownReach(id.clone()))?;
            let (host, port) = parse_addr(id, addr)?;
            nodes[at].reach = Some(format!("{host}:{port}"));
        }
        let owners = slot_table(&mut nodes)?;
        Ok(Layout { nodes, me, owners })
    }

    /// The primary serving `slot`, if any, as an index into `nodes`.
    pub fn owner_index(&self, slot: u16) -> Option<usize> {
        let owner = *self.owners.get(usize::from(slot))?;
        (owner != UNASSIGNED).then_some(usize::from(owner))
    }

    /// The primary serving `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<&Node> {
        let owner = *self.owners.get(usize::from(slot))?;
        (owner != UNASSIGNED).then(|| &self.nodes[usize::from(owner)])
    }

    /// This node.
    pub fn myself(&self) -> &Node {
        &self.nodes[self.me]
    }

    /// Slots some primary serves.
    pub fn assigned_slots(&self) -> usize {
        self.owners
            .iter()
            .filter(|&&owner| owner != UNASSIGNED)
            .count()
    }

    /// The replicas of node `primary` (indexes into `nodes`).
    pub fn replicas_of(&self, primary: usize) -> impl Iterator<Item = usize> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, node)| node.replica_of == Some(primary) && !node.forgotten)
            .map(|(at, _)| at)
    }
}

impl Layout {
    /// The shard groups: the index of each group's configured primary, which names it (a
    /// group lives on while it has a member, even once the node it is named after is
    /// forgotten).
    pub fn groups(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(at, node)| node.group == *at)
            .map(|(at, _)| at)
            .filter(|&group| self.members(group).next().is_some())
    }

    /// The group's name: its configured primary's id.
    pub fn group_name(&self, group: usize) -> &str {
        &self.nodes[group].id
    }

    /// The group of the node named `id`, if any.
    pub fn group_named(&self, id: &str) -> Option<usize> {
        self.groups().find(|&group| self.nodes[group].id == id)
    }

    /// The index of the node named `id` (none once forgotten).
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.id == id && !node.forgotten)
    }

    /// The nodes known (not forgotten), as indexes into `nodes`.
    pub fn known(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&at| !self.nodes[at].forgotten)
    }

    /// The members of `group` (its primary and replicas, in the config's order).
    pub fn members(&self, group: usize) -> impl Iterator<Item = usize> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, node)| node.group == group && !node.forgotten)
            .map(|(at, _)| at)
    }

    /// The member of `group` that is its primary now.
    pub fn primary_of_group(&self, group: usize) -> usize {
        self.members(group)
            .find(|&at| self.nodes[at].replica_of.is_none())
            .expect("every group has one primary")
    }

    /// This layout with `holder` (a member of `group`) as the group's primary at `term`: it
    /// serves the group's slots and the group's other members replicate it. `None` when
    /// `holder` is not a member of `group`.
    pub fn with_primary(&self, group: usize, holder: usize, term: u64) -> Option<Layout> {
        if self.nodes.get(holder)?.group != group {
            return None;
        }
        let mut layout = self.clone();
        let primary = self.primary_of_group(group);
        let ranges = std::mem::take(&mut layout.nodes[primary].ranges);
        let members: Vec<usize> = self.members(group).collect();
        for at in members {
            let node = &mut layout.nodes[at];
            node.epoch = term;
            node.replica_of = (at != holder).then_some(holder);
        }
        layout.nodes[holder].ranges = ranges;
        for slot in layout.owners.iter_mut() {
            if *slot != UNASSIGNED && usize::from(*slot) == primary {
                *slot = u16::try_from(holder).expect("fewer nodes than u16::MAX");
            }
        }
        Some(layout)
    }

    /// The shard group serving `slot`, if any.
    pub fn group_of_slot(&self, slot: u16) -> Option<usize> {
        self.owner_index(slot).map(|owner| self.nodes[owner].group)
    }

    /// This layout with each `(slot, group)` of `moves` served by that group's primary (a
    /// slot moved by resharding); the nodes' ranges follow.
    pub fn with_slot_groups(&self, moves: &[(u16, usize)]) -> Layout {
        let mut layout = self.clone();
        for &(slot, group) in moves {
            if usize::from(slot) >= layout.owners.len()
                || group >= layout.nodes.len()
                || layout.members(layout.nodes[group].group).next().is_none()
            {
                continue;
            }
            let primary = layout.primary_of_group(layout.nodes[group].group);
            layout.owners[usize::from(slot)] =
                u16::try_from(primary).expect("fewer nodes than u16::MAX");
        }
        layout.ranges_from_owners();
        layout
    }

    /// The slot ranges node `at` serves, as config.toml writes them (`"0-5460"`, `"5461"`).
    pub fn range_specs(&self, at: usize) -> Vec<String> {
        range_specs(&self.nodes[at].ranges)
    }

    /// Rebuilds every node's ranges from the slot table.
    fn ranges_from_owners(&mut self) {
        for node in &mut self.nodes {
            node.ranges.clear();
        }
        let mut slot = 0usize;
        while slot < self.owners.len() {
            let owner = self.owners[slot];
            let start = slot;
            while slot + 1 < self.owners.len() && self.owners[slot + 1] == owner {
                slot += 1;
            }
            if owner != UNASSIGNED {
                let (start, end) = (start as u16, slot as u16);
                self.nodes[usize::from(owner)].ranges.push(start..=end);
            }
            slot += 1;
        }
    }

    /// This layout with `entry` in it: a node met at run time joins (as a primary of a group
    /// of its own, with no slots, or a replica of the group `replica_of` names), or a known
    /// one changes its address, region or group (only one that serves no slots and is no
    /// primary of a group with other members). `None` when it is there as it is already.
    pub fn with_member(&self, entry: &NodeConfig) -> Result<Option<Layout>, LayoutError> {
        check_id(&entry.id)?;
        let (host, port) = parse_addr(&entry.id, &entry.addr)?;
        let group = match &entry.replica_of {
            None => None,
            Some(primary) => Some(
                self.group_named(primary)
                    .filter(|&group| self.nodes[group].id != entry.id)
                    .ok_or_else(|| LayoutError::BadPrimary(entry.id.clone(), primary.clone()))?,
            ),
        };
        if let Some(other) = self.known().find(|&at| {
            self.nodes[at].id != entry.id
                && self.nodes[at].host == host
                && self.nodes[at].port == port
        }) {
            return Err(LayoutError::DuplicateAddr(
                self.nodes[other].id.clone(),
                entry.id.clone(),
                entry.addr.clone(),
            ));
        }
        let mut layout = self.clone();
        let at = match self.nodes.iter().position(|node| node.id == entry.id) {
            Some(at) => at,
            None => {
                let at = self.nodes.len();
                let mut node = Node::fresh(&entry.id, host.clone(), port, at, &entry.region);
                node.forgotten = true; // Not a member yet: nothing of it to check below.
                layout.nodes.push(node);
                at
            }
        };
        let wanted = group.unwrap_or(at);
        let node = &layout.nodes[at];
        if !node.forgotten
            && node.host == host
            && node.port == port
            && node.region == entry.region
            && node.group == wanted
        {
            return Ok(None);
        }
        if node.group != wanted && !node.forgotten {
            self.may_change_group(at)?;
        }
        let node = &mut layout.nodes[at];
        node.host = host;
        node.port = port;
        node.region = entry.region.clone();
        node.forgotten = false;
        node.group = wanted;
        node.replica_of = None;
        let primary = layout
            .members(wanted)
            .find(|&other| other != at && layout.nodes[other].replica_of.is_none());
        layout.nodes[at].replica_of = primary;
        layout.nodes[at].epoch = primary.map_or(0, |primary| layout.nodes[primary].epoch);
        Ok(Some(layout))
    }

    /// Whether known node `at` may leave its shard group: it serves no slots and is no
    /// primary of a group with replicas.
    fn may_change_group(&self, at: usize) -> Result<(), LayoutError> {
        let node = &self.nodes[at];
        if !node.ranges.is_empty() {
            return Err(LayoutError::MemberBusy(
                node.id.clone(),
                "serves slots: move them away before it changes shard group".into(),
            ));
        }
        if node.replica_of.is_none() && self.members(node.group).any(|other| other != at) {
            return Err(LayoutError::MemberBusy(
                node.id.clone(),
                "is the primary of a shard group with replicas: re-point them first".into(),
            ));
        }
        Ok(())
    }

    /// This layout with the node named `id` forgotten (`CLUSTER FORGET`); `None` when no such
    /// node is known. Refused, with Redis's words where it has them, for this node, its
    /// primary, a node serving slots, and the primary of a group with other members. The node
    /// a group is named after may go once it is a replica (a dead old primary, after a
    /// failover): the group keeps its name.
    pub fn without_member(&self, id: &str) -> Result<Option<Layout>, String> {
        let Some(at) = self.index_of(id) else {
            return Ok(None);
        };
        if at == self.me {
            return Err("I tried hard but I can't forget myself...".into());
        }
        if self.myself().replica_of == Some(at) {
            return Err("Can't forget my master!".into());
        }
        let node = &self.nodes[at];
        if !node.ranges.is_empty() {
            let slots: usize = node.ranges.iter().map(|range| range.len()).sum();
            return Err(format!(
                "node {id} serves {slots} slot(s): move them to another primary first \
                 (redis-cli --cluster reshard or rebalance)"
            ));
        }
        if node.replica_of.is_none() && self.members(node.group).any(|other| other != at) {
            return Err(format!(
                "node {id} is the primary of shard group {}, which has other members: re-point \
                 them with CLUSTER REPLICATE first",
                self.group_name(node.group)
            ));
        }
        Ok(Some(self.forgetting(at)))
    }

    /// This layout with node `at` forgotten, unchecked. A node a shard group is named after
    /// (its configured primary, a replica since a failover) keeps its entry, listed nowhere:
    /// the group keeps its name, its lease and its slots while it has members.
    pub(crate) fn forgetting(&self, at: usize) -> Layout {
        let mut layout = self.clone();
        layout.nodes[at].forgotten = true;
        layout.nodes[at].replica_of = None;
        layout
    }

    /// This layout as `CLUSTER RESET` leaves it: every other node forgotten, no slot served,
    /// this node the primary of a group of its own.
    pub fn reset(&self) -> Layout {
        let mut layout = self.clone();
        let me = self.me;
        for (at, node) in layout.nodes.iter_mut().enumerate() {
            node.ranges.clear();
            if at == me {
                node.group = me;
                node.replica_of = None;
                node.forgotten = false;
            } else {
                node.forgotten = true;
                node.replica_of = None;
            }
        }
        layout.owners.fill(UNASSIGNED);
        layout
    }

    /// Whether this node knows no other.
    pub fn alone(&self) -> bool {
        self.known().all(|at| at == self.me)
    }

    /// The highest term of any group (Redis's currentEpoch).
    pub fn current_epoch(&self) -> u64 {
        self.nodes.iter().map(|node| node.epoch).max().unwrap_or(0)
    }
}

/// Who serves each slot (an index into `nodes`, or `UNASSIGNED`); each node's ranges sorted.
fn slot_table(nodes: &mut [Node]) -> Result<Box<[u16]>, LayoutError> {
    let mut owners = vec![UNASSIGNED; usize::from(SLOTS)].into_boxed_slice();
    for at in 0..nodes.len() {
        nodes[at].ranges.sort_by_key(|range| *range.start());
        for range in &nodes[at].ranges {
            for slot in range.clone() {
                let owner = &mut owners[usize::from(slot)];
                if *owner != UNASSIGNED {
                    return Err(LayoutError::SlotTwice {
                        slot,
                        first: nodes[usize::from(*owner)].id.clone(),
                        second: nodes[at].id.clone(),
                    });
                }
                *owner = u16::try_from(at).expect("fewer nodes than u16::MAX");
            }
        }
    }
    Ok(owners)
}

/// Slot ranges as config.toml writes them (`"0-5460"`, `"5461"`).
pub fn range_specs(ranges: &[RangeInclusive<u16>]) -> Vec<String> {
    ranges
        .iter()
        .map(|range| {
            if range.start() == range.end() {
                range.start().to_string()
            } else {
                format!("{}-{}", range.start(), range.end())
            }
        })
        .collect()
}

fn check_id(id: &str) -> Result<(), LayoutError> {
    let valid = (1..=40).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if valid {
        Ok(())
    } else {
        Err(LayoutError::BadId(id.to_owned()))
    }
}

fn parse_addr(id: &str, addr: &str) -> Result<(String, u16), LayoutError> {
    let bad = || LayoutError::BadAddr(id.to_owned(), addr.to_owned());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

fn parse_range(id: &str, spec: &str) -> Result<RangeInclusive<u16>, LayoutError> {
    let bad = || LayoutError::BadSlots(id.to_owned(), spec.to_owned());
    let slot = |text: &str| -> Result<u16, LayoutError> {
        text.trim()
            .parse::<u16>()
            .ok()
            .filter(|slot| *slot < SLOTS)
            .ok_or_else(bad)
    };
    let (start, end) = match spec.split_once('-') {
        Some((start, end)) => (slot(start)?, slot(end)?),
        None => {
            let only = slot(spec)?;
            (only, only)
        }
    };
    if start > end {
        return Err(bad());
    }
    Ok(start..=end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> ClusterConfig {
        #[derive(Deserialize)]
        struct File {
            cluster: ClusterConfig,
        }
        toml::from_str::<File>(toml_text)
            .expect("valid TOML for the test")
            .cluster
    }

    #[test]
    fn reach_overrides_where_this_node_connects_and_regions_are_kept() {
        let text = format!("{THREE_AND_ONE}\n[cluster.reach]\nn2 = \"10.0.0.9:17002\"\n").replace(
            "replica_of = \"n1\"",
            "replica_of = \"n1\"\n        region = \"west\"",
        );
        let layout = Layout::new(&config(&text)).unwrap();
        assert_eq!(layout.nodes[1].dial_addr(), "10.0.0.9:17002");
        assert_eq!(
            layout.nodes[1].addr(),
            "127.0.0.1:7002",
            "clients are told addr"
        );
        assert_eq!(layout.nodes[2].dial_addr(), "127.0.0.1:7003");
        assert_eq!(layout.nodes[3].region, "west");
        assert_eq!(layout.nodes[0].region, "");
        let unknown = format!("{THREE_AND_ONE}\n[cluster.reach]\nn9 = \"10.0.0.9:1\"\n");
        assert_eq!(
            Layout::new(&config(&unknown)).unwrap_err(),
            LayoutError::UnknownReach("n9".into())
        );
        let bad = format!("{THREE_AND_ONE}\n[cluster.reach]\nn2 = \"nowhere\"\n");
        assert!(matches!(
            Layout::new(&config(&bad)),
            Err(LayoutError::BadAddr(..))
        ));
    }

    const THREE_AND_ONE: &str = r#"
        [cluster]
        enabled = true
        node_id = "n1"
        [[cluster.nodes]]
        id = "n1"
        addr = "127.0.0.1:7001"
        slots = ["0-5460"]
        [[cluster.nodes]]
        id = "n2"
        addr = "127.0.0.1:7002"
        slots = ["5461-10922"]
        [[cluster.nodes]]
        id = "n3"
        addr = "127.0.0.1:7003"
        slots = ["10923-16382", "16383"]
        [[cluster.nodes]]
        id = "n4"
        addr = "127.0.0.1:7004"
        replica_of = "n1"
    "#;

    #[test]
    fn the_issue_s_layout_builds_a_full_slot_table() {
        let layout = Layout::new(&config(THREE_AND_ONE)).unwrap();
        assert_eq!(layout.myself().id, "n1");
        assert_eq!(layout.assigned_slots(), 16384);
        assert_eq!(layout.owner(0).unwrap().id, "n1");
        assert_eq!(layout.owner(5461).unwrap().id, "n2");
        assert_eq!(layout.owner(16383).unwrap().id, "n3");
        assert_eq!(layout.owner(16384), None);
        assert_eq!(layout.nodes[3].replica_of, Some(0));
        assert_eq!(layout.replicas_of(0).collect::<Vec<_>>(), vec![3]);
        assert_eq!(layout.nodes[2].addr(), "127.0.0.1:7003");
        assert_eq!(layout.groups().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(layout.members(0).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(layout.nodes[3].group, 0);
    }

    #[test]
    fn a_replica_takes_its_group_s_slots_and_the_old_primary_follows_it() {
        let layout = Layout::new(&config(THREE_AND_ONE)).unwrap();
        let promoted = layout.with_primary(0, 3, 7).unwrap();
        assert_eq!(promoted.owner(0).unwrap().id, "n4");
        assert_eq!(promoted.owner(5460).unwrap().id, "n4");
        assert_eq!(promoted.owner(5461).unwrap().id, "n2");
        assert_eq!(promoted.nodes[0].replica_of, Some(3));
        assert_eq!(promoted.nodes[3].replica_of, None);
        assert_eq!(promoted.nodes[3].ranges, vec![0..=5460]);
        assert!(promoted.nodes[0].ranges.is_empty());
        assert_eq!((promoted.nodes[0].epoch, promoted.nodes[1].epoch), (7, 0));
        assert_eq!(promoted.current_epoch(), 7);
        assert_eq!(promoted.primary_of_group(0), 3);
        assert_eq!(promoted.assigned_slots(), 16384);
        // Back again, and a node of another group cannot hold this one's lease.
        let back = promoted.with_primary(0, 0, 9).unwrap();
        assert_eq!(back.owner(0).unwrap().id, "n1");
        assert_eq!(back.nodes[3].replica_of, Some(0));
        assert!(layout.with_primary(0, 1, 8).is_none());
    }

    #[test]
    fn a_moved_slot_follows_its_group_through_a_failover() {
        let layout = Layout::new(&config(THREE_AND_ONE)).unwrap();
        let moved = layout.with_slot_groups(&[(100, 1), (5460, 1), (16384, 1)]);
        assert_eq!(moved.owner(100).unwrap().id, "n2");
        assert_eq!(moved.group_of_slot(100), Some(1));
        assert_eq!(moved.nodes[0].ranges, vec![0..=99, 101..=5459]);
        assert_eq!(moved.nodes[1].ranges, vec![100..=100, 5460..=10922]);
        assert_eq!(moved.assigned_slots(), 16384);
        // n4 takes n1's group over: it serves what the group has, not what config.toml said.
        let promoted = moved.with_primary(0, 3, 5).unwrap();
        assert_eq!(promoted.owner(100).unwrap().id, "n2");
        assert_eq!(promoted.owner(101).unwrap().id, "n4");
        assert_eq!(promoted.nodes[3].ranges, vec![0..=99, 101..=5459]);
    }

    #[test]
    fn each_mistake_is_named() {
        let cases: [(&str, &str, &str); 8] = [
            ("node_id = \"n1\"", "node_id = \"n9\"", "is not among"),
            (
                "slots = [\"5461-10922\"]",
                "slots = [\"5000-10922\"]",
                "slot 5000 is given to both \"n1\" and \"n2\"",
            ),
            (
                "slots = [\"5461-10922\"]",
                "slots = [\"5461-16384\"]",
                "slots entry \"5461-16384\"",
            ),
            (
                "slots = [\"5461-10922\"]",
                "slots = [\"10922-5461\"]",
                "slots entry \"10922-5461\"",
            ),
            (
                "replica_of = \"n1\"",
                "replica_of = \"n9\"",
                "replica_of \"n9\"",
            ),
            (
                "replica_of = \"n1\"",
                "replica_of = \"n1\"\n slots = [\"1\"]",
                "is a replica",
            ),
            (
                "addr = \"127.0.0.1:7002\"",
                "addr = \"127.0.0.1:7001\"",
                "both have addr",
            ),
            (
                "addr = \"127.0.0.1:7003\"",
                "addr = \"127.0.0.1\"",
                "is not host:port",
            ),
        ];
        for (from, to, expected) in cases {
            let text = THREE_AND_ONE.replacen(from, to, 1);
            let error = Layout::new(&config(&text)).unwrap_err().to_string();
            assert!(error.contains(expected), "{to}: {error}");
        }
        let mut twice = config(THREE_AND_ONE);
        twice.nodes[1].id = "n1".into();
        assert_eq!(
            Layout::new(&twice).unwrap_err(),
            LayoutError::DuplicateId("n1".into())
        );
        let mut spaced = config(THREE_AND_ONE);
        spaced.nodes[1].id = "n 2".into();
        assert!(matches!(Layout::new(&spaced), Err(LayoutError::BadId(_))));
    }

    #[test]
    fn a_layout_may_leave_slots_unassigned() {
        let text = THREE_AND_ONE.replacen(
            "slots = [\"10923-16382\", \"16383\"]",
            "slots = [\"10923-16382\"]",
            1,
        );
        let layout = Layout::new(&config(&text)).unwrap();
        assert_eq!(layout.assigned_slots(), 16383);
        assert_eq!(layout.owner(16383), None);
    }
}
