//! Durability at the server level: recovery before serving, the write-ahead log, snapshots
//! (SAVE, BGSAVE, automatic), and the log segments they let go.
//!
//! Start: the listener is already up (commands get `-LOADING`); the newest snapshot is loaded,
//! the log after it replayed, and only then is the log opened for new records, numbered on
//! from the highest LSN seen (the PostgreSQL checkpoint included, so event LSNs never repeat).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use persistence::recovery::{self, RecoveryError};
use persistence::snapshot::{self, SnapshotInfo};
use persistence::wal::{Wal, WalOptions};
use persistence::Lsn;
use tracing::{info, warn};

use crate::postgres::PostgresLink;
use crate::server::{now_ms, Server};
use crate::store::durable::seed_of;

/// The durable side of a running server.
pub struct Durability {
    /// The write-ahead log.
    pub wal: Arc<Wal>,
    /// `data_dir/snapshots`.
    pub snapshot_dir: PathBuf,
    /// A snapshot is being written.
    pub saving: AtomicBool,
    /// Unix time (s) of the last successful snapshot, or of the start.
    pub last_save_s: AtomicU64,
    /// LSN the last snapshot covers.
    pub last_save_lsn: AtomicU64,
    /// Whether the last snapshot succeeded.
    pub last_save_ok: AtomicBool,
    /// How long the last snapshot took.
    pub last_save_ms: AtomicU64,
    /// When the snapshot in progress started.
    save_started: Mutex<Option<Instant>>,
    /// The PostgreSQL stream, when configured.
    pub postgres: Option<PostgresLink>,
    /// How the start went.
    pub recovery: RecoverySummary,
    /// `SHUTDOWN SAVE` asked for a snapshot on the way out.
    pub save_on_shutdown: AtomicBool,
    /// The log on disk is over `wal_retained_warn_mb` (the sink is far behind).
    pub retention_warning: AtomicBool,
    /// BGSAVE asked the snapshot task for a snapshot.
    bgsave_requested: AtomicBool,
    wake_snapshot_task: tokio::sync::Notify,
}

/// What recovery found, for the log and INFO.
#[derive(Debug, Clone, Default)]
pub struct RecoverySummary {
    /// Carts loaded from the snapshot.
    pub snapshot_carts: u64,
    /// Log records replayed after it.
    pub replayed_records: u64,
    /// Carts restored from PostgreSQL into an empty data directory.
    pub restored_carts: u64,
    /// Catalog entries, promotions and gift cards restored with them.
    pub restored_reference: u64,
    /// Torn-tail bytes cut from the log.
    pub torn_bytes_cut: u64,
    /// Records the log's tip file says were written past where the log now ends: lost.
    pub lost_records: u64,
    /// Damaged places in records the snapshot covers, stepped over.
    pub covered_damage: u64,
    /// Damaged places `--repair` dropped, and missing files it went on without.
    pub repaired: u64,
    /// How long it took.
    pub millis: u64,
}

/// Why cartd cannot start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The snapshot or the log is damaged.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// Files could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// PostgreSQL was needed and failed.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// A record or image could not be applied.
    #[error("cannot apply {0}")]
    Apply(String),
}

