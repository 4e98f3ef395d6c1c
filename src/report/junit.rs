//! The report as JUnit XML, so that CI systems show each expectation as a
//! test case.
//!
//! The layout is the common one that Jenkins, GitLab and GitHub test
//! reporters read: a `testsuites` root, one `testsuite` for the run, and one
//! `testcase` per expectation and strategy, with a `failure` element when
//! the expectation fails and a `skipped` element when `--strategy` left out
//! a strategy it needs.

use std::fmt::Write as _;

use super::html::escape;
use super::{ExpectationResult, Report, RunTiming, render_text};

/// Renders `report` as JUnit XML, with `skipped` as skipped test cases.
/// The suite's `time` is the wall time of the run from `timing`. Test cases carry no time of their own, because
/// all of them are checked against the same run.
pub fn render_junit(report: &Report, timing: &RunTiming, skipped: &[ExpectationResult]) -> String {
    let tests = report.expectations.len() + skipped.len();
    let skipped_count = skipped.len();
    let failures = report
        .expectations
        .iter()
        .filter(|result| !result.passed)
        .count();
    let wall: f64 = timing.wall.iter().map(|(_, wall)| wall.as_secs_f64()).sum();
    let scenario = escape(&report.scenario);

    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"mailsim\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{wall:.3}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{scenario}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped_count}\" time=\"{wall:.3}\">"
    );
    out.push_str("    <properties>\n");
    let strategies: Vec<&str> = report
        .strategies
        .iter()
        .map(|strategy| strategy.strategy.as_str())
        .collect();
    for (name, value) in [
        ("file", report.file.clone()),
        ("seed", report.seed.to_string()),
        ("duration", format!("{}s", report.duration)),
        ("drain", format!("{}s", report.drain)),
        ("sla", format!("{}s", report.sla)),
        ("protocol", report.protocol.clone()),
        ("strategies", strategies.join(",")),
    ] {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            escape(&value)
        );
    }
    out.push_str("    </properties>\n");

    for result in &report.expectations {
        let name = escape(&case_name(result));
        if result.passed {
            let _ = writeln!(
                out,
                "    <testcase name=\"{name}\" classname=\"{scenario}\"/>"
            );
            continue;
        }
        let message = format!(
            "measured {}, expected {}",
            result.measured_text, result.bound
        );
        let _ = writeln!(
            out,
            "    <testcase name=\"{name}\" classname=\"{scenario}\">"
        );
        let _ = writeln!(
            out,
            "      <failure message=\"{}\" type=\"expectation\">{}: {} (scenario {}, seed {})</failure>",
            escape(&message),
            escape(&subject(result)),
            escape(&message),
            scenario,
            report.seed
        );
        out.push_str("    </testcase>\n");
    }

    for result in skipped {
        let _ = writeln!(
            out,
            "    <testcase name=\"{}\" classname=\"{scenario}\">\n      <skipped message=\"{}\"/>\n    </testcase>",
            escape(&case_name(result)),
            escape("--strategy leaves out a strategy it checks or compares with")
        );
    }

    let _ = writeln!(
        out,
        "    <system-out>{}</system-out>",
        escape(&render_text(report))
    );
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Returns the test case name, such as `forward: latency.p99 max 15m00s`.
fn case_name(result: &ExpectationResult) -> String {
    match &result.ratio_to {
        None => format!("{}: {} {}", result.strategy, result.metric, result.bound),
        Some(base) => format!(
            "{}: {} / {} {} {}",
            result.strategy, result.metric, base, result.metric, result.bound
        ),
    }
}

/// Returns what was measured, such as `forward latency.p99`.
fn subject(result: &ExpectationResult) -> String {
    match &result.ratio_to {
        None => format!("{} {}", result.strategy, result.metric),
        Some(base) => format!(
            "{} {} / {} {}",
            result.strategy, result.metric, base, result.metric
        ),
    }
}
