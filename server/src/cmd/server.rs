//! Server commands: INFO, CONFIG GET/RESETSTAT, COMMAND, TIME (CONFIG SET and REWRITE are
//! `config_set.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use protocol::cmd::docs::parse_syntax;
use protocol::{Command, CommandCommand, CommandSpec, Reply, COMMANDS};

use crate::info;
use crate::server::Server;

/// Runs a server command.
pub fn run(command: Command, server: &Server) -> Reply {
    match command {
        Command::Info(sections) => Reply::text(info::render(server, &sections)),
        Command::ConfigGet(patterns) => config_get(server, &patterns),
        Command::ConfigResetStat => {
            server.stats.reset();
            Reply::ok()
        }
        Command::Command(sub) => command_command(sub),
        Command::Time => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Reply::Array(vec![
                Reply::text(now.as_secs().to_string()),
                Reply::text(now.subsec_micros().to_string()),
            ])
        }
        _ => unreachable!("only server commands are routed here"),
    }
}

/// Every parameter CONFIG GET knows: Redis's names where a client asks for them, then
/// cartd's own as `config.toml` spells them.
fn parameters(server: &Server) -> Vec<(&'static str, String)> {
    let config = &server.config;
    vec![
        ("bind", config.server.bind.to_string()),
        ("port", server.local_addr.port().to_string()),
        ("maxclients", server.runtime.maxclients().to_string()),
        ("requirepass", server.acl.requirepass()),
        ("databases", "1".into()),
        ("appendonly", "yes".into()),
        ("appendfsync", config.persistence.appendfsync.clone()),
        ("save", redis_save_points(config)),
        ("dir", config.server.data_dir.display().to_string()),
        ("shards", config.server.shards.to_string()),
        ("max_bulk_bytes", config.server.max_bulk_bytes.to_string()),
        (
            "max_args_per_command",
            config.server.max_args_per_command.to_string(),
        ),
        ("guest_prefix", config.carts.guest_prefix.clone()),
        ("guest_ttl_s", config.carts.guest_ttl_s.to_string()),
        ("user_ttl_s", config.carts.user_ttl_s.to_string()),
        (
            "max_lines_per_cart",
            config.carts.max_lines_per_cart.to_string(),
        ),
        (
            "max_saved_per_cart",
            config.carts.max_saved_per_cart.to_string(),
        ),
        (
            "max_qty_per_line",
            config.carts.max_qty_per_line.to_string(),
        ),
        (
            "validation_cache_s",
            config.carts.validation_cache_s.to_string(),
        ),
        (
            "idempotency_ttl_s",
            config.carts.idempotency_ttl_s.to_string(),
        ),
        (
            "max_idempotency_keys",
            config.carts.max_idempotency_keys.to_string(),
        ),
        (
            "max_idempotency_keys_per_cart",
            config.carts.max_idempotency_keys_per_cart.to_string(),
        ),
        (
            "wal_segment_mb",
            config.persistence.wal_segment_mb.to_string(),
        ),
        (
            "snapshot_every_changes",
            config.persistence.snapshot_every_changes.to_string(),
        ),
        (
            "snapshot_every_s",
            config.persistence.snapshot_every_s.to_string(),
        ),
        (
            "restore_on_miss",
            config.postgres.restore_on_miss.to_string(),
        ),
    ]
    .into_iter()
    .chain(limit_parameters(server))
    .chain(pricing_parameters(config))
    .collect()
}

/// The names CONFIG GET knows.
pub fn parameter_names(server: &Server) -> Vec<&'static str> {
    parameters(server)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Client limits and the slow log and latency monitor settings, by Redis's names: what
/// CONFIG SET changes, as it is now.
fn limit_parameters(server: &Server) -> Vec<(&'static str, String)> {
    let config = &server.config;
    let runtime = &server.runtime;
    vec![
        ("timeout", runtime.timeout_s().to_string()),
        ("tcp-backlog", config.server.tcp_backlog.to_string()),
        ("maxmemory", runtime.maxmemory_bytes().to_string()),
        ("maxmemory-policy", config.server.maxmemory_policy.clone()),
        (
            "maxmemory-clients",
            runtime.maxmemory_clients_bytes().to_string(),
        ),
        ("client-output-buffer-limit", {
            let (limit, pubsub) = (
                runtime.output_buffer_limit(),
                runtime.pubsub_output_buffer_limit(),
            );
            format!(
                "normal {} {} {} slave 0 0 0 pubsub {} {} {}",
                limit.hard_bytes,
                limit.soft_bytes,
                limit.soft_s,
                pubsub.hard_bytes,
                pubsub.soft_bytes,
                pubsub.soft_s
            )
        }),
        (
            "proto-max-bulk-len",
            config.server.max_bulk_bytes.to_string(),
        ),
        (
            "slowlog-log-slower-than",
            runtime.slowlog_log_slower_than_us().to_string(),
        ),
        ("slowlog-max-len", runtime.slowlog_max_len().to_string()),
        (
            "latency-monitor-threshold",
            runtime.latency_monitor_threshold_ms().to_string(),
        ),
    ]
}

