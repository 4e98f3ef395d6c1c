//! The decision made for each message inside a commit: duplicate,
//! correlation and tracking filter.
//!
//! [`apply_batch`] runs under the store's lock, so the check "is this
//! Message-ID already an activity?" and the insert that follows cannot
//! interleave with another mailbox's commit. It is engine code, not store
//! code: any [`RecordStore`](crate::records::RecordStore) built on
//! [`Records`] gets the same decisions.
//!
//! Order of checks for one email:
//! 1. filter `None`: not tracked;
//! 2. Message-ID already an activity: duplicate, add the owner as a party
//!    (and a queue item for a queue) if it is not one yet;
//! 3. no From address: invalid sender;
//! 4. correlate by In-Reply-To, then the tracking token in the subject, then
//!    References;
//! 5. the filter decides: all email, correlated replies only, or correlated
//!    replies and mail from known contacts.

use std::sync::Arc;

use tokio::time::Instant;

use crate::config::{MailboxId, TrackingFilter};
use crate::records::memory::NewActivity;
use crate::records::{
    ActivityId, CommitBatch, CommitReport, Created, Decision, Direction, EmailDraft, ItemAction,
    QuarantinedEmail, Reason, Records, SourceKey, StoreError,
};

/// Applies `batch` to `records`: checks the sync-state version, decides each
/// item, creates its records and applies the sync-state update. After the
/// version check nothing can fail, so the batch applies whole or not at all.
pub fn apply_batch(
    records: &mut Records,
    batch: CommitBatch,
    now: Instant,
) -> Result<CommitReport, StoreError> {
    let found = records
        .sync
        .get(&batch.mailbox)
        .map_or(0, |state| state.version);
    if found != batch.base_version {
        return Err(StoreError::Conflict {
            mailbox: batch.mailbox,
            expected: batch.base_version,
            found,
        });
    }

    let mut decisions = Vec::with_capacity(batch.items.len());
    for item in batch.items {
        let decision = match item.action {
            ItemAction::Email(draft) => {
                let context = Context {
                    fetched_by: &batch.mailbox,
                    token_prefix: &batch.token_prefix,
                    now,
                };
                decide_email(records, &context, item.key, *draft)
            }
            ItemAction::Skip {
                reason,
                message_id,
                owner,
            } => Decision {
                key: item.key,
                message_id,
                owner,
                reason,
                created: Created::Nothing,
                activity: None,
            },
            ItemAction::Quarantine { attempts, error } => {
                records.quarantined.push(QuarantinedEmail {
                    mailbox: batch.mailbox.clone(),
                    key: item.key.clone(),
                    attempts,
                    error,
                    at: now,
                });
                Decision {
                    key: item.key,
                    message_id: None,
                    owner: None,
                    reason: Reason::Quarantined,
                    created: Created::Nothing,
                    activity: None,
                }
            }
        };
        decisions.push(decision);
    }

    let state = records.sync.entry(batch.mailbox).or_default();
    state.apply(batch.update);
    Ok(CommitReport {
        decisions,
        version: state.version,
    })
}

struct Context<'a> {
    fetched_by: &'a MailboxId,
    token_prefix: &'a str,
    now: Instant,
}

