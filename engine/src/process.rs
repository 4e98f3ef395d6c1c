//! Turning one fetched message into a draft for the commit.
//!
//! Each message is parsed once with `mail-parser`: headers only for a user or
//! queue mailbox, in full for a forward mailbox, whose copies carry the
//! original as a `message/rfc822` part. Everything that depends only on the
//! message and the configuration is settled here, outside the store's lock.
//! Whatever depends on other records (duplicates, correlation) is left to
//! [`decide`](crate::decide).

use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use mail_parser::{HeaderValue, Message, MessageParser, PartType};

use crate::config::{Config, MailboxConfig, MailboxId, Owner, TrackingFilter};
use crate::decide::synthetic_message_id;
use crate::error::ErrorKind;
use crate::records::{EmailDraft, Reason};

/// Digits after the tracking-token prefix.
const TOKEN_DIGITS: usize = 7;

/// Mailbox settings that processing reads.
#[derive(Clone, Debug)]
pub(crate) struct MailboxInfo {
    pub(crate) owner: Owner,
    pub(crate) filter: TrackingFilter,
    /// Unix seconds; older mail is ignored.
    pub(crate) received_after: Option<i64>,
}

/// Lookup tables built once from a [`Config`].
#[derive(Debug)]
pub(crate) struct Directory {
    mailboxes: BTreeMap<MailboxId, MailboxInfo>,
    /// Lowercase address to non-forward mailbox.
    by_address: HashMap<String, MailboxId>,
    /// Lowercase contact addresses.
    contacts: HashSet<String>,
    pub(crate) token_prefix: Arc<str>,
}

impl Directory {
    pub(crate) fn new(config: &Config) -> Self {
        let info = |mailbox: &MailboxConfig| MailboxInfo {
            owner: mailbox.owner.clone(),
            filter: mailbox.tracking_filter,
            received_after: mailbox.process_received_after.map(|t| t.timestamp()),
        };
        Self {
            mailboxes: config
                .mailboxes
                .iter()
                .map(|mailbox| (mailbox.id.clone(), info(mailbox)))
                .collect(),
            by_address: config
                .mailboxes
                .iter()
                .filter(|mailbox| !mailbox.is_forward)
                .map(|mailbox| (mailbox.address.to_ascii_lowercase(), mailbox.id.clone()))
                .collect(),
            contacts: config
                .contacts
                .iter()
                .map(|contact| contact.address.to_ascii_lowercase())
                .collect(),
            token_prefix: Arc::from(config.settings.tracking_token_prefix.as_str()),
        }
    }
}

impl Directory {
    /// Returns whether processing mail fetched by `mailbox` compares received
    /// times. A direct mailbox needs its own process-received-after setting,
    /// a forward mailbox any mailbox's, because a copy may come from any.
    pub(crate) fn uses_received_time(&self, mailbox: &MailboxId, forward: bool) -> bool {
        if forward {
            self.mailboxes
                .values()
                .any(|info| info.received_after.is_some())
        } else {
            self.mailboxes
                .get(mailbox)
                .is_some_and(|info| info.received_after.is_some())
        }
    }
}

/// The result of processing one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Processed {
    /// Ready for the decision inside the commit.
    Draft(Box<EmailDraft>),
    /// Decided here; `error` is set for email-level errors to report.
    Skip {
        /// Why no draft was made.
        reason: Reason,
        /// The Message-ID, if it was read.
        message_id: Option<Arc<str>>,
        /// The user or queue it was attributed to, if known.
        owner: Option<Owner>,
        /// The email-level error to report, if any.
        error: Option<(ErrorKind, String)>,
    },
    /// Processing failed; the message is retried on a later cycle.
    Failed(String),
}

/// The processing a sync cycle applies to each fetched message, usable on
/// its own: for benchmarks, and for tools that check how the engine would
/// read a message.
pub struct Processor {
    directory: Directory,
    parser: MessageParser,
    forward: HashSet<MailboxId>,
}

impl Processor {
    /// A processor for the mailboxes and contacts of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            directory: Directory::new(config),
            parser: MessageParser::new(),
            forward: config
                .mailboxes
                .iter()
                .filter(|mailbox| mailbox.is_forward)
                .map(|mailbox| mailbox.id.clone())
                .collect(),
        }
    }

    /// Processes `raw` as if `mailbox` had fetched it: parses it, unwraps a
    /// forwarded copy when `mailbox` is a forward mailbox, and extracts the
    /// keys the decision needs.
    pub fn process(&self, mailbox: &MailboxId, raw: &[u8]) -> Processed {
        let forward = self.forward.contains(mailbox);
        process(&self.directory, &self.parser, mailbox, forward, raw, None)
    }
}

