//! The live progress display: a bar on a terminal, a line every few seconds otherwise (CI logs),
//! fed by a counter the workers bump.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often the display is refreshed.
const TICK: Duration = Duration::from_millis(100);
/// How often a progress line is printed when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// What the bar measures.
#[derive(Debug, Clone, Copy)]
pub enum Span {
    /// A timed phase: the bar fills with time.
    Time(Duration),
    /// A counted phase: the bar fills with operations.
    Count(u64),
}

/// One phase's progress display; dropped or [`Progress::finish`]ed when the phase ends.
pub struct Progress {
    counter: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts showing progress for a phase named `label`.
    pub fn start(label: &str, span: Span) -> Progress {
        let counter = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (counter, stop, label) = (counter.clone(), stop.clone(), label.to_string());
            std::thread::spawn(move || tick(&label, span, &counter, &stop))
        };
        Progress {
            counter,
            stop,
            ticker: Some(ticker),
        }
    }

    /// The counter workers add their completed operations to.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.counter.clone()
    }

    /// Ends the display.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end();
    }
}

fn tick(label: &str, span: Span, counter: &AtomicU64, stop: &AtomicBool) {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| new_bar(label, span));
    if !terminal {
        eprintln!("{label}: started");
    }
    let mut logged = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let done = counter.load(Ordering::Relaxed);
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        match &bar {
            Some(bar) => {
                let position = match span {
                    Span::Time(_) => started.elapsed().as_millis() as u64,
                    Span::Count(_) => done,
                };
                bar.set_position(position);
                bar.set_message(format!("{done} ops, {rate:.0} ops/s"));
            }
            None if logged.elapsed() >= LOG_EVERY => {
                eprintln!("{label}: {done} ops, {rate:.0} ops/s");
                logged = Instant::now();
            }
            None => {}
        }
    }
    let done = counter.load(Ordering::Relaxed);
    match bar {
        Some(bar) => bar.finish_and_clear(),
        None => eprintln!(
            "{label}: done, {done} ops in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    }
}

fn new_bar(label: &str, span: Span) -> ProgressBar {
    let length = match span {
        Span::Time(duration) => duration.as_millis() as u64,
        Span::Count(count) => count,
    };
    let bar = ProgressBar::new(length);
    let style = ProgressStyle::with_template("{prefix:30} [{elapsed_precise}] {wide_bar} {msg}")
        .expect("the template is valid");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}
