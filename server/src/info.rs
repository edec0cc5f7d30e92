//! `INFO`: Redis-formatted sections (`# Section` then `field:value` lines, CRLF), so redis-py's
//! parser and ioredis's ready check read it as they read Redis's.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use protocol::COMMANDS;

use crate::cmd::connection::REDIS_COMPAT_VERSION;
use crate::memory::human;
use crate::server::{now_ms, rss_bytes, Server};

const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "errorstats",
    "cluster",
    "keyspace",
];
const ALL_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "commandstats",
    "latencystats",
    "errorstats",
    "cluster",
    "keyspace",
    "upstream",
];

/// Renders the requested sections (none: the default set; `all`/`everything`: all).
pub fn render(server: &Server, requested: &[String]) -> String {
    let wanted: Vec<&str> =
        if requested.is_empty() || requested.iter().any(|name| name == "default") {
            DEFAULT_SECTIONS.to_vec()
        } else if requested
            .iter()
            .any(|name| name == "all" || name == "everything")
        {
            ALL_SECTIONS.to_vec()
        } else {
            ALL_SECTIONS
                .iter()
                .copied()
                .filter(|name| requested.iter().any(|want| want == name))
                .collect()
        };
    let mut out = String::new();
    for (index, section) in wanted.iter().enumerate() {
        if index > 0 {
            out.push_str("\r\n");
        }
        match *section {
            "server" => server_section(server, &mut out),
            "clients" => clients_section(server, &mut out),
            "memory" => memory_section(server, &mut out),
            "persistence" => persistence_section(server, &mut out),
            "stats" => stats_section(server, &mut out),
            "replication" => replication_section(server, &mut out),
            "commandstats" => commandstats_section(server, &mut out),
            "latencystats" => latencystats_section(server, &mut out),
            "errorstats" => errorstats_section(server, &mut out),
            "cluster" => cluster_section(server, &mut out),
            "keyspace" => keyspace_section(server, &mut out),
            "upstream" => upstream_section(server, &mut out),
            _ => {}
        }
    }
    out
}

pub(crate) fn line(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{name}:{value}\r\n");
}

fn server_section(server: &Server, out: &mut String) {
    let uptime_s = server.started.elapsed().as_secs();
    out.push_str("# Server\r\n");
    line(out, "redis_version", REDIS_COMPAT_VERSION);
    line(out, "cartd_version", env!("CARGO_PKG_VERSION"));
    line(out, "redis_mode", "standalone");
    line(out, "os", std::env::consts::OS);
    line(out, "arch_bits", usize::BITS);
    line(out, "multiplexing_api", "tokio");
    line(out, "process_id", std::process::id());
    line(out, "run_id", &server.run_id);
    line(out, "tcp_port", server.local_addr.port());
    line(out, "uptime_in_seconds", uptime_s);
    line(out, "uptime_in_days", uptime_s / 86_400);
    line(out, "hz", 4);
    line(
        out,
        "executable",
        std::env::current_exe()
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
    );
    line(
        out,
        "config_file",
        server
            .config_file
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
    );
    line(out, "shards", server.config.server.shards);
}

fn clients_section(server: &Server, out: &mut String) {
    out.push_str("# Clients\r\n");
    line(out, "connected_clients", server.clients.len());
    line(out, "maxclients", server.runtime.maxclients());
    line(out, "blocked_clients", 0);
    let (tracking_clients, _, _, _) = server.pubsub.tracking_figures();
    line(out, "tracking_clients", tracking_clients);
    let listening = server
        .clients
        .all()
        .iter()
        .filter(|client| {
            let meta = client.meta.lock();
            meta.subscriptions + meta.patterns > 0
        })
        .count();
    line(out, "pubsub_clients", listening);
    // What the clients hold of requests still arriving and replies not yet sent, and its bound.
    line(out, "clients_memory_bytes", server.clients.memory_total());
    line(
        out,
        "maxmemory_clients",
        server.runtime.maxmemory_clients_bytes(),
    );
}

