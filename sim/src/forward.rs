//! Forwarded copies, as a server-side mailbox rule produces them.
//!
//! A rule that forwards *as an attachment* wraps the original in a new
//! message from the forwarding account, with the original bytes untouched in
//! a `message/rfc822` part. A rule that forwards *inline* quotes the original
//! text in a new body, which loses the original headers; a sync engine that
//! expects attachments has to report such copies.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::mime::MimePart;
use mail_parser::MessageParser;

/// How a rule forwards a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardMode {
    /// The original as a `message/rfc822` attachment, bytes unchanged.
    Attachment,
    /// The original's text quoted in the body of a new message.
    Inline,
}

/// A server-side rule on one account: forward a copy of each message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardRule {
    /// Address of the forward mailbox.
    pub to: String,
    /// Attachment or inline.
    pub mode: ForwardMode,
    /// Delay between arrival in the account and the copy's arrival.
    pub delay: Duration,
}

/// The fields of a forwarded copy besides the original.
pub struct CopyHeaders<'a> {
    /// The forwarding account.
    pub from: &'a str,
    /// The forward mailbox.
    pub to: &'a str,
    /// Unique id, used for the Message-ID and the MIME boundary.
    pub sequence: u64,
    /// Host name for the Message-ID.
    pub hostname: &'a str,
    /// When the copy is made.
    pub date: DateTime<Utc>,
}

/// Builds a forwarded copy of `original` in `mode`.
pub fn forwarded_copy(original: &[u8], mode: ForwardMode, headers: &CopyHeaders<'_>) -> Bytes {
    match mode {
        ForwardMode::Attachment => as_attachment(original, headers),
        ForwardMode::Inline => inline(original, headers),
    }
}

fn as_attachment(original: &[u8], headers: &CopyHeaders<'_>) -> Bytes {
    let parsed = MessageParser::new().parse_headers(original);
    let subject = parsed
        .as_ref()
        .and_then(|message| message.subject())
        .unwrap_or_default();

    // A boundary derived from the sequence keeps copies byte-identical
    // across runs (mail-builder would take one from the system time); it
    // must not occur in the original, or the attachment would end early.
    let boundary = unique_boundary(original, headers.sequence);
    let text = MimePart::new(
        "text/plain",
        "This message was forwarded by a server-side rule. The original is attached.\r\n",
    );
    // RFC 2046 section 5.2.1 allows only 7bit, 8bit or binary for
    // message/rfc822, so the original goes in verbatim.
    let encoding = if original.is_ascii() { "7bit" } else { "8bit" };
    let attachment = MimePart::new("message/rfc822", original)
        .attachment("forwarded.eml")
        .transfer_encoding(encoding);
    let body = MimePart::new(
        ContentType::new("multipart/mixed").attribute("boundary", boundary),
        vec![text, attachment],
    );
    let message = base_builder(headers)
        .subject(format!("FW: {subject}"))
        .body(body);
    Bytes::from(message.write_to_vec().unwrap_or_default())
}

/// A MIME boundary that does not occur anywhere in `original`.
fn unique_boundary(original: &[u8], sequence: u64) -> String {
    let mut attempt = 0u64;
    loop {
        let boundary = format!("mailsim-fwd-{sequence:016x}-{attempt}");
        if memchr::memmem::find(original, boundary.as_bytes()).is_none() {
            return boundary;
        }
        attempt += 1;
    }
}

fn inline(original: &[u8], headers: &CopyHeaders<'_>) -> Bytes {
    let parsed = MessageParser::new().parse(original);
    let (subject, from, date, text) = match &parsed {
        Some(message) => (
            message.subject().unwrap_or_default().to_owned(),
            message
                .from()
                .and_then(|from| from.first())
                .and_then(|addr| addr.address())
                .unwrap_or_default()
                .to_owned(),
            message.date().map(|d| d.to_rfc822()).unwrap_or_default(),
            message
                .body_text(0)
                .map(|text| text.into_owned())
                .unwrap_or_default(),
        ),
        None => Default::default(),
    };
    let quoted = format!(
        "-----Original Message-----\r\nFrom: {from}\r\nSent: {date}\r\nSubject: {subject}\r\n\r\n{text}"
    );
    let message = base_builder(headers)
        .subject(format!("FW: {subject}"))
        .text_body(quoted);
    Bytes::from(message.write_to_vec().unwrap_or_default())
}

