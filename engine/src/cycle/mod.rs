//! One sync cycle of one mailbox: connect, log in, find new mail, fetch it in
//! batches, process, commit records with the sync state, optionally delete.
//!
//! The protocol-specific steps live in [`imap`] and [`pop3`]. This module
//! contains what both share: the cycle's inputs, building a batch from
//! fetched messages, committing it and reporting its decisions.
//!
//! Crash safety: nothing is deleted on the server before the batch that
//! processed it is committed, and the committed sync state (IMAP watermark
//! or POP3 UIDL set) moves only with the records. A cycle cut short at any
//! point refetches exactly the messages it had not committed; messages it
//! had committed but not deleted are deleted by the next cycle.

pub(crate) mod imap;
pub(crate) mod pop3;

use std::io;
use std::sync::Arc;

use mail_parser::MessageParser;
use tokio::time::Instant;

use crate::config::{Credentials, EngineSettings, MailboxConfig, Protocol, ServerProfile};
use crate::connector::{ConnectTarget, Connector};
use crate::error::{CycleError, ErrorKind, ErrorLevel, SessionError};
use crate::events::{Alert, AlertCode, CycleOutcome, EmailProcessed, Event, EventSink};
use crate::process::{Directory, Processed, process};
use crate::records::{
    BatchItem, CommitBatch, ItemAction, Reason, RecordStore, SourceKey, SyncState, SyncUpdate,
};

/// Everything a cycle reads.
pub(crate) struct CycleContext<'a, R: ?Sized, E: ?Sized> {
    pub(crate) mailbox: &'a MailboxConfig,
    pub(crate) profile: &'a ServerProfile,
    pub(crate) credentials: &'a Credentials,
    pub(crate) settings: &'a EngineSettings,
    pub(crate) directory: &'a Directory,
    pub(crate) store: &'a R,
    pub(crate) events: &'a E,
}

/// Counts and outcome of a finished cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleStats {
    /// Messages downloaded.
    pub fetched: usize,
    /// Messages decided and committed.
    pub processed: usize,
    /// Completed, limit reached or blocked.
    pub outcome: CycleOutcome,
}

impl CycleStats {
    fn new() -> Self {
        Self {
            fetched: 0,
            processed: 0,
            outcome: CycleOutcome::Completed,
        }
    }

    /// Returns whether the cycle found mail, for adaptive polling.
    pub fn found_mail(&self) -> bool {
        self.fetched > 0 || self.outcome != CycleOutcome::Completed
    }
}

/// A failed cycle and what it had done before failing.
#[derive(Debug)]
pub struct CycleFailure {
    /// The error.
    pub error: CycleError,
    /// Messages downloaded and committed before the error.
    pub stats: CycleStats,
}

/// An email-level error to report once its batch is committed.
struct EmailError {
    kind: ErrorKind,
    text: String,
}

/// Fetched messages of one batch, processed and waiting for the commit.
pub(crate) struct BatchBuilder<'a, R: ?Sized, E: ?Sized> {
    context: &'a CycleContext<'a, R, E>,
    parser: MessageParser,
    items: Vec<BatchItem>,
    failures: Vec<(SourceKey, u32)>,
    errors: Vec<EmailError>,
    quarantined: Vec<(SourceKey, String)>,
    /// Whether a message failed and blocks the rest of the batch.
    pub(crate) blocked: bool,
}

