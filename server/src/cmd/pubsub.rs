//! SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB, MONITOR and client-side
//! caching (`CLIENT TRACKING`, `CACHING`, `GETREDIR`, `TRACKINGINFO`), as Redis has them. The
//! registry and the delivery are in `crate::pubsub`.

use bytes::Bytes;
use protocol::cmd::{PubSubCommand, Publish, Tracking};
use protocol::{Command, CommandError, CommandSpec, ErrorCode, Protocol, Reply};

use crate::dispatch::Session;
use crate::limits::{
    CHANNEL_BYTES_MAX, SUBSCRIPTIONS_MAX, SUBSCRIPTIONS_PER_CLIENT_MAX, TRACKING_PREFIXES_MAX,
};
use crate::pubsub::{
    TrackingMode, CART_CHANNEL_PREFIX, CART_EVENT_CHANNEL_PREFIX, PRODUCT_CHANNEL_PREFIX,
};
use crate::server::Server;

/// Runs a pub/sub command (or MONITOR).
pub fn run(
    command: Command,
    session: &mut Session,
    server: &Server,
) -> Result<Reply, CommandError> {
    match command {
        Command::Subscribe(names) => subscribe(Kind::Channel, names, session, server),
        Command::PSubscribe(names) => subscribe(Kind::Pattern, names, session, server),
        Command::Unsubscribe(names) => Ok(unsubscribe(Kind::Channel, names, session, server)),
        Command::PUnsubscribe(names) => Ok(unsubscribe(Kind::Pattern, names, session, server)),
        Command::Publish(message) => publish(message, session, server),
        Command::PubSub(command) => Ok(pubsub(command, server)),
        Command::Monitor => Ok(monitor(session, server)),
        _ => unreachable!("only pub/sub commands are routed here"),
    }
}

/// Which subscription list a (P)SUBSCRIBE or (P)UNSUBSCRIBE works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Channels, by name.
    Channel,
    /// Patterns.
    Pattern,
}

impl Kind {
    fn subscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
        }
    }

    fn unsubscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
        }
    }
}

/// `SUBSCRIBE` / `PSUBSCRIBE`: one confirmation per name, each with the count of
/// subscriptions after it.
pub fn subscribe(
    kind: Kind,
    names: Vec<Bytes>,
    session: &mut Session,
    server: &Server,
) -> Result<Reply, CommandError> {
    let new = names
        .iter()
        .filter(|name| !list(session, kind).contains(*name))
        .count();
    if names.iter().any(|name| name.len() > CHANNEL_BYTES_MAX) {
        return Err(CommandError::limit(format!(
            "channel and pattern names are at most {CHANNEL_BYTES_MAX} bytes"
        )));
    }
    if session.subscriptions() + new > SUBSCRIPTIONS_PER_CLIENT_MAX {
        return Err(CommandError::limit(format!(
            "a client subscribes to at most {SUBSCRIPTIONS_PER_CLIENT_MAX} channels and patterns"
        )));
    }
    if server.pubsub.subscription_count() + new > SUBSCRIPTIONS_MAX {
        return Err(CommandError::limit(format!(
            "the server holds at most {SUBSCRIPTIONS_MAX} subscriptions over all clients"
        )));
    }
    for name in &names {
        if let Some(error) = channel_denied(session, server, kind, name) {
            return Err(error);
        }
    }
    let mailbox = session.open_mailbox(server);
    let mut replies = Vec::with_capacity(names.len());
    for name in names {
        if list_mut(session, kind).insert(name.clone()) {
            match kind {
                Kind::Channel => server.pubsub.subscribe(name.clone(), &mailbox),
                Kind::Pattern => server.pubsub.psubscribe(name.clone(), &mailbox),
            }
        }
        replies.push(confirmation(
            kind.subscribe_word(),
            Reply::Bulk(name),
            session,
        ));
    }
    show_in_client_list(session);
    Ok(Reply::Sequence(replies))
}

/// `UNSUBSCRIBE` / `PUNSUBSCRIBE`: the names given, or every one subscribed; one
/// confirmation each (one with a null name when there was none).
pub fn unsubscribe(kind: Kind, names: Vec<Bytes>, session: &mut Session, server: &Server) -> Reply {
    let names: Vec<Bytes> = if names.is_empty() {
        list(session, kind).iter().cloned().collect()
    } else {
        names
    };
    if names.is_empty() {
        return confirmation(kind.unsubscribe_word(), Reply::Null, session);
    }
    let client = session.handle.id;
    let mut replies = Vec::with_capacity(names.len());
    for name in names {
        if list_mut(session, kind).remove(&name) {
            match kind {
                Kind::Channel => server.pubsub.unsubscribe(&name, client),
                Kind::Pattern => server.pubsub.punsubscribe(&name, client),
            }
        }
        replies.push(confirmation(
            kind.unsubscribe_word(),
            Reply::Bulk(name),
            session,
        ));
    }
    show_in_client_list(session);
    Reply::Sequence(replies)
}

