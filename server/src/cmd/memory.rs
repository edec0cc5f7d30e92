//! MEMORY: USAGE (what one cart takes), STATS (Redis's field names, from jemalloc's counters),
//! DOCTOR, MALLOC-STATS, PURGE, HELP.

use protocol::cmd::MemoryCommand;
use protocol::Reply;

use super::introspection::{help_reply, integer};
use crate::memory::{allocator_stats, AllocatorStats};
use crate::server::{rss_bytes, Server};

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];

/// Below this much allocated, MEMORY DOCTOR has nothing to say (Redis's 5 MB).
const DOCTOR_MEMORY_MIN_BYTES: u64 = 5 * 1024 * 1024;

/// Runs `MEMORY`.
pub fn memory(sub: MemoryCommand, server: &Server, now_ms: u64) -> Reply {
    match sub {
        MemoryCommand::Usage(key) => server
            .store
            .footprint(&key, now_ms)
            .map_or(Reply::Null, |cart| integer(cart.bytes)),
        MemoryCommand::Stats => Reply::Map(
            MemoryFigures::now(server)
                .stats()
                .into_iter()
                .map(|(name, value)| (Reply::from_static(name), value))
                .collect(),
        ),
        MemoryCommand::Doctor => Reply::text(MemoryFigures::now(server).doctor()),
        MemoryCommand::MallocStats => Reply::text(crate::memory::malloc_stats_text()),
        // jemalloc's background threads give dirty pages back on their own within seconds;
        // purging by hand would take an unsafe mallctl call.
        MemoryCommand::Purge => Reply::ok(),
        MemoryCommand::Help => help_reply(MEMORY_HELP),
    }
}

/// `over / under`, 0 when `under` is.
fn ratio(over: u64, under: u64) -> f64 {
    if under == 0 {
        0.0
    } else {
        over as f64 / under as f64
    }
}

/// Every figure MEMORY STATS and DOCTOR use, read once.
struct MemoryFigures {
    allocator: AllocatorStats,
    rss: u64,
    peak: u64,
    startup: u64,
    clients: u64,
    log_queue: u64,
    carts: u64,
}

/// Bytes of the shard indexes and timing wheels per cart (Redis's hashtable overheads).
const INDEX_BYTES_PER_CART: u64 = 24;
const WHEEL_BYTES_PER_CART: u64 = 8;

impl MemoryFigures {
    fn now(server: &Server) -> MemoryFigures {
        let rss = rss_bytes();
        let allocator = allocator_stats().unwrap_or(AllocatorStats {
            allocated: rss,
            active: rss,
            resident: rss,
        });
        MemoryFigures {
            peak: server.peak_memory.note(allocator.allocated),
            allocator,
            rss,
            startup: server.startup_allocated_bytes,
            clients: server.clients.memory_total(),
            log_queue: server
                .durability
                .get()
                .map_or(0, |durability| durability.wal.queued_bytes()),
            carts: server.store.len() as u64,
        }
    }

    /// What is not the carts: the start-up allocation, client buffers, the log's queue and
    /// the shard indexes.
    fn overhead(&self) -> u64 {
        self.startup
            + self.clients
            + self.log_queue
            + self.carts * (INDEX_BYTES_PER_CART + WHEEL_BYTES_PER_CART)
    }

    /// MEMORY STATS, in Redis's order and with its names.
    fn stats(&self) -> Vec<(&'static str, Reply)> {
        let total = self.allocator.allocated;
        let net = total.saturating_sub(self.startup);
        let dataset = total.saturating_sub(self.overhead());
        let mut stats = vec![
            ("peak.allocated", integer(self.peak)),
            ("total.allocated", integer(total)),
            ("startup.allocated", integer(self.startup)),
            ("replication.backlog", integer(0)),
            ("clients.slaves", integer(0)),
            ("clients.normal", integer(self.clients)),
            ("cluster.links", integer(0)),
            ("aof.buffer", integer(self.log_queue)),
            ("lua.caches", integer(0)),
            ("functions.caches", integer(0)),
            ("db.0", self.db0()),
            ("overhead.total", integer(self.overhead())),
            ("keys.count", integer(self.carts)),
            (
                "keys.bytes-per-key",
                integer(net.checked_div(self.carts).unwrap_or(0)),
            ),
            ("dataset.bytes", integer(dataset)),
            (
                "dataset.percentage",
                Reply::Double(100.0 * ratio(dataset, net)),
            ),
            (
                "peak.percentage",
                Reply::Double(100.0 * ratio(total, self.peak)),
            ),
        ];
        stats.extend(self.allocator_stats());
        stats
    }

