//! One client connection: read, decode every complete request (pipelining), run each, encode
//! the replies into one buffer, write them with one syscall per batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use persistence::Lsn;
use protocol::{Protocol, Reply, RequestDecoder, RequestLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients::ClientHandle;
use crate::dispatch::{self, Session};
use crate::latency::LatencyEvent;
use crate::limits::{
    IDLE_BUFFER_BYTES_MAX, READ_CHUNK_BYTES, READ_CHUNK_MIN_BYTES, REQUESTS_PER_BATCH_MAX,
    TURN_REPLY_BYTES_MAX, WRITE_BUFFER_BYTES_MAX,
};
use crate::peers::gift_cards;
use crate::postgres::restore;
use crate::server::{now_ms, Server};
use crate::slowlog::ArgvCapture;
use crate::stats::{Sample, SampleResult};
use crate::transaction;
use crate::upstream::{self, ViewRefresh};
use tokio_util::sync::CancellationToken;

/// Tells a client over `maxclients` why it is turned away, then closes.
pub async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
}

/// Serves one connection until it closes, is killed, or the server stops.
pub async fn serve(stream: ClientStream, handle: Arc<ClientHandle>, server: Arc<Server>) {
    let id = handle.id;
    let _registered = Registered {
        server: server.clone(),
        id,
    };
    let mut connection = Connection {
        stream,
        read: BytesMut::new(),
        decoder: RequestDecoder::new(),
        read_chunk: READ_CHUNK_MIN_BYTES,
        write: BytesMut::new(),
        session: Session::new(handle, &server),
        samples: Vec::new(),
        argv: ArgvCapture::default(),
        errors: 0,
        server: server.clone(),
        pending: None,
        restore_failure: None,
        held: VecDeque::new(),
        held_bytes: 0,
        last_io: Instant::now(),
        over_soft_since: None,
        write_blocked: false,
        send_buffer_bytes: 0,
    };
    connection.send_buffer_bytes = connection.stream.send_buffer_bytes();
    let kill = connection.session.handle.kill.clone();
    // CLIENT KILL ends the connection at once, whatever it waits for (a client that does not
    // read its replies, a restore, the log): the task's future is dropped, and the socket
    // with it. A server shutdown cancels the same token but lets the connection finish its
    // batch: its own loop sees the token between batches.
    let killed = async {
        kill.cancelled().await;
        if server.shutdown.is_cancelled() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = connection.run() => {
            if let Err(error) = result {
                tracing::debug!(client = id, %error, "connection ended with an error");
            }
        }
        () = killed => tracing::debug!(client = id, "connection killed"),
    }
}

/// Takes the client off the list however its task ends, a panic included, so `maxclients`
/// and `CLIENT LIST` never count a connection that is gone.
struct Registered {
    server: Arc<Server>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.server.clients.unregister(self.id);
    }
}

/// A client's socket: plain TCP, or TLS over it.
pub enum ClientStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (rustls) over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ClientStream {
    /// The kernel's send buffer for this socket (SO_SNDBUF), 0 if it cannot be read.
    fn send_buffer_bytes(&self) -> usize {
        let tcp = match self {
            ClientStream::Plain(stream) => stream,
            ClientStream::Tls(stream) => stream.get_ref().0,
        };
        socket2::SockRef::from(tcp).send_buffer_size().unwrap_or(0)
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            ClientStream::Plain(stream) => stream.write(bytes).await,
            ClientStream::Tls(stream) => stream.write(bytes).await,
        }
    }
}