fn list(session: &Session, kind: Kind) -> &std::collections::HashSet<Bytes> {
    match kind {
        Kind::Channel => &session.channels,
        Kind::Pattern => &session.patterns,
    }
}

fn list_mut(session: &mut Session, kind: Kind) -> &mut std::collections::HashSet<Bytes> {
    match kind {
        Kind::Channel => &mut session.channels,
        Kind::Pattern => &mut session.patterns,
    }
}

fn confirmation(word: &'static str, name: Reply, session: &Session) -> Reply {
    Reply::Push(vec![
        Reply::from_static(word),
        name,
        Reply::Integer(session.subscriptions() as i64),
    ])
}

/// Whether the session's user may listen on `name`: its channel rules allow it (`&pattern`,
/// `allchannels`), and, cart events being cart data, a per-cart channel needs access to that
/// cart's key, the all-carts event channels (and any pattern, which may match any cart's)
/// access to every key (`allkeys`). Product channels are catalog data, open to any user
/// granted the channel.
fn channel_denied(
    session: &Session,
    server: &Server,
    kind: Kind,
    name: &[u8],
) -> Option<CommandError> {
    let user = &session.user;
    let allowed = match kind {
        Kind::Channel => {
            user.may_use_channel(name)
                && match name.strip_prefix(CART_CHANNEL_PREFIX) {
                    Some(key) => user.may_access(key),
                    None => {
                        !name.starts_with(CART_EVENT_CHANNEL_PREFIX) || user.may_access_all_keys()
                    }
                }
        }
        Kind::Pattern => user.may_use_pattern(name) && user.may_access_all_keys(),
    };
    if allowed {
        return None;
    }
    server.acl.log_denial(
        crate::acl::Denial::Channel,
        &String::from_utf8_lossy(name),
        &user.name,
        session.handle.describe(),
    );
    Some(CommandError::new(
        ErrorCode::NoPerm,
        "No permissions to access a channel",
    ))
}

fn show_in_client_list(session: &Session) {
    let mut meta = session.handle.meta.lock();
    meta.subscriptions = session.channels.len();
    meta.patterns = session.patterns.len();
}

/// `PUBLISH`: how many subscriptions received it. cartd's own event channels cannot be
/// posted to: their subscribers trust every message on them to come from the store.
pub fn publish(
    publish: Publish,
    session: &Session,
    server: &Server,
) -> Result<Reply, CommandError> {
    let channel = &publish.channel;
    if !session.user.may_use_channel(channel) {
        server.acl.log_denial(
            crate::acl::Denial::Channel,
            &String::from_utf8_lossy(channel),
            &session.user.name,
            session.handle.describe(),
        );
        return Err(CommandError::new(
            ErrorCode::NoPerm,
            "No permissions to access a channel",
        ));
    }
    if [
        CART_CHANNEL_PREFIX,
        CART_EVENT_CHANNEL_PREFIX,
        PRODUCT_CHANNEL_PREFIX,
    ]
    .iter()
    .any(|prefix| channel.starts_with(prefix))
    {
        return Err(CommandError::err(
            "channels under __cart__:, __cartevent__: and __product__: carry cartd's own events; PUBLISH cannot post to them",
        ));
    }
    let received = server.pubsub.publish(channel, &publish.message);
    Ok(Reply::Integer(received as i64))
}

/// `PUBSUB CHANNELS|NUMSUB|NUMPAT|HELP`.
pub fn pubsub(command: PubSubCommand, server: &Server) -> Reply {
    let pubsub = &server.pubsub;
    match command {
        PubSubCommand::Channels(pattern) => Reply::Array(
            pubsub
                .channels(pattern.as_deref())
                .into_iter()
                .map(Reply::Bulk)
                .collect(),
        ),
        PubSubCommand::NumSub(channels) => Reply::Array(
            channels
                .into_iter()
                .flat_map(|channel| {
                    let count = pubsub.subscribers(&channel) as i64;
                    [Reply::Bulk(channel), Reply::Integer(count)]
                })
                .collect(),
        ),
        PubSubCommand::NumPat => Reply::Integer(pubsub.pattern_count() as i64),
        PubSubCommand::Help => super::introspection::help_reply(&[
            "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "HELP",
            "    Print this help.",
        ]),
    }
}

