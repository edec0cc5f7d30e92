//! What machine a run was on, stated with every result (figures mean nothing without it).

use serde::Serialize;

/// The machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub cores: usize,
    /// CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// Physical memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// This process's open-file limit (soft, after raising it to the hard limit).
    pub open_files_limit: u64,
}

impl Machine {
    /// Reads the machine (Linux; elsewhere the unknown fields say so).
    pub fn read() -> Machine {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("model name"))
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("MemTotal:"))
                    .and_then(|rest| {
                        rest.trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<f64>()
                            .ok()
                    })
            })
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
            |_| "unknown".to_string(),
            |release| release.trim().to_string(),
        );
        let open_files_limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
        Machine {
            cores,
            cpu,
            memory_gib,
            kernel,
            open_files_limit,
        }
    }

    /// One line for the top of the output.
    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB memory, Linux {}, open-file limit {}; \
             the load generator runs on the same machine as the servers",
            self.cores, self.cpu, self.memory_gib, self.kernel, self.open_files_limit
        )
    }
}
