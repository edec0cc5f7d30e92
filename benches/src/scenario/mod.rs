//! The scenarios, their settings, and how each one turns into rows of results.

pub mod closed;
pub mod cluster;
pub mod cluster_connections;
pub mod connections;
pub mod connections_client;
pub mod open;
pub mod pubsub;
pub mod workloads;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::progress::{Progress, Span};
use crate::record::Outcome;
use crate::target::{rss_bytes, Model, Target};
use closed::{Loop, Until};
use workloads::{
    FlashAdd, LoadCarts, Logins, Steady, LINES_PER_CART, STORM_GUEST_PREFIX, STORM_USER_PREFIX,
};

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The everyday mix of sessions.
    Steady,
    /// Everyone adds the same product: flat out and at a fixed rate.
    FlashSale,
    /// Very many connections, each adding once, all at once.
    Connections,
    /// Many logins at once, each merging a guest cart into a user cart.
    MergeStorm,
    /// Load carts of four lines and measure the server's memory per cart.
    Memory,
    /// One price change fanned out to many subscribers; adds beside idle subscribers.
    Pubsub,
    /// With --cluster: the flash-sale adds, each sent to the primary owning its cart's slot.
    ClusterAdds,
    /// With --cluster: adds at --rate and the time until a replica has a probe's write.
    ReplicaLag,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Scenario; 6] = [
        Scenario::Steady,
        Scenario::FlashSale,
        Scenario::Connections,
        Scenario::MergeStorm,
        Scenario::Memory,
        Scenario::Pubsub,
    ];

    /// The cluster scenarios, in the order `--cluster` runs them when none are named.
    /// `connections` runs against a cluster too, when named: its default of 100,000
    /// connections needs six primaries or more on a machine of 20,000 open files a process.
    pub const CLUSTER: [Scenario; 2] = [Scenario::ClusterAdds, Scenario::ReplicaLag];

    /// Whether the scenario runs with `--cluster` (`cluster` true) or without it.
    pub fn runs_with(self, cluster: bool) -> bool {
        match self {
            Scenario::Connections => true,
            Scenario::ClusterAdds | Scenario::ReplicaLag => cluster,
            _ => !cluster,
        }
    }

    /// As on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::FlashSale => "flash-sale",
            Scenario::Connections => "connections",
            Scenario::MergeStorm => "merge-storm",
            Scenario::Memory => "memory",
            Scenario::Pubsub => "pubsub",
            Scenario::ClusterAdds => "cluster-adds",
            Scenario::ReplicaLag => "replica-lag",
        }
    }
}

/// Which flash-sale loops run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlashMode {
    /// Flat out: N connections, pipelined, each waiting for its replies.
    Closed,
    /// A fixed rate, latency from each request's intended send time.
    Open,
    /// Both, one after the other.
    Both,
}

/// Everything a run can be told; every scenario reads the part it needs.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Settings {
    /// Seconds each timed phase runs (steady, flash-sale).
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Connections of the closed loops (steady, flash-sale flat out).
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Requests per pipeline in flash-sale flat out and in the loads (steady is always 1).
    #[arg(long, default_value_t = 16)]
    pub pipeline: usize,
    /// Which flash-sale loops run.
    #[arg(long, value_enum, default_value_t = FlashMode::Both)]
    pub flash_mode: FlashMode,
    /// Open-loop flash-sale rate, requests per second; with --cluster, the adds per second of
    /// the replica-lag scenario's load.
    #[arg(long, default_value_t = 50_000.0)]
    pub rate: f64,
    /// cluster-adds: each pipeline batch is followed, on every primary it wrote to, by
    /// `WAIT N 1000`; a reply below N fails the batch's adds on that primary.
    #[arg(long, value_name = "N")]
    pub wait: Option<u32>,
    /// Connections the open loop spreads its requests over.
    #[arg(long, default_value_t = 8)]
    pub open_connections: usize,
    /// Flash-sale shoppers, each with a cart of their own.
    #[arg(long, default_value_t = 1_000_000)]
    pub shoppers: u64,
    /// Steady mix rate in operations per second (paced, latency from the intended time); 0 runs
    /// flat out.
    #[arg(long, default_value_t = 0.0)]
    pub steady_rate: f64,
    /// User carts the steady mix's users and logins pick from.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Connections the connections scenario opens.
    #[arg(long, default_value_t = 100_000)]
    pub conn_count: usize,
    /// Loopback source addresses the connections are spread over (0: enough of them); with
    /// --cluster, over all client processes, each given addresses of its own.
    #[arg(long, default_value_t = 0)]
    pub conn_sources: usize,
    /// With --cluster, the connections scenario: client processes the connections are opened
    /// from, each under its own open-file limit (0: as few as hold them).
    #[arg(long, default_value_t = 0)]
    pub client_processes: usize,
    /// Logins in the merge storm.
    #[arg(long, default_value_t = 50_000)]
    pub logins: u64,
    /// Connections logging in at once in the merge storm.
    #[arg(long, default_value_t = 200)]
    pub login_connections: usize,
    /// Carts of four lines the memory scenario loads.
    #[arg(long, default_value_t = 1_000_000)]
    pub carts: u64,
    /// Subscribers of the product channel in the pub/sub fan-out.
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Price changes the fan-out times.
    #[arg(long, default_value_t = 5)]
    pub fanout_rounds: usize,
    /// Subscribers of unrelated channels held open while the pub/sub scenario's adds run.
    #[arg(long, default_value_t = 1_000)]
    pub idle_subscribers: usize,
}

