//! Checks a parsed scenario file and resolves it into a [`Scenario`].
//!
//! Presets are applied first and explicit keys override them; defaults fill
//! the rest. Every problem is collected with its position, so `mailsim
//! check` can list them all at once. The organisation, traffic, faults and
//! expectations each have a file of their own.

mod expect;
mod faults;
mod organisation;
mod traffic;

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{Problems, ScenarioError};
use super::file::{self, ScenarioFile};
use super::units::{self, Span};
use super::{
    Cluster, Forwarding, Group, Incoming, MailProtocol, Mailbox, Preset, Scenario, Server, Strategy,
};

pub use traffic::MAX_MESSAGES;

const MILLISECOND: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
/// Maximum run, duration plus drain: 49 days fit the report's 32-bit
/// millisecond times (2^32 ms is about 49.7 days).
const MAX_RUN: Duration = Duration::from_secs(49 * 24 * 3600);

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
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace("expected u64", "expected a whole number of 0 or more")
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
        if raw.name.get_ref().trim().is_empty() {
            self.error(
                span_of(&raw.name),
                "name is empty; give the scenario a name for the report",
            );
        }
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
            let span = raw.forwarding.mailbox.as_ref().map_or(0..0, span_of);
            self.error(span, format!(
                "the forward mailbox {} is also a user or queue mailbox; set [forwarding] mailbox to another address",
                forwarding.mailbox
            ));
        }
        let contacts = self.contacts(&raw.contacts);
        let names = Names {
            groups: &groups,
            mailboxes: &mailboxes,
        };
        let mut planned = 0.0;
        let traffic = raw
            .traffic
            .iter()
            .map(|rule| self.traffic(rule, &names, duration, &mut planned))
            .collect();
        if planned > MAX_MESSAGES {
            let span = raw.traffic.first().map_or(0..0, span_of);
            self.error(
                span,
                format!(
                    "the traffic rules plan about {planned:.0} messages; at most {MAX_MESSAGES:.0} are allowed, so lower the rates, counts or duration"
                ),
            );
        }
        if let Some(raw_list) = &raw.strategies
            && strategies.contains(&Strategy::Mixed)
        {
            let via_forward = groups
                .iter()
                .filter(|group| group.mixed == Incoming::ViaForward)
                .count();
            let same_as = if via_forward == 0 {
                Some(("no group has", "individual"))
            } else if via_forward == groups.len() {
                Some(("every group has", "forward"))
            } else {
                None
            };
            if let Some((which, strategy)) = same_as {
                self.error(
                    span_of(raw_list),
                    format!(
                        "{which} mixed = \"forward\", so the mixed strategy is the {strategy} strategy; set mixed = \"forward\" on some groups and \"direct\" on the others"
                    ),
                );
            }
        }
        let forward_used = strategies.iter().any(|strategy| match strategy {
            Strategy::Forward => true,
            Strategy::Individual => false,
            Strategy::Mixed => groups
                .iter()
                .any(|group| group.mixed == Incoming::ViaForward),
        });
        let drain = raw
            .drain
            .as_ref()
            .map_or(Duration::from_secs(3600), |d| d.get_ref().0);
        if duration.saturating_add(drain) > MAX_RUN {
            let span = raw.drain.as_ref().map_or(span_of(&raw.duration), span_of);
            self.error(
                span,
                format!(
                    "duration and drain together are {}; at most 49 days are allowed, because the report times deliveries in 32-bit milliseconds, so shorten the duration or the drain",
                    units::format_duration(duration.saturating_add(drain))
                ),
            );
        }
        let faults = raw
            .faults
            .iter()
            .filter_map(|fault| self.fault(fault, &names, forward_used, duration + drain))
            .collect();
        let group_names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let expectations = raw
            .expectations
            .iter()
            .filter_map(|expect| self.expectation(expect, &strategies, &group_names))
            .collect();

        Scenario {
            file: file.to_owned(),
            name: raw.name.into_inner(),
            description: raw.description.trim().to_owned(),
            seed: raw.seed,
            duration,
            drain,
            sla: self.at_least(
                raw.sla.as_ref(),
                "sla",
                MILLISECOND,
                Duration::from_secs(30 * 60),
            ),
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
        if let Some(max) = &raw.max_connections {
            if *max.get_ref() == 0 {
                self.error(span_of(max), "max_connections = 0 would refuse every login; use 1 or more, or leave it out for no limit");
            }
            server.max_connections = Some(*max.get_ref());
        }
        if let Some(limit) = &raw.receive_per_hour {
            if *limit.get_ref() == 0 {
                self.error(span_of(limit), "receive_per_hour = 0 would hold back every message; use 1 or more, or leave it out for no limit");
            }
            server.receive_per_hour = Some(*limit.get_ref());
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

    /// A duration key that must be at least `min`.
    fn at_least(
        &mut self,
        value: Option<&Spanned<Span>>,
        key: &str,
        min: Duration,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(value) if value.get_ref().0 < min => {
                let bound = if min <= MILLISECOND {
                    "above 0s".to_owned()
                } else {
                    format!("at least {}", Span(min))
                };
                self.error(
                    span_of(value),
                    format!("{key} is {}; it must be {bound}", value.get_ref()),
                );
                default
            }
            Some(value) => value.get_ref().0,
        }
    }

    fn cluster(&mut self, raw: &file::ClusterTable) -> Cluster {
        // Polls and retries below a second would turn a simulated day into
        // billions of cycles.
        let poll_interval = self.at_least(
            raw.poll_interval.as_ref(),
            "poll_interval",
            SECOND,
            Duration::from_secs(300),
        );
        let retry_interval = self.at_least(
            raw.retry_interval.as_ref(),
            "retry_interval",
            SECOND,
            Duration::from_secs(300),
        );
        let command_timeout = self.at_least(
            raw.command_timeout.as_ref(),
            "command_timeout",
            MILLISECOND,
            Duration::from_secs(60),
        );
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
            retry_interval,
            max_retries: raw.max_retries.unwrap_or(10),
            max_email_attempts: self.positive(
                raw.max_email_attempts.as_ref(),
                "max_email_attempts",
                3,
            ),
            command_timeout,
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
        let mailbox = match &raw.mailbox {
            None => "crm-forward@mailsim.test".to_owned(),
            Some(mailbox) => {
                if let Err(message) = organisation::check_address(mailbox.get_ref()) {
                    self.error(span_of(mailbox), message);
                }
                mailbox.get_ref().clone()
            }
        };
        Forwarding {
            mode,
            delay: raw.delay.map_or(Duration::from_secs(2), |d| d.0),
            mailbox,
        }
    }

    pub(super) fn share(&mut self, value: Option<&Spanned<f64>>, key: &str, default: f64) -> f64 {
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

/// Group and mailbox names, for resolving references.
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
