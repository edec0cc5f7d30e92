//! The server: shared state, the listener, the expiry ticker, signals and orderly shutdown.
//!
//! Starting: the listener comes up first, so clients get `-LOADING` while the data is
//! recovered ([`crate::durability::start`]); a start that cannot recover stops the process.
//!
//! Stopping: one `CancellationToken` for the server. The listener stops accepting; each
//! connection answers the batch in hand and closes; the expiry ticker returns; the log is
//! written and synced; then `run` returns and the process exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::clients::Clients;
use crate::config::Config;
use crate::conn;
use crate::durability::{self, Durability};
use crate::limits::{FDS_RESERVED, SHUTDOWN_GRACE_MS};
use crate::stats::Stats;
use crate::store::{Store, StoreConfig};
use crate::upstream::Upstream;

/// Everything connections share.
pub struct Server {
    /// The configuration in force.
    pub config: Config,
    /// The file it came from, if any.
    pub config_file: Option<PathBuf>,
    /// The carts and the catalog.
    pub store: Store,
    /// Connected clients.
    pub clients: Clients,
    /// Counters.
    pub stats: Stats,
    /// Cancelled to stop the server.
    pub shutdown: CancellationToken,
    /// Start time.
    pub started: Instant,
    /// Random id of this run (INFO run_id).
    pub run_id: String,
    /// The bound address.
    pub local_addr: SocketAddr,
    /// Resident memory right after start, to report memory per cart.
    pub rss_baseline_bytes: u64,
    /// Recovery is still running: data commands get `-LOADING`.
    pub loading: AtomicBool,
    /// The log, snapshots and PostgreSQL, once recovery is done.
    pub durability: OnceLock<Durability>,
    /// The HTTP catalog and inventory services, when `[upstream]` names any.
    pub upstream: Option<Upstream>,
    /// Users and their permissions.
    pub acl: crate::acl::Acl,
    /// Resident memory is over `maxmemory` (sampled every 100 ms): data-adding commands get
    /// `-OOM`.
    pub over_maxmemory: AtomicBool,
    /// Pub/sub channels, client-side caching and monitors; the store tells it every change.
    pub pubsub: Arc<crate::pubsub::PubSub>,
    /// The cluster layout in force, in cluster mode (`[cluster] enabled`); `None` standalone.
    pub cluster: Option<Arc<cluster::Topology>>,
    /// In cluster mode, the links that share server-wide data with the other primaries.
    pub peers: Option<Arc<crate::peers::Peers>>,
    /// The settings CONFIG SET changes (the rest of `config` never changes).
    pub runtime: crate::runtime::RuntimeConfig,
    /// The slow log (SLOWLOG).
    pub slowlog: crate::slowlog::SlowLog,
    /// The latency monitor (LATENCY).
    pub latency: crate::latency::LatencyMonitor,
    /// CLIENT PAUSE: commands wait while it lasts.
    pub pause: crate::pause::ClientPause,
    /// What the allocator held right after start (MEMORY STATS `startup.allocated`).
    pub startup_allocated_bytes: u64,
    /// The most the allocator has held (INFO `used_memory_peak`).
    pub peak_memory: crate::memory::PeakMemory,
    /// The replicas following this node, or its link to its primary.
    pub replication: crate::replication::Replication,
    /// Links to peer nodes for CART.MERGE across nodes, and its courier's wake-up.
    pub handoff_links: crate::handoff::PeerLinks,
    /// The tasks a shutdown waits for (connections, and the jobs that write).
    pub tasks: TaskTracker,
    /// Leases, fencing and promotion (a cluster with PostgreSQL).
    pub failover: crate::failover::Failover,
    /// Slots being moved here or away (resharding).
    pub slots: Arc<crate::migration::Slots>,
}

impl Server {
    /// A server that is still loading: no log, no PostgreSQL, an empty store. [`run`] starts
    /// recovery on it; the store's micro-benchmarks use it as it is, with `loading` cleared.
    pub fn new(config: Config, config_file: Option<PathBuf>, local_addr: SocketAddr) -> Server {
        let acl = crate::acl::Acl::new(&config.server.requirepass, &config.acl.users, None)
            .expect("the configuration's users were checked");
        Server::with_acl(config, config_file, local_addr, acl)
    }

