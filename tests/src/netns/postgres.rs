//! [`NetnsPostgres`]: a PostgreSQL server of one test's own inside a host of a [`Network`],
//! listening on that host's address only, so a partition of the network cuts nodes off it
//! while the test process (in the root namespace) still reads it. initdb runs as `postgres`
//! (it refuses root) in a temp dir; `pg_hba.conf` trusts the test network's /24.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::Network;
use crate::pg::{as_postgres, pg_bin_dir};

/// The port PostgreSQL listens on, in its host.
pub const POSTGRES_PORT: u16 = 5432;

/// The longest the test's pool waits for a connection.
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL server in a host namespace; stopped (`-m immediate`) when dropped.
pub struct NetnsPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its URL (database `postgres`, user `postgres`, trusted).
    pub url: String,
    /// A pool on it from the test process.
    pub pool: PgPool,
}

impl NetnsPostgres {
    /// initdb, then start the server inside host `host` of `network`, and connect a pool.
    pub async fn start(network: &Network, host: usize) -> NetnsPostgres {
        let ip = network.host(host).ip;
        let bin = pg_bin_dir();
        let dir = tokio::task::block_in_place(|| init(&bin, &network.cidr()));
        let addr = SocketAddr::from((ip, POSTGRES_PORT));
        let url = url_at(addr);
        tokio::task::block_in_place(|| start_in(network, host, &bin, &dir, ip));
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
            .connect(&url)
            .await;
        let pool = match pool {
            Ok(pool) => pool,
            Err(error) => panic!(
                "connect to PostgreSQL at {url} from the root namespace: {error}; its log:\n{}",
                std::fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default()
            ),
        };
        NetnsPostgres {
            bin,
            dir,
            addr,
            url,
            pool,
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Its directory (`data/`, `postgres.log`, the socket).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Keeps its directory after the test (to read the log of a failed run).
    pub fn keep_dir(&mut self) {
        self.dir.disable_cleanup(true);
    }
}

/// The URL of the server's database `postgres` (user `postgres`, trusted) at `addr`: its
/// own address, or a relay's to it.
pub fn url_at(addr: SocketAddr) -> String {
    format!("postgres://postgres@{addr}/postgres")
}

/// A temp dir owned by `postgres` with a new cluster in `data/` trusting `cidr`.
fn init(bin: &std::path::Path, cidr: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    chown_to_postgres(dir.path(), true);
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("a UTF-8 path");
    let initdb = [
        "-D",
        data_arg,
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
    ];
    assert!(as_postgres(&bin.join("initdb"), &initdb), "initdb failed");
    let hba = data.join("pg_hba.conf");
    std::fs::write(
        &hba,
        format!("local all all trust\nhost all all {cidr} trust\n"),
    )
    .expect("write pg_hba.conf");
    chown_to_postgres(&hba, false);
    dir
}

/// `pg_ctl start` inside the host, listening on `ip` only, its socket in the temp dir.
fn start_in(
    network: &Network,
    host: usize,
    bin: &std::path::Path,
    dir: &tempfile::TempDir,
    ip: Ipv4Addr,
) {
    let options = format!(
        "-c listen_addresses={ip} -p {POSTGRES_PORT} -k {} -c fsync=off",
        dir.path().display()
    );
    let data = dir.path().join("data");
    let log = dir.path().join("postgres.log");
    let status = network
        .command(host, "runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-o", &options, "start"])
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run pg_ctl in the namespace");
    assert!(
        status.success(),
        "pg_ctl start in {} failed; its log:\n{}",
        network.host(host).namespace,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// `chown [-R] postgres: path`.
fn chown_to_postgres(path: &std::path::Path, recursive: bool) {
    let mut command = std::process::Command::new("chown");
    if recursive {
        command.arg("-R");
    }
    let status = command.arg("postgres:").arg(path).status();
    assert!(
        status.is_ok_and(|status| status.success()),
        "chown {} to postgres",
        path.display()
    );
}

impl Drop for NetnsPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let data = data.to_str().unwrap_or_default().to_owned();
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
    }
}
