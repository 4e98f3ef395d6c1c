//! COPY, UID COPY and APPEND, with the UIDPLUS response codes COPYUID and
//! APPENDUID (RFC 4315).

use std::num::NonZeroU32;
use std::sync::Arc;

use bytes::Bytes;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::Code;
use imap_codec::imap_types::sequence::SequenceSet;
use tokio::io::{AsyncRead, AsyncWrite};

use super::flags::stored_flags;
use super::mailboxes::folder_name;
use super::response::{Completion, ExtendedCode};
use super::session::{Session, wrong_state};
use crate::store::{Flags, StoredMessage};

/// Reason a COPY changed nothing.
enum CopyFailure {
    /// The target folder does not exist.
    NoTarget,
    /// Some source messages were expunged by another session.
    Expunged,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// COPY and UID COPY. Copies keep flags and internal date, share the
    /// stored bytes and are `\Recent` in the target. Either every message
    /// is copied or none.
    pub(super) fn copy(
        &mut self,
        set: SequenceSet,
        mailbox: Mailbox<'static>,
        uid: bool,
    ) -> Completion {
        let Some((login, selection)) = self.selected() else {
            return wrong_state(&self.state);
        };
        let target = match folder_name(&mailbox) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        if let Err(reply) = selection.check_sequence_numbers(&set, uid) {
            return reply;
        }
        let uids: Vec<u32> = selection
            .resolve(&set, uid)
            .into_iter()
            .filter_map(|index| selection.uid(index))
            .collect();
        let source = selection.name.clone();
        let account = Arc::clone(login.account());

        let result = account.modify(|mailboxes| {
            let folder = mailboxes.folder(&source).ok_or(CopyFailure::Expunged)?;
            let mut copies: Vec<(u32, Arc<StoredMessage>, Flags)> = Vec::with_capacity(uids.len());
            for &message_uid in &uids {
                match folder.get(message_uid) {
                    Some(entry) => {
                        copies.push((message_uid, Arc::clone(&entry.message), entry.flags.clone()))
                    }
                    None if !uid => return Err(CopyFailure::Expunged),
                    None => {}
                }
            }
            let target = mailboxes.folder_mut(&target).ok_or(CopyFailure::NoTarget)?;
            let pairs: Vec<(u32, u32)> = copies
                .into_iter()
                .map(|(source_uid, message, flags)| (source_uid, target.append(message, flags)))
                .collect();
            Ok((target.uid_validity(), pairs))
        });

        match result {
            Ok((uid_validity, pairs)) => {
                let sources: Vec<u32> = pairs.iter().map(|(source, _)| *source).collect();
                let targets: Vec<u32> = pairs.iter().map(|(_, target)| *target).collect();
                match (
                    NonZeroU32::new(uid_validity),
                    uid_set(&sources),
                    uid_set(&targets),
                ) {
                    (Some(uid_validity), Some(source), Some(destination)) => Completion::ok_with(
                        Code::CopyUid {
                            uid_validity,
                            source,
                            destination,
                        },
                        "COPY completed",
                    ),
                    _ => Completion::ok("COPY completed"),
                }
            }
            Err(CopyFailure::NoTarget) => {
                Completion::no_with(Code::TryCreate, "Mailbox does not exist")
            }
            Err(CopyFailure::Expunged) => Completion::no_with(
                ExtendedCode::ExpungeIssue.code(),
                "Some messages were expunged by another session",
            ),
        }
    }

    /// APPEND: stores the message with the given flags and internal date
    /// (the current time when absent). The message is `\Recent`.
    pub(super) fn append(
        &mut self,
        mailbox: Mailbox<'static>,
        flags: Vec<Flag<'static>>,
        date: Option<DateTime>,
        message: LiteralOrLiteral8<'static>,
    ) -> Completion {
        let account = match self.account() {
            Ok(account) => account,
            Err(reply) => return reply,
        };
        let name = match folder_name(&mailbox) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        let flags = match stored_flags(&flags) {
            Ok(flags) => flags,
            Err(reply) => return reply,
        };
        let raw = match message {
            LiteralOrLiteral8::Literal(literal) => Bytes::from(literal.into_inner().into_owned()),
            LiteralOrLiteral8::Literal8(_) => return Completion::no("BINARY is not supported"),
        };
        let internal_date = match date {
            Some(date) => *date.as_ref(),
            None => self.service.clock().now().fixed_offset(),
        };
        let stored = Arc::new(StoredMessage::new(raw, internal_date, None));
        let appended = account.modify(|mailboxes| {
            let folder = mailboxes.folder_mut(&name)?;
            let uid = folder.append(stored, flags);
            Some((folder.uid_validity(), uid))
        });
        let Some((uid_validity, uid)) = appended else {
            return Completion::no_with(Code::TryCreate, "Mailbox does not exist");
        };
        match (NonZeroU32::new(uid_validity), NonZeroU32::new(uid)) {
            (Some(uid_validity), Some(uid)) => {
                Completion::ok_with(Code::AppendUid { uid_validity, uid }, "APPEND completed")
            }
            _ => Completion::ok("APPEND completed"),
        }
    }
}

/// Builds a UID set in the order given, with runs of consecutive UIDs
/// written as ranges; `None` for an empty list.
fn uid_set(uids: &[u32]) -> Option<UidSet> {
    let mut elements = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    for &uid in uids {
        run = match run {
            Some((start, end)) if end.checked_add(1) == Some(uid) => Some((start, uid)),
            Some(finished) => {
                elements.extend(uid_element(finished));
                Some((uid, uid))
            }
            None => Some((uid, uid)),
        };
    }
    if let Some(finished) = run {
        elements.extend(uid_element(finished));
    }
    Vec1::try_from(elements).ok().map(UidSet)
}

fn uid_element((start, end): (u32, u32)) -> Option<UidElement> {
    let start = NonZeroU32::new(start)?;
    let end = NonZeroU32::new(end)?;
    Some(if start == end {
        UidElement::Single(start)
    } else {
        UidElement::Range(start, end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(set: &UidSet) -> String {
        set.0
            .as_ref()
            .iter()
            .map(|element| match element {
                UidElement::Single(uid) => uid.to_string(),
                UidElement::Range(a, b) => format!("{a}:{b}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn uid_set_compresses_runs() {
        assert_eq!(
            render(&uid_set(&[1, 2, 3, 7, 9, 10]).unwrap()),
            "1:3,7,9:10"
        );
        assert_eq!(render(&uid_set(&[5]).unwrap()), "5");
        assert!(uid_set(&[]).is_none());
    }
}
