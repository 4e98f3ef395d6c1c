//! POP3 responses as typed values that encode to bytes.
//!
//! Session code picks a [`Response`] variant and never writes reply text
//! itself, so every line the server sends starts with `+OK` or `-ERR`, and
//! multi-line responses are always dot-stuffed and terminated.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::time::Duration;

use bytes::BytesMut;

use super::command::CommandError;
use crate::policy::throttled_text;

/// The capabilities listed in the CAPA response (RFC 2449 section 6), in order.
pub const CAPABILITIES: [&str; 7] = [
    "TOP",
    "UIDL",
    "USER",
    "RESP-CODES",
    "PIPELINING",
    "AUTH-RESP-CODE",
    "IMPLEMENTATION mailsim",
];

/// An extended response code in brackets after `-ERR` (RFC 2449 section 8,
/// RFC 3206).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseCode {
    /// `[IN-USE]`: the maildrop is locked or the account has too many sessions.
    InUse,
    /// `[SYS/TEMP]`: a temporary server problem; retrying later may work.
    SysTemp,
    /// `[AUTH]`: the credentials are wrong; retrying will not help.
    Auth,
}

impl ResponseCode {
    fn as_str(self) -> &'static str {
        match self {
            Self::InUse => "IN-USE",
            Self::SysTemp => "SYS/TEMP",
            Self::Auth => "AUTH",
        }
    }
}

/// A message's unique-id listing value: `<uidvalidity>.<uid>` of its INBOX
/// entry, so it is stable across sessions and changes when UIDVALIDITY does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UniqueId {
    /// The INBOX's UIDVALIDITY when the maildrop was opened.
    pub uid_validity: u32,
    /// The message's UID.
    pub uid: u32,
}

impl fmt::Display for UniqueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.uid_validity, self.uid)
    }
}

/// A `-ERR` response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorResponse {
    /// The command line could not be parsed.
    Invalid(CommandError),
    /// The command exists but not in the current state.
    WrongState,
    /// PASS came without a preceding USER.
    UserFirst,
    /// No message has this number.
    NoSuchMessage,
    /// The message is marked as deleted.
    MessageDeleted,
    /// Wrong user name or password, or logins are rejected.
    AuthenticationFailed,
    /// The account's POP3 connection limit is reached.
    TooManyConnections,
    /// Another session holds the maildrop lock.
    MaildropLocked,
    /// The account's command budget is spent.
    Throttled {
        /// Suggested wait before the next command.
        backoff: Duration,
    },
    /// The store is unavailable.
    ServerError,
    /// QUIT could not remove the messages marked as deleted.
    DeletionsNotApplied,
    /// Too many invalid commands in a row; the session closes.
    TooManyErrors,
}

impl ErrorResponse {
    /// Returns the extended response code, if this error has one.
    pub fn code(self) -> Option<ResponseCode> {
        match self {
            Self::AuthenticationFailed => Some(ResponseCode::Auth),
            Self::TooManyConnections | Self::MaildropLocked => Some(ResponseCode::InUse),
            Self::Throttled { .. } | Self::ServerError | Self::DeletionsNotApplied => {
                Some(ResponseCode::SysTemp)
            }
            _ => None,
        }
    }

    /// Returns true when the client caused the error. Such errors count
    /// towards the limit of errors in a row.
    pub fn is_client_error(self) -> bool {
        match self {
            Self::Invalid(_)
            | Self::WrongState
            | Self::UserFirst
            | Self::NoSuchMessage
            | Self::MessageDeleted
            | Self::AuthenticationFailed => true,
            Self::TooManyConnections
            | Self::MaildropLocked
            | Self::Throttled { .. }
            | Self::ServerError
            | Self::DeletionsNotApplied
            | Self::TooManyErrors => false,
        }
    }

