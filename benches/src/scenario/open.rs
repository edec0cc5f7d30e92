//! The open loop: requests go out on a fixed schedule whatever the server does, and each
//! latency runs from the request's intended send time, so a stall is counted in full for
//! every request it delayed (no coordinated omission).
//!
//! One thread does everything over non-blocking sockets: it writes every due request
//! round-robin over the connections, reads whatever replies have arrived, and naps for a few
//! tens of microseconds when there is nothing to do. One thread, not a sender and a reader per
//! connection: on a small machine shared with the server, every extra runnable thread costs
//! scheduler time slices of milliseconds, which would be measured as the server's latency.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;

use super::workloads::FlashAdd;
use crate::record::Recorder;
use crate::resp::take_reply;
use crate::target::{Model, Target};

/// Longest nap when nothing is due and nothing arrived.
const NAP_MAX: Duration = Duration::from_micros(50);
/// How long the loop waits for the last replies once every request is sent.
const DRAIN_WAIT_MAX: Duration = Duration::from_secs(60);
/// Bytes read per call.
const READ_CHUNK_BYTES: usize = 64 * 1024;

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
    /// Most the loop ever fell behind its schedule: when this is large, the client machine,
    /// not the server, limited the rate (its lateness is still counted in the latencies).
    pub sender_lag_max: Duration,
}

/// One connection: its socket, bytes waiting to be written, the intended times of the
/// requests it carries (in order), and its part of the workload.
struct Lane {
    stream: TcpStream,
    out: Vec<u8>,
    written: usize,
    read: BytesMut,
    waiting: VecDeque<Instant>,
    workload: FlashAdd,
    lost: Option<String>,
}

impl Lane {
    /// Writes what the socket takes now.
    fn write(&mut self) {
        while self.lost.is_none() && self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => self.lost = Some("the server closed the connection".into()),
                Ok(written) => self.written += written,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => self.lost = Some(error.to_string()),
            }
        }
        self.out.clear();
        self.written = 0;
    }

    /// Reads what has arrived and records every complete reply; returns how many.
    fn read(&mut self, rec: &mut Recorder, chunk: &mut [u8]) -> usize {
        let mut replies = 0;
        while self.lost.is_none() {
            match self.stream.read(chunk) {
                Ok(0) => self.lost = Some("the server closed the connection".into()),
                Ok(read) => self.read.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => self.lost = Some(error.to_string()),
            }
        }
        loop {
            match take_reply(&mut self.read) {
                Ok(Some(reply)) => {
                    let Some(intended) = self.waiting.pop_front() else {
                        self.lost = Some("a reply to no request".into());
                        break;
                    };
                    match reply.error() {
                        Some(error) => rec.error(error),
                        None => rec.ok(intended.elapsed()),
                    }
                    replies += 1;
                }
                Ok(None) => break,
                Err(error) => {
                    self.lost = Some(error.to_string());
                    break;
                }
            }
        }
        replies
    }

    /// A lost connection fails every request still waiting on it.
    fn fail_waiting(&mut self, rec: &mut Recorder) -> usize {
        let Some(lost) = &self.lost else {
            return 0;
        };
        let failed = self.waiting.len();
        for _ in self.waiting.drain(..) {
            rec.error(format!("connection lost: {lost}"));
        }
        failed
    }
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
        let stream =
            TcpStream::connect(target.addr).with_context(|| format!("{target}: cannot connect"))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        lanes.push(Lane {
            stream,
            out: Vec::with_capacity(64 * 1024),
            written: 0,
            read: BytesMut::with_capacity(READ_CHUNK_BYTES),
            waiting: VecDeque::new(),
            workload: FlashAdd::new(index, connections, spec.shoppers),
            lost: None,
        });
    }
    let interval = Duration::from_secs_f64(1.0 / spec.rate_ops_s.max(1.0));
    let total = (spec.rate_ops_s * spec.duration.as_secs_f64()).ceil() as u64;
    let start = Instant::now() + Duration::from_millis(10);
    let mut stats = OpenStats {
        sent: 0,
        sender_lag_max: Duration::ZERO,
    };
    let mut rec = Recorder::default();
    let mut answered = 0u64;
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut last_progress = Instant::now();
    while answered < total {
        let now = Instant::now();
        let mut progress = false;
        if stats.sent < total {
            let next = start + interval.mul_f64(stats.sent as f64);
            if next <= now {
                stats.sender_lag_max = stats.sender_lag_max.max(now - next);
                let due = ((now - start).as_secs_f64() / interval.as_secs_f64()) as u64 + 1;
                for request in stats.sent..due.min(total) {
                    let lane = &mut lanes[request as usize % connections];
                    lane.workload.push(model, &mut lane.out);
                    lane.waiting
                        .push_back(start + interval.mul_f64(request as f64));
                }
                stats.sent = due.min(total);
                progress = true;
            }
        }
        for lane in &mut lanes {
            lane.write();
            let replies = lane.read(&mut rec, &mut chunk) + lane.fail_waiting(&mut rec);
            answered += replies as u64;
            progress |= replies > 0;
        }
        counter.store(answered, Ordering::Relaxed);
        if progress {
            last_progress = Instant::now();
            continue;
        }
        if stats.sent == total && last_progress.elapsed() > DRAIN_WAIT_MAX {
            bail!(
                "{target}: {} requests unanswered {DRAIN_WAIT_MAX:?} after the last reply",
                total - answered
            );
        }
        let until_next =
            (start + interval.mul_f64(stats.sent as f64)).saturating_duration_since(now);
        std::thread::sleep(until_next.clamp(Duration::from_micros(1), NAP_MAX));
    }
    Ok((rec, start.elapsed(), stats))
}
