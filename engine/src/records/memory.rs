//! The in-memory record store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use foldhash::HashMap;

use tokio::time::Instant;

use super::{
    ActivityId, CommitBatch, CommitReport, Direction, EmailActivity, Party, QuarantinedEmail,
    QueueItem, RecordStore, StoreError, SyncState,
};
use crate::config::{MailboxId, Owner};
use crate::decide;

/// The fields of a new activity that the caller chooses.
pub(crate) struct NewActivity {
    pub(crate) message_id: Arc<str>,
    pub(crate) subject: Box<str>,
    pub(crate) from: Option<Box<str>>,
    pub(crate) direction: Direction,
    pub(crate) regarding: Option<ActivityId>,
}

/// All records and sync states, with the indexes the decisions need.
///
/// Lookups use `HashMap` indexes hashed with foldhash, which is several
/// times faster than the standard SipHash on short keys such as
/// Message-IDs and is still seeded at random. Nothing iterates them, so
/// their order never reaches output.
#[derive(Debug, Default)]
pub struct Records {
    pub(crate) activities: Vec<EmailActivity>,
    pub(crate) by_message_id: HashMap<Arc<str>, ActivityId>,
    pub(crate) by_token: HashMap<Box<str>, ActivityId>,
    pub(crate) parties: Vec<Party>,
    pub(crate) queue_items: Vec<QueueItem>,
    pub(crate) quarantined: Vec<QuarantinedEmail>,
    pub(crate) sync: BTreeMap<MailboxId, SyncState>,
}

impl Records {
    /// Returns the activity with `message_id`.
    pub fn activity_by_message_id(&self, message_id: &str) -> Option<&EmailActivity> {
        let id = *self.by_message_id.get(message_id)?;
        self.activity(id)
    }

    /// Returns the activity with tracking token `token`.
    pub fn activity_by_token(&self, token: &str) -> Option<&EmailActivity> {
        let id = *self.by_token.get(token)?;
        self.activity(id)
    }

    /// Returns the activity with index `id`.
    pub fn activity(&self, id: ActivityId) -> Option<&EmailActivity> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.activities.get(i))
    }

    /// Inserts an activity, assigns its tracking token and indexes both.
    pub(crate) fn insert_activity(
        &mut self,
        new: NewActivity,
        token_prefix: &str,
        now: Instant,
    ) -> ActivityId {
        let id = self.activities.len() as ActivityId;
        // NOTE: tokens have 7 digits up to activity 9,999,999 and grow a
        // digit after that, which the 7-digit pattern no longer matches.
        let token: Box<str> = format!("{token_prefix}{:07}", id + 1).into();
        self.by_message_id.insert(new.message_id.clone(), id);
        self.by_token.insert(token.clone(), id);
        self.activities.push(EmailActivity {
            id,
            message_id: new.message_id,
            subject: new.subject,
            from: new.from,
            tracking_token: token,
            regarding: new.regarding,
            direction: new.direction,
            created_at: now,
            parties: Vec::new(),
        });
        id
    }

    /// Adds `owner` as a party unless it already is one; returns whether it
    /// was added. A queue also gets a queue item.
    pub(crate) fn add_party(
        &mut self,
        activity: ActivityId,
        owner: &Owner,
        mailbox: &MailboxId,
        fetched_by: &MailboxId,
        now: Instant,
    ) -> bool {
        let Some(index) = usize::try_from(activity).ok() else {
            return false;
        };
        let Some(record) = self.activities.get(index) else {
            return false;
        };
        let known = record
            .parties
            .iter()
            .any(|&party| self.parties.get(party).is_some_and(|p| &p.owner == owner));
        if known {
            return false;
        }
        let party_index = self.parties.len();
        self.parties.push(Party {
            activity,
            owner: owner.clone(),
            mailbox: mailbox.clone(),
            fetched_by: fetched_by.clone(),
            created_at: now,
        });
        if let Some(record) = self.activities.get_mut(index) {
            record.parties.push(party_index);
        }
        if let Owner::Queue(queue) = owner {
            self.queue_items.push(QueueItem {
                activity,
                queue: queue.clone(),
                created_at: now,
            });
        }
        true
    }

    /// Copies every record and sync state, for reports.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            activities: self.activities.clone(),
            parties: self.parties.clone(),
            queue_items: self.queue_items.clone(),
            quarantined: self.quarantined.clone(),
            sync_states: self.sync.clone(),
        }
    }
}

