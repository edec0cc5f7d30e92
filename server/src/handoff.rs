//! `CART.MERGE` across cluster nodes, the user cart's node's side (docs/CLUSTER.md, "CART.MERGE
//! across nodes"): the pre-step that takes the guest cart from the node serving it
//! (`CART.HANDOFF`) before the merge runs, the courier that tells that node once the merge is
//! durable (`CART.HANDOFF.DONE`). Both send through the peer links' call pool
//! (`crate::peers::calls`, which the gift card calls use too). The handoff entries
//! themselves are the store's (`store/handoff.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{CartMerge, Command, CommandError, CommandId, CommandSpec, ErrorCode};
use tokio::sync::Notify;

use crate::fault::{self, FaultPoint};
use crate::limits::HANDOFF_RETRY_MS;
use crate::peers::wire::Value;
use crate::server::{now_ms, Server};
use crate::store::Handed;

/// The courier's wake-up (the calls to the other nodes go through the peer links' pool,
/// `crate::peers::calls`).
#[derive(Debug, Default)]
pub struct PeerLinks {
    /// Woken after a merge of a handed-off cart: a `CART.HANDOFF.DONE` is owed.
    courier: Notify,
}

/// A guest cart to take from another node before a merge runs.
#[derive(Debug, Clone)]
pub struct HandoffRequest {
    guest_key: Bytes,
    user_key: Bytes,
    /// The index (in the layout) of the node serving the guest cart.
    node: usize,
}

/// What the pre-step got for a merge of `guest_key` into `user_key`: the guest cart handed
/// off (`None`: that node had none), or why not.
#[derive(Debug)]
pub struct HandoffResult {
    guest_key: Bytes,
    user_key: Bytes,
    handed: Result<Option<Handed>, CommandError>,
}

/// The node (its layout index) serving `guest_key`, when that is not this node.
pub fn guest_node(server: &Server, guest_key: &[u8]) -> Option<usize> {
    let layout = server.layout()?;
    let owner = layout.owner_index(cluster::key_slot(guest_key))?;
    (owner != layout.me).then_some(owner)
}

/// Whether this request is a `CART.MERGE` whose guest cart another node serves and which
/// would merge (not a replay, not refused by the user cart's state): its handoff, then.
pub fn before_merge(args: &[Bytes], spec: &CommandSpec, server: &Server) -> Option<HandoffRequest> {
    if spec.id != CommandId::CartMerge || args.len() < 3 {
        return None;
    }
    let node = guest_node(server, &args[1])?;
    let Ok(Command::CartMerge(cmd)) = Command::parse(args.to_vec()) else {
        return None; // The command runs and answers its error.
    };
    if !server.store.merge_would_take(&cmd, now_ms()) {
        return None;
    }
    Some(HandoffRequest {
        guest_key: cmd.guest_key,
        user_key: cmd.user_key,
        node,
    })
}

/// Takes the guest cart from its node (`CART.HANDOFF`). The reply came after that node's
/// take was durable, so from here on its lines are either in that node's handoff entry or
/// (once the merge is durable) in the user cart.
pub async fn take(server: &Server, request: HandoffRequest) -> HandoffResult {
    let handed = take_from(server, &request).await;
    HandoffResult {
        guest_key: request.guest_key,
        user_key: request.user_key,
        handed,
    }
}

async fn take_from(
    server: &Server,
    request: &HandoffRequest,
) -> Result<Option<Handed>, CommandError> {
    let Some(layout) = server.layout() else {
        return Ok(None);
    };
    let node = &layout.nodes[request.node];
    let words = [&b"CART.HANDOFF"[..], &request.guest_key, &request.user_key];
    let reply = call(server, request.node, &words).await.map_err(|error| {
        CommandError::new(
            ErrorCode::TryAgain,
            format!(
                "the guest cart's node {} did not answer ({error}); nothing was merged, retry the merge",
                node.id
            ),
        )
    })?;
    let handed = match reply {
        Value::Bulk(None) | Value::Array(None) => None,
        Value::Array(Some(mut parts)) if parts.len() == 2 => {
            let (Value::Bulk(Some(id)), Value::Bulk(Some(cart))) =
                (parts.remove(0), parts.remove(0))
            else {
                return Err(unexpected(&node.id));
            };
            Some(Handed {
                id,
                cart,
                from: node.id.clone(),
            })
        }
        Value::Error(message) => return Err(peer_error(&node.id, &message)),
        _ => return Err(unexpected(&node.id)),
    };
    if handed.is_some() {
        fault::check(server, FaultPoint::MergeAfterTake);
    }
    Ok(handed)
}

