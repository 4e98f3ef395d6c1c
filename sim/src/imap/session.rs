//! The IMAP session: connection states, the command loop and policies.
//!
//! ```text
//!   connection ──greeting──▶ NotAuthenticated ──LOGIN/AUTHENTICATE──▶ Authenticated
//!                                                                     │        ▲
//!                                                      SELECT/EXAMINE ▼        │ CLOSE/UNSELECT
//!                                                                    Selected ─┘
//!   any state ──LOGOUT, autologout, fault──▶ Logout (connection closed)
//! ```
//!
//! Each state is a variant that contains only what that state needs: a
//! login keeps the account's connection slot, a selection its mailbox view.
//! Before every command of a logged-in session the account's policy runs:
//! faults, the per-command latency and the command budget, in that order.

use std::sync::Arc;
use std::time::Duration;

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::response::{Code, Data, Response, StatusKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use super::output::{Disconnect, Output};
use super::reader::{CommandReader, Frame, ReadLimits};
use super::response::{self, Completion, ExtendedCode};
use super::selection::{Changes, Lost, Selection};
use crate::conn::ReadError;
use crate::policy::{ActiveFaults, Admission, throttled_text};
use crate::service::Service;
use crate::store::{Account, ConnectionGuard};

/// How often a stall without a scheduled end checks whether it was switched off.
const STALL_POLL: Duration = Duration::from_secs(1);

/// A logged-in session's hold on its account.
pub(crate) struct Login {
    /// Counts this connection against the account's connection limit.
    guard: ConnectionGuard,
    /// Wakes when any folder of the account changes.
    pub changes: watch::Receiver<u64>,
}

impl Login {
    /// Takes a connection slot and starts following the account's changes.
    pub(crate) fn new(guard: ConnectionGuard) -> Self {
        let changes = guard.account().subscribe_changes();
        Self { guard, changes }
    }

    /// Returns the logged-in account.
    pub(crate) fn account(&self) -> &Arc<Account> {
        self.guard.account()
    }
}

/// The connection states of RFC 3501 section 3.
pub(crate) enum State {
    /// Greeting sent; only CAPABILITY, NOOP, LOGOUT, LOGIN and AUTHENTICATE work.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated {
        /// The account.
        login: Login,
    },
    /// Logged in with a mailbox selected.
    Selected {
        /// The account.
        login: Login,
        /// The view of the selected mailbox.
        selection: Selection,
    },
    /// The session is over; the connection closes.
    Logout,
}

/// One IMAP session over one connection.
pub(crate) struct Session<S> {
    pub(super) service: Service,
    pub(super) out: Output<S>,
    pub(super) state: State,
    /// Faults in effect for the command being handled.
    pub(super) faults: ActiveFaults,
    reader: CommandReader,
    errors_in_row: u32,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Creates a session on `stream`; nothing is sent before [`Session::run`].
    pub(crate) fn new(service: Service, stream: S) -> Self {
        let write_timeout = service.limits().write_timeout;
        Self {
            service,
            out: Output::new(stream, write_timeout),
            state: State::NotAuthenticated,
            faults: ActiveFaults::default(),
            reader: CommandReader::default(),
            errors_in_row: 0,
        }
    }

