//! The link to PostgreSQL, the system of record: the sink that streams the log into it, the
//! restore of an empty node from it, restore-on-miss, and the daily cleanup.
//!
//! PostgreSQL being down never stops cart writes: the sink retries with backoff and the log
//! is kept past its checkpoint. The one time cartd waits for it is a start with an empty data
//! directory, where serving before the restore would hand out empty carts and reuse LSNs.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use persistence::sink::{self, PgPool, RowCodec, SinkHandle, SinkOptions};
use persistence::Lsn;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cart::row::CartRows;
use crate::config::PostgresConfig;
use crate::durability::StartError;
use crate::info::line;
use crate::server::{now_ms, Server};
use crate::store::Store;

/// Connections of the failover job's own pool.
const LEASE_CONNECTIONS: u32 = 2;

/// Longest wait between two connection attempts at start.
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A running link to PostgreSQL.
pub struct PostgresLink {
    pool: PgPool,
    /// The failover job's own connections (leases, moved slots): a renewal never waits behind
    /// a big sink transaction for one of `pool`'s.
    lease_pool: PgPool,
    config: PostgresConfig,
    codec: Arc<CartRows>,
    sink: Mutex<Option<SinkHandle>>,
    /// Stops the running sink alone (to start it under another term).
    sink_cancel: Mutex<Option<CancellationToken>>,
    cancel: CancellationToken,
    /// Carts looked up by restore-on-miss.
    restore_lookups: std::sync::atomic::AtomicU64,
    /// PostgreSQL answered at the start.
    reached: bool,
}

/// Applies the migrations once PostgreSQL answers (a node that started without it).
async fn migrate_when_reachable(pool: PgPool) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match sink::migrate(&pool).await {
            Ok(()) => {
                info!("PostgreSQL answers again; migrations applied");
                return;
            }
            Err(error) => {
                tracing::debug!(%error, "PostgreSQL still cannot be reached");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
            }
        }
    }
}

impl PostgresLink {
    /// Connects (retrying until it works: see the module notes) and applies the migrations.
    /// With `give_up_after` (a cluster node that can start in its recorded role), it stops
    /// trying after that long: the link's pools then connect when PostgreSQL answers, and the
    /// migrations are applied then, in the background ([`PostgresLink::reached`] is false).
    pub async fn connect(
        url: &str,
        config: &PostgresConfig,
        give_up_after: Option<Duration>,
    ) -> Result<PostgresLink, StartError> {
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
        let (pool, reached) = loop {
            match sink::connect(url).await {
                Ok(pool) => break (pool, true),
                Err(error) if give_up_after.is_some_and(|limit| started.elapsed() >= limit) => {
                    warn!(%error, "PostgreSQL cannot be reached: starting without it");
                    let pool = sink::connect_lazy_with(url, sink::POOL_CONNECTIONS_MAX)
                        .map_err(|error| StartError::Postgres(error.to_string()))?;
                    tokio::spawn(migrate_when_reachable(pool.clone()));
                    break (pool, false);
                }
                Err(error) => {
                    warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot reach PostgreSQL yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
                }
            }
        };
        if reached {
            info!("connected to PostgreSQL; migrations applied");
        }
        let lease_pool = sink::connect_lazy_with(url, LEASE_CONNECTIONS)
            .map_err(|error| StartError::Postgres(error.to_string()))?;
        Ok(PostgresLink {
            pool,
            lease_pool,
            config: config.clone(),
            codec: Arc::new(CartRows {
                user_key_prefix: "cart:".into(),
            }),
            sink: Mutex::new(None),
            sink_cancel: Mutex::new(None),
            cancel: CancellationToken::new(),
            restore_lookups: std::sync::atomic::AtomicU64::new(0),
            reached,
        })
    }

    /// Whether PostgreSQL answered at the start (else the node started without it).
    pub fn reached(&self) -> bool {
        self.reached
    }

