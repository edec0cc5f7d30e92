//! Running real client libraries as scripts: where `scripts/test` installed them, and a
//! runner that parses the one JSON line a script prints last, killing a script that hangs.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one client script may run: the slowest matrix script takes a few seconds.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// `target/client-libs` (or `CARTD_CLIENT_LIBS`): `python/` for redis-py, `hiredis/` for
/// hiredis, `node/node_modules` for ioredis and node-redis (`redis4`, `redis5`), `go/` for
/// the matrix's Go programs and their build cache.
pub fn client_libs() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARTD_CLIENT_LIBS") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>")
        .join("client-libs")
}

/// Runs a script with an interpreter, `env` set, and parses the JSON line it prints last;
/// panics with its output if it fails.
pub fn run_script(program: &str, args: &[&str], env: (&str, PathBuf)) -> serde_json::Value {
    let mut command = Command::new(program);
    command.args(args).env(env.0, env.1);
    run_json(command)
}

/// Runs `command` (stdin closed, its output captured) for at most `timeout`; kills it and
/// panics if it takes longer. Returns how it exited and what it printed.
pub fn run_captured(mut command: Command, timeout: Duration) -> (ExitStatus, String, String) {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{what} runs: {error}"));
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
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        status,
        stdout.join().expect("stdout reader"),
        stderr.join().expect("stderr reader"),
    )
}

/// Runs `command` (stdin closed) for at most [`SCRIPT_TIMEOUT`] and parses the JSON line it
/// prints last; panics with its output if it fails, hangs or prints no JSON.
pub fn run_json(command: Command) -> serde_json::Value {
    let what = format!("{command:?}");
    let (status, stdout, stderr) = run_captured(command, SCRIPT_TIMEOUT);
    assert!(status.success(), "{what} failed:\n{stdout}\n{stderr}");
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{what} printed nothing; stderr:\n{stderr}"));
    serde_json::from_str(last).unwrap_or_else(|error| panic!("not JSON ({error}): {last}"))
}
