//! Generated scenario files: organisations, traffic, fault schedules,
//! protocol and strategies, rendered as TOML text that `mailsim run` reads.
//!
//! A [`Spec`] contains every generated choice. References between tables (a
//! traffic rule's target, a fault's mailbox) are [`Index`] values that
//! [`Spec::render`] resolves against the generated groups, so shrinking a
//! group never leaves a dangling reference. Fault times are drawn as
//! fractions of the traffic duration and rendered in whole minutes.

use proptest::prelude::*;
use proptest::sample::Index;
use std::fmt::Write as _;

/// Fault kinds that end when their window ends.
pub const TRANSIENT_KINDS: [&str; 5] = [
    "stall",
    "server-error",
    "reset-mid-fetch",
    "reset-after-bytes",
    "connection-refused",
];

/// Retries that outlast any generated fault window: a window lasts at most
/// the 3-hour duration, and the shortest generated retry interval is 30 s.
const OUTLASTING_RETRIES: u32 = 1000;

/// Which faults a scenario may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Faults {
    /// No faults.
    None,
    /// Only `reset-after-bytes`, with `bytes` from 1 to 1,000,000, ending
    /// before the drain.
    ResetAfterBytes,
    /// Every kind but `login-rejected`: windowed faults of the
    /// [`TRANSIENT_KINDS`] that end before the drain, UIDVALIDITY resets and
    /// corrupt messages.
    NotPermanent,
    /// Every kind, with windows that may run into the drain or to the end.
    Any,
}

/// Constraints on a generated scenario.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Which faults to generate.
    pub faults: Faults,
    /// Strategies to list: `forward` and `individual`, plus `mixed` when set
    /// and there are at least two groups.
    pub with_mixed: bool,
    /// Only the `individual` strategy, with a worker slot for every
    /// mailbox, no command budget and no receive limit.
    pub spare_capacity: bool,
    /// Tracking filters other than `all`, inline forwarding and low retry
    /// limits, which make messages legitimately go unrecorded.
    pub lossy_settings: bool,
}

impl Shape {
    /// A shape with the given faults, both main strategies and settings
    /// under which every message should become a record.
    pub const fn with_faults(faults: Faults) -> Self {
        Self {
            faults,
            with_mixed: false,
            spare_capacity: false,
            lossy_settings: false,
        }
    }
}

/// User or queue group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    User,
    Queue,
}

/// One `[[users]]` or `[[queues]]` table.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub kind: GroupKind,
    pub count: u32,
    pub tracking: &'static str,
    pub mixed_forward: bool,
}

/// The target of a traffic rule, a `cc` key or a fault.
#[derive(Clone, Debug)]
pub enum Target {
    /// A whole group.
    Group(Index),
    /// One mailbox: the group, then the mailbox within it.
    Mailbox(Index, Index),
}

/// Message body sizes of a traffic rule.
#[derive(Clone, Debug)]
pub enum Size {
    Default,
    /// Fixed size in bytes.
    Fixed(u32),
    /// Log-normal: median in bytes and sigma.
    LogNormal(u32, f64),
}

/// One `[[traffic]]` table.
#[derive(Clone, Debug)]
pub struct TrafficSpec {
    pub to: Target,
    /// Poisson arrivals per hour per mailbox.
    pub rate_per_hour: Option<u32>,
    /// Bursts as (start in permille of the duration, count, spread in minutes).
    pub bursts: Vec<(u32, u32, u32)>,
    /// `reply_share` in percent.
    pub reply_percent: u32,
    /// `reply_keys`: a non-empty subset when set.
    pub reply_keys: Option<Vec<&'static str>>,
    /// `cc` and `cc_share` in percent.
    pub cc: Option<(Target, u32)>,
    pub size: Size,
    /// `from` and `until` in permille of the duration, when set.
    pub window: Option<(u32, u32)>,
}

