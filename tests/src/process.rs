//! One running `cartd` process: where the binary is, how it is started on 127.0.0.1 with a port
//! the OS picks, how its stderr is collected, and how it is stopped (SIGTERM, SIGKILL or drop).
//! Talking to it is left to `client`, `raw` and `cli`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::WAIT;

/// How long cartd may take to log its listening address.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What cartd logs once it accepts connections, followed by the bound address.
const LISTENING: &str = "cartd listening on ";
/// What cartd logs once its data is loaded and commands are served.
pub const READY: &str = "ready to accept connections";

/// A running cartd process with its own temporary config file and data directory; killed
/// (SIGKILL) when dropped.
pub struct Cartd {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
    /// The data directory (`--data-dir`): `dir/data` unless the test chose one.
    data: PathBuf,
}

/// The cartd binary: `CARTD_BIN`, else `target/<profile>/cartd` beside this test binary
/// (`target/<profile>/deps/<test>`). Panics with what to do when it is missing.
pub fn cartd_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CARTD_BIN") {
        let bin = PathBuf::from(path);
        assert!(bin.exists(), "CARTD_BIN={} does not exist", bin.display());
        return bin;
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps/");
    let bin = profile_dir.join("cartd");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin cartd` first (or set CARTD_BIN)",
        bin.display()
    );
    bin
}

impl Cartd {
    /// Starts cartd with the built-in defaults (an empty config file).
    pub fn start_default() -> Cartd {
        Cartd::start("")
    }

    /// Starts cartd without `--config` (the built-in defaults, no file to rewrite), and
    /// waits until it is ready.
    pub fn start_without_config_file() -> Cartd {
        let dir = tempfile::tempdir().expect("a temp dir for cartd");
        let data = dir.path().join("data");
        let (child, addr, log) = spawn(dir.path(), &data, String::new(), &[], true);
        Cartd {
            child,
            addr,
            log,
            dir,
            data,
        }
    }

    /// Starts cartd with `config_toml` as its configuration file and waits (up to
    /// [`START_TIMEOUT`]) until it listens. Blocks the calling thread, so it works inside and
    /// outside a tokio runtime; in async code [`Cartd::start_async`] keeps the runtime free.
    pub fn start(config_toml: &str) -> Cartd {
        let dir = tempfile::tempdir().expect("a temp dir for cartd");
        let data = dir.path().join("data");
        Cartd::start_at(config_toml, dir, data, true)
    }

    /// Starts cartd like [`Cartd::start`] with its data directory at `data` (on a small file
    /// system of the test's, say).
    pub fn start_on(config_toml: &str, data: PathBuf) -> Cartd {
        let dir = tempfile::tempdir().expect("a temp dir for cartd");
        Cartd::start_at(config_toml, dir, data, true)
    }

    fn start_at(config_toml: &str, dir: tempfile::TempDir, data: PathBuf, ready: bool) -> Cartd {
        std::fs::write(dir.path().join("cartd.toml"), config_toml).expect("write cartd.toml");
        let (child, addr, log) = spawn(dir.path(), &data, String::new(), &[], ready);
        Cartd {
            child,
            addr,
            log,
            dir,
            data,
        }
    }

    /// Starts cartd like [`Cartd::start`] on a copy of the data directory `data` (its `wal/`
    /// and `snapshots/`), as an earlier cartd left it.
    pub fn start_with_data(config_toml: &str, data: &Path) -> Cartd {
        let dir = tempfile::tempdir().expect("a temp dir for cartd");
        let copy = dir.path().join("data");
        copy_dir(data, &copy);
        Cartd::start_at(config_toml, dir, copy, true)
    }

    /// Starts cartd like [`Cartd::start`] but returns as soon as it listens, while it may
    /// still be loading (answering `-LOADING`): for tests of the loading state itself.
    pub fn start_loading(config_toml: &str) -> Cartd {
        let dir = tempfile::tempdir().expect("a temp dir for cartd");
        let data = dir.path().join("data");
        Cartd::start_at(config_toml, dir, data, false)
    }

    /// [`Cartd::start`] on a blocking thread, for async tests that want other tasks to run
    /// while cartd starts.
    pub async fn start_async(config_toml: &str) -> Cartd {
        let config_toml = config_toml.to_owned();
        tokio::task::spawn_blocking(move || Cartd::start(&config_toml))
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    /// The listening address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything cartd logged to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits up to [`WAIT`] until the log contains `needle`; panics with the log otherwise.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "cartd never logged {needle:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's data directory (`--data-dir`), kept across [`Cartd::restart`].
    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    /// The configuration file cartd was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("cartd.toml")
    }

    /// Sends SIGTERM and waits (up to [`WAIT`]) for the exit; returns the exit status.
    pub fn stop_gracefully(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }

    /// The same as [`Cartd::stop_gracefully`].
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop_gracefully()
    }

    /// Kills the process with SIGKILL (a crash: nothing is flushed) and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("reap the killed cartd")
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`, ...) with `kill(1)`, unless it has exited.
    pub fn signal(&mut self, name: &str) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return; // Reaped: the pid may belong to someone else by now.
        }
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{name} {} failed", self.child.id());
    }

    /// Waits (up to [`WAIT`]) for the process to exit on its own, after SHUTDOWN or a signal.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on cartd") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cartd did not exit within {WAIT:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts cartd again on the same config file and data directory, after it stopped or was
    /// killed (a running process is killed first). The port changes; the log goes on.
    pub fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// [`Cartd::restart`] with extra command-line flags (`--repair`).
    pub fn restart_with(&mut self, flags: &[&str]) {
        if self.child.try_wait().expect("try_wait on cartd").is_none() {
            self.kill();
        }
        let previous = self.log() + "---- cartd restarted ----\n";
        let (child, addr, log) = spawn(self.dir.path(), &self.data, previous, flags, true);
        self.child = child;
        self.addr = addr;
        self.log = log;
    }

    /// Runs cartd on the same files (after it stopped), expecting it to refuse to start;
    /// returns its exit status and everything it logged.
    pub fn start_refused(&self) -> (ExitStatus, String) {
        let mut child = cartd_command(self.dir.path(), &self.data, &[])
            .stderr(Stdio::piped())
            .spawn()
            .expect("cartd runs");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, _addr_rx) = mpsc::sync_channel(1);
        let writer = Arc::clone(&log);
        let drain = std::thread::spawn(move || drain_stderr(stderr, &writer, &addr_tx));
        let deadline = Instant::now() + START_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait on cartd") {
                break status;
            }
            // A cartd that should have refused but serves would otherwise be waited for forever.
            if Instant::now() > deadline || log.lock().expect("log lock").contains(READY) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cartd started anyway; its log:\n{}",
                    log.lock().expect("log lock")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = drain.join();
        let log = log.lock().expect("log lock").clone();
        assert!(!status.success(), "cartd started anyway; its log:\n{log}");
        (status, log)
    }
}

