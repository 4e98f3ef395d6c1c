//! The scenario runner: one world per strategy, in virtual time.
//!
//! [`run`] plans the traffic once from the seed, runs each strategy's world
//! on its own current-thread runtime with a paused clock, and turns what
//! each world observed into a [`Report`]. Worlds share nothing but the
//! plan, so strategies see byte-identical traffic.

mod metrics;
mod observe;
pub mod traffic;
mod world;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use world::{
    Accounts, WorldError, add_accounts, check_engine_configs, deliver_traffic, epoch,
    schedule_faults,
};

use crate::report::{Report, RunTiming};
use crate::scenario::{Scenario, Strategy};
use traffic::Plan;

/// Options of one run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Run only these strategies; all of the scenario's when empty.
    pub strategies: Vec<Strategy>,
    /// Replace the scenario's seed.
    pub seed: Option<u64>,
    /// Print a progress line on stderr when a world takes longer than a few seconds.
    pub progress: bool,
    /// Keep every record and delivery of each world in [`Run::traces`], for
    /// tests that compare runs; costs memory in proportion to the traffic.
    pub trace: bool,
}

/// One delivery's fate in one world.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeliveryTrace {
    /// The receiving mailbox's address.
    pub mailbox: String,
    /// The message's index in the traffic plan.
    pub message: u32,
    /// Arrival in the mailbox, in milliseconds from the start.
    pub arrived_ms: u32,
    /// Creation of its record, in milliseconds from the start, if any.
    pub recorded_ms: Option<u32>,
}

/// What one strategy's world recorded, in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldTrace {
    /// The strategy.
    pub strategy: Strategy,
    /// Every record as (Message-ID, party), with how many records each has.
    pub records: std::collections::BTreeMap<(String, String), usize>,
    /// Every delivery to a user or queue mailbox, sorted by mailbox and message.
    pub deliveries: Vec<DeliveryTrace>,
}

/// The result of [`run`].
pub struct Run {
    /// The report.
    pub report: Report,
    /// Wall-clock figures of the run.
    pub timing: RunTiming,
    /// One trace per strategy when [`RunOptions::trace`] is set.
    pub traces: Vec<WorldTrace>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A replayed `.eml` file could not be read.
    #[error("cannot read the scenario's .eml files: {0}")]
    Eml(#[from] std::io::Error),
    /// A world could not be built or run.
    #[error(transparent)]
    World(#[from] WorldError),
}

/// Runs `scenario` under each strategy and returns the report and the run's timing.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<(Report, RunTiming), RunError> {
    let run = run_traced(scenario, options)?;
    Ok((run.report, run.timing))
}

/// Runs `scenario` like [`run`], with traces when the options ask for them.
pub fn run_traced(scenario: &Scenario, options: &RunOptions) -> Result<Run, RunError> {
    let mut scenario = scenario.clone();
    if let Some(seed) = options.seed {
        scenario.seed = seed;
    }
    if !options.strategies.is_empty() {
        scenario
            .strategies
            .retain(|s| options.strategies.contains(s));
        retain_expectations(&mut scenario);
    }
    let plan = Arc::new(Plan::new(&scenario)?);

    let mut reports = Vec::new();
    let mut traces = Vec::new();
    let mut timing = RunTiming::default();
    for &strategy in &scenario.strategies {
        let progress = Arc::new(world::Progress::default());
        let done = Arc::new(AtomicBool::new(false));
        let printer = options.progress.then(|| {
            spawn_progress(
                strategy,
                &scenario,
                Arc::clone(&progress),
                Arc::clone(&done),
            )
        });

        let started = Instant::now();
        let outcome = world::run(&scenario, &plan, strategy, &progress);
        let wall = started.elapsed();
        done.store(true, Ordering::Relaxed);
        if let Some(printer) = printer {
            let _ = printer.join();
        }
        let outcome = outcome?;

        if options.trace {
            traces.push(metrics::trace(&scenario, &plan, strategy, &outcome));
        }
        let report = metrics::strategy_report(&scenario, &plan, strategy, &outcome);
        timing.wall.push((strategy.name().to_owned(), wall));
        timing.messages.push((
            strategy.name().to_owned(),
            report.delivered + outcome.recorder.stored_copies,
        ));
        reports.push(report);
    }
    timing.peak_memory = peak_memory();
    Ok(Run {
        report: Report::new(&scenario, reports),
        timing,
        traces,
    })
}

/// Drops the expectations that name only strategies the run leaves out, or
/// that compare with one; returns how many were dropped.
pub fn retain_expectations(scenario: &mut Scenario) -> usize {
    let before = scenario.expectations.len();
    let running = scenario.strategies.clone();
    scenario.expectations.retain_mut(|expectation| {
        expectation.strategies.retain(|s| running.contains(s));
        !expectation.strategies.is_empty()
            && expectation
                .ratio_to
                .is_none_or(|base| running.contains(&base))
    });
    before - scenario.expectations.len()
}

/// Prints "simulated X of Y" on stderr every few seconds once a world has
/// run for more than a few seconds of wall time.
fn spawn_progress(
    strategy: Strategy,
    scenario: &Scenario,
    progress: Arc<world::Progress>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let total = scenario.duration + scenario.drain;
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut last_print = started;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let now = Instant::now();
            if now.duration_since(started) < Duration::from_secs(3)
                || now.duration_since(last_print) < Duration::from_secs(5)
            {
                continue;
            }
            last_print = now;
            let simulated = Duration::from_millis(progress.simulated_ms.load(Ordering::Relaxed));
            eprintln!(
                "mailsim run: {}: simulated {} of {} ({:.0}%) in {:.0}s",
                strategy.name(),
                crate::report::format_latency(simulated.as_secs_f64()),
                crate::report::format_latency(total.as_secs_f64()),
                100.0 * simulated.as_secs_f64() / total.as_secs_f64().max(1e-9),
                now.duration_since(started).as_secs_f64()
            );
        }
    })
}

/// Peak resident set size of this process, from /proc on Linux.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