fn memory_section(server: &Server, out: &mut String) {
    let rss = rss_bytes();
    let carts = server.store.len() as u64;
    let cart_bytes = rss.saturating_sub(server.rss_baseline_bytes);
    let tokens = server.store.token_stats();
    let allocator = crate::memory::allocator_stats();
    let used = allocator.map_or(rss, |stats| stats.allocated);
    let peak = server.peak_memory.note(used);
    let maxmemory = server.runtime.maxmemory_bytes();
    out.push_str("# Memory\r\n");
    line(out, "used_memory", used);
    line(out, "used_memory_human", human(used));
    line(out, "used_memory_rss", rss);
    line(out, "used_memory_rss_human", human(rss));
    line(out, "used_memory_peak", peak);
    line(out, "used_memory_peak_human", human(peak));
    line(out, "used_memory_startup", server.startup_allocated_bytes);
    line(
        out,
        "used_memory_dataset",
        used.saturating_sub(server.startup_allocated_bytes),
    );
    allocator_lines(allocator, rss, used, out);
    line(out, "maxmemory", maxmemory);
    line(out, "maxmemory_human", human(maxmemory));
    line(
        out,
        "maxmemory_policy",
        &server.config.server.maxmemory_policy,
    );
    line(out, "carts", carts);
    line(out, "carts_max", server.config.carts.max_carts);
    line(
        out,
        "cart_bytes_avg",
        cart_bytes.checked_div(carts).unwrap_or(0),
    );
    line(out, "interned_ids", server.store.names.len());
    line(out, "interned_ids_max", server.store.names.max());
    let swept = server.store.names.sweep_stats();
    line(out, "interned_ids_sweeps", swept.sweeps);
    line(out, "interned_ids_freed", swept.freed);
    line(out, "catalog_entries", server.store.catalog.len());
    line(
        out,
        "catalog_entries_max",
        crate::limits::CATALOG_ENTRIES_MAX,
    );
    line(out, "promotions", server.store.promotions.len());
    line(out, "gift_cards", server.store.gift_cards.len());
    line(out, "idempotency_keys", tokens.tokens);
    line(
        out,
        "idempotency_keys_max",
        server.config.carts.max_idempotency_keys,
    );
    line(
        out,
        "idempotency_keys_per_cart_max",
        server.config.carts.max_idempotency_keys_per_cart,
    );
    line(out, "idempotency_bytes", tokens.bytes);
    line(
        out,
        "idempotency_bytes_per_key",
        tokens.bytes.checked_div(tokens.tokens).unwrap_or(0),
    );
    line(out, "idempotency_evicted", tokens.evicted);
    line(out, "idempotency_refused", tokens.refused);
    line(out, "idempotency_forgotten", tokens.forgotten);
    line(out, "idempotency_forgotten_bytes", tokens.forgotten_bytes);
}

/// jemalloc's counters and the fragmentation (resident against allocated), by Redis's names.
fn allocator_lines(
    allocator: Option<crate::memory::AllocatorStats>,
    rss: u64,
    used: u64,
    out: &mut String,
) {
    if let Some(allocator) = allocator {
        line(out, "allocator_allocated", allocator.allocated);
        line(out, "allocator_active", allocator.active);
        line(out, "allocator_resident", allocator.resident);
    }
    let ratio = rss as f64 / used.max(1) as f64;
    line(out, "mem_fragmentation_ratio", format!("{ratio:.2}"));
    line(out, "mem_fragmentation_bytes", rss as i64 - used as i64);
}

fn persistence_section(server: &Server, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    out.push_str("# Persistence\r\n");
    let loading = server.loading.load(Relaxed);
    line(out, "loading", u8::from(loading));
    let Some(durability) = server.durability.get() else {
        return;
    };
    let wal = durability.wal.stats();
    snapshot_lines(durability, wal.last_lsn, out);
    log_lines(server, &wal, out);
    recovery_lines(&durability.recovery, out);
    line(
        out,
        "wal_retained_warning",
        u8::from(durability.retention_warning.load(Relaxed)),
    );
    match &durability.postgres {
        Some(postgres) => postgres.info(wal.last_lsn, out),
        None => line(out, "postgres_enabled", 0),
    }
}

fn ok_or_err(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "err"
    }
}

/// The `rdb_*` fields: snapshots, with Redis's names.
fn snapshot_lines(durability: &crate::durability::Durability, last_lsn: u64, out: &mut String) {
    let saved_lsn = durability.last_save_lsn.load(Relaxed);
    line(
        out,
        "rdb_changes_since_last_save",
        last_lsn.saturating_sub(saved_lsn),
    );
    line(
        out,
        "rdb_bgsave_in_progress",
        u8::from(durability.saving.load(Relaxed)),
    );
    line(
        out,
        "rdb_last_save_time",
        durability.last_save_s.load(Relaxed),
    );
    line(
        out,
        "rdb_last_bgsave_status",
        ok_or_err(durability.last_save_ok.load(Relaxed)),
    );
    line(
        out,
        "rdb_last_bgsave_time_sec",
        durability.last_save_ms.load(Relaxed) / 1000,
    );
    let running = durability.save_running_s().map_or(-1, |s| s as i64);
    line(out, "rdb_current_bgsave_time_sec", running);
    line(out, "rdb_last_save_lsn", saved_lsn);
}

