//! One world: a simulated mail service and a sync engine for one strategy,
//! run on a current-thread runtime with a paused clock.
//!
//! The engine reaches the service over in-memory pipes, so every cycle
//! exchanges real IMAP or POP3 bytes, and tokio jumps the clock to the next
//! timer whenever every task waits. Modelled costs (command latency in the
//! service, record creation in [`CostStore`]) are tokio sleeps.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::records::{
    CommitBatch, CommitReport, ItemAction, MemoryStore, RecordStore, StoreError, SyncState,
};
use engine::{
    Config, ConnectTarget, Connector, Contact, Credentials, EngineSettings, MailboxConfig,
    MailboxId, Owner, RetryPolicy, ServerProfile, TrackingFilter,
};
use sim::store::Account;
use sim::{AccountPolicy, AccountSpec, CommandBudget, DeliveryObserver, Service, SimClock};
use tokio::io::DuplexStream;
use tokio::time::Instant;

use super::observe::Recorder;
use super::traffic::{self, Plan};
use crate::scenario::{
    FaultKind, FaultTarget, GroupKind, Incoming, MailProtocol, Scenario, Strategy, Tracking,
};

/// The wall-clock date at which every simulation starts: midnight UTC,
/// 1 January 2024. A fixed date keeps message dates, and so reports,
/// identical between runs.
pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_704_067_200, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Mailbox id of the forward mailbox in the engine's configuration.
pub const FORWARD_ID: &str = "forward";

const PROFILE_ID: &str = "sim";

/// Why a world could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
    /// The scenario produced an engine configuration the engine rejects.
    #[error("the engine rejected the configuration built from the scenario: {0}")]
    Engine(#[from] engine::validate::ConfigErrors),
    /// The scenario produced accounts the service rejects.
    #[error("the mail service rejected the scenario's accounts: {0}")]
    Service(#[from] sim::store::StoreError),
}

/// Simulated time shared with the progress printer, in milliseconds.
#[derive(Debug, Default)]
pub struct Progress {
    /// Simulated milliseconds so far.
    pub simulated_ms: AtomicU64,
}

/// Everything a finished world leaves for the metrics.
pub struct Outcome {
    /// What the observers saw.
    pub recorder: Recorder,
    /// The engine's records at the end of the drain.
    pub snapshot: engine::records::Snapshot,
    /// Mailboxes the engine polled directly.
    pub polled: usize,
    /// The instant the world's clock started.
    pub start: Instant,
}

/// Runs `strategy` on its own runtime and returns what it observed.
pub fn run(
    scenario: &Scenario,
    plan: &Arc<Plan>,
    strategy: Strategy,
    progress: &Arc<Progress>,
) -> Result<Outcome, WorldError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(WorldError::Runtime)?;
    runtime.block_on(simulate(scenario, plan, strategy, progress))
}

async fn simulate(
    scenario: &Scenario,
    plan: &Arc<Plan>,
    strategy: Strategy,
    progress: &Arc<Progress>,
) -> Result<Outcome, WorldError> {
    let start = Instant::now();
    let recorder = Arc::new(SharedRecorder::new(scenario, plan, start));
    let service = Service::builder()
        .clock(SimClock::starting_at(epoch()))
        .hostname("mailsim.test")
        .observer(recorder.clone())
        .build();

    let accounts = add_accounts(scenario, strategy, &service, &password)?;
    schedule_faults(scenario, strategy, &service, &accounts);
    let config = engine_config(scenario, strategy);
    let polled = config
        .mailboxes
        .iter()
        .filter(|m| m.profile().is_some())
        .count();

    let store = Arc::new(CostStore {
        inner: MemoryStore::new(),
        cost: scenario.record_cost,
    });
    seed_threads(scenario, &store.inner);
    let connector = SimConnector {
        service: service.clone(),
        accounts: accounts.by_mailbox_id,
        protocol: scenario.server.protocol,
    };
    let engine = engine::Engine::start(config, Arc::clone(&store), connector, recorder.clone())?;

    tokio::spawn(deliver_traffic(
        scenario.clone(),
        Arc::clone(plan),
        service.clone(),
        start,
    ));
    let ticker = tokio::spawn(track_progress(Arc::clone(progress), start));

    for (at, mailboxes) in repairs(scenario, strategy) {
        tokio::time::sleep_until(start + at).await;
        for mailbox in mailboxes {
            engine.enable(&mailbox);
        }
    }
    let end = start + scenario.duration + scenario.drain;
    tokio::time::sleep_until(end).await;
    let snapshot = store.inner.snapshot();
    ticker.abort();
    engine.stop().await;

    let recorder = recorder.take();
    Ok(Outcome {
        recorder,
        snapshot,
        polled,
        start,
    })
}

