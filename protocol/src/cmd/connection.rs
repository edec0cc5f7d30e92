//! Connection commands with arguments: `HELLO`, `AUTH`, `CLIENT ...`.

use bytes::Bytes;

use super::options::reject_repeat;
use super::Command;
use crate::args::Args;
use crate::error::{CommandError, ErrorCode};
use crate::reply::Protocol;

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
#[derive(Debug, PartialEq)]
pub struct Hello {
    /// The version asked for; `None` keeps the current one.
    pub protocol: Option<Protocol>,
    /// `AUTH username password`.
    pub auth: Option<(Bytes, Bytes)>,
    /// `SETNAME clientname`.
    pub setname: Option<Bytes>,
}

impl Hello {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<Hello, CommandError> {
        let mut hello = Hello {
            protocol: None,
            auth: None,
            setname: None,
        };
        let Some(version) = args.next_if_any() else {
            return Ok(hello);
        };
        hello.protocol = Some(match crate::args::parse_i64(&version) {
            Ok(2) => Protocol::Resp2,
            Ok(3) => Protocol::Resp3,
            Ok(_) => {
                return Err(CommandError::new(
                    ErrorCode::NoProto,
                    "unsupported protocol version",
                ))
            }
            Err(_) => {
                return Err(CommandError::err(
                    "Protocol version is not an integer or out of range",
                ))
            }
        });
        while let Some(name) = args.next_if_any() {
            if name.eq_ignore_ascii_case(b"AUTH") {
                reject_repeat(hello.auth.is_some())?;
                hello.auth = Some((args.next_bytes()?, args.next_bytes()?));
            } else if name.eq_ignore_ascii_case(b"SETNAME") {
                reject_repeat(hello.setname.is_some())?;
                hello.setname = Some(check_client_name(args.next_bytes()?)?);
            } else {
                return Err(CommandError::err(format!(
                    "Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&name)
                )));
            }
        }
        Ok(hello)
    }
}

/// `AUTH [username] password`.
pub(super) fn parse_auth(args: &mut Args) -> Result<Command, CommandError> {
    let first = args.next_bytes()?;
    match args.next_if_any() {
        Some(password) => Ok(Command::Auth {
            user: Some(first),
            password,
        }),
        None => Ok(Command::Auth {
            user: None,
            password: first,
        }),
    }
}

