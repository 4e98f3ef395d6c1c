//! Evaluates a scenario's expectations against the measured reports.

use std::collections::BTreeMap;

use super::{ExpectationResult, StrategyReport};
use crate::scenario::{Bound, Expectation, Scenario, Strategy};

/// Checks every expectation for every strategy it applies to, in file order.
pub fn evaluate(
    scenario: &Scenario,
    reports: &BTreeMap<Strategy, &StrategyReport>,
) -> Vec<ExpectationResult> {
    let mut results = Vec::new();
    for expectation in &scenario.expectations {
        for strategy in &expectation.strategies {
            let Some(report) = reports.get(strategy) else {
                continue;
            };
            results.push(check(expectation, *strategy, report, reports));
        }
    }
    results
}

/// Lists the expectations that check or compare with a strategy outside
/// `running`, one unmeasured result per strategy, in file order.
pub fn skipped(scenario: &Scenario, running: &[Strategy]) -> Vec<ExpectationResult> {
    let mut results = Vec::new();
    for expectation in &scenario.expectations {
        let base_runs = expectation
            .ratio_to
            .is_none_or(|base| running.contains(&base));
        for strategy in &expectation.strategies {
            if !base_runs || !running.contains(strategy) {
                results.push(unmeasured(expectation, *strategy));
            }
        }
    }
    results
}

/// Returns the result of `expectation` for `strategy` before anything is
/// measured.
fn unmeasured(expectation: &Expectation, strategy: Strategy) -> ExpectationResult {
    let as_duration = expectation.metric.is_duration() && expectation.ratio_to.is_none();
    ExpectationResult {
        strategy: strategy.name().to_owned(),
        metric: expectation.metric.to_string(),
        ratio_to: expectation.ratio_to.map(|s| s.name().to_owned()),
        bound: expectation
            .bounds
            .iter()
            .map(|bound| describe_bound(*bound, as_duration))
            .collect::<Vec<_>>()
            .join(", "),
        measured: None,
        measured_text: "no value".to_owned(),
        passed: false,
    }
}

fn check(
    expectation: &Expectation,
    strategy: Strategy,
    report: &StrategyReport,
    reports: &BTreeMap<Strategy, &StrategyReport>,
) -> ExpectationResult {
    let metric = &expectation.metric;
    let own = report.metric(metric);
    let measured = match expectation.ratio_to {
        None => own,
        Some(other) => {
            let base = reports.get(&other).and_then(|report| report.metric(metric));
            match (own, base) {
                (Some(own), Some(base)) if base > 0.0 => Some(own / base),
                // Dividing by zero: any positive value is infinitely larger.
                (Some(own), Some(_)) if own > 0.0 => Some(f64::INFINITY),
                (Some(_), Some(_)) => Some(1.0),
                _ => None,
            }
        }
    };
    let as_duration = metric.is_duration() && expectation.ratio_to.is_none();
    let passed = measured.is_some_and(|value| {
        expectation.bounds.iter().all(|bound| match *bound {
            Bound::Max(max) => value <= max,
            Bound::Min(min) => value >= min,
            Bound::Equals(equals) => (value - equals).abs() < 1e-9,
        })
    });
    ExpectationResult {
        measured: measured.filter(|value| value.is_finite()),
        measured_text: match measured {
            None => "no value".to_owned(),
            Some(value) => format_value(value, as_duration),
        },
        passed,
        ..unmeasured(expectation, strategy)
    }
}

fn describe_bound(bound: Bound, as_duration: bool) -> String {
    let (word, value) = match bound {
        Bound::Max(value) => ("max", value),
        Bound::Min(value) => ("min", value),
        Bound::Equals(value) => ("equals", value),
    };
    format!("{word} {}", format_value(value, as_duration))
}

/// Formats a metric value: durations with units, ratios and counts as numbers.
pub fn format_value(value: f64, as_duration: bool) -> String {
    if value.is_infinite() {
        return "infinite".to_owned();
    }
    if as_duration {
        return super::text::latency(value);
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}
