//! Checks a parsed scenario file and resolves it into a [`Scenario`].
//!
//! Presets are applied first and explicit keys override them; defaults fill
//! the rest. Every problem is collected with its position, so `mailsim
//! check` can list them all at once.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{Problems, ScenarioError};
use super::file::{self, BoundValue, GroupTable, ScenarioFile, SizeSpec};
use super::metric::Metric;
use super::units::Span;
use super::{
    Bound, Burst, Cluster, Contacts, Expectation, Fault, FaultKind, FaultTarget, Forwarding, Group,
    GroupKind, Incoming, MailProtocol, Mailbox, Preset, ReplyKey, Scenario, Server, SizeModel,
    Strategy, Tracking, Traffic,
};

/// Default fixed message size: a typical plain business email with headers.
const DEFAULT_MESSAGE_SIZE: u64 = 3600;

/// Parses and checks `text`.
pub fn resolve(file: &str, text: &str, base: &Path) -> Result<Scenario, ScenarioError> {
    let mut problems = Problems::new(file, text);
    let raw: ScenarioFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            problems.add(span, describe_toml_error(error.message()));
            return Err(problems.finish().expect_err("a problem was added"));
        }
    };
    let scenario = Resolver {
        problems: &mut problems,
        base,
    }
    .scenario(file, raw);
    problems.finish()?;
    Ok(scenario)
}

fn describe_toml_error(message: &str) -> String {
    let message = message.trim();
    // serde says "unknown field"; scenario files talk about keys.
    message
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
}

struct Resolver<'p, 'a> {
    problems: &'p mut Problems<'a>,
    base: &'p Path,
}

fn span_of<T>(value: &Spanned<T>) -> Range<usize> {
    value.span()
}