/// `MONITOR`: +OK, then every command the server runs.
pub fn monitor(session: &mut Session, server: &Server) -> Reply {
    let mailbox = session.open_mailbox(server);
    server.pubsub.start_monitor(&mailbox);
    session.handle.meta.lock().monitor = true;
    Reply::ok()
}

/// A session's client-side caching (`CLIENT TRACKING ON`).
#[derive(Debug, Clone)]
pub struct TrackingSession {
    /// The options it was turned on with.
    pub options: Tracking,
    /// `CLIENT CACHING yes|no`, for the next command only.
    pub caching: Option<bool>,
}

impl TrackingSession {
    /// Whether the next read's keys are remembered: always in the default mode, after
    /// CACHING YES under OPTIN, unless CACHING NO under OPTOUT; never in BCAST (every change
    /// under its prefixes is announced anyway).
    fn tracks_reads(&self) -> bool {
        let options = &self.options;
        if options.bcast {
            return false;
        }
        if options.optin {
            return self.caching == Some(true);
        }
        if options.optout {
            return self.caching != Some(false);
        }
        true
    }
}

/// Whether the command reads carts a client-side cache may keep: the reads of the keyspace
/// and CART.GET (which may validate, but what it shows is the cart).
pub fn is_cacheable_read(spec: &CommandSpec) -> bool {
    spec.has_flag("readonly") || spec.id == protocol::CommandId::CartGet
}

/// Before a command of a tracking client: remembers the carts it is about to read. Before,
/// not after: a change made while the read runs (on another thread) must still invalidate
/// it. Returns whether it did, so the connection sends what arrives meanwhile after the
/// read's reply (an invalidation of the value just read must follow it, or the client
/// would cache a stale value).
pub fn before_command(
    args: &[Bytes],
    spec: &CommandSpec,
    session: &Session,
    server: &Server,
) -> bool {
    let Some(tracking) = &session.tracking else {
        return false;
    };
    if !is_cacheable_read(spec) || !tracking.tracks_reads() {
        return false;
    }
    for at in spec.keys.positions(args.len()) {
        server.pubsub.remember_read(session.handle.id, &args[at]);
    }
    true
}

/// After a command: a CLIENT CACHING choice lapses (it held for that one command).
pub fn after_command(spec: &CommandSpec, session: &mut Session) {
    if let Some(tracking) = &mut session.tracking {
        // CLIENT CACHING itself (among CLIENT's subcommands) leaves it for the next one.
        if spec.id != protocol::CommandId::Client {
            tracking.caching = None;
        }
    }
}

/// `CLIENT TRACKING ON|OFF ...`.
pub fn tracking(
    options: Tracking,
    session: &mut Session,
    server: &Server,
) -> Result<Reply, CommandError> {
    let client = session.handle.id;
    if !options.on {
        server.pubsub.stop_tracking(client);
        session.tracking = None;
        session.handle.meta.lock().tracking_redirect = None;
        return Ok(Reply::ok());
    }
    check_tracking_options(&options, session)?;
    let target = match options.redirect {
        Some(id) if id != client => {
            if !server.clients.all().iter().any(|other| other.id == id) {
                return Err(CommandError::err(
                    "The client ID you want redirect to does not exist",
                ));
            }
            id
        }
        _ => {
            session.open_mailbox(server);
            client
        }
    };
    let prefixes = merged_prefixes(&options, session)?;
    server.pubsub.track(
        client,
        TrackingMode {
            target,
            bcast: options.bcast.then(|| prefixes.clone()),
            noloop: options.noloop,
        },
    );
    session.handle.meta.lock().tracking_redirect = Some(options.redirect.unwrap_or(0));
    session.tracking = Some(TrackingSession {
        options: Tracking {
            prefixes,
            ..options
        },
        caching: None,
    });
    Ok(Reply::ok())
}

/// Refuses options Redis refuses together.
fn check_tracking_options(options: &Tracking, session: &Session) -> Result<(), CommandError> {
    if !options.bcast && !options.prefixes.is_empty() {
        return Err(CommandError::err(
            "PREFIX option requires BCAST mode to be enabled",
        ));
    }
    if options.optin && options.optout {
        return Err(CommandError::err("You can't use both OPTIN and OPTOUT"));
    }
    let known = session
        .tracking
        .as_ref()
        .map_or(0, |current| current.options.prefixes.len());
    if known + options.prefixes.len() > TRACKING_PREFIXES_MAX
        || options
            .prefixes
            .iter()
            .any(|prefix| prefix.len() > CHANNEL_BYTES_MAX)
    {
        return Err(CommandError::limit(format!(
            "a client tracks at most {TRACKING_PREFIXES_MAX} prefixes of at most {CHANNEL_BYTES_MAX} bytes"
        )));
    }
    if options.bcast && (options.optin || options.optout) {
        return Err(CommandError::err(
            "OPTIN and OPTOUT are not compatible with BCAST",
        ));
    }
    if let Some(current) = &session.tracking {
        if current.options.bcast != options.bcast {
            return Err(CommandError::err(
                "You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.",
            ));
        }
    }
    Ok(())
}

