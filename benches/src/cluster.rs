//! Redis Cluster routing for the harness, the same for a cartd cluster and a Redis Cluster:
//! the slot map read from `CLUSTER SLOTS`, each key's slot (the workspace's cluster crate:
//! Redis's CRC16 with hash tags), `-MOVED slot host:port` parsed, and [`Nodes`]: one worker's
//! connection to each primary, sending a batch of requests each to the primary owning its
//! slot, following MOVED by refreshing the map. The scenarios that use it are in
//! `scenario/cluster.rs`.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use redis_protocol::resp2::types::BytesFrame;

use crate::resp::{push_command, Conn};

pub use cartd_cluster::{key_slot, SLOTS};

/// Times one request follows MOVED within a batch before it counts as an error.
pub const REDIRECTS_PER_REQUEST_MAX: usize = 5;
/// Milliseconds each `WAIT` of the harness waits for replicas at most.
pub const WAIT_TIMEOUT_MS: u64 = 1_000;

/// Who serves each slot: the primaries in the order `CLUSTER SLOTS` first names them.
#[derive(Debug, Clone)]
pub struct SlotMap {
    primaries: Vec<SocketAddr>,
    /// Index into `primaries` per slot; `None` for a slot nobody serves.
    owner: Vec<Option<usize>>,
    /// Replicas `CLUSTER SLOTS` lists beside each primary (the most for any range).
    replicas_per_primary: usize,
}

impl SlotMap {
    /// Reads the map from `seed` (any node of the cluster).
    pub async fn fetch(seed: SocketAddr) -> anyhow::Result<SlotMap> {
        let mut conn = Conn::connect(seed, None)
            .await
            .with_context(|| format!("{seed}: cannot connect to read CLUSTER SLOTS"))?;
        let reply = conn.call(&[b"CLUSTER", b"SLOTS"]).await?;
        if let Some(error) = reply.error() {
            bail!("{seed}: CLUSTER SLOTS refused ({error}): is it a cluster node?");
        }
        SlotMap::parse(&reply.frame, seed.ip())
    }

    /// Parses a `CLUSTER SLOTS` reply; a node listed with no host (Redis before it knows its
    /// own address) is taken to be on `seed_ip`.
    pub fn parse(frame: &BytesFrame, seed_ip: IpAddr) -> anyhow::Result<SlotMap> {
        let BytesFrame::Array(ranges) = frame else {
            bail!("CLUSTER SLOTS answered {frame:?}, not an array");
        };
        let mut map = SlotMap {
            primaries: Vec::new(),
            owner: vec![None; usize::from(SLOTS)],
            replicas_per_primary: 0,
        };
        for range in ranges {
            let BytesFrame::Array(fields) = range else {
                bail!("a CLUSTER SLOTS entry is {range:?}, not an array");
            };
            let (Some(start), Some(end), Some(primary)) = (
                fields.first().and_then(integer),
                fields.get(1).and_then(integer),
                fields.get(2),
            ) else {
                bail!("a CLUSTER SLOTS entry lacks its range or primary: {fields:?}");
            };
            if start > end || end >= i64::from(SLOTS) || start < 0 {
                bail!("CLUSTER SLOTS lists the range {start}-{end}");
            }
            let primary = node_addr(primary, seed_ip)?;
            let index = map.index_of(primary);
            for slot in start..=end {
                map.owner[slot as usize] = Some(index);
            }
            map.replicas_per_primary = map.replicas_per_primary.max(fields.len() - 3);
        }
        Ok(map)
    }

    fn index_of(&mut self, addr: SocketAddr) -> usize {
        match self.primaries.iter().position(|known| *known == addr) {
            Some(index) => index,
            None => {
                self.primaries.push(addr);
                self.primaries.len() - 1
            }
        }
    }

    /// The primary serving `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<SocketAddr> {
        self.owner[usize::from(slot)].map(|index| self.primaries[index])
    }

    /// Records what a MOVED said, until the next refresh.
    pub fn moved(&mut self, slot: u16, addr: SocketAddr) {
        let index = self.index_of(addr);
        self.owner[usize::from(slot)] = Some(index);
    }

    /// Every primary that serves a slot.
    pub fn primaries(&self) -> Vec<SocketAddr> {
        let mut serving: Vec<SocketAddr> = self
            .primaries
            .iter()
            .enumerate()
            .filter(|(index, _)| self.owner.contains(&Some(*index)))
            .map(|(_, addr)| *addr)
            .collect();
        serving.sort_unstable();
        serving
    }

    /// Replicas listed beside a primary (the most for any range).
    pub fn replicas_per_primary(&self) -> usize {
        self.replicas_per_primary
    }

    /// Slots no primary serves.
    pub fn unserved_slots(&self) -> usize {
        self.owner.iter().filter(|owner| owner.is_none()).count()
    }
}

