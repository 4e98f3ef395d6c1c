//! LOGIN and AUTHENTICATE PLAIN (RFC 3501 sections 6.2.2 and 6.2.3, RFC 4616).
//!
//! Both end in [`Session::log_in`], which applies the account's login-time
//! policies in a fixed order: credentials, then the connection-refused and
//! login-rejected faults, then the concurrent connection limit.

use std::borrow::Cow;
use std::sync::Arc;

use imap_codec::AuthenticateDataCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::secret::Secret as WireSecret;
use tokio::io::{AsyncRead, AsyncWrite};

use super::output::Disconnect;
use super::response::{self, Completion, ExtendedCode};
use super::session::{Login, Session, State};
use crate::conn::{Line, ReadError};
use crate::secret::Secret;
use crate::store::Protocol;

/// The client's response to the SASL challenge.
enum SaslResponse {
    /// Decoded base64 data.
    Data(Secret<Vec<u8>>),
    /// `*`: the client gave up (RFC 3501 6.2.2).
    Cancelled,
    /// Not base64, or an overlong line.
    Invalid,
}

/// Credentials taken from LOGIN or a SASL PLAIN message.
struct Credentials {
    user: String,
    password: Secret<Vec<u8>>,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// LOGIN: user name and password as astrings.
    pub(super) async fn login_command(
        &mut self,
        username: AString<'static>,
        password: WireSecret<AString<'static>>,
    ) -> Result<Completion, Disconnect> {
        if !matches!(self.state, State::NotAuthenticated) {
            return Ok(Completion::bad("Already logged in"));
        }
        let Ok(user) = std::str::from_utf8(username.as_ref()) else {
            return Ok(authentication_failed());
        };
        let credentials = Credentials {
            user: user.to_owned(),
            password: Secret::new(password.declassify().as_ref().to_vec()),
        };
        self.log_in(credentials).await
    }

    /// AUTHENTICATE: only PLAIN, with or without an initial response.
    pub(super) async fn authenticate(
        &mut self,
        mechanism: AuthMechanism<'static>,
        initial_response: Option<WireSecret<Cow<'static, [u8]>>>,
    ) -> Result<Completion, Disconnect> {
        if !matches!(self.state, State::NotAuthenticated) {
            return Ok(Completion::bad("Already logged in"));
        }
        if mechanism != AuthMechanism::Plain {
            return Ok(Completion::no(format!(
                "Unsupported authentication mechanism {mechanism}"
            )));
        }
        let message = match initial_response {
            Some(data) => Secret::new(data.declassify().to_vec()),
            None => match self.read_sasl_response().await? {
                SaslResponse::Data(message) => message,
                SaslResponse::Cancelled => return Ok(Completion::bad("Authentication cancelled")),
                SaslResponse::Invalid => return Ok(Completion::bad("Invalid base64 data")),
            },
        };
        match parse_plain(message.expose()) {
            Some(credentials) => self.log_in(credentials).await,
            None => Ok(Completion::bad("Invalid SASL PLAIN message")),
        }
    }

    /// Sends the empty challenge and reads the client's base64 response.
    async fn read_sasl_response(&mut self) -> Result<SaslResponse, Disconnect> {
        self.out.send(&response::empty_challenge()).await?;
        self.out.flush().await?;
        let limits = self.service.limits();
        let (max_line, timeout) = (limits.max_line, limits.imap_idle_timeout);
        let line = match self.out.conn().read_line(max_line, timeout).await {
            Ok(Line::Complete(line)) => line,
            Ok(Line::TooLong { .. }) => return Ok(SaslResponse::Invalid),
            Err(ReadError::TimedOut) => return Err(Disconnect::Closed),
            Err(error) => return Err(error.into()),
        };
        let mut input = line.to_vec();
        input.extend_from_slice(b"\r\n");
        Ok(match AuthenticateDataCodec::new().decode(&input) {
            Ok((_, AuthenticateData::Continue(data))) => {
                SaslResponse::Data(Secret::new(data.declassify().to_vec()))
            }
            Ok((_, AuthenticateData::Cancel)) => SaslResponse::Cancelled,
            Err(_) => SaslResponse::Invalid,
        })
    }

    /// Checks credentials and login-time policies and, on success, moves
    /// to the authenticated state.
    async fn log_in(&mut self, credentials: Credentials) -> Result<Completion, Disconnect> {
        let store = self.service.store();
        let Ok(account) = store.authenticate(&credentials.user, credentials.password.expose())
        else {
            // The user name is a LOGIN argument too, so it stays out of the log.
            tracing::info!("login failed: invalid credentials");
            return Ok(authentication_failed());
        };

        // The account's latency applies from the moment it is known, as POP3
        // applies it to PASS.
        let latency = account.policy().command_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let faults = self.service.active_faults(Some(&account));
        if faults.connection_refused {
            tracing::warn!(
                mailbox = account.address(),
                "connection closed at login by injected fault"
            );
            return Err(Disconnect::InjectedReset);
        }
        if faults.login_rejected {
            tracing::warn!(
                mailbox = account.address(),
                "login rejected by injected fault"
            );
            return Ok(authentication_failed());
        }
        let limit = account.policy().max_connections(Protocol::Imap);
        let Some(guard) = account.try_connect(Protocol::Imap, limit) else {
            tracing::info!(
                mailbox = account.address(),
                limit,
                "login refused: connection limit reached"
            );
            return Ok(Completion::no_with(
                ExtendedCode::Limit.code(),
                "Too many simultaneous connections for this mailbox",
            ));
        };

        tracing::Span::current().record("mailbox", account.address());
        tracing::info!(mailbox = account.address(), "logged in");
        let login = Login::new(guard);
        debug_assert!(Arc::ptr_eq(login.account(), &account));
        self.state = State::Authenticated { login };
        Ok(Completion::ok("Logged in"))
    }
}

fn authentication_failed() -> Completion {
    Completion::no_with(
        ExtendedCode::AuthenticationFailed.code(),
        "Invalid credentials",
    )
}

/// Splits a SASL PLAIN message (RFC 4616): `[authzid] NUL authcid NUL passwd`.
/// An authorization identity other than the user itself is refused.
fn parse_plain(message: &[u8]) -> Option<Credentials> {
    let mut fields = message.split(|&b| b == 0);
    let authzid = fields.next()?;
    let authcid = fields.next()?;
    let password = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    let user = std::str::from_utf8(authcid).ok()?;
    if user.is_empty() || (!authzid.is_empty() && authzid != authcid) {
        return None;
    }
    Some(Credentials {
        user: user.to_owned(),
        password: Secret::new(password.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_splits_into_user_and_password() {
        let credentials = parse_plain(b"\0alice\0secret").expect("valid message");
        assert_eq!(credentials.user, "alice");
        assert_eq!(credentials.password.expose(), b"secret");
    }

    #[test]
    fn plain_message_allows_matching_authzid() {
        assert!(parse_plain(b"alice\0alice\0secret").is_some());
        assert!(parse_plain(b"bob\0alice\0secret").is_none());
    }

    #[test]
    fn plain_message_needs_three_fields() {
        assert!(parse_plain(b"alice\0secret").is_none());
        assert!(parse_plain(b"\0alice\0secret\0more").is_none());
        assert!(parse_plain(b"\0\0secret").is_none());
    }
}