impl Settings {
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s.max(0.1))
    }
}

/// A tally (error kind -> times) as a JSON object.
pub fn tally_json(tally: &std::collections::BTreeMap<String, u64>) -> serde_json::Value {
    tally
        .iter()
        .map(|(kind, times)| (kind.clone(), serde_json::Value::from(*times)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Connections and pipeline depth of the bulk loads (memory, merge-storm set-up).
const LOAD_CONNECTIONS: usize = 8;

/// Runs one scenario against one target; one outcome per measured phase.
pub async fn run(
    scenario: Scenario,
    target: &Target,
    settings: &Settings,
) -> anyhow::Result<Vec<Outcome>> {
    let model = Model::prepare(target).await?;
    let label = |phase: &str| format!("{phase} {}", target.kind.as_str());
    match scenario {
        Scenario::Steady => {
            let progress = Progress::start(&label("steady"), Span::Time(settings.duration()));
            let spec = Loop {
                connections: settings.connections,
                pipeline: 1,
                until: Until::Elapsed(settings.duration()),
                rate_ops_s: (settings.steady_rate > 0.0).then_some(settings.steady_rate),
            };
            let users = settings.users;
            let (rec, elapsed) = closed::run(target, &model, spec, progress.counter(), |index| {
                Steady::new(index, users)
            })
            .await?;
            progress.finish();
            let outcome = Outcome::new("steady", target, &rec, elapsed)
                .with("connections", settings.connections)
                .with("rate_asked_ops_s", settings.steady_rate);
            Ok(vec![outcome])
        }
        Scenario::FlashSale => flash_sale(target, &model, settings).await,
        Scenario::Connections => {
            if settings.client_processes > 1 {
                bail!("--client-processes spreads the connections scenario over a cluster: add --cluster");
            }
            let progress = Progress::start(
                &label("connections"),
                Span::Count(settings.conn_count as u64),
            );
            let spec = connections::ConnSpec {
                count: settings.conn_count,
                sources: settings.conn_sources,
            };
            let (rec, elapsed, stats) =
                connections::run(target, &model, spec, progress.counter()).await?;
            progress.finish();
            let outcome = Outcome::new("connections", target, &rec, elapsed)
                .with("connections_asked", settings.conn_count)
                .with("connected", stats.connected)
                .with("connect_s", stats.connect_time.as_secs_f64())
                .with("source_addresses", stats.sources)
                .with(
                    "server_bytes_per_connection",
                    stats.rss_per_connection_bytes.round(),
                )
                .with("errors_by_kind", tally_json(&stats.errors_by_kind));
            Ok(vec![outcome])
        }
        Scenario::MergeStorm => merge_storm(target, &model, settings).await,
        Scenario::Memory => memory(target, &model, settings).await,
        Scenario::ClusterAdds | Scenario::ReplicaLag => {
            bail!("{} runs against a cluster: add --cluster", scenario.name())
        }
        Scenario::Pubsub => {
            let mut outcomes = vec![pubsub::fanout(target, settings).await?];
            outcomes.extend(pubsub::adds_beside_subscribers(target, &model, settings).await?);
            Ok(outcomes)
        }
    }
}

async fn flash_sale(
    target: &Target,
    model: &Model,
    settings: &Settings,
) -> anyhow::Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    let label = |phase: &str| format!("{phase} {}", target.kind.as_str());
    // The open loop first, on a server in its ordinary state; the flat-out run after it
    // leaves behind millions of changes and the snapshots they trigger.
    if settings.flash_mode != FlashMode::Closed {
        let progress = Progress::start(&label("flash-sale/open"), Span::Time(settings.duration()));
        let spec = open::OpenSpec {
            connections: settings.open_connections,
            rate_ops_s: settings.rate,
            duration: settings.duration(),
            shoppers: settings.shoppers,
        };
        let (target_copy, model_copy, counter) =
            (target.clone(), model.clone(), progress.counter());
        let (rec, elapsed, stats) = tokio::task::spawn_blocking(move || {
            open::run_flash(&target_copy, &model_copy, spec, counter)
        })
        .await
        .context("the open loop panicked")??;
        progress.finish();
        outcomes.push(
            Outcome::new("flash-sale/open", target, &rec, elapsed)
                .with("rate_asked_ops_s", settings.rate)
                .with("sent", stats.sent)
                .with("connections", settings.open_connections)
                .with(
                    "sender_lag_max_ms",
                    stats.sender_lag_max.as_secs_f64() * 1000.0,
                ),
        );
    }
    if settings.flash_mode != FlashMode::Open {
        let progress =
            Progress::start(&label("flash-sale/closed"), Span::Time(settings.duration()));
        let spec = Loop {
            connections: settings.connections,
            pipeline: settings.pipeline,
            until: Until::Elapsed(settings.duration()),
            rate_ops_s: None,
        };
        let (connections, shoppers) = (settings.connections, settings.shoppers);
        let (rec, elapsed) = closed::run(target, model, spec, progress.counter(), |index| {
            FlashAdd::new(index, connections, shoppers)
        })
        .await?;
        progress.finish();
        outcomes.push(
            Outcome::new("flash-sale/closed", target, &rec, elapsed)
                .with("connections", settings.connections)
                .with("pipeline", settings.pipeline),
        );
    }
    Ok(outcomes)
}

/// Loads `carts` four-line carts named `{prefix}{n}` flat out; returns the load's outcome.
async fn load(
    target: &Target,
    model: &Model,
    settings: &Settings,
    (name, prefix, shift): (&str, &'static str, u64),
    carts: u64,
) -> anyhow::Result<Outcome> {
    let label = format!("{name} {}", target.kind.as_str());
    let progress = Progress::start(&label, Span::Count(carts * LINES_PER_CART));
    let next = Arc::new(AtomicU64::new(0));
    let spec = Loop {
        connections: LOAD_CONNECTIONS,
        pipeline: settings.pipeline.max(64),
        until: Until::Exhausted,
        rate_ops_s: None,
    };
    let (rec, elapsed) = closed::run(target, model, spec, progress.counter(), |_| {
        LoadCarts::new(next.clone(), carts, prefix, shift)
    })
    .await?;
    progress.finish();
    Ok(Outcome::new(name, target, &rec, elapsed))
}

async fn merge_storm(
    target: &Target,
    model: &Model,
    settings: &Settings,
) -> anyhow::Result<Vec<Outcome>> {
    for (prefix, shift) in [(STORM_USER_PREFIX, 0), (STORM_GUEST_PREFIX, 2)] {
        let setup = ("merge-storm/setup", prefix, shift);
        let loaded = load(target, model, settings, setup, settings.logins).await?;
        if loaded.errors > 0 {
            bail!(
                "{target}: loading the merge storm's carts failed {} times: {:?}",
                loaded.errors,
                loaded.error_samples
            );
        }
    }
    let label = format!("merge-storm {}", target.kind.as_str());
    let progress = Progress::start(&label, Span::Count(settings.logins));
    let next = Arc::new(AtomicU64::new(0));
    let spec = Loop {
        connections: settings.login_connections,
        pipeline: 1,
        until: Until::Exhausted,
        rate_ops_s: None,
    };
    let logins = settings.logins;
    let (rec, elapsed) = closed::run(target, model, spec, progress.counter(), |_| {
        Logins::new(next.clone(), logins)
    })
    .await?;
    progress.finish();
    let outcome = Outcome::new("merge-storm", target, &rec, elapsed)
        .with("logins", settings.logins)
        .with("connections", settings.login_connections);
    Ok(vec![outcome])
}

async fn memory(
    target: &Target,
    model: &Model,
    settings: &Settings,
) -> anyhow::Result<Vec<Outcome>> {
    let before = rss_bytes(target).await?;
    let outcome = load(
        target,
        model,
        settings,
        ("memory", "mem", 0),
        settings.carts,
    )
    .await?;
    // Let the allocator settle before reading the resident size.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_bytes(target).await?;
    let per_cart = after.saturating_sub(before) as f64 / settings.carts.max(1) as f64;
    Ok(vec![outcome
        .with("carts", settings.carts)
        .with("rss_before_bytes", before)
        .with("rss_after_bytes", after)
        .with("bytes_per_cart", per_cart.round())])
}
