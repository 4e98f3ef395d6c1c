//! Scenario files: parsing, checking, and the checked model the runner uses.
//!
//! A scenario is a TOML file (see `docs/scenarios.md` for every key). It is
//! read in two steps: `file` maps the TOML onto structs that reject unknown
//! keys and keep the position of each value, then `resolve` applies presets
//! and defaults, expands mailbox groups, and checks every cross-reference.
//! Either step reports problems with file, line and column, and a scenario
//! with any problem never runs.

mod error;
mod file;
pub mod metric;
mod resolve;
pub mod units;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{Problem, ScenarioError};
pub use metric::{ErrorLevel, Metric, Statistic};
pub use units::Budget;

/// A sync strategy the runner compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    /// Every user and queue mailbox forwards to one forward mailbox, which the engine polls.
    Forward,
    /// The engine polls every user and queue mailbox directly.
    Individual,
    /// Each group's `mixed` key chooses direct polling or the forward mailbox.
    Mixed,
}

impl Strategy {
    /// Every strategy, in report order.
    pub const ALL: [Self; 3] = [Self::Forward, Self::Individual, Self::Mixed];

    /// The strategy's name in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Individual => "individual",
            Self::Mixed => "mixed",
        }
    }

    /// Parses a strategy name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == text)
    }
}

/// How the engine reaches a mailbox's mail under the mixed strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Polled directly.
    Direct,
    /// Copied to the forward mailbox by a server-side rule.
    ViaForward,
}

/// Which incoming mail the CRM records for a mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracking {
    /// Every message.
    All,
    /// Only replies to tracked mail (the product's default).
    Responses,
    /// Only mail from known contacts.
    Contacts,
    /// Nothing.
    None,
}

/// Mail access protocol of the simulated service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailProtocol {
    /// IMAP4rev1.
    Imap,
    /// POP3.
    Pop3,
}

/// A server preset: published limits of a real service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// 20 IMAP and 20 POP3 connections per mailbox, 3,600 received messages per hour,
    /// throttled answers suggesting 300,000 ms back-off.
    ExchangeOnline,
    /// 16 IMAP connections per user.
    Exchange2013,
    /// 15 simultaneous IMAP connections.
    Gmail,
    /// No throttling.
    Dovecot,
}

/// The simulated service's protocol, latency and per-mailbox limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    /// The preset the limits started from.
    pub preset: Option<Preset>,
    /// IMAP or POP3.
    pub protocol: MailProtocol,
    /// Delay before each command's response.
    pub latency: Duration,
    /// Concurrent connections per mailbox and protocol.
    pub max_connections: Option<u32>,
    /// Messages a mailbox receives per hour before deliveries wait.
    pub receive_per_hour: Option<u32>,
    /// Commands per window per mailbox.
    pub command_budget: Option<Budget>,
    /// Back-off suggested in throttled answers.
    pub backoff_hint: Option<Duration>,
}

/// The sync engine's cluster and polling settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// Backend nodes.
    pub nodes: u32,
    /// Worker threads per node.
    pub threads_per_node: u32,
    /// Time from the end of a cycle to the next one for a busy mailbox.
    pub poll_interval: Duration,
    /// The longest interval an idle mailbox backs off to.
    pub idle_poll_max: Duration,
    /// Messages fetched and committed together.
    pub batch_size: u32,
    /// Messages one cycle takes at most.
    pub max_per_cycle: u32,
    /// The server profile's maximum concurrent connections per mailbox.
    pub max_connections: u32,
    /// Wait before retrying after a transient error.
    pub retry_interval: Duration,
    /// Transient failures in a row before the mailbox is disabled.
    pub max_retries: u32,
    /// Processing attempts before a failing message is quarantined.
    pub max_email_attempts: u32,
    /// Time the engine waits for one answer.
    pub command_timeout: Duration,
    /// Enable mailboxes the engine disabled because of a fault when the
    /// fault ends, as an administrator does after fixing its cause.
    pub enable_after_fault: bool,
}

