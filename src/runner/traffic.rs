//! Traffic generation: when each message arrives, for whom, and its bytes.
//!
//! The plan is computed once per scenario and seed, before any world runs, so
//! every strategy sees identical traffic. Arrival times come from one seeded
//! ChaCha stream walked in a fixed order (rules in file order, mailboxes in
//! index order); message bytes are built only when a message is delivered,
//! from the plan entry alone, so a million-message day never sits in memory.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use mail_builder::MessageBuilder;
use mail_builder::headers::date::Date;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};

use crate::scenario::{ReplyKey, Scenario, SizeModel};

/// Domain of generated Message-IDs; the runner recognises its own messages by it.
pub const MESSAGE_ID_DOMAIN: &str = "traffic.mailsim.test";

/// Domain of the Message-IDs of conversations tracked before the run.
pub const THREAD_ID_DOMAIN: &str = "crm.mailsim.test";

/// "No value" in the compact `u32` fields of [`Planned`].
pub const NONE: u32 = u32::MAX;

/// What a reply points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTarget {
    /// An earlier planned message.
    Message(u32),
    /// A conversation tracked before the run.
    Thread(u32),
}

/// One planned message. Fields are compact because a plan can hold millions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Planned {
    /// Arrival time in the first recipient's mailbox, before any receive limit.
    pub at: Duration,
    /// The first recipient (index into the scenario's mailboxes).
    pub to: u32,
    /// A second recipient of the same message, or `u32::MAX`.
    pub cc: u32,
    /// Index of the sender among the contacts; `u32::MAX - 1 - n` for unknown senders.
    pub sender: u32,
    /// Size of the body filler, in bytes.
    pub size: u32,
    /// The traffic rule, an index into the scenario's rules.
    pub rule: u16,
    /// Replied-to mail and the header used, if this is a reply.
    pub reply: Option<(ReplyTarget, ReplyKey)>,
    /// The replayed `.eml` file, an index into the rule's files, or `u32::MAX`.
    pub eml: u32,
}

impl Planned {
    /// Recipients in delivery order.
    pub fn recipients(&self) -> impl Iterator<Item = usize> {
        [self.to, self.cc]
            .into_iter()
            .filter(|&mailbox| mailbox != NONE)
            .map(|mailbox| mailbox as usize)
    }

    /// True when the sender is one of the scenario's contacts.
    pub fn from_contact(&self, contacts: usize) -> bool {
        (self.sender as usize) < contacts
    }
}

/// Every message of a run, sorted by arrival time; the index is the message id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Messages in arrival order.
    pub messages: Vec<Planned>,
    /// Contents of the replayed `.eml` files, per rule.
    pub eml: Vec<Vec<Bytes>>,
    /// Plan ids of replayed `.eml` files by their Message-ID (without angle
    /// brackets); files may share one.
    pub eml_message_ids: HashMap<String, Vec<u32>>,
}

impl Plan {
    /// Plans the traffic of `scenario` with its seed.
    pub fn new(scenario: &Scenario) -> std::io::Result<Self> {
        Self::with_seed(scenario, scenario.seed)
    }

    /// Plans the traffic of `scenario` with another seed.
    pub fn with_seed(scenario: &Scenario, seed: u64) -> std::io::Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut messages = Vec::new();
        let mut eml = Vec::with_capacity(scenario.traffic.len());

        for (rule_index, rule) in scenario.traffic.iter().enumerate() {
            let rule_id = rule_index as u16;
            let mut push = |at: Duration, to: usize, eml: u32| {
                messages.push(Planned {
                    at,
                    to: to as u32,
                    cc: NONE,
                    sender: 0,
                    size: 0,
                    rule: rule_id,
                    reply: None,
                    eml,
                });
            };
            if !rule.eml_files.is_empty() {
                let files = rule
                    .eml_files
                    .iter()
                    .map(|path| std::fs::read(path).map(Bytes::from))
                    .collect::<std::io::Result<Vec<_>>>()?;
                let span = rule.until.saturating_sub(rule.from);
                let step = span / (files.len() as u32 + 1);
                for (index, _) in files.iter().enumerate() {
                    let to = rule.targets[index % rule.targets.len().max(1)];
                    push(rule.from + step * (index as u32 + 1), to, index as u32);
                }
                eml.push(files);
                continue;
            }
            eml.push(Vec::new());
            if rule.rate > 0.0 {
                let gaps = Exp::new(rule.rate).map_err(std::io::Error::other)?;
                for &to in &rule.targets {
                    let mut at = rule.from.as_secs_f64();
                    loop {
                        at += gaps.sample(&mut rng);
                        if at >= rule.until.as_secs_f64() {
                            break;
                        }
                        push(Duration::from_millis((at * 1000.0) as u64), to, NONE);
                    }
                }
            }
            for burst in &rule.bursts {
                for _ in 0..burst.count {
                    if rule.targets.is_empty() {
                        break;
                    }
                    let to = rule.targets[rng.random_range(0..rule.targets.len())];
                    let offset = rng.random_range(0..burst.over.as_millis().max(1) as u64);
                    push(burst.at + Duration::from_millis(offset), to, NONE);
                }
            }
        }