/// Replaces the small state file `path` (a history id, the slot moves, ...) whole: written to
/// `path.new`, synced, renamed into place, the directory synced, so a crash leaves the old
/// file or the new one.
pub fn replace_file(path: &Path, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, bytes)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Recovers the store, opens the log and starts the background jobs; then the server serves.
pub async fn start(server: Arc<Server>, repair: bool) -> Result<(), StartError> {
    let started = Instant::now();
    let data_dir = server.config.server.data_dir.clone();
    // Without PostgreSQL, the slot moves this node was told of (with it, PostgreSQL's).
    crate::migration::load_recorded(&server);
    let (postgres, leased) = link_postgres(&server).await?;
    // Once the layout has PostgreSQL's leases and moves: the slots open here before a restart.
    crate::migration::load_open(&server);
    let replica = server.primary().is_some();
    if replica {
        prepare_replica(&server, &data_dir).await?;
    }
    let local = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || recover_local(&server, repair))
            .await
            .expect("recovery does not panic")?
    };
    let mut summary = local.summary;
    let last_lsn = if replica {
        local.last_lsn
    } else {
        restore_and_continue(
            &server,
            postgres.as_ref(),
            (local.last_lsn, local.empty),
            &mut summary,
        )
        .await?
    };
    let wal = open_log(&server, last_lsn + 1, local.log_end_lsn)?;
    server.store.attach_wal(wal.clone());
    name_history(&server, &data_dir, &summary, local.empty)?;
    let holds = server.store.rebuild_gift_card_holds(now_ms());
    if summary.restored_carts > 0 || summary.restored_reference > 0 || summary.repaired > 0 {
        // What came from PostgreSQL is in no local file yet, and after a repair the log has
        // holes: a snapshot makes the state durable here, whole, before anything is served.
        let snapshot = snapshot_now(&server).await?;
        info!(
            carts = snapshot.carts,
            lsn = snapshot.lsn,
            "restored or repaired data snapshotted"
        );
    }
    summary.millis = started.elapsed().as_millis() as u64;
    info!(
        snapshot_carts = summary.snapshot_carts,
        replayed = summary.replayed_records,
        restored = summary.restored_carts,
        carts = server.store.len(),
        gift_card_holds = holds,
        next_lsn = last_lsn + 1,
        ms = summary.millis,
        "data loaded"
    );
    let last_save_lsn =
        snapshot::latest_lsn(&data_dir.join("snapshots")).unwrap_or(local.snapshot_lsn);
    let durability = Durability::new(wal, &data_dir, postgres, summary, last_save_lsn);
    if server.durability.set(durability).is_err() {
        panic!("durability starts once");
    }
    start_jobs(&server, replica, leased);
    server.loading.store(false, Ordering::Release);
    info!("ready to accept connections");
    Ok(())
}

/// A primary's step after its own data: an empty one is restored from PostgreSQL; the LSN
/// its log goes on after: past its own end and PostgreSQL's checkpoint, or, started without
/// PostgreSQL (in its recorded role, with data of its own), past the LSNs the tip file says
/// were used though the log lost them (PostgreSQL may hold them).
async fn restore_and_continue(
    server: &Server,
    postgres: Option<&PostgresLink>,
    (last_lsn, empty): (Lsn, bool),
    summary: &mut RecoverySummary,
) -> Result<Lsn, StartError> {
    let Some(postgres) = postgres else {
        return Ok(last_lsn);
    };
    if !postgres.reached() {
        return Ok(last_lsn + summary.lost_records);
    }
    let checkpoint = postgres.checkpoint().await?;
    if empty {
        let (carts, reference) = postgres
            .restore_all(&server.store, server.layout().as_deref())
            .await?;
        summary.restored_carts = carts;
        summary.restored_reference = reference;
    }
    Ok(last_lsn.max(checkpoint))
}

/// Once loaded: the sink (a primary's, under its lease's term), the snapshot schedule, the
/// link to the primary (a replica's) and the failover job (with leases).
fn start_jobs(server: &Arc<Server>, replica: bool, leased: bool) {
    if let Some(postgres) = server.durable().postgres.as_ref().filter(|_| !replica) {
        let term = persistence::sink::Term {
            term: server.failover.term(),
            leased,
        };
        postgres.start_jobs(server, term);
    }
    tokio::spawn(snapshot_schedule(server.clone()));
    if replica {
        server.replication.start_following(server);
    }
    if leased {
        server.tasks.spawn(crate::failover::run(server.clone()));
    }
}

