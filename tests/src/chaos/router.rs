//! [`Router`]: a cluster-aware client of its own, as Redis Cluster clients route: a slot map
//! from `CLUSTER SLOTS`, one connection per node, `-MOVED` followed and the map read again
//! after any failure. Not redis-rs's cluster client: `WAIT` must go down the connection its
//! write went down, and the chaos records name the node that acknowledged each write.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

/// Slots in a Redis cluster.
pub const SLOTS: usize = 16_384;

/// The longest one request may take (a `WAIT 1 2000` included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The slot map is read again at most this often (a dead node makes every request fail).
const REFRESH_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// `-MOVED` redirections followed for one request.
const REDIRECTS_MAX: usize = 3;

/// The key's cluster slot: CRC16 (XMODEM) mod 16384, computed here rather than asked, so the
/// harness is an oracle of its own. The chaos keys have no hash tag.
pub fn slot(key: &str) -> usize {
    let mut crc: u16 = 0;
    for byte in key.bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    usize::from(crc) % SLOTS
}

/// A reply, and which node gave it when.
#[derive(Debug, Clone)]
pub struct Replied {
    /// The reply.
    pub value: Value,
    /// The address of the node that gave it.
    pub from: SocketAddr,
    /// When the request that got it was sent to that node (the last attempt's, after any
    /// `-MOVED`).
    pub sent_at: Instant,
}

/// A client of one cluster: its own connections, its own slot map.
pub struct Router {
    /// Every node's address: where the map is asked for.
    seeds: Vec<SocketAddr>,
    /// The node serving each slot, as last learned (`None`: not known).
    owner_by_slot: Vec<Option<SocketAddr>>,
    conns: HashMap<SocketAddr, MultiplexedConnection>,
    /// The map may be out of date: read it before the next request.
    stale: bool,
    refreshed_at: Option<Instant>,
    /// The node asked first next time (rotates, so a dead node is not always first).
    ask_next: usize,
}

impl Router {
    /// A router knowing the nodes at `seeds`, its map not read yet.
    pub fn new(seeds: Vec<SocketAddr>) -> Router {
        Router {
            seeds,
            owner_by_slot: vec![None; SLOTS],
            conns: HashMap::new(),
            stale: true,
            refreshed_at: None,
            ask_next: 0,
        }
    }

    /// Sends `command` (whose key is `key`) to the node serving the key's slot, following
    /// `-MOVED`; the reply, the node that gave it and when it was asked.
    pub async fn send(&mut self, key: &str, command: &redis::Cmd) -> Result<Replied, String> {
        let slot = slot(key);
        let mut last = String::new();
        for _ in 0..REDIRECTS_MAX {
            if self.stale || self.owner_by_slot[slot].is_none() {
                self.refresh().await;
            }
            let Some(node) = self.owner_by_slot[slot] else {
                self.stale = true;
                return Err(format!("no node serves slot {slot}"));
            };
            let sent_at = Instant::now();
            match self.send_to(node, command).await {
                Ok(value) => {
                    return Ok(Replied {
                        value,
                        from: node,
                        sent_at,
                    })
                }
                Err(error) => {
                    if let Some((addr, moved_slot)) = error.redirect_node() {
                        self.owner_by_slot[usize::from(moved_slot)] = addr.parse().ok();
                        self.stale = true;
                        last = error.to_string();
                        continue;
                    }
                    self.failed(node, &error);
                    return Err(format!("{node}: {error}"));
                }
            }
        }
        Err(format!("too many redirections: {last}"))
    }

    /// Sends `command` to the node at `node` (a keyless command, or WAIT after a write).
    pub async fn send_to(
        &mut self,
        node: SocketAddr,
        command: &redis::Cmd,
    ) -> redis::RedisResult<Value> {
        let conn = self.conn(node).await?;
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, command.query_async(conn)).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no reply in time",
            ))),
        };
        if let Err(error) = &result {
            if error.redirect_node().is_none() {
                self.failed(node, error);
            }
        }
        result
    }

    /// The node now serving `slot`, reading the map if it is out of date.
    pub async fn owner(&mut self, slot: usize) -> Option<SocketAddr> {
        if self.stale {
            self.refresh().await;
        }
        self.owner_by_slot[slot]
    }

    /// After a failure on `node`: a broken connection is dropped, and the map read again.
    fn failed(&mut self, node: SocketAddr, error: &redis::RedisError) {
        if error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error() {
            self.conns.remove(&node);
        }
        self.stale = true;
    }

    /// The connection to `node`, made if there is none.
    async fn conn(&mut self, node: SocketAddr) -> redis::RedisResult<&mut MultiplexedConnection> {
        match self.conns.entry(node) {
            Entry::Occupied(kept) => Ok(kept.into_mut()),
            Entry::Vacant(none) => Ok(none.insert(connect(node).await?)),
        }
    }

    /// Reads `CLUSTER SLOTS` from the first node that answers (at most every 100 ms).
    async fn refresh(&mut self) {
        if self
            .refreshed_at
            .is_some_and(|at| at.elapsed() < REFRESH_INTERVAL_MIN)
        {
            return;
        }
        self.refreshed_at = Some(Instant::now());
        for _ in 0..self.seeds.len() {
            let seed = self.seeds[self.ask_next % self.seeds.len()];
            self.ask_next += 1;
            let Ok(reply) = self
                .send_to(seed, &redis::cmd("CLUSTER").arg("SLOTS").clone())
                .await
            else {
                continue;
            };
            if let Some(map) = slot_map(&reply) {
                self.owner_by_slot = map;
                self.stale = false;
                return;
            }
        }
    }
}

/// A connection to `node` with the harness's timeouts (redis-rs's default response timeout,
/// 500 ms, is shorter than a `WAIT 1 2000`).
pub async fn connect(node: SocketAddr) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{node}/"))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(REQUEST_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// The owner of every slot from a `CLUSTER SLOTS` reply (`[start, end, [host, port, id],
/// replicas...]` per range; the host an IP address, as cartd's layouts give it).
pub fn slot_map(reply: &Value) -> Option<Vec<Option<SocketAddr>>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut map = vec![None; SLOTS];
    for range in ranges {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        let (Some(host), Some(Value::Int(port))) = (primary.first(), primary.get(1)) else {
            return None;
        };
        let host: std::net::IpAddr = match host {
            Value::BulkString(host) => std::str::from_utf8(host).ok()?.parse().ok()?,
            Value::SimpleString(host) => host.parse().ok()?,
            _ => return None,
        };
        let node = SocketAddr::new(host, u16::try_from(*port).ok()?);
        for slot in usize::try_from(*start).ok()?..=usize::try_from(*end).ok()? {
            *map.get_mut(slot)? = Some(node);
        }
    }
    Some(map)
}
