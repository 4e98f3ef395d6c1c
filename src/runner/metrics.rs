//! Turns one world's observations and final records into a [`StrategyReport`].

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use engine::records::Snapshot;

use super::observe::{NO_TIME, Recorder};
use super::traffic::Plan;
use super::world::{self, Outcome};
use super::{DeliveryTrace, WorldTrace};
use crate::report::timeline::{FaultSpan, MailboxInfo, Timeline, TimelineBuilder, Windows};
use crate::report::{Latency, NodeUse, StrategyReport, seconds};
use crate::scenario::{FaultTarget, Scenario, Strategy};

/// Computes the report of `strategy` from its world's outcome.
pub fn strategy_report(
    scenario: &Scenario,
    plan: &Plan,
    strategy: Strategy,
    outcome: &Outcome,
) -> StrategyReport {
    let recorder = &outcome.recorder;
    let end = scenario.duration + scenario.drain;
    let end_ms = end.as_millis() as u32;
    let records = record_times(scenario, recorder, &outcome.snapshot, outcome.start);

    let mut report = StrategyReport {
        strategy: strategy.name().to_owned(),
        polled_mailboxes: outcome.polled as u64,
        ..StrategyReport::default()
    };

    let mut all = Vec::new();
    let mut by_group: Vec<Vec<u64>> = vec![Vec::new(); scenario.groups.len()];
    let mut backlog_changes = Vec::new();
    let fault_spans = fault_spans(scenario, strategy, end);
    // A mailbox the engine disabled is an outage too, whatever disabled it
    // (a scheduled fault, or throttling until the retries ran out).
    let fault_windows: Vec<(u32, u32)> = fault_spans
        .iter()
        .map(|span| {
            (
                (span.from * 1000.0).round() as u32,
                (span.until * 1000.0).round() as u32,
            )
        })
        .chain(recorder.disabled_windows(end_ms))
        .collect();
    let mut blast = BTreeSet::new();
    let windows = recorder.windows.unwrap_or_else(|| Windows::covering(end));
    let mut timeline = TimelineBuilder::new(windows, scenario.mailboxes.len());

    for (id, message) in plan.messages.iter().enumerate() {
        // Latency runs from the moment the mail service accepted the message
        // for this mailbox, so a receive-limit hold-up at the user's mailbox
        // counts under every strategy, as one at the forward mailbox does.
        let arrival = message.at.as_millis().min(u128::from(NO_TIME - 1)) as u32;
        for (slot, mailbox) in message.recipients().enumerate() {
            report.sent += 1;
            if recorder.arrivals[id][slot] != NO_TIME {
                report.delivered += 1;
            }
            let record = records.get(&(id as u32, mailbox as u32)).copied();
            let decision = recorder.decisions[id][slot];
            let handled = [record.unwrap_or(NO_TIME), decision]
                .into_iter()
                .min()
                .unwrap_or(NO_TIME);
            if handled == NO_TIME || handled > end_ms {
                report.lost += 1;
            }
            backlog_changes.push((arrival, 1i64));
            if handled != NO_TIME {
                backlog_changes.push((handled, -1));
            }
            let latency = record.map(|created| u64::from(created.saturating_sub(arrival)));
            if let Some(latency) = latency {
                all.push(latency);
                by_group[scenario.mailboxes[mailbox].group].push(latency);
            }
            timeline.delivery(
                mailbox,
                arrival,
                (handled != NO_TIME).then_some(handled),
                latency,
            );
            let waited_until = if handled == NO_TIME { end_ms } else { handled };
            let broke_sla = latency.is_none_or(|latency| latency > scenario.sla.as_millis() as u64);
            if broke_sla && overlaps(&fault_windows, arrival, waited_until) {
                blast.insert(mailbox);
            }
        }
    }

    report.records = records.len() as u64;
    report.activities = outcome.snapshot.incoming_activities() as u64;
    report.queue_items = outcome.snapshot.queue_items.len() as u64;
    report.duplicated = duplicates(&outcome.snapshot);
    report.latency = Latency::from_millis(&mut all);
    for (group, samples) in scenario.groups.iter().zip(by_group.iter_mut()) {
        report
            .group_latency
            .insert(group.name.clone(), Latency::from_millis(samples));
    }
    report.backlog_max = backlog_max(&mut backlog_changes);
    report.throughput_per_hour = report.records as f64 / (end.as_secs_f64() / 3600.0).max(1e-9);
    report.blast_radius = blast
        .into_iter()
        .map(|index| scenario.mailboxes[index].address.clone())
        .collect();

    report.declined = recorder.declined;
    report.unprocessable = recorder.unprocessable;
    report.quarantined = outcome.snapshot.quarantined.len() as u64;
    report.throttled = recorder.throttled;
    report.deferred = recorder.deferred;
    report.errors = recorder.errors;
    report.errors_by_kind = recorder.errors_by_kind.clone();
    report.reasons = recorder.reasons.clone();
    report.alerts = recorder.alerts.clone();
    report.disabled = recorder.disabled.clone();
    report.enabled = recorder.enabled.clone();
    report.cycles = recorder.cycles;
    report.nodes = node_use(scenario, recorder, end);
    report.timeline = finish_timeline(scenario, recorder, timeline, fault_spans);
    report
}

