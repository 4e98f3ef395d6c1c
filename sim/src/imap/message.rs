//! Stored messages as FETCH and SEARCH see them: header and text, MIME
//! parts by number, ENVELOPE and BODYSTRUCTURE.
//!
//! The top-level header and text are found by scanning for the first empty
//! line, which needs no parser, so `BODY.PEEK[HEADER]` stays cheap. Part
//! numbers, ENVELOPE and BODYSTRUCTURE use `mail-parser`. A [`MessageView`]
//! parses lazily and keeps the result, so the header-only parse and the
//! full parse each run at most once per message per command.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::num::NonZeroU32;

use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{AString, IString, NString, Quoted, Vec1};
use imap_codec::imap_types::envelope::{Address, Envelope};
use imap_codec::imap_types::fetch::Section;
use mail_parser::{ContentType, Header, HeaderName, HeaderValue, Message, MessageParser, PartType};

/// Nesting depth up to which BODYSTRUCTURE describes parts; deeper parts
/// are described as opaque `application/octet-stream`. imap-codec's
/// response decoder (2.0.0-alpha.10) accepts at most 7 nested levels, and
/// clients built on it must be able to read every reply.
const MAX_DEPTH: usize = 6;

/// Mentions of `message/` or `digest` above which a message is not given to
/// `mail-parser`'s full parse. Nested `message/rfc822` parts make it recurse
/// once per level, so a peer could otherwise overflow the stack with a
/// message nested thousands of levels deep.
const MAX_NESTING_HINTS: usize = 100;

/// A stored message with lazily parsed structure.
pub(crate) struct MessageView<'a> {
    raw: &'a [u8],
    header_len: usize,
    headers: OnceCell<Option<Message<'a>>>,
    parsed: OnceCell<Option<Message<'a>>>,
}