struct Connection {
    stream: ClientStream,
    read: BytesMut,
    /// What has been parsed of a request still arriving.
    decoder: RequestDecoder,
    /// Room made before each read: doubles while reads fill it, up to `READ_CHUNK_BYTES`.
    read_chunk: usize,
    write: BytesMut,
    session: Session,
    samples: Vec<Sample>,
    /// The arguments of the request running, kept for the slow log in case it is slow.
    argv: ArgvCapture,
    errors: u64,
    server: Arc<Server>,
    /// A request held back while a pre-step runs for it (a restore from PostgreSQL, an
    /// upstream refresh), with the last pre-step done.
    pending: Option<(Vec<bytes::Bytes>, PreStep)>,
    /// Why that restore failed, answered in place of the request.
    restore_failure: Option<protocol::CommandError>,
    /// Reply batches waiting for the log to reach the LSN beside each (written, or synced
    /// under `appendfsync always`), in order.
    held: VecDeque<(BytesMut, Lsn)>,
    held_bytes: usize,
    /// When something was last read or written, for the idle `timeout`.
    last_io: Instant,
    /// Since when the replies waiting to be sent have been over the soft output limit.
    over_soft_since: Option<Instant>,
    /// The last write waited (the kernel's send buffer is full, so the client holds that
    /// much unread besides what cartd still has).
    write_blocked: bool,
    /// The socket's send buffer (SO_SNDBUF).
    send_buffer_bytes: usize,
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// A write to a client that has not gone through after this long counts as blocked.
const WRITE_BLOCKED_AFTER: Duration = Duration::from_millis(100);

/// Reply batches a connection keeps waiting for the log before it stops running requests.
const HELD_BATCHES_MAX: usize = 64;

/// Waits until the change at `lsn` may be acknowledged; forever when there is none.
async fn wait_durable(server: &Server, lsn: Option<Lsn>) {
    match (lsn, server.durability.get()) {
        (Some(lsn), Some(durability)) => durability.wal.wait_ack(lsn).await,
        (Some(_), None) => {}
        (None, _) => std::future::pending().await,
    }
}

/// Waits until something is posted to the mailbox; forever without one.
async fn mail(mailbox: Option<&crate::pubsub::Mailbox>) {
    match mailbox {
        Some(mailbox) => mailbox.ready().await,
        None => std::future::pending().await,
    }
}

/// Why the request loop stopped.
enum Stop {
    /// The client or the server asked to close.
    Close,
    /// Everything complete was handled; read more.
    NeedInput,
    /// The batch limit was reached with requests still waiting.
    BatchFull,
    /// The next request needs these user carts loaded from PostgreSQL first.
    Restore(Vec<bytes::Bytes>),
    /// The next request is a CART.MERGE whose guest cart another node hands off first.
    Handoff(crate::handoff::HandoffRequest),
    /// The next request is a view whose lines the upstream services refresh first.
    Upstream(ViewRefresh),
    /// The next request needs a gift card's owner, another cluster node, asked first.
    GiftCards(gift_cards::Call),
    /// The next request is a MIGRATE or CLUSTER SETSLOT: its work waits on other nodes or
    /// PostgreSQL, then the command replies what it gave.
    Slots(Vec<bytes::Bytes>),
    /// The next request is a change, and the log's queue is full: wait for the writer.
    Room,
    /// CLIENT PAUSE holds the next request (`true`: it may change data).
    Paused(bool),
    /// WAIT for more replicas than have this client's writes: until that many have them or
    /// this deadline (`None`: no bound), then it runs and answers how many have them.
    Wait {
        /// Replicas asked for.
        replicas: usize,
        /// Until when.
        deadline: Option<Instant>,
    },
    /// PSYNC was accepted: the connection is a replica's link from now on.
    Replicate,
}

/// The pre-steps a request may need before it runs, in the order they run: a cart must be
/// here (restored) before its lines can be refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PreStep {
    None,
    /// WAIT's wait (WAIT has no keys: it is its only pre-step).
    Waited,
    Restore,
    Handoff,
    Upstream,
    /// Asked the owners of the gift cards it needs (after the refresh: a checkout holds
    /// what the fresh prices make each card pay).
    GiftCards,
    /// Ran a MIGRATE or CLUSTER SETSLOT.
    Slots,
}

/// Whether a WAIT must wait before it answers (more replicas asked for than have this
/// client's last change), for how many and until when (`None`: timeout 0, no bound, as
/// Redis). A WAIT that does not parse, or on a replica, runs at once and answers its error.
fn waits(
    args: &[bytes::Bytes],
    spec: &protocol::CommandSpec,
    server: &Server,
    lsn: Lsn,
) -> Option<(usize, Option<Instant>)> {
    if spec.id != protocol::CommandId::Wait || server.primary().is_some() {
        return None;
    }
    let (replicas, timeout_ms) = protocol::cmd::wait_arguments(&args[1], &args[2]).ok()?;
    let replicas = usize::try_from(replicas).unwrap_or(usize::MAX);
    if replicas == 0 || server.replication.acked_at_least(lsn) >= replicas {
        return None;
    }
    let deadline = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));
    Some((replicas, deadline))
}

