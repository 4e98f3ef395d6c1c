//! The plain-text report: strategies side by side.

use std::fmt::Write as _;

use super::{Latency, Report, StrategyReport};
use crate::scenario::units::format_duration;

/// Renders one strategy's value in a table row.
type Cell = fn(&StrategyReport) -> String;

const LABEL_WIDTH: usize = 28;
const COLUMN_WIDTH: usize = 16;

/// Renders `report` as text for a terminal or a CI log.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {} ({}), seed {}",
        report.scenario, report.file, report.seed
    );
    for line in report.description.lines() {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(
        out,
        "traffic for {}, drain {}, SLA {}, protocol {}",
        duration(report.duration),
        duration(report.drain),
        duration(report.sla),
        report.protocol
    );
    out.push('\n');

    let columns = &report.strategies;
    row(&mut out, "", columns.iter().map(|s| s.strategy.clone()));
    let numbers: [(&str, Cell); 18] = [
        ("polled mailboxes", |s| s.polled_mailboxes.to_string()),
        ("sent", |s| s.sent.to_string()),
        ("delivered", |s| s.delivered.to_string()),
        ("records created", |s| s.records.to_string()),
        ("email activities", |s| s.activities.to_string()),
        ("queue items", |s| s.queue_items.to_string()),
        ("lost", |s| s.lost.to_string()),
        ("duplicated", |s| s.duplicated.to_string()),
        ("declined", |s| s.declined.to_string()),
        ("quarantined", |s| s.quarantined.to_string()),
        ("not processable", |s| s.unprocessable.to_string()),
        ("throughput per hour", |s| {
            format!("{:.1}", s.throughput_per_hour)
        }),
        ("max backlog", |s| s.backlog_max.to_string()),
        ("throttled answers", |s| s.throttled.to_string()),
        ("deferred deliveries", |s| s.deferred.to_string()),
        ("alerts", |s| s.alerts.len().to_string()),
        ("disabled mailboxes", |s| s.disabled.len().to_string()),
        ("cycles", |s| s.cycles.to_string()),
    ];
    for (label, value) in numbers {
        row(&mut out, label, columns.iter().map(value));
    }
    latency_rows(&mut out, "latency", columns.iter().map(|s| &s.latency));
    row(
        &mut out,
        "errors (email/mailbox/profile)",
        columns.iter().map(|s| {
            format!(
                "{}/{}/{}",
                s.errors.email, s.errors.mailbox, s.errors.server_profile
            )
        }),
    );
    row(
        &mut out,
        "fault blast radius",
        columns.iter().map(|s| mailboxes(s.blast_radius.len())),
    );
    row(
        &mut out,
        "node utilisation (max)",
        columns.iter().map(|s| {
            let max = s.nodes.iter().map(|n| n.utilisation).fold(0.0, f64::max);
            format!("{max:.1}%")
        }),
    );

    let groups: Vec<&String> = columns
        .first()
        .map(|s| s.group_latency.keys().collect())
        .unwrap_or_default();
    if groups.len() > 1 {
        let _ = writeln!(out, "\nlatency p99 by group");
        for group in groups {
            row(
                &mut out,
                &format!("  {group}"),
                columns.iter().map(|s| {
                    s.group_latency
                        .get(group)
                        .and_then(|group| group.p99)
                        .map_or("-".to_owned(), latency)
                }),
            );
        }
    }

    let kinds: std::collections::BTreeSet<&String> = columns
        .iter()
        .flat_map(|s| s.errors_by_kind.keys())
        .collect();
    if !kinds.is_empty() {
        let _ = writeln!(out, "\nerrors by kind");
        for kind in kinds {
            row(
                &mut out,
                &format!("  {kind}"),
                columns
                    .iter()
                    .map(|s| s.errors_by_kind.get(kind).copied().unwrap_or(0).to_string()),
            );
        }
    }

    let reasons: std::collections::BTreeSet<&String> =
        columns.iter().flat_map(|s| s.reasons.keys()).collect();
    if !reasons.is_empty() {
        let _ = writeln!(out, "\ndecisions by reason");
        for reason in reasons {
            row(
                &mut out,
                &format!("  {reason}"),
                columns
                    .iter()
                    .map(|s| s.reasons.get(reason).copied().unwrap_or(0).to_string()),
            );
        }
    }

    for strategy in columns {
        if strategy.blast_radius.is_empty()
            && strategy.disabled.is_empty()
            && strategy.alerts.is_empty()
        {
            continue;
        }
        let _ = writeln!(out, "\n{}:", strategy.strategy);
        if !strategy.blast_radius.is_empty() {
            let _ = writeln!(out, "  delayed by faults: {}", list(&strategy.blast_radius));
        }
        if !strategy.disabled.is_empty() {
            let _ = writeln!(out, "  disabled: {}", list(&strategy.disabled));
        }
        if !strategy.enabled.is_empty() {
            let _ = writeln!(
                out,
                "  enabled again after the fault: {}",
                list(&strategy.enabled)
            );
        }
        for alert in strategy.alerts.iter().take(10) {
            let _ = writeln!(
                out,
                "  alert at {}s [{}] {} {}: {}",
                alert.at, alert.level, alert.mailbox, alert.code, alert.text
            );
        }
        if strategy.alerts.len() > 10 {
            let _ = writeln!(out, "  ... and {} more alerts", strategy.alerts.len() - 10);
        }
    }

    if !report.expectations.is_empty() {
        let _ = writeln!(out, "\nexpectations");
        for result in &report.expectations {
            let verdict = if result.passed { "PASS" } else { "FAIL" };
            let subject = match &result.ratio_to {
                None => format!("{} {}", result.strategy, result.metric),
                Some(base) => format!(
                    "{} {} / {} {}",
                    result.strategy, result.metric, base, result.metric
                ),
            };
            let _ = writeln!(
                out,
                "  {verdict}  {subject}: measured {}, expected {}",
                result.measured_text, result.bound
            );
        }
        let held = report.expectations.iter().filter(|r| r.passed).count();
        let _ = writeln!(
            out,
            "\n{held} of {} expectations hold",
            report.expectations.len()
        );
    }
    out
}