/// Client names cannot contain spaces or newlines (CLIENT LIST would be unreadable).
fn check_client_name(name: Bytes) -> Result<Bytes, CommandError> {
    if name.iter().any(|&byte| !(b'!'..=b'~').contains(&byte)) {
        return Err(CommandError::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(name)
}

/// `CLIENT KILL` filters (the old `ip:port` form is `addr`).
#[derive(Debug, PartialEq, Default)]
pub struct ClientKill {
    /// `ID client-id`.
    pub id: Option<u64>,
    /// `ADDR ip:port` (or the old single-argument form).
    pub addr: Option<String>,
    /// `LADDR ip:port`.
    pub laddr: Option<String>,
    /// `SKIPME yes|no` (default yes).
    pub skip_me: bool,
    /// Whether the old form was used (it replies +OK or an error rather than a count).
    pub old_form: bool,
}

/// `CLIENT` subcommands.
#[derive(Debug, PartialEq)]
pub enum ClientCommand {
    /// `CLIENT ID`.
    Id,
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT SETNAME name`.
    SetName(Bytes),
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
    SetInfo {
        /// True for LIB-NAME, false for LIB-VER.
        lib_name: bool,
        /// The value.
        value: Bytes,
    },
    /// `CLIENT LIST [ID id ...]`.
    List(Vec<u64>),
    /// `CLIENT INFO`.
    Info,
    /// `CLIENT KILL ...`.
    Kill(ClientKill),
    /// `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`.
    Tracking(Tracking),
    /// `CLIENT CACHING YES|NO`: whether the next read is tracked (OPTIN / OPTOUT modes).
    Caching(bool),
    /// `CLIENT GETREDIR`.
    GetRedir,
    /// `CLIENT TRACKINGINFO`.
    TrackingInfo,
    /// `CLIENT REPLY ON|OFF|SKIP`.
    Reply(ClientReply),
    /// `CLIENT PAUSE timeout [WRITE|ALL]`.
    Pause {
        /// How long the pause lasts from now, milliseconds.
        timeout_ms: u64,
        /// `WRITE`: only commands that change data wait; `ALL` (the default): every command.
        writes_only: bool,
    },
    /// `CLIENT UNPAUSE`.
    Unpause,
    /// `CLIENT NO-EVICT ON|OFF`.
    NoEvict(bool),
    /// `CLIENT NO-TOUCH ON|OFF`.
    NoTouch(bool),
    /// `CLIENT HELP`.
    Help,
}

/// `CLIENT TRACKING` and its options.
#[derive(Debug, PartialEq, Default, Clone)]
pub struct Tracking {
    /// ON (true) or OFF.
    pub on: bool,
    /// `REDIRECT client-id`: invalidations go to that client instead.
    pub redirect: Option<u64>,
    /// `PREFIX prefix` (BCAST only): keys it announces; none announces every key.
    pub prefixes: Vec<Bytes>,
    /// `BCAST`: every change of a key under a prefix is announced, read or not.
    pub bcast: bool,
    /// `OPTIN`: only reads after `CLIENT CACHING YES` are tracked.
    pub optin: bool,
    /// `OPTOUT`: reads after `CLIENT CACHING NO` are not tracked.
    pub optout: bool,
    /// `NOLOOP`: changes this client makes itself are not announced to it.
    pub noloop: bool,
}

/// What `CLIENT REPLY` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientReply {
    /// Replies again (replies `+OK`).
    On,
    /// No replies at all from now on, errors included (no reply to this command either).
    Off,
    /// No reply to the next command (nor to this one).
    Skip,
}

impl ClientCommand {
    /// Parses the arguments after `CLIENT`.
    pub fn parse(args: &mut Args) -> Result<ClientCommand, CommandError> {
        let sub = args.next_bytes()?;
        let is = |name: &str| sub.eq_ignore_ascii_case(name.as_bytes());
        let command = if is("ID") {
            ClientCommand::Id
        } else if is("GETNAME") {
            ClientCommand::GetName
        } else if is("SETNAME") {
            ClientCommand::SetName(check_client_name(args.next_bytes()?)?)
        } else if is("SETINFO") {
            let attr = args.next_bytes()?;
            let value = check_client_name(args.next_bytes()?)?;
            let lib_name = if attr.eq_ignore_ascii_case(b"LIB-NAME") {
                true
            } else if attr.eq_ignore_ascii_case(b"LIB-VER") {
                false
            } else {
                return Err(CommandError::err(format!(
                    "Unrecognized option '{}'",
                    String::from_utf8_lossy(&attr)
                )));
            };
            ClientCommand::SetInfo { lib_name, value }
        } else if is("LIST") {
            ClientCommand::List(parse_list_filter(args)?)
        } else if is("INFO") {
            ClientCommand::Info
        } else if is("KILL") {
            ClientCommand::Kill(parse_kill(args)?)
        } else if is("TRACKING") {
            ClientCommand::Tracking(parse_tracking(args)?)
        } else if is("CACHING") {
            ClientCommand::Caching(parse_caching(args)?)
        } else if is("GETREDIR") {
            ClientCommand::GetRedir
        } else if is("TRACKINGINFO") {
            ClientCommand::TrackingInfo
        } else if is("REPLY") {
            client_arity(args, "reply", 1)?;
            let mode = args.next_bytes()?;
            ClientCommand::Reply(if mode.eq_ignore_ascii_case(b"ON") {
                ClientReply::On
            } else if mode.eq_ignore_ascii_case(b"OFF") {
                ClientReply::Off
            } else if mode.eq_ignore_ascii_case(b"SKIP") {
                ClientReply::Skip
            } else {
                return Err(CommandError::syntax());
            })
        } else if is("PAUSE") {
            parse_pause(args)?
        } else if is("UNPAUSE") {
            client_arity(args, "unpause", 0)?;
            ClientCommand::Unpause
        } else if is("NO-EVICT") {
            client_arity(args, "no-evict", 1)?;
            ClientCommand::NoEvict(parse_on_off(&args.next_bytes()?)?)
        } else if is("NO-TOUCH") {
            client_arity(args, "no-touch", 1)?;
            ClientCommand::NoTouch(parse_on_off(&args.next_bytes()?)?)
        } else if is("HELP") {
            client_arity(args, "help", 0)?;
            ClientCommand::Help
        } else {
            return Err(CommandError::err(format!(
                "unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&sub)
            )));
        };
        Ok(command)
    }
}

/// Exactly `words` arguments after the subcommand, else Redis's `client|sub` arity error.
fn client_arity(args: &Args, sub: &str, words: usize) -> Result<(), CommandError> {
    if args.remaining() != words {
        return Err(CommandError::arity(&format!("client|{sub}")));
    }
    Ok(())
}

/// `ON` or `OFF`, in any case; anything else is a syntax error, as in Redis.
fn parse_on_off(word: &[u8]) -> Result<bool, CommandError> {
    if word.eq_ignore_ascii_case(b"ON") {
        Ok(true)
    } else if word.eq_ignore_ascii_case(b"OFF") {
        Ok(false)
    } else {
        Err(CommandError::syntax())
    }
}

/// `CLIENT PAUSE timeout [WRITE|ALL]`, with Redis's errors.
fn parse_pause(args: &mut Args) -> Result<ClientCommand, CommandError> {
    if !(1..=2).contains(&args.remaining()) {
        return Err(CommandError::arity("client|pause"));
    }
    let timeout = args.next_bytes()?;
    let timeout_ms = crate::args::parse_i64(&timeout)
        .map_err(|_| CommandError::err("timeout is not an integer or out of range"))?;
    let timeout_ms =
        u64::try_from(timeout_ms).map_err(|_| CommandError::err("timeout is negative"))?;
    let writes_only = match args.next_if_any() {
        None => false,
        Some(mode) if mode.eq_ignore_ascii_case(b"ALL") => false,
        Some(mode) if mode.eq_ignore_ascii_case(b"WRITE") => true,
        Some(_) => return Err(CommandError::err("CLIENT PAUSE mode must be WRITE or ALL")),
    };
    Ok(ClientCommand::Pause {
        timeout_ms,
        writes_only,
    })
}

fn parse_list_filter(args: &mut Args) -> Result<Vec<u64>, CommandError> {
    let mut ids = Vec::new();
    while let Some(name) = args.next_if_any() {
        if name.eq_ignore_ascii_case(b"ID") {
            while args.remaining() > 0 {
                ids.push(args.next_u64()?);
            }
        } else if name.eq_ignore_ascii_case(b"TYPE") {
            let kind = args.next_bytes()?;
            if !kind.eq_ignore_ascii_case(b"normal") {
                return Err(CommandError::err("cartd has only normal clients"));
            }
        } else {
            return Err(CommandError::syntax());
        }
    }
    Ok(ids)
}

fn parse_kill(args: &mut Args) -> Result<ClientKill, CommandError> {
    let mut kill = ClientKill {
        skip_me: true,
        ..ClientKill::default()
    };
    if args.remaining() == 1 {
        kill.addr = Some(String::from_utf8_lossy(&args.next_bytes()?).into_owned());
        kill.old_form = true;
        kill.skip_me = false;
        return Ok(kill);
    }
    if args.remaining() == 0 {
        return Err(CommandError::syntax());
    }
    while let Some(name) = args.next_if_any() {
        let value = args.next_bytes()?;
        let text = String::from_utf8_lossy(&value).into_owned();
        if name.eq_ignore_ascii_case(b"ID") {
            kill.id = Some(
                crate::args::parse_i64(&value)?
                    .try_into()
                    .map_err(|_| CommandError::err("client-id should be greater than 0"))?,
            );
        } else if name.eq_ignore_ascii_case(b"ADDR") {
            kill.addr = Some(text);
        } else if name.eq_ignore_ascii_case(b"LADDR") {
            kill.laddr = Some(text);
        } else if name.eq_ignore_ascii_case(b"SKIPME") {
            kill.skip_me = match text.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(CommandError::syntax()),
            };
        } else {
            return Err(CommandError::syntax());
        }
    }
    Ok(kill)
}

/// `CLIENT CACHING YES|NO`: true for YES.
fn parse_caching(args: &mut Args) -> Result<bool, CommandError> {
    let value = args.next_bytes()?;
    if args.remaining() > 0 {
        return Err(CommandError::syntax());
    }
    if value.eq_ignore_ascii_case(b"YES") {
        Ok(true)
    } else if value.eq_ignore_ascii_case(b"NO") {
        Ok(false)
    } else {
        Err(CommandError::syntax())
    }
}

fn parse_tracking(args: &mut Args) -> Result<Tracking, CommandError> {
    let switch = args.next_bytes()?;
    let mut tracking = Tracking::default();
    if switch.eq_ignore_ascii_case(b"ON") {
        tracking.on = true;
    } else if !switch.eq_ignore_ascii_case(b"OFF") {
        return Err(CommandError::syntax());
    }
    while let Some(option) = args.next_if_any() {
        let is = |name: &str| option.eq_ignore_ascii_case(name.as_bytes());
        if is("REDIRECT") {
            if tracking.redirect.is_some() {
                return Err(CommandError::err(
                    "A client can only redirect to a single other client",
                ));
            }
            let id = crate::args::parse_i64(&args.next_bytes()?)?;
            tracking.redirect =
                Some(u64::try_from(id).map_err(|_| CommandError::err("Invalid client ID"))?);
        } else if is("PREFIX") {
            tracking.prefixes.push(args.next_bytes()?);
        } else if is("BCAST") {
            tracking.bcast = true;
        } else if is("OPTIN") {
            tracking.optin = true;
        } else if is("OPTOUT") {
            tracking.optout = true;
        } else if is("NOLOOP") {
            tracking.noloop = true;
        } else {
            return Err(CommandError::syntax());
        }
    }
    Ok(tracking)
}