        // A stable sort keeps generation order among equal times.
        messages.sort_by_key(|message| message.at);
        let mut plan = Plan {
            messages,
            eml,
            eml_message_ids: HashMap::new(),
        };
        plan.decide_details(scenario, &mut rng);
        plan.index_eml_message_ids();
        Ok(plan)
    }

    fn index_eml_message_ids(&mut self) {
        for (id, message) in self.messages.iter().enumerate() {
            if message.eml == NONE {
                continue;
            }
            let raw = &self.eml[usize::from(message.rule)][message.eml as usize];
            let parsed = mail_parser::MessageParser::new().parse_headers(raw);
            if let Some(message_id) = parsed.as_ref().and_then(|parsed| parsed.message_id()) {
                self.eml_message_ids
                    .entry(message_id.to_owned())
                    .or_default()
                    .push(id as u32);
            }
        }
    }

    /// The plan ids of the messages with `message_id` that the plan made
    /// or replays: one for generated mail, any number for replayed files.
    pub fn find(&self, message_id: &str) -> impl Iterator<Item = u32> + '_ {
        let replayed = self
            .eml_message_ids
            .get(message_id)
            .map_or(&[][..], Vec::as_slice);
        parse_message_id(message_id)
            .into_iter()
            .chain(replayed.iter().copied())
    }

    /// True when plan message `id` carries a Message-ID that [`Plan::find`] knows.
    pub fn has_known_message_id(&self, id: u32) -> bool {
        let Some(message) = self.messages.get(id as usize) else {
            return false;
        };
        message.eml == NONE || self.eml_message_ids.values().any(|ids| ids.contains(&id))
    }

    /// Chooses senders, sizes, copies and replies, in arrival order, so a
    /// reply can only point at mail that arrived before it.
    fn decide_details(&mut self, scenario: &Scenario, rng: &mut ChaCha8Rng) {
        const RECENT: usize = 8;
        let mut recent: Vec<Vec<u32>> = vec![Vec::new(); scenario.mailboxes.len()];
        let contacts = scenario.contacts.addresses.len() as u32;
        let mut unknown_senders = 0u32;

        for id in 0..self.messages.len() {
            let message = &mut self.messages[id];
            let rule = &scenario.traffic[usize::from(message.rule)];

            message.sender = if contacts == 0 || rng.random_bool(scenario.contacts.unknown_share) {
                unknown_senders = unknown_senders.wrapping_add(1);
                NONE - 1 - unknown_senders % 1_000_000
            } else {
                rng.random_range(0..contacts)
            };
            message.size = match rule.size {
                SizeModel::Fixed(size) => size as u32,
                SizeModel::LogNormal { median, sigma, max } => {
                    let distribution = LogNormal::new((median.max(1) as f64).ln(), sigma)
                        .unwrap_or_else(|_| LogNormal::new(0.0, 0.0).expect("valid parameters"));
                    (distribution.sample(rng) as u64).clamp(64, max) as u32
                }
            };
            if !rule.cc.is_empty() && rng.random_bool(rule.cc_share) {
                let cc = rule.cc[rng.random_range(0..rule.cc.len())];
                if cc as u32 != message.to {
                    message.cc = cc as u32;
                }
            }
            if message.eml == NONE
                && !rule.reply_keys.is_empty()
                && rng.random_bool(rule.reply_share)
            {
                let key = rule.reply_keys[rng.random_range(0..rule.reply_keys.len())];
                let earlier = &recent[message.to as usize];
                let target = match key {
                    ReplyKey::Token if scenario.threads > 0 => {
                        Some(ReplyTarget::Thread(rng.random_range(0..scenario.threads)))
                    }
                    _ if !earlier.is_empty() && (scenario.threads == 0 || rng.random_bool(0.5)) => {
                        Some(ReplyTarget::Message(
                            earlier[rng.random_range(0..earlier.len())],
                        ))
                    }
                    _ if scenario.threads > 0 => {
                        Some(ReplyTarget::Thread(rng.random_range(0..scenario.threads)))
                    }
                    _ => None,
                };
                // A token can only point at a tracked conversation.
                let key = match (key, target) {
                    (ReplyKey::Token, Some(ReplyTarget::Message(_))) => ReplyKey::InReplyTo,
                    (key, _) => key,
                };
                message.reply = target.map(|target| (target, key));
            }
            let recent = &mut recent[message.to as usize];
            if recent.len() == RECENT {
                recent.remove(0);
            }
            recent.push(id as u32);
        }
    }

    /// Total deliveries: one per message and recipient.
    pub fn deliveries(&self) -> usize {
        self.messages.iter().map(|m| m.recipients().count()).sum()
    }
}

