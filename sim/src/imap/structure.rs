//! ENVELOPE and BODYSTRUCTURE (RFC 3501 section 7.4.2) of parsed messages.
//!
//! Strings that describe the message as written (dates, subjects,
//! Message-IDs, content IDs) are sent as the header has them, with encoded
//! words kept. Addresses and MIME parameters come from `mail-parser`'s
//! parsed values.

use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{IString, NString, Quoted, Vec1};
use imap_codec::imap_types::envelope::{Address, Envelope};
use mail_parser::{ContentType, Header, HeaderName, HeaderValue};

use super::message::{Kind, Node, find};

/// Nesting depth up to which BODYSTRUCTURE describes parts; deeper parts
/// are described as opaque `application/octet-stream`. imap-codec's
/// response decoder (2.0.0-alpha.10) accepts at most 7 nested levels, and
/// clients built on it must be able to read every reply.
const MAX_DEPTH: usize = 6;

/// Extracts the raw value of the first header called `name`, unfolded.
fn raw_value(headers: &[Header<'_>], raw: &[u8], name: &HeaderName<'_>) -> Option<Vec<u8>> {
    let header = find(headers, name)?;
    let bytes = raw.get(header.offset_start as usize..header.offset_end as usize)?;
    let value: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    Some(value.trim_ascii().to_vec())
}

fn nstring(value: Option<Vec<u8>>) -> NString<'static> {
    NString(value.and_then(|bytes| IString::try_from(bytes).ok()))
}

fn nstring_text(value: Option<&str>) -> NString<'static> {
    nstring(value.map(|text| text.as_bytes().to_vec()))
}

/// Converts a string for BODYSTRUCTURE. A string with NUL, which no IMAP
/// string can carry, becomes `?`.
fn istring(value: &str) -> IString<'static> {
    IString::try_from(value.to_owned())
        .unwrap_or_else(|_| IString::Quoted(Quoted::unvalidated("?")))
}

