//! The IMAP commands a sync cycle needs, as typed async calls.

use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{Tag, Vec1};
use imap_codec::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{
    Capability, Code, Data, GreetingKind, Response, Status, StatusBody, StatusKind,
};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};
use tokio::io::{AsyncRead, AsyncWrite};

pub(crate) use super::connection::Fetched;
use super::connection::{Connection, Incoming};
use super::status::{classify_failure, text_of};
use crate::error::SessionError;
use crate::secret::Secret;

/// INBOX as the server reported it on SELECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Selected {
    pub(crate) uid_validity: u32,
    pub(crate) exists: u32,
    /// The UID the next message will get, if the server said.
    pub(crate) uid_next: Option<u32>,
}

/// INBOX as STATUS reports it, before any SELECT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct InboxStatus {
    pub(crate) uid_validity: Option<u32>,
    pub(crate) uid_next: Option<u32>,
    pub(crate) messages: Option<u32>,
}

/// A message's UID and size, from the listing fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) uid: u32,
    pub(crate) size: u32,
}

/// Command category, needed because the same response means different
/// things: a NO without a code to LOGIN rejects the credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommandKind {
    Login,
    Other,
}

/// A command whose responses are being read.
pub(crate) struct Pending {
    tag: Tag<'static>,
    name: &'static str,
    kind: CommandKind,
    untagged: Vec<StatusBody<'static>>,
    /// Text of an untagged BYE, which explains a closed connection.
    bye: Option<String>,
}

/// Result of [`ImapSession::step`].
enum Step {
    Message(Fetched),
    Data(Data<'static>),
    Done,
}

/// A connected IMAP session.
pub(crate) struct ImapSession<S> {
    connection: Connection<S>,
    next_tag: u32,
    uidplus: bool,
}

impl<S> ImapSession<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Reads the greeting. A BYE greeting means the server is busy.
    pub(crate) async fn connect(
        stream: S,
        timeout: Duration,
        max_response_size: usize,
    ) -> Result<Self, SessionError> {
        let mut session = Self {
            connection: Connection::new(stream, timeout, max_response_size),
            next_tag: 1,
            uidplus: false,
        };
        let greeting = session.connection.greeting().await?;
        if greeting.kind == GreetingKind::Bye {
            return Err(SessionError::Busy(greeting.text.inner().to_owned()));
        }
        session.note_code(greeting.code.as_ref());
        Ok(session)
    }

    /// Returns whether the server offered UIDPLUS, which UID EXPUNGE needs.
    pub(crate) fn has_uidplus(&self) -> bool {
        self.uidplus
    }

    /// Logs in with LOGIN.
    pub(crate) async fn login(
        &mut self,
        username: &str,
        password: &Secret,
    ) -> Result<(), SessionError> {
        let body = CommandBody::login(username.to_owned(), password.expose().to_owned()).map_err(
            |_| SessionError::Protocol("user name or password cannot be sent with LOGIN".into()),
        )?;
        self.execute(body, CommandKind::Login, |_| {}).await?;
        Ok(())
    }

    /// Asks for capabilities unless the server already listed them.
    pub(crate) async fn capability(&mut self) -> Result<(), SessionError> {
        let mut uidplus = self.uidplus;
        self.execute(CommandBody::Capability, CommandKind::Other, |data| {
            if let Data::Capability(list) = data {
                uidplus |= list.as_ref().contains(&Capability::UidPlus);
            }
        })
        .await?;
        self.uidplus = uidplus;
        Ok(())
    }

    /// Asks for INBOX's UIDVALIDITY, UIDNEXT and message count with STATUS,
    /// which costs the server less than a SELECT.
    pub(crate) async fn status_inbox(&mut self) -> Result<InboxStatus, SessionError> {
        let mut status = InboxStatus::default();
        let names = vec![
            StatusDataItemName::UidValidity,
            StatusDataItemName::UidNext,
            StatusDataItemName::Messages,
        ];
        let body = CommandBody::Status {
            mailbox: Mailbox::Inbox,
            item_names: names.into(),
        };
        self.execute(body, CommandKind::Other, |data| {
            if let Data::Status { items, .. } = data {
                for item in items.iter() {
                    match item {
                        StatusDataItem::UidValidity(value) => {
                            status.uid_validity = Some(value.get())
                        }
                        StatusDataItem::UidNext(value) => status.uid_next = Some(value.get()),
                        StatusDataItem::Messages(count) => status.messages = Some(*count),
                        _ => {}
                    }
                }
            }
        })
        .await?;
        Ok(status)
    }