    /// As [`Server::new`], with the users loaded already (from the ACL file too).
    pub fn with_acl(
        config: Config,
        config_file: Option<PathBuf>,
        local_addr: SocketAddr,
        acl: crate::acl::Acl,
    ) -> Server {
        let over_maxmemory =
            AtomicBool::new(config.server.maxmemory > 0 && rss_bytes() > config.server.maxmemory);
        let store = Store::new(StoreConfig::from(&config), now_ms());
        let pubsub = Arc::new(crate::pubsub::PubSub::new(
            config.server.tracking_table_max_keys,
        ));
        store.set_listener(pubsub.clone());
        // Checked with the rest of the configuration before the server is made.
        let cluster = config
            .cluster
            .enabled
            .then(|| starting_layout(&config).ok())
            .flatten()
            .map(|layout| Arc::new(cluster::Topology::new(layout)));
        let peers =
            crate::peers::Peers::for_cluster(cluster.as_ref(), &store, &config.server.requirepass);
        let slots = Arc::new(crate::migration::Slots::default());
        if let Some(topology) = &cluster {
            let placement = crate::migration::SlotPlacement::new(topology.clone(), slots.clone());
            store.set_placement(Box::new(placement));
        }
        let mut server = Server {
            cluster,
            peers,
            acl,
            over_maxmemory,
            pubsub,
            runtime: crate::runtime::RuntimeConfig::new(&config.server),
            slowlog: crate::slowlog::SlowLog::default(),
            latency: crate::latency::LatencyMonitor::default(),
            pause: crate::pause::ClientPause::default(),
            startup_allocated_bytes: 0,
            peak_memory: crate::memory::PeakMemory::default(),
            replication: crate::replication::Replication::new(String::new()),
            handoff_links: crate::handoff::PeerLinks::default(),
            tasks: TaskTracker::new(),
            failover: crate::failover::Failover::new(config.cluster.lease_ms),
            slots,
            store,
            upstream: Upstream::new(&config.upstream),
            config,
            config_file,
            clients: Clients::default(),
            stats: Stats::default(),
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            run_id: random_run_id(),
            local_addr,
            rss_baseline_bytes: rss_bytes(),
            loading: AtomicBool::new(true),
            durability: OnceLock::new(),
        };
        // After the store's shards are made: what a server holds before any cart.
        server.startup_allocated_bytes = crate::memory::used_bytes();
        server.peak_memory.note(server.startup_allocated_bytes);
        server
    }

    /// Why the log cannot be written right now, if it cannot (writes are then refused).
    pub fn log_failure(&self) -> Option<String> {
        let wal = self.durability.get()?.wal.as_ref();
        if !wal.failing() {
            return None;
        }
        Some(
            wal.failure()
                .unwrap_or_else(|| "the log cannot be written".into()),
        )
    }

    /// The primary this node replicates, when it is a cluster replica.
    pub fn primary(&self) -> Option<cluster::Node> {
        let layout = self.cluster.as_ref()?.load();
        Some(layout.nodes[layout.myself().replica_of?].clone())
    }

    /// The cluster layout in force now, in cluster mode.
    pub fn layout(&self) -> Option<Arc<cluster::Layout>> {
        self.cluster.as_ref().map(|topology| topology.get())
    }

    /// The durable side. Only commands that cannot run while loading may call it.
    pub fn durable(&self) -> &Durability {
        self.durability
            .get()
            .expect("durability is set before loading ends")
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Resident set size of this process, from /proc (0 where unavailable).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The jobs that run once recovery is done: the names sweep, and on a primary the jobs of
/// [`start_primary_jobs`].
fn start_background_jobs(server: &Arc<Server>) {
    server.tasks.spawn(sweep_names(server.clone()));
    if server.primary().is_none() {
        start_primary_jobs(server);
    }
}

/// The jobs only a primary runs, at its start or when a replica is promoted: expiry (a
/// replica expires nothing itself: its primary's tombstones do), and in a cluster the handoff
/// courier and the links to the other shard groups; first, gift cards left here by a slot
/// move are dropped ([`crate::slot_cards::drop_foreign`]).
pub fn start_primary_jobs(server: &Arc<Server>) {
    crate::slot_cards::drop_foreign(server);
    let tracker = &server.tasks;
    tracker.spawn(expire_carts(server.clone()));
    if server.cluster.is_some() {
        tracker.spawn(crate::handoff::courier(server.clone()));
    }
    if let Some(peers) = &server.peers {
        peers.start(server, tracker);
    }
}

/// Raises the open-file limit to the hard limit and, as Redis does, lowers `maxclients` when
/// even that cannot hold every client plus the files cartd keeps open itself.
fn fit_maxclients(config: &mut Config) {
    let wanted = config.server.maxclients as u64 + FDS_RESERVED;
    let limit = match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit");
            return;
        }
    };
    if limit < wanted {
        let fitted = limit.saturating_sub(FDS_RESERVED).max(1) as usize;
        tracing::warn!(
            maxclients = config.server.maxclients,
            open_files_limit = limit,
            "the open-file limit cannot hold maxclients connections; maxclients lowered to \
             {fitted} (raise the hard limit, e.g. LimitNOFILE= or ulimit -Hn, to allow more)"
        );
        config.server.maxclients = fitted;
    }
}