fn decide_email(
    records: &mut Records,
    context: &Context<'_>,
    key: SourceKey,
    draft: EmailDraft,
) -> Decision {
    let mut decision = Decision {
        key,
        message_id: Some(draft.message_id.clone()),
        owner: Some(draft.owner.clone()),
        reason: Reason::NotTracked,
        created: Created::Nothing,
        activity: None,
    };
    if draft.filter == TrackingFilter::None {
        return decision;
    }

    if let Some(existing) = records.by_message_id.get(&draft.message_id).copied() {
        let added = records.add_party(
            existing,
            &draft.owner,
            &draft.mailbox,
            context.fetched_by,
            context.now,
        );
        decision.reason = Reason::Duplicate;
        decision.created = if added {
            Created::Party
        } else {
            Created::Nothing
        };
        decision.activity = Some(existing);
        return decision;
    }

    if draft.from.is_none() {
        decision.reason = Reason::InvalidSender;
        return decision;
    }

    let regarding = correlate(records, &draft);
    let reason = match (draft.filter, regarding) {
        (_, Some(_)) => Reason::CorrelationMatch,
        (TrackingFilter::All, None) => Reason::AcceptAll,
        (TrackingFilter::FromKnownContacts, None) if draft.sender_is_contact => Reason::SenderMatch,
        (TrackingFilter::FromKnownContacts, None) => Reason::InvalidSender,
        (TrackingFilter::ResponsesToTracked | TrackingFilter::None, None) => {
            Reason::NoCorrelationMatch
        }
    };
    decision.reason = reason;
    if matches!(reason, Reason::InvalidSender | Reason::NoCorrelationMatch) {
        return decision;
    }

    let new = NewActivity {
        message_id: draft.message_id,
        subject: draft.subject,
        from: draft.from,
        direction: Direction::Incoming,
        regarding,
    };
    let activity = records.insert_activity(new, context.token_prefix, context.now);
    records.add_party(
        activity,
        &draft.owner,
        &draft.mailbox,
        context.fetched_by,
        context.now,
    );
    decision.created = Created::Activity;
    decision.activity = Some(activity);
    decision
}

/// Finds the tracked activity a message replies to: by In-Reply-To, then by
/// tracking token, then by the newest References entry that is tracked.
fn correlate(records: &Records, draft: &EmailDraft) -> Option<ActivityId> {
    let lookup = |id: &str| records.by_message_id.get(id).copied();
    if let Some(found) = draft.in_reply_to.as_deref().and_then(lookup) {
        return Some(found);
    }
    if let Some(found) = draft
        .tracking_token
        .as_deref()
        .and_then(|token| records.by_token.get(token).copied())
    {
        return Some(found);
    }
    draft.references.iter().rev().find_map(|id| lookup(id))
}

/// Derives a Message-ID for a message that has none from a hash of its
/// bytes, so the same message fetched twice gets the same id and is
/// deduplicated. The trace fields that servers prepend on delivery
/// (`Received`, `Return-Path`, `Delivered-To`, `X-Original-To`) differ per
/// recipient, so they are left out: the same message delivered to a user
/// and to a queue gets one id.
pub fn synthetic_message_id(raw: &[u8]) -> Arc<str> {
    let raw = without_trace_fields(raw);
    // FNV-1a, 64 bit: stable across builds and platforms, unlike std's
    // default hasher, so stores keep the same ids between runs.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in raw {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Arc::from(format!("{hash:016x}.{}@no-message-id.invalid", raw.len()))
}

