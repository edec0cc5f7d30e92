//! The latency monitor (`LATENCY`): for each event, the last
//! [`LATENCY_SAMPLES_PER_EVENT_MAX`] seconds in which it took at least
//! `latency-monitor-threshold` milliseconds (the worst of each second) and its worst ever,
//! as Redis keeps them. Events: `command` and `fast-command` (from the connection's answer
//! path), `wal-fsync` (the log's slowest fsync, sampled a few times a second) and
//! `expire-cycle` (one pass of the expiry ticker), named as Redis names its own where it has
//! one.

use parking_lot::Mutex;

use crate::limits::LATENCY_SAMPLES_PER_EVENT_MAX;

/// What the monitor samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyEvent {
    /// A command without the `fast` flag.
    Command,
    /// A command with the `fast` flag.
    FastCommand,
    /// An fsync of the write-ahead log.
    WalFsync,
    /// One pass of the expiry ticker over every shard.
    ExpireCycle,
}

impl LatencyEvent {
    /// Every event, in the order LATENCY LATEST lists them.
    pub const ALL: [LatencyEvent; 4] = [
        LatencyEvent::Command,
        LatencyEvent::FastCommand,
        LatencyEvent::WalFsync,
        LatencyEvent::ExpireCycle,
    ];

    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            LatencyEvent::Command => "command",
            LatencyEvent::FastCommand => "fast-command",
            LatencyEvent::WalFsync => "wal-fsync",
            LatencyEvent::ExpireCycle => "expire-cycle",
        }
    }

    /// The event called `name`, if any.
    pub fn named(name: &[u8]) -> Option<LatencyEvent> {
        LatencyEvent::ALL
            .into_iter()
            .find(|event| event.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// One second's worst time of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySample {
    /// The second, Unix time.
    pub unix_s: u64,
    /// The worst time in it, milliseconds.
    pub latency_ms: u64,
}

/// One event's samples, oldest first, and its worst ever.
#[derive(Debug, Clone, Default)]
pub struct EventHistory {
    /// At most [`LATENCY_SAMPLES_PER_EVENT_MAX`], one per second.
    pub samples: std::collections::VecDeque<LatencySample>,
    /// The worst time ever sampled, milliseconds.
    pub max_ms: u64,
}

/// Every event's history.
#[derive(Debug, Default)]
pub struct LatencyMonitor {
    events: Mutex<[EventHistory; LatencyEvent::ALL.len()]>,
}

impl LatencyMonitor {
    /// Samples `event` if it took at least `threshold_ms` (0: the monitor is off). Within one
    /// second only the worst time is kept, as in Redis.
    pub fn sample_if_needed(&self, event: LatencyEvent, latency_ms: u64, threshold_ms: u64) {
        if threshold_ms == 0 || latency_ms < threshold_ms {
            return;
        }
        self.sample(event, latency_ms, crate::server::now_ms() / 1000);
    }

    fn sample(&self, event: LatencyEvent, latency_ms: u64, unix_s: u64) {
        let mut events = self.events.lock();
        let history = &mut events[event as usize];
        history.max_ms = history.max_ms.max(latency_ms);
        if let Some(last) = history.samples.back_mut() {
            if last.unix_s == unix_s {
                last.latency_ms = last.latency_ms.max(latency_ms);
                return;
            }
        }
        if history.samples.len() == LATENCY_SAMPLES_PER_EVENT_MAX {
            history.samples.pop_front();
        }
        history
            .samples
            .push_back(LatencySample { unix_s, latency_ms });
    }

    /// The events with samples, each with its history.
    pub fn histories(&self) -> Vec<(LatencyEvent, EventHistory)> {
        let events = self.events.lock();
        LatencyEvent::ALL
            .into_iter()
            .filter(|event| !events[*event as usize].samples.is_empty())
            .map(|event| (event, events[event as usize].clone()))
            .collect()
    }

    /// One event's history (empty if it never crossed the threshold).
    pub fn history(&self, event: LatencyEvent) -> EventHistory {
        self.events.lock()[event as usize].clone()
    }

    /// LATENCY RESET: forgets `events` (none: all); how many had samples.
    pub fn reset(&self, events: &[LatencyEvent]) -> usize {
        let mut histories = self.events.lock();
        let chosen: Vec<LatencyEvent> = if events.is_empty() {
            LatencyEvent::ALL.to_vec()
        } else {
            events.to_vec()
        };
        let mut reset = 0;
        for event in LatencyEvent::ALL {
            if chosen.contains(&event) && !histories[event as usize].samples.is_empty() {
                histories[event as usize] = EventHistory::default();
                reset += 1;
            }
        }
        reset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_second_keeps_the_worst_and_the_history_is_bounded() {
        let monitor = LatencyMonitor::default();
        monitor.sample(LatencyEvent::Command, 50, 1000);
        monitor.sample(LatencyEvent::Command, 20, 1000);
        let history = monitor.history(LatencyEvent::Command);
        assert_eq!(history.samples.len(), 1);
        assert_eq!(history.samples[0].latency_ms, 50);
        for second in 0..LATENCY_SAMPLES_PER_EVENT_MAX as u64 + 1 {
            monitor.sample(LatencyEvent::Command, 5, 2000 + second);
        }
        let history = monitor.history(LatencyEvent::Command);
        assert_eq!(history.samples.len(), LATENCY_SAMPLES_PER_EVENT_MAX);
        assert_eq!(history.samples[0].unix_s, 2001);
        assert_eq!(history.max_ms, 50);
        assert_eq!(monitor.reset(&[LatencyEvent::FastCommand]), 0);
        assert_eq!(monitor.reset(&[]), 1);
        assert!(monitor.histories().is_empty());
    }

    #[test]
    fn below_the_threshold_or_with_the_monitor_off_nothing_is_kept() {
        let monitor = LatencyMonitor::default();
        monitor.sample_if_needed(LatencyEvent::Command, 5, 10);
        monitor.sample_if_needed(LatencyEvent::Command, 500, 0);
        assert!(monitor.histories().is_empty());
    }
}
