//! The pub/sub scenario: how long one price change takes to reach every subscriber of its
//! product's channel (for Redis, a PUBLISH to as many subscribers: the baseline), and what
//! idle subscribers of unrelated channels cost the flash-sale adds.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::progress::{Progress, Span};
use crate::record::{Outcome, Recorder};
use crate::resp::{push_command, Conn};
use crate::scenario::closed::{self, Loop, Until};
use crate::scenario::workloads::FlashAdd;
use crate::scenario::Settings;
use crate::target::{Kind, Model, Target};

/// The product whose price changes in the fan-out.
const FANOUT_PRODUCT: &str = "fanout-sku";
/// Subscriptions made per pipelined batch while connecting the subscribers.
const CONNECT_BATCH: usize = 500;

/// The channel the fan-out's subscribers listen on, and the request that makes one message
/// on it: cartd's own product channel and a CATALOG.SET, or a PUBLISH for Redis.
fn fanout_channel(kind: Kind) -> String {
    match kind {
        Kind::Cartd => format!("__product__:{FANOUT_PRODUCT}"),
        Kind::Redis => format!("price:{FANOUT_PRODUCT}"),
    }
}

fn push_price_change(kind: Kind, buf: &mut Vec<u8>, round: usize) {
    let price = (1000 + round).to_string();
    match kind {
        Kind::Cartd => push_command(
            buf,
            &[
                b"CATALOG.SET",
                FANOUT_PRODUCT.as_bytes(),
                b"-",
                price.as_bytes(),
                b"USD",
            ],
        ),
        Kind::Redis => push_command(
            buf,
            &[
                b"PUBLISH",
                fanout_channel(kind).as_bytes(),
                format!("{{\"product\":\"{FANOUT_PRODUCT}\",\"price\":{price}}}").as_bytes(),
            ],
        ),
    }
}

/// Opens `count` connections each subscribed to `channel(index)`, confirmation read.
async fn subscribers(
    target: &Target,
    count: usize,
    channel: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(count);
    for batch_start in (0..count).step_by(CONNECT_BATCH) {
        let batch_end = (batch_start + CONNECT_BATCH).min(count);
        let mut batch = Vec::with_capacity(batch_end - batch_start);
        for index in batch_start..batch_end {
            let mut conn = Conn::connect(target.addr, None)
                .await
                .with_context(|| format!("{target}: subscriber {index} cannot connect"))?;
            push_command(&mut conn.out, &[b"SUBSCRIBE", channel(index).as_bytes()]);
            conn.flush().await?;
            batch.push(conn);
        }
        for conn in &mut batch {
            let confirmation = conn.reply().await?;
            if let Some(error) = confirmation.error() {
                bail!("{target}: SUBSCRIBE refused: {error}");
            }
        }
        conns.extend(batch);
    }
    Ok(conns)
}

/// One price change to `settings.subscribers` subscribers, `settings.fanout_rounds` times.
/// The distribution is every subscriber's delivery time (from the send until it has the
/// message), so its max is the slowest round's time until the last subscriber had it; the
/// notes carry that time per round.
pub async fn fanout(target: &Target, settings: &Settings) -> anyhow::Result<Outcome> {
    let count = settings.subscribers;
    let channel = fanout_channel(target.kind);
    let label = format!("pubsub/fanout {}", target.kind.as_str());
    let progress = Progress::start(&label, Span::Count(settings.fanout_rounds as u64));
    let mut conns = subscribers(target, count, |_| channel.clone()).await?;
    let mut publisher = Conn::connect(target.addr, None).await?;
    let mut to_last_ms = Vec::with_capacity(settings.fanout_rounds);
    let mut each = Recorder::default();
    let started = Instant::now();
    for round in 0..settings.fanout_rounds {
        let readers: Vec<_> = conns
            .drain(..)
            .map(|mut conn| {
                tokio::spawn(async move {
                    let message = conn.reply().await;
                    (conn, message.map(|_| Instant::now()))
                })
            })
            .collect();
        // Every reader waits on its socket before the change is sent.
        tokio::time::sleep(Duration::from_millis(200)).await;
        push_price_change(target.kind, &mut publisher.out, round);
        let sent = Instant::now();
        publisher.flush().await?;
        let reply = publisher.reply().await?;
        if let Some(error) = reply.error() {
            bail!("{target}: the price change was refused: {error}");
        }
        let mut last = sent;
        for reader in readers {
            let (conn, arrived) = reader.await.context("a subscriber task panicked")?;
            let arrived =
                arrived.with_context(|| format!("{target}: a subscriber lost its connection"))?;
            each.ok(arrived.duration_since(sent));
            last = last.max(arrived);
            conns.push(conn);
        }
        to_last_ms.push(last.duration_since(sent).as_secs_f64() * 1000.0);
        progress
            .counter()
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    progress.finish();
    let elapsed = started.elapsed();
    let slowest = to_last_ms.iter().copied().fold(0.0, f64::max);
    Ok(Outcome::new("pubsub/fanout", target, &each, elapsed)
        .with("subscribers", count)
        .with("rounds", settings.fanout_rounds)
        .with("channel", channel)
        .with("to_last_subscriber_ms", to_last_ms)
        .with("to_last_subscriber_max_ms", slowest))
}

/// The flash-sale adds flat out alone, then beside `settings.idle_subscribers` connections
/// subscribed to channels nothing publishes on, then alone again: the server's state drifts
/// between phases (its carts grow, snapshots run), so the ratio is taken against the mean of
/// the two runs alone, one before and one after.
pub async fn adds_beside_subscribers(
    target: &Target,
    model: &Model,
    settings: &Settings,
) -> anyhow::Result<Vec<Outcome>> {
    let phases = [
        ("pubsub/adds-alone", 0),
        ("pubsub/adds-beside-subscribers", settings.idle_subscribers),
        ("pubsub/adds-alone-after", 0),
    ];
    let mut outcomes = Vec::new();
    for (name, idle) in phases {
        let held = subscribers(target, idle, |index| format!("unrelated:{index}")).await?;
        let label = format!("{name} {}", target.kind.as_str());
        let progress = Progress::start(&label, Span::Time(settings.duration()));
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
        drop(held);
        outcomes.push(
            Outcome::new(name, target, &rec, elapsed)
                .with("idle_subscribers", idle)
                .with("connections", settings.connections)
                .with("pipeline", settings.pipeline),
        );
    }
    let alone = (outcomes[0].throughput_ops_s + outcomes[2].throughput_ops_s) / 2.0;
    let ratio = outcomes[1].throughput_ops_s / alone.max(1e-9);
    outcomes[1] = outcomes[1].clone().with("throughput_ratio_to_alone", ratio);
    Ok(outcomes)
}
