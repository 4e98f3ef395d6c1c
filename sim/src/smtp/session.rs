//! The SMTP session loop: reads lines from a [`Connection`] and drives
//! `mailin`'s state machine with them.
//!
//! `mailin` parses commands, tracks the SMTP state (greeting, MAIL, RCPT,
//! DATA) and calls the [`EnvelopeHandler`]. The loop does what `mailin`
//! leaves to its caller: bounded reads, the idle timeout, faults, the DATA
//! phase and closing after too many errors. [`DataReader`] reads the DATA
//! phase, so content is never buffered per line and is dropped past the
//! size limit.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::data::{DataReader, Progress};
use super::envelope::{Envelope, EnvelopeHandler};
use super::reply::Reply;
use crate::conn::{Connection, Line, Peer, ReadError, WriteError};
use crate::service::Service;
use crate::store::Account;

/// Runs one session until QUIT, disconnection, timeout or an injected reset.
pub(super) async fn run<S>(service: Service, stream: S, peer: Peer) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let client_ip = peer.addr.map(|addr| addr.ip());
    let handler = EnvelopeHandler::new(Envelope::new(service.clone(), client_ip));
    // mailin passes the address only to handler callbacks, which ignore it.
    let ip = client_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let smtp = mailin::SessionBuilder::new(service.hostname()).build(ip, handler.clone());
    let mut session = Session {
        conn: Connection::new(stream, service.limits().write_timeout),
        service,
        smtp,
        handler,
        errors_in_a_row: 0,
        after_auth: false,
        pending_recipient: None,
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

/// The loop's next step after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// DATA was accepted with 354; content follows.
    ReadData,
    Close,
}

/// An encoded reply.
struct Answer {
    bytes: Vec<u8>,
    code: u16,
    flow: Flow,
}

impl Answer {
    fn reply(reply: Reply<'_>) -> Self {
        let mut bytes = Vec::new();
        reply.encode(&mut bytes);
        let flow = if reply.code() == 421 {
            Flow::Close
        } else {
            Flow::Continue
        };
        Self {
            bytes,
            code: reply.code(),
            flow,
        }
    }

    fn response(response: &mailin::Response) -> io::Result<Self> {
        let flow = match response.action {
            mailin::Action::Close => Flow::Close,
            _ if response.code == 354 => Flow::ReadData,
            _ => Flow::Continue,
        };
        Ok(Self {
            bytes: response.buffer()?,
            code: response.code,
            flow,
        })
    }
}

