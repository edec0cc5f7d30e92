//! `ACL SETUSER/GETUSER/DELUSER/LIST/USERS/WHOAMI/CAT/LOG/SAVE/LOAD/HELP`, as Redis answers
//! them (see `crate::acl` for the rules).

use bytes::Bytes;
use protocol::{CommandError, Reply, COMMANDS};

use crate::acl::{commands_in, CARTD_CATEGORIES, REDIS_CATEGORIES};
use crate::dispatch::Session;
use crate::server::Server;

fn text(arg: &Bytes) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

fn wrong_arity(subcommand: &str) -> CommandError {
    CommandError::arity(&format!("acl|{subcommand}"))
}

/// Runs `ACL <args>`.
pub fn run(args: Vec<Bytes>, session: &Session, server: &Server) -> Result<Reply, CommandError> {
    let Some((subcommand, rest)) = args.split_first() else {
        return Err(CommandError::arity("acl"));
    };
    let name = subcommand.to_ascii_lowercase();
    let name = String::from_utf8_lossy(&name).into_owned();
    let acl = &server.acl;
    match name.as_str() {
        "setuser" => {
            let Some((user, rules)) = rest.split_first() else {
                return Err(wrong_arity("setuser"));
            };
            let rules: Vec<String> = rules.iter().map(text).collect();
            acl.set_user(&text(user), &rules)
                .map_err(CommandError::err)?;
            Ok(Reply::ok())
        }
        "getuser" => match rest {
            [user] => Ok(get_user(&text(user), server)),
            _ => Err(wrong_arity("getuser")),
        },
        "deluser" => {
            if rest.is_empty() {
                return Err(wrong_arity("deluser"));
            }
            let names: Vec<String> = rest.iter().map(text).collect();
            let removed = acl.delete_users(&names).map_err(CommandError::err)?;
            Ok(Reply::Integer(removed as i64))
        }
        "list" => Ok(Reply::Array(
            acl.users()
                .iter()
                .map(|user| Reply::text(user.describe()))
                .collect(),
        )),
        "users" => Ok(Reply::Array(
            acl.users()
                .iter()
                .map(|user| Reply::text(user.name.clone()))
                .collect(),
        )),
        "whoami" => Ok(Reply::text(session.user.name.clone())),
        "cat" => categories(rest),
        "log" => log(rest, server),
        "save" => {
            acl.save().map_err(CommandError::err)?;
            Ok(Reply::ok())
        }
        "load" => {
            acl.load().map_err(CommandError::err)?;
            Ok(Reply::ok())
        }
        "help" => Ok(help()),
        _ => Err(CommandError::err(format!(
            "unknown subcommand '{}'. Try ACL HELP.",
            text(subcommand)
        ))),
    }
}

/// `ACL GETUSER name`: its flags, password digests, commands, keys and channels.
fn get_user(name: &str, server: &Server) -> Reply {
    let Some(user) = server.acl.user(name) else {
        return Reply::Null;
    };
    let details = user.details();
    let strings = |items: Vec<String>| Reply::Array(items.into_iter().map(Reply::text).collect());
    Reply::Map(vec![
        (
            Reply::from_static("flags"),
            strings(
                details
                    .flags
                    .iter()
                    .map(|flag| (*flag).to_owned())
                    .collect(),
            ),
        ),
        (Reply::from_static("passwords"), strings(details.passwords)),
        (
            Reply::from_static("commands"),
            Reply::text(details.commands),
        ),
        (Reply::from_static("keys"), Reply::text(details.keys)),
        (
            Reply::from_static("channels"),
            Reply::text(details.channels),
        ),
        (Reply::from_static("selectors"), Reply::Array(Vec::new())),
    ])
}

/// `ACL CAT [category]`: the categories, or the commands of one.
fn categories(rest: &[Bytes]) -> Result<Reply, CommandError> {
    match rest {
        [] => Ok(Reply::Array(
            REDIS_CATEGORIES
                .iter()
                .chain(CARTD_CATEGORIES.iter())
                .map(|category| Reply::from_static(category))
                .collect(),
        )),
        [category] => {
            let category = text(category).to_ascii_lowercase();
            let category = category.trim_start_matches('@');
            if !REDIS_CATEGORIES.contains(&category) && !CARTD_CATEGORIES.contains(&category) {
                return Err(CommandError::err(format!("Unknown category '{category}'")));
            }
            let ids = if category == "all" {
                COMMANDS.iter().map(|spec| spec.id).collect()
            } else {
                commands_in(category)
            };
            Ok(Reply::Array(
                ids.into_iter()
                    .map(|id| Reply::from_static(id.spec().name))
                    .collect(),
            ))
        }
        _ => Err(wrong_arity("cat")),
    }
}

fn help() -> Reply {
    Reply::Array(
        [
            "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "SETUSER <username> <attribute> [<attribute> ...]",
            "GETUSER <username>",
            "DELUSER <username> [<username> ...]",
            "LIST",
            "USERS",
            "WHOAMI",
            "CAT [<category>]",
            "LOG [<count> | RESET]",
            "SAVE",
            "LOAD",
            "HELP",
        ]
        .into_iter()
        .map(|line| Reply::Simple(line.into()))
        .collect(),
    )
}

/// `ACL LOG [count | RESET]`: newest first, in Redis's fields.
fn log(rest: &[Bytes], server: &Server) -> Result<Reply, CommandError> {
    let count = match rest {
        [] => None,
        [word] if word.eq_ignore_ascii_case(b"RESET") => {
            server.acl.reset_log();
            return Ok(Reply::ok());
        }
        [word] => Some(
            std::str::from_utf8(word)
                .ok()
                .and_then(|text| text.parse::<usize>().ok())
                .ok_or_else(CommandError::not_an_integer)?,
        ),
        _ => return Err(wrong_arity("log")),
    };
    let entries = server.acl.log_entries(count);
    Ok(Reply::Array(
        entries
            .into_iter()
            .map(|entry| {
                Reply::Map(vec![
                    (
                        Reply::from_static("count"),
                        Reply::Integer(entry.count as i64),
                    ),
                    (
                        Reply::from_static("reason"),
                        Reply::from_static(entry.reason),
                    ),
                    (
                        Reply::from_static("context"),
                        Reply::from_static("toplevel"),
                    ),
                    (
                        Reply::from_static("object"),
                        Reply::text(entry.object.clone()),
                    ),
                    (
                        Reply::from_static("username"),
                        Reply::text(entry.username.clone()),
                    ),
                    (
                        Reply::from_static("age-seconds"),
                        Reply::text(format!("{:.3}", entry.age_s())),
                    ),
                    (
                        Reply::from_static("client-info"),
                        Reply::text(entry.client_info.clone()),
                    ),
                    (
                        Reply::from_static("entry-id"),
                        Reply::Integer(entry.entry_id as i64),
                    ),
                    (
                        Reply::from_static("timestamp-created"),
                        Reply::Integer(entry.created_ms as i64),
                    ),
                    (
                        Reply::from_static("timestamp-last-updated"),
                        Reply::Integer(entry.updated_ms as i64),
                    ),
                ])
            })
            .collect(),
    ))
}
