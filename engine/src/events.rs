//! Typed events for the code that measures the engine, and the sinks that
//! receive them.
//!
//! Events carry `tokio::time::Instant`s, so under a paused clock they are
//! virtual times; a runner converts them to offsets from its start. Logs go
//! to `tracing` separately; events are the machine-readable record.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{MailboxId, Owner};
use crate::error::{ErrorKind, ErrorLevel};
use crate::records::{Created, Reason, SourceKey};

/// Index of a backend node, from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node-{}", self.0)
    }
}

/// Outcome of a cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CycleOutcome {
    /// Every new message was processed.
    Completed,
    /// The per-cycle message limit was reached; more mail is waiting.
    LimitReached,
    /// A message failed processing and was not quarantined yet, so the
    /// messages behind it wait for a later cycle.
    Blocked,
    /// The cycle failed.
    Failed {
        /// Error category.
        kind: ErrorKind,
        /// Whether the mailbox is retried (false: it was disabled).
        retry: bool,
    },
}

/// Subject of an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertCode {
    /// The server rejected the mailbox's credentials; the mailbox is disabled.
    CredentialsRejected,
    /// Transient failures outlasted the retry policy; the mailbox is disabled.
    RetriesExhausted,
    /// A message failed processing too often and was quarantined.
    EmailQuarantined,
}

impl fmt::Display for AlertCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CredentialsRejected => "credentials_rejected",
            Self::RetriesExhausted => "retries_exhausted",
            Self::EmailQuarantined => "email_quarantined",
        })
    }
}

/// A notice that needs an administrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Email, mailbox or server profile.
    pub level: ErrorLevel,
    /// The mailbox concerned.
    pub mailbox: MailboxId,
    /// Alert code.
    pub code: AlertCode,
    /// Human-readable detail.
    pub text: String,
    /// When.
    pub at: Instant,
}

/// The decision about one fetched message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailProcessed {
    /// The mailbox that fetched it (a forward mailbox for forwarded copies).
    pub mailbox: MailboxId,
    /// Its UID or UIDL in that mailbox.
    pub key: SourceKey,
    /// The original message's Message-ID, if it was read.
    pub message_id: Option<Arc<str>>,
    /// The user or queue it was attributed to, if any.
    pub party: Option<Owner>,
    /// Reason it did or did not become records.
    pub reason: Reason,
    /// Records created.
    pub created: Created,
    /// When the decision was committed.
    pub at: Instant,
}

/// Something the engine did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A cycle got a worker slot and is starting.
    CycleStarted {
        /// The mailbox.
        mailbox: MailboxId,
        /// The node running it.
        node: NodeId,
        /// When.
        at: Instant,
    },
    /// A cycle ended.
    CycleEnded {
        /// The mailbox.
        mailbox: MailboxId,
        /// The node that ran it.
        node: NodeId,
        /// When.
        at: Instant,
        /// Messages downloaded.
        fetched: usize,
        /// Messages decided and committed.
        processed: usize,
        /// Outcome.
        outcome: CycleOutcome,
    },
    /// One message was decided.
    EmailProcessed(EmailProcessed),
    /// The server throttled the mailbox.
    Throttled {
        /// The mailbox.
        mailbox: MailboxId,
        /// The back-off the server suggested, if any.
        backoff: Option<Duration>,
        /// When.
        at: Instant,
    },
    /// An error the engine handled (every failed cycle except a throttled
    /// one, which is a [`Event::Throttled`], and every email-level error).
    Error {
        /// Email, mailbox or server profile.
        level: ErrorLevel,
        /// The mailbox concerned.
        mailbox: MailboxId,
        /// Error category.
        kind: ErrorKind,
        /// Human-readable detail.
        text: String,
        /// When.
        at: Instant,
    },
    /// An alert was raised.
    Alert(Alert),
    /// A disabled mailbox was enabled again and is polled once more.
    MailboxEnabled {
        /// The mailbox.
        mailbox: MailboxId,
        /// When.
        at: Instant,
    },
    /// A mailbox was disabled and is no longer polled.
    MailboxDisabled {
        /// The mailbox.
        mailbox: MailboxId,
        /// Why.
        kind: ErrorKind,
        /// When.
        at: Instant,
    },
}

/// Receives the engine's events. `emit` must not block: it runs inside
/// cycles.
pub trait EventSink: Send + Sync + 'static {
    /// Takes one event.
    fn emit(&self, event: Event);
}

/// Discards every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) {}
}

/// Keeps every event in memory, for tests and one-shot syncs.
#[derive(Clone, Debug, Default)]
pub struct VecSink {
    events: Arc<Mutex<Vec<Event>>>,
}

impl VecSink {
    /// Creates an empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns a copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// Removes and returns the events so far.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl EventSink for VecSink {
    fn emit(&self, event: Event) {
        self.lock().push(event);
    }
}

/// Sends events into an unbounded channel; events are dropped once the
/// receiver is gone. The channel grows while the receiver does not read.
impl EventSink for mpsc::UnboundedSender<Event> {
    fn emit(&self, event: Event) {
        let _ = self.send(event);
    }
}

impl<T: EventSink + ?Sized> EventSink for Arc<T> {
    fn emit(&self, event: Event) {
        T::emit(self, event);
    }
}
