//! Per-account policies: throttling limits and injected faults.
//!
//! Limits follow what production services publish (see `docs/`): concurrent
//! connections per protocol, a command budget refilled over time, a receive
//! limit per hour and a fixed latency per command. Faults can be switched on
//! and off at runtime or given as a schedule of offsets from the clock's
//! start, so the same account misbehaves identically in every run.

use std::time::Duration;

use tokio::time::Instant;

use crate::store::Protocol;

/// The back-off that Office 365 suggests in its throttled IMAP answer
/// ("Suggested Backoff Time: 300000 milliseconds").
pub const OFFICE365_BACKOFF: Duration = Duration::from_millis(300_000);

/// Throttling limits of one account. `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountPolicy {
    /// Maximum concurrent IMAP connections logged in to the account.
    pub max_imap_connections: Option<u32>,
    /// Maximum concurrent POP3 connections logged in to the account.
    pub max_pop3_connections: Option<u32>,
    /// Commands allowed per time window, as a token bucket.
    pub command_budget: Option<CommandBudget>,
    /// Messages the account accepts per hour; excess deliveries wait.
    pub receive_per_hour: Option<u32>,
    /// Delay before each command's response.
    pub command_latency: Duration,
    /// Back-off suggested in throttled answers; when `None`, the time until
    /// the command budget has a token again.
    pub backoff_hint: Option<Duration>,
}

impl AccountPolicy {
    /// The connection limit for `protocol`.
    pub fn max_connections(&self, protocol: Protocol) -> Option<u32> {
        match protocol {
            Protocol::Imap => self.max_imap_connections,
            Protocol::Pop3 => self.max_pop3_connections,
            Protocol::Smtp => None,
        }
    }
}

/// A command budget: `commands` tokens, refilled evenly over `window`.
///
/// Every command takes one token, and every message a FETCH, RETR or TOP
/// returns takes one more, so fetching many messages spends the budget
/// faster than polling an empty mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandBudget {
    /// Bucket capacity, and the number of tokens added per window.
    pub commands: u32,
    /// The refill window.
    pub window: Duration,
}

/// A token bucket on the tokio clock.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens that refills `capacity` tokens per `window`.
    pub fn new(capacity: u32, window: Duration) -> Self {
        let capacity = f64::from(capacity.max(1));
        let seconds = window.as_secs_f64().max(1e-9);
        Self {
            capacity,
            tokens: capacity,
            per_second: capacity / seconds,
            updated: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }

    /// Takes one token, or returns how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            // Round up to whole milliseconds, the tokio timer's resolution:
            // a shorter wait would wake before a token has accrued and spin
            // at the same instant.
            let millis = (missing / self.per_second * 1000.0).ceil().max(1.0);
            Err(Duration::from_millis(millis as u64))
        }
    }

    /// Takes `tokens` more for work already done. The bucket may go into
    /// debt, down to minus its capacity, so that later commands wait.
    pub fn charge(&mut self, tokens: u32, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - f64::from(tokens)).max(-self.capacity);
    }

    /// Tokens available at `now`, rounded down.
    pub fn available(&mut self, now: Instant) -> u32 {
        self.refill(now);
        self.tokens as u32
    }
}

/// Live throttling state of an account, rebuilt when its policy changes.
#[derive(Clone, Debug, Default)]
pub struct Throttle {
    commands: Option<TokenBucket>,
    receive: Option<TokenBucket>,
}

/// Whether a command may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The command runs.
    Admitted,
    /// The budget is spent; the answer suggests this back-off.
    Throttled {
        /// Suggested wait before the next command.
        backoff: Duration,
    },
}

impl Throttle {
    /// Fresh, full buckets for `policy`.
    pub fn new(policy: &AccountPolicy) -> Self {
        Self {
            commands: policy
                .command_budget
                .map(|budget| TokenBucket::new(budget.commands, budget.window)),
            receive: policy
                .receive_per_hour
                .map(|limit| TokenBucket::new(limit, Duration::from_secs(3600))),
        }
    }

    /// Charges one command against the budget.
    pub fn admit_command(&mut self, policy: &AccountPolicy, now: Instant) -> Admission {
        let Some(bucket) = self.commands.as_mut() else {
            return Admission::Admitted;
        };
        match bucket.try_take(now) {
            Ok(()) => Admission::Admitted,
            Err(wait) => Admission::Throttled {
                backoff: policy.backoff_hint.unwrap_or(wait),
            },
        }
    }