/// The link to PostgreSQL, when configured, and whether leases are in force: in a cluster
/// every node links to it, where the leases say which node is primary (settled here); only
/// a primary streams (a replica's log is its primary's).
async fn link_postgres(server: &Arc<Server>) -> Result<(Option<PostgresLink>, bool), StartError> {
    let fallback = crate::role_record::fallback(server);
    let give_up = fallback
        .as_ref()
        .map(|_| Duration::from_millis(2 * server.config.cluster.lease_ms));
    let postgres = match server.config.postgres.effective_url() {
        Some(url) => Some(PostgresLink::connect(&url, &server.config.postgres, give_up).await?),
        None => None,
    };
    let leased = server.cluster.is_some() && postgres.is_some();
    if let (true, Some(postgres)) = (leased, &postgres) {
        let pool = postgres.lease_pool();
        match (&fallback, postgres.reached()) {
            (Some(role), false) => crate::failover::take_recorded_role(server, role),
            _ => crate::failover::settle_role(server, pool, fallback.as_ref(), give_up).await?,
        }
    }
    Ok((postgres, leased))
}

/// A replica, before it loads anything: its store takes only its primary's records; one that
/// never synchronized fetches its primary's snapshot first (while clients get `-LOADING`),
/// and a snapshot staged by the last run is installed.
async fn prepare_replica(server: &Arc<Server>, data_dir: &Path) -> Result<(), StartError> {
    server.store.set_read_only();
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| StartError::Io { what, source }
    };
    if crate::replication::recorded_id(data_dir).is_none() && !crate::replication::staged(data_dir)
    {
        info!("this replica has no data of its primary yet: fetching its snapshot");
        if !crate::replication::first_sync(server).await {
            return Err(StartError::Io {
                what: "fetching the primary's snapshot".into(),
                source: std::io::Error::other("stopped before the primary sent it"),
            });
        }
    }
    crate::replication::install_staged(data_dir)
        .map_err(io("installing the primary's snapshot"))?;
    Ok(())
}

/// Names the history this node's log belongs to (the replication id replicas continue
/// from): a replica's is its primary's, recorded when it synchronized; a primary keeps the
/// one its data directory records, and takes a new one for a new or wiped directory or when
/// records it had written are lost (replicas may hold them: they must start over).
fn name_history(
    server: &Server,
    data_dir: &Path,
    summary: &RecoverySummary,
    empty: bool,
) -> Result<(), StartError> {
    let recorded = crate::replication::recorded_id(data_dir);
    let id = match recorded {
        Some(id) if server.primary().is_some() || (!empty && summary.lost_records == 0) => id,
        _ if server.primary().is_some() => String::from("?"),
        _ => {
            let id = crate::replication::new_id();
            crate::replication::record_id(data_dir, &id).map_err(|source| StartError::Io {
                what: "recording the replication id".into(),
                source,
            })?;
            id
        }
    };
    server.replication.set_id(id);
    server
        .replication
        .set_previous(crate::replication::recorded_previous(data_dir));
    *server.replication.set_aside.lock() = crate::replication::scan_set_aside(data_dir);
    Ok(())
}

/// Moves a damaged snapshot out of the way (`.snap.damaged`, kept for a look) once an older
/// one has loaded, so it is neither counted among the snapshots kept nor loaded again.
fn set_aside(path: &Path) {
    let damaged = path.with_extension("snap.damaged");
    match std::fs::rename(path, &damaged) {
        Ok(()) => warn!(moved_to = %damaged.display(), "the damaged snapshot was set aside"),
        Err(error) => warn!(%error, file = %path.display(), "cannot set a damaged snapshot aside"),
    }
}

/// Writes a snapshot on a blocking thread, before the server serves.
async fn snapshot_now(server: &Arc<Server>) -> Result<SnapshotInfo, StartError> {
    let dir = server.config.server.data_dir.join("snapshots");
    let writer = server.clone();
    tokio::task::spawn_blocking(move || writer.store.write_snapshot(&dir))
        .await
        .expect("snapshots do not panic")
        .map_err(|source| StartError::Io {
            what: "writing the snapshot of what was restored from PostgreSQL".into(),
            source,
        })
}

