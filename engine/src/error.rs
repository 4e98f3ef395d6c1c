//! Errors of a sync cycle, and how each one is classified.
//!
//! A failed cycle has a *kind* (what went wrong) and a *level* (one email,
//! one mailbox or the whole server profile). It is either *permanent*, so
//! the mailbox is disabled at once, or *transient*, so the cycle is retried
//! after any back-off the server suggested.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::records::StoreError;

/// Scope of an error or alert: one email, one mailbox or a server profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorLevel {
    /// One email; the mailbox goes on.
    Email,
    /// One mailbox.
    Mailbox,
    /// Every mailbox on one server profile (the server is unreachable).
    ServerProfile,
}

impl fmt::Display for ErrorLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Email => "email",
            Self::Mailbox => "mailbox",
            Self::ServerProfile => "server_profile",
        })
    }
}

/// Error category, with a stable name for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The server refused the TCP connection.
    ConnectionRefused,
    /// The connection was reset or closed in the middle of a cycle.
    ConnectionReset,
    /// The server sent nothing within the command timeout.
    TimedOut,
    /// Too many connections, or the POP3 maildrop is locked.
    Busy,
    /// The server throttled a command.
    Throttled,
    /// The server reported a temporary failure.
    ServerError,
    /// The server rejected the credentials.
    CredentialsRejected,
    /// The server sent something the engine cannot use.
    Protocol,
    /// The record store failed.
    Store,
    /// A forward mailbox received a copy without a `message/rfc822` part.
    NotForwardedAsAttachment,
    /// A message could not be processed (for example it has no header section).
    ProcessingFailed,
    /// A message exceeds the configured size limit.
    MessageTooLarge,
    /// Transient failures continued past the retry limit.
    RetriesExhausted,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ConnectionRefused => "connection_refused",
            Self::ConnectionReset => "connection_reset",
            Self::TimedOut => "timed_out",
            Self::Busy => "busy",
            Self::Throttled => "throttled",
            Self::ServerError => "server_error",
            Self::CredentialsRejected => "credentials_rejected",
            Self::Protocol => "protocol",
            Self::Store => "store",
            Self::NotForwardedAsAttachment => "not_forwarded_as_attachment",
            Self::ProcessingFailed => "processing_failed",
            Self::MessageTooLarge => "message_too_large",
            Self::RetriesExhausted => "retries_exhausted",
        })
    }
}

/// A failure of an IMAP or POP3 session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The TCP connection was refused.
    #[error("connection refused: {0}")]
    Refused(io::Error),
    /// Reading or writing failed.
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection before the cycle finished.
    #[error("connection closed by the server")]
    Closed,
    /// The server sent nothing within the command timeout.
    #[error("no response from the server within {0:?}")]
    TimedOut(Duration),
    /// The server has too many connections or the maildrop is locked.
    #[error("server busy: {0}")]
    Busy(String),
    /// The server throttled a command, maybe suggesting a back-off.
    #[error("throttled: {text}")]
    Throttled {
        /// The back-off the server suggested, if any.
        backoff: Option<Duration>,
        /// The server's text.
        text: String,
    },
    /// The server reported a temporary failure.
    #[error("server error: {0}")]
    Server(String),
    /// The server rejected the credentials.
    #[error("credentials rejected: {0}")]
    CredentialsRejected(String),
    /// The server rejected a command as invalid or unknown (IMAP BAD).
    #[error("server rejected the command as invalid: {0}")]
    CommandRejected(String),
    /// The server sent a response the engine cannot use.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl SessionError {
    /// Returns the error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Refused(_) => ErrorKind::ConnectionRefused,
            Self::Io(_) | Self::Closed => ErrorKind::ConnectionReset,
            Self::TimedOut(_) => ErrorKind::TimedOut,
            Self::Busy(_) => ErrorKind::Busy,
            Self::Throttled { .. } => ErrorKind::Throttled,
            Self::Server(_) => ErrorKind::ServerError,
            Self::CredentialsRejected(_) => ErrorKind::CredentialsRejected,
            Self::CommandRejected(_) | Self::Protocol(_) => ErrorKind::Protocol,
        }
    }
}

/// Failure of a sync cycle.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// The IMAP or POP3 session failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The record store failed; nothing of the failed commit was applied.
    #[error("record store failed: {0}")]
    Store(#[from] StoreError),
}

impl CycleError {
    /// Returns the error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Session(error) => error.kind(),
            Self::Store(_) => ErrorKind::Store,
        }
    }

    /// Returns the level: a refused connection concerns the whole server
    /// profile, everything else the mailbox.
    pub fn level(&self) -> ErrorLevel {
        match self {
            Self::Session(SessionError::Refused(_)) => ErrorLevel::ServerProfile,
            _ => ErrorLevel::Mailbox,
        }
    }

    /// Returns whether retrying cannot help, which is true only for rejected
    /// credentials.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Session(SessionError::CredentialsRejected(_)))
    }

    /// Returns the back-off the server suggested, if any.
    pub fn suggested_backoff(&self) -> Option<Duration> {
        match self {
            Self::Session(SessionError::Throttled { backoff, .. }) => *backoff,
            _ => None,
        }
    }
}

/// Extracts `N` from "Request is throttled. Suggested Backoff Time: N
/// milliseconds", the text Office 365 sends after a throttled IMAP command,
/// as users of imapsync have quoted it. Matching ignores case.
pub fn parse_suggested_backoff(text: &str) -> Option<Duration> {
    const MARKER: &str = "suggested backoff time:";
    let lower = text.to_ascii_lowercase();
    let start = lower.find(MARKER)? + MARKER.len();
    let rest = lower.get(start..)?.trim_start();
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let millis: u64 = rest.get(..digits_end)?.parse().ok()?;
    let unit = rest.get(digits_end..)?.trim_start();
    if unit.starts_with("millisecond") || unit.starts_with("ms") {
        Some(Duration::from_millis(millis))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_parsed_from_exchange_text() {
        let text = "Request is throttled. Suggested Backoff Time: 300000 milliseconds";
        assert_eq!(
            parse_suggested_backoff(text),
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn backoff_absent_without_marker() {
        assert_eq!(parse_suggested_backoff("Server unavailable"), None);
        assert_eq!(
            parse_suggested_backoff("Suggested Backoff Time: soon"),
            None
        );
    }

    #[test]
    fn only_rejected_credentials_are_permanent() {
        let rejected = CycleError::from(SessionError::CredentialsRejected("no".into()));
        let busy = CycleError::from(SessionError::Busy("in use".into()));
        assert!(rejected.is_permanent());
        assert!(!busy.is_permanent());
    }

    #[test]
    fn refused_connection_is_server_profile_level() {
        let error = CycleError::from(SessionError::Refused(
            io::ErrorKind::ConnectionRefused.into(),
        ));
        assert_eq!(error.level(), ErrorLevel::ServerProfile);
        assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
    }
}
