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
use crate::imap::session::{ImapSession, Listed};
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
    let state = context.store.sync_state(&mailbox.id).await?;

    // Most polls find nothing new. STATUS tells that for less than a SELECT
    // costs the server: an empty INBOX when messages are deleted after
    // processing, or an unchanged UIDVALIDITY with UIDNEXT just past the
    // watermark otherwise (every UID is below UIDNEXT).
    let status = session.status_inbox().await?;
    let nothing_new = if mailbox.delete_after_processing {
        status.messages == Some(0)
    } else {
        state.imap.is_some_and(|cursor| {
            status.uid_validity == Some(cursor.uid_validity)
                && status
                    .uid_next
                    .is_some_and(|next| next <= cursor.last_uid.saturating_add(1))
        })
    };
    if nothing_new {
        session.logout().await;
        return Ok(());
    }
    let selected = session.select_inbox().await?;

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
    // Every UID is below UIDNEXT, so a UIDNEXT just past the watermark means
    // nothing new, and the listing round trip can be skipped.
    let nothing_new = selected
        .uid_next
        .is_some_and(|next| next <= cursor.last_uid.saturating_add(1));
    let listed = if selected.exists == 0 || (nothing_new && !mailbox.delete_after_processing) {
        Vec::new()
    } else if mailbox.delete_after_processing {
        session.list_after(0, settings.max_message_size).await?
    } else {
        session
            .list_after(cursor.last_uid, settings.max_message_size)
            .await?
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
    let new = new.get(..limit.min(new.len())).unwrap_or_default();
    let first_update = Some(first_update).filter(|update| !update.is_empty());
    let mut sync = Sync {
        version: state.version,
        cursor,
        pending: first_update,
    };
    let handled = fetch_and_commit(context, &mut session, &state, new, &mut sync, stats).await?;

    // A new or reset watermark is stored even when there was no mail.
    if let Some(update) = sync.pending.take() {
        BatchBuilder::new(context)
            .commit(sync.version, update)
            .await?;
    }
    if stats.outcome == CycleOutcome::Blocked {
        // The rest of the FETCH response is still arriving; dropping the
        // connection is cheaper than reading it. Deletions wait for the
        // next cycle, which finds the handled messages below the watermark.
        return Ok(());
    }
    if mailbox.delete_after_processing && !handled.is_empty() {
        session.delete(&handled).await?;
    }
    session.logout().await;
    Ok(())
}

/// The watermark and sync state threaded through a cycle's commits.
struct Sync {
    version: u64,
    cursor: ImapCursor,
    /// An update not committed yet (a new or reset watermark).
    pending: Option<SyncUpdate>,
}

fn too_large(entry: &Listed, max: usize) -> bool {
    usize::try_from(entry.size).map_or(true, |size| size > max)
}