impl Connection {
    async fn run(&mut self) -> std::io::Result<()> {
        let max_bulk_bytes = self.server.config.server.max_bulk_bytes;
        let limits = RequestLimits {
            bulk_bytes_max: max_bulk_bytes,
        };
        // One request may hold up to two maximal bulks; more than that unanswered is abuse.
        let pending_bytes_max = 2 * max_bulk_bytes + 64 * 1024;
        let kill = self.session.handle.kill.clone();
        loop {
            crate::store::take_appended_lsn();
            let stop = crate::store::deferring_writes(|| self.handle_complete_requests(&limits));
            let appended = self.take_appended();
            self.record_stats();
            self.hold_replies(appended);
            self.account_memory();
            let pipelining = match stop {
                Stop::NeedInput => self.unparsed_bytes() <= pending_bytes_max,
                Stop::BatchFull => true,
                _ => false,
            };
            if pipelining && !self.held_full() {
                // Replies wait for their changes to be durable while later requests run: a
                // pipelining client's next requests join the next group commit instead of
                // waiting for this one's.
                self.release_durable().await?;
            } else {
                self.release_all().await?;
            }
            if matches!(stop, Stop::NeedInput) && self.unparsed_bytes() > pending_bytes_max {
                self.protocol_error("request too large");
                self.flush().await?;
                return Ok(());
            }
            self.flush().await?;
            // One batch per turn: a client whose socket always has input and room would
            // otherwise run batch after batch (until tokio's budget runs out) while every
            // other client waits, so a flood of big pipelined reads delayed a PING by seconds.
            tokio::task::yield_now().await;
            match stop {
                Stop::Close => return Ok(()),
                Stop::BatchFull => continue,
                stop @ (Stop::Restore(_)
                | Stop::Handoff(_)
                | Stop::Upstream(_)
                | Stop::GiftCards(_)
                | Stop::Slots(_)) => {
                    // Boxed: an idle connection's future keeps no room for these.
                    Box::pin(self.pre_step(stop)).await;
                    continue;
                }
                Stop::Replicate => return Box::pin(self.replicate()).await,
                Stop::Room | Stop::Paused(_) | Stop::Wait { .. } => {
                    if self.wait_out(stop).await {
                        continue;
                    }
                    return Ok(());
                }
                Stop::NeedInput => {}
            }
            if !self.read_more(&kill).await? {
                return Ok(());
            }
        }
    }

    /// Runs the pre-step `stop` asks for before the next request: its result is left in the
    /// session for that request.
    async fn pre_step(&mut self, stop: Stop) {
        match stop {
            Stop::Restore(keys) => self.restore_on_miss(keys).await,
            Stop::Handoff(request) => {
                let handed = crate::handoff::take(&self.server, request).await;
                self.session.handed = Some(Box::new(handed));
            }
            Stop::Upstream(refresh) => self.refresh_upstream(refresh).await,
            Stop::GiftCards(call) => {
                let prepared = gift_cards::run(call, &self.server).await;
                self.session.gift_cards = Some(Box::new(prepared));
            }
            Stop::Slots(raw) => {
                let reply = crate::migration::run(&self.server, raw).await;
                self.session.slot_reply = Some(reply);
            }
            _ => {}
        }
    }

    /// The last LSN the batch appended (0: none): noted as this client's last change (for
    /// WAIT), and the log's writer told.
    fn take_appended(&mut self) -> Lsn {
        let appended = crate::store::take_appended_lsn();
        // A TTL renewal makes no reply wait, but it is written with the batch all the same
        // (left queued, it waited for the next write: replicas and PostgreSQL missed it).
        let touched = crate::store::take_touched();
        if appended > 0 || touched {
            self.session.last_write_lsn = self.session.last_write_lsn.max(appended);
            if let Some(durability) = self.server.durability.get() {
                durability.wal.write_queued();
            }
        }
        appended
    }

    /// Serves the rest of the connection as a replica's link (PSYNC was accepted).
    async fn replicate(&mut self) -> std::io::Result<()> {
        let (id, lsn) = self
            .session
            .replica_handover
            .take()
            .expect("PSYNC set the handover");
        let port = self.session.replica_port.unwrap_or(0);
        let node = self.session.replica_node.take();
        let input = std::mem::take(&mut self.read);
        let ClientStream::Plain(stream) = &mut self.stream else {
            self.stream
                .write(b"-ERR replication over TLS is not supported; link replicas over the plain port\r\n")
                .await?;
            return Ok(());
        };
        crate::replication::serve_replica(stream, input, &self.server, &id, lsn, port, node).await
    }

    /// Waits out what holds the next request (room in the log's queue, a CLIENT PAUSE, a
    /// WAIT's timeout); false when the server stops meanwhile.
    async fn wait_out(&self, stop: Stop) -> bool {
        let shutdown = self.server.shutdown.cancelled();
        match stop {
            Stop::Room => {
                if let Some(durability) = self.server.durability.get() {
                    durability.wal.wait_for_room().await;
                }
                true
            }
            Stop::Paused(may_write) => tokio::select! {
                () = self.server.pause.wait(may_write) => true,
                () = shutdown => false,
            },
            Stop::Wait { replicas, deadline } => {
                let lsn = self.session.last_write_lsn;
                let replication = &self.server.replication;
                let enough = async {
                    loop {
                        let acked = replication.acked.notified();
                        if replication.acked_at_least(lsn) >= replicas {
                            return;
                        }
                        acked.await;
                    }
                };
                tokio::select! {
                    () = enough => true,
                    () = sleep_until(deadline) => true,
                    () = shutdown => false,
                }
            }
            _ => true,
        }
    }

