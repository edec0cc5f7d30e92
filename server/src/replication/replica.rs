//! The replica's side of a link: the handshake, a full synchronization's snapshot (staged,
//! installed at the next start), then the primary's records, logged and applied in order,
//! and the ACKs that WAIT counts.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use persistence::record::{FrameError, RecordFormat};
use persistence::{Change, ChangeRef, Lsn, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{error, info, warn};

use super::{record_id, HEARTBEAT_MS, LINK_TIMEOUT_MS};
use crate::server::{now_ms, Server};

/// Where a full synchronization's snapshot waits for the next start.
const STAGING_DIR: &str = "replica-sync";

/// The file saying the staged snapshot is whole: `<replication id> <lsn>`.
const READY_FILE: &str = "ready";

/// Longest wait for the primary's TCP handshake.
const CONNECT_TIMEOUT_MS: u64 = 2_000;

/// How a link ended, when not by an error.
enum Ended {
    /// The server stops.
    Shutdown,
    /// A full synchronization's snapshot is staged: start over to install it.
    Staged,
}

/// Follows the primary while the server runs (until `stop`: a promotion): links, streams,
/// and links again after a drop (from its LSN), every 100 ms to 1 s while the primary cannot
/// be reached. The primary is whichever the layout names now.
pub async fn follow_primary(server: Arc<Server>, stop: tokio_util::sync::CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u64;
    let mut full = false;
    loop {
        let outcome = tokio::select! {
            outcome = link(&server, full) => outcome,
            () = server.shutdown.cancelled() => Ok(Ended::Shutdown),
            () = stop.cancelled() => Ok(Ended::Shutdown),
        };
        server.replication.link.up.store(false, Ordering::Release);
        server
            .replication
            .link
            .syncing
            .store(false, Ordering::Release);
        match outcome {
            Ok(Ended::Shutdown) => return,
            Ok(Ended::Staged) => start_over(),
            Err(LinkError::Diverged(why)) => {
                warn!(%why, "this replica's data no longer follows its primary's log; synchronizing from a snapshot");
                full = true;
            }
            Err(LinkError::Io(why)) => {
                failures += 1;
                // One line for the first failure and then every 30th: a primary that is down
                // for a while must not flood the log.
                if failures == 1 || failures.is_multiple_of(30) {
                    warn!(%why, failures, "the link to the primary is down; retrying");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = server.shutdown.cancelled() => return,
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        }
        failures = 0;
        backoff = Duration::from_millis(100);
    }
}

/// A replica that never synchronized, at its start (still loading): fetches a snapshot of
/// its primary and stages it, retrying until the primary answers; false when the server
/// stops first. The caller installs it ([`install_staged`]) before it loads anything.
pub async fn first_sync(server: &Arc<Server>) -> bool {
    let primary = server.primary().expect("a replica").dial_addr();
    let data_dir = &server.config.server.data_dir;
    let mut failures = 0u64;
    loop {
        let attempt = async {
            let mut stream = connect(&primary).await?;
            let mut input = BytesMut::new();
            match handshake(server, &mut stream, &mut input, "?", 0).await? {
                Psync::FullResync { id, lsn, .. } => {
                    server
                        .replication
                        .link
                        .syncing
                        .store(true, Ordering::Release);
                    receive_snapshot(&mut stream, &mut input, data_dir, &id, lsn).await
                }
                Psync::Continue { .. } => Err(LinkError::Io("the primary sent no snapshot".into())),
            }
        };
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            () = server.shutdown.cancelled() => return false,
        };
        server
            .replication
            .link
            .syncing
            .store(false, Ordering::Release);
        match outcome {
            Ok(()) => return true,
            Err(LinkError::Io(why) | LinkError::Diverged(why)) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    info!(%why, %primary, "waiting for the primary to send its snapshot");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = server.shutdown.cancelled() => return false,
        }
    }
}

/// Why a link ended.
enum LinkError {
    /// The connection or the primary failed; link again from the LSN.
    Io(String),
    /// A record did not apply on this replica's data: only a snapshot mends it.
    Diverged(String),
}

impl From<std::io::Error> for LinkError {
    fn from(error: std::io::Error) -> LinkError {
        LinkError::Io(error.to_string())
    }
}

/// Makes one link: the handshake, then a snapshot (staged) or the records.
async fn link(server: &Arc<Server>, full: bool) -> Result<Ended, LinkError> {
    let Some(durability) = server.durability.get() else {
        return Err(LinkError::Io("not loaded".into()));
    };
    let wal = durability.wal.clone();
    let Some(primary) = server.primary() else {
        return Err(LinkError::Io("this node is no longer a replica".into()));
    };
    let lsn = wal.last_lsn();
    let id = if full {
        "?".to_owned()
    } else {
        server.replication.id()
    };
    let mut stream = connect(&primary.dial_addr()).await?;
    let mut input = BytesMut::new();
    let answer = handshake(server, &mut stream, &mut input, &id, lsn).await?;
    let link = &server.replication.link;
    link.connects.fetch_add(1, Ordering::Relaxed);
    // This log follows the primary's history from here on (after a snapshot, once installed):
    // its lease's term, which the layout has as its epoch once the leases are read (0 before).
    if primary.epoch > 0 {
        crate::failover::record_history_term(&server.config.server.data_dir, primary.epoch);
    }
    match answer {
        Psync::FullResync { id, lsn, fork } => {
            link.syncing.store(true, Ordering::Release);
            let data_dir = &server.config.server.data_dir;
            if let Some(fork) = fork.filter(|fork| wal.last_lsn() > *fork) {
                set_aside(server, &wal, fork).await?;
            }
            receive_snapshot(&mut stream, &mut input, data_dir, &id, lsn).await?;
            info!(
                lsn,
                "a snapshot of the primary is staged; starting over to install it"
            );
            Ok(Ended::Staged)
        }
        Psync::Continue { id: continued } => {
            if continued != server.replication.id() && !continued.is_empty() {
                // The primary's history forked from this one at or after this LSN (a
                // promoted replica): this log goes on as part of the new one.
                let data_dir = &server.config.server.data_dir;
                record_id(data_dir, &continued)?;
                info!(history = %continued, "following the new primary's history");
                server.replication.set_id(continued);
            }
            link.up.store(true, Ordering::Release);
            info!(primary = %primary.addr(), lsn, "replicating from the primary");
            stream_from(server, &wal, stream, input, lsn).await
        }
    }
}

/// Connects to `addr` within [`CONNECT_TIMEOUT_MS`].
async fn connect(addr: &str) -> Result<TcpStream, LinkError> {
    let stream = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        TcpStream::connect(addr),
    )
    .await
    .map_err(|_| LinkError::Io(format!("connecting to {addr} timed out")))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The primary's answer to PSYNC.
enum Psync {
    /// Go on from the LSN, as part of history `id`.
    Continue { id: String },
    /// A snapshot of history `id` at `lsn` follows; `fork`: where this replica's history and
    /// the primary's part (it holds records past it the primary never had).
    FullResync {
        id: String,
        lsn: Lsn,
        fork: Option<Lsn>,
    },
}

/// AUTH (when the server has a password: the nodes share it), REPLCONF, PSYNC.
async fn handshake(
    server: &Server,
    stream: &mut TcpStream,
    input: &mut BytesMut,
    id: &str,
    lsn: Lsn,
) -> Result<Psync, LinkError> {
    let password = &server.config.server.requirepass;
    if !password.is_empty() {
        send_command(stream, &["AUTH", password]).await?;
        expect_ok(stream, input, "AUTH").await?;
    }
    let port = server.local_addr.port().to_string();
    send_command(stream, &["REPLCONF", "listening-port", &port]).await?;
    expect_ok(stream, input, "REPLCONF").await?;
    if server.config.cluster.enabled {
        let node = &server.config.cluster.node_id;
        send_command(stream, &["REPLCONF", "cartd-node", node]).await?;
        expect_ok(stream, input, "REPLCONF").await?;
    }
    send_command(stream, &["PSYNC", id, &lsn.to_string()]).await?;
    let line = read_line(stream, input).await?;
    let mut words = line.split(' ');
    match words.next() {
        Some("+CONTINUE") => Ok(Psync::Continue {
            id: words.next().unwrap_or_default().to_owned(),
        }),
        Some("+FULLRESYNC") => {
            let id = words.next().unwrap_or_default().to_owned();
            let lsn = words.next().and_then(|lsn| lsn.parse().ok());
            let fork = words.next().and_then(|fork| fork.parse().ok());
            match lsn {
                Some(lsn) if !id.is_empty() => Ok(Psync::FullResync { id, lsn, fork }),
                _ => Err(LinkError::Io(format!("unexpected PSYNC answer {line:?}"))),
            }
        }
        _ => Err(LinkError::Io(format!(
            "the primary answered PSYNC with {line:?}"
        ))),
    }
}

async fn send_command(stream: &mut TcpStream, words: &[&str]) -> std::io::Result<()> {
    let words: Vec<&[u8]> = words.iter().map(|word| word.as_bytes()).collect();
    let mut out = Vec::new();
    crate::peers::wire::encode(&words, &mut out);
    stream.write_all(&out).await
}

async fn expect_ok(
    stream: &mut TcpStream,
    input: &mut BytesMut,
    what: &str,
) -> Result<(), LinkError> {
    let line = read_line(stream, input).await?;
    if line == "+OK" {
        Ok(())
    } else {
        Err(LinkError::Io(format!(
            "the primary answered {what} with {line:?}"
        )))
    }
}

/// Reads more into `input`, failing after [`LINK_TIMEOUT_MS`] of silence or at the end.
async fn read_more(stream: &mut TcpStream, input: &mut BytesMut) -> std::io::Result<()> {
    input.reserve(64 * 1024);
    let read = tokio::time::timeout(
        Duration::from_millis(LINK_TIMEOUT_MS),
        stream.read_buf(input),
    )
    .await
    .map_err(|_| std::io::Error::other("the primary sent nothing for 5 s"))??;
    if read == 0 {
        return Err(std::io::Error::other("the primary closed the link"));
    }
    Ok(())
}

/// One `\r\n`-ended line (without it); lines longer than 1 KiB are refused.
async fn read_line(stream: &mut TcpStream, input: &mut BytesMut) -> std::io::Result<String> {
    loop {
        if let Some(end) = input.windows(2).position(|pair| pair == b"\r\n") {
            let line = String::from_utf8_lossy(&input[..end]).into_owned();
            input.advance(end + 2);
            return Ok(line);
        }
        if input.len() > 1024 {
            return Err(std::io::Error::other("the primary sent an overlong line"));
        }
        read_more(stream, input).await?;
    }
}

/// Receives the snapshot (`$bytes` then the file) into the staging directory, checks it
/// reads back whole at `lsn`, and marks it ready.
async fn receive_snapshot(
    stream: &mut TcpStream,
    input: &mut BytesMut,
    data_dir: &Path,
    id: &str,
    lsn: Lsn,
) -> Result<(), LinkError> {
    let line = read_line(stream, input).await?;
    let bytes: u64 = line
        .strip_prefix('$')
        .and_then(|count| count.parse().ok())
        .ok_or_else(|| LinkError::Io(format!("expected the snapshot's length, got {line:?}")))?;
    let staging = data_dir.join(STAGING_DIR);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let name = persistence::snapshot::snapshot_name(lsn);
    let temporary = staging.join(format!("{name}.part"));
    let mut file = tokio::fs::File::create(&temporary).await?;
    let mut left = bytes;
    while left > 0 {
        if input.is_empty() {
            read_more(stream, input).await?;
        }
        let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.write_all(&input[..take]).await?;
        input.advance(take);
        left -= take as u64;
    }
    file.sync_all().await?;
    drop(file);
    let path = staging.join(&name);
    std::fs::rename(&temporary, &path)?;
    let checked = path.clone();
    let info = tokio::task::spawn_blocking(move || persistence::snapshot::verify(&checked))
        .await
        .map_err(std::io::Error::other)?
        .map_err(|error| LinkError::Io(format!("the primary's snapshot is damaged: {error}")))?;
    if info.lsn != lsn {
        return Err(LinkError::Io(format!(
            "the primary's snapshot is at LSN {}, not {lsn}",
            info.lsn
        )));
    }
    write_synced(&staging.join(READY_FILE), format!("{id} {lsn}\n"))?;
    Ok(())
}

/// Writes `bytes` to `path`, synced, and syncs its directory.
fn write_synced(path: &Path, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    std::fs::write(path, bytes)?;
    std::fs::File::open(path)?.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The folder where a rejoining node keeps what it set aside.
pub const SET_ASIDE_DIR: &str = "set-aside";

/// Before a full synchronization from a primary whose history forked from this node's after
/// LSN `fork`: copies this log's records after `fork` (which the primary never had) into
/// `data_dir/set-aside/<history>-<first>-<last>.records`, framed as in the log files, synced,
/// so the snapshot replacing the log loses none of them silently. They are not merged:
/// docs/CLUSTER.md says how to look at them.
async fn set_aside(
    server: &Arc<Server>,
    wal: &Arc<persistence::Wal>,
    fork: Lsn,
) -> Result<(), LinkError> {
    let last = wal.last_lsn();
    let history = server.replication.id();
    let dir = server.config.server.data_dir.join(SET_ASIDE_DIR);
    let path = dir.join(format!("{history}-{}-{last}.records", fork + 1));
    let mut reader = wal.reader();
    let target = path.clone();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        use persistence::record::RecordSource;
        std::fs::create_dir_all(&dir)?;
        let mut frames = Vec::new();
        let mut after = fork;
        let mut count = 0u64;
        while after < last {
            let records = reader.read_after(after, 1024)?;
            let Some(end) = records.last().map(|record| record.lsn) else {
                break;
            };
            for record in &records {
                record.encode_frame(&mut frames);
            }
            count += records.len() as u64;
            after = end;
        }
        write_synced(&target, &frames)?;
        Ok(count)
    })
    .await
    .map_err(std::io::Error::other)??;
    warn!(
        records = written,
        fork,
        file = %path.display(),
        "this node held records its shard group's new primary never had: set aside, not merged"
    );
    let mut set_aside = server.replication.set_aside.lock();
    let before = set_aside.as_ref().map_or(0, |(records, _)| *records);
    *set_aside = Some((before + written, path));
    Ok(())
}

/// [`set_aside`] for a primary back after its successor died: its records after `fork`
/// belong to a history nobody follows any more.
pub async fn set_aside_after(
    server: &Arc<Server>,
    wal: &Arc<persistence::Wal>,
    fork: Lsn,
) -> Result<(), String> {
    set_aside(server, wal, fork)
        .await
        .map_err(|(LinkError::Io(why) | LinkError::Diverged(why))| why)
}

/// Starts this process over with its own arguments (same pid): it installs the staged
/// snapshot before it loads anything ([`install_staged`]), or takes the role PostgreSQL's
/// leases give it (a primary that lost its lease).
pub fn start_over() -> ! {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let name = args.next().unwrap_or_else(|| "cartd".into());
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(name)
        .args(args)
        .exec();
    error!(%error, "cannot start over to install the primary's snapshot");
    std::process::exit(1);
}

/// Whether a full synchronization is staged for the next start.
pub fn staged(data_dir: &Path) -> bool {
    data_dir.join(STAGING_DIR).join(READY_FILE).exists()
}

/// At a replica's start, before anything is loaded: installs a staged full synchronization
/// (every old snapshot and log segment goes, the staged snapshot takes their place, the
/// primary's replication id is recorded). Each step can be done again after a crash
/// half-way. Returns whether one was installed.
pub fn install_staged(data_dir: &Path) -> std::io::Result<bool> {
    let staging = data_dir.join(STAGING_DIR);
    let Ok(ready) = std::fs::read_to_string(staging.join(READY_FILE)) else {
        return Ok(false);
    };
    let mut words = ready.split_whitespace();
    let (Some(id), Some(lsn)) = (words.next(), words.next().and_then(|l| l.parse().ok())) else {
        warn!(file = %staging.display(), "a staged synchronization is unreadable; dropped");
        std::fs::remove_dir_all(&staging)?;
        return Ok(false);
    };
    let name = persistence::snapshot::snapshot_name(lsn);
    let staged = staging.join(&name);
    let snapshots = data_dir.join("snapshots");
    if staged.exists() {
        let wal = data_dir.join("wal");
        remove_files(&wal)?;
        remove_files(&snapshots)?;
        std::fs::create_dir_all(&snapshots)?;
        std::fs::rename(&staged, snapshots.join(&name))?;
        std::fs::File::open(&snapshots)?.sync_all()?;
        // The log goes on after the snapshot: an empty segment from the next LSN says so (a
        // snapshot past LSN 0 with no log after it reads as a log lost).
        let options = persistence::WalOptions {
            dir: wal,
            fsync: persistence::FsyncPolicy::Always,
            segment_bytes: persistence::wal::SEGMENT_BYTES_DEFAULT,
        };
        persistence::Wal::open_after(options, lsn + 1, lsn)?.close()?;
    }
    record_id(data_dir, id)?;
    std::fs::remove_dir_all(&staging)?;
    info!(lsn, "the primary's snapshot is installed");
    Ok(true)
}

/// Removes every file in `dir` (a missing `dir` has none).
fn remove_files(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let path: PathBuf = entry?.path();
        if path.is_file() {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Applies the primary's records after `lsn` as they come, and acknowledges them.
async fn stream_from(
    server: &Arc<Server>,
    wal: &Arc<persistence::Wal>,
    mut stream: TcpStream,
    input: BytesMut,
    lsn: Lsn,
) -> Result<Ended, LinkError> {
    let applied = tokio::sync::Notify::new();
    let (mut reader, mut writer) = stream.split();
    let apply = apply_records(server, wal, &mut reader, input, lsn, &applied);
    let acknowledge = acknowledge(wal, &server.replication.link, &mut writer, &applied);
    tokio::select! {
        result = apply => result,
        error = acknowledge => Err(LinkError::from(error)),
    }
}

/// Sends `REPLCONF ACK lsn` whenever this replica's log may acknowledge more, and each second
/// (the primary counts a silent replica gone); returns only the error that ended it.
async fn acknowledge(
    wal: &persistence::Wal,
    link: &super::Link,
    writer: &mut tokio::net::tcp::WriteHalf<'_>,
    applied: &tokio::sync::Notify,
) -> std::io::Error {
    let mut acked = 0;
    loop {
        let target = wal.last_lsn();
        if target > acked {
            tokio::select! {
                () = wal.wait_ack(target) => {}
                () = tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS)) => {}
            }
        } else {
            tokio::select! {
                () = applied.notified() => continue,
                () = tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS)) => {}
            }
        }
        acked = wal.ack_lsn();
        let ack = acked.to_string();
        let ping = link.last_ping.load(Ordering::Acquire).to_string();
        let mut request = Vec::new();
        crate::peers::wire::encode(
            &[
                b"REPLCONF",
                b"ACK",
                ack.as_bytes(),
                b"PING",
                ping.as_bytes(),
            ],
            &mut request,
        );
        if let Err(error) = writer.write_all(&request).await {
            return error;
        }
    }
}

