//! FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8).
//!
//! The handler holds the account lock only to take a snapshot: for each
//! requested message its UID, flags and a shared `Arc` of its bytes. It then
//! releases the lock and encodes the responses one by one into the
//! connection's buffer, so a FETCH of thousands of messages neither blocks
//! other sessions nor copies the store.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Timelike, Utc};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::core::{IString, Literal, NString, Vec1};
use imap_codec::imap_types::datetime::DateTime as ImapDateTime;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName,
};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::sequence::SequenceSet;
use tokio::io::{AsyncRead, AsyncWrite};

use super::flags::fetch_flags;
use super::message::MessageView;
use super::output::Disconnect;
use super::response::{Completion, ExtendedCode};
use super::session::{Session, wrong_state};
use crate::store::{Flags, Mailboxes, StoredMessage, SystemFlags};

/// One message as the FETCH saw it under the lock.
struct Snapshot {
    sequence: NonZeroU32,
    uid: NonZeroU32,
    recent: bool,
    /// Present when FLAGS is requested or this FETCH set `\Seen`.
    flags: Option<Flags>,
    /// This FETCH set `\Seen`, so FLAGS is sent even if not requested.
    seen_now: bool,
    message: Arc<StoredMessage>,
}

/// Requested items and the store access they need.
struct Plan {
    items: Vec<MessageDataItemName<'static>>,
    wants_flags: bool,
    /// A non-PEEK body item, RFC822 or RFC822.TEXT: sets `\Seen`.
    sets_seen: bool,
    /// Some item sends message bytes in a literal.
    sends_bytes: bool,
}

impl Plan {
    fn new(names: MacroOrMessageDataItemNames<'static>, uid: bool) -> Result<Self, Completion> {
        let requested: Vec<MessageDataItemName<'static>> = match names {
            MacroOrMessageDataItemNames::Macro(fetch_macro) => fetch_macro
                .expand()
                .into_iter()
                .map(IntoStatic::into_static)
                .collect(),
            MacroOrMessageDataItemNames::MessageDataItemNames(names) => names,
        };

        // UID FETCH always returns the UID, first (RFC 3501 6.4.8).
        let mut items = Vec::with_capacity(requested.len() + 1);
        if uid {
            items.push(MessageDataItemName::Uid);
        }
        for name in requested {
            if !items.contains(&name) {
                items.push(name);
            }
        }

        let mut plan = Self {
            wants_flags: false,
            sets_seen: false,
            sends_bytes: false,
            items: Vec::new(),
        };
        for item in &items {
            match item {
                MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => {
                    return Err(Completion::bad("BINARY is not supported"));
                }
                MessageDataItemName::Flags => plan.wants_flags = true,
                MessageDataItemName::BodyExt { peek, .. } => {
                    plan.sends_bytes = true;
                    plan.sets_seen |= !peek;
                }
                MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => {
                    plan.sends_bytes = true;
                    plan.sets_seen = true;
                }
                MessageDataItemName::Rfc822Header => plan.sends_bytes = true,
                _ => {}
            }
        }
        plan.items = items;
        Ok(plan)
    }
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// FETCH and UID FETCH.
    pub(super) async fn fetch(
        &mut self,
        set: SequenceSet,
        names: MacroOrMessageDataItemNames<'static>,
        uid: bool,
    ) -> Result<Completion, Disconnect> {
        let Some((login, selection)) = self.selected() else {
            return Ok(wrong_state(&self.state));
        };
        let mut plan = match Plan::new(names, uid) {
            Ok(plan) => plan,
            Err(reply) => return Ok(reply),
        };
        plan.sets_seen &= !selection.read_only;

        if let Err(reply) = selection.check_sequence_numbers(&set, uid) {
            return Ok(reply);
        }
        let targets: Vec<(NonZeroU32, u32, bool)> = selection
            .resolve(&set, uid)
            .into_iter()
            .filter_map(|index| {
                let uid = selection.uid(index)?;
                Some((selection.sequence_of(uid)?, uid, selection.is_recent(uid)))
            })
            .collect();
        let name = selection.name.clone();
        let account = Arc::clone(login.account());

        let take = |mailboxes: &mut Mailboxes| snapshot(mailboxes, &name, &targets, &plan);
        let (snapshots, missing) = if plan.sets_seen {
            account.modify(take)
        } else {
            take(&mut account.mailboxes())
        };

        let cut_literal = self.faults.reset_mid_fetch && plan.sends_bytes;
        for snapshot in &snapshots {
            let view = MessageView::new(&snapshot.message.raw);
            let response = fetch_response(snapshot, &view, &plan);
            self.out.send_fetch(&response, cut_literal).await?;
        }

        if plan.sends_bytes && !snapshots.is_empty() {
            account
                .throttle()
                .charge_messages(snapshots.len(), tokio::time::Instant::now());
        }

        if missing && !uid {
            // RFC 2180 4.1.2: the data that still exists is sent, then NO.
            return Ok(Completion::no_with(
                ExtendedCode::ExpungeIssue.code(),
                "Some messages were expunged by another session",
            ));
        }
        Ok(Completion::ok("FETCH completed"))
    }
}

