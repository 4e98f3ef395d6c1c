//! The engine: every polled mailbox's schedule, run as tokio tasks over a
//! cluster of `nodes × threads_per_node` worker slots.
//!
//! Each mailbox that is polled directly gets one task, so it runs one cycle
//! at a time, and a fixed node: mailboxes are assigned to nodes round-robin
//! in configuration order. A forward mailbox is such a mailbox too, which is
//! why all the mail behind it is processed by one node, one cycle at a time.
//! A cycle needs a worker slot on its node (a semaphore with
//! `threads_per_node` permits) and a connection permit (`max_connections`).
//! The connection limit counts per mailbox when the mailbox has its own
//! credentials, and per server profile when it uses the profile's (see
//! [`ServerProfile::max_connections`]). The semaphores are FIFO, so the same inputs give the same
//! order of cycles. All waiting uses `tokio::time`, so a paused
//! clock drives the whole engine.

mod polling;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Config, Credentials, MailboxConfig, MailboxId, ProfileId, ServerProfile};
use crate::connector::Connector;
use crate::cycle::{CycleContext, CycleFailure, CycleStats, run_cycle};
use crate::error::{ErrorKind, ErrorLevel, SessionError};
use crate::events::{Alert, AlertCode, CycleOutcome, Event, EventSink, NodeId};
use crate::process::Directory;
use crate::records::RecordStore;
use crate::validate::ConfigErrors;

use polling::{AfterFailure, Polling};

/// Activity of a polled mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxState {
    /// Waiting for its next poll.
    Waiting,
    /// Waiting for a worker slot or connection permit, or running a cycle.
    Running,
    /// Disabled after a permanent error; no longer polled.
    Disabled,
}

/// A polled mailbox's schedule, as observed from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxStatus {
    /// The node its cycles run on.
    pub node: NodeId,
    /// Waiting, running or disabled.
    pub state: MailboxState,
    /// When the next cycle is due, unless running or disabled.
    pub next_poll: Option<Instant>,
    /// The interval after a successful cycle, as adapted so far.
    pub interval: Duration,
    /// Consecutive failed cycles.
    pub consecutive_failures: u32,
    /// Cycles that ended, successful or not.
    pub cycles: u64,
}

struct Shared<R, C> {
    config: Config,
    directory: Directory,
    store: R,
    connector: C,
    events: Arc<dyn EventSink>,
    nodes: Vec<Arc<Semaphore>>,
    /// Connection permits of profiles whose credentials mailboxes share.
    connections: BTreeMap<ProfileId, Arc<Semaphore>>,
    status: Mutex<BTreeMap<MailboxId, MailboxStatus>>,
    stopped: watch::Receiver<bool>,
}

impl<R, C> Shared<R, C> {
    fn status(&self) -> MutexGuard<'_, BTreeMap<MailboxId, MailboxStatus>> {
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, mailbox: &MailboxId, change: impl FnOnce(&mut MailboxStatus)) {
        if let Some(status) = self.status().get_mut(mailbox) {
            change(status);
        }
    }
}