/// Downloads `new` with one UID FETCH and commits every `batch_size`
/// messages while the rest is still arriving, so the server's work overlaps
/// processing. Stops at a message that blocks. Returns the UIDs handled
/// (decided, skipped, quarantined, or expunged by someone else meanwhile).
///
/// Servers send FETCH responses in UID order in practice, but RFC 3501 does
/// not require it, so messages are processed in arrival order and the
/// watermark only passes a UID once every listed UID up to it is handled.
async fn fetch_and_commit<St, R, E>(
    context: &CycleContext<'_, R, E>,
    session: &mut ImapSession<St>,
    state: &SyncState,
    new: &[Listed],
    sync: &mut Sync,
    stats: &mut CycleStats,
) -> Result<Vec<u32>, CycleError>
where
    St: AsyncRead + AsyncWrite + Unpin,
    R: RecordStore + ?Sized,
    E: EventSink + ?Sized,
{
    let settings = context.settings;
    let max = settings.max_message_size;
    let mut progress = Progress::new(new, sync.cursor.last_uid);
    let mut builder = BatchBuilder::new(context);
    let mut in_batch = 0;

    // Messages too large to download are decided in UID order among the
    // others: each before the first downloaded message with a higher UID.
    let mut next_large = 0;
    let mut decide_large =
        |below: usize, builder: &mut BatchBuilder<'_, R, E>, progress: &mut Progress<'_>| {
            let mut decided = 0;
            while next_large < below {
                if let Some(entry) = new.get(next_large).filter(|entry| too_large(entry, max)) {
                    builder.push_too_large(SourceKey::Uid(entry.uid), u64::from(entry.size));
                    progress.done(next_large);
                    decided += 1;
                }
                next_large += 1;
            }
            decided
        };

    let small: Vec<u32> = new
        .iter()
        .filter(|entry| !too_large(entry, max))
        .map(|entry| entry.uid)
        .collect();
    let mailbox = context.mailbox;
    let internal_date = context
        .directory
        .uses_received_time(&mailbox.id, mailbox.is_forward);
    if let Some(mut pending) = session.start_fetch(&small, internal_date).await? {
        while let Some(message) = session.next_fetched(&mut pending).await? {
            stats.fetched += 1;
            // Skip unsolicited FETCH data and repeats.
            let Some(index) = progress.awaited(message.uid) else {
                continue;
            };
            in_batch += decide_large(index, &mut builder, &mut progress);
            let key = SourceKey::Uid(message.uid);
            if !builder.push(state, key, &message.raw, message.internal_date) {
                stats.outcome = CycleOutcome::Blocked;
                break;
            }
            progress.done(index);
            in_batch += 1;
            if in_batch >= settings.batch_size {
                let full = std::mem::replace(&mut builder, BatchBuilder::new(context));
                sync.cursor.last_uid = progress.watermark();
                commit(full, sync, stats).await?;
                in_batch = 0;
            }
        }
    }

    // Listed messages the server did not send were expunged meanwhile.
    if stats.outcome != CycleOutcome::Blocked {
        in_batch += decide_large(new.len(), &mut builder, &mut progress);
        for uid in progress.finish() {
            tracing::debug!(uid, "listed message missing from FETCH; expunged meanwhile");
        }
    }
    sync.cursor.last_uid = progress.watermark();
    if in_batch > 0 || !builder.is_empty() || sync.pending.is_some() {
        commit(builder, sync, stats).await?;
    }
    Ok(progress.handled())
}

/// Which listed messages are handled, and how far the watermark may move.
struct Progress<'a> {
    entries: &'a [Listed],
    done: Vec<bool>,
    /// Entries before this index are all handled.
    frontier: usize,
    start: u32,
}

impl<'a> Progress<'a> {
    fn new(entries: &'a [Listed], start: u32) -> Self {
        Self {
            entries,
            done: vec![false; entries.len()],
            frontier: 0,
            start,
        }
    }

    /// Returns the index of the listed, not yet handled message `uid`.
    fn awaited(&self, uid: u32) -> Option<usize> {
        let index = self
            .entries
            .binary_search_by_key(&uid, |entry| entry.uid)
            .ok()?;
        (!self.done.get(index).copied().unwrap_or(true)).then_some(index)
    }

    fn done(&mut self, index: usize) {
        if let Some(done) = self.done.get_mut(index) {
            *done = true;
        }
        while self.done.get(self.frontier).copied().unwrap_or(false) {
            self.frontier += 1;
        }
    }

    /// Marks every remaining entry handled; returns their UIDs.
    fn finish(&mut self) -> Vec<u32> {
        let missing: Vec<usize> = (0..self.entries.len())
            .filter(|&i| !self.done.get(i).copied().unwrap_or(true))
            .collect();
        for &index in &missing {
            self.done(index);
        }
        missing
            .into_iter()
            .filter_map(|index| self.entries.get(index).map(|entry| entry.uid))
            .collect()
    }

    /// Returns the highest UID up to which every listed message is handled.
    fn watermark(&self) -> u32 {
        self.frontier
            .checked_sub(1)
            .and_then(|last| self.entries.get(last))
            .map_or(self.start, |entry| entry.uid)
    }

    /// Returns the UIDs of every handled message.
    fn handled(&self) -> Vec<u32> {
        self.entries
            .iter()
            .zip(&self.done)
            .filter(|(_, done)| **done)
            .map(|(entry, _)| entry.uid)
            .collect()
    }
}

async fn commit<R, E>(
    builder: BatchBuilder<'_, R, E>,
    sync: &mut Sync,
    stats: &mut CycleStats,
) -> Result<(), CycleError>
where
    R: RecordStore + ?Sized,
    E: EventSink + ?Sized,
{
    let mut update = sync.pending.take().unwrap_or_default();
    update.imap = Some(sync.cursor);
    let (version, decided) = builder.commit(sync.version, update).await?;
    sync.version = version;
    stats.processed += decided;
    Ok(())
}
