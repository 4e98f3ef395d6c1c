//! The POP3 commands a sync cycle needs: USER/PASS, UIDL, LIST, RETR, DELE
//! and QUIT (RFC 1939), with RFC 2449 response codes classified in the
//! order of this table:
//!
//! | response | meaning |
//! |---|---|
//! | `-ERR`, any code, `... Suggested Backoff Time: N milliseconds` | throttled, back off N ms |
//! | `-ERR` saying "throttled" without a back-off | throttled |
//! | `-ERR [AUTH]`, or `-ERR` without a code to USER or PASS | credentials rejected (permanent) |
//! | `-ERR [IN-USE]`, `-ERR [LOGIN-DELAY]` | busy: maildrop locked or too early |
//! | other `-ERR [SYS/TEMP]`, `[SYS/PERM]`, other `-ERR` | server error |

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::response::{ParseError, Reader, Status};
use crate::error::{SessionError, parse_suggested_backoff};
use crate::secret::Secret;

/// Maximum length of a status or listing line. RFC 1939 allows 512 octets
/// for a response line, and the margin tolerates verbose servers.
const MAX_LINE: usize = 8 * 1024;

const READ_CHUNK: usize = 64 * 1024;

/// One entry of a UIDL listing joined with LIST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) number: u32,
    pub(crate) uidl: Box<str>,
    pub(crate) size: u64,
}

/// Whether a failed command was part of authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommandKind {
    Auth,
    Other,
}

/// A connected POP3 session.
pub(crate) struct Pop3Session<S> {
    stream: S,
    reader: Reader,
    buffer: Box<[u8]>,
    timeout: Duration,
    /// Commands sent whose status line has not been read yet.
    awaiting: usize,
    /// Set when a read or write failed, timed out or could not be parsed:
    /// the session can no longer tell which response belongs to which
    /// command.
    broken: bool,
}

