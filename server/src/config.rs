//! Configuration: `config.toml` at the repository root documents every key with its default;
//! [`Config::default`] is the same configuration (a test keeps the two equal). Unknown keys are
//! refused, so a typo never silently falls back to a default.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listener, connections, framing.
    pub server: ServerConfig,
    /// Cart rules and lifetimes.
    pub carts: CartsConfig,
    /// Write-ahead log and snapshots.
    pub persistence: PersistenceConfig,
    /// The PostgreSQL stream.
    pub postgres: PostgresConfig,
    /// The HTTP catalog and inventory services.
    pub upstream: UpstreamConfig,
    /// Users beside `default`.
    pub acl: AclConfig,
    /// Logging.
    pub log: LogConfig,
    /// Redis-Cluster mode: this node's id and the node layout (off by default).
    pub cluster: cluster::ClusterConfig,
    /// Test-only switches (off by default).
    pub debug: DebugConfig,
}

/// `[debug]`: switches for tests, off by default.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// A fault point (`crate::fault`): `node_id:point` makes that cluster node abort at the
    /// named step of a handoff; empty: none.
    pub fault: String,
}

/// `[acl]`: users in ACL file syntax (`user storefront on >pw ~cart:* +@cart`), and Redis's
/// `aclfile`, which ACL SAVE writes and ACL LOAD reads (its users override these).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AclConfig {
    /// Lines of an ACL file.
    pub users: Vec<String>,
    /// The ACL file; empty: none.
    pub aclfile: PathBuf,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: IpAddr,
    /// TCP port (0: chosen by the OS).
    pub port: u16,
    /// Where the node keeps its local files.
    pub data_dir: PathBuf,
    /// Most connections at once; one more is refused with an error.
    pub maxclients: usize,
    /// Password of the `default` user; empty: no authentication.
    pub requirepass: String,
    /// Store shards (power of two).
    pub shards: usize,
    /// Longest bulk string in a request.
    pub max_bulk_bytes: usize,
    /// Most arguments in one request, command name included.
    pub max_args_per_command: usize,
    /// Seconds a client may stay idle (nothing read, nothing written) before it is closed;
    /// 0: never (Redis's `timeout`).
    pub timeout: u64,
    /// The listen queue's length (Redis's `tcp-backlog`; the kernel caps it at somaxconn).
    #[serde(alias = "tcp-backlog")]
    pub tcp_backlog: u32,
    /// Redis's `client-output-buffer-limit` for normal clients: `normal <hard> <soft>
    /// <soft seconds>`, sizes with Redis's units (`32mb`, `1gb`, a bare number of bytes).
    #[serde(alias = "client-output-buffer-limit")]
    pub client_output_buffer_limit: OutputBufferLimit,
    /// The same for clients that listen (SUBSCRIBE, PSUBSCRIBE, MONITOR, CLIENT TRACKING's
    /// invalidations): Redis's `pubsub` class, `pubsub 32mb 8mb 60` by default. What waits in
    /// a listener's mailbox counts against it.
    #[serde(alias = "client-output-buffer-limit-pubsub")]
    pub client_output_buffer_limit_pubsub: OutputBufferLimit,
    /// Most keys the client-side caching table remembers (Redis's `tracking-table-max-keys`,
    /// 1,000,000); past it, keys are invalidated and forgotten to make room. 0 takes 1.
    #[serde(alias = "tracking-table-max-keys")]
    pub tracking_table_max_keys: usize,
    /// What all clients together may hold of requests still arriving and replies not yet
    /// sent (Redis's `maxmemory-clients`); past it the clients holding the most are closed.
    /// 0: no bound.
    #[serde(alias = "maxmemory-clients", deserialize_with = "memory_size")]
    pub maxmemory_clients: u64,
    /// Redis's `maxmemory`: past this resident memory, commands that add data get `-OOM`
    /// (reads and deletes go on). 0: no bound.
    #[serde(deserialize_with = "memory_size")]
    pub maxmemory: u64,
    /// Redis's `maxmemory-policy`: only `noeviction` (refuse writes) is supported.
    #[serde(alias = "maxmemory-policy")]
    pub maxmemory_policy: String,
    /// Redis's `slowlog-log-slower-than`: commands that take at least this many microseconds
    /// go to the slow log; 0 logs every command, -1 none.
    #[serde(alias = "slowlog-log-slower-than")]
    pub slowlog_log_slower_than: i64,
    /// Redis's `slowlog-max-len`: entries the slow log keeps, the oldest going first.
    #[serde(alias = "slowlog-max-len")]
    pub slowlog_max_len: usize,
    /// Redis's `latency-monitor-threshold`: events (a command, a log fsync, an expiry pass)
    /// that take at least this many milliseconds are sampled by LATENCY; 0: monitor off.
    #[serde(alias = "latency-monitor-threshold")]
    pub latency_monitor_threshold: u64,
    /// Redis's `protected-mode`: refuse to start on an address other clients can reach
    /// while no password and no ACL user protects it.
    #[serde(alias = "protected-mode")]
    pub protected_mode: bool,
    /// TLS port (Redis's `tls-port`); 0: none. With it set, `port = 0` means no plain
    /// listener, as in Redis.
    #[serde(alias = "tls-port")]
    pub tls_port: u16,
    /// The server's certificate chain, PEM.
    #[serde(alias = "tls-cert-file")]
    pub tls_cert_file: PathBuf,
    /// The server's private key, PEM.
    #[serde(alias = "tls-key-file")]
    pub tls_key_file: PathBuf,
    /// The CA that signs client certificates, PEM.
    #[serde(alias = "tls-ca-cert-file")]
    pub tls_ca_cert_file: PathBuf,
    /// `yes` (client certificates required, Redis's default), `optional` or `no`.
    #[serde(alias = "tls-auth-clients")]
    pub tls_auth_clients: String,
    /// `TLSv1.2`, `TLSv1.3` or both.
    #[serde(alias = "tls-protocols")]
    pub tls_protocols: String,
}

