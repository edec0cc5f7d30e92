//! From arguments to a reply: limits on the request, authentication, parsing, and the handler.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use protocol::{Command, CommandError, CommandId, CommandSpec, ErrorCode, Protocol, Reply};

use crate::clients::ClientHandle;
use crate::cmd;
use crate::server::Server;
use crate::stats::SampleResult;

/// A connection's state.
#[derive(Debug)]
pub struct Session {
    /// RESP version in use.
    pub protocol: Protocol,
    /// Whether the client may run commands (always, without `requirepass`).
    pub authenticated: bool,
    /// Close after this batch's replies are written.
    pub close: bool,
    /// This connection in the registry.
    pub handle: Arc<ClientHandle>,
    /// The upstream refresh run before the current request failed: its view is served from
    /// the cache, marked stale. Set by the connection for one request, cleared after it.
    pub upstream_stale: bool,
}

impl Session {
    /// A new connection's session.
    pub fn new(handle: Arc<ClientHandle>, password_required: bool) -> Session {
        Session {
            protocol: Protocol::Resp2,
            authenticated: !password_required,
            close: false,
            handle,
            upstream_stale: false,
        }
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
    session: &Session,
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
    if server.loading.load(Ordering::Acquire) && !spec.has_flag("loading") {
        return Err(refused(
            id,
            CommandError::new(ErrorCode::Loading, "cartd is loading the dataset in memory"),
        ));
    }
    Ok(Some(spec))
}

/// Runs one admitted request ([`admit`]): refuses a change while the log cannot be
/// written, parses, and runs the handler.
pub fn execute(
    raw: Vec<Bytes>,
    spec: Option<&'static CommandSpec>,
    session: &mut Session,
    server: &Server,
) -> Executed {
    let id = spec.map(|spec| spec.id);
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
    let reply = cmd::run(command, session, server);
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
