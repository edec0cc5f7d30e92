//! The introspection commands Redis tools rely on: `SLOWLOG`, `LATENCY`, `MEMORY` and
//! `OBJECT`, each with its subcommands and Redis's errors for a wrong one. What they report is
//! the server's business (`server/src/cmd/introspection.rs`).

use bytes::Bytes;

use crate::args::Args;
use crate::error::CommandError;

/// `SLOWLOG GET [count]|LEN|RESET|HELP`.
#[derive(Debug, PartialEq)]
pub enum SlowlogCommand {
    /// `SLOWLOG GET [count]`: the newest `count` entries (10 by default; `None`: all, -1).
    Get(Option<usize>),
    /// `SLOWLOG LEN`.
    Len,
    /// `SLOWLOG RESET`.
    Reset,
    /// `SLOWLOG HELP`.
    Help,
}

/// Entries `SLOWLOG GET` returns when it names no count, as in Redis.
pub const SLOWLOG_GET_DEFAULT: usize = 10;

/// Reads the subcommand name and checks that exactly `words` arguments follow it (Redis's
/// `container|subcommand` arity error otherwise).
fn fixed_arity(args: &Args, container: &str, sub: &str, words: usize) -> Result<(), CommandError> {
    if args.remaining() != words {
        return Err(CommandError::arity(&format!("{container}|{sub}")));
    }
    Ok(())
}

/// `ERR unknown subcommand 'x'. Try NAME HELP.`
fn unknown_subcommand(sub: &[u8], container: &str) -> CommandError {
    CommandError::err(format!(
        "unknown subcommand '{}'. Try {container} HELP.",
        String::from_utf8_lossy(sub)
    ))
}

/// The subcommand, lower-cased for matching (its bytes as sent go into errors).
fn subcommand(args: &mut Args) -> Result<(Bytes, String), CommandError> {
    let sub = args.next_bytes()?;
    let lower = String::from_utf8_lossy(&sub).to_ascii_lowercase();
    Ok((sub, lower))
}

impl SlowlogCommand {
    /// Parses the arguments after `SLOWLOG`.
    pub fn parse(args: &mut Args) -> Result<SlowlogCommand, CommandError> {
        let (sub, lower) = subcommand(args)?;
        match lower.as_str() {
            "get" => {
                if args.remaining() > 1 {
                    return Err(CommandError::err(
                        "unknown subcommand or wrong number of arguments for 'get'. Try SLOWLOG HELP.",
                    ));
                }
                let Some(count) = args.next_if_any() else {
                    return Ok(SlowlogCommand::Get(Some(SLOWLOG_GET_DEFAULT)));
                };
                let count_error =
                    || CommandError::err("count should be greater than or equal to -1");
                match crate::args::parse_i64(&count).map_err(|_| count_error())? {
                    -1 => Ok(SlowlogCommand::Get(None)),
                    count if count < -1 => Err(count_error()),
                    count => Ok(SlowlogCommand::Get(Some(
                        usize::try_from(count).unwrap_or(usize::MAX),
                    ))),
                }
            }
            "len" => fixed_arity(args, "slowlog", "len", 0).map(|()| SlowlogCommand::Len),
            "reset" => fixed_arity(args, "slowlog", "reset", 0).map(|()| SlowlogCommand::Reset),
            "help" => fixed_arity(args, "slowlog", "help", 0).map(|()| SlowlogCommand::Help),
            _ => Err(unknown_subcommand(&sub, "SLOWLOG")),
        }
    }
}

/// `DEBUG DIGEST-VALUE key [key ...]|HELP`: of Redis's DEBUG, what tools use on a server they
/// did not start (redis-cli compares the two copies of a key a reshard finds on both sides).
#[derive(Debug, PartialEq)]
pub enum DebugCommand {
    /// `DEBUG DIGEST-VALUE key [key ...]`.
    DigestValue(Vec<Bytes>),
    /// `DEBUG HELP`.
    Help,
}

impl DebugCommand {
    /// Parses the arguments after `DEBUG`.
    pub fn parse(args: &mut Args) -> Result<DebugCommand, CommandError> {
        let (sub, lower) = subcommand(args)?;
        match lower.as_str() {
            "digest-value" => Ok(DebugCommand::DigestValue(args.rest())),
            "help" => fixed_arity(args, "debug", "help", 0).map(|()| DebugCommand::Help),
            _ => Err(unknown_subcommand(&sub, "DEBUG")),
        }
    }
}

/// `LATENCY LATEST|HISTORY event|RESET [event ...]|DOCTOR|HISTOGRAM [command ...]|HELP`.
#[derive(Debug, PartialEq)]
pub enum LatencyCommand {
    /// `LATENCY LATEST`.
    Latest,
    /// `LATENCY HISTORY event`.
    History(Bytes),
    /// `LATENCY RESET [event ...]` (none: every event).
    Reset(Vec<Bytes>),
    /// `LATENCY DOCTOR`.
    Doctor,
    /// `LATENCY HISTOGRAM [command ...]` (none: every command called).
    Histogram(Vec<Bytes>),
    /// `LATENCY HELP`.
    Help,
}

