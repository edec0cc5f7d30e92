//! Latency and error recording. Every worker keeps its own [`Recorder`] (an HdrHistogram in
//! microseconds) and they are merged when the scenario ends into an [`Outcome`]: one row of
//! the table, one entry of the JSON file, one line of the plot.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency the histograms hold (longer ones are clamped to it), in microseconds.
const LATENCY_US_MAX: u64 = 120_000_000;
/// Error texts kept per scenario, to show what went wrong.
const ERROR_SAMPLES_MAX: usize = 5;

/// One worker's latencies and errors.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latency of every successful operation, microseconds.
    pub latency_us: Histogram<u64>,
    /// Failed operations: error replies, lost connections.
    pub errors: u64,
    /// The first few error texts.
    pub error_samples: Vec<String>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("constant histogram bounds are valid"),
            errors: 0,
            error_samples: Vec::new(),
        }
    }
}

impl Recorder {
    /// Records one successful operation.
    pub fn ok(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(micros.clamp(1, LATENCY_US_MAX));
    }

    /// Records one failed operation.
    pub fn error(&mut self, text: impl Into<String>) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES_MAX {
            self.error_samples.push(text.into());
        }
    }

    /// Adds another worker's recordings.
    pub fn merge(&mut self, other: &Recorder) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds add");
        self.errors += other.errors;
        for sample in &other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES_MAX {
                self.error_samples.push(sample.clone());
            }
        }
    }

    /// Operations recorded, successful or not.
    pub fn ops(&self) -> u64 {
        self.latency_us.len() + self.errors
    }
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Highest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One point of the percentile distribution.
#[derive(Debug, Clone, Serialize)]
pub struct PercentilePoint {
    /// Percentile, 0..=100.
    pub percentile: f64,
    /// Latency at it, milliseconds.
    pub latency_ms: f64,
}

/// The result of one scenario against one target.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Scenario name, with its mode (`flash-sale/open`).
    pub scenario: String,
    /// `cartd` or `redis`.
    pub target: String,
    /// The target's URL.
    pub url: String,
    /// Operations completed (successful or not).
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// Wall time of the measured phase, seconds.
    pub elapsed_s: f64,
    /// Operations per second over the measured phase.
    pub throughput_ops_s: f64,
    /// Latency summary.
    pub latency_ms: Latency,
    /// The full distribution (HdrHistogram's percentile iteration, 5 ticks per half distance).
    pub percentiles: Vec<PercentilePoint>,
    /// Scenario-specific figures (bytes per cart, connections opened, rate asked for, ...).
    pub extra: BTreeMap<String, serde_json::Value>,
    /// The first few errors, as the server or the socket said them.
    pub error_samples: Vec<String>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Outcome {
    /// Summarises a merged recorder.
    pub fn new(
        scenario: &str,
        target: &crate::target::Target,
        rec: &Recorder,
        elapsed: Duration,
    ) -> Outcome {
        let hist = &rec.latency_us;
        let elapsed_s = elapsed.as_secs_f64().max(1e-9);
        let percentiles = if hist.is_empty() {
            Vec::new()
        } else {
            hist.iter_quantiles(5)
                .map(|step| PercentilePoint {
                    percentile: step.quantile_iterated_to() * 100.0,
                    latency_ms: ms(step.value_iterated_to()),
                })
                .collect()
        };
        Outcome {
            scenario: scenario.to_string(),
            target: target.kind.as_str().to_string(),
            url: target.to_string(),
            ops: rec.ops(),
            errors: rec.errors,
            elapsed_s,
            throughput_ops_s: rec.ops() as f64 / elapsed_s,
            latency_ms: Latency {
                p50: ms(hist.value_at_quantile(0.50)),
                p90: ms(hist.value_at_quantile(0.90)),
                p99: ms(hist.value_at_quantile(0.99)),
                p999: ms(hist.value_at_quantile(0.999)),
                max: ms(hist.max()),
                mean: hist.mean() / 1000.0,
            },
            percentiles,
            extra: BTreeMap::new(),
            error_samples: rec.error_samples.clone(),
        }
    }

    /// Adds a scenario-specific figure.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Outcome {
        self.extra.insert(name.to_string(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_recorders_count_everything_once() {
        let mut a = Recorder::default();
        a.ok(Duration::from_micros(100));
        a.error("ERR one");
        let mut b = Recorder::default();
        b.ok(Duration::from_micros(300));
        b.ok(Duration::from_millis(2));
        a.merge(&b);
        assert_eq!(a.ops(), 4);
        assert_eq!(a.errors, 1);
        assert_eq!(a.latency_us.len(), 3);
        assert!(a.latency_us.max() >= 1_999);
    }
}