fn finish_timeline(
    scenario: &Scenario,
    recorder: &Recorder,
    builder: TimelineBuilder,
    faults: Vec<FaultSpan>,
) -> Timeline {
    let mailboxes: Vec<MailboxInfo> = scenario
        .mailboxes
        .iter()
        .map(|mailbox| MailboxInfo {
            address: mailbox.address.clone(),
            group: mailbox.group,
        })
        .collect();
    let groups: Vec<String> = scenario
        .groups
        .iter()
        .map(|group| group.name.clone())
        .collect();
    let node_busy = (0..scenario.cluster.nodes as usize)
        .map(|node| {
            recorder
                .node_busy_per_window
                .get(&node)
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    builder.finish(
        &mailboxes,
        &groups,
        recorder.throttled_per_window.clone(),
        node_busy,
        scenario.cluster.threads_per_node,
        faults,
    )
}

/// Creation time (ms) of the first record per (plan message, mailbox).
fn record_times(
    scenario: &Scenario,
    recorder: &Recorder,
    snapshot: &Snapshot,
    start: tokio::time::Instant,
) -> HashMap<(u32, u32), u32> {
    let index: HashMap<String, u32> = scenario
        .mailboxes
        .iter()
        .enumerate()
        .map(|(index, mailbox)| (mailbox.address.to_ascii_lowercase(), index as u32))
        .collect();
    let mut times = HashMap::new();
    for party in &snapshot.parties {
        let Some(activity) = snapshot.activities.get(party.activity as usize) else {
            continue;
        };
        let Some(&mailbox) = index.get(&party.owner.name().to_ascii_lowercase()) else {
            continue;
        };
        // Replayed files may share a Message-ID: the record belongs to the
        // one this party received that has no record yet.
        let candidates: Vec<u32> = recorder
            .find(&activity.message_id)
            .filter(|&id| recorder.has_slot(id, mailbox))
            .collect();
        let Some(&id) = candidates
            .iter()
            .find(|&&id| !times.contains_key(&(id, mailbox)))
            .or(candidates.first())
        else {
            continue;
        };
        let at = party
            .created_at
            .saturating_duration_since(start)
            .as_millis() as u32;
        times
            .entry((id, mailbox))
            .and_modify(|time: &mut u32| *time = (*time).min(at))
            .or_insert(at);
    }
    times
}

fn duplicates(snapshot: &Snapshot) -> u64 {
    snapshot
        .party_counts()
        .values()
        .map(|&count| count.saturating_sub(1) as u64)
        .sum()
}

fn backlog_max(changes: &mut [(u32, i64)]) -> u64 {
    // At equal times, handle departures first so that an instant decision
    // does not count as waiting.
    changes.sort_unstable_by_key(|&(at, change)| (at, change));
    let mut current = 0i64;
    let mut max = 0i64;
    for &(_, change) in changes.iter() {
        current += change;
        max = max.max(current);
    }
    max as u64
}

/// Time spans in which some fault of this strategy's world was active.
fn fault_spans(scenario: &Scenario, strategy: Strategy, end: Duration) -> Vec<FaultSpan> {
    scenario
        .faults
        .iter()
        .filter(|fault| {
            // A fault aimed at the forward mailbox does nothing without one.
            !matches!(fault.target, FaultTarget::ForwardMailbox)
                || scenario.uses_forward_mailbox(strategy)
        })
        .filter_map(|fault| {
            let accounts = world::fault_accounts(scenario, strategy, &fault.target);
            if accounts.is_empty() {
                return None;
            }
            // A one-shot fault's effects last until the engine recovers, so
            // its window runs to the end.
            let until = if fault.kind.is_one_shot() {
                None
            } else {
                fault.until
            };
            Some(FaultSpan {
                from: seconds(fault.from),
                until: seconds(until.unwrap_or(end)),
                kind: fault.kind.name().to_owned(),
                accounts: accounts
                    .into_iter()
                    .map(|account| match account {
                        Some(index) => scenario.mailboxes[index].address.clone(),
                        None => scenario.forwarding.mailbox.clone(),
                    })
                    .collect(),
            })
        })
        .collect()
}

fn overlaps(windows: &[(u32, u32)], from: u32, until: u32) -> bool {
    windows
        .iter()
        .any(|&(start, end)| from < end && start <= until)
}

fn node_use(scenario: &Scenario, recorder: &Recorder, end: Duration) -> Vec<NodeUse> {
    let capacity = end.as_secs_f64() * f64::from(scenario.cluster.threads_per_node);
    (0..scenario.cluster.nodes as usize)
        .map(|node| {
            let (busy, cycles) = recorder.node_busy.get(&node).copied().unwrap_or_default();
            NodeUse {
                node: node as u32,
                utilisation: (busy.as_secs_f64() / capacity.max(1e-9) * 1000.0).round() / 10.0,
                cycles,
            }
        })
        .collect()
}

/// Every record and delivery of one world, for comparing runs.
pub fn trace(
    scenario: &Scenario,
    plan: &Plan,
    strategy: Strategy,
    outcome: &Outcome,
) -> WorldTrace {
    let recorder = &outcome.recorder;
    let records = record_times(scenario, recorder, &outcome.snapshot, outcome.start);
    let mut deliveries = Vec::new();
    for (id, message) in plan.messages.iter().enumerate() {
        for (slot, mailbox) in message.recipients().enumerate() {
            let arrived_ms = recorder.arrivals[id][slot];
            if arrived_ms == NO_TIME {
                continue;
            }
            deliveries.push(DeliveryTrace {
                mailbox: scenario.mailboxes[mailbox].address.clone(),
                message: id as u32,
                arrived_ms,
                recorded_ms: records.get(&(id as u32, mailbox as u32)).copied(),
            });
        }
    }
    deliveries.sort();
    let mut all = std::collections::BTreeMap::new();
    for party in &outcome.snapshot.parties {
        if let Some(activity) = outcome.snapshot.activities.get(party.activity as usize) {
            *all.entry((
                activity.message_id.to_string(),
                party.owner.name().to_owned(),
            ))
            .or_insert(0) += 1;
        }
    }
    WorldTrace {
        strategy,
        records: all,
        deliveries,
    }
}