impl Resolver<'_, '_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems.add(span, message);
    }

    fn scenario(&mut self, file: &str, raw: ScenarioFile) -> Scenario {
        let duration = raw.duration.get_ref().0;
        if duration.is_zero() {
            self.error(span_of(&raw.duration), "duration must be above 0s");
        }
        let strategies = self.strategies(raw.strategies.as_ref());
        let server = self.server(&raw.server);
        let cluster = self.cluster(&raw.cluster);
        let forwarding = self.forwarding(&raw.forwarding);

        let (groups, mailboxes) = self.groups(&raw.users, &raw.queues);
        if mailboxes
            .iter()
            .any(|mailbox: &Mailbox| mailbox.address.eq_ignore_ascii_case(&forwarding.mailbox))
        {
            self.error(0..0, format!(
                "the forward mailbox {} is also a user or queue mailbox; set [forwarding] mailbox to another address",
                forwarding.mailbox
            ));
        }
        let contacts = self.contacts(&raw.contacts);
        let names = Names {
            groups: &groups,
            mailboxes: &mailboxes,
        };
        let traffic = raw
            .traffic
            .iter()
            .map(|rule| self.traffic(rule, &names, duration))
            .collect();
        let faults = raw
            .faults
            .iter()
            .filter_map(|fault| self.fault(fault, &names, &strategies))
            .collect();
        let group_names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let expectations = raw
            .expectations
            .iter()
            .filter_map(|expect| self.expectation(expect, &strategies, &group_names))
            .collect();

        Scenario {
            file: file.to_owned(),
            name: raw.name,
            description: raw.description.trim().to_owned(),
            seed: raw.seed,
            duration,
            drain: raw
                .drain
                .map_or(Duration::from_secs(3600), |d| d.into_inner().0),
            sla: raw
                .sla
                .map_or(Duration::from_secs(30 * 60), |d| d.into_inner().0),
            strategies,
            server,
            cluster,
            record_cost: raw
                .records
                .cost
                .map_or(Duration::from_millis(20), |cost| cost.0),
            forwarding,
            groups,
            mailboxes,
            contacts,
            threads: raw.threads.count.unwrap_or(20),
            traffic,
            faults,
            expectations,
        }
    }

    fn strategies(&mut self, raw: Option<&Spanned<Vec<Spanned<String>>>>) -> Vec<Strategy> {
        let Some(raw) = raw else {
            return vec![Strategy::Forward, Strategy::Individual];
        };
        let mut strategies = Vec::new();
        for name in raw.get_ref() {
            match Strategy::parse(name.get_ref()) {
                Some(strategy) if strategies.contains(&strategy) => {
                    self.error(
                        span_of(name),
                        format!("strategy {:?} is listed twice", name.get_ref()),
                    );
                }
                Some(strategy) => strategies.push(strategy),
                None => self.error(
                    span_of(name),
                    format!(
                        "unknown strategy {:?}; valid strategies: forward, individual, mixed",
                        name.get_ref()
                    ),
                ),
            }
        }
        if strategies.is_empty() && raw.get_ref().is_empty() {
            self.error(
                span_of(raw),
                "strategies is empty; list at least one of forward, individual, mixed",
            );
        }
        strategies
    }

    fn server(&mut self, raw: &file::ServerTable) -> Server {
        let mut server = Server {
            preset: None,
            protocol: MailProtocol::Imap,
            latency: Duration::from_millis(20),
            max_connections: None,
            receive_per_hour: None,
            command_budget: None,
            backoff_hint: None,
        };
        if let Some(preset) = &raw.preset {
            let parsed = match preset.get_ref().as_str() {
                "exchange-online" => Some(Preset::ExchangeOnline),
                "exchange-2013" => Some(Preset::Exchange2013),
                "gmail" => Some(Preset::Gmail),
                "dovecot" => Some(Preset::Dovecot),
                other => {
                    self.error(
                        span_of(preset),
                        format!("unknown preset {other:?}; valid presets: exchange-online, exchange-2013, gmail, dovecot"),
                    );
                    None
                }
            };
            if let Some(parsed) = parsed {
                apply_preset(&mut server, parsed);
            }
        }
        if let Some(protocol) = &raw.protocol {
            match protocol.get_ref().as_str() {
                "imap" => server.protocol = MailProtocol::Imap,
                "pop3" => server.protocol = MailProtocol::Pop3,
                other => self.error(
                    span_of(protocol),
                    format!("unknown protocol {other:?}; valid protocols: imap, pop3"),
                ),
            }
        }
        if let Some(latency) = raw.latency {
            server.latency = latency.0;
        }
        if let Some(max) = raw.max_connections {
            server.max_connections = Some(max);
        }
        if let Some(limit) = raw.receive_per_hour {
            server.receive_per_hour = Some(limit);
        }
        if let Some(budget) = raw.command_budget {
            server.command_budget = Some(budget);
        }
        if let Some(hint) = raw.backoff_hint {
            server.backoff_hint = Some(hint.0);
        }
        server
    }

    fn positive(&mut self, value: Option<&Spanned<u32>>, key: &str, default: u32) -> u32 {
        match value {
            None => default,
            Some(value) if *value.get_ref() == 0 => {
                self.error(span_of(value), format!("{key} must be at least 1"));
                default
            }
            Some(value) => *value.get_ref(),
        }
    }

    fn cluster(&mut self, raw: &file::ClusterTable) -> Cluster {
        let poll_interval = raw
            .poll_interval
            .as_ref()
            .map_or(Duration::from_secs(300), |p| p.get_ref().0);
        let idle_poll_max = match &raw.idle_poll_max {
            None => poll_interval,
            Some(max) if max.get_ref().0 < poll_interval => {
                self.error(
                    span_of(max),
                    format!(
                        "idle_poll_max {} is below poll_interval; use at least {}",
                        max.get_ref(),
                        Span(poll_interval)
                    ),
                );
                poll_interval
            }
            Some(max) => max.get_ref().0,
        };
        Cluster {
            nodes: self.positive(raw.nodes.as_ref(), "nodes", 4),
            threads_per_node: self.positive(raw.threads_per_node.as_ref(), "threads_per_node", 4),
            poll_interval,
            idle_poll_max,
            batch_size: self.positive(raw.batch_size.as_ref(), "batch_size", 50),
            max_per_cycle: self.positive(raw.max_per_cycle.as_ref(), "max_per_cycle", 500),
            max_connections: self.positive(raw.max_connections.as_ref(), "max_connections", 10),
            retry_interval: raw.retry_interval.map_or(Duration::from_secs(300), |r| r.0),
            max_retries: raw.max_retries.unwrap_or(10),
            max_email_attempts: self.positive(
                raw.max_email_attempts.as_ref(),
                "max_email_attempts",
                3,
            ),
            command_timeout: raw.command_timeout.map_or(Duration::from_secs(60), |t| t.0),
            enable_after_fault: raw.enable_after_fault.unwrap_or(true),
        }
    }

    fn forwarding(&mut self, raw: &file::ForwardingTable) -> Forwarding {
        let mode = match raw.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
            None | Some((_, "attachment")) => sim::ForwardMode::Attachment,
            Some((_, "inline")) => sim::ForwardMode::Inline,
            Some((mode, other)) => {
                self.error(
                    span_of(mode),
                    format!("unknown forwarding mode {other:?}; valid modes: attachment, inline"),
                );
                sim::ForwardMode::Attachment
            }
        };
        Forwarding {
            mode,
            delay: raw.delay.map_or(Duration::from_secs(2), |d| d.0),
            mailbox: raw
                .mailbox
                .clone()
                .unwrap_or_else(|| "crm-forward@mailsim.test".to_owned()),
        }
    }

    fn groups(
        &mut self,
        users: &[Spanned<GroupTable>],
        queues: &[Spanned<GroupTable>],
    ) -> (Vec<Group>, Vec<Mailbox>) {
        let mut groups = Vec::new();
        let mut mailboxes: Vec<Mailbox> = Vec::new();
        let mut seen_names = BTreeSet::new();
        let mut seen_addresses = BTreeSet::new();
        let tables = users
            .iter()
            .map(|t| (GroupKind::User, t))
            .chain(queues.iter().map(|t| (GroupKind::Queue, t)));
        for (kind, table) in tables {
            let table = table.get_ref();
            let name = table.name.get_ref().clone();
            if name.is_empty() || name.contains('.') || name.contains('@') {
                self.error(
                    span_of(&table.name),
                    format!("invalid group name {name:?}: use letters, digits, '-' or '_' (no '.' or '@')"),
                );
            }
            if !seen_names.insert(name.clone()) {
                self.error(
                    span_of(&table.name),
                    format!("group name {name:?} is used twice"),
                );
            }
            let count = *table.count.get_ref();
            if count == 0 {
                self.error(
                    span_of(&table.count),
                    format!("group {name:?} has count = 0; a group needs at least 1 mailbox"),
                );
            }
            let pattern = table.address.get_ref();
            let addresses = match expand_pattern(pattern, count) {
                Ok(addresses) => addresses,
                Err(message) => {
                    self.error(span_of(&table.address), message);
                    Vec::new()
                }
            };
            let group_index = groups.len();
            let mut indices = Vec::new();
            for address in addresses {
                if !seen_addresses.insert(address.to_ascii_lowercase()) {
                    self.error(
                        span_of(&table.address),
                        format!("address {address} belongs to two groups; give each group its own pattern"),
                    );
                    continue;
                }
                indices.push(mailboxes.len());
                mailboxes.push(Mailbox {
                    address,
                    group: group_index,
                });
            }
            let tracking = match table.tracking.as_ref().map(|t| (t, t.get_ref().as_str())) {
                None | Some((_, "all")) => Tracking::All,
                Some((_, "responses")) => Tracking::Responses,
                Some((_, "contacts")) => Tracking::Contacts,
                Some((_, "none")) => Tracking::None,
                Some((span, other)) => {
                    self.error(
                        span_of(span),
                        format!("unknown tracking filter {other:?}; valid filters: all, responses, contacts, none"),
                    );
                    Tracking::All
                }
            };
            let mixed = match table.mixed.as_ref().map(|m| (m, m.get_ref().as_str())) {
                None | Some((_, "direct")) => Incoming::Direct,
                Some((_, "forward")) => Incoming::ViaForward,
                Some((span, other)) => {
                    self.error(
                        span_of(span),
                        format!("unknown incoming method {other:?} for mixed; valid methods: direct, forward"),
                    );
                    Incoming::Direct
                }
            };
            groups.push(Group {
                name,
                kind,
                mailboxes: indices,
                tracking,
                mixed,
            });
        }
        if groups.is_empty() {
            self.error(
                0..0,
                "the scenario has no mailboxes; add a [[users]] or [[queues]] group",
            );
        }
        (groups, mailboxes)
    }

    fn contacts(&mut self, raw: &file::ContactsTable) -> Contacts {
        let count = raw.count.unwrap_or(100);
        let addresses = match &raw.address {
            None => expand_pattern("contact{n}@customer.example", count).unwrap_or_default(),
            Some(pattern) => match expand_pattern(pattern.get_ref(), count) {
                Ok(addresses) => addresses,
                Err(message) => {
                    self.error(span_of(pattern), message);
                    Vec::new()
                }
            },
        };
        let unknown_share = self.share(raw.unknown_share.as_ref(), "unknown_share", 0.1);
        Contacts {
            addresses,
            unknown_share,
        }
    }

    fn share(&mut self, value: Option<&Spanned<f64>>, key: &str, default: f64) -> f64 {
        match value {
            None => default,
            Some(value) if !(0.0..=1.0).contains(value.get_ref()) => {
                self.error(
                    span_of(value),
                    format!(
                        "{key} = {} is not a share; use a number from 0.0 to 1.0",
                        value.get_ref()
                    ),
                );
                default
            }
            Some(value) => *value.get_ref(),
        }
    }

    fn traffic(
        &mut self,
        rule: &Spanned<file::TrafficTable>,
        names: &Names<'_>,
        duration: Duration,
    ) -> Traffic {
        let raw = rule.get_ref();
        let targets = names
            .mailboxes_named(raw.to.get_ref())
            .unwrap_or_else(|message| {
                self.error(span_of(&raw.to), message);
                Vec::new()
            });
        let cc = match &raw.cc {
            None => Vec::new(),
            Some(cc) => names
                .mailboxes_named(cc.get_ref())
                .unwrap_or_else(|message| {
                    self.error(span_of(cc), message);
                    Vec::new()
                }),
        };
        let cc_default = if cc.is_empty() { 0.0 } else { 1.0 };
        let cc_share = self.share(raw.cc_share.as_ref(), "cc_share", cc_default);
        if cc_share > 0.0
            && cc.is_empty()
            && let Some(share) = &raw.cc_share
        {
            self.error(
                span_of(share),
                "cc_share is set but cc is missing; add cc = \"<group or address>\"",
            );
        }
        let reply_share = self.share(raw.reply_share.as_ref(), "reply_share", 0.0);
        let reply_keys = match &raw.reply_keys {
            None => vec![ReplyKey::InReplyTo, ReplyKey::Token, ReplyKey::References],
            Some(keys) => keys
                .iter()
                .filter_map(|key| match key.get_ref().as_str() {
                    "in-reply-to" => Some(ReplyKey::InReplyTo),
                    "token" => Some(ReplyKey::Token),
                    "references" => Some(ReplyKey::References),
                    other => {
                        self.error(
                            span_of(key),
                            format!("unknown reply key {other:?}; valid keys: in-reply-to, token, references"),
                        );
                        None
                    }
                })
                .collect(),
        };
        let size = match &raw.size {
            None => SizeModel::Fixed(DEFAULT_MESSAGE_SIZE),
            Some(SizeSpec::Fixed(size)) => SizeModel::Fixed(size.0),
            Some(SizeSpec::LogNormal(table)) => SizeModel::LogNormal {
                median: table.median.0,
                sigma: table.sigma.unwrap_or(1.0).clamp(0.0, 4.0),
                max: table.max.map_or(1_000_000, |max| max.0),
            },
        };
        let eml_files = match &raw.eml_dir {
            None => Vec::new(),
            Some(dir) => match list_eml_files(&self.base.join(dir.get_ref())) {
                Ok(files) if files.is_empty() => {
                    self.error(
                        span_of(dir),
                        format!("folder {:?} has no .eml files", dir.get_ref()),
                    );
                    files
                }
                Ok(files) => files,
                Err(error) => {
                    self.error(
                        span_of(dir),
                        format!(
                            "cannot read folder {:?} (relative to the scenario file): {error}",
                            dir.get_ref()
                        ),
                    );
                    Vec::new()
                }
            },
        };
        let rate = raw.rate.map_or(0.0, |rate| rate.per_second);
        if rate == 0.0 && raw.bursts.is_empty() && eml_files.is_empty() {
            self.error(
                span_of(rule),
                "this [[traffic]] rule sends nothing; set rate, bursts or eml_dir",
            );
        }
        let bursts = raw
            .bursts
            .iter()
            .map(|burst| {
                let table = burst.get_ref();
                if table.at.0 >= duration {
                    self.error(
                        span_of(burst),
                        format!(
                            "burst at {} is not before the scenario's duration",
                            table.at
                        ),
                    );
                }
                Burst {
                    at: table.at.0,
                    count: table.count,
                    over: table.over.map_or(Duration::from_secs(60), |over| over.0),
                }
            })
            .collect();
        Traffic {
            targets,
            rate,
            bursts,
            reply_share,
            reply_keys,
            cc,
            cc_share,
            size,
            eml_files,
            from: raw.from.map_or(Duration::ZERO, |from| from.0),
            until: raw.until.map_or(duration, |until| until.0.min(duration)),
        }
    }

    fn fault(
        &mut self,
        fault: &Spanned<file::FaultTable>,
        names: &Names<'_>,
        strategies: &[Strategy],
    ) -> Option<Fault> {
        let raw = fault.get_ref();
        let chosen = [
            raw.mailbox.as_ref(),
            raw.group.as_ref(),
            raw.reads_mail_of.as_ref(),
        ]
        .iter()
        .filter(|target| target.is_some())
        .count();
        if chosen != 1 {
            self.error(
                span_of(fault),
                "a fault needs exactly one target key: mailbox, group or reads_mail_of",
            );
            return None;
        }
        let target = if let Some(mailbox) = &raw.mailbox {
            if mailbox.get_ref() == "forward" {
                if !strategies.iter().any(|s| *s != Strategy::Individual) {
                    self.error(
                        span_of(mailbox),
                        "the forward mailbox is not used by any listed strategy; add \"forward\" or \"mixed\" to strategies",
                    );
                }
                FaultTarget::ForwardMailbox
            } else {
                match names.mailbox(mailbox.get_ref()) {
                    Some(index) => FaultTarget::Mailboxes(vec![index]),
                    None => {
                        self.error(
                            span_of(mailbox),
                            format!(
                                "no mailbox {:?} in this scenario; use an address from a [[users]] or [[queues]] group, or \"forward\"",
                                mailbox.get_ref()
                            ),
                        );
                        return None;
                    }
                }
            }
        } else if let Some(group) = &raw.group {
            match names.group(group.get_ref()) {
                Some(group) => FaultTarget::Mailboxes(group.mailboxes.clone()),
                None => {
                    self.error(span_of(group), names.unknown_group(group.get_ref()));
                    return None;
                }
            }
        } else {
            let name = raw.reads_mail_of.as_ref()?;
            match names.mailboxes_named(name.get_ref()) {
                Ok(mailboxes) => FaultTarget::ReadsMailOf(mailboxes),
                Err(message) => {
                    self.error(span_of(name), message);
                    return None;
                }
            }
        };

        let kind = match raw.kind.get_ref().as_str() {
            "login-rejected" => FaultKind::LoginRejected,
            "connection-refused" => FaultKind::ConnectionRefused,
            "reset-mid-fetch" => FaultKind::ResetMidFetch,
            "stall" => FaultKind::Stall,
            "server-error" => FaultKind::ServerError,
            "uidvalidity-reset" => FaultKind::UidValidityReset,
            "corrupt-message" => FaultKind::CorruptMessage(raw.count.unwrap_or(1).max(1)),
            "reset-after-bytes" => match &raw.bytes {
                Some(bytes) => FaultKind::ResetAfterBytes(*bytes.get_ref()),
                None => {
                    self.error(
                        span_of(&raw.kind),
                        "reset-after-bytes needs bytes = <number of bytes>",
                    );
                    // Keep checking the rest of the fault.
                    FaultKind::ResetAfterBytes(0)
                }
            },
            other => {
                self.error(
                    span_of(&raw.kind),
                    format!(
                        "unknown fault kind {other:?}; valid kinds: login-rejected, connection-refused, \
                         reset-after-bytes, reset-mid-fetch, stall, server-error, uidvalidity-reset, corrupt-message"
                    ),
                );
                return None;
            }
        };
        if let Some(bytes) = &raw.bytes
            && !matches!(kind, FaultKind::ResetAfterBytes(_))
        {
            self.error(
                span_of(bytes),
                "bytes applies only to kind = \"reset-after-bytes\"",
            );
        }
        let until = match &raw.until {
            Some(until) if kind.is_one_shot() => {
                self.error(
                    span_of(until),
                    format!("{} happens once at `from`; remove until", kind.name()),
                );
                None
            }
            Some(until) if until.get_ref().0 <= raw.from.0 => {
                self.error(
                    span_of(until),
                    format!("until {} is not after from {}", until.get_ref(), raw.from),
                );
                None
            }
            Some(until) => Some(until.get_ref().0),
            None => None,
        };
        Some(Fault {
            target,
            kind,
            from: raw.from.0,
            until,
        })
    }

    fn expectation(
        &mut self,
        expect: &Spanned<file::ExpectTable>,
        strategies: &[Strategy],
        groups: &[&str],
    ) -> Option<Expectation> {
        let raw = expect.get_ref();
        let metric = match Metric::parse(raw.metric.get_ref(), groups) {
            Ok(metric) => metric,
            Err(message) => {
                self.error(span_of(&raw.metric), message);
                return None;
            }
        };
        let applies_to = match &raw.strategy {
            None => strategies.to_vec(),
            Some(name) if name.get_ref() == "all" => strategies.to_vec(),
            Some(name) => match Strategy::parse(name.get_ref()) {
                Some(strategy) if strategies.contains(&strategy) => vec![strategy],
                Some(_) => {
                    self.error(
                        span_of(name),
                        format!(
                            "strategy {:?} is not in this scenario's strategies",
                            name.get_ref()
                        ),
                    );
                    return None;
                }
                None => {
                    self.error(
                        span_of(name),
                        format!(
                            "unknown strategy {:?}; valid values: forward, individual, mixed, all",
                            name.get_ref()
                        ),
                    );
                    return None;
                }
            },
        };
        let ratio_to = match &raw.ratio_to {
            None => None,
            Some(name) => match Strategy::parse(name.get_ref()) {
                Some(strategy) if strategies.contains(&strategy) => Some(strategy),
                _ => {
                    self.error(
                        span_of(name),
                        format!(
                            "ratio_to {:?} is not one of this scenario's strategies ({})",
                            name.get_ref(),
                            strategies
                                .iter()
                                .map(|s| s.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    return None;
                }
            },
        };
        // A ratio is a plain number even for time metrics.
        let as_duration = metric.is_duration() && ratio_to.is_none();
        let mut bounds = Vec::new();
        for (value, make) in [
            (&raw.max, Bound::Max as fn(f64) -> Bound),
            (&raw.min, Bound::Min),
            (&raw.equals, Bound::Equals),
        ] {
            if let Some(value) = value {
                match bound_value(value.get_ref(), as_duration) {
                    Ok(number) => bounds.push(make(number)),
                    Err(message) => {
                        self.error(span_of(value), format!("{message} for metric {metric}"))
                    }
                }
            }
        }
        if bounds.is_empty() && raw.max.is_none() && raw.min.is_none() && raw.equals.is_none() {
            self.error(
                span_of(expect),
                "an expectation needs a bound: max, min or equals",
            );
            return None;
        }
        Some(Expectation {
            strategies: applies_to,
            metric,
            ratio_to,
            bounds,
        })
    }
}

fn bound_value(value: &BoundValue, as_duration: bool) -> Result<f64, String> {
    match (value, as_duration) {
        (BoundValue::Text(text), true) => text
            .parse::<Span>()
            .map(|span| span.0.as_secs_f64())
            .map_err(|error| error.to_string()),
        (BoundValue::Text(text), false) => text
            .parse::<f64>()
            .map_err(|_| format!("invalid bound {text:?}: use a number")),
        (BoundValue::Integer(_) | BoundValue::Float(_), true) => {
            Err("invalid bound: use a duration string such as \"15m\"".to_owned())
        }
        (BoundValue::Integer(number), false) => Ok(*number as f64),
        (BoundValue::Float(number), false) => Ok(*number),
    }
}

fn apply_preset(server: &mut Server, preset: Preset) {
    server.preset = Some(preset);
    match preset {
        Preset::ExchangeOnline => {
            server.max_connections = Some(20);
            server.receive_per_hour = Some(3600);
            server.backoff_hint = Some(sim::policy::OFFICE365_BACKOFF);
        }
        Preset::Exchange2013 => server.max_connections = Some(16),
        Preset::Gmail => server.max_connections = Some(15),
        Preset::Dovecot => {}
    }
}

/// Expands an address pattern: `{n}` becomes 1..=count, `{n:03}` zero-pads to 3 digits.
fn expand_pattern(pattern: &str, count: u32) -> Result<Vec<String>, String> {
    if !pattern.contains('@') {
        return Err(format!(
            "address pattern {pattern:?} has no '@'; use a pattern such as \"user{{n}}@corp.example\""
        ));
    }
    let (before, width, after) = match pattern.find("{n") {
        None if count > 1 => {
            return Err(format!(
                "address pattern {pattern:?} has no {{n}} but count is {count}; add {{n}} where the number goes"
            ));
        }
        None => return Ok(vec![pattern.to_owned()]),
        Some(start) => {
            let end = pattern[start..]
                .find('}')
                .map(|i| start + i)
                .ok_or_else(|| format!("address pattern {pattern:?} has an unclosed {{n"))?;
            let spec = &pattern[start + 2..end];
            let width = match spec.strip_prefix(':') {
                None if spec.is_empty() => 0,
                Some(digits) => digits.parse::<usize>().map_err(|_| {
                    format!("invalid placeholder in {pattern:?}; use {{n}} or {{n:03}}")
                })?,
                None => {
                    return Err(format!(
                        "invalid placeholder in {pattern:?}; use {{n}} or {{n:03}}"
                    ));
                }
            };
            (&pattern[..start], width, &pattern[end + 1..])
        }
    };
    Ok((1..=count)
        .map(|n| format!("{before}{n:0width$}{after}"))
        .collect())
}

fn list_eml_files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("eml"))
            && path.is_file()
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

struct Names<'a> {
    groups: &'a [Group],
    mailboxes: &'a [Mailbox],
}