/// Message-ID (without angle brackets) of planned message `id`.
pub fn message_id(id: u32, seed: u64) -> String {
    format!("{id}.{seed:x}@{MESSAGE_ID_DOMAIN}")
}

/// Recovers the plan index from a Message-ID made by [`message_id`].
pub fn parse_message_id(message_id: &str) -> Option<u32> {
    let id = message_id.trim_matches(|c| c == '<' || c == '>');
    let (local, domain) = id.split_once('@')?;
    if domain != MESSAGE_ID_DOMAIN {
        return None;
    }
    local.split_once('.')?.0.parse().ok()
}

/// Message-ID of tracked conversation `thread`.
pub fn thread_message_id(thread: u32) -> String {
    format!("thread.{thread}@{THREAD_ID_DOMAIN}")
}

/// Tracking token of tracked conversation `thread`: `CRM:` and 7 digits.
pub fn thread_token(thread: u32) -> String {
    format!("CRM:{:07}", thread + 1)
}

const FILLER: &str = "Thank you for your message. We reviewed the figures you sent and would \
like to agree on the next steps before the end of the month. Please find our comments \
below and let us know a time that suits you for a short call. ";

const TOPICS: [&str; 8] = [
    "Quote request",
    "Invoice question",
    "Order status",
    "Meeting follow-up",
    "Support case",
    "Contract renewal",
    "Delivery address change",
    "Product demo",
];