    /// Waits for input (or for held replies to become durable, or a kill) and reads what
    /// came; false when the connection is to end.
    async fn read_more(&mut self, kill: &CancellationToken) -> std::io::Result<bool> {
        // A connection waiting for input holds no read buffer (100,000 idle connections
        // must fit): it is made when input arrives, and a fresh one costs one allocation.
        if self.read.is_empty() && self.read.capacity() > 0 {
            self.read = BytesMut::new();
        }
        let held_lsn = self.held.front().map(|(_, lsn)| *lsn);
        let mailbox = self.session.mailbox.clone();
        if mailbox.as_ref().is_some_and(|mailbox| mailbox.has_mail()) {
            return Ok(true);
        }
        let timeout_s = self.server.runtime.timeout_s();
        let idle_deadline = self.last_io + Duration::from_secs(timeout_s);
        let idle = async {
            if timeout_s > 0 && held_lsn.is_none() {
                tokio::time::sleep_until(idle_deadline.into()).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let room;
        let read = match &mut self.stream {
            ClientStream::Plain(stream) => {
                tokio::select! {
                    ready = stream.readable() => ready?,
                    () = mail(mailbox.as_deref()) => return Ok(true),
                    () = wait_durable(&self.server, held_lsn) => return Ok(true),
                    () = self.server.runtime.timeout_changed() => return Ok(true),
                    () = kill.cancelled() => return Ok(false),
                    () = idle => {
                        tracing::debug!(client = self.session.handle.id, "idle past timeout; closing");
                        return Ok(false);
                    }
                };
                self.read.reserve(self.read_chunk);
                room = self.read.capacity() - self.read.len();
                match stream.try_read_buf(&mut self.read) {
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        return Ok(true)
                    }
                    Err(error) => return Err(error),
                }
            }
            ClientStream::Tls(stream) => {
                // rustls may hold decrypted bytes the socket no longer signals: read directly
                // (read_buf is cancel-safe), with the buffer made before.
                self.read.reserve(self.read_chunk);
                room = self.read.capacity() - self.read.len();
                tokio::select! {
                    read = stream.read_buf(&mut self.read) => read?,
                    () = mail(mailbox.as_deref()) => return Ok(true),
                    () = wait_durable(&self.server, held_lsn) => return Ok(true),
                    () = self.server.runtime.timeout_changed() => return Ok(true),
                    () = kill.cancelled() => return Ok(false),
                    () = idle => {
                        tracing::debug!(client = self.session.handle.id, "idle past timeout; closing");
                        return Ok(false);
                    }
                }
            }
        };
        if read == 0 {
            self.release_all().await?;
            return Ok(false);
        }
        self.took_input(read, room);
        Ok(true)
    }

    /// Notes `read` bytes just read into `room` bytes of space: activity for the idle
    /// timeout, memory, a bigger next read if this one filled its space, and INFO.
    fn took_input(&mut self, read: usize, room: usize) {
        self.last_io = Instant::now();
        self.account_memory();
        if read == room {
            self.read_chunk = (self.read_chunk * 2).min(READ_CHUNK_BYTES);
        }
        self.server
            .stats
            .net_input_bytes
            .fetch_add(read as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bytes of requests received and not yet run: in the read buffer and parsed so far.
    fn unparsed_bytes(&self) -> usize {
        self.read.len() + self.decoder.pending_bytes()
    }

    fn handle_complete_requests(&mut self, limits: &RequestLimits) -> Stop {
        let mut handled = 0;
        self.collect_mail();
        while handled < REQUESTS_PER_BATCH_MAX && self.write.len() < TURN_REPLY_BYTES_MAX {
            let (args, done) = match self.pending.take() {
                Some(pending) => pending,
                None => match self.decoder.decode(&mut self.read, limits) {
                    Ok(Some(args)) => (args, PreStep::None),
                    Ok(None) => return Stop::NeedInput,
                    Err(framing) => {
                        self.protocol_error(&framing.0);
                        return Stop::Close;
                    }
                },
            };
            handled += 1;
            if args.is_empty() {
                continue;
            }
            // Admission comes first: a request refused here starts no pre-step (no
            // PostgreSQL query, no upstream call for an unauthenticated client).
            let started = Instant::now();
            let Some(spec) = self.admit(&args, started) else {
                continue;
            };
            if let Some(may_write) = spec.and_then(|spec| self.paused(spec)) {
                self.pending = Some((args, done));
                return Stop::Paused(may_write);
            }
            if let Some(stop) = self.wait_first(&args, spec, done) {
                self.pending = Some((args, PreStep::Waited));
                return stop;
            }
            let at_once = spec.is_some_and(|spec| transaction::runs_at_once(spec.id));
            if self.session.transaction.is_some() && !at_once {
                self.queue(args, spec, started);
                continue;
            }
            if let Some(spec) = spec {
                if done < PreStep::Restore {
                    let keys = self.carts_to_restore(&args, spec);
                    if !keys.is_empty() {
                        self.pending = Some((args, PreStep::Restore));
                        return Stop::Restore(keys);
                    }
                }
                if let Some(error) = self.restore_failure.take() {
                    self.refuse_after_restore(error, spec);
                    continue;
                }
                if let Some((step, stop)) = self.remote_pre_step(&args, spec, done) {
                    self.pending = Some((args, step));
                    return stop;
                }
                if self.log_queue_full(spec) {
                    self.pending = Some((args, done));
                    return Stop::Room;
                }
            }
            self.run_admitted(args, spec, started);
            if self.session.close {
                return Stop::Close;
            }
            if self.session.replica_handover.is_some() {
                return Stop::Replicate;
            }
        }
        Stop::BatchFull
    }

    /// The next pre-step after `done` that asks another node or service: the handoff of a
    /// merge's guest cart from another node, the upstream refresh of a view, then the gift
    /// card owners (other cluster nodes) a command needs.
    fn remote_pre_step(
        &self,
        args: &[bytes::Bytes],
        spec: &'static protocol::CommandSpec,
        done: PreStep,
    ) -> Option<(PreStep, Stop)> {
        let now = now_ms();
        if done < PreStep::Handoff {
            if let Some(request) = crate::handoff::before_merge(args, spec, &self.server) {
                return Some((PreStep::Handoff, Stop::Handoff(request)));
            }
        }
        if done < PreStep::Upstream {
            if let Some(refresh) = upstream::before_view(args, spec, &self.server, now) {
                return Some((PreStep::Upstream, Stop::Upstream(refresh)));
            }
        }
        if done < PreStep::GiftCards {
            if let Some(call) = gift_cards::before_command(args, spec, &self.server, now) {
                return Some((PreStep::GiftCards, Stop::GiftCards(call)));
            }
        }
        if done < PreStep::Slots
            && self.session.transaction.is_none()
            && crate::migration::needs_pre_step(args, spec)
        {
            return Some((PreStep::Slots, Stop::Slots(args.to_vec())));
        }
        None
    }

    /// A WAIT that must wait for replicas first (outside MULTI, not waited yet).
    fn wait_first(
        &self,
        args: &[bytes::Bytes],
        spec: Option<&'static protocol::CommandSpec>,
        done: PreStep,
    ) -> Option<Stop> {
        if done >= PreStep::Waited || self.session.transaction.is_some() {
            return None;
        }
        let lsn = self.session.last_write_lsn;
        let (replicas, deadline) = waits(args, spec?, &self.server, lsn)?;
        Some(Stop::Wait { replicas, deadline })
    }

    /// Runs an admitted request whose pre-steps are done, and answers it.
    fn run_admitted(
        &mut self,
        args: Vec<bytes::Bytes>,
        spec: Option<&'static protocol::CommandSpec>,
        started: Instant,
    ) {
        let tracked_read = spec.is_some_and(|spec| {
            crate::cmd::pubsub::before_command(&args, spec, &self.session, &self.server)
        });
        if self.server.runtime.slowlog_log_slower_than_us() >= 0 {
            self.argv.capture(&args);
        }
        let executed = dispatch::execute(args, spec, &mut self.session, &self.server);
        self.session.upstream_stale = false;
        // A handoff result is for this request only, whether or not it reached the merge (a
        // MISCONF refusal does not).
        self.session.handed = None;
        if let Some(peers) = &self.server.peers {
            gift_cards::abandon(self.session.take_gift_cards(), &peers.owners);
        }
        if let Some(spec) = spec {
            crate::cmd::pubsub::after_command(spec, &mut self.session);
        }
        if tracked_read {
            // An invalidation posted while the read ran follows its reply.
            self.answer(executed, started);
            self.collect_mail();
        } else {
            // What the command posted to this client itself (its own message, the
            // invalidation of a cart it tracks and just changed) comes before its reply,
            // as in Redis.
            self.collect_mail();
            self.answer(executed, started);
        }
    }

    /// Moves what waits in the mailbox (messages, invalidations, the MONITOR feed) behind the
    /// replies so far, in the order it was posted.
    fn collect_mail(&mut self) {
        if let Some(mailbox) = &self.session.mailbox {
            if mailbox.has_mail() {
                mailbox.take_into(&mut self.write, TURN_REPLY_BYTES_MAX);
            }
        }
    }

    /// The admission step ([`dispatch::admit`]): the command's table row (`None` inside for
    /// a name cartd does not know), or `None` when it was refused and answered here (a
    /// refusal inside MULTI aborts the transaction, unless the command runs at once).
    fn admit(
        &mut self,
        args: &[bytes::Bytes],
        started: Instant,
    ) -> Option<Option<&'static protocol::CommandSpec>> {
        match dispatch::admit(args, &mut self.session, &self.server) {
            Ok(spec) => Some(spec),
            Err(refused) => {
                if !refused.command.is_some_and(transaction::runs_at_once) {
                    transaction::abort_queue(&mut self.session);
                }
                self.answer(refused, started);
                None
            }
        }
    }

    /// Answers a request whose carts could not be restored from PostgreSQL with the error;
    /// an EXEC's transaction ends with it (it cannot run on carts it could not load).
    fn refuse_after_restore(
        &mut self,
        error: protocol::CommandError,
        spec: &protocol::CommandSpec,
    ) {
        if spec.id == protocol::CommandId::Exec {
            self.session.transaction = None;
            self.session.watched.clear();
        }
        self.server.stats.count_error(error.code);
        if self.session.handle.replies.answer_and_advance() {
            Reply::Error(error).encode(self.session.protocol, &mut self.write);
        }
        self.errors += 1;
    }

    /// Whether CLIENT PAUSE holds this request now: `Some(may_write)` if it does. A write
    /// waits under either mode; EXEC counts as one if it would run any.
    fn paused(&self, spec: &'static protocol::CommandSpec) -> Option<bool> {
        let queued_write = || {
            self.session
                .transaction
                .as_ref()
                .is_some_and(|transaction| {
                    transaction
                        .queued
                        .iter()
                        .any(|(_, queued)| queued.is_some_and(|queued| queued.is_write()))
                })
        };
        let may_write = spec.is_write() || (spec.id == protocol::CommandId::Exec && queued_write());
        self.server.pause.holds(may_write).map(|_| may_write)
    }

    /// Queues a request inside MULTI (an unknown command is refused and aborts the
    /// transaction, as in Redis).
    fn queue(
        &mut self,
        args: Vec<bytes::Bytes>,
        spec: Option<&'static protocol::CommandSpec>,
        started: Instant,
    ) {
        let executed = match spec {
            None => {
                transaction::abort_queue(&mut self.session);
                dispatch::execute(args, None, &mut self.session, &self.server)
            }
            // Queued is not run: it counts in commandstats when EXEC runs it (an error
            // refusing it counts as a rejected call).
            Some(spec) => {
                let reply = transaction::queue(&mut self.session, args, Some(spec));
                let refused = reply.is_error();
                dispatch::Executed {
                    reply: Some(reply),
                    command: refused.then_some(spec.id),
                    result: crate::stats::SampleResult::Rejected,
                }
            }
        };
        self.answer(executed, started);
    }

    /// User carts that only PostgreSQL holds and the request needs: its own, or for EXEC
    /// those of every queued command.
    fn carts_to_restore(
        &self,
        args: &[bytes::Bytes],
        spec: &'static protocol::CommandSpec,
    ) -> Vec<bytes::Bytes> {
        let queued = match (&self.session.transaction, spec.id) {
            (Some(transaction), protocol::CommandId::Exec) => &transaction.queued,
            _ => return restore::missing_user_carts(args, spec, &self.server),
        };
        let mut keys: Vec<bytes::Bytes> = Vec::new();
        for (args, spec) in queued {
            if let Some(spec) = spec {
                for key in restore::missing_user_carts(args, spec, &self.server) {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
        keys
    }

    /// Counts a request that ran (or was refused), samples it for the slow log and the
    /// latency monitor, and encodes its reply (unless CLIENT REPLY says not to).
    fn answer(&mut self, executed: dispatch::Executed, started: Instant) {
        if let Some(command) = executed.command {
            let nanos = started.elapsed().as_nanos() as u64;
            self.samples.push(Sample {
                command,
                nanos,
                result: executed.result,
            });
            if executed.result != SampleResult::Rejected {
                self.observe(command, nanos);
            }
        }
        self.argv.clear();
        if let Some(reply) = executed.reply {
            if let Reply::Error(error) = &reply {
                self.errors += 1;
                self.server.stats.count_error(error.code);
            }
            if self.session.handle.replies.answer_and_advance() {
                reply.encode(self.session.protocol, &mut self.write);
            }
        }
    }

    /// The slow log and the latency monitor's `command`/`fast-command` events, for a
    /// command that ran: two relaxed loads and two comparisons unless it was slow.
    fn observe(&mut self, command: protocol::CommandId, nanos: u64) {
        let runtime = &self.server.runtime;
        let spec = command.spec();
        let latency_threshold_ms = runtime.latency_monitor_threshold_ms();
        if latency_threshold_ms > 0 && nanos / 1_000_000 >= latency_threshold_ms {
            let event = if spec.has_flag("fast") {
                LatencyEvent::FastCommand
            } else {
                LatencyEvent::Command
            };
            self.server
                .latency
                .sample_if_needed(event, nanos / 1_000_000, latency_threshold_ms);
        }
        let slower_than_us = runtime.slowlog_log_slower_than_us();
        let duration_us = nanos / 1000;
        // Negative: off. EXEC is skip_slowlog, as in Redis.
        if slower_than_us < 0
            || duration_us < slower_than_us as u64
            || !self.argv.is_captured()
            || spec.has_flag("skip_slowlog")
        {
            return;
        }
        let client_name = self.session.handle.meta.lock().name.clone();
        self.server.slowlog.push(
            duration_us,
            self.argv.entry_argv(command),
            self.session.handle.addr,
            client_name,
            runtime.slowlog_max_len(),
        );
    }

    /// Loads user carts from PostgreSQL before the request that needs them runs; if that
    /// fails, the request is answered with the error instead of running on a missing cart.
    async fn restore_on_miss(&mut self, keys: Vec<bytes::Bytes>) {
        for key in keys {
            if let Err(error) = restore::load(&key, &self.server).await {
                self.restore_failure = Some(error);
                return;
            }
        }
    }

    /// Refreshes a view's lines from the upstream services before it runs; if that fails,
    /// the view runs on what the cache holds and is marked stale.
    async fn refresh_upstream(&mut self, refresh: ViewRefresh) {
        let Some(upstream) = &self.server.upstream else {
            return;
        };
        let store = &self.server.store;
        let refreshed = upstream
            .refresh(
                &store.catalog,
                &store.names,
                &refresh.keys,
                refresh.force,
                now_ms(),
            )
            .await;
        if let Err(error) = refreshed {
            tracing::debug!(client = self.session.handle.id, %error, "view served stale");
            self.session.upstream_stale = true;
        }
    }

    /// Whether `args` is a change while the log's queue holds more than it may: the change
    /// then waits (outside the shard locks) until the writer has taken the queue.
    fn log_queue_full(&self, spec: &protocol::CommandSpec) -> bool {
        let Some(durability) = self.server.durability.get() else {
            return false;
        };
        spec.is_write() && durability.wal.queued_bytes() > persistence::wal::QUEUE_BYTES_MAX
    }

    /// Sets the batch's replies aside until every change it made (up to `lsn`, its last) may
    /// be acknowledged: synced under `appendfsync always`, written to the log file under
    /// `everysec` and `no` ([`persistence::Wal::ack_lsn`]); so too the replies of a batch that
    /// made none while earlier ones wait, which must not overtake them. The log's writer
    /// writes (and syncs) everything queued at once, so concurrent batches share one write
    /// and one fsync (group commit).
    fn hold_replies(&mut self, lsn: Lsn) {
        if lsn == 0 && (self.write.is_empty() || self.held.is_empty()) {
            return;
        }
        if self.server.durability.get().is_none() {
            return;
        }
        let after = self.held.back().map_or(0, |(_, held)| *held);
        let replies = std::mem::take(&mut self.write);
        self.held_bytes += replies.len();
        self.held.push_back((replies, lsn.max(after)));
    }

    /// Whether the replies set aside are as many as a connection may keep: it then waits
    /// for them before it runs more requests.
    fn held_full(&self) -> bool {
        self.held.len() >= HELD_BATCHES_MAX || self.held_bytes >= WRITE_BUFFER_BYTES_MAX
    }

    /// Writes the replies set aside whose changes are durable by now.
    async fn release_durable(&mut self) -> std::io::Result<()> {
        let server = self.server.clone();
        let Some(durability) = server.durability.get() else {
            return Ok(());
        };
        while let Some((_, lsn)) = self.held.front() {
            if durability.wal.ack_lsn() < *lsn {
                break;
            }
            self.write_front().await?;
        }
        Ok(())
    }

    /// Waits for every change behind the replies set aside and writes them.
    async fn release_all(&mut self) -> std::io::Result<()> {
        while let Some((_, lsn)) = self.held.front() {
            wait_durable(&self.server, Some(*lsn)).await;
            self.write_front().await?;
        }
        Ok(())
    }

    async fn write_front(&mut self) -> std::io::Result<()> {
        let (replies, _) = self.held.pop_front().expect("a reply batch is held");
        self.held_bytes -= replies.len();
        self.send(&replies).await?;
        self.server
            .stats
            .net_output_bytes
            .fetch_add(replies.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn protocol_error(&mut self, reason: &str) {
        let reply = Reply::Error(protocol::CommandError::err(format!(
            "Protocol error: {reason}"
        )));
        reply.encode(Protocol::Resp2, &mut self.write);
        self.errors += 1;
        self.server.stats.count_error(protocol::ErrorCode::Err);
        tracing::debug!(
            client = self.session.handle.id,
            reason,
            "protocol error; closing"
        );
    }

    /// Counts the batch's commands and errors.
    fn record_stats(&mut self) {
        if self.samples.is_empty() && self.errors == 0 {
            return;
        }
        self.server.stats.record_batch(&self.samples, self.errors);
        if let Some(last) = self.samples.last() {
            self.session.handle.meta.lock().last_command = last.command.spec().name;
            *self.session.handle.last_active.lock() = Instant::now();
        }
        self.samples.clear();
        self.errors = 0;
    }

    /// Writes the replies not set aside (none are while earlier ones are).
    async fn flush(&mut self) -> std::io::Result<()> {
        self.record_stats();
        debug_assert!(self.held.is_empty() || self.write.is_empty());
        if self.write.is_empty() {
            return Ok(());
        }
        let mut replies = std::mem::take(&mut self.write);
        self.send(&replies).await?;
        self.server
            .stats
            .net_output_bytes
            .fetch_add(replies.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if replies.capacity() <= IDLE_BUFFER_BYTES_MAX {
            replies.clear();
            self.write = replies;
        }
        self.account_memory();
        Ok(())
    }

    /// Tells the client registry what this connection holds (requests still arriving,
    /// replies not yet sent), which closes the biggest clients past `maxmemory-clients`.
    fn account_memory(&self) {
        let bytes = self.unparsed_bytes() + self.write.len() + self.held_bytes;
        self.server.clients.account(
            &self.session.handle,
            bytes as u64,
            self.server.runtime.maxmemory_clients_bytes(),
        );
    }

    /// Writes `bytes` as the client takes them, closing it (an error) when what waits to be
    /// sent (the rest of `bytes`, the held replies, replies not yet sent) passes the
    /// `client-output-buffer-limit`: its hard limit at once, its soft one for its seconds.
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // A client that listens is held to the pubsub class, as in Redis.
        let limit = if self.session.mailbox.is_some() {
            self.server.runtime.pubsub_output_buffer_limit()
        } else {
            self.server.runtime.output_buffer_limit()
        };
        let mut sent = 0;
        while sent < bytes.len() {
            // A write that waits means the kernel's send buffer is full: the client holds
            // that much unread on top of what is still here.
            let in_kernel = if self.write_blocked {
                self.send_buffer_bytes
            } else {
                0
            };
            let waiting =
                (bytes.len() - sent + self.held_bytes + self.write.len() + in_kernel) as u64;
            if limit.hard_bytes > 0 && waiting > limit.hard_bytes {
                return Err(self.over_output_limit("hard", waiting));
            }
            let soft_deadline = if limit.soft_bytes > 0 && waiting > limit.soft_bytes {
                let since = *self.over_soft_since.get_or_insert_with(Instant::now);
                Some(since + Duration::from_secs(limit.soft_s))
            } else {
                self.over_soft_since = None;
                None
            };
            let blocked = !self.write_blocked;
            tokio::select! {
                written = self.stream.write(&bytes[sent..]) => {
                    match written? {
                        0 => return Err(std::io::ErrorKind::WriteZero.into()),
                        written => sent += written,
                    }
                    self.write_blocked = false;
                    self.last_io = Instant::now();
                }
                () = tokio::time::sleep(WRITE_BLOCKED_AFTER), if blocked => {
                    self.write_blocked = true;
                }
                () = sleep_until(soft_deadline) => {
                    return Err(self.over_output_limit("soft", waiting));
                }
            }
        }
        if let ClientStream::Tls(stream) = &mut self.stream {
            // rustls keeps what the socket did not take: push it out, under the same limit.
            let soft_deadline = self
                .over_soft_since
                .filter(|_| limit.soft_bytes > 0)
                .map(|since| since + Duration::from_secs(limit.soft_s));
            tokio::select! {
                flushed = stream.flush() => flushed?,
                () = sleep_until(soft_deadline) => {
                    return Err(self.over_output_limit("soft", bytes.len() as u64));
                }
            }
        }
        let waiting = (self.held_bytes + self.write.len()) as u64;
        if limit.soft_bytes == 0 || waiting <= limit.soft_bytes {
            self.over_soft_since = None;
        }
        Ok(())
    }

    /// Counts and logs a client closed for not reading its replies; the error ends it.
    fn over_output_limit(&self, which: &str, waiting: u64) -> std::io::Error {
        self.server
            .stats
            .client_output_buffer_limit_disconnections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            client = self.session.handle.id,
            waiting_bytes = waiting,
            "client closed: over the {which} client-output-buffer-limit (it does not read its replies)"
        );
        std::io::Error::other(format!("over the {which} client-output-buffer-limit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of the future `f` returns, without calling it.
    fn future_bytes<A, B, C, F: std::future::Future>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// An idle connection is its task: the future `serve` returns. The pre-steps a request
    /// may need (a restore, a handoff, an upstream refresh, gift card calls, MIGRATE) and a
    /// replica's link are boxed when they run, and so are the session's rare results, so
    /// they are not part of every idle connection (3,424 B at 31e1ce4 in a debug build, 1,880
    /// B since; 100,000 connections must fit).
    #[test]
    fn an_idle_connection_holds_no_room_for_its_rare_steps() {
        let bytes = future_bytes(serve);
        assert!(bytes <= 2_048, "serve's future takes {bytes} B");
    }
}
