//! `cartd-bench`: proves on the hardware at hand that cartd holds a flash sale, and how it
//! compares with the Redis set-up it replaces. `run` loads servers you started; `compare`
//! starts cartd and Redis itself and runs every scenario against each in turn. With
//! `--cluster` the targets are cluster nodes (routing in `cluster.rs`) and `compare` starts a
//! cartd cluster and a Redis Cluster of one shape (`clusters.rs`).
//! docs/BENCHMARKS.md explains the scenarios and holds the figures of a comparison.

mod cluster;
mod clusters;
mod machine;
mod output;
mod progress;
mod record;
mod resp;
mod scenario;
mod servers;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand};

use clusters::{Cluster, Shape};
use machine::Machine;
use output::Report;
use record::Outcome;
use scenario::{Scenario, Settings};
use servers::{Binaries, Durability, Server};
use target::{Kind, Target};

/// Connections a server started by `compare` accepts beyond the connections scenario's.
const CLIENTS_SPARE: usize = 256;

/// The flash-sale load harness for cartd, side by side with Redis.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs scenarios against servers that are already running.
    Run {
        /// cartd://HOST:PORT or redis://HOST:PORT (with --cluster: any node of the cluster);
        /// repeat to load several in turn.
        #[arg(long = "target", required = true)]
        targets: Vec<Target>,
        #[command(flatten)]
        common: Common,
    },
    /// Starts cartd and redis-server on free ports and runs the scenarios against each.
    Compare {
        /// cartd binary (default: the one beside cartd-bench).
        #[arg(long)]
        cartd: Option<PathBuf>,
        /// redis-server binary (default: from PATH, installed with apt-get when missing).
        #[arg(long)]
        redis_server: Option<PathBuf>,
        /// fsync policy of both servers: cartd's write-ahead log and Redis's AOF.
        #[arg(long, default_value = "everysec", value_parser = ["always", "everysec", "no"])]
        appendfsync: String,
        /// Whether Redis keeps an AOF at all (cartd always keeps its log).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        redis_appendonly: bool,
        /// With --cluster: primaries of each cluster.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
        primaries: u16,
        /// With --cluster: replicas of each primary.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=4))]
        replicas: u16,
        /// With --cluster: scripts/cluster (default: the repository's above cartd-bench).
        #[arg(long)]
        cluster_script: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// One client process of the connection storm against a cluster, run by `run` or
    /// `compare` themselves (its plan on stdin, JSON lines on stdout).
    #[command(name = "connections-client", hide = true)]
    ConnectionsClient,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The targets are cluster nodes (compare: starts a cartd cluster and a Redis Cluster);
    /// the scenarios are cluster-adds and replica-lag, and connections when named.
    #[arg(long)]
    cluster: bool,
    /// Scenarios to run (comma-separated or repeated); all when not given.
    #[arg(long = "scenario", value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    #[command(flatten)]
    settings: Settings,
    /// Write the results, with every percentile, to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the latency percentiles of every target, side by side, into this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cartd-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let ran = match flags.command {
        // A client process says nothing on stdout but its messages to the parent.
        Command::ConnectionsClient => runtime
            .block_on(scenario::connections_client::run())
            .map(|()| true),
        command => runtime.block_on(run(command)),
    };
    match ran {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("cartd-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; `Ok(false)` when a scenario failed but the others' results were written.
async fn run(command: Command) -> anyhow::Result<bool> {
    let machine = Machine::read();
    println!("machine: {}", machine.describe());
    let (common, outcomes, servers, all_ran) = match command {
        Command::Run { targets, common } => {
            let outcomes = run_targets(&targets, &common).await?;
            (common, outcomes, None, true)
        }
        Command::ConnectionsClient => bail!("connections-client runs on its own, not here"),
        Command::Compare {
            cartd,
            redis_server,
            appendfsync,
            redis_appendonly,
            primaries,
            replicas,
            cluster_script,
            common,
        } if common.cluster => {
            let durability = Durability {
                appendfsync,
                redis_appendonly,
            };
            let shape = Shape {
                primaries,
                replicas,
            };
            let binaries = Binaries::find(cartd, redis_server)?;
            let (outcomes, servers, all_ran) =
                compare_clusters(&common, &binaries, cluster_script, shape, durability).await?;
            (common, outcomes, Some(servers), all_ran)
        }
        Command::Compare {
            cartd,
            redis_server,
            appendfsync,
            redis_appendonly,
            common,
            ..
        } => {
            let binaries = Binaries::find(cartd, redis_server)?;
            let durability = Durability {
                appendfsync,
                redis_appendonly,
            };
            println!("settings: {}", serde_json::to_string(&common.settings)?);
            println!(
                "servers: cartd {} and {} on 127.0.0.1, fresh for every scenario; {}",
                binaries.cartd.display(),
                binaries.redis.display(),
                serde_json::to_string(&durability)?
            );
            let (outcomes, all_ran) = compare(&common, &binaries, &durability).await?;
            (
                common,
                outcomes,
                Some(serde_json::to_value(&durability)?),
                all_ran,
            )
        }
    };
    report(&common, &machine, outcomes, servers)?;
    Ok(all_ran)
}

/// Every chosen scenario against every target, in turn.
async fn run_targets(targets: &[Target], common: &Common) -> anyhow::Result<Vec<Outcome>> {
    let scenarios = chosen(common)?;
    println!("settings: {}", serde_json::to_string(&common.settings)?);
    let mut outcomes = Vec::new();
    for scenario in &scenarios {
        for target in targets {
            outcomes.extend(run_one(*scenario, target, common).await?);
        }
    }
    Ok(outcomes)
}

/// The scenarios asked for, all of the kind's when none were; cluster scenarios go with
/// `--cluster` and only with it.
fn chosen(common: &Common) -> anyhow::Result<Vec<Scenario>> {
    if common.scenarios.is_empty() {
        return Ok(if common.cluster {
            Scenario::CLUSTER.to_vec()
        } else {
            Scenario::ALL.to_vec()
        });
    }
    if let Some(wrong) = common
        .scenarios
        .iter()
        .find(|scenario| !scenario.runs_with(common.cluster))
    {
        let (is, needs) = if common.cluster {
            (
                "not a cluster scenario",
                "cluster-adds, replica-lag, connections",
            )
        } else {
            ("a cluster scenario", "add --cluster")
        };
        anyhow::bail!("{} is {is} ({needs})", wrong.name());
    }
    Ok(common.scenarios.clone())
}

async fn run_one(
    scenario: Scenario,
    target: &Target,
    common: &Common,
) -> anyhow::Result<Vec<Outcome>> {
    if common.cluster {
        scenario::cluster::run(scenario, target, &common.settings).await
    } else {
        scenario::run(scenario, target, &common.settings).await
    }
}

/// Every chosen scenario against a fresh cartd, then a fresh Redis. A scenario that fails on
/// one target is reported and the others still run.
async fn compare(
    common: &Common,
    binaries: &Binaries,
    durability: &Durability,
) -> anyhow::Result<(Vec<Outcome>, bool)> {
    let clients_max = common.settings.conn_count.max(10_000) + CLIENTS_SPARE;
    let mut outcomes = Vec::new();
    let mut all_ran = true;
    for scenario in chosen(common)? {
        for kind in [Kind::Cartd, Kind::Redis] {
            let result = async {
                let server = Server::start(kind, binaries, durability, clients_max).await?;
                scenario::run(scenario, &server.target, &common.settings).await
            }
            .await;
            match result {
                Ok(found) => outcomes.extend(found),
                Err(error) => {
                    all_ran = false;
                    eprintln!(
                        "cartd-bench: {} against {} failed: {error:#}",
                        scenario.name(),
                        kind.as_str()
                    );
                }
            }
        }
    }
    Ok((outcomes, all_ran))
}

/// Every chosen cluster scenario against a fresh cartd cluster, then a fresh Redis Cluster,
/// both of `shape`. A scenario that fails on one is reported and the others still run.
/// Returns the outcomes, the servers' settings for the report, and whether all ran.
async fn compare_clusters(
    common: &Common,
    binaries: &Binaries,
    cluster_script: Option<PathBuf>,
    shape: Shape,
    durability: Durability,
) -> anyhow::Result<(Vec<Outcome>, serde_json::Value, bool)> {
    let script = clusters::find_script(cluster_script)?;
    println!("settings: {}", serde_json::to_string(&common.settings)?);
    println!(
        "clusters: {} primaries with {} replicas each, cartd {} (by {}) and {} on 127.0.0.1, \
         fresh for every scenario; {}",
        shape.primaries,
        shape.replicas,
        binaries.cartd.display(),
        script.display(),
        binaries.redis.display(),
        serde_json::to_string(&durability)?
    );
    let durability = &durability;
    let script = script.as_path();
    let mut outcomes = Vec::new();
    let mut all_ran = true;
    for scenario in chosen(common)? {
        // The storm's share of each primary, as `compare` sizes a single server for it.
        let clients_max = (scenario == Scenario::Connections).then(|| {
            let share = common
                .settings
                .conn_count
                .div_ceil(usize::from(shape.primaries));
            share.max(10_000) + CLIENTS_SPARE
        });
        for kind in [Kind::Cartd, Kind::Redis] {
            let result = async {
                let nodes = clusters::NodeSettings {
                    durability,
                    clients_max,
                };
                let cluster = Cluster::start(kind, shape, binaries, script, nodes).await?;
                scenario::cluster::run(scenario, &cluster.target, &common.settings).await
            }
            .await;
            match result {
                Ok(found) => outcomes.extend(found),
                Err(error) => {
                    all_ran = false;
                    eprintln!(
                        "cartd-bench: {} against the {} cluster failed: {error:#}",
                        scenario.name(),
                        kind.as_str()
                    );
                }
            }
        }
    }
    let servers = serde_json::json!({ "durability": durability, "cluster": shape });
    Ok((outcomes, servers, all_ran))
}

fn report(
    common: &Common,
    machine: &Machine,
    outcomes: Vec<Outcome>,
    servers: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    println!("{}", output::table(&outcomes));
    let ratios = output::ratios(&outcomes);
    if !ratios.is_empty() {
        println!("{}", output::ratio_table(&ratios));
    }
    for table in output::storm_tables(&outcomes) {
        println!("{table}");
    }
    for outcome in outcomes
        .iter()
        .filter(|outcome| !outcome.error_samples.is_empty())
    {
        println!(
            "errors in {} against {}, first ones: {:?}",
            outcome.scenario, outcome.target, outcome.error_samples
        );
        if let Some(kinds) = outcome.extra.get("errors_by_kind") {
            println!("  by kind: {kinds}");
        }
    }
    if let Some(path) = &common.json {
        let report = Report {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine,
            settings: &common.settings,
            servers,
            results: &outcomes,
            ratios,
        };
        output::write_json(path, &report)?;
        println!("results written to {}", path.display());
    }
    if let Some(path) = &common.plot {
        let title = format!("cartd-bench latency percentiles ({} cores)", machine.cores);
        output::write_plot(path, &outcomes, &title)?;
        println!("chart written to {}", path.display());
    }
    Ok(())
}