/// The checkout hold and the `[upstream]` settings.
fn pricing_parameters(config: &crate::config::Config) -> Vec<(&'static str, String)> {
    let upstream = &config.upstream;
    vec![
        ("checkout_hold_s", config.carts.checkout_hold_s.to_string()),
        ("upstream_catalog_url", upstream.catalog_url.clone()),
        ("upstream_inventory_url", upstream.inventory_url.clone()),
        ("upstream_timeout_ms", upstream.timeout_ms.to_string()),
        ("upstream_price_ttl_s", upstream.price_ttl_s.to_string()),
        ("upstream_stock_ttl_s", upstream.stock_ttl_s.to_string()),
        (
            "upstream_breaker_failures",
            upstream.breaker_failures.to_string(),
        ),
        (
            "upstream_breaker_cooldown_ms",
            upstream.breaker_cooldown_ms.to_string(),
        ),
        ("upstream_batch_max", upstream.batch_max.to_string()),
    ]
}

/// The snapshot triggers in Redis's `save` notation ("seconds changes" pairs).
fn redis_save_points(config: &crate::config::Config) -> String {
    let persistence = &config.persistence;
    let mut points = Vec::new();
    if persistence.snapshot_every_s > 0 {
        points.push(format!("{} 1", persistence.snapshot_every_s));
    }
    if persistence.snapshot_every_changes > 0 {
        points.push(format!("1 {}", persistence.snapshot_every_changes));
    }
    points.join(" ")
}

fn config_get(server: &Server, patterns: &[Bytes]) -> Reply {
    let pairs = parameters(server)
        .into_iter()
        .filter(|(name, _)| {
            patterns.iter().any(|pattern| {
                protocol::glob::matches(&pattern.to_ascii_lowercase(), name.as_bytes())
            })
        })
        .map(|(name, value)| (Reply::from_static(name), Reply::text(value)))
        .collect();
    Reply::Map(pairs)
}

/// `COMMAND GETKEYS`: the keys of a request, from the command table, with Redis's errors.
fn command_getkeys(request: &[Bytes]) -> Reply {
    let Some(spec) = CommandSpec::lookup(&request[0]) else {
        return Reply::Error(protocol::CommandError::err("Invalid command specified"));
    };
    if !spec.arity_allows(request.len()) {
        return Reply::Error(protocol::CommandError::err(
            "Invalid number of arguments specified for command",
        ));
    }
    let keys: Vec<Reply> = spec
        .keys
        .positions(request.len())
        .map(|at| Reply::Bulk(request[at].clone()))
        .collect();
    if keys.is_empty() {
        return Reply::Error(protocol::CommandError::err(
            "The command has no key arguments",
        ));
    }
    Reply::Array(keys)
}

const COMMAND_HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands.",
    "GETKEYS <full-command>",
    "    Return the keys from a full command.",
    "INFO [<command-name> ...]",
    "    Return details about the given commands, or all of them.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about the given commands, or all of them.",
    "LIST [FILTERBY PATTERN <pattern>]",
    "    Return the names of the commands, or those matching the pattern.",
    "HELP",
    "    Print this help.",
];

fn command_command(sub: CommandCommand) -> Reply {
    let named = |names: &[Bytes]| -> Vec<Option<&'static CommandSpec>> {
        if names.is_empty() {
            COMMANDS.iter().map(Some).collect()
        } else {
            names.iter().map(|name| CommandSpec::lookup(name)).collect()
        }
    };
    match sub {
        CommandCommand::All => Reply::Array(COMMANDS.iter().map(command_info).collect()),
        CommandCommand::Count => Reply::Integer(COMMANDS.len() as i64),
        CommandCommand::GetKeys(request) => command_getkeys(&request),
        CommandCommand::Help => Reply::Array(
            COMMAND_HELP
                .iter()
                .map(|line| Reply::Simple((*line).into()))
                .collect(),
        ),
        CommandCommand::Info(names) => Reply::Array(
            named(&names)
                .into_iter()
                .map(|spec| spec.map_or(Reply::Null, command_info))
                .collect(),
        ),
        CommandCommand::Docs(names) => Reply::Map(
            named(&names)
                .into_iter()
                .flatten()
                .map(|spec| (Reply::from_static(spec.name), command_docs(spec)))
                .collect(),
        ),
        CommandCommand::List(pattern) => Reply::Array(
            COMMANDS
                .iter()
                .filter(|spec| {
                    pattern.as_ref().is_none_or(|pattern| {
                        protocol::glob::matches(pattern, spec.name.as_bytes())
                    })
                })
                .map(|spec| Reply::from_static(spec.name))
                .collect(),
        ),
    }
}

/// A `COMMAND INFO` entry, in Redis 7's ten-field shape.
fn command_info(spec: &CommandSpec) -> Reply {
    let categories: Vec<Reply> = spec
        .categories()
        .into_iter()
        .map(|category| Reply::Simple(format!("@{category}").into()))
        .collect();
    Reply::Array(vec![
        Reply::from_static(spec.name),
        Reply::Integer(i64::from(spec.arity)),
        Reply::Array(
            spec.flags
                .iter()
                .map(|flag| Reply::Simple((*flag).into()))
                .collect(),
        ),
        Reply::Integer(i64::from(spec.keys.first)),
        Reply::Integer(i64::from(spec.keys.last)),
        Reply::Integer(i64::from(spec.keys.step)),
        Reply::Array(categories),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

fn command_docs(spec: &CommandSpec) -> Reply {
    let mut fields = vec![
        (
            Reply::from_static("summary"),
            Reply::from_static(spec.summary),
        ),
        (Reply::from_static("since"), Reply::from_static("0.1.0")),
        (Reply::from_static("group"), Reply::from_static(spec.group)),
    ];
    let arguments = parse_syntax(spec.syntax);
    if !arguments.is_empty() {
        fields.push((
            Reply::from_static("arguments"),
            Reply::Array(arguments.iter().map(|arg| arg.to_reply()).collect()),
        ));
    }
    Reply::Map(fields)
}
