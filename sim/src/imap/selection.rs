//! A session's view of its selected mailbox.
//!
//! Message sequence numbers belong to a session, not to the store: another
//! session may expunge or add messages at any time, but this session's
//! numbers change only when it informs its client with an untagged EXPUNGE
//! or EXISTS response (RFC 3501 sections 5.2 and 7.4.1). So the view keeps
//! its own list of UIDs and reconciles it with the store only at points
//! where such responses are allowed.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::ops::Range;

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::response::Completion;
use crate::store::{Folder, Mailboxes, SystemFlags};

/// The selected mailbox as this session last reported it.
#[derive(Debug)]
pub(crate) struct Selection {
    /// The folder's name in the store.
    pub name: String,
    /// Selected with EXAMINE: no flag changes, no expunges, no `\Recent` claims.
    pub read_only: bool,
    /// UIDVALIDITY at selection time.
    pub uid_validity: u32,
    /// UIDs in ascending order; index + 1 is the sequence number.
    uids: Vec<u32>,
    /// UIDs that are `\Recent` in this session.
    recent: BTreeSet<u32>,
}

/// Mailbox state that SELECT and EXAMINE report besides the view itself.
#[derive(Debug)]
pub(crate) struct Summary {
    /// Number of messages.
    pub exists: u32,
    /// Number of messages `\Recent` in this session.
    pub recent: u32,
    /// Sequence number of the first message without `\Seen`.
    pub first_unseen: Option<u32>,
    /// The folder's UIDVALIDITY.
    pub uid_validity: u32,
    /// The folder's UIDNEXT.
    pub uid_next: u32,
    /// Keywords in use in the folder, for the FLAGS response.
    pub keywords: BTreeSet<String>,
}

/// Changes found by [`Selection::sync`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Sequence numbers to report in untagged EXPUNGE responses, in order.
    pub expunged: Vec<NonZeroU32>,
    /// The new message count, when messages arrived.
    pub exists: Option<u32>,
    /// The new `\Recent` count, when messages arrived.
    pub recent: Option<u32>,
    /// Expunges seen in the store but held back because they were not
    /// allowed yet.
    pub expunges_pending: bool,
}

/// Reason the view can no longer follow its folder.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lost {
    /// The folder was deleted or renamed away.
    Gone,
    /// The folder's UIDVALIDITY changed, so every UID the client has is void.
    UidValidityChanged,
}

impl Selection {
    /// Opens the folder `name`; `None` when it does not exist. A read-write
    /// open takes the `\Recent` flag of every message that still has it.
    pub(crate) fn open(
        mailboxes: &mut Mailboxes,
        name: &str,
        read_only: bool,
    ) -> Option<(Self, Summary)> {
        let folder = mailboxes.folder_mut(name)?;
        let mut uids = Vec::with_capacity(folder.len());
        let mut recent = BTreeSet::new();
        let mut first_unseen = None;
        let mut keywords = BTreeSet::new();
        for (index, entry) in folder.messages_mut().iter_mut().enumerate() {
            uids.push(entry.uid);
            if entry.recent {
                recent.insert(entry.uid);
                if !read_only {
                    entry.recent = false;
                }
            }
            if first_unseen.is_none() && !entry.flags.system.contains(SystemFlags::SEEN) {
                first_unseen = Some(sequence_number(index));
            }
            keywords.extend(entry.flags.keywords.iter().cloned());
        }
        let summary = Summary {
            exists: count(uids.len()),
            recent: count(recent.len()),
            first_unseen,
            uid_validity: folder.uid_validity(),
            uid_next: folder.uid_next(),
            keywords,
        };
        let selection = Self {
            name: crate::store::canonical_folder_name(name).into_owned(),
            read_only,
            uid_validity: folder.uid_validity(),
            uids,
            recent,
        };
        Some((selection, summary))
    }

    /// Number of messages in the view.
    pub(crate) fn len(&self) -> usize {
        self.uids.len()
    }

    /// Returns the UID at `index`.
    pub(crate) fn uid(&self, index: usize) -> Option<u32> {
        self.uids.get(index).copied()
    }

    /// Finds the sequence number of `uid`, if the view has it.
    pub(crate) fn sequence_of(&self, uid: u32) -> Option<NonZeroU32> {
        self.uids
            .binary_search(&uid)
            .ok()
            .map(|index| NonZeroU32::MIN.saturating_add(count(index)))
    }

