//! Typed IMAP replies: status responses, response codes and capabilities.
//!
//! Handlers never write reply strings: they build the `imap-types` values
//! here and the output layer encodes them with `imap-codec`, so every reply
//! on the wire follows the IMAP grammar.

use std::borrow::Cow;

use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::core::{Atom, Tag, Text, Vec1};
use imap_codec::imap_types::response::{
    Bye, Capability, Code, CodeOther, CommandContinuationRequest, Data, Greeting, GreetingKind,
    Response, Status, StatusBody, StatusKind, Tagged,
};

/// Lists the capabilities this server announces, in order.
/// imap-codec writes IMAP4rev1 as `IMAP4REV1`; capability names are
/// case-insensitive (RFC 3501 section 7.2.1).
pub(crate) fn capabilities() -> Vec1<Capability<'static>> {
    let list = vec![
        Capability::Imap4Rev1,
        Capability::LiteralPlus,
        Capability::UidPlus,
        Capability::Idle,
        Capability::Auth(AuthMechanism::Plain),
    ];
    Vec1::try_from(list).unwrap_or_else(|_| Vec1::from(Capability::Imap4Rev1))
}

/// Response codes from RFC 5530 that `imap-types` has no variant for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExtendedCode {
    /// `UNAVAILABLE`: a temporary failure, such as throttling or a server error.
    Unavailable,
    /// `LIMIT`: a per-user limit, here the concurrent connection limit.
    Limit,
    /// `AUTHENTICATIONFAILED`: wrong credentials or a rejected login.
    AuthenticationFailed,
    /// `ALREADYEXISTS`: CREATE or RENAME onto an existing name.
    AlreadyExists,
    /// `NONEXISTENT`: the named mailbox does not exist.
    Nonexistent,
    /// `CANNOT`: the operation is not possible on this object.
    Cannot,
    /// `EXPUNGEISSUE`: some requested messages were expunged by another session.
    ExpungeIssue,
}

impl ExtendedCode {
    /// Returns the code's atom as it appears between brackets.
    pub(crate) fn atom(self) -> &'static str {
        match self {
            Self::Unavailable => "UNAVAILABLE",
            Self::Limit => "LIMIT",
            Self::AuthenticationFailed => "AUTHENTICATIONFAILED",
            Self::AlreadyExists => "ALREADYEXISTS",
            Self::Nonexistent => "NONEXISTENT",
            Self::Cannot => "CANNOT",
            Self::ExpungeIssue => "EXPUNGEISSUE",
        }
    }

    /// Builds the code as a typed value. `CodeOther` has only an
    /// unvalidated constructor, so the atom is checked with `Atom::try_from`
    /// first. A unit test also checks that `imap-codec` decodes each code
    /// back to the same `Code::Other`.
    pub(crate) fn code(self) -> Code<'static> {
        match Atom::try_from(self.atom()) {
            Ok(atom) => Code::Other(CodeOther::unvalidated(atom.inner().as_bytes().to_vec())),
            // Every atom above is a valid IMAP atom, so this arm is never
            // taken. It exists so that an invalid atom cannot panic.
            Err(_) => Code::Alert,
        }
    }
}

/// Text for a status response. IMAP text is non-empty ASCII without CR or
/// LF, so other bytes are replaced instead of failing the reply.
pub(crate) fn text(value: impl Into<Cow<'static, str>>) -> Text<'static> {
    let value = value.into();
    let clean = |c: char| c.is_ascii() && c != '\r' && c != '\n' && c != '\0';
    let value: Cow<'static, str> = if !value.is_empty() && value.chars().all(clean) {
        value
    } else {
        let replaced: String = value
            .chars()
            .map(|c| if clean(c) { c } else { '?' })
            .collect();
        if replaced.is_empty() {
            Cow::Borrowed("-")
        } else {
            Cow::Owned(replaced)
        }
    };
    Text::try_from(value.into_owned()).unwrap_or_else(|_| Text::unvalidated("-"))
}

/// Outcome of a command: the kind, code and text of its tagged response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Completion {
    /// OK, NO or BAD.
    pub kind: StatusKind,
    /// Optional response code.
    pub code: Option<Code<'static>>,
    /// Human-readable text.
    pub text: Cow<'static, str>,
}

