//! The closed loop: N connections, each sending a pipeline of operations and waiting for all
//! their replies before the next (as redis-benchmark does). A latency runs from the moment the
//! pipeline is written to the moment the operation's last reply arrives. With a pace, each
//! connection's k-th send is due at start + k * interval and its latency runs from that
//! intended time, so a stall shows in the figures instead of slowing the load (pipeline 1).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::record::Recorder;
use crate::resp::Conn;
use crate::target::{Model, Target};

/// A stream of operations for one connection.
pub trait Workload: Send + 'static {
    /// Appends the next operation to `buf` and returns how many replies it takes, or `None`
    /// when there is no more work.
    fn next(&mut self, model: &Model, buf: &mut Vec<u8>) -> Option<usize>;
}

/// When the loop ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// After this long.
    Elapsed(Duration),
    /// When every workload has run out.
    Exhausted,
}

/// The loop's shape.
#[derive(Debug, Clone, Copy)]
pub struct Loop {
    /// Connections, one task each.
    pub connections: usize,
    /// Operations sent together per connection.
    pub pipeline: usize,
    /// When to stop.
    pub until: Until,
    /// Total operations per second to pace at (pipeline 1), or `None` for flat out.
    pub rate_ops_s: Option<f64>,
}

/// Runs the loop; returns the merged recordings and the measured wall time.
pub async fn run<W: Workload>(
    target: &Target,
    model: &Model,
    spec: Loop,
    counter: Arc<AtomicU64>,
    mut workload: impl FnMut(usize) -> W,
) -> anyhow::Result<(Recorder, Duration)> {
    let mut conns = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        let conn = Conn::connect(target.addr, None)
            .await
            .with_context(|| format!("{target}: cannot connect"))?;
        conns.push(conn);
    }
    let interval = spec
        .rate_ops_s
        .map(|rate| Duration::from_secs_f64(spec.connections as f64 / rate.max(1.0)));
    let started = Instant::now();
    let deadline = match spec.until {
        Until::Elapsed(duration) => Some(started + duration),
        Until::Exhausted => None,
    };
    let mut tasks = Vec::with_capacity(spec.connections);
    for (index, conn) in conns.into_iter().enumerate() {
        let worker = Worker {
            conn,
            model: model.clone(),
            pipeline: if interval.is_some() {
                1
            } else {
                spec.pipeline.max(1)
            },
            deadline,
            // Connections start spread over one interval, not all at once.
            pace: interval.map(|interval| {
                let offset = interval.mul_f64(index as f64 / spec.connections as f64);
                (started + offset, interval)
            }),
            counter: counter.clone(),
        };
        tasks.push(tokio::spawn(worker.run(workload(index))));
    }
    let mut recorder = Recorder::default();
    for task in tasks {
        recorder.merge(&task.await.context("a load task panicked")?);
    }
    Ok((recorder, started.elapsed()))
}

struct Worker {
    conn: Conn,
    model: Model,
    pipeline: usize,
    deadline: Option<Instant>,
    pace: Option<(Instant, Duration)>,
    counter: Arc<AtomicU64>,
}

impl Worker {
    async fn run(mut self, mut workload: impl Workload) -> Recorder {
        let mut rec = Recorder::default();
        let mut replies_per_op = Vec::with_capacity(self.pipeline);
        let mut sends = 0u32;
        loop {
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                break;
            }
            replies_per_op.clear();
            while replies_per_op.len() < self.pipeline {
                match workload.next(&self.model, &mut self.conn.out) {
                    Some(replies) => replies_per_op.push(replies),
                    None => break,
                }
            }
            if replies_per_op.is_empty() {
                break;
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
            if let Err((answered, lost)) = self.exchange(&replies_per_op, sent, &mut rec).await {
                // Every operation of the pipeline that got no answer failed.
                for _ in answered..replies_per_op.len() {
                    rec.error(format!("connection lost: {lost}"));
                }
                break;
            }
        }
        rec
    }

    /// Sends the buffered pipeline and reads its replies; on a lost connection, says how many
    /// operations were answered before it.
    async fn exchange(
        &mut self,
        replies_per_op: &[usize],
        sent: Instant,
        rec: &mut Recorder,
    ) -> Result<(), (usize, std::io::Error)> {
        self.conn.flush().await.map_err(|lost| (0, lost))?;
        for (answered, &replies) in replies_per_op.iter().enumerate() {
            let mut failed = None;
            for _ in 0..replies {
                let reply = self.conn.reply().await.map_err(|lost| (answered, lost))?;
                if let Some(error) = reply.error() {
                    failed.get_or_insert(error);
                }
            }
            match failed {
                Some(error) => rec.error(error),
                None => rec.ok(sent.elapsed()),
            }
            self.counter.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, for the Redis model's timestamps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