/// Where a fault strikes.
#[derive(Clone, Debug)]
pub enum FaultTargetSpec {
    /// `mailbox = "<address>"` or `group = "<name>"`.
    Direct(Target),
    /// `reads_mail_of = "<group or address>"`.
    ReadsMailOf(Target),
    /// `mailbox = "forward"`.
    Forward,
}

/// One `[[faults]]` table.
#[derive(Clone, Debug)]
pub struct FaultSpec {
    pub target: FaultTargetSpec,
    pub kind: &'static str,
    /// `bytes` of `reset-after-bytes`, `count` of `corrupt-message`.
    pub amount: u64,
    /// Start in permille of the duration.
    pub from: u32,
    /// Length in permille of the time from the start to the end of the
    /// duration; `None` leaves `until` out (the fault lasts to the end).
    pub length: Option<u32>,
    /// Extends `until` into the drain by this many minutes.
    pub into_drain_minutes: u32,
}

/// Every generated choice of one scenario.
#[derive(Clone, Debug)]
pub struct Spec {
    pub seed: u64,
    pub duration_minutes: u32,
    pub drain_minutes: u32,
    pub pop3: bool,
    pub strategies: Vec<&'static str>,
    pub latency_ms: u32,
    pub server_max_connections: Option<u32>,
    pub receive_per_hour: Option<u32>,
    /// Commands per 10 minutes.
    pub command_budget: Option<u32>,
    pub backoff_hint_s: Option<u32>,
    pub nodes: u32,
    pub threads_per_node: u32,
    pub poll_interval_s: u32,
    pub idle_poll_max_s: Option<u32>,
    pub batch_size: u32,
    pub max_per_cycle: u32,
    pub retry_interval_s: u32,
    pub max_retries: u32,
    pub command_timeout_s: u32,
    pub enable_after_fault: bool,
    pub record_cost_ms: u32,
    pub forwarding_delay_s: u32,
    pub inline_forwarding: bool,
    pub groups: Vec<GroupSpec>,
    pub traffic: Vec<TrafficSpec>,
    pub faults: Vec<FaultSpec>,
}

impl Spec {
    /// Returns the number of user and queue mailboxes.
    pub fn mailbox_count(&self) -> u32 {
        self.groups.iter().map(|group| group.count).sum()
    }

    /// Returns the address of mailbox `member` (from 0) of group `group`.
    pub fn address(&self, group: usize, member: u32) -> String {
        format!("{}{}@northwind.example", group_name(group), member + 1)
    }

    /// Resolves a target to the name a scenario file uses for it.
    fn target_name(&self, target: &Target) -> String {
        match target {
            Target::Group(group) => group_name(group.index(self.groups.len())),
            Target::Mailbox(group, member) => {
                let group = group.index(self.groups.len());
                let member = member.index(self.groups[group].count as usize);
                self.address(group, member as u32)
            }
        }
    }

    /// Returns the start and end of a fault window in minutes.
    fn fault_window(&self, fault: &FaultSpec) -> (u32, Option<u32>) {
        let duration = self.duration_minutes;
        let from = (duration * fault.from / 1000).min(duration - 1);
        let until = fault.length.map(|length| {
            let room = duration - from - 1;
            from + 1 + room * length / 1000 + fault.into_drain_minutes
        });
        (from, until)
    }

    /// Returns the number of mailboxes a target names.
    fn target_size(&self, target: &Target) -> u32 {
        match target {
            Target::Group(group) => self.groups[group.index(self.groups.len())].count,
            Target::Mailbox(..) => 1,
        }
    }

    /// Returns the start and end of a traffic rule in minutes.
    fn traffic_window(&self, rule: &TrafficSpec) -> (u32, u32) {
        let duration = self.duration_minutes;
        match rule.window {
            None => (0, duration),
            Some((from, until)) => {
                let from = duration * from / 1000;
                let until = (from + 1 + (duration - from) * until / 1000).min(duration);
                (from, until)
            }
        }
    }

