//! Server commands with arguments: `INFO`, `CONFIG` (GET, SET, REWRITE, RESETSTAT, HELP),
//! `COMMAND`, `SHUTDOWN`.

use bytes::Bytes;

use super::Command;
use crate::args::Args;
use crate::error::CommandError;

pub(super) fn parse_info(args: &mut Args) -> Vec<String> {
    args.rest()
        .iter()
        .map(|section| String::from_utf8_lossy(section).to_ascii_lowercase())
        .collect()
}

pub(super) fn parse_config(args: &mut Args) -> Result<Command, CommandError> {
    let sub = args.next_bytes()?;
    if sub.eq_ignore_ascii_case(b"GET") {
        if args.remaining() == 0 {
            return Err(CommandError::arity("config|get"));
        }
        return Ok(Command::ConfigGet(args.rest()));
    }
    if sub.eq_ignore_ascii_case(b"RESETSTAT") {
        return Ok(Command::ConfigResetStat);
    }
    if sub.eq_ignore_ascii_case(b"SET") {
        let words = args.rest();
        if words.len() < 2 {
            return Err(CommandError::arity("config|set"));
        }
        if !words.len().is_multiple_of(2) {
            return Err(CommandError::syntax());
        }
        let pairs = words
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        return Ok(Command::ConfigSet(pairs));
    }
    if sub.eq_ignore_ascii_case(b"REWRITE") {
        if args.remaining() > 0 {
            return Err(CommandError::arity("config|rewrite"));
        }
        return Ok(Command::ConfigRewrite);
    }
    if sub.eq_ignore_ascii_case(b"HELP") {
        if args.remaining() > 0 {
            return Err(CommandError::arity("config|help"));
        }
        return Ok(Command::ConfigHelp);
    }
    Err(CommandError::err(format!(
        "unknown subcommand '{}'. Try CONFIG HELP.",
        String::from_utf8_lossy(&sub)
    )))
}

/// `COMMAND` and its subcommands.
#[derive(Debug, PartialEq)]
pub enum CommandCommand {
    /// `COMMAND`: every command's info.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND INFO [name ...]` (none: all).
    Info(Vec<Bytes>),
    /// `COMMAND DOCS [name ...]` (none: all).
    Docs(Vec<Bytes>),
    /// `COMMAND LIST [FILTERBY PATTERN p]`.
    List(Option<Bytes>),
    /// `COMMAND GETKEYS command [arg ...]`: the command and its arguments.
    GetKeys(Vec<Bytes>),
    /// `COMMAND HELP`.
    Help,
}

impl CommandCommand {
    /// Parses the arguments after `COMMAND`.
    pub fn parse(args: &mut Args) -> Result<CommandCommand, CommandError> {
        let Some(sub) = args.next_if_any() else {
            return Ok(CommandCommand::All);
        };
        if sub.eq_ignore_ascii_case(b"COUNT") {
            Ok(CommandCommand::Count)
        } else if sub.eq_ignore_ascii_case(b"INFO") {
            Ok(CommandCommand::Info(args.rest()))
        } else if sub.eq_ignore_ascii_case(b"DOCS") {
            Ok(CommandCommand::Docs(args.rest()))
        } else if sub.eq_ignore_ascii_case(b"GETKEYS") {
            if args.remaining() == 0 {
                return Err(CommandError::arity("command|getkeys"));
            }
            Ok(CommandCommand::GetKeys(args.rest()))
        } else if sub.eq_ignore_ascii_case(b"HELP") {
            Ok(CommandCommand::Help)
        } else if sub.eq_ignore_ascii_case(b"LIST") {
            if args.remaining() == 0 {
                return Ok(CommandCommand::List(None));
            }
            let filter = args.next_bytes()?;
            let kind = args.next_bytes()?;
            if !filter.eq_ignore_ascii_case(b"FILTERBY") || !kind.eq_ignore_ascii_case(b"PATTERN") {
                return Err(CommandError::syntax());
            }
            Ok(CommandCommand::List(Some(args.next_bytes()?)))
        } else {
            Err(CommandError::err(format!(
                "unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(&sub)
            )))
        }
    }
}