/// `raw` after the trace fields at its start, with their folded lines.
fn without_trace_fields(mut raw: &[u8]) -> &[u8] {
    const TRACE: [&[u8]; 4] = [
        b"received:",
        b"return-path:",
        b"delivered-to:",
        b"x-original-to:",
    ];
    loop {
        let is_trace = TRACE.iter().any(|name| {
            raw.get(..name.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(name))
        });
        if !is_trace {
            return raw;
        }
        // Skip the field's first line and every folded line after it.
        loop {
            let Some(end) = raw.iter().position(|&byte| byte == b'\n') else {
                return &[];
            };
            raw = &raw[end + 1..];
            if !matches!(raw.first(), Some(b' ' | b'\t')) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Owner;

    #[test]
    fn synthetic_id_ignores_trace_fields() {
        let body = b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n";
        let mut for_user =
            b"Received: from relay\r\n\tfor <user@example.com>; Mon, 1 Jan 2024\r\n".to_vec();
        for_user.extend_from_slice(body);
        let mut for_queue =
            b"Return-Path: <a@example.org>\r\nReceived: by mx for <queue@example.com>\r\n".to_vec();
        for_queue.extend_from_slice(body);
        assert_eq!(
            synthetic_message_id(&for_user),
            synthetic_message_id(&for_queue)
        );
        assert_eq!(synthetic_message_id(&for_user), synthetic_message_id(body));
        assert_ne!(
            synthetic_message_id(body),
            synthetic_message_id(b"Subject: y\r\n\r\n")
        );
    }
    use crate::records::{BatchItem, MemoryStore, SyncUpdate};

    const PREFIX: &str = "CRM:";

    fn draft(message_id: &str, owner: Owner, mailbox: &str, filter: TrackingFilter) -> EmailDraft {
        EmailDraft {
            message_id: Arc::from(message_id),
            subject: "Quote".into(),
            from: Some("carol@example.org".into()),
            in_reply_to: None,
            tracking_token: None,
            references: Vec::new(),
            owner,
            mailbox: MailboxId::new(mailbox),
            filter,
            sender_is_contact: false,
        }
    }

    fn commit(store: &MemoryStore, mailbox: &str, key: u32, draft: EmailDraft) -> Decision {
        let mailbox = MailboxId::new(mailbox);
        let version = store
            .records()
            .sync
            .get(&mailbox)
            .map_or(0, |state| state.version);
        let batch = CommitBatch {
            mailbox,
            base_version: version,
            items: vec![BatchItem {
                key: SourceKey::Uid(key),
                action: ItemAction::Email(Box::new(draft)),
            }],
            update: SyncUpdate::default(),
            token_prefix: Arc::from(PREFIX),
        };
        let mut report = store.commit_now(batch).expect("commit");
        report.decisions.remove(0)
    }

    #[tokio::test]
    async fn accept_all_creates_activity_and_party() {
        let store = MemoryStore::new();
        let alice = Owner::user("alice");
        let decision = commit(
            &store,
            "alice",
            1,
            draft("m1", alice.clone(), "alice", TrackingFilter::All),
        );
        assert_eq!(decision.reason, Reason::AcceptAll);
        assert_eq!(decision.created, Created::Activity);
        let snapshot = store.snapshot();
        assert_eq!(snapshot.activities.len(), 1);
        assert_eq!(snapshot.parties.len(), 1);
        assert_eq!(&*snapshot.activities[0].tracking_token, "CRM:0000001");
    }

    #[tokio::test]
    async fn responses_filter_rejects_uncorrelated() {
        let store = MemoryStore::new();
        let decision = commit(
            &store,
            "alice",
            1,
            draft(
                "m1",
                Owner::user("alice"),
                "alice",
                TrackingFilter::ResponsesToTracked,
            ),
        );
        assert_eq!(decision.reason, Reason::NoCorrelationMatch);
        assert_eq!(decision.created, Created::Nothing);
        assert!(store.snapshot().activities.is_empty());
    }

    #[tokio::test]
    async fn correlates_by_in_reply_to() {
        let store = MemoryStore::new();
        store.track_outgoing("sent-1", "Offer", PREFIX);
        let mut reply = draft(
            "r1",
            Owner::user("alice"),
            "alice",
            TrackingFilter::ResponsesToTracked,
        );
        reply.in_reply_to = Some("sent-1".into());
        let decision = commit(&store, "alice", 1, reply);
        assert_eq!(decision.reason, Reason::CorrelationMatch);
        assert_eq!(decision.created, Created::Activity);
        let snapshot = store.snapshot();
        assert_eq!(snapshot.activities[1].regarding, Some(0));
    }

    #[tokio::test]
    async fn correlates_by_tracking_token() {
        let store = MemoryStore::new();
        let token = store.track_outgoing("sent-1", "Offer", PREFIX);
        let mut reply = draft(
            "r1",
            Owner::user("alice"),
            "alice",
            TrackingFilter::ResponsesToTracked,
        );
        reply.tracking_token = Some(token);
        let decision = commit(&store, "alice", 1, reply);
        assert_eq!(decision.reason, Reason::CorrelationMatch);
        assert_eq!(store.snapshot().activities[1].regarding, Some(0));
    }

    #[tokio::test]
    async fn correlates_by_references() {
        let store = MemoryStore::new();
        store.track_outgoing("sent-1", "Offer", PREFIX);
        let mut reply = draft(
            "r1",
            Owner::user("alice"),
            "alice",
            TrackingFilter::ResponsesToTracked,
        );
        reply.in_reply_to = Some("unknown".into());
        reply.references = vec!["older".into(), "sent-1".into()];
        let decision = commit(&store, "alice", 1, reply);
        assert_eq!(decision.reason, Reason::CorrelationMatch);
        assert_eq!(store.snapshot().activities[1].regarding, Some(0));
    }

    #[tokio::test]
    async fn in_reply_to_wins_over_token() {
        let store = MemoryStore::new();
        store.track_outgoing("sent-1", "Offer", PREFIX);
        let second = store.track_outgoing("sent-2", "Other", PREFIX);
        let mut reply = draft(
            "r1",
            Owner::user("alice"),
            "alice",
            TrackingFilter::ResponsesToTracked,
        );
        reply.in_reply_to = Some("sent-1".into());
        reply.tracking_token = Some(second);
        commit(&store, "alice", 1, reply);
        assert_eq!(store.snapshot().activities[2].regarding, Some(0));
    }

    #[tokio::test]
    async fn dedup_across_user_and_queue() {
        let store = MemoryStore::new();
        let user = commit(
            &store,
            "alice",
            1,
            draft("m1", Owner::user("alice"), "alice", TrackingFilter::All),
        );
        let queue = commit(
            &store,
            "support",
            7,
            draft(
                "m1",
                Owner::queue("support"),
                "support",
                TrackingFilter::All,
            ),
        );
        let again = commit(
            &store,
            "support",
            8,
            draft(
                "m1",
                Owner::queue("support"),
                "support",
                TrackingFilter::All,
            ),
        );
        assert_eq!(user.created, Created::Activity);
        assert_eq!(queue.reason, Reason::Duplicate);
        assert_eq!(queue.created, Created::Party);
        assert_eq!(again.reason, Reason::Duplicate);
        assert_eq!(again.created, Created::Nothing);
        let snapshot = store.snapshot();
        assert_eq!(snapshot.activities.len(), 1);
        assert_eq!(snapshot.parties.len(), 2);
        assert_eq!(snapshot.queue_items.len(), 1);
        assert_eq!(&*snapshot.queue_items[0].queue, "support");
        assert!(snapshot.party_counts().values().all(|&count| count == 1));
    }

    #[tokio::test]
    async fn known_contacts_filter_checks_sender() {
        let store = MemoryStore::new();
        let mut known = draft(
            "m1",
            Owner::user("alice"),
            "alice",
            TrackingFilter::FromKnownContacts,
        );
        known.sender_is_contact = true;
        let stranger = draft(
            "m2",
            Owner::user("alice"),
            "alice",
            TrackingFilter::FromKnownContacts,
        );
        assert_eq!(
            commit(&store, "alice", 1, known).reason,
            Reason::SenderMatch
        );
        assert_eq!(
            commit(&store, "alice", 2, stranger).reason,
            Reason::InvalidSender
        );
    }

    #[tokio::test]
    async fn missing_sender_is_invalid() {
        let store = MemoryStore::new();
        let mut anonymous = draft("m1", Owner::user("alice"), "alice", TrackingFilter::All);
        anonymous.from = None;
        assert_eq!(
            commit(&store, "alice", 1, anonymous).reason,
            Reason::InvalidSender
        );
    }

    #[tokio::test]
    async fn filter_none_tracks_nothing() {
        let store = MemoryStore::new();
        let decision = commit(
            &store,
            "alice",
            1,
            draft("m1", Owner::user("alice"), "alice", TrackingFilter::None),
        );
        assert_eq!(decision.reason, Reason::NotTracked);
        assert!(store.snapshot().activities.is_empty());
    }

    #[tokio::test]
    async fn stale_version_applies_nothing() {
        let store = MemoryStore::new();
        let batch = CommitBatch {
            mailbox: MailboxId::new("alice"),
            base_version: 3,
            items: vec![BatchItem {
                key: SourceKey::Uid(1),
                action: ItemAction::Email(Box::new(draft(
                    "m1",
                    Owner::user("alice"),
                    "alice",
                    TrackingFilter::All,
                ))),
            }],
            update: SyncUpdate::default(),
            token_prefix: Arc::from(PREFIX),
        };
        let error = store.commit_now(batch).unwrap_err();
        assert!(matches!(
            error,
            StoreError::Conflict {
                expected: 3,
                found: 0,
                ..
            }
        ));
        assert!(store.snapshot().activities.is_empty());
        assert!(store.snapshot().sync_states.is_empty());
    }

    #[test]
    fn synthetic_id_depends_on_bytes() {
        assert_eq!(synthetic_message_id(b"abc"), synthetic_message_id(b"abc"));
        assert_ne!(synthetic_message_id(b"abc"), synthetic_message_id(b"abd"));
    }
}
