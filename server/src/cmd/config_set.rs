//! CONFIG SET (the settings that change at run time, all or nothing, with Redis's errors),
//! CONFIG REWRITE (those settings back into the config file, its comments and everything
//! else kept: `toml_edit`) and CONFIG HELP. CONFIG GET is `cmd/server.rs`.

use std::path::Path;

use bytes::Bytes;
use protocol::{CommandError, Reply};

use super::introspection::help_reply;
use crate::config::{parse_memory, OutputBufferLimit, ServerConfig};
use crate::limits::SLOWLOG_LEN_LIMIT;
use crate::runtime::Setting;
use crate::server::Server;

/// Redis parameters cartd knows but fixes at start (or has no use for): CONFIG SET refuses
/// them as immutable rather than unknown. cartd's own CONFIG GET names are immutable too.
const IMMUTABLE: &[&str] = &[
    "bind",
    "port",
    "databases",
    "appendonly",
    "appendfsync",
    "save",
    "dir",
    "daemonize",
    "tcp-backlog",
    "proto-max-bulk-len",
    "protected-mode",
    "tls-port",
    "tls-cert-file",
    "tls-key-file",
    "tls-ca-cert-file",
    "tls-auth-clients",
    "tls-protocols",
    "aclfile",
    "logfile",
    "pidfile",
    "hz",
];

/// `ERR CONFIG SET failed (possibly related to argument 'name') - reason`.
fn failed(name: &str, reason: &str) -> CommandError {
    CommandError::err(format!(
        "CONFIG SET failed (possibly related to argument '{name}') - {reason}"
    ))
}

/// Runs `CONFIG SET name value [name value ...]`: every pair is checked first, and only if
/// all are good are they applied, so a bad one changes nothing.
pub fn set(pairs: &[(Bytes, Bytes)], server: &Server) -> Result<Reply, CommandError> {
    let mut settings: Vec<(String, Setting)> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        if settings.iter().any(|(seen, _)| *seen == name) {
            return Err(failed(&name, "duplicate parameter"));
        }
        let setting = parse_setting(&name, value, server)?;
        settings.push((name, setting));
    }
    for (_, setting) in &settings {
        apply(setting, server);
    }
    Ok(Reply::ok())
}

/// Checks one pair and turns it into a [`Setting`].
fn parse_setting(name: &str, value: &[u8], server: &Server) -> Result<Setting, CommandError> {
    let text = String::from_utf8_lossy(value);
    let text = text.as_ref();
    let integer = |min: i64, max: i64| -> Result<i64, CommandError> {
        let number: i64 = protocol::parse_i64(value)
            .map_err(|_| failed(name, "argument couldn't be parsed into an integer"))?;
        if !(min..=max).contains(&number) {
            return Err(failed(
                name,
                &format!("argument must be between {min} and {max} inclusive"),
            ));
        }
        Ok(number)
    };
    let memory = || parse_memory(text).map_err(|_| failed(name, "argument must be a memory value"));
    Ok(match name {
        "maxmemory" => Setting::MaxMemory(memory()?),
        "maxmemory-clients" => Setting::MaxMemoryClients(memory()?),
        "maxmemory-policy" => {
            if !text.eq_ignore_ascii_case("noeviction") {
                return Err(failed(
                    name,
                    "argument(s) must be one of the following: noeviction",
                ));
            }
            Setting::MaxMemoryPolicy
        }
        "maxclients" => {
            let clients = integer(1, i64::from(i32::MAX))? as usize;
            check_open_files(clients).map_err(|reason| failed(name, &reason))?;
            Setting::MaxClients(clients)
        }
        "timeout" => Setting::Timeout(integer(0, i64::from(i32::MAX))? as u64),
        "slowlog-log-slower-than" => Setting::SlowlogLogSlowerThan(integer(-1, i64::MAX)?),
        "slowlog-max-len" => Setting::SlowlogMaxLen(integer(0, SLOWLOG_LEN_LIMIT as i64)? as usize),
        "latency-monitor-threshold" => {
            Setting::LatencyMonitorThreshold(integer(0, i64::MAX)? as u64)
        }
        "client-output-buffer-limit" => {
            let (normal, pubsub) =
                parse_output_limit(text).map_err(|reason| failed(name, reason))?;
            Setting::OutputBufferLimit { normal, pubsub }
        }
        "requirepass" => Setting::RequirePass(text.to_owned()),
        _ if IMMUTABLE.contains(&name) || is_cartd_parameter(name, server) => {
            return Err(failed(name, "can't set immutable config"));
        }
        _ => {
            return Err(CommandError::err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{name}'"
            )))
        }
    })
}

