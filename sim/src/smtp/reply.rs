//! The SMTP replies this server composes itself, as typed values.
//!
//! `mailin` builds the replies of its own state machine (syntax errors, bad
//! sequence, QUIT, DATA's 354). Every other reply is a [`Reply`] variant, so
//! session code never writes reply text. Enhanced status codes (RFC 3463)
//! appear in the text; ENHANCEDSTATUSCODES is not advertised because
//! `mailin`'s own replies carry none.

use std::fmt::{self, Write as _};

/// A reply composed by this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// HELO accepted.
    Helo {
        /// The server's host name.
        hostname: &'a str,
    },
    /// EHLO accepted, with the extensions this server supports.
    Ehlo {
        /// The server's host name.
        hostname: &'a str,
        /// The domain the client gave.
        client: &'a str,
    },
    /// MAIL FROM accepted.
    SenderAccepted,
    /// RCPT TO accepted.
    RecipientAccepted,
    /// RCPT TO names no account of this service.
    UnknownRecipient {
        /// The rejected address.
        address: &'a str,
    },
    /// The transaction already has the maximum number of recipients.
    TooManyRecipients,
    /// The message was delivered to every recipient.
    Queued {
        /// The id written into the Received header.
        id: u64,
    },
    /// The message exceeded the maximum message size and was discarded.
    MessageTooBig,
    /// The server-error fault is in effect.
    ServerError,
    /// A command line exceeded the maximum line length.
    LineTooLong,
    /// AUTH was sent, but this server offers no authentication.
    AuthNotEnabled,
    /// The client sent nothing within the idle timeout; the session closes.
    Timeout {
        /// The server's host name.
        hostname: &'a str,
    },
    /// The listener's connection limit is reached; the connection closes.
    TooManyConnections {
        /// The server's host name.
        hostname: &'a str,
    },
    /// Too many failed commands in a row; the session closes.
    TooManyErrors {
        /// The server's host name.
        hostname: &'a str,
    },
}

impl Reply<'_> {
    /// Returns the three-digit reply code.
    pub fn code(&self) -> u16 {
        match self {
            Self::Helo { .. }
            | Self::Ehlo { .. }
            | Self::SenderAccepted
            | Self::RecipientAccepted
            | Self::Queued { .. } => 250,
            Self::Timeout { .. } | Self::TooManyConnections { .. } | Self::TooManyErrors { .. } => {
                421
            }
            Self::ServerError => 451,
            Self::TooManyRecipients => 452,
            Self::LineTooLong => 500,
            Self::AuthNotEnabled => 503,
            Self::UnknownRecipient { .. } => 550,
            Self::MessageTooBig => 552,
        }
    }

    /// Appends the reply's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Self::Ehlo { hostname, client } = self {
            // RFC 5321 section 4.1.1.1: the first line names the server.
            out.extend_from_slice(format!("250-{hostname} Hello {client}\r\n").as_bytes());
            out.extend_from_slice(b"250-PIPELINING\r\n250 8BITMIME\r\n");
            return;
        }
        out.extend_from_slice(format!("{} {self}\r\n", self.code()).as_bytes());
    }

    /// Converts the reply to a `mailin` response, for the `Handler` callbacks.
    /// Multi-line replies (EHLO) keep only their first line.
    pub fn to_response(&self) -> mailin::Response {
        mailin::Response::custom(self.code(), self.to_string())
    }
}

/// The reply text after the code, without the line ending.
impl fmt::Display for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Helo { hostname } => f.write_str(hostname),
            Self::Ehlo { hostname, client } => write!(f, "{hostname} Hello {client}"),
            Self::SenderAccepted => f.write_str("2.1.0 Sender ok"),
            Self::RecipientAccepted => f.write_str("2.1.5 Recipient ok"),
            Self::UnknownRecipient { address } => {
                f.write_str("5.1.1 <")?;
                // Keep a hostile address from breaking the reply line.
                for c in address.chars().filter(|c| !c.is_control()) {
                    f.write_char(c)?;
                }
                f.write_str(">: Recipient address rejected: User unknown")
            }
            Self::TooManyRecipients => f.write_str("4.5.3 Too many recipients"),
            Self::Queued { id } => write!(f, "2.0.0 Ok: queued as {id}"),
            Self::MessageTooBig => {
                f.write_str("5.3.4 Message size exceeds fixed maximum message size")
            }
            Self::ServerError => f.write_str("4.3.0 Temporary server error, try again later"),
            Self::LineTooLong => f.write_str("5.5.2 Line too long"),
            Self::AuthNotEnabled => f.write_str("5.5.1 Authentication not enabled"),
            Self::Timeout { hostname } => write!(f, "4.4.2 {hostname} Timeout exceeded"),
            Self::TooManyConnections { hostname } => {
                write!(f, "4.7.0 {hostname} Too many connections, try again later")
            }
            Self::TooManyErrors { hostname } => {
                write!(f, "4.7.0 {hostname} Too many errors, closing connection")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: Reply<'_>) -> String {
        let mut out = Vec::new();
        reply.encode(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ehlo_names_server_first() {
        let reply = Reply::Ehlo {
            hostname: "mx.test",
            client: "client.test",
        };
        assert_eq!(
            encoded(reply),
            "250-mx.test Hello client.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
    }

    #[test]
    fn busy_reply_matches_listener_answer() {
        let reply = Reply::TooManyConnections {
            hostname: "mx.test",
        };
        assert_eq!(
            encoded(reply),
            "421 4.7.0 mx.test Too many connections, try again later\r\n"
        );
    }

    #[test]
    fn unknown_recipient_drops_control_characters() {
        let reply = Reply::UnknownRecipient {
            address: "a\r\nb@x",
        };
        assert_eq!(
            encoded(reply),
            "550 5.1.1 <ab@x>: Recipient address rejected: User unknown\r\n"
        );
    }

    #[test]
    fn mailin_response_keeps_code_and_text() {
        let response = Reply::MessageTooBig.to_response();
        assert_eq!(response.code, 552);
        assert_eq!(
            response.buffer().unwrap(),
            b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        );
    }
}