/// How forwarding rules copy mail to the forward mailbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Forwarding {
    /// As attachment or inline.
    pub mode: sim::ForwardMode,
    /// Delay before the copy arrives.
    pub delay: Duration,
    /// The forward mailbox's address.
    pub mailbox: String,
}

/// Whether a group holds people or shared queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// User mailboxes.
    User,
    /// Queue mailboxes.
    Queue,
}

/// A named group of mailboxes.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Unique name.
    pub name: String,
    /// Users or queues.
    pub kind: GroupKind,
    /// Indices into [`Scenario::mailboxes`].
    pub mailboxes: Vec<usize>,
    /// The tracking filter of its mailboxes.
    pub tracking: Tracking,
    /// Incoming method under the mixed strategy.
    pub mixed: Incoming,
}

/// One user or queue mailbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Mailbox {
    /// Address, also the login.
    pub address: String,
    /// Index into [`Scenario::groups`].
    pub group: usize,
}

/// Senders of generated mail.
#[derive(Clone, Debug, PartialEq)]
pub struct Contacts {
    /// Known contact addresses.
    pub addresses: Vec<String>,
    /// Share of messages from senders who are not contacts.
    pub unknown_share: f64,
}

/// Which header a generated reply uses to point at earlier mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKey {
    /// `In-Reply-To` with the earlier Message-ID.
    InReplyTo,
    /// The tracking token in the subject.
    Token,
    /// `References` with the earlier Message-ID.
    References,
}

/// Message sizes of a traffic rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SizeModel {
    /// Every message has this many bytes.
    Fixed(u64),
    /// Log-normal around a median, capped at `max`.
    LogNormal {
        /// Median size in bytes.
        median: u64,
        /// Standard deviation of the size's natural logarithm.
        sigma: f64,
        /// Largest size in bytes.
        max: u64,
    },
}

/// A burst of extra messages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Burst {
    /// Start.
    pub at: Duration,
    /// Messages in the burst, spread over the rule's mailboxes.
    pub count: u32,
    /// Length of the window the burst is spread over.
    pub over: Duration,
}

/// Mail arriving for some mailboxes.
#[derive(Clone, Debug, PartialEq)]
pub struct Traffic {
    /// Receiving mailboxes (indices into [`Scenario::mailboxes`]).
    pub targets: Vec<usize>,
    /// Poisson rate per mailbox, in messages per second.
    pub rate: f64,
    /// Extra bursts.
    pub bursts: Vec<Burst>,
    /// Share of messages that reply to earlier mail.
    pub reply_share: f64,
    /// Headers replies use, chosen evenly.
    pub reply_keys: Vec<ReplyKey>,
    /// Mailboxes that also get a copy of some messages (same Message-ID).
    pub cc: Vec<usize>,
    /// Share of messages copied to one `cc` mailbox.
    pub cc_share: f64,
    /// Message sizes.
    pub size: SizeModel,
    /// `.eml` files replayed once each, in name order, instead of generated mail.
    pub eml_files: Vec<PathBuf>,
    /// Start of the rule's Poisson traffic.
    pub from: Duration,
    /// End of the rule's Poisson traffic.
    pub until: Duration,
}

/// What a fault is aimed at.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultTarget {
    /// These user or queue mailboxes.
    Mailboxes(Vec<usize>),
    /// Wherever the engine reads these mailboxes' mail from under each
    /// strategy: their own mailbox, or the forward mailbox.
    ReadsMailOf(Vec<usize>),
    /// The forward mailbox.
    ForwardMailbox,
}

/// A kind of fault, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Logins are rejected as bad credentials.
    LoginRejected,
    /// Connections are refused.
    ConnectionRefused,
    /// Connections are cut after this many bytes from the server.
    ResetAfterBytes(u64),
    /// Connections are cut in the middle of a message.
    ResetMidFetch,
    /// The server stops answering.
    Stall,
    /// Commands fail with a temporary server error.
    ServerError,
    /// INBOX gets a new UIDVALIDITY (one-shot).
    UidValidityReset,
    /// Corrupt messages land in INBOX (one-shot).
    CorruptMessage(u32),
}

