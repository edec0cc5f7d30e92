//! From arguments to a reply: limits on the request, authentication, parsing, and the handler.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use protocol::{Command, CommandError, CommandId, CommandSpec, ErrorCode, Protocol, Reply};

use crate::clients::ClientHandle;
use crate::cmd;
use crate::pubsub::{Mailbox, PubSub};
use crate::server::Server;
use crate::stats::SampleResult;

/// A connection's state.
#[derive(Debug)]
pub struct Session {
    /// RESP version in use.
    pub protocol: Protocol,
    /// Whether the client may run commands: it authenticated, or the `default` user needs
    /// no password.
    pub authenticated: bool,
    /// The user it runs as (`default` until AUTH).
    pub user: Arc<crate::acl::User>,
    /// The ACL generation `user` was read at; a newer one reads it again.
    pub user_generation: u64,
    /// Close after this batch's replies are written.
    pub close: bool,
    /// This connection in the registry.
    pub handle: Arc<ClientHandle>,
    /// The upstream refresh run before the current request failed: its view is served from
    /// the cache, marked stale. Set by the connection for one request, cleared after it.
    pub upstream_stale: bool,
    /// What other cluster nodes answered the current request's gift card pre-step (set by
    /// the connection for one request, taken by its handler, cleared after it).
    /// Boxed, as `handed`: an idle connection keeps no room for it.
    pub gift_cards: Option<Box<crate::peers::gift_cards::Prepared>>,
    /// Between MULTI and EXEC: what is queued.
    pub transaction: Option<crate::transaction::Transaction>,
    /// WATCHed carts, each with what it was when watched.
    pub watched: Vec<(Bytes, crate::transaction::Watched)>,
    /// Channels it subscribes to.
    pub channels: HashSet<Bytes>,
    /// Patterns it subscribes to.
    pub patterns: HashSet<Bytes>,
    /// Where messages for it wait, once it listens (subscriptions, tracking, MONITOR).
    pub mailbox: Option<Arc<Mailbox>>,
    /// Client-side caching, while `CLIENT TRACKING` is on.
    pub tracking: Option<crate::cmd::pubsub::TrackingSession>,
    /// The registry its subscriptions are in, left when the session ends.
    pubsub: Arc<PubSub>,
    /// READONLY: a replica serves this connection's reads of its primary's slots.
    pub read_only: bool,
    /// ASKING: the next command may use a key of a slot this node imports.
    pub asking: bool,
    /// What a MIGRATE's or CLUSTER SETSLOT's pre-step gave, for the command to reply.
    pub slot_reply: Option<Result<Reply, CommandError>>,
    /// The LSN of this client's last change (what WAIT waits for replicas to have).
    pub last_write_lsn: persistence::Lsn,
    /// The port a replica said it serves on (REPLCONF listening-port).
    pub replica_port: Option<u16>,
    /// The cluster id a replica gave (`REPLCONF cartd-node`).
    pub replica_node: Option<String>,
    /// PSYNC was accepted: the connection becomes a replication link (history, LSN).
    pub replica_handover: Option<(Bytes, persistence::Lsn)>,
    /// What the handoff pre-step of the current CART.MERGE got from the guest cart's node;
    /// set by the connection for one request, taken by the merge.
    /// Boxed: every connection carries a session, few of them ever merge across nodes.
    pub handed: Option<Box<crate::handoff::HandoffResult>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop_listening();
    }
}

impl Session {
    /// The current request's gift card pre-step result, taken.
    pub fn take_gift_cards(&mut self) -> Option<crate::peers::gift_cards::Prepared> {
        self.gift_cards.take().map(|prepared| *prepared)
    }

    /// The current CART.MERGE's handoff result, taken.
    pub fn take_handed(&mut self) -> Option<crate::handoff::HandoffResult> {
        self.handed.take().map(|handed| *handed)
    }

    /// A new connection's session: as the `default` user, authenticated if that user needs
    /// no password.
    pub fn new(handle: Arc<ClientHandle>, server: &Server) -> Session {
        let acl = &server.acl;
        let generation = acl.generation();
        let user = acl.user("default").expect("the default user always exists");
        Session {
            protocol: Protocol::Resp2,
            authenticated: user.open_to_all(),
            user,
            user_generation: generation,
            close: false,
            handle,
            upstream_stale: false,
            gift_cards: None,
            transaction: None,
            watched: Vec::new(),
            channels: HashSet::new(),
            patterns: HashSet::new(),
            mailbox: None,
            tracking: None,
            pubsub: server.pubsub.clone(),
            read_only: false,
            asking: false,
            slot_reply: None,
            last_write_lsn: 0,
            replica_port: None,
            replica_node: None,
            replica_handover: None,
            handed: None,
        }
    }

