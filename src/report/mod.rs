//! Run reports: the metrics of each strategy, side by side, and the verdict
//! on each expectation.
//!
//! A [`Report`] holds only values derived from virtual time and the seed, so
//! the same scenario and seed give byte-identical text and JSON. Wall-clock
//! figures of the run itself live in [`RunTiming`], which is printed
//! separately and never mixed into the report.

mod expect;
mod html;
mod junit;
mod text;
pub mod timeline;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

pub use expect::{evaluate, skipped as skipped_expectations};
pub use html::render_html;
pub use junit::render_junit;
pub use text::{latency as format_latency, render_text};

use crate::scenario::{ErrorLevel, Metric, Scenario, Statistic, Strategy};

/// Version of the JSON report layout; raised on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Delivery-latency statistics, in seconds; `None` without any record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Number of samples.
    pub samples: u64,
}

impl Latency {
    /// Computes the statistics of `samples` (milliseconds, sorted in place).
    /// Percentiles use the nearest-rank method.
    pub fn from_millis(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let rank = |percentile: f64| {
            let index = ((percentile / 100.0) * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1] as f64 / 1000.0
        };
        Self {
            p50: Some(rank(50.0)),
            p90: Some(rank(90.0)),
            p99: Some(rank(99.0)),
            max: samples.last().map(|&max| max as f64 / 1000.0),
            samples: samples.len() as u64,
        }
    }

    /// One statistic.
    pub fn get(&self, statistic: Statistic) -> Option<f64> {
        match statistic {
            Statistic::P50 => self.p50,
            Statistic::P90 => self.p90,
            Statistic::P99 => self.p99,
            Statistic::Max => self.max,
        }
    }
}

/// Engine errors counted by level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Email-level errors.
    pub email: u64,
    /// Mailbox-level errors.
    pub mailbox: u64,
    /// Server-profile-level errors.
    pub server_profile: u64,
}

impl ErrorCounts {
    /// The total over all levels.
    pub fn total(&self) -> u64 {
        self.email + self.mailbox + self.server_profile
    }

    /// The count at `level`.
    pub fn at(&self, level: ErrorLevel) -> u64 {
        match level {
            ErrorLevel::Email => self.email,
            ErrorLevel::Mailbox => self.mailbox,
            ErrorLevel::ServerProfile => self.server_profile,
        }
    }

    /// Adds one error at `level`.
    pub fn add(&mut self, level: ErrorLevel) {
        match level {
            ErrorLevel::Email => self.email += 1,
            ErrorLevel::Mailbox => self.mailbox += 1,
            ErrorLevel::ServerProfile => self.server_profile += 1,
        }
    }
}

/// One node's share of worker-slot time in use.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeUse {
    /// Node number, from 0.
    pub node: u32,
    /// Percent of `threads × run time` spent in cycles.
    pub utilisation: f64,
    /// Cycles the node ran.
    pub cycles: u64,
}

/// An alert as reported, with its time as an offset from the start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertLine {
    /// Seconds since the start, with millisecond precision.
    pub at: String,
    /// Level: email, mailbox or server_profile.
    pub level: String,
    /// The mailbox concerned.
    pub mailbox: String,
    /// Machine-readable code.
    pub code: String,
    /// Human-readable text.
    pub text: String,
}

