//! STORE and UID STORE (RFC 3501 6.4.6), and conversions between stored
//! flags and their IMAP form.

use std::num::NonZeroU32;

use imap_codec::imap_types::core::{Atom, Vec1};
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::flag::{Flag, FlagFetch, StoreResponse, StoreType};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::sequence::SequenceSet;
use tokio::io::{AsyncRead, AsyncWrite};

use super::output::Disconnect;
use super::response::{Completion, ExtendedCode};
use super::session::{Session, wrong_state};
use crate::store::{Flags, SystemFlags};

/// Lists the FLAGS of a message as FETCH sends them, `\Recent` included.
pub(crate) fn fetch_flags(flags: &Flags, recent: bool) -> Vec<FlagFetch<'static>> {
    let mut list = Vec::with_capacity(6 + flags.keywords.len());
    let system = [
        (SystemFlags::SEEN, Flag::Seen),
        (SystemFlags::ANSWERED, Flag::Answered),
        (SystemFlags::FLAGGED, Flag::Flagged),
        (SystemFlags::DELETED, Flag::Deleted),
        (SystemFlags::DRAFT, Flag::Draft),
    ];
    for (bit, flag) in system {
        if flags.system.contains(bit) {
            list.push(FlagFetch::Flag(flag));
        }
    }
    for keyword in &flags.keywords {
        if let Ok(atom) = Atom::try_from(keyword.clone()) {
            list.push(FlagFetch::Flag(Flag::Keyword(atom)));
        }
    }
    if recent {
        list.push(FlagFetch::Recent);
    }
    list
}

/// Converts the flag list of STORE or APPEND to stored flags. `\Recent` and other
/// unknown system flags cannot be set by a client and are an error.
pub(crate) fn stored_flags(flags: &[Flag<'_>]) -> Result<Flags, Completion> {
    let mut stored = Flags::default();
    for flag in flags {
        match flag {
            Flag::Seen => stored.system.insert(SystemFlags::SEEN),
            Flag::Answered => stored.system.insert(SystemFlags::ANSWERED),
            Flag::Flagged => stored.system.insert(SystemFlags::FLAGGED),
            Flag::Deleted => stored.system.insert(SystemFlags::DELETED),
            Flag::Draft => stored.system.insert(SystemFlags::DRAFT),
            Flag::Keyword(atom) => {
                stored.keywords.insert(atom.inner().to_owned());
            }
            Flag::Extension(_) => {
                return Err(Completion::bad(format!("Flag {flag} cannot be set")));
            }
        }
    }
    Ok(stored)
}

/// Applies a STORE to `flags` and returns whether they changed.
fn apply(flags: &mut Flags, kind: StoreType, change: &Flags) -> bool {
    let before = flags.clone();
    match kind {
        StoreType::Replace => *flags = change.clone(),
        StoreType::Add => {
            flags.system.insert(change.system);
            flags.keywords.extend(change.keywords.iter().cloned());
        }
        StoreType::Remove => {
            flags.system.remove(change.system);
            for keyword in &change.keywords {
                flags.keywords.remove(keyword);
            }
        }
    }
    *flags != before
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// STORE and UID STORE. Unless `.SILENT`, each message's new flags are
    /// sent back in an untagged FETCH, with its UID for UID STORE.
    pub(super) async fn store(
        &mut self,
        set: SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: Vec<Flag<'static>>,
        uid: bool,
    ) -> Result<Completion, Disconnect> {
        let Some((login, selection)) = self.selected() else {
            return Ok(wrong_state(&self.state));
        };
        if selection.read_only {
            return Ok(Completion::no_with(
                ExtendedCode::Cannot.code(),
                "Mailbox is read-only",
            ));
        }
        let change = match stored_flags(&flags) {
            Ok(change) => change,
            Err(reply) => return Ok(reply),
        };

        if let Err(reply) = selection.check_sequence_numbers(&set, uid) {
            return Ok(reply);
        }
        let targets: Vec<(NonZeroU32, u32, bool)> = selection
            .resolve(&set, uid)
            .into_iter()
            .filter_map(|index| {
                let uid = selection.uid(index)?;
                let sequence = selection.sequence_of(uid)?;
                Some((sequence, uid, selection.is_recent(uid)))
            })
            .collect();
        let name = selection.name.clone();
        let account = std::sync::Arc::clone(login.account());

        // Change the flags under the lock; reply after releasing it.
        let mut results = Vec::with_capacity(targets.len());
        let mut missing = false;
        account.modify(|mailboxes| {
            let Some(folder) = mailboxes.folder_mut(&name) else {
                missing = true;
                return;
            };
            for &(sequence, uid, recent) in &targets {
                match folder.position(uid) {
                    Some(position) => {
                        let entry = &mut folder.messages_mut()[position];
                        apply(&mut entry.flags, kind, &change);
                        results.push((sequence, uid, entry.flags.clone(), recent));
                    }
                    None => missing = true,
                }
            }
        });

        if response == StoreResponse::Answer {
            for (sequence, message_uid, flags, recent) in results {
                let mut items = Vec::with_capacity(2);
                items.push(MessageDataItem::Flags(fetch_flags(&flags, recent)));
                if uid && let Some(message_uid) = NonZeroU32::new(message_uid) {
                    items.push(MessageDataItem::Uid(message_uid));
                }
                let Ok(items) = Vec1::try_from(items) else {
                    continue;
                };
                let data = Data::Fetch {
                    seq: sequence,
                    items,
                };
                self.out.send(&Response::Data(data)).await?;
            }
        }
        if missing && !uid {
            return Ok(Completion::no_with(
                ExtendedCode::ExpungeIssue.code(),
                "Some messages were expunged by another session",
            ));
        }
        Ok(Completion::ok("STORE completed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_remove_keep_other_flags() {
        let mut flags = Flags::with_system(SystemFlags::SEEN);
        let change = stored_flags(&[Flag::Deleted]).unwrap();
        assert!(apply(&mut flags, StoreType::Add, &change));
        assert!(flags.system.contains(SystemFlags::SEEN));
        assert!(flags.system.contains(SystemFlags::DELETED));
        assert!(apply(&mut flags, StoreType::Remove, &change));
        assert!(!flags.system.contains(SystemFlags::DELETED));
        assert!(!apply(&mut flags, StoreType::Remove, &change));
    }

    #[test]
    fn replace_sets_keywords() {
        let mut flags = Flags::with_system(SystemFlags::SEEN);
        let change = stored_flags(&[Flag::Keyword(Atom::try_from("$Done").unwrap())]).unwrap();
        apply(&mut flags, StoreType::Replace, &change);
        assert!(flags.system.is_empty());
        assert!(flags.keywords.contains("$Done"));
    }

    #[test]
    fn recent_cannot_be_stored() {
        let recent = Flag::try_from("\\Recent").unwrap();
        assert!(stored_flags(&[recent]).is_err());
    }

    #[test]
    fn fetch_flags_list_recent_last() {
        let flags = Flags::with_system(SystemFlags::SEEN);
        assert_eq!(
            fetch_flags(&flags, true),
            vec![FlagFetch::Flag(Flag::Seen), FlagFetch::Recent]
        );
    }
}
