//! Running real client libraries (redis-py, ioredis) as scripts: where `scripts/test`
//! installed them, and a runner that parses the one JSON line a script prints last.

use std::path::PathBuf;
use std::process::Command;

/// `target/client-libs` (or `CARTD_CLIENT_LIBS`): `python/` for redis-py, `node/node_modules`
/// for ioredis.
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
    let output = Command::new(program)
        .args(args)
        .env(env.0, env.1)
        .output()
        .unwrap_or_else(|error| panic!("{program} runs: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} failed:\n{stdout}\n{stderr}"
    );
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{program} printed nothing; stderr:\n{stderr}"));
    serde_json::from_str(last).unwrap_or_else(|error| panic!("not JSON ({error}): {last}"))
}