/// A size given as a number of bytes or as text with Redis's units (`"256mb"`).
fn memory_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(bytes) => Ok(bytes),
        Size::Text(text) => parse_memory(&text).map_err(serde::de::Error::custom),
    }
}

/// When a client's unsent replies get it closed: over `hard_bytes` at once, or over
/// `soft_bytes` for `soft_s` seconds in a row; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputBufferLimit {
    /// Closed as soon as this much is waiting to be sent.
    pub hard_bytes: u64,
    /// Closed when at least this much has waited `soft_s` seconds in a row.
    pub soft_bytes: u64,
    /// See `soft_bytes`.
    pub soft_s: u64,
}

impl OutputBufferLimit {
    /// Parses Redis's form, `normal 32mb 128kb 10` (the class, `normal` or `pubsub`, may be
    /// left out: the setting it is given for says which class it is).
    pub fn parse(text: &str) -> Result<OutputBufferLimit, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let words = match words.split_first() {
            Some((class, rest))
                if class.eq_ignore_ascii_case("normal") || class.eq_ignore_ascii_case("pubsub") =>
            {
                rest
            }
            Some((class, _)) if parse_memory(class).is_err() => {
                return Err(format!(
                    "client-output-buffer-limit: the normal and pubsub classes are supported, got {class}"
                ));
            }
            _ => &words[..],
        };
        let [hard, soft, soft_s] = words else {
            return Err(format!(
                "client-output-buffer-limit must be `normal <hard> <soft> <seconds>`, got {text:?}"
            ));
        };
        Ok(OutputBufferLimit {
            hard_bytes: parse_memory(hard)?,
            soft_bytes: parse_memory(soft)?,
            soft_s: soft_s
                .parse()
                .map_err(|_| format!("client-output-buffer-limit: bad seconds {soft_s:?}"))?,
        })
    }
}

