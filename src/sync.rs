//! `mailsim sync`: one sync of some mailboxes from a real server.
//!
//! The engine drains each mailbox once, prints the records it created and
//! any alerts, and saves each mailbox's sync state to a file, so that the
//! next `mailsim sync` resumes where this one stopped and creates no record
//! twice. The password comes from an environment variable, never from the
//! command line, where other users of the machine could read it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use clap::{Args, ValueEnum};
use engine::records::{
    CommitBatch, CommitReport, Created, ImapCursor, MemoryStore, RecordStore, SourceKey,
    StoreError, SyncState,
};
use engine::{
    Config, Contact, Credentials, EngineSettings, MailboxConfig, MailboxId, Owner, ServerProfile,
    TcpConnector, TrackingFilter,
};
use serde::{Deserialize, Serialize};

use crate::cli::{EXIT_FAILURE, EXIT_USAGE};

/// Mail access protocols `mailsim sync` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyncProtocol {
    /// IMAP4rev1.
    Imap,
    /// POP3.
    Pop3,
}

/// Tracking filters, as the CRM names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tracking {
    /// Every message.
    All,
    /// Only replies to tracked mail.
    Responses,
    /// Only mail from known contacts.
    Contacts,
    /// Nothing.
    None,
}

/// Options of `mailsim sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Server port; 143 for IMAP and 110 for POP3 when absent.
    #[arg(long)]
    pub port: Option<u16>,

    /// Protocol.
    #[arg(long, value_enum, default_value_t = SyncProtocol::Imap)]
    pub protocol: SyncProtocol,

    /// A user mailbox to sync; its address is also the login (repeatable).
    #[arg(long = "mailbox", value_name = "ADDRESS")]
    pub mailboxes: Vec<String>,

    /// A queue mailbox to sync (repeatable).
    #[arg(long = "queue", value_name = "ADDRESS")]
    pub queues: Vec<String>,

    /// A forward mailbox to sync; the addresses given with --via-forward are
    /// the users whose copies it receives.
    #[arg(long = "forward", value_name = "ADDRESS")]
    pub forward: Option<String>,

    /// A user whose mail reaches the forward mailbox as attachments (repeatable).
    #[arg(long = "via-forward", value_name = "ADDRESS", requires = "forward")]
    pub via_forward: Vec<String>,

    /// Environment variable that holds the password of every synced mailbox.
    #[arg(long, value_name = "NAME", default_value = "MAILSIM_PASSWORD")]
    pub password_env: String,

    /// Delete messages from queue and forward mailboxes once they are recorded.
    #[arg(long)]
    pub delete: bool,

    /// Which messages become records.
    #[arg(long, value_enum, default_value_t = Tracking::All)]
    pub tracking: Tracking,

    /// A known contact's address, for `--tracking contacts` (repeatable).
    #[arg(long = "contact", value_name = "ADDRESS")]
    pub contacts: Vec<String>,

    /// File that keeps each mailbox's sync state between runs.
    #[arg(long, value_name = "FILE", default_value = "mailsim-sync-state.json")]
    pub state: PathBuf,

    /// Messages fetched and committed together.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,

    /// Seconds to wait for any one server answer.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,

    /// Print only the summary, not one line per record.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `mailsim sync`.