impl<'a> MessageView<'a> {
    /// Creates a view of `raw` without parsing it.
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Self {
            raw,
            header_len: header_length(raw),
            headers: OnceCell::new(),
            parsed: OnceCell::new(),
        }
    }

    /// Returns the whole message.
    pub(crate) fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Returns the header section, including the empty line that ends it.
    pub(crate) fn header(&self) -> &'a [u8] {
        self.raw.get(..self.header_len).unwrap_or_default()
    }

    /// Returns the text (body) after the header section.
    pub(crate) fn text(&self) -> &'a [u8] {
        self.raw.get(self.header_len..).unwrap_or_default()
    }

    /// Parses the message's top-level header fields, or reuses an earlier parse.
    pub(crate) fn header_fields(&self) -> &[Header<'a>] {
        let message = match self.parsed.get() {
            Some(parsed) => parsed.as_ref(),
            None => self
                .headers
                .get_or_init(|| MessageParser::new().parse_headers(self.raw))
                .as_ref(),
        };
        message
            .and_then(|message| message.parts.first())
            .map_or(&[], |part| part.headers.as_slice())
    }

    fn parsed(&self) -> Option<&Message<'a>> {
        self.parsed
            .get_or_init(|| {
                if nesting_hints(self.raw) > MAX_NESTING_HINTS {
                    return None;
                }
                MessageParser::new().parse(self.raw)
            })
            .as_ref()
    }

    fn root(&self) -> Option<Node<'_, 'a>> {
        let message = self.parsed()?;
        message.parts.first().map(|_| Node { message, part: 0 })
    }

    /// Extracts the bytes of a BODY section (RFC 3501 6.4.5); `None` asks
    /// for the whole message. A part that does not exist yields no bytes.
    pub(crate) fn section(&self, section: Option<&Section<'_>>) -> Cow<'_, [u8]> {
        let Some(section) = section else {
            return Cow::Borrowed(self.raw);
        };
        match section {
            Section::Part(part) => self
                .resolve(part.0.as_ref())
                .map(|node| Cow::Borrowed(node.body()))
                .unwrap_or_default(),
            Section::Header(None) => Cow::Borrowed(self.header()),
            Section::Text(None) => Cow::Borrowed(self.text()),
            Section::HeaderFields(None, names) => {
                Cow::Owned(filter_fields(self.header(), names.as_ref(), true))
            }
            Section::HeaderFieldsNot(None, names) => {
                Cow::Owned(filter_fields(self.header(), names.as_ref(), false))
            }
            Section::Header(Some(part)) => self
                .inner_message(part.0.as_ref())
                .map(|inner| Cow::Borrowed(inner.header()))
                .unwrap_or_default(),
            Section::Text(Some(part)) => self
                .inner_message(part.0.as_ref())
                .map(|inner| Cow::Borrowed(inner.body()))
                .unwrap_or_default(),
            Section::HeaderFields(Some(part), names) => self
                .inner_message(part.0.as_ref())
                .map(|inner| Cow::Owned(filter_fields(inner.header(), names.as_ref(), true)))
                .unwrap_or_default(),
            Section::HeaderFieldsNot(Some(part), names) => self
                .inner_message(part.0.as_ref())
                .map(|inner| Cow::Owned(filter_fields(inner.header(), names.as_ref(), false)))
                .unwrap_or_default(),
            Section::Mime(part) => self
                .resolve(part.0.as_ref())
                .map(|node| Cow::Borrowed(node.header()))
                .unwrap_or_default(),
        }
    }

    /// Finds the part with number `path` (1-based at each level). Part 1 of
    /// a message that is not multipart is its body, and the parts of a
    /// `message/rfc822` part are those of the message it contains.
    fn resolve(&self, path: &[NonZeroU32]) -> Option<Node<'_, 'a>> {
        let mut context = self.root()?;
        let mut current = None;
        for (depth, number) in path.iter().enumerate() {
            if depth > 0 {
                // A leaf has no parts below it.
                let picked: Node<'_, 'a> = current?;
                context = match picked.kind() {
                    Kind::Message(inner) => inner,
                    Kind::Multipart(_) => picked,
                    Kind::Leaf => return None,
                };
            }
            let index = (number.get() - 1) as usize;
            current = match context.kind() {
                Kind::Multipart(children) => {
                    Some(children.get(index).copied().map(|id| context.child(id))?)
                }
                _ if index == 0 => Some(context),
                _ => None,
            };
        }
        current
    }

    /// Finds the message inside the `message/rfc822` part `path`.
    fn inner_message(&self, path: &[NonZeroU32]) -> Option<Node<'_, 'a>> {
        match self.resolve(path)?.kind() {
            Kind::Message(inner) => Some(inner),
            _ => None,
        }
    }

    /// Builds the ENVELOPE of the message.
    pub(crate) fn envelope(&self) -> Envelope<'static> {
        envelope(self.header_fields(), self.raw)
    }

    /// Builds the BODYSTRUCTURE (`extensible` true) or BODY of the message.
    pub(crate) fn body_structure(&self, extensible: bool) -> BodyStructure<'static> {
        match self.root() {
            Some(root) => structure(root, extensible, 0),
            None => fallback_structure(self.raw, self.header_len, extensible),
        }
    }
}

/// One MIME part: a part of a parsed message, with that message's bytes.
#[derive(Clone, Copy)]
struct Node<'m, 'a> {
    message: &'m Message<'a>,
    part: usize,
}

enum Kind<'m, 'a> {
    Multipart(&'m [u32]),
    Message(Node<'m, 'a>),
    Leaf,
}

impl<'m, 'a> Node<'m, 'a> {
    fn raw(&self) -> &'m [u8] {
        self.message.raw_message.as_ref()
    }

    fn part(&self) -> Option<&'m mail_parser::MessagePart<'a>> {
        self.message.parts.get(self.part)
    }

    fn kind(&self) -> Kind<'m, 'a> {
        match self.part().map(|part| &part.body) {
            Some(PartType::Multipart(children)) if !children.is_empty() => {
                Kind::Multipart(children)
            }
            Some(PartType::Message(inner)) if !inner.parts.is_empty() => Kind::Message(Node {
                message: inner,
                part: 0,
            }),
            _ => Kind::Leaf,
        }
    }

    fn child(&self, id: u32) -> Self {
        Self {
            message: self.message,
            part: id as usize,
        }
    }

