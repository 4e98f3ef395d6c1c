//! Classification of failed IMAP commands into cycle errors.
//!
//! RFC 5530 response codes carry most of the meaning. `imap-codec` does not
//! type them, so they arrive as `Code::Other` and are matched by their atom.
//! The rows apply in this order:
//!
//! | response | meaning |
//! |---|---|
//! | `NO` or `BAD`, any code, `Request is throttled. Suggested Backoff Time: N milliseconds` | throttled, back off N ms |
//! | `NO` or `BAD` saying "throttled" without a back-off | throttled |
//! | `BAD` | command rejected (a protocol error) |
//! | `NO [AUTHENTICATIONFAILED]`, `[AUTHORIZATIONFAILED]`, `[EXPIRED]` | credentials rejected (permanent) |
//! | `NO [LIMIT]`, `NO [INUSE]` | busy |
//! | `NO` without a code, to LOGIN | credentials rejected (RFC 3501 section 6.2.3) |
//! | other `NO`, including `NO [UNAVAILABLE]` | temporary server error |

use imap_codec::imap_types::response::{Code, StatusBody, StatusKind};

use super::session::CommandKind;
use crate::error::{SessionError, parse_suggested_backoff};

/// Returns the human-readable text of a status response.
pub(crate) fn text_of<'a>(body: &'a StatusBody<'_>) -> &'a str {
    body.text.inner()
}

/// Returns the atom of a response code that `imap-codec` does not type, in
/// uppercase. Typed codes and a missing code give `None`.
fn other_code_atom(code: Option<&Code<'_>>) -> Option<String> {
    let Some(Code::Other(other)) = code else {
        return None;
    };
    let raw = other.inner();
    let atom_end = raw.iter().position(|&b| b == b' ').unwrap_or(raw.len());
    let atom = raw.get(..atom_end)?;
    Some(String::from_utf8_lossy(atom).to_ascii_uppercase())
}

/// Maps a NO or BAD completion of a `kind` command to an error.
pub(crate) fn classify_failure(body: &StatusBody<'_>, kind: CommandKind) -> SessionError {
    let text = text_of(body).to_owned();
    // Office 365 sends its throttling text after NO or BAD, with or without
    // a code, so the text is checked first: a throttled LOGIN must not read
    // as rejected credentials.
    if let Some(throttled) = throttled(&text) {
        return throttled;
    }
    if body.kind == StatusKind::Bad {
        return SessionError::CommandRejected(text);
    }
    let atom = other_code_atom(body.code.as_ref());
    match atom.as_deref() {
        Some("AUTHENTICATIONFAILED" | "AUTHORIZATIONFAILED" | "EXPIRED") => {
            SessionError::CredentialsRejected(text)
        }
        Some("LIMIT" | "INUSE") => SessionError::Busy(text),
        None if body.code.is_none() && kind == CommandKind::Login => {
            SessionError::CredentialsRejected(text)
        }
        _ => SessionError::Server(text),
    }
}

/// Returns a throttling error when `text` reports a throttled request.
pub(crate) fn throttled(text: &str) -> Option<SessionError> {
    let backoff = parse_suggested_backoff(text);
    if backoff.is_some() || text.to_ascii_lowercase().contains("throttl") {
        Some(SessionError::Throttled {
            backoff,
            text: text.to_owned(),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use imap_codec::imap_types::response::CodeOther;

    use super::*;

    fn no(code: Option<&'static str>, text: &'static str) -> StatusBody<'static> {
        StatusBody {
            kind: StatusKind::No,
            code: code.map(|c| Code::Other(CodeOther::unvalidated(c.as_bytes()))),
            text: text.try_into().expect("valid text"),
        }
    }

    #[test]
    fn authenticationfailed_is_permanent_rejection() {
        let error = classify_failure(
            &no(Some("AUTHENTICATIONFAILED"), "Authentication failed."),
            CommandKind::Login,
        );
        assert!(matches!(error, SessionError::CredentialsRejected(_)));
    }

    #[test]
    fn plain_no_to_login_rejects_credentials() {
        let error = classify_failure(&no(None, "Login failed"), CommandKind::Login);
        assert!(matches!(error, SessionError::CredentialsRejected(_)));
    }

    #[test]
    fn throttled_answer_carries_backoff() {
        let body = no(
            Some("UNAVAILABLE"),
            "Request is throttled. Suggested Backoff Time: 1500 milliseconds",
        );
        let error = classify_failure(&body, CommandKind::Other);
        match error {
            SessionError::Throttled { backoff, .. } => {
                assert_eq!(backoff, Some(Duration::from_millis(1500)));
            }
            other => panic!("expected throttled, got {other:?}"),
        }
    }

    #[test]
    fn unavailable_without_throttle_is_server_error() {
        let error = classify_failure(&no(Some("UNAVAILABLE"), "Store down"), CommandKind::Login);
        assert!(matches!(error, SessionError::Server(_)));
    }

    #[test]
    fn throttling_without_code_is_not_a_rejection() {
        // Office 365 sends the throttling text without a response code.
        let body = no(
            None,
            "Request is throttled. Suggested Backoff Time: 299609 milliseconds",
        );
        let error = classify_failure(&body, CommandKind::Login);
        assert!(matches!(
            error,
            SessionError::Throttled {
                backoff: Some(_),
                ..
            }
        ));
        let bad = StatusBody {
            kind: StatusKind::Bad,
            ..body
        };
        let error = classify_failure(&bad, CommandKind::Other);
        assert!(matches!(error, SessionError::Throttled { .. }));
    }

    #[test]
    fn limit_is_busy() {
        let error = classify_failure(
            &no(Some("LIMIT"), "Too many connections"),
            CommandKind::Login,
        );
        assert!(matches!(error, SessionError::Busy(_)));
    }
}