    /// Runs the session until logout or disconnect.
    pub(crate) async fn run(mut self) -> Result<(), Disconnect> {
        let result = self.serve().await;
        match &result {
            Ok(()) if matches!(self.state, State::Logout) => {
                tracing::info!("session ended after LOGOUT");
            }
            Ok(()) => tracing::info!("session ended: the client closed the connection"),
            Err(Disconnect::Bye) => tracing::info!("session ended by the server with BYE"),
            Err(error) => tracing::info!(reason = %error, "session ended"),
        }
        match result {
            Ok(()) | Err(Disconnect::Closed | Disconnect::Bye | Disconnect::InjectedReset) => {
                self.out.close().await;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    async fn serve(&mut self) -> Result<(), Disconnect> {
        self.faults = self.service.active_faults(None);
        if self.faults.connection_refused {
            tracing::warn!("connection refused by injected fault");
            return Ok(());
        }
        self.out.set_reset_after(self.faults.reset_after_bytes);
        if self.faults.stall {
            self.wait_out_stall().await?;
        }
        let greeting = response::greeting(self.service.hostname());
        self.out.greeting(&greeting).await?;
        self.out.flush().await?;

        while !matches!(self.state, State::Logout) {
            let limits = self.read_limits();
            let frame = match self.reader.next(&mut self.out, limits).await {
                Ok(frame) => frame,
                Err(ReadError::TimedOut) => return self.autologout().await,
                Err(ReadError::Closed) => return Ok(()),
                Err(ReadError::Io(error)) => return Err(Disconnect::Io(error)),
            };
            self.handle(frame).await?;
            self.out.flush().await?;
        }
        Ok(())
    }

    fn read_limits(&self) -> ReadLimits {
        let limits = self.service.limits();
        let logged_in = self.login().is_some();
        // NOTE: before login, literals are held to the line limit: LOGIN and
        // AUTHENTICATE need no more, and an unauthenticated peer should not
        // make the server buffer `max_literal` bytes.
        let max_literal = if logged_in {
            limits.max_literal
        } else {
            limits.max_literal.min(limits.max_line)
        };
        ReadLimits {
            max_line: limits.max_line,
            max_literal,
            timeout: limits.imap_idle_timeout,
            trace_input: logged_in,
        }
    }

    fn literal_limit_text(&self, length: u32) -> String {
        format!(
            "Literal of {length} octets is over the size limit, or the command has more than {} literals",
            super::reader::MAX_LITERALS
        )
    }

    /// Replies to one frame from the reader.
    async fn handle(&mut self, frame: Frame) -> Result<(), Disconnect> {
        match frame {
            Frame::Command(command) => self.command(command).await,
            Frame::Invalid { tag } => self.reject(tag, "Invalid command or arguments").await,
            Frame::LineTooLong { tag } => self.reject(tag, "Command line too long").await,
            Frame::LiteralRefused { tag, length } => {
                let text = self.literal_limit_text(length);
                let completion = Completion::no_with(Code::TooBig, text);
                self.out.send(&completion.into_response(tag)).await
            }
            Frame::LiteralOverrun { tag, length } => {
                let text = self.literal_limit_text(length);
                let reply = match tag {
                    Some(tag) => Completion {
                        kind: StatusKind::Bad,
                        code: Some(Code::TooBig),
                        text: text.into(),
                    }
                    .into_response(tag),
                    None => response::untagged(StatusKind::Bad, Some(Code::TooBig), text),
                };
                self.out.send(&reply).await?;
                self.out
                    .send(&response::bye(
                        None,
                        "Literal too large, closing connection",
                    ))
                    .await?;
                Err(Disconnect::Bye)
            }
        }
    }

    /// Sends BAD for input that is not a command, and closes the session
    /// after too many in a row.
    async fn reject(
        &mut self,
        tag: Option<Tag<'static>>,
        text: &'static str,
    ) -> Result<(), Disconnect> {
        let reply = match tag {
            Some(tag) => Completion::bad(text).into_response(tag),
            None => response::untagged(StatusKind::Bad, None, text),
        };
        self.out.send(&reply).await?;
        self.count_error(StatusKind::Bad).await
    }

    async fn count_error(&mut self, kind: StatusKind) -> Result<(), Disconnect> {
        if kind != StatusKind::Bad {
            self.errors_in_row = 0;
            return Ok(());
        }
        self.errors_in_row += 1;
        if self.errors_in_row < self.service.limits().max_consecutive_errors {
            return Ok(());
        }
        tracing::info!(
            errors = self.errors_in_row,
            "closing after too many invalid commands"
        );
        self.out
            .send(&response::bye(None, "Too many invalid commands"))
            .await?;
        Err(Disconnect::Bye)
    }

    /// Runs one command: policy first, then the handler, then the untagged
    /// updates the selected mailbox owes the client, then the tagged reply.
    async fn command(&mut self, command: Command<'static>) -> Result<(), Disconnect> {
        let Command { tag, body } = command;
        tracing::debug!(tag = tag.inner(), command = body.name(), "command");

        self.refresh_faults();
        if self.faults.stall {
            self.wait_out_stall().await?;
            self.refresh_faults();
        }
        // LOGOUT skips the policy, so a throttled or failing client can
        // always end its session.
        let is_logout = matches!(body, CommandBody::Logout);
        if self.login().is_some()
            && !is_logout
            && let Some(refusal) = self.apply_policy().await?
        {
            return self.complete(tag, refusal).await;
        }

        // RFC 3501 7.4.1 forbids EXPUNGE responses during FETCH, STORE and
        // SEARCH, because the client may be using sequence numbers.
        let expunge_allowed = !matches!(
            body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
        );
        let completion = self.execute(&tag, body).await?;
        if matches!(self.state, State::Selected { .. }) {
            self.report_changes(expunge_allowed).await?;
        }
        self.complete(tag, completion).await
    }

    async fn complete(
        &mut self,
        tag: Tag<'static>,
        completion: Completion,
    ) -> Result<(), Disconnect> {
        let kind = completion.kind;
        self.out.send(&completion.into_response(tag)).await?;
        self.count_error(kind).await
    }

    fn refresh_faults(&mut self) {
        let account = self.login().map(|login| Arc::clone(login.account()));
        self.faults = self.service.active_faults(account.as_deref());
        self.out.set_reset_after(self.faults.reset_after_bytes);
    }

    /// Applies latency, the command budget and the server-error fault.
    /// Returns the refusal to send instead of running the command.
    async fn apply_policy(&mut self) -> Result<Option<Completion>, Disconnect> {
        let Some(account) = self.login().map(|login| Arc::clone(login.account())) else {
            return Ok(None);
        };
        let policy = account.policy().clone();
        if !policy.command_latency.is_zero() {
            tokio::time::sleep(policy.command_latency).await;
        }
        let admission = account.throttle().admit_command(&policy, Instant::now());
        if let Admission::Throttled { backoff } = admission {
            tracing::debug!(backoff_ms = backoff.as_millis() as u64, "command throttled");
            let code = ExtendedCode::Unavailable.code();
            return Ok(Some(Completion::no_with(code, throttled_text(backoff))));
        }
        if self.faults.server_error {
            tracing::warn!("command failed by injected server error");
            let code = ExtendedCode::Unavailable.code();
            return Ok(Some(Completion::no_with(
                code,
                "Internal server error, try again later",
            )));
        }
        Ok(None)
    }

    /// Stops replying while a stall fault is in effect. A stall with a
    /// scheduled end is waited out. One without an end is checked every
    /// second until the idle timeout, and then the session logs out.
    async fn wait_out_stall(&mut self) -> Result<(), Disconnect> {
        tracing::warn!("session stalled by injected fault");
        let deadline = Instant::now() + self.service.limits().imap_idle_timeout;
        loop {
            let account = self.login().map(|login| Arc::clone(login.account()));
            if !self.service.active_faults(account.as_deref()).stall {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                self.autologout().await?;
                return Err(Disconnect::Bye);
            }
            let wake = match self.service.stall_end(account.as_deref()) {
                Some(end) => end.min(deadline),
                None => (now + STALL_POLL).min(deadline),
            };
            tokio::time::sleep_until(wake.max(now + Duration::from_millis(1))).await;
        }
    }

    /// Sends the autologout BYE (RFC 3501 section 5.4).
    async fn autologout(&mut self) -> Result<(), Disconnect> {
        tracing::info!("autologout after idle timeout");
        self.out
            .send(&response::bye(None, "Autologout; idle for too long"))
            .await?;
        self.out.flush().await?;
        self.state = State::Logout;
        Ok(())
    }

    /// Dispatches one command by name, each to its command family.
    async fn execute(
        &mut self,
        tag: &Tag<'static>,
        body: CommandBody<'static>,
    ) -> Result<Completion, Disconnect> {
        match body {
            CommandBody::Capability => {
                self.out.send(&response::capability_data()).await?;
                Ok(Completion::ok("CAPABILITY completed"))
            }
            CommandBody::Noop => Ok(Completion::ok("NOOP completed")),
            CommandBody::Logout => {
                self.out.send(&response::bye(None, "Logging out")).await?;
                self.state = State::Logout;
                Ok(Completion::ok("LOGOUT completed"))
            }
            CommandBody::Login { username, password } => {
                self.login_command(username, password).await
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => self.authenticate(mechanism, initial_response).await,
            CommandBody::Select { mailbox, .. } => self.select(mailbox, false).await,
            CommandBody::Examine { mailbox, .. } => self.select(mailbox, true).await,
            CommandBody::Create { mailbox } => Ok(self.create(mailbox)),
            CommandBody::Delete { mailbox } => Ok(self.delete(mailbox)),
            CommandBody::Rename { from, to } => Ok(self.rename(from, to)),
            CommandBody::Subscribe { mailbox } => Ok(self.subscribe(mailbox, true)),
            CommandBody::Unsubscribe { mailbox } => Ok(self.subscribe(mailbox, false)),
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(reference, mailbox_wildcard, false).await,
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(reference, mailbox_wildcard, true).await,
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(mailbox, &item_names).await,
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => Ok(self.append(mailbox, flags, date, message)),
            CommandBody::Check => Ok(self.check()),
            CommandBody::Close => Ok(self.close_mailbox(true)),
            CommandBody::Unselect => Ok(self.close_mailbox(false)),
            CommandBody::Expunge => self.expunge(None).await,
            CommandBody::ExpungeUid { sequence_set } => self.expunge(Some(sequence_set)).await,
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => self.search(charset, criteria, uid).await,
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => self.fetch(sequence_set, macro_or_item_names, uid).await,
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => self.store(sequence_set, kind, response, flags, uid).await,
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => Ok(self.copy(sequence_set, mailbox, uid)),
            CommandBody::Idle => self.idle(tag).await,
            other => {
                tracing::debug!(command = other.name(), "unsupported command");
                Ok(Completion::bad(format!(
                    "{} is not supported",
                    other.name()
                )))
            }
        }
    }

    /// Returns the login in the authenticated and selected states.
    pub(super) fn login(&self) -> Option<&Login> {
        match &self.state {
            State::Authenticated { login } | State::Selected { login, .. } => Some(login),
            State::NotAuthenticated | State::Logout => None,
        }
    }

    /// Returns the selected mailbox and its login.
    pub(super) fn selected(&mut self) -> Option<(&mut Login, &mut Selection)> {
        match &mut self.state {
            State::Selected { login, selection } => Some((login, selection)),
            _ => None,
        }
    }

    /// Leaves the selected state, keeping the login.
    pub(super) fn deselect(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Logout);
        self.state = match state {
            State::Selected { login, .. } => State::Authenticated { login },
            other => other,
        };
    }

    /// Sends the untagged EXPUNGE, EXISTS and RECENT responses for changes
    /// made by other sessions and deliveries. A selection whose folder
    /// vanished or changed UIDVALIDITY ends the session.
    pub(super) async fn report_changes(&mut self, expunge_allowed: bool) -> Result<(), Disconnect> {
        let Some((login, selection)) = self.selected() else {
            return Ok(());
        };
        // Nothing in the account changed since the last look.
        if !login.changes.has_changed().unwrap_or(true) {
            return Ok(());
        }
        login.changes.borrow_and_update();
        let account = Arc::clone(login.account());
        let result = selection.sync(&mut account.mailboxes(), expunge_allowed);
        match result {
            Ok(changes) => {
                if changes.expunges_pending {
                    // Look again after the next command, when they may be sent.
                    login.changes.mark_changed();
                }
                self.send_changes(changes).await
            }
            Err(lost) => self.end_for_lost_mailbox(lost).await,
        }
    }

    async fn send_changes(&mut self, changes: Changes) -> Result<(), Disconnect> {
        for sequence in changes.expunged {
            self.out
                .send(&Response::Data(Data::Expunge(sequence)))
                .await?;
        }
        if let Some(exists) = changes.exists {
            self.out.send(&Response::Data(Data::Exists(exists))).await?;
        }
        if let Some(recent) = changes.recent {
            self.out.send(&Response::Data(Data::Recent(recent))).await?;
        }
        Ok(())
    }

    // NOTE: when the selected folder's UIDVALIDITY changes (a UIDVALIDITY
    // reset fault) or the folder disappears, the session sends BYE and
    // closes, as RFC 3501 section 2.3.1.1 allows. It does not report the
    // new UIDVALIDITY in place, so the client must reconnect to resync.
    async fn end_for_lost_mailbox(&mut self, lost: Lost) -> Result<(), Disconnect> {
        let text = match lost {
            Lost::Gone => "Selected mailbox no longer exists",
            Lost::UidValidityChanged => "UIDVALIDITY of the selected mailbox changed",
        };
        tracing::warn!(reason = text, "closing session");
        let code = ExtendedCode::Unavailable.code();
        self.out.send(&response::bye(Some(code), text)).await?;
        self.out.flush().await?;
        self.state = State::Logout;
        Err(Disconnect::Bye)
    }
}

/// Builds the BAD reply for a command sent in a state that does not allow it.
pub(super) fn wrong_state(state: &State) -> Completion {
    match state {
        State::NotAuthenticated => Completion::bad("Not logged in"),
        State::Authenticated { .. } => Completion::bad("No mailbox selected"),
        State::Selected { .. } | State::Logout => Completion::bad("Command not allowed now"),
    }
}