    /// True when `uid` is `\Recent` in this session.
    pub(crate) fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(&uid)
    }

    /// Brings the view up to date with the store. New messages are always
    /// taken in; expunged ones only with `expunge_allowed`, because RFC 3501
    /// forbids EXPUNGE responses during FETCH, STORE and SEARCH.
    pub(crate) fn sync(
        &mut self,
        mailboxes: &mut Mailboxes,
        expunge_allowed: bool,
    ) -> Result<Changes, Lost> {
        let folder = mailboxes.folder_mut(&self.name).ok_or(Lost::Gone)?;
        if folder.uid_validity() != self.uid_validity {
            return Err(Lost::UidValidityChanged);
        }
        let mut changes = Changes::default();

        // UIDs only grow, so equal counts and equal last UIDs mean the
        // store contains exactly the UIDs of the view.
        let last_seen = self.uids.last().copied();
        if folder.len() == self.uids.len() && folder.messages().last().map(|e| e.uid) == last_seen {
            return Ok(changes);
        }

        if expunge_allowed {
            changes.expunged = self.take_expunged(folder);
        }

        let start = match last_seen {
            Some(last) => folder.messages().partition_point(|entry| entry.uid <= last),
            None => 0,
        };
        let arrived = folder.messages_mut().get_mut(start..).unwrap_or_default();
        if !arrived.is_empty() {
            for entry in arrived {
                self.uids.push(entry.uid);
                if entry.recent {
                    self.recent.insert(entry.uid);
                    if !self.read_only {
                        entry.recent = false;
                    }
                }
            }
            changes.exists = Some(count(self.uids.len()));
            changes.recent = Some(count(self.recent.len()));
        }
        changes.expunges_pending = folder.len() != self.uids.len();
        Ok(changes)
    }

    /// Removes UIDs the store no longer has and returns the sequence
    /// numbers to report, highest first so each stays valid as it is sent.
    fn take_expunged(&mut self, folder: &Folder) -> Vec<NonZeroU32> {
        let mut expunged = Vec::new();
        for index in (0..self.uids.len()).rev() {
            let uid = self.uids[index];
            if folder.position(uid).is_none() {
                expunged.push(NonZeroU32::MIN.saturating_add(count(index)));
                self.recent.remove(&uid);
            }
        }
        if !expunged.is_empty() {
            self.uids.retain(|uid| folder.position(*uid).is_some());
        }
        expunged
    }

    /// Resolves `set` to indices into the view, ascending and without
    /// duplicates. With `uid` the set contains UIDs, otherwise sequence
    /// numbers. Numbers past the end are ignored.
    pub(crate) fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        self.resolve_ranges(set, uid)
            .into_iter()
            .flatten()
            .collect()
    }

    /// For message sequence numbers, checks that `set` names no number
    /// past the last message; servers answer such a FETCH, STORE or COPY
    /// with BAD. UIDs that do not exist are ignored instead (RFC 3501 6.4.8).
    pub(crate) fn check_sequence_numbers(
        &self,
        set: &SequenceSet,
        uid: bool,
    ) -> Result<(), Completion> {
        if uid {
            return Ok(());
        }
        let exists = count(self.uids.len());
        for sequence in set.0.as_ref() {
            let bounds = match sequence {
                Sequence::Single(single) => [Some(single), None],
                Sequence::Range(from, to) => [Some(from), Some(to)],
            };
            for bound in bounds.into_iter().flatten() {
                if let SeqOrUid::Value(value) = bound
                    && value.get() > exists
                {
                    return Err(Completion::bad(format!(
                        "Invalid message sequence number {value}: the mailbox has {exists} messages"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Resolves `set` like [`Selection::resolve`], as sorted, disjoint
    /// ranges of indices, so a large set costs memory in proportion to its
    /// text, not to the mailbox.
    pub(crate) fn resolve_ranges(&self, set: &SequenceSet, uid: bool) -> Vec<Range<usize>> {
        let largest = if uid {
            self.uids.last().copied().unwrap_or(0)
        } else {
            count(self.uids.len())
        };
        let value = |bound: &SeqOrUid| match bound {
            SeqOrUid::Value(value) => value.get(),
            SeqOrUid::Asterisk => largest,
        };

        let mut ranges: Vec<Range<usize>> = Vec::with_capacity(set.0.as_ref().len());
        for sequence in set.0.as_ref() {
            let (a, b) = match sequence {
                Sequence::Single(single) => (value(single), value(single)),
                Sequence::Range(from, to) => (value(from), value(to)),
            };
            let (low, high) = (a.min(b), a.max(b));
            let range = if uid {
                let start = self.uids.partition_point(|&u| u < low);
                let end = self.uids.partition_point(|&u| u <= high);
                start..end
            } else {
                let start = (low.max(1) - 1) as usize;
                let end = (high as usize).min(self.uids.len());
                start..end
            };
            if !range.is_empty() {
                ranges.push(range);
            }
        }

        // Merge overlapping and adjacent ranges, so a set repeating `1:*`
        // costs no more than one `1:*`.
        ranges.sort_unstable_by_key(|range| (range.start, range.end));
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for range in ranges {
            match merged.last_mut() {
                Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
                _ => merged.push(range),
            }
        }
        merged
    }
}

/// Converts an index into the view to a sequence number.
pub(crate) fn sequence_number(index: usize) -> u32 {
    count(index).saturating_add(1)
}

/// Converts a count to u32, saturating. A folder cannot have more than
/// `u32::MAX` messages because UIDs are u32.
pub(crate) fn count(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use chrono::DateTime;

    use super::*;
    use crate::store::{AccountSpec, INBOX, Store, StoredMessage};

    fn message() -> Arc<StoredMessage> {
        Arc::new(StoredMessage {
            raw: Bytes::from_static(b"Subject: x\r\n\r\nbody\r\n"),
            internal_date: DateTime::UNIX_EPOCH.fixed_offset(),
            tag: None,
        })
    }

    fn store_with(messages: usize) -> Arc<crate::store::Account> {
        let store = Store::new();
        let account = store
            .add_account(AccountSpec::new("a@example.com", "pw"))
            .unwrap();
        for _ in 0..messages {
            account.append_to_inbox(message());
        }
        account
    }

    fn set(text: &str) -> SequenceSet {
        SequenceSet::try_from(text).unwrap()
    }

    #[test]
    fn open_claims_recent_once() {
        let account = store_with(3);
        let (first, summary) = Selection::open(&mut account.mailboxes(), INBOX, false).unwrap();
        assert_eq!(summary.recent, 3);
        assert!(first.is_recent(1));
        let (_, again) = Selection::open(&mut account.mailboxes(), INBOX, false).unwrap();
        assert_eq!(again.recent, 0);
    }

    #[test]
    fn examine_leaves_recent() {
        let account = store_with(2);
        Selection::open(&mut account.mailboxes(), INBOX, true).unwrap();
        let (_, summary) = Selection::open(&mut account.mailboxes(), INBOX, false).unwrap();
        assert_eq!(summary.recent, 2);
    }

    #[test]
    fn sync_reports_expunges_highest_first() {
        let account = store_with(5);
        let (mut view, _) = Selection::open(&mut account.mailboxes(), INBOX, false).unwrap();
        account.modify(|m| m.inbox_mut().expunge_where(|e| e.uid == 2 || e.uid == 4));
        let changes = view.sync(&mut account.mailboxes(), true).unwrap();
        let expunged: Vec<u32> = changes.expunged.iter().map(|n| n.get()).collect();
        assert_eq!(expunged, vec![4, 2]);
        assert_eq!(view.len(), 3);
        assert_eq!(view.sequence_of(5).map(NonZeroU32::get), Some(3));
    }

    #[test]
    fn sync_defers_expunges_when_not_allowed() {
        let account = store_with(2);
        let (mut view, _) = Selection::open(&mut account.mailboxes(), INBOX, false).unwrap();
        account.modify(|m| m.inbox_mut().expunge_where(|e| e.uid == 1));
        account.append_to_inbox(message());
        let changes = view.sync(&mut account.mailboxes(), false).unwrap();
        assert!(changes.expunged.is_empty());
        assert_eq!(changes.exists, Some(3));
        let later = view.sync(&mut account.mailboxes(), true).unwrap();
        assert_eq!(later.expunged, vec![NonZeroU32::MIN]);
        assert_eq!(later.exists, None);
    }

    #[test]
    fn sync_detects_uid_validity_reset() {
        let account = store_with(1);
        let (mut view, _) = Selection::open(&mut account.mailboxes(), INBOX, false).unwrap();
        account.modify(|m| m.reset_uid_validity(INBOX)).unwrap();
        assert_eq!(
            view.sync(&mut account.mailboxes(), true),
            Err(Lost::UidValidityChanged)
        );
    }

    #[test]
    fn resolve_sequence_numbers_clips_to_view() {
        let account = store_with(4);
        let (view, _) = Selection::open(&mut account.mailboxes(), INBOX, false).unwrap();
        assert_eq!(view.resolve(&set("2:*"), false), vec![1, 2, 3]);
        assert_eq!(view.resolve(&set("3,1,3:9"), false), vec![0, 2, 3]);
        assert_eq!(view.resolve(&set("7"), false), Vec::<usize>::new());
    }

    #[test]
    fn resolve_ranges_merges_overlaps() {
        let account = store_with(6);
        let (view, _) = Selection::open(&mut account.mailboxes(), INBOX, false).unwrap();
        assert_eq!(
            view.resolve_ranges(&set("1:2,3,5:*,6,2:3"), false),
            vec![0..3, 4..6]
        );
        assert_eq!(view.resolve_ranges(&set("1:*,1:*"), true), vec![0..6]);
    }

    #[test]
    fn resolve_uid_range_past_end_includes_last() {
        let account = store_with(3);
        account.modify(|m| m.inbox_mut().expunge_where(|e| e.uid == 2));
        let (view, _) = Selection::open(&mut account.mailboxes(), INBOX, false).unwrap();
        // RFC 3501 6.4.8: `*` is the largest UID, so 9:* is 3:9.
        assert_eq!(view.resolve(&set("9:*"), true), vec![1]);
        assert_eq!(view.resolve(&set("2"), true), Vec::<usize>::new());
        assert_eq!(view.resolve(&set("1:*,1:*"), true), vec![0, 1]);
    }
}
