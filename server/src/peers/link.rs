//! One link to one peer primary: connect (again and again while it is down), push what is
//! queued, and on a primary compare digests and pull what differs. Requests go one batch at a
//! time and every reply is awaited with [`PEER_TIMEOUT_MS`], so the link never runs ahead of
//! the peer; any failure drops the connection and the link starts over (nothing is lost that
//! the next digest comparison would not bring over).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use persistence::Space;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::wire::{self, Value};
use super::Peer;
use crate::limits::{
    PEER_PUSH_BATCH_MAX, PEER_REPLY_BYTES_MAX, PEER_RETRY_MS, PEER_SYNC_INTERVAL_MS,
    PEER_TIMEOUT_MS,
};
use crate::server::{now_ms, Server};
use crate::store::shared::SharedChange;
use crate::store::stamps::{Stamp, STAMP_BUCKETS};

pub(crate) type LinkResult<T> = Result<T, String>;

/// Runs the link to `peer` until the server stops.
pub async fn run(server: Arc<Server>, peer: Arc<Peer>, mut queue: mpsc::Receiver<SharedChange>) {
    let mut reported = false;
    loop {
        let addr = current_addr(&server, &peer);
        let connected = tokio::select! {
            connected = Link::connect(&addr) => connected,
            () = server.shutdown.cancelled() => return,
        };
        match connected {
            Ok(mut link) => {
                peer.connected.store(true, Ordering::Relaxed);
                debug!(peer = %peer.id, "peer link up");
                reported = false;
                let ended = link.serve(&server, &peer, &mut queue).await;
                peer.connected.store(false, Ordering::Relaxed);
                match ended {
                    Ok(()) => return, // The server stops.
                    Err(why) => warn!(peer = %peer.id, %why, "peer link lost; connecting again"),
                }
            }
            Err(error) if !reported => {
                debug!(peer = %peer.id, %error, "peer not reachable; trying again");
                reported = true;
            }
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(PEER_RETRY_MS)) => {}
            () = server.shutdown.cancelled() => return,
        }
    }
}

/// One request to the node at `addr` (`host:port`) on a connection of its own, and its reply
/// (an error reply too): a node met or told of a change (`crate::membership`).
pub(crate) async fn call_once(addr: &str, words: &[&[u8]]) -> LinkResult<Value> {
    let mut link = Link::connect(addr).await?;
    link.call(words).await
}

/// Where the peer's group has its primary now.
fn current_addr(server: &Server, peer: &Peer) -> String {
    let layout = server.layout().expect("peers run in cluster mode");
    peer.addr(&layout)
}

/// One RESP connection to another node: the push link's, one of the gift card calls'
/// (`calls.rs`), or a MIGRATE's to its target (`crate::migration`).
pub(crate) struct Link {
    stream: TcpStream,
    buffer: BytesMut,
    /// How long a connect, a write or one reply may take.
    timeout: Duration,
}

/// Credentials to `AUTH` with: a user (or the default one) and a password.
pub(crate) type Credentials<'a> = (Option<&'a str>, &'a str);

impl Link {
    /// Connects to `addr` within [`PEER_TIMEOUT_MS`], and authenticates with the password
    /// the nodes share (`requirepass`), if there is one.
    pub(super) async fn connect(addr: &str) -> LinkResult<Link> {
        let shared = super::shared_password().map(|password| (None, password));
        let timeout = Duration::from_millis(PEER_TIMEOUT_MS);
        Link::connect_as(addr, shared, timeout).await
    }

