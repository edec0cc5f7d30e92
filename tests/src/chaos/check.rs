//! The checks after a fault: every waited write is on the cluster (its line there, the cart's
//! version at least the acknowledged one), every cart on exactly one primary (its slot's), and
//! PostgreSQL equal to the cluster once each primary's sink has caught up; and the report:
//! per shard group the writes acknowledged and lost, with and without WAIT, and the time
//! without a primary (from a failed write to the next write taken). [`handover`] reads from
//! the records whether a group's old and new primary ever took writes at the same time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis::Value;

use super::load::Records;
use super::router::{connect, slot, slot_map, Router};
use super::{ChaosCluster, Groups, Nodes, SETTLE_TIMEOUT};

/// Lost writes and misplaced carts named in a report, at most.
const EXAMPLES_MAX: usize = 10;

/// A cart as the cluster has it.
#[derive(Debug, Clone)]
pub struct Cart {
    /// Its version.
    pub version: i64,
    /// Its lines' products.
    pub skus: HashSet<String>,
}

/// One shard group's numbers.
#[derive(Debug, Clone, Default)]
pub struct GroupReport {
    /// Its name.
    pub name: String,
    /// Writes acknowledged.
    pub acks: usize,
    /// ... of which WAIT 1 said a replica had them.
    pub waited: usize,
    /// Writes that failed.
    pub failures: usize,
    /// Waited writes not on the cluster.
    pub lost_waited: usize,
    /// Writes acknowledged without a replica's word and not on the cluster.
    pub lost_unwaited: usize,
    /// Each stretch without a primary: from a failed write to the next write taken (start,
    /// length, on the load clock).
    pub outages: Vec<(Duration, Duration)>,
}

/// What one scenario's checks found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per shard group.
    pub groups: Vec<GroupReport>,
    /// Some of the lost writes, named.
    pub lost: Vec<String>,
    /// Carts on no primary, on two, or on one that does not serve their slot.
    pub misplaced: Vec<String>,
    /// Carts whose version in PostgreSQL is not the cluster's (or a sink that did not catch
    /// up).
    pub postgres: Vec<String>,
    /// Carts compared with PostgreSQL.
    pub postgres_compared: usize,
    /// The errors the clients saw, by kind.
    pub errors: BTreeMap<String, usize>,
}

impl Report {
    /// Waited writes lost, in all groups.
    pub fn lost_waited(&self) -> usize {
        self.groups.iter().map(|group| group.lost_waited).sum()
    }

    /// Unwaited writes lost, in all groups.
    pub fn lost_unwaited(&self) -> usize {
        self.groups.iter().map(|group| group.lost_unwaited).sum()
    }

    /// The stretch without a primary of `group` that began at `at` or after (a kill's).
    pub fn outage_after(&self, group: usize, at: Duration) -> Option<Duration> {
        let from = at.saturating_sub(Duration::from_millis(100));
        self.groups[group]
            .outages
            .iter()
            .find(|(start, _)| *start >= from)
            .map(|(_, length)| *length)
    }

    /// Panics (with the report) unless every waited write is there, every cart on one primary
    /// and PostgreSQL equal to the cluster; with `unwaited_too`, unless no write is lost.
    pub fn assert_correct(&self, unwaited_too: bool) {
        assert_eq!(self.lost_waited(), 0, "waited writes lost:\n{self}");
        if unwaited_too {
            assert_eq!(self.lost_unwaited(), 0, "writes lost:\n{self}");
        }
        assert!(self.misplaced.is_empty(), "misplaced carts:\n{self}");
        assert!(self.postgres.is_empty(), "PostgreSQL differs:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for group in &self.groups {
            let longest = group.outages.iter().map(|(_, length)| *length).max();
            let total: Duration = group.outages.iter().map(|(_, length)| *length).sum();
            writeln!(
                f,
                "group {}: {} writes acknowledged ({} waited), {} failed; lost {} waited, {} \
                 unwaited; without a primary {} times, longest {} ms, {} ms in all",
                group.name,
                group.acks,
                group.waited,
                group.failures,
                group.lost_waited,
                group.lost_unwaited,
                group.outages.len(),
                longest.unwrap_or_default().as_millis(),
                total.as_millis()
            )?;
        }
        for (kind, count) in &self.errors {
            writeln!(f, "  {count} x {kind}")?;
        }
        for lost in &self.lost {
            writeln!(f, "  lost: {lost}")?;
        }
        for misplaced in &self.misplaced {
            writeln!(f, "  misplaced: {misplaced}")?;
        }
        for differs in &self.postgres {
            writeln!(f, "  PostgreSQL: {differs}")?;
        }
        write!(
            f,
            "{} carts compared with PostgreSQL, {} differ; {} misplaced",
            self.postgres_compared,
            self.postgres.len(),
            self.misplaced.len()
        )
    }
}

