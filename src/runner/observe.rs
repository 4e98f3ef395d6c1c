//! Collects what a world's service and engine report while it runs.
//!
//! Deliveries are keyed by plan message id and recipient slot (0 for the
//! first recipient, 1 for the copy), so a million-message day needs a few
//! fixed-size arrays instead of maps of strings.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use engine::MailboxId;
use engine::events::{EmailProcessed, Event};
use engine::records::{Created, Reason, SourceKey};
use tokio::time::Instant;

use super::traffic::Plan;
use crate::report::timeline::Windows;
use crate::report::{AlertLine, ErrorCounts};
use crate::scenario::{ErrorLevel, Scenario};

/// Marks "no time recorded" in the millisecond arrays.
pub const NO_TIME: u32 = u32::MAX;

/// Observations of one world.
#[derive(Default)]
pub struct Recorder {
    start: Option<Instant>,
    plan: Option<Arc<Plan>>,
    mailbox_index: HashMap<String, u32>,
    forward_address: String,
    forward_copies: HashMap<u32, (u32, u32)>,
    /// Every delivery to a user or queue mailbox, by (mailbox, UID), for
    /// decisions that name no Message-ID the plan knows. A UIDVALIDITY
    /// reset renumbers UIDs, so a Message-ID is tried first.
    by_uid: HashMap<(u32, u32), u32>,
    /// Message-IDs the engine made up for such deliveries, by plan id.
    pub learned_ids: HashMap<String, u32>,
    cycle_starts: HashMap<MailboxId, Instant>,
    /// Arrival in the user's or queue's mailbox, in ms from the start, per message and slot.
    pub arrivals: Vec<[u32; 2]>,
    /// First decision about the delivery, in ms from the start, per message and slot.
    pub decisions: Vec<[u32; 2]>,
    /// Forwarded copies stored in the forward mailbox.
    pub stored_copies: u64,
    /// Deliveries deferred by a receive limit.
    pub deferred: u64,
    /// Decisions by reason.
    pub reasons: BTreeMap<String, u64>,
    /// Decisions that declined a message.
    pub declined: u64,
    /// Copies reported as not forwarded as an attachment.
    pub unprocessable: u64,
    /// Throttled answers.
    pub throttled: u64,
    /// Errors by level.
    pub errors: ErrorCounts,
    /// Errors by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Alerts in order.
    pub alerts: Vec<AlertLine>,
    /// Disabled mailboxes, in order.
    pub disabled: Vec<String>,
    /// Mailboxes enabled again after a fault ended, in order.
    pub enabled: Vec<String>,
    /// Mailboxes disabled now, with the time (ms) they were disabled.
    disabled_since: HashMap<MailboxId, u32>,
    /// Periods (ms) in which some engine mailbox was disabled and then enabled.
    disabled_periods: Vec<(u32, u32)>,
    /// Cycles ended.
    pub cycles: u64,
    /// Per node: time spent in cycles and cycles run.
    pub node_busy: BTreeMap<usize, (Duration, u64)>,
    /// The windows the time series are collected in.
    pub windows: Option<Windows>,
    /// Throttled answers per window.
    pub throttled_per_window: Vec<u64>,
    /// Per node: milliseconds spent in cycles per window.
    pub node_busy_per_window: BTreeMap<usize, Vec<u64>>,
}

impl Recorder {
    /// A recorder for a world whose clock started at `start`.
    pub fn new(scenario: &Scenario, plan: &Arc<Plan>, start: Instant) -> Self {
        let windows = Windows::covering(scenario.duration + scenario.drain);
        let mailbox_index = scenario
            .mailboxes
            .iter()
            .enumerate()
            .map(|(index, mailbox)| (mailbox.address.to_ascii_lowercase(), index as u32))
            .collect();
        Self {
            start: Some(start),
            plan: Some(Arc::clone(plan)),
            mailbox_index,
            forward_address: scenario.forwarding.mailbox.to_ascii_lowercase(),
            arrivals: vec![[NO_TIME; 2]; plan.messages.len()],
            decisions: vec![[NO_TIME; 2]; plan.messages.len()],
            windows: Some(windows),
            throttled_per_window: vec![0; windows.count],
            ..Self::default()
        }
    }

    fn millis(&self, at: Instant) -> u32 {
        let start = self.start.unwrap_or(at);
        at.saturating_duration_since(start)
            .as_millis()
            .min(u128::from(NO_TIME - 1)) as u32
    }

    fn offset(&self, at: Instant) -> String {
        format!("{:.3}", f64::from(self.millis(at)) / 1000.0)
    }