/// Mentions of `message/` or `digest` above which a forwarded copy is not
/// given to `mail-parser`'s full parse, which recurses once per nested
/// `message/rfc822` part and so could overflow the stack on a hostile message.
const MAX_NESTING_HINTS: usize = 100;

/// Counts case-insensitive mentions of `message/` and `digest` in `raw`.
/// It visits only the candidate bytes memchr finds, as this runs on every
/// forwarded copy.
fn nesting_hints(raw: &[u8]) -> usize {
    let messages = memchr::memchr_iter(b'/', raw)
        .filter(|&slash| slash >= 7 && raw[slash - 7..slash].eq_ignore_ascii_case(b"message"))
        .count();
    let digests = memchr::memchr2_iter(b'd', b'D', raw)
        .filter(|&start| {
            raw.get(start..start + 6)
                .is_some_and(|word| word.eq_ignore_ascii_case(b"digest"))
        })
        .count();
    messages + digests
}

/// Processes `raw`, fetched by `fetched_by` (a forward mailbox when
/// `forward` is set). `received` is the server's arrival time in Unix
/// seconds, when the protocol provides one.
pub(crate) fn process(
    directory: &Directory,
    parser: &MessageParser,
    fetched_by: &MailboxId,
    forward: bool,
    raw: &[u8],
    received: Option<i64>,
) -> Processed {
    let parsed = if forward {
        if nesting_hints(raw) > MAX_NESTING_HINTS {
            return Processed::Failed(format!(
                "message mentions message/ or digest parts more than {MAX_NESTING_HINTS} times; \
                 not parsed, as deep nesting could exhaust the stack"
            ));
        }
        parser.parse(raw)
    } else {
        parser.parse_headers(raw)
    };
    let Some(message) = parsed.filter(has_headers) else {
        return Processed::Failed("message has no header section".into());
    };

    let (email, mailbox, received) = if forward {
        match unwrap_forwarded(directory, &message) {
            Ok((original, mailbox)) => (original, mailbox, date_of(original).or(received)),
            Err(skip) => return skip,
        }
    } else {
        (
            &message,
            fetched_by.clone(),
            received.or_else(|| date_of(&message)),
        )
    };
    let Some(info) = directory.mailboxes.get(&mailbox) else {
        return Processed::Skip {
            reason: Reason::NoRecipientMatch,
            message_id: None,
            owner: None,
            error: None,
        };
    };

    let message_id: Arc<str> = match email.message_id() {
        Some(id) if !id.is_empty() => Arc::from(id),
        _ => synthetic_message_id(email.raw_message()),
    };
    if let (Some(after), Some(received)) = (info.received_after, received)
        && received < after
    {
        return Processed::Skip {
            reason: Reason::ReceivedBeforeStart,
            message_id: Some(message_id),
            owner: Some(info.owner.clone()),
            error: None,
        };
    }

    let from = sender(email);
    let sender_is_contact = from
        .as_deref()
        .is_some_and(|address| directory.contacts.contains(address));
    let subject = email.subject().unwrap_or_default();
    Processed::Draft(Box::new(EmailDraft {
        message_id,
        subject: subject.into(),
        from: from.map(String::into_boxed_str),
        in_reply_to: first_id(email.in_reply_to()),
        tracking_token: find_token(subject, &directory.token_prefix),
        references: all_ids(email.references()),
        owner: info.owner.clone(),
        mailbox,
        filter: info.filter,
        sender_is_contact,
    }))
}

fn has_headers(message: &Message<'_>) -> bool {
    !message.root_part().headers.is_empty()
}

/// Finds the original inside a forwarded copy and the mailbox that
/// forwarded it, identified by the copy's From address.
fn unwrap_forwarded<'m>(
    directory: &Directory,
    wrapper: &'m Message<'m>,
) -> Result<(&'m Message<'m>, MailboxId), Processed> {
    let original = wrapper.parts.iter().find_map(|part| match &part.body {
        PartType::Message(inner) => Some(inner),
        _ => None,
    });
    let Some(original) = original.filter(|inner| has_headers(inner)) else {
        let text = "forwarded copy has no message/rfc822 part: \
                    not forwarded as an attachment";
        return Err(Processed::Skip {
            reason: Reason::NotForwardedAsAttachment,
            message_id: wrapper.message_id().map(Arc::from),
            owner: None,
            error: Some((ErrorKind::NotForwardedAsAttachment, text.into())),
        });
    };
    let forwarder = sender(wrapper);
    let mailbox = forwarder
        .as_deref()
        .and_then(|address| directory.by_address.get(address));
    match mailbox {
        Some(mailbox) => Ok((original, mailbox.clone())),
        None => Err(Processed::Skip {
            reason: Reason::NoRecipientMatch,
            message_id: original.message_id().map(Arc::from),
            owner: None,
            error: None,
        }),
    }
}