fn latency_rows<'a>(
    out: &mut String,
    label: &str,
    latencies: impl Iterator<Item = &'a Latency> + Clone,
) {
    for (name, get) in [
        ("p50", (|l: &Latency| l.p50) as fn(&Latency) -> Option<f64>),
        ("p90", |l| l.p90),
        ("p99", |l| l.p99),
        ("max", |l| l.max),
    ] {
        row(
            out,
            &format!("{label} {name}"),
            latencies
                .clone()
                .map(|l| get(l).map_or("-".to_owned(), latency)),
        );
    }
}

fn row(out: &mut String, label: &str, values: impl Iterator<Item = String>) {
    let _ = write!(out, "{label:<LABEL_WIDTH$}");
    for value in values {
        let _ = write!(out, "{value:>COLUMN_WIDTH$}");
    }
    out.push('\n');
}

fn duration(seconds: f64) -> String {
    format_duration(std::time::Duration::from_millis(
        (seconds * 1000.0).round() as u64
    ))
}

/// Formats a latency for reading at a glance: `850ms`, `12.5s`, `4m07s`, `2h05m`.
pub fn latency(seconds: f64) -> String {
    let millis = (seconds * 1000.0).round() as u64;
    match millis {
        0..1000 => format!("{millis}ms"),
        1000..60_000 => format!("{:.1}s", millis as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", millis / 60_000, (millis / 1000) % 60),
        _ => format!("{}h{:02}m", millis / 3_600_000, (millis / 60_000) % 60),
    }
}

fn mailboxes(count: usize) -> String {
    if count == 1 {
        "1 mailbox".to_owned()
    } else {
        format!("{count} mailboxes")
    }
}

fn list(items: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        let _ = write!(text, " and {} more", items.len() - SHOWN);
    }
    text
}