    /// Leaves every channel and pattern, tracking and MONITOR, and lets the mailbox go (RESET,
    /// and a connection's end).
    pub fn stop_listening(&mut self) {
        if self.mailbox.take().is_some() {
            let channels: Vec<Bytes> = self.channels.drain().collect();
            let patterns: Vec<Bytes> = self.patterns.drain().collect();
            self.pubsub.close(self.handle.id, &channels, &patterns);
        }
        // A client tracking with REDIRECT has no mailbox of its own: it still leaves the
        // tracking table (else every change would go on looking it up).
        if self.tracking.take().is_some() {
            self.pubsub.stop_tracking(self.handle.id);
        }
    }

    /// Channels and patterns it subscribes to (what SUBSCRIBE's replies count).
    pub fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Its mailbox, made (and registered) the first time it listens.
    pub fn open_mailbox(&mut self, server: &Server) -> Arc<Mailbox> {
        if let Some(mailbox) = &self.mailbox {
            return mailbox.clone();
        }
        let mailbox = Arc::new(Mailbox::new(
            self.handle.id,
            self.protocol,
            self.handle.kill.clone(),
            server.runtime.pubsub_output_buffer_limit(),
        ));
        server.pubsub.open_mailbox(mailbox.clone());
        self.mailbox = Some(mailbox.clone());
        mailbox
    }

    /// Runs as `user` from now on (AUTH, HELLO AUTH, RESET).
    pub fn log_in(&mut self, user: Arc<crate::acl::User>, generation: u64) {
        self.handle.meta.lock().user.clone_from(&user.name);
        self.user = user;
        self.user_generation = generation;
    }
}

/// What running one request produced.
#[derive(Debug)]
pub struct Executed {
    /// The reply; `None` for SHUTDOWN, which closes instead.
    pub reply: Option<Reply>,
    /// The command, when the name was known.
    pub command: Option<CommandId>,
    /// How it ended.
    pub result: SampleResult,
}

fn refused(command: Option<CommandId>, error: CommandError) -> Executed {
    Executed {
        reply: Some(Reply::Error(error)),
        command,
        result: SampleResult::Rejected,
    }
}

/// The refusal of a change while the log cannot be written: the change could not be made
/// durable, so it is not made; reads go on, and writes resume once the disk takes them again.
fn misconf(error: &str) -> CommandError {
    CommandError::new(
        ErrorCode::Misconf,
        format!(
            "Errors writing to the log: {error}. Changes are refused until the disk accepts \
             writes again (reads go on); see INFO persistence"
        ),
    )
}

/// The admission step every request passes before any pre-step or handler runs, in Redis's
/// order: the request's size, the command's name and arity, authentication, then the
/// LOADING state (ACL and, in a cluster, the slot check take their places here). Returns the
/// command's table row (`None` for a name cartd does not know, which [`execute`] answers), or
/// the refusal to reply instead.
pub fn admit(
    raw: &[Bytes],
    session: &mut Session,
    server: &Server,
) -> Result<Option<&'static CommandSpec>, Executed> {
    let spec = CommandSpec::lookup(&raw[0]);
    let id = spec.map(|spec| spec.id);
    let args_max = server.config.server.max_args_per_command;
    if raw.len() > args_max {
        let message = format!(
            "request has {} arguments, max_args_per_command is {args_max}",
            raw.len()
        );
        return Err(refused(id, CommandError::limit(message)));
    }
    let Some(spec) = spec else {
        return Ok(None);
    };
    if !spec.arity_allows(raw.len()) {
        return Err(refused(id, CommandError::arity(spec.name)));
    }
    if !session.authenticated && !spec.has_flag("no_auth") {
        return Err(refused(
            id,
            CommandError::new(ErrorCode::NoAuth, "Authentication required."),
        ));
    }
    if !spec.has_flag("no_auth") {
        check_acl(raw, spec, session, server)?;
    }
    if let Some(topology) = &server.cluster {
        let layout = topology.load();
        // Cleared when a command other than ASKING runs (cmd::run): a pre-step admits its
        // request twice.
        let asking = session.asking;
        route(raw, spec, session, &layout, server, asking)?;
        // A primary past its lease (a replica's reads are its own business: route let them).
        let fenced = layout.myself().replica_of.is_none() && !server.failover.may_write();
        if fenced && (spec.is_write() || spec.id == CommandId::Exec) {
            return Err(refused(
                id,
                CommandError::new(
                    ErrorCode::ClusterDown,
                    "The cluster is down: this node's lease of its slots lapsed",
                ),
            ));
        }
    }
    if session.protocol == Protocol::Resp2
        && session.subscriptions() > 0
        && !allowed_while_subscribed(spec.id)
    {
        return Err(refused(
            id,
            CommandError::err(format!(
                "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                spec.name
            )),
        ));
    }
    if spec.has_flag("denyoom") && server.over_maxmemory.load(Ordering::Relaxed) {
        return Err(refused(
            id,
            CommandError::new(
                ErrorCode::Oom,
                "command not allowed when used memory > 'maxmemory'.",
            ),
        ));
    }
    if server.loading.load(Ordering::Acquire) && !spec.has_flag("loading") {
        return Err(refused(
            id,
            CommandError::new(ErrorCode::Loading, "cartd is loading the dataset in memory"),
        ));
    }
    Ok(Some(spec))
}