/// Builds the bytes of planned message `id` as its first recipient gets them.
pub fn render(plan: &Plan, scenario: &Scenario, id: u32, epoch: DateTime<Utc>) -> Bytes {
    let message = &plan.messages[id as usize];
    if message.eml != NONE {
        return plan.eml[usize::from(message.rule)][message.eml as usize].clone();
    }
    let contacts = &scenario.contacts.addresses;
    let sender = if message.from_contact(contacts.len()) {
        contacts[message.sender as usize].clone()
    } else {
        format!("sender{}@elsewhere.example", NONE - 1 - message.sender)
    };
    let to = &scenario.mailboxes[message.to as usize].address;
    let topic = TOPICS[id as usize % TOPICS.len()];
    let mut subject = String::new();
    let mut builder = MessageBuilder::new()
        .from(sender.as_str())
        .message_id(message_id(id, scenario.seed))
        .date(Date::new(epoch.timestamp() + message.at.as_secs() as i64));
    builder = if message.cc == NONE {
        builder.to(to.as_str())
    } else {
        builder
            .to(to.as_str())
            .cc(scenario.mailboxes[message.cc as usize].address.as_str())
    };
    match message.reply {
        None => {
            let _ = write!(subject, "{topic} #{id}");
        }
        Some((target, key)) => {
            let parent = match target {
                ReplyTarget::Message(parent) => message_id(parent, scenario.seed),
                ReplyTarget::Thread(thread) => thread_message_id(thread),
            };
            let _ = write!(subject, "Re: {topic} #{id}");
            match key {
                ReplyKey::InReplyTo => builder = builder.in_reply_to(parent),
                ReplyKey::References => builder = builder.references(parent),
                ReplyKey::Token => {
                    if let ReplyTarget::Thread(thread) = target {
                        let _ = write!(subject, " {}", thread_token(thread));
                    }
                }
            }
        }
    }
    let mut body = String::with_capacity(message.size as usize + 128);
    let _ = write!(body, "Hello,\r\n\r\nThis is message {id}.\r\n\r\n");
    let mut column = 0;
    // Words are separated by a space only within a line: a space before a
    // line break would make mail-builder pick quoted-printable, which every
    // reader of the message then has to decode.
    while body.len() < message.size as usize {
        for word in FILLER.split(' ').filter(|word| !word.is_empty()) {
            if column > 0 && column + word.len() + 1 > 72 {
                body.push_str("\r\n");
                column = 0;
            }
            if column > 0 {
                body.push(' ');
                column += 1;
            }
            body.push_str(word);
            column += word.len();
            if body.len() >= message.size as usize {
                break;
            }
        }
    }
    body.push_str("\r\n");
    let raw = builder.subject(subject).text_body(body).write_to_vec();
    Bytes::from(raw.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SCENARIO: &str = r#"
name = "traffic"
seed = 3
duration = "2h"

[[users]]
name = "sales"
count = 20
address = "u{n}@corp.example"

[[queues]]
name = "support"
count = 2
address = "q{n}@corp.example"

[[traffic]]
to = "sales"
rate = "10/h"
reply_share = 0.4
cc = "support"
cc_share = 0.2
bursts = [{ at = "1h", count = 30, over = "5m" }]
"#;

    fn scenario() -> Scenario {
        Scenario::parse("traffic.toml", SCENARIO, Path::new(".")).unwrap()
    }

    #[test]
    fn same_seed_gives_same_plan() {
        let scenario = scenario();
        assert_eq!(Plan::new(&scenario).unwrap(), Plan::new(&scenario).unwrap());
    }

    #[test]
    fn other_seed_changes_plan() {
        let scenario = scenario();
        assert_ne!(
            Plan::new(&scenario).unwrap(),
            Plan::with_seed(&scenario, 4).unwrap()
        );
    }

    #[test]
    fn plan_is_sorted_and_within_duration() {
        let scenario = scenario();
        let plan = Plan::new(&scenario).unwrap();
        // 20 mailboxes at 10/h for 2h is 400 on average, plus a burst of 30.
        assert!(plan.messages.len() > 300, "{}", plan.messages.len());
        assert!(plan.messages.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(plan.messages.iter().all(|m| m.at < scenario.duration));
    }

    #[test]
    fn replies_point_backwards() {
        let scenario = scenario();
        let plan = Plan::new(&scenario).unwrap();
        let mut replies = 0;
        for (id, message) in plan.messages.iter().enumerate() {
            if let Some((ReplyTarget::Message(parent), _)) = message.reply {
                assert!((parent as usize) < id);
                replies += 1;
            }
        }
        assert!(replies > 0);
    }

    #[test]
    fn rendered_message_parses_with_its_id() {
        let scenario = scenario();
        let plan = Plan::new(&scenario).unwrap();
        let raw = render(&plan, &scenario, 5, DateTime::UNIX_EPOCH);
        let parsed = mail_parser::MessageParser::new().parse(&raw).unwrap();
        let id = parsed.message_id().unwrap();
        assert_eq!(parse_message_id(id), Some(5));
        assert!(raw.len() >= 3600, "{}", raw.len());
        assert_eq!(raw, render(&plan, &scenario, 5, DateTime::UNIX_EPOCH));
    }

    #[test]
    fn rendered_body_needs_no_transfer_encoding() {
        let scenario = scenario();
        let plan = Plan::new(&scenario).unwrap();
        let raw = render(&plan, &scenario, 3, DateTime::UNIX_EPOCH);
        let text = String::from_utf8(raw.to_vec()).unwrap();
        assert!(!text.contains("quoted-printable"), "{text}");
        assert!(text.lines().all(|line| line.len() <= 78), "{text}");
    }

    #[test]
    fn foreign_message_ids_are_not_parsed() {
        assert_eq!(parse_message_id("<12.3@example.org>"), None);
        assert_eq!(parse_message_id("<x.3@traffic.mailsim.test>"), None);
        assert_eq!(parse_message_id(&message_id(77, 9)), Some(77));
    }
}
