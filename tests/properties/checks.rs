//! Runs scenario text with traces and checks what the properties and the
//! regression tests assert about a run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mailsim::runner::{DeliveryTrace, Run, RunOptions, WorldTrace, run_traced};
use mailsim::scenario::Scenario;

/// Parses scenario text. Generated and inline scenarios are meant to be
/// valid, so a problem here is a bug in the generator, the test or the
/// parser.
pub fn parse(text: &str) -> Result<Scenario, String> {
    Scenario::parse("generated.toml", text, Path::new("."))
        .map_err(|error| format!("the scenario is invalid: {error}\nscenario:\n{text}"))
}

/// Parses and runs `text` with every record and delivery traced.
pub fn run(text: &str) -> Result<Run, String> {
    let scenario = parse(text)?;
    let options = RunOptions {
        trace: true,
        ..RunOptions::default()
    };
    run_traced(&scenario, &options).map_err(|error| format!("the run failed: {error}"))
}

/// Checks that every delivery of every strategy yields exactly one record
/// for its mailbox. No report may count a lost or duplicated message, each
/// delivery needs a record created no earlier than its arrival, and each
/// (Message-ID, party) needs exactly one record. The report's delivered and
/// records counts must also match the trace.
pub fn no_loss_no_duplicate(run: &Run) -> Result<(), String> {
    let mut problems = Vec::new();
    for (report, trace) in run.report.strategies.iter().zip(&run.traces) {
        let recorded = trace
            .deliveries
            .iter()
            .filter(|delivery| delivery.recorded_ms.is_some())
            .count() as u64;
        if report.delivered != trace.deliveries.len() as u64 {
            problems.push(format!(
                "{}: the report counts {} delivered, the trace has {} deliveries",
                report.strategy,
                report.delivered,
                trace.deliveries.len()
            ));
        }
        if report.records != recorded {
            problems.push(format!(
                "{}: the report counts {} records, the trace has {} recorded deliveries",
                report.strategy, report.records, recorded
            ));
        }
        let early: Vec<&DeliveryTrace> = trace
            .deliveries
            .iter()
            .filter(|delivery| {
                delivery
                    .recorded_ms
                    .is_some_and(|recorded| recorded < delivery.arrived_ms)
            })
            .collect();
        if !early.is_empty() {
            problems.push(format!(
                "{}: {} records created before their message arrived, first {:?}",
                report.strategy,
                early.len(),
                &early[..early.len().min(5)]
            ));
        }
    }
    for report in &run.report.strategies {
        if report.lost != 0 {
            problems.push(format!("{}: {} lost", report.strategy, report.lost));
        }
        if report.duplicated != 0 {
            problems.push(format!(
                "{}: {} duplicated",
                report.strategy, report.duplicated
            ));
        }
    }
    for trace in &run.traces {
        let strategy = trace.strategy.name();
        let unrecorded: Vec<&DeliveryTrace> = trace
            .deliveries
            .iter()
            .filter(|delivery| delivery.recorded_ms.is_none())
            .collect();
        if !unrecorded.is_empty() {
            problems.push(format!(
                "{strategy}: {} deliveries without a record, first {:?}",
                unrecorded.len(),
                &unrecorded[..unrecorded.len().min(5)]
            ));
        }
        let repeated: Vec<_> = trace
            .records
            .iter()
            .filter(|(_, count)| **count != 1)
            .collect();
        if !repeated.is_empty() {
            problems.push(format!(
                "{strategy}: records not created exactly once: {:?}",
                &repeated[..repeated.len().min(5)]
            ));
        }
        let mailboxes: BTreeSet<&str> = trace
            .deliveries
            .iter()
            .map(|delivery| delivery.mailbox.as_str())
            .collect();
        let delivered: BTreeSet<(u32, &str)> = trace
            .deliveries
            .iter()
            .map(|delivery| (delivery.message, delivery.mailbox.as_str()))
            .collect();
        let party_records = trace
            .records
            .keys()
            .filter(|(_, party)| mailboxes.contains(party.as_str()))
            .count();
        if party_records != delivered.len() {
            problems.push(format!(
                "{strategy}: {} records of delivered mailboxes for {} deliveries",
                party_records,
                delivered.len()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Returns the (Message-ID, party) keys of a trace's records.
pub fn record_keys(trace: &WorldTrace) -> BTreeSet<(String, String)> {
    trace.records.keys().cloned().collect()
}

/// Checks that every strategy of `run` created records for the same
/// (Message-ID, party) pairs, and lists the pairs where they differ.
pub fn same_records(run: &Run) -> Result<(), String> {
    let Some((first, rest)) = run.traces.split_first() else {
        return Err("the run has no traces".to_owned());
    };
    let expected = record_keys(first);
    let mut problems = Vec::new();
    for trace in rest {
        let actual = record_keys(trace);
        let missing: Vec<_> = expected.difference(&actual).take(5).collect();
        let extra: Vec<_> = actual.difference(&expected).take(5).collect();
        if !missing.is_empty() || !extra.is_empty() {
            problems.push(format!(
                "{} has {} records and {} has {}: only under {}: {missing:?}; only under {}: {extra:?}",
                first.strategy.name(),
                expected.len(),
                trace.strategy.name(),
                actual.len(),
                first.strategy.name(),
                trace.strategy.name(),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Groups the deliveries of `trace` by mailbox.
pub fn deliveries_by_mailbox(trace: &WorldTrace) -> BTreeMap<&str, Vec<&DeliveryTrace>> {
    let mut by_mailbox: BTreeMap<&str, Vec<&DeliveryTrace>> = BTreeMap::new();
    for delivery in &trace.deliveries {
        by_mailbox
            .entry(delivery.mailbox.as_str())
            .or_default()
            .push(delivery);
    }
    by_mailbox
}

/// Checks that every mailbox but `faulty` has the same deliveries, with the
/// same arrival and record times, in `with_fault` as in `without_fault`.
pub fn other_mailboxes_unchanged(
    without_fault: &WorldTrace,
    with_fault: &WorldTrace,
    faulty: &str,
) -> Result<(), String> {
    let before = deliveries_by_mailbox(without_fault);
    let after = deliveries_by_mailbox(with_fault);
    let mailboxes: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
    let mut problems = Vec::new();
    for mailbox in mailboxes {
        if mailbox.eq_ignore_ascii_case(faulty) {
            continue;
        }
        let expected = before.get(mailbox).cloned().unwrap_or_default();
        let actual = after.get(mailbox).cloned().unwrap_or_default();
        if expected != actual {
            let changed: Vec<_> = expected
                .iter()
                .zip(&actual)
                .filter(|(expected, actual)| expected != actual)
                .take(3)
                .collect();
            problems.push(format!(
                "{mailbox}: {} deliveries without the fault, {} with it; first changes (without, with): {changed:?}",
                expected.len(),
                actual.len()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