    /// Returns the expected number of deliveries, cc copies included.
    fn expected_deliveries(&self) -> f64 {
        self.traffic
            .iter()
            .map(|rule| {
                let (from, until) = self.traffic_window(rule);
                let hours = f64::from(until - from) / 60.0;
                let rate = f64::from(rule.rate_per_hour.unwrap_or(0));
                let mut messages = rate * hours * f64::from(self.target_size(&rule.to));
                messages += f64::from(rule.bursts.iter().map(|burst| burst.1).sum::<u32>().max(1));
                let cc = rule
                    .cc
                    .as_ref()
                    .map_or(0.0, |(_, percent)| f64::from(*percent) / 100.0);
                messages * (1.0 + cc)
            })
            .sum()
    }

    /// Raises `max_per_cycle` so that one polled mailbox, the forward
    /// mailbox, could take twice the expected traffic, plus a margin for
    /// Poisson spread, in the drain alone. The engine waits a poll interval
    /// after a cycle that reached the limit, so a small limit with heavy
    /// traffic leaves mail unprocessed at the end by design, which is no
    /// loss the properties look for.
    fn ensure_capacity(&mut self) {
        let polls_in_drain = (self.drain_minutes * 60 / self.poll_interval_s).max(1);
        let needed = (2.0 * self.expected_deliveries() + 20.0) / f64::from(polls_in_drain);
        self.max_per_cycle = self.max_per_cycle.max(needed.ceil() as u32);
        self.ensure_quarantine_time();
    }

    /// Lengthens the drain until every corrupt message can be quarantined
    /// in it. Each one blocks its mailbox for the engine's 3 processing
    /// attempts, one cycle each, so the mail behind it waits that long by
    /// design, which is no loss the properties look for.
    fn ensure_quarantine_time(&mut self) {
        let corrupt: u64 = self
            .faults
            .iter()
            .filter(|fault| fault.kind == "corrupt-message")
            .map(|fault| fault.amount)
            .sum();
        if corrupt == 0 {
            return;
        }
        let cycle_s = self
            .idle_poll_max_s
            .unwrap_or(self.poll_interval_s)
            .max(self.poll_interval_s)
            .max(self.retry_interval_s);
        let needed_s = (corrupt * 3 + 2) * u64::from(cycle_s);
        let needed_minutes = u32::try_from(needed_s.div_ceil(60)).unwrap_or(u32::MAX);
        self.drain_minutes = self.drain_minutes.max(needed_minutes);
    }

