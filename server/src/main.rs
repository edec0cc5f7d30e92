//! `cartd`: a sharded, in-memory shopping-cart server that speaks RESP.
//!
//! Start-up: command-line flags over `--config` (or the built-in defaults, which equal the
//! repository's `config.toml`), logging, the tokio runtime, then [`server::run`].

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cartd_server::config::Config;
use cartd_server::server;

/// jemalloc, with its background threads giving freed pages back to the system after a few
/// seconds: glibc's malloc kept what 100,000 freed ids and their carts had taken resident (10
/// MB of 10), so memory did not follow live data.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// cartd: a shopping-cart server for any Redis client.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// Configuration file (TOML); without it the built-in defaults apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides server.bind).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Port to listen on, 0 for any free port (overrides server.port).
    #[arg(long)]
    port: Option<u16>,
    /// Data directory (overrides server.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Password of the `default` user (overrides server.requirepass).
    #[arg(long)]
    requirepass: Option<String>,
    /// Most client connections at once (overrides server.maxclients).
    #[arg(long)]
    maxclients: Option<usize>,
    /// ACL file that ACL SAVE writes and ACL LOAD reads (overrides acl.aclfile).
    #[arg(long)]
    aclfile: Option<PathBuf>,
    /// Idle seconds before a client is closed, 0 never (overrides server.timeout).
    #[arg(long)]
    timeout: Option<u64>,
    /// Resident memory past which writes get -OOM, e.g. 2gb (overrides server.maxmemory).
    #[arg(long)]
    maxmemory: Option<String>,
    /// noeviction (overrides server.maxmemory_policy).
    #[arg(long)]
    maxmemory_policy: Option<String>,
    /// What all clients may hold, e.g. 256mb (overrides server.maxmemory_clients).
    #[arg(long)]
    maxmemory_clients: Option<String>,
    /// `yes` or `no` (overrides server.protected_mode).
    #[arg(long)]
    protected_mode: Option<String>,
    /// TLS port, 0 none (overrides server.tls_port).
    #[arg(long)]
    tls_port: Option<u16>,
    /// Server certificate chain, PEM (overrides server.tls_cert_file).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// Server private key, PEM (overrides server.tls_key_file).
    #[arg(long)]
    tls_key_file: Option<PathBuf>,
    /// CA of client certificates, PEM (overrides server.tls_ca_cert_file).
    #[arg(long)]
    tls_ca_cert_file: Option<PathBuf>,
    /// yes, optional or no (overrides server.tls_auth_clients).
    #[arg(long)]
    tls_auth_clients: Option<String>,
    /// "TLSv1.2 TLSv1.3" or one of them (overrides server.tls_protocols).
    #[arg(long)]
    tls_protocols: Option<String>,
    /// Listen queue length (overrides server.tcp_backlog).
    #[arg(long)]
    tcp_backlog: Option<u32>,
    /// `normal <hard> <soft> <seconds>`, as one argument or four, as redis-server takes it
    /// (overrides server.client_output_buffer_limit).
    #[arg(long, num_args = 1..=4, value_name = "LIMIT")]
    client_output_buffer_limit: Option<Vec<String>>,
    /// Start even if the log is corrupt in the middle: cut it at the first bad record, losing
    /// the records after it (the start-up error names the file and offset).
    #[arg(long)]
    repair: bool,
}

/// The flags named as redis-server's options, over the configuration; checked like it.
fn apply_server_flags(flags: &Flags, config: &mut Config) -> Result<(), String> {
    if let Some(aclfile) = &flags.aclfile {
        config.acl.aclfile.clone_from(aclfile);
    }
    let server = &mut config.server;
    if let Some(requirepass) = &flags.requirepass {
        server.requirepass.clone_from(requirepass);
    }
    if let Some(maxclients) = flags.maxclients {
        server.maxclients = maxclients;
    }
    if let Some(timeout) = flags.timeout {
        server.timeout = timeout;
    }
    if let Some(size) = &flags.maxmemory {
        server.maxmemory = cartd_server::config::parse_memory(size)?;
    }
    if let Some(policy) = &flags.maxmemory_policy {
        server.maxmemory_policy.clone_from(policy);
    }
    if let Some(size) = &flags.maxmemory_clients {
        server.maxmemory_clients = cartd_server::config::parse_memory(size)?;
    }
    if let Some(mode) = &flags.protected_mode {
        server.protected_mode = match mode.to_ascii_lowercase().as_str() {
            "yes" | "true" => true,
            "no" | "false" => false,
            _ => return Err(format!("--protected-mode takes yes or no, got {mode}")),
        };
    }
    if let Some(port) = flags.tls_port {
        server.tls_port = port;
    }
    for (flag, field) in [
        (&flags.tls_cert_file, &mut server.tls_cert_file),
        (&flags.tls_key_file, &mut server.tls_key_file),
        (&flags.tls_ca_cert_file, &mut server.tls_ca_cert_file),
    ] {
        if let Some(path) = flag {
            field.clone_from(path);
        }
    }
    if let Some(auth) = &flags.tls_auth_clients {
        server.tls_auth_clients.clone_from(auth);
    }
    if let Some(protocols) = &flags.tls_protocols {
        server.tls_protocols.clone_from(protocols);
    }
    if let Some(tcp_backlog) = flags.tcp_backlog {
        server.tcp_backlog = tcp_backlog;
    }
    if let Some(words) = &flags.client_output_buffer_limit {
        server.client_output_buffer_limit =
            cartd_server::config::OutputBufferLimit::parse(&words.join(" "))?;
    }
    config.check().map_err(|error| error.to_string())?;
    config.check_exposure().map_err(|error| error.to_string())
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let mut config = match &flags.config {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("cartd: {error}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Some(bind) = flags.bind {
        config.server.bind = bind;
    }
    if let Some(port) = flags.port {
        config.server.port = port;
    }
    if let Some(data_dir) = flags.data_dir.clone() {
        config.server.data_dir = data_dir;
    }
    if let Err(error) = apply_server_flags(&flags, &mut config) {
        eprintln!("cartd: {error}");
        return ExitCode::from(2);
    }
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(error) = std::fs::create_dir_all(&config.server.data_dir) {
        tracing::error!(dir = %config.server.data_dir.display(), %error, "cannot create the data directory");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(config, flags.config, flags.repair)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("cartd cannot go on: {error}");
            ExitCode::FAILURE
        }
    }
}
