//! `scripts/chaos --minutes N [--netns]`: random faults under load for N minutes
//! (`CHAOS_MINUTES`, default 5) on one cluster of three primaries with a replica each and
//! PostgreSQL (`DATABASE_URL`, as the tests): on 127.0.0.1, or with `CHAOS_NETNS=1` each node
//! on a host of its own (a network namespace, `cartd_tests::netns`), PostgreSQL cut off by
//! taking the hosts' links to it down, and a primary may be partitioned from PostgreSQL and
//! its replica (no write of it acknowledged after the new primary's, from the records). Each
//! round starts a load, injects one fault picked at
//! random (`CHAOS_SEED` repeats a run), lets the load run on, stops it and checks (see
//! `cartd_tests::chaos`); at the end every round's writes are checked once more, and the
//! numbers are printed: kills, failover time (median, worst), writes lost with and without
//! WAIT. Exits with 1 if a waited write was lost, a cart was misplaced or PostgreSQL
//! differed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cartd_tests::chaos::check::{self, Report};
use cartd_tests::chaos::faults::{self, Fault};
use cartd_tests::chaos::load::{Load, LoadOptions, Records};
use cartd_tests::chaos::{ChaosCluster, Nodes};
use cartd_tests::netns::cluster::NetnsCluster;

/// Load before each fault and after the cluster is back.
const STEADY: Duration = Duration::from_millis(1_500);

/// Odds of each fault, out of their sum: kills of one primary most often.
/// A partition only where the nodes are hosts of their own (`--netns`).
const WEIGHTS: [(Fault, u64); 5] = [
    (Fault::KillPrimary, 3),
    (Fault::KillPrimaryTwice, 1),
    (Fault::CutPostgres, 1),
    (Fault::RestartAll, 1),
    (Fault::PartitionPrimary, 1),
];

/// A small xorshift generator: the run is repeated by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A fault at random; a partition only if `partitions`.
    fn fault(&mut self, partitions: bool) -> Fault {
        let weights: Vec<(Fault, u64)> = WEIGHTS
            .into_iter()
            .filter(|&(fault, _)| partitions || fault != Fault::PartitionPrimary)
            .collect();
        let total: u64 = weights.iter().map(|(_, weight)| weight).sum();
        let mut pick = self.next() % total;
        for (fault, weight) in weights {
            if pick < weight {
                return fault;
            }
            pick -= weight;
        }
        unreachable!("pick < total")
    }
}

/// What the rounds add up to.
#[derive(Default)]
struct Totals {
    rounds: Vec<(Fault, Duration)>,
    kills: usize,
    primary_kills: usize,
    failover_ms: Vec<u128>,
    unreplaced_ms: Vec<u128>,
    acks: usize,
    waited: usize,
    lost_waited: usize,
    lost_unwaited: usize,
    failsafe_stalls: usize,
    partition_ms: Vec<u128>,
    overlapping: usize,
    broken: Vec<String>,
    all: Records,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let minutes: u64 = env_number("CHAOS_MINUTES", 5);
    let seed = env_number("CHAOS_SEED", seed_from_clock());
    println!("chaos: {minutes} min, CHAOS_SEED={seed}");
    let rng = Rng(seed.max(1));
    let ok = if env_number("CHAOS_NETNS", 0) == 1 {
        println!("chaos: every node on a network namespace of its own");
        run(Arc::new(NetnsCluster::up(3, 1, 3_000).await), minutes, rng).await
    } else {
        run(Arc::new(ChaosCluster::up(3, 1).await), minutes, rng).await
    };
    if !ok {
        std::process::exit(1);
    }
}

/// Rounds on `chaos` until `minutes` are over, then the final check and the numbers; whether
/// nothing was lost, misplaced or different.
async fn run<N: Nodes + 'static>(chaos: Arc<ChaosCluster<N>>, minutes: u64, mut rng: Rng) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60 * minutes);
    let mut totals = Totals::default();
    let mut round = 0;
    while Instant::now() < deadline {
        round += 1;
        let fault = rng.fault(N::PARTITIONS);
        let group = (rng.next() % 3) as usize;
        let started = Instant::now();
        let ran = tokio::spawn(run_round(chaos.clone(), round, fault, group)).await;
        match ran {
            Ok((report, injected, records)) => {
                totals.add(&chaos, round, fault, &report, &injected, records);
                totals.rounds.push((fault, started.elapsed()));
            }
            Err(panicked) => {
                totals
                    .broken
                    .push(format!("round {round} ({fault:?}) failed: {panicked}"));
                break;
            }
        }
    }
    if totals.broken.is_empty() {
        recheck_all(&chaos, &mut totals).await;
    }
    totals.print();
    drop(chaos);
    totals.lost_waited == 0 && totals.broken.is_empty() && totals.failsafe_stalls == 0
}

/// One round: a load, one fault, the load on for a while, the checks.
async fn run_round<N: Nodes>(
    chaos: Arc<ChaosCluster<N>>,
    round: u32,
    fault: Fault,
    group: usize,
) -> (Report, faults::Injected, Records) {
    let load = Load::start(
        &chaos.addrs(),
        chaos.groups,
        &format!("chaos:r{round}"),
        LoadOptions::default(),
    );
    tokio::time::sleep(STEADY).await;
    let injected = faults::inject(&chaos, &load, fault, group).await;
    tokio::time::sleep(STEADY).await;
    let prefix = load.prefix.clone();
    let records = load.stop().await;
    let report = check::verify(&chaos, &records, &prefix).await;
    (report, injected, records)
}

