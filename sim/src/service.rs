//! The mail service: store, clock, limits, delivery and forwarding.
//!
//! A [`Service`] is a cheap handle shared by every session. Delivery applies
//! the receiving account's hourly limit (excess messages wait in a queue per
//! account and are never dropped), stores the message, and runs the
//! account's forwarding rule. Delayed work (forwarded copies, deferred
//! deliveries, scheduled fault actions) runs on one scheduler task ordered by
//! (due time, sequence number), so a paused clock replays it identically.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::clock::SimClock;
use crate::forward::{self, CopyHeaders, ForwardRule};
use crate::limits::Limits;
use crate::policy::{ActiveFaults, FaultAction, Faults};
use crate::store::{Account, AccountSpec, INBOX, Store, StoreError, StoredMessage};

/// Why a delivery failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeliveryError {
    /// No account has the recipient address.
    #[error("no mailbox {0}")]
    UnknownRecipient(String),
}

/// What happened to a message handed to [`Service::deliver`] or forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryEvent {
    /// The message was stored in the account's INBOX.
    Stored {
        /// Receiving account.
        account: String,
        /// UID in INBOX.
        uid: u32,
        /// The deliverer's tag, kept on forwarded copies.
        tag: Option<u64>,
        /// For a forwarded copy, the account whose rule forwarded it.
        forwarded_from: Option<String>,
        /// Time since the clock's start.
        at: Duration,
    },
    /// The account's hourly receive limit was reached; the message waits.
    Deferred {
        /// Receiving account.
        account: String,
        /// The deliverer's tag.
        tag: Option<u64>,
        /// Time since the clock's start.
        at: Duration,
    },
}

/// Receives every [`DeliveryEvent`]; the scenario runner uses it to measure
/// delivery latency from arrival in the user's mailbox.
pub trait DeliveryObserver: Send + Sync {
    /// Called once per event, in order.
    fn on_delivery(&self, event: &DeliveryEvent);
}

#[derive(Debug)]
struct Pending {
    raw: Bytes,
    tag: Option<u64>,
    forwarded_from: Option<String>,
}

enum Job {
    Arrive {
        to: Arc<Account>,
        message: Pending,
    },
    RetryDeferred {
        account: Arc<Account>,
    },
    Action {
        account: Arc<Account>,
        action: FaultAction,
    },
}

struct Timed {
    due: Instant,
    sequence: u64,
    job: Job,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.sequence) == (other.due, other.sequence)
    }
}

impl Eq for Timed {}

impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.sequence).cmp(&(other.due, other.sequence))
    }
}

struct Inner {
    store: Store,
    clock: SimClock,
    limits: Limits,
    hostname: String,
    rules: Mutex<BTreeMap<String, ForwardRule>>,
    deferred: Mutex<BTreeMap<String, VecDeque<Pending>>>,
    faults: Mutex<Faults>,
    observer: Option<Arc<dyn DeliveryObserver>>,
    jobs: mpsc::UnboundedSender<Timed>,
    sequence: AtomicU64,
    sessions: AtomicU64,
}