    /// Periods (ms) in which some engine mailbox was disabled, the open ones
    /// ending at `end_ms`, in a fixed order.
    pub fn disabled_windows(&self, end_ms: u32) -> Vec<(u32, u32)> {
        let mut windows = self.disabled_periods.clone();
        windows.extend(self.disabled_since.values().map(|&since| (since, end_ms)));
        windows.sort_unstable();
        windows
    }

    /// True when plan message `id` went to mailbox `index`.
    pub fn has_slot(&self, id: u32, index: u32) -> bool {
        self.slot(id, index).is_some()
    }

    /// The recipient slot of mailbox `index` for plan message `id`.
    fn slot(&self, id: u32, index: u32) -> Option<usize> {
        let message = self.plan.as_ref()?.messages.get(id as usize)?;
        if message.to == index {
            Some(0)
        } else if message.cc == index {
            Some(1)
        } else {
            None
        }
    }

    /// Records a delivery event from the service.
    pub fn delivery(&mut self, event: &sim::DeliveryEvent) {
        match event {
            sim::DeliveryEvent::Deferred { .. } => self.deferred += 1,
            sim::DeliveryEvent::Stored {
                account,
                uid,
                tag,
                forwarded_from,
                at,
            } => {
                let Some(tag) = tag.and_then(|tag| u32::try_from(tag).ok()) else {
                    return;
                };
                let at = at.as_millis().min(u128::from(NO_TIME - 1)) as u32;
                let account = account.to_ascii_lowercase();
                if account == self.forward_address {
                    self.stored_copies += 1;
                    let from = forwarded_from
                        .as_ref()
                        .and_then(|from| self.mailbox_index.get(&from.to_ascii_lowercase()));
                    if let Some(&from) = from {
                        self.forward_copies.insert(*uid, (tag, from));
                    }
                    return;
                }
                let Some(&index) = self.mailbox_index.get(&account) else {
                    return;
                };
                self.by_uid.insert((index, *uid), tag);
                if let Some(slot) = self.slot(tag, index) {
                    let arrival = &mut self.arrivals[tag as usize][slot];
                    *arrival = (*arrival).min(at);
                }
            }
        }
    }

    /// Records an event from the engine.
    pub fn engine_event(&mut self, event: Event) {
        match event {
            Event::CycleStarted { mailbox, at, .. } => {
                self.cycle_starts.insert(mailbox, at);
            }
            Event::CycleEnded {
                mailbox, node, at, ..
            } => {
                self.cycles += 1;
                let started = self.cycle_starts.remove(&mailbox).unwrap_or(at);
                let busy = self.node_busy.entry(node.0).or_default();
                busy.0 += at.saturating_duration_since(started);
                busy.1 += 1;
                if let Some(windows) = self.windows {
                    let (from, until) = (self.millis(started), self.millis(at));
                    let per_window = self
                        .node_busy_per_window
                        .entry(node.0)
                        .or_insert_with(|| vec![0; windows.count]);
                    windows.split(from, until, |index, ms| per_window[index] += u64::from(ms));
                }
            }
            Event::EmailProcessed(processed) => self.processed(&processed),
            Event::Throttled { at, .. } => {
                // A throttled cycle failed like any other, but the engine
                // reports it as its own event, so it is counted here as a
                // mailbox-level error too.
                self.throttled += 1;
                self.errors.add(ErrorLevel::Mailbox);
                *self
                    .errors_by_kind
                    .entry("throttled".to_owned())
                    .or_default() += 1;
                if let Some(windows) = self.windows {
                    let index = windows.index(self.millis(at));
                    self.throttled_per_window[index] += 1;
                }
            }
            Event::Error { level, kind, .. } => {
                self.errors.add(level_of(level));
                *self.errors_by_kind.entry(kind.to_string()).or_default() += 1;
            }
            Event::Alert(alert) => {
                let line = AlertLine {
                    at: self.offset(alert.at),
                    level: level_of(alert.level).name().to_owned(),
                    mailbox: alert.mailbox.as_str().to_owned(),
                    code: alert.code.to_string(),
                    text: alert.text,
                };
                self.alerts.push(line);
            }
            Event::MailboxDisabled { mailbox, at, .. } => {
                self.disabled.push(mailbox.as_str().to_owned());
                self.disabled_since.insert(mailbox, self.millis(at));
            }
            Event::MailboxEnabled { mailbox, at } => {
                self.enabled.push(mailbox.as_str().to_owned());
                if let Some(since) = self.disabled_since.remove(&mailbox) {
                    self.disabled_periods.push((since, self.millis(at)));
                }
            }
        }
    }