/// The `aof_*` fields (Redis's names) and the `wal_*` fields: the write-ahead log.
fn log_lines(server: &Server, wal: &persistence::WalStats, out: &mut String) {
    line(out, "aof_enabled", 1);
    line(out, "aof_fsync", &server.config.persistence.appendfsync);
    line(out, "aof_last_write_status", ok_or_err(wal.last_write_ok));
    if let Some(error) = &wal.last_error {
        line(
            out,
            "aof_last_write_error",
            error.replace(['\r', '\n'], " "),
        );
    }
    line(out, "wal_segments", wal.segments);
    line(out, "wal_bytes", wal.bytes_on_disk);
    line(out, "wal_last_lsn", wal.last_lsn);
    line(out, "wal_written_lsn", wal.written_lsn);
    line(out, "wal_durable_lsn", wal.durable_lsn);
    line(out, "wal_writes", wal.writes);
    line(out, "wal_fsyncs", wal.fsyncs);
    line(out, "wal_queue_bytes", wal.queued_bytes);
    line(
        out,
        "wal_queue_bytes_max",
        persistence::wal::QUEUE_BYTES_MAX,
    );
    line(out, "wal_refusing_writes", u8::from(!wal.last_write_ok));
    line(
        out,
        "wal_writes_refused",
        server.stats.misconf_refused.load(Relaxed),
    );
}

/// What the start loaded.
fn recovery_lines(recovery: &crate::durability::RecoverySummary, out: &mut String) {
    line(out, "loaded_snapshot_carts", recovery.snapshot_carts);
    line(out, "loaded_log_records", recovery.replayed_records);
    line(out, "loaded_postgres_carts", recovery.restored_carts);
    line(
        out,
        "loaded_postgres_reference",
        recovery.restored_reference,
    );
    line(out, "loading_time_ms", recovery.millis);
    line(out, "loading_torn_bytes_cut", recovery.torn_bytes_cut);
    line(out, "loading_lost_records", recovery.lost_records);
    line(out, "loading_covered_damage", recovery.covered_damage);
    line(out, "loading_repaired", recovery.repaired);
}

/// The stats section's pub/sub and client-side caching lines, with Redis's names where
/// Redis has them.
fn pubsub_stats(server: &Server, out: &mut String) {
    let pubsub = &server.pubsub;
    line(out, "pubsub_channels", pubsub.channel_count());
    line(out, "pubsub_patterns", pubsub.pattern_count());
    line(out, "pubsubshard_channels", 0);
    line(
        out,
        "pubsub_messages_delivered",
        pubsub.stats.delivered.load(Relaxed),
    );
    line(
        out,
        "pubsub_clients_closed_over_limit",
        pubsub.stats.closed_over_limit.load(Relaxed),
    );
    let (_, keys, items, prefixes) = pubsub.tracking_figures();
    line(out, "tracking_total_keys", keys);
    line(out, "tracking_total_items", items);
    line(out, "tracking_total_prefixes", prefixes);
    line(
        out,
        "tracking_invalidations_sent",
        pubsub.stats.invalidations.load(Relaxed),
    );
}

fn stats_section(server: &Server, out: &mut String) {
    let stats = &server.stats;
    let store = &server.store.stats;
    out.push_str("# Stats\r\n");
    line(
        out,
        "total_connections_received",
        stats.connections_received.load(Relaxed),
    );
    line(
        out,
        "total_commands_processed",
        stats.commands_processed.load(Relaxed),
    );
    line(
        out,
        "total_net_input_bytes",
        stats.net_input_bytes.load(Relaxed),
    );
    line(
        out,
        "total_net_output_bytes",
        stats.net_output_bytes.load(Relaxed),
    );
    line(
        out,
        "rejected_connections",
        stats.rejected_connections.load(Relaxed),
    );
    line(out, "evicted_clients", server.clients.evicted());
    // Redis's names; failed AUTHs are also in the ACL LOG.
    let acl = &server.acl;
    line(
        out,
        "acl_access_denied_auth",
        acl.auth_failures.load(Relaxed),
    );
    line(
        out,
        "acl_access_denied_cmd",
        acl.denied_commands.load(Relaxed),
    );
    line(out, "acl_access_denied_key", acl.denied_keys.load(Relaxed));
    line(
        out,
        "acl_access_denied_channel",
        acl.denied_channels.load(Relaxed),
    );
    line(
        out,
        "client_output_buffer_limit_disconnections",
        // Listeners closed while their messages still waited in the mailbox count too.
        stats
            .client_output_buffer_limit_disconnections
            .load(Relaxed)
            + server.pubsub.stats.closed_over_limit.load(Relaxed),
    );
    line(out, "expired_keys", store.expired_carts.load(Relaxed));
    line(out, "evicted_keys", 0);
    pubsub_stats(server, out);
    line(out, "keyspace_hits", store.keyspace_hits.load(Relaxed));
    line(out, "keyspace_misses", store.keyspace_misses.load(Relaxed));
    line(
        out,
        "total_error_replies",
        stats.error_replies.load(Relaxed),
    );
}

