//! The cluster scenarios (`--cluster`): the flash-sale adds with every add sent to the primary
//! that owns its cart's slot (routing and MOVED in `crate::cluster`), flat out or at a fixed
//! rate, each pipeline batch optionally followed by `WAIT N 1000` on every primary it wrote to;
//! and the replica lag: while the adds run at `--rate`, a probe adds to a cart of its own
//! every 10 ms and times the `WAIT 1 1000` after it. The same for a cartd cluster and a
//! Redis Cluster (the seed model's scripts, loaded on every primary). The connection storm
//! against a cluster is in `cluster_connections.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::closed::now_ms;
use super::workloads::{flash_add, FlashAdd};
use super::{Scenario, Settings};
use crate::cluster::{key_slot, push_wait, Answer, Batch, Nodes, SlotMap, WaitReplies};
use crate::progress::{Progress, Span};
use crate::record::{Outcome, Recorder};
use crate::target::{Model, Target};

/// How often the replica-lag probe writes.
const PROBE_INTERVAL_MS: u64 = 10;
/// Adds the probe makes to one of its carts before it takes the next (under the quantity
/// cap of 999 that both targets keep per line).
const PROBE_ADDS_PER_CART: u64 = 500;
/// Replicas the probe's WAIT asks for.
const PROBE_REPLICAS: u32 = 1;

/// Runs one cluster scenario against the cluster `target` is a node of.
pub async fn run(
    scenario: Scenario,
    target: &Target,
    settings: &Settings,
) -> anyhow::Result<Vec<Outcome>> {
    let map = SlotMap::fetch(target.addr).await?;
    if map.unserved_slots() > 0 {
        bail!(
            "{target}: {} slots are served by no primary (is the cluster's state ok?)",
            map.unserved_slots()
        );
    }
    let model = Model::prepare_nodes(target, &map.primaries()).await?;
    match scenario {
        Scenario::ClusterAdds => Ok(vec![adds(target, &model, &map, settings).await?]),
        Scenario::ReplicaLag => replica_lag(target, &model, &map, settings).await,
        Scenario::Connections => Ok(vec![
            super::cluster_connections::run(target, &model, &map, settings).await?,
        ]),
        other => bail!(
            "{} is not a cluster scenario (with --cluster: cluster-adds, replica-lag, connections)",
            other.name()
        ),
    }
}

/// The shape of one run of routed adds.
#[derive(Debug, Clone, Copy)]
struct AddsSpec {
    connections: usize,
    pipeline: usize,
    duration: Duration,
    /// Adds per second over all connections, or `None` for flat out.
    rate_ops_s: Option<f64>,
    /// Replicas each batch's WAIT asks for.
    wait: Option<u32>,
    shoppers: u64,
}

/// What the workers of one run found, merged.
#[derive(Debug, Default)]
struct AddsFound {
    rec: Recorder,
    redirects: u64,
    done_per_primary: BTreeMap<SocketAddr, u64>,
    wait_replies: WaitReplies,
}

impl AddsFound {
    fn merge(&mut self, rec: &Recorder, nodes: &Nodes) {
        self.rec.merge(rec);
        self.redirects += nodes.redirects;
        for (addr, done) in &nodes.done_per_primary {
            *self.done_per_primary.entry(*addr).or_default() += done;
        }
        merge_tally(&mut self.wait_replies, &nodes.wait_replies);
    }

    /// Adds to the outcome what routing did: redirects, adds per primary, WAIT replies.
    fn describe(&self, outcome: Outcome, map: &SlotMap, spec: &AddsSpec) -> Outcome {
        let per_primary: serde_json::Map<String, serde_json::Value> = self
            .done_per_primary
            .iter()
            .map(|(addr, done)| (addr.to_string(), (*done).into()))
            .collect();
        outcome
            .with("primaries", map.primaries().len())
            .with("replicas_per_primary", map.replicas_per_primary())
            .with("connections", spec.connections)
            .with("pipeline", spec.pipeline)
            .with("redirects", self.redirects)
            .with("adds_per_primary", per_primary)
            .with("wait", spec.wait)
            .with("wait_replies", tally_json(&self.wait_replies))
    }
}

fn merge_tally(into: &mut WaitReplies, from: &WaitReplies) {
    for (value, times) in from {
        *into.entry(*value).or_default() += times;
    }
}