/// Builds the ENVELOPE structure (RFC 3501 7.4.2) of a header section.
pub(super) fn envelope(headers: &[Header<'_>], raw: &[u8]) -> Envelope<'static> {
    let addresses = |name: HeaderName<'_>| -> Vec<Address<'static>> {
        find(headers, &name)
            .and_then(|header| header.value.as_address())
            .map(address_list)
            .unwrap_or_default()
    };
    let from = addresses(HeaderName::From);
    let mut sender = addresses(HeaderName::Sender);
    if sender.is_empty() {
        sender = from.clone();
    }
    let mut reply_to = addresses(HeaderName::ReplyTo);
    if reply_to.is_empty() {
        reply_to = from.clone();
    }
    Envelope {
        date: nstring(raw_value(headers, raw, &HeaderName::Date)),
        subject: nstring(raw_value(headers, raw, &HeaderName::Subject)),
        from,
        sender,
        reply_to,
        to: addresses(HeaderName::To),
        cc: addresses(HeaderName::Cc),
        bcc: addresses(HeaderName::Bcc),
        in_reply_to: nstring(raw_value(headers, raw, &HeaderName::InReplyTo)),
        message_id: nstring(raw_value(headers, raw, &HeaderName::MessageId)),
    }
}

/// Converts a parsed address header; groups get RFC 3501's start and end
/// markers around their members.
fn address_list(value: &mail_parser::Address<'_>) -> Vec<Address<'static>> {
    let mut out = Vec::new();
    match value {
        mail_parser::Address::List(list) => out.extend(list.iter().filter_map(address)),
        mail_parser::Address::Group(groups) => {
            for group in groups {
                match &group.name {
                    Some(name) => {
                        out.push(Address {
                            name: NString(None),
                            adl: NString(None),
                            mailbox: nstring_text(Some(name)),
                            host: NString(None),
                        });
                        out.extend(group.addresses.iter().filter_map(address));
                        out.push(Address {
                            name: NString(None),
                            adl: NString(None),
                            mailbox: NString(None),
                            host: NString(None),
                        });
                    }
                    None => out.extend(group.addresses.iter().filter_map(address)),
                }
            }
        }
    }
    out
}

// NOTE: display names are sent decoded (UTF-8 in a literal when they are
// not ASCII) rather than in their original RFC 2047 encoded form, because
// mail-parser keeps only the decoded text.
fn address(addr: &mail_parser::Addr<'_>) -> Option<Address<'static>> {
    let full = addr.address.as_deref()?;
    let (mailbox, host) = match full.rsplit_once('@') {
        Some((mailbox, host)) => (mailbox, host),
        None => (full, ""),
    };
    Some(Address {
        name: nstring_text(addr.name.as_deref()),
        adl: NString(None),
        mailbox: nstring_text(Some(mailbox)),
        host: nstring_text(Some(host)),
    })
}

/// Counts the lines in `body`, including a last line without line ending.
fn line_count(body: &[u8]) -> u32 {
    let newlines = body.iter().filter(|&&b| b == b'\n').count();
    let partial = usize::from(body.last().is_some_and(|&b| b != b'\n'));
    u32::try_from(newlines + partial).unwrap_or(u32::MAX)
}

fn size(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

pub(super) fn body_structure(
    node: Node<'_, '_>,
    extensible: bool,
    depth: usize,
) -> BodyStructure<'static> {
    let content_type = node.content_type();
    match node.kind() {
        Kind::Multipart(children) if depth < MAX_DEPTH => {
            let bodies: Vec<BodyStructure<'static>> = children
                .iter()
                .map(|&id| body_structure(node.child(id), extensible, depth + 1))
                .collect();
            match Vec1::try_from(bodies) {
                Ok(bodies) => BodyStructure::Multi {
                    bodies,
                    subtype: istring(
                        content_type
                            .and_then(ContentType::subtype)
                            .unwrap_or("mixed"),
                    ),
                    extension_data: extensible.then(|| MultiPartExtensionData {
                        parameter_list: parameters(content_type),
                        tail: Some(disposition(node)),
                    }),
                },
                Err(_) => single(node, extensible, depth),
            }
        }
        _ => single(node, extensible, depth),
    }
}

fn single(node: Node<'_, '_>, extensible: bool, depth: usize) -> BodyStructure<'static> {
    let content_type = node.content_type();
    let kind = node.kind();
    let (main, sub) = match (content_type, &kind) {
        (Some(ct), _) => (ct.ctype(), ct.subtype().unwrap_or("")),
        (None, Kind::Message(_)) => ("message", "rfc822"),
        (None, _) => ("text", "plain"),
    };
    let body = node.body();
    let mut parameter_list = parameters(content_type);
    if content_type.is_none() && main == "text" {
        parameter_list.push((istring("charset"), istring("us-ascii")));
    }
    let headers = node.headers();
    let raw = node.raw();
    let basic = BasicFields {
        parameter_list,
        id: nstring(raw_value(headers, raw, &HeaderName::ContentId)),
        description: nstring(raw_value(headers, raw, &HeaderName::ContentDescription)),
        content_transfer_encoding: IString::try_from(
            raw_value(headers, raw, &HeaderName::ContentTransferEncoding)
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| b"7BIT".to_vec()),
        )
        .unwrap_or_else(|_| istring("7BIT")),
        size: size(body),
    };
    let specific = match kind {
        Kind::Message(inner) if main.eq_ignore_ascii_case("message") && depth < MAX_DEPTH => {
            SpecificFields::Message {
                envelope: Box::new(envelope(inner.headers(), inner.raw())),
                body_structure: Box::new(body_structure(inner, extensible, depth + 1)),
                number_of_lines: line_count(body),
            }
        }
        _ if main.eq_ignore_ascii_case("text") => SpecificFields::Text {
            subtype: istring(if sub.is_empty() { "plain" } else { sub }),
            number_of_lines: line_count(body),
        },
        // A message/rfc822 or multipart part that cannot be described as
        // one (too deep, or unparsed) is sent as opaque data, because the
        // grammar requires an envelope or a part list for those types.
        _ if (main.eq_ignore_ascii_case("message") && sub.eq_ignore_ascii_case("rfc822"))
            || main.eq_ignore_ascii_case("multipart") =>
        {
            SpecificFields::Basic {
                r#type: istring("application"),
                subtype: istring("octet-stream"),
            }
        }
        _ => SpecificFields::Basic {
            r#type: istring(main),
            subtype: istring(if sub.is_empty() { "octet-stream" } else { sub }),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extensible.then(|| SinglePartExtensionData {
            md5: nstring(raw_value(headers, raw, &HeaderName::ContentMd5)),
            tail: Some(disposition(node)),
        }),
    }
}

/// Builds the BODYSTRUCTURE of a message that was not given to
/// `mail-parser`: one text/plain part with the whole text.
pub(super) fn fallback(raw: &[u8], header_len: usize, extensible: bool) -> BodyStructure<'static> {
    let body = raw.get(header_len..).unwrap_or_default();
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![(istring("charset"), istring("us-ascii"))],
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istring("7BIT"),
                size: size(body),
            },
            specific: SpecificFields::Text {
                subtype: istring("plain"),
                number_of_lines: line_count(body),
            },
        },
        extension_data: extensible.then_some(SinglePartExtensionData {
            md5: NString(None),
            tail: None,
        }),
    }
}