async fn track_progress(progress: Arc<Progress>, start: Instant) {
    loop {
        let elapsed = Instant::now().saturating_duration_since(start);
        progress
            .simulated_ms
            .store(elapsed.as_millis() as u64, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// Delivers every planned message to `service` at its time after `start`.
pub async fn deliver_traffic(
    scenario: Scenario,
    plan: Arc<Plan>,
    service: Service,
    start: Instant,
) {
    for (id, message) in plan.messages.iter().enumerate() {
        tokio::time::sleep_until(start + message.at).await;
        let raw = traffic::render(&plan, &scenario, id as u32, epoch());
        for recipient in message.recipients() {
            let address = &scenario.mailboxes[recipient].address;
            if let Err(error) = service.deliver(address, raw.clone(), Some(id as u64)) {
                tracing::warn!(mailbox = address.as_str(), %error, "delivery failed");
            }
        }
    }
}

/// The service's accounts, found by the engine's mailbox ids.
pub struct Accounts {
    by_mailbox_id: HashMap<MailboxId, Arc<Account>>,
    mailboxes: Vec<Arc<Account>>,
    forward: Option<Arc<Account>>,
}

/// Password of scenario mailbox `index`; every mailbox has its own.
fn password(index: usize) -> String {
    format!("secret-{index}")
}

fn policy(scenario: &Scenario) -> AccountPolicy {
    let server = &scenario.server;
    AccountPolicy {
        max_imap_connections: server.max_connections,
        max_pop3_connections: server.max_connections,
        command_budget: server.command_budget.map(|budget| CommandBudget {
            commands: budget.commands,
            window: budget.window,
        }),
        receive_per_hour: server.receive_per_hour,
        command_latency: server.latency,
        backoff_hint: server.backoff_hint,
    }
}

/// Adds the scenario's accounts to `service` with its per-mailbox limits,
/// and forwarding rules for the mailboxes that forward under `strategy`.
/// `password` gives the password of mailbox `index`, or of the forward
/// mailbox for `usize::MAX`.
pub fn add_accounts(
    scenario: &Scenario,
    strategy: Strategy,
    service: &Service,
    password: &dyn Fn(usize) -> String,
) -> Result<Accounts, WorldError> {
    let mut accounts = Accounts {
        by_mailbox_id: HashMap::new(),
        mailboxes: Vec::with_capacity(scenario.mailboxes.len()),
        forward: None,
    };
    if scenario.uses_forward_mailbox(strategy) {
        let mut spec = AccountSpec::new(&scenario.forwarding.mailbox, password(usize::MAX));
        spec.policy = policy(scenario);
        let forward = service.add_account(spec)?;
        accounts
            .by_mailbox_id
            .insert(MailboxId::new(FORWARD_ID), Arc::clone(&forward));
        accounts.forward = Some(forward);
    }
    for (index, mailbox) in scenario.mailboxes.iter().enumerate() {
        let mut spec = AccountSpec::new(&mailbox.address, password(index));
        spec.policy = policy(scenario);
        let account = service.add_account(spec)?;
        if scenario.incoming(strategy, index) == Incoming::ViaForward {
            service.set_forward_rule(
                &mailbox.address,
                sim::ForwardRule {
                    to: scenario.forwarding.mailbox.clone(),
                    mode: scenario.forwarding.mode,
                    delay: scenario.forwarding.delay,
                },
            )?;
        }
        accounts
            .by_mailbox_id
            .insert(MailboxId::new(&mailbox.address), Arc::clone(&account));
        accounts.mailboxes.push(account);
    }
    Ok(accounts)
}

/// When each fault window ends, the engine mailboxes it struck, so that an
/// administrator can enable the ones the engine disabled meanwhile.
fn repairs(scenario: &Scenario, strategy: Strategy) -> Vec<(Duration, Vec<MailboxId>)> {
    if !scenario.cluster.enable_after_fault {
        return Vec::new();
    }
    let end = scenario.duration + scenario.drain;
    let mut repairs: Vec<(Duration, Vec<MailboxId>)> = scenario
        .faults
        .iter()
        .filter(|fault| !fault.kind.is_one_shot())
        .filter_map(|fault| {
            let until = fault.until.filter(|until| *until < end)?;
            let mailboxes = fault_accounts(scenario, strategy, &fault.target)
                .into_iter()
                .map(|target| match target {
                    Some(index) => MailboxId::new(&scenario.mailboxes[index].address),
                    None => MailboxId::new(FORWARD_ID),
                })
                .collect();
            Some((until, mailboxes))
        })
        .collect();
    repairs.sort_by_key(|(until, _)| *until);
    repairs
}

/// The accounts a fault strikes under `strategy`.
pub fn fault_accounts(
    scenario: &Scenario,
    strategy: Strategy,
    target: &FaultTarget,
) -> Vec<Option<usize>> {
    // `None` stands for the forward mailbox.
    match target {
        FaultTarget::Mailboxes(mailboxes) => mailboxes.iter().map(|&m| Some(m)).collect(),
        FaultTarget::ForwardMailbox => vec![None],
        FaultTarget::ReadsMailOf(mailboxes) => {
            let mut targets: Vec<Option<usize>> = mailboxes
                .iter()
                .map(|&m| match scenario.incoming(strategy, m) {
                    Incoming::Direct => Some(m),
                    Incoming::ViaForward => None,
                })
                .collect();
            targets.dedup();
            targets
        }
    }
}

/// Schedules the scenario's faults on the accounts they strike under
/// `strategy`, as offsets from the service clock's start.
pub fn schedule_faults(
    scenario: &Scenario,
    strategy: Strategy,
    service: &Service,
    accounts: &Accounts,
) {
    for fault in &scenario.faults {
        for target in fault_accounts(scenario, strategy, &fault.target) {
            let account = match target {
                Some(index) => &accounts.mailboxes[index],
                None => match &accounts.forward {
                    Some(forward) => forward,
                    // This strategy has no forward mailbox to break.
                    None => continue,
                },
            };
            let kind = match fault.kind {
                FaultKind::LoginRejected => sim::FaultKind::LoginRejected,
                FaultKind::ConnectionRefused => sim::FaultKind::ConnectionRefused,
                FaultKind::ResetAfterBytes(bytes) => sim::FaultKind::ResetAfterBytes(bytes),
                FaultKind::ResetMidFetch => sim::FaultKind::ResetMidFetch,
                FaultKind::Stall => sim::FaultKind::Stall,
                FaultKind::ServerError => sim::FaultKind::ServerError,
                FaultKind::UidValidityReset => {
                    service.schedule_action(
                        account,
                        sim::FaultAction::UidValidityReset,
                        fault.from,
                    );
                    continue;
                }
                FaultKind::CorruptMessage(count) => {
                    for _ in 0..count {
                        service.schedule_action(
                            account,
                            sim::FaultAction::CorruptMessage,
                            fault.from,
                        );
                    }
                    continue;
                }
            };
            account.faults().schedule(sim::ScheduledFault {
                kind,
                from: fault.from,
                until: fault.until,
            });
        }
    }
}

/// Checks that the engine accepts the configuration each of the scenario's
/// strategies builds, so that a scenario `mailsim check` passes also runs.
pub fn check_engine_configs(scenario: &Scenario) -> Result<(), String> {
    for &strategy in &scenario.strategies {
        engine_config(scenario, strategy)
            .validate()
            .map_err(|errors| {
                format!(
                    "{}: the {} strategy's engine configuration is invalid: {errors}",
                    scenario.file,
                    strategy.name()
                )
            })?;
    }
    Ok(())
}

fn engine_config(scenario: &Scenario, strategy: Strategy) -> Config {
    let cluster = &scenario.cluster;
    let protocol = match scenario.server.protocol {
        MailProtocol::Imap => engine::Protocol::Imap,
        MailProtocol::Pop3 => engine::Protocol::Pop3,
    };
    let port = match protocol {
        engine::Protocol::Imap => 143,
        engine::Protocol::Pop3 => 110,
    };
    let mut profile = ServerProfile::new(PROFILE_ID, "mailsim.test", port, protocol);
    profile.max_connections = cluster.max_connections as usize;

    let mut mailboxes = Vec::with_capacity(scenario.mailboxes.len() + 1);
    if scenario.uses_forward_mailbox(strategy) {
        mailboxes.push(
            MailboxConfig::forward(
                FORWARD_ID,
                Owner::queue(FORWARD_ID),
                &scenario.forwarding.mailbox,
                PROFILE_ID,
            )
            .with_credentials(Credentials::new(
                &scenario.forwarding.mailbox,
                password(usize::MAX),
            ))
            .with_delete_after_processing(true),
        );
    }
    for (index, mailbox) in scenario.mailboxes.iter().enumerate() {
        let group = scenario.group_of(index);
        let owner = match group.kind {
            GroupKind::User => Owner::user(&mailbox.address),
            GroupKind::Queue => Owner::queue(&mailbox.address),
        };
        let config = match scenario.incoming(strategy, index) {
            Incoming::Direct => MailboxConfig::direct(
                mailbox.address.as_str(),
                owner,
                &mailbox.address,
                PROFILE_ID,
            )
            .with_delete_after_processing(group.kind == GroupKind::Queue),
            Incoming::ViaForward => MailboxConfig::via_forward(
                mailbox.address.as_str(),
                owner,
                &mailbox.address,
                FORWARD_ID,
            ),
        };
        let filter = match group.tracking {
            Tracking::All => TrackingFilter::All,
            Tracking::Responses => TrackingFilter::ResponsesToTracked,
            Tracking::Contacts => TrackingFilter::FromKnownContacts,
            Tracking::None => TrackingFilter::None,
        };
        mailboxes.push(
            config
                .with_credentials(Credentials::new(&mailbox.address, password(index)))
                .with_filter(filter),
        );
    }
    let contacts = scenario
        .contacts
        .addresses
        .iter()
        .map(|address| Contact {
            name: address.clone(),
            address: address.clone(),
        })
        .collect();
    Config {
        profiles: vec![profile],
        mailboxes,
        contacts,
        settings: EngineSettings {
            nodes: cluster.nodes as usize,
            threads_per_node: cluster.threads_per_node as usize,
            poll_interval_min: cluster.poll_interval,
            poll_interval_idle_max: cluster.idle_poll_max,
            batch_size: cluster.batch_size as usize,
            max_messages_per_cycle: cluster.max_per_cycle as usize,
            retry: RetryPolicy {
                max_retries: cluster.max_retries,
                interval: cluster.retry_interval,
            },
            max_email_attempts: cluster.max_email_attempts,
            command_timeout: cluster.command_timeout,
            ..EngineSettings::default()
        },
    }
}

/// Registers the conversations the CRM tracked before the run, so replies
/// can correlate with them by Message-ID or tracking token.
fn seed_threads(scenario: &Scenario, store: &MemoryStore) {
    for thread in 0..scenario.threads {
        let token = store.track_outgoing(
            &traffic::thread_message_id(thread),
            &format!("Proposal {}", thread + 1),
            "CRM:",
        );
        debug_assert_eq!(&*token, traffic::thread_token(thread));
    }
}

/// Opens in-memory connections to the service, refusing them while the
/// mailbox's account has a connection-refused fault.
struct SimConnector {
    service: Service,
    accounts: HashMap<MailboxId, Arc<Account>>,
    protocol: MailProtocol,
}

impl Connector for SimConnector {
    type Stream = DuplexStream;

    async fn connect(&self, target: ConnectTarget<'_>) -> io::Result<DuplexStream> {
        let account = self.accounts.get(target.mailbox);
        if self
            .service
            .active_faults(account.map(Arc::as_ref))
            .connection_refused
        {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "connection refused by injected fault",
            ));
        }
        let protocol = match self.protocol {
            MailProtocol::Imap => sim::Protocol::Imap,
            MailProtocol::Pop3 => sim::Protocol::Pop3,
        };
        Ok(sim::server::connect(&self.service, protocol))
    }
}

/// A record store that spends the scenario's modelled cost per processed
/// message before it commits, as a real CRM spends time writing records.
pub struct CostStore {
    inner: MemoryStore,
    cost: Duration,
}

impl RecordStore for CostStore {
    async fn sync_state(&self, mailbox: &MailboxId) -> Result<SyncState, StoreError> {
        self.inner.sync_state(mailbox).await
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReport, StoreError> {
        let emails = batch
            .items
            .iter()
            .filter(|item| matches!(item.action, ItemAction::Email(_)))
            .count() as u32;
        if emails > 0 && !self.cost.is_zero() {
            tokio::time::sleep(self.cost * emails).await;
        }
        self.inner.commit(batch).await
    }
}

/// The recorder behind a lock, so the service and the engine can both feed it.
struct SharedRecorder(Mutex<Recorder>);

impl SharedRecorder {
    fn new(scenario: &Scenario, plan: &Arc<Plan>, start: Instant) -> Self {
        Self(Mutex::new(Recorder::new(scenario, plan, start)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self) -> Recorder {
        std::mem::take(&mut *self.lock())
    }
}

impl DeliveryObserver for SharedRecorder {
    fn on_delivery(&self, event: &sim::DeliveryEvent) {
        self.lock().delivery(event);
    }
}

impl engine::events::EventSink for SharedRecorder {
    fn emit(&self, event: engine::events::Event) {
        self.lock().engine_event(event);
    }
}