/// Opens the log for new records from `next_lsn` on.
fn open_log(server: &Server, next_lsn: Lsn, log_end_lsn: Lsn) -> Result<Arc<Wal>, StartError> {
    let persistence = &server.config.persistence;
    let dir = server.config.server.data_dir.join("wal");
    let options = WalOptions {
        dir: dir.clone(),
        fsync: persistence
            .fsync()
            .map_err(|error| StartError::Apply(error.to_string()))?,
        segment_bytes: persistence.wal_segment_mb * 1024 * 1024,
    };
    let wal = Wal::open_after(options, next_lsn, log_end_lsn).map_err(|source| StartError::Io {
        what: format!("opening the log in {}", dir.display()),
        source,
    })?;
    Ok(Arc::new(wal))
}

struct LocalState {
    summary: RecoverySummary,
    snapshot_lsn: Lsn,
    last_lsn: Lsn,
    /// The last LSN the log files hold.
    log_end_lsn: Lsn,
    /// Neither a snapshot nor a log record: a new or wiped data directory.
    empty: bool,
}

fn recover_local(server: &Server, repair: bool) -> Result<LocalState, StartError> {
    let data_dir = &server.config.server.data_dir;
    let store = &server.store;
    let mut summary = RecoverySummary::default();
    let loaded = load_snapshot(server, &data_dir.join("snapshots"))?;
    let snapshot_lsn = loaded.as_ref().map_or(0, |info| info.lsn);
    summary.snapshot_carts = loaded.as_ref().map_or(0, |info| info.carts);
    let now = now_ms();
    let mut failure = None;
    let report = recovery::replay(&data_dir.join("wal"), snapshot_lsn, repair, |record| {
        if failure.is_none() {
            failure = store.apply_record(&record, now, repair).err();
        }
    })?;
    if let Some(error) = failure.or_else(|| store.finish_replay(repair).err()) {
        return Err(StartError::Apply(format!("a log record: {error}")));
    }
    summary.replayed_records = report.records;
    summary.torn_bytes_cut = report.torn_bytes_cut();
    summary.lost_records = report.lost_at_end.map_or(0, |lost| lost.len());
    summary.covered_damage = report.covered.len() as u64;
    summary.repaired = (report.repaired.len() + report.missing.len()) as u64;
    Ok(LocalState {
        summary,
        snapshot_lsn,
        last_lsn: report.last_lsn.max(snapshot_lsn),
        log_end_lsn: report.last_lsn,
        empty: loaded.is_none() && report.last_lsn == 0,
    })
}

/// Loads the newest snapshot that reads back whole; a damaged one is reported and the one
/// before it (whose log is kept) is loaded instead. The store takes the key-hash seed the
/// snapshot was written with before it loads anything. `None`: no snapshot at all.
fn load_snapshot(server: &Server, dir: &Path) -> Result<Option<SnapshotInfo>, StartError> {
    let store = &server.store;
    let candidates = snapshot::list(dir)?;
    let mut damage = None;
    let mut damaged = Vec::new();
    for (index, (_, path)) in candidates.iter().enumerate() {
        if index > 0 {
            store.clear_for_recovery(now_ms());
        }
        let seed = match snapshot::read_seed(path) {
            Ok(seed) => seed,
            Err(error) => {
                warn!(%error, "a snapshot is damaged; trying the one before it");
                damaged.push(path.clone());
                damage.get_or_insert(error);
                continue;
            }
        };
        if let Some(seed) = seed {
            if !store.set_seed(seed_of(seed)) {
                warn!(
                    "this snapshot's key-hash seed differs from the newer one's, which is \
                     kept: the traces of forgotten request tokens in it do not match"
                );
            }
        }
        let now = now_ms();
        let mut failure = None;
        let loaded = snapshot::load(path, |entry| {
            if failure.is_none() {
                failure = store.load_entry(entry, now).err();
            }
        });
        match (loaded, failure) {
            (Ok(info), None) => {
                if let Some(error) = damage {
                    warn!(
                        %error,
                        loaded = %info.path.display(),
                        "the newest snapshot is damaged; the one before it was loaded, and \
                         the log from its LSN is replayed"
                    );
                }
                damaged.iter().for_each(|path| set_aside(path));
                return Ok(Some(info));
            }
            (Ok(info), Some(error)) => {
                return Err(StartError::Apply(format!(
                    "an entry of {}: {error}",
                    info.path.display()
                )));
            }
            (Err(error), _) => {
                warn!(%error, "a snapshot is damaged; trying the one before it");
                damaged.push(path.clone());
                damage.get_or_insert(error);
            }
        }
    }
    match damage {
        Some(error) => Err(error.into()),
        None => Ok(None),
    }
}