/// Whether CONFIG GET shows `name` (cartd's own parameters, fixed at start).
fn is_cartd_parameter(name: &str, server: &Server) -> bool {
    super::server::parameter_names(server).contains(&name)
}

/// `maxclients` as Redis checks it: the open-file limit must hold that many clients and the
/// files cartd keeps itself (raised towards the hard limit if it can be).
fn check_open_files(clients: usize) -> Result<(), String> {
    let wanted = clients as u64 + crate::limits::FDS_RESERVED;
    let limit = rlimit::increase_nofile_limit(wanted)
        .map_err(|error| format!("cannot raise the open-file limit: {error}"))?;
    if limit < wanted {
        return Err(format!(
            "The operating system is not able to handle the specified number of clients, try \
             with {}",
            limit.saturating_sub(crate::limits::FDS_RESERVED)
        ));
    }
    Ok(())
}

/// Redis's `client-output-buffer-limit` value: groups of `class hard soft seconds`, for the
/// `normal` and `pubsub` classes (listeners: subscribers, monitors, tracking targets).
/// cartd has no replicas yet, so a `slave`/`replica` group must say `0 0 0` (as CONFIG GET
/// shows it).
type OutputLimits = (Option<OutputBufferLimit>, Option<OutputBufferLimit>);

fn parse_output_limit(text: &str) -> Result<OutputLimits, &'static str> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.");
    }
    let (mut normal, mut pubsub) = (None, None);
    for group in words.chunks_exact(4) {
        let class = group[0].to_ascii_lowercase();
        let values = (
            parse_memory(group[1]),
            parse_memory(group[2]),
            group[3].parse::<u64>(),
        );
        let (Ok(hard_bytes), Ok(soft_bytes), Ok(soft_s)) = values else {
            return Err(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration.",
            );
        };
        let limit = OutputBufferLimit {
            hard_bytes,
            soft_bytes,
            soft_s,
        };
        match class.as_str() {
            "normal" => normal = Some(limit),
            "pubsub" => pubsub = Some(limit),
            "slave" | "replica" if hard_bytes == 0 && soft_bytes == 0 && soft_s == 0 => {}
            "slave" | "replica" => {
                return Err("cartd has no replicas yet: replica limits must be 0 0 0.")
            }
            _ => return Err("Invalid client class specified in buffer limit configuration."),
        }
    }
    Ok((normal, pubsub))
}

/// Applies one checked setting where it lives.
fn apply(setting: &Setting, server: &Server) {
    server.runtime.apply(setting);
    match setting {
        Setting::RequirePass(password) => server.acl.set_requirepass(password),
        Setting::SlowlogMaxLen(entries) => server.slowlog.trim(*entries),
        Setting::MaxMemory(bytes) => {
            // At once rather than at the next 100 ms sample, so the next write sees it.
            let over = *bytes > 0 && crate::server::rss_bytes() > *bytes;
            server
                .over_maxmemory
                .store(over, std::sync::atomic::Ordering::Relaxed);
        }
        _ => {}
    }
    tracing::info!(?setting, "CONFIG SET");
}

const CONFIG_HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Prints this help.",
];

/// Runs `CONFIG HELP`.
pub fn help() -> Reply {
    help_reply(CONFIG_HELP)
}

/// A size in Redis's units where it is a whole number of them (`256mb`), else in bytes.
pub fn memory_text(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "gb"), (1 << 20, "mb"), (1 << 10, "kb")];
    UNITS
        .iter()
        .find(|(size, _)| bytes > 0 && bytes.is_multiple_of(*size))
        .map_or_else(
            || bytes.to_string(),
            |(size, unit)| format!("{}{unit}", bytes / size),
        )
}

/// A size for config.toml: 0 as a number, else text in Redis's units where whole (`"256mb"`).
fn toml_memory(bytes: u64) -> toml_edit::Value {
    if bytes == 0 {
        toml_edit::Value::from(0)
    } else {
        toml_edit::Value::from(memory_text(bytes))
    }
}

/// `client_output_buffer_limit` (`class` normal) or `client_output_buffer_limit_pubsub`
/// (`class` pubsub) for config.toml: `"normal 32mb 128kb 10"`.
fn toml_output_limit(class: &str, limit: OutputBufferLimit) -> toml_edit::Value {
    toml_edit::Value::from(format!(
        "{class} {} {} {}",
        memory_text(limit.hard_bytes),
        memory_text(limit.soft_bytes),
        limit.soft_s
    ))
}

