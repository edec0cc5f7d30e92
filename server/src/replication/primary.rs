//! The primary's side of a link: answers a replica's PSYNC, sends a snapshot when it must,
//! then streams the log's records as they may be acknowledged, and reads the replica's ACKs.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use persistence::record::RecordSource;
use persistence::wal::Wal;
use persistence::{Lsn, Record};
use protocol::{RequestDecoder, RequestLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{info, warn};

use super::{Replication, LINK_TIMEOUT_MS, PING_MS};
use crate::server::Server;

/// Records read from the log files per round.
const RECORDS_PER_READ: usize = 1024;

/// A keepalive on an idle link: a frame header of length 0, which no record has.
const KEEPALIVE: [u8; 8] = [0; 8];

/// Serves a replica on `stream` (its PSYNC answered here) until the link ends. `input` holds
/// what the connection read past the PSYNC.
pub async fn serve_replica(
    stream: &mut TcpStream,
    input: BytesMut,
    server: &Arc<Server>,
    replica_id: &[u8],
    replica_lsn: Lsn,
    listening_port: u16,
    node: Option<String>,
) -> std::io::Result<()> {
    let Some(durability) = server.durability.get() else {
        stream
            .write_all(b"-LOADING cartd is loading the dataset in memory\r\n")
            .await?;
        return Ok(());
    };
    let wal = durability.wal.clone();
    let replication = &server.replication;
    let ip = stream
        .peer_addr()
        .map(|peer| peer.ip().to_string())
        .unwrap_or_default();
    let guard = replication.register(ip.clone(), listening_port);
    replication.update(guard.id, |follower| follower.node = node);
    let id = replication.id();
    let previous = replication.previous();
    let after = if can_continue(&wal, &id, previous.as_ref(), replica_id, replica_lsn) {
        stream
            .write_all(format!("+CONTINUE {id}\r\n").as_bytes())
            .await?;
        info!(replica = %ip, port = listening_port, lsn = replica_lsn, "replica continues");
        replica_lsn
    } else {
        // A replica of the history this one forked from, past the fork: it holds records this
        // node never had, and is told where the histories part.
        let fork = previous
            .filter(|(previous, fork)| previous.as_bytes() == replica_id && replica_lsn > *fork)
            .map(|(_, fork)| fork);
        let lsn = send_snapshot(stream, server, &wal, &id, fork, guard.id).await?;
        info!(replica = %ip, port = listening_port, lsn, "replica synchronized from a snapshot");
        lsn
    };
    replication.update(guard.id, |follower| {
        follower.state = "online";
        follower.acked_lsn = follower.acked_lsn.max(replica_lsn.min(after));
    });
    let (reader, writer) = stream.split();
    tokio::select! {
        result = stream_records(writer, &wal, after, &server.failover) => result,
        result = read_acks(reader, input, replication, guard.id) => result,
        () = server.shutdown.cancelled() => Ok(()),
    }
}

/// Whether a replica at `lsn` of history `replica_id` can go on from there: the same history
/// (or the one this node's forked from, up to the fork), not ahead of what this log
/// acknowledges, and the log still holds the record after it.
fn can_continue(
    wal: &Wal,
    id: &str,
    previous: Option<&(String, Lsn)>,
    replica_id: &[u8],
    lsn: Lsn,
) -> bool {
    let same = replica_id == id.as_bytes();
    let forked_from =
        previous.is_some_and(|(previous, fork)| replica_id == previous.as_bytes() && lsn <= *fork);
    if !(same || forked_from) || lsn > wal.ack_lsn() {
        return false;
    }
    let oldest = wal.stats().oldest_lsn;
    lsn == wal.last_lsn() || oldest <= lsn + 1
}

/// Writes a snapshot for the replica and sends it (`+FULLRESYNC id lsn`, then `$bytes` and
/// the file); returns its LSN, after which the records follow.
async fn send_snapshot(
    stream: &mut TcpStream,
    server: &Arc<Server>,
    wal: &Arc<Wal>,
    id: &str,
    fork: Option<Lsn>,
    follower: u64,
) -> std::io::Result<Lsn> {
    let dir = server
        .config
        .server
        .data_dir
        .join("replication")
        .join(follower.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let writer = server.clone();
    let snapshot_dir = dir.clone();
    let info = tokio::task::spawn_blocking(move || writer.store.write_snapshot(&snapshot_dir))
        .await
        .map_err(std::io::Error::other)??;
    // The snapshot may hold changes after its LSN (it is fuzzy): send it only once the log
    // may acknowledge everything appended while it was written, so a replica never holds a
    // change its primary could still lose.
    wal.wait_ack(wal.last_lsn()).await;
    server
        .replication
        .update(follower, |f| f.state = "send_bulk");
    let result = async {
        let mut file = tokio::fs::File::open(&info.path).await?;
        let bytes = file.metadata().await?.len();
        let fork = fork.map(|fork| format!(" {fork}")).unwrap_or_default();
        let header = format!("+FULLRESYNC {id} {}{fork}\r\n${bytes}\r\n", info.lsn);
        stream.write_all(header.as_bytes()).await?;
        tokio::io::copy(&mut file, stream).await?;
        stream.flush().await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| info.lsn)
}

/// Sends the log's records after `after`, each once it may be acknowledged here, and a ping
/// every [`PING_MS`], busy or idle.
async fn stream_records(
    mut writer: tokio::net::tcp::WriteHalf<'_>,
    wal: &Arc<Wal>,
    after: Lsn,
    clock: &crate::failover::Failover,
) -> std::io::Result<()> {
    let ping = |frames: &mut Vec<u8>| {
        frames.extend_from_slice(&KEEPALIVE);
        frames.extend_from_slice(&clock.clock_ms().to_be_bytes());
    };
    let mut pinged = std::time::Instant::now();
    let mut first = Vec::new();
    ping(&mut first);
    writer.write_all(&first).await?;
    let mut reader = Some(wal.reader());
    let mut read_up_to = after;
    let mut pending: std::collections::VecDeque<Record> = std::collections::VecDeque::new();
    let mut frames = Vec::new();
    loop {
        if pending.is_empty() && wal.written_lsn() > read_up_to {
            let mut source = reader.take().expect("the reader is back");
            let (source, read) = tokio::task::spawn_blocking(move || {
                let read = source.read_after(read_up_to, RECORDS_PER_READ);
                (source, read)
            })
            .await
            .map_err(std::io::Error::other)?;
            reader = Some(source);
            for record in read? {
                if record.lsn != read_up_to + 1 {
                    return Err(std::io::Error::other(format!(
                        "the log no longer holds LSN {} (next found: {}): the replica must \
                         synchronize from a snapshot",
                        read_up_to + 1,
                        record.lsn
                    )));
                }
                read_up_to = record.lsn;
                pending.push_back(record);
            }
        }
        let ack = wal.ack_lsn();
        frames.clear();
        while pending.front().is_some_and(|record| record.lsn <= ack) {
            let record = pending.pop_front().expect("checked");
            record.encode_frame(&mut frames);
        }
        if pinged.elapsed() >= Duration::from_millis(PING_MS) {
            ping(&mut frames);
            pinged = std::time::Instant::now();
        }
        if !frames.is_empty() {
            writer.write_all(&frames).await?;
            continue;
        }
        let next = pending.front().map_or(read_up_to + 1, |record| record.lsn);
        let until_ping = Duration::from_millis(PING_MS).saturating_sub(pinged.elapsed());
        tokio::select! {
            () = wal.wait_ack(next) => {}
            () = tokio::time::sleep(until_ping) => {}
        }
    }
}

/// Reads the replica's `REPLCONF ACK lsn` requests into the registry until the link ends or
/// stays silent past [`LINK_TIMEOUT_MS`].
async fn read_acks(
    mut reader: tokio::net::tcp::ReadHalf<'_>,
    mut input: BytesMut,
    replication: &Replication,
    follower: u64,
) -> std::io::Result<()> {
    let mut decoder = RequestDecoder::new();
    let limits = RequestLimits {
        bulk_bytes_max: 1024,
    };
    loop {
        while let Some(args) = decoder
            .decode(&mut input, &limits)
            .map_err(|error| std::io::Error::other(error.0))?
        {
            let ack = (args.len() == 3
                || (args.len() == 5 && args[3].eq_ignore_ascii_case(b"PING")))
                && args[0].eq_ignore_ascii_case(b"REPLCONF")
                && args[1].eq_ignore_ascii_case(b"ACK");
            let number = |at: usize| {
                args.get(at)
                    .and_then(|arg| protocol::parse_i64(arg).ok())
                    .and_then(|value| u64::try_from(value).ok())
            };
            let lsn = ack.then(|| number(2)).flatten();
            let echo = number(4).unwrap_or(0);
            match lsn {
                Some(lsn) => replication.update(follower, |f| {
                    f.acked_lsn = f.acked_lsn.max(lsn);
                    f.last_ack = std::time::Instant::now();
                    f.ping_echo = f.ping_echo.max(echo);
                }),
                None => warn!(
                    command = %String::from_utf8_lossy(&args[0]),
                    "a replica link carried something other than REPLCONF ACK; ignored"
                ),
            }
        }
        input.reserve(4096);
        let read = tokio::time::timeout(
            Duration::from_millis(LINK_TIMEOUT_MS),
            reader.read_buf(&mut input),
        )
        .await
        .map_err(|_| std::io::Error::other("the replica sent nothing for 5 s"))??;
        if read == 0 {
            return Ok(());
        }
        if input.remaining() > 64 * 1024 {
            return Err(std::io::Error::other(
                "a replica sent too much unread input",
            ));
        }
    }
}