fn random_run_id() -> String {
    let state = ahash::RandomState::new();
    (0..3)
        .map(|part| format!("{:016x}", state.hash_one(part)))
        .collect::<String>()[..40]
        .to_string()
}

/// Binds the listener with a listen queue of `backlog` (as Redis's `tcp-backlog`; the
/// kernel caps it at `net.core.somaxconn`). tokio's `TcpListener::bind` queues 1024.
fn listen(address: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// Logs where cartd listens: the plain address first (tests read the first such line).
fn log_listening(plain: Option<&TcpListener>, tls: Option<&TcpListener>) {
    if let Some(addr) = plain.and_then(|listener| listener.local_addr().ok()) {
        info!("cartd listening on {addr}");
    }
    if let Some(addr) = tls.and_then(|listener| listener.local_addr().ok()) {
        info!("cartd listening on {addr} (TLS)");
    }
}

/// The plain and TLS listeners the configuration asks for, and the address to report.
struct Listeners {
    listener: Option<TcpListener>,
    tls_listener: Option<TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    local_addr: SocketAddr,
}

fn listeners(config: &Config) -> Result<Listeners, String> {
    let tls = crate::tls::acceptor(&config.server)?;
    let bind = config.server.bind;
    let backlog = config.server.tcp_backlog;
    let listen_on = |port: u16| {
        listen(SocketAddr::new(bind, port), backlog)
            .map_err(|error| format!("cannot listen on {bind}:{port}: {error}"))
    };
    // As in Redis, with a TLS port `port 0` means no plain listener.
    let listener = if tls.is_some() && config.server.port == 0 {
        None
    } else {
        Some(listen_on(config.server.port)?)
    };
    let tls_listener = match &tls {
        Some(_) => Some(listen_on(config.server.tls_port)?),
        None => None,
    };
    let local_addr = listener
        .as_ref()
        .or(tls_listener.as_ref())
        .expect("a plain or a TLS listener")
        .local_addr()
        .map_err(|error| error.to_string())?;

    Ok(Listeners {
        listener,
        tls_listener,
        tls,
        local_addr,
    })
}

/// In cluster mode, a node whose `[postgres] node` is left at its default streams under its
/// shard group's name (its primary's cluster id): every shard group keeps its own checkpoint
/// and names its own events, where the shared default would have them fight over one row.
fn name_the_sink_after_the_cluster_node(config: &mut Config) {
    if config.cluster.enabled
        && config.postgres.node == crate::config::PostgresConfig::default().node
    {
        // The shard group's name: its primary's id. A replica streams nothing while it is
        // one; promoted, it goes on from its primary's checkpoint (the same LSN history).
        if let Ok(layout) = starting_layout(config) {
            config.postgres.node = layout.group_name(layout.myself().group).to_owned();
        }
    }
}

/// The layout a cluster node starts with: config.toml's, or, once the cluster's nodes changed
/// at run time (`crate::membership`), what it knew last (`data_dir/cluster-members`).
pub fn starting_layout(config: &Config) -> Result<cluster::Layout, String> {
    let path = config.server.data_dir.join(cluster::members::MEMBERS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => cluster::Members::parse(&text)
            .and_then(|members| {
                members
                    .layout(&config.cluster)
                    .map_err(|error| error.to_string())
            })
            .map_err(|why| format!("{}: {why}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            cluster::Layout::new(&config.cluster).map_err(|error| error.to_string())
        }
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// In cluster mode: the layout this node served before (its data directory's
/// `cluster-layout`) must be the one configured now, or the start is refused with what
/// differs: two nodes must never both serve a slot because one node's config.toml was edited.
/// The first start records it (written whole, then renamed into place).
fn check_cluster_record(config: &Config) -> Result<(), String> {
    if !config.cluster.enabled {
        return Ok(());
    }
    let layout = cluster::Layout::new(&config.cluster).map_err(|error| error.to_string())?;
    let path = config.server.data_dir.join("cluster-layout");
    match std::fs::read_to_string(&path) {
        Ok(recorded) => {
            let differences = cluster::record::differences(&recorded, &layout);
            if differences.is_empty() {
                return Ok(());
            }
            Err(format!(
                "the [cluster] layout differs from what this node served before ({}): {}. \
                 Slots move with the cluster commands, not by editing one node's config; to \
                 start this node over in a new cluster, remove that file",
                path.display(),
                differences.join("; ")
            ))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let temporary = path.with_extension("new");
            let write = || -> std::io::Result<()> {
                std::fs::write(&temporary, cluster::record::record_text(&layout))?;
                std::fs::File::open(&temporary)?.sync_all()?;
                std::fs::rename(&temporary, &path)?;
                std::fs::File::open(&config.server.data_dir)?.sync_all()
            };
            write().map_err(|error| {
                format!(
                    "cannot record the cluster layout in {}: {error}",
                    path.display()
                )
            })
        }
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// In cluster mode, before anything else: config.toml's layout is the one recorded, data a
/// CLUSTER RESET or REPLICATE asked to set aside is, and the layout to start with reads.
fn check_cluster_dir(config: &Config) -> Result<(), String> {
    check_cluster_record(config)?;
    if config.cluster.enabled {
        crate::membership::set_aside_if_asked(&config.server.data_dir).map_err(|error| {
            format!(
                "cannot set this node's data aside as CLUSTER RESET or REPLICATE asked: {error}"
            )
        })?;
        starting_layout(config)?;
    }
    Ok(())
}

/// Binds the listener, recovers the data, and serves until shutdown.
pub async fn run(
    mut config: Config,
    config_file: Option<PathBuf>,
    repair: bool,
) -> Result<(), String> {
    fit_maxclients(&mut config);
    check_cluster_dir(&config)?;
    name_the_sink_after_the_cluster_node(&mut config);
    let Listeners {
        listener,
        tls_listener,
        tls,
        local_addr,
    } = listeners(&config)?;
    let acl = crate::acl::Acl::from_config(&config)?;
    let server = Arc::new(Server::with_acl(config, config_file, local_addr, acl));
    let tracker = server.tasks.clone();
    tracker.spawn(watch_signals(server.shutdown.clone()));
    // Always: CONFIG SET maxmemory may turn the bound on later, and the sampler keeps the
    // allocator's peak and the log's fsync latency too.
    tracker.spawn(sample_memory(server.clone()));
    log_listening(listener.as_ref(), tls_listener.as_ref());
    let mut recovery = tokio::spawn(durability::start(server.clone(), repair));
    let mut recovering = true;
    let mut failure = None;
    loop {
        tokio::select! {
            finished = &mut recovery, if recovering => {
                recovering = false;
                match finished.expect("recovery does not panic") {
                    Ok(()) => start_background_jobs(&server),
                    Err(error) => {
                        failure = Some(error.to_string());
                        server.shutdown.cancel();
                    }
                }
            }
            accepted = accept_on(listener.as_ref()) => match accepted {
                Ok((stream, peer)) => accept(&server, &tracker, stream, peer, None),
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            accepted = accept_on(tls_listener.as_ref()) => match accepted {
                Ok((stream, peer)) => accept(&server, &tracker, stream, peer, tls.clone()),
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = server.shutdown.cancelled() => break,
        }
    }
    drop(listener);
    drop(tls_listener);
    drain_connections(&server, &tracker).await;
    if let Some(error) = failure {
        return Err(error);
    }
    if recovering {
        recovery.abort();
    }
    if let Some(durability) = server.durability.get() {
        durability.stop(&server).await;
    }
    info!("cartd stopped");
    Ok(())
}

/// Once the data is loaded: expiry (a primary's: a replica's carts go by its primary's
/// tombstones), the name sweep, the links to the other primaries.
/// Lets every connection answer the batch in hand, for up to [`SHUTDOWN_GRACE_MS`].
async fn drain_connections(server: &Server, tracker: &TaskTracker) {
    info!(
        clients = server.clients.len(),
        "shutting down: finishing open batches"
    );
    tracker.close();
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), tracker.wait())
        .await
        .is_err()
    {
        warn!("connections still open after {SHUTDOWN_GRACE_MS} ms; closing them");
    }
}

/// The next connection on `listener`; never, without one.
async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// How long a TLS client has to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn accept(
    server: &Arc<Server>,
    tracker: &TaskTracker,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    server.stats.connections_received.fetch_add(1, Relaxed);
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(server.local_addr);
    let maxclients = server.runtime.maxclients();
    match server
        .clients
        .register(peer, local, maxclients, &server.shutdown)
    {
        Some(handle) => match tls {
            None => {
                tracker.spawn(conn::serve(
                    conn::ClientStream::Plain(stream),
                    handle,
                    server.clone(),
                ));
            }
            Some(tls) => {
                // The handshake runs in the connection's task, bounded in time; the client is
                // registered (and counted against maxclients) from the start.
                let server = server.clone();
                tracker.spawn(async move {
                    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            let stream = conn::ClientStream::Tls(Box::new(stream));
                            conn::serve(stream, handle, server).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            server.clients.unregister(handle.id);
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            server.clients.unregister(handle.id);
                        }
                    }
                });
            }
        },
        None => {
            server.stats.rejected_connections.fetch_add(1, Relaxed);
            if tls.is_none() {
                tracker.spawn(conn::refuse(stream));
            }
        }
    }
}

/// Every 100 ms (reading /proc is too slow for every command): compares resident memory
/// with `maxmemory`, notes the allocator's peak, and samples the log's slowest fsync for the
/// latency monitor.
async fn sample_memory(server: Arc<Server>) {
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let maxmemory = server.runtime.maxmemory_bytes();
                let over = maxmemory > 0 && rss_bytes() > maxmemory;
                let was = server.over_maxmemory.swap(over, std::sync::atomic::Ordering::Relaxed);
                if over != was {
                    tracing::warn!(over, maxmemory, "resident memory crossed maxmemory");
                }
                server.peak_memory.note(crate::memory::used_bytes());
                if let Some(durability) = server.durability.get() {
                    let fsync_ms = durability.wal.take_slowest_fsync_us() / 1000;
                    server.latency.sample_if_needed(
                        crate::latency::LatencyEvent::WalFsync,
                        fsync_ms,
                        server.runtime.latency_monitor_threshold_ms(),
                    );
                }
            }
            () = server.shutdown.cancelled() => return,
        }
    }
}