    /// Connects to `addr` within `timeout` (which bounds every later write and reply too),
    /// and authenticates with `credentials`, if any.
    pub(crate) async fn connect_as(
        addr: &str,
        credentials: Option<Credentials<'_>>,
        timeout: Duration,
    ) -> LinkResult<Link> {
        let millis = timeout.as_millis();
        let mut link = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Link {
                    stream,
                    buffer: BytesMut::new(),
                    timeout,
                }
            }
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err(format!("no connection within {millis} ms")),
        };
        if let Some((user, password)) = credentials {
            let mut words: Vec<&[u8]> = vec![b"AUTH"];
            words.extend(user.map(str::as_bytes));
            words.push(password.as_bytes());
            match link.call(&words).await? {
                Value::Simple(ok) if ok == "OK" => {}
                other => return Err(format!("{addr} refused AUTH: {other:?}")),
            }
        }
        Ok(link)
    }

    /// Sends one request and reads its reply, an error reply included.
    pub(crate) async fn call(&mut self, words: &[&[u8]]) -> LinkResult<Value> {
        let mut out = Vec::new();
        wire::encode(words, &mut out);
        self.write(&out).await?;
        self.read().await
    }

    /// Sends `requests` in one write and reads a reply to each (error replies included).
    pub(crate) async fn calls(&mut self, requests: &[Vec<&[u8]>]) -> LinkResult<Vec<Value>> {
        let mut out = Vec::new();
        for words in requests {
            wire::encode(words, &mut out);
        }
        self.write(&out).await?;
        let mut replies = Vec::with_capacity(requests.len());
        for _ in requests {
            replies.push(self.read().await?);
        }
        Ok(replies)
    }

    /// Compares digests at once, then pushes and compares as they come.
    /// `Ok` when the server stops.
    async fn serve(
        &mut self,
        server: &Server,
        peer: &Peer,
        queue: &mut mpsc::Receiver<SharedChange>,
    ) -> LinkResult<()> {
        self.sync(server, peer).await?;
        let period = Duration::from_millis(PEER_SYNC_INTERVAL_MS);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                first = queue.recv() => {
                    let Some(first) = first else { return Ok(()) };
                    let mut batch = vec![first];
                    while batch.len() < PEER_PUSH_BATCH_MAX {
                        match queue.try_recv() {
                            Ok(change) => batch.push(change),
                            Err(_) => break,
                        }
                    }
                    self.push(peer, &batch).await?;
                }
                _ = interval.tick() => self.sync(server, peer).await?,
                () = server.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Pushes a batch of changes in one write, then reads a reply to each. A change the peer
    /// refuses (it is still loading, say) is left to the digest comparison.
    async fn push(&mut self, peer: &Peer, batch: &[SharedChange]) -> LinkResult<()> {
        let mut out = Vec::new();
        for change in batch {
            encode_change(change, &mut out);
        }
        self.write(&out).await?;
        for _ in batch {
            if let Value::Error(error) = self.read().await? {
                debug!(peer = %peer.id, %error, "a pushed change was refused");
            }
        }
        peer.pushed.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Compares every stamp bucket's digest with the peer's and pulls each bucket that
    /// differs, applying what is newer than here.
    async fn sync(&mut self, server: &Server, peer: &Peer) -> LinkResult<()> {
        let theirs = match self.request(&[b"REFSYNC", b"DIGEST"]).await? {
            Value::Array(Some(items)) if items.len() == STAMP_BUCKETS => items,
            other => return Err(format!("REFSYNC DIGEST answered {other:?}")),
        };
        peer.syncs.fetch_add(1, Ordering::Relaxed);
        let ours = server.store.shared_digests();
        for (bucket, (their, our)) in theirs.iter().zip(ours).enumerate() {
            if *their == Value::Integer(our as i64) {
                continue;
            }
            let index = bucket.to_string();
            let entries = match self
                .request(&[b"REFSYNC", b"PULL", index.as_bytes()])
                .await?
            {
                Value::Array(Some(entries)) => entries,
                other => return Err(format!("REFSYNC PULL answered {other:?}")),
            };
            for entry in &entries {
                let change = decode_change(entry)?;
                match server.store.apply_shared(&change, now_ms()) {
                    Ok(true) => {
                        peer.pulled.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(why) => warn!(peer = %peer.id, %why, "a pulled change is refused"),
                }
            }
        }
        Ok(())
    }

    async fn request(&mut self, words: &[&[u8]]) -> LinkResult<Value> {
        match self.call(words).await? {
            Value::Error(error) => Err(format!("{} answered {error}", show(words))),
            value => Ok(value),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> LinkResult<()> {
        match tokio::time::timeout(self.timeout, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("a write took over {} ms", self.timeout.as_millis())),
        }
    }

    /// The next reply, within the link's timeout.
    async fn read(&mut self) -> LinkResult<Value> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some((value, used)) = wire::parse(&self.buffer)? {
                let _ = self.buffer.split_to(used);
                return Ok(value);
            }
            if self.buffer.len() > PEER_REPLY_BYTES_MAX {
                return Err(format!("a reply over {PEER_REPLY_BYTES_MAX} bytes"));
            }
            self.buffer.reserve(64 * 1024);
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buffer));
            match read.await {
                Ok(Ok(0)) => return Err("the peer closed the link".into()),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error.to_string()),
                Err(_) => {
                    let millis = self.timeout.as_millis();
                    return Err(format!("no reply within {millis} ms"));
                }
            }
        }
    }
}

fn show(words: &[&[u8]]) -> String {
    let words: Vec<_> = words
        .iter()
        .map(|word| String::from_utf8_lossy(word))
        .collect();
    words.join(" ")
}

/// The wire name of a shared space.
pub fn space_name(space: Space) -> &'static str {
    match space {
        Space::Catalog => "catalog",
        Space::Promotion => "promotion",
        Space::Cart | Space::GiftCard | Space::Handoff => {
            unreachable!("only catalog entries and promotions are shared")
        }
    }
}

/// The shared space a wire name names.
pub fn space_named(name: &[u8]) -> Option<Space> {
    match name {
        b"catalog" => Some(Space::Catalog),
        b"promotion" => Some(Space::Promotion),
        _ => None,
    }
}

fn encode_change(change: &SharedChange, out: &mut Vec<u8>) {
    let at_ms = change.stamp.at_ms.to_string();
    let origin = change.stamp.origin.to_string();
    let space = space_name(change.space).as_bytes();
    let head: [&[u8]; 2] = [b"REFSYNC", b"SET"];
    match &change.image {
        Some(image) => wire::encode(
            &[
                head[0],
                head[1],
                space,
                &change.key,
                at_ms.as_bytes(),
                origin.as_bytes(),
                image,
            ],
            out,
        ),
        None => wire::encode(
            &[
                head[0],
                b"DEL",
                space,
                &change.key,
                at_ms.as_bytes(),
                origin.as_bytes(),
            ],
            out,
        ),
    }
}

/// One entry of a `REFSYNC PULL` reply: `[space, key, at_ms, origin, image or null]`.
fn decode_change(entry: &Value) -> LinkResult<SharedChange> {
    let bad = || format!("a pulled entry {entry:?}");
    let Value::Array(Some(fields)) = entry else {
        return Err(bad());
    };
    let [Value::Bulk(Some(space)), Value::Bulk(Some(key)), Value::Integer(at_ms), Value::Integer(origin), image] =
        &fields[..]
    else {
        return Err(bad());
    };
    let image: Option<Bytes> = match image {
        Value::Bulk(image) => image.clone(),
        _ => return Err(bad()),
    };
    Ok(SharedChange {
        space: space_named(space).ok_or_else(bad)?,
        key: key.clone(),
        stamp: Stamp {
            at_ms: u64::try_from(*at_ms).map_err(|_| bad())?,
            origin: u64::try_from(*origin).map_err(|_| bad())?,
        },
        image,
    })
}
