//! SLOWLOG, LATENCY and OBJECT, with Redis's reply shapes; MEMORY is `cmd/memory.rs`, CONFIG
//! SET/REWRITE/HELP `cmd/config_set.rs`.

use bytes::Bytes;
use protocol::cmd::{DebugCommand, LatencyCommand, ObjectCommand, SlowlogCommand};
use protocol::{Command, CommandError, CommandSpec, Reply, COMMANDS};

use crate::latency::{EventHistory, LatencyEvent};
use crate::server::Server;

/// Runs an introspection command: SLOWLOG, LATENCY, MEMORY, OBJECT, CONFIG SET, REWRITE or
/// HELP.
pub fn run(command: Command, server: &Server, now_ms: u64) -> Result<Reply, CommandError> {
    match command {
        Command::Slowlog(sub) => Ok(slowlog(sub, server)),
        Command::Latency(sub) => latency(sub, server),
        Command::Debug(sub) => Ok(debug(sub, server, now_ms)),
        Command::Memory(sub) => Ok(super::memory::memory(sub, server, now_ms)),
        Command::Object(sub) => object(sub, server, now_ms),
        Command::ConfigSet(pairs) => super::config_set::set(&pairs, server),
        Command::ConfigRewrite => super::config_set::rewrite(server),
        Command::ConfigHelp => Ok(super::config_set::help()),
        _ => unreachable!("only introspection commands are routed here"),
    }
}

const DEBUG_HELP: &[&str] = &[
    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DIGEST-VALUE <key> [<key> ...]",
    "    Return a digest of each cart (its contents, not its TTL), 40 zeros for none.",
    "HELP",
    "    Print this help.",
];

/// Runs `DEBUG`.
fn debug(sub: DebugCommand, server: &Server, now_ms: u64) -> Reply {
    match sub {
        DebugCommand::DigestValue(keys) => Reply::Array(
            keys.iter()
                .map(|key| {
                    let digest = server.store.digest_value(key, now_ms);
                    let hex: String = digest.map_or_else(
                        || "0".repeat(40),
                        |digest| digest.iter().map(|byte| format!("{byte:02x}")).collect(),
                    );
                    Reply::Simple(hex.into())
                })
                .collect(),
        ),
        DebugCommand::Help => help_reply(DEBUG_HELP),
    }
}