impl LatencyCommand {
    /// Parses the arguments after `LATENCY`.
    pub fn parse(args: &mut Args) -> Result<LatencyCommand, CommandError> {
        let (sub, lower) = subcommand(args)?;
        match lower.as_str() {
            "latest" => fixed_arity(args, "latency", "latest", 0).map(|()| LatencyCommand::Latest),
            "history" => {
                fixed_arity(args, "latency", "history", 1)?;
                Ok(LatencyCommand::History(args.next_bytes()?))
            }
            "reset" => Ok(LatencyCommand::Reset(args.rest())),
            "doctor" => fixed_arity(args, "latency", "doctor", 0).map(|()| LatencyCommand::Doctor),
            "histogram" => Ok(LatencyCommand::Histogram(args.rest())),
            "help" => fixed_arity(args, "latency", "help", 0).map(|()| LatencyCommand::Help),
            _ => Err(unknown_subcommand(&sub, "LATENCY")),
        }
    }
}

/// `MEMORY USAGE key [SAMPLES count]|STATS|DOCTOR|MALLOC-STATS|PURGE|HELP`.
#[derive(Debug, PartialEq)]
pub enum MemoryCommand {
    /// `MEMORY USAGE key [SAMPLES count]`: a cart is one packed entry, so SAMPLES (accepted,
    /// checked) changes nothing.
    Usage(Bytes),
    /// `MEMORY STATS`.
    Stats,
    /// `MEMORY DOCTOR`.
    Doctor,
    /// `MEMORY MALLOC-STATS`.
    MallocStats,
    /// `MEMORY PURGE`.
    Purge,
    /// `MEMORY HELP`.
    Help,
}

impl MemoryCommand {
    /// Parses the arguments after `MEMORY`.
    pub fn parse(args: &mut Args) -> Result<MemoryCommand, CommandError> {
        let (sub, lower) = subcommand(args)?;
        match lower.as_str() {
            "usage" => {
                if args.remaining() == 0 {
                    return Err(CommandError::arity("memory|usage"));
                }
                let key = args.next_bytes()?;
                if let Some(option) = args.next_if_any() {
                    if !option.eq_ignore_ascii_case(b"SAMPLES") {
                        return Err(CommandError::syntax());
                    }
                    let samples = args.next_bytes()?;
                    if crate::args::parse_i64(&samples)? < 0 {
                        return Err(CommandError::syntax());
                    }
                }
                Ok(MemoryCommand::Usage(key))
            }
            "stats" => fixed_arity(args, "memory", "stats", 0).map(|()| MemoryCommand::Stats),
            "doctor" => fixed_arity(args, "memory", "doctor", 0).map(|()| MemoryCommand::Doctor),
            "malloc-stats" => {
                fixed_arity(args, "memory", "malloc-stats", 0).map(|()| MemoryCommand::MallocStats)
            }
            "purge" => fixed_arity(args, "memory", "purge", 0).map(|()| MemoryCommand::Purge),
            "help" => fixed_arity(args, "memory", "help", 0).map(|()| MemoryCommand::Help),
            _ => Err(unknown_subcommand(&sub, "MEMORY")),
        }
    }
}

/// `OBJECT ENCODING|IDLETIME|FREQ|REFCOUNT key`, `OBJECT HELP`.
#[derive(Debug, PartialEq)]
pub enum ObjectCommand {
    /// `OBJECT ENCODING key`.
    Encoding(Bytes),
    /// `OBJECT IDLETIME key`.
    IdleTime(Bytes),
    /// `OBJECT FREQ key`.
    Freq(Bytes),
    /// `OBJECT REFCOUNT key`.
    RefCount(Bytes),
    /// `OBJECT HELP`.
    Help,
}

impl ObjectCommand {
    /// Parses the arguments after `OBJECT`.
    pub fn parse(args: &mut Args) -> Result<ObjectCommand, CommandError> {
        let (sub, lower) = subcommand(args)?;
        let keyed: fn(Bytes) -> ObjectCommand = match lower.as_str() {
            "encoding" => ObjectCommand::Encoding,
            "idletime" => ObjectCommand::IdleTime,
            "freq" => ObjectCommand::Freq,
            "refcount" => ObjectCommand::RefCount,
            "help" => return fixed_arity(args, "object", "help", 0).map(|()| ObjectCommand::Help),
            _ => return Err(unknown_subcommand(&sub, "OBJECT")),
        };
        fixed_arity(args, "object", &lower, 1)?;
        Ok(keyed(args.next_bytes()?))
    }
}
