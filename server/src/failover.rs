//! Automatic failover with leases in PostgreSQL (docs/CLUSTER.md "Failover").
//!
//! Every shard group has one lease row (`persistence::sink::lease`): its holder is the
//! group's primary, under a term from one cluster-wide sequence, until PostgreSQL's clock
//! passes its expiry. On every cluster node with `[postgres]`, [`run`] ticks every quarter
//! of `cluster.lease_ms`:
//!
//! - a primary renews its lease. It takes writes only until the lease's end as measured from
//!   before the renewal was sent, less a margin ([`Failover::may_write`]), so it stops before
//!   any replica may take over. When PostgreSQL cannot be reached it keeps taking writes while
//!   every replica of its group confirms, by echoing its pings, that it still follows it
//!   (failsafe: a replica that hears its primary never takes the lease); when the lease turns
//!   out to be another node's, it stops and starts over as that node's replica;
//! - a replica reports its acknowledged LSN and, once the lease has lapsed and its primary
//!   has been silent for a whole lease, the replica holding the most takes the lease with a
//!   new term and is promoted ([`promote`]);
//! - every node follows the leases of every group into its layout, so `-MOVED`, CLUSTER
//!   SLOTS and NODES name the new primaries.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use persistence::record::Space;
use persistence::sink::lease::{self, Fork, Lease, Renewal, TakeOver};
use persistence::sink::{PgPool, SinkError, Term};
use persistence::Lsn;
use protocol::cmd::FailoverMode;
use tracing::{error, info, warn};

use crate::durability::StartError;
use crate::server::{now_ms, Server};

/// A node's part in failover: its lease (a primary's), its clock, what promotions did.
pub struct Failover {
    /// The origin of [`Failover::clock_ms`].
    clock: Instant,
    /// Leases are in force (a cluster with PostgreSQL): writes need one.
    leased: AtomicBool,
    /// Until when (on the clock) this primary may take writes.
    writable_until: AtomicU64,
    /// The term of this node's shard group, as this node knows it.
    term: AtomicU64,
    /// Writes go on without PostgreSQL, on the replicas' word (failsafe).
    failsafe: AtomicBool,
    /// `cluster.lease_ms`.
    lease_ms: u64,
    /// Times this node was promoted since it started.
    pub promotions: AtomicU64,
    /// The last promotion, for INFO.
    pub last_promotion: Mutex<Option<PromotionReport>>,
    /// Lease statements that failed (PostgreSQL unreachable or slow).
    pub lease_failures: AtomicU64,
    /// A manual failover step asked for (CLUSTER FAILOVER, HANDOVER), for the job to run.
    manual: Mutex<Option<Manual>>,
    /// Wakes the job for it.
    wake: tokio::sync::Notify,
    /// No writes before this (on the clock): a hand-over in progress (`u64::MAX`), or a
    /// TAKEOVER waiting out the old primary's lease.
    hold_until: AtomicU64,
    /// This node changes shard group and starts over soon (`crate::membership`): its lease
    /// is not renewed and its log not reported any more.
    pub start_over_pending: AtomicBool,
    /// This node started in its recorded role, PostgreSQL unreachable (INFO).
    pub started_without_postgres: AtomicBool,
}

/// A manual failover step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manual {
    /// `CLUSTER FAILOVER`, on a replica.
    Failover(FailoverMode),
    /// `CLUSTER HANDOVER node`, on a primary: hand the lease to that replica.
    Handover(String),
}

/// How long a planned failover waits for the replica to catch up, and then for the lease.
const MANUAL_FAILOVER_TIMEOUT_MS: u64 = 5_000;

/// What a promotion did.
#[derive(Debug, Clone, Default)]
pub struct PromotionReport {
    /// The new term.
    pub term: u64,
    /// The last LSN this node had of the old primary's history.
    pub fork_lsn: Lsn,
    /// Carts PostgreSQL held at a newer position (the lag window), taken back.
    pub reloaded_carts: u64,
    /// Where this log and the lapsed lease's history last agreed, when that is before
    /// `fork_lsn` (a primary back after its successor died): its records past it were set
    /// aside.
    pub shared_lsn: Lsn,
    /// Carts those records changed, made PostgreSQL's again (or dropped: no row).
    pub forked_carts: u64,
    /// Carts whose deadline moved one touch step on.
    pub deadlines_moved: usize,
    /// Gift card holds rebuilt.
    pub holds: usize,
    /// From taking the lease to taking writes.
    pub millis: u64,
}

impl Failover {
    /// No lease yet: writes are free until [`settle_role`] puts leases in force.
    pub fn new(lease_ms: u64) -> Failover {
        Failover {
            clock: Instant::now(),
            leased: AtomicBool::new(false),
            writable_until: AtomicU64::new(0),
            term: AtomicU64::new(0),
            failsafe: AtomicBool::new(false),
            lease_ms,
            promotions: AtomicU64::new(0),
            started_without_postgres: AtomicBool::new(false),
            last_promotion: Mutex::new(None),
            lease_failures: AtomicU64::new(0),
            manual: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            hold_until: AtomicU64::new(0),
            start_over_pending: AtomicBool::new(false),
        }
    }