    /// The sink's checkpoint as PostgreSQL has it.
    pub async fn checkpoint(&self) -> Result<Lsn, StartError> {
        sink::checkpoint(&self.pool, &self.config.node)
            .await
            .map_err(|error| StartError::Postgres(error.to_string()))
    }

    /// Loads every live cart, catalog entry, promotion and gift card into an empty store.
    /// Returns how many carts, and how many reference entries, it loaded.
    pub async fn restore_all(
        &self,
        store: &Store,
        layout: Option<&cluster::Layout>,
    ) -> Result<(u64, u64), StartError> {
        info!("empty data directory: restoring from PostgreSQL");
        let reference = sink::load_reference(&self.pool)
            .await
            .map_err(|error| StartError::Postgres(error.to_string()))?;
        for (key, value) in &reference {
            let restored = self
                .codec
                .reference_image(key, value)
                .and_then(|(space, key, image)| store.load_reference(space, &key, Some(&image)));
            if let Err(error) = restored {
                return Err(StartError::Apply(format!(
                    "{key:?} from PostgreSQL: {error}"
                )));
            }
        }
        let mut failure = None;
        let codec = self.codec.clone();
        // In a cluster only the carts of this node's slots: another shard group's carts here
        // would be unreachable (MOVED), and their expiry would delete live carts' rows.
        let mine = |key: &[u8]| {
            layout
                .is_none_or(|layout| layout.owner_index(cluster::key_slot(key)) == Some(layout.me))
        };
        let mut skipped = 0u64;
        let loaded = sink::load_live_carts(&self.pool, now_ms() as i64, |key: Bytes, stored| {
            if !mine(&key) {
                skipped += 1;
                return;
            }
            if let Err(error) = restore_cart(&*codec, store, &key, &stored) {
                failure.get_or_insert(format!("cart {}: {error}", String::from_utf8_lossy(&key)));
            }
        })
        .await
        .map_err(|error| StartError::Postgres(error.to_string()))?;
        if let Some(error) = failure {
            return Err(StartError::Apply(error));
        }
        let loaded = loaded - skipped;
        info!(
            carts = loaded,
            other_nodes_carts = skipped,
            reference = reference.len(),
            "restored from PostgreSQL"
        );
        Ok((loaded, reference.len() as u64))
    }

    /// The pool of the failover job's statements (leases, moved slots, the lag window), apart
    /// from the sink's.
    pub fn lease_pool(&self) -> &PgPool {
        &self.lease_pool
    }

    /// Whether the sink runs (a primary's; a replica's primary streams its log).
    pub fn streaming(&self) -> bool {
        self.sink.lock().is_some()
    }

    /// Starts the sink (writing under `term`) and the cleanup job.
    pub fn start_jobs(&self, server: &Arc<Server>, term: sink::Term) {
        self.start_sink(server, term.term, term.leased);
        tokio::spawn(cleanup_job(server.clone()));
    }

    /// Stops the sink (its transaction in flight commits first), to start it again.
    pub async fn stop_sink(&self) {
        if let Some(cancel) = self.sink_cancel.lock().take() {
            cancel.cancel();
        }
        let handle = self.sink.lock().take();
        if let Some(handle) = handle {
            if tokio::time::timeout(Duration::from_secs(6), handle.stopped())
                .await
                .is_err()
            {
                warn!("the PostgreSQL sink did not stop within 6 s");
            }
        }
    }

    /// Starts the sink, writing under `term` (checked against the lease when `leased`).
    pub fn start_sink(&self, server: &Server, term: u64, leased: bool) {
        let durability = server.durable();
        let reader = durability.wal.reader();
        let options = SinkOptions {
            node: self.config.node.clone(),
            coalesce_ms: self.config.coalesce_ms,
            term: sink::Term { term, leased },
            ..SinkOptions::new(self.config.node.clone())
        };
        let cancel = self.cancel.child_token();
        *self.sink_cancel.lock() = Some(cancel.clone());
        let handle = sink::spawn(
            self.pool.clone(),
            reader,
            self.codec.clone(),
            options,
            cancel,
        );
        *self.sink.lock() = Some(handle);
    }