    /// Charges the budget for messages a command returned: services throttle
    /// by the work a mailbox causes, and sending a message is most of it.
    pub fn charge_messages(&mut self, messages: usize, now: Instant) {
        if let (Some(bucket), Ok(messages)) = (self.commands.as_mut(), u32::try_from(messages)) {
            bucket.charge(messages, now);
        }
    }

    /// Charges one received message against the hourly limit, or returns how
    /// long until the account may receive again.
    pub fn admit_delivery(&mut self, now: Instant) -> Result<(), Duration> {
        match self.receive.as_mut() {
            None => Ok(()),
            Some(bucket) => bucket.try_take(now),
        }
    }
}

/// The IMAP text of a throttled answer, in Office 365's words.
pub fn throttled_text(backoff: Duration) -> String {
    format!(
        "Request is throttled. Suggested Backoff Time: {} milliseconds",
        backoff.as_millis()
    )
}

/// A fault that stays in effect while switched on or scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Logins fail as if the password were wrong.
    LoginRejected,
    /// Connections are refused. Service-wide, every connection is closed
    /// before the greeting; on an account, the connection is closed without
    /// an answer when that account logs in (its address is not known before).
    /// The scenario runner's in-memory connector refuses the connection itself.
    ConnectionRefused,
    /// The connection is cut after the server has written this many bytes.
    ResetAfterBytes(u64),
    /// The connection is cut half-way through the first message literal of a FETCH or RETR.
    ResetMidFetch,
    /// The server stops answering until the fault ends.
    Stall,
    /// Every command after login fails with a temporary server error.
    ServerError,
}

/// A one-shot change to an account's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultAction {
    /// INBOX gets a new UIDVALIDITY and its messages new UIDs.
    UidValidityReset,
    /// A corrupt message (binary bytes with no header section) lands in INBOX.
    CorruptMessage,
}

/// A fault in effect from `from` until `until` (offsets from the clock's start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduledFault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Start, inclusive.
    pub from: Duration,
    /// End, exclusive; `None` for the rest of the run.
    pub until: Option<Duration>,
}

impl ScheduledFault {
    fn covers(&self, elapsed: Duration) -> bool {
        self.from <= elapsed && self.until.is_none_or(|until| elapsed < until)
    }
}

/// The faults of one account: runtime switches plus a schedule.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    switched_on: Vec<FaultKind>,
    schedule: Vec<ScheduledFault>,
}

/// The faults in effect at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActiveFaults {
    /// Logins fail.
    pub login_rejected: bool,
    /// Connections are refused (see [`FaultKind::ConnectionRefused`]).
    pub connection_refused: bool,
    /// Cut the connection after this many bytes written.
    pub reset_after_bytes: Option<u64>,
    /// Cut the connection in the middle of a message literal.
    pub reset_mid_fetch: bool,
    /// Stop answering.
    pub stall: bool,
    /// Answer commands with a temporary error.
    pub server_error: bool,
}

impl ActiveFaults {
    fn add(&mut self, kind: FaultKind) {
        match kind {
            FaultKind::LoginRejected => self.login_rejected = true,
            FaultKind::ConnectionRefused => self.connection_refused = true,
            FaultKind::ResetAfterBytes(bytes) => {
                self.reset_after_bytes =
                    Some(self.reset_after_bytes.map_or(bytes, |b| b.min(bytes)));
            }
            FaultKind::ResetMidFetch => self.reset_mid_fetch = true,
            FaultKind::Stall => self.stall = true,
            FaultKind::ServerError => self.server_error = true,
        }
    }

    /// True when no fault is in effect.
    pub fn is_clear(&self) -> bool {
        *self == Self::default()
    }
}

impl Faults {
    /// Switches `kind` on until [`Faults::switch_off`].
    pub fn switch_on(&mut self, kind: FaultKind) {
        if !self.switched_on.contains(&kind) {
            self.switched_on.push(kind);
        }
    }

    /// Switches `kind` off; scheduled windows are not affected.
    pub fn switch_off(&mut self, kind: FaultKind) {
        self.switched_on.retain(|switched| *switched != kind);
    }

    /// Switches every fault off and clears the schedule.
    pub fn clear(&mut self) {
        self.switched_on.clear();
        self.schedule.clear();
    }

    /// Adds a scheduled window.
    pub fn schedule(&mut self, fault: ScheduledFault) {
        self.schedule.push(fault);
    }