pub fn run(args: SyncArgs) -> ExitCode {
    if args.mailboxes.is_empty() && args.queues.is_empty() && args.forward.is_none() {
        eprintln!("mailsim sync: nothing to sync; give --mailbox, --queue or --forward");
        return ExitCode::from(EXIT_USAGE);
    }
    if args.delete && args.queues.is_empty() && args.forward.is_none() {
        eprintln!(
            "mailsim sync: --delete applies to queue and forward mailboxes only, and user mailboxes keep their mail; give --queue or --forward, or drop --delete"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if args.tracking == Tracking::Contacts && args.contacts.is_empty() {
        eprintln!(
            "mailsim sync: --tracking contacts records mail from known contacts only, and none is given; add --contact ADDRESS"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let password = match std::env::var(&args.password_env) {
        Ok(password) if !password.is_empty() => password,
        Ok(_) => {
            eprintln!(
                "mailsim sync: the environment variable {} is empty; put the mailbox password there",
                args.password_env
            );
            return ExitCode::from(EXIT_USAGE);
        }
        Err(_) => {
            eprintln!(
                "mailsim sync: the environment variable {} is not set; put the mailbox password there \
                 (passwords are never taken from the command line)",
                args.password_env
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let states = match load_states(&args.state) {
        Ok(states) => states,
        Err(message) => {
            eprintln!("mailsim sync: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Saving once before the sync finds an unwritable state file before any
    // mail is fetched or deleted.
    if let Err(message) = save_states(&args.state, &states) {
        eprintln!("mailsim sync: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mailsim sync: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(sync(&args, &password, states))
}

async fn sync(args: &SyncArgs, password: &str, states: BTreeMap<String, SavedState>) -> ExitCode {
    let (config, targets) = config(args, password);
    let store = JournalStore::new(args.state.clone(), args.quiet, states);
    let report = match engine::oneshot::sync_once(&config, &targets, &store, &TcpConnector).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("mailsim sync: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for mailbox in &report.mailboxes {
        let _ = write!(
            out,
            "{}: {} cycles, {} fetched, {} records created",
            mailbox.mailbox, mailbox.cycles, mailbox.fetched, mailbox.records_created
        );
        if let Some((kind, text)) = &mailbox.error {
            failed = true;
            let _ = write!(out, ", failed ({kind}): {text}");
        }
        if mailbox.blocked {
            let _ = write!(
                out,
                ", blocked by a message that failed processing (see its alert; it is quarantined after {} attempts)",
                config.settings.max_email_attempts
            );
        }
        let _ = writeln!(out);
    }
    for alert in report.alerts() {
        failed = true;
        let _ = writeln!(
            out,
            "alert [{}] {} {}: {}",
            alert.level, alert.mailbox, alert.code, alert.text
        );
    }
    let _ = writeln!(out, "records created: {}", report.records_created());
    let _ = out.flush();

    if let Some(message) = store.save_failure() {
        eprintln!("mailsim sync: {message}");
        return ExitCode::from(EXIT_FAILURE);
    }
    if failed {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// A [`MemoryStore`] that prints what each commit decided and then saves
/// every mailbox's sync state to the state file.
///
/// The engine deletes mail on the server only after a commit succeeds, so
/// a sync killed half-way loses nothing. What it committed is printed and
/// saved, and the next run fetches the rest.
struct JournalStore {
    inner: MemoryStore,
    path: PathBuf,
    quiet: bool,
    saved: Mutex<BTreeMap<String, SavedState>>,
    failure: Mutex<Option<String>>,
}

impl JournalStore {
    fn new(path: PathBuf, quiet: bool, states: BTreeMap<String, SavedState>) -> Self {
        let inner = MemoryStore::new();
        for (mailbox, state) in &states {
            inner.restore_sync_state(MailboxId::new(mailbox), state.clone().into_sync_state());
        }
        Self {
            inner,
            path,
            quiet,
            saved: Mutex::new(states),
            failure: Mutex::new(None),
        }
    }

    /// Returns why saving the state file failed, if it did.
    fn save_failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Prints one line per decision: the record created, or why none was.
    fn print(&self, mailbox: &MailboxId, report: &CommitReport) {
        if self.quiet {
            return;
        }
        let records = self.inner.records();
        let mut out = std::io::stdout().lock();
        for decision in &report.decisions {
            let message_id = decision.message_id.as_deref().unwrap_or("-");
            let activity = decision.activity.and_then(|id| records.activity(id));
            match (&decision.created, &decision.owner, activity) {
                (Created::Activity | Created::Party, Some(owner), Some(activity)) => {
                    let _ = writeln!(
                        out,
                        "record {message_id} party={} fetched-by={mailbox} key={} token={} reason={} subject={:?}",
                        owner.name(),
                        decision.key,
                        activity.tracking_token,
                        decision.reason.as_str(),
                        activity.subject
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "no record {message_id} fetched-by={mailbox} key={} reason={}",
                        decision.key,
                        decision.reason.as_str()
                    );
                }
            }
        }
        let _ = out.flush();
    }
}

impl RecordStore for JournalStore {
    fn sync_state(
        &self,
        mailbox: &MailboxId,
    ) -> impl Future<Output = Result<SyncState, StoreError>> + Send {
        self.inner.sync_state(mailbox)
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReport, StoreError> {
        let mailbox = batch.mailbox.clone();
        let report = self.inner.commit(batch).await?;
        self.print(&mailbox, &report);
        let state = self.inner.sync_state(&mailbox).await?;
        let result = {
            let mut saved = lock(&self.saved);
            saved.insert(
                mailbox.as_str().to_owned(),
                SavedState::from_sync_state(&state),
            );
            save_states(&self.path, &saved)
        };
        if let Err(message) = result {
            // The cycle fails before it deletes anything, and the run ends
            // with this message.
            *lock(&self.failure) = Some(message.clone());
            return Err(StoreError::Unavailable(message));
        }
        Ok(report)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Builds the engine configuration and the mailboxes to sync, in the order given.
fn config(args: &SyncArgs, password: &str) -> (Config, Vec<MailboxId>) {
    let protocol = match args.protocol {
        SyncProtocol::Imap => engine::Protocol::Imap,
        SyncProtocol::Pop3 => engine::Protocol::Pop3,
    };
    let port = args.port.unwrap_or(match args.protocol {
        SyncProtocol::Imap => 143,
        SyncProtocol::Pop3 => 110,
    });
    let profile = ServerProfile::new("server", args.host.as_str(), port, protocol);
    let filter = match args.tracking {
        Tracking::All => TrackingFilter::All,
        Tracking::Responses => TrackingFilter::ResponsesToTracked,
        Tracking::Contacts => TrackingFilter::FromKnownContacts,
        Tracking::None => TrackingFilter::None,
    };
    let credentials = |address: &str| Credentials::new(address, password.to_owned());

    let mut mailboxes = Vec::new();
    let mut targets = Vec::new();
    for address in &args.mailboxes {
        mailboxes.push(
            MailboxConfig::direct(address.as_str(), Owner::user(address), address, "server")
                .with_credentials(credentials(address))
                .with_filter(filter),
        );
        targets.push(MailboxId::new(address));
    }
    for address in &args.queues {
        mailboxes.push(
            MailboxConfig::direct(address.as_str(), Owner::queue(address), address, "server")
                .with_credentials(credentials(address))
                .with_filter(filter)
                .with_delete_after_processing(args.delete),
        );
        targets.push(MailboxId::new(address));
    }
    if let Some(forward) = &args.forward {
        mailboxes.push(
            MailboxConfig::forward(forward.as_str(), Owner::queue(forward), forward, "server")
                .with_credentials(credentials(forward))
                .with_delete_after_processing(args.delete),
        );
        targets.push(MailboxId::new(forward));
        for address in &args.via_forward {
            mailboxes.push(
                MailboxConfig::via_forward(
                    address.as_str(),
                    Owner::user(address),
                    address,
                    forward.as_str(),
                )
                .with_filter(filter),
            );
        }
    }
    let config = Config {
        profiles: vec![profile],
        mailboxes,
        contacts: args
            .contacts
            .iter()
            .map(|address| Contact {
                name: address.clone(),
                address: address.clone(),
            })
            .collect(),
        settings: EngineSettings {
            batch_size: args.batch_size.max(1),
            command_timeout: Duration::from_secs(args.timeout.max(1)),
            ..EngineSettings::default()
        },
    };
    (config, targets)
}

/// A mailbox's sync state as saved in the state file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SavedState {
    /// IMAP UIDVALIDITY and last processed UID.
    imap: Option<(u32, u32)>,
    /// POP3 UIDLs already processed.
    #[serde(default)]
    pop3_seen: Vec<String>,
    /// Failed processing attempts per message key (`uid:N` or `uidl:X`).
    #[serde(default)]
    failures: BTreeMap<String, u32>,
}

impl SavedState {
    fn from_sync_state(state: &SyncState) -> Self {
        Self {
            imap: state
                .imap
                .map(|cursor| (cursor.uid_validity, cursor.last_uid)),
            pop3_seen: state
                .pop3_seen
                .iter()
                .map(|uidl| uidl.to_string())
                .collect(),
            failures: state
                .failures
                .iter()
                .map(|(key, attempts)| (key.to_string(), *attempts))
                .collect(),
        }
    }

    fn into_sync_state(self) -> SyncState {
        let failures = self
            .failures
            .into_iter()
            .filter_map(|(key, attempts)| {
                let key = match key.split_once(':') {
                    Some(("uid", uid)) => SourceKey::Uid(uid.parse().ok()?),
                    Some(("uidl", uidl)) => SourceKey::Uidl(uidl.into()),
                    _ => return None,
                };
                Some((key, attempts))
            })
            .collect();
        SyncState {
            version: 0,
            imap: self.imap.map(|(uid_validity, last_uid)| ImapCursor {
                uid_validity,
                last_uid,
            }),
            pop3_seen: self
                .pop3_seen
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
            failures,
        }
    }
}

fn load_states(path: &Path) -> Result<BTreeMap<String, SavedState>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
            format!(
                "the state file {} is not valid: {error}; delete it to sync every mailbox from the start",
                path.display()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(error) => Err(format!("cannot read the state file {}: {error}", path.display())),
    }
}

fn save_states(path: &Path, states: &BTreeMap<String, SavedState>) -> Result<(), String> {
    let json = serde_json::to_string_pretty(states).map_err(|error| error.to_string())?;
    // Write beside the file and rename, so a crash never leaves half a file.
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, json + "\n")
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|error| format!("cannot write the state file {}: {error}", path.display()))
}
