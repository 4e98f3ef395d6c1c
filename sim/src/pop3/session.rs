//! The POP3 session: the state machine of RFC 1939 section 3 over a [`Connection`].
//!
//! ```text
//!  greeting ──► AUTHORIZATION ──USER/PASS ok──► TRANSACTION ──QUIT──► UPDATE ──► close
//!                  │  ▲    │                      │
//!                  │  └────┘ PASS failed           └─ EOF, timeout or reset: close,
//!                  └─ QUIT: close                     deletions are not applied
//! ```
//!
//! Each state variant holds only what that state needs: TRANSACTION owns the
//! maildrop snapshot, the exclusive maildrop lock and the account's
//! connection count, so leaving the state in any way releases them.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::command::{Command, CommandError, Decoder};
use super::maildrop::{Maildrop, MessageError};
use super::response::{ErrorResponse, Response};
use crate::conn::{Connection, ReadError, WriteError};
use crate::policy::{ActiveFaults, Admission};
use crate::secret::Secret;
use crate::service::Service;
use crate::store::{Account, ConnectionGuard, MaildropLock, Protocol};

/// Runs one session until QUIT, disconnection, autologout or an injected reset.
pub(super) async fn run<S>(service: Service, stream: S) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session {
        decoder: Decoder::new(service.limits().max_line),
        conn: Connection::new(stream, service.limits().write_timeout),
        service,
        state: State::Authorization { user: None },
        errors_in_a_row: 0,
    };
    match session.serve().await {
        Ok(()) => Ok(()),
        Err(Stop::InjectedReset) => {
            tracing::warn!("connection reset by injected fault");
            Ok(())
        }
        Err(Stop::Io(error)) => Err(error),
    }
}

enum State {
    /// Before login; `user` is the name given by USER, if any.
    Authorization { user: Option<String> },
    /// Logged in, with the maildrop locked.
    Transaction(Box<Transaction>),
    /// After QUIT applied the deletions. The transaction is kept so that
    /// the maildrop lock is released only after the final reply.
    Update { _transaction: Box<Transaction> },
}

struct Transaction {
    account: Arc<Account>,
    maildrop: Maildrop,
    _lock: MaildropLock,
    _connection: ConnectionGuard,
}

/// The reason the session stopped early.
enum Stop {
    /// An injected fault cut the connection.
    InjectedReset,
    /// The transport failed.
    Io(io::Error),
}

impl From<WriteError> for Stop {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::InjectedReset(_) => Self::InjectedReset,
            WriteError::Io(error) => Self::Io(error),
        }
    }
}

impl From<io::Error> for Stop {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// An encoded response and how to send it.
struct Reply {
    bytes: BytesMut,
    /// The offset in `bytes` where message content starts, for RETR and TOP.
    content_start: Option<usize>,
    client_error: bool,
    flow: Flow,
}

impl Reply {
    fn new(response: &Response<'_>, flow: Flow) -> Self {
        let mut bytes = BytesMut::new();
        response.encode(&mut bytes);
        let content_start = response
            .has_message_content()
            .then(|| status_line_len(&bytes));
        Self {
            bytes,
            content_start,
            client_error: response.is_client_error(),
            flow,
        }
    }

    fn error(error: ErrorResponse) -> Self {
        Self::new(&Response::Error(error), Flow::Continue)
    }

    /// No bytes at all, then close: how a refused login ends.
    fn silent_close() -> Self {
        Self {
            bytes: BytesMut::new(),
            content_start: None,
            client_error: false,
            flow: Flow::Close,
        }
    }
}

fn status_line_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(bytes.len(), |end| end + 1)
}

/// The policy that applies to one reply: faults in effect and latency.
struct Conditions {
    faults: ActiveFaults,
    latency: Duration,
}