fn tally_json(tally: &WaitReplies) -> serde_json::Value {
    tally
        .iter()
        .map(|(value, times)| (value.to_string(), serde_json::Value::from(*times)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

async fn adds(
    target: &Target,
    model: &Model,
    map: &SlotMap,
    settings: &Settings,
) -> anyhow::Result<Outcome> {
    let spec = AddsSpec {
        connections: settings.connections,
        pipeline: settings.pipeline,
        duration: settings.duration(),
        rate_ops_s: None,
        wait: settings.wait,
        shoppers: settings.shoppers,
    };
    let phase = match spec.wait {
        Some(replicas) => format!("cluster/adds+wait{replicas}"),
        None => "cluster/adds".to_string(),
    };
    let label = format!("{phase} {}", target.kind.as_str());
    let progress = Progress::start(&label, Span::Time(spec.duration));
    let (found, elapsed) = run_adds(target, model, map, spec, progress.counter()).await?;
    progress.finish();
    let outcome = Outcome::new(&phase, target, &found.rec, elapsed);
    Ok(found.describe(outcome, map, &spec))
}

/// The adds at `--rate` and, beside them, the probe; the probe's WAIT durations are the
/// replica lag.
async fn replica_lag(
    target: &Target,
    model: &Model,
    map: &SlotMap,
    settings: &Settings,
) -> anyhow::Result<Vec<Outcome>> {
    let spec = AddsSpec {
        connections: settings.connections,
        pipeline: settings.pipeline,
        duration: settings.duration(),
        rate_ops_s: Some(settings.rate),
        wait: None,
        shoppers: settings.shoppers,
    };
    let label = format!("cluster/replica-lag {}", target.kind.as_str());
    let progress = Progress::start(&label, Span::Time(spec.duration));
    let probe = tokio::spawn(probe(
        target.addr,
        model.clone(),
        map.clone(),
        spec.duration,
    ));
    let (found, elapsed) = run_adds(target, model, map, spec, progress.counter()).await?;
    let (probe_rec, probe_elapsed, probe_replies) =
        probe.await.context("the replica-lag probe panicked")??;
    progress.finish();
    let load = Outcome::new("cluster/paced-adds", target, &found.rec, elapsed)
        .with("rate_asked_ops_s", settings.rate);
    let lag = Outcome::new("cluster/replica-lag", target, &probe_rec, probe_elapsed)
        .with("probe_interval_ms", PROBE_INTERVAL_MS)
        .with("probe_wait_replicas", PROBE_REPLICAS)
        .with("wait_replies", tally_json(&probe_replies))
        .with("rate_asked_ops_s", settings.rate)
        .with("replicas_per_primary", map.replicas_per_primary());
    Ok(vec![found.describe(load, map, &spec), lag])
}

/// Runs `spec.connections` workers, each with a connection per primary.
async fn run_adds(
    target: &Target,
    model: &Model,
    map: &SlotMap,
    spec: AddsSpec,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<(AddsFound, Duration)> {
    let mut workers = Vec::with_capacity(spec.connections);
    for index in 0..spec.connections {
        let mut nodes = Nodes::new(map.clone(), target.addr);
        for primary in map.primaries() {
            // Connect before the clock starts; a primary never written to keeps its connection idle.
            let slot = (0..crate::cluster::SLOTS).find(|slot| map.owner(*slot) == Some(primary));
            nodes
                .conn_for(slot.expect("a listed primary serves a slot"))
                .await
                .with_context(|| format!("{target}: cannot connect to {primary}"))?;
        }
        let workload = FlashAdd::new(index, spec.connections, spec.shoppers);
        workers.push((nodes, workload));
    }
    // Each worker sends a batch every `interval` when paced; workers start spread over one.
    let interval = spec.rate_ops_s.map(|rate| {
        Duration::from_secs_f64((spec.connections * spec.pipeline) as f64 / rate.max(1.0))
    });
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(spec.connections);
    for (index, (nodes, workload)) in workers.into_iter().enumerate() {
        let pace = interval.map(|interval| {
            let offset = interval.mul_f64(index as f64 / spec.connections as f64);
            (started + offset, interval)
        });
        let worker = Worker {
            nodes,
            workload,
            model: model.clone(),
            spec,
            deadline: started + spec.duration,
            pace,
            counter: counter.clone(),
        };
        tasks.push(tokio::spawn(worker.run()));
    }
    let mut found = AddsFound::default();
    for task in tasks {
        let (rec, nodes) = task.await.context("a cluster load task panicked")?;
        found.merge(&rec, &nodes);
    }
    Ok((found, started.elapsed()))
}

struct Worker {
    nodes: Nodes,
    workload: FlashAdd,
    model: Model,
    spec: AddsSpec,
    deadline: Instant,
    pace: Option<(Instant, Duration)>,
    counter: Arc<AtomicU64>,
}

impl Worker {
    async fn run(mut self) -> (Recorder, Nodes) {
        let mut rec = Recorder::default();
        let mut batch = Batch::default();
        let mut answers = Vec::with_capacity(self.spec.pipeline);
        let mut sends = 0u32;
        while Instant::now() < self.deadline {
            batch.clear();
            for _ in 0..self.spec.pipeline.max(1) {
                let cart = self.workload.next_cart();
                let slot = key_slot(self.model.routing_key(&cart).as_bytes());
                batch.push(slot, |buf| {
                    self.model.push(buf, &flash_add(&cart), now_ms())
                });
            }
            let sent = match self.pace {
                Some((start, interval)) => {
                    let intended = start + interval * sends;
                    sends += 1;
                    tokio::time::sleep_until(intended.into()).await;
                    intended
                }
                None => Instant::now(),
            };
            let lost = self
                .nodes
                .exchange(&batch, self.spec.wait, &mut answers)
                .await
                .err();
            for answer in &answers {
                match answer {
                    Some(Answer::Done(at)) => rec.ok(at.duration_since(sent)),
                    Some(Answer::Failed(error)) => rec.error(error.clone()),
                    None => rec.error(format!(
                        "connection lost: {}",
                        lost.as_ref().map_or_else(String::new, ToString::to_string)
                    )),
                }
            }
            self.counter
                .fetch_add(answers.len() as u64, Ordering::Relaxed);
            if lost.is_some() {
                break;
            }
        }
        (rec, self.nodes)
    }
}

/// Every [`PROBE_INTERVAL_MS`] until `duration` has passed: one add to the probe's own cart,
/// then `WAIT 1 1000` on the same primary's connection, timed. A WAIT answering 0 (no replica
/// had the add within the second) is an error.
async fn probe(
    seed: SocketAddr,
    model: Model,
    map: SlotMap,
    duration: Duration,
) -> anyhow::Result<(Recorder, Duration, WaitReplies)> {
    let mut nodes = Nodes::new(map, seed);
    let mut rec = Recorder::default();
    let mut replies = WaitReplies::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(PROBE_INTERVAL_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut batch, mut answers) = (Batch::default(), Vec::with_capacity(1));
    let started = Instant::now();
    let mut probes = 0u64;
    while started.elapsed() < duration {
        ticker.tick().await;
        let cart = format!("lag-probe-{}", probes / PROBE_ADDS_PER_CART);
        probes += 1;
        let slot = key_slot(model.routing_key(&cart).as_bytes());
        batch.clear();
        batch.push(slot, |buf| model.push(buf, &flash_add(&cart), now_ms()));
        nodes.exchange(&batch, None, &mut answers).await?;
        if let Some(Some(Answer::Failed(error))) = answers.first() {
            rec.error(format!("the probe's add failed: {error}"));
            continue;
        }
        let conn = nodes.conn_for(slot).await?;
        push_wait(&mut conn.out, PROBE_REPLICAS);
        let waited_from = Instant::now();
        conn.flush().await?;
        let reply = conn.reply().await?;
        let waited = waited_from.elapsed();
        let value = match &reply.frame {
            redis_protocol::resp2::types::BytesFrame::Integer(value) => *value,
            _ => -1,
        };
        *replies.entry(value).or_default() += 1;
        if value >= i64::from(PROBE_REPLICAS) {
            rec.ok(waited);
        } else {
            rec.error(format!(
                "WAIT {PROBE_REPLICAS} answered {value} after {} ms: no replica had the add",
                waited.as_millis()
            ));
        }
    }
    Ok((rec, started.elapsed(), replies))
}
