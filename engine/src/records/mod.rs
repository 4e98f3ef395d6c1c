//! CRM records, per-mailbox sync state, and the store that keeps both.
//!
//! A cycle never writes records one by one. It hands the store a
//! [`CommitBatch`]: the processed messages of one fetch batch plus the
//! mailbox's sync-state update. The store applies the whole batch or none of
//! it, so a cycle that dies before, during or after a commit can be retried
//! without losing or duplicating anything. Which records a message creates
//! (duplicate, correlation, filter) is decided by [`decide::apply_batch`]
//! inside the commit, under the store's lock, because two mailboxes may
//! process the same Message-ID at the same time.
//!
//! [`decide::apply_batch`]: crate::decide::apply_batch

pub(crate) mod memory;
mod state;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use crate::config::{MailboxId, Owner, TrackingFilter};

pub use memory::{MemoryStore, Records, Snapshot};
pub use state::{ImapCursor, SourceKey, SyncState, SyncUpdate};

/// Index of an email activity in its store.
pub type ActivityId = u64;

/// Whether an activity came from incoming mail or was sent from the CRM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Synchronized from a mailbox.
    Incoming,
    /// Sent from the CRM and tracked, so that replies correlate with it.
    Outgoing,
}

/// One email, as the CRM stores it: one per Message-ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailActivity {
    /// Index in the store.
    pub id: ActivityId,
    /// The original message's Message-ID, without angle brackets.
    pub message_id: Arc<str>,
    /// Subject.
    pub subject: Box<str>,
    /// Sender address, lowercase.
    pub from: Option<Box<str>>,
    /// Tracking token assigned by the store (prefix and 7 digits).
    pub tracking_token: Box<str>,
    /// The activity this email replies to, found by correlation.
    pub regarding: Option<ActivityId>,
    /// Incoming or outgoing.
    pub direction: Direction,
    /// When the record was created.
    pub created_at: Instant,
    /// Indexes of this activity's parties in [`Snapshot::parties`].
    pub parties: Vec<usize>,
}

/// A user or queue that accepted an email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    /// The email activity.
    pub activity: ActivityId,
    /// The accepting user or queue.
    pub owner: Owner,
    /// The mailbox the email was addressed to (the forwarding mailbox for a
    /// forwarded copy).
    pub mailbox: MailboxId,
    /// The mailbox the engine fetched it from (a forward mailbox, or the
    /// same as `mailbox`).
    pub fetched_by: MailboxId,
    /// When the party was added.
    pub created_at: Instant,
}

/// Work item for a queue that accepted an email; one per activity and queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueItem {
    /// The email activity.
    pub activity: ActivityId,
    /// Queue name.
    pub queue: Arc<str>,
    /// When the item was created.
    pub created_at: Instant,
}

/// A message that failed processing too often and was set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantinedEmail {
    /// The mailbox it was fetched from.
    pub mailbox: MailboxId,
    /// Its UID or UIDL.
    pub key: SourceKey,
    /// Failed attempts, including the last one.
    pub attempts: u32,
    /// The last failure.
    pub error: String,
    /// When it was quarantined.
    pub at: Instant,
}

/// Reason a message did or did not become records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Its Message-ID is already an activity; at most a party was added.
    Duplicate,
    /// It replies to a tracked activity (In-Reply-To, tracking token or
    /// References).
    CorrelationMatch,
    /// The filter tracks replies only and it correlates with nothing.
    NoCorrelationMatch,
    /// A forwarded copy's sender matches no configured mailbox.
    NoRecipientMatch,
    /// The filter tracks all email.
    AcceptAll,
    /// The filter tracks email from known contacts and the sender is one.
    SenderMatch,
    /// It has no usable From address, or the filter tracks email from known
    /// contacts and the sender is not one.
    InvalidSender,
    /// The filter tracks no email.
    NotTracked,
    /// It was received before the mailbox's process-received-after time.
    ReceivedBeforeStart,
    /// A forward mailbox received it without a `message/rfc822` part; this
    /// is an email-level error, reported once and not retried.
    NotForwardedAsAttachment,
    /// It exceeds the configured message size; an email-level error.
    MessageTooLarge,
    /// Processing failed the maximum number of times; it was quarantined.
    Quarantined,
}

