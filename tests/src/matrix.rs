//! The client matrix (README "Client matrix"): each client library, how its script under
//! `tests/clients/` is run (interpreter or Go build, arguments, where the library is), and
//! what each client reports its own way (a WATCH abort, a null reply, its CLIENT SETINFO).
//! `tests/tests/client_matrix.rs` holds the facts asserted on what the scripts print.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::scripts::{client_libs, run_json};

/// The ACL user every script logs in as, with its password (passed to the script).
pub const MATRIX_USER: &str = "matrix";
/// The ACL user's password.
pub const MATRIX_PASSWORD: &str = "matrix-secret";
/// The ACL user's rules: everything on `cart:*` keys but the @admin commands (SAVE is
/// refused with NOPERM).
pub const MATRIX_USER_RULES: &str = "matrix on >matrix-secret ~cart:* +@all -@admin";

/// Where the scripts are: `tests/clients`.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Which server a script drives: cartd (`cart`: CART.ADD, CART.GET) or a real redis-server
/// (`plain`: the same steps on lists, RPUSH and LLEN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// cartd.
    Cart,
    /// redis-server.
    Plain,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Cart => "cart",
            Mode::Plain => "plain",
        }
    }
}

/// How a client's script runs.
#[derive(Debug)]
pub enum Runner {
    /// `python3 tests/clients/<script> ... <protocol>` with `target/client-libs/python` (and
    /// `hiredis`, when set) on PYTHONPATH.
    Python {
        /// `redis_py.py` or `redis_py_async.py`.
        script: &'static str,
        /// Whether hiredis is on PYTHONPATH (redis-py then parses with it).
        hiredis: bool,
    },
    /// `node tests/clients/<script> ... <args>` with `target/client-libs/node/node_modules`.
    Node {
        /// `ioredis.js` or `node_redis.js`.
        script: &'static str,
        /// Arguments after the mode: node-redis's major version and protocol.
        args: &'static [&'static str],
        /// The folder under node_modules the script requires.
        package: &'static str,
    },
    /// `ruby tests/clients/ruby_redis.rb` with Debian's ruby-redis.
    Ruby,
    /// `php tests/clients/phpredis.php` with Debian's php-redis.
    Php,
    /// `tests/clients/<program>/main.go`, built offline in GOPATH mode from Debian's Go
    /// sources under /usr/share/gocode into `target/client-libs/go/<program>`.
    Go {
        /// `redigo` or `goredis_v5`.
        program: &'static str,
        /// The Debian package holding the library's source.
        debian: &'static str,
        /// The library's folder under /usr/share/gocode/src.
        source: &'static str,
    },
}

/// What CLIENT SETINFO a client sends on connect (Redis 7.2's `lib-name` and `lib-ver`).
#[derive(Debug)]
pub struct SetInfo {
    /// The `lib-name` it sets.
    pub lib_name: &'static str,
    /// Whether `lib-ver` is the version the script reports (node-redis 4 sends the version of
    /// its @redis/client package instead).
    pub lib_ver_is_version: bool,
}

/// One client of the matrix.
#[derive(Debug)]
pub struct Client {
    /// The name failures carry.
    pub name: &'static str,
    /// How its script runs.
    pub runner: Runner,
    /// The RESP version it speaks (2 or 3).
    pub protocol: i64,
    /// The CLIENT SETINFO it sends, if any.
    pub setinfo: Option<SetInfo>,
    /// How the script reports an EXEC a WATCH aborted (the start of `watch.reported_as`).
    pub watch_abort: &'static str,
    /// What the script reports for CART.GET of a missing cart, as JSON text.
    pub missing: &'static str,
}

impl Client {
    /// Runs the client's script against 127.0.0.1:`port` in `mode` and returns the JSON it
    /// printed. Panics, saying to run scripts/test, when the client is not installed.
    pub fn run(&self, port: u16, mode: Mode) -> serde_json::Value {
        let mut command = self.command();
        command.current_dir(clients_dir()).args([
            "127.0.0.1",
            &port.to_string(),
            MATRIX_PASSWORD,
            mode.arg(),
        ]);
        match &self.runner {
            Runner::Python { .. } => {
                command.arg(self.protocol.to_string());
            }
            Runner::Node { args, .. } => {
                command.args(*args);
            }
            Runner::Ruby | Runner::Php | Runner::Go { .. } => {}
        }
        let mut out = run_json(command);
        if let Runner::Go { debian, .. } = self.runner {
            // Go libraries carry no version of their own: the Debian package's is the one.
            out["version"] = debian_version(debian).into();
        }
        out
    }

    /// The command up to the script's own arguments, once the client is known installed.
    fn command(&self) -> Command {
        let libs = client_libs();
        match &self.runner {
            Runner::Python { script, hiredis } => {
                let mut path = vec![libs.join("python")];
                if *hiredis {
                    path.push(libs.join("hiredis"));
                }
                for dir in &path {
                    assert!(
                        dir.exists(),
                        "{}: {} missing: run scripts/test, which installs redis-py and hiredis",
                        self.name,
                        dir.display()
                    );
                }
                let mut command = Command::new("python3");
                command.arg(script).env(
                    "PYTHONPATH",
                    std::env::join_paths(path).expect("PYTHONPATH"),
                );
                command
            }
            Runner::Node {
                script, package, ..
            } => {
                let modules = libs.join("node").join("node_modules");
                assert!(
                    modules.join(package).exists(),
                    "{}: {} missing: run scripts/test, which installs ioredis and node-redis",
                    self.name,
                    modules.join(package).display()
                );
                let mut command = Command::new("node");
                command.arg(script).env("NODE_PATH", modules);
                command
            }
            Runner::Ruby => {
                debian_version("ruby-redis");
                let mut command = Command::new("ruby");
                command.arg("ruby_redis.rb");
                command
            }
            Runner::Php => {
                debian_version("php-cli");
                debian_version("php-redis");
                let mut command = Command::new("php");
                command.arg("phpredis.php");
                command
            }
            Runner::Go {
                program,
                debian,
                source,
            } => Command::new(go_build(self.name, program, debian, source)),
        }
    }
}

/// The installed version of a Debian package; panics, saying to run scripts/test, when it is
/// not installed.
pub fn debian_version(package: &str) -> String {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status} ${Version}", package])
        .output()
        .expect("dpkg-query runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let version = text.strip_prefix("installed ").map(str::to_owned);
    version.unwrap_or_else(|| {
        panic!("Debian's {package} is not installed: run scripts/test, which installs it")
    })
}

/// Builds `tests/clients/<program>` with Debian's Go in GOPATH mode (no module proxy, no
/// network: the library's source is Debian's, under /usr/share/gocode) into
/// `target/client-libs/go`, beside its build cache, and returns the binary.
fn go_build(name: &str, program: &str, debian: &str, source: &str) -> PathBuf {
    debian_version("golang-go");
    debian_version(debian);
    let gopath = Path::new("/usr/share/gocode");
    assert!(
        gopath.join("src").join(source).is_dir(),
        "{name}: {} missing: run scripts/test, which installs {debian}",
        gopath.join("src").join(source).display()
    );
    let libs = client_libs();
    assert!(
        libs.is_dir(),
        "{name}: {} missing: run scripts/test, which makes it",
        libs.display()
    );
    let go = libs.join("go");
    let binary = go.join(program);
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(format!("./{program}"))
        .current_dir(clients_dir())
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOENV", "off") // no per-user go.env: the build reads only what is set here
        .env("GOCACHE", go.join("cache"))
        .output()
        .expect("go runs");
    assert!(
        output.status.success(),
        "{name}: go build ./{program} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}