    /// Renders the scenario file.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_top(&mut out);
        self.render_server(&mut out);
        self.render_cluster(&mut out);
        for (index, group) in self.groups.iter().enumerate() {
            let table = match group.kind {
                GroupKind::User => "users",
                GroupKind::Queue => "queues",
            };
            let _ = writeln!(out, "\n[[{table}]]");
            let _ = writeln!(out, "name = \"{}\"", group_name(index));
            let _ = writeln!(out, "count = {}", group.count);
            let _ = writeln!(
                out,
                "address = \"{}{{n}}@northwind.example\"",
                group_name(index)
            );
            if group.tracking != "all" {
                let _ = writeln!(out, "tracking = \"{}\"", group.tracking);
            }
            if group.mixed_forward {
                let _ = writeln!(out, "mixed = \"forward\"");
            }
        }
        for rule in &self.traffic {
            self.render_traffic(&mut out, rule);
        }
        for fault in &self.faults {
            self.render_fault(&mut out, fault);
        }
        out
    }

    fn render_top(&self, out: &mut String) {
        let _ = writeln!(out, "name = \"generated\"");
        let _ = writeln!(out, "seed = {}", self.seed);
        let _ = writeln!(out, "duration = \"{}m\"", self.duration_minutes);
        let _ = writeln!(out, "drain = \"{}m\"", self.drain_minutes);
        let strategies: Vec<String> = self
            .strategies
            .iter()
            .map(|strategy| format!("\"{strategy}\""))
            .collect();
        let _ = writeln!(out, "strategies = [{}]", strategies.join(", "));
    }

    fn render_server(&self, out: &mut String) {
        let _ = writeln!(out, "\n[server]");
        let protocol = if self.pop3 { "pop3" } else { "imap" };
        let _ = writeln!(out, "protocol = \"{protocol}\"");
        let _ = writeln!(out, "latency = \"{}ms\"", self.latency_ms);
        if let Some(max) = self.server_max_connections {
            let _ = writeln!(out, "max_connections = {max}");
        }
        if let Some(limit) = self.receive_per_hour {
            let _ = writeln!(out, "receive_per_hour = {limit}");
        }
        if let Some(commands) = self.command_budget {
            let _ = writeln!(out, "command_budget = \"{commands}/10m\"");
        }
        if let Some(hint) = self.backoff_hint_s {
            let _ = writeln!(out, "backoff_hint = \"{hint}s\"");
        }
    }

    fn render_cluster(&self, out: &mut String) {
        let _ = writeln!(out, "\n[cluster]");
        let _ = writeln!(out, "nodes = {}", self.nodes);
        let _ = writeln!(out, "threads_per_node = {}", self.threads_per_node);
        let _ = writeln!(out, "poll_interval = \"{}s\"", self.poll_interval_s);
        if let Some(max) = self.idle_poll_max_s {
            let _ = writeln!(out, "idle_poll_max = \"{max}s\"");
        }
        let _ = writeln!(out, "batch_size = {}", self.batch_size);
        let _ = writeln!(out, "max_per_cycle = {}", self.max_per_cycle);
        let _ = writeln!(out, "retry_interval = \"{}s\"", self.retry_interval_s);
        let _ = writeln!(out, "max_retries = {}", self.max_retries);
        let _ = writeln!(out, "command_timeout = \"{}s\"", self.command_timeout_s);
        if !self.enable_after_fault {
            let _ = writeln!(out, "enable_after_fault = false");
        }
        let _ = writeln!(out, "\n[records]");
        let _ = writeln!(out, "cost = \"{}ms\"", self.record_cost_ms);
        let _ = writeln!(out, "\n[forwarding]");
        let mode = if self.inline_forwarding {
            "inline"
        } else {
            "attachment"
        };
        let _ = writeln!(out, "mode = \"{mode}\"");
        let _ = writeln!(out, "delay = \"{}s\"", self.forwarding_delay_s);
    }

    fn render_traffic(&self, out: &mut String, rule: &TrafficSpec) {
        let duration = self.duration_minutes;
        let _ = writeln!(out, "\n[[traffic]]");
        let _ = writeln!(out, "to = \"{}\"", self.target_name(&rule.to));
        if let Some(rate) = rule.rate_per_hour {
            let _ = writeln!(out, "rate = \"{rate}/h\"");
        }
        if !rule.bursts.is_empty() || rule.rate_per_hour.is_none() {
            // A rule without a rate needs a burst to send anything.
            let bursts: Vec<(u32, u32, u32)> = if rule.bursts.is_empty() {
                vec![(0, 1, 1)]
            } else {
                rule.bursts.clone()
            };
            let tables: Vec<String> = bursts
                .iter()
                .map(|&(at, count, over)| {
                    let at = (duration * at / 1000).min(duration - 1);
                    format!("{{ at = \"{at}m\", count = {count}, over = \"{over}m\" }}")
                })
                .collect();
            let _ = writeln!(out, "bursts = [{}]", tables.join(", "));
        }
        if rule.reply_percent > 0 {
            let _ = writeln!(
                out,
                "reply_share = {:.2}",
                f64::from(rule.reply_percent) / 100.0
            );
        }
        if let Some(keys) = &rule.reply_keys {
            let keys: Vec<String> = keys.iter().map(|key| format!("\"{key}\"")).collect();
            let _ = writeln!(out, "reply_keys = [{}]", keys.join(", "));
        }
        if let Some((cc, percent)) = &rule.cc {
            let _ = writeln!(out, "cc = \"{}\"", self.target_name(cc));
            let _ = writeln!(out, "cc_share = {:.2}", f64::from(*percent) / 100.0);
        }
        match rule.size {
            Size::Default => {}
            Size::Fixed(bytes) => {
                let _ = writeln!(out, "size = \"{bytes}B\"");
            }
            Size::LogNormal(median, sigma) => {
                let _ = writeln!(
                    out,
                    "size = {{ median = \"{median}B\", sigma = {sigma:.1}, max = \"200KB\" }}"
                );
            }
        }
        if rule.window.is_some() {
            let (from, until) = self.traffic_window(rule);
            let _ = writeln!(out, "from = \"{from}m\"");
            let _ = writeln!(out, "until = \"{until}m\"");
        }
    }

    fn render_fault(&self, out: &mut String, fault: &FaultSpec) {
        let _ = writeln!(out, "\n[[faults]]");
        match &fault.target {
            FaultTargetSpec::Direct(target @ Target::Group(_)) => {
                let _ = writeln!(out, "group = \"{}\"", self.target_name(target));
            }
            FaultTargetSpec::Direct(target @ Target::Mailbox(..)) => {
                let _ = writeln!(out, "mailbox = \"{}\"", self.target_name(target));
            }
            FaultTargetSpec::ReadsMailOf(target) => {
                let _ = writeln!(out, "reads_mail_of = \"{}\"", self.target_name(target));
            }
            FaultTargetSpec::Forward => {
                let _ = writeln!(out, "mailbox = \"forward\"");
            }
        }
        let _ = writeln!(out, "kind = \"{}\"", fault.kind);
        let (from, until) = self.fault_window(fault);
        let _ = writeln!(out, "from = \"{from}m\"");
        match fault.kind {
            "uidvalidity-reset" => {}
            "corrupt-message" => {
                let _ = writeln!(out, "count = {}", fault.amount);
            }
            kind => {
                if kind == "reset-after-bytes" {
                    let _ = writeln!(out, "bytes = {}", fault.amount);
                }
                if let Some(until) = until {
                    let _ = writeln!(out, "until = \"{until}m\"");
                }
            }
        }
    }
}