    /// The shard indexes' share, as Redis reports its main and expires hash tables.
    fn db0(&self) -> Reply {
        Reply::Map(vec![
            (
                Reply::from_static("overhead.hashtable.main"),
                integer(self.carts * INDEX_BYTES_PER_CART),
            ),
            (
                Reply::from_static("overhead.hashtable.expires"),
                integer(self.carts * WHEEL_BYTES_PER_CART),
            ),
            (
                Reply::from_static("overhead.hashtable.slot-to-keys"),
                integer(0),
            ),
        ])
    }

    /// jemalloc's counters and their ratios to one another, to the resident size and to
    /// the total.
    fn allocator_stats(&self) -> Vec<(&'static str, Reply)> {
        let allocator = &self.allocator;
        let total = allocator.allocated;
        let difference = |more: u64, less: u64| Reply::Integer(more as i64 - less as i64);
        vec![
            ("allocator.allocated", integer(allocator.allocated)),
            ("allocator.active", integer(allocator.active)),
            ("allocator.resident", integer(allocator.resident)),
            (
                "allocator-fragmentation.ratio",
                Reply::Double(ratio(allocator.active, allocator.allocated)),
            ),
            (
                "allocator-fragmentation.bytes",
                difference(allocator.active, allocator.allocated),
            ),
            (
                "allocator-rss.ratio",
                Reply::Double(ratio(allocator.resident, allocator.active)),
            ),
            (
                "allocator-rss.bytes",
                difference(allocator.resident, allocator.active),
            ),
            (
                "rss-overhead.ratio",
                Reply::Double(ratio(self.rss, allocator.resident)),
            ),
            (
                "rss-overhead.bytes",
                difference(self.rss, allocator.resident),
            ),
            ("fragmentation", Reply::Double(ratio(self.rss, total))),
            ("fragmentation.bytes", difference(self.rss, total)),
        ]
    }

    /// MEMORY DOCTOR's report, in Redis's words where Redis has them.
    fn doctor(&self) -> String {
        let total = self.allocator.allocated;
        if total < DOCTOR_MEMORY_MIN_BYTES {
            return "Hi Sam, this instance is empty or is using very little memory, my issues \
                    detector can't be used in these conditions. Please, leave for your mission \
                    on Earth and fill it with some data. The new Sam and I will be back to our \
                    programming as soon as I finished rebooting."
                .into();
        }
        let mut issues = Vec::new();
        if self.peak > total / 2 * 3 {
            issues.push(
                " * Peak memory: In the past this instance used more than 150% the memory that \
                 is currently using. The allocator is normally not able to release memory after \
                 a peak, so you can expect to see a big fragmentation ratio, however this is \
                 actually harmless and is only due to the memory peak, and if the cartd instance \
                 Resident Set Size (RSS) is currently bigger than expected, the memory will be \
                 used as soon as you fill the cartd instance with more data.",
            );
        }
        let allocator = &self.allocator;
        if allocator.active > allocator.allocated / 10 * 11
            && allocator.active - allocator.allocated > 10 * 1024 * 1024
        {
            issues.push(
                " * High allocator fragmentation: This instance has an allocator external \
                 fragmentation greater than 1.1. jemalloc's background threads give unused \
                 pages back over time; many carts deleted or expired at once leave this behind.",
            );
        }
        if self.rss > allocator.resident / 10 * 11
            && self.rss - allocator.resident > 10 * 1024 * 1024
        {
            issues.push(
                " * High process RSS overhead: This instance has non-allocator RSS memory \
                 overhead is greater than 1.1 (this may indicate large memory mapped files, \
                 such as snapshot or log segments being read).",
            );
        }
        if self.clients > 200 * 1024 * 1024 {
            issues.push(
                " * Big client buffers: The clients output buffers are in general too big, \
                 probably because there are some clients that are too slow in reading the \
                 replies they requested (see client-output-buffer-limit and maxmemory-clients).",
            );
        }
        if issues.is_empty() {
            return "Hi Sam, I can't find any memory issue in your instance. I can only account \
                    for what occurs on this base."
                .into();
        }
        format!(
            "Sam, I detected a few issues in this cartd instance memory implants:\n\n{}\n\nI'm \
             here to keep you safe, Sam. I want to help you.\n",
            issues.join("\n\n")
        )
    }
}
