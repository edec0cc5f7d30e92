//! One client process of the connection storm against a cluster: `cartd-bench
//! connections-client`, a hidden subcommand the parent (`cluster_connections.rs`) runs itself
//! as, once per process, so that each process holds its part of the connections under its own
//! open-file limit. The two talk in JSON lines, one message a line:
//!
//! 1. parent → client: its [`ClientPlan`] (nodes, source addresses, the cart of each connection);
//! 2. client → parent: [`ClientReport::Progress`] now and then, then
//!    [`ClientReport::Opened`] once every connection has opened or failed;
//! 3. parent → client: [`ParentWord::Go`] with a wall-clock instant, the same for every client
//!    (the machine's one clock): each adds on all its connections at that instant and times
//!    every reply from it; client → parent: [`ClientReport::Answered`];
//! 4. parent → client: [`ParentWord::Release`] once every client has all its answers (so every
//!    connection of the storm is open until the last reply anywhere); the client closes its
//!    connections and sends [`ClientReport::Done`] with its histogram, V2-serialized.
//!
//! stdout carries these messages and nothing else; what goes wrong is said on stderr.
//! [`Clients`] is the parent's end: the processes, started and stopped by pid, and their
//! messages gathered stage by stage.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines, Stdin};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::connections::{ensure_fd_limit, Storm, StormConn};
use crate::record::Recorder;
use crate::target::Model;

/// The hidden subcommand a client process is started with.
pub const CLIENT_SUBCOMMAND: &str = "connections-client";
/// How often a client tells the parent how far it is.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// How long a client may take to exit once it has sent its findings.
const EXIT_WAIT_MAX: Duration = Duration::from_secs(30);
/// Messages from the clients queued for the parent.
const REPORTS_QUEUED_MAX: usize = 256;

/// What one client process is to do.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClientPlan {
    /// How requests are written (for Redis, the scripts' SHA1s, loaded on every primary).
    pub model: Model,
    /// The primaries, in the order `carts_per_node` follows.
    pub nodes: Vec<SocketAddr>,
    /// Source addresses of this process alone (none: the OS picks).
    pub sources: Vec<IpAddr>,
    /// Per node, the flash-sale shoppers (cart `fc{n}`) whose connections go there: each
    /// cart's slot is served by that node.
    pub carts_per_node: Vec<Vec<u64>>,
    /// Connects in flight at once.
    pub in_flight: usize,
}

impl ClientPlan {
    /// Connections in the plan.
    pub fn connections(&self) -> usize {
        self.carts_per_node.iter().map(Vec::len).sum()
    }

    /// The connections, the nodes taken in turn (so every node is connected to from the
    /// start), the sources in turn.
    fn storm_conns(&self) -> Vec<StormConn> {
        let longest = self.carts_per_node.iter().map(Vec::len).max().unwrap_or(0);
        let mut conns = Vec::with_capacity(self.connections());
        for position in 0..longest {
            for (node, carts) in self.carts_per_node.iter().enumerate() {
                let Some(shopper) = carts.get(position) else {
                    continue;
                };
                let source = match self.sources.len() {
                    0 => None,
                    sources => Some(self.sources[conns.len() % sources]),
                };
                conns.push(StormConn {
                    node,
                    source,
                    cart: format!("fc{shopper}"),
                });
            }
        }
        conns
    }
}

/// A client's message to the parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientReport {
    /// Connections settled (opening) or answered (adding) so far.
    Progress {
        /// How many.
        done: u64,
    },
    /// Every connection has opened or failed.
    Opened {
        /// Open connections per node.
        connected_per_node: Vec<u64>,
        /// Microseconds from the first connect to the last settled.
        connect_us: u64,
    },
    /// Every connection has its answer.
    Answered {
        /// Microseconds from the go instant to the last answer.
        after_go_us: u64,
    },
    /// The connections are closed; what they found.
    Done(ClientFound),
}