fn integer(frame: &BytesFrame) -> Option<i64> {
    match frame {
        BytesFrame::Integer(value) => Some(*value),
        _ => None,
    }
}

/// A node as CLUSTER SLOTS lists it: `[host, port, id, ...]`.
fn node_addr(frame: &BytesFrame, seed_ip: IpAddr) -> anyhow::Result<SocketAddr> {
    let BytesFrame::Array(fields) = frame else {
        bail!("a CLUSTER SLOTS node is {frame:?}, not an array");
    };
    let host = match fields.first() {
        Some(BytesFrame::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
        other => bail!("a CLUSTER SLOTS node's host is {other:?}"),
    };
    let port = fields
        .get(1)
        .and_then(integer)
        .and_then(|port| u16::try_from(port).ok())
        .ok_or_else(|| anyhow!("a CLUSTER SLOTS node has no port: {fields:?}"))?;
    Ok(SocketAddr::new(host_ip(&host, seed_ip)?, port))
}

fn host_ip(host: &str, seed_ip: IpAddr) -> anyhow::Result<IpAddr> {
    if host.is_empty() || host == "?" {
        return Ok(seed_ip);
    }
    host.parse()
        .with_context(|| format!("the cluster names a node by {host:?}, not an IP address"))
}

/// The slot and address of a `MOVED slot host:port` error, or `None` for any other error.
pub fn parse_moved(error: &str, seed_ip: IpAddr) -> Option<(u16, SocketAddr)> {
    parse_redirect(error.strip_prefix("MOVED ")?, seed_ip)
}

/// The slot and address of an `ASK slot host:port` error (the slot is moving there and this
/// key has gone already), or `None` for any other error.
pub fn parse_ask(error: &str, seed_ip: IpAddr) -> Option<(u16, SocketAddr)> {
    parse_redirect(error.strip_prefix("ASK ")?, seed_ip)
}

fn parse_redirect(rest: &str, seed_ip: IpAddr) -> Option<(u16, SocketAddr)> {
    let mut words = rest.split_whitespace();
    let slot: u16 = words.next()?.parse().ok().filter(|slot| *slot < SLOTS)?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    let ip = host_ip(host, seed_ip).ok()?;
    Some((slot, SocketAddr::new(ip, port.parse().ok()?)))
}

/// Requests written one after another into one buffer, each with the slot of its key.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    requests: Vec<(u16, Range<usize>)>,
}

impl Batch {
    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.requests.clear();
    }

    /// Appends one request routed by `slot`; `write` appends its bytes (one reply).
    pub fn push(&mut self, slot: u16, write: impl FnOnce(&mut Vec<u8>) -> usize) {
        let start = self.bytes.len();
        let replies = write(&mut self.bytes);
        assert_eq!(replies, 1, "a routed request takes exactly one reply");
        self.requests.push((slot, start..self.bytes.len()));
    }

    /// Requests in the batch.
    pub fn len(&self) -> usize {
        self.requests.len()
    }
}

/// How one request of a batch ended.
#[derive(Debug)]
pub enum Answer {
    /// Acknowledged (and, with a WAIT, on enough replicas) at this instant.
    Done(Instant),
    /// The error the server sent, or what the harness found wrong.
    Failed(String),
}

/// What the WAITs of a run answered: reply value -> times.
pub type WaitReplies = BTreeMap<i64, u64>;

/// One worker's connections, one per primary it has sent to, and its own slot map.
pub struct Nodes {
    map: SlotMap,
    seed: SocketAddr,
    conns: Vec<(SocketAddr, Conn)>,
    /// MOVED replies followed.
    pub redirects: u64,
    /// Requests acknowledged per primary.
    pub done_per_primary: BTreeMap<SocketAddr, u64>,
    /// What each WAIT answered.
    pub wait_replies: WaitReplies,
}

impl Nodes {
    /// Starts from `map` (read once for all workers); connections open when first needed.
    pub fn new(map: SlotMap, seed: SocketAddr) -> Nodes {
        Nodes {
            map,
            seed,
            conns: Vec::new(),
            redirects: 0,
            done_per_primary: BTreeMap::new(),
            wait_replies: WaitReplies::new(),
        }
    }

    async fn conn(&mut self, addr: SocketAddr) -> io::Result<&mut Conn> {
        let at = self.conn_index(addr).await?;
        Ok(&mut self.conns[at].1)
    }

    /// Where `addr`'s connection is in `conns`, connecting first if there is none.
    async fn conn_index(&mut self, addr: SocketAddr) -> io::Result<usize> {
        match self.conns.iter().position(|(known, _)| *known == addr) {
            Some(at) => Ok(at),
            None => {
                self.conns.push((addr, Conn::connect(addr, None).await?));
                Ok(self.conns.len() - 1)
            }
        }
    }