    fn headers(&self) -> &'m [Header<'a>] {
        self.part().map_or(&[], |part| part.headers.as_slice())
    }

    fn header(&self) -> &'m [u8] {
        self.part()
            .and_then(|part| {
                self.raw()
                    .get(part.offset_header as usize..part.offset_body as usize)
            })
            .unwrap_or_default()
    }

    fn body(&self) -> &'m [u8] {
        self.part()
            .and_then(|part| {
                self.raw()
                    .get(part.offset_body as usize..part.offset_end as usize)
            })
            .unwrap_or_default()
    }

    fn content_type(&self) -> Option<&'m ContentType<'a>> {
        find(self.headers(), &HeaderName::ContentType).and_then(|h| h.value.as_content_type())
    }
}

/// Measures the header section of `raw`: up to and including the first
/// empty line, or all of `raw` when it has none.
pub(crate) fn header_length(raw: &[u8]) -> usize {
    if raw.starts_with(b"\r\n") {
        return 2;
    }
    if raw.starts_with(b"\n") {
        return 1;
    }
    let mut from = 0;
    while let Some(offset) = raw
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
    {
        let lf = from + offset;
        match (raw.get(lf + 1), raw.get(lf + 2)) {
            (Some(b'\n'), _) => return lf + 2,
            (Some(b'\r'), Some(b'\n')) => return lf + 3,
            _ => from = lf + 1,
        }
    }
    raw.len()
}

