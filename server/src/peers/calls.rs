//! Request-and-reply calls from this node to another primary (a gift card's owner): each call
//! takes a connection of that peer's small pool (made when none is idle, kept after a call
//! that went well), at most [`PEER_CALLS_IN_FLIGHT_MAX`] at once per peer, each reply awaited
//! within [`PEER_TIMEOUT_MS`](crate::limits::PEER_TIMEOUT_MS). The push link (`link.rs`)
//! stays its own: a slow call never holds up the sharing of the catalog.
//!
//! Every call sent here may be repeated (GIFTSYNC is keyed by the checkout token; a
//! forwarded GIFTCARD.SET or DEL sets the same state again), so a call on a kept connection
//! that turns out dead (the peer restarted) is sent once more on a fresh one.

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::link::{Link, LinkResult};
use super::wire::Value;
use crate::limits::PEER_CALLS_IN_FLIGHT_MAX;

/// The call pools of this node, one per other primary.
pub struct Calls {
    /// By the peer's index in the layout; `None` for this node.
    by_node: Vec<Option<PeerCalls>>,
}

struct PeerCalls {
    addr: String,
    idle: Mutex<Vec<Link>>,
    in_flight: Semaphore,
}

impl Calls {
    /// A pool for every other node of `layout` (any of them may be a primary later).
    pub fn new(layout: &cluster::Layout) -> Calls {
        let by_node = layout
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                (index != layout.me).then(|| PeerCalls {
                    addr: node.dial_addr(),
                    idle: Mutex::new(Vec::new()),
                    in_flight: Semaphore::new(PEER_CALLS_IN_FLIGHT_MAX),
                })
            })
            .collect();
        Calls { by_node }
    }

    /// Sends `words` to the peer at layout index `node` and returns its reply (an error reply
    /// too); `Err` when it could not be asked or did not answer in time.
    pub async fn call(&self, node: usize, words: &[&[u8]]) -> LinkResult<Value> {
        let peer = self
            .by_node
            .get(node)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("node {node} is not another primary"))?;
        let _permit = peer
            .in_flight
            .acquire()
            .await
            .map_err(|_| "the calls are closed".to_string())?;
        let kept = peer.idle.lock().pop();
        let value = match kept {
            Some(mut link) => match link.call(words).await {
                Ok(value) => Ok((link, value)),
                Err(_) => Self::call_fresh(&peer.addr, words).await,
            },
            None => Self::call_fresh(&peer.addr, words).await,
        };
        let (link, value) = value?;
        let mut idle = peer.idle.lock();
        if idle.len() < PEER_CALLS_IN_FLIGHT_MAX {
            idle.push(link);
        }
        Ok(value)
    }

    async fn call_fresh(addr: &str, words: &[&[u8]]) -> LinkResult<(Link, Value)> {
        let mut link = Link::connect(addr).await?;
        let value = link.call(words).await?;
        Ok((link, value))
    }
}