/// Reads frames and applies each record: in LSN order from `lsn + 1`, applied to the store,
/// then logged under the primary's LSN (so a snapshot taken meanwhile never misses one).
async fn apply_records(
    server: &Arc<Server>,
    wal: &Arc<persistence::Wal>,
    reader: &mut tokio::net::tcp::ReadHalf<'_>,
    mut input: BytesMut,
    lsn: Lsn,
    applied: &tokio::sync::Notify,
) -> Result<Ended, LinkError> {
    let link = &server.replication.link;
    let mut expected = lsn + 1;
    loop {
        let mut count = 0;
        while input.len() >= 8 {
            if input[..8] == [0; 8] {
                // A ping: the header of length 0, then the primary's clock.
                if input.len() < super::PING_BYTES {
                    break;
                }
                let clock = u64::from_be_bytes(input[8..16].try_into().expect("8 bytes"));
                input.advance(super::PING_BYTES);
                link.last_ping.store(clock, Ordering::Release);
                link.last_ping_at
                    .store(server.failover.clock_ms(), Ordering::Release);
                continue;
            }
            let (record, used) = match Record::decode_frame(&input, RecordFormat::V2) {
                Ok(decoded) => decoded,
                Err(FrameError::Incomplete { .. }) => break,
                Err(FrameError::Corrupt(why)) => {
                    return Err(LinkError::Io(format!(
                        "a damaged record from the primary: {why}"
                    )))
                }
            };
            input.advance(used);
            if record.lsn != expected {
                return Err(LinkError::Diverged(format!(
                    "the primary sent LSN {} where {expected} was due",
                    record.lsn
                )));
            }
            if wal.queued_bytes() > persistence::wal::QUEUE_BYTES_MAX {
                wal.wait_for_room().await;
            }
            server
                .store
                .apply_replicated(&record, now_ms())
                .map_err(LinkError::Diverged)?;
            let changes: Vec<ChangeRef<'_>> = record.changes.iter().map(Change::as_ref).collect();
            let logged = wal.append(&changes);
            if logged != record.lsn {
                return Err(LinkError::Diverged(format!(
                    "this replica's log numbered the primary's record {} as {logged}",
                    record.lsn
                )));
            }
            expected += 1;
            count += 1;
        }
        if count > 0 {
            link.records.fetch_add(count, Ordering::Relaxed);
            applied.notify_one();
        }
        link.last_io_ms.store(now_ms(), Ordering::Relaxed);
        input.reserve(256 * 1024);
        let read = tokio::time::timeout(
            Duration::from_millis(LINK_TIMEOUT_MS),
            reader.read_buf(&mut input),
        )
        .await
        .map_err(|_| LinkError::Io("the primary sent nothing for 5 s".into()))??;
        if read == 0 {
            return Err(LinkError::Io("the primary closed the link".into()));
        }
    }
}

/// What earlier runs set aside in `data_dir/set-aside` (`<history>-<first>-<last>.records`):
/// the records, counted from the names, and the newest file.
pub fn scan_set_aside(data_dir: &Path) -> Option<(u64, PathBuf)> {
    let entries = std::fs::read_dir(data_dir.join(SET_ASIDE_DIR)).ok()?;
    let mut records = 0u64;
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(stem) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".records"))
        else {
            continue;
        };
        let mut bounds = stem.rsplitn(3, '-');
        let (Some(last), Some(first)) = (bounds.next(), bounds.next()) else {
            continue;
        };
        let (Ok(last), Ok(first)) = (last.parse::<u64>(), first.parse::<u64>()) else {
            continue;
        };
        records += last.saturating_sub(first) + 1;
        let modified = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        if newest.as_ref().is_none_or(|(at, _)| modified >= *at) {
            newest = Some((modified, path));
        }
    }
    newest.map(|(_, path)| (records, path))
}
