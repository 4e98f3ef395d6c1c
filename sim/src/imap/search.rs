//! SEARCH and UID SEARCH (RFC 3501 6.4.4).
//!
//! The criteria are first compiled against the session's view (sequence
//! and UID sets become per-message membership tables), then evaluated on a
//! snapshot of the selected mailbox taken under the account lock. Header
//! and body keys parse a message only when an earlier key has not already
//! decided it.

use std::cmp::Ordering;
use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::Arc;

use chrono::NaiveDate;
use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::response::{Code, Data, Response};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;
use mail_parser::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite};

use super::message::{MessageView, field_name, field_value, fields};
use super::output::Disconnect;
use super::response::Completion;
use super::selection::Selection;
use super::session::{Session, wrong_state};
use crate::store::{Flags, StoredMessage, SystemFlags};

/// A compiled search key.
enum Query {
    All,
    /// Membership by index into the view: sorted, disjoint ranges.
    Members(Vec<Range<usize>>),
    Flag(SystemFlags, bool),
    Keyword(String, bool),
    Recent(bool),
    New,
    Arrival(Ordering, NaiveDate),
    Sent(Ordering, NaiveDate),
    Size(Ordering, u32),
    Header(Vec<u8>, Vec<u8>),
    Body(Vec<u8>),
    Text(Vec<u8>),
    Not(Box<Query>),
    Or(Box<Query>, Box<Query>),
    And(Vec<Query>),
}

/// One message of the snapshot.
struct Candidate {
    index: usize,
    sequence: NonZeroU32,
    uid: NonZeroU32,
    recent: bool,
    flags: Flags,
    message: Arc<StoredMessage>,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// SEARCH and UID SEARCH; results are sequence numbers or UIDs.
    pub(super) async fn search(
        &mut self,
        charset: Option<Charset<'static>>,
        criteria: Vec1<imap_codec::imap_types::search::SearchKey<'static>>,
        uid: bool,
    ) -> Result<Completion, Disconnect> {
        let Some((login, selection)) = self.selected() else {
            return Ok(wrong_state(&self.state));
        };
        if let Some(charset) = charset {
            let name = charset.as_ref();
            if !name.eq_ignore_ascii_case("US-ASCII") && !name.eq_ignore_ascii_case("UTF-8") {
                let supported = ["US-ASCII", "UTF-8"]
                    .into_iter()
                    .filter_map(|name| Charset::try_from(name).ok())
                    .collect();
                return Ok(Completion::no_with(
                    Code::BadCharset { allowed: supported },
                    "Unsupported charset",
                ));
            }
        }
        let query = Query::And(
            criteria
                .as_ref()
                .iter()
                .map(|key| compile(key, selection))
                .collect(),
        );
        let scope = query.scope(selection.len());
        let candidates = snapshot(selection, login.account(), scope);

        let mut found = Vec::new();
        for candidate in &candidates {
            let view = MessageView::new(&candidate.message.raw);
            if query.matches(candidate, &view) {
                found.push(if uid {
                    candidate.uid
                } else {
                    candidate.sequence
                });
            }
        }
        self.out.send(&Response::Data(Data::Search(found))).await?;
        Ok(Completion::ok("SEARCH completed"))
    }
}

/// Flags and bytes of the messages in `scope` (view indices) that the store
/// still has.
fn snapshot(
    selection: &Selection,
    account: &crate::store::Account,
    scope: Vec<Range<usize>>,
) -> Vec<Candidate> {
    let mailboxes = account.mailboxes();
    let Some(folder) = mailboxes.folder(&selection.name) else {
        return Vec::new();
    };
    scope
        .into_iter()
        .flatten()
        .filter_map(|index| {
            let uid = selection.uid(index)?;
            let entry = folder.get(uid)?;
            Some(Candidate {
                index,
                sequence: selection.sequence_of(uid)?,
                uid: NonZeroU32::new(uid)?,
                recent: selection.is_recent(uid),
                flags: entry.flags.clone(),
                message: Arc::clone(&entry.message),
            })
        })
        .collect()
}

impl Query {
    /// The view indices that can match, as sorted, disjoint ranges: a
    /// sequence or UID set at the top level narrows the search, so that
    /// `UID SEARCH UID 1000:*` does not visit the messages below 1000.
    fn scope(&self, len: usize) -> Vec<Range<usize>> {
        match self {
            Self::Members(ranges) => ranges.clone(),
            Self::And(queries) => {
                let mut scope = std::iter::once(0..len).collect::<Vec<_>>();
                for query in queries {
                    scope = intersect(&scope, &query.scope(len));
                }
                scope
            }
            _ => std::iter::once(0..len).collect(),
        }
    }
}

