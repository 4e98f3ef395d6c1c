//! A one-shot sync: drain the given mailboxes once, without a schedule.
//!
//! This backs a command-line `sync`: each mailbox runs cycles back to back
//! until one finds no more mail than the per-cycle limit, fails, or is
//! blocked by a failing message. There are no retries; a failure is reported
//! and, for rejected credentials, raised as an alert.

use std::sync::Arc;

use tokio::time::Instant;

use crate::config::{Config, MailboxId};
use crate::connector::Connector;
use crate::cycle::{CycleContext, run_cycle};
use crate::error::{ErrorKind, ErrorLevel};
use crate::events::{Alert, AlertCode, CycleOutcome, Event, EventSink, VecSink};
use crate::process::Directory;
use crate::records::{Created, RecordStore};
use crate::validate::ConfigErrors;

/// Failure to start a one-shot sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncOnceError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// A requested mailbox is not configured.
    #[error("mailbox {0} is not configured; pass one of the configured mailbox ids")]
    UnknownMailbox(MailboxId),
    /// A requested mailbox is reached through a forward mailbox.
    #[error("mailbox {0} is reached through a forward mailbox; sync the forward mailbox instead")]
    NotPolled(MailboxId),
}

/// The outcome for one mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxSync {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// Cycles run.
    pub cycles: usize,
    /// Messages downloaded.
    pub fetched: usize,
    /// Messages decided and committed.
    pub processed: usize,
    /// Messages that created an activity or added a party.
    pub records_created: usize,
    /// The error that ended the sync early, if any.
    pub error: Option<(ErrorKind, String)>,
    /// Whether a failing message blocked the mail behind it.
    pub blocked: bool,
}

/// The outcome of [`sync_once`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// One entry per requested mailbox, in request order.
    pub mailboxes: Vec<MailboxSync>,
    /// Every event, in order.
    pub events: Vec<Event>,
}

impl SyncReport {
    /// Returns the messages that created an activity or added a party, over
    /// all mailboxes.
    pub fn records_created(&self) -> usize {
        self.mailboxes.iter().map(|m| m.records_created).sum()
    }

    /// Returns the alerts raised.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.events.iter().filter_map(|event| match event {
            Event::Alert(alert) => Some(alert),
            _ => None,
        })
    }
}

/// Syncs each of `mailboxes` once, in order, into `store`.
pub async fn sync_once<R, C>(
    config: &Config,
    mailboxes: &[MailboxId],
    store: &R,
    connector: &C,
) -> Result<SyncReport, SyncOnceError>
where
    R: RecordStore,
    C: Connector,
{
    config.validate()?;
    let mut targets = Vec::with_capacity(mailboxes.len());
    for id in mailboxes {
        let mailbox = config
            .mailbox(id)
            .ok_or_else(|| SyncOnceError::UnknownMailbox(id.clone()))?;
        let profile = mailbox
            .profile()
            .and_then(|profile| config.profile(profile))
            .ok_or_else(|| SyncOnceError::NotPolled(id.clone()))?;
        let credentials = mailbox
            .credentials
            .as_ref()
            .or(profile.credentials.as_ref())
            .ok_or_else(|| SyncOnceError::NotPolled(id.clone()))?;
        targets.push((mailbox, profile, credentials));
    }

    let directory = Directory::new(config);
    let sink = Arc::new(VecSink::new());
    let mut report = SyncReport::default();
    for (mailbox, profile, credentials) in targets {
        let context = CycleContext {
            mailbox,
            profile,
            credentials,
            settings: &config.settings,
            directory: &directory,
            store,
            events: &*sink,
        };
        let mut result = MailboxSync {
            mailbox: mailbox.id.clone(),
            cycles: 0,
            fetched: 0,
            processed: 0,
            records_created: 0,
            error: None,
            blocked: false,
        };
        loop {
            result.cycles += 1;
            match run_cycle(&context, connector).await {
                Ok(stats) => {
                    result.fetched += stats.fetched;
                    result.processed += stats.processed;
                    result.blocked = stats.outcome == CycleOutcome::Blocked;
                    // A cycle that stopped at the limit without progress
                    // would loop forever.
                    if stats.outcome != CycleOutcome::LimitReached || stats.processed == 0 {
                        break;
                    }
                }
                Err(failure) => {
                    result.fetched += failure.stats.fetched;
                    result.processed += failure.stats.processed;
                    let error = failure.error;
                    let at = Instant::now();
                    let text = error.to_string();
                    if error.is_permanent() {
                        sink.emit(Event::Alert(Alert {
                            level: ErrorLevel::Mailbox,
                            mailbox: mailbox.id.clone(),
                            code: AlertCode::CredentialsRejected,
                            text: text.clone(),
                            at,
                        }));
                    } else {
                        sink.emit(Event::Error {
                            level: error.level(),
                            mailbox: mailbox.id.clone(),
                            kind: error.kind(),
                            text: text.clone(),
                            at,
                        });
                    }
                    result.error = Some((error.kind(), text));
                    break;
                }
            }
        }
        let events = sink.take();
        result.records_created = events
            .iter()
            .filter(|event| {
                matches!(event, Event::EmailProcessed(processed) if processed.created != Created::Nothing)
            })
            .count();
        report.events.extend(events);
        report.mailboxes.push(result);
    }
    Ok(report)
}