    /// After a promotion: the carts of this node's slots that the old primary streamed under
    /// `term` past `fork` (this node never had them), put in place of this node's and
    /// logged. Returns how many.
    pub async fn reload_lag_window(
        &self,
        server: &Server,
        pool: &PgPool,
        term: u64,
        fork: Lsn,
    ) -> Result<u64, String> {
        let carts = sink::load_carts_written_after(pool, term, fork)
            .await
            .map_err(|error| error.to_string())?;
        let group = server
            .layout()
            .map(|layout| layout.group_name(layout.myself().group).to_owned())
            .unwrap_or_default();
        let changed = sink::carts_changed_after(pool, &group, term, fork)
            .await
            .map_err(|error| error.to_string())?;
        let cards = sink::load_gift_cards_written_after(pool, term, fork)
            .await
            .map_err(|error| error.to_string())?;
        put_gift_cards(server, &cards);
        let loaded: HashSet<&Bytes> = carts.iter().map(|(key, _)| key).collect();
        let gone: HashSet<Bytes> = changed
            .into_iter()
            .filter(|key| !loaded.contains(key))
            .collect();
        let dropped = self.take_carts_back(server, pool, &gone).await?;
        if !cards.is_empty() || dropped > 0 {
            info!(
                gift_cards = cards.len(),
                carts_gone = dropped,
                "the lag window's gift card balances and gone carts taken from PostgreSQL"
            );
        }
        let mut reloaded = dropped;
        for (key, stored) in &carts {
            if !owns_cart(server, key) {
                continue;
            }
            let image = match &stored.image {
                Some(image) => image.clone(),
                None => self.codec.from_row(key, &stored.row)?,
            };
            server.store.reload_cart(key, &image, now_ms())?;
            reloaded += 1;
        }
        Ok(reloaded)
    }

    /// Makes the carts under `keys` (of this node's slots) what PostgreSQL has: each with a
    /// row taken back, each without one dropped. Returns how many.
    pub async fn take_carts_back(
        &self,
        server: &Server,
        pool: &PgPool,
        keys: &HashSet<Bytes>,
    ) -> Result<u64, String> {
        let mine: Vec<Bytes> = keys
            .iter()
            .filter(|key| owns_cart(server, key))
            .cloned()
            .collect();
        let carts = sink::load_carts_by_key(pool, &mine)
            .await
            .map_err(|error| error.to_string())?;
        let mut kept = HashSet::with_capacity(carts.len());
        for (key, stored) in &carts {
            let image = match &stored.image {
                Some(image) => image.clone(),
                None => self.codec.from_row(key, &stored.row)?,
            };
            server.store.reload_cart(key, &image, now_ms())?;
            kept.insert(key.clone());
        }
        for key in mine.iter().filter(|key| !kept.contains(*key)) {
            server.store.delete(key, now_ms());
        }
        Ok(mine.len() as u64)
    }

    /// Puts PostgreSQL's balances of the gift cards under `codes` (of this node's slots) in
    /// place, logged; a card without a row stays as it is here. Returns how many.
    pub async fn take_gift_cards_back(
        &self,
        server: &Server,
        pool: &PgPool,
        codes: &HashSet<Bytes>,
    ) -> Result<u64, String> {
        if codes.is_empty() {
            return Ok(0);
        }
        let codes: Vec<String> = codes
            .iter()
            .filter_map(|code| String::from_utf8(code.to_vec()).ok())
            .collect();
        let rows = sink::load_gift_cards_by_code(pool, &codes)
            .await
            .map_err(|error| error.to_string())?;
        Ok(put_gift_cards(server, &rows))
    }

