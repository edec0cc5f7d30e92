//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, CLIENT (REPLY, PAUSE,
//! NO-EVICT and NO-TOUCH set state the connection, the pause and the eviction read).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use protocol::cmd::ClientReply;
use protocol::{
    ClientCommand, ClientKill, Command, CommandError, ErrorCode, Hello, Protocol, Reply,
};

use crate::dispatch::Session;
use crate::server::Server;

/// The Redis version cartd's command set and replies follow (INFO, HELLO). HELLO also names
/// the server `redis`, as Redis-compatible servers do: clients gate features on both
/// (redis-py's client-side caching needs `redis` at 7.4 or later). INFO's `cartd_version`
/// says what it really is.
pub const REDIS_COMPAT_VERSION: &str = "7.4.0";

/// Runs a connection command.
pub fn run(
    command: Command,
    session: &mut Session,
    server: &Server,
) -> Result<Reply, CommandError> {
    match command {
        Command::Ping(message) if session.subscriptions() > 0 => Ok(
            super::pubsub::subscribed_ping(message.clone(), session).unwrap_or_else(
                || match message {
                    Some(message) => Reply::Bulk(message),
                    None => Reply::Simple("PONG".into()),
                },
            ),
        ),
        Command::Ping(None) => Ok(Reply::Simple("PONG".into())),
        Command::Ping(Some(message)) | Command::Echo(message) => Ok(Reply::Bulk(message)),
        Command::Hello(hello) => hello_reply(hello, session, server),
        Command::Auth { user, password } => {
            authenticate(session, server, user.as_deref(), &password)?;
            Ok(Reply::ok())
        }
        Command::Select(0) => Ok(Reply::ok()),
        Command::Select(_) => Err(CommandError::err("DB index is out of range")),
        Command::Quit => {
            session.close = true;
            Ok(Reply::ok())
        }
        Command::Reset => {
            super::pubsub::reset(session);
            session.transaction = None;
            session.watched.clear();
            session.protocol = Protocol::Resp2;
            let generation = server.acl.generation();
            let default = server
                .acl
                .user("default")
                .expect("the default user always exists");
            session.authenticated = default.open_to_all();
            session.log_in(default, generation);
            let mut meta = session.handle.meta.lock();
            meta.name = bytes::Bytes::new();
            meta.protocol = 2;
            Ok(Reply::Simple("RESET".into()))
        }
        Command::Client(client) => client_command(client, session, server),
        _ => unreachable!("only connection commands are routed here"),
    }
}

