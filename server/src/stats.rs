//! Server counters and per-command statistics (INFO stats, commandstats, latencystats).
//! Connections record a whole batch of samples under one lock, not one lock per command.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use protocol::{CommandId, COMMANDS};

/// One command's figures.
#[derive(Debug)]
pub struct CommandStats {
    /// Calls that ran.
    pub calls: u64,
    /// Time spent, microseconds.
    pub usec: u64,
    /// Calls refused before running (arity, syntax, auth).
    pub rejected_calls: u64,
    /// Calls that ran and replied an error.
    pub failed_calls: u64,
    /// Latency in nanoseconds.
    pub latency_ns: Histogram<u64>,
}

impl CommandStats {
    fn new() -> CommandStats {
        CommandStats {
            calls: 0,
            usec: 0,
            rejected_calls: 0,
            failed_calls: 0,
            latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 2)
                .expect("static bounds are valid"),
        }
    }
}

/// One command's outcome, as a connection records it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The command.
    pub command: CommandId,
    /// How long it took.
    pub nanos: u64,
    /// How it ended.
    pub result: SampleResult,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleResult {
    /// Replied normally.
    Ok,
    /// Ran and replied an error.
    Failed,
    /// Refused before it ran.
    Rejected,
}

/// Server-wide counters.
#[derive(Debug)]
pub struct Stats {
    /// Connections accepted.
    pub connections_received: AtomicU64,
    /// Connections refused (maxclients).
    pub rejected_connections: AtomicU64,
    /// Clients closed for not reading their replies (`client-output-buffer-limit`).
    pub client_output_buffer_limit_disconnections: AtomicU64,
    /// Changes refused with MISCONF because the log could not be written.
    pub misconf_refused: AtomicU64,
    /// Commands processed.
    pub commands_processed: AtomicU64,
    /// Error replies sent.
    pub error_replies: AtomicU64,
    /// Error replies by code (`INFO errorstats`), indexed by `ErrorCode as usize`.
    pub error_codes: [AtomicU64; protocol::ErrorCode::ALL.len()],
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Per-command figures, indexed by [`CommandId`].
    pub commands: Mutex<Vec<CommandStats>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            client_output_buffer_limit_disconnections: AtomicU64::new(0),
            misconf_refused: AtomicU64::new(0),
            commands_processed: AtomicU64::new(0),
            error_replies: AtomicU64::new(0),
            error_codes: std::array::from_fn(|_| AtomicU64::new(0)),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            commands: Mutex::new(COMMANDS.iter().map(|_| CommandStats::new()).collect()),
        }
    }
}

impl Stats {
    /// Records one connection's batch.
    pub fn record_batch(&self, samples: &[Sample], errors: u64) {
        if samples.is_empty() && errors == 0 {
            return;
        }
        self.commands_processed
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        self.error_replies.fetch_add(errors, Ordering::Relaxed);
        let mut commands = self.commands.lock();
        for sample in samples {
            let stats = &mut commands[sample.command as usize];
            match sample.result {
                SampleResult::Rejected => stats.rejected_calls += 1,
                result => {
                    stats.calls += 1;
                    stats.usec += sample.nanos / 1000;
                    stats.failed_calls += u64::from(result == SampleResult::Failed);
                    stats.latency_ns.saturating_record(sample.nanos.max(1));
                }
            }
        }
    }

    /// Counts an error reply by its code.
    pub fn count_error(&self, code: protocol::ErrorCode) {
        self.error_codes[code as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        for counter in [
            &self.connections_received,
            &self.rejected_connections,
            &self.client_output_buffer_limit_disconnections,
            &self.misconf_refused,
            &self.commands_processed,
            &self.error_replies,
            &self.net_input_bytes,
            &self.net_output_bytes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        for counter in &self.error_codes {
            counter.store(0, Ordering::Relaxed);
        }
        *self.commands.lock() = COMMANDS.iter().map(|_| CommandStats::new()).collect();
    }
}