    /// Asks the failover job for `manual` (a later request replaces one not yet taken).
    pub fn ask(&self, manual: Manual) {
        if matches!(manual, Manual::Handover(_)) {
            // No write from now on: the replica must end up with every one.
            self.hold_until.store(u64::MAX, Ordering::Release);
        }
        *self.manual.lock() = Some(manual);
        self.wake.notify_one();
    }

    /// Writes may go on again (a hand-over that did not happen).
    fn release_hold(&self) {
        self.hold_until.store(0, Ordering::Release);
    }

    /// Milliseconds on this node's monotonic clock (the pings' clock).
    pub fn clock_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Whether this primary may take a write now: always without leases; with them, only
    /// before its lease's end (less the margin), or under failsafe.
    pub fn may_write(&self) -> bool {
        if !self.leased.load(Ordering::Acquire) {
            return true;
        }
        let now = self.clock_ms();
        now < self.writable_until.load(Ordering::Acquire)
            && now >= self.hold_until.load(Ordering::Acquire)
    }

    /// Whether leases are in force.
    pub fn leased(&self) -> bool {
        self.leased.load(Ordering::Acquire)
    }

    /// The term of this node's shard group.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// Puts this group's term at `term` (raised for a slot it imports).
    pub fn set_term(&self, term: u64) {
        self.term.store(term, Ordering::Release);
    }

    /// Whether writes go on under failsafe now.
    pub fn in_failsafe(&self) -> bool {
        self.failsafe.load(Ordering::Acquire)
    }

    /// Milliseconds this primary may still take writes (0: none).
    pub fn writable_ms(&self) -> u64 {
        self.writable_until
            .load(Ordering::Acquire)
            .saturating_sub(self.clock_ms())
    }

    /// How much earlier than its lease's end a primary stops taking writes.
    fn margin_ms(&self) -> u64 {
        (self.lease_ms / 6).max(100)
    }

    /// A lease granted (or renewed) by a statement sent at `sent_at` on the clock.
    fn granted(&self, sent_at: u64) {
        let until = sent_at + self.lease_ms - self.margin_ms();
        self.writable_until.fetch_max(until, Ordering::AcqRel);
        self.failsafe.store(false, Ordering::Release);
    }

    /// No more writes (the lease is lost).
    fn fence(&self) {
        self.writable_until.store(0, Ordering::Release);
    }

    /// The longest a lease statement may take before it counts as failed.
    fn statement_timeout(&self) -> Duration {
        Duration::from_millis((self.lease_ms / 4).max(100))
    }
}

/// Runs `statement` within the lease statement timeout.
async fn timed<T>(
    failover: &Failover,
    statement: impl std::future::Future<Output = Result<T, SinkError>>,
) -> Result<T, String> {
    match tokio::time::timeout(failover.statement_timeout(), statement).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "PostgreSQL did not answer within {} ms",
            failover.statement_timeout().as_millis()
        )),
    }
}