/// Redis's replication fields. A cluster replica names its primary with the link `down`:
/// replication is not in yet, so it holds nothing of its primary's (the exporter and
/// `redis-cli` read these fields).
fn replication_section(server: &Server, out: &mut String) {
    out.push_str("# Replication\r\n");
    let offset = server
        .durability
        .get()
        .map_or(0, |durability| durability.wal.last_lsn());
    let replication = &server.replication;
    match server.primary() {
        Some(primary) => {
            let link = &replication.link;
            let up = link.up.load(Relaxed);
            line(out, "role", "slave");
            line(out, "master_host", &primary.host);
            line(out, "master_port", primary.port);
            line(out, "master_link_status", if up { "up" } else { "down" });
            let last_io_ms = link.last_io_ms.load(Relaxed);
            let last_io_s = if last_io_ms == 0 {
                -1
            } else {
                (crate::server::now_ms().saturating_sub(last_io_ms) / 1000) as i64
            };
            line(out, "master_last_io_seconds_ago", last_io_s);
            line(
                out,
                "master_sync_in_progress",
                u8::from(link.syncing.load(Relaxed)),
            );
            line(out, "slave_read_repl_offset", offset);
            line(out, "slave_repl_offset", offset);
            line(out, "slave_priority", 100);
            line(out, "slave_read_only", 1);
            line(out, "replica_announced", 1);
            line(out, "connected_slaves", 0);
        }
        None => {
            line(out, "role", "master");
            let followers = replication.followers();
            line(out, "connected_slaves", followers.len());
            for (index, follower) in followers.iter().enumerate() {
                let _ = write!(
                    out,
                    "slave{index}:ip={},port={},state={},offset={},lag={}\r\n",
                    follower.ip,
                    follower.port,
                    follower.state,
                    follower.acked_lsn,
                    follower.last_ack.elapsed().as_secs()
                );
            }
        }
    }
    line(out, "master_failover_state", "no-failover");
    line(out, "master_replid", replication.id());
    line(
        out,
        "master_replid2",
        "0000000000000000000000000000000000000000",
    );
    line(out, "master_repl_offset", offset);
}

/// `cluster_enabled` (redis-cli --cluster and the exporter read it), and in cluster mode
/// cartd's own: the handoffs of merges across nodes not yet confirmed, the peer links for
/// server-wide data (up, queued, dropped) and gift card releases not queued.
fn cluster_section(server: &Server, out: &mut String) {
    out.push_str("# Cluster\r\n");
    line(out, "cluster_enabled", u8::from(server.cluster.is_some()));
    if server.cluster.is_none() {
        return;
    }
    failover_lines(server, out);
    let (given, received) = server.store.handoff_counts();
    line(out, "cluster_handoffs_given", given);
    line(out, "cluster_handoffs_received", received);
    let Some(peers) = server.peers.as_ref().filter(|_| server.primary().is_none()) else {
        return;
    };
    let links = peers.list();
    let up = links
        .iter()
        .filter(|peer| peer.connected.load(Relaxed))
        .count();
    line(out, "cluster_peer_links", links.len());
    line(out, "cluster_peer_links_up", up);
    let queued: usize = links.iter().map(|peer| peer.queued()).sum();
    line(out, "cluster_peer_queued", queued);
    let dropped: u64 = links.iter().map(|peer| peer.dropped.load(Relaxed)).sum();
    line(out, "cluster_peer_dropped", dropped);
    line(
        out,
        "cluster_gift_card_releases_dropped",
        peers.owners.releases_dropped.load(Relaxed),
    );
}

