//! The POP3 maildrop: a snapshot of INBOX taken at login, with deletion marks.
//!
//! Message numbers index the snapshot, so they stay fixed for the whole
//! session while other sessions and deliveries change INBOX (RFC 1939
//! section 3). Deletions are marks until QUIT applies them to the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::response::{UniqueId, transmitted_size};
use crate::store::{Folder, Mailboxes, StoredMessage};

/// The reason a message number cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// No message has this number.
    NoSuchMessage,
    /// The message is marked as deleted.
    Deleted,
}

/// One message of the maildrop.
#[derive(Clone, Debug)]
pub struct MaildropEntry {
    /// The message's UID in INBOX when the maildrop was opened.
    pub uid: u32,
    /// The shared message bytes.
    pub message: Arc<StoredMessage>,
    /// Size in octets as RETR sends it, before dot-stuffing.
    pub octets: u64,
    deleted: bool,
}

/// The view of INBOX that one POP3 session works on.
#[derive(Debug)]
pub struct Maildrop {
    uid_validity: u32,
    entries: Vec<MaildropEntry>,
}

impl Maildrop {
    /// Takes a snapshot of `inbox`.
    pub fn snapshot(inbox: &Folder) -> Self {
        let entries = inbox
            .messages()
            .iter()
            .map(|entry| MaildropEntry {
                uid: entry.uid,
                message: Arc::clone(&entry.message),
                octets: transmitted_size(&entry.message.raw),
                deleted: false,
            })
            .collect();
        Self {
            uid_validity: inbox.uid_validity(),
            entries,
        }
    }

    /// Returns the number and total size of the messages not marked as deleted.
    pub fn stat(&self) -> (usize, u64) {
        self.listing().fold((0, 0), |(count, octets), (_, entry)| {
            (count + 1, octets + entry.octets)
        })
    }

    /// Returns the message numbered `number` (from 1), unless it is marked
    /// as deleted.
    pub fn get(&self, number: u32) -> Result<&MaildropEntry, MessageError> {
        let entry = index(number)
            .and_then(|index| self.entries.get(index))
            .ok_or(MessageError::NoSuchMessage)?;
        if entry.deleted {
            return Err(MessageError::Deleted);
        }
        Ok(entry)
    }

    /// Marks message `number` as deleted.
    pub fn delete(&mut self, number: u32) -> Result<(), MessageError> {
        let entry = index(number)
            .and_then(|index| self.entries.get_mut(index))
            .ok_or(MessageError::NoSuchMessage)?;
        if entry.deleted {
            return Err(MessageError::Deleted);
        }
        entry.deleted = true;
        Ok(())
    }

    /// Removes every deletion mark.
    pub fn reset(&mut self) {
        for entry in &mut self.entries {
            entry.deleted = false;
        }
    }

    /// Returns the message numbers and entries not marked as deleted, in
    /// ascending order.
    pub fn listing(&self) -> impl Iterator<Item = (u32, &MaildropEntry)> {
        (1u32..)
            .zip(&self.entries)
            .filter(|(_, entry)| !entry.deleted)
    }

    /// Returns the unique id of `entry`.
    pub fn unique_id(&self, entry: &MaildropEntry) -> UniqueId {
        UniqueId {
            uid_validity: self.uid_validity,
            uid: entry.uid,
        }
    }

    /// Returns true when some message is marked as deleted.
    pub fn has_deletions(&self) -> bool {
        self.entries.iter().any(|entry| entry.deleted)
    }

