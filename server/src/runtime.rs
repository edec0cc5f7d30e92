//! The settings CONFIG SET changes while cartd runs, each readable on the hot path with one
//! relaxed atomic load (the output limit under a read lock, once per write to a client).
//! They start from the configuration; everything else in `Config` stays as it was read.
//! `requirepass` is the ACL's (`Acl::set_requirepass`), not here.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

use parking_lot::RwLock;

use crate::config::{OutputBufferLimit, ServerConfig};

/// The run-time half of `[server]`.
#[derive(Debug)]
pub struct RuntimeConfig {
    maxmemory_bytes: AtomicU64,
    maxmemory_clients_bytes: AtomicU64,
    maxclients: AtomicUsize,
    timeout_s: AtomicU64,
    slowlog_log_slower_than_us: AtomicI64,
    slowlog_max_len: AtomicUsize,
    latency_monitor_threshold_ms: AtomicU64,
    output_buffer_limit: RwLock<OutputBufferLimit>,
    pubsub_output_buffer_limit: RwLock<OutputBufferLimit>,
    /// Wakes the connections waiting for input when `timeout` changes, so an idle one is
    /// held to the new value at once (as Redis's clients cron does).
    timeout_changed: tokio::sync::Notify,
}

impl RuntimeConfig {
    /// The values `server` starts with.
    pub fn new(server: &ServerConfig) -> RuntimeConfig {
        RuntimeConfig {
            maxmemory_bytes: AtomicU64::new(server.maxmemory),
            maxmemory_clients_bytes: AtomicU64::new(server.maxmemory_clients),
            maxclients: AtomicUsize::new(server.maxclients),
            timeout_s: AtomicU64::new(server.timeout),
            slowlog_log_slower_than_us: AtomicI64::new(server.slowlog_log_slower_than),
            slowlog_max_len: AtomicUsize::new(server.slowlog_max_len),
            latency_monitor_threshold_ms: AtomicU64::new(server.latency_monitor_threshold),
            output_buffer_limit: RwLock::new(server.client_output_buffer_limit),
            pubsub_output_buffer_limit: RwLock::new(server.client_output_buffer_limit_pubsub),
            timeout_changed: tokio::sync::Notify::new(),
        }
    }

    /// `maxmemory`: resident bytes past which data-adding commands get -OOM; 0: no bound.
    pub fn maxmemory_bytes(&self) -> u64 {
        self.maxmemory_bytes.load(Relaxed)
    }

    /// `maxmemory-clients`: what all clients may hold together; 0: no bound.
    pub fn maxmemory_clients_bytes(&self) -> u64 {
        self.maxmemory_clients_bytes.load(Relaxed)
    }

    /// `maxclients`: connections at once.
    pub fn maxclients(&self) -> usize {
        self.maxclients.load(Relaxed)
    }

    /// `timeout`: idle seconds before a client is closed; 0: never.
    pub fn timeout_s(&self) -> u64 {
        self.timeout_s.load(Relaxed)
    }

    /// Resolves when `timeout` changes; the waiting connection then reads it again.
    pub fn timeout_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.timeout_changed.notified()
    }

    /// `slowlog-log-slower-than`, microseconds; negative: the slow log is off.
    pub fn slowlog_log_slower_than_us(&self) -> i64 {
        self.slowlog_log_slower_than_us.load(Relaxed)
    }

    /// `slowlog-max-len`.
    pub fn slowlog_max_len(&self) -> usize {
        self.slowlog_max_len.load(Relaxed)
    }

    /// `latency-monitor-threshold`, milliseconds; 0: the monitor is off.
    pub fn latency_monitor_threshold_ms(&self) -> u64 {
        self.latency_monitor_threshold_ms.load(Relaxed)
    }

    /// `client-output-buffer-limit` for normal clients.
    pub fn output_buffer_limit(&self) -> OutputBufferLimit {
        *self.output_buffer_limit.read()
    }

    /// `client-output-buffer-limit` for listening clients (the `pubsub` class). A mailbox
    /// takes it when it opens; a connection's own buffers are held to it at once.
    pub fn pubsub_output_buffer_limit(&self) -> OutputBufferLimit {
        *self.pubsub_output_buffer_limit.read()
    }

    /// Applies one checked setting.
    pub fn apply(&self, setting: &Setting) {
        match *setting {
            Setting::MaxMemory(bytes) => self.maxmemory_bytes.store(bytes, Relaxed),
            Setting::MaxMemoryClients(bytes) => self.maxmemory_clients_bytes.store(bytes, Relaxed),
            Setting::MaxClients(clients) => self.maxclients.store(clients, Relaxed),
            Setting::Timeout(seconds) => {
                self.timeout_s.store(seconds, Relaxed);
                self.timeout_changed.notify_waiters();
            }
            Setting::SlowlogLogSlowerThan(us) => self.slowlog_log_slower_than_us.store(us, Relaxed),
            Setting::SlowlogMaxLen(entries) => self.slowlog_max_len.store(entries, Relaxed),
            Setting::LatencyMonitorThreshold(ms) => {
                self.latency_monitor_threshold_ms.store(ms, Relaxed);
            }
            Setting::OutputBufferLimit { normal, pubsub } => {
                if let Some(limit) = normal {
                    *self.output_buffer_limit.write() = limit;
                }
                if let Some(limit) = pubsub {
                    *self.pubsub_output_buffer_limit.write() = limit;
                }
            }
            // Handled by their owners (the ACL), or nothing to change (noeviction only).
            Setting::RequirePass(_) | Setting::MaxMemoryPolicy => {}
        }
    }
}

/// One checked CONFIG SET value, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    /// `maxmemory`, bytes.
    MaxMemory(u64),
    /// `maxmemory-clients`, bytes.
    MaxMemoryClients(u64),
    /// `maxclients`.
    MaxClients(usize),
    /// `timeout`, seconds.
    Timeout(u64),
    /// `slowlog-log-slower-than`, microseconds.
    SlowlogLogSlowerThan(i64),
    /// `slowlog-max-len`.
    SlowlogMaxLen(usize),
    /// `latency-monitor-threshold`, milliseconds.
    LatencyMonitorThreshold(u64),
    /// `client-output-buffer-limit`: the classes given (normal, pubsub).
    OutputBufferLimit {
        /// The normal class, if given.
        normal: Option<OutputBufferLimit>,
        /// The pubsub class, if given.
        pubsub: Option<OutputBufferLimit>,
    },
    /// `requirepass` (empty: no password).
    RequirePass(String),
    /// `maxmemory-policy noeviction`, the only policy.
    MaxMemoryPolicy,
}