impl Names<'_> {
    fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|group| group.name == name)
    }

    fn mailbox(&self, address: &str) -> Option<usize> {
        self.mailboxes
            .iter()
            .position(|mailbox| mailbox.address.eq_ignore_ascii_case(address))
    }

    fn unknown_group(&self, name: &str) -> String {
        let names: Vec<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
        format!(
            "no group {name:?} in this scenario; groups: {}",
            names.join(", ")
        )
    }

    /// Resolves a group name or a mailbox address to mailbox indices.
    fn mailboxes_named(&self, name: &str) -> Result<Vec<usize>, String> {
        if let Some(group) = self.group(name) {
            return Ok(group.mailboxes.clone());
        }
        if let Some(index) = self.mailbox(name) {
            return Ok(vec![index]);
        }
        let names: Vec<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
        Err(format!(
            "{name:?} is neither a group nor a mailbox of this scenario; groups: {}",
            names.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_expands_numbers() {
        assert_eq!(
            expand_pattern("u{n}@x.test", 3).unwrap(),
            vec!["u1@x.test", "u2@x.test", "u3@x.test"]
        );
        assert_eq!(
            expand_pattern("q{n:03}@x.test", 1).unwrap(),
            vec!["q001@x.test"]
        );
        assert_eq!(
            expand_pattern("only@x.test", 1).unwrap(),
            vec!["only@x.test"]
        );
        assert!(expand_pattern("only@x.test", 2).is_err());
        assert!(expand_pattern("nobody", 1).is_err());
        assert!(expand_pattern("u{n@x.test", 1).is_err());
    }
}