impl<'de> Deserialize<'de> for OutputBufferLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        OutputBufferLimit::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A size in Redis's memory units: a number of bytes, or with `k`/`m`/`g` (powers of 1000)
/// or `kb`/`mb`/`gb` (powers of 1024), in any case.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => lower.split_at(at),
        None => (lower.as_str(), ""),
    };
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err(format!("bad memory size {text:?} (use e.g. 512mb or 1gb)")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(multiplier))
        .ok_or_else(|| format!("bad memory size {text:?} (use e.g. 512mb or 1gb)"))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 7379,
            data_dir: PathBuf::from("data"),
            maxclients: 10_000,
            requirepass: String::new(),
            shards: 64,
            max_bulk_bytes: 512 * 1024,
            max_args_per_command: 4096,
            timeout: 0,
            tcp_backlog: 511,
            client_output_buffer_limit: OutputBufferLimit {
                hard_bytes: 32 * 1024 * 1024,
                soft_bytes: 128 * 1024,
                soft_s: 10,
            },
            client_output_buffer_limit_pubsub: OutputBufferLimit {
                hard_bytes: 32 * 1024 * 1024,
                soft_bytes: 8 * 1024 * 1024,
                soft_s: 60,
            },
            tracking_table_max_keys: 1_000_000,
            maxmemory_clients: 256 * 1024 * 1024,
            maxmemory: 0,
            maxmemory_policy: "noeviction".into(),
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            latency_monitor_threshold: 0,
            protected_mode: true,
            tls_port: 0,
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            tls_ca_cert_file: PathBuf::new(),
            tls_auth_clients: "yes".into(),
            tls_protocols: "TLSv1.2 TLSv1.3".into(),
        }
    }
}

/// `[carts]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CartsConfig {
    /// Keys with this prefix are guest carts.
    pub guest_prefix: String,
    /// Lifetime of a guest cart since its last access.
    pub guest_ttl_s: u64,
    /// Lifetime of a user cart since its last access.
    pub user_ttl_s: u64,
    /// Most active lines in one cart.
    pub max_lines_per_cart: usize,
    /// Most saved-for-later lines in one cart.
    pub max_saved_per_cart: usize,
    /// Highest quantity of one line.
    pub max_qty_per_line: u32,
    /// How long a cart's price and stock validation stays valid.
    pub validation_cache_s: u64,
    /// How long an idempotency token is remembered.
    pub idempotency_ttl_s: u64,
    /// Most idempotency tokens remembered server-wide (each shard its share); at it a request
    /// with a new token is refused with `OOM`, no other cart's token is pushed out.
    pub max_idempotency_keys: usize,
    /// Most idempotency tokens remembered for one cart; past it that cart's oldest go first.
    pub max_idempotency_keys_per_cart: usize,
    /// Most distinct product and variant ids held at once (by carts and catalog entries).
    pub max_interned_ids: usize,
    /// Seconds between sweeps that free ids nothing holds any more (at least this long).
    pub interned_ids_sweep_s: u64,
    /// Most carts the node holds; creating one more fails with `OOM` (about 140 bytes each).
    pub max_carts: usize,
    /// How long CART.CHECKOUT freezes a cart when the command names no HOLD.
    pub checkout_hold_s: u64,
}

impl Default for CartsConfig {
    fn default() -> Self {
        CartsConfig {
            guest_prefix: "cart:guest:".into(),
            guest_ttl_s: 24 * 3600,
            user_ttl_s: 30 * 24 * 3600,
            max_lines_per_cart: 200,
            max_saved_per_cart: 200,
            max_qty_per_line: 999,
            validation_cache_s: 60,
            idempotency_ttl_s: 24 * 3600,
            max_idempotency_keys: 10_000_000,
            max_idempotency_keys_per_cart: 1_000,
            max_interned_ids: crate::limits::NAMES_MAX,
            interned_ids_sweep_s: 60,
            max_carts: 30_000_000,
            checkout_hold_s: 900,
        }
    }
}