    /// Selects INBOX.
    pub(crate) async fn select_inbox(&mut self) -> Result<Selected, SessionError> {
        let mut exists = 0;
        let mut uid_validity = None;
        let mut uid_next = None;
        let untagged = self
            .execute(
                CommandBody::select(Mailbox::Inbox).map_err(protocol)?,
                CommandKind::Other,
                |data| {
                    if let Data::Exists(count) = data {
                        exists = *count;
                    }
                },
            )
            .await?;
        for body in &untagged {
            match &body.code {
                Some(Code::UidValidity(value)) => uid_validity = Some(value.get()),
                Some(Code::UidNext(value)) => uid_next = Some(value.get()),
                _ => {}
            }
        }
        let uid_validity = uid_validity
            .ok_or_else(|| SessionError::Protocol("SELECT INBOX returned no UIDVALIDITY".into()))?;
        Ok(Selected {
            uid_validity,
            exists,
            uid_next,
        })
    }

    /// Lists the messages with a UID above `after`, in UID order. The size is
    /// known for messages larger than `max_size` and 0 for the others.
    ///
    /// Two UID SEARCH commands return one line each, which costs far less to
    /// parse than a FETCH response per message. A server that rejects SEARCH
    /// as BAD is sent `UID FETCH n:* (UID RFC822.SIZE)` instead.
    pub(crate) async fn list_after(
        &mut self,
        after: u32,
        max_size: usize,
    ) -> Result<Vec<Listed>, SessionError> {
        let start = NonZeroU32::new(after.saturating_add(1)).unwrap_or(NonZeroU32::MIN);
        let set = SequenceSet::from(Sequence::Range(SeqOrUid::Value(start), SeqOrUid::Asterisk));
        let uids = match self.search(vec![SearchKey::Uid(set.clone())]).await {
            Ok(uids) => uids,
            Err(SessionError::CommandRejected(text)) => {
                tracing::debug!(%text, "UID SEARCH rejected; listing with UID FETCH");
                return self.list_with_fetch(set, after).await;
            }
            Err(error) => return Err(error),
        };
        let larger = u32::try_from(max_size).unwrap_or(u32::MAX);
        let large = self
            .search(vec![SearchKey::Uid(set), SearchKey::Larger(larger)])
            .await?;
        let large: Vec<u32> = large.into_iter().filter(|&uid| uid > after).collect();
        let sizes = match uid_set(&large) {
            Some(set) => self.list_with_fetch(set, after).await?,
            None => Vec::new(),
        };

        // "n:*" also matches the highest UID when it is below n.
        let mut listed: Vec<Listed> = uids
            .into_iter()
            .filter(|&uid| uid > after)
            .map(|uid| Listed { uid, size: 0 })
            .collect();
        for entry in &mut listed {
            if let Ok(index) = sizes.binary_search_by_key(&entry.uid, |sized| sized.uid) {
                entry.size = sizes.get(index).map_or(u32::MAX, |sized| sized.size);
            }
        }
        Ok(listed)
    }