impl Drop for Cartd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the directory tree `from` to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the directory to copy") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// The cartd command line for the config in `dir` (`--config` only if `dir/cartd.toml`
/// exists) and the data directory `data`, with extra `flags`.
fn cartd_command(dir: &Path, data: &Path, flags: &[&str]) -> Command {
    let mut command = Command::new(cartd_bin());
    let config = dir.join("cartd.toml");
    if config.exists() {
        command.arg("--config").arg(config);
    }
    command
        .args(["--bind", "127.0.0.1", "--port", "0", "--data-dir"])
        .arg(data)
        .args(flags)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1")
        // PostgreSQL only where a test configures it, never by inheriting the suite's URL.
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Spawns cartd on `dir/cartd.toml` and `dir/data`, and waits for its listening address and
/// then (with `wait_ready`) for it to be ready. The log starts with `log_prefix`. Kills the
/// child on every failure path: a panic here must not leave a process behind.
fn spawn(
    dir: &Path,
    data: &Path,
    log_prefix: String,
    flags: &[&str],
    wait_ready: bool,
) -> (Child, SocketAddr, Arc<Mutex<String>>) {
    let mut child = cartd_command(dir, data, flags)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", cartd_bin().display()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let ready_before = log_prefix.matches(READY).count();
    let log = Arc::new(Mutex::new(log_prefix));
    // One message, the address; the channel needs no more room than that.
    let (addr_tx, addr_rx) = mpsc::sync_channel(1);
    let log_writer = Arc::clone(&log);
    std::thread::spawn(move || drain_stderr(stderr, &log_writer, &addr_tx));
    let addr = match addr_rx.recv_timeout(START_TIMEOUT) {
        Ok(Some(addr)) => addr,
        outcome => {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            // The drain thread may still be appending the last lines; give it a moment.
            std::thread::sleep(Duration::from_millis(100));
            let why = match outcome {
                Ok(_) => "logged an address it could not parse",
                Err(mpsc::RecvTimeoutError::Timeout) => "did not log its address in time",
                Err(mpsc::RecvTimeoutError::Disconnected) => "exited before listening",
            };
            panic!(
                "cartd {why} (`{LISTENING}127.0.0.1:PORT` expected; {status}); its log:\n{}",
                log.lock().expect("log lock")
            );
        }
    };
    if wait_ready {
        wait_until_ready(&mut child, &log, ready_before);
    }
    (child, addr, log)
}

/// Waits until cartd has loaded its data (it listens before, answering `-LOADING`).
fn wait_until_ready(child: &mut Child, log: &Mutex<String>, ready_before: usize) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if log.lock().expect("log lock").matches(READY).count() > ready_before {
            return;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cartd did not become ready ({exited:?}); its log:\n{}",
                log.lock().expect("log lock")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Appends every stderr line to `log` until EOF, so the pipe never fills; sends the address of
/// the first listening line (`None` if it does not parse). Non-UTF-8 bytes are kept lossily
/// rather than ending the drain.
fn drain_stderr(
    stderr: ChildStderr,
    log: &Mutex<String>,
    addr_tx: &mpsc::SyncSender<Option<SocketAddr>>,
) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut sent = false;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        // Log first, so whoever hears of the address finds the line in the log.
        log.lock().expect("log lock").push_str(&text);
        if !text.ends_with('\n') {
            log.lock().expect("log lock").push('\n');
        }
        if !sent {
            if let Some(addr) = listening_addr(&text) {
                let _ = addr_tx.try_send(addr);
                sent = true;
            }
        }
    }
}

/// The address in a `cartd listening on ADDR` line: `Some(None)` if the line says it but the
/// address does not parse, `None` for any other line.
fn listening_addr(line: &str) -> Option<Option<SocketAddr>> {
    let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    Some(addr.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::listening_addr;

    #[test]
    fn finds_the_address_in_a_tracing_line() {
        let line =
            "2026-11-28T14:00:00.1Z  INFO cartd::server: cartd listening on 127.0.0.1:40123\n";
        let addr = listening_addr(line)
            .expect("a listening line")
            .expect("an address");
        assert_eq!(addr.to_string(), "127.0.0.1:40123");
        let coloured = "\x1b[2mINFO\x1b[0m cartd listening on 127.0.0.1:7379\x1b[0m";
        assert_eq!(
            listening_addr(coloured),
            Some("127.0.0.1:7379".parse().ok())
        );
        assert_eq!(listening_addr("cartd listening on nowhere"), Some(None));
        assert_eq!(listening_addr("cartd stopping"), None);
    }
}