/// The BCAST prefixes after this call: those given and those already registered, none
/// overlapping another.
fn merged_prefixes(options: &Tracking, session: &Session) -> Result<Vec<Bytes>, CommandError> {
    let mut prefixes = options.prefixes.clone();
    if let Some(current) = &session.tracking {
        for prefix in &current.options.prefixes {
            if !prefixes.contains(prefix) {
                prefixes.push(prefix.clone());
            }
        }
    }
    for (at, prefix) in prefixes.iter().enumerate() {
        if let Some(other) = prefixes
            .iter()
            .enumerate()
            .find(|(other_at, other)| *other_at != at && prefix.starts_with(other))
        {
            return Err(CommandError::err(format!(
                "Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                String::from_utf8_lossy(prefix),
                String::from_utf8_lossy(other.1)
            )));
        }
    }
    Ok(prefixes)
}

/// `CLIENT CACHING YES|NO`.
pub fn caching(yes: bool, session: &mut Session) -> Result<Reply, CommandError> {
    let Some(tracking) = &mut session.tracking else {
        return Err(CommandError::err(
            "CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
        ));
    };
    match (yes, tracking.options.optin, tracking.options.optout) {
        (true, true, _) | (false, _, true) => {
            tracking.caching = Some(yes);
            Ok(Reply::ok())
        }
        (true, false, _) => Err(CommandError::err(
            "CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
        )),
        (false, _, false) => Err(CommandError::err(
            "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
        )),
    }
}

/// `CLIENT GETREDIR`: -1 when not tracking, 0 without a redirect, else the client id.
pub fn get_redir(session: &Session) -> Reply {
    Reply::Integer(match &session.tracking {
        None => -1,
        Some(tracking) => tracking.options.redirect.map_or(0, |id| id as i64),
    })
}

/// `CLIENT TRACKINGINFO`: flags, redirect and prefixes, as Redis shows them.
pub fn tracking_info(session: &Session, server: &Server) -> Reply {
    let mut flags = Vec::new();
    let (redirect, prefixes) = match &session.tracking {
        None => {
            flags.push(Reply::from_static("off"));
            (-1, Vec::new())
        }
        Some(tracking) => {
            let options = &tracking.options;
            flags.push(Reply::from_static("on"));
            for (set, name) in [
                (options.bcast, "bcast"),
                (options.optin, "optin"),
                (options.optout, "optout"),
                (tracking.caching == Some(true), "caching-yes"),
                (tracking.caching == Some(false), "caching-no"),
                (options.noloop, "noloop"),
            ] {
                if set {
                    flags.push(Reply::from_static(name));
                }
            }
            let redirect = options.redirect.map_or(0, |id| id as i64);
            if let Some(id) = options.redirect {
                if !server.clients.all().iter().any(|other| other.id == id) {
                    flags.push(Reply::from_static("broken_redirect"));
                }
            }
            let prefixes = options.prefixes.iter().cloned().map(Reply::Bulk).collect();
            (redirect, prefixes)
        }
    };
    Reply::Map(vec![
        (Reply::from_static("flags"), Reply::Array(flags)),
        (Reply::from_static("redirect"), Reply::Integer(redirect)),
        (Reply::from_static("prefixes"), Reply::Array(prefixes)),
    ])
}

/// `PING` while subscribed in RESP2: `["pong", message or ""]`, as Redis answers it there.
pub fn subscribed_ping(message: Option<Bytes>, session: &Session) -> Option<Reply> {
    if session.protocol != Protocol::Resp2 || session.subscriptions() == 0 {
        return None;
    }
    Some(Reply::Array(vec![
        Reply::from_static("pong"),
        Reply::Bulk(message.unwrap_or_default()),
    ]))
}

/// What RESET undoes of pub/sub: every subscription, tracking and MONITOR.
pub fn reset(session: &mut Session) {
    session.stop_listening();
    let mut meta = session.handle.meta.lock();
    meta.subscriptions = 0;
    meta.patterns = 0;
    meta.tracking_redirect = None;
    meta.monitor = false;
}