/// Waits until the cluster is settled, then checks `records` (keys under `prefix`).
pub async fn verify<N: Nodes>(chaos: &ChaosCluster<N>, records: &Records, prefix: &str) -> Report {
    settle(chaos).await;
    let carts = read_carts(chaos, records).await;
    let mut report = count(chaos.groups, records, &carts);
    report.misplaced = misplaced(chaos, &carts).await;
    compare_postgres(chaos, prefix, &carts, &mut report).await;
    report
}

/// Acknowledged writes and failures by group, the lost ones, the stretches without primary.
pub fn count(groups: Groups, records: &Records, carts: &HashMap<String, Option<Cart>>) -> Report {
    let mut report = Report {
        groups: (0..usize::from(groups.primaries))
            .map(|group| GroupReport {
                name: groups.name(group),
                outages: outages(records, group),
                ..GroupReport::default()
            })
            .collect(),
        ..Report::default()
    };
    for ack in &records.acks {
        let group = &mut report.groups[ack.group];
        group.acks += 1;
        group.waited += usize::from(ack.waited);
        let held = carts.get(&ack.key).and_then(Option::as_ref);
        if held.is_some_and(|cart| cart.version >= ack.version && cart.skus.contains(&ack.sku)) {
            continue;
        }
        if ack.waited {
            group.lost_waited += 1;
        } else {
            group.lost_unwaited += 1;
        }
        if report.lost.len() < EXAMPLES_MAX {
            report.lost.push(format!(
                "{} {} v{} (waited: {}) acknowledged by {} at {} ms; the cluster has {:?}",
                ack.key,
                ack.sku,
                ack.version,
                ack.waited,
                ack.acked_by,
                ack.at.as_millis(),
                held.map(|cart| cart.version)
            ));
        }
    }
    for failure in &records.failures {
        report.groups[failure.group].failures += 1;
        *report.errors.entry(error_kind(&failure.error)).or_default() += 1;
    }
    report
}

/// An error's kind: its text without the node's address and numbers.
fn error_kind(error: &str) -> String {
    let text = error.split_once(": ").map_or(error, |(_, rest)| rest);
    let kind: String = text
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .take(70)
        .collect();
    kind
}

/// `group`'s stretches without a primary: each from a failed write while the group was
/// taking writes to the next write it took (or the load's end).
pub fn outages(records: &Records, group: usize) -> Vec<(Duration, Duration)> {
    let mut events: Vec<(Duration, bool)> = records
        .acks
        .iter()
        .filter(|ack| ack.group == group)
        .map(|ack| (ack.at, true))
        .chain(
            records
                .failures
                .iter()
                .filter(|failure| failure.group == group)
                .map(|failure| (failure.at, false)),
        )
        .collect();
    events.sort();
    let mut stretches = Vec::new();
    let mut open = None;
    for (at, taken) in &events {
        match (taken, open) {
            (false, None) => open = Some(*at),
            (true, Some(start)) => {
                stretches.push((start, *at - start));
                open = None;
            }
            _ => {}
        }
    }
    if let (Some(start), Some((end, _))) = (open, events.last()) {
        stretches.push((start, *end - start));
    }
    stretches
}

/// Acknowledged writes of `group` between `from` and `to` (load clock).
pub fn acks_between(records: &Records, group: usize, from: Duration, to: Duration) -> usize {
    records
        .acks
        .iter()
        .filter(|ack| ack.group == group && ack.at >= from && ack.at <= to)
        .count()
}