struct Session<S> {
    service: Service,
    conn: Connection<S>,
    decoder: Decoder,
    state: State,
    errors_in_a_row: u32,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn serve(&mut self) -> Result<(), Stop> {
        let faults = self.service.active_faults(None);
        if faults.connection_refused {
            tracing::warn!("connection refused by injected fault");
            self.conn.abort().await;
            return Ok(());
        }
        self.stall(None).await;
        let greeting = Response::Greeting {
            hostname: self.service.hostname(),
        };
        let reply = Reply::new(&greeting, Flow::Continue);
        self.send(&reply, &faults).await?;

        loop {
            let Some(request) = self.next_request().await? else {
                // Peer gone or autologout: close without entering UPDATE
                // (RFC 1939 section 3), so no message is deleted.
                self.conn.abort().await;
                return Ok(());
            };
            if let Err(error) = &request {
                tracing::debug!(%error, "invalid command");
            }
            let (reply, conditions) = match self.state {
                State::Authorization { .. } => self.authorization(request).await,
                State::Transaction(_) => self.transaction(request).await,
                State::Update { .. } => return Ok(()),
            };
            if !conditions.latency.is_zero() {
                tokio::time::sleep(conditions.latency).await;
            }
            self.send(&reply, &conditions.faults).await?;

            if reply.flow == Flow::Close || self.too_many_errors(&reply, &conditions).await? {
                self.conn.close().await;
                return Ok(());
            }
        }
    }

    /// Reads the next command line; `None` when the peer closed the
    /// connection or the autologout timer expired.
    async fn next_request(&mut self) -> Result<Option<Result<Command, CommandError>>, Stop> {
        let timeout = self.service.limits().pop3_idle_timeout;
        loop {
            match self.decoder.decode(self.conn.input()) {
                Ok(None) => {}
                Ok(Some(command)) => return Ok(Some(Ok(command))),
                Err(error) => return Ok(Some(Err(error))),
            }
            match self.conn.fill(timeout).await {
                Ok(_) => {}
                Err(ReadError::Closed) => {
                    tracing::debug!("connection closed by peer");
                    return Ok(None);
                }
                Err(ReadError::TimedOut) => {
                    tracing::info!(?timeout, "autologout after idle timeout");
                    return Ok(None);
                }
                Err(ReadError::Io(error)) => return Err(Stop::Io(error)),
            }
        }
    }

    async fn authorization(
        &mut self,
        request: Result<Command, CommandError>,
    ) -> (Reply, Conditions) {
        self.stall(None).await;
        let conditions = Conditions {
            faults: self.service.active_faults(None),
            latency: Duration::ZERO,
        };
        let command = match request {
            Ok(command) => command,
            Err(error) => return (Reply::error(error.into()), conditions),
        };
        tracing::trace!(?command, "command");
        let State::Authorization { user } = &mut self.state else {
            return (Reply::error(ErrorResponse::WrongState), conditions);
        };
        let response = match command {
            Command::Capa => Response::Capabilities,
            Command::User(name) => {
                *user = Some(name);
                Response::UserAccepted
            }
            Command::Pass(password) => match user.take() {
                Some(name) => return self.login(&name, &password).await,
                None => Response::Error(ErrorResponse::UserFirst),
            },
            Command::Quit => {
                let hostname = self.service.hostname();
                let response = Response::SigningOff { hostname };
                return (Reply::new(&response, Flow::Close), conditions);
            }
            _ => Response::Error(ErrorResponse::WrongState),
        };
        (Reply::new(&response, Flow::Continue), conditions)
    }

    /// Handles PASS: checks faults, credentials, the connection limit and
    /// the maildrop lock, in that order, and enters TRANSACTION.
    async fn login(&mut self, name: &str, password: &Secret<Vec<u8>>) -> (Reply, Conditions) {
        let account = self.service.store().account(name);
        if let Some(account) = &account {
            self.stall(Some(account)).await;
        }
        let faults = self.service.active_faults(account.as_deref());
        let latency = account
            .as_ref()
            .map_or(Duration::ZERO, |account| account.policy().command_latency);
        let conditions = Conditions { faults, latency };

        if account.is_some() && faults.connection_refused {
            tracing::warn!(
                mailbox = name,
                "connection refused at login by injected fault"
            );
            return (Reply::silent_close(), conditions);
        }
        let transaction = match open_maildrop(account, password, &faults) {
            Ok(transaction) => transaction,
            Err(error) => {
                tracing::info!(mailbox = name, reason = %error, "login failed");
                return (Reply::error(error), conditions);
            }
        };

        let (messages, octets) = transaction.maildrop.stat();
        tracing::Span::current().record("mailbox", transaction.account.address());
        tracing::info!(messages, octets, "logged in");
        self.state = State::Transaction(Box::new(transaction));
        let response = Response::LoggedIn { messages, octets };
        (Reply::new(&response, Flow::Continue), conditions)
    }