/// What one client's connections found.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClientFound {
    /// The latency histogram (microseconds from the go), HdrHistogram's V2 serialization.
    pub histogram_v2: Vec<u8>,
    /// Failed connections and adds.
    pub errors: u64,
    /// The first few error texts.
    pub error_samples: Vec<String>,
    /// Errors by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Adds acknowledged per node.
    pub added_per_node: Vec<u64>,
}

impl ClientFound {
    /// The recorder these findings came from.
    pub fn recorder(&self) -> anyhow::Result<Recorder> {
        let latency_us = Deserializer::new()
            .deserialize(&mut self.histogram_v2.as_slice())
            .map_err(|error| anyhow!("a client's histogram does not deserialize: {error:?}"))?;
        let mut rec = Recorder::default();
        rec.merge(&Recorder {
            latency_us,
            errors: self.errors,
            error_samples: self.error_samples.clone(),
        });
        Ok(rec)
    }
}

/// The parent's word to a client.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParentWord {
    /// Add at this instant: nanoseconds since the Unix epoch.
    Go {
        /// The instant.
        at_unix_ns: u64,
    },
    /// Close the connections and report.
    Release,
}

/// Nanoseconds since the Unix epoch now.
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// This process's `Instant` at the wall-clock instant `at_unix_ns`.
fn instant_at(at_unix_ns: u64) -> Instant {
    let (now, now_unix_ns) = (Instant::now(), unix_now_ns());
    if at_unix_ns >= now_unix_ns {
        now + Duration::from_nanos(at_unix_ns - now_unix_ns)
    } else {
        let late = Duration::from_nanos(now_unix_ns - at_unix_ns);
        now.checked_sub(late).unwrap_or(now)
    }
}

/// Writes one message to the parent (one line; stdout's lock keeps lines whole).
fn report(message: &ClientReport) -> anyhow::Result<()> {
    let line = serde_json::to_string(message)?;
    println!("{line}");
    Ok(())
}

async fn next_word(stdin: &mut Lines<BufReader<Stdin>>) -> anyhow::Result<ParentWord> {
    let line = stdin
        .next_line()
        .await?
        .ok_or_else(|| anyhow!("the parent closed stdin"))?;
    serde_json::from_str(&line).with_context(|| format!("not a word from the parent: {line}"))
}

/// The client process: runs its plan as the parent says.
pub async fn run() -> anyhow::Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin.next_line().await?.context("no plan on stdin")?;
    let plan: ClientPlan = serde_json::from_str(&line).context("the plan does not parse")?;
    ensure_fd_limit(plan.connections())?;
    let counter = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn(report_progress(counter.clone()));
    let result = storm(&plan, &mut stdin, &counter).await;
    ticker.abort();
    let found = result?;
    report(&ClientReport::Done(found))
}

async fn storm(
    plan: &ClientPlan,
    stdin: &mut Lines<BufReader<Stdin>>,
    counter: &AtomicU64,
) -> anyhow::Result<ClientFound> {
    let conns = plan.storm_conns();
    let storm = Storm::open(&plan.nodes, conns, &plan.model, plan.in_flight, counter).await;
    report(&ClientReport::Opened {
        connected_per_node: storm.connected_per_node(),
        connect_us: micros(storm.connect_time),
    })?;
    let ParentWord::Go { at_unix_ns } = next_word(stdin).await? else {
        bail!("the parent said release before go");
    };
    counter.store(0, Ordering::Relaxed);
    let after_go = storm.add_at(instant_at(at_unix_ns), counter).await;
    report(&ClientReport::Answered {
        after_go_us: micros(after_go),
    })?;
    let ParentWord::Release = next_word(stdin).await? else {
        bail!("the parent said go twice");
    };
    let found = storm.close().await?;
    let mut histogram_v2 = Vec::new();
    V2Serializer::new()
        .serialize(&found.rec.latency_us, &mut histogram_v2)
        .map_err(|error| anyhow!("cannot serialize the histogram: {error:?}"))?;
    Ok(ClientFound {
        histogram_v2,
        errors: found.rec.errors,
        error_samples: found.rec.error_samples,
        errors_by_kind: found.errors_by_kind,
        added_per_node: found.added_per_node,
    })
}