impl Durability {
    fn new(
        wal: Arc<Wal>,
        data_dir: &Path,
        postgres: Option<PostgresLink>,
        recovery: RecoverySummary,
        last_save_lsn: Lsn,
    ) -> Durability {
        Durability {
            wal,
            snapshot_dir: data_dir.join("snapshots"),
            saving: AtomicBool::new(false),
            last_save_s: AtomicU64::new(now_ms() / 1000),
            last_save_lsn: AtomicU64::new(last_save_lsn),
            last_save_ok: AtomicBool::new(true),
            last_save_ms: AtomicU64::new(0),
            save_started: Mutex::new(None),
            postgres,
            recovery,
            save_on_shutdown: AtomicBool::new(false),
            retention_warning: AtomicBool::new(false),
            bgsave_requested: AtomicBool::new(false),
            wake_snapshot_task: tokio::sync::Notify::new(),
        }
    }

    /// Writes a snapshot now on this thread (SAVE, BGSAVE's thread), then lets go of the log
    /// segments it covers. `Err` when another snapshot is already running.
    pub fn save(&self, server: &Server) -> Result<SnapshotInfo, String> {
        if self.saving.swap(true, Ordering::AcqRel) {
            return Err("Background save already in progress".into());
        }
        let started = Instant::now();
        *self.save_started.lock() = Some(started);
        let result = server.store.write_snapshot(&self.snapshot_dir);
        *self.save_started.lock() = None;
        self.last_save_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.saving.store(false, Ordering::Release);
        match result {
            Ok(info) => {
                self.last_save_ok.store(true, Ordering::Relaxed);
                self.last_save_s.store(now_ms() / 1000, Ordering::Relaxed);
                self.last_save_lsn.store(info.lsn, Ordering::Relaxed);
                info!(
                    carts = info.carts,
                    lsn = info.lsn,
                    bytes = info.bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "snapshot written"
                );
                self.release_log(server);
                Ok(info)
            }
            Err(error) => {
                self.last_save_ok.store(false, Ordering::Relaxed);
                warn!(%error, "snapshot failed");
                Err(format!("snapshot failed: {error}"))
            }
        }
    }

    /// Asks the snapshot task for a snapshot (BGSAVE). `Err` when one is already running or
    /// asked for.
    pub fn bgsave(&self) -> Result<(), String> {
        if self.saving.load(Ordering::Acquire) || self.bgsave_requested.swap(true, Ordering::AcqRel)
        {
            return Err("Background save already in progress".into());
        }
        self.wake_snapshot_task.notify_one();
        Ok(())
    }

    /// Seconds the running snapshot has taken so far, if one runs.
    pub fn save_running_s(&self) -> Option<u64> {
        self.save_started
            .lock()
            .map(|started| started.elapsed().as_secs())
    }

    /// Orderly stop: the snapshot `SHUTDOWN SAVE` asked for, every record written and synced,
    /// then the PostgreSQL sink's last batch.
    pub async fn stop(&self, server: &Arc<Server>) {
        if self.save_on_shutdown.load(Ordering::Relaxed) {
            let server = server.clone();
            let _ = tokio::task::spawn_blocking(move || server.durable().save(&server)).await;
        }
        let wal = self.wal.clone();
        match tokio::task::spawn_blocking(move || wal.close()).await {
            Ok(Ok(())) => info!(lsn = self.wal.durable_lsn(), "log written and synced"),
            Ok(Err(error)) => warn!(%error, "the log could not be synced on the way out"),
            Err(error) => warn!(%error, "the log could not be closed"),
        }
        if let Some(postgres) = &self.postgres {
            postgres.stop().await;
        }
    }