fn parameters(content_type: Option<&ContentType<'_>>) -> Vec<(IString<'static>, IString<'static>)> {
    content_type
        .and_then(ContentType::attributes)
        .unwrap_or_default()
        .iter()
        .map(|attribute| (istring(&attribute.name), istring(&attribute.value)))
        .collect()
}

/// Builds the disposition, language and location extension fields of a part.
fn disposition(node: Node<'_, '_>) -> Disposition<'static> {
    let headers = node.headers();
    let disposition = find(headers, &HeaderName::ContentDisposition)
        .and_then(|header| header.value.as_content_type())
        .map(|value| (istring(value.ctype()), parameters(Some(value))));
    let language = match find(headers, &HeaderName::ContentLanguage).map(|h| &h.value) {
        Some(HeaderValue::Text(text)) => vec![istring(text)],
        Some(HeaderValue::TextList(list)) => list.iter().map(|text| istring(text)).collect(),
        _ => Vec::new(),
    };
    let location = raw_value(headers, node.raw(), &HeaderName::ContentLocation);
    Disposition {
        disposition,
        tail: Some(Language {
            language,
            tail: Some(Location {
                location: nstring(location),
                extensions: Vec::new(),
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::MessageView;
    use super::*;

    const MULTIPART: &[u8] = b"From: Alice <alice@example.org>\r\n\
Subject: mixed\r\n\
Content-Type: multipart/mixed; boundary=XX\r\n\
\r\n\
--XX\r\n\
Content-Type: text/plain\r\n\
\r\n\
hello\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: bob@example.org\r\n\
Subject: inner\r\n\
\r\n\
inner text\r\n\
--XX--\r\n";

    #[test]
    fn envelope_defaults_sender_to_from() {
        let view = MessageView::new(MULTIPART);
        let envelope = view.envelope();
        assert_eq!(envelope.from.len(), 1);
        assert_eq!(envelope.sender, envelope.from);
        assert_eq!(envelope.reply_to, envelope.from);
        assert!(envelope.to.is_empty());
        assert_eq!(envelope.subject, nstring(Some(b"mixed".to_vec())));
    }

    #[test]
    fn envelope_marks_groups() {
        let view = MessageView::new(b"From: a@example.org\r\nTo: Team: b@example.org;\r\n\r\n");
        let to = view.envelope().to;
        assert_eq!(to.len(), 3);
        assert_eq!(to[0].mailbox, nstring(Some(b"Team".to_vec())));
        assert_eq!(to[0].host, NString(None));
        assert_eq!(to[1].mailbox, nstring(Some(b"b".to_vec())));
        assert_eq!(to[2].mailbox, NString(None));
        assert_eq!(to[2].host, NString(None));
    }

    #[test]
    fn body_structure_describes_parts() {
        let view = MessageView::new(MULTIPART);
        let BodyStructure::Multi { bodies, .. } = view.body_structure(false) else {
            panic!("expected multipart");
        };
        assert_eq!(bodies.as_ref().len(), 2);
        let BodyStructure::Single { body, .. } = &bodies.as_ref()[1] else {
            panic!("expected single part");
        };
        assert!(matches!(body.specific, SpecificFields::Message { .. }));
    }
}
