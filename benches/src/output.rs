//! Results out: the table, the ratios of a comparison, the JSON file and the SVG chart.

use std::path::Path;

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use plotters::prelude::*;
use serde::Serialize;

use crate::machine::Machine;
use crate::record::Outcome;
use crate::scenario::Settings;

/// How cartd did against Redis in one scenario phase.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// Scenario phase.
    pub scenario: String,
    /// cartd's throughput over Redis's (above 1: cartd does more per second).
    pub throughput_cartd_over_redis: f64,
    /// Redis's p99 over cartd's (above 1: cartd answers faster); none when either side had
    /// no successful operation to time (a replica lag where no replica had the writes).
    pub p99_redis_over_cartd: Option<f64>,
    /// Redis's bytes per cart over cartd's, for the memory scenario.
    pub memory_redis_over_cartd: Option<f64>,
}

/// Everything a run wrote, as the JSON file holds it.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// The command line.
    pub command: String,
    /// The machine.
    pub machine: &'a Machine,
    /// The settings.
    pub settings: &'a Settings,
    /// Extra settings of a comparison (durability of the servers started).
    pub servers: Option<serde_json::Value>,
    /// One entry per scenario phase and target.
    pub results: &'a [Outcome],
    /// cartd against Redis, when both ran.
    pub ratios: Vec<Ratio>,
}

/// The results table.
pub fn table(outcomes: &[Outcome]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "scenario", "target", "ops", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
        "errors", "notes",
    ]);
    for outcome in outcomes {
        let latency = &outcome.latency_ms;
        let mut row = vec![
            Cell::new(&outcome.scenario),
            Cell::new(&outcome.target),
            Cell::new(outcome.ops),
            Cell::new(format!("{:.0}", outcome.throughput_ops_s)),
        ];
        for value in [
            latency.p50,
            latency.p90,
            latency.p99,
            latency.p999,
            latency.max,
        ] {
            row.push(Cell::new(format!("{value:.3}")));
        }
        row.push(Cell::new(outcome.errors));
        row.push(Cell::new(notes(outcome)));
        table.add_row(row);
    }
    for column in 2..10 {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

fn notes(outcome: &Outcome) -> String {
    let shown = [
        ("bytes_per_cart", "bytes/cart"),
        ("connected", "connected"),
        ("connect_s", "connect s"),
        ("server_bytes_per_connection", "server bytes/conn"),
        ("client_processes", "client processes"),
        ("rate_asked_ops_s", "rate asked"),
        ("sender_lag_max_ms", "sender lag max ms"),
        ("primaries", "primaries"),
        ("redirects", "MOVED"),
    ];
    let mut notes: Vec<String> = shown
        .iter()
        .filter_map(|(key, name)| {
            let value = outcome.extra.get(*key)?;
            let value = value.as_f64().filter(|value| *value > 0.0)?;
            Some(format!("{name} {}", trim_number(value)))
        })
        .collect();
    // What the WAITs answered, as `WAIT=1 x3000`: the replicas each acknowledged.
    if let Some(replies) = outcome
        .extra
        .get("wait_replies")
        .and_then(|v| v.as_object())
    {
        for (value, times) in replies {
            notes.push(format!("WAIT={value} x{times}"));
        }
    }
    notes.join(", ")
}

fn trim_number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// cartd against Redis for every phase both ran.
pub fn ratios(outcomes: &[Outcome]) -> Vec<Ratio> {
    let mut ratios = Vec::new();
    for cartd in outcomes.iter().filter(|outcome| outcome.target == "cartd") {
        let Some(redis) = outcomes
            .iter()
            .find(|outcome| outcome.target == "redis" && outcome.scenario == cartd.scenario)
        else {
            continue;
        };
        let bytes = |outcome: &Outcome| outcome.extra.get("bytes_per_cart")?.as_f64();
        ratios.push(Ratio {
            scenario: cartd.scenario.clone(),
            throughput_cartd_over_redis: cartd.throughput_ops_s / redis.throughput_ops_s.max(1e-9),
            p99_redis_over_cartd: (cartd.ops > cartd.errors && redis.ops > redis.errors)
                .then(|| redis.latency_ms.p99 / cartd.latency_ms.p99.max(1e-9)),
            memory_redis_over_cartd: bytes(redis)
                .zip(bytes(cartd))
                .map(|(redis, cartd)| redis / cartd.max(1.0)),
        });
    }
    ratios
}

/// The ratios as a table.
pub fn ratio_table(ratios: &[Ratio]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "scenario",
        "throughput cartd/redis",
        "p99 redis/cartd",
        "bytes per cart redis/cartd",
    ]);
    for ratio in ratios {
        table.add_row(vec![
            ratio.scenario.clone(),
            format!("{:.2}x", ratio.throughput_cartd_over_redis),
            ratio
                .p99_redis_over_cartd
                .map_or_else(String::new, |ratio| format!("{ratio:.2}x")),
            ratio
                .memory_redis_over_cartd
                .map_or_else(String::new, |ratio| format!("{ratio:.2}x")),
        ]);
    }
    table
}