    /// The faults in effect `elapsed` after the clock's start.
    pub fn active(&self, elapsed: Duration) -> ActiveFaults {
        let mut active = ActiveFaults::default();
        for kind in &self.switched_on {
            active.add(*kind);
        }
        for fault in &self.schedule {
            if fault.covers(elapsed) {
                active.add(fault.kind);
            }
        }
        active
    }

    /// When a stall in effect at `elapsed` ends: `None` while a runtime switch
    /// holds it or a scheduled window has no end.
    pub fn stall_end(&self, elapsed: Duration) -> Option<Duration> {
        if self.switched_on.contains(&FaultKind::Stall) {
            return None;
        }
        let mut end = elapsed;
        let mut extended = true;
        // Overlapping or adjacent windows chain into one stall.
        while extended {
            extended = false;
            for fault in &self.schedule {
                if fault.kind == FaultKind::Stall && fault.covers(end) {
                    match fault.until {
                        None => return None,
                        Some(until) if until > end => {
                            end = until;
                            extended = true;
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_refills_over_window() {
        let mut bucket = TokenBucket::new(2, Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(bucket.try_take(now), Ok(()));
        assert_eq!(bucket.try_take(now), Ok(()));
        let wait = bucket.try_take(now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(5));
        assert_eq!(bucket.try_take(now + Duration::from_secs(5)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_wait_is_at_least_a_millisecond() {
        // 3 tokens per hour: after the first, the next is 20 minutes away,
        // and a fraction of a token short still waits a whole millisecond.
        let mut bucket = TokenBucket::new(3, Duration::from_secs(3600));
        let now = Instant::now();
        assert_eq!(bucket.try_take(now), Ok(()));
        bucket.tokens = 1.0 - 1e-12;
        let wait = bucket.try_take(now).unwrap_err();
        assert_eq!(wait, Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn charged_messages_put_bucket_in_debt() {
        let mut bucket = TokenBucket::new(10, Duration::from_secs(10));
        let now = Instant::now();
        bucket.charge(15, now);
        let wait = bucket.try_take(now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(6));
        assert_eq!(bucket.try_take(now + Duration::from_secs(6)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_answer_uses_hint() {
        let policy = AccountPolicy {
            command_budget: Some(CommandBudget {
                commands: 1,
                window: Duration::from_secs(60),
            }),
            backoff_hint: Some(OFFICE365_BACKOFF),
            ..AccountPolicy::default()
        };
        let mut throttle = Throttle::new(&policy);
        let now = Instant::now();
        assert_eq!(throttle.admit_command(&policy, now), Admission::Admitted);
        assert_eq!(
            throttle.admit_command(&policy, now),
            Admission::Throttled {
                backoff: OFFICE365_BACKOFF
            }
        );
        assert_eq!(
            throttled_text(OFFICE365_BACKOFF),
            "Request is throttled. Suggested Backoff Time: 300000 milliseconds"
        );
    }

    #[test]
    fn schedule_window_is_half_open() {
        let mut faults = Faults::default();
        faults.schedule(ScheduledFault {
            kind: FaultKind::ServerError,
            from: Duration::from_secs(10),
            until: Some(Duration::from_secs(20)),
        });
        assert!(!faults.active(Duration::from_secs(9)).server_error);
        assert!(faults.active(Duration::from_secs(10)).server_error);
        assert!(!faults.active(Duration::from_secs(20)).server_error);
    }

    #[test]
    fn runtime_switch_overrides_schedule() {
        let mut faults = Faults::default();
        faults.switch_on(FaultKind::LoginRejected);
        assert!(faults.active(Duration::ZERO).login_rejected);
        faults.switch_off(FaultKind::LoginRejected);
        assert!(faults.active(Duration::ZERO).is_clear());
    }

    #[test]
    fn stall_windows_chain() {
        let mut faults = Faults::default();
        for (from, until) in [(10, 20), (20, 30), (40, 50)] {
            faults.schedule(ScheduledFault {
                kind: FaultKind::Stall,
                from: Duration::from_secs(from),
                until: Some(Duration::from_secs(until)),
            });
        }
        assert_eq!(
            faults.stall_end(Duration::from_secs(15)),
            Some(Duration::from_secs(30))
        );
        faults.switch_on(FaultKind::Stall);
        assert_eq!(faults.stall_end(Duration::from_secs(15)), None);
    }
}