    fn text(self) -> Cow<'static, str> {
        let text = match self {
            Self::Invalid(CommandError::LineTooLong) => "Line too long",
            Self::Invalid(CommandError::UnknownCommand) => "Unknown command",
            Self::Invalid(CommandError::MissingArgument) => "Missing argument",
            Self::Invalid(CommandError::TooManyArguments) => "Too many arguments",
            Self::Invalid(CommandError::InvalidNumber) => "Invalid number",
            Self::Invalid(CommandError::InvalidUserName) => "Invalid user name",
            Self::WrongState => "Command not valid in this state",
            Self::UserFirst => "Send USER first",
            Self::NoSuchMessage => "No such message",
            Self::MessageDeleted => "Message is marked as deleted",
            Self::AuthenticationFailed => "Authentication failed",
            Self::TooManyConnections => "Too many connections",
            Self::MaildropLocked => "Maildrop is locked by another session",
            Self::Throttled { backoff } => return Cow::Owned(throttled_text(backoff)),
            Self::ServerError => "Mail store temporarily unavailable",
            Self::DeletionsNotApplied => {
                "Mail store temporarily unavailable, deleted messages not removed"
            }
            Self::TooManyErrors => "Too many invalid commands, closing connection",
        };
        Cow::Borrowed(text)
    }
}

/// The text after `-ERR `: the response code in brackets, if any, and the message.
impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = self.code() {
            write!(f, "[{}] ", code.as_str())?;
        }
        f.write_str(&self.text())
    }
}

impl From<CommandError> for ErrorResponse {
    fn from(error: CommandError) -> Self {
        Self::Invalid(error)
    }
}

/// A POP3 response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// The greeting sent when a connection opens.
    Greeting {
        /// The server's host name.
        hostname: &'a str,
    },
    /// The CAPA list.
    Capabilities,
    /// USER was accepted; PASS comes next.
    UserAccepted,
    /// PASS succeeded and the maildrop is locked.
    LoggedIn {
        /// Messages in the maildrop.
        messages: usize,
        /// Their total size in octets.
        octets: u64,
    },
    /// The STAT drop listing.
    Stat {
        /// Messages not marked as deleted.
        messages: usize,
        /// Their total size in octets.
        octets: u64,
    },
    /// The scan listing of one message.
    Scan {
        /// Message number.
        number: u32,
        /// Size in octets.
        octets: u64,
    },
    /// The scan listing of every message not marked as deleted.
    ScanList {
        /// Number of listed messages.
        messages: usize,
        /// Their total size in octets.
        octets: u64,
        /// (message number, size) pairs in ascending order.
        listing: Vec<(u32, u64)>,
    },
    /// The unique-id listing of one message.
    UniqueId {
        /// Message number.
        number: u32,
        /// Its unique id.
        id: UniqueId,
    },
    /// The unique-id listing of every message not marked as deleted.
    UniqueIdList(Vec<(u32, UniqueId)>),
    /// A whole message (RETR).
    Message {
        /// Size as LIST reports it.
        octets: u64,
        /// The stored message bytes.
        content: &'a [u8],
    },
    /// The header and the first body lines of a message (TOP).
    Top {
        /// The stored message bytes.
        content: &'a [u8],
        /// Body lines to include.
        lines: u32,
    },
    /// DELE marked the message.
    Deleted {
        /// Message number.
        number: u32,
    },
    /// RSET unmarked every message.
    Reset {
        /// Messages in the maildrop.
        messages: usize,
        /// Their total size in octets.
        octets: u64,
    },
    /// NOOP.
    Noop,
    /// QUIT before login.
    SigningOff {
        /// The server's host name.
        hostname: &'a str,
    },
    /// QUIT after the UPDATE state removed the deleted messages.
    Updated {
        /// The server's host name.
        hostname: &'a str,
        /// Messages left in the maildrop.
        remaining: usize,
    },
    /// A `-ERR` response.
    Error(ErrorResponse),
}

