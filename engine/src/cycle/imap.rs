//! The IMAP cycle.
//!
//! The watermark is (UIDVALIDITY, last processed UID). When the server's
//! UIDVALIDITY differs from the stored one, every UID is void: the cycle
//! starts again from UID 1 and Message-ID deduplication keeps the resync
//! from creating duplicate records.

use std::collections::BTreeMap;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{BatchBuilder, CycleContext, CycleFailure, CycleStats};
use crate::error::CycleError;
use crate::events::{CycleOutcome, EventSink};
use crate::imap::session::{Fetched, ImapSession, Listed};
use crate::records::{ImapCursor, RecordStore, SourceKey, SyncState, SyncUpdate};

/// Largest IMAP response accepted besides the message itself: FETCH
/// wrapping, flags and dates.
const RESPONSE_OVERHEAD: usize = 64 * 1024;

/// Runs one IMAP cycle over `stream`.
pub(crate) async fn run<St, R, E>(
    context: &CycleContext<'_, R, E>,
    stream: St,
) -> Result<CycleStats, CycleFailure>
where
    St: AsyncRead + AsyncWrite + Unpin,
    R: RecordStore + ?Sized,
    E: EventSink + ?Sized,
{
    let mut stats = CycleStats::new();
    match run_inner(context, stream, &mut stats).await {
        Ok(()) => Ok(stats),
        Err(error) => Err(CycleFailure { error, stats }),
    }
}

async fn run_inner<St, R, E>(
    context: &CycleContext<'_, R, E>,
    stream: St,
    stats: &mut CycleStats,
) -> Result<(), CycleError>
where
    St: AsyncRead + AsyncWrite + Unpin,
    R: RecordStore + ?Sized,
    E: EventSink + ?Sized,
{
    let settings = context.settings;
    let mailbox = context.mailbox;
    let max_response = settings.max_message_size.saturating_add(RESPONSE_OVERHEAD);
    let mut session = ImapSession::connect(stream, settings.command_timeout, max_response).await?;
    session
        .login(&context.credentials.username, &context.credentials.password)
        .await?;
    if mailbox.delete_after_processing && !session.has_uidplus() {
        session.capability().await?;
    }
    let selected = session.select_inbox().await?;
    let state = context.store.sync_state(&mailbox.id).await?;

    // A changed UIDVALIDITY voids the stored UIDs and failure counters.
    let mut cursor = ImapCursor {
        uid_validity: selected.uid_validity,
        last_uid: 0,
    };
    let mut first_update = SyncUpdate::default();
    match state.imap {
        Some(stored) if stored.uid_validity == selected.uid_validity => cursor = stored,
        Some(stored) => {
            tracing::warn!(
                mailbox = %mailbox.id,
                protocol = "imap",
                old = stored.uid_validity,
                new = selected.uid_validity,
                "UIDVALIDITY changed; resyncing the whole INBOX"
            );
            first_update.imap = Some(cursor);
            first_update.reset_failures = true;
        }
        None => first_update.imap = Some(cursor),
    }
    let state = if first_update.reset_failures {
        SyncState {
            failures: BTreeMap::new(),
            ..state
        }
    } else {
        state
    };

    // With delete after processing, one listing from UID 1 also finds
    // messages committed by an earlier cycle that died before deleting them.
    let listed = if selected.exists == 0 {
        Vec::new()
    } else if mailbox.delete_after_processing {
        session.list_after(0).await?
    } else {
        session.list_after(cursor.last_uid).await?
    };
    let (leftover, new): (Vec<Listed>, Vec<Listed>) = listed
        .into_iter()
        .partition(|entry| entry.uid <= cursor.last_uid);
    if !leftover.is_empty() {
        let uids: Vec<u32> = leftover.iter().map(|entry| entry.uid).collect();
        session.delete(&uids).await?;
    }

    let limit = settings.max_messages_per_cycle;
    if new.len() > limit {
        stats.outcome = CycleOutcome::LimitReached;
    }
    let mut version = state.version;
    let mut pending = Some(first_update).filter(|update| !update.is_empty());
    for chunk in new
        .get(..limit.min(new.len()))
        .unwrap_or_default()
        .chunks(settings.batch_size)
    {
        let small: Vec<u32> = chunk
            .iter()
            .filter(|entry| !too_large(entry, settings.max_message_size))
            .map(|entry| entry.uid)
            .collect();
        let fetched = session.fetch(&small).await?;
        stats.fetched += fetched.len();

        let mut builder = BatchBuilder::new(context);
        let handled = build(&mut builder, &state, chunk, &fetched);
        if let Some(&last) = handled.last() {
            cursor.last_uid = last;
        }
        let mut update = pending.take().unwrap_or_default();
        update.imap = Some(cursor);
        let blocked = builder.blocked;
        let (next_version, decided) = builder.commit(version, update).await?;
        version = next_version;
        stats.processed += decided;

        if mailbox.delete_after_processing && !handled.is_empty() {
            session.delete(&handled).await?;
        }
        if blocked {
            stats.outcome = CycleOutcome::Blocked;
            break;
        }
    }

    // A new or reset watermark is stored even when there was no mail.
    if let Some(update) = pending {
        let builder = BatchBuilder::new(context);
        builder.commit(version, update).await?;
    }
    session.logout().await;
    Ok(())
}

fn too_large(entry: &Listed, max: usize) -> bool {
    usize::try_from(entry.size).map_or(true, |size| size > max)
}

/// Adds the chunk's messages to `builder` in UID order, stopping at one that
/// blocks; returns the UIDs handled (decided, skipped, quarantined, or
/// expunged by someone else meanwhile).
fn build<R, E>(
    builder: &mut BatchBuilder<'_, R, E>,
    state: &SyncState,
    chunk: &[Listed],
    fetched: &[Fetched],
) -> Vec<u32>
where
    R: RecordStore + ?Sized,
    E: EventSink + ?Sized,
{
    let max = builder.context.settings.max_message_size;
    let mut handled = Vec::with_capacity(chunk.len());
    let mut bodies = fetched.iter().peekable();
    for entry in chunk {
        let key = SourceKey::Uid(entry.uid);
        if too_large(entry, max) {
            builder.push_too_large(key, u64::from(entry.size));
            handled.push(entry.uid);
            continue;
        }
        // Both lists are in UID order; skip bodies the listing did not ask for.
        while bodies.next_if(|message| message.uid < entry.uid).is_some() {}
        let Some(message) = bodies.next_if(|message| message.uid == entry.uid) else {
            tracing::debug!(
                uid = entry.uid,
                "listed message missing from FETCH; expunged meanwhile"
            );
            handled.push(entry.uid);
            continue;
        };
        if !builder.push(state, key, &message.raw, message.internal_date) {
            break;
        }
        handled.push(entry.uid);
    }
    handled
}
