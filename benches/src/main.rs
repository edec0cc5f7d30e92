//! `cartd-bench`: proves on the hardware at hand that cartd holds a flash sale, and how it
//! compares with the Redis set-up it replaces. `run` loads servers you started; `compare`
//! starts cartd and Redis itself and runs every scenario against each in turn.
//! docs/BENCHMARKS.md explains the scenarios and holds the figures of a comparison.

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

use clap::{Parser, Subcommand};

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
        /// cartd://HOST:PORT or redis://HOST:PORT; repeat to load several in turn.
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
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
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
    match runtime.block_on(run(flags.command)) {
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
            let scenarios = chosen(&common.scenarios);
            println!("settings: {}", serde_json::to_string(&common.settings)?);
            let mut outcomes = Vec::new();
            for scenario in &scenarios {
                for target in &targets {
                    outcomes.extend(scenario::run(*scenario, target, &common.settings).await?);
                }
            }
            (common, outcomes, None, true)
        }
        Command::Compare {
            cartd,
            redis_server,
            appendfsync,
            redis_appendonly,
            common,
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
            let (outcomes, all_ran) = compare(&common, &binaries, &durability).await;
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

fn chosen(scenarios: &[Scenario]) -> Vec<Scenario> {
    if scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        scenarios.to_vec()
    }
}

/// Every chosen scenario against a fresh cartd, then a fresh Redis. A scenario that fails on
/// one target is reported and the others still run.
async fn compare(
    common: &Common,
    binaries: &Binaries,
    durability: &Durability,
) -> (Vec<Outcome>, bool) {
    let clients_max = common.settings.conn_count.max(10_000) + CLIENTS_SPARE;
    let mut outcomes = Vec::new();
    let mut all_ran = true;
    for scenario in chosen(&common.scenarios) {
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
    (outcomes, all_ran)
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
    for outcome in outcomes
        .iter()
        .filter(|outcome| !outcome.error_samples.is_empty())
    {
        println!(
            "errors in {} against {}, first ones: {:?}",
            outcome.scenario, outcome.target, outcome.error_samples
        );
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