    async fn transaction(&mut self, request: Result<Command, CommandError>) -> (Reply, Conditions) {
        let State::Transaction(transaction) = &self.state else {
            let conditions = Conditions {
                faults: self.service.active_faults(None),
                latency: Duration::ZERO,
            };
            return (Reply::error(ErrorResponse::WrongState), conditions);
        };
        let account = Arc::clone(&transaction.account);
        self.stall(Some(&account)).await;
        let policy = account.policy().clone();
        let faults = self.service.active_faults(Some(&account));
        let conditions = Conditions {
            faults,
            latency: policy.command_latency,
        };
        if let Ok(command) = &request {
            tracing::trace!(?command, "command");
        }

        // QUIT is exempt from the command budget so that a throttled client
        // can still end its session and have its deletions applied.
        let is_quit = matches!(request, Ok(Command::Quit));
        if !is_quit {
            let admission = account.throttle().admit_command(&policy, Instant::now());
            if let Admission::Throttled { backoff } = admission {
                tracing::debug!(?backoff, "command throttled");
                return (
                    Reply::error(ErrorResponse::Throttled { backoff }),
                    conditions,
                );
            }
        }
        if faults.server_error {
            tracing::warn!("server error by injected fault");
            if is_quit {
                let response = Response::Error(ErrorResponse::DeletionsNotApplied);
                return (Reply::new(&response, Flow::Close), conditions);
            }
            return (Reply::error(ErrorResponse::ServerError), conditions);
        }

        if matches!(request, Ok(Command::Retr(_) | Command::Top { .. })) {
            account.throttle().charge_messages(1, Instant::now());
        }
        let reply = match request {
            Err(error) => Reply::error(error.into()),
            Ok(Command::Quit) => self.update(),
            Ok(command) => match &mut self.state {
                State::Transaction(transaction) => execute(&mut transaction.maildrop, command),
                _ => Reply::error(ErrorResponse::WrongState),
            },
        };
        (reply, conditions)
    }

    /// Enters UPDATE: removes the messages marked as deleted and signs off.
    /// The maildrop lock is released when the session ends, after the reply.
    fn update(&mut self) -> Reply {
        let state = std::mem::replace(&mut self.state, State::Authorization { user: None });
        let State::Transaction(transaction) = state else {
            self.state = state;
            return Reply::error(ErrorResponse::WrongState);
        };
        let remaining = if transaction.maildrop.has_deletions() {
            let maildrop = &transaction.maildrop;
            transaction
                .account
                .modify(|mailboxes| maildrop.apply_deletions(mailboxes))
        } else {
            transaction.account.mailboxes().inbox().len()
        };
        tracing::info!(remaining, "maildrop updated");
        self.state = State::Update {
            _transaction: transaction,
        };
        let response = Response::Updated {
            hostname: self.service.hostname(),
            remaining,
        };
        Reply::new(&response, Flow::Close)
    }

    /// After a client error, counts it and closes the session once
    /// `max_consecutive_errors` came in a row. Returns true when closing.
    async fn too_many_errors(
        &mut self,
        reply: &Reply,
        conditions: &Conditions,
    ) -> Result<bool, Stop> {
        if !reply.client_error {
            self.errors_in_a_row = 0;
            return Ok(false);
        }
        self.errors_in_a_row += 1;
        if self.errors_in_a_row < self.service.limits().max_consecutive_errors {
            return Ok(false);
        }
        tracing::info!(
            errors = self.errors_in_a_row,
            "too many invalid commands in a row"
        );
        self.send(
            &Reply::error(ErrorResponse::TooManyErrors),
            &conditions.faults,
        )
        .await?;
        Ok(true)
    }

    /// Delays the reply while a stall fault is in effect: until its scheduled
    /// end, or for one idle timeout when it has none.
    async fn stall(&self, account: Option<&Account>) {
        if !self.service.active_faults(account).stall {
            return;
        }
        let idle = self.service.limits().pop3_idle_timeout;
        let until = self
            .service
            .stall_end(account)
            .unwrap_or_else(|| Instant::now() + idle);
        tracing::warn!(until = ?until.saturating_duration_since(Instant::now()), "stalling by injected fault");
        tokio::time::sleep_until(until).await;
    }