/// Returns the first From address in lowercase.
fn sender(message: &Message<'_>) -> Option<String> {
    let address = message.from()?.first()?.address()?;
    if address.contains('@') {
        Some(address.to_ascii_lowercase())
    } else {
        None
    }
}

fn date_of(message: &Message<'_>) -> Option<i64> {
    message.date().map(|date| date.to_timestamp())
}

fn first_id(value: &HeaderValue<'_>) -> Option<Box<str>> {
    match value {
        HeaderValue::Text(id) => Some(id.as_ref().into()),
        HeaderValue::TextList(ids) => ids.first().map(|id| id.as_ref().into()),
        _ => None,
    }
}

fn all_ids(value: &HeaderValue<'_>) -> Vec<Box<str>> {
    match value {
        HeaderValue::Text(id) => vec![id.as_ref().into()],
        HeaderValue::TextList(ids) => ids.iter().map(|id| id.as_ref().into()).collect(),
        _ => Vec::new(),
    }
}

/// Finds `prefix` followed by exactly 7 digits in `subject`, such as
/// `CRM:0002503`. The prefix matches without regard to ASCII case.
pub(crate) fn find_token(subject: &str, prefix: &str) -> Option<Box<str>> {
    let bytes = subject.as_bytes();
    let prefix_bytes = prefix.as_bytes();
    if prefix_bytes.is_empty() {
        return None;
    }
    let mut start = 0;
    while let Some(offset) = bytes
        .get(start..)?
        .windows(prefix_bytes.len())
        .position(|window| window.eq_ignore_ascii_case(prefix_bytes))
    {
        let digits_start = start + offset + prefix_bytes.len();
        let digits = bytes
            .get(digits_start..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == TOKEN_DIGITS {
            let digits = subject.get(digits_start..digits_start + TOKEN_DIGITS)?;
            return Some(format!("{prefix}{digits}").into());
        }
        start = digits_start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineSettings;

    #[test]
    fn nesting_hints_count_both_words() {
        assert_eq!(nesting_hints(b"Content-Type: Message/RFC822"), 1);
        assert_eq!(nesting_hints(b"multipart/DIGEST; x=message/rfc822"), 2);
        assert_eq!(nesting_hints(b"no parts here"), 0);
    }

    #[test]
    fn deeply_nested_copy_fails_without_parsing() {
        let mut raw =
            b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..200 {
            raw.extend_from_slice(b"--b\r\nContent-Type: message/rfc822\r\n\r\n");
        }
        let directory = Directory::new(&Config {
            profiles: Vec::new(),
            mailboxes: Vec::new(),
            contacts: Vec::new(),
            settings: EngineSettings::default(),
        });
        let processed = process(
            &directory,
            &MessageParser::new(),
            &MailboxId::new("forward"),
            true,
            &raw,
            None,
        );
        assert!(matches!(processed, Processed::Failed(text) if text.contains("more than 100")));
    }
    use crate::config::{Contact, Credentials, Protocol, ServerProfile};

    fn config() -> Config {
        let mut profile = ServerProfile::new("p", "127.0.0.1", 143, Protocol::Imap);
        profile.credentials = Some(Credentials::new("svc", "pw"));
        Config {
            profiles: vec![profile],
            mailboxes: vec![
                MailboxConfig::forward("fwd", Owner::user("admin"), "fwd@example.com", "p"),
                MailboxConfig::via_forward(
                    "alice",
                    Owner::user("alice"),
                    "alice@example.com",
                    "fwd",
                )
                .with_filter(TrackingFilter::All),
                MailboxConfig::direct(
                    "support",
                    Owner::queue("support"),
                    "support@example.com",
                    "p",
                ),
            ],
            contacts: vec![Contact {
                name: "Carol".into(),
                address: "Carol@Example.org".into(),
            }],
            ..Config::default()
        }
    }

    const ORIGINAL: &str = "From: Carol <carol@example.org>\r\n\
To: alice@example.com\r\n\
Subject: Re: Offer CRM:0002503\r\n\
Message-ID: <q1@example.org>\r\n\
In-Reply-To: <sent-1@crm.example.com>\r\n\
References: <root@crm.example.com> <sent-1@crm.example.com>\r\n\
Date: Mon, 1 Jan 2024 09:00:00 +0000\r\n\
\r\n\
Please send a quote.\r\n";

    fn wrapped(from: &str, inner: &str) -> String {
        format!(
            "From: {from}\r\nTo: fwd@example.com\r\nSubject: FW: x\r\nMessage-ID: <w1@example.com>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n\
--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n{inner}\r\n--b--\r\n"
        )
    }

    fn run(fetched_by: &str, forward: bool, raw: &str) -> Processed {
        let directory = Directory::new(&config());
        let parser = MessageParser::new();
        process(
            &directory,
            &parser,
            &MailboxId::new(fetched_by),
            forward,
            raw.as_bytes(),
            None,
        )
    }

    #[test]
    fn direct_message_becomes_draft() {
        let Processed::Draft(draft) = run("support", false, ORIGINAL) else {
            panic!("expected a draft");
        };
        assert_eq!(&*draft.message_id, "q1@example.org");
        assert_eq!(draft.owner, Owner::queue("support"));
        assert_eq!(draft.from.as_deref(), Some("carol@example.org"));
        assert_eq!(draft.in_reply_to.as_deref(), Some("sent-1@crm.example.com"));
        assert_eq!(draft.tracking_token.as_deref(), Some("CRM:0002503"));
        assert_eq!(draft.references.len(), 2);
        assert!(draft.sender_is_contact);
    }

    #[test]
    fn forwarded_copy_unwraps_to_forwarding_user() {
        let Processed::Draft(draft) =
            run("fwd", true, &wrapped("Alice <ALICE@example.com>", ORIGINAL))
        else {
            panic!("expected a draft");
        };
        assert_eq!(&*draft.message_id, "q1@example.org");
        assert_eq!(draft.owner, Owner::user("alice"));
        assert_eq!(draft.mailbox, MailboxId::new("alice"));
        assert_eq!(draft.filter, TrackingFilter::All);
    }

    #[test]
    fn inline_forward_is_email_level_error() {
        let inline = "From: alice@example.com\r\nTo: fwd@example.com\r\nSubject: FW: x\r\n\
Message-ID: <w2@example.com>\r\n\r\n-----Original Message-----\r\nFrom: carol@example.org\r\n";
        let processed = run("fwd", true, inline);
        let Processed::Skip { reason, error, .. } = processed else {
            panic!("expected a skip, got {processed:?}");
        };
        assert_eq!(reason, Reason::NotForwardedAsAttachment);
        assert_eq!(
            error.map(|(kind, _)| kind),
            Some(ErrorKind::NotForwardedAsAttachment)
        );
    }

    #[test]
    fn unknown_forwarder_has_no_recipient_match() {
        let processed = run("fwd", true, &wrapped("mallory@example.net", ORIGINAL));
        assert!(matches!(
            processed,
            Processed::Skip {
                reason: Reason::NoRecipientMatch,
                ..
            }
        ));
    }

    #[test]
    fn headerless_bytes_fail_processing() {
        let garbage = "\u{80}\u{81}\u{82} no header here\r\n\r\nbody\r\n";
        assert!(matches!(
            run("support", false, garbage),
            Processed::Failed(_)
        ));
    }

    #[test]
    fn missing_message_id_is_synthesized_stably() {
        let raw = "From: carol@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
        let (Processed::Draft(first), Processed::Draft(second)) =
            (run("support", false, raw), run("support", false, raw))
        else {
            panic!("expected drafts");
        };
        assert_eq!(first.message_id, second.message_id);
        assert!(first.message_id.ends_with("@no-message-id.invalid"));
    }

    #[test]
    fn old_mail_is_skipped() {
        let mut config = config();
        config.mailboxes[2].process_received_after =
            Some(chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid time"));
        let directory = Directory::new(&config);
        let processed = process(
            &directory,
            &MessageParser::new(),
            &MailboxId::new("support"),
            false,
            ORIGINAL.as_bytes(),
            None,
        );
        assert!(matches!(
            processed,
            Processed::Skip {
                reason: Reason::ReceivedBeforeStart,
                ..
            }
        ));
    }

    #[test]
    fn token_needs_exactly_seven_digits() {
        assert_eq!(
            find_token("Re: CRM:0000042 offer", "CRM:").as_deref(),
            Some("CRM:0000042")
        );
        assert_eq!(
            find_token("crm:1234567", "CRM:").as_deref(),
            Some("CRM:1234567")
        );
        assert_eq!(find_token("CRM:123456", "CRM:"), None);
        assert_eq!(find_token("CRM:12345678", "CRM:"), None);
        assert_eq!(
            find_token("CRM:12 then CRM:7654321", "CRM:").as_deref(),
            Some("CRM:7654321")
        );
    }
}