impl<S> Pop3Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Reads the greeting.
    pub(crate) async fn connect(stream: S, timeout: Duration) -> Result<Self, SessionError> {
        let mut session = Self {
            stream,
            reader: Reader::new(MAX_LINE),
            buffer: vec![0; READ_CHUNK].into_boxed_slice(),
            timeout,
            awaiting: 0,
            broken: false,
        };
        match session.read_status().await? {
            Status::Ok(_) => Ok(session),
            Status::Err { code, text } => Err(classify(code.as_deref(), text, CommandKind::Other)),
        }
    }

    /// Logs in with USER and PASS.
    pub(crate) async fn login(
        &mut self,
        username: &str,
        password: &Secret,
    ) -> Result<(), SessionError> {
        check_argument(username, "user name")?;
        check_argument(password.expose(), "password")?;
        self.simple(&["USER ", username], CommandKind::Auth).await?;
        self.simple(&["PASS ", password.expose()], CommandKind::Auth)
            .await?;
        Ok(())
    }

    /// Lists every message's number, UIDL and size, in message-number order.
    pub(crate) async fn list(&mut self, max_listing: usize) -> Result<Vec<Listed>, SessionError> {
        let uidl = self.multi(&["UIDL"], max_listing).await?;
        let sizes = self.multi(&["LIST"], max_listing).await?;
        let mut sizes: Vec<(u32, u64)> = lines(&sizes)
            .filter_map(|line| {
                let (number, size) = split_pair(line)?;
                Some((number.parse().ok()?, size.parse().ok()?))
            })
            .collect();
        sizes.sort_unstable();
        let mut listed: Vec<Listed> = lines(&uidl)
            .filter_map(|line| {
                let (number, uidl) = split_pair(line)?;
                let number: u32 = number.parse().ok()?;
                let size = sizes
                    .binary_search_by_key(&number, |&(n, _)| n)
                    .ok()
                    .and_then(|i| sizes.get(i))
                    .map_or(0, |&(_, size)| size);
                Some(Listed {
                    number,
                    uidl: uidl.into(),
                    size,
                })
            })
            .collect();
        listed.sort_unstable_by_key(|entry| entry.number);
        Ok(listed)
    }

    /// Downloads message `number`.
    pub(crate) async fn retr(
        &mut self,
        number: u32,
        max_size: usize,
    ) -> Result<Bytes, SessionError> {
        self.multi(&["RETR ", &number.to_string()], max_size).await
    }

    /// Asks for the server's capabilities (RFC 2449) and returns whether it
    /// offers PIPELINING. A server without CAPA offers nothing.
    pub(crate) async fn pipelining(&mut self) -> Result<bool, SessionError> {
        self.send(&["CAPA"]).await?;
        if let Status::Err { .. } = self.read_status().await? {
            return Ok(false);
        }
        let capabilities = self.read_body(MAX_LINE * 64).await?;
        Ok(lines(&capabilities).any(|line| line.eq_ignore_ascii_case("PIPELINING")))
    }

    /// Sends RETR for every message in `numbers` at once; read the responses
    /// in order with [`Pop3Session::read_retr`]. Only for servers that offer
    /// PIPELINING.
    pub(crate) async fn send_retrs(&mut self, numbers: &[u32]) -> Result<(), SessionError> {
        let mut commands = String::with_capacity(numbers.len() * 12);
        for number in numbers {
            commands.push_str("RETR ");
            commands.push_str(&number.to_string());
            commands.push_str("\r\n");
        }
        self.write(commands.as_bytes(), numbers.len()).await
    }

    /// Reads the response to one RETR sent by [`Pop3Session::send_retrs`].
    pub(crate) async fn read_retr(&mut self, max_size: usize) -> Result<Bytes, SessionError> {
        match self.read_status().await? {
            Status::Ok(_) => self.read_body(max_size).await,
            Status::Err { code, text } => Err(classify(code.as_deref(), text, CommandKind::Other)),
        }
    }

    /// Marks message `number` for deletion at QUIT.
    pub(crate) async fn dele(&mut self, number: u32) -> Result<(), SessionError> {
        self.simple(&["DELE ", &number.to_string()], CommandKind::Other)
            .await?;
        Ok(())
    }

    /// Marks every message in `numbers` for deletion at QUIT, sending the
    /// DELEs at once when the server offers PIPELINING.
    pub(crate) async fn dele_all(
        &mut self,
        numbers: &[u32],
        pipelining: bool,
    ) -> Result<(), SessionError> {
        if !pipelining {
            for &number in numbers {
                self.dele(number).await?;
            }
            return Ok(());
        }
        let mut commands = String::with_capacity(numbers.len() * 12);
        for number in numbers {
            commands.push_str("DELE ");
            commands.push_str(&number.to_string());
            commands.push_str("\r\n");
        }
        self.write(commands.as_bytes(), numbers.len()).await?;
        // Every response is read, so that the session stays in step for a
        // QUIT that applies the DELEs the server accepted.
        let mut first_error = None;
        for _ in numbers {
            if let Status::Err { code, text } = self.read_status().await? {
                first_error
                    .get_or_insert_with(|| classify(code.as_deref(), text, CommandKind::Other));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Ends the session; the server deletes the marked messages now.
    pub(crate) async fn quit(mut self) -> Result<(), SessionError> {
        self.simple(&["QUIT"], CommandKind::Other).await?;
        let _ = tokio::time::timeout(self.timeout, self.stream.shutdown()).await;
        Ok(())
    }

    /// Ends a session whose cycle failed. When the server responded to the
    /// failing command and nothing broke the exchange, it reads the
    /// responses to RETRs still in flight and sends QUIT, so the DELEs the
    /// server accepted before the failure take effect (RFC 1939, section
    /// 6). Without that, a throttled deleting mailbox keeps every processed
    /// message and spends each later cycle deleting them again. Otherwise
    /// it drops the connection.
    pub(crate) async fn close_after_error(mut self, max_size: usize) {
        // RETR is the only pipelined command whose responses are not all
        // read right after sending, so whatever is awaited here is a RETR
        // response.
        while !self.broken && self.awaiting > 0 {
            // An -ERR response to a RETR still leaves the session in step.
            let _ = self.read_retr(max_size).await;
        }
        if !self.broken
            && let Err(error) = self.quit().await
        {
            tracing::debug!(%error, "QUIT after a failed cycle failed");
        }
    }

    async fn simple(&mut self, parts: &[&str], kind: CommandKind) -> Result<String, SessionError> {
        self.send(parts).await?;
        match self.read_status().await? {
            Status::Ok(text) => Ok(text),
            Status::Err { code, text } => Err(classify(code.as_deref(), text, kind)),
        }
    }

    async fn multi(&mut self, parts: &[&str], max_body: usize) -> Result<Bytes, SessionError> {
        self.simple(parts, CommandKind::Other).await?;
        self.read_body(max_body).await
    }

    async fn read_body(&mut self, max_body: usize) -> Result<Bytes, SessionError> {
        loop {
            match self.reader.body(max_body) {
                Ok(Some(body)) => return Ok(body),
                Ok(None) => self.fill().await?,
                Err(error) => {
                    self.broken = true;
                    return Err(parse_error(error));
                }
            }
        }
    }

    async fn send(&mut self, parts: &[&str]) -> Result<(), SessionError> {
        let mut line = Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 2);
        for part in parts {
            line.extend_from_slice(part.as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        self.write(&line, 1).await
    }

    /// Writes `bytes`, which hold `commands` commands.
    async fn write(&mut self, bytes: &[u8], commands: usize) -> Result<(), SessionError> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        let result = match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(SessionError::TimedOut(self.timeout)),
            Ok(result) => result.map_err(SessionError::from),
        };
        match result {
            Ok(()) => self.awaiting += commands,
            Err(_) => self.broken = true,
        }
        result
    }

    async fn read_status(&mut self) -> Result<Status, SessionError> {
        loop {
            match self.reader.status() {
                Ok(Some(status)) => {
                    self.awaiting = self.awaiting.saturating_sub(1);
                    return Ok(status);
                }
                Ok(None) => self.fill().await?,
                Err(error) => {
                    self.broken = true;
                    return Err(parse_error(error));
                }
            }
        }
    }

    async fn fill(&mut self) -> Result<(), SessionError> {
        let read = self.stream.read(&mut self.buffer);
        let result = match tokio::time::timeout(self.timeout, read).await {
            Err(_) => Err(SessionError::TimedOut(self.timeout)),
            Ok(Err(error)) => Err(SessionError::from(error)),
            Ok(Ok(0)) => Err(SessionError::Closed),
            Ok(Ok(count)) => {
                self.reader
                    .feed(self.buffer.get(..count).unwrap_or_default());
                Ok(())
            }
        };
        if result.is_err() {
            self.broken = true;
        }
        result
    }
}

fn parse_error(error: ParseError) -> SessionError {
    SessionError::Protocol(error.to_string())
}

/// Rejects arguments that would end the command line early.
fn check_argument(value: &str, what: &str) -> Result<(), SessionError> {
    if value.contains(['\r', '\n']) {
        return Err(SessionError::Protocol(format!(
            "{what} contains a line break and cannot be sent"
        )));
    }
    Ok(())
}

fn classify(code: Option<&str>, text: String, kind: CommandKind) -> SessionError {
    // The throttling text is checked first, as for IMAP: a throttled PASS
    // without a code must not read as rejected credentials.
    let backoff = parse_suggested_backoff(&text);
    if backoff.is_some() || text.to_ascii_lowercase().contains("throttl") {
        return SessionError::Throttled { backoff, text };
    }
    let primary = code.map(|code| code.split('/').next().unwrap_or(code));
    match primary {
        Some("AUTH") => SessionError::CredentialsRejected(text),
        Some("IN-USE" | "LOGIN-DELAY") => SessionError::Busy(text),
        None if kind == CommandKind::Auth => SessionError::CredentialsRejected(text),
        _ => SessionError::Server(text),
    }
}

fn lines(body: &[u8]) -> impl Iterator<Item = &str> {
    body.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        std::str::from_utf8(line)
            .ok()
            .filter(|line| !line.is_empty())
    })
}