struct Session<S> {
    service: Service,
    conn: Connection<S>,
    smtp: mailin::Session<EnvelopeHandler>,
    handler: EnvelopeHandler,
    errors_in_a_row: u32,
    /// The previous command was AUTH, so this line may be a credential.
    after_auth: bool,
    /// The account the last RCPT named, whose latency and stall delay the reply.
    pending_recipient: Option<Arc<Account>>,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn serve(&mut self) -> Result<(), Stop> {
        if self.service.active_faults(None).connection_refused {
            tracing::warn!("connection refused by injected fault");
            self.conn.abort().await;
            return Ok(());
        }
        self.stall().await;
        let greeting = Answer::response(&self.smtp.greeting())?;
        self.send(&greeting).await?;

        loop {
            let line = match self
                .conn
                .read_line(self.max_line(), self.idle_timeout())
                .await
            {
                Ok(Line::Complete(line)) => line,
                Ok(Line::TooLong { .. }) => {
                    let answer = Answer::reply(Reply::LineTooLong);
                    self.send(&answer).await?;
                    if self.too_many_errors(answer.code).await? {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => return self.read_failed(error).await,
            };
            self.stall().await;
            let mut answer = self.command(line)?;
            self.send(&answer).await?;

            if answer.flow == Flow::ReadData {
                answer = match self.read_data().await? {
                    Some(answer) => answer,
                    None => return Ok(()),
                };
                self.send(&answer).await?;
            }
            if answer.flow == Flow::Close {
                self.conn.close().await;
                return Ok(());
            }
            if self.too_many_errors(answer.code).await? {
                return Ok(());
            }
        }
    }

    /// Processes one command line (without its line ending) and returns the reply.
    fn command(&mut self, mut line: BytesMut) -> io::Result<Answer> {
        let verb = verb(&line);

        // AUTH is not offered. Replying to it here keeps its credentials away
        // from mailin, which logs every command line it parses.
        if verb == "AUTH" {
            tracing::trace!("command AUTH <redacted>");
            self.after_auth = true;
            return Ok(Answer::reply(Reply::AuthNotEnabled));
        }
        // A client that ignores the refusal sends its credentials next, as
        // a line that is no command; it is answered here and never logged.
        if std::mem::take(&mut self.after_auth) && !is_command(&verb) {
            tracing::trace!("line after AUTH <redacted>");
            return Ok(Answer::reply(Reply::AuthNotEnabled));
        }
        tracing::trace!(line = %line.escape_ascii(), "command");

        // QUIT still works during a server error, so clients can leave cleanly.
        if self.service.active_faults(None).server_error && verb != "QUIT" {
            tracing::warn!("command failed by injected server error");
            return Ok(Answer::reply(Reply::ServerError));
        }
        if verb == "EHLO" || verb == "HELO" {
            self.handler.envelope().esmtp = verb == "EHLO";
        }
        if verb == "MAIL" {
            line = substitute_null_sender(line);
        }
        line.extend_from_slice(b"\r\n");
        let response = self.smtp.process(&line);
        if verb == "RCPT" {
            self.pending_recipient = self.handler.envelope().take_last_recipient();
        }

        // mailin's EHLO reply lacks the server's name on its first line,
        // which RFC 5321 section 4.1.1.1 requires, so it is replaced.
        if verb == "EHLO" && response.code == 250 {
            let envelope = self.handler.envelope();
            return Ok(Answer::reply(Reply::Ehlo {
                hostname: self.service.hostname(),
                client: envelope.client_domain(),
            }));
        }
        Answer::response(&response)
    }

    /// Reads message content after 354 and returns the end-of-DATA reply.
    /// Returns `None` when the session ended during the content.
    async fn read_data(&mut self) -> Result<Option<Answer>, Stop> {
        let mut reader = DataReader::new(self.service.limits().max_message);
        let mut content = Vec::new();
        while reader.read(self.conn.input(), &mut content) == Progress::NeedMore {
            if let Err(error) = self.conn.fill(self.idle_timeout()).await {
                self.read_failed(error).await?;
                return Ok(None);
            }
        }
        tracing::debug!(size = reader.size(), "message content received");
        self.handler
            .envelope()
            .set_content(content, reader.oversized());
        let response = self.smtp.process(b".\r\n");
        Ok(Some(Answer::response(&response)?))
    }

    /// Ends the session after a failed read: silently when the peer left,
    /// with `421` after the idle timeout.
    async fn read_failed(&mut self, error: ReadError) -> Result<(), Stop> {
        match error {
            ReadError::Closed => {
                tracing::debug!("connection closed by peer");
                Ok(())
            }
            ReadError::TimedOut => {
                tracing::info!(timeout = ?self.idle_timeout(), "idle timeout");
                let hostname = self.service.hostname().to_owned();
                self.send(&Answer::reply(Reply::Timeout {
                    hostname: &hostname,
                }))
                .await?;
                self.conn.close().await;
                Ok(())
            }
            ReadError::Io(error) => Err(Stop::Io(error)),
        }
    }

    /// Counts permanent failures (5xx) in a row and closes the session with
    /// `421` once `max_consecutive_errors` is reached. Returns true when closing.
    async fn too_many_errors(&mut self, code: u16) -> Result<bool, Stop> {
        match code {
            500.. => {
                tracing::debug!(code, "command rejected");
                self.errors_in_a_row += 1;
            }
            400..500 => return Ok(false),
            _ => self.errors_in_a_row = 0,
        }
        if self.errors_in_a_row < self.service.limits().max_consecutive_errors {
            return Ok(false);
        }
        tracing::info!(errors = self.errors_in_a_row, "too many errors in a row");
        let hostname = self.service.hostname().to_owned();
        self.send(&Answer::reply(Reply::TooManyErrors {
            hostname: &hostname,
        }))
        .await?;
        self.conn.close().await;
        Ok(true)
    }

    /// Delays the reply while a stall fault is in effect: until its scheduled
    /// end, or for one idle timeout when it has none.
    async fn stall(&self) {
        if !self.service.active_faults(None).stall {
            return;
        }
        let until = self
            .service
            .stall_end(None)
            .unwrap_or_else(|| Instant::now() + self.idle_timeout());
        tracing::warn!(until = ?until.saturating_duration_since(Instant::now()), "stalling by injected fault");
        tokio::time::sleep_until(until).await;
    }

    /// Applies the policies of the account the last RCPT named: its
    /// command latency, and a stall fault on it.
    async fn recipient_policy(&mut self) {
        let Some(account) = self.pending_recipient.take() else {
            return;
        };
        let latency = account.policy().command_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.service.active_faults(Some(&account)).stall {
            let until = self
                .service
                .stall_end(Some(&account))
                .unwrap_or_else(|| Instant::now() + self.idle_timeout());
            tracing::warn!(
                mailbox = account.address(),
                "recipient stalled by injected fault"
            );
            tokio::time::sleep_until(until).await;
        }
    }

    /// Writes and flushes `answer`, applying the reset fault in effect.
    async fn send(&mut self, answer: &Answer) -> Result<(), Stop> {
        self.recipient_policy().await;
        if answer.bytes.is_empty() {
            return Ok(());
        }
        tracing::trace!(reply = %answer.bytes.escape_ascii(), "reply");
        let reset_after = self.service.active_faults(None).reset_after_bytes;
        self.conn.write(&answer.bytes, reset_after).await?;
        self.conn.flush().await?;
        Ok(())
    }

    fn max_line(&self) -> usize {
        self.service.limits().max_line
    }

    fn idle_timeout(&self) -> Duration {
        self.service.limits().smtp_idle_timeout
    }
}

/// The sender passed to mailin in place of the null reverse-path.
const NULL_SENDER_STANDIN: &[u8] = b"MAILER-DAEMON";

/// Replaces the null reverse-path in `MAIL FROM:<>`, which bounces and
/// other notifications use (RFC 5321 section 4.5.5), with a stand-in.
///
/// NOTE: mailin 0.6 rejects `<>` as a syntax error. The sender is not
/// stored or used in delivery, so the stand-in changes nothing else.
fn substitute_null_sender(line: BytesMut) -> BytesMut {
    let prefix = b"MAIL FROM:<>";
    let is_null = line
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
    if !is_null {
        return line;
    }
    let mut substituted = BytesMut::with_capacity(line.len() + NULL_SENDER_STANDIN.len());
    substituted.extend_from_slice(b"MAIL FROM:<");
    substituted.extend_from_slice(NULL_SENDER_STANDIN);
    substituted.extend_from_slice(line.get(prefix.len() - 1..).unwrap_or_default());
    substituted
}

/// Returns the command verb in upper case, or an empty string when the line
/// does not start with a short ASCII word.
fn verb(line: &[u8]) -> String {
    let word = line.split(|&byte| byte == b' ').next().unwrap_or_default();
    if word.len() > 8 || !word.is_ascii() {
        return String::new();
    }
    String::from_utf8_lossy(word).to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_sender_gets_stand_in() {
        let line = substitute_null_sender(BytesMut::from(&b"mail from:<> BODY=8BITMIME"[..]));
        assert_eq!(&line[..], b"MAIL FROM:<MAILER-DAEMON> BODY=8BITMIME");
        let line = substitute_null_sender(BytesMut::from(&b"MAIL FROM:<a@b>"[..]));
        assert_eq!(&line[..], b"MAIL FROM:<a@b>");
        let line = substitute_null_sender(BytesMut::from(&b"MAIL"[..]));
        assert_eq!(&line[..], b"MAIL");
    }

    #[test]
    fn verb_is_first_word_in_upper_case() {
        assert_eq!(verb(b"ehlo client.test"), "EHLO");
        assert_eq!(verb(b"QUIT"), "QUIT");
        assert_eq!(verb(b"\xff\xfe x"), "");
        assert_eq!(verb(b"averyveryverylongword"), "");
    }
}

/// True for the verbs of RFC 5321 and its common extensions.
fn is_command(verb: &str) -> bool {
    matches!(
        verb,
        "HELO"
            | "EHLO"
            | "MAIL"
            | "RCPT"
            | "DATA"
            | "RSET"
            | "NOOP"
            | "QUIT"
            | "VRFY"
            | "EXPN"
            | "HELP"
            | "STARTTLS"
            | "BDAT"
            | "AUTH"
    )
}
