//! What the allocator and the kernel say about cartd's memory, for INFO memory and MEMORY
//! STATS/DOCTOR: jemalloc's own counters (allocated, active, resident) and the peak of what
//! was allocated. Read on demand (and every 100 ms by the maxmemory sampler, which keeps the
//! peak); nothing here is on a command's path.

use std::sync::atomic::{AtomicU64, Ordering};

/// jemalloc's counters, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Handed out to cartd and not given back (`stats.allocated`): Redis's `used_memory`.
    pub allocated: u64,
    /// In pages jemalloc has in use for that (`stats.active`).
    pub active: u64,
    /// Physically resident in jemalloc's mappings (`stats.resident`).
    pub resident: u64,
}

/// The counters, fresh (`epoch` advanced first); `None` when jemalloc is not the allocator
/// (a test or benchmark binary): it has then handed out nothing.
pub fn allocator_stats() -> Option<AllocatorStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    let stats = AllocatorStats {
        allocated: stats::allocated::read().ok()? as u64,
        active: stats::active::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
    };
    (stats.allocated > 0).then_some(stats)
}

/// What the allocator holds for cartd (Redis's `used_memory`), the resident size where
/// jemalloc is not the allocator.
pub fn used_bytes() -> u64 {
    allocator_stats().map_or_else(crate::server::rss_bytes, |stats| stats.allocated)
}

/// The most `used_bytes` has been whenever it was looked at (Redis's `used_memory_peak`).
#[derive(Debug, Default)]
pub struct PeakMemory {
    peak_bytes: AtomicU64,
}

impl PeakMemory {
    /// Notes `used` bytes in use now; returns the peak.
    pub fn note(&self, used: u64) -> u64 {
        self.peak_bytes.fetch_max(used, Ordering::Relaxed).max(used)
    }
}

/// jemalloc's statistics report (MEMORY MALLOC-STATS), or why there is none.
pub fn malloc_stats_text() -> String {
    let mut report = Vec::new();
    match tikv_jemalloc_ctl::stats_print::stats_print(
        &mut report,
        tikv_jemalloc_ctl::stats_print::Options::default(),
    ) {
        Ok(()) if !report.is_empty() => String::from_utf8_lossy(&report).into_owned(),
        _ => "Stats not supported for the current allocator".into(),
    }
}

/// Bytes with Redis's human units (`1.50M`), as INFO's `*_human` fields.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "K", "M", "G"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}
