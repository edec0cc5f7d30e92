//! Request-and-reply calls from this node to another primary (a gift card's owner): each call
//! takes a connection of that peer's small pool (made when none is idle, kept after a call
//! that went well), at most [`PEER_CALLS_IN_FLIGHT_MAX`] at once per peer, each reply awaited
//! within [`PEER_TIMEOUT_MS`](crate::limits::PEER_TIMEOUT_MS). The push link (`link.rs`)
//! stays its own: a slow call never holds up the sharing of the catalog.
//!
//! Every call sent here may be repeated (GIFTSYNC is keyed by the checkout token; a
//! forwarded GIFTCARD.SET or DEL sets the same state again), so a call on a kept connection
//! that turns out dead (the peer restarted) is sent once more on a fresh one.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::link::{Link, LinkResult};
use super::wire::Value;
use crate::limits::PEER_CALLS_IN_FLIGHT_MAX;

/// The call pools of this node, one per other node called, made at its first call (a node
/// met at run time too).
pub struct Calls {
    topology: Arc<cluster::Topology>,
    /// By the peer's index in the layout.
    by_node: Mutex<HashMap<usize, Arc<PeerCalls>>>,
}

struct PeerCalls {
    addr: String,
    idle: Mutex<Vec<Link>>,
    in_flight: Semaphore,
}

impl Calls {
    /// No pools yet: one is made for each node of the layout in force when it is first called.
    pub fn new(topology: Arc<cluster::Topology>) -> Calls {
        Calls {
            topology,
            by_node: Mutex::new(HashMap::new()),
        }
    }

    /// The pool of the node at layout index `node` (another, known node), made anew when the
    /// node's address changed.
    fn pool(&self, node: usize) -> Result<Arc<PeerCalls>, String> {
        let layout = self.topology.load();
        let addr = layout
            .nodes
            .get(node)
            .filter(|peer| node != layout.me && !peer.forgotten)
            .map(cluster::Node::dial_addr)
            .ok_or_else(|| format!("node {node} is not another node of the cluster"))?;
        let mut pools = self.by_node.lock();
        if let Some(pool) = pools.get(&node).filter(|pool| pool.addr == addr) {
            return Ok(pool.clone());
        }
        let pool = Arc::new(PeerCalls {
            addr,
            idle: Mutex::new(Vec::new()),
            in_flight: Semaphore::new(PEER_CALLS_IN_FLIGHT_MAX),
        });
        pools.insert(node, pool.clone());
        Ok(pool)
    }

    /// Sends `words` to the peer at layout index `node` and returns its reply (an error reply
    /// too); `Err` when it could not be asked or did not answer in time.
    pub async fn call(&self, node: usize, words: &[&[u8]]) -> LinkResult<Value> {
        let peer = self.pool(node)?;
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
