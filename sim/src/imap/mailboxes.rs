//! Mailbox management: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE,
//! LIST, LSUB and STATUS.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::Arc;

use imap_codec::imap_types::core::QuotedChar;
use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};
use tokio::io::{AsyncRead, AsyncWrite};

use super::output::Disconnect;
use super::response::{Completion, ExtendedCode};
use super::selection::count;
use super::session::{Session, wrong_state};
use crate::store::{Account, HIERARCHY_DELIMITER, INBOX, StoreError, SystemFlags};

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Returns the logged-in account, or the reply for a session without one.
    pub(super) fn account(&self) -> Result<Arc<Account>, Completion> {
        match self.login() {
            Some(login) => Ok(Arc::clone(login.account())),
            None => Err(wrong_state(&self.state)),
        }
    }

    /// CREATE; missing parent levels are created as well.
    pub(super) fn create(&mut self, mailbox: Mailbox<'static>) -> Completion {
        let (account, name) = match self.account_and_name(&mailbox) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        match account.modify(|mailboxes| mailboxes.create(&name)) {
            Ok(()) => Completion::ok("CREATE completed"),
            Err(error) => store_error(error),
        }
    }

    /// DELETE; INBOX cannot be deleted.
    pub(super) fn delete(&mut self, mailbox: Mailbox<'static>) -> Completion {
        let (account, name) = match self.account_and_name(&mailbox) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        if name == INBOX {
            return Completion::no_with(ExtendedCode::Cannot.code(), "INBOX cannot be deleted");
        }
        match account.modify(|mailboxes| mailboxes.delete(&name)) {
            Ok(()) => Completion::ok("DELETE completed"),
            Err(error) => store_error(error),
        }
    }

    /// RENAME, with the folder's inferior levels (RFC 3501 6.3.5). Renaming
    /// INBOX moves its messages and leaves INBOX empty and its inferiors in place.
    pub(super) fn rename(&mut self, from: Mailbox<'static>, to: Mailbox<'static>) -> Completion {
        let (account, from) = match self.account_and_name(&from) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let to = match folder_name(&to) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        let result = account.modify(|mailboxes| {
            if mailboxes.folder(&from).is_none() {
                return Err(StoreError::UnknownFolder(from.clone()));
            }
            if mailboxes.folder(&to).is_some() {
                return Err(StoreError::DuplicateFolder(to.clone()));
            }
            create_parents(mailboxes, &to)?;
            mailboxes.rename(&from, &to)?;
            if from != INBOX {
                let prefix = format!("{from}{HIERARCHY_DELIMITER}");
                let inferiors: Vec<String> = mailboxes
                    .folder_names()
                    .filter(|name| name.starts_with(&prefix))
                    .map(str::to_owned)
                    .collect();
                for old in inferiors {
                    let new = format!("{to}{}", &old[from.len()..]);
                    mailboxes.rename(&old, &new)?;
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                if let Some((_, selection)) = self.selected()
                    && selection.name == from
                    && from != INBOX
                {
                    selection.name = to;
                }
                Completion::ok("RENAME completed")
            }
            Err(error) => store_error(error),
        }
    }

    /// SUBSCRIBE (`subscribe` true) and UNSUBSCRIBE.
    pub(super) fn subscribe(&mut self, mailbox: Mailbox<'static>, subscribe: bool) -> Completion {
        let (account, name) = match self.account_and_name(&mailbox) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        if subscribe {
            account.modify(|mailboxes| mailboxes.subscribe(&name));
            Completion::ok("SUBSCRIBE completed")
        } else {
            account.modify(|mailboxes| mailboxes.unsubscribe(&name));
            Completion::ok("UNSUBSCRIBE completed")
        }
    }

    /// LIST and LSUB (`lsub` true).
    pub(super) async fn list(
        &mut self,
        reference: Mailbox<'static>,
        pattern: ListMailbox<'static>,
        lsub: bool,
    ) -> Result<Completion, Disconnect> {
        let account = match self.account() {
            Ok(account) => account,
            Err(reply) => return Ok(reply),
        };
        let done = if lsub {
            "LSUB completed"
        } else {
            "LIST completed"
        };
        let (Ok(reference), Ok(pattern)) = (
            std::str::from_utf8(mailbox_bytes(&reference)),
            std::str::from_utf8(list_mailbox_bytes(&pattern)),
        ) else {
            return Ok(Completion::ok(done));
        };

        // RFC 3501 6.3.8: an empty pattern requests the delimiter.
        if pattern.is_empty() {
            if !lsub {
                let root = list_data(vec![FlagNameAttribute::Noselect], "", lsub);
                if let Some(root) = root {
                    self.out.send(&root).await?;
                }
            }
            return Ok(Completion::ok(done));
        }

        let full_pattern =
            crate::store::canonical_folder_name(&format!("{reference}{pattern}")).into_owned();
        let matches = {
            let mailboxes = account.mailboxes();
            if lsub {
                subscribed_matches(mailboxes.subscriptions(), &full_pattern)
            } else {
                mailboxes
                    .folder_names()
                    .filter(|name| matches_pattern(full_pattern.as_bytes(), name.as_bytes()))
                    .map(|name| (name.to_owned(), false))
                    .collect()
            }
        };
        for (name, no_select) in matches {
            let attributes = if no_select {
                vec![FlagNameAttribute::Noselect]
            } else {
                Vec::new()
            };
            if let Some(reply) = list_data(attributes, &name, lsub) {
                self.out.send(&reply).await?;
            }
        }
        Ok(Completion::ok(done))
    }

    /// STATUS.
    pub(super) async fn status(
        &mut self,
        mailbox: Mailbox<'static>,
        names: &[StatusDataItemName],
    ) -> Result<Completion, Disconnect> {
        let (account, name) = match self.account_and_name(&mailbox) {
            Ok(found) => found,
            Err(reply) => return Ok(reply),
        };
        let items = {
            let mailboxes = account.mailboxes();
            let Some(folder) = mailboxes.folder(&name) else {
                return Ok(nonexistent());
            };
            let deleted = || {
                folder
                    .messages()
                    .iter()
                    .filter(|entry| entry.flags.system.contains(SystemFlags::DELETED))
            };
            let mut items = Vec::with_capacity(names.len());
            for item in names {
                let value = match item {
                    StatusDataItemName::Messages => StatusDataItem::Messages(count(folder.len())),
                    StatusDataItemName::Recent => StatusDataItem::Recent(count(folder.recent())),
                    StatusDataItemName::UidNext => match NonZeroU32::new(folder.uid_next()) {
                        Some(next) => StatusDataItem::UidNext(next),
                        None => continue,
                    },
                    StatusDataItemName::UidValidity => match NonZeroU32::new(folder.uid_validity())
                    {
                        Some(validity) => StatusDataItem::UidValidity(validity),
                        None => continue,
                    },
                    StatusDataItemName::Unseen => StatusDataItem::Unseen(count(folder.unseen())),
                    StatusDataItemName::Deleted => {
                        StatusDataItem::Deleted(count(deleted().count()))
                    }
                    StatusDataItemName::DeletedStorage => StatusDataItem::DeletedStorage(
                        deleted().map(|e| e.message.size() as u64).sum(),
                    ),
                    #[allow(unreachable_patterns)]
                    _ => continue,
                };
                items.push(value);
            }
            items
        };
        let data = Data::Status {
            mailbox,
            items: Cow::Owned(items),
        };
        self.out.send(&Response::Data(data)).await?;
        Ok(Completion::ok("STATUS completed"))
    }

    fn account_and_name(
        &self,
        mailbox: &Mailbox<'_>,
    ) -> Result<(Arc<Account>, String), Completion> {
        let account = self.account()?;
        let name = folder_name(mailbox)?;
        Ok((account, name))
    }
}

/// Converts `mailbox` to the store's name: INBOX in any case, other names
/// as UTF-8.
pub(super) fn folder_name(mailbox: &Mailbox<'_>) -> Result<String, Completion> {
    match std::str::from_utf8(mailbox_bytes(mailbox)) {
        Ok(name) => Ok(crate::store::canonical_folder_name(name).into_owned()),
        Err(_) => Err(Completion::no_with(
            ExtendedCode::Cannot.code(),
            "Mailbox name is not valid UTF-8",
        )),
    }
}

/// Builds the NO reply for a mailbox that does not exist.
pub(super) fn nonexistent() -> Completion {
    Completion::no_with(ExtendedCode::Nonexistent.code(), "Mailbox does not exist")
}

fn mailbox_bytes<'a>(mailbox: &'a Mailbox<'_>) -> &'a [u8] {
    match mailbox {
        Mailbox::Inbox => INBOX.as_bytes(),
        Mailbox::Other(other) => other.as_ref(),
    }
}

fn list_mailbox_bytes<'a>(pattern: &'a ListMailbox<'_>) -> &'a [u8] {
    match pattern {
        ListMailbox::Token(token) => token.as_ref(),
        ListMailbox::String(string) => string.as_ref(),
    }
}

fn store_error(error: StoreError) -> Completion {
    match error {
        StoreError::UnknownFolder(_) | StoreError::UnknownAccount(_) => nonexistent(),
        StoreError::DuplicateFolder(_) | StoreError::DuplicateAccount(_) => {
            Completion::no_with(ExtendedCode::AlreadyExists.code(), "Mailbox already exists")
        }
        StoreError::InvalidFolderName(_) | StoreError::ForwardLoop(_) => {
            Completion::no_with(ExtendedCode::Cannot.code(), "Invalid mailbox name")
        }
    }
}

/// Creates every missing level above `name`, as RENAME must (RFC 3501 6.3.5).
fn create_parents(mailboxes: &mut crate::store::Mailboxes, name: &str) -> Result<(), StoreError> {
    let mut end = 0;
    while let Some(offset) = name[end..].find(HIERARCHY_DELIMITER) {
        let parent = &name[..end + offset];
        if !parent.is_empty() && mailboxes.folder(parent).is_none() {
            mailboxes.create(parent)?;
        }
        end += offset + HIERARCHY_DELIMITER.len_utf8();
    }
    Ok(())
}

/// Builds one LIST or LSUB response, or `None` for a name that cannot be sent.
fn list_data(
    items: Vec<FlagNameAttribute<'static>>,
    name: &str,
    lsub: bool,
) -> Option<Response<'static>> {
    let mailbox = Mailbox::try_from(name.to_owned()).ok()?;
    let delimiter = QuotedChar::try_from(HIERARCHY_DELIMITER).ok();
    let data = if lsub {
        Data::Lsub {
            items,
            delimiter,
            mailbox,
        }
    } else {
        Data::List {
            items,
            delimiter,
            mailbox,
        }
    };
    Some(Response::Data(data))
}