impl<'a, R, E> BatchBuilder<'a, R, E>
where
    R: RecordStore + ?Sized,
    E: EventSink + ?Sized,
{
    pub(crate) fn new(context: &'a CycleContext<'a, R, E>) -> Self {
        Self {
            context,
            parser: MessageParser::new(),
            items: Vec::new(),
            failures: Vec::new(),
            errors: Vec::new(),
            quarantined: Vec::new(),
            blocked: false,
        }
    }

    /// Returns whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty() && self.failures.is_empty()
    }

    /// Processes one fetched message. Returns `false` when it failed and was
    /// not quarantined yet: the caller must stop there, because the
    /// watermark may not pass it.
    pub(crate) fn push(
        &mut self,
        state: &SyncState,
        key: SourceKey,
        raw: &[u8],
        received: Option<i64>,
    ) -> bool {
        let context = self.context;
        let processed = process(
            context.directory,
            &self.parser,
            &context.mailbox.id,
            context.mailbox.is_forward,
            raw,
            received,
        );
        let earlier_attempts = state.attempts(&key);
        let action = match processed {
            Processed::Draft(draft) => ItemAction::Email(draft),
            Processed::Skip {
                reason,
                message_id,
                owner,
                error,
            } => {
                if let Some((kind, text)) = error {
                    self.errors.push(EmailError { kind, text });
                }
                ItemAction::Skip {
                    reason,
                    message_id,
                    owner,
                }
            }
            Processed::Failed(text) => {
                let attempts = earlier_attempts + 1;
                self.errors.push(EmailError {
                    kind: ErrorKind::ProcessingFailed,
                    text: format!("{key}: {text} (attempt {attempts})"),
                });
                if attempts < context.settings.max_email_attempts {
                    self.failures.push((key, attempts));
                    self.blocked = true;
                    return false;
                }
                self.quarantined.push((key.clone(), text.clone()));
                ItemAction::Quarantine {
                    attempts,
                    error: text,
                }
            }
        };
        if earlier_attempts > 0 {
            self.failures.push((key.clone(), 0));
        }
        self.items.push(BatchItem { key, action });
        true
    }

    /// Records a message too large to download, as an email-level error.
    pub(crate) fn push_too_large(&mut self, key: SourceKey, size: u64) {
        let limit = self.context.settings.max_message_size;
        self.errors.push(EmailError {
            kind: ErrorKind::MessageTooLarge,
            text: format!("{key}: message of {size} bytes exceeds max_message_size {limit}"),
        });
        self.items.push(BatchItem {
            key,
            action: ItemAction::Skip {
                reason: Reason::MessageTooLarge,
                message_id: None,
                owner: None,
            },
        });
    }

    /// Commits the batch with `update` (plus the failure counters gathered
    /// here) and reports its decisions. Returns the new sync-state version
    /// and the number of messages decided.
    pub(crate) async fn commit(
        self,
        base_version: u64,
        mut update: SyncUpdate,
    ) -> Result<(u64, usize), CycleError> {
        let context = self.context;
        let mailbox = &context.mailbox.id;
        update.failures.extend(self.failures);
        let batch = CommitBatch {
            mailbox: mailbox.clone(),
            base_version,
            items: self.items,
            update,
            token_prefix: Arc::clone(&context.directory.token_prefix),
        };
        let report = context.store.commit(batch).await?;

        let at = Instant::now();
        let decided = report.decisions.len();
        for decision in report.decisions {
            tracing::trace!(
                mailbox = %mailbox,
                key = %decision.key,
                reason = %decision.reason,
                "email processed"
            );
            context.events.emit(Event::EmailProcessed(EmailProcessed {
                mailbox: mailbox.clone(),
                key: decision.key,
                message_id: decision.message_id,
                party: decision.owner,
                reason: decision.reason,
                created: decision.created,
                at,
            }));
        }
        for error in self.errors {
            tracing::warn!(mailbox = %mailbox, kind = %error.kind, "{}", error.text);
            context.events.emit(Event::Error {
                level: ErrorLevel::Email,
                mailbox: mailbox.clone(),
                kind: error.kind,
                text: error.text,
                at,
            });
        }
        for (key, text) in self.quarantined {
            let text = format!("{key} quarantined after failed processing: {text}");
            tracing::warn!(mailbox = %mailbox, "{text}");
            context.events.emit(Event::Alert(Alert {
                level: ErrorLevel::Email,
                mailbox: mailbox.clone(),
                code: AlertCode::EmailQuarantined,
                text,
                at,
            }));
        }
        Ok((report.version, decided))
    }
}

/// Connects through `connector` and runs one cycle of the context's mailbox.
pub(crate) async fn run_cycle<R, C, E>(
    context: &CycleContext<'_, R, E>,
    connector: &C,
) -> Result<CycleStats, CycleFailure>
where
    R: RecordStore + ?Sized,
    C: Connector + ?Sized,
    E: EventSink + ?Sized,
{
    let timeout = context.settings.command_timeout;
    let target = ConnectTarget {
        profile: context.profile,
        mailbox: &context.mailbox.id,
    };
    let connected = tokio::time::timeout(timeout, connector.connect(target)).await;
    let stream = match connected {
        Err(_) => Err(SessionError::TimedOut(timeout)),
        Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => {
            Err(SessionError::Refused(error))
        }
        Ok(Err(error)) => Err(SessionError::Io(error)),
        Ok(Ok(stream)) => Ok(stream),
    };
    let stream = stream.map_err(|error| CycleFailure {
        error: error.into(),
        stats: CycleStats::new(),
    })?;
    match context.profile.protocol {
        Protocol::Imap => imap::run(context, stream).await,
        Protocol::Pop3 => pop3::run(context, stream).await,
    }
}
