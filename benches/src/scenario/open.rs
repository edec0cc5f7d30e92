//! The open loop: requests go out on a fixed schedule whatever the server does, and each
//! latency runs from the request's intended send time, so a stall is counted in full for
//! every request it delayed (no coordinated omission). One sender thread keeps the schedule
//! (std's sleep, which wakes within tens of microseconds, not tokio's millisecond timer) and
//! writes every due request round-robin over the connections; one reader thread per
//! connection takes the replies in order and matches each with its intended time.

use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam_channel::{unbounded, Receiver, Sender};

use super::workloads::FlashAdd;
use crate::record::Recorder;
use crate::resp::BlockingConn;
use crate::target::{Model, Target};

/// The schedule.
#[derive(Debug, Clone, Copy)]
pub struct OpenSpec {
    /// Connections the requests are spread over.
    pub connections: usize,
    /// Requests per second.
    pub rate_ops_s: f64,
    /// How long requests are sent.
    pub duration: Duration,
    /// Flash-sale shoppers (carts) the requests are spread over.
    pub shoppers: u64,
}

/// What the open loop measured besides latencies.
#[derive(Debug, Clone, Copy)]
pub struct OpenStats {
    /// Requests sent.
    pub sent: u64,
    /// Most the sender ever fell behind its schedule: when this is large, the client machine,
    /// not the server, limited the rate (its lateness is still counted in the latencies).
    pub sender_lag_max: Duration,
}

struct Lane {
    writer: TcpStream,
    intended: Sender<Instant>,
    out: Vec<u8>,
    due: Vec<Instant>,
    workload: FlashAdd,
    reader: JoinHandle<Recorder>,
}

/// Runs the flash-sale open loop; blocks the calling thread.
pub fn run_flash(
    target: &Target,
    model: &Model,
    spec: OpenSpec,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<(Recorder, Duration, OpenStats)> {
    let connections = spec.connections.max(1);
    let mut lanes = Vec::with_capacity(connections);
    for index in 0..connections {
        let conn = BlockingConn::connect(target.addr)
            .with_context(|| format!("{target}: cannot connect"))?;
        let writer = conn.writer()?;
        let (intended, due_times) = unbounded();
        let counter = counter.clone();
        let reader = std::thread::spawn(move || read_replies(conn, &due_times, &counter));
        lanes.push(Lane {
            writer,
            intended,
            out: Vec::with_capacity(64 * 1024),
            due: Vec::new(),
            workload: FlashAdd::new(index, connections, spec.shoppers),
            reader,
        });
    }
    let interval = Duration::from_secs_f64(1.0 / spec.rate_ops_s.max(1.0));
    let total = (spec.rate_ops_s * spec.duration.as_secs_f64()).ceil() as u64;
    let start = Instant::now() + Duration::from_millis(10);
    let mut stats = OpenStats {
        sent: 0,
        sender_lag_max: Duration::ZERO,
    };
    while stats.sent < total {
        let now = Instant::now();
        let next = start + interval.mul_f64(stats.sent as f64);
        if next > now {
            std::thread::sleep(next - now);
            continue;
        }
        stats.sender_lag_max = stats.sender_lag_max.max(now - next);
        let due_until = ((now - start).as_secs_f64() / interval.as_secs_f64()) as u64 + 1;
        let due_until = due_until.min(total);
        for request in stats.sent..due_until {
            let lane = &mut lanes[request as usize % connections];
            lane.workload.push(model, &mut lane.out);
            lane.due.push(start + interval.mul_f64(request as f64));
        }
        stats.sent = due_until;
        send_due(&mut lanes)?;
    }
    let mut recorder = Recorder::default();
    for lane in lanes {
        drop(lane.intended);
        let rec = lane
            .reader
            .join()
            .map_err(|_| anyhow!("a reader thread panicked"))?;
        recorder.merge(&rec);
    }
    Ok((recorder, start.elapsed(), stats))
}

/// Writes every lane's due requests; their intended times go to the readers first, so a
/// reader always knows what a reply answers.
fn send_due(lanes: &mut [Lane]) -> anyhow::Result<()> {
    for lane in lanes.iter_mut().filter(|lane| !lane.out.is_empty()) {
        for intended in lane.due.drain(..) {
            // A reader that stopped (its connection failed) counted the rest as errors.
            let _ = lane.intended.send(intended);
        }
        if let Err(error) = BlockingConn::send(&mut lane.writer, &lane.out) {
            // The reader finds the connection gone too and counts these requests as failed.
            lane.out.clear();
            return Err(anyhow!("the connection failed while sending: {error}"));
        }
        lane.out.clear();
    }
    Ok(())
}

fn read_replies(mut conn: BlockingConn, due: &Receiver<Instant>, counter: &AtomicU64) -> Recorder {
    let mut rec = Recorder::default();
    while let Ok(intended) = due.recv() {
        match conn.reply() {
            Ok(reply) => match reply.error() {
                Some(error) => rec.error(error),
                None => rec.ok(intended.elapsed()),
            },
            Err(lost) => {
                rec.error(format!("connection lost: {lost}"));
                while due.recv().is_ok() {
                    rec.error(format!("connection lost: {lost}"));
                }
                break;
            }
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }
    rec
}