/// One `[server]` key CONFIG REWRITE writes: as config.toml spells it, the hyphenated alias a
/// file may use instead, and its value now and by default.
type RewrittenKey = (
    &'static str,
    &'static str,
    toml_edit::Value,
    toml_edit::Value,
);

/// Every key CONFIG REWRITE writes.
fn rewritten_keys(server: &Server) -> Vec<RewrittenKey> {
    let runtime = &server.runtime;
    let default = ServerConfig::default();
    let int = |value: u64| toml_edit::Value::from(i64::try_from(value).unwrap_or(i64::MAX));
    vec![
        (
            "maxmemory",
            "maxmemory",
            toml_memory(runtime.maxmemory_bytes()),
            toml_memory(default.maxmemory),
        ),
        (
            "maxmemory_clients",
            "maxmemory-clients",
            toml_memory(runtime.maxmemory_clients_bytes()),
            toml_memory(default.maxmemory_clients),
        ),
        (
            "maxclients",
            "maxclients",
            int(runtime.maxclients() as u64),
            int(default.maxclients as u64),
        ),
        (
            "timeout",
            "timeout",
            int(runtime.timeout_s()),
            int(default.timeout),
        ),
        (
            "slowlog_log_slower_than",
            "slowlog-log-slower-than",
            toml_edit::Value::from(runtime.slowlog_log_slower_than_us()),
            toml_edit::Value::from(default.slowlog_log_slower_than),
        ),
        (
            "slowlog_max_len",
            "slowlog-max-len",
            int(runtime.slowlog_max_len() as u64),
            int(default.slowlog_max_len as u64),
        ),
        (
            "latency_monitor_threshold",
            "latency-monitor-threshold",
            int(runtime.latency_monitor_threshold_ms()),
            int(default.latency_monitor_threshold),
        ),
        (
            "client_output_buffer_limit",
            "client-output-buffer-limit",
            toml_output_limit("normal", runtime.output_buffer_limit()),
            toml_output_limit("normal", default.client_output_buffer_limit),
        ),
        (
            "client_output_buffer_limit_pubsub",
            "client-output-buffer-limit-pubsub",
            toml_output_limit("pubsub", runtime.pubsub_output_buffer_limit()),
            toml_output_limit("pubsub", default.client_output_buffer_limit_pubsub),
        ),
        (
            "requirepass",
            "requirepass",
            toml_edit::Value::from(server.acl.requirepass()),
            toml_edit::Value::from(default.requirepass),
        ),
    ]
}

/// Runs `CONFIG REWRITE`: each run-time setting goes where the file has it (under either
/// spelling; its comments and layout stay), or is added to `[server]` if the file lacks it
/// and it is no longer the default. Everything else in the file is left as it was. The new
/// file replaces the old one by a rename, so a crash leaves one or the other.
pub fn rewrite(server: &Server) -> Result<Reply, CommandError> {
    let Some(path) = &server.config_file else {
        return Err(CommandError::err(
            "The server is running without a config file",
        ));
    };
    let rewriting = |error: String| CommandError::err(format!("Rewriting config file: {error}"));
    let text = std::fs::read_to_string(path).map_err(|error| rewriting(error.to_string()))?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .map_err(|error: toml_edit::TomlError| rewriting(error.to_string()))?;
    if !document.contains_key("server") {
        document.insert("server", toml_edit::Item::Table(toml_edit::Table::new()));
    }
    let table = document["server"]
        .as_table_like_mut()
        .ok_or_else(|| rewriting("[server] is not a table".into()))?;
    for (key, alias, now, default) in rewritten_keys(server) {
        let present = [key, alias]
            .into_iter()
            .find(|name| table.contains_key(name));
        match present {
            Some(name) => {
                let item = table.get_mut(name).expect("the key was just found");
                match item.as_value_mut() {
                    Some(value) => {
                        let decor = value.decor().clone();
                        *value = now;
                        *value.decor_mut() = decor;
                    }
                    None => *item = toml_edit::Item::Value(now),
                }
            }
            None if now.to_string() != default.to_string() => {
                table.insert(key, toml_edit::Item::Value(now));
            }
            None => {}
        }
    }
    write_replacing(path, document.to_string().as_bytes())
        .map_err(|error| rewriting(error.to_string()))?;
    tracing::info!(file = %path.display(), "CONFIG REWRITE");
    Ok(Reply::ok())
}

/// Writes `bytes` to a new file beside `path`, syncs it and renames it over `path`.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".rewrite");
    let temporary = std::path::PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    if let Ok(metadata) = std::fs::metadata(path) {
        let _ = file.set_permissions(metadata.permissions());
    }
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}