/// Everything measured for one strategy.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StrategyReport {
    /// The strategy's name.
    pub strategy: String,
    /// Mailboxes the engine polled.
    pub polled_mailboxes: u64,
    /// Messages the mail service accepted for user and queue mailboxes,
    /// one per message and mailbox.
    pub sent: u64,
    /// Of those, the messages stored in the mailboxes by the end (the rest
    /// were held back by a receive limit).
    pub delivered: u64,
    /// Records created: one party per message and accepting mailbox.
    pub records: u64,
    /// Email activities: one per distinct message recorded.
    pub activities: u64,
    /// Queue items: one per activity and accepting queue.
    pub queue_items: u64,
    /// Deliveries with no record and no reported decision after the drain.
    pub lost: u64,
    /// Extra records for a message and party that already had one.
    pub duplicated: u64,
    /// Messages declined with a reason.
    pub declined: u64,
    /// Messages quarantined.
    pub quarantined: u64,
    /// Forwarded copies reported as not forwarded as an attachment.
    pub unprocessable: u64,
    /// Records per simulated hour over the whole run.
    pub throughput_per_hour: f64,
    /// Delivery latency over every record.
    pub latency: Latency,
    /// Delivery latency per group, by group name.
    pub group_latency: BTreeMap<String, Latency>,
    /// Largest number of delivered messages waiting for an outcome.
    pub backlog_max: u64,
    /// Throttled answers the engine received.
    pub throttled: u64,
    /// Deliveries deferred by a receive limit.
    pub deferred: u64,
    /// Engine errors by level.
    pub errors: ErrorCounts,
    /// Engine errors by kind, such as `throttled` or `credentials`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Decisions by reason.
    pub reasons: BTreeMap<String, u64>,
    /// Alerts raised.
    pub alerts: Vec<AlertLine>,
    /// Mailboxes the engine disabled.
    pub disabled: Vec<String>,
    /// Mailboxes enabled again when the fault that disabled them ended.
    pub enabled: Vec<String>,
    /// Mailboxes whose latency broke the SLA while a fault was active.
    pub blast_radius: Vec<String>,
    /// Sync cycles run.
    pub cycles: u64,
    /// Per-node utilisation.
    pub nodes: Vec<NodeUse>,
    /// Time series of the run, for charts.
    pub timeline: timeline::Timeline,
}

impl StrategyReport {
    /// The value of `metric`, or `None` when there is nothing to measure
    /// (a latency without records).
    pub fn metric(&self, metric: &Metric) -> Option<f64> {
        let value = match metric {
            Metric::PolledMailboxes => self.polled_mailboxes as f64,
            Metric::Sent => self.sent as f64,
            Metric::Delivered => self.delivered as f64,
            Metric::Activities => self.activities as f64,
            Metric::QueueItems => self.queue_items as f64,
            Metric::Records => self.records as f64,
            Metric::Lost => self.lost as f64,
            Metric::Duplicated => self.duplicated as f64,
            Metric::Declined => self.declined as f64,
            Metric::Quarantined => self.quarantined as f64,
            Metric::Unprocessable => self.unprocessable as f64,
            Metric::ThroughputPerHour => self.throughput_per_hour,
            Metric::Latency {
                group: None,
                statistic,
            } => return self.latency.get(*statistic),
            Metric::Latency {
                group: Some(group),
                statistic,
            } => return self.group_latency.get(group)?.get(*statistic),
            Metric::BacklogMax => self.backlog_max as f64,
            Metric::Throttled => self.throttled as f64,
            Metric::Deferred => self.deferred as f64,
            Metric::Errors(None) => self.errors.total() as f64,
            Metric::Errors(Some(level)) => self.errors.at(*level) as f64,
            Metric::Alerts => self.alerts.len() as f64,
            Metric::Disabled => self.disabled.len() as f64,
            Metric::BlastRadius => self.blast_radius.len() as f64,
            Metric::Cycles => self.cycles as f64,
            Metric::UtilisationMax => self
                .nodes
                .iter()
                .map(|node| node.utilisation)
                .fold(0.0, f64::max),
            Metric::UtilisationMean => {
                if self.nodes.is_empty() {
                    0.0
                } else {
                    self.nodes.iter().map(|node| node.utilisation).sum::<f64>()
                        / self.nodes.len() as f64
                }
            }
        };
        Some(value)
    }
}

/// The verdict on one expectation for one strategy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpectationResult {
    /// The strategy checked.
    pub strategy: String,
    /// The metric, as named in the scenario.
    pub metric: String,
    /// The strategy the metric is divided by, for ratio expectations.
    pub ratio_to: Option<String>,
    /// The bound, as text such as `max 15m` or `min 5`.
    pub bound: String,
    /// The measured value (seconds for latency, a ratio for ratio expectations).
    pub measured: Option<f64>,
    /// The measured value as text.
    pub measured_text: String,
    /// True when the bound holds.
    pub passed: bool,
}

