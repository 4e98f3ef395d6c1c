//! The POP3 cycle.
//!
//! POP3 has no UIDVALIDITY and no order, so the sync state is the set of
//! processed UIDLs, pruned to the UIDLs still in the maildrop. Deletions
//! (DELE) take effect only at QUIT, so a session cut short deletes nothing;
//! the next cycle finds those messages in the processed set and deletes them
//! without processing them again.

use std::collections::BTreeSet;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{BatchBuilder, CycleContext, CycleFailure, CycleStats};
use crate::error::CycleError;
use crate::events::{CycleOutcome, EventSink};
use crate::pop3::session::{Listed, Pop3Session};
use crate::records::{RecordStore, SourceKey, SyncUpdate};

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
    let mailbox = context.mailbox;
    let delete = mailbox.delete_after_processing;
    let mut session = Pop3Session::connect(stream, settings.command_timeout).await?;
    session
        .login(&context.credentials.username, &context.credentials.password)
        .await?;
    let pipelining = session.pipelining().await?;
    let listed = session.list(MAX_LISTING).await?;
    let state = context.store.sync_state(&mailbox.id).await?;

    // Forget UIDLs that left the maildrop, so the set stays as small as it.
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
    let mut version = state.version;
    let mut pending = Some(first_update).filter(|update| !update.is_empty());
    for chunk in new
        .get(..limit.min(new.len()))
        .unwrap_or_default()
        .chunks(settings.batch_size)
    {
        let mut builder = BatchBuilder::new(context);
        let mut handled = Vec::with_capacity(chunk.len());
        let fits = |entry: &Listed| {
            usize::try_from(entry.size).is_ok_and(|size| size <= settings.max_message_size)
        };
        // With PIPELINING the server works on the next messages while the
        // engine processes the current one.
        let mut failure = None;
        if pipelining {
            let numbers: Vec<u32> = chunk
                .iter()
                .filter(|entry| fits(entry))
                .map(|entry| entry.number)
                .collect();
            if let Err(error) = session.send_retrs(&numbers).await {
                failure = Some(error);
            }
        }
        // A failed send leaves nothing to read.
        let entries = if failure.is_none() { chunk } else { &[][..] };
        for entry in entries {
            let key = SourceKey::Uidl(entry.uidl.clone());
            if !fits(entry) {
                builder.push_too_large(key, entry.size);
                handled.push(*entry);
                continue;
            }
            let raw = if pipelining {
                session.read_retr(settings.max_message_size).await
            } else {
                session.retr(entry.number, settings.max_message_size).await
            };
            let raw = match raw {
                Ok(raw) => raw,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            stats.fetched += 1;
            if !builder.push(&state, key, &raw, None) {
                break;
            }
            handled.push(*entry);
        }

        // Commit what was processed even when the session failed, so a
        // retry does not download it again.
        let blocked = builder.blocked;
        if !builder.is_empty() || pending.is_some() {
            let mut update = pending.take().unwrap_or_default();
            update.pop3_seen = handled.iter().map(|entry| entry.uidl.clone()).collect();
            let (next_version, decided) = builder.commit(version, update).await?;
            version = next_version;
            stats.processed += decided;
        }
        if let Some(error) = failure {
            return Err(error.into());
        }
        if delete {
            for entry in &handled {
                session.dele(entry.number).await?;
            }
        }
        if blocked {
            stats.outcome = CycleOutcome::Blocked;
            break;
        }
    }

    if let Some(update) = pending {
        BatchBuilder::new(context).commit(version, update).await?;
    }
    // Records are committed; a failed QUIT only postpones deletions, which
    // the next cycle redoes.
    if let Err(error) = session.quit().await {
        tracing::warn!(mailbox = %mailbox.id, protocol = "pop3", %error, "QUIT failed");
        if delete {
            return Err(error.into());
        }
    }
    Ok(())
}