/// Name of group `index`.
fn group_name(index: usize) -> String {
    const NAMES: [&str; 3] = ["sales", "service", "support"];
    NAMES[index % NAMES.len()].to_owned()
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        any::<Index>().prop_map(Target::Group),
        (any::<Index>(), any::<Index>()).prop_map(|(group, member)| Target::Mailbox(group, member)),
    ]
}

fn groups(shape: Shape) -> impl Strategy<Value = Vec<GroupSpec>> {
    let tracking = if shape.lossy_settings {
        prop_oneof![
            3 => Just("all"),
            1 => Just("responses"),
            1 => Just("contacts"),
            1 => Just("none"),
        ]
        .boxed()
    } else {
        Just("all").boxed()
    };
    let group = (
        prop_oneof![3 => Just(GroupKind::User), 1 => Just(GroupKind::Queue)],
        1u32..=4,
        tracking,
        any::<bool>(),
    )
        .prop_map(|(kind, count, tracking, mixed_forward)| GroupSpec {
            kind,
            count,
            tracking,
            mixed_forward,
        });
    proptest::collection::vec(group, 1..=3).prop_filter("at least two mailboxes", |groups| {
        groups.iter().map(|group| group.count).sum::<u32>() >= 2
    })
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        2 => Just(Size::Default),
        1 => (200u32..60_000).prop_map(Size::Fixed),
        1 => (500u32..8_000, 0u32..=20).prop_map(|(median, tenths)| {
            Size::LogNormal(median, f64::from(tenths) / 10.0)
        }),
    ]
}