impl FaultKind {
    /// True for faults that happen once at `from` instead of lasting a window.
    pub fn is_one_shot(self) -> bool {
        matches!(self, Self::UidValidityReset | Self::CorruptMessage(_))
    }

    /// The kind's name in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::LoginRejected => "login-rejected",
            Self::ConnectionRefused => "connection-refused",
            Self::ResetAfterBytes(_) => "reset-after-bytes",
            Self::ResetMidFetch => "reset-mid-fetch",
            Self::Stall => "stall",
            Self::ServerError => "server-error",
            Self::UidValidityReset => "uidvalidity-reset",
            Self::CorruptMessage(_) => "corrupt-message",
        }
    }
}

/// A scheduled fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// Where it strikes.
    pub target: FaultTarget,
    /// What goes wrong.
    pub kind: FaultKind,
    /// Start.
    pub from: Duration,
    /// End; `None` for one-shot faults and faults that last to the end.
    pub until: Option<Duration>,
}

/// A bound in an expectation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// The value must be at most this.
    Max(f64),
    /// The value must be at least this.
    Min(f64),
    /// The value must equal this.
    Equals(f64),
}

/// A checked expectation.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    /// The strategies it applies to.
    pub strategies: Vec<Strategy>,
    /// The metric.
    pub metric: Metric,
    /// Compare against the same metric of another strategy, as a ratio.
    pub ratio_to: Option<Strategy>,
    /// The bounds; latency bounds are in seconds.
    pub bounds: Vec<Bound>,
}

/// A checked scenario, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The file as the user named it.
    pub file: String,
    /// Short name.
    pub name: String,
    /// What the scenario demonstrates.
    pub description: String,
    /// Seed of the traffic generator.
    pub seed: u64,
    /// How long traffic arrives.
    pub duration: Duration,
    /// Extra time after `duration` for the engine to catch up.
    pub drain: Duration,
    /// Latency above which a mailbox counts as delayed for the blast radius.
    pub sla: Duration,
    /// Strategies to compare, in report order.
    pub strategies: Vec<Strategy>,
    /// The mail service.
    pub server: Server,
    /// The sync engine.
    pub cluster: Cluster,
    /// Modelled time to create one record.
    pub record_cost: Duration,
    /// Forwarding rules.
    pub forwarding: Forwarding,
    /// Mailbox groups, in file order (users first, then queues).
    pub groups: Vec<Group>,
    /// Every user and queue mailbox.
    pub mailboxes: Vec<Mailbox>,
    /// Senders.
    pub contacts: Contacts,
    /// Conversations tracked before the run.
    pub threads: u32,
    /// Traffic rules.
    pub traffic: Vec<Traffic>,
    /// Faults.
    pub faults: Vec<Fault>,
    /// Expectations.
    pub expectations: Vec<Expectation>,
}

impl Scenario {
    /// Reads and checks the scenario at `path`.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| {
            ScenarioError::whole_file(&file, format!("cannot read file: {error}"))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&file, &text, base)
    }

    /// Checks scenario `text`; `file` names it in errors and `base` is the
    /// folder that relative paths start from.
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<Self, ScenarioError> {
        resolve::resolve(file, text, base)
    }

    /// The group a mailbox belongs to.
    pub fn group_of(&self, mailbox: usize) -> &Group {
        &self.groups[self.mailboxes[mailbox].group]
    }

    /// How the engine reaches `mailbox`'s mail under `strategy`.
    pub fn incoming(&self, strategy: Strategy, mailbox: usize) -> Incoming {
        match strategy {
            Strategy::Forward => Incoming::ViaForward,
            Strategy::Individual => Incoming::Direct,
            Strategy::Mixed => self.group_of(mailbox).mixed,
        }
    }

    /// True when some mailbox reaches the engine through the forward mailbox.
    pub fn uses_forward_mailbox(&self, strategy: Strategy) -> bool {
        (0..self.mailboxes.len()).any(|m| self.incoming(strategy, m) == Incoming::ViaForward)
    }
}