/// `[persistence]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceConfig {
    /// `always`, `everysec` or `no`, as Redis's `appendfsync`.
    pub appendfsync: String,
    /// A log segment is closed and a new one started past this size.
    pub wal_segment_mb: u64,
    /// A background snapshot starts after this many logged changes (0: never by count).
    pub snapshot_every_changes: u64,
    /// ... or this many seconds after the last one when anything changed (0: never by time).
    pub snapshot_every_s: u64,
    /// Log kept on disk past this size (the sink behind) raises a warning in the log and INFO.
    pub wal_retained_warn_mb: u64,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            appendfsync: "everysec".into(),
            wal_segment_mb: 64,
            snapshot_every_changes: 1_000_000,
            snapshot_every_s: 300,
            wal_retained_warn_mb: 10_240,
        }
    }
}

impl PersistenceConfig {
    /// The fsync policy.
    pub fn fsync(&self) -> Result<persistence::wal::FsyncPolicy, ConfigError> {
        self.appendfsync.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "persistence.appendfsync must be always, everysec or no, got {:?}",
                self.appendfsync
            ))
        })
    }
}

/// `[postgres]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL; empty: `DATABASE_URL` if set, else no PostgreSQL.
    pub url: String,
    /// This node's name in `cart_events` and the sink checkpoint.
    pub node: String,
    /// How long the sink gathers changes before one transaction (ms).
    pub coalesce_ms: u64,
    /// Load an unknown user cart from PostgreSQL on first access.
    pub restore_on_miss: bool,
    /// The cleanup deletes carts idle this many days ...
    pub cleanup_idle_days: u32,
    /// ... and events older than this many days ...
    pub cleanup_events_days: u32,
    /// ... every this many seconds.
    pub cleanup_every_s: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: String::new(),
            node: "cartd-1".into(),
            coalesce_ms: 50,
            restore_on_miss: false,
            cleanup_idle_days: 90,
            cleanup_events_days: 90,
            cleanup_every_s: 86_400,
        }
    }
}

impl PostgresConfig {
    /// The URL in force: the configured one, else `DATABASE_URL`, else none.
    pub fn effective_url(&self) -> Option<String> {
        if !self.url.is_empty() {
            return Some(self.url.clone());
        }
        std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
    }
}

/// `[upstream]`: the HTTP catalog and inventory services a cart view refreshes its lines from
/// (contract in docs/UPSTREAM.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// The catalog service's batch endpoint (`http://...`); empty: no catalog service.
    pub catalog_url: String,
    /// The inventory service's batch endpoint (`http://...`); empty: no inventory service.
    pub inventory_url: String,
    /// Longest wait for one batch request, connecting included (ms).
    pub timeout_ms: u64,
    /// A price older than this is fetched again before a view (s).
    pub price_ttl_s: u64,
    /// A stock level older than this is fetched again before a view (s).
    pub stock_ttl_s: u64,
    /// Consecutive failures of a service that open its circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses requests before it lets one trial through (ms).
    pub breaker_cooldown_ms: u64,
    /// Most items in one request; a view that needs more sends several.
    pub batch_max: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            catalog_url: String::new(),
            inventory_url: String::new(),
            timeout_ms: 30,
            price_ttl_s: 60,
            stock_ttl_s: 5,
            breaker_failures: 5,
            breaker_cooldown_ms: 5_000,
            batch_max: 500,
        }
    }
}