    /// The connection to the primary serving `slot`: where a WAIT for that slot's writes goes.
    pub async fn conn_for(&mut self, slot: u16) -> io::Result<&mut Conn> {
        let addr = self.map.owner(slot).ok_or_else(|| unserved(slot))?;
        self.conn(addr).await
    }

    async fn refresh(&mut self) -> io::Result<()> {
        let map = SlotMap::fetch(self.seed)
            .await
            .map_err(|error| io::Error::other(format!("{error:#}")))?;
        self.map = map;
        Ok(())
    }

    /// Sends every request of `batch` to the primary owning its slot (followed, on each
    /// primary written to, by `WAIT replicas 1000` when `wait` is given) and reads the
    /// replies; `answers[i]` is how request `i` ended. A request answered MOVED is sent again
    /// where the refreshed map says, up to [`REDIRECTS_PER_REQUEST_MAX`] times. An
    /// acknowledged request whose WAIT answered fewer than `wait` replicas failed. Err: a
    /// connection was lost (the caller fails what has no answer yet).
    pub async fn exchange(
        &mut self,
        batch: &Batch,
        wait: Option<u32>,
        answers: &mut Vec<Option<Answer>>,
    ) -> io::Result<()> {
        answers.clear();
        answers.resize_with(batch.len(), || None);
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        for _ in 0..=REDIRECTS_PER_REQUEST_MAX {
            let mut asked = Vec::new();
            let moved = self
                .round(batch, &pending, wait, answers, &mut asked)
                .await?;
            for (index, to) in asked {
                self.redirects += 1;
                answers[index] = Some(self.ask(batch, index, to, wait).await?);
            }
            if moved.is_empty() {
                return Ok(());
            }
            self.redirects += moved.len() as u64;
            self.refresh().await?;
            pending = moved;
        }
        for index in pending {
            answers[index] = Some(Answer::Failed(format!(
                "still MOVED after {REDIRECTS_PER_REQUEST_MAX} redirects"
            )));
        }
        Ok(())
    }

    /// Sends request `index` once more, to `to` after ASKING, as an ASK reply says to (the
    /// slot map stays: the slot is still served where it was until it has moved).
    async fn ask(
        &mut self,
        batch: &Batch,
        index: usize,
        to: SocketAddr,
        wait: Option<u32>,
    ) -> io::Result<Answer> {
        let conn = self.conn(to).await?;
        push_command(&mut conn.out, &[b"ASKING"]);
        conn.out
            .extend_from_slice(&batch.bytes[batch.requests[index].1.clone()]);
        if let Some(replicas) = wait {
            push_wait(&mut conn.out, replicas);
        }
        conn.flush().await?;
        let asking = conn.reply().await?;
        let reply = conn.reply().await?;
        let waited = match wait {
            Some(replicas) => Some((replicas, conn.reply().await?)),
            None => None,
        };
        if let Some(error) = asking.error().or_else(|| reply.error()) {
            return Ok(Answer::Failed(error));
        }
        if let Some((replicas, reply)) = waited {
            let value = integer(&reply.frame).unwrap_or(-1);
            *self.wait_replies.entry(value).or_default() += 1;
            if value < i64::from(replicas) {
                let failure = format!("WAIT {replicas} {WAIT_TIMEOUT_MS} answered {value}");
                return Ok(Answer::Failed(failure));
            }
        }
        *self.done_per_primary.entry(to).or_default() += 1;
        Ok(Answer::Done(Instant::now()))
    }

    /// One round: write every pending request to its primary, then read every primary's
    /// replies. Returns the requests answered MOVED (the map already says where they go);
    /// those answered ASK are in `asked`, with where to ask.
    async fn round(
        &mut self,
        batch: &Batch,
        pending: &[usize],
        wait: Option<u32>,
        answers: &mut [Option<Answer>],
        asked: &mut Vec<(usize, SocketAddr)>,
    ) -> io::Result<Vec<usize>> {
        let mut by_primary: Vec<(SocketAddr, Vec<usize>)> = Vec::new();
        for &index in pending {
            let slot = batch.requests[index].0;
            let Some(addr) = self.map.owner(slot) else {
                answers[index] = Some(Answer::Failed(unserved(slot).to_string()));
                continue;
            };
            match by_primary.iter_mut().find(|(known, _)| *known == addr) {
                Some((_, indexes)) => indexes.push(index),
                None => by_primary.push((addr, vec![index])),
            }
        }
        // Every primary gets its part before any reply is read, so they work at once.
        for (addr, indexes) in &by_primary {
            let conn = self.conn(*addr).await?;
            for &index in indexes {
                conn.out
                    .extend_from_slice(&batch.bytes[batch.requests[index].1.clone()]);
            }
            if let Some(replicas) = wait {
                push_wait(&mut conn.out, replicas);
            }
            conn.flush().await?;
        }
        let mut moved = Vec::new();
        for (addr, indexes) in &by_primary {
            let redirected = (&mut moved, &mut *asked);
            self.read_replies(*addr, indexes, wait, answers, redirected)
                .await?;
        }
        Ok(moved)
    }