    fn processed(&mut self, event: &EmailProcessed) {
        self.learn_message_id(event);
        *self
            .reasons
            .entry(event.reason.as_str().to_owned())
            .or_default() += 1;
        match event.reason {
            Reason::NotForwardedAsAttachment => self.unprocessable += 1,
            Reason::NoCorrelationMatch
            | Reason::NoRecipientMatch
            | Reason::InvalidSender
            | Reason::NotTracked
            | Reason::ReceivedBeforeStart
            | Reason::MessageTooLarge
                if event.created == Created::Nothing =>
            {
                self.declined += 1;
            }
            _ => {}
        }

        let Some((id, index)) = self.identify(event) else {
            return;
        };
        let Some(slot) = self.slot(id, index) else {
            return;
        };
        let at = self.millis(event.at);
        let decision = &mut self.decisions[id as usize][slot];
        *decision = (*decision).min(at);
    }

    /// Remembers the Message-ID the engine made up for a delivery whose
    /// message has none, found by the mailbox and UID it was fetched from.
    fn learn_message_id(&mut self, event: &EmailProcessed) {
        let (Some(message_id), Some(uid)) = (&event.message_id, uid_of(&event.key)) else {
            return;
        };
        if self.find(message_id).next().is_some() {
            return;
        }
        let tag = if event.mailbox.as_str() == super::world::FORWARD_ID {
            self.forward_copies.get(&uid).map(|&(tag, _)| tag)
        } else {
            self.mailbox_index
                .get(&event.mailbox.as_str().to_ascii_lowercase())
                .and_then(|&index| self.by_uid.get(&(index, uid)).copied())
        };
        if let Some(tag) = tag {
            self.learned_ids.insert(message_id.to_string(), tag);
        }
    }

    /// The plan ids with a Message-ID, from the plan or from what was learned.
    pub fn find<'a>(&'a self, message_id: &str) -> impl Iterator<Item = u32> + 'a {
        let planned: Vec<u32> = self
            .plan
            .as_ref()
            .map(|plan| plan.find(message_id).collect())
            .unwrap_or_default();
        planned
            .into_iter()
            .chain(self.learned_ids.get(message_id).copied())
    }

    /// The plan message with `message_id` that `party` received, preferring
    /// one without a decision yet, as replayed files may share a Message-ID.
    pub fn find_for(&self, message_id: &str, party: u32) -> Option<u32> {
        let mut decided = None;
        for id in self.find(message_id) {
            let Some(slot) = self.slot(id, party) else {
                continue;
            };
            if self.decisions[id as usize][slot] == NO_TIME {
                return Some(id);
            }
            decided.get_or_insert(id);
        }
        decided
    }

    /// Finds the plan message and the recipient mailbox a decision is about:
    /// by Message-ID and party, or else by the UID the message was fetched
    /// with (a message the engine could not read names no Message-ID).
    fn identify(&self, event: &EmailProcessed) -> Option<(u32, u32)> {
        let party = event
            .party
            .as_ref()
            .and_then(|owner| self.mailbox_index.get(&owner.name().to_ascii_lowercase()))
            .copied();
        if let (Some(message_id), Some(party)) = (event.message_id.as_deref(), party)
            && let Some(id) = self.find_for(message_id, party)
        {
            return Some((id, party));
        }
        let uid = uid_of(&event.key)?;
        if event.mailbox.as_str() == super::world::FORWARD_ID {
            let &(tag, from) = self.forward_copies.get(&uid)?;
            return Some((tag, party.unwrap_or(from)));
        }
        let index = *self
            .mailbox_index
            .get(&event.mailbox.as_str().to_ascii_lowercase())?;
        let &tag = self.by_uid.get(&(index, uid))?;
        Some((tag, index))
    }
}

/// The UID behind an IMAP UID or a POP3 UIDL of the form `<uidvalidity>.<uid>`.
fn uid_of(key: &SourceKey) -> Option<u32> {
    match key {
        SourceKey::Uid(uid) => Some(*uid),
        SourceKey::Uidl(uidl) => uidl.rsplit('.').next().and_then(|uid| uid.parse().ok()),
    }
}

fn level_of(level: engine::error::ErrorLevel) -> ErrorLevel {
    match level {
        engine::error::ErrorLevel::Email => ErrorLevel::Email,
        engine::error::ErrorLevel::Mailbox => ErrorLevel::Mailbox,
        engine::error::ErrorLevel::ServerProfile => ErrorLevel::ServerProfile,
    }
}