impl Completion {
    /// `OK` with `text`.
    pub(crate) fn ok(text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: StatusKind::Ok,
            code: None,
            text: text.into(),
        }
    }

    /// `OK` with a response code.
    pub(crate) fn ok_with(code: Code<'static>, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: StatusKind::Ok,
            code: Some(code),
            text: text.into(),
        }
    }

    /// `NO` without a response code.
    pub(crate) fn no(text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: StatusKind::No,
            code: None,
            text: text.into(),
        }
    }

    /// `NO` with a response code.
    pub(crate) fn no_with(code: Code<'static>, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: StatusKind::No,
            code: Some(code),
            text: text.into(),
        }
    }

    /// `BAD` without a response code.
    pub(crate) fn bad(text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: StatusKind::Bad,
            code: None,
            text: text.into(),
        }
    }

    /// Builds the tagged response for `tag`.
    pub(crate) fn into_response(self, tag: Tag<'static>) -> Response<'static> {
        Response::Status(Status::Tagged(Tagged {
            tag,
            body: StatusBody {
                kind: self.kind,
                code: self.code,
                text: text(self.text),
            },
        }))
    }
}

/// Builds an untagged status response (`* OK`, `* NO`, `* BAD`).
pub(crate) fn untagged(
    kind: StatusKind,
    code: Option<Code<'static>>,
    value: impl Into<Cow<'static, str>>,
) -> Response<'static> {
    Response::Status(Status::Untagged(StatusBody {
        kind,
        code,
        text: text(value),
    }))
}

/// Builds a `* BYE` response.
pub(crate) fn bye(
    code: Option<Code<'static>>,
    value: impl Into<Cow<'static, str>>,
) -> Response<'static> {
    Response::Status(Status::Bye(Bye {
        code,
        text: text(value),
    }))
}

/// Builds the untagged CAPABILITY response.
pub(crate) fn capability_data() -> Response<'static> {
    Response::Data(Data::Capability(capabilities()))
}

/// Builds a command continuation request with text, as sent before
/// literal data and when IDLE starts.
pub(crate) fn continuation(value: &'static str) -> Response<'static> {
    match CommandContinuationRequest::basic(None, value) {
        Ok(request) => Response::CommandContinuationRequest(request),
        Err(_) => Response::CommandContinuationRequest(CommandContinuationRequest::base64(&[][..])),
    }
}

/// Builds the empty SASL challenge (`+ `) that requests AUTHENTICATE data.
pub(crate) fn empty_challenge() -> Response<'static> {
    Response::CommandContinuationRequest(CommandContinuationRequest::base64(&[][..]))
}

/// Builds the OK greeting with the capability list in its response code.
pub(crate) fn greeting(hostname: &str) -> Greeting<'static> {
    Greeting {
        kind: GreetingKind::Ok,
        code: Some(Code::Capability(capabilities())),
        text: text(format!("{hostname} IMAP4rev1 server ready")),
    }
}

/// Builds the BYE greeting sent when a listener has no room for another
/// connection.
pub(crate) fn busy_greeting() -> Greeting<'static> {
    Greeting {
        kind: GreetingKind::Bye,
        code: Some(ExtendedCode::Unavailable.code()),
        text: text("Too many connections"),
    }
}

#[cfg(test)]
mod tests {
    use imap_codec::decode::Decoder;
    use imap_codec::encode::Encoder;
    use imap_codec::{GreetingCodec, ResponseCodec};

    use super::*;

    const ALL_CODES: [ExtendedCode; 7] = [
        ExtendedCode::Unavailable,
        ExtendedCode::Limit,
        ExtendedCode::AuthenticationFailed,
        ExtendedCode::AlreadyExists,
        ExtendedCode::Nonexistent,
        ExtendedCode::Cannot,
        ExtendedCode::ExpungeIssue,
    ];

    #[test]
    fn extended_codes_round_trip_through_codec() {
        for extended in ALL_CODES {
            let response = Completion::no_with(extended.code(), "text")
                .into_response(Tag::try_from("a1").unwrap());
            let bytes = ResponseCodec::new().encode(&response).dump();
            let expected = format!("a1 NO [{}] text\r\n", extended.atom());
            assert_eq!(String::from_utf8_lossy(&bytes), expected);
            let (rest, decoded) = ResponseCodec::new().decode(&bytes).expect("decodes");
            assert!(rest.is_empty());
            assert_eq!(decoded, response);
        }
    }

    #[test]
    fn greeting_lists_capabilities() {
        let bytes = GreetingCodec::new().encode(&greeting("mail.test")).dump();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            "* OK [CAPABILITY IMAP4REV1 LITERAL+ UIDPLUS IDLE AUTH=PLAIN] \
             mail.test IMAP4rev1 server ready\r\n"
        );
    }

    #[test]
    fn text_replaces_line_breaks() {
        assert_eq!(text("a\r\nb").inner(), "a??b");
        assert_eq!(text("").inner(), "-");
        assert_eq!(text("grüße").inner(), "gr??e");
    }
}