/// A whole run's report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// What the scenario demonstrates.
    pub description: String,
    /// The scenario file as named on the command line.
    pub file: String,
    /// Seed of the traffic.
    pub seed: u64,
    /// Traffic period, in seconds.
    pub duration: f64,
    /// Drain period after the traffic, in seconds.
    pub drain: f64,
    /// Latency SLA for the blast radius, in seconds.
    pub sla: f64,
    /// Protocol the engine used.
    pub protocol: String,
    /// One report per strategy, in the scenario's order.
    pub strategies: Vec<StrategyReport>,
    /// Every expectation for every strategy it applies to.
    pub expectations: Vec<ExpectationResult>,
    /// True when every expectation holds.
    pub passed: bool,
}

impl Report {
    /// Assembles a report and evaluates the scenario's expectations.
    pub fn new(scenario: &Scenario, strategies: Vec<StrategyReport>) -> Self {
        let by_strategy: BTreeMap<Strategy, &StrategyReport> = scenario
            .strategies
            .iter()
            .copied()
            .zip(strategies.iter())
            .collect();
        let expectations = evaluate(scenario, &by_strategy);
        let passed = expectations.iter().all(|result| result.passed);
        Self {
            schema_version: SCHEMA_VERSION,
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            file: scenario.file.clone(),
            seed: scenario.seed,
            duration: seconds(scenario.duration),
            drain: seconds(scenario.drain),
            sla: seconds(scenario.sla),
            protocol: match scenario.server.protocol {
                crate::scenario::MailProtocol::Imap => "imap".to_owned(),
                crate::scenario::MailProtocol::Pop3 => "pop3".to_owned(),
            },
            strategies,
            expectations,
            passed,
        }
    }

    /// The report as pretty-printed JSON, with each array of numbers on
    /// one line.
    pub fn to_json(&self) -> String {
        let pretty = serde_json::to_string_pretty(self).unwrap_or_default();
        timeline::compact_number_arrays(&pretty) + "\n"
    }
}

/// Wall-clock figures of a run, which differ from run to run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunTiming {
    /// Wall time per strategy.
    pub wall: Vec<(String, Duration)>,
    /// Simulated messages per strategy (deliveries plus forwarded copies).
    pub messages: Vec<(String, u64)>,
    /// Peak resident memory of the process, in bytes, if known.
    pub peak_memory: Option<u64>,
}

impl RunTiming {
    /// One line per strategy: wall time and simulated messages per wall-clock second.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for ((strategy, wall), (_, messages)) in self.wall.iter().zip(&self.messages) {
            let rate = *messages as f64 / wall.as_secs_f64().max(1e-9);
            out.push_str(&format!(
                "{strategy}: wall time {:.2}s, {messages} simulated messages, {rate:.0} messages per second\n",
                wall.as_secs_f64()
            ));
        }
        if let Some(peak) = self.peak_memory {
            out.push_str(&format!(
                "peak memory: {:.1} MiB\n",
                peak as f64 / (1024.0 * 1024.0)
            ));
        }
        out
    }
}

/// A duration in seconds, rounded to milliseconds.
pub fn seconds(duration: Duration) -> f64 {
    duration.as_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_uses_nearest_rank() {
        let mut samples: Vec<u64> = (1..=100).map(|s| s * 1000).collect();
        let latency = Latency::from_millis(&mut samples);
        assert_eq!(latency.p50, Some(50.0));
        assert_eq!(latency.p90, Some(90.0));
        assert_eq!(latency.p99, Some(99.0));
        assert_eq!(latency.max, Some(100.0));
        assert_eq!(latency.samples, 100);
    }

    #[test]
    fn latency_of_nothing_is_none() {
        assert_eq!(Latency::from_millis(&mut []), Latency::default());
    }
}