    /// Reads one primary's replies to `indexes` (and its WAIT's); a MOVED goes to `moved`,
    /// an ASK to `asked`.
    async fn read_replies(
        &mut self,
        addr: SocketAddr,
        indexes: &[usize],
        wait: Option<u32>,
        answers: &mut [Option<Answer>],
        (moved, asked): (&mut Vec<usize>, &mut Vec<(usize, SocketAddr)>),
    ) -> io::Result<()> {
        let seed_ip = self.seed.ip();
        let at = self.conn_index(addr).await?;
        let conn = &mut self.conns[at].1;
        let mut acknowledged = Vec::with_capacity(indexes.len());
        for &index in indexes {
            let reply = conn.reply().await?;
            match reply.error() {
                None => acknowledged.push(index),
                Some(error) => {
                    if let Some((slot, to)) = parse_moved(&error, seed_ip) {
                        self.map.moved(slot, to);
                        moved.push(index);
                    } else if let Some((_, to)) = parse_ask(&error, seed_ip) {
                        asked.push((index, to));
                    } else {
                        answers[index] = Some(Answer::Failed(error));
                    }
                }
            }
        }
        let short = match wait {
            Some(replicas) => {
                let reply = conn.reply().await?;
                let value = integer(&reply.frame).unwrap_or(-1);
                *self.wait_replies.entry(value).or_default() += 1;
                (value < i64::from(replicas)).then(|| match reply.error() {
                    Some(error) => format!("WAIT refused: {error}"),
                    None => format!("WAIT {replicas} {WAIT_TIMEOUT_MS} answered {value}"),
                })
            }
            None => None,
        };
        let now = Instant::now();
        if short.is_none() {
            *self.done_per_primary.entry(addr).or_default() += acknowledged.len() as u64;
        }
        for index in acknowledged {
            answers[index] = Some(match &short {
                Some(failure) => Answer::Failed(failure.clone()),
                None => Answer::Done(now),
            });
        }
        Ok(())
    }
}

/// Appends `WAIT replicas 1000`.
pub fn push_wait(buf: &mut Vec<u8>, replicas: u32) {
    let (replicas, timeout_ms) = (replicas.to_string(), WAIT_TIMEOUT_MS.to_string());
    push_command(buf, &[b"WAIT", replicas.as_bytes(), timeout_ms.as_bytes()]);
}

fn unserved(slot: u16) -> io::Error {
    io::Error::other(format!(
        "slot {slot} is served by no primary in CLUSTER SLOTS"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(text: &str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn node(host: &str, port: i64) -> BytesFrame {
        BytesFrame::Array(vec![bulk(host), BytesFrame::Integer(port), bulk("id")])
    }

    #[test]
    fn a_slots_reply_maps_every_slot_to_its_primary() {
        let seed: IpAddr = [127, 0, 0, 1].into();
        let reply = BytesFrame::Array(vec![
            BytesFrame::Array(vec![
                BytesFrame::Integer(0),
                BytesFrame::Integer(8191),
                node("127.0.0.1", 7001),
                node("127.0.0.1", 7003),
            ]),
            BytesFrame::Array(vec![
                BytesFrame::Integer(8192),
                BytesFrame::Integer(16383),
                node("", 7002),
            ]),
        ]);
        let map = SlotMap::parse(&reply, seed).unwrap();
        assert_eq!(map.owner(0), Some(([127, 0, 0, 1], 7001).into()));
        assert_eq!(map.owner(16383), Some(([127, 0, 0, 1], 7002).into()));
        assert_eq!(map.primaries().len(), 2);
        assert_eq!(map.replicas_per_primary(), 1);
        assert_eq!(map.unserved_slots(), 0);
    }

    #[test]
    fn moved_names_a_slot_and_an_address() {
        let seed: IpAddr = [127, 0, 0, 1].into();
        let to = SocketAddr::from(([127, 0, 0, 1], 7002));
        assert_eq!(
            parse_moved("MOVED 3999 127.0.0.1:7002", seed),
            Some((3999, to))
        );
        assert_eq!(parse_moved("MOVED 3999 :7002", seed), Some((3999, to)));
        assert_eq!(parse_moved("MOVED 16384 127.0.0.1:7002", seed), None);
        assert_eq!(parse_moved("ERR no", seed), None);
        assert_eq!(parse_ask("ASK 3999 127.0.0.1:7002", seed), Some((3999, to)));
        assert_eq!(parse_moved("ASK 3999 127.0.0.1:7002", seed), None);
    }
}