    /// Writes `reply`, applying the reset faults in effect.
    async fn send(&mut self, reply: &Reply, faults: &ActiveFaults) -> Result<(), Stop> {
        if reply.bytes.is_empty() {
            return Ok(());
        }
        tracing::trace!(
            reply = %reply.bytes[..status_line_len(&reply.bytes)].escape_ascii(),
            "reply"
        );
        if let (true, Some(start)) = (faults.reset_mid_fetch, reply.content_start) {
            // Send the status line and about half of the message, then cut.
            let cut = start + (reply.bytes.len() - start) / 2;
            let head = reply.bytes.get(..cut).unwrap_or(&reply.bytes);
            self.conn.write(head, faults.reset_after_bytes).await?;
            self.conn.abort().await;
            return Err(Stop::InjectedReset);
        }
        self.conn
            .write(&reply.bytes, faults.reset_after_bytes)
            .await?;
        self.conn.flush().await?;
        Ok(())
    }
}

/// Checks the login and takes the connection count and the maildrop lock.
fn open_maildrop(
    account: Option<Arc<Account>>,
    password: &Secret<Vec<u8>>,
    faults: &ActiveFaults,
) -> Result<Transaction, ErrorResponse> {
    let account = account
        .filter(|account| account.check_password(password.expose()))
        .ok_or(ErrorResponse::AuthenticationFailed)?;
    if faults.login_rejected {
        return Err(ErrorResponse::AuthenticationFailed);
    }
    let limit = account.policy().max_connections(Protocol::Pop3);
    let connection = account
        .try_connect(Protocol::Pop3, limit)
        .ok_or(ErrorResponse::TooManyConnections)?;
    let lock = account
        .try_lock_maildrop()
        .ok_or(ErrorResponse::MaildropLocked)?;
    let maildrop = Maildrop::snapshot(account.mailboxes().inbox());
    Ok(Transaction {
        account,
        maildrop,
        _lock: lock,
        _connection: connection,
    })
}

/// Runs a TRANSACTION command other than QUIT on the maildrop.
fn execute(maildrop: &mut Maildrop, command: Command) -> Reply {
    let response = match command {
        Command::Capa => Response::Capabilities,
        Command::Stat => {
            let (messages, octets) = maildrop.stat();
            Response::Stat { messages, octets }
        }
        Command::List(Some(number)) => match maildrop.get(number) {
            Ok(entry) => Response::Scan {
                number,
                octets: entry.octets,
            },
            Err(error) => message_error(error),
        },
        Command::List(None) => {
            let (messages, octets) = maildrop.stat();
            let listing = maildrop
                .listing()
                .map(|(number, entry)| (number, entry.octets))
                .collect();
            Response::ScanList {
                messages,
                octets,
                listing,
            }
        }
        Command::Uidl(Some(number)) => match maildrop.get(number) {
            Ok(entry) => Response::UniqueId {
                number,
                id: maildrop.unique_id(entry),
            },
            Err(error) => message_error(error),
        },
        Command::Uidl(None) => Response::UniqueIdList(
            maildrop
                .listing()
                .map(|(number, entry)| (number, maildrop.unique_id(entry)))
                .collect(),
        ),
        Command::Retr(number) => match maildrop.get(number) {
            Ok(entry) => Response::Message {
                octets: entry.octets,
                content: &entry.message.raw,
            },
            Err(error) => message_error(error),
        },
        Command::Top { message, lines } => match maildrop.get(message) {
            Ok(entry) => Response::Top {
                content: &entry.message.raw,
                lines,
            },
            Err(error) => message_error(error),
        },
        Command::Dele(number) => match maildrop.delete(number) {
            Ok(()) => Response::Deleted { number },
            Err(error) => message_error(error),
        },
        Command::Rset => {
            maildrop.reset();
            let (messages, octets) = maildrop.stat();
            Response::Reset { messages, octets }
        }
        Command::Noop => Response::Noop,
        Command::User(_) | Command::Pass(_) | Command::Quit => {
            Response::Error(ErrorResponse::WrongState)
        }
    };
    Reply::new(&response, Flow::Continue)
}

fn message_error(error: MessageError) -> Response<'static> {
    Response::Error(match error {
        MessageError::NoSuchMessage => ErrorResponse::NoSuchMessage,
        MessageError::Deleted => ErrorResponse::MessageDeleted,
    })
}