    /// LSN up to which PostgreSQL has everything.
    pub fn checkpoint_lsn(&self) -> Lsn {
        self.sink
            .lock()
            .as_ref()
            .map_or(0, |sink| sink.stats.checkpoint_lsn.load(Ordering::Relaxed))
    }

    /// Loads a user cart unknown here from PostgreSQL (restore-on-miss). `Ok(false)`: none.
    pub async fn restore_one(&self, store: &Store, key: &[u8]) -> Result<bool, String> {
        self.restore_lookups.fetch_add(1, Ordering::Relaxed);
        let stored = sink::load_cart(&self.pool, key, now_ms() as i64)
            .await
            .map_err(|error| error.to_string())?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        let image = match stored.image {
            Some(image) => image,
            None => self.codec.from_row(key, &stored.row)?,
        };
        store.load_if_absent(key, &image, now_ms())
    }

    /// Waits for the sink's last transaction, then stops it.
    pub async fn stop(&self) {
        self.cancel.cancel();
        let handle = self.sink.lock().take();
        if let Some(handle) = handle {
            if tokio::time::timeout(Duration::from_secs(5), handle.stopped())
                .await
                .is_err()
            {
                warn!("the PostgreSQL sink did not stop within 5 s");
            }
        }
    }

    /// The `postgres_*` fields of `INFO persistence`; warns once when the retained log is
    /// past its bound.
    pub fn info(&self, last_lsn: Lsn, out: &mut String) {
        line(out, "postgres_enabled", 1);
        let sink = self.sink.lock();
        let Some(sink) = sink.as_ref() else { return };
        let stats = &sink.stats;
        let checkpoint = stats.checkpoint_lsn.load(Ordering::Relaxed);
        line(
            out,
            "postgres_connected",
            u8::from(stats.connected.load(Ordering::Relaxed)),
        );
        line(out, "postgres_checkpoint_lsn", checkpoint);
        line(
            out,
            "postgres_lag_records",
            last_lsn.saturating_sub(checkpoint),
        );
        line(
            out,
            "postgres_records_applied",
            stats.records_applied.load(Ordering::Relaxed),
        );
        line(
            out,
            "postgres_carts_upserted",
            stats.carts_upserted.load(Ordering::Relaxed),
        );
        line(
            out,
            "postgres_carts_deleted",
            stats.carts_deleted.load(Ordering::Relaxed),
        );
        line(
            out,
            "postgres_events_inserted",
            stats.events_inserted.load(Ordering::Relaxed),
        );
        line(
            out,
            "postgres_transactions",
            stats.transactions.load(Ordering::Relaxed),
        );
        line(
            out,
            "postgres_rows_refused",
            stats.codec_errors.load(Ordering::Relaxed),
        );
        line(
            out,
            "postgres_restore_lookups",
            self.restore_lookups.load(Ordering::Relaxed),
        );
        line(
            out,
            "postgres_failures",
            stats.failures.load(Ordering::Relaxed),
        );
        if let Some(error) = stats.last_error() {
            line(out, "postgres_last_error", error.replace(['\r', '\n'], " "));
        }
    }
}

/// Puts one cart read back from PostgreSQL in place: its image when the row has one (exact,
/// a checkout in progress included), else its readable columns; with the LSN of its row.
fn restore_cart(
    codec: &dyn RowCodec,
    store: &Store,
    key: &[u8],
    stored: &persistence::sink::StoredCart,
) -> Result<(), String> {
    let image = match &stored.image {
        Some(image) => image.clone(),
        None => codec.from_row(key, &stored.row)?,
    };
    store.load_image_at(key, &image, stored.lsn)
}