/// Expires carts once per tick. The wheel keeps each pass proportional to what is due.
async fn expire_carts(server: Arc<Server>) {
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                // An expiry is a change: while the log cannot take it, carts wait to expire.
                // CLIENT PAUSE holds expiry too, as in Redis: the data stays as it is; so does
                // a primary past its lease or handing it over (an expiry is a write).
                if server.log_failure().is_some()
                    || server.pause.is_active()
                    || !server.failover.may_write()
                {
                    continue;
                }
                let started = Instant::now();
                let expired = server.store.expire_due(now_ms());
                server.latency.sample_if_needed(
                    crate::latency::LatencyEvent::ExpireCycle,
                    started.elapsed().as_millis() as u64,
                    server.runtime.latency_monitor_threshold_ms(),
                );
                if expired > 0 {
                    tracing::debug!(expired, "carts expired");
                }
            }
            () = server.shutdown.cancelled() => return,
        }
    }
}

/// Frees interned ids that no cart or catalog entry holds, at most once per
/// `interned_ids_sweep_s`, when ids grew or the last sweep left some to free.
async fn sweep_names(server: Arc<Server>) {
    let period = Duration::from_secs(server.config.carts.interned_ids_sweep_s);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if !server.store.wants_names_sweep() {
                    continue;
                }
                let sweeper = server.clone();
                let _ = tokio::task::spawn_blocking(move || sweeper.store.sweep_names()).await;
            }
            () = server.shutdown.cancelled() => return,
        }
    }
}

async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop cartd with SHUTDOWN");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received"),
        _ = interrupt.recv() => info!("SIGINT received"),
        () = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}
