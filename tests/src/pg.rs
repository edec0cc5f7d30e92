//! PostgreSQL for the tests: [`TestDb`], a fresh database per test on the suite's throwaway
//! cluster (`DATABASE_URL`, set by `scripts/test`), dropped when the test ends.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// A database of its own for one test.
pub struct TestDb {
    admin_url: String,
    name: String,
    /// Its URL, for cartd's `[postgres] url`.
    pub url: String,
    /// A pool on it, for the test's own queries.
    pub pool: PgPool,
}

/// The suite's PostgreSQL; a PostgreSQL test cannot run without one, and must not pass
/// without running.
fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the suite with scripts/test, which starts PostgreSQL")
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database URL ends in /name");
    format!("{base}/{name}")
}

impl TestDb {
    /// Creates `cartd_test_<random>`.
    pub async fn create() -> TestDb {
        let admin_url = admin_url();
        let name = format!("cartd_test_{:016x}", rand_u64());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = with_database(&admin_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("connect to the test database");
        TestDb {
            admin_url,
            name,
            url,
            pool,
        }
    }

    /// One `i64` from a query.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside a runtime: use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&sql).execute(&mut admin).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A PostgreSQL cluster of one test's own, which the test may stop and start again on the
/// same port (PostgreSQL "going down"). Removed when dropped.
pub struct PgCluster {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

/// The newest installed PostgreSQL's programs (`scripts/test` installs them when missing).
pub(crate) fn pg_bin_dir() -> std::path::PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql (scripts/test installs it)")
        .map(|entry| entry.expect("entry").path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|dir| {
        let version = dir
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_owned());
        version.and_then(|v| v.to_string_lossy().parse::<u32>().ok())
    });
    dirs.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// Runs a PostgreSQL program as `postgres` (they refuse root), from `/`.
pub(crate) fn as_postgres(program: &std::path::Path, args: &[&str]) -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0"));
    let mut command = if root {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        std::process::Command::new(program)
    };
    command
        .args(args)
        .current_dir("/")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl PgCluster {
    /// initdb and start on a free port.
    pub fn start() -> PgCluster {
        PgCluster::start_with(None)
    }

    /// initdb and start accepting TLS connections only (`hostssl` trust, `hostnossl`
    /// reject), serving the certificate `cert` with `key`.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> PgCluster {
        PgCluster::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&std::path::Path, &std::path::Path)>) -> PgCluster {
        let bin = pg_bin_dir();
        let dir = tempfile::tempdir().expect("a temp dir");
        let chown = std::process::Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir.path())
            .status();
        assert!(chown.is_ok_and(|s| s.success()), "chown to postgres");
        let data = dir.path().join("data");
        let data = data.to_str().expect("utf-8 path");
        let initdb = ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"];
        assert!(as_postgres(&bin.join("initdb"), &initdb), "initdb failed");
        if let Some((cert, key)) = tls {
            let data = std::path::Path::new(data);
            std::fs::copy(cert, data.join("server.crt")).expect("copy the certificate");
            std::fs::copy(key, data.join("server.key")).expect("copy the key");
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
            .expect("write pg_hba.conf");
            std::fs::write(
                data.join("postgresql.auto.conf"),
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            )
            .expect("turn ssl on");
            for file in [
                "server.crt",
                "server.key",
                "pg_hba.conf",
                "postgresql.auto.conf",
            ] {
                let status = std::process::Command::new("chown")
                    .args(["postgres:"])
                    .arg(data.join(file))
                    .status();
                assert!(status.is_ok_and(|s| s.success()), "chown {file}");
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("chmod the key");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let cluster = PgCluster { bin, dir, port };
        cluster.up();
        cluster
    }

    /// Its URL (database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts it (again) on its port.
    pub fn up(&self) {
        let data = self.dir.path().join("data");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        let args = [
            "-D",
            data.to_str().expect("utf-8"),
            "-l",
            log.to_str().expect("utf-8"),
        ];
        let args = [&args[..], &["-w", "-t", "60", "-o", &options, "start"]].concat();
        assert!(
            as_postgres(&self.bin.join("pg_ctl"), &args),
            "pg_ctl start failed"
        );
    }

    /// Stops it (fast: open connections are cut).
    pub fn down(&self) {
        let data = self.dir.path().join("data");
        let args = [
            "-D",
            data.to_str().expect("utf-8"),
            "-m",
            "fast",
            "-w",
            "stop",
        ];
        assert!(
            as_postgres(&self.bin.join("pg_ctl"), &args),
            "pg_ctl stop failed"
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let data = data.to_str().unwrap_or_default().to_string();
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "immediate", "stop"],
        );
    }
}