fn authenticate(
    session: &mut Session,
    server: &Server,
    user: Option<&[u8]>,
    password: &[u8],
) -> Result<(), CommandError> {
    let acl = &server.acl;
    let name = user.map_or_else(
        || "default".to_owned(),
        |user| String::from_utf8_lossy(user).into_owned(),
    );
    if user.is_none()
        && acl
            .user("default")
            .is_some_and(|default| default.open_to_all())
    {
        return Err(CommandError::err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    }
    let generation = acl.generation();
    let Some(found) = acl.authenticate(&name, password) else {
        acl.log_denial(
            crate::acl::Denial::Auth,
            "AUTH",
            &name,
            session.handle.describe(),
        );
        return Err(CommandError::new(
            ErrorCode::WrongPass,
            "invalid username-password pair or user is disabled.",
        ));
    };
    session.log_in(found, generation);
    session.authenticated = true;
    Ok(())
}

fn hello_reply(
    hello: Hello,
    session: &mut Session,
    server: &Server,
) -> Result<Reply, CommandError> {
    if let Some((user, password)) = &hello.auth {
        authenticate(session, server, Some(user), password)?;
    }
    if !session.authenticated {
        return Err(CommandError::new(
            ErrorCode::NoAuth,
            "HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(protocol) = hello.protocol {
        session.protocol = protocol;
        if let Some(mailbox) = &session.mailbox {
            mailbox.set_protocol(protocol);
        }
    }
    let mut meta = session.handle.meta.lock();
    meta.protocol = session.protocol.number();
    if let Some(name) = hello.setname {
        meta.name = name;
    }
    drop(meta);
    Ok(Reply::Map(vec![
        (Reply::from_static("server"), Reply::from_static("redis")),
        (
            Reply::from_static("version"),
            Reply::from_static(REDIS_COMPAT_VERSION),
        ),
        (
            Reply::from_static("proto"),
            Reply::Integer(session.protocol.number()),
        ),
        (
            Reply::from_static("id"),
            Reply::Integer(session.handle.id as i64),
        ),
        (Reply::from_static("mode"), Reply::from_static("standalone")),
        (Reply::from_static("role"), Reply::from_static("master")),
        (Reply::from_static("modules"), Reply::Array(Vec::new())),
    ]))
}

fn client_command(
    client: ClientCommand,
    session: &mut Session,
    server: &Server,
) -> Result<Reply, CommandError> {
    let handle = session.handle.clone();
    Ok(match client {
        ClientCommand::Id => Reply::Integer(handle.id as i64),
        ClientCommand::GetName => {
            let name = handle.meta.lock().name.clone();
            if name.is_empty() {
                Reply::Null
            } else {
                Reply::Bulk(name)
            }
        }
        ClientCommand::SetName(name) => {
            handle.meta.lock().name = name;
            Reply::ok()
        }
        ClientCommand::SetInfo { lib_name, value } => {
            let mut meta = handle.meta.lock();
            if lib_name {
                meta.lib_name = value;
            } else {
                meta.lib_ver = value;
            }
            Reply::ok()
        }
        ClientCommand::List(ids) => {
            let lines: String = server
                .clients
                .all()
                .iter()
                .filter(|client| ids.is_empty() || ids.contains(&client.id))
                .map(|client| client.describe() + "\n")
                .collect();
            Reply::text(lines)
        }
        ClientCommand::Info => Reply::text(handle.describe() + "\n"),
        ClientCommand::Kill(filter) => kill(filter, session, server)?,
        ClientCommand::Tracking(options) => super::pubsub::tracking(options, session, server)?,
        ClientCommand::Caching(yes) => super::pubsub::caching(yes, session)?,
        ClientCommand::GetRedir => super::pubsub::get_redir(session),
        ClientCommand::TrackingInfo => super::pubsub::tracking_info(session, server),
        ClientCommand::Reply(mode) => {
            // OFF and SKIP are not answered: the connection drops this reply.
            match mode {
                ClientReply::On => handle.replies.on(),
                ClientReply::Off => handle.replies.off(),
                ClientReply::Skip => handle.replies.skip_next(),
            }
            Reply::ok()
        }
        ClientCommand::Pause {
            timeout_ms,
            writes_only,
        } => pause(timeout_ms, writes_only, handle.id, server),
        ClientCommand::Unpause => {
            server.pause.unpause();
            Reply::ok()
        }
        ClientCommand::NoEvict(on) => {
            handle.no_evict.store(on, Relaxed);
            Reply::ok()
        }
        ClientCommand::NoTouch(on) => {
            handle.no_touch.store(on, Relaxed);
            Reply::ok()
        }
        ClientCommand::Help => super::introspection::help_reply(CLIENT_HELP),
    })
}

/// `CLIENT PAUSE`: one server-wide pause (at most `CLIENT_PAUSE_MS_MAX`).
fn pause(timeout_ms: u64, writes_only: bool, client: u64, server: &Server) -> Reply {
    let timeout_ms = timeout_ms.min(crate::limits::CLIENT_PAUSE_MS_MAX);
    server
        .pause
        .pause(Duration::from_millis(timeout_ms), writes_only);
    tracing::info!(client, timeout_ms, writes_only, "CLIENT PAUSE");
    Reply::ok()
}

/// CLIENT HELP: the subcommands cartd has, in Redis's words.
const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL)",
    "      Return clients of specified type.",
    "    * ID <client-id> [<client-id> ...]",
    "      Return clients of specified IDs only.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on (cartd: CART.GET does not renew",
    "    the cart's TTL).",
    "HELP",
    "    Prints this help.",
];

fn kill(filter: ClientKill, session: &Session, server: &Server) -> Result<Reply, CommandError> {
    let mut killed = 0;
    for client in server.clients.all() {
        let matches = filter.id.is_none_or(|id| id == client.id)
            && filter
                .addr
                .as_ref()
                .is_none_or(|addr| *addr == client.addr.to_string())
            && filter
                .laddr
                .as_ref()
                .is_none_or(|laddr| *laddr == client.laddr.to_string());
        if matches && !(filter.skip_me && client.id == session.handle.id) {
            client.kill.cancel();
            killed += 1;
        }
    }
    if filter.old_form {
        return if killed > 0 {
            Ok(Reply::ok())
        } else {
            Err(CommandError::err("No such client"))
        };
    }
    Ok(Reply::Integer(killed))
}