/// Deletes idle carts and old events now and then; warns when PostgreSQL keeps the log long.
async fn cleanup_job(server: Arc<Server>) {
    let config = server.config.postgres.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(config.cleanup_every_s));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = server.shutdown.cancelled() => return,
        }
        let Some(postgres) = &server.durable().postgres else {
            return;
        };
        match sink::cleanup(
            &postgres.pool,
            now_ms() as i64,
            config.cleanup_idle_days,
            config.cleanup_events_days,
        )
        .await
        {
            Ok(report) => info!(
                carts = report.carts_deleted,
                events = report.events_deleted,
                "PostgreSQL cleanup done"
            ),
            Err(error) => warn!(%error, "PostgreSQL cleanup failed; next try at the next period"),
        }
    }
}

/// Restore-on-miss: which requests need a cart from PostgreSQL, and loading it.
pub mod restore {
    use bytes::Bytes;
    use protocol::{CommandError, CommandSpec, ErrorCode};

    use crate::server::{now_ms, Server};

    /// The user carts among the admitted command's keys (its table row says where they are)
    /// that are not here, when restore-on-miss is on: each is looked up in PostgreSQL before
    /// the command runs. Guest carts are never looked up.
    pub fn missing_user_carts(args: &[Bytes], spec: &CommandSpec, server: &Server) -> Vec<Bytes> {
        if (spec.keys == protocol::Keys::NONE && spec.also_keys == protocol::Keys::NONE)
            || !server.config.postgres.restore_on_miss
            || server.loading.load(std::sync::atomic::Ordering::Relaxed)
            || server.store.is_read_only()
            || server
                .durability
                .get()
                .and_then(|durability| durability.postgres.as_ref())
                .is_none()
        {
            return Vec::new();
        }
        let store = &server.store;
        let now = now_ms();
        let mut missing: Vec<Bytes> = Vec::new();
        for at in spec.all_key_positions(args.len()) {
            let key = &args[at];
            let guest = store.kind_of(key) == crate::cart::CartKind::Guest;
            // A cart another node serves (a merge's guest cart) is that node's to reload.
            let elsewhere = crate::handoff::guest_node(server, key).is_some();
            if !guest
                && !elsewhere
                && store.ttl_left_ms(key, now).is_none()
                && !missing.contains(key)
            {
                missing.push(key.clone());
            }
        }
        missing
    }

    /// Loads `key` from PostgreSQL if it is there.
    pub async fn load(key: &[u8], server: &Server) -> Result<(), CommandError> {
        let Some(postgres) = server.durability.get().and_then(|d| d.postgres.as_ref()) else {
            return Ok(());
        };
        match postgres.restore_one(&server.store, key).await {
            Ok(loaded) => {
                if loaded {
                    tracing::debug!(key = %String::from_utf8_lossy(key), "cart restored from PostgreSQL");
                }
                Ok(())
            }
            Err(error) => Err(CommandError::new(
                ErrorCode::TryAgain,
                format!("cannot load the cart from PostgreSQL: {error}"),
            )),
        }
    }
}

/// Whether this node serves the slot of the cart under `key` (always, outside a cluster).
fn owns_cart(server: &Server, key: &[u8]) -> bool {
    server
        .layout()
        .is_none_or(|layout| layout.owner_index(cluster::key_slot(key)) == Some(layout.me))
}

/// Puts PostgreSQL's (code, balance, currency) of each gift card this node decides in place,
/// logged; returns how many.
fn put_gift_cards(server: &Server, rows: &[sink::GiftCardRow]) -> u64 {
    let mut put = 0;
    for row in rows {
        let (code, currency) = (&row.code, &row.currency);
        let decided_here = server
            .peers
            .as_ref()
            .is_none_or(|peers| peers.owners.owner_elsewhere(code.as_bytes()).is_none());
        if !decided_here {
            continue;
        }
        match protocol::Currency::parse(currency.as_bytes()) {
            Ok(currency) => {
                server.store.gift_card_reload(
                    code,
                    (row.balance, currency),
                    &row.peer_spent,
                    now_ms(),
                );
                put += 1;
            }
            Err(_) => warn!(%code, %currency, "a gift card row has a bad currency"),
        }
    }
    put
}
