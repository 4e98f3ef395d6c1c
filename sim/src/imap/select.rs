//! Selected-state commands: SELECT, EXAMINE, CHECK, CLOSE, UNSELECT,
//! EXPUNGE and UID EXPUNGE.

use std::collections::BTreeSet;
use std::num::NonZeroU32;

use imap_codec::imap_types::core::Atom;
use imap_codec::imap_types::flag::{Flag, FlagPerm};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Code, Data, Response, StatusKind};
use imap_codec::imap_types::sequence::SequenceSet;
use tokio::io::{AsyncRead, AsyncWrite};

use super::mailboxes::{folder_name, nonexistent};
use super::output::Disconnect;
use super::response::{self, Completion, ExtendedCode};
use super::selection::{Selection, Summary};
use super::session::{Session, State, wrong_state};
use crate::store::SystemFlags;

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// SELECT (`read_only` false) and EXAMINE (`read_only` true).
    pub(super) async fn select(
        &mut self,
        mailbox: Mailbox<'static>,
        read_only: bool,
    ) -> Result<Completion, Disconnect> {
        let account = match self.account() {
            Ok(account) => account,
            Err(reply) => return Ok(reply),
        };
        // RFC 3501 6.3.1: a SELECT first closes the current mailbox, even
        // when the new one cannot be opened.
        self.deselect();
        let name = match folder_name(&mailbox) {
            Ok(name) => name,
            Err(reply) => return Ok(reply),
        };
        // Mark the account's changes as seen before the view is taken, so a
        // change made while it is taken is reported after this command.
        if let State::Authenticated { login } = &mut self.state {
            login.changes.borrow_and_update();
        }
        let opened = Selection::open(&mut account.mailboxes(), &name, read_only);
        let Some((selection, summary)) = opened else {
            return Ok(nonexistent());
        };
        self.send_selected(&summary, read_only).await?;

        let state = std::mem::replace(&mut self.state, State::Logout);
        self.state = match state {
            State::Authenticated { login } => State::Selected { login, selection },
            other => other,
        };
        let (code, text) = if read_only {
            (Code::ReadOnly, "EXAMINE completed")
        } else {
            (Code::ReadWrite, "SELECT completed")
        };
        Ok(Completion::ok_with(code, text))
    }

    /// Sends the untagged responses SELECT and EXAMINE require (RFC 3501 6.3.1).
    async fn send_selected(
        &mut self,
        summary: &Summary,
        read_only: bool,
    ) -> Result<(), Disconnect> {
        let mut flags = system_flags();
        flags.extend(keywords(&summary.keywords));
        self.out
            .send(&Response::Data(Data::Flags(flags.clone())))
            .await?;

        let permanent = if read_only {
            Vec::new()
        } else {
            let mut permanent: Vec<FlagPerm<'static>> =
                flags.into_iter().map(FlagPerm::Flag).collect();
            permanent.push(FlagPerm::Asterisk);
            permanent
        };
        let text = if read_only {
            "No permanent flags permitted"
        } else {
            "Flags permitted"
        };
        let reply = response::untagged(StatusKind::Ok, Some(Code::PermanentFlags(permanent)), text);
        self.out.send(&reply).await?;

        self.out
            .send(&Response::Data(Data::Exists(summary.exists)))
            .await?;
        self.out
            .send(&Response::Data(Data::Recent(summary.recent)))
            .await?;
        if let Some(unseen) = summary.first_unseen.and_then(NonZeroU32::new) {
            let reply =
                response::untagged(StatusKind::Ok, Some(Code::Unseen(unseen)), "First unseen");
            self.out.send(&reply).await?;
        }
        if let Some(validity) = NonZeroU32::new(summary.uid_validity) {
            let code = Some(Code::UidValidity(validity));
            self.out
                .send(&response::untagged(StatusKind::Ok, code, "UIDs valid"))
                .await?;
        }
        if let Some(next) = NonZeroU32::new(summary.uid_next) {
            let code = Some(Code::UidNext(next));
            self.out
                .send(&response::untagged(
                    StatusKind::Ok,
                    code,
                    "Predicted next UID",
                ))
                .await?;
        }
        Ok(())
    }

    /// CHECK: nothing to checkpoint in memory; the selected mailbox's
    /// changes are reported as after any command.
    pub(super) fn check(&mut self) -> Completion {
        match self.selected() {
            Some(_) => Completion::ok("CHECK completed"),
            None => wrong_state(&self.state),
        }
    }

    /// CLOSE (`expunge` true) and UNSELECT: back to the authenticated
    /// state; CLOSE first removes `\Deleted` messages without reporting them.
    pub(super) fn close_mailbox(&mut self, expunge: bool) -> Completion {
        let Some((login, selection)) = self.selected() else {
            return wrong_state(&self.state);
        };
        if expunge && !selection.read_only {
            let name = selection.name.clone();
            login.account().modify(|mailboxes| {
                if let Some(folder) = mailboxes.folder_mut(&name) {
                    folder.expunge_where(|entry| entry.flags.system.contains(SystemFlags::DELETED));
                }
            });
        }
        self.deselect();
        if expunge {
            Completion::ok("CLOSE completed")
        } else {
            Completion::ok("UNSELECT completed")
        }
    }

    /// EXPUNGE, or UID EXPUNGE with `uids` (RFC 4315 2.1). The removed
    /// messages are reported by the untagged updates after the command.
    pub(super) async fn expunge(
        &mut self,
        uids: Option<SequenceSet>,
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
        let allowed: Option<BTreeSet<u32>> = uids.map(|set| {
            selection
                .resolve(&set, true)
                .into_iter()
                .filter_map(|index| selection.uid(index))
                .collect()
        });
        let name = selection.name.clone();
        login.account().modify(|mailboxes| {
            if let Some(folder) = mailboxes.folder_mut(&name) {
                folder.expunge_where(|entry| {
                    entry.flags.system.contains(SystemFlags::DELETED)
                        && allowed.as_ref().is_none_or(|set| set.contains(&entry.uid))
                });
            }
        });
        Ok(Completion::ok("EXPUNGE completed"))
    }
}

/// Lists the system flags every mailbox supports, in FLAGS order.
fn system_flags() -> Vec<Flag<'static>> {
    vec![
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Seen,
        Flag::Draft,
    ]
}

fn keywords(keywords: &BTreeSet<String>) -> impl Iterator<Item = Flag<'static>> + '_ {
    keywords
        .iter()
        .filter_map(|keyword| Atom::try_from(keyword.clone()).ok().map(Flag::Keyword))
}