/// The intersection of two lists of sorted, disjoint ranges.
fn intersect(a: &[Range<usize>], b: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut result = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if start < end {
            result.push(start..end);
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    result
}

fn members(selection: &Selection, set: &SequenceSet, uid: bool) -> Query {
    Query::Members(selection.resolve_ranges(set, uid))
}

fn compile(key: &SearchKey<'_>, selection: &Selection) -> Query {
    let text = |value: &dyn AsRef<[u8]>| value.as_ref().to_ascii_lowercase();
    let date = |value: &imap_codec::imap_types::datetime::NaiveDate| *value.as_ref();
    let header =
        |name: &str, value: &dyn AsRef<[u8]>| Query::Header(name.as_bytes().to_vec(), text(value));
    match key {
        SearchKey::All => Query::All,
        SearchKey::SequenceSet(set) => members(selection, set, false),
        SearchKey::Uid(set) => members(selection, set, true),
        SearchKey::And(keys) => Query::And(
            keys.as_ref()
                .iter()
                .map(|k| compile(k, selection))
                .collect(),
        ),
        SearchKey::Or(a, b) => Query::Or(
            Box::new(compile(a, selection)),
            Box::new(compile(b, selection)),
        ),
        SearchKey::Not(key) => Query::Not(Box::new(compile(key, selection))),
        SearchKey::Answered => Query::Flag(SystemFlags::ANSWERED, true),
        SearchKey::Unanswered => Query::Flag(SystemFlags::ANSWERED, false),
        SearchKey::Deleted => Query::Flag(SystemFlags::DELETED, true),
        SearchKey::Undeleted => Query::Flag(SystemFlags::DELETED, false),
        SearchKey::Draft => Query::Flag(SystemFlags::DRAFT, true),
        SearchKey::Undraft => Query::Flag(SystemFlags::DRAFT, false),
        SearchKey::Flagged => Query::Flag(SystemFlags::FLAGGED, true),
        SearchKey::Unflagged => Query::Flag(SystemFlags::FLAGGED, false),
        SearchKey::Seen => Query::Flag(SystemFlags::SEEN, true),
        SearchKey::Unseen => Query::Flag(SystemFlags::SEEN, false),
        SearchKey::Keyword(atom) => Query::Keyword(atom.inner().to_owned(), true),
        SearchKey::Unkeyword(atom) => Query::Keyword(atom.inner().to_owned(), false),
        SearchKey::Recent => Query::Recent(true),
        SearchKey::Old => Query::Recent(false),
        SearchKey::New => Query::New,
        SearchKey::Before(day) => Query::Arrival(Ordering::Less, date(day)),
        SearchKey::On(day) => Query::Arrival(Ordering::Equal, date(day)),
        SearchKey::Since(day) => Query::Arrival(Ordering::Greater, date(day)),
        SearchKey::SentBefore(day) => Query::Sent(Ordering::Less, date(day)),
        SearchKey::SentOn(day) => Query::Sent(Ordering::Equal, date(day)),
        SearchKey::SentSince(day) => Query::Sent(Ordering::Greater, date(day)),
        SearchKey::Larger(size) => Query::Size(Ordering::Greater, *size),
        SearchKey::Smaller(size) => Query::Size(Ordering::Less, *size),
        SearchKey::Header(name, value) => Query::Header(name.as_ref().to_vec(), text(value)),
        SearchKey::From(value) => header("From", value),
        SearchKey::To(value) => header("To", value),
        SearchKey::Cc(value) => header("Cc", value),
        SearchKey::Bcc(value) => header("Bcc", value),
        SearchKey::Subject(value) => header("Subject", value),
        SearchKey::Body(value) => Query::Body(text(value)),
        SearchKey::Text(value) => Query::Text(text(value)),
        #[allow(unreachable_patterns)]
        _ => Query::Not(Box::new(Query::All)),
    }
}

impl Query {
    fn matches(&self, candidate: &Candidate, view: &MessageView<'_>) -> bool {
        match self {
            Self::All => true,
            Self::Members(ranges) => {
                let after = ranges.partition_point(|range| range.end <= candidate.index);
                ranges
                    .get(after)
                    .is_some_and(|range| range.contains(&candidate.index))
            }
            Self::Flag(flag, set) => candidate.flags.system.contains(*flag) == *set,
            Self::Keyword(keyword, set) => {
                let present = candidate
                    .flags
                    .keywords
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(keyword));
                present == *set
            }
            Self::Recent(set) => candidate.recent == *set,
            Self::New => candidate.recent && !candidate.flags.system.contains(SystemFlags::SEEN),
            Self::Arrival(ordering, day) => compare_day(
                candidate.message.internal_date.date_naive(),
                *day,
                *ordering,
            ),
            Self::Sent(ordering, day) => {
                sent_date(view).is_some_and(|sent| compare_day(sent, *day, *ordering))
            }
            Self::Size(ordering, size) => {
                candidate.message.size().cmp(&(*size as usize)) == *ordering
            }
            Self::Header(name, needle) => header_contains(view, name, needle),
            Self::Body(needle) => contains(view.text(), needle),
            Self::Text(needle) => contains(view.raw(), needle),
            Self::Not(query) => !query.matches(candidate, view),
            Self::Or(a, b) => a.matches(candidate, view) || b.matches(candidate, view),
            Self::And(queries) => queries.iter().all(|query| query.matches(candidate, view)),
        }
    }
}