/// Selects the header fields of `header` whose names are (`keep` true) or
/// are not in `names`, each with its continuation lines, then an empty line.
pub(crate) fn filter_fields(header: &[u8], names: &[AString<'_>], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields(header) {
        let Some(name) = field_name(field) else {
            continue;
        };
        let listed = names
            .iter()
            .any(|wanted| wanted.as_ref().eq_ignore_ascii_case(name));
        if listed == keep {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Splits a header section into fields, each with its continuation lines
/// and line endings; the empty line that ends the section is left out.
pub(crate) fn fields(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = header;
    std::iter::from_fn(move || {
        if rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return None;
        }
        let mut end = 0;
        loop {
            let line_end = rest
                .get(end..)
                .and_then(|tail| tail.iter().position(|&b| b == b'\n'))
                .map_or(rest.len(), |offset| end + offset + 1);
            end = line_end;
            match rest.get(end) {
                Some(b' ' | b'\t') => continue,
                _ => break,
            }
        }
        let (field, tail) = rest.split_at(end.min(rest.len()));
        rest = tail;
        Some(field)
    })
}

/// Extracts the name of a header field, without surrounding whitespace.
pub(crate) fn field_name(field: &[u8]) -> Option<&[u8]> {
    let colon = field.iter().position(|&b| b == b':')?;
    let name = field.get(..colon)?.trim_ascii();
    (!name.is_empty()).then_some(name)
}

/// Extracts the value of a header field: after the colon, unfolded and trimmed.
pub(crate) fn field_value(field: &[u8]) -> Vec<u8> {
    let colon = field.iter().position(|&b| b == b':').map_or(0, |c| c + 1);
    let value: Vec<u8> = field
        .get(colon..)
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    value.trim_ascii().to_vec()
}

fn find<'h, 'a>(headers: &'h [Header<'a>], name: &HeaderName<'_>) -> Option<&'h Header<'a>> {
    headers.iter().find(|header| &header.name == name)
}

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
fn envelope(headers: &[Header<'_>], raw: &[u8]) -> Envelope<'static> {
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

/// Number of lines in `body`, counting a last line without line ending.
fn line_count(body: &[u8]) -> u32 {
    let newlines = body.iter().filter(|&&b| b == b'\n').count();
    let partial = usize::from(body.last().is_some_and(|&b| b != b'\n'));
    u32::try_from(newlines + partial).unwrap_or(u32::MAX)
}

fn size(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

/// Case-insensitive count of `message/` and `digest`, an upper bound on how
/// deeply `message/rfc822` parts can nest.
fn nesting_hints(raw: &[u8]) -> usize {
    raw.windows(8)
        .filter(|window| {
            window.eq_ignore_ascii_case(b"message/") || window[..6].eq_ignore_ascii_case(b"digest")
        })
        .count()
}

fn structure(node: Node<'_, '_>, extensible: bool, depth: usize) -> BodyStructure<'static> {
    let content_type = node.content_type();
    match node.kind() {
        Kind::Multipart(children) if depth < MAX_DEPTH => {
            let bodies: Vec<BodyStructure<'static>> = children
                .iter()
                .map(|&id| structure(node.child(id), extensible, depth + 1))
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
                body_structure: Box::new(structure(inner, extensible, depth + 1)),
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

/// BODYSTRUCTURE of a message `mail-parser` was not asked to parse: one
/// text/plain part holding the whole text.
fn fallback_structure(raw: &[u8], header_len: usize, extensible: bool) -> BodyStructure<'static> {
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
    use imap_codec::imap_types::fetch::Part;

    use super::*;

    const MULTIPART: &[u8] = b"From: Alice <alice@example.org>\r\n\
Subject: mixed\r\n\
Content-Type: multipart/mixed; boundary=XX\r\n\
\r\n\
preamble\r\n\
--XX\r\n\
Content-Type: text/plain\r\n\
\r\n\
hello\r\n\
world\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: bob@example.org\r\n\
Subject: inner\r\n\
\r\n\
inner text\r\n\
--XX--\r\n";

    fn part(numbers: &[u32]) -> Part {
        let numbers: Vec<NonZeroU32> = numbers.iter().filter_map(|&n| NonZeroU32::new(n)).collect();
        Part(Vec1::try_from(numbers).unwrap())
    }

    fn text_of(view: &MessageView<'_>, section: Section<'_>) -> String {
        String::from_utf8_lossy(&view.section(Some(&section))).into_owned()
    }

    #[test]
    fn header_length_stops_after_empty_line() {
        assert_eq!(header_length(b"A: 1\r\n\r\nbody"), 8);
        assert_eq!(header_length(b"A: 1\n\nbody"), 6);
        assert_eq!(header_length(b"\r\nbody"), 2);
        assert_eq!(header_length(b"A: 1\r\n"), 6);
    }

    #[test]
    fn part_numbers_follow_rfc3501() {
        let view = MessageView::new(MULTIPART);
        assert_eq!(text_of(&view, Section::Part(part(&[1]))), "hello\r\nworld");
        assert_eq!(
            text_of(&view, Section::Header(Some(part(&[2])))),
            "From: bob@example.org\r\nSubject: inner\r\n\r\n"
        );
        // The line break before a boundary belongs to the boundary.
        assert_eq!(text_of(&view, Section::Part(part(&[2, 1]))), "inner text");
        assert_eq!(
            text_of(&view, Section::Mime(part(&[1]))),
            "Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(text_of(&view, Section::Part(part(&[3]))), "");
        assert_eq!(text_of(&view, Section::Part(part(&[1, 1]))), "");
    }

    #[test]
    fn single_part_message_has_part_one() {
        let view = MessageView::new(b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(text_of(&view, Section::Part(part(&[1]))), "body\r\n");
        assert_eq!(text_of(&view, Section::Text(None)), "body\r\n");
    }

    #[test]
    fn header_fields_keep_continuations() {
        let header = b"Subject: a\r\n b\r\nFrom: x\r\nTo: y\r\n\r\n";
        let names = [
            AString::try_from("SUBJECT").unwrap(),
            AString::try_from("to").unwrap(),
        ];
        assert_eq!(
            filter_fields(header, &names, true),
            b"Subject: a\r\n b\r\nTo: y\r\n\r\n"
        );
        assert_eq!(filter_fields(header, &names, false), b"From: x\r\n\r\n");
    }

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

    #[test]
    fn deep_nesting_is_not_parsed() {
        let mut raw = Vec::new();
        for _ in 0..200 {
            raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        let view = MessageView::new(&raw);
        assert!(matches!(
            view.body_structure(true),
            BodyStructure::Single { .. }
        ));
    }
}
