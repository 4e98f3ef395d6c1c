//! Bounds on what a peer can make the servers hold in memory or keep open.

use std::time::Duration;

/// Limits that every protocol session enforces. The defaults follow common
/// production servers; each can be changed per service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line accepted, CRLF included. Longer lines are
    /// discarded up to their end and answered with an error.
    pub max_line: usize,
    /// Largest IMAP literal (and so APPEND) accepted, in octets.
    pub max_literal: usize,
    /// Largest message accepted over SMTP DATA, in octets.
    pub max_message: usize,
    /// Maximum simultaneous connections per protocol listener; further
    /// connections get a "too many connections" answer and are closed.
    pub max_connections: usize,
    /// IMAP autologout: an idle session is closed after this long. RFC 3501
    /// section 5.4 asks for at least 30 minutes.
    pub imap_idle_timeout: Duration,
    /// POP3 autologout; RFC 1939 section 3 asks for at least 10 minutes.
    pub pop3_idle_timeout: Duration,
    /// SMTP idle timeout; RFC 5321 section 4.5.3.2.7 suggests 5 minutes.
    pub smtp_idle_timeout: Duration,
    /// How long a write may wait for a peer that stopped reading before the
    /// session is closed.
    pub write_timeout: Duration,
    /// Errors a session may cause in a row before it is closed.
    pub max_consecutive_errors: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: 64 * 1024,
            max_literal: 50 * 1024 * 1024,
            max_message: 50 * 1024 * 1024,
            max_connections: 1024,
            imap_idle_timeout: Duration::from_secs(30 * 60),
            pop3_idle_timeout: Duration::from_secs(10 * 60),
            smtp_idle_timeout: Duration::from_secs(5 * 60),
            write_timeout: Duration::from_secs(120),
            max_consecutive_errors: 20,
        }
    }
}