fn unexpected(node: &str) -> CommandError {
    CommandError::err(format!(
        "the guest cart's node {node} answered CART.HANDOFF with something unexpected"
    ))
}

/// A peer's error as the merge's own: its code when it is one cartd has, else `TRYAGAIN`
/// (the slot moved, the node is loading).
fn peer_error(node: &str, message: &str) -> CommandError {
    let (code, rest) = message.split_once(' ').unwrap_or((message, ""));
    match ErrorCode::ALL.iter().find(|known| known.as_str() == code) {
        Some(&known) if known != ErrorCode::Moved && known != ErrorCode::Loading => {
            CommandError::new(known, format!("{rest} (guest cart's node {node})"))
        }
        _ => CommandError::new(
            ErrorCode::TryAgain,
            format!("the guest cart's node {node} refused the handoff: {message}"),
        ),
    }
}

/// Wakes the courier: a merge of a handed-off cart owes its `CART.HANDOFF.DONE`.
pub fn owe_done(server: &Server) {
    server.handoff_links.courier.notify_one();
}

/// The courier (primaries in cluster mode): sends `CART.HANDOFF.DONE` for every handoff
/// merged here, once its merge is durable, until the giver confirms it; woken by each merge
/// and every [`HANDOFF_RETRY_MS`] while any is owed (after a restart: the recovered ones).
pub async fn courier(server: Arc<Server>) {
    loop {
        let owed = server.store.handoff_counts().1 > 0;
        let retry = async {
            if owed {
                tokio::time::sleep(Duration::from_millis(HANDOFF_RETRY_MS)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = server.handoff_links.courier.notified() => {}
            () = retry => {}
            () = server.shutdown.cancelled() => return,
        }
        confirm_owed(&server).await;
    }
}

/// One round of the courier.
async fn confirm_owed(server: &Server) {
    let Some(layout) = server.layout() else {
        return;
    };
    for (id, received) in server.store.handoffs_to_confirm() {
        if let Some(durability) = server.durability.get() {
            // Only a durable merge may let the giver drop the lines.
            durability.wal.wait_ack(received.lsn).await;
        }
        fault::check(server, FaultPoint::MergeAfterLog);
        let Some(index) = layout
            .nodes
            .iter()
            .position(|node| node.id == received.from)
        else {
            tracing::warn!(node = %received.from, "a handoff from a node no longer in the layout");
            continue;
        };
        let node = &layout.nodes[index];
        let words = [&b"CART.HANDOFF.DONE"[..], &received.guest_key, &id];
        match call(server, index, &words).await {
            Ok(Value::Simple(_)) => {
                fault::check(server, FaultPoint::DoneAfterReply);
                server.store.handoff_confirmed(&id, now_ms());
            }
            Ok(other) => {
                tracing::debug!(node = %node.id, reply = ?other, "CART.HANDOFF.DONE refused; retried")
            }
            Err(error) => {
                tracing::debug!(node = %node.id, %error, "CART.HANDOFF.DONE failed; retried")
            }
        }
    }
}

/// Sends one command to the node at layout index `node` through the peer links' call pool
/// (a kept connection, authenticated with the shared password; a failed kept one is retried
/// once on a new one: both handoff commands may be repeated).
async fn call(server: &Server, node: usize, words: &[&[u8]]) -> Result<Value, String> {
    let peers = server
        .peers
        .as_ref()
        .ok_or_else(|| "this node has no peer links (not a cluster primary)".to_string())?;
    peers.calls.call(node, words).await
}

/// Runs `CART.MERGE`'s guest side: `handed` is what the pre-step got when another node serves
/// the guest cart.
pub fn guest_from(
    server: &Server,
    cmd: &CartMerge,
    handed: Option<HandoffResult>,
) -> Result<crate::store::GuestFrom, CommandError> {
    if guest_node(server, &cmd.guest_key).is_none() {
        return Ok(crate::store::GuestFrom::Here);
    }
    // No pre-step result: the merge replays or is refused by its user cart, taking nothing.
    let Some(result) = handed else {
        return Ok(crate::store::GuestFrom::Handed(None));
    };
    assert!(
        result.guest_key == cmd.guest_key && result.user_key == cmd.user_key,
        "a handoff result is taken by the merge it was made for"
    );
    Ok(crate::store::GuestFrom::Handed(result.handed?))
}
