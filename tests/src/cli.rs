//! Running `redis-cli` (from redis-tools, which `scripts/test` installs) against cartd, with a
//! timeout so a server that never answers fails the test instead of hanging it.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use crate::{Cartd, WAIT};

/// Where `redis-cli` is on `PATH`, if it is installed.
pub fn redis_cli() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-cli"))
        .find(|candidate| candidate.is_file())
}

/// What one `redis-cli` run printed.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `redis-cli -h 127.0.0.1 -p port args...` with stdin closed and waits up to [`WAIT`];
/// kills it and panics if it takes longer. Panics if redis-cli is not installed.
pub fn run_redis_cli(port: u16, args: &[&str]) -> CliOutput {
    let bin = redis_cli().expect("redis-cli is on PATH (scripts/test installs redis-tools)");
    let mut command = Command::new(&bin);
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    let (status, stdout, stderr) = crate::scripts::run_captured(command, WAIT);
    CliOutput {
        status,
        stdout,
        stderr,
    }
}

impl Cartd {
    /// Runs `redis-cli -p PORT args...` against this cartd and returns its standard output
    /// (see [`run_redis_cli`] for the exit status and stderr).
    pub fn redis_cli(&self, args: &[&str]) -> String {
        run_redis_cli(self.port(), args).stdout
    }
}