/// The connection storms (`connections`, `cluster/connections`) cartd and Redis both ran,
/// side by side: one table per storm, a row per figure.
pub fn storm_tables(outcomes: &[Outcome]) -> Vec<Table> {
    let mut tables = Vec::new();
    for scenario in ["connections", "cluster/connections"] {
        let find = |target: &str| {
            outcomes
                .iter()
                .find(|outcome| outcome.scenario == scenario && outcome.target == target)
        };
        let (Some(cartd), Some(redis)) = (find("cartd"), find("redis")) else {
            continue;
        };
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_header(vec![scenario, "cartd", "redis"]);
        for (name, figure) in storm_rows(cartd, redis) {
            table.add_row(vec![name, figure(cartd), figure(redis)]);
        }
        for column in 1..3 {
            if let Some(column) = table.column_mut(column) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        tables.push(table);
    }
    tables
}

/// A figure of a storm's outcome, as the side-by-side table shows it.
type StormFigure = Box<dyn Fn(&Outcome) -> String>;

/// The rows of a storm's side-by-side table: every figure, every error kind either had, and
/// each node's memory per connection.
fn storm_rows(cartd: &Outcome, redis: &Outcome) -> Vec<(String, StormFigure)> {
    let extra = |key: &'static str| -> StormFigure {
        Box::new(move |outcome: &Outcome| {
            outcome
                .extra
                .get(key)
                .and_then(serde_json::Value::as_f64)
                .map_or_else(String::new, trim_number)
        })
    };
    let latency = |pick: fn(&crate::record::Latency) -> f64| -> StormFigure {
        Box::new(move |outcome: &Outcome| format!("{:.1}", pick(&outcome.latency_ms)))
    };
    let errors: StormFigure = Box::new(|outcome: &Outcome| outcome.errors.to_string());
    let mut rows: Vec<(String, StormFigure)> = vec![
        ("connections asked".into(), extra("connections_asked")),
        ("connected".into(), extra("connected")),
        ("client processes".into(), extra("client_processes")),
        ("source addresses".into(), extra("source_addresses")),
        ("time to open all, s".into(), extra("connect_s")),
        ("errors".into(), errors),
    ];
    rows.extend(error_kind_rows(cartd, redis));
    rows.extend([
        ("p50 ms from the instant".into(), latency(|l| l.p50)),
        ("p99 ms".into(), latency(|l| l.p99)),
        ("p99.9 ms".into(), latency(|l| l.p999)),
        ("max ms (last answer)".into(), latency(|l| l.max)),
        (
            "server bytes per connection".into(),
            extra("server_bytes_per_connection"),
        ),
    ]);
    rows.extend(node_rows(cartd, redis));
    rows
}

/// A row per error kind either target had: how many times each had it.
fn error_kind_rows(cartd: &Outcome, redis: &Outcome) -> Vec<(String, StormFigure)> {
    let mut kinds: Vec<String> = [cartd, redis]
        .iter()
        .filter_map(|outcome| outcome.extra.get("errors_by_kind")?.as_object())
        .flat_map(|kinds| kinds.keys().cloned())
        .collect();
    kinds.sort();
    kinds.dedup();
    let row = |kind: String| -> (String, StormFigure) {
        let name = format!("  {kind}");
        let figure = move |outcome: &Outcome| {
            let kinds = outcome.extra.get("errors_by_kind");
            let times = kinds.and_then(|kinds| kinds.get(&kind));
            times
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
                .to_string()
        };
        (name, Box::new(figure) as StormFigure)
    };
    kinds.into_iter().map(row).collect()
}