impl UpstreamConfig {
    /// Whether either service is configured.
    pub fn enabled(&self) -> bool {
        !self.catalog_url.is_empty() || !self.inventory_url.is_empty()
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, such as `info` or `cartd=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid configuration in {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// A value is out of its range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Protected mode (Redis's `protected-mode`): checked once the flags are applied, since
    /// `--requirepass` may protect an exposed `bind` from the file.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let server = &self.server;
        let unprotected = server.requirepass.is_empty()
            && self.acl.users.is_empty()
            && self.acl.aclfile.as_os_str().is_empty();
        if server.protected_mode && unprotected && !server.bind.is_loopback() {
            return invalid(format!(
                "protected mode: server.bind is {}, which other hosts can reach, and no password \
                 or ACL user protects cartd. Set server.requirepass (or --requirepass), define \
                 users in [acl], bind a loopback address, or set server.protected_mode = false \
                 (--protected-mode no) if a firewall protects it",
                server.bind
            ));
        }
        Ok(())
    }

    /// Checks every value's range.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let server = &self.server;
        if !server.shards.is_power_of_two() || server.shards > crate::limits::SHARDS_MAX {
            return invalid(format!(
                "server.shards must be a power of two up to {}, got {}",
                crate::limits::SHARDS_MAX,
                server.shards
            ));
        }
        if server.maxclients == 0 {
            return invalid("server.maxclients must be at least 1".into());
        }
        if !(1024..=crate::limits::BULK_BYTES_MAX_LIMIT).contains(&server.max_bulk_bytes) {
            return invalid(format!(
                "server.max_bulk_bytes must be 1024..={}, got {}",
                crate::limits::BULK_BYTES_MAX_LIMIT,
                server.max_bulk_bytes
            ));
        }
        if let Err(error) = crate::acl::parse_users(&self.acl.users.join("\n"), "acl.users") {
            return invalid(error);
        }
        if let Err(error) = crate::fault::parse(&self.debug.fault) {
            return invalid(error);
        }
        if self.cluster.enabled {
            if let Err(error) = cluster::Layout::new(&self.cluster) {
                return invalid(error.to_string());
            }
        }
        if !server.maxmemory_policy.eq_ignore_ascii_case("noeviction") {
            return invalid(format!(
                "server.maxmemory_policy {:?} is not supported: cartd has noeviction only (writes \
                 get -OOM past maxmemory; carts are never dropped to make room)",
                server.maxmemory_policy
            ));
        }
        if server.tcp_backlog == 0 {
            return invalid("server.tcp_backlog must be at least 1".into());
        }
        if !(8..=1_000_000).contains(&server.max_args_per_command) {
            return invalid("server.max_args_per_command must be 8..=1000000".into());
        }
        if server.slowlog_log_slower_than < -1 {
            return invalid("server.slowlog_log_slower_than must be -1 (off) or more".into());
        }
        if server.slowlog_max_len > crate::limits::SLOWLOG_LEN_LIMIT {
            return invalid(format!(
                "server.slowlog_max_len must be at most {}",
                crate::limits::SLOWLOG_LEN_LIMIT
            ));
        }
        self.check_carts()?;
        self.check_persistence()
    }

    fn check_carts(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let carts = &self.carts;
        if carts.guest_prefix.is_empty() || carts.guest_prefix.len() > protocol::KEY_BYTES_MAX {
            return invalid("carts.guest_prefix must be 1..=256 bytes".into());
        }
        if carts.guest_ttl_s == 0 || carts.user_ttl_s == 0 {
            return invalid("carts.guest_ttl_s and carts.user_ttl_s must be at least 1".into());
        }
        let ttl_s_max = crate::limits::TTL_S_MAX;
        if carts.guest_ttl_s > ttl_s_max || carts.user_ttl_s > ttl_s_max {
            return invalid(format!(
                "cart TTLs must be at most {ttl_s_max} s (10 years)"
            ));
        }
        if !(1..=10_000).contains(&carts.max_lines_per_cart)
            || !(0..=10_000).contains(&carts.max_saved_per_cart)
        {
            return invalid(
                "carts.max_lines_per_cart must be 1..=10000 and max_saved_per_cart 0..=10000"
                    .into(),
            );
        }
        if !(1..=1_000_000).contains(&carts.max_qty_per_line) {
            return invalid("carts.max_qty_per_line must be 1..=1000000".into());
        }
        if !(1..=86_400).contains(&carts.checkout_hold_s) {
            return invalid("carts.checkout_hold_s must be 1..=86400".into());
        }
        if carts.max_carts == 0 {
            return invalid("carts.max_carts must be at least 1".into());
        }
        if carts.max_idempotency_keys > 100_000_000 {
            return invalid("carts.max_idempotency_keys must be at most 100000000".into());
        }
        if !(1..=1_000_000).contains(&carts.max_idempotency_keys_per_cart) {
            return invalid("carts.max_idempotency_keys_per_cart must be 1..=1000000".into());
        }
        if !(1..=crate::limits::NAMES_MAX_LIMIT).contains(&carts.max_interned_ids) {
            return invalid(format!(
                "carts.max_interned_ids must be 1..={}",
                crate::limits::NAMES_MAX_LIMIT
            ));
        }
        if !(1..=3600).contains(&carts.interned_ids_sweep_s) {
            return invalid("carts.interned_ids_sweep_s must be 1..=3600".into());
        }
        Ok(())
    }

    fn check_persistence(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.into()));
        let persistence = &self.persistence;
        persistence.fsync()?;
        if !(1..=4096).contains(&persistence.wal_segment_mb) {
            return invalid("persistence.wal_segment_mb must be 1..=4096");
        }
        let postgres = &self.postgres;
        if postgres.node.is_empty() || postgres.node.len() > 64 {
            return invalid("postgres.node must be 1..=64 bytes");
        }
        if postgres.coalesce_ms > 60_000 {
            return invalid("postgres.coalesce_ms must be at most 60000");
        }
        if postgres.cleanup_idle_days == 0 || postgres.cleanup_events_days == 0 {
            return invalid(
                "postgres.cleanup_idle_days and cleanup_events_days must be at least 1",
            );
        }
        if postgres.cleanup_every_s == 0 {
            return invalid("postgres.cleanup_every_s must be at least 1");
        }
        self.check_upstream()
    }

    fn check_upstream(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let upstream = &self.upstream;
        for (name, url) in [
            ("catalog_url", &upstream.catalog_url),
            ("inventory_url", &upstream.inventory_url),
        ] {
            if !url.is_empty() {
                if let Err(error) = crate::upstream::parse_url(url) {
                    return invalid(format!("upstream.{name}: {error}"));
                }
            }
        }
        if !(1..=60_000).contains(&upstream.timeout_ms) {
            return invalid("upstream.timeout_ms must be 1..=60000".into());
        }
        let ttl_s_max = crate::limits::TTL_S_MAX;
        if upstream.price_ttl_s > ttl_s_max || upstream.stock_ttl_s > ttl_s_max {
            return invalid(format!(
                "upstream.price_ttl_s and stock_ttl_s must be at most {ttl_s_max}"
            ));
        }
        if upstream.breaker_failures == 0 {
            return invalid("upstream.breaker_failures must be at least 1".into());
        }
        if upstream.breaker_cooldown_ms > 3_600_000 {
            return invalid("upstream.breaker_cooldown_ms must be at most 3600000".into());
        }
        let batch_max = crate::limits::UPSTREAM_BATCH_ITEMS_MAX;
        if !(1..=batch_max).contains(&upstream.batch_max) {
            return invalid(format!("upstream.batch_max must be 1..={batch_max}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_toml_is_the_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.toml");
        let loaded = Config::load(&path).expect("config.toml loads");
        assert_eq!(loaded, Config::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("[server]\nprot = 1\n").is_err());
        let config: Config = toml::from_str("[server]\nshards = 3\n").unwrap();
        assert!(config.check().is_err());
        let config: Config = toml::from_str("[carts]\nmax_qty_per_line = 0\n").unwrap();
        assert!(config.check().is_err());
        assert!(toml::from_str::<Config>("[upstream]\ncatalog = \"\"\n").is_err());
        for url in [
            "https://catalog.internal/batch",
            "catalog.internal",
            "http://",
        ] {
            let config: Config =
                toml::from_str(&format!("[upstream]\ncatalog_url = \"{url}\"\n")).unwrap();
            assert!(config.check().is_err(), "{url} is refused");
        }
        let config: Config =
            toml::from_str("[upstream]\ninventory_url = \"http://127.0.0.1:9/stock\"\n").unwrap();
        assert!(config.check().is_ok());
        for fault in ["handoff-after-take", "n2:no-such-point"] {
            let config: Config =
                toml::from_str(&format!("[debug]\nfault = \"{fault}\"\n")).unwrap();
            assert!(config.check().is_err(), "{fault} is refused");
        }
        let config: Config = toml::from_str("[debug]\nfault = \"n2:done-after-log\"\n").unwrap();
        assert!(config.check().is_ok());
    }
}