/// Takes the snapshot under the account lock, setting `\Seen` when the
/// plan requires it. Returns the snapshots and whether some messages were gone.
fn snapshot(
    mailboxes: &mut Mailboxes,
    name: &str,
    targets: &[(NonZeroU32, u32, bool)],
    plan: &Plan,
) -> (Vec<Snapshot>, bool) {
    let Some(folder) = mailboxes.folder_mut(name) else {
        return (Vec::new(), !targets.is_empty());
    };
    let mut snapshots = Vec::with_capacity(targets.len());
    let mut missing = false;
    for &(sequence, uid, recent) in targets {
        let (Some(position), Some(uid_value)) = (folder.position(uid), NonZeroU32::new(uid)) else {
            missing = true;
            continue;
        };
        let entry = &mut folder.messages_mut()[position];
        let seen_now = plan.sets_seen && !entry.flags.system.contains(SystemFlags::SEEN);
        if seen_now {
            entry.flags.system.insert(SystemFlags::SEEN);
        }
        let flags = (plan.wants_flags || seen_now).then(|| entry.flags.clone());
        snapshots.push(Snapshot {
            sequence,
            uid: uid_value,
            recent,
            flags,
            seen_now,
            message: Arc::clone(&entry.message),
        });
    }
    (snapshots, missing)
}

/// Builds the FETCH response for one message.
fn fetch_response<'a>(
    snapshot: &'a Snapshot,
    view: &'a MessageView<'a>,
    plan: &'a Plan,
) -> Response<'a> {
    let mut items = Vec::with_capacity(plan.items.len() + 1);
    for name in &plan.items {
        if let Some(item) = fetch_item(name, view, snapshot) {
            items.push(item);
        }
    }
    if snapshot.seen_now && !plan.wants_flags {
        let flags = snapshot
            .flags
            .as_ref()
            .map(|flags| fetch_flags(flags, snapshot.recent));
        items.push(MessageDataItem::Flags(flags.unwrap_or_default()));
    }
    let items =
        Vec1::try_from(items).unwrap_or_else(|_| Vec1::from(MessageDataItem::Uid(snapshot.uid)));
    Response::Data(Data::Fetch {
        seq: snapshot.sequence,
        items,
    })
}