/// Waits until every group takes writes and every node agrees on who serves what: each
/// node's CLUSTER SLOTS the same map, and the nodes saying `master` exactly its owners.
pub async fn settle<N: Nodes>(chaos: &ChaosCluster<N>) {
    for group in 0..usize::from(chaos.groups.primaries) {
        chaos.until_writable(group, None).await;
    }
    let started = Instant::now();
    loop {
        let (agreed, seen) = agreed_map(chaos).await;
        if agreed {
            return;
        }
        assert!(
            started.elapsed() < SETTLE_TIMEOUT,
            "the nodes do not agree on the slots 30 s on: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every node has one slot map whose owners are exactly the masters; what was seen.
async fn agreed_map<N: Nodes>(chaos: &ChaosCluster<N>) -> (bool, String) {
    let mut maps = Vec::new();
    for node in chaos.addrs() {
        let Ok(mut conn) = connect(node).await else {
            return (false, format!("{node} does not answer"));
        };
        let reply: redis::RedisResult<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await;
        match reply.ok().as_ref().and_then(slot_map) {
            Some(map) => maps.push(map),
            None => return (false, format!("{node} gives no slot map")),
        }
    }
    if maps.windows(2).any(|pair| pair[0] != pair[1]) {
        return (false, "the nodes' slot maps differ".into());
    }
    let mut owners: Vec<SocketAddr> = maps[0].iter().flatten().copied().collect();
    owners.sort_unstable();
    owners.dedup();
    let mut masters: Vec<SocketAddr> = chaos
        .masters()
        .await
        .into_iter()
        .map(|node| chaos.addr(node))
        .collect();
    masters.sort_unstable();
    let agreed = owners == masters && maps[0].iter().all(Option::is_some);
    (agreed, format!("owners {owners:?}, masters {masters:?}"))
}

/// Every recorded cart as the cluster has it now (`None`: no such cart).
pub async fn read_carts<N: Nodes>(
    chaos: &ChaosCluster<N>,
    records: &Records,
) -> HashMap<String, Option<Cart>> {
    let keys: HashSet<&str> = records.acks.iter().map(|ack| ack.key.as_str()).collect();
    let mut router = Router::new(chaos.addrs());
    let mut carts = HashMap::new();
    for key in keys {
        let get = redis::cmd("CART.GET")
            .arg(key)
            .arg("NOVALIDATE")
            .arg("FORMAT")
            .arg("JSON")
            .clone();
        let mut attempts = 0;
        let reply = loop {
            attempts += 1;
            match router.send(key, &get).await {
                Ok(replied) => break replied.value,
                Err(error) => assert!(attempts < 50, "CART.GET {key}: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        carts.insert(key.to_owned(), cart_of(&reply));
    }
    carts
}

/// A cart from a `CART.GET ... FORMAT JSON` reply.
fn cart_of(reply: &Value) -> Option<Cart> {
    let Value::BulkString(json) = reply else {
        return None;
    };
    let view: serde_json::Value = serde_json::from_slice(json).expect("CART.GET gives JSON");
    let skus = view["items"]
        .as_array()
        .expect("a cart view has items")
        .iter()
        .filter_map(|line| line["product"].as_str().map(str::to_owned))
        .collect();
    Some(Cart {
        version: view["version"].as_i64().expect("a cart view has a version"),
        skus,
    })
}

/// Carts held by no primary, by two, or by one not serving their slot (each primary asked
/// `CLUSTER GETKEYSINSLOT` for the carts' slots).
async fn misplaced<N: Nodes>(
    chaos: &ChaosCluster<N>,
    carts: &HashMap<String, Option<Cart>>,
) -> Vec<String> {
    let slots: HashSet<usize> = carts.keys().map(|key| slot(key)).collect();
    let mut holders: HashMap<String, Vec<SocketAddr>> = HashMap::new();
    let mut owner_by_slot = Vec::new();
    for node in chaos.masters().await {
        let addr = chaos.addr(node);
        let mut conn = connect(addr).await.expect("a master answers");
        let map: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .expect("CLUSTER SLOTS");
        owner_by_slot = slot_map(&map).expect("a slot map");
        let mut pipe = redis::pipe();
        for &slot in &slots {
            pipe.cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100_000);
        }
        let keys: Vec<Vec<String>> = pipe.query_async(&mut conn).await.expect("GETKEYSINSLOT");
        for key in keys.into_iter().flatten() {
            holders.entry(key).or_default().push(addr);
        }
    }
    let mut wrong = Vec::new();
    for (key, cart) in carts {
        let held = holders.get(key).cloned().unwrap_or_default();
        let owner = owner_by_slot[slot(key)];
        let expected: Vec<SocketAddr> = cart.iter().flat_map(|_| owner).collect();
        if held != expected {
            wrong.push(format!("{key}: on {held:?}, its slot's owner {owner:?}"));
        }
    }
    wrong.sort();
    wrong.truncate(EXAMPLES_MAX);
    wrong
}

/// Waits for every primary's sink, then compares every recorded cart's version with the
/// `carts` table's.
async fn compare_postgres<N: Nodes>(
    chaos: &ChaosCluster<N>,
    prefix: &str,
    carts: &HashMap<String, Option<Cart>>,
    report: &mut Report,
) {
    for node in chaos.masters().await {
        if let Err(why) = chaos.until_sink_caught_up(node).await {
            report.postgres.push(why);
            return;
        }
    }
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT key, version FROM carts WHERE key LIKE $1")
            .bind(format!("{prefix}%"))
            .fetch_all(chaos.pool())
            .await
            .expect("read the carts table");
    let stored: HashMap<String, i64> = rows.into_iter().collect();
    report.postgres_compared = carts.len();
    let mut differ: Vec<String> = carts
        .iter()
        .filter_map(|(key, cart)| {
            let cluster = cart.as_ref().map(|cart| cart.version);
            let postgres = stored.get(key).copied();
            (cluster != postgres)
                .then(|| format!("{key}: the cluster has {cluster:?}, PostgreSQL {postgres:?}"))
        })
        .collect();
    differ.sort();
    differ.truncate(EXAMPLES_MAX);
    report.postgres.extend(differ);
}

/// How one group's writes passed from an old primary to a new one, from the records alone.
/// A reply from the new primary means it was taking writes by the time the reply came; a
/// write the old primary acknowledged but that was sent after that reply was taken by the old
/// one while the new one was primary too: two primaries for the group's slots at one moment.
#[derive(Debug, Clone, Default)]
pub struct Handover {
    /// The group's writes the old primary acknowledged.
    pub old_acks: usize,
    /// The group's writes the new primary acknowledged.
    pub new_acks: usize,
    /// When the old primary's last acknowledgement came (load clock).
    pub old_last_ack: Option<Duration>,
    /// When the first write the new primary acknowledged was sent (load clock).
    pub new_first_sent: Option<Duration>,
    /// When the new primary's first acknowledgement came (load clock).
    pub new_first_ack: Option<Duration>,
    /// The earliest moment the new primary was known to take writes: `new_first_ack`, or
    /// earlier when the harness saw it take one of its own (load clock).
    pub new_known_primary: Option<Duration>,
    /// The old primary's acknowledgements that came after `new_known_primary` for writes
    /// sent before it: no overlap (the old one may have taken them in time, its reply held
    /// up by the partition), but worth knowing.
    pub late_replies: usize,
    /// The old primary's acknowledged writes sent after `new_known_primary`: each an
    /// overlap.
    pub overlapping: usize,
    /// Some of them, named.
    pub overlaps: Vec<String>,
}

impl Handover {
    /// The new primary's first write's send less the old primary's last acknowledgement, in
    /// milliseconds: how long the group had no primary at least, as the clients saw it
    /// (negative when the two stretches of writes interleave in time, which alone proves no
    /// overlap: a write may wait in flight).
    pub fn gap_ms(&self) -> Option<i128> {
        let sent = self.new_first_sent?.as_millis() as i128;
        Some(sent - self.old_last_ack?.as_millis() as i128)
    }
}

impl fmt::Display for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |at: Option<Duration>| at.map(|at| at.as_millis());
        write!(
            f,
            "old primary: {} writes, its last acknowledged at {:?} ms; new primary: {} writes, \
             its first sent at {:?} ms and acknowledged at {:?} ms (known primary at {:?} ms); \
             gap {:?} ms; {} replies of the old one came after that (sent before); {} old writes \
             sent after the new primary was known to take writes",
            self.old_acks,
            ms(self.old_last_ack),
            self.new_acks,
            ms(self.new_first_sent),
            ms(self.new_first_ack),
            ms(self.new_known_primary),
            self.gap_ms(),
            self.late_replies,
            self.overlapping
        )?;
        for overlap in &self.overlaps {
            write!(f, "\n  overlap: {overlap}")?;
        }
        Ok(())
    }
}

/// How `group`'s writes passed from the primary at `old` to the one at `new` in `records`;
/// `seen_taking_writes`: by when (load clock) the harness had seen `new` take a write of its
/// own, if it had (the load's clients may be stuck in timeouts on the old primary then).
pub fn handover(
    records: &Records,
    group: usize,
    old: SocketAddr,
    new: SocketAddr,
    seen_taking_writes: Option<Duration>,
) -> Handover {
    let of_group = || records.acks.iter().filter(|ack| ack.group == group);
    let old_acks: Vec<_> = of_group().filter(|ack| ack.acked_by == old).collect();
    let new_acks: Vec<_> = of_group().filter(|ack| ack.acked_by == new).collect();
    let new_first_ack = new_acks.iter().map(|ack| ack.at).min();
    let new_known_primary = new_first_ack.into_iter().chain(seen_taking_writes).min();
    let mut handover = Handover {
        old_acks: old_acks.len(),
        new_acks: new_acks.len(),
        old_last_ack: old_acks.iter().map(|ack| ack.at).max(),
        new_first_sent: new_acks.iter().map(|ack| ack.sent).min(),
        new_first_ack,
        new_known_primary,
        ..Handover::default()
    };
    let Some(new_known_primary) = new_known_primary else {
        return handover;
    };
    handover.late_replies = old_acks
        .iter()
        .filter(|ack| ack.sent <= new_known_primary && ack.at > new_known_primary)
        .count();
    for ack in old_acks.iter().filter(|ack| ack.sent > new_known_primary) {
        handover.overlapping += 1;
        if handover.overlaps.len() < EXAMPLES_MAX {
            handover.overlaps.push(format!(
                "{} {} v{} sent to {old} at {} ms, acknowledged at {} ms",
                ack.key,
                ack.sku,
                ack.version,
                ack.sent.as_millis(),
                ack.at.as_millis()
            ));
        }
    }
    handover
}