fn split_pair(line: &str) -> Option<(&str, &str)> {
    let mut parts = line.split_ascii_whitespace();
    let first = parts.next()?;
    let second = parts.next()?;
    Some((first, second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_code_rejects_credentials() {
        let error = classify(Some("AUTH"), "bad password".into(), CommandKind::Auth);
        assert!(matches!(error, SessionError::CredentialsRejected(_)));
    }

    #[test]
    fn in_use_is_busy() {
        let error = classify(Some("IN-USE"), "locked".into(), CommandKind::Auth);
        assert!(matches!(error, SessionError::Busy(_)));
    }

    #[test]
    fn sys_temp_with_backoff_is_throttled() {
        let text = "Request is throttled. Suggested Backoff Time: 2000 milliseconds".to_owned();
        match classify(Some("SYS/TEMP"), text, CommandKind::Other) {
            SessionError::Throttled { backoff, .. } => {
                assert_eq!(backoff, Some(Duration::from_secs(2)));
            }
            other => panic!("expected throttled, got {other:?}"),
        }
    }

    #[test]
    fn sys_temp_without_backoff_is_server_error() {
        let error = classify(Some("SYS/TEMP"), "try later".into(), CommandKind::Auth);
        assert!(matches!(error, SessionError::Server(_)));
    }

    #[test]
    fn plain_err_to_pass_rejects_credentials() {
        let error = classify(None, "invalid password".into(), CommandKind::Auth);
        assert!(matches!(error, SessionError::CredentialsRejected(_)));
        let other = classify(None, "no such message".into(), CommandKind::Other);
        assert!(matches!(other, SessionError::Server(_)));
    }

    #[tokio::test]
    async fn scripted_session_lists_and_retrieves() -> Result<(), SessionError> {
        let (client, mut server) = tokio::io::duplex(64);
        let script = tokio::spawn(async move {
            let mut input = Vec::new();
            let replies: [&[u8]; 6] = [
                b"+OK ready\r\n",
                b"+OK user\r\n",
                b"+OK logged in\r\n",
                b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n",
                b"+OK\r\n1 10\r\n2 20\r\n.\r\n",
                b"+OK 12 octets\r\nSubject: a\r\n\r\n..dot\r\n.\r\n",
            ];
            for (index, reply) in replies.iter().enumerate() {
                if index > 0 {
                    read_line(&mut server, &mut input).await;
                }
                server.write_all(reply).await.expect("write reply");
            }
            read_line(&mut server, &mut input).await;
            server.write_all(b"+OK bye\r\n").await.expect("write bye");
            String::from_utf8(input).expect("ascii commands")
        });

        let mut session = Pop3Session::connect(client, Duration::from_secs(5)).await?;
        session.login("alice", &Secret::from("pw")).await?;
        let listed = session.list(1 << 20).await?;
        let body = session.retr(1, 1 << 20).await?;
        session.quit().await?;
        let commands = script.await.expect("script");

        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].number, 2);
        assert_eq!(&*listed[1].uidl, "bbb");
        assert_eq!(listed[1].size, 20);
        assert_eq!(&body[..], b"Subject: a\r\n\r\n.dot\r\n");
        assert_eq!(
            commands,
            "USER alice\r\nPASS pw\r\nUIDL\r\nLIST\r\nRETR 1\r\nQUIT\r\n"
        );
        Ok(())
    }

    async fn read_line(stream: &mut tokio::io::DuplexStream, into: &mut Vec<u8>) {
        let mut byte = [0u8; 1];
        loop {
            stream.read_exact(&mut byte).await.expect("read command");
            into.push(byte[0]);
            if byte[0] == b'\n' {
                return;
            }
        }
    }
}