    /// Runs UID SEARCH with the criteria ANDed; returns sorted, distinct UIDs.
    async fn search(
        &mut self,
        criteria: Vec<SearchKey<'static>>,
    ) -> Result<Vec<u32>, SessionError> {
        let criteria = Vec1::try_from(criteria).map_err(protocol)?;
        let mut uids = Vec::new();
        let body = CommandBody::search(None, criteria, true);
        self.execute(body, CommandKind::Other, |data| {
            if let Data::Search(found, ..) = data {
                uids.extend(found.iter().map(|uid| uid.get()));
            }
        })
        .await?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// Lists UID and size of the messages in `set` with a UID above `after`.
    async fn list_with_fetch(
        &mut self,
        set: SequenceSet,
        after: u32,
    ) -> Result<Vec<Listed>, SessionError> {
        let names = vec![MessageDataItemName::Uid, MessageDataItemName::Rfc822Size];
        let mut listed = Vec::new();
        let body = CommandBody::fetch(set, names, true).map_err(protocol)?;
        self.execute(body, CommandKind::Other, |data| {
            if let Data::Fetch { items, .. } = data {
                let mut uid = None;
                let mut size = 0;
                for item in items.as_ref() {
                    match item {
                        MessageDataItem::Uid(value) => uid = Some(value.get()),
                        MessageDataItem::Rfc822Size(value) => size = *value,
                        _ => {}
                    }
                }
                if let Some(uid) = uid.filter(|&uid| uid > after) {
                    listed.push(Listed { uid, size });
                }
            }
        })
        .await?;
        listed.sort_unstable_by_key(|entry| entry.uid);
        listed.dedup_by_key(|entry| entry.uid);
        Ok(listed)
    }

    /// Starts downloading the given messages without setting \Seen; read
    /// them with [`ImapSession::next_fetched`]. No other command may run
    /// until that returns `None`.
    /// INTERNALDATE is requested only with `internal_date`, because a
    /// Maildir server such as Dovecot reads it from each file's metadata.
    pub(crate) async fn start_fetch(
        &mut self,
        uids: &[u32],
        internal_date: bool,
    ) -> Result<Option<Pending>, SessionError> {
        let Some(set) = uid_set(uids) else {
            return Ok(None);
        };
        let mut names = vec![MessageDataItemName::Uid];
        if internal_date {
            names.push(MessageDataItemName::InternalDate);
        }
        names.push(MessageDataItemName::BodyExt {
            section: None,
            partial: None,
            peek: true,
        });
        let body = CommandBody::fetch(set, names, true).map_err(protocol)?;
        self.begin(body, CommandKind::Other).await.map(Some)
    }

    /// Returns the next downloaded message of a fetch, in the server's order
    /// (UID order on every server the engine was tested with), or `None`
    /// once the server completed the command.
    pub(crate) async fn next_fetched(
        &mut self,
        pending: &mut Pending,
    ) -> Result<Option<Fetched>, SessionError> {
        loop {
            match self.step(pending).await? {
                Step::Done => return Ok(None),
                Step::Message(message) => return Ok(Some(message)),
                // A body the connection could not slice, such as a quoted
                // string with escapes, is copied out here.
                Step::Data(Data::Fetch { items, .. }) => {
                    if let Some(message) = fetched_message(items) {
                        return Ok(Some(message));
                    }
                }
                Step::Data(_) => {}
            }
        }
    }

    /// Marks messages \Deleted and expunges them: with UID EXPUNGE when the
    /// server offers UIDPLUS, otherwise with EXPUNGE, which also removes
    /// messages another client marked.
    pub(crate) async fn delete(&mut self, uids: &[u32]) -> Result<(), SessionError> {
        let Some(set) = uid_set(uids) else {
            return Ok(());
        };
        let store = CommandBody::store(
            set.clone(),
            StoreType::Add,
            StoreResponse::Silent,
            vec![Flag::Deleted],
            true,
        )
        .map_err(protocol)?;
        self.execute(store, CommandKind::Other, |_| {}).await?;
        let expunge = if self.uidplus {
            CommandBody::ExpungeUid { sequence_set: set }
        } else {
            CommandBody::Expunge
        };
        self.execute(expunge, CommandKind::Other, |_| {}).await?;
        Ok(())
    }

    /// Logs out and closes the stream; failures are ignored because the
    /// cycle's work is already committed.
    pub(crate) async fn logout(mut self) {
        let _ = self
            .execute(CommandBody::Logout, CommandKind::Other, |_| {})
            .await;
        self.connection.shutdown().await;
    }

    /// Runs one command, passing untagged data to `on_data` by reference,
    /// and returns the untagged status responses.
    async fn execute<F>(
        &mut self,
        body: CommandBody<'static>,
        kind: CommandKind,
        mut on_data: F,
    ) -> Result<Vec<StatusBody<'static>>, SessionError>
    where
        F: FnMut(&Data<'static>),
    {
        self.run(body, kind, |data| on_data(&data)).await
    }

    async fn run<F>(
        &mut self,
        body: CommandBody<'static>,
        kind: CommandKind,
        mut on_data: F,
    ) -> Result<Vec<StatusBody<'static>>, SessionError>
    where
        F: FnMut(Data<'static>),
    {
        let mut pending = self.begin(body, kind).await?;
        loop {
            match self.step(&mut pending).await? {
                Step::Data(data) => on_data(data),
                Step::Message(message) => {
                    tracing::debug!(uid = message.uid, "message body outside a fetch ignored")
                }
                Step::Done => return Ok(pending.untagged),
            }
        }
    }

    /// Sends a command; its responses are read with [`ImapSession::step`].
    async fn begin(
        &mut self,
        body: CommandBody<'static>,
        kind: CommandKind,
    ) -> Result<Pending, SessionError> {
        let tag = self.tag()?;
        let name = body.name();
        let command = Command {
            tag: tag.clone(),
            body,
        };
        self.connection.send(&command, kind).await?;
        Ok(Pending {
            tag,
            name,
            kind,
            untagged: Vec::new(),
            bye: None,
        })
    }

    /// Reads responses until the next untagged data or the command's
    /// successful completion; a failed completion is an error.
    async fn step(&mut self, pending: &mut Pending) -> Result<Step, SessionError> {
        loop {
            let response = match self.connection.response().await {
                Ok(Incoming::Message(message)) => return Ok(Step::Message(message)),
                Ok(Incoming::Other(response)) => response,
                // A BYE explains why the connection closed.
                Err(SessionError::Closed) => {
                    return Err(pending.bye.take().map_or(SessionError::Closed, |text| {
                        SessionError::Server(format!("server closed the session: {text}"))
                    }));
                }
                Err(error) => return Err(error),
            };
            let status = match response {
                Response::Data(data) => return Ok(Step::Data(data)),
                Response::Status(status) => status,
                Response::CommandContinuationRequest(_) => {
                    tracing::debug!("unexpected continuation request ignored");
                    continue;
                }
            };
            match status {
                Status::Tagged(tagged) if tagged.tag == pending.tag => {
                    self.note_code(tagged.body.code.as_ref());
                    if tagged.body.kind == StatusKind::Ok {
                        return Ok(Step::Done);
                    }
                    tracing::debug!(
                        command = pending.name,
                        text = text_of(&tagged.body),
                        "command failed"
                    );
                    return Err(classify_failure(&tagged.body, pending.kind));
                }
                Status::Tagged(other) => {
                    tracing::debug!(tag = other.tag.inner(), "status for an unknown tag ignored");
                }
                Status::Untagged(body) => {
                    self.note_code(body.code.as_ref());
                    pending.untagged.push(body);
                }
                Status::Bye(goodbye) => {
                    if pending.name != "LOGOUT" {
                        pending.bye = Some(goodbye.text.inner().to_owned());
                    }
                }
            }
        }
    }

    fn tag(&mut self) -> Result<Tag<'static>, SessionError> {
        let tag = Tag::try_from(format!("A{}", self.next_tag)).map_err(protocol)?;
        self.next_tag = self.next_tag.wrapping_add(1);
        Ok(tag)
    }

    fn note_code(&mut self, code: Option<&Code<'_>>) {
        if let Some(Code::Capability(list)) = code {
            self.uidplus = list.as_ref().contains(&Capability::UidPlus);
        }
    }
}

fn protocol(error: impl std::fmt::Display) -> SessionError {
    SessionError::Protocol(format!("cannot build IMAP command: {error}"))
}

/// Takes the UID, INTERNALDATE and body out of one FETCH response.
fn fetched_message(items: Vec1<MessageDataItem<'static>>) -> Option<Fetched> {
    let mut uid = None;
    let mut internal_date = None;
    let mut raw = None;
    for item in items.into_inner() {
        match item {
            MessageDataItem::Uid(value) => uid = Some(value.get()),
            MessageDataItem::InternalDate(date) => internal_date = Some(date.as_ref().timestamp()),
            MessageDataItem::BodyExt {
                section: None,
                data,
                ..
            } => {
                raw = data
                    .into_option()
                    .map(|bytes| Bytes::from(bytes.into_owned()))
            }
            _ => {}
        }
    }
    Some(Fetched {
        uid: uid?,
        internal_date,
        raw: raw?,
    })
}

/// Builds a compact UID set such as "1:5,7,9:12" from sorted, distinct `uids`.
fn uid_set(uids: &[u32]) -> Option<SequenceSet> {
    let mut sequences = Vec::new();
    let mut iter = uids.iter().filter_map(|&uid| NonZeroU32::new(uid));
    let mut start = iter.next()?;
    let mut end = start;
    for uid in iter {
        if end.get().checked_add(1) == Some(uid.get()) {
            end = uid;
            continue;
        }
        sequences.push(range(start, end));
        start = uid;
        end = uid;
    }
    sequences.push(range(start, end));
    SequenceSet::try_from(sequences).ok()
}

fn range(start: NonZeroU32, end: NonZeroU32) -> Sequence {
    if start == end {
        Sequence::Single(SeqOrUid::Value(start))
    } else {
        Sequence::Range(SeqOrUid::Value(start), SeqOrUid::Value(end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(uids: &[u32]) -> String {
        let set = uid_set(uids).expect("non-empty set");
        set.0
            .as_ref()
            .iter()
            .map(|sequence| match sequence {
                Sequence::Single(SeqOrUid::Value(v)) => v.to_string(),
                Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b)) => format!("{a}:{b}"),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn uid_set_merges_runs() {
        assert_eq!(render(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(render(&[9]), "9");
    }

    #[test]
    fn uid_set_empty_is_none() {
        assert!(uid_set(&[]).is_none());
    }
}