    /// Warns once when the log kept on disk grows past `wal_retained_warn_mb`.
    fn check_retention(&self, warn_mb: u64) {
        let stats = self.wal.stats();
        let over = stats.bytes_on_disk > warn_mb.saturating_mul(1024 * 1024);
        let was_over = self.retention_warning.swap(over, Ordering::Relaxed);
        if over && !was_over {
            let checkpoint = self.postgres.as_ref().map(PostgresLink::checkpoint_lsn);
            warn!(
                bytes = stats.bytes_on_disk,
                warn_mb,
                last_lsn = stats.last_lsn,
                postgres_checkpoint_lsn = checkpoint,
                "the log kept on disk is over wal_retained_warn_mb: PostgreSQL is behind or \
                 snapshots are failing; the disk may fill"
            );
        } else if was_over && !over {
            info!(
                bytes = stats.bytes_on_disk,
                "the log kept on disk is back under wal_retained_warn_mb"
            );
        }
    }

    /// Deletes log segments that the older of the two snapshots kept, the PostgreSQL sink and
    /// every connected replica are past: should the newest snapshot turn out damaged, the one
    /// before it and the log from its LSN on still hold everything, and a replica that lags
    /// goes on from the log rather than from a new snapshot.
    pub fn release_log(&self, server: &Server) {
        let oldest_snapshot = snapshot::oldest_lsn(&self.snapshot_dir).unwrap_or(0);
        let mut keep_from = oldest_snapshot.min(self.last_save_lsn.load(Ordering::Relaxed)) + 1;
        if let Some(postgres) = self
            .postgres
            .as_ref()
            .filter(|postgres| postgres.streaming())
        {
            keep_from = keep_from.min(postgres.checkpoint_lsn() + 1);
        }
        if let Some(lagging) = server
            .replication
            .followers()
            .iter()
            .map(|follower| follower.acked_lsn)
            .min()
        {
            keep_from = keep_from.min(lagging + 1);
        }
        match self.wal.remove_segments_below(keep_from) {
            Ok(0) => {}
            Ok(removed) => info!(removed, keep_from, "log segments released"),
            Err(error) => warn!(%error, "cannot delete old log segments"),
        }
    }
}

/// How long automatic snapshots wait after one failed.
const SNAPSHOT_RETRY_AFTER_FAILURE_S: u64 = 30;

/// Writes background snapshots: on BGSAVE, after enough changes, or after enough time with
/// changes. One at a time, on a blocking thread.
async fn snapshot_schedule(server: Arc<Server>) {
    let persistence = &server.config.persistence;
    let every_changes = persistence.snapshot_every_changes;
    let every_s = persistence.snapshot_every_s;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_start = Instant::now();
    let durability = server.durable();
    let mut ticks = 0u32;
    let mut failed_at = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                ticks = (ticks + 1) % 10;
                if ticks == 0 {
                    durability.check_retention(persistence.wal_retained_warn_mb);
                    durability.release_log(&server);
                }
            }
            () = durability.wake_snapshot_task.notified() => {}
            () = server.shutdown.cancelled() => return,
        }
        let changes = durability.wal.last_lsn() - durability.last_save_lsn.load(Ordering::Relaxed);
        let by_count = every_changes > 0 && changes >= every_changes;
        let by_time = every_s > 0 && changes > 0 && last_start.elapsed().as_secs() >= every_s;
        let asked = durability.bgsave_requested.load(Ordering::Acquire);
        // After a failed snapshot (a full disk, say) automatic ones wait a while: retrying
        // every second would only write and delete half snapshots.
        let backing_off = failed_at.is_some_and(|at: Instant| {
            at.elapsed() < Duration::from_secs(SNAPSHOT_RETRY_AFTER_FAILURE_S)
        });
        if !(asked || ((by_count || by_time) && !backing_off)) {
            continue;
        }
        last_start = Instant::now();
        let saver = server.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let durability = saver.durable();
            let result = durability.save(&saver);
            durability.bgsave_requested.store(false, Ordering::Release);
            result
        })
        .await;
        failed_at = match saved {
            Ok(Ok(_)) => None,
            _ => Some(Instant::now()),
        };
    }
}
