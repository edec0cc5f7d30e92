//! Test-only fault points: `[debug] fault = "node_id:point"` makes that cluster node abort
//! (`std::process::abort`, as a kill -9 would stop it) at the named step of a `CART.MERGE`
//! across nodes, after syncing its log so that what it logged before the step is on disk. Off
//! (empty) by default; the crash tests in tests/tests/cluster_merge.rs set it.

use crate::server::Server;

/// The steps of a handoff a fault can stop at (docs/CLUSTER.md, "CART.MERGE across nodes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// The guest cart's node logged the take, before it replies.
    HandoffAfterTake,
    /// The user cart's node has the guest cart's image, before it merges.
    MergeAfterTake,
    /// The merge is durable on the user cart's node, before it sends CART.HANDOFF.DONE.
    MergeAfterLog,
    /// The guest cart's node logged the DONE, before it replies.
    DoneAfterLog,
    /// The user cart's node has DONE's reply, before it logs that the handoff is over.
    DoneAfterReply,
}

impl FaultPoint {
    /// Every point.
    pub const ALL: [FaultPoint; 5] = [
        FaultPoint::HandoffAfterTake,
        FaultPoint::MergeAfterTake,
        FaultPoint::MergeAfterLog,
        FaultPoint::DoneAfterLog,
        FaultPoint::DoneAfterReply,
    ];

    /// The name `[debug] fault` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultPoint::HandoffAfterTake => "handoff-after-take",
            FaultPoint::MergeAfterTake => "merge-after-take",
            FaultPoint::MergeAfterLog => "merge-after-log",
            FaultPoint::DoneAfterLog => "done-after-log",
            FaultPoint::DoneAfterReply => "done-after-reply",
        }
    }
}

/// `[debug] fault` read: `None` when empty, else the node and the point; a value that is not
/// `node_id:point` with a known point is refused at start.
pub fn parse(fault: &str) -> Result<Option<(&str, FaultPoint)>, String> {
    if fault.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = FaultPoint::ALL.iter().map(|point| point.as_str()).collect();
    let refused = || {
        format!(
            "debug.fault must be empty or node_id:point, the point one of {}; got {fault:?}",
            names.join(", ")
        )
    };
    let (node, name) = fault.split_once(':').ok_or_else(refused)?;
    let point = FaultPoint::ALL
        .into_iter()
        .find(|point| point.as_str() == name);
    Ok(Some((node, point.ok_or_else(refused)?)))
}

/// Aborts the process if `[debug] fault` names this node and `point`. The log is synced
/// first (blocking: only a configured fault pays for it).
pub fn check(server: &Server, point: FaultPoint) {
    let Ok(Some((node, configured))) = parse(&server.config.debug.fault) else {
        return;
    };
    let me = server
        .config
        .cluster
        .enabled
        .then_some(server.config.cluster.node_id.as_str());
    if me != Some(node) || configured != point {
        return;
    }
    if let Some(durability) = server.durability.get() {
        durability.wal.write_queued();
        let _ = durability.wal.sync();
    }
    eprintln!(
        "cartd: fault point {} reached; aborting ([debug] fault)",
        point.as_str()
    );
    std::process::abort();
}