/// At a cluster node's start, before it loads anything: reads the leases (the configured
/// primary of a group without one claims its first), puts them in the layout, and renews
/// this node's own if it holds one. Retries while PostgreSQL cannot be reached.
///
/// With `fallback` (the role this node last had, [`crate::role_record`]), it stops retrying
/// after `give_up` and starts in that role instead ([`take_recorded_role`]).
pub async fn settle_role(
    server: &Arc<Server>,
    pool: &PgPool,
    fallback: Option<&crate::role_record::Role>,
    give_up: Option<Duration>,
) -> Result<(), StartError> {
    let Some(topology) = &server.cluster else {
        return Ok(());
    };
    let failover = &server.failover;
    let configured = topology.get();
    let me = configured.myself().id.clone();
    let group = configured.myself().group;
    let group_name = configured.group_name(group).to_owned();
    let lease_ms = server.config.cluster.lease_ms;
    let mut backoff = Duration::from_millis(200);
    let started = Instant::now();
    loop {
        let sent_at = failover.clock_ms();
        let settled = async {
            let mut leases = lease::leases(pool).await?;
            if !leases.iter().any(|lease| lease.group == group_name) && group == configured.me {
                leases.push(lease::claim_first(pool, &group_name, &me, lease_ms).await?);
            }
            let mine = leases
                .iter()
                .find(|lease| lease.group == group_name)
                .cloned();
            if let Some(mine) = mine.filter(|lease| lease.holder == me) {
                if let Renewal::Lost(now) =
                    lease::renew(pool, &group_name, &me, mine.term, lease_ms).await?
                {
                    leases.retain(|lease| lease.group != group_name);
                    leases.extend(now);
                }
            }
            let moves = lease::slot_moves(pool).await?;
            let rows = lease::member_rows(pool).await?;
            Ok::<_, SinkError>((leases, moves, rows))
        };
        match settled.await {
            Ok((leases, moves, rows)) => {
                crate::membership::apply_rows(server, &rows);
                take_role(server, &leases, &moves, sent_at);
                // Again, now that the leases put each group's primary in place: a forgotten
                // node config.toml makes a primary is forgotten once it is a replica.
                crate::membership::apply_rows(server, &rows);
                return Ok(());
            }
            Err(error) => {
                if let (Some(role), Some(limit)) = (fallback, give_up) {
                    if started.elapsed() >= limit {
                        warn!(%error, "the shard groups' leases cannot be read: starting in the recorded role");
                        take_recorded_role(server, role);
                        return Ok(());
                    }
                }
                warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot read the shard groups' leases yet");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = server.shutdown.cancelled() => {
                        return Err(StartError::Postgres("stopped before the leases were read".into()));
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// At the start, once PostgreSQL answered: the layout from the leases and moved slots, this
/// node's role and term from it (a primary's lease granted from `sent_at`).
fn take_role(server: &Server, leases: &[Lease], moves: &[lease::SlotMove], sent_at: u64) {
    let failover = &server.failover;
    apply_leases(server, leases, false);
    crate::migration::apply_recorded_moves(server, moves);
    let layout = server.layout().expect("cluster mode");
    if layout.myself().replica_of.is_none() {
        failover.granted(sent_at);
        record_history_term(&server.config.server.data_dir, layout.myself().epoch);
    }
    failover
        .term
        .store(layout.myself().epoch, Ordering::Release);
    failover.leased.store(true, Ordering::Release);
    let role = match layout.myself().replica_of {
        None => "primary".to_owned(),
        Some(primary) => format!("replica of {}", layout.nodes[primary].id),
    };
    info!(
        group = layout.group_name(layout.myself().group),
        term = layout.myself().epoch,
        %role,
        "the shard groups' leases are read"
    );
    crate::role_record::record_current(server);
}

/// At the start, when PostgreSQL cannot be reached: the role this node last had (its group's
/// primary then, and that lease's term), put in the layout. No write is granted: a primary
/// takes them only under failsafe (every replica of its group echoing it), and the leases
/// say again who holds what once PostgreSQL answers.
pub fn take_recorded_role(server: &Server, role: &crate::role_record::Role) {
    let Some(topology) = &server.cluster else {
        return;
    };
    let failover = &server.failover;
    topology.update(|layout| {
        let holder = layout.index_of(&role.holder)?;
        layout.with_primary(layout.myself().group, holder, role.term)
    });
    let layout = topology.get();
    let group = layout.myself().group;
    let holder = layout.primary_of_group(group);
    failover
        .term
        .store(layout.nodes[holder].epoch, Ordering::Release);
    failover.leased.store(true, Ordering::Release);
    failover
        .started_without_postgres
        .store(true, Ordering::Release);
    warn!(
        group = layout.group_name(group),
        primary = %layout.nodes[holder].id,
        term = layout.nodes[holder].epoch,
        "started without PostgreSQL, in the role recorded last: a primary takes writes only \
         while every replica of its group confirms it (failsafe)"
    );
}

/// Puts every lease's holder in the layout as its group's primary; whether anything changed.
/// `running`: this node's own role is left alone (it changes only by [`promote`] and
/// [`demote`], which do what a role change needs).
pub(crate) fn apply_leases(server: &Server, leases: &[Lease], running: bool) -> bool {
    let Some(topology) = &server.cluster else {
        return false;
    };
    topology.update(|current| leased_layout(current, leases, running))
}

/// `current` with every lease's holder as its group's primary, if that changes anything.
fn leased_layout(
    current: &cluster::Layout,
    leases: &[Lease],
    running: bool,
) -> Option<cluster::Layout> {
    let mut layout = current.clone();
    let mut changed = false;
    for lease in leases {
        let (Some(group), Some(holder)) = (
            layout.group_named(&lease.group),
            layout.index_of(&lease.holder),
        ) else {
            continue;
        };
        let current = layout.primary_of_group(group);
        if current == holder && layout.nodes[holder].epoch == lease.term {
            continue;
        }
        if running && current != holder && (current == layout.me || holder == layout.me) {
            continue;
        }
        let Some(next) = layout.with_primary(group, holder, lease.term) else {
            warn!(group = %lease.group, holder = %lease.holder, "a lease names a node outside its shard group; ignored");
            continue;
        };
        if current != holder {
            info!(
                group = %lease.group,
                from = %layout.nodes[current].id,
                to = %lease.holder,
                term = lease.term,
                "a shard group has a new primary"
            );
        }
        layout = next;
        changed = true;
    }
    changed.then_some(layout)
}

/// The failover job of a cluster node with PostgreSQL: see the module notes.
pub async fn run(server: Arc<Server>) {
    let failover = &server.failover;
    let tick = Duration::from_millis(server.config.cluster.lease_ms / 4);
    loop {
        // A node about to start over in another shard group renews and reports nothing.
        let pending = failover.start_over_pending.load(Ordering::Acquire);
        let stepped = if pending {
            Ok(tick)
        } else {
            step(&server).await
        };
        let wait = match stepped {
            Ok(wait) => wait,
            Err(why) => {
                let failures = failover.lease_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures == 1 || failures.is_multiple_of(40) {
                    warn!(%why, failures, "a lease statement failed");
                }
                if server.primary().is_none() {
                    failsafe(&server);
                }
                tick
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait.min(tick)) => {}
            () = failover.wake.notified() => {}
            () = server.shutdown.cancelled() => return,
        }
        let manual = failover.manual.lock().take();
        if let Some(manual) = manual {
            let done = match &manual {
                Manual::Handover(node) => hand_over(&server, node).await,
                Manual::Failover(mode) => fail_over(&server, *mode).await,
            };
            if let Err(why) = done {
                warn!(?manual, %why, "the manual failover did not happen");
            }
        }
    }
}

/// The pool of this node's link to PostgreSQL.
pub(crate) fn pool_of(server: &Server) -> Result<PgPool, String> {
    server
        .durability
        .get()
        .and_then(|durability| durability.postgres.as_ref())
        .map(|postgres| postgres.lease_pool().clone())
        .ok_or_else(|| "no link to PostgreSQL".to_owned())
}

/// `CLUSTER HANDOVER node` on a primary (writes are held already): waits until `node`, one
/// of its replicas, has acknowledged every record of its log, hands it the lease in
/// PostgreSQL with a new term, and starts over as its replica. Writes resume if it cannot.
async fn hand_over(server: &Arc<Server>, node: &str) -> Result<(), String> {
    let failover = &server.failover;
    let handed = async {
        let pool = pool_of(server)?;
        let layout = server.layout().ok_or("not in cluster mode")?;
        let group = layout.group_name(layout.myself().group).to_owned();
        let wal = server.durable().wal.clone();
        // A write admitted just before the hold is appended within microseconds.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let deadline = Instant::now() + Duration::from_millis(MANUAL_FAILOVER_TIMEOUT_MS);
        let last = loop {
            let last = wal.last_lsn();
            let acked = server
                .replication
                .followers()
                .iter()
                .filter(|follower| follower.node.as_deref() == Some(node))
                .map(|follower| follower.acked_lsn)
                .max();
            if acked.is_some_and(|acked| acked >= last) {
                break last;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{node} acknowledged {acked:?} of this log's {last} records within \
                     {MANUAL_FAILOVER_TIMEOUT_MS} ms"
                ));
            }
            tokio::select! {
                () = server.replication.acked.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        };
        let lease_ms = server.config.cluster.lease_ms;
        let term = failover.term();
        let taken = lease::take_over(&pool, &group, node, term, true, lease_ms, Fork::at(last));
        match timed(failover, taken).await? {
            Some(takeover) => Ok((takeover, last)),
            None => Err("the lease is no longer this node's".to_owned()),
        }
    };
    match handed.await {
        Ok((takeover, last)) => {
            info!(%node, term = takeover.term, lsn = last, "the lease is handed over");
            let now = Lease {
                group: String::new(),
                holder: node.to_owned(),
                term: takeover.term,
                remaining_ms: 0,
                since_lsn: last,
            };
            demote(server, Some(now))
        }
        Err(why) => {
            failover.release_hold();
            Err(why)
        }
    }
}

/// `CLUSTER FAILOVER [FORCE|TAKEOVER]` on a replica.
async fn fail_over(server: &Arc<Server>, mode: FailoverMode) -> Result<(), String> {
    let pool = pool_of(server)?;
    let layout = server.layout().ok_or("not in cluster mode")?;
    let primary = layout.myself().replica_of.ok_or("this node is a primary")?;
    let group = layout.group_name(layout.myself().group).to_owned();
    let me = layout.myself().id.clone();
    let failover = &server.failover;
    let lease_ms = server.config.cluster.lease_ms;
    match mode {
        FailoverMode::Planned => {
            let peers = server.peers.as_ref().ok_or("no peer links")?;
            let words: [&[u8]; 3] = [b"CLUSTER", b"HANDOVER", me.as_bytes()];
            if let crate::peers::wire::Value::Error(error) =
                peers.calls.call(primary, &words).await?
            {
                return Err(error);
            }
            let deadline = Instant::now() + Duration::from_millis(2 * MANUAL_FAILOVER_TIMEOUT_MS);
            loop {
                if let Some(lease) = timed(failover, lease::lease(&pool, &group)).await? {
                    if lease.holder == me {
                        return promote_from_lease(server, &pool, &lease).await;
                    }
                }
                if Instant::now() > deadline {
                    return Err("the primary did not hand the lease over".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        FailoverMode::Force => {
            // Not following, this replica confirms nothing: the primary, if alive and cut off
            // PostgreSQL, stops within a lease; take the lease once it lapses.
            server.replication.stop_following().await;
            let deadline = Instant::now() + Duration::from_millis(3 * lease_ms + 5_000);
            let stopped_at = failover.clock_ms();
            loop {
                let lease = timed(failover, lease::lease(&pool, &group)).await;
                if let Ok(Some(lease)) = lease {
                    let silent = failover.clock_ms() - stopped_at >= lease_ms;
                    if lease.remaining_ms < 0 && silent {
                        return take_over(server, &pool, &lease).await;
                    }
                }
                if Instant::now() > deadline {
                    server.replication.start_following(server);
                    return Err("the primary's lease did not lapse: it is alive".into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        FailoverMode::Takeover => take_over_now(server, &pool, &group, &me).await,
    }
}

/// `CLUSTER FAILOVER TAKEOVER`: takes `group`'s lease at once, whatever its state; this
/// node's writes wait out one lease, by which the old primary has stopped its own.
async fn take_over_now(
    server: &Arc<Server>,
    pool: &PgPool,
    group: &str,
    me: &str,
) -> Result<(), String> {
    let failover = &server.failover;
    let lease_ms = server.config.cluster.lease_ms;
    let lease = timed(failover, lease::lease(pool, group))
        .await?
        .ok_or("the group has no lease")?;
    server.replication.stop_following().await;
    let wal = server.durable().wal.clone();
    let fork = wal.last_lsn();
    let sent_at = failover.clock_ms();
    let shared = shared_lsn(server, &lease, fork);
    let fork_at = Fork { shared, last: fork };
    let taken = lease::take_over(pool, group, me, lease.term, true, lease_ms, fork_at);
    match timed(failover, taken).await {
        Ok(Some(takeover)) => {
            // The old primary may take writes until the lease it last renewed (before this
            // take-over committed) ends: none here before then.
            failover
                .hold_until
                .store(failover.clock_ms() + lease_ms, Ordering::Release);
            promote(server, pool, takeover, (fork, shared), sent_at).await;
            Ok(())
        }
        other => {
            server.replication.start_following(server);
            Err(format!("the take-over failed: {other:?}"))
        }
    }
}

/// The lease names this replica (its primary handed it over, or it took it and restarted):
/// renews it, stops following and is promoted. Nothing of the old history is missing here
/// (a hand-over waits for it), so no cart is reloaded from PostgreSQL.
async fn promote_from_lease(
    server: &Arc<Server>,
    pool: &PgPool,
    lease: &Lease,
) -> Result<(), String> {
    let failover = &server.failover;
    let me = server.config.cluster.node_id.clone();
    let lease_ms = server.config.cluster.lease_ms;
    let sent_at = failover.clock_ms();
    let renewed = lease::renew(pool, &lease.group, &me, lease.term, lease_ms);
    if timed(failover, renewed).await? != Renewal::Renewed {
        return Err("the lease changed hands again".into());
    }
    server.replication.stop_following().await;
    let fork = server.durable().wal.last_lsn();
    let takeover = TakeOver {
        term: lease.term,
        checkpoint: (0, 0),
    };
    promote(server, pool, takeover, (fork, fork), sent_at).await;
    Ok(())
}

/// One tick; returns how long to wait before the next (shorter when a lease is about to
/// lapse, so a replica takes it at once).
async fn step(server: &Arc<Server>) -> Result<Duration, String> {
    let failover = &server.failover;
    let Some(durability) = server.durability.get() else {
        return Ok(Duration::MAX);
    };
    let Some(pool) = durability
        .postgres
        .as_ref()
        .map(|postgres| postgres.lease_pool().clone())
    else {
        return Ok(Duration::MAX);
    };
    let topology = server
        .cluster
        .as_ref()
        .expect("failover runs in cluster mode");
    let layout = topology.get();
    let me = layout.myself().id.clone();
    let group = layout.myself().group;
    let group_name = layout.group_name(group).to_owned();
    let lease_ms = server.config.cluster.lease_ms;
    if layout.myself().replica_of.is_none() {
        let sent_at = failover.clock_ms();
        let term = failover.term();
        match timed(
            failover,
            lease::renew(&pool, &group_name, &me, term, lease_ms),
        )
        .await?
        {
            Renewal::Renewed => failover.granted(sent_at),
            // This node raised its own term meanwhile (a slot it imports; the raise may not
            // have reached `failover.term` yet): still its lease, renewed next tick.
            Renewal::Lost(Some(now)) if now.holder == me && now.term > term => {}
            Renewal::Lost(now) => demote(server, now),
        }
    } else {
        let acked = durability.wal.ack_lsn();
        let term = failover.term();
        timed(
            failover,
            lease::report(&pool, &me, &group_name, acked, term),
        )
        .await?;
    }
    let leases = members_and_leases(server, &pool).await?;
    crate::role_record::record_current(server);
    let mine = leases.iter().find(|lease| lease.group == group_name);
    if let Some(lease) =
        mine.filter(|lease| lease.holder == me && layout.myself().replica_of.is_some())
    {
        promote_from_lease(server, &pool, lease).await?;
        return Ok(Duration::MAX);
    }
    apply_leases(server, &leases, true);
    let moves = timed(failover, lease::slot_moves(&pool)).await?;
    crate::migration::apply_recorded_moves(server, &moves);
    let layout = topology.get();
    failover
        .term
        .store(layout.myself().epoch, Ordering::Release);
    match leases.iter().find(|lease| lease.group == group_name) {
        Some(lease) if layout.myself().replica_of.is_some() => {
            if server.replication.link.up.load(Ordering::Acquire) {
                follow_history(server, lease.term);
            }
            replica_step(server, &pool, &layout, lease).await
        }
        _ => Ok(Duration::MAX),
    }
}

/// Puts PostgreSQL's `cluster_nodes` in this node's layout, then reads the leases (of the
/// groups that came too).
async fn members_and_leases(server: &Arc<Server>, pool: &PgPool) -> Result<Vec<Lease>, String> {
    let failover = &server.failover;
    let rows = timed(failover, lease::member_rows(pool)).await?;
    crate::membership::apply_rows(server, &rows);
    timed(failover, lease::leases(pool)).await
}

/// A replica's part of a tick: takes `lease` (its group's) over once it has lapsed, the
/// primary has been silent for a whole lease, and no fresher member holds more.
async fn replica_step(
    server: &Arc<Server>,
    pool: &PgPool,
    layout: &cluster::Layout,
    lease: &Lease,
) -> Result<Duration, String> {
    let failover = &server.failover;
    let lease_ms = server.config.cluster.lease_ms;
    let me = &layout.myself().id;
    let Some(primary) = layout.myself().replica_of else {
        return Ok(Duration::MAX);
    };
    if lease.holder != layout.nodes[primary].id {
        return Ok(Duration::MAX);
    }
    // A replica that hears its primary never takes the lease: that is the word a primary
    // without PostgreSQL goes on by (failsafe).
    let link = &server.replication.link;
    let heard = link.last_ping_at.load(Ordering::Acquire);
    let silent_ms = if heard == 0 {
        u64::MAX
    } else {
        failover.clock_ms().saturating_sub(heard)
    };
    let lapsed = lease.remaining_ms < 0;
    if !lapsed || silent_ms < lease_ms {
        let until_lapse = u64::try_from(lease.remaining_ms.max(0)).unwrap_or(0);
        let until_silent = lease_ms.saturating_sub(silent_ms);
        return Ok(Duration::from_millis(until_lapse.max(until_silent) + 20));
    }
    let members = timed(failover, lease::members(pool, &lease.group)).await?;
    let (checkpoint_term, checkpoint_lsn) = timed(
        failover,
        persistence::sink::checkpoint_at(pool, &lease.group),
    )
    .await?;
    let streamed = if checkpoint_term == lease.term {
        checkpoint_lsn
    } else {
        0
    };
    let best = successor(layout, &members, lease, lease_ms, streamed);
    let long_lapsed = lease.remaining_ms < -i64::try_from(2 * lease_ms).unwrap_or(i64::MAX);
    if best.is_some_and(|best| &best.node != me) && !long_lapsed {
        return Ok(Duration::from_millis(lease_ms / 8));
    }
    take_over(server, pool, lease).await?;
    Ok(Duration::MAX)
}

/// The member of the lapsed `lease`'s group that should take it over: of those that
/// reported within two leases, one that loses no acknowledged record (its log, or with what
/// PostgreSQL holds of the history up to `streamed`, reaches the furthest any of them
/// acknowledged), in the lapsed primary's region before any other (a passive region's
/// replica waits while one is left there), the one with the most of the log first.
fn successor<'m>(
    layout: &cluster::Layout,
    members: &'m [lease::Member],
    lease: &Lease,
    lease_ms: u64,
    streamed: Lsn,
) -> Option<&'m lease::Member> {
    let group = layout.myself().group;
    let node_of = |member: &lease::Member| layout.index_of(&member.node);
    let fresh: Vec<&lease::Member> = members
        .iter()
        .filter(|member| {
            member.node != lease.holder
                && member.age_ms < i64::try_from(2 * lease_ms).unwrap_or(i64::MAX)
                && node_of(member).is_some_and(|at| layout.nodes[at].group == group)
        })
        .collect();
    let furthest = fresh.iter().map(|member| member.acked_lsn).max()?;
    let home = layout
        .index_of(&lease.holder)
        .map(|at| layout.nodes[at].region.as_str());
    let rank = |member: &lease::Member| {
        let complete = member.acked_lsn.max(streamed) >= furthest;
        let at_home = node_of(member).map(|at| layout.nodes[at].region.as_str()) == home;
        (complete, at_home, member.acked_lsn)
    };
    fresh
        .into_iter()
        .max_by(|a, b| rank(a).cmp(&rank(b)).then(b.node.cmp(&a.node)))
}

/// Stops following, takes the lapsed `lease` with a new term and is promoted; follows again
/// if another node got it first.
async fn take_over(server: &Arc<Server>, pool: &PgPool, lease: &Lease) -> Result<(), String> {
    let failover = &server.failover;
    let me = server.config.cluster.node_id.clone();
    server.replication.stop_following().await;
    let wal = server.durable().wal.clone();
    let fork = wal.last_lsn();
    let shared = shared_lsn(server, lease, fork);
    let sent_at = failover.clock_ms();
    let lease_ms = server.config.cluster.lease_ms;
    let fork_at = Fork { shared, last: fork };
    let taken = lease::take_over(
        pool,
        &lease.group,
        &me,
        lease.term,
        false,
        lease_ms,
        fork_at,
    );
    match timed(failover, taken).await {
        Ok(Some(takeover)) => {
            promote(server, pool, takeover, (fork, shared), sent_at).await;
            Ok(())
        }
        Ok(None) => {
            info!(group = %lease.group, "another node took the lease first; following on");
            server.replication.start_following(server);
            Ok(())
        }
        Err(why) => {
            server.replication.start_following(server);
            Err(why)
        }
    }
}

/// Turns this replica into its group's primary at `takeover`'s term: a new history (forked
/// from the old one after `fork`), the layout, the carts of the lag window from PostgreSQL
/// (those streamed past `shared`, where this log and PostgreSQL's history last agree),
/// deadlines and gift card holds, then writes, the sink under the new term and the primary's
/// jobs.
async fn promote(
    server: &Arc<Server>,
    pool: &PgPool,
    takeover: TakeOver,
    (fork, shared): (Lsn, Lsn),
    sent_at: u64,
) {
    let started = Instant::now();
    let failover = &server.failover;
    let topology = server.cluster.as_ref().expect("cluster mode");
    let replication = &server.replication;
    let previous = (replication.id(), fork);
    let id = crate::replication::new_id();
    let data_dir = &server.config.server.data_dir;
    if let Err(error) = crate::replication::record_history(data_dir, &id, Some(&previous)) {
        error!(%error, "cannot record the promoted node's history; stopping");
        std::process::exit(1);
    }
    replication.set_previous(Some(previous));
    replication.set_id(id);
    record_history_term(data_dir, takeover.term);
    topology.update(|layout| layout.with_primary(layout.myself().group, layout.me, takeover.term));
    failover.term.store(takeover.term, Ordering::Release);
    crate::role_record::record_current(server);
    let (checkpoint_term, checkpoint_lsn) = takeover.checkpoint;
    let mut report = PromotionReport {
        term: takeover.term,
        fork_lsn: fork,
        ..PromotionReport::default()
    };
    if checkpoint_lsn > shared {
        report.reloaded_carts = reload_lag_window(server, pool, checkpoint_term, shared).await;
    }
    report.shared_lsn = shared;
    if fork > shared {
        report.forked_carts =
            drop_forked_records(server, pool, checkpoint_lsn, (fork, shared)).await;
    }
    let store_server = server.clone();
    let prepared =
        tokio::task::spawn_blocking(move || store_server.store.prepare_promotion(now_ms()))
            .await
            .expect("the promotion pass does not panic");
    report.deadlines_moved = prepared.deadlines_moved;
    report.holds = prepared.holds;
    server.store.set_writable();
    failover.granted(sent_at);
    if let Some(postgres) = &server.durable().postgres {
        postgres.start_jobs(
            server,
            Term {
                term: takeover.term,
                leased: true,
            },
        );
    }
    crate::server::start_primary_jobs(server);
    report.millis = started.elapsed().as_millis() as u64;
    failover.promotions.fetch_add(1, Ordering::Relaxed);
    warn!(
        term = report.term,
        fork_lsn = report.fork_lsn,
        reloaded_carts = report.reloaded_carts,
        deadlines_moved = report.deadlines_moved,
        holds = report.holds,
        ms = report.millis,
        "promoted: this node is its shard group's primary"
    );
    *failover.last_promotion.lock() = Some(report);
}

/// Takes back the carts of this node's slots that the old primary streamed to PostgreSQL
/// under `term` past `fork` (this node never had them); retried a few times. Returns how many.
async fn reload_lag_window(server: &Arc<Server>, pool: &PgPool, term: u64, fork: Lsn) -> u64 {
    let Some(postgres) = server.durable().postgres.as_ref() else {
        return 0;
    };
    for attempt in 1..=5u32 {
        match postgres.reload_lag_window(server, pool, term, fork).await {
            Ok(count) => return count,
            Err(why) => {
                warn!(%why, attempt, "cannot take back the carts of the lag window yet");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    error!(
        term,
        fork, "the carts of the lag window could not be read from PostgreSQL: they stay lost"
    );
    0
}

/// This log's records after `shared` (up to `fork`) are of a history the group left when
/// another node took over (this node, its primary then, died first): they are set aside, the
/// carts they changed become what PostgreSQL has (the history that went on), and what the
/// sink is not to stream again of the records before them (from `streamed`, where
/// PostgreSQL's checkpoint of that history stood) is logged again whole. The sink starts
/// after `fork` ([`lease::Fork`]). Returns the carts made PostgreSQL's; retried a few times.
async fn drop_forked_records(
    server: &Arc<Server>,
    pool: &PgPool,
    streamed: Lsn,
    (fork, shared): (Lsn, Lsn),
) -> u64 {
    let wal = server.durable().wal.clone();
    if let Err(why) = crate::replication::set_aside_after(server, &wal, shared).await {
        error!(%why, "cannot set aside the records past the fork; they stay in the log");
    }
    let reader = wal.reader();
    let read = tokio::task::spawn_blocking(move || {
        changed_carts(reader, streamed.min(shared), shared, fork)
    })
    .await
    .expect("reading the log does not panic");
    let (before, after) = match read {
        Ok(keys) => keys,
        Err(error) => {
            error!(%error, "cannot read the records past the fork; their carts stay as they are");
            return 0;
        }
    };
    let Some(postgres) = server.durable().postgres.as_ref() else {
        return 0;
    };
    let of = |set: &HashSet<Changed>, space: Space| -> HashSet<Bytes> {
        set.iter()
            .filter(|(of, _)| *of == space)
            .map(|(_, key)| key.clone())
            .collect()
    };
    let (carts, cards) = (of(&after, Space::Cart), of(&after, Space::GiftCard));
    for attempt in 1..=5u32 {
        let taken = async {
            let count = postgres.take_carts_back(server, pool, &carts).await?;
            postgres.take_gift_cards_back(server, pool, &cards).await?;
            Ok::<u64, String>(count)
        };
        match taken.await {
            Ok(count) => {
                let now = now_ms();
                let relogged = before
                    .iter()
                    .filter(|changed| !after.contains(*changed))
                    .filter(|(space, key)| match space {
                        Space::Cart => server.store.relog_cart(key, now),
                        _ => server.store.relog_gift_card(key, now),
                    })
                    .count();
                warn!(
                    shared,
                    fork,
                    carts = count,
                    relogged,
                    "records of the history the group left set aside; their carts are \
                     PostgreSQL's again"
                );
                return count;
            }
            Err(why) => {
                warn!(%why, attempt, "cannot take the forked carts from PostgreSQL yet");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    error!(
        shared,
        fork, "the forked carts could not be read from PostgreSQL"
    );
    0
}

/// A cart or a gift card a record changed.
type Changed = (persistence::record::Space, Bytes);

/// The carts and gift cards changed by the records after `from` up to `shared`, and by those
/// after `shared` up to `fork`.
fn changed_carts(
    mut reader: persistence::WalReader,
    from: Lsn,
    shared: Lsn,
    fork: Lsn,
) -> std::io::Result<(HashSet<Changed>, HashSet<Changed>)> {
    use persistence::record::RecordSource;
    let (mut before, mut after) = (HashSet::new(), HashSet::new());
    let mut at = from;
    while at < fork {
        let records = reader.read_after(at, 1024)?;
        let Some(last) = records.last().map(|record| record.lsn) else {
            break;
        };
        for record in records.iter().filter(|record| record.lsn <= fork) {
            let keys = if record.lsn > shared {
                &mut after
            } else {
                &mut before
            };
            let changed = record
                .changes
                .iter()
                .filter(|change| matches!(change.space, Space::Cart | Space::GiftCard));
            keys.extend(changed.map(|change| (change.space, change.key.clone())));
        }
        at = last;
    }
    Ok((before, after))
}

/// A primary whose lease is now another node's (`now`): no more writes, and this process
/// starts over, to rejoin as that node's replica.
fn demote(server: &Server, now: Option<Lease>) -> ! {
    server.failover.fence();
    let holder = now.as_ref().map_or("nobody", |lease| lease.holder.as_str());
    let term = now.as_ref().map_or(0, |lease| lease.term);
    warn!(%holder, term, "this node's lease is lost: no more writes; starting over as a replica");
    if let Some(now) = &now {
        let role = crate::role_record::Role {
            holder: now.holder.clone(),
            term: now.term,
        };
        crate::role_record::record(&server.config.server.data_dir, &role);
    }
    if let Some(durability) = server.durability.get() {
        durability.wal.write_queued();
        let _ = durability.wal.sync();
    }
    crate::replication::start_over()
}

/// PostgreSQL cannot be reached: this primary goes on taking writes while every replica of
/// its group echoes a recent ping (none of them takes the lease meanwhile), until a lease's
/// length after the oldest echoed ping, less the margin. A group with no replicas has nobody
/// to take over and goes on.
fn failsafe(server: &Server) {
    let Some(layout) = server.layout() else {
        return;
    };
    let failover = &server.failover;
    let me = layout.me;
    let followers = server.replication.followers();
    let mut until = failover.clock_ms() + failover.lease_ms - failover.margin_ms();
    for member in layout.members(layout.myself().group).filter(|&at| at != me) {
        let id = &layout.nodes[member].id;
        let echo = followers
            .iter()
            .filter(|follower| follower.state == "online" && follower.node.as_ref() == Some(id))
            .map(|follower| follower.ping_echo)
            .max();
        match echo {
            Some(echo) if echo > 0 => {
                until = until.min(echo + failover.lease_ms - failover.margin_ms());
            }
            _ => return,
        }
    }
    if failover.writable_until.fetch_max(until, Ordering::AcqRel) < until
        && !failover.failsafe.swap(true, Ordering::AcqRel)
    {
        warn!("PostgreSQL cannot be reached: writes go on while every replica confirms (failsafe)");
    }
}

/// Where this node's log (ending at `fork`) and the history of `lease`'s term last agree: its
/// end if it followed that lease's holder (or held it); for one back after that holder died,
/// with the history of the term before, only up to where that term began (PostgreSQL's rows
/// past it are the other's).
fn shared_lsn(server: &Server, lease: &Lease, fork: Lsn) -> Lsn {
    let followed =
        history_term(&server.config.server.data_dir).is_none_or(|term| term == lease.term);
    if followed {
        fork
    } else {
        fork.min(lease.since_lsn)
    }
}

/// The file in the data directory naming the term whose history this node's log follows.
const HISTORY_TERM_FILE: &str = "history-term";

/// Records that this node's log follows the history of `term`: its own lease's (a primary),
/// or its primary's lease's once the replication link is made (and while it is up). A
/// failure is logged: a node without the file takes over as before, trusting its log to be
/// the lapsed lease's history.
pub fn record_history_term(data_dir: &std::path::Path, term: u64) {
    let written =
        crate::durability::replace_file(&data_dir.join(HISTORY_TERM_FILE), format!("{term}\n"));
    if let Err(error) = written {
        warn!(%error, term, "cannot record the term of this node's history");
    }
}

/// A replica whose link is up follows its primary's history, `term`'s.
fn follow_history(server: &Server, term: u64) {
    let data_dir = &server.config.server.data_dir;
    if history_term(data_dir) != Some(term) {
        record_history_term(data_dir, term);
    }
}

/// The term whose history this node's log follows, if recorded.
fn history_term(data_dir: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(data_dir.join(HISTORY_TERM_FILE)).ok()?;
    text.trim().parse().ok()
}
