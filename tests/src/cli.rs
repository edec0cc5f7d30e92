//! Running `redis-cli` (from redis-tools, which `scripts/test` installs) against cartd, with a
//! timeout so a server that never answers fails the test instead of hanging it.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    let mut child = Command::new(&bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", bin.display()));
    // Read both pipes on their own threads: a full pipe must not stall the wait below.
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr is piped")));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on redis-cli") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-cli {args:?} did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    CliOutput {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

impl Cartd {
    /// Runs `redis-cli -p PORT args...` against this cartd and returns its standard output
    /// (see [`run_redis_cli`] for the exit status and stderr).
    pub fn redis_cli(&self, args: &[&str]) -> String {
        run_redis_cli(self.port(), args).stdout
    }
}
