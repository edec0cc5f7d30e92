//! `CART.MERGE` across cluster nodes, the user cart's node's side (docs/CLUSTER.md, "CART.MERGE
//! across nodes"): the pre-step that takes the guest cart from the node serving it
//! (`CART.HANDOFF`) before the merge runs, the courier that tells that node once the merge is
//! durable (`CART.HANDOFF.DONE`), and the small RESP link to peers both use. The handoff
//! entries themselves are the store's (`store/handoff.rs`).
//!
//! The link is its own (one idle connection kept per peer, connect and every reply under
//! [`PEER_TIMEOUT_MS`], a broken one dropped and made again on the next call); a peer link
//! for reference data is being built elsewhere, and the two are meant to become one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use protocol::{CartMerge, Command, CommandError, CommandId, CommandSpec, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::fault::{self, FaultPoint};
use crate::limits::{HANDOFF_REPLY_BYTES_MAX, HANDOFF_RETRY_MS, PEER_TIMEOUT_MS};
use crate::server::{now_ms, Server};
use crate::store::Handed;

/// Idle peer connections (one per peer address at most) and the courier's wake-up.
#[derive(Debug, Default)]
pub struct PeerLinks {
    idle: parking_lot::Mutex<HashMap<String, TcpStream>>,
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
    let layout = server.cluster.as_ref()?;
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
    let Some(layout) = &server.cluster else {
        return Ok(None);
    };
    let node = &layout.nodes[request.node];
    let words = [&b"CART.HANDOFF"[..], &request.guest_key, &request.user_key];
    let reply = call(server, &node.addr(), &words).await.map_err(|error| {
        CommandError::new(
            ErrorCode::TryAgain,
            format!(
                "the guest cart's node {} did not answer ({error}); nothing was merged, retry the merge",
                node.id
            ),
        )
    })?;
    let handed = match reply {
        PeerReply::Null => None,
        PeerReply::Array(mut parts) if parts.len() == 2 => {
            let (PeerReply::Bulk(id), PeerReply::Bulk(cart)) = (parts.remove(0), parts.remove(0))
            else {
                return Err(unexpected(&node.id));
            };
            Some(Handed {
                id,
                cart,
                from: node.id.clone(),
            })
        }
        PeerReply::Error(message) => return Err(peer_error(&node.id, &message)),
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
    let Some(layout) = &server.cluster else {
        return;
    };
    for (id, received) in server.store.handoffs_to_confirm() {
        if let Some(durability) = server.durability.get() {
            // Only a durable merge may let the giver drop the lines.
            durability.wal.wait_ack(received.lsn).await;
        }
        fault::check(server, FaultPoint::MergeAfterLog);
        let Some(node) = layout.nodes.iter().find(|node| node.id == received.from) else {
            tracing::warn!(node = %received.from, "a handoff from a node no longer in the layout");
            continue;
        };
        let words = [&b"CART.HANDOFF.DONE"[..], &received.guest_key, &id];
        match call(server, &node.addr(), &words).await {
            Ok(PeerReply::Simple(_)) => {
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

/// A peer's reply (RESP2).
#[derive(Debug, PartialEq)]
enum PeerReply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<PeerReply>),
}

/// Sends one command to the peer at `addr` and reads its reply, on the idle connection kept
/// for it or a new one (authenticated as `default` with `requirepass`, if set). A kept
/// connection that fails (the peer restarted since) is dropped and the command sent once
/// more on a new one: both handoff commands may be repeated.
async fn call(server: &Server, addr: &str, words: &[&[u8]]) -> Result<PeerReply, String> {
    let idle = server.handoff_links.idle.lock().remove(addr);
    if let Some(mut stream) = idle {
        if let Ok(reply) = exchange(&mut stream, words).await {
            server
                .handoff_links
                .idle
                .lock()
                .insert(addr.to_owned(), stream);
            return Ok(reply);
        }
    }
    let mut stream = connect(server, addr).await?;
    let reply = exchange(&mut stream, words).await?;
    server
        .handoff_links
        .idle
        .lock()
        .insert(addr.to_owned(), stream);
    Ok(reply)
}

async fn connect(server: &Server, addr: &str) -> Result<TcpStream, String> {
    let timeout = Duration::from_millis(PEER_TIMEOUT_MS);
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
    stream
        .set_nodelay(true)
        .map_err(|error| error.to_string())?;
    let password = &server.config.server.requirepass;
    if !password.is_empty() {
        let reply = exchange(&mut stream, &[b"AUTH", password.as_bytes()]).await?;
        if reply != PeerReply::Simple("OK".into()) {
            return Err(format!("{addr} refused AUTH: {reply:?}"));
        }
    }
    Ok(stream)
}

/// Writes one command and reads one reply, under [`PEER_TIMEOUT_MS`].
async fn exchange(stream: &mut TcpStream, words: &[&[u8]]) -> Result<PeerReply, String> {
    let mut request = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        request.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
        request.extend_from_slice(word);
        request.extend_from_slice(b"\r\n");
    }
    let round_trip = async {
        stream.write_all(&request).await?;
        let mut input = BytesMut::with_capacity(4096);
        loop {
            if let Some(reply) = parse_reply(&mut input)? {
                return Ok(reply);
            }
            if input.len() > HANDOFF_REPLY_BYTES_MAX {
                return Err(std::io::Error::other("the reply is too long"));
            }
            if stream.read_buf(&mut input).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(PEER_TIMEOUT_MS), round_trip)
        .await
        .map_err(|_| "no reply in time".to_string())?
        .map_err(|error: std::io::Error| error.to_string())
}

/// One complete reply taken off the front of `input`, `None` while it is incomplete.
fn parse_reply(input: &mut BytesMut) -> std::io::Result<Option<PeerReply>> {
    match parse_at(input, 0, 0)? {
        Some((reply, used)) => {
            input.advance(used);
            Ok(Some(reply))
        }
        None => Ok(None),
    }
}

/// The reply starting at `at` and where it ends; `depth` bounds nesting (a handoff reply is
/// an array of bulks).
fn parse_at(input: &[u8], at: usize, depth: u8) -> std::io::Result<Option<(PeerReply, usize)>> {
    let bad = |what: &str| std::io::Error::other(format!("a malformed reply: {what}"));
    let Some(end) = input[at..].windows(2).position(|pair| pair == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&input[at + 1..at + end]).map_err(|_| bad("not text"))?;
    let next = at + end + 2;
    let number = || line.parse::<i64>().map_err(|_| bad("a length"));
    let reply = match input.get(at) {
        Some(b'+') => (PeerReply::Simple(line.to_owned()), next),
        Some(b'-') => (PeerReply::Error(line.to_owned()), next),
        Some(b':') => (PeerReply::Integer(number()?), next),
        Some(b'$') if number()? < 0 => (PeerReply::Null, next),
        Some(b'$') => {
            let length = usize::try_from(number()?).map_err(|_| bad("a length"))?;
            if input.len() < next + length + 2 {
                return Ok(None);
            }
            let bulk = Bytes::copy_from_slice(&input[next..next + length]);
            (PeerReply::Bulk(bulk), next + length + 2)
        }
        Some(b'*') if number()? < 0 => (PeerReply::Null, next),
        Some(b'*') if depth < 2 => {
            let count = usize::try_from(number()?).map_err(|_| bad("a length"))?;
            let mut parts = Vec::with_capacity(count.min(16));
            let mut position = next;
            for _ in 0..count {
                let Some((part, after)) = parse_at(input, position, depth + 1)? else {
                    return Ok(None);
                };
                parts.push(part);
                position = after;
            }
            (PeerReply::Array(parts), position)
        }
        _ => return Err(bad("an unexpected type")),
    };
    Ok(Some(reply))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_handoff_reply_in_pieces() {
        let whole = b"*2\r\n$2\r\nid\r\n$4\r\ncart\r\n";
        for cut in 0..whole.len() {
            let mut input = BytesMut::from(&whole[..cut]);
            assert_eq!(parse_reply(&mut input).unwrap(), None, "cut at {cut}");
        }
        let mut input = BytesMut::from(&whole[..]);
        let reply = parse_reply(&mut input).unwrap().unwrap();
        let expected = PeerReply::Array(vec![
            PeerReply::Bulk(Bytes::from_static(b"id")),
            PeerReply::Bulk(Bytes::from_static(b"cart")),
        ]);
        assert_eq!(reply, expected);
        assert!(input.is_empty());
    }

    #[test]
    fn parses_null_status_and_error() {
        for (wire, expected) in [
            (&b"$-1\r\n"[..], PeerReply::Null),
            (b"+OK\r\n", PeerReply::Simple("OK".into())),
            (b"-FROZEN cart\r\n", PeerReply::Error("FROZEN cart".into())),
        ] {
            let mut input = BytesMut::from(wire);
            assert_eq!(parse_reply(&mut input).unwrap(), Some(expected));
        }
    }
}