impl Response<'_> {
    /// Returns true for a `-ERR` response the client caused.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::Error(error) if error.is_client_error())
    }

    /// Returns true when the response carries message content (RETR and TOP).
    pub fn has_message_content(&self) -> bool {
        matches!(self, Self::Message { .. } | Self::Top { .. })
    }

    /// Appends the response's bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Greeting { hostname } => ok(out, format_args!("{hostname} POP3 server ready")),
            Self::Capabilities => {
                ok(out, format_args!("Capability list follows"));
                for capability in CAPABILITIES {
                    line(out, format_args!("{capability}"));
                }
                end_multi_line(out);
            }
            Self::UserAccepted => ok(out, format_args!("Send PASS")),
            Self::LoggedIn { messages, octets } => ok(
                out,
                format_args!("Maildrop locked and ready, {messages} messages ({octets} octets)"),
            ),
            Self::Stat { messages, octets } => ok(out, format_args!("{messages} {octets}")),
            Self::Scan { number, octets } => ok(out, format_args!("{number} {octets}")),
            Self::ScanList {
                messages,
                octets,
                listing,
            } => {
                ok(out, format_args!("{messages} messages ({octets} octets)"));
                for (number, size) in listing {
                    line(out, format_args!("{number} {size}"));
                }
                end_multi_line(out);
            }
            Self::UniqueId { number, id } => ok(out, format_args!("{number} {id}")),
            Self::UniqueIdList(listing) => {
                ok(out, format_args!("Unique-ID listing follows"));
                for (number, id) in listing {
                    line(out, format_args!("{number} {id}"));
                }
                end_multi_line(out);
            }
            Self::Message { octets, content } => {
                ok(out, format_args!("{octets} octets"));
                encode_content(content, None, out);
                end_multi_line(out);
            }
            Self::Top { content, lines } => {
                ok(out, format_args!("Top of message follows"));
                encode_content(content, Some(*lines), out);
                end_multi_line(out);
            }
            Self::Deleted { number } => ok(out, format_args!("Message {number} deleted")),
            Self::Reset { messages, octets } => ok(
                out,
                format_args!("Maildrop has {messages} messages ({octets} octets)"),
            ),
            // A bare "+OK", as the NOOP example of RFC 1939 section 6 shows.
            Self::Noop => out.extend_from_slice(b"+OK\r\n"),
            Self::SigningOff { hostname } => {
                ok(out, format_args!("{hostname} POP3 server signing off"));
            }
            Self::Updated {
                hostname,
                remaining,
            } => ok(
                out,
                format_args!("{hostname} POP3 server signing off ({remaining} messages left)"),
            ),
            Self::Error(error) => {
                out.extend_from_slice(b"-ERR ");
                line(out, format_args!("{error}"));
            }
        }
    }
}

fn ok(out: &mut BytesMut, text: fmt::Arguments<'_>) {
    out.extend_from_slice(b"+OK ");
    line(out, text);
}

fn line(out: &mut BytesMut, text: fmt::Arguments<'_>) {
    // BytesMut's fmt::Write grows the buffer and always returns Ok.
    let _ = out.write_fmt(text);
    out.extend_from_slice(b"\r\n");
}

fn end_multi_line(out: &mut BytesMut) {
    out.extend_from_slice(b".\r\n");
}

/// Splits `content` into lines without their line endings. A line ends at
/// LF, with or without a CR before it, and a last line without LF is still
/// a line.
fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    content.split_inclusive(|&byte| byte == b'\n').map(|line| {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        line.strip_suffix(b"\r").unwrap_or(line)
    })
}

/// Size of `content` as sent in RETR before dot-stuffing: every line
/// ending becomes CRLF, and a last line without one gets one (RFC 1939
/// section 11 counts octets as if lines ended in CRLF).
pub fn transmitted_size(content: &[u8]) -> u64 {
    lines(content).map(|line| line.len() as u64 + 2).sum()
}