/// A running sync engine.
///
/// [`Engine::start`] spawns one task per polled mailbox on the current tokio
/// runtime, so it must be called inside one. [`Engine::stop`] ends the
/// tasks, and so does dropping the engine. Stopping cancels cycles in
/// flight, which is safe: a cancelled cycle committed either whole batches
/// or nothing, and the next start resumes from the committed sync state.
pub struct Engine<R, C> {
    shared: Arc<Shared<R, C>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

impl<R: RecordStore, C: Connector> Engine<R, C> {
    /// Validates `config` and starts polling every directly polled mailbox,
    /// the first cycle of each immediately.
    pub fn start(
        config: Config,
        store: R,
        connector: C,
        events: Arc<dyn EventSink>,
    ) -> Result<Self, ConfigErrors> {
        config.validate()?;
        let settings = &config.settings;
        let nodes = (0..settings.nodes)
            .map(|_| Arc::new(Semaphore::new(settings.threads_per_node)))
            .collect();
        let connections = config
            .profiles
            .iter()
            .map(|profile| {
                (
                    profile.id.clone(),
                    Arc::new(Semaphore::new(profile.max_connections)),
                )
            })
            .collect();

        let now = Instant::now();
        let mut status = BTreeMap::new();
        let mut assigned = Vec::new();
        let polled = config
            .mailboxes
            .iter()
            .enumerate()
            .filter(|(_, m)| m.profile().is_some());
        for (slot, (index, mailbox)) in polled.enumerate() {
            let node = NodeId(slot % settings.nodes);
            status.insert(
                mailbox.id.clone(),
                MailboxStatus {
                    node,
                    state: MailboxState::Waiting,
                    next_poll: Some(now),
                    interval: settings.poll_interval_min,
                    consecutive_failures: 0,
                    cycles: 0,
                },
            );
            assigned.push((index, node));
        }

        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            directory: Directory::new(&config),
            config,
            store,
            connector,
            events,
            nodes,
            connections,
            status: Mutex::new(status),
            stopped: stopped.clone(),
        });
        let tasks = assigned
            .into_iter()
            .map(|(index, node)| {
                let task = mailbox_task(Arc::clone(&shared), index, node, stopped.clone());
                tokio::spawn(task)
            })
            .collect();
        Ok(Self {
            shared,
            tasks: Mutex::new(tasks),
            stop,
        })
    }

    /// Enables a disabled mailbox again, as an administrator does after
    /// fixing the cause, and polls it at once. Returns false when the
    /// mailbox is not polled directly or is not disabled.
    pub fn enable(&self, mailbox: &MailboxId) -> bool {
        let Some(index) = self
            .shared
            .config
            .mailboxes
            .iter()
            .position(|config| &config.id == mailbox)
        else {
            return false;
        };
        let node = {
            let mut status = self.shared.status();
            let Some(status) = status.get_mut(mailbox) else {
                return false;
            };
            if status.state != MailboxState::Disabled {
                return false;
            }
            status.state = MailboxState::Waiting;
            status.next_poll = Some(Instant::now());
            status.consecutive_failures = 0;
            status.node
        };
        tracing::info!(%mailbox, "mailbox enabled");
        self.shared.events.emit(Event::MailboxEnabled {
            mailbox: mailbox.clone(),
            at: Instant::now(),
        });
        let task = mailbox_task(
            Arc::clone(&self.shared),
            index,
            node,
            self.shared.stopped.clone(),
        );
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(tokio::spawn(task));
        true
    }

    /// Returns when `mailbox` polls next: `None` while it runs, when it is
    /// disabled, or when it is not polled directly.
    pub fn next_poll(&self, mailbox: &MailboxId) -> Option<Instant> {
        self.shared
            .status()
            .get(mailbox)
            .and_then(|status| status.next_poll)
    }

    /// Returns the schedule of `mailbox`, if it is polled directly.
    pub fn mailbox_status(&self, mailbox: &MailboxId) -> Option<MailboxStatus> {
        self.shared.status().get(mailbox).cloned()
    }

    /// Returns the schedule of every polled mailbox.
    pub fn statuses(&self) -> BTreeMap<MailboxId, MailboxStatus> {
        self.shared.status().clone()
    }

    /// Returns the record store.
    pub fn store(&self) -> &R {
        &self.shared.store
    }

    /// Stops every mailbox task and waits for them to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let tasks = self
            .tasks
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Resolves a mailbox's profile and credentials; validation guarantees both.
fn endpoint<'a>(
    config: &'a Config,
    mailbox: &'a MailboxConfig,
) -> Option<(&'a ServerProfile, &'a Credentials)> {
    let profile = config.profile(mailbox.profile()?)?;
    let credentials = mailbox
        .credentials
        .as_ref()
        .or(profile.credentials.as_ref())?;
    Some((profile, credentials))
}

