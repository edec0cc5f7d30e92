//! The end-to-end test harness: starts the real `cartd` binary on 127.0.0.1 with a port the OS
//! picks, and talks to it over real sockets, with the `redis` crate (RESP2 and RESP3), with raw
//! bytes, and with `redis-cli`. Every wait has a timeout, so a broken server fails a test
//! instead of hanging it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::{json, Map, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running cartd process; killed when dropped.
pub struct Cartd {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
}

/// The cartd binary: `CARTD_BIN`, else `target/<profile>/cartd` beside this test binary.
pub fn cartd_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CARTD_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("cartd");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin cartd` first",
        bin.display()
    );
    bin
}

impl Cartd {
    /// Starts cartd with the built-in defaults.
    pub fn start_default() -> Cartd {
        Cartd::start("")
    }

    /// Starts cartd with `config_toml` as its configuration file.
    pub fn start(config_toml: &str) -> Cartd {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("cartd.toml");
        std::fs::write(&config_path, config_toml).expect("write config");
        Cartd::spawn(dir, &config_path)
    }

    fn spawn(dir: tempfile::TempDir, config_path: &std::path::Path) -> Cartd {
        let mut child = Command::new(cartd_bin())
            .arg("--config")
            .arg(config_path)
            .args(["--bind", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cartd starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("cartd listening on ").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = port_tx.send(addr);
                }
                let mut log = log_writer.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match port_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("cartd prints a socket address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "cartd did not start; its log:\n{}",
                    log.lock().expect("log lock")
                );
            }
        };
        Cartd {
            child,
            addr,
            log,
            dir,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Everything cartd logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// The process's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A `redis` crate connection speaking RESP2, or RESP3 after HELLO 3.
    pub async fn client(&self, resp3: bool) -> MultiplexedConnection {
        let query = if resp3 { "?protocol=resp3" } else { "" };
        let url = format!("redis://{}/{query}", self.addr);
        let client = redis::Client::open(url).expect("valid url");
        tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
            .await
            .expect("connect in time")
            .expect("connect")
    }

    /// A raw socket.
    pub async fn raw(&self) -> RawConn {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(self.addr))
            .await
            .expect("connect in time")
            .expect("connect");
        RawConn {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Runs `redis-cli -p PORT args...` and returns its standard output.
    pub fn redis_cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs (scripts/test installs redis-tools)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit()
    }

    /// Waits for the process to exit on its own (after SHUTDOWN, say).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cartd did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cartd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one command with the `redis` crate; `Err` holds the error reply as `CODE message`.
pub async fn cmd(conn: &mut MultiplexedConnection, args: &[&str]) -> Result<Value, String> {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    match tokio::time::timeout(WAIT, command.query_async::<Value>(conn))
        .await
        .expect("reply in time")
    {
        Ok(Value::ServerError(error)) => Err(format!(
            "{} {}",
            error.code(),
            error.details().unwrap_or_default()
        )),
        Ok(value) => Ok(value),
        Err(error) => Err(format!(
            "{} {}",
            error.code().unwrap_or("?"),
            error.detail().unwrap_or_default()
        )),
    }
}

/// Like [`cmd`] but the command must succeed.
pub async fn ok(conn: &mut MultiplexedConnection, args: &[&str]) -> Value {
    match cmd(conn, args).await {
        Ok(value) => value,
        Err(error) => panic!("{args:?} failed: {error}"),
    }
}

/// Like [`cmd`] but the command must fail; returns `CODE message`.
pub async fn fails(conn: &mut MultiplexedConnection, args: &[&str]) -> String {
    match cmd(conn, args).await {
        Ok(value) => panic!("{args:?} should have failed but replied {value:?}"),
        Err(error) => error,
    }
}

/// An integer reply.
pub fn int(value: &Value) -> i64 {
    match value {
        Value::Int(number) => *number,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// A cart view (or null) fetched as JSON with `CART.GET key FORMAT JSON NOVALIDATE`.
pub async fn view(conn: &mut MultiplexedConnection, key: &str) -> Json {
    let value = ok(conn, &["CART.GET", key, "NOVALIDATE", "FORMAT", "JSON"]).await;
    json_reply(&value)
}

/// Parses a `FORMAT JSON` reply (null stays null).
pub fn json_reply(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::BulkString(bytes) => serde_json::from_slice(bytes).expect("valid JSON"),
        other => panic!("expected a JSON bulk string, got {other:?}"),
    }
}

/// Converts a RESP3 reply to JSON generically (maps become objects).
pub fn resp3_to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Int(number) => json!(number),
        Value::BulkString(bytes) => json!(String::from_utf8_lossy(bytes)),
        Value::SimpleString(text) => json!(text),
        Value::Okay => json!("OK"),
        Value::Boolean(flag) => json!(flag),
        Value::Array(items) | Value::Set(items) => {
            Json::Array(items.iter().map(resp3_to_json).collect())
        }
        Value::Map(pairs) => {
            let mut object = Map::new();
            for (key, value) in pairs {
                let key = match resp3_to_json(key) {
                    Json::String(text) => text,
                    other => other.to_string(),
                };
                object.insert(key, resp3_to_json(value));
            }
            Json::Object(object)
        }
        Value::VerbatimString { text, .. } => json!(text),
        other => panic!("unexpected RESP3 value {other:?}"),
    }
}

/// Converts a RESP2 cart view (maps flattened, booleans as 0/1) back into JSON, using the
/// view's known shape: which fields hold lists of maps and which hold one map.
pub fn resp2_view_to_json(value: &Value) -> Json {
    fn flat_map(value: &Value) -> Vec<(String, &Value)> {
        let Value::Array(items) = value else {
            panic!("expected a flat map, got {value:?}")
        };
        assert!(items.len() % 2 == 0, "a flattened map has an even length");
        items
            .chunks(2)
            .map(|pair| match &pair[0] {
                Value::BulkString(key) => (String::from_utf8_lossy(key).into_owned(), &pair[1]),
                other => panic!("map keys are bulk strings, got {other:?}"),
            })
            .collect()
    }
    fn scalar(value: &Value) -> Json {
        match value {
            Value::Nil => Json::Null,
            Value::Int(number) => json!(number),
            Value::BulkString(bytes) => json!(String::from_utf8_lossy(bytes)),
            Value::Array(items) => Json::Array(items.iter().map(scalar).collect()),
            other => panic!("unexpected RESP2 value {other:?}"),
        }
    }
    fn object(value: &Value) -> Json {
        let mut fields = Map::new();
        for (key, value) in flat_map(value) {
            let converted = match key.as_str() {
                "items" | "unavailable" | "saved" | "gift_cards" | "discounts" => {
                    let Value::Array(lines) = value else {
                        panic!("{key} is an array")
                    };
                    Json::Array(lines.iter().map(object).collect())
                }
                "totals" => object(value),
                "price_changed" => json!(scalar(value) == json!(1)),
                _ => scalar(value),
            };
            fields.insert(key, converted);
        }
        Json::Object(fields)
    }
    match value {
        Value::Nil => Json::Null,
        other => object(other),
    }
}

/// A raw TCP connection for byte-exact tests.
pub struct RawConn {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawConn {
    /// Writes bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes))
            .await
            .expect("write in time")
            .expect("write");
    }

    /// Reads exactly one complete RESP2/RESP3 reply and returns its bytes.
    pub async fn read_reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(length) = reply_length(&self.buffer) {
                return self.buffer.drain(..length).collect();
            }
            let mut chunk = [0u8; 65536];
            let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("reply in time")
                .expect("read");
            assert!(
                read > 0,
                "connection closed before a full reply; have {:?}",
                String::from_utf8_lossy(&self.buffer)
            );
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Sends a command as a RESP array and reads one reply.
    pub async fn call(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(&encode_command(args)).await;
        self.read_reply().await
    }

    /// Reads until the server closes the connection; returns what came before the close.
    pub async fn read_until_closed(&mut self) -> Vec<u8> {
        loop {
            let mut chunk = [0u8; 65536];
            let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("the server closes in time")
                .unwrap_or(0);
            if read == 0 {
                return std::mem::take(&mut self.buffer);
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Length of the first complete reply in `buffer`, if it holds one.
fn reply_length(buffer: &[u8]) -> Option<usize> {
    let line_end = buffer.windows(2).position(|pair| pair == b"\r\n")?;
    let header = std::str::from_utf8(&buffer[1..line_end]).ok()?;
    let after_header = line_end + 2;
    match buffer.first()? {
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => Some(after_header),
        b'$' | b'!' | b'=' => {
            let length: i64 = header.parse().ok()?;
            if length < 0 {
                return Some(after_header);
            }
            let end = after_header + length as usize + 2;
            (buffer.len() >= end).then_some(end)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count: i64 = header.parse().ok()?;
            let elements = if matches!(buffer[0], b'%' | b'|') {
                2 * count.max(0)
            } else {
                count.max(0)
            };
            let mut offset = after_header;
            for _ in 0..elements {
                offset += reply_length(&buffer[offset..])?;
            }
            Some(offset)
        }
        other => panic!("not a RESP reply: starts with {:?}", *other as char),
    }
}