impl Reason {
    /// Snake-case name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::CorrelationMatch => "correlation_match",
            Self::NoCorrelationMatch => "no_correlation_match",
            Self::NoRecipientMatch => "no_recipient_match",
            Self::AcceptAll => "accept_all",
            Self::SenderMatch => "sender_match",
            Self::InvalidSender => "invalid_sender",
            Self::NotTracked => "not_tracked",
            Self::ReceivedBeforeStart => "received_before_start",
            Self::NotForwardedAsAttachment => "not_forwarded_as_attachment",
            Self::MessageTooLarge => "message_too_large",
            Self::Quarantined => "quarantined",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Records a decision created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Created {
    /// Nothing.
    Nothing,
    /// A new activity with its first party (and a queue item for a queue).
    Activity,
    /// A party on an existing activity (and a queue item for a queue).
    Party,
}

/// A parsed message, ready for the decision made inside a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailDraft {
    /// Message-ID without angle brackets; synthesized from a hash of the
    /// bytes when the message has none.
    pub message_id: Arc<str>,
    /// Subject, or empty.
    pub subject: Box<str>,
    /// Sender address, lowercase.
    pub from: Option<Box<str>>,
    /// In-Reply-To Message-ID.
    pub in_reply_to: Option<Box<str>>,
    /// Tracking token found in the subject.
    pub tracking_token: Option<Box<str>>,
    /// References Message-IDs, oldest first.
    pub references: Vec<Box<str>>,
    /// The user or queue the email is attributed to.
    pub owner: Owner,
    /// The mailbox the email was addressed to.
    pub mailbox: MailboxId,
    /// That mailbox's tracking filter.
    pub filter: TrackingFilter,
    /// Whether the sender is a configured contact.
    pub sender_is_contact: bool,
}

/// Action for one fetched message inside a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemAction {
    /// Decide and maybe create records.
    Email(Box<EmailDraft>),
    /// Already decided outside the store: create nothing, report `reason`.
    Skip {
        /// The decision.
        reason: Reason,
        /// Message-ID, if known.
        message_id: Option<Arc<str>>,
        /// The user or queue it was attributed to, if known.
        owner: Option<Owner>,
    },
    /// Set the message aside after repeated processing failures.
    Quarantine {
        /// Failed attempts, including this one.
        attempts: u32,
        /// The last failure.
        error: String,
    },
}

/// One fetched message in a [`CommitBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItem {
    /// Its UID or UIDL.
    pub key: SourceKey,
    /// The action.
    pub action: ItemAction,
}

/// The processed messages of one batch and the sync-state update that must
/// be applied with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitBatch {
    /// The mailbox that fetched the messages.
    pub mailbox: MailboxId,
    /// The sync-state version the cycle started from; a store whose version
    /// differs rejects the batch with [`StoreError::Conflict`].
    pub base_version: u64,
    /// Messages in fetch order.
    pub items: Vec<BatchItem>,
    /// The sync-state change.
    pub update: SyncUpdate,
    /// Prefix of tracking tokens for new activities.
    pub token_prefix: Arc<str>,
}

/// The decision for one [`BatchItem`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The message's UID or UIDL.
    pub key: SourceKey,
    /// Message-ID, if known.
    pub message_id: Option<Arc<str>>,
    /// The user or queue it was attributed to, if known.
    pub owner: Option<Owner>,
    /// Why.
    pub reason: Reason,
    /// Records created.
    pub created: Created,
    /// The activity created or found, if any.
    pub activity: Option<ActivityId>,
}

/// The result of a successful commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// One decision per batch item, in order.
    pub decisions: Vec<Decision>,
    /// The mailbox's sync-state version after the commit.
    pub version: u64,
}

/// A failed store operation; a failed commit applied nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another commit changed the mailbox's sync state first.
    #[error(
        "sync state of mailbox {mailbox} is at version {found}, expected {expected}; reload it and retry"
    )]
    Conflict {
        /// The mailbox.
        mailbox: MailboxId,
        /// The version the batch was based on.
        expected: u64,
        /// The store's version.
        found: u64,
    },
    /// The store could not be reached or failed.
    #[error("record store unavailable: {0}")]
    Unavailable(String),
}

/// Storage for records and sync state.
///
/// Implementations must apply a [`CommitBatch`] atomically: all of it,
/// including the sync-state update, or nothing. The in-memory [`MemoryStore`]
/// does so by running [`apply_batch`](crate::decide::apply_batch) on its
/// [`Records`] under a lock. A wrapper, for example one that sleeps a
/// modelled time per record, can delegate to it.
pub trait RecordStore: Send + Sync + 'static {
    /// Loads a mailbox's sync state, or the empty state for a new mailbox.
    fn sync_state(
        &self,
        mailbox: &MailboxId,
    ) -> impl Future<Output = Result<SyncState, StoreError>> + Send;

    /// Applies a batch atomically and returns one decision per item.
    fn commit(
        &self,
        batch: CommitBatch,
    ) -> impl Future<Output = Result<CommitReport, StoreError>> + Send;
}

impl<T: RecordStore> RecordStore for Arc<T> {
    fn sync_state(
        &self,
        mailbox: &MailboxId,
    ) -> impl Future<Output = Result<SyncState, StoreError>> + Send {
        T::sync_state(self, mailbox)
    }

    fn commit(
        &self,
        batch: CommitBatch,
    ) -> impl Future<Output = Result<CommitReport, StoreError>> + Send {
        T::commit(self, batch)
    }
}