fn reply_keys() -> impl Strategy<Value = Option<Vec<&'static str>>> {
    let keys = proptest::sample::subsequence(vec!["in-reply-to", "token", "references"], 1..=3);
    proptest::option::weighted(0.3, keys)
}

fn traffic() -> impl Strategy<Value = TrafficSpec> {
    let burst = (0u32..1000, 1u32..=25, 1u32..=20);
    (
        target(),
        proptest::option::weighted(0.8, 1u32..=8),
        proptest::collection::vec(burst, 0..=2),
        prop_oneof![2 => Just(0u32), 1 => 1u32..=60],
        reply_keys(),
        proptest::option::weighted(0.4, (target(), 10u32..=100)),
        size(),
        proptest::option::weighted(0.2, (0u32..900, 0u32..=1000)),
    )
        .prop_map(
            |(to, rate_per_hour, bursts, reply_percent, reply_keys, cc, size, window)| {
                TrafficSpec {
                    to,
                    rate_per_hour,
                    bursts,
                    reply_percent,
                    reply_keys,
                    cc,
                    size,
                    window,
                }
            },
        )
}

/// Byte counts spread over five orders of magnitude, so that a cut falls
/// anywhere from the greeting to deep inside a large download.
fn cut_bytes() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..100,
        100u64..1_000,
        1_000u64..10_000,
        10_000u64..100_000,
        100_000u64..=1_000_000,
    ]
}

fn fault_kind(faults: Faults) -> BoxedStrategy<&'static str> {
    let transient = proptest::sample::select(TRANSIENT_KINDS.to_vec());
    match faults {
        Faults::None => transient.boxed(),
        Faults::ResetAfterBytes => Just("reset-after-bytes").boxed(),
        Faults::NotPermanent => prop_oneof![
            4 => transient,
            1 => Just("uidvalidity-reset"),
            1 => Just("corrupt-message"),
        ]
        .boxed(),
        Faults::Any => prop_oneof![
            4 => transient,
            1 => Just("login-rejected"),
            1 => Just("uidvalidity-reset"),
            1 => Just("corrupt-message"),
        ]
        .boxed(),
    }
}

fn fault(faults: Faults, allow_forward: bool) -> impl Strategy<Value = FaultSpec> {
    let target = if allow_forward {
        prop_oneof![
            3 => target().prop_map(FaultTargetSpec::Direct),
            2 => target().prop_map(FaultTargetSpec::ReadsMailOf),
            1 => Just(FaultTargetSpec::Forward),
        ]
        .boxed()
    } else {
        target().prop_map(FaultTargetSpec::Direct).boxed()
    };
    let length = if faults == Faults::Any {
        proptest::option::weighted(0.8, 1u32..=1000).boxed()
    } else {
        (1u32..=1000).prop_map(Some).boxed()
    };
    let into_drain = if faults == Faults::Any {
        prop_oneof![3 => Just(0u32), 1 => 1u32..=120].boxed()
    } else {
        Just(0u32).boxed()
    };
    (
        target,
        fault_kind(faults),
        cut_bytes(),
        1u64..=3,
        0u32..1000,
        length,
        into_drain,
    )
        .prop_map(
            |(target, kind, bytes, count, from, length, into_drain_minutes)| {
                let amount = match kind {
                    "corrupt-message" => count,
                    _ => bytes,
                };
                FaultSpec {
                    target,
                    kind,
                    amount,
                    from,
                    length,
                    into_drain_minutes,
                }
            },
        )
}