async fn mailbox_task<R: RecordStore, C: Connector>(
    shared: Arc<Shared<R, C>>,
    index: usize,
    node: NodeId,
    mut stop: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let Some(mailbox) = config.mailboxes.get(index) else {
        return;
    };
    let Some((profile, credentials)) = endpoint(config, mailbox) else {
        return;
    };
    let own_connections;
    let connections = if mailbox.credentials.is_some() {
        own_connections = Arc::new(Semaphore::new(profile.max_connections));
        Some(&own_connections)
    } else {
        shared.connections.get(&profile.id)
    };
    let (Some(slots), Some(connections)) = (shared.nodes.get(node.0), connections) else {
        return;
    };
    let settings = &config.settings;
    let min = profile
        .min_poll_interval
        .unwrap_or(settings.poll_interval_min);
    let mut polling = Polling::new(min, settings.poll_interval_idle_max, settings.retry);
    let context = CycleContext {
        mailbox,
        profile,
        credentials,
        settings,
        directory: &shared.directory,
        store: &shared.store,
        events: &*shared.events,
    };
    let span = tracing::info_span!(
        "mailbox",
        mailbox = %mailbox.id,
        node = node.0,
        protocol = %profile.protocol
    );
    let mut next = Instant::now();

    loop {
        shared.update(&mailbox.id, |status| {
            status.state = MailboxState::Waiting;
            status.next_poll = Some(next);
        });
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        shared.update(&mailbox.id, |status| {
            status.state = MailboxState::Running;
            status.next_poll = None;
        });

        let cycle = async {
            let _slot = slots.acquire().await.ok()?;
            let _connection = connections.acquire().await.ok()?;
            shared.events.emit(Event::CycleStarted {
                mailbox: mailbox.id.clone(),
                node,
                at: Instant::now(),
            });
            Some(run_cycle(&context, &shared.connector).await)
        };
        let result = tokio::select! {
            biased;
            _ = stop.changed() => return,
            result = cycle.instrument(span.clone()) => result,
        };
        let Some(result) = result else {
            return;
        };

        let end = Instant::now();
        let delay = match result {
            Ok(stats) => {
                let delay = polling.after_success(stats.found_mail());
                cycle_ended(&shared, mailbox, node, end, &stats, stats.outcome.clone());
                span.in_scope(|| {
                    tracing::info!(
                        fetched = stats.fetched,
                        processed = stats.processed,
                        outcome = ?stats.outcome,
                        next_in = ?delay,
                        "cycle ended"
                    );
                });
                delay
            }
            Err(failure) => {
                let decision = polling.after_failure(&failure.error, failure.stats.processed > 0);
                let _entered = span.enter();
                match report_failure(&shared, mailbox, node, end, failure, decision) {
                    Some(delay) => delay,
                    None => return,
                }
            }
        };
        shared.update(&mailbox.id, |status| {
            status.interval = polling.interval();
            status.consecutive_failures = polling.failures();
            status.cycles += 1;
        });
        next = end + delay;
    }
}

fn cycle_ended<R, C>(
    shared: &Shared<R, C>,
    mailbox: &MailboxConfig,
    node: NodeId,
    at: Instant,
    stats: &CycleStats,
    outcome: CycleOutcome,
) {
    shared.events.emit(Event::CycleEnded {
        mailbox: mailbox.id.clone(),
        node,
        at,
        fetched: stats.fetched,
        processed: stats.processed,
        outcome,
    });
}

/// Emits the events of a failed cycle; returns the retry delay, or `None`
/// when the mailbox was disabled.
fn report_failure<R, C>(
    shared: &Shared<R, C>,
    mailbox: &MailboxConfig,
    node: NodeId,
    at: Instant,
    failure: CycleFailure,
    decision: AfterFailure,
) -> Option<Duration> {
    let CycleFailure { error, stats } = failure;
    let kind = error.kind();
    let text = error.to_string();
    if let crate::error::CycleError::Session(SessionError::Throttled { backoff, .. }) = &error {
        tracing::warn!(?backoff, "throttled: {text}");
        shared.events.emit(Event::Throttled {
            mailbox: mailbox.id.clone(),
            backoff: *backoff,
            at,
        });
    } else {
        tracing::warn!(%kind, level = %error.level(), "cycle failed: {text}");
        shared.events.emit(Event::Error {
            level: error.level(),
            mailbox: mailbox.id.clone(),
            kind,
            text: text.clone(),
            at,
        });
    }

    let retry = matches!(decision, AfterFailure::Retry(_));
    cycle_ended(
        shared,
        mailbox,
        node,
        at,
        &stats,
        CycleOutcome::Failed { kind, retry },
    );
    match decision {
        AfterFailure::Retry(delay) => {
            tracing::info!(retry_in = ?delay, "cycle will be retried");
            Some(delay)
        }
        AfterFailure::Disable(reason) => {
            disable(shared, mailbox, reason, &text, at);
            None
        }
    }
}

fn disable<R, C>(
    shared: &Shared<R, C>,
    mailbox: &MailboxConfig,
    reason: ErrorKind,
    text: &str,
    at: Instant,
) {
    let code = match reason {
        ErrorKind::CredentialsRejected => AlertCode::CredentialsRejected,
        _ => AlertCode::RetriesExhausted,
    };
    let text = match code {
        AlertCode::CredentialsRejected => {
            format!("mailbox disabled: the server rejected its credentials ({text})")
        }
        _ => format!(
            "mailbox disabled after {} failed retries; last error: {text}",
            shared.config.settings.retry.max_retries
        ),
    };
    tracing::error!(%code, "{text}");
    shared.events.emit(Event::Alert(Alert {
        level: ErrorLevel::Mailbox,
        mailbox: mailbox.id.clone(),
        code,
        text,
        at,
    }));
    shared.events.emit(Event::MailboxDisabled {
        mailbox: mailbox.id.clone(),
        kind: reason,
        at,
    });
    shared.update(&mailbox.id, |status| {
        status.state = MailboxState::Disabled;
        status.next_poll = None;
    });
}