fn base_builder<'a>(headers: &'a CopyHeaders<'a>) -> MessageBuilder<'a> {
    MessageBuilder::new()
        .from(headers.from)
        .to(headers.to)
        .message_id(format!("fwd.{}@{}", headers.sequence, headers.hostname))
        .date(Date::new(headers.date.timestamp()))
}

/// A message a broken store might hand out: binary bytes with no header
/// section and no NUL byte, so it still fits an IMAP literal. Its content
/// depends only on `sequence`.
pub fn corrupt_message(sequence: u64) -> Bytes {
    let mut raw = Vec::with_capacity(2048);
    let mut state = sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for line in 0..32 {
        for _ in 0..62 {
            // xorshift64: cheap, deterministic, bytes from 0x80 to 0xff
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            raw.push(0x80 | (state as u8));
        }
        if line < 31 {
            raw.extend_from_slice(b"\r\n");
        }
    }
    raw.extend_from_slice(b"\r\n");
    Bytes::from(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &[u8] = b"From: Carol <carol@example.org>\r\n\
To: alice@example.com\r\n\
Subject: Quote request\r\n\
Message-ID: <q1@example.org>\r\n\
Date: Mon, 1 Jan 2024 09:00:00 +0000\r\n\
\r\n\
Please send a quote.\r\n";

    fn headers() -> CopyHeaders<'static> {
        CopyHeaders {
            from: "alice@example.com",
            to: "forward@example.com",
            sequence: 7,
            hostname: "sim.test",
            date: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn attachment_keeps_original_bytes() {
        let copy = forwarded_copy(ORIGINAL, ForwardMode::Attachment, &headers());
        let parsed = MessageParser::new().parse(&copy).unwrap();
        assert_eq!(parsed.subject(), Some("FW: Quote request"));
        let attached = parsed
            .attachments()
            .find_map(|part| part.message())
            .expect("message/rfc822 part");
        assert_eq!(attached.raw_message(), ORIGINAL);
    }

    #[test]
    fn boundary_avoids_the_original() {
        let mut original = ORIGINAL.to_vec();
        for attempt in 0..3 {
            original
                .extend_from_slice(format!("--mailsim-fwd-{:016x}-{attempt}\r\n", 7).as_bytes());
        }
        let copy = forwarded_copy(&original, ForwardMode::Attachment, &headers());
        let parsed = MessageParser::new().parse(&copy).unwrap();
        let attached = parsed
            .attachments()
            .find_map(|part| part.message())
            .expect("message/rfc822 part");
        assert_eq!(attached.raw_message(), original.as_slice());
    }

    #[test]
    fn attachment_copy_is_deterministic() {
        let first = forwarded_copy(ORIGINAL, ForwardMode::Attachment, &headers());
        let second = forwarded_copy(ORIGINAL, ForwardMode::Attachment, &headers());
        assert_eq!(first, second);
    }

    #[test]
    fn inline_copy_has_no_rfc822_part() {
        let copy = forwarded_copy(ORIGINAL, ForwardMode::Inline, &headers());
        let parsed = MessageParser::new().parse(&copy).unwrap();
        assert!(parsed.attachments().all(|part| part.message().is_none()));
        let text = parsed.body_text(0).unwrap();
        assert!(text.contains("Please send a quote."), "{text}");
        assert!(text.contains("carol@example.org"), "{text}");
    }

    #[test]
    fn corrupt_message_has_no_header() {
        let raw = corrupt_message(3);
        assert!(!raw.contains(&0));
        assert!(!raw.contains(&b':'));
        assert_eq!(raw, corrupt_message(3));
        assert_ne!(raw, corrupt_message(4));
    }
}