/// The cluster step of admission, before any pre-step (no restore from PostgreSQL, no
/// upstream call for a key another node serves): every key of the request in one slot
/// (`CROSSSLOT`), inside MULTI every queued command's too, and that slot served here
/// (`MOVED slot host:port` to the node that serves it; `CLUSTERDOWN` when none does).
/// Keyless commands (CATALOG.*, PROMO.*, GIFTCARD.*, the server commands) run on any node.
fn route(
    raw: &[Bytes],
    spec: &'static CommandSpec,
    session: &mut Session,
    layout: &cluster::Layout,
    server: &Server,
    asking: bool,
) -> Result<(), Executed> {
    let cross_slot = || {
        refused(
            Some(spec.id),
            CommandError::new(
                ErrorCode::CrossSlot,
                "Keys in request don't hash to the same slot",
            ),
        )
    };
    let mut slot = None;
    for at in spec.keys.positions(raw.len()) {
        let key_slot = cluster::key_slot(&raw[at]);
        match slot {
            None => slot = Some(key_slot),
            Some(first) if first != key_slot => return Err(cross_slot()),
            Some(_) => {}
        }
    }
    let replica_of = layout.myself().replica_of;
    let Some(slot) = slot else {
        return refuse_replica_write(spec, replica_of.is_some());
    };
    if let Some(transaction) = &mut session.transaction {
        if !crate::transaction::runs_at_once(spec.id) {
            match transaction.slot {
                None => transaction.slot = Some(slot),
                Some(first) if first != slot => return Err(cross_slot()),
                Some(_) => {}
            }
        }
    }
    match layout.owner_index(slot) {
        Some(owner) if owner == layout.me => {
            crate::migration::route_migrating(server, layout, raw, spec, slot)
                .map_err(|error| refused(Some(spec.id), error))?;
            route_also_keys(raw, spec, session, layout)
        }
        Some(_) if asking && server.slots.importing(slot) => Ok(()),
        Some(owner) if replica_reads(session, spec, replica_of == Some(owner)) => Ok(()),
        owner => Err(refused(
            Some(spec.id),
            crate::migration::not_served_here(layout, slot, owner),
        )),
    }
}

/// Carts a command also touches (CART.MERGE's guest cart), once its own key is served here:
/// one another node serves is handed off before the merge runs (`crate::handoff`), which a
/// queued command inside MULTI cannot wait for (`CROSSSLOT`); one no node serves is
/// `CLUSTERDOWN`.
fn route_also_keys(
    raw: &[Bytes],
    spec: &'static CommandSpec,
    session: &Session,
    layout: &cluster::Layout,
) -> Result<(), Executed> {
    for at in spec.also_keys.positions(raw.len()) {
        let other = cluster::key_slot(&raw[at]);
        let error = match layout.owner_index(other) {
            Some(owner) if owner == layout.me => continue,
            Some(_) if session.transaction.is_none() => continue,
            Some(_) => CommandError::new(
                ErrorCode::CrossSlot,
                format!(
                    "Keys in request don't hash to the same slot: slot {other} is served by another node, and a CART.MERGE across nodes cannot be queued in MULTI"
                ),
            ),
            None => CommandError::new(ErrorCode::ClusterDown, "Hash slot not served"),
        };
        return Err(refused(Some(spec.id), error));
    }
    Ok(())
}

/// A keyless write (CATALOG.SET, FLUSHALL, ...) on a replica: Redis's READONLY error.
fn refuse_replica_write(spec: &'static CommandSpec, replica: bool) -> Result<(), Executed> {
    if !(replica && spec.is_write()) {
        return Ok(());
    }
    Err(refused(
        Some(spec.id),
        CommandError::new(
            ErrorCode::ReadOnly,
            "You can't write against a read only replica.",
        ),
    ))
}

/// Whether a replica serves this command itself: after READONLY, a read (CART.GET or a
/// read-only key command) of a slot of its own primary, from its copy.
fn replica_reads(session: &Session, spec: &CommandSpec, of_my_primary: bool) -> bool {
    session.read_only
        && of_my_primary
        && (spec.has_flag("readonly") || spec.id == CommandId::CartGet)
}

