//! The POP3 cycle.
//!
//! POP3 has no UIDVALIDITY and no order, so the sync state is the set of
//! processed UIDLs, pruned to the UIDLs still in the maildrop. Deletions
//! (DELE) take effect only at QUIT, so a session cut short deletes nothing.
//! The next cycle finds those messages in the processed set and deletes them
//! without processing them again. A cycle that fails on an error response,
//! such as a throttled command, still sends QUIT so that the deletions the
//! server accepted take effect.

use std::collections::BTreeSet;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{BatchBuilder, CycleContext, CycleFailure, CycleStats};
use crate::error::{CycleError, SessionError};
use crate::events::{CycleOutcome, EventSink};
use crate::pop3::session::{Listed, Pop3Session};
use crate::records::{RecordStore, SourceKey, SyncState, SyncUpdate};

/// Bytes a UIDL or LIST listing may take; at about 30 bytes a line this
/// allows over a million messages.
const MAX_LISTING: usize = 64 * 1024 * 1024;

/// Runs one POP3 cycle over `stream`.
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
    let mut session = Pop3Session::connect(stream, settings.command_timeout).await?;
    if let Err(error) = sync_session(context, &mut session, stats).await {
        session.close_after_error(settings.max_message_size).await;
        return Err(error);
    }
    // Records are committed, so a failed QUIT only postpones deletions,
    // which the next cycle redoes.
    if let Err(error) = session.quit().await {
        tracing::warn!(mailbox = %context.mailbox.id, protocol = "pop3", %error, "QUIT failed");
        if context.mailbox.delete_after_processing {
            return Err(error.into());
        }
    }
    Ok(())
}

/// Logs in, lists, downloads and processes new mail, and marks processed
/// mail for deletion. The caller ends the session.
async fn sync_session<St, R, E>(
    context: &CycleContext<'_, R, E>,
    session: &mut Pop3Session<St>,
    stats: &mut CycleStats,
) -> Result<(), CycleError>
where
    St: AsyncRead + AsyncWrite + Unpin,
    R: RecordStore + ?Sized,
    E: EventSink + ?Sized,
{
    let settings = context.settings;
    let mailbox = context.mailbox;
    let delete = mailbox.delete_after_processing;
    session
        .login(&context.credentials.username, &context.credentials.password)
        .await?;
    let pipelining = session.pipelining().await?;
    let listed = session.list(MAX_LISTING).await?;
    let state = context.store.sync_state(&mailbox.id).await?;

    // Forget UIDLs that left the maildrop, so the set never outgrows it.
    let present: BTreeSet<&str> = listed.iter().map(|entry| &*entry.uidl).collect();
    let mut first_update = SyncUpdate::default();
    if state
        .pop3_seen
        .iter()
        .any(|uidl| !present.contains(&**uidl))
    {
        let retain = state
            .pop3_seen
            .iter()
            .filter(|uidl| present.contains(&***uidl))
            .cloned()
            .collect();
        first_update.pop3_retain = Some(retain);
    }

    let (leftover, new): (Vec<&Listed>, Vec<&Listed>) = listed
        .iter()
        .partition(|entry| state.pop3_seen.contains(&entry.uidl));
    if delete {
        for entry in &leftover {
            session.dele(entry.number).await?;
        }
    }

    let limit = settings.max_messages_per_cycle;
    if new.len() > limit {
        stats.outcome = CycleOutcome::LimitReached;
    }
    let new = new.get(..limit.min(new.len())).unwrap_or_default();
    let mut sync = Sync {
        version: state.version,
        pending: Some(first_update).filter(|update| !update.is_empty()),
    };
    let mut retrieval = Retrieval {
        pipelining,
        window: settings.batch_size,
        sent: 0,
        received: 0,
    };
    let result = retrieve_and_commit(
        context,
        session,
        &state,
        new,
        &mut retrieval,
        &mut sync,
        stats,
    )
    .await;
    let handled = result?;

    if let Some(update) = sync.pending.take() {
        BatchBuilder::new(context)
            .commit(sync.version, update)
            .await?;
    }
    // Responses to RETRs sent past a blocking message are read and dropped.
    while retrieval.received < retrieval.sent {
        session.read_retr(settings.max_message_size).await?;
        retrieval.received += 1;
    }
    if delete {
        let numbers: Vec<u32> = handled.iter().map(|entry| entry.number).collect();
        session.dele_all(&numbers, pipelining).await?;
    }
    Ok(())
}