async fn report_progress(counter: Arc<AtomicU64>) {
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    loop {
        ticker.tick().await;
        let done = counter.load(Ordering::Relaxed);
        if report(&ClientReport::Progress { done }).is_err() {
            return;
        }
    }
}

/// Microseconds, for the wire.
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The client processes, each stopped by its pid if it is still running when dropped.
pub struct Clients {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    readers: Vec<JoinHandle<()>>,
    reports: mpsc::Receiver<(usize, anyhow::Result<ClientReport>)>,
    progress: Vec<u64>,
    /// Why a client's messages ended, for those that did.
    ended: Vec<Option<String>>,
}

impl Drop for Clients {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }
}

impl Clients {
    /// Starts one client process per plan (this program, `connections-client`) and hands each
    /// its plan.
    pub async fn spawn(plans: Vec<ClientPlan>) -> anyhow::Result<Clients> {
        let me = std::env::current_exe()?;
        let (report_tx, reports) = mpsc::channel(REPORTS_QUEUED_MAX);
        let mut clients = Clients {
            children: Vec::with_capacity(plans.len()),
            stdins: Vec::with_capacity(plans.len()),
            readers: Vec::with_capacity(plans.len()),
            reports,
            progress: vec![0; plans.len()],
            ended: vec![None; plans.len()],
        };
        for (index, plan) in plans.iter().enumerate() {
            let mut child = Command::new(&me)
                .arg(CLIENT_SUBCOMMAND)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {} {CLIENT_SUBCOMMAND}", me.display()))?;
            let stdout = child.stdout.take().expect("stdout is piped");
            let stdin = child.stdin.take().expect("stdin is piped");
            clients.children.push(child);
            clients.stdins.push(stdin);
            clients
                .readers
                .push(tokio::spawn(read_reports(index, stdout, report_tx.clone())));
            let mut line = serde_json::to_vec(plan)?;
            line.push(b'\n');
            let stdin = clients.stdins.last_mut().expect("just pushed");
            stdin
                .write_all(&line)
                .await
                .with_context(|| format!("client process {index} did not take its plan"))?;
        }
        Ok(clients)
    }

    /// Says `word` to every client.
    pub async fn tell(&mut self, word: &ParentWord) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(word)?;
        line.push(b'\n');
        for (index, stdin) in self.stdins.iter_mut().enumerate() {
            stdin
                .write_all(&line)
                .await
                .with_context(|| format!("client process {index} is gone"))?;
        }
        Ok(())
    }

    /// One message of `pick`'s kind from every client (progress reports fill `counter`);
    /// fails when a client exits, says something else, or `wait_max` passes.
    pub async fn gather<T>(
        &mut self,
        stage: &str,
        wait_max: Duration,
        counter: &AtomicU64,
        mut pick: impl FnMut(ClientReport) -> Option<T>,
    ) -> anyhow::Result<Vec<T>> {
        if let Some((index, why)) = self
            .ended
            .iter()
            .enumerate()
            .find_map(|(index, why)| Some((index, why.as_ref()?)))
        {
            bail!("client process {index}, before {stage}: {why}");
        }
        self.progress.fill(0);
        let deadline = tokio::time::Instant::now() + wait_max;
        let mut found: Vec<Option<T>> = self.children.iter().map(|_| None).collect();
        while found.iter().any(Option::is_none) {
            let (index, report) = tokio::time::timeout_at(deadline, self.reports.recv())
                .await
                .map_err(|_| {
                    anyhow!("the client processes were not all done {stage} after {wait_max:?}")
                })?
                .expect("a reader's sender lives while the clients do");
            let report = match report {
                Ok(report) => report,
                // Its message of this stage came first: it ended after it (the last stage) or
                // will be missed at the next.
                Err(error) if found[index].is_some() => {
                    self.ended[index] = Some(format!("{error:#}"));
                    continue;
                }
                Err(error) => bail!("client process {index}, {stage}: {error:#}"),
            };
            if let ClientReport::Progress { done } = report {
                self.progress[index] = done;
                counter.store(self.progress.iter().sum(), Ordering::Relaxed);
                continue;
            }
            match pick(report) {
                Some(value) if found[index].is_none() => found[index] = Some(value),
                _ => bail!("client process {index} said something out of turn while {stage}"),
            }
        }
        Ok(found
            .into_iter()
            .map(|value| value.expect("all found"))
            .collect())
    }

    /// Waits for every client to exit, each successfully.
    pub async fn wait_exit(mut self) -> anyhow::Result<()> {
        for (index, child) in self.children.iter_mut().enumerate() {
            let status = tokio::time::timeout(EXIT_WAIT_MAX, child.wait())
                .await
                .map_err(|_| anyhow!("client process {index} did not exit"))??;
            if !status.success() {
                bail!("client process {index} exited with {status}");
            }
        }
        self.children.clear();
        Ok(())
    }
}