/// Appends `content` as the body of a multi-line response: lines end in
/// CRLF and a line starting with "." gets another "." in front
/// (RFC 1939 section 3). With `body_lines`, only the header, the blank line
/// after it and that many body lines are sent (TOP).
fn encode_content(content: &[u8], body_lines: Option<u32>, out: &mut BytesMut) {
    out.reserve(content.len() + content.len() / 32);
    let mut in_header = true;
    let mut body_sent = 0u32;
    for text in lines(content) {
        if !in_header && body_lines.is_some_and(|limit| body_sent >= limit) {
            break;
        }
        if text.first() == Some(&b'.') {
            out.extend_from_slice(b".");
        }
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
        if in_header {
            in_header = !text.is_empty();
        } else {
            body_sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(response: &Response<'_>) -> String {
        let mut out = BytesMut::new();
        response.encode(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn message_is_dot_stuffed_and_terminated() {
        let content = b"Subject: x\r\n\r\n.hidden\r\n..two\r\nlast";
        let response = Response::Message {
            octets: transmitted_size(content),
            content,
        };
        assert_eq!(
            encoded(&response),
            "+OK 36 octets\r\nSubject: x\r\n\r\n..hidden\r\n...two\r\nlast\r\n.\r\n"
        );
    }

    #[test]
    fn bare_line_feeds_become_crlf() {
        let content = b"A: b\n\nbody\n";
        assert_eq!(transmitted_size(content), 14);
        let response = Response::Message {
            octets: 14,
            content,
        };
        assert_eq!(
            encoded(&response),
            "+OK 14 octets\r\nA: b\r\n\r\nbody\r\n.\r\n"
        );
    }

    #[test]
    fn size_of_crlf_message_is_its_length() {
        let content = b"A: b\r\n\r\nbody\r\n";
        assert_eq!(transmitted_size(content), content.len() as u64);
        assert_eq!(transmitted_size(b""), 0);
    }

    #[test]
    fn top_sends_header_and_requested_lines() {
        let content = b"A: 1\r\nB: 2\r\n\r\none\r\n.two\r\nthree\r\n";
        let top = |lines| encoded(&Response::Top { content, lines });
        assert_eq!(
            top(0),
            "+OK Top of message follows\r\nA: 1\r\nB: 2\r\n\r\n.\r\n"
        );
        assert_eq!(
            top(2),
            "+OK Top of message follows\r\nA: 1\r\nB: 2\r\n\r\none\r\n..two\r\n.\r\n"
        );
        assert_eq!(top(10).matches("three").count(), 1);
    }

    #[test]
    fn top_of_message_without_body_sends_everything() {
        let content = b"A: 1\r\nB: 2\r\n";
        let response = Response::Top { content, lines: 0 };
        assert_eq!(
            encoded(&response),
            "+OK Top of message follows\r\nA: 1\r\nB: 2\r\n.\r\n"
        );
    }

    #[test]
    fn errors_carry_response_codes() {
        let throttled = ErrorResponse::Throttled {
            backoff: Duration::from_millis(1500),
        };
        assert_eq!(
            encoded(&Response::Error(throttled)),
            "-ERR [SYS/TEMP] Request is throttled. Suggested Backoff Time: 1500 milliseconds\r\n"
        );
        assert_eq!(
            encoded(&Response::Error(ErrorResponse::AuthenticationFailed)),
            "-ERR [AUTH] Authentication failed\r\n"
        );
        assert_eq!(
            encoded(&Response::Error(ErrorResponse::MaildropLocked)),
            "-ERR [IN-USE] Maildrop is locked by another session\r\n"
        );
        assert_eq!(
            encoded(&Response::Error(CommandError::UnknownCommand.into())),
            "-ERR Unknown command\r\n"
        );
    }

    #[test]
    fn noop_is_bare_ok() {
        assert_eq!(encoded(&Response::Noop), "+OK\r\n");
    }

    #[test]
    fn capability_list_ends_with_dot() {
        let text = encoded(&Response::Capabilities);
        assert!(
            text.starts_with("+OK Capability list follows\r\nTOP\r\n"),
            "{text}"
        );
        assert!(text.ends_with("IMPLEMENTATION mailsim\r\n.\r\n"), "{text}");
    }
}