/// Compares dates; "greater" means "on or after", as SINCE requires.
fn compare_day(actual: NaiveDate, wanted: NaiveDate, ordering: Ordering) -> bool {
    match ordering {
        Ordering::Less => actual < wanted,
        Ordering::Equal => actual == wanted,
        Ordering::Greater => actual >= wanted,
    }
}

/// Reads the date of the Date header, in the header's own time zone.
fn sent_date(view: &MessageView<'_>) -> Option<NaiveDate> {
    let header = view
        .header_fields()
        .iter()
        .find(|header| header.name == mail_parser::HeaderName::Date)?;
    let HeaderValue::DateTime(date) = &header.value else {
        return None;
    };
    NaiveDate::from_ymd_opt(
        i32::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    )
}

/// HEADER search: some field called `name` contains `needle` (lowercase),
/// in its raw form or decoded from RFC 2047 encoded words. An empty
/// needle matches any message that has the field.
fn header_contains(view: &MessageView<'_>, name: &[u8], needle: &[u8]) -> bool {
    let mut found = false;
    for field in fields(view.header()) {
        if !field_name(field).is_some_and(|field| field.eq_ignore_ascii_case(name)) {
            continue;
        }
        found = true;
        if needle.is_empty() || contains(&field_value(field), needle) {
            return true;
        }
    }
    if !found || needle.is_empty() {
        return false;
    }
    decoded_values(view, name)
        .iter()
        .any(|value| contains(value.as_bytes(), needle))
}

/// Collects the decoded values of the fields called `name`, for matching
/// encoded words. Uses the view's header parse, so it runs once per message.
fn decoded_values(view: &MessageView<'_>, name: &[u8]) -> Vec<String> {
    view.header_fields()
        .iter()
        .filter(|header| header.name.as_str().as_bytes().eq_ignore_ascii_case(name))
        .flat_map(|header| match &header.value {
            HeaderValue::Text(text) => vec![text.to_string()],
            HeaderValue::TextList(list) => list.iter().map(|text| text.to_string()).collect(),
            HeaderValue::Address(address) => address
                .iter()
                .map(|addr| {
                    format!(
                        "{} <{}>",
                        addr.name.as_deref().unwrap_or_default(),
                        addr.address.as_deref().unwrap_or_default()
                    )
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// ASCII case-insensitive substring search; `needle` is lowercase.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_intersect() {
        assert_eq!(intersect(&[0..10], &[3..5, 8..12]), vec![3..5, 8..10]);
        assert_eq!(intersect(&[0..2, 4..6], &[1..5]), vec![1..2, 4..5]);
        assert!(intersect(&[0..2], &[2..4]).is_empty());
    }

    #[test]
    fn contains_ignores_ascii_case() {
        assert!(contains(b"Hello World", b"world"));
        assert!(!contains(b"Hello", b"hello!"));
        assert!(contains(b"", b""));
    }

    #[test]
    fn header_search_matches_message_id() {
        let raw = b"Message-ID: <abc@example.org>\r\nSubject: Hi\r\n\r\nbody";
        let view = MessageView::new(raw);
        assert!(header_contains(&view, b"message-id", b"<abc@example.org>"));
        assert!(!header_contains(
            &view,
            b"message-id",
            b"<other@example.org>"
        ));
        assert!(header_contains(&view, b"subject", b""));
        assert!(!header_contains(&view, b"to", b""));
    }

    #[test]
    fn header_search_decodes_encoded_words() {
        let raw = b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nbody";
        let view = MessageView::new(raw);
        assert!(header_contains(&view, b"subject", "grüße".as_bytes()));
    }

    #[test]
    fn since_includes_the_day() {
        let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
        assert!(compare_day(day, day, Ordering::Greater));
        assert!(!compare_day(day, day, Ordering::Less));
    }
}