fn fetch_item<'a>(
    name: &'a MessageDataItemName<'static>,
    view: &'a MessageView<'a>,
    snapshot: &'a Snapshot,
) -> Option<MessageDataItem<'a>> {
    let item = match name {
        MessageDataItemName::Uid => MessageDataItem::Uid(snapshot.uid),
        MessageDataItemName::Flags => {
            let flags = snapshot.flags.as_ref()?;
            MessageDataItem::Flags(fetch_flags(flags, snapshot.recent))
        }
        MessageDataItemName::InternalDate => {
            MessageDataItem::InternalDate(internal_date(&snapshot.message.internal_date))
        }
        MessageDataItemName::Rfc822Size => {
            MessageDataItem::Rfc822Size(u32::try_from(snapshot.message.size()).unwrap_or(u32::MAX))
        }
        MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(literal(Cow::Borrowed(view.raw()))),
        MessageDataItemName::Rfc822Header => {
            MessageDataItem::Rfc822Header(literal(Cow::Borrowed(view.header())))
        }
        MessageDataItemName::Rfc822Text => {
            MessageDataItem::Rfc822Text(literal(Cow::Borrowed(view.text())))
        }
        MessageDataItemName::Envelope => MessageDataItem::Envelope(view.envelope()),
        MessageDataItemName::BodyStructure => {
            MessageDataItem::BodyStructure(view.body_structure(true))
        }
        MessageDataItemName::Body => MessageDataItem::Body(view.body_structure(false)),
        MessageDataItemName::BodyExt {
            section, partial, ..
        } => {
            let bytes = view.section(section.as_ref());
            let (bytes, origin) = match partial {
                Some((start, length)) => (slice(bytes, *start, length.get()), Some(*start)),
                None => (bytes, None),
            };
            MessageDataItem::BodyExt {
                section: section.clone(),
                origin,
                data: literal(bytes),
            }
        }
        MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => return None,
    };
    Some(item)
}

/// Cuts the `<start.length>` slice of `bytes`; empty when `start` is past the end.
fn slice(bytes: Cow<'_, [u8]>, start: u32, length: u32) -> Cow<'_, [u8]> {
    let start = start as usize;
    let end = start.saturating_add(length as usize);
    match bytes {
        Cow::Borrowed(bytes) => {
            Cow::Borrowed(bytes.get(start..end.min(bytes.len())).unwrap_or_default())
        }
        Cow::Owned(bytes) => Cow::Owned(
            bytes
                .get(start..end.min(bytes.len()))
                .unwrap_or_default()
                .to_vec(),
        ),
    }
}

/// Wraps message bytes in a literal.
fn literal(bytes: Cow<'_, [u8]>) -> NString<'_> {
    // NOTE: IMAP literals cannot carry NUL bytes (imap-types rejects them
    // and BINARY is not offered), so a message containing NUL is sent with
    // each NUL replaced by 0x80, and those bytes differ from the stored ones.
    let bytes = if bytes.contains(&0) {
        let replaced: Vec<u8> = bytes
            .iter()
            .map(|&b| if b == 0 { 0x80 } else { b })
            .collect();
        Cow::Owned(replaced)
    } else {
        bytes
    };
    // Without NUL every byte is a CHAR8, the only rule for a literal, so the
    // byte-by-byte validation of `Literal::try_from` would only repeat the
    // `contains` scan above, at several times its cost per message.
    NString(Some(IString::Literal(Literal::unvalidated(bytes))))
}

/// Converts an INTERNALDATE to the form IMAP allows: whole seconds, whole-minute
/// offset, year 0 to 9999. Other dates are sent in UTC or as the epoch.
pub(crate) fn internal_date(date: &DateTime<FixedOffset>) -> ImapDateTime {
    let whole = date.with_nanosecond(0).unwrap_or(*date);
    ImapDateTime::try_from(whole)
        .or_else(|_| ImapDateTime::try_from(whole.with_timezone(&Utc).fixed_offset()))
        .unwrap_or_else(|_| ImapDateTime::unvalidated(DateTime::UNIX_EPOCH.fixed_offset()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_past_end_is_empty() {
        let bytes = Cow::Borrowed(&b"0123456789"[..]);
        assert_eq!(slice(bytes.clone(), 2, 3).as_ref(), b"234");
        assert_eq!(slice(bytes.clone(), 8, 10).as_ref(), b"89");
        assert_eq!(slice(bytes, 20, 1).as_ref(), b"");
    }

    #[test]
    fn literal_replaces_nul() {
        let NString(Some(IString::Literal(literal))) = literal(Cow::Borrowed(&b"a\0b"[..])) else {
            panic!("expected a literal");
        };
        assert_eq!(literal.data(), b"a\x80b");
    }

    #[test]
    fn internal_date_drops_subseconds() {
        let date = DateTime::parse_from_rfc3339("2024-05-01T10:00:00.5+02:00").unwrap();
        let converted = internal_date(&date);
        assert_eq!(converted.as_ref().to_rfc3339(), "2024-05-01T10:00:00+02:00");
    }
}