/// What a RESP2 connection may run while it subscribes (its replies would be mistaken for
/// messages otherwise).
fn allowed_while_subscribed(id: CommandId) -> bool {
    matches!(
        id,
        CommandId::Subscribe
            | CommandId::Unsubscribe
            | CommandId::PSubscribe
            | CommandId::PUnsubscribe
            | CommandId::Ping
            | CommandId::Quit
            | CommandId::Reset
    )
}

/// The ACL step of admission: the session's user (read again if the users changed; a
/// client whose user was deleted or turned off is closed) may run the command, and may touch
/// every key the command table declares for it.
fn check_acl(
    raw: &[Bytes],
    spec: &'static CommandSpec,
    session: &mut Session,
    server: &Server,
) -> Result<(), Executed> {
    let acl = &server.acl;
    let generation = acl.generation();
    if session.user_generation != generation {
        match acl.user(&session.user.name) {
            Some(user) if user.enabled() => {
                session.user = user;
                session.user_generation = generation;
            }
            _ => {
                session.close = true;
                return Err(refused(
                    Some(spec.id),
                    CommandError::new(ErrorCode::NoAuth, "Authentication required."),
                ));
            }
        }
    }
    let user = &session.user;
    // ACL WHOAMI, CAT and HELP reveal nothing but the caller's own name and the categories:
    // every user may run them (Redis allows them per subcommand, which cartd has no rules for).
    let harmless = spec.id == CommandId::Acl
        && raw.get(1).is_some_and(|sub| {
            [&b"WHOAMI"[..], b"CAT", b"HELP"]
                .iter()
                .any(|name| sub.eq_ignore_ascii_case(name))
        });
    if !harmless && !user.may_run(spec.id) {
        acl.log_denial(
            crate::acl::Denial::Command,
            spec.name,
            &user.name,
            session.handle.describe(),
        );
        return Err(refused(
            Some(spec.id),
            CommandError::new(
                ErrorCode::NoPerm,
                format!(
                    "User {} has no permissions to run the '{}' command",
                    user.name, spec.name
                ),
            ),
        ));
    }
    for at in spec.all_key_positions(raw.len()) {
        if !user.may_access(&raw[at]) {
            acl.log_denial(
                crate::acl::Denial::Key,
                &String::from_utf8_lossy(&raw[at]),
                &user.name,
                session.handle.describe(),
            );
            return Err(refused(
                Some(spec.id),
                CommandError::new(ErrorCode::NoPerm, "No permissions to access a key"),
            ));
        }
    }
    Ok(())
}

/// Runs one admitted request ([`admit`]): refuses a change while the log cannot be
/// written, parses, and runs the handler, with the store's transaction lock held shared (so
/// it never runs inside another connection's EXEC). EXEC takes it exclusively itself.
pub fn execute(
    raw: Vec<Bytes>,
    spec: Option<&'static CommandSpec>,
    session: &mut Session,
    server: &Server,
) -> Executed {
    if spec.is_some_and(|spec| spec.id == CommandId::Exec) {
        return execute_alone(raw, spec, session, server);
    }
    let _shared = server.store.shared();
    execute_alone(raw, spec, session, server)
}

/// [`execute`] without taking the transaction lock: for EXEC, and the commands EXEC runs
/// while it holds the lock exclusively.
pub fn execute_alone(
    raw: Vec<Bytes>,
    spec: Option<&'static CommandSpec>,
    session: &mut Session,
    server: &Server,
) -> Executed {
    let id = spec.map(|spec| spec.id);
    if let Some(id) = id.filter(|_| server.pubsub.monitored()) {
        server.pubsub.feed_monitors(&session.handle.addr, id, &raw);
    }
    // A validating CART.GET under MISCONF is served from the cache, marked stale, rather
    // than refused: reads go on.
    if let Some(spec) = spec.filter(|spec| spec.is_write() && spec.id != CommandId::CartGet) {
        if let Some(error) = server.log_failure() {
            server.stats.misconf_refused.fetch_add(1, Ordering::Relaxed);
            return refused(Some(spec.id), misconf(&error));
        }
    }
    let command = match Command::parse(raw) {
        Ok(command) => command,
        Err(error) => return refused(id, error),
    };
    let reply = crate::pubsub::acting_as(session.handle.id, || cmd::run(command, session, server));
    let result = match &reply {
        Some(reply) if reply.is_error() => SampleResult::Failed,
        _ => SampleResult::Ok,
    };
    Executed {
        reply,
        command: id,
        result,
    }
}
