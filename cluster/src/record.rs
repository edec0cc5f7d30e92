//! The layout a node records in its data directory when it first serves it, so a restart
//! with another layout (a slot moved by hand in one node's config.toml, a node renamed) is
//! refused with what differs, instead of two nodes serving one slot.

use std::collections::BTreeMap;

use crate::layout::Layout;

/// The layout as recorded: one line per node, `node <id> <host:port> <role> <slots>`, in the
/// layout's order (`role` is `primary` or `replica-of=<id>`, `slots` comma-separated ranges
/// or `-`).
pub fn record_text(layout: &Layout) -> String {
    let mut text = String::from("# cartd cluster layout, as this node first served it\n");
    for node in &layout.nodes {
        text.push_str(&node_line(layout, node));
        text.push('\n');
    }
    text
}

fn node_line(layout: &Layout, node: &crate::layout::Node) -> String {
    let role = node.replica_of.map_or_else(
        || "primary".to_owned(),
        |primary| format!("replica-of={}", layout.nodes[primary].id),
    );
    let slots = if node.ranges.is_empty() {
        "-".to_owned()
    } else {
        crate::layout::range_specs(&node.ranges).join(",")
    };
    format!("node {} {} {role} {slots}", node.id, node.addr())
}

/// Where `layout` differs from a recorded one (`recorded` as [`record_text`] wrote it), a
/// sentence each; empty when they agree.
pub fn differences(recorded: &str, layout: &Layout) -> Vec<String> {
    let by_id = |lines: Vec<String>| -> BTreeMap<String, String> {
        lines
            .into_iter()
            .filter_map(|line| {
                let id = line.split_whitespace().nth(1)?.to_owned();
                Some((id, line))
            })
            .collect()
    };
    let was = by_id(
        recorded
            .lines()
            .filter(|line| line.starts_with("node "))
            .map(str::to_owned)
            .collect(),
    );
    let now = by_id(
        layout
            .nodes
            .iter()
            .map(|node| node_line(layout, node))
            .collect(),
    );
    let mut differences = Vec::new();
    for (id, line) in &was {
        match now.get(id) {
            None => differences.push(format!(
                "node {id} was recorded ({line}) and is not configured"
            )),
            Some(configured) if configured != line => differences.push(format!(
                "node {id}: recorded `{line}`, configured `{configured}`"
            )),
            Some(_) => {}
        }
    }
    for (id, line) in &now {
        if !was.contains_key(id) {
            differences.push(format!(
                "node {id} is configured ({line}) and was not recorded"
            ));
        }
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ClusterConfig, NodeConfig};

    fn layout(second_slots: &str) -> Layout {
        let node = |id: &str, port: u16, slots: &[&str], replica_of: Option<&str>| NodeConfig {
            id: id.into(),
            addr: format!("127.0.0.1:{port}"),
            slots: slots.iter().map(|slots| (*slots).to_owned()).collect(),
            replica_of: replica_of.map(str::to_owned),
            region: String::new(),
        };
        Layout::new(&ClusterConfig {
            enabled: true,
            node_id: "a".into(),
            nodes: vec![
                node("a", 7001, &["0-8191"], None),
                node("b", 7002, &[second_slots], None),
                node("c", 7003, &[], Some("a")),
            ],
            ..ClusterConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn a_layout_agrees_with_its_record_and_names_each_difference() {
        let recorded = record_text(&layout("8192-16383"));
        assert!(recorded.contains("node c 127.0.0.1:7003 replica-of=a -\n"));
        assert!(differences(&recorded, &layout("8192-16383")).is_empty());
        let moved = differences(&recorded, &layout("8200-16383"));
        assert_eq!(moved.len(), 1);
        assert!(moved[0].contains("node b: recorded `node b 127.0.0.1:7002 primary 8192-16383`, configured `node b 127.0.0.1:7002 primary 8200-16383`"));
        let fewer = recorded.replace("node c 127.0.0.1:7003 replica-of=a -\n", "");
        let added = differences(&fewer, &layout("8192-16383"));
        assert_eq!(
            added,
            vec![
                "node c is configured (node c 127.0.0.1:7003 replica-of=a -) and was not recorded"
                    .to_owned()
            ]
        );
    }
}