/// Generates scenarios of 2 to 12 mailboxes with 1 to 3 hours of traffic.
pub fn spec(shape: Shape) -> impl Strategy<Value = Spec> {
    let fault_count = match shape.faults {
        Faults::None => 0..=0usize,
        _ => 1..=3usize,
    };
    let forward_used = !shape.spare_capacity;
    let faults = proptest::collection::vec(fault(shape.faults, forward_used), fault_count);
    let timing = (
        any::<u64>().prop_map(|seed| seed % 10_000),
        60u32..=180,
        60u32..=120,
        any::<bool>(),
        0u32..=200,
    );
    let server = (
        proptest::option::weighted(0.3, 1u32..=10),
        proptest::option::weighted(0.2, 300u32..=2_000),
        // NOTE: budgets start at 500 commands per 10 minutes. With smaller
        // ones, an IMAP mailbox whose retry interval is shorter than the
        // bucket needs to refill one cycle's commands is throttled on every
        // retry until its retries run out. Its mail is then lost as
        // configured, which these properties do not model.
        proptest::option::weighted(0.2, 500u32..=3_000),
        proptest::option::weighted(0.2, 10u32..=300),
    );
    let cluster = (
        1u32..=4,
        1u32..=4,
        60u32..=600,
        proptest::option::weighted(0.3, 0u32..=1200),
        1u32..=50,
        prop_oneof![1 => 1u32..=10, 3 => 10u32..=500],
        30u32..=300,
        10u32..=60,
    );
    let settings = (
        0u32..=50,
        0u32..=30,
        if shape.lossy_settings {
            proptest::bool::weighted(0.2).boxed()
        } else {
            Just(false).boxed()
        },
        if shape.lossy_settings {
            prop_oneof![Just(OUTLASTING_RETRIES), 1u32..=10].boxed()
        } else {
            Just(OUTLASTING_RETRIES).boxed()
        },
        if shape.lossy_settings {
            proptest::bool::weighted(0.8).boxed()
        } else {
            Just(true).boxed()
        },
    );
    (
        timing,
        server,
        cluster,
        settings,
        groups(shape),
        proptest::collection::vec(traffic(), 1..=4),
        faults,
    )
        .prop_map(
            move |(timing, server, cluster, settings, groups, traffic, faults)| {
                let (seed, duration_minutes, drain_minutes, pop3, latency_ms) = timing;
                let (server_max_connections, receive_per_hour, command_budget, backoff_hint_s) =
                    server;
                let (
                    nodes,
                    threads_per_node,
                    poll_interval_s,
                    idle_extra_s,
                    batch_size,
                    max_per_cycle,
                    retry_interval_s,
                    command_timeout_s,
                ) = cluster;
                let (record_cost_ms, forwarding_delay_s, inline_forwarding, max_retries, enable) =
                    settings;
                let mut spec = Spec {
                    seed,
                    duration_minutes,
                    drain_minutes,
                    pop3,
                    strategies: vec!["forward", "individual"],
                    latency_ms,
                    server_max_connections,
                    receive_per_hour,
                    command_budget,
                    backoff_hint_s,
                    nodes,
                    threads_per_node,
                    poll_interval_s,
                    idle_poll_max_s: idle_extra_s.map(|extra| poll_interval_s + extra),
                    batch_size,
                    max_per_cycle,
                    retry_interval_s,
                    max_retries,
                    command_timeout_s,
                    enable_after_fault: enable,
                    record_cost_ms,
                    forwarding_delay_s,
                    inline_forwarding,
                    groups,
                    traffic,
                    faults,
                };
                if !shape.lossy_settings {
                    spec.ensure_capacity();
                }
                // `mailsim check` refuses a mixed strategy that equals one
                // of the others, so it needs a group of each kind.
                if shape.with_mixed && spec.groups.len() >= 2 {
                    if spec.groups.iter().all(|group| !group.mixed_forward) {
                        spec.groups[0].mixed_forward = true;
                    }
                    if spec.groups.iter().all(|group| group.mixed_forward) {
                        let last = spec.groups.len() - 1;
                        spec.groups[last].mixed_forward = false;
                    }
                    spec.strategies.push("mixed");
                }
                if shape.spare_capacity {
                    spec.strategies = vec!["individual"];
                    spec.threads_per_node = spec.mailbox_count().div_ceil(spec.nodes);
                    spec.command_budget = None;
                    spec.receive_per_hour = None;
                }
                spec
            },
        )
}