    /// Removes the messages marked as deleted from `mailboxes`' INBOX and
    /// returns how many messages INBOX has left.
    ///
    /// A message matches by UID and by identity of its stored bytes, so a
    /// message expunged by IMAP in the meantime is skipped. After a
    /// UIDVALIDITY reset the UIDs no longer match, and identity alone decides.
    pub fn apply_deletions(&self, mailboxes: &mut Mailboxes) -> usize {
        let inbox = mailboxes.inbox_mut();
        let same_uids = inbox.uid_validity() == self.uid_validity;
        let deleted = self.entries.iter().filter(|entry| entry.deleted);
        if same_uids {
            let by_uid: BTreeMap<u32, &Arc<StoredMessage>> =
                deleted.map(|entry| (entry.uid, &entry.message)).collect();
            inbox.expunge_where(|stored| {
                by_uid
                    .get(&stored.uid)
                    .is_some_and(|message| Arc::ptr_eq(message, &stored.message))
            });
        } else {
            // NOTE: an IMAP COPY from INBOX to INBOX shares the stored
            // bytes, so after a UIDVALIDITY reset both copies are removed.
            let by_identity: BTreeSet<*const StoredMessage> =
                deleted.map(|entry| Arc::as_ptr(&entry.message)).collect();
            inbox.expunge_where(|stored| by_identity.contains(&Arc::as_ptr(&stored.message)));
        }
        inbox.len()
    }
}

/// Converts a message number (from 1) to an index into the snapshot.
fn index(number: u32) -> Option<usize> {
    usize::try_from(number).ok()?.checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AccountSpec, INBOX, Store};
    use bytes::Bytes;
    use chrono::DateTime;

    fn store_with(messages: &[&'static str]) -> Arc<crate::store::Account> {
        let store = Store::new();
        let account = store
            .add_account(AccountSpec::new("a@example.com", "pw"))
            .unwrap();
        for text in messages {
            account.append_to_inbox(Arc::new(StoredMessage {
                raw: Bytes::from_static(text.as_bytes()),
                internal_date: DateTime::UNIX_EPOCH.fixed_offset(),
                tag: None,
            }));
        }
        account
    }

    #[test]
    fn deleted_messages_leave_listing_and_stat() {
        let account = store_with(&["a\r\n", "bb\r\n", "ccc\r\n"]);
        let mut maildrop = Maildrop::snapshot(account.mailboxes().inbox());
        assert_eq!(maildrop.stat(), (3, 12));
        maildrop.delete(2).unwrap();
        assert_eq!(maildrop.stat(), (2, 8));
        assert_eq!(maildrop.get(2).unwrap_err(), MessageError::Deleted);
        assert_eq!(maildrop.delete(2).unwrap_err(), MessageError::Deleted);
        let numbers: Vec<u32> = maildrop.listing().map(|(number, _)| number).collect();
        assert_eq!(numbers, [1, 3]);
        maildrop.reset();
        assert_eq!(maildrop.stat(), (3, 12));
    }

    #[test]
    fn out_of_range_numbers_are_rejected() {
        let account = store_with(&["a\r\n"]);
        let maildrop = Maildrop::snapshot(account.mailboxes().inbox());
        assert_eq!(maildrop.get(0).unwrap_err(), MessageError::NoSuchMessage);
        assert_eq!(maildrop.get(2).unwrap_err(), MessageError::NoSuchMessage);
        assert_eq!(
            maildrop.get(u32::MAX).unwrap_err(),
            MessageError::NoSuchMessage
        );
    }

    #[test]
    fn deletions_survive_uid_validity_reset() {
        let account = store_with(&["a\r\n", "b\r\n", "c\r\n"]);
        let mut maildrop = Maildrop::snapshot(account.mailboxes().inbox());
        maildrop.delete(2).unwrap();
        account.modify(|m| m.inbox_mut().expunge_where(|entry| entry.uid == 1));
        account.modify(|m| m.reset_uid_validity(INBOX)).unwrap();
        let remaining = account.modify(|m| maildrop.apply_deletions(m));
        assert_eq!(remaining, 1);
        let inbox = account.mailboxes();
        assert_eq!(&inbox.inbox().messages()[0].message.raw[..], b"c\r\n");
    }

    #[test]
    fn deletions_skip_messages_expunged_elsewhere() {
        let account = store_with(&["a\r\n", "b\r\n"]);
        let mut maildrop = Maildrop::snapshot(account.mailboxes().inbox());
        maildrop.delete(1).unwrap();
        account.modify(|m| m.inbox_mut().expunge_where(|entry| entry.uid == 1));
        let remaining = account.modify(|m| maildrop.apply_deletions(m));
        assert_eq!(remaining, 1);
    }
}