impl Totals {
    /// Adds one round's numbers and prints its line.
    fn add<N: Nodes>(
        &mut self,
        chaos: &ChaosCluster<N>,
        round: u32,
        fault: Fault,
        report: &Report,
        injected: &faults::Injected,
        records: Records,
    ) {
        let mut outages = Vec::new();
        for kill in &injected.kills {
            self.kills += 1;
            let outage = report
                .outage_after(kill.group, kill.at)
                .map(|d| d.as_millis());
            if fault != Fault::RestartAll {
                self.primary_kills += 1;
                let times = if kill.failover {
                    &mut self.failover_ms
                } else {
                    &mut self.unreplaced_ms
                };
                times.extend(outage);
                outages.push(format!("n{}: {:?} ms", kill.node + 1, outage));
            }
        }
        if let Some(partitioned) = &injected.partition {
            outages.push(self.add_partition(chaos, round, report, partitioned, &records));
        }
        if let Some((from, to)) = injected.postgres_cut {
            let late = from + Duration::from_secs(7);
            for group in 0..usize::from(chaos.groups.primaries) {
                if check::acks_between(&records, group, late, to) == 0 {
                    self.failsafe_stalls += 1;
                    self.broken.push(format!(
                        "round {round}: group {group} stopped writing while cut off"
                    ));
                }
            }
        }
        self.acks += records.acks.len();
        self.waited += records.acks.iter().filter(|ack| ack.waited).count();
        self.lost_waited += report.lost_waited();
        self.lost_unwaited += report.lost_unwaited();
        if report.lost_waited() > 0 || !report.misplaced.is_empty() || !report.postgres.is_empty() {
            self.broken
                .push(format!("round {round} ({fault:?}):\n{report}"));
        }
        println!(
            "round {round}: {fault:?}, {} writes, lost {} waited / {} unwaited; {}",
            records.acks.len(),
            report.lost_waited(),
            report.lost_unwaited(),
            outages.join(", ")
        );
        self.all.acks.extend(records.acks);
    }

    /// A partition's numbers: how long its group had no primary, and whether the two
    /// primaries overlapped (from the records); its part of the round's line.
    fn add_partition<N: Nodes>(
        &mut self,
        chaos: &ChaosCluster<N>,
        round: u32,
        report: &Report,
        partitioned: &faults::Partitioned,
        records: &Records,
    ) -> String {
        let outage = report
            .outage_after(partitioned.group, partitioned.at)
            .map(|d| d.as_millis());
        self.partition_ms.extend(outage);
        let handover = check::handover(
            records,
            partitioned.group,
            chaos.addr(partitioned.old),
            chaos.addr(partitioned.new),
            Some(partitioned.new_seen_at),
        );
        self.overlapping += handover.overlapping;
        if handover.overlapping > 0 {
            self.broken.push(format!(
                "round {round}: two primaries of group {} at once: {handover}",
                partitioned.group
            ));
        }
        format!(
            "n{} partitioned, n{} took over: {outage:?} ms, {} overlapping",
            partitioned.old + 1,
            partitioned.new + 1,
            handover.overlapping
        )
    }

    fn print(&self) {
        println!("==== chaos summary ====");
        println!("rounds: {}", self.rounds.len());
        for fault in Fault::ALL {
            let count = self
                .rounds
                .iter()
                .filter(|(done, _)| *done == fault)
                .count();
            println!("  {fault:?}: {count}");
        }
        println!(
            "kills: {} ({} of them of primaries outside restart-all; {} failovers)",
            self.kills,
            self.primary_kills,
            self.failover_ms.len()
        );
        let (median, worst) = median_worst(&self.failover_ms);
        println!("failover time (first failed to first taken write): median {median} ms, worst {worst} ms");
        let (median, worst) = median_worst(&self.unreplaced_ms);
        println!("no live member (second kill) until the first is back: median {median} ms, worst {worst} ms");
        let (median, worst) = median_worst(&self.partition_ms);
        println!(
            "partitions: {} (no primary: median {median} ms, worst {worst} ms); writes of an old primary after its replica had taken one: {}",
            self.partition_ms.len(),
            self.overlapping
        );
        println!(
            "writes acknowledged: {} ({} waited, {} not)",
            self.acks,
            self.waited,
            self.acks - self.waited
        );
        println!("waited writes lost: {}", self.lost_waited);
        println!("unwaited writes lost: {}", self.lost_unwaited);
        for broken in &self.broken {
            println!("FAILED: {broken}");
        }
    }
}

/// Every round's writes checked again on the cluster as it is at the end.
async fn recheck_all<N: Nodes>(chaos: &ChaosCluster<N>, totals: &mut Totals) {
    let report = check::verify(chaos, &totals.all, "chaos:r").await;
    println!(
        "at the end, every round's writes again: lost {} waited / {} unwaited; {} misplaced; {} differ in PostgreSQL",
        report.lost_waited(),
        report.lost_unwaited(),
        report.misplaced.len(),
        report.postgres.len()
    );
    if report.lost_waited() > 0 || !report.misplaced.is_empty() || !report.postgres.is_empty() {
        totals.lost_waited += report.lost_waited();
        totals.broken.push(format!("the final check:\n{report}"));
    }
}

fn median_worst(values: &[u128]) -> (u128, u128) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    (median, sorted.last().copied().unwrap_or_default())
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
        Err(_) => default,
    }
}

fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| since.as_nanos() as u64)
}