/// A row per primary (cluster storms): its memory per connection, connections and adds.
fn node_rows(cartd: &Outcome, redis: &Outcome) -> Vec<(String, StormFigure)> {
    let nodes = |outcome: &Outcome| {
        outcome
            .extra
            .get("nodes")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len)
    };
    let row = |node: usize| -> (String, StormFigure) {
        let name = format!("  node {} bytes/conn (conns, adds)", node + 1);
        let figure = move |outcome: &Outcome| {
            let Some(found) = outcome.extra.get("nodes").and_then(|nodes| nodes.get(node)) else {
                return String::new();
            };
            let figure = |key: &str| found[key].as_f64().map_or_else(String::new, trim_number);
            let (bytes, conns) = (figure("bytes_per_connection"), figure("connections"));
            format!("{bytes} ({conns}, {})", figure("adds"))
        };
        (name, Box::new(figure) as StormFigure)
    };
    (0..nodes(cartd).max(nodes(redis))).map(row).collect()
}

/// Writes the JSON report.
pub fn write_json(path: &Path, report: &Report<'_>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The percentile axis: x = -log10(1 - p), so 90, 99, 99.9 ... are evenly spaced.
const NINES_MAX: f64 = 5.0;

fn nines(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).max(10f64.powf(-NINES_MAX));
    -rest.log10()
}

fn percentile_label(x: f64) -> String {
    let percentile = 100.0 - 100.0 / 10f64.powf(x);
    let text = format!("{percentile:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Colours of the targets' lines, in the order they first appear.
const LINE_COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// Writes the latency-percentile chart: one panel per scenario phase, one line per target.
pub fn write_plot(path: &Path, outcomes: &[Outcome], title: &str) -> anyhow::Result<()> {
    let mut phases: Vec<&str> = Vec::new();
    let mut targets: Vec<&str> = Vec::new();
    for outcome in outcomes {
        if !phases.contains(&outcome.scenario.as_str()) {
            phases.push(&outcome.scenario);
        }
        if !targets.contains(&outcome.target.as_str()) {
            targets.push(&outcome.target);
        }
    }
    let columns = phases.len().clamp(1, 3);
    let rows = phases.len().div_ceil(columns).max(1);
    let size = (columns as u32 * 520, rows as u32 * 380 + 40);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(plot_error)?;
    let panels = root.split_evenly((rows, columns));
    for (panel, phase) in panels.iter().zip(&phases) {
        draw_panel(panel, phase, outcomes, &targets)?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

/// One panel: a scenario phase, a line per target.
fn draw_panel(
    panel: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    phase: &str,
    outcomes: &[Outcome],
    targets: &[&str],
) -> anyhow::Result<()> {
    let series: Vec<(&Outcome, Vec<(f64, f64)>)> = outcomes
        .iter()
        .filter(|outcome| outcome.scenario == phase)
        .map(|outcome| {
            let points = outcome
                .percentiles
                .iter()
                .map(|point| (nines(point.percentile), point.latency_ms))
                .collect();
            (outcome, points)
        })
        .collect();
    // A log scale, so a target a thousand times slower does not flatten the other's line.
    let latencies = || {
        series
            .iter()
            .flat_map(|(_, points)| points.iter().map(|(_, y)| *y))
    };
    let y_max = latencies().fold(0.01f64, f64::max) * 1.5;
    let y_min = latencies().fold(y_max, f64::min).max(0.001) * 0.8;
    let mut chart = ChartBuilder::on(panel)
        .caption(phase, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..NINES_MAX, (y_min..y_max).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .x_labels(6)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(plot_error)?;
    for (outcome, points) in series {
        let index = targets
            .iter()
            .position(|target| *target == outcome.target)
            .unwrap_or(0);
        let colour = LINE_COLOURS[index % LINE_COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(plot_error)?
            .label(outcome.target.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_axis_spaces_the_nines_evenly() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_label(2.0), "99");
        assert_eq!(percentile_label(0.0), "0");
        assert!(nines(100.0) <= NINES_MAX + 1e-9);
    }
}
