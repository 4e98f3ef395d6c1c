//! Per-mailbox sync state: how far a mailbox has been processed.
//!
//! IMAP keeps a watermark (UIDVALIDITY and the last processed UID), because
//! UIDs grow within one UIDVALIDITY. POP3 has no order to rely on, so it keeps
//! the set of processed UIDLs, pruned to the UIDLs still on the server. Both
//! keep failure counters for messages that failed processing, so that a
//! poison message is quarantined after a fixed number of attempts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A message's identity on the server.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKey {
    /// IMAP UID within the cursor's UIDVALIDITY.
    Uid(u32),
    /// POP3 unique-id listing.
    Uidl(Box<str>),
}

impl fmt::Debug for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uid(uid) => write!(f, "uid:{uid}"),
            Self::Uidl(uidl) => write!(f, "uidl:{uidl}"),
        }
    }
}

/// IMAP watermark: every message with a UID up to `last_uid` is processed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImapCursor {
    /// The INBOX's UIDVALIDITY when the watermark was set.
    pub uid_validity: u32,
    /// Highest processed UID.
    pub last_uid: u32,
}

/// A mailbox's sync state, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncState {
    /// Incremented by every commit; commits name the version they start from.
    pub version: u64,
    /// IMAP watermark, if the mailbox was synced over IMAP.
    pub imap: Option<ImapCursor>,
    /// POP3 UIDLs processed and still on the server.
    pub pop3_seen: BTreeSet<Box<str>>,
    /// Failed processing attempts per message not yet processed.
    pub failures: BTreeMap<SourceKey, u32>,
}

/// A change to a [`SyncState`], applied with the records of one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncUpdate {
    /// New IMAP watermark.
    pub imap: Option<ImapCursor>,
    /// Forget all failure counters (the UIDs they name are void).
    pub reset_failures: bool,
    /// POP3 UIDLs processed in this batch.
    pub pop3_seen: Vec<Box<str>>,
    /// When set, keep only these POP3 UIDLs: the ones still on the server.
    pub pop3_retain: Option<BTreeSet<Box<str>>>,
    /// New failure counts; 0 removes a counter.
    pub failures: Vec<(SourceKey, u32)>,
}

impl SyncUpdate {
    /// Returns whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.imap.is_none()
            && !self.reset_failures
            && self.pop3_seen.is_empty()
            && self.pop3_retain.is_none()
            && self.failures.is_empty()
    }
}

impl SyncState {
    /// Applies `update` and increments the version.
    pub fn apply(&mut self, update: SyncUpdate) {
        if update.reset_failures {
            self.failures.clear();
        }
        if let Some(cursor) = update.imap {
            self.imap = Some(cursor);
        }
        if let Some(retain) = update.pop3_retain {
            self.pop3_seen.retain(|uidl| retain.contains(uidl));
        }
        self.pop3_seen.extend(update.pop3_seen);
        for (key, attempts) in update.failures {
            if attempts == 0 {
                self.failures.remove(&key);
            } else {
                self.failures.insert(key, attempts);
            }
        }
        self.version += 1;
    }

    /// Failed attempts recorded for `key`.
    pub fn attempts(&self, key: &SourceKey) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pop3_retain_prunes_before_adding() {
        let mut state = SyncState::default();
        state.pop3_seen.insert("a".into());
        state.pop3_seen.insert("b".into());
        state.apply(SyncUpdate {
            pop3_seen: vec!["c".into()],
            pop3_retain: Some(["b".into()].into_iter().collect()),
            ..SyncUpdate::default()
        });
        let seen: Vec<&str> = state.pop3_seen.iter().map(|s| &**s).collect();
        assert_eq!(seen, ["b", "c"]);
        assert_eq!(state.version, 1);
    }

    #[test]
    fn zero_attempts_clears_counter() {
        let mut state = SyncState::default();
        state.apply(SyncUpdate {
            failures: vec![(SourceKey::Uid(4), 2)],
            ..SyncUpdate::default()
        });
        assert_eq!(state.attempts(&SourceKey::Uid(4)), 2);
        state.apply(SyncUpdate {
            failures: vec![(SourceKey::Uid(4), 0)],
            ..SyncUpdate::default()
        });
        assert_eq!(state.attempts(&SourceKey::Uid(4)), 0);
        assert!(state.failures.is_empty());
    }
}