/// Help lines as Redis sends them: status replies, one per line.
pub fn help_reply(lines: &[&'static str]) -> Reply {
    Reply::Array(
        lines
            .iter()
            .map(|line| Reply::Simple((*line).into()))
            .collect(),
    )
}

/// Unsigned figures as RESP integers (saturating: none of these come near `i64::MAX`).
pub fn integer(value: u64) -> Reply {
    Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

const SLOWLOG_HELP: &[&str] = &[
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
];

/// Runs `SLOWLOG`.
pub fn slowlog(sub: SlowlogCommand, server: &Server) -> Reply {
    match sub {
        SlowlogCommand::Get(count) => Reply::Array(
            server
                .slowlog
                .newest(count)
                .into_iter()
                .map(|entry| {
                    Reply::Array(vec![
                        integer(entry.id),
                        integer(entry.unix_s),
                        integer(entry.duration_us),
                        Reply::Array(entry.argv.into_iter().map(Reply::Bulk).collect()),
                        Reply::text(entry.addr.to_string()),
                        Reply::Bulk(entry.client_name),
                    ])
                })
                .collect(),
        ),
        SlowlogCommand::Len => integer(server.slowlog.len() as u64),
        SlowlogCommand::Reset => {
            server.slowlog.reset();
            Reply::ok()
        }
        SlowlogCommand::Help => help_reply(SLOWLOG_HELP),
    }
}

const LATENCY_HELP: &[&str] = &[
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
];

/// Runs `LATENCY`.
pub fn latency(sub: LatencyCommand, server: &Server) -> Result<Reply, CommandError> {
    let monitor = &server.latency;
    Ok(match sub {
        LatencyCommand::Latest => Reply::Array(
            monitor
                .histories()
                .into_iter()
                .filter_map(|(event, history)| {
                    let last = history.samples.back()?;
                    Some(Reply::Array(vec![
                        Reply::from_static(event.name()),
                        integer(last.unix_s),
                        integer(last.latency_ms),
                        integer(history.max_ms),
                    ]))
                })
                .collect(),
        ),
        LatencyCommand::History(name) => {
            let history = LatencyEvent::named(&name)
                .map(|event| monitor.history(event))
                .unwrap_or_default();
            Reply::Array(
                history
                    .samples
                    .iter()
                    .map(|sample| {
                        Reply::Array(vec![integer(sample.unix_s), integer(sample.latency_ms)])
                    })
                    .collect(),
            )
        }
        LatencyCommand::Reset(names) => {
            let events: Vec<LatencyEvent> = names
                .iter()
                .filter_map(|name| LatencyEvent::named(name))
                .collect();
            if !names.is_empty() && events.is_empty() {
                return Ok(Reply::Integer(0));
            }
            integer(monitor.reset(&events) as u64)
        }
        LatencyCommand::Doctor => Reply::text(latency_doctor(server)),
        LatencyCommand::Histogram(names) => latency_histogram(server, &names),
        LatencyCommand::Help => help_reply(LATENCY_HELP),
    })
}

/// LATENCY HISTOGRAM: per command called, its calls and the cumulative count of calls at
/// power-of-two microsecond bounds (only where the count grows), from the same histograms as
/// INFO latencystats.
fn latency_histogram(server: &Server, names: &[Bytes]) -> Reply {
    let wanted = |spec: &CommandSpec| {
        names.is_empty()
            || names
                .iter()
                .any(|name| name.eq_ignore_ascii_case(spec.name.as_bytes()))
    };
    let commands = server.stats.commands.lock();
    let entries = COMMANDS
        .iter()
        .zip(commands.iter())
        .filter(|(spec, stats)| wanted(spec) && stats.calls > 0)
        .map(|(spec, stats)| {
            let mut buckets = Vec::new();
            let mut cumulative = 0;
            for step in stats.latency_ns.iter_log(1024, 2.0) {
                let before = cumulative;
                cumulative += step.count_since_last_iteration();
                if cumulative > before {
                    buckets.push((
                        integer(step.value_iterated_to() / 1000),
                        integer(cumulative),
                    ));
                }
            }
            let detail = Reply::Map(vec![
                (Reply::from_static("calls"), integer(stats.latency_ns.len())),
                (Reply::from_static("histogram_usec"), Reply::Map(buckets)),
            ]);
            (Reply::from_static(spec.name), detail)
        })
        .collect();
    Reply::Map(entries)
}

/// LATENCY DOCTOR's report, in Redis's words (and its HAL 9000 voice).
fn latency_doctor(server: &Server) -> String {
    if server.runtime.latency_monitor_threshold_ms() == 0 {
        return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this cartd \
                instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" \
                in order to enable it. If we weren't in a deep space mission I'd suggest to take \
                a look at https://redis.io/topics/latency-monitor.\n"
            .into();
    }
    let histories = server.latency.histories();
    if histories.is_empty() {
        return "Dave, no latency spike was observed during the lifetime of this cartd instance, \
                not in the slightest bit. I honestly think you ought to sleep better.\n"
            .into();
    }
    let mut report = String::from(
        "Dave, I have observed latency spikes in this cartd instance. You don't mind talking \
         about it, do you Dave?\n\n",
    );
    for (number, (event, history)) in histories.iter().enumerate() {
        report.push_str(&event_summary(number + 1, *event, history));
    }
    report.push_str("\nI have a few advices for you:\n\n");
    let slowlog_us = server.runtime.slowlog_log_slower_than_us();
    let threshold_us = server.runtime.latency_monitor_threshold_ms() * 1000;
    if slowlog_us < 0 || slowlog_us as u64 > threshold_us {
        report.push_str(&format!(
            "- Your current Slow Log configuration only logs events that are slower than your \
             configured latency monitor threshold. Please use 'CONFIG SET \
             slowlog-log-slower-than {threshold_us}'.\n"
        ));
    }
    for (event, _) in &histories {
        report.push_str(match event {
            LatencyEvent::Command | LatencyEvent::FastCommand => {
                "- Check your Slow Log to understand what are the commands you are running which \
                 are too slow to execute (SLOWLOG GET). Big carts, long MULTI/EXEC transactions \
                 and validating CART.GETs against slow upstream services are the usual causes.\n"
            }
            LatencyEvent::WalFsync => {
                "- The write-ahead log's fsyncs are slow: put data_dir on a faster disk, or use \
                 appendfsync everysec if every reply need not wait for its fsync.\n"
            }
            LatencyEvent::ExpireCycle => {
                "- Expiring carts takes long: many carts expire at once. Spread their TTLs.\n"
            }
        });
    }
    report
}

/// One numbered line of LATENCY DOCTOR: spikes, average, mean deviation, period, worst.
fn event_summary(number: usize, event: LatencyEvent, history: &EventHistory) -> String {
    let samples = &history.samples;
    let count = samples.len() as u64;
    let sum: u64 = samples.iter().map(|sample| sample.latency_ms).sum();
    let average = sum / count.max(1);
    let deviation = samples
        .iter()
        .map(|sample| sample.latency_ms.abs_diff(average))
        .sum::<u64>()
        / count.max(1);
    let period_s = match (samples.front(), samples.back()) {
        (Some(first), Some(last)) if count > 1 => {
            (last.unix_s - first.unix_s) as f64 / (count - 1) as f64
        }
        _ => 1.0,
    };
    format!(
        "{number}. {}: {count} latency spikes (average {average}ms, mean deviation \
         {deviation}ms, period {period_s:.2} sec). Worst all time event {}ms.\n",
        event.name(),
        history.max_ms
    )
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// The one encoding every cart has: a packed byte string per cart in its shard's index.
pub const CART_ENCODING: &str = "cart";

/// Runs `OBJECT`. A missing cart is a null reply, as Redis answers for a missing key; FREQ
/// on a cart is Redis's error without an LFU policy (cartd has only noeviction).
pub fn object(sub: ObjectCommand, server: &Server, now_ms: u64) -> Result<Reply, CommandError> {
    let footprint = |key: &Bytes| server.store.footprint(key, now_ms);
    Ok(match sub {
        ObjectCommand::Encoding(key) => {
            footprint(&key).map_or(Reply::Null, |_| Reply::from_static(CART_ENCODING))
        }
        ObjectCommand::IdleTime(key) => {
            footprint(&key).map_or(Reply::Null, |cart| integer(cart.idle_ms / 1000))
        }
        ObjectCommand::RefCount(key) => footprint(&key).map_or(Reply::Null, |_| integer(1)),
        ObjectCommand::Freq(key) => {
            if footprint(&key).is_none() {
                return Ok(Reply::Null);
            }
            return Err(CommandError::err(
                "An LFU maxmemory policy is not selected, access frequency not tracked. Please \
                 note that when switching between policies at runtime LRU and LFU data will \
                 take some time to adjust.",
            ));
        }
        ObjectCommand::Help => help_reply(OBJECT_HELP),
    })
}