/// The sync-state version and an update not committed yet.
struct Sync {
    version: u64,
    pending: Option<SyncUpdate>,
}

/// RETRs in flight. With PIPELINING up to `window` RETRs are outstanding,
/// so the server works on the next messages while the engine processes
/// the current one.
struct Retrieval {
    pipelining: bool,
    window: usize,
    /// RETRs sent, counting the messages that fit the size limit.
    sent: usize,
    /// RETR responses read.
    received: usize,
}

/// Downloads `new` and commits every `batch_size` messages; stops at a
/// message that blocks. Returns the messages handled. When the session
/// fails, what was processed is committed before the error is returned, so
/// a retry does not download it again.
async fn retrieve_and_commit<'l, St, R, E>(
    context: &CycleContext<'_, R, E>,
    session: &mut Pop3Session<St>,
    state: &SyncState,
    new: &[&'l Listed],
    retrieval: &mut Retrieval,
    sync: &mut Sync,
    stats: &mut CycleStats,
) -> Result<Vec<&'l Listed>, CycleError>
where
    St: AsyncRead + AsyncWrite + Unpin,
    R: RecordStore + ?Sized,
    E: EventSink + ?Sized,
{
    let settings = context.settings;
    let fits = |entry: &Listed| {
        usize::try_from(entry.size).is_ok_and(|size| size <= settings.max_message_size)
    };
    let fitting: Vec<u32> = new
        .iter()
        .filter(|entry| fits(entry))
        .map(|entry| entry.number)
        .collect();
    let mut handled = Vec::with_capacity(new.len());
    let mut committed = 0;
    let mut builder = BatchBuilder::new(context);
    let mut failure = None;

    for entry in new {
        let key = SourceKey::Uidl(entry.uidl.clone());
        if !fits(entry) {
            builder.push_too_large(key, entry.size);
        } else {
            let raw = match retrieve(
                session,
                retrieval,
                &fitting,
                entry.number,
                settings.max_message_size,
            )
            .await
            {
                Ok(raw) => raw,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            stats.fetched += 1;
            if !builder.push(state, key, &raw, None) {
                stats.outcome = CycleOutcome::Blocked;
                break;
            }
        }
        handled.push(*entry);
        if handled.len() - committed == settings.batch_size {
            let full = std::mem::replace(&mut builder, BatchBuilder::new(context));
            commit(full, &handled[committed..], sync, stats).await?;
            committed = handled.len();
        }
    }
    if !builder.is_empty() || handled.len() > committed {
        commit(builder, &handled[committed..], sync, stats).await?;
    }
    match failure {
        Some(error) => Err(error.into()),
        None => Ok(handled),
    }
}

/// Downloads message `number`, the next of `fitting`, keeping the window of
/// pipelined RETRs full.
async fn retrieve<St>(
    session: &mut Pop3Session<St>,
    retrieval: &mut Retrieval,
    fitting: &[u32],
    number: u32,
    max_size: usize,
) -> Result<bytes::Bytes, SessionError>
where
    St: AsyncRead + AsyncWrite + Unpin,
{
    if !retrieval.pipelining {
        return session.retr(number, max_size).await;
    }
    let target = (retrieval.received + retrieval.window).min(fitting.len());
    if retrieval.sent < target {
        let numbers = fitting.get(retrieval.sent..target).unwrap_or_default();
        match session.send_retrs(numbers).await {
            Ok(()) => retrieval.sent = target,
            // Responses to RETRs sent earlier may still be buffered, and
            // reading them first saves downloading them again on the retry.
            Err(error) if retrieval.received == retrieval.sent => return Err(error),
            Err(error) => {
                tracing::debug!(%error, "sending RETRs failed; reading the responses to earlier RETRs")
            }
        }
    }
    let raw = session.read_retr(max_size).await?;
    retrieval.received += 1;
    Ok(raw)
}

async fn commit<R, E>(
    builder: BatchBuilder<'_, R, E>,
    handled: &[&Listed],
    sync: &mut Sync,
    stats: &mut CycleStats,
) -> Result<(), CycleError>
where
    R: RecordStore + ?Sized,
    E: EventSink + ?Sized,
{
    let mut update = sync.pending.take().unwrap_or_default();
    update.pop3_seen = handled.iter().map(|entry| entry.uidl.clone()).collect();
    let (version, decided) = builder.commit(sync.version, update).await?;
    sync.version = version;
    stats.processed += decided;
    Ok(())
}