/// Redis's `errorstat_<CODE>:count=<n>`, for the codes replied at least once (what the
/// Prometheus exporter turns into `redis_errors_total`).
fn errorstats_section(server: &Server, out: &mut String) {
    out.push_str("# Errorstats\r\n");
    for code in protocol::ErrorCode::ALL {
        let count = server.stats.error_codes[code as usize].load(Relaxed);
        if count > 0 {
            let _ = write!(out, "errorstat_{}:count={count}\r\n", code.as_str());
        }
    }
}

fn commandstats_section(server: &Server, out: &mut String) {
    out.push_str("# Commandstats\r\n");
    let commands = server.stats.commands.lock();
    for (spec, stats) in COMMANDS.iter().zip(commands.iter()) {
        if stats.calls == 0 && stats.rejected_calls == 0 {
            continue;
        }
        let per_call = if stats.calls == 0 {
            0.0
        } else {
            stats.usec as f64 / stats.calls as f64
        };
        let _ = write!(
            out,
            "cmdstat_{}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
            spec.name, stats.calls, stats.usec, stats.rejected_calls, stats.failed_calls
        );
    }
}

fn latencystats_section(server: &Server, out: &mut String) {
    out.push_str("# Latencystats\r\n");
    let commands = server.stats.commands.lock();
    for (spec, stats) in COMMANDS.iter().zip(commands.iter()) {
        if stats.latency_ns.is_empty() {
            continue;
        }
        let usec = |quantile: f64| stats.latency_ns.value_at_quantile(quantile) as f64 / 1000.0;
        let _ = write!(
            out,
            "latency_percentiles_usec_{}:p50={:.3},p99={:.3},p99.9={:.3}\r\n",
            spec.name,
            usec(0.5),
            usec(0.99),
            usec(0.999)
        );
    }
}

fn keyspace_section(server: &Server, out: &mut String) {
    out.push_str("# Keyspace\r\n");
    let carts = server.store.len();
    if carts > 0 {
        // Every cart expires. Like Redis's, the average is an estimate: Redis keeps a running
        // one from its expiry cycle's samples, cartd samples a few carts per shard now.
        let sample = server.store.sample_ttls(now_ms());
        let avg_ttl_ms = sample.ttl_ms_sum.checked_div(sample.carts).unwrap_or(0);
        line(
            out,
            "db0",
            format!("keys={carts},expires={carts},avg_ttl={avg_ttl_ms}"),
        );
    }
}

fn upstream_section(server: &Server, out: &mut String) {
    out.push_str("# Upstream\r\n");
    match &server.upstream {
        Some(upstream) => upstream.info(out),
        None => line(out, "upstream_enabled", 0),
    }
}

/// The failover fields of INFO cluster: the lease, failsafe, promotions, what was set aside.
fn failover_lines(server: &Server, out: &mut String) {
    let failover = &server.failover;
    if let Some(layout) = server.layout() {
        line(out, "cluster_region", &layout.myself().region);
    }
    line(out, "cluster_leases", u8::from(failover.leased()));
    if failover.leased() {
        line(out, "cluster_lease_term", failover.term());
        let primary = server.primary().is_none();
        line(
            out,
            "cluster_lease_writable_ms",
            if primary { failover.writable_ms() } else { 0 },
        );
        line(
            out,
            "cluster_failsafe",
            u8::from(primary && failover.in_failsafe()),
        );
        line(
            out,
            "cluster_started_without_postgres",
            u8::from(failover.started_without_postgres.load(Relaxed)),
        );
        line(
            out,
            "cluster_lease_failures",
            failover.lease_failures.load(Relaxed),
        );
    }
    line(out, "cluster_promotions", failover.promotions.load(Relaxed));
    if let Some(report) = failover.last_promotion.lock().as_ref() {
        line(out, "cluster_last_promotion_term", report.term);
        line(out, "cluster_last_promotion_fork_lsn", report.fork_lsn);
        line(
            out,
            "cluster_last_promotion_reloaded_carts",
            report.reloaded_carts,
        );
        line(out, "cluster_last_promotion_shared_lsn", report.shared_lsn);
        line(
            out,
            "cluster_last_promotion_forked_carts",
            report.forked_carts,
        );
        line(out, "cluster_last_promotion_ms", report.millis);
    }
    let (set_aside, file) = server
        .replication
        .set_aside
        .lock()
        .as_ref()
        .map_or((0, String::new()), |(records, file)| {
            (*records, file.display().to_string())
        });
    line(out, "cluster_set_aside_records", set_aside);
    if !file.is_empty() {
        line(out, "cluster_set_aside_file", file);
    }
}