/// A point-in-time copy of a store's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Email activities, by index.
    pub activities: Vec<EmailActivity>,
    /// Parties, in creation order.
    pub parties: Vec<Party>,
    /// Queue items, in creation order.
    pub queue_items: Vec<QueueItem>,
    /// Quarantined messages.
    pub quarantined: Vec<QuarantinedEmail>,
    /// Sync state per mailbox.
    pub sync_states: BTreeMap<MailboxId, SyncState>,
}

impl Snapshot {
    /// Party records per (Message-ID, owner): a count above 1 is a
    /// duplicate, a missing key a loss.
    pub fn party_counts(&self) -> BTreeMap<(Arc<str>, Owner), usize> {
        let mut counts = BTreeMap::new();
        for party in &self.parties {
            let Some(activity) = usize::try_from(party.activity)
                .ok()
                .and_then(|i| self.activities.get(i))
            else {
                continue;
            };
            *counts
                .entry((activity.message_id.clone(), party.owner.clone()))
                .or_insert(0) += 1;
        }
        counts
    }

    /// Incoming activities (records created from synchronized mail).
    pub fn incoming_activities(&self) -> usize {
        self.activities
            .iter()
            .filter(|activity| activity.direction == Direction::Incoming)
            .count()
    }
}

/// A [`RecordStore`] in memory, behind one lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<Records>,
}

impl MemoryStore {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the records for reading. Do not hold the guard across an await.
    pub fn records(&self) -> MutexGuard<'_, Records> {
        // A panic while holding the lock leaves consistent data, because
        // every mutation completes before the guard drops.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Copies every record and sync state.
    pub fn snapshot(&self) -> Snapshot {
        self.records().snapshot()
    }

    /// Records an email sent from the CRM, so that replies to it correlate;
    /// returns its tracking token.
    pub fn track_outgoing(&self, message_id: &str, subject: &str, token_prefix: &str) -> Box<str> {
        let mut records = self.records();
        if let Some(existing) = records.activity_by_message_id(message_id) {
            return existing.tracking_token.clone();
        }
        let outgoing = NewActivity {
            message_id: Arc::from(message_id),
            subject: subject.into(),
            from: None,
            direction: Direction::Outgoing,
            regarding: None,
        };
        let id = records.insert_activity(outgoing, token_prefix, Instant::now());
        records
            .activity(id)
            .map(|activity| activity.tracking_token.clone())
            .unwrap_or_default()
    }

    /// Restores a mailbox's sync state saved by an earlier run, so that a
    /// new process resumes where the last one stopped.
    pub fn restore_sync_state(&self, mailbox: MailboxId, state: SyncState) {
        self.records().sync.insert(mailbox, state);
    }

    /// Applies a batch synchronously; [`RecordStore::commit`] calls this.
    pub fn commit_now(&self, batch: CommitBatch) -> Result<CommitReport, StoreError> {
        let mut records = self.records();
        decide::apply_batch(&mut records, batch, Instant::now())
    }
}

impl RecordStore for MemoryStore {
    async fn sync_state(&self, mailbox: &MailboxId) -> Result<SyncState, StoreError> {
        Ok(self
            .records()
            .sync
            .get(mailbox)
            .cloned()
            .unwrap_or_default())
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReport, StoreError> {
        self.commit_now(batch)
    }
}
