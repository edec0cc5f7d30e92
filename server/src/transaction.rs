//! MULTI, EXEC, DISCARD, WATCH and UNWATCH, as Redis has them: between MULTI and EXEC the
//! connection queues what it admits (`+QUEUED`); a command refused at admission (unknown,
//! wrong arity, NOAUTH, NOPERM, OOM, ...) makes EXEC fail with EXECABORT; EXEC runs the
//! queue alone ([`crate::store::Store::transaction`]) and replies each command's reply in an
//! array (a command's own error among them), or a null array when a WATCHed cart changed
//! (any change, its expiry or deletion included) since WATCH.

use bytes::Bytes;
use protocol::{CommandError, CommandId, CommandSpec, ErrorCode, Reply};

use crate::dispatch::{self, Session};
use crate::server::{now_ms, Server};

/// Most commands one transaction queues.
pub const QUEUED_MAX: usize = 10_000;

/// Most bytes of arguments one transaction queues.
pub const QUEUED_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most carts one connection WATCHes.
pub const WATCHED_MAX: usize = 10_000;

/// A transaction being queued.
#[derive(Debug, Default)]
pub struct Transaction {
    /// The admitted commands, in order.
    pub queued: Vec<(Vec<Bytes>, Option<&'static CommandSpec>)>,
    /// Bytes of their arguments.
    pub bytes: usize,
    /// A command was refused while queueing: EXEC discards the transaction.
    pub aborted: bool,
    /// In cluster mode, the slot of the first queued command with keys: every other must be
    /// in it (CROSSSLOT otherwise), as one node runs the whole transaction.
    pub slot: Option<u16>,
}

/// What a WATCHed cart was when watched: its last change's LSN, version and creation time
/// (`None`: absent). Any change moves the LSN; a cart deleted and created again differs too.
pub type Watched = Option<(u64, u64, u64)>;

/// Whether `id` runs at once inside MULTI instead of being queued (as in Redis).
pub fn runs_at_once(id: CommandId) -> bool {
    matches!(
        id,
        CommandId::Exec
            | CommandId::Discard
            | CommandId::Multi
            | CommandId::Watch
            | CommandId::Quit
            | CommandId::Reset
    )
}

/// Whether the command makes the connection listen (or stop): not queued in a transaction.
fn listens(id: CommandId) -> bool {
    matches!(
        id,
        CommandId::Subscribe
            | CommandId::PSubscribe
            | CommandId::Unsubscribe
            | CommandId::PUnsubscribe
            | CommandId::Monitor
    )
}

/// Queues an admitted command; `+QUEUED`, or an error that also aborts the transaction.
pub fn queue(session: &mut Session, args: Vec<Bytes>, spec: Option<&'static CommandSpec>) -> Reply {
    if let Some(spec) = spec.filter(|spec| listens(spec.id)) {
        session
            .transaction
            .as_mut()
            .expect("queueing inside MULTI")
            .aborted = true;
        return Reply::Error(CommandError::err(format!(
            "{} is not allowed inside MULTI: its replies would be mixed with EXEC's",
            spec.name.to_ascii_uppercase()
        )));
    }
    let transaction = session.transaction.as_mut().expect("queueing inside MULTI");
    let bytes: usize = args.iter().map(Bytes::len).sum();
    if transaction.queued.len() >= QUEUED_MAX || transaction.bytes + bytes > QUEUED_BYTES_MAX {
        transaction.aborted = true;
        return Reply::Error(CommandError::limit(format!(
            "a transaction queues at most {QUEUED_MAX} commands and {QUEUED_BYTES_MAX} bytes"
        )));
    }
    transaction.bytes += bytes;
    transaction.queued.push((args, spec));
    Reply::Simple("QUEUED".into())
}

/// Marks the transaction being queued, if any, as refused at EXEC.
pub fn abort_queue(session: &mut Session) {
    if let Some(transaction) = &mut session.transaction {
        transaction.aborted = true;
    }
}

/// `MULTI`.
pub fn multi(session: &mut Session) -> Result<Reply, CommandError> {
    if session.transaction.is_some() {
        return Err(CommandError::err("MULTI calls can not be nested"));
    }
    session.transaction = Some(Transaction::default());
    Ok(Reply::ok())
}

/// `DISCARD`.
pub fn discard(session: &mut Session) -> Result<Reply, CommandError> {
    if session.transaction.take().is_none() {
        return Err(CommandError::err("DISCARD without MULTI"));
    }
    session.watched.clear();
    Ok(Reply::ok())
}

/// `WATCH key [key ...]`.
pub fn watch(
    keys: Vec<Bytes>,
    session: &mut Session,
    server: &Server,
) -> Result<Reply, CommandError> {
    if session.transaction.is_some() {
        return Err(CommandError::err("WATCH inside MULTI is not allowed"));
    }
    let now = now_ms();
    for key in keys {
        if session.watched.iter().any(|(watched, _)| *watched == key) {
            continue;
        }
        if session.watched.len() >= WATCHED_MAX {
            return Err(CommandError::limit(format!(
                "a connection WATCHes at most {WATCHED_MAX} carts"
            )));
        }
        let state = server.store.watch_state(&key, now);
        session.watched.push((key, state));
    }
    Ok(Reply::ok())
}

/// `UNWATCH`.
pub fn unwatch(session: &mut Session) -> Reply {
    session.watched.clear();
    Reply::ok()
}

/// `EXEC`: the queued commands alone, or EXECABORT, or a null array if a WATCHed cart
/// changed. `None` when a queued SHUTDOWN closes the connection.
pub fn exec(session: &mut Session, server: &Server) -> Result<Reply, CommandError> {
    let Some(transaction) = session.transaction.take() else {
        return Err(CommandError::err("EXEC without MULTI"));
    };
    let watched = std::mem::take(&mut session.watched);
    if transaction.aborted {
        return Err(CommandError::new(
            ErrorCode::ExecAbort,
            "Transaction discarded because of previous errors.",
        ));
    }
    let store = &server.store;
    Ok(store.transaction(|| {
        let now = now_ms();
        let changed = watched
            .iter()
            .any(|(key, state)| store.watch_state(key, now) != *state);
        if changed {
            return Reply::NullArray;
        }
        if let Some(redirect) = crate::migration::exec_redirect(server, &transaction) {
            return Reply::Error(redirect);
        }
        // Each command counts in commandstats as it runs here, with its own time, as in
        // Redis (queueing it did not count).
        let mut samples = Vec::with_capacity(transaction.queued.len());
        let mut errors = 0;
        let replies = transaction
            .queued
            .into_iter()
            .map(|(args, spec)| {
                let started = std::time::Instant::now();
                let executed = dispatch::execute_alone(args, spec, session, server);
                if let Some(command) = executed.command {
                    samples.push(crate::stats::Sample {
                        command,
                        nanos: started.elapsed().as_nanos() as u64,
                        result: executed.result,
                    });
                }
                let reply = executed.reply.unwrap_or(Reply::Null);
                if let Reply::Error(error) = &reply {
                    server.stats.count_error(error.code);
                    errors += 1;
                }
                reply
            })
            .collect();
        server.stats.record_batch(&samples, errors);
        Reply::Array(replies)
    }))
}