/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE]`.
#[derive(Debug, PartialEq, Default)]
pub struct Shutdown {
    /// `Some(true)` for SAVE, `Some(false)` for NOSAVE.
    pub save: Option<bool>,
}

impl Shutdown {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<Shutdown, CommandError> {
        let mut shutdown = Shutdown::default();
        while let Some(word) = args.next_if_any() {
            if word.eq_ignore_ascii_case(b"SAVE") || word.eq_ignore_ascii_case(b"NOSAVE") {
                if shutdown.save.is_some() {
                    return Err(CommandError::syntax());
                }
                shutdown.save = Some(word.eq_ignore_ascii_case(b"SAVE"));
            } else if !(word.eq_ignore_ascii_case(b"NOW") || word.eq_ignore_ascii_case(b"FORCE")) {
                return Err(CommandError::syntax());
            }
        }
        Ok(shutdown)
    }
}

/// `CLUSTER` subcommands (those cartd has so far; the others are refused by name).
#[derive(Debug, PartialEq)]
pub enum ClusterCommand {
    /// `CLUSTER KEYSLOT key`.
    KeySlot(Bytes),
    /// `CLUSTER MYID`.
    MyId,
    /// `CLUSTER INFO`.
    Info,
    /// `CLUSTER SLOTS`.
    Slots,
    /// `CLUSTER SHARDS`.
    Shards,
    /// `CLUSTER NODES`.
    Nodes,
    /// `CLUSTER COUNTKEYSINSLOT slot`.
    CountKeysInSlot(u16),
    /// `CLUSTER GETKEYSINSLOT slot count`.
    GetKeysInSlot(u16, u64),
    /// `CLUSTER FAILOVER [FORCE|TAKEOVER]`, on a replica.
    Failover(FailoverMode),
    /// `CLUSTER REPLICATE node-id`.
    Replicate(Bytes),
    /// `CLUSTER HANDOVER node-id`: cartd's own, sent by a replica running CLUSTER FAILOVER to
    /// its primary (stop writes, wait for the replica to hold everything, hand it the lease).
    Handover(Bytes),
    /// `CLUSTER SETSLOT slot IMPORTING|MIGRATING|NODE node-id` or `STABLE`.
    SetSlot(u16, SetSlot),
    /// `CLUSTER MEET ip port [bus-port]`: the node at that address and this one become one
    /// cluster (the one that knows no other joins the other's).
    Meet(Bytes, u16),
    /// `CLUSTER FORGET node-id`.
    Forget(Bytes),
    /// `CLUSTER RESET [SOFT|HARD]` (the same in cartd: a node's id is its config's).
    Reset,
    /// `CLUSTER MEMBER entry`: cartd's own, from a node that met this cluster or changed its
    /// shard group: its config.toml entry, as TOML.
    Member(Bytes),
    /// `CLUSTER MEMBERS`: cartd's own, what this node knows of the cluster, as TOML
    /// (`data_dir/cluster-members`).
    Members,
    /// `CLUSTER HELP`.
    Help,
    /// A subcommand of Redis's that cartd does not have yet, lower case.
    NotYet(String),
}

/// What `CLUSTER SETSLOT` does to its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetSlot {
    /// This node will take the slot's keys from that node.
    Importing(Bytes),
    /// This node gives the slot's keys to that node.
    Migrating(Bytes),
    /// Neither any more.
    Stable,
    /// That node serves the slot.
    Node(Bytes),
}

/// How `CLUSTER FAILOVER` goes about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    /// With the primary: it stops writes, this replica catches up, then takes over.
    Planned,
    /// Without the primary (it is down): take the lease as soon as it lapses.
    Force,
    /// Take the lease at once, whatever its state; writes wait out one lease.
    Takeover,
}

impl ClusterCommand {
    /// Parses the arguments after `CLUSTER`.
    pub fn parse(args: &mut Args) -> Result<ClusterCommand, CommandError> {
        let sub = args.next_bytes()?;
        let lower = String::from_utf8_lossy(&sub).to_ascii_lowercase();
        let exactly = |args: &mut Args, count: usize| {
            if args.remaining() == count {
                Ok(())
            } else {
                Err(CommandError::arity(&format!("cluster|{lower}")))
            }
        };
        if let Some(membership) = membership(&lower, args) {
            return membership;
        }
        Ok(match lower.as_str() {
            "keyslot" => {
                exactly(args, 1)?;
                ClusterCommand::KeySlot(args.next_bytes()?)
            }
            "myid" => {
                exactly(args, 0)?;
                ClusterCommand::MyId
            }
            "info" => {
                exactly(args, 0)?;
                ClusterCommand::Info
            }
            "slots" => {
                exactly(args, 0)?;
                ClusterCommand::Slots
            }
            "shards" => {
                exactly(args, 0)?;
                ClusterCommand::Shards
            }
            "nodes" => {
                exactly(args, 0)?;
                ClusterCommand::Nodes
            }
            "countkeysinslot" => {
                exactly(args, 1)?;
                ClusterCommand::CountKeysInSlot(parse_slot(&args.next_bytes()?, "Invalid slot")?)
            }
            "getkeysinslot" => {
                exactly(args, 2)?;
                let invalid = "Invalid slot or number of keys";
                let slot = parse_slot(&args.next_bytes()?, invalid)?;
                let count = crate::args::parse_i64(&args.next_bytes()?)
                    .ok()
                    .and_then(|count| u64::try_from(count).ok())
                    .ok_or_else(|| CommandError::err(invalid))?;
                ClusterCommand::GetKeysInSlot(slot, count)
            }
            "failover" => ClusterCommand::Failover(failover_mode(args)?),
            "setslot" => {
                if args.remaining() < 2 {
                    return Err(CommandError::arity("cluster|setslot"));
                }
                let slot = parse_slot(&args.next_bytes()?, "Invalid or out of range slot")?;
                ClusterCommand::SetSlot(slot, set_slot(args)?)
            }
            "handover" => {
                exactly(args, 1)?;
                ClusterCommand::Handover(args.next_bytes()?)
            }
            "help" => ClusterCommand::Help,
            _ => {
                args.rest();
                ClusterCommand::NotYet(lower)
            }
        })
    }
}

/// The membership subcommands (MEET, FORGET, RESET, MEMBER, MEMBERS, REPLICATE), if `lower`
/// is one.
fn membership(lower: &str, args: &mut Args) -> Option<Result<ClusterCommand, CommandError>> {
    let exactly = |args: &mut Args, count: usize| {
        if args.remaining() == count {
            Ok(())
        } else {
            Err(CommandError::arity(&format!("cluster|{lower}")))
        }
    };
    let parsed = || -> Result<ClusterCommand, CommandError> {
        Ok(match lower {
            "meet" => meet(args)?,
            "forget" => {
                exactly(args, 1)?;
                ClusterCommand::Forget(args.next_bytes()?)
            }
            "reset" => match args.remaining() {
                0 => ClusterCommand::Reset,
                1 => {
                    let mode = args.next_bytes()?;
                    if mode.eq_ignore_ascii_case(b"soft") || mode.eq_ignore_ascii_case(b"hard") {
                        ClusterCommand::Reset
                    } else {
                        return Err(CommandError::err("syntax error"));
                    }
                }
                _ => return Err(CommandError::err("syntax error")),
            },
            "member" => {
                exactly(args, 1)?;
                ClusterCommand::Member(args.next_bytes()?)
            }
            "members" => {
                exactly(args, 0)?;
                ClusterCommand::Members
            }
            "replicate" => {
                exactly(args, 1)?;
                ClusterCommand::Replicate(args.next_bytes()?)
            }
            _ => unreachable!("only the membership subcommands come here"),
        })
    };
    ["meet", "forget", "reset", "member", "members", "replicate"]
        .contains(&lower)
        .then(parsed)
}

/// `CLUSTER MEET ip port [bus-port]`, with Redis's errors (the bus port is not used: cartd's
/// nodes talk over their client port).
fn meet(args: &mut Args) -> Result<ClusterCommand, CommandError> {
    if !(2..=3).contains(&args.remaining()) {
        return Err(CommandError::arity("cluster|meet"));
    }
    let host = args.next_bytes()?;
    let port_text = args.next_bytes()?;
    let port = crate::args::parse_i64(&port_text)
        .ok()
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port > 0)
        .ok_or_else(|| {
            CommandError::err(format!(
                "Invalid base port specified: {}",
                String::from_utf8_lossy(&port_text)
            ))
        })?;
    if args.remaining() == 1 {
        let bus = args.next_bytes()?;
        crate::args::parse_i64(&bus)
            .ok()
            .and_then(|bus| u16::try_from(bus).ok())
            .ok_or_else(|| {
                CommandError::err(format!(
                    "Invalid bus port specified: {}",
                    String::from_utf8_lossy(&bus)
                ))
            })?;
    }
    Ok(ClusterCommand::Meet(host, port))
}

/// `CLUSTER SETSLOT`'s action after the slot.
fn set_slot(args: &mut Args) -> Result<SetSlot, CommandError> {
    let action = args.next_bytes()?;
    let lower = String::from_utf8_lossy(&action).to_ascii_lowercase();
    let with_node = |args: &mut Args| -> Result<Bytes, CommandError> {
        if args.remaining() != 1 {
            return Err(CommandError::err("syntax error"));
        }
        args.next_bytes()
    };
    match lower.as_str() {
        "importing" => Ok(SetSlot::Importing(with_node(args)?)),
        "migrating" => Ok(SetSlot::Migrating(with_node(args)?)),
        "node" => Ok(SetSlot::Node(with_node(args)?)),
        "stable" if args.remaining() == 0 => Ok(SetSlot::Stable),
        _ => Err(CommandError::err(
            "Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP",
        )),
    }
}

/// `CLUSTER FAILOVER`'s option: none, `FORCE` or `TAKEOVER`.
fn failover_mode(args: &mut Args) -> Result<FailoverMode, CommandError> {
    match args.remaining() {
        0 => Ok(FailoverMode::Planned),
        1 => {
            let option = args.next_bytes()?;
            if option.eq_ignore_ascii_case(b"force") {
                Ok(FailoverMode::Force)
            } else if option.eq_ignore_ascii_case(b"takeover") {
                Ok(FailoverMode::Takeover)
            } else {
                Err(CommandError::err("syntax error"))
            }
        }
        _ => Err(CommandError::err("syntax error")),
    }
}

/// A slot number, 0..16383, or Redis's error for it.
pub(crate) fn parse_slot(text: &[u8], invalid: &str) -> Result<u16, CommandError> {
    crate::args::parse_i64(text)
        .ok()
        .and_then(|slot| u16::try_from(slot).ok())
        .filter(|slot| *slot < 16384)
        .ok_or_else(|| CommandError::err(invalid))
}

/// `WAIT numreplicas timeout`, with Redis's errors.
pub(super) fn parse_wait(args: &mut Args) -> Result<Command, CommandError> {
    let (replicas, timeout_ms) = wait_arguments(&args.next_bytes()?, &args.next_bytes()?)?;
    Ok(Command::Wait {
        replicas,
        timeout_ms,
    })
}

/// `PSYNC replicationid lsn`; an LSN of -1 (Redis's "from scratch") is 0.
pub(super) fn parse_psync(args: &mut Args) -> Result<Command, CommandError> {
    let replication_id = args.next_bytes()?;
    let lsn = match crate::args::parse_i64(&args.next_bytes()?) {
        Ok(lsn) if lsn >= 0 => lsn as u64,
        Ok(-1) => 0,
        _ => return Err(CommandError::err("value is not an integer or out of range")),
    };
    Ok(Command::Psync {
        replication_id,
        lsn,
    })
}

/// WAIT's replicas and timeout (ms) from its two arguments, with Redis's errors; a negative
/// replica count asks for none. The connection reads them before WAIT runs, to wait first.
pub fn wait_arguments(replicas: &[u8], timeout: &[u8]) -> Result<(u64, u64), CommandError> {
    let integer = |text: &[u8]| {
        crate::args::parse_i64(text)
            .map_err(|_| CommandError::err("value is not an integer or out of range"))
    };
    let replicas = integer(replicas)?;
    let timeout_ms = integer(timeout)?;
    if timeout_ms < 0 {
        return Err(CommandError::err("timeout is negative"));
    }
    Ok((
        u64::try_from(replicas).unwrap_or(0),
        timeout_ms.unsigned_abs(),
    ))
}
