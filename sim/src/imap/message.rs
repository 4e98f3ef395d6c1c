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

use imap_codec::imap_types::body::BodyStructure;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::envelope::Envelope;
use imap_codec::imap_types::fetch::Section;
use mail_parser::{ContentType, Header, HeaderName, Message, MessageParser, PartType};

use super::structure;

/// Mentions of `message/` or `digest` above which a message is not given to
/// `mail-parser`'s full parse. Nested `message/rfc822` parts make it recurse
/// once per level, so a peer could otherwise overflow the stack with a
/// message nested thousands of levels deep.
const MAX_NESTING_HINTS: usize = 100;

/// A stored message with lazily parsed structure.
pub(crate) struct MessageView<'a> {
    raw: &'a [u8],
    /// Found on first use: `BODY.PEEK[]` never needs it.
    header_len: OnceCell<usize>,
    headers: OnceCell<Option<Message<'a>>>,
    parsed: OnceCell<Option<Message<'a>>>,
}

impl<'a> MessageView<'a> {
    /// Creates a view of `raw` without parsing it.
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Self {
            raw,
            header_len: OnceCell::new(),
            headers: OnceCell::new(),
            parsed: OnceCell::new(),
        }
    }

    fn header_len(&self) -> usize {
        *self.header_len.get_or_init(|| header_length(self.raw))
    }

    /// Returns the whole message.
    pub(crate) fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Returns the header section, including the empty line that ends it.
    pub(crate) fn header(&self) -> &'a [u8] {
        self.raw.get(..self.header_len()).unwrap_or_default()
    }

    /// Returns the text (body) after the header section.
    pub(crate) fn text(&self) -> &'a [u8] {
        self.raw.get(self.header_len()..).unwrap_or_default()
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
        structure::envelope(self.header_fields(), self.raw)
    }

    /// Builds the BODYSTRUCTURE (`extensible` true) or BODY of the message.
    pub(crate) fn body_structure(&self, extensible: bool) -> BodyStructure<'static> {
        match self.root() {
            Some(root) => structure::body_structure(root, extensible, 0),
            None => structure::fallback(self.raw, self.header_len(), extensible),
        }
    }
}

/// One MIME part: a part of a parsed message, with that message's bytes.
#[derive(Clone, Copy)]
pub(super) struct Node<'m, 'a> {
    message: &'m Message<'a>,
    part: usize,
}

pub(super) enum Kind<'m, 'a> {
    Multipart(&'m [u32]),
    Message(Node<'m, 'a>),
    Leaf,
}

impl<'m, 'a> Node<'m, 'a> {
    pub(super) fn raw(&self) -> &'m [u8] {
        self.message.raw_message.as_ref()
    }

    pub(super) fn part(&self) -> Option<&'m mail_parser::MessagePart<'a>> {
        self.message.parts.get(self.part)
    }

    pub(super) fn kind(&self) -> Kind<'m, 'a> {
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

    pub(super) fn child(&self, id: u32) -> Self {
        Self {
            message: self.message,
            part: id as usize,
        }
    }

    pub(super) fn headers(&self) -> &'m [Header<'a>] {
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

    pub(super) fn body(&self) -> &'m [u8] {
        self.part()
            .and_then(|part| {
                self.raw()
                    .get(part.offset_body as usize..part.offset_end as usize)
            })
            .unwrap_or_default()
    }

    pub(super) fn content_type(&self) -> Option<&'m ContentType<'a>> {
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

pub(super) fn find<'h, 'a>(
    headers: &'h [Header<'a>],
    name: &HeaderName<'_>,
) -> Option<&'h Header<'a>> {
    headers.iter().find(|header| &header.name == name)
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

#[cfg(test)]
mod tests {
    use imap_codec::imap_types::core::Vec1;
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