/// A handle to the simulated mail service; clones share one service.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("hostname", &self.inner.hostname)
            .field("accounts", &self.inner.store.accounts().len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Service`].
pub struct ServiceBuilder {
    clock: Option<SimClock>,
    limits: Limits,
    hostname: String,
    observer: Option<Arc<dyn DeliveryObserver>>,
}

impl Default for ServiceBuilder {
    fn default() -> Self {
        Self {
            clock: None,
            limits: Limits::default(),
            hostname: "mailsim.test".to_owned(),
            observer: None,
        }
    }
}

impl ServiceBuilder {
    /// Sets the clock; the system clock by default.
    pub fn clock(mut self, clock: SimClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the session limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the host name used in greetings and generated Message-IDs.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// Sets an observer of every delivery.
    pub fn observer(mut self, observer: Arc<dyn DeliveryObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Creates the service and spawns its scheduler task, so it must run
    /// inside a tokio runtime.
    pub fn build(self) -> Service {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            store: Store::new(),
            clock: self.clock.unwrap_or_else(SimClock::system),
            limits: self.limits,
            hostname: self.hostname,
            rules: Mutex::new(BTreeMap::new()),
            deferred: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Faults::default()),
            observer: self.observer,
            jobs,
            sequence: AtomicU64::new(1),
            sessions: AtomicU64::new(1),
        });
        tokio::spawn(run_scheduler(Arc::downgrade(&inner), receiver));
        Service { inner }
    }
}

impl Service {
    /// A builder with default limits and the system clock.
    pub fn builder() -> ServiceBuilder {
        ServiceBuilder::default()
    }

    /// The accounts and their mail.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The clock every session and timer uses.
    pub fn clock(&self) -> SimClock {
        self.inner.clock
    }

    /// The session limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The host name in greetings.
    pub fn hostname(&self) -> &str {
        &self.inner.hostname
    }

    /// Adds an account.
    pub fn add_account(&self, spec: AccountSpec) -> Result<Arc<Account>, StoreError> {
        self.inner.store.add_account(spec)
    }

    /// A new session id for logs.
    pub fn next_session_id(&self) -> u64 {
        self.inner.sessions.fetch_add(1, Ordering::Relaxed)
    }

    /// A number unique within this service, for generated names.
    pub fn next_sequence(&self) -> u64 {
        self.inner.sequence.fetch_add(1, Ordering::Relaxed)
    }

    /// Locks and returns the service-wide faults, which apply to every
    /// connection before and after login.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.inner.faults)
    }

    /// Faults in effect now for `account` (service-wide ones included).
    pub fn active_faults(&self, account: Option<&Account>) -> ActiveFaults {
        let elapsed = self.inner.clock.elapsed();
        let mut active = self.faults().active(elapsed);
        if let Some(account) = account {
            let own = account.faults().active(elapsed);
            active.login_rejected |= own.login_rejected;
            active.connection_refused |= own.connection_refused;
            active.reset_mid_fetch |= own.reset_mid_fetch;
            active.stall |= own.stall;
            active.server_error |= own.server_error;
            active.reset_after_bytes = match (active.reset_after_bytes, own.reset_after_bytes) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        active
    }

    /// When a stall now in effect for `account` ends, as a tokio instant;
    /// `None` when it has no scheduled end.
    pub fn stall_end(&self, account: Option<&Account>) -> Option<Instant> {
        let elapsed = self.inner.clock.elapsed();
        let service_end = self.faults().stall_end(elapsed)?;
        let account_end = match account {
            Some(account) => account.faults().stall_end(elapsed)?,
            None => elapsed,
        };
        Some(self.inner.clock.instant_at(service_end.max(account_end)))
    }

    /// Sets or replaces the forwarding rule of `account`.
    pub fn set_forward_rule(&self, account: &str, rule: ForwardRule) -> Result<(), StoreError> {
        let source = self
            .inner
            .store
            .account(account)
            .ok_or_else(|| StoreError::UnknownAccount(account.to_owned()))?;
        let Some(target) = self.inner.store.account(&rule.to) else {
            return Err(StoreError::UnknownAccount(rule.to));
        };
        let mut rules = lock(&self.inner.rules);
        // Follow the chain of rules from the target; reaching the source
        // again would forward every message forever.
        let source_key = source.address().to_ascii_lowercase();
        let mut next = Some(target.address().to_ascii_lowercase());
        while let Some(key) = next {
            if key == source_key {
                return Err(StoreError::ForwardLoop(source.address().to_owned()));
            }
            next = rules.get(&key).map(|rule| rule.to.to_ascii_lowercase());
        }
        rules.insert(source_key, rule);
        Ok(())
    }

    /// Removes the forwarding rule of `account`.
    pub fn clear_forward_rule(&self, account: &str) {
        lock(&self.inner.rules).remove(&account.to_ascii_lowercase());
    }

    /// The forwarding rule of `account`, if any.
    pub fn forward_rule(&self, account: &str) -> Option<ForwardRule> {
        lock(&self.inner.rules)
            .get(&account.to_ascii_lowercase())
            .cloned()
    }

    /// Delivers `raw` to the INBOX of `to`, subject to its receive limit and
    /// followed by its forwarding rule. `tag` is reported in events.
    pub fn deliver(&self, to: &str, raw: Bytes, tag: Option<u64>) -> Result<(), DeliveryError> {
        let account = self
            .inner
            .store
            .account(to)
            .ok_or_else(|| DeliveryError::UnknownRecipient(to.to_owned()))?;
        self.arrive(
            &account,
            Pending {
                raw,
                tag,
                forwarded_from: None,
            },
        );
        Ok(())
    }

    /// Stores `raw` in INBOX at once, bypassing limits and rules, as a test
    /// fixture or an IMAP APPEND would.
    pub fn insert(&self, account: &Account, raw: Bytes) -> u32 {
        let message = Arc::new(StoredMessage::new(
            raw,
            self.inner.clock.now().fixed_offset(),
            None,
        ));
        account.append_to_inbox(message)
    }

    /// Runs a one-shot fault action on `account` now.
    pub fn trigger(&self, account: &Arc<Account>, action: FaultAction) {
        match action {
            FaultAction::UidValidityReset => {
                let result = account.modify(|mailboxes| mailboxes.reset_uid_validity(INBOX));
                if let Ok(uid_validity) = result {
                    tracing::warn!(
                        mailbox = account.address(),
                        uid_validity,
                        "UIDVALIDITY reset"
                    );
                }
            }
            FaultAction::CorruptMessage => {
                let raw = forward::corrupt_message(self.next_sequence());
                let uid = self.insert(account, raw);
                tracing::warn!(mailbox = account.address(), uid, "corrupt message injected");
            }
        }
    }

    /// Runs a one-shot fault action on `account` at `at` after the clock's start.
    pub fn schedule_action(&self, account: &Arc<Account>, action: FaultAction, at: Duration) {
        self.submit(
            self.inner.clock.instant_at(at),
            Job::Action {
                account: Arc::clone(account),
                action,
            },
        );
    }

    fn submit(&self, due: Instant, job: Job) {
        let timed = Timed {
            due,
            sequence: self.next_sequence(),
            job,
        };
        // The scheduler only stops when every handle is gone, so a send
        // error cannot happen while `self` exists.
        let _ = self.inner.jobs.send(timed);
    }

    fn emit(&self, event: DeliveryEvent) {
        if let Some(observer) = &self.inner.observer {
            observer.on_delivery(&event);
        }
    }

    fn arrive(&self, account: &Arc<Account>, message: Pending) {
        let key = account.address().to_ascii_lowercase();
        let mut deferred = lock(&self.inner.deferred);

        // Keep arrival order: once messages wait, later ones queue behind them.
        if let Some(queue) = deferred.get_mut(&key).filter(|queue| !queue.is_empty()) {
            self.emit_deferred(account, &message);
            queue.push_back(message);
            return;
        }
        // Bind the admission first: the throttle guard must be released
        // before storing, which can run forwarding rules that lock it again.
        let admission = account.throttle().admit_delivery(Instant::now());
        match admission {
            Ok(()) => {
                drop(deferred);
                self.store_message(account, message);
            }
            Err(wait) => {
                self.emit_deferred(account, &message);
                deferred.entry(key).or_default().push_back(message);
                drop(deferred);
                self.submit(
                    Instant::now() + wait,
                    Job::RetryDeferred {
                        account: Arc::clone(account),
                    },
                );
            }
        }
    }

    fn emit_deferred(&self, account: &Account, message: &Pending) {
        tracing::debug!(
            mailbox = account.address(),
            "receive limit reached, delivery deferred"
        );
        self.emit(DeliveryEvent::Deferred {
            account: account.address().to_owned(),
            tag: message.tag,
            at: self.inner.clock.elapsed(),
        });
    }

    fn retry_deferred(&self, account: &Arc<Account>) {
        let key = account.address().to_ascii_lowercase();
        loop {
            let mut deferred = lock(&self.inner.deferred);
            let Some(queue) = deferred.get_mut(&key) else {
                return;
            };
            if queue.is_empty() {
                deferred.remove(&key);
                return;
            }
            let admission = account.throttle().admit_delivery(Instant::now());
            match admission {
                Ok(()) => {
                    let Some(message) = queue.pop_front() else {
                        return;
                    };
                    drop(deferred);
                    self.store_message(account, message);
                }
                Err(wait) => {
                    drop(deferred);
                    self.submit(
                        Instant::now() + wait,
                        Job::RetryDeferred {
                            account: Arc::clone(account),
                        },
                    );
                    return;
                }
            }
        }
    }

    fn store_message(&self, account: &Arc<Account>, message: Pending) {
        let stored = Arc::new(StoredMessage::new(
            message.raw,
            self.inner.clock.now().fixed_offset(),
            message.tag,
        ));
        let uid = account.append_to_inbox(Arc::clone(&stored));
        self.emit(DeliveryEvent::Stored {
            account: account.address().to_owned(),
            uid,
            tag: message.tag,
            forwarded_from: message.forwarded_from,
            at: self.inner.clock.elapsed(),
        });

        let Some(rule) = self.forward_rule(account.address()) else {
            return;
        };
        let Some(target) = self.inner.store.account(&rule.to) else {
            tracing::warn!(
                mailbox = account.address(),
                to = rule.to,
                "forward target missing"
            );
            return;
        };
        let copy = forward::forwarded_copy(
            &stored.raw,
            rule.mode,
            &CopyHeaders {
                from: account.address(),
                to: target.address(),
                sequence: self.next_sequence(),
                hostname: &self.inner.hostname,
                date: self.inner.clock.now(),
            },
        );
        let pending = Pending {
            raw: copy,
            tag: message.tag,
            forwarded_from: Some(account.address().to_owned()),
        };
        if rule.delay.is_zero() {
            self.arrive(&target, pending);
        } else {
            self.submit(
                Instant::now() + rule.delay,
                Job::Arrive {
                    to: target,
                    message: pending,
                },
            );
        }
    }

    fn run_job(&self, job: Job) {
        match job {
            Job::Arrive { to, message } => self.arrive(&to, message),
            Job::RetryDeferred { account } => self.retry_deferred(&account),
            Job::Action { account, action } => self.trigger(&account, action),
        }
    }

    /// Number of messages waiting for `account`'s receive limit.
    pub fn deferred_count(&self, account: &str) -> usize {
        lock(&self.inner.deferred)
            .get(&account.to_ascii_lowercase())
            .map_or(0, VecDeque::len)
    }
}

async fn run_scheduler(service: Weak<Inner>, mut receiver: mpsc::UnboundedReceiver<Timed>) {
    let mut queue: BinaryHeap<Reverse<Timed>> = BinaryHeap::new();
    loop {
        let next_due = queue.peek().map(|Reverse(timed)| timed.due);
        let received = match next_due {
            None => receiver.recv().await,
            Some(due) => {
                tokio::select! {
                    biased;
                    received = receiver.recv() => received,
                    () = tokio::time::sleep_until(due) => {
                        let Some(Reverse(timed)) = queue.pop() else { continue };
                        let Some(inner) = service.upgrade() else { return };
                        Service { inner }.run_job(timed.job);
                        continue;
                    }
                }
            }
        };
        match received {
            Some(timed) => queue.push(Reverse(timed)),
            None => return,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::ForwardMode;
    use crate::policy::AccountPolicy;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<DeliveryEvent>>);

    impl DeliveryObserver for Recorder {
        fn on_delivery(&self, event: &DeliveryEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    const MESSAGE: &[u8] = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";

    fn inbox_len(service: &Service, address: &str) -> usize {
        service
            .store()
            .account(address)
            .unwrap()
            .mailboxes()
            .inbox()
            .len()
    }

    #[tokio::test(start_paused = true)]
    async fn receive_limit_defers_and_never_drops() {
        let service = Service::builder().build();
        let mut spec = AccountSpec::new("user@example.com", "pw");
        spec.policy = AccountPolicy {
            receive_per_hour: Some(2),
            ..AccountPolicy::default()
        };
        service.add_account(spec).unwrap();
        for tag in 0..5 {
            service
                .deliver("user@example.com", Bytes::from_static(MESSAGE), Some(tag))
                .unwrap();
        }
        assert_eq!(inbox_len(&service, "user@example.com"), 2);
        assert_eq!(service.deferred_count("user@example.com"), 3);

        // The bucket refills one message per 30 minutes.
        tokio::time::sleep(Duration::from_secs(30 * 60 + 1)).await;
        assert_eq!(inbox_len(&service, "user@example.com"), 3);
        tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
        assert_eq!(inbox_len(&service, "user@example.com"), 5);
        assert_eq!(service.deferred_count("user@example.com"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn forward_rule_delivers_copy_after_delay() {
        let recorder = Arc::new(Recorder::default());
        let service = Service::builder().observer(recorder.clone()).build();
        service
            .add_account(AccountSpec::new("user@example.com", "pw"))
            .unwrap();
        service
            .add_account(AccountSpec::new("fwd@example.com", "pw"))
            .unwrap();
        service
            .set_forward_rule(
                "user@example.com",
                ForwardRule {
                    to: "fwd@example.com".to_owned(),
                    mode: ForwardMode::Attachment,
                    delay: Duration::from_secs(5),
                },
            )
            .unwrap();
        service
            .deliver("user@example.com", Bytes::from_static(MESSAGE), Some(42))
            .unwrap();
        assert_eq!(inbox_len(&service, "fwd@example.com"), 0);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(inbox_len(&service, "fwd@example.com"), 1);

        let events = recorder.0.lock().unwrap().clone();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1],
            DeliveryEvent::Stored {
                account: "fwd@example.com".to_owned(),
                uid: 1,
                tag: Some(42),
                forwarded_from: Some("user@example.com".to_owned()),
                at: Duration::from_secs(5),
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn forward_loops_are_rejected() {
        let service = Service::builder().build();
        for address in ["a@example.com", "b@example.com", "c@example.com"] {
            service
                .add_account(AccountSpec::new(address, "pw"))
                .unwrap();
        }
        let rule = |to: &str| ForwardRule {
            to: to.to_owned(),
            mode: ForwardMode::Attachment,
            delay: Duration::ZERO,
        };
        assert_eq!(
            service.set_forward_rule("a@example.com", rule("A@example.com")),
            Err(StoreError::ForwardLoop("a@example.com".to_owned()))
        );
        service
            .set_forward_rule("a@example.com", rule("b@example.com"))
            .unwrap();
        service
            .set_forward_rule("b@example.com", rule("c@example.com"))
            .unwrap();
        assert_eq!(
            service.set_forward_rule("c@example.com", rule("a@example.com")),
            Err(StoreError::ForwardLoop("c@example.com".to_owned()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn chained_forwarding_with_a_receive_limit_delivers() {
        // The limited account forwards with no delay while its throttle is
        // checked, which once held the throttle lock across the rule.
        let service = Service::builder().build();
        let mut spec = AccountSpec::new("user@example.com", "pw");
        spec.policy = AccountPolicy {
            receive_per_hour: Some(10),
            ..AccountPolicy::default()
        };
        service.add_account(spec).unwrap();
        service
            .add_account(AccountSpec::new("fwd@example.com", "pw"))
            .unwrap();
        service
            .set_forward_rule(
                "user@example.com",
                ForwardRule {
                    to: "fwd@example.com".to_owned(),
                    mode: ForwardMode::Attachment,
                    delay: Duration::ZERO,
                },
            )
            .unwrap();
        service
            .deliver("user@example.com", Bytes::from_static(MESSAGE), None)
            .unwrap();
        assert_eq!(inbox_len(&service, "fwd@example.com"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_recipient_is_rejected() {
        let service = Service::builder().build();
        let error = service
            .deliver("nobody@example.com", Bytes::from_static(MESSAGE), None)
            .unwrap_err();
        assert_eq!(
            error,
            DeliveryError::UnknownRecipient("nobody@example.com".to_owned())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn scheduled_action_resets_uid_validity() {
        let service = Service::builder().build();
        let account = service
            .add_account(AccountSpec::new("user@example.com", "pw"))
            .unwrap();
        let before = account.mailboxes().inbox().uid_validity();
        service.schedule_action(
            &account,
            FaultAction::UidValidityReset,
            Duration::from_secs(60),
        );
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(account.mailboxes().inbox().uid_validity(), before);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_ne!(account.mailboxes().inbox().uid_validity(), before);
    }
}