/// Subscribed names matching `pattern`, with `true` for parent levels that
/// match only through `%` and are not subscribed themselves (RFC 3501 6.3.9).
fn subscribed_matches<'a>(
    subscriptions: impl Iterator<Item = &'a str>,
    pattern: &str,
) -> BTreeMap<String, bool> {
    let subscribed: BTreeSet<&str> = subscriptions.collect();
    let mut matches = BTreeMap::new();
    for name in &subscribed {
        if matches_pattern(pattern.as_bytes(), name.as_bytes()) {
            matches.insert((*name).to_owned(), false);
        }
        for (offset, _) in name.match_indices(HIERARCHY_DELIMITER) {
            let parent = &name[..offset];
            if !subscribed.contains(parent)
                && matches_pattern(pattern.as_bytes(), parent.as_bytes())
            {
                matches.entry(parent.to_owned()).or_insert(true);
            }
        }
    }
    matches
}

/// LIST pattern matching: `*` matches anything, `%` anything but the
/// hierarchy delimiter (RFC 3501 6.3.8). Runs in O(pattern × name) time.
pub(super) fn matches_pattern(pattern: &[u8], name: &[u8]) -> bool {
    let delimiter = HIERARCHY_DELIMITER as u8;
    // reachable[j]: the pattern prefix read so far matches name[..j].
    let mut reachable = vec![false; name.len() + 1];
    reachable[0] = true;
    for &symbol in pattern {
        let mut next = vec![false; name.len() + 1];
        match symbol {
            b'*' | b'%' => {
                let mut open = false;
                for j in 0..=name.len() {
                    open |= reachable[j];
                    next[j] = open;
                    if symbol == b'%' && name.get(j) == Some(&delimiter) {
                        open = false;
                    }
                }
            }
            literal => {
                for j in 0..name.len() {
                    next[j + 1] = reachable[j] && name[j] == literal;
                }
            }
        }
        reachable = next;
    }
    reachable[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_across_levels() {
        assert!(matches_pattern(b"*", b"a/b/c"));
        assert!(matches_pattern(b"a/*", b"a/b/c"));
        assert!(!matches_pattern(b"b*", b"a/b"));
    }

    #[test]
    fn percent_stops_at_delimiter() {
        assert!(matches_pattern(b"%", b"Archive"));
        assert!(!matches_pattern(b"%", b"Archive/2024"));
        assert!(matches_pattern(b"Archive/%", b"Archive/2024"));
        assert!(matches_pattern(b"A%e", b"Archive"));
    }

    #[test]
    fn literal_pattern_matches_exactly() {
        assert!(matches_pattern(b"INBOX", b"INBOX"));
        assert!(!matches_pattern(b"INBOX", b"INBOX/x"));
        assert!(!matches_pattern(b"", b"INBOX"));
    }

    #[test]
    fn lsub_reports_unsubscribed_parents_as_noselect() {
        let matches = subscribed_matches(["a/b", "c"].into_iter(), "%");
        assert_eq!(matches.get("a"), Some(&true));
        assert_eq!(matches.get("c"), Some(&false));
        assert_eq!(matches.get("a/b"), None);
    }
}