/// Forwards a client's messages, then its end, to the parent.
async fn read_reports(
    index: usize,
    stdout: tokio::process::ChildStdout,
    reports: mpsc::Sender<(usize, anyhow::Result<ClientReport>)>,
) {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let report = match lines.next_line().await {
            Ok(Some(line)) => serde_json::from_str(&line)
                .with_context(|| format!("not a client's message: {line}")),
            Ok(None) => Err(anyhow!("it exited (its error, if any, is above)")),
            Err(error) => Err(anyhow!("its stdout failed: {error}")),
        };
        let ended = report.is_err();
        if reports.send((index, report)).await.is_err() || ended {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_takes_the_nodes_and_sources_in_turn() {
        let plan = ClientPlan {
            model: Model::for_kind(crate::target::Kind::Cartd),
            nodes: vec![([127, 0, 0, 1], 7001).into(), ([127, 0, 0, 1], 7002).into()],
            sources: vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()],
            carts_per_node: vec![vec![1, 4, 5], vec![2]],
            in_flight: 8,
        };
        let conns = plan.storm_conns();
        let shape: Vec<(usize, &str)> = conns
            .iter()
            .map(|conn| (conn.node, conn.cart.as_str()))
            .collect();
        assert_eq!(shape, vec![(0, "fc1"), (1, "fc2"), (0, "fc4"), (0, "fc5")]);
        assert_eq!(conns[1].source, Some([127, 0, 0, 3].into()));
        assert_eq!(conns[2].source, Some([127, 0, 0, 2].into()));
    }

    #[test]
    fn findings_cross_the_pipe_whole() {
        let mut rec = Recorder::default();
        rec.ok(Duration::from_micros(150));
        rec.ok(Duration::from_millis(40));
        let mut histogram_v2 = Vec::new();
        V2Serializer::new()
            .serialize(&rec.latency_us, &mut histogram_v2)
            .unwrap();
        let found = ClientFound {
            histogram_v2,
            errors: 1,
            error_samples: vec!["reply: ERR".into()],
            errors_by_kind: BTreeMap::from([("reply: ERR".to_string(), 1)]),
            added_per_node: vec![2],
        };
        let line = serde_json::to_string(&ClientReport::Done(found)).unwrap();
        let ClientReport::Done(back) = serde_json::from_str(&line).unwrap() else {
            panic!("a Done comes back as Done");
        };
        let rec = back.recorder().unwrap();
        assert_eq!(rec.ops(), 3);
        assert_eq!(rec.latency_us.len(), 2);
        assert!(rec.latency_us.max() >= 39_000);
    }
}
