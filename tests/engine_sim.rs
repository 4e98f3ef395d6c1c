//! The sync engine against the simulated mail service: IMAP and POP3 cycles,
//! forwarded copies, de-duplication, correlation, UIDVALIDITY resets,
//! connection resets and rejected credentials.
//!
//! Most tests reach the service over in-memory pipes (`sim::server::connect`
//! behind [`PipeConnector`]), so the engine and the service share one tokio
//! clock, paused where a schedule matters. The TCP tests start a [`MailSim`]
//! on loopback and use the engine's [`TcpConnector`] on a normal runtime,
//! because real sockets do not work with a paused clock.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engine::records::{Created, ImapCursor, Reason, SourceKey};
use engine::validate::ConfigErrors;
use engine::{
    Alert, AlertCode, Config, ConnectTarget, Connector, Credentials, CycleOutcome, EmailProcessed,
    Engine, EngineSettings, ErrorKind, ErrorLevel, Event, MailboxConfig, MailboxId, MailboxState,
    MemoryStore, Owner, Protocol, ServerProfile, Snapshot, SyncReport, TcpConnector,
    TrackingFilter, VecSink, sync_once,
};
use mail_builder::MessageBuilder;
use mail_builder::headers::date::Date;
use sim::service::DeliveryError;
use sim::store::Account;
use sim::{
    AccountPolicy, AccountSpec, FaultAction, FaultKind, ForwardMode, ForwardRule, MailSim,
    ScheduledFault, Service,
};
use tokio::io::DuplexStream;
use tokio::time::Instant;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PASSWORD: &str = "secret";
const PROFILE: &str = "sim";
const FORWARD: &str = "forward";
const MINUTE: Duration = Duration::from_secs(60);

/// Party records expected per (Message-ID, owner), as `Snapshot::party_counts`
/// returns them.
type PartyCounts = BTreeMap<(Arc<str>, Owner), usize>;

// ---------------------------------------------------------------------------
// Service, connector and configuration
// ---------------------------------------------------------------------------

/// Opens a new in-memory session of the profile's protocol for each
/// connection. Host and port are ignored.
#[derive(Clone)]
struct PipeConnector {
    service: Service,
}

impl Connector for PipeConnector {
    type Stream = DuplexStream;

    async fn connect(&self, target: ConnectTarget<'_>) -> io::Result<DuplexStream> {
        Ok(sim::server::connect(
            &self.service,
            sim_protocol(target.protocol()),
        ))
    }
}

fn sim_protocol(protocol: Protocol) -> sim::Protocol {
    match protocol {
        Protocol::Imap => sim::Protocol::Imap,
        Protocol::Pop3 => sim::Protocol::Pop3,
    }
}

fn address(name: &str) -> String {
    format!("{name}@example.com")
}

/// Builds a service, on the current runtime's clock, with one account per
/// name, each with [`PASSWORD`].
fn service_with(names: &[&str]) -> Service {
    let service = Service::builder().build();
    for name in names {
        service
            .add_account(AccountSpec::new(address(name), PASSWORD))
            .unwrap_or_else(|error| panic!("account {name} cannot be added: {error}"));
    }
    service
}

/// Starts a loopback server with one account per name.
async fn start_sim(names: &[&str]) -> Result<MailSim, sim::server::StartError> {
    let mut builder = MailSim::builder();
    for name in names {
        builder = builder.account(address(name), PASSWORD);
    }
    builder.start().await
}

fn account(service: &Service, name: &str) -> Arc<Account> {
    service
        .store()
        .account(&address(name))
        .unwrap_or_else(|| panic!("the service has no account {name}"))
}

fn inbox_len(service: &Service, name: &str) -> usize {
    account(service, name).mailboxes().inbox().len()
}

/// Forwards every message that reaches `name` to the forward mailbox at once.
fn forward_rule(service: &Service, name: &str, mode: ForwardMode) {
    let rule = ForwardRule {
        to: address(FORWARD),
        mode,
        delay: Duration::ZERO,
    };
    service
        .set_forward_rule(&address(name), rule)
        .unwrap_or_else(|error| panic!("forward rule of {name} rejected: {error}"));
}

/// Returns a profile for [`PipeConnector`], which ignores host and port.
fn pipe_profile(protocol: Protocol) -> ServerProfile {
    let port = match protocol {
        Protocol::Imap => 143,
        Protocol::Pop3 => 110,
    };
    ServerProfile::new(PROFILE, "sim.invalid", port, protocol)
}

/// Returns a profile for the loopback listener of `sim` that speaks `protocol`.
fn tcp_profile(sim: &MailSim, protocol: Protocol) -> ServerProfile {
    let listener = match protocol {
        Protocol::Imap => sim.imap_addr(),
        Protocol::Pop3 => sim.pop3_addr(),
    };
    let listener = listener.expect("MailSim enables IMAP and POP3 by default");
    ServerProfile::new(
        PROFILE,
        listener.ip().to_string(),
        listener.port(),
        protocol,
    )
}

/// Returns a user mailbox polled directly, logging in as its own account
/// and tracking all email.
fn user(name: &str) -> MailboxConfig {
    MailboxConfig::direct(name, Owner::user(name), address(name), PROFILE)
        .with_credentials(Credentials::new(address(name), PASSWORD))
        .with_filter(TrackingFilter::All)
}

/// Returns a queue mailbox polled directly and tracking all email.
fn queue(name: &str) -> MailboxConfig {
    MailboxConfig::direct(name, Owner::queue(name), address(name), PROFILE)
        .with_credentials(Credentials::new(address(name), PASSWORD))
        .with_filter(TrackingFilter::All)
}

/// Returns the forward mailbox that server-side rules copy mail into.
fn forward_mailbox() -> MailboxConfig {
    MailboxConfig::forward(FORWARD, Owner::user(FORWARD), address(FORWARD), PROFILE)
        .with_credentials(Credentials::new(address(FORWARD), PASSWORD))
}

/// Returns a mailbox whose mail reaches the engine through the forward
/// mailbox, tracking all email.
fn via_forward(name: &str, owner: Owner) -> MailboxConfig {
    MailboxConfig::via_forward(name, owner, address(name), FORWARD).with_filter(TrackingFilter::All)
}

fn config(profile: ServerProfile, mailboxes: Vec<MailboxConfig>) -> Config {
    Config {
        profiles: vec![profile],
        mailboxes,
        contacts: Vec::new(),
        settings: EngineSettings::default(),
    }
}

fn ids(names: &[&str]) -> Vec<MailboxId> {
    names.iter().map(MailboxId::new).collect()
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// Starts a message from an outside sender. `message_id` has no angle
/// brackets, and the date is fixed so that the bytes are the same in every
/// run.
fn builder<'a>(message_id: &'a str, subject: &'a str) -> MessageBuilder<'a> {
    MessageBuilder::new()
        .from(("Carol Customer", "carol@example.org"))
        .to("team@example.com")
        .message_id(message_id)
        .subject(subject)
        .date(Date::new(1_704_067_200))
        .text_body("Hello,\r\n\r\nplease see below.\r\n")
}

fn render(builder: MessageBuilder<'_>) -> Bytes {
    Bytes::from(
        builder
            .write_to_vec()
            .expect("writing a message into a Vec cannot fail"),
    )
}

fn message(message_id: &str, subject: &str) -> Bytes {
    render(builder(message_id, subject))
}

/// Delivers a new message with `message_id` to `name`, through its
/// forwarding rule if it has one.
fn deliver(service: &Service, name: &str, message_id: &str) -> Result<(), DeliveryError> {
    service.deliver(&address(name), message(message_id, "Order"), None)
}

// ---------------------------------------------------------------------------
// Engine runs and event queries
// ---------------------------------------------------------------------------

/// An engine polling a service over in-memory pipes, with every event it
/// emitted.
struct Running {
    engine: Engine<Arc<MemoryStore>, PipeConnector>,
    events: Arc<VecSink>,
    start: Instant,
}

impl Running {
    fn snapshot(&self) -> Snapshot {
        self.engine.store().snapshot()
    }
}

fn start_engine(service: &Service, config: Config) -> Result<Running, ConfigErrors> {
    let store = Arc::new(MemoryStore::new());
    let events = Arc::new(VecSink::new());
    let connector = PipeConnector {
        service: service.clone(),
    };
    let start = Instant::now();
    let engine = Engine::start(config, store, connector, events.clone())?;
    Ok(Running {
        engine,
        events,
        start,
    })
}

fn processed(events: &[Event]) -> Vec<&EmailProcessed> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::EmailProcessed(processed) => Some(processed),
            _ => None,
        })
        .collect()
}

/// Returns the decision for the message with `message_id`. Panics unless
/// there is exactly one.
fn decision<'a>(events: &'a [Event], message_id: &str) -> &'a EmailProcessed {
    let found: Vec<&EmailProcessed> = processed(events)
        .into_iter()
        .filter(|processed| processed.message_id.as_deref() == Some(message_id))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one decision for {message_id}: {found:?}"
    );
    found[0]
}

fn alerts(events: &[Event]) -> Vec<&Alert> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Alert(alert) => Some(alert),
            _ => None,
        })
        .collect()
}

/// Level and kind of every `Event::Error`.
fn errors(events: &[Event]) -> Vec<(ErrorLevel, ErrorKind)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Error { level, kind, .. } => Some((*level, *kind)),
            _ => None,
        })
        .collect()
}

/// Outcome and processed count of each ended cycle of `mailbox`, in order.
fn cycles_ended(events: &[Event], mailbox: &str) -> Vec<(CycleOutcome, usize)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::CycleEnded {
                mailbox: ended,
                outcome,
                processed,
                ..
            } if ended.as_str() == mailbox => Some((outcome.clone(), *processed)),
            _ => None,
        })
        .collect()
}

fn cycles_started(events: &[Event], mailbox: &str) -> usize {
    events
        .iter()
        .filter(|event| {
            matches!(event, Event::CycleStarted { mailbox: started, .. } if started.as_str() == mailbox)
        })
        .count()
}

/// Decisions per UID or UIDL: any count above 1 is a message processed twice.
fn decisions_per_key(events: &[Event]) -> BTreeMap<SourceKey, usize> {
    let mut counts = BTreeMap::new();
    for processed in processed(events) {
        *counts.entry(processed.key.clone()).or_insert(0) += 1;
    }
    counts
}

/// Builds the expected party counts: one record for each (Message-ID, owner).
fn once_each(parties: &[(&str, Owner)]) -> PartyCounts {
    parties
        .iter()
        .map(|(message_id, owner)| ((Arc::from(*message_id), owner.clone()), 1))
        .collect()
}

fn user_parties(name: &str, message_ids: &[&str]) -> Vec<(String, Owner)> {
    message_ids
        .iter()
        .map(|id| ((*id).to_owned(), Owner::user(name)))
        .collect()
}

fn expected_counts(parties: &[(String, Owner)]) -> PartyCounts {
    let borrowed: Vec<(&str, Owner)> = parties
        .iter()
        .map(|(id, owner)| (id.as_str(), owner.clone()))
        .collect();
    once_each(&borrowed)
}

// ---------------------------------------------------------------------------
// IMAP and POP3 cycles
// ---------------------------------------------------------------------------

/// Delivers three messages to alice, syncs twice, and checks that the first
/// sync records each message once and the second records nothing.
async fn sync_records_each_message_once<C: Connector>(
    service: &Service,
    profile: ServerProfile,
    connector: &C,
) -> TestResult {
    let protocol = profile.protocol;
    let message_ids = [
        "order-1@example.org",
        "order-2@example.org",
        "order-3@example.org",
    ];
    for id in message_ids {
        deliver(service, "alice", id)?;
    }
    let config = config(profile, vec![user("alice")]);
    let store = MemoryStore::new();

    let first = sync_once(&config, &ids(&["alice"]), &store, connector).await?;
    assert_eq!(first.mailboxes[0].error, None, "first sync failed");
    assert_eq!(first.records_created(), 3, "first sync records");
    for id in message_ids {
        let decision = decision(&first.events, id);
        assert_eq!(decision.reason, Reason::AcceptAll, "reason for {id}");
        assert_eq!(decision.created, Created::Activity, "records for {id}");
        assert_eq!(decision.party, Some(Owner::user("alice")), "party of {id}");
    }
    let snapshot = store.snapshot();
    assert_eq!(
        snapshot.party_counts(),
        expected_counts(&user_parties("alice", &message_ids)),
        "one party per message"
    );
    assert_eq!(snapshot.incoming_activities(), 3, "activities");

    let state = &snapshot.sync_states[&MailboxId::new("alice")];
    match protocol {
        Protocol::Imap => {
            let uid_validity = account(service, "alice").mailboxes().inbox().uid_validity();
            assert_eq!(
                state.imap,
                Some(ImapCursor {
                    uid_validity,
                    last_uid: 3
                }),
                "IMAP watermark after the first sync"
            );
        }
        Protocol::Pop3 => {
            assert_eq!(state.pop3_seen.len(), 3, "POP3 UIDLs recorded as seen");
        }
    }
    assert_eq!(
        inbox_len(service, "alice"),
        3,
        "a user mailbox keeps its mail on the server"
    );

    let second = sync_once(&config, &ids(&["alice"]), &store, connector).await?;
    assert_eq!(second.mailboxes[0].error, None, "second sync failed");
    assert_eq!(second.records_created(), 0, "second sync records");
    assert!(
        processed(&second.events).is_empty(),
        "second sync decided messages again: {:?}",
        processed(&second.events)
    );
    assert_eq!(
        store.snapshot().activities,
        snapshot.activities,
        "activities changed"
    );
    Ok(())
}

#[tokio::test]
async fn imap_cycle_records_each_message_once() -> TestResult {
    let service = service_with(&["alice"]);
    let connector = PipeConnector {
        service: service.clone(),
    };
    sync_records_each_message_once(&service, pipe_profile(Protocol::Imap), &connector).await
}

#[tokio::test]
async fn pop3_cycle_records_each_message_once() -> TestResult {
    let service = service_with(&["alice"]);
    let connector = PipeConnector {
        service: service.clone(),
    };
    sync_records_each_message_once(&service, pipe_profile(Protocol::Pop3), &connector).await
}

#[tokio::test]
async fn imap_cycle_over_tcp_records_each_message_once() -> TestResult {
    let sim = start_sim(&["alice"]).await?;
    let profile = tcp_profile(&sim, Protocol::Imap);
    sync_records_each_message_once(sim.service(), profile, &TcpConnector).await?;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn pop3_cycle_over_tcp_records_each_message_once() -> TestResult {
    let sim = start_sim(&["alice"]).await?;
    let profile = tcp_profile(&sim, Protocol::Pop3);
    sync_records_each_message_once(sim.service(), profile, &TcpConnector).await?;
    sim.shutdown().await;
    Ok(())
}

/// Runs the engine's schedule: the first cycle at start, then one poll
/// interval after each cycle that found mail.
async fn new_mail_is_synced_at_next_poll(protocol: Protocol) -> TestResult {
    let service = service_with(&["alice"]);
    deliver(&service, "alice", "first@example.org")?;
    deliver(&service, "alice", "second@example.org")?;
    let config = config(pipe_profile(protocol), vec![user("alice")]);
    let interval = config.settings.poll_interval_min;
    let running = start_engine(&service, config)?;

    tokio::time::sleep_until(running.start + MINUTE).await;
    assert_eq!(running.snapshot().incoming_activities(), 2, "first cycle");
    let events = running.events.events();
    let first_end = events
        .iter()
        .find_map(|event| match event {
            Event::CycleEnded { at, .. } => Some(*at),
            _ => None,
        })
        .ok_or("the first cycle did not end")?;
    let mailbox = MailboxId::new("alice");
    assert_eq!(
        running.engine.next_poll(&mailbox),
        Some(first_end + interval),
        "next poll is one minimum interval after the cycle that found mail"
    );

    deliver(&service, "alice", "third@example.org")?;
    tokio::time::sleep_until(first_end + interval - Duration::from_secs(1)).await;
    assert_eq!(
        running.snapshot().incoming_activities(),
        2,
        "new mail is not synced before the next poll"
    );

    tokio::time::sleep_until(first_end + interval + MINUTE).await;
    let snapshot = running.snapshot();
    assert_eq!(
        snapshot.party_counts(),
        expected_counts(&user_parties(
            "alice",
            &[
                "first@example.org",
                "second@example.org",
                "third@example.org"
            ]
        )),
        "every message once after the second cycle"
    );
    let events = running.events.events();
    let ended = cycles_ended(&events, "alice");
    assert_eq!(
        ended,
        [(CycleOutcome::Completed, 2), (CycleOutcome::Completed, 1)],
        "cycles and messages processed by each"
    );
    running.engine.stop().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_new_mail_is_synced_at_next_poll() -> TestResult {
    new_mail_is_synced_at_next_poll(Protocol::Imap).await
}

#[tokio::test(start_paused = true)]
async fn pop3_new_mail_is_synced_at_next_poll() -> TestResult {
    new_mail_is_synced_at_next_poll(Protocol::Pop3).await
}

async fn queue_mailbox_deletes_processed_mail(protocol: Protocol) -> TestResult {
    let service = service_with(&["support"]);
    for id in [
        "ticket-1@example.org",
        "ticket-2@example.org",
        "ticket-3@example.org",
    ] {
        deliver(&service, "support", id)?;
    }
    let config = config(
        pipe_profile(protocol),
        vec![queue("support").with_delete_after_processing(true)],
    );
    let store = MemoryStore::new();
    let connector = PipeConnector {
        service: service.clone(),
    };

    let first = sync_once(&config, &ids(&["support"]), &store, &connector).await?;
    assert_eq!(first.mailboxes[0].error, None, "first sync failed");
    assert_eq!(first.records_created(), 3, "first sync records");
    assert_eq!(inbox_len(&service, "support"), 0, "processed mail deleted");

    deliver(&service, "support", "ticket-4@example.org")?;
    let second = sync_once(&config, &ids(&["support"]), &store, &connector).await?;
    assert_eq!(second.mailboxes[0].error, None, "second sync failed");
    assert_eq!(second.records_created(), 1, "second sync records");
    assert_eq!(inbox_len(&service, "support"), 0, "new mail deleted too");

    let snapshot = store.snapshot();
    let tickets = [
        "ticket-1@example.org",
        "ticket-2@example.org",
        "ticket-3@example.org",
        "ticket-4@example.org",
    ];
    let parties: Vec<(&str, Owner)> = tickets
        .iter()
        .map(|id| (*id, Owner::queue("support")))
        .collect();
    assert_eq!(
        snapshot.party_counts(),
        once_each(&parties),
        "one party each"
    );
    assert_eq!(snapshot.queue_items.len(), 4, "one queue item per message");
    Ok(())
}

#[tokio::test]
async fn imap_queue_mailbox_deletes_processed_mail() -> TestResult {
    queue_mailbox_deletes_processed_mail(Protocol::Imap).await
}

#[tokio::test]
async fn pop3_queue_mailbox_deletes_processed_mail() -> TestResult {
    queue_mailbox_deletes_processed_mail(Protocol::Pop3).await
}

// ---------------------------------------------------------------------------
// Forward mailbox
// ---------------------------------------------------------------------------

async fn forward_copy_is_attributed_to_forwarding_user(protocol: Protocol) -> TestResult {
    let service = service_with(&["alice", FORWARD]);
    forward_rule(&service, "alice", ForwardMode::Attachment);
    deliver(&service, "alice", "order-1@example.org")?;
    assert_eq!(inbox_len(&service, FORWARD), 1, "the rule forwarded a copy");
    let config = config(
        pipe_profile(protocol),
        vec![
            forward_mailbox(),
            via_forward("alice", Owner::user("alice")),
        ],
    );
    let store = MemoryStore::new();
    let connector = PipeConnector {
        service: service.clone(),
    };

    let report = sync_once(&config, &ids(&[FORWARD]), &store, &connector).await?;
    assert_eq!(report.mailboxes[0].error, None, "sync failed");
    let decision = decision(&report.events, "order-1@example.org");
    assert_eq!(decision.mailbox, MailboxId::new(FORWARD), "fetched by");
    assert_eq!(decision.party, Some(Owner::user("alice")), "attributed to");
    assert_eq!(decision.reason, Reason::AcceptAll, "reason");
    assert_eq!(decision.created, Created::Activity, "records");
    assert!(
        errors(&report.events).is_empty(),
        "errors: {:?}",
        errors(&report.events)
    );

    let snapshot = store.snapshot();
    assert_eq!(
        snapshot.party_counts(),
        once_each(&[("order-1@example.org", Owner::user("alice"))]),
        "the original's Message-ID with the forwarding user as party"
    );
    let party = &snapshot.parties[0];
    assert_eq!(party.mailbox, MailboxId::new("alice"), "party's mailbox");
    assert_eq!(
        party.fetched_by,
        MailboxId::new(FORWARD),
        "party fetched by"
    );
    assert_eq!(
        snapshot.activities[0].from.as_deref(),
        Some("carol@example.org"),
        "the activity's sender is the original's, not the forwarder's"
    );
    Ok(())
}

#[tokio::test]
async fn imap_forward_copy_is_attributed_to_forwarding_user() -> TestResult {
    forward_copy_is_attributed_to_forwarding_user(Protocol::Imap).await
}

#[tokio::test]
async fn pop3_forward_copy_is_attributed_to_forwarding_user() -> TestResult {
    forward_copy_is_attributed_to_forwarding_user(Protocol::Pop3).await
}

/// Delivers an inline copy from alice and, behind it, an attached copy
/// from bob: the inline copy is one email-level error, reported once, and
/// bob's copy is still recorded.
async fn inline_forward_is_email_error(protocol: Protocol) -> TestResult {
    let service = service_with(&["alice", "bob", FORWARD]);
    forward_rule(&service, "alice", ForwardMode::Inline);
    forward_rule(&service, "bob", ForwardMode::Attachment);
    deliver(&service, "alice", "inline@example.org")?;
    deliver(&service, "bob", "attached@example.org")?;
    let config = config(
        pipe_profile(protocol),
        vec![
            forward_mailbox(),
            via_forward("alice", Owner::user("alice")),
            via_forward("bob", Owner::user("bob")),
        ],
    );
    let store = MemoryStore::new();
    let connector = PipeConnector {
        service: service.clone(),
    };

    let first = sync_once(&config, &ids(&[FORWARD]), &store, &connector).await?;
    assert_eq!(
        first.mailboxes[0].error, None,
        "the mailbox itself did not fail"
    );
    assert!(
        !first.mailboxes[0].blocked,
        "the inline copy blocks nothing"
    );
    let decisions = processed(&first.events);
    assert_eq!(decisions.len(), 2, "decisions: {decisions:?}");
    // The inline copy's decision carries the wrapper's Message-ID, not an
    // original's.
    let inline = decisions
        .iter()
        .find(|processed| processed.message_id.as_deref() != Some("attached@example.org"))
        .ok_or("no decision for the inline copy")?;
    assert_eq!(
        inline.reason,
        Reason::NotForwardedAsAttachment,
        "inline copy"
    );
    assert_eq!(inline.created, Created::Nothing, "inline copy records");
    assert_eq!(inline.party, None, "inline copy is attributed to no one");
    assert_eq!(
        errors(&first.events),
        [(ErrorLevel::Email, ErrorKind::NotForwardedAsAttachment)],
        "one email-level error"
    );
    assert!(
        alerts(&first.events).is_empty(),
        "no alert for an email error"
    );
    assert_eq!(
        decision(&first.events, "attached@example.org").reason,
        Reason::AcceptAll,
        "the attached copy behind it is still processed"
    );
    assert_eq!(
        store.snapshot().party_counts(),
        once_each(&[("attached@example.org", Owner::user("bob"))]),
        "only the attached copy becomes records"
    );

    let second = sync_once(&config, &ids(&[FORWARD]), &store, &connector).await?;
    assert!(
        processed(&second.events).is_empty(),
        "the inline copy was processed again: {:?}",
        processed(&second.events)
    );
    assert!(
        errors(&second.events).is_empty(),
        "the error was reported again: {:?}",
        errors(&second.events)
    );
    Ok(())
}

#[tokio::test]
async fn imap_inline_forward_is_email_error() -> TestResult {
    inline_forward_is_email_error(Protocol::Imap).await
}

#[tokio::test]
async fn pop3_inline_forward_is_email_error() -> TestResult {
    inline_forward_is_email_error(Protocol::Pop3).await
}

// ---------------------------------------------------------------------------
// De-duplication by Message-ID
// ---------------------------------------------------------------------------

#[tokio::test]
async fn message_to_user_and_queue_is_one_activity() -> TestResult {
    let service = service_with(&["alice", "support"]);
    let raw = message("shared@example.org", "Order");
    service.deliver(&address("alice"), raw.clone(), None)?;
    service.deliver(&address("support"), raw, None)?;
    let config = config(
        pipe_profile(Protocol::Imap),
        vec![user("alice"), queue("support")],
    );
    let store = MemoryStore::new();
    let connector = PipeConnector {
        service: service.clone(),
    };

    let report = sync_once(&config, &ids(&["alice", "support"]), &store, &connector).await?;
    let decisions = processed(&report.events);
    assert_eq!(decisions.len(), 2, "decisions: {decisions:?}");
    assert_eq!(
        (
            decisions[0].mailbox.as_str(),
            decisions[0].reason,
            decisions[0].created
        ),
        ("alice", Reason::AcceptAll, Created::Activity),
        "the first mailbox creates the activity"
    );
    assert_eq!(
        (
            decisions[1].mailbox.as_str(),
            decisions[1].reason,
            decisions[1].created
        ),
        ("support", Reason::Duplicate, Created::Party),
        "the second mailbox adds a party"
    );

    let snapshot = store.snapshot();
    assert_eq!(snapshot.incoming_activities(), 1, "one activity");
    assert_eq!(
        snapshot.party_counts(),
        once_each(&[
            ("shared@example.org", Owner::user("alice")),
            ("shared@example.org", Owner::queue("support")),
        ]),
        "one party per owner"
    );
    assert_eq!(
        snapshot.queue_items.len(),
        1,
        "queue items: {:?}",
        snapshot.queue_items
    );
    assert_eq!(
        &*snapshot.queue_items[0].queue, "support",
        "queue item's queue"
    );

    let again = sync_once(&config, &ids(&["alice", "support"]), &store, &connector).await?;
    assert_eq!(again.records_created(), 0, "a second sync adds nothing");
    assert_eq!(
        store.snapshot(),
        snapshot,
        "records changed on a second sync"
    );
    Ok(())
}

#[tokio::test]
async fn direct_and_forwarded_copies_share_one_activity() -> TestResult {
    // A mixed deployment: alice is polled directly, the support queue
    // through the forward mailbox.
    let service = service_with(&["alice", "support", FORWARD]);
    forward_rule(&service, "support", ForwardMode::Attachment);
    let raw = message("shared@example.org", "Order");
    service.deliver(&address("support"), raw.clone(), None)?;
    service.deliver(&address("alice"), raw, None)?;
    let config = config(
        pipe_profile(Protocol::Imap),
        vec![
            user("alice"),
            forward_mailbox(),
            via_forward("support", Owner::queue("support")),
        ],
    );
    let store = MemoryStore::new();
    let connector = PipeConnector {
        service: service.clone(),
    };

    let report = sync_once(&config, &ids(&[FORWARD, "alice"]), &store, &connector).await?;
    let decisions = processed(&report.events);
    assert_eq!(decisions.len(), 2, "decisions: {decisions:?}");
    assert_eq!(
        (
            decisions[0].party.clone(),
            decisions[0].reason,
            decisions[0].created
        ),
        (
            Some(Owner::queue("support")),
            Reason::AcceptAll,
            Created::Activity
        ),
        "the forwarded copy creates the activity"
    );
    assert_eq!(
        (
            decisions[1].party.clone(),
            decisions[1].reason,
            decisions[1].created
        ),
        (
            Some(Owner::user("alice")),
            Reason::Duplicate,
            Created::Party
        ),
        "alice's own copy adds a party"
    );

    let snapshot = store.snapshot();
    assert_eq!(snapshot.incoming_activities(), 1, "one activity");
    assert_eq!(
        snapshot.party_counts(),
        once_each(&[
            ("shared@example.org", Owner::user("alice")),
            ("shared@example.org", Owner::queue("support")),
        ]),
        "one party per owner"
    );
    assert_eq!(
        snapshot.queue_items.len(),
        1,
        "queue items: {:?}",
        snapshot.queue_items
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn concurrent_cycles_create_one_activity_per_message() -> TestResult {
    // The same twenty messages reach two users and a queue whose cycles run
    // at the same time on one node. Messages larger than the in-memory pipe
    // and a latency per command make the cycles wait in turn, so their
    // commits interleave.
    let names = ["alice", "bob", "support"];
    let service = service_with(&names);
    for name in names {
        account(&service, name).set_policy(AccountPolicy {
            command_latency: Duration::from_millis(5),
            ..AccountPolicy::default()
        });
    }
    let body = "All work and no play.\r\n".repeat(LARGE_BODY / 23);
    let message_ids: Vec<String> = (1..=20)
        .map(|i| format!("shared-{i}@example.org"))
        .collect();
    for id in &message_ids {
        let raw = render(builder(id, "Order").text_body(body.as_str()));
        for name in names {
            service.deliver(&address(name), raw.clone(), None)?;
        }
    }
    let mut config = config(
        pipe_profile(Protocol::Imap),
        vec![user("alice"), user("bob"), queue("support")],
    );
    config.settings.batch_size = 3;
    let running = start_engine(&service, config)?;

    tokio::time::sleep_until(running.start + MINUTE).await;
    let events = running.events.events();
    for name in names {
        assert_eq!(
            cycles_ended(&events, name),
            [(CycleOutcome::Completed, 20)],
            "{name}'s cycles"
        );
    }
    let mut parties = Vec::new();
    for id in &message_ids {
        parties.push((id.as_str(), Owner::user("alice")));
        parties.push((id.as_str(), Owner::user("bob")));
        parties.push((id.as_str(), Owner::queue("support")));
    }
    let snapshot = running.snapshot();
    assert_eq!(
        snapshot.incoming_activities(),
        20,
        "one activity per Message-ID"
    );
    assert_eq!(
        snapshot.party_counts(),
        once_each(&parties),
        "one party per owner"
    );
    assert_eq!(snapshot.queue_items.len(), 20, "one queue item per message");
    // Decisions of cycles that ran one after another would switch mailbox
    // only twice.
    let order: Vec<&str> = processed(&events)
        .iter()
        .map(|processed| processed.mailbox.as_str())
        .collect();
    let switches = order.windows(2).filter(|pair| pair[0] != pair[1]).count();
    assert!(switches > 2, "the cycles did not interleave: {order:?}");
    let created = processed(&events)
        .iter()
        .filter(|processed| processed.created == Created::Activity)
        .count();
    assert_eq!(created, 20, "decisions that created an activity");
    running.engine.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Correlation
// ---------------------------------------------------------------------------

const PROPOSAL: &str = "proposal@crm.example.com";
const OTHER: &str = "other@crm.example.com";
const REPLY: &str = "reply@example.org";

/// Tracks two outgoing emails, delivers `mail` (Message-ID `message_id`) to
/// alice, whose filter tracks only replies to tracked email, and syncs once.
/// Returns the records, the sync report, and the activity ids of the two
/// tracked emails.
async fn sync_reply(
    message_id: &str,
    mail: MessageBuilder<'_>,
) -> Result<(Snapshot, SyncReport, [u64; 2]), Box<dyn std::error::Error>> {
    let service = service_with(&["alice"]);
    service.deliver(&address("alice"), render(mail), None)?;
    let config = config(
        pipe_profile(Protocol::Imap),
        vec![user("alice").with_filter(TrackingFilter::ResponsesToTracked)],
    );
    let prefix = config.settings.tracking_token_prefix.clone();
    let store = MemoryStore::new();
    let proposal_token = store.track_outgoing(PROPOSAL, "Proposal", &prefix);
    let other_token = store.track_outgoing(OTHER, "Other offer", &prefix);
    assert_eq!(&*proposal_token, "CRM:0000001", "first tracking token");
    assert_eq!(&*other_token, "CRM:0000002", "second tracking token");
    let tracked = {
        let records = store.records();
        let id = |tracked: &str| records.activity_by_message_id(tracked).map(|a| a.id);
        [
            id(PROPOSAL).ok_or("proposal is not tracked")?,
            id(OTHER).ok_or("other offer is not tracked")?,
        ]
    };
    let connector = PipeConnector { service };

    let report = sync_once(&config, &ids(&["alice"]), &store, &connector).await?;
    assert_eq!(report.mailboxes[0].error, None, "sync failed");
    assert_eq!(
        processed(&report.events).len(),
        1,
        "one decision for {message_id}"
    );
    Ok((store.snapshot(), report, tracked))
}

/// Asserts that [`REPLY`] became an activity correlated with `tracked`.
fn assert_reply_regarding(snapshot: &Snapshot, report: &SyncReport, tracked: u64) {
    let decision = decision(&report.events, REPLY);
    assert_eq!(decision.reason, Reason::CorrelationMatch, "reason");
    assert_eq!(decision.created, Created::Activity, "records");
    let activity = snapshot
        .activities
        .iter()
        .find(|activity| &*activity.message_id == REPLY)
        .unwrap_or_else(|| panic!("no activity for {REPLY}"));
    assert_eq!(activity.regarding, Some(tracked), "regarding");
}

#[tokio::test]
async fn reply_correlates_by_in_reply_to() -> TestResult {
    let reply = builder(REPLY, "Re: your offer").in_reply_to(PROPOSAL);
    let (snapshot, report, [proposal, _]) = sync_reply(REPLY, reply).await?;
    assert_reply_regarding(&snapshot, &report, proposal);
    Ok(())
}

#[tokio::test]
async fn reply_correlates_by_tracking_token() -> TestResult {
    let reply = builder(REPLY, "Re: Proposal CRM:0000001");
    let (snapshot, report, [proposal, _]) = sync_reply(REPLY, reply).await?;
    assert_reply_regarding(&snapshot, &report, proposal);
    Ok(())
}

#[tokio::test]
async fn reply_correlates_by_references() -> TestResult {
    let references = vec![
        "unknown@elsewhere.example",
        PROPOSAL,
        "also-unknown@elsewhere.example",
    ];
    let reply = builder(REPLY, "Re: your offer").references(references);
    let (snapshot, report, [proposal, _]) = sync_reply(REPLY, reply).await?;
    assert_reply_regarding(&snapshot, &report, proposal);
    Ok(())
}

#[tokio::test]
async fn references_prefer_newest_tracked_entry() -> TestResult {
    // References lists the oldest first, so the last tracked entry is the
    // message replied to.
    let references = vec![PROPOSAL, OTHER, "unknown@elsewhere.example"];
    let reply = builder(REPLY, "Re: your offer").references(references);
    let (snapshot, report, [_, other]) = sync_reply(REPLY, reply).await?;
    assert_reply_regarding(&snapshot, &report, other);
    Ok(())
}

#[tokio::test]
async fn in_reply_to_wins_over_tracking_token() -> TestResult {
    // In-Reply-To names the proposal while the subject carries the token of
    // the other offer, and In-Reply-To is checked first.
    let reply = builder(REPLY, "Re: Other offer CRM:0000002").in_reply_to(PROPOSAL);
    let (snapshot, report, [proposal, _]) = sync_reply(REPLY, reply).await?;
    assert_reply_regarding(&snapshot, &report, proposal);
    Ok(())
}

#[tokio::test]
async fn uncorrelated_mail_is_not_tracked() -> TestResult {
    let mail = builder("hello@example.org", "Hello")
        .in_reply_to("unknown@elsewhere.example")
        .references("unknown@elsewhere.example");
    let (snapshot, report, _) = sync_reply("hello@example.org", mail).await?;
    let decision = decision(&report.events, "hello@example.org");
    assert_eq!(decision.reason, Reason::NoCorrelationMatch, "reason");
    assert_eq!(decision.created, Created::Nothing, "records");
    assert_eq!(snapshot.incoming_activities(), 0, "incoming activities");
    Ok(())
}

// ---------------------------------------------------------------------------
// UIDVALIDITY reset
// ---------------------------------------------------------------------------

/// Syncs three messages, resets the INBOX's UIDVALIDITY (every message gets
/// a new UID), delivers a fourth and syncs again: the full resync recognises
/// the first three as duplicates and records only the fourth.
async fn uid_validity_reset_resyncs_without_duplicates<C: Connector>(
    service: &Service,
    profile: ServerProfile,
    connector: &C,
) -> TestResult {
    let before = [
        "old-1@example.org",
        "old-2@example.org",
        "old-3@example.org",
    ];
    for id in before {
        deliver(service, "alice", id)?;
    }
    let config = config(profile, vec![user("alice")]);
    let store = MemoryStore::new();
    let first = sync_once(&config, &ids(&["alice"]), &store, connector).await?;
    assert_eq!(first.records_created(), 3, "first sync records");

    let alice = account(service, "alice");
    let old_validity = alice.mailboxes().inbox().uid_validity();
    service.trigger(&alice, FaultAction::UidValidityReset);
    let new_validity = alice.mailboxes().inbox().uid_validity();
    assert_ne!(old_validity, new_validity, "the sim changed UIDVALIDITY");
    deliver(service, "alice", "new@example.org")?;

    let second = sync_once(&config, &ids(&["alice"]), &store, connector).await?;
    assert_eq!(second.mailboxes[0].error, None, "resync failed");
    for id in before {
        let decision = decision(&second.events, id);
        assert_eq!(decision.reason, Reason::Duplicate, "reason for {id}");
        assert_eq!(decision.created, Created::Nothing, "records for {id}");
    }
    let new = decision(&second.events, "new@example.org");
    assert_eq!(new.reason, Reason::AcceptAll, "reason for the new message");
    assert_eq!(new.key, SourceKey::Uid(4), "UID of the new message");

    let snapshot = store.snapshot();
    let mut all = before.to_vec();
    all.push("new@example.org");
    assert_eq!(
        snapshot.party_counts(),
        expected_counts(&user_parties("alice", &all)),
        "every message once after the resync"
    );
    assert_eq!(
        snapshot.sync_states[&MailboxId::new("alice")].imap,
        Some(ImapCursor {
            uid_validity: new_validity,
            last_uid: 4
        }),
        "the watermark follows the new UIDVALIDITY"
    );
    Ok(())
}

#[tokio::test]
async fn uid_validity_reset_resyncs_without_duplicates_over_pipe() -> TestResult {
    let service = service_with(&["alice"]);
    let connector = PipeConnector {
        service: service.clone(),
    };
    uid_validity_reset_resyncs_without_duplicates(
        &service,
        pipe_profile(Protocol::Imap),
        &connector,
    )
    .await
}

#[tokio::test]
async fn uid_validity_reset_resyncs_without_duplicates_over_tcp() -> TestResult {
    let sim = start_sim(&["alice"]).await?;
    let profile = tcp_profile(&sim, Protocol::Imap);
    uid_validity_reset_resyncs_without_duplicates(sim.service(), profile, &TcpConnector).await?;
    sim.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Connection reset in mid-FETCH
// ---------------------------------------------------------------------------

/// Runs the engine while alice's account cuts every download half-way
/// through the first message from minute 1 to minute 6: the first cycle (at
/// 0) syncs two messages, the second (at 5 minutes) is cut while fetching
/// three new ones, and the retry (5 minutes later) syncs them.
async fn reset_mid_fetch_is_retried_without_loss(protocol: Protocol) -> TestResult {
    let service = service_with(&["alice"]);
    deliver(&service, "alice", "before-1@example.org")?;
    deliver(&service, "alice", "before-2@example.org")?;
    account(&service, "alice")
        .faults()
        .schedule(ScheduledFault {
            kind: FaultKind::ResetMidFetch,
            from: MINUTE,
            until: Some(6 * MINUTE),
        });
    let config = config(pipe_profile(protocol), vec![user("alice")]);
    let retry_interval = config.settings.retry.interval;
    let running = start_engine(&service, config)?;

    tokio::time::sleep_until(running.start + MINUTE).await;
    let after = [
        "after-1@example.org",
        "after-2@example.org",
        "after-3@example.org",
    ];
    for id in after {
        deliver(&service, "alice", id)?;
    }
    tokio::time::sleep_until(running.start + 5 * MINUTE + retry_interval + MINUTE).await;

    let events = running.events.events();
    let ended = cycles_ended(&events, "alice");
    let reset = CycleOutcome::Failed {
        kind: ErrorKind::ConnectionReset,
        retry: true,
    };
    assert_eq!(
        ended,
        [
            (CycleOutcome::Completed, 2),
            (reset, 0),
            (CycleOutcome::Completed, 3)
        ],
        "cycles: synced, cut in mid-FETCH, retried"
    );
    assert_eq!(
        errors(&events),
        [(ErrorLevel::Mailbox, ErrorKind::ConnectionReset)],
        "one mailbox-level error"
    );
    assert!(alerts(&events).is_empty(), "alerts: {:?}", alerts(&events));
    let per_key = decisions_per_key(&events);
    assert_eq!(per_key.len(), 5, "messages decided: {per_key:?}");
    assert!(
        per_key.values().all(|&count| count == 1),
        "a message was decided twice: {per_key:?}"
    );

    let mut all = vec!["before-1@example.org", "before-2@example.org"];
    all.extend(after);
    assert_eq!(
        running.snapshot().party_counts(),
        expected_counts(&user_parties("alice", &all)),
        "every message once, none lost"
    );
    let status = running
        .engine
        .mailbox_status(&MailboxId::new("alice"))
        .ok_or("alice has no status")?;
    assert_eq!(
        status.consecutive_failures, 0,
        "the retry cleared the failure"
    );
    assert_eq!(status.state, MailboxState::Waiting, "alice is still polled");
    running.engine.stop().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_reset_mid_fetch_is_retried_without_loss() -> TestResult {
    reset_mid_fetch_is_retried_without_loss(Protocol::Imap).await
}

#[tokio::test(start_paused = true)]
async fn pop3_reset_mid_fetch_is_retried_without_loss() -> TestResult {
    reset_mid_fetch_is_retried_without_loss(Protocol::Pop3).await
}

/// Body size, in bytes, of the messages in the byte-count reset tests. The
/// cut at [`CUT_AFTER_BYTES`] then comes after at least two whole messages
/// plus the login and listing, and before the fourth message ends.
const LARGE_BODY: usize = 10_000;
const CUT_AFTER_BYTES: u64 = 35_000;

/// Cuts every connection after [`CUT_AFTER_BYTES`], so a cycle commits a
/// batch of two messages and fails part-way through the next batch. The
/// retries resume from the committed state until all six are in.
async fn reset_after_committed_batch_resumes(protocol: Protocol) -> TestResult {
    let service = service_with(&["alice"]);
    let body = "All work and no play.\r\n".repeat(LARGE_BODY / 23);
    let message_ids: Vec<String> = (1..=6).map(|i| format!("large-{i}@example.org")).collect();
    for id in &message_ids {
        let raw = render(builder(id, "Large order").text_body(body.as_str()));
        service.deliver(&address("alice"), raw, None)?;
    }
    account(&service, "alice")
        .faults()
        .switch_on(FaultKind::ResetAfterBytes(CUT_AFTER_BYTES));
    let mut config = config(pipe_profile(protocol), vec![user("alice")]);
    config.settings.batch_size = 2;
    let running = start_engine(&service, config)?;

    tokio::time::sleep_until(running.start + 60 * MINUTE).await;
    let events = running.events.events();
    let ended = cycles_ended(&events, "alice");
    assert!(
        ended.iter().any(|(outcome, processed)| {
            *processed > 0
                && matches!(
                    outcome,
                    CycleOutcome::Failed {
                        kind: ErrorKind::ConnectionReset,
                        ..
                    }
                )
        }),
        "no cycle was cut after committing a batch: {ended:?}"
    );
    assert!(alerts(&events).is_empty(), "alerts: {:?}", alerts(&events));
    let per_key = decisions_per_key(&events);
    assert_eq!(per_key.len(), 6, "messages decided: {per_key:?}");
    assert!(
        per_key.values().all(|&count| count == 1),
        "a message was decided twice: {per_key:?}"
    );
    let ids: Vec<&str> = message_ids.iter().map(String::as_str).collect();
    assert_eq!(
        running.snapshot().party_counts(),
        expected_counts(&user_parties("alice", &ids)),
        "every message once, none lost"
    );
    running.engine.stop().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_reset_after_committed_batch_resumes() -> TestResult {
    reset_after_committed_batch_resumes(Protocol::Imap).await
}

#[tokio::test(start_paused = true)]
async fn pop3_reset_after_committed_batch_resumes() -> TestResult {
    reset_after_committed_batch_resumes(Protocol::Pop3).await
}

/// Runs the byte-count reset on a queue mailbox that deletes processed mail.
/// Messages committed by a cut cycle, whose deletion never ran, are deleted
/// by a later cycle, and none is recorded twice.
async fn cut_cycles_still_delete_committed_mail(protocol: Protocol) -> TestResult {
    let service = service_with(&["support"]);
    let body = "All work and no play.\r\n".repeat(LARGE_BODY / 23);
    let message_ids: Vec<String> = (1..=6).map(|i| format!("large-{i}@example.org")).collect();
    for id in &message_ids {
        let raw = render(builder(id, "Large order").text_body(body.as_str()));
        service.deliver(&address("support"), raw, None)?;
    }
    account(&service, "support")
        .faults()
        .switch_on(FaultKind::ResetAfterBytes(CUT_AFTER_BYTES));
    let mailbox = queue("support").with_delete_after_processing(true);
    let mut config = config(pipe_profile(protocol), vec![mailbox]);
    config.settings.batch_size = 2;
    let running = start_engine(&service, config)?;

    tokio::time::sleep_until(running.start + 60 * MINUTE).await;
    let events = running.events.events();
    let ended = cycles_ended(&events, "support");
    assert!(
        ended.iter().any(|(outcome, processed)| {
            *processed > 0
                && matches!(
                    outcome,
                    CycleOutcome::Failed {
                        kind: ErrorKind::ConnectionReset,
                        ..
                    }
                )
        }),
        "no cycle was cut after committing a batch: {ended:?}"
    );
    assert_eq!(
        inbox_len(&service, "support"),
        0,
        "messages left on the server"
    );
    let per_key = decisions_per_key(&events);
    assert!(
        per_key.values().all(|&count| count == 1),
        "a message was decided twice: {per_key:?}"
    );
    let parties: Vec<(&str, Owner)> = message_ids
        .iter()
        .map(|id| (id.as_str(), Owner::queue("support")))
        .collect();
    let snapshot = running.snapshot();
    assert_eq!(
        snapshot.party_counts(),
        once_each(&parties),
        "every message once"
    );
    assert_eq!(snapshot.queue_items.len(), 6, "one queue item per message");
    running.engine.stop().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_cut_cycles_still_delete_committed_mail() -> TestResult {
    cut_cycles_still_delete_committed_mail(Protocol::Imap).await
}

#[tokio::test(start_paused = true)]
async fn pop3_cut_cycles_still_delete_committed_mail() -> TestResult {
    cut_cycles_still_delete_committed_mail(Protocol::Pop3).await
}

/// Runs the mid-FETCH reset over TCP with one-shot syncs: the fault is
/// switched on for one sync and off for the next.
async fn reset_mid_fetch_over_tcp_loses_nothing(protocol: Protocol) -> TestResult {
    let sim = start_sim(&["alice"]).await?;
    let service = sim.service();
    deliver(service, "alice", "before-1@example.org")?;
    deliver(service, "alice", "before-2@example.org")?;
    let config = config(tcp_profile(&sim, protocol), vec![user("alice")]);
    let store = MemoryStore::new();
    let alice = ids(&["alice"]);

    let first = sync_once(&config, &alice, &store, &TcpConnector).await?;
    assert_eq!(first.records_created(), 2, "first sync records");

    let after = [
        "after-1@example.org",
        "after-2@example.org",
        "after-3@example.org",
    ];
    for id in after {
        deliver(service, "alice", id)?;
    }
    account(service, "alice")
        .faults()
        .switch_on(FaultKind::ResetMidFetch);
    let cut = sync_once(&config, &alice, &store, &TcpConnector).await?;
    let error = cut.mailboxes[0].error.as_ref().map(|(kind, _)| *kind);
    assert_eq!(
        error,
        Some(ErrorKind::ConnectionReset),
        "the cut sync's error"
    );
    assert_eq!(
        cut.mailboxes[0].processed, 0,
        "the cut sync committed nothing"
    );
    assert_eq!(
        store.snapshot().incoming_activities(),
        2,
        "records after the cut"
    );

    account(service, "alice")
        .faults()
        .switch_off(FaultKind::ResetMidFetch);
    let retry = sync_once(&config, &alice, &store, &TcpConnector).await?;
    assert_eq!(retry.mailboxes[0].error, None, "the retry failed");
    let retried: Vec<Option<&str>> = processed(&retry.events)
        .iter()
        .map(|processed| processed.message_id.as_deref())
        .collect();
    assert_eq!(
        retried,
        after.map(Some),
        "the retry decides exactly the messages the cut sync missed"
    );

    let mut all = vec!["before-1@example.org", "before-2@example.org"];
    all.extend(after);
    assert_eq!(
        store.snapshot().party_counts(),
        expected_counts(&user_parties("alice", &all)),
        "every message once, none lost"
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn imap_reset_mid_fetch_over_tcp_loses_nothing() -> TestResult {
    reset_mid_fetch_over_tcp_loses_nothing(Protocol::Imap).await
}

#[tokio::test]
async fn pop3_reset_mid_fetch_over_tcp_loses_nothing() -> TestResult {
    reset_mid_fetch_over_tcp_loses_nothing(Protocol::Pop3).await
}

// ---------------------------------------------------------------------------
// Rejected credentials
// ---------------------------------------------------------------------------

/// Runs three mailboxes, bob's with a wrong password, for two poll
/// intervals: bob is disabled after one cycle with one alert, and alice and
/// carol keep syncing.
async fn rejected_credentials_disable_one_mailbox(protocol: Protocol) -> TestResult {
    let names = ["alice", "bob", "carol"];
    let service = service_with(&names);
    for name in names {
        deliver(&service, name, &format!("{name}-1@example.org"))?;
    }
    let wrong = Credentials::new(address("bob"), "wrong-password");
    let config = config(
        pipe_profile(protocol),
        vec![
            user("alice"),
            user("bob").with_credentials(wrong),
            user("carol"),
        ],
    );
    let running = start_engine(&service, config)?;

    tokio::time::sleep_until(running.start + MINUTE).await;
    for name in names {
        deliver(&service, name, &format!("{name}-2@example.org"))?;
    }
    tokio::time::sleep_until(running.start + 7 * MINUTE).await;

    let events = running.events.events();
    let alerts = alerts(&events);
    assert_eq!(alerts.len(), 1, "alerts: {alerts:?}");
    assert_eq!(alerts[0].mailbox, MailboxId::new("bob"), "alerted mailbox");
    assert_eq!(alerts[0].code, AlertCode::CredentialsRejected, "alert code");
    assert_eq!(alerts[0].level, ErrorLevel::Mailbox, "alert level");
    let disabled: Vec<(&str, ErrorKind)> = events
        .iter()
        .filter_map(|event| match event {
            Event::MailboxDisabled { mailbox, kind, .. } => Some((mailbox.as_str(), *kind)),
            _ => None,
        })
        .collect();
    assert_eq!(
        disabled,
        [("bob", ErrorKind::CredentialsRejected)],
        "disabled mailboxes and why"
    );
    assert_eq!(cycles_started(&events, "bob"), 1, "bob is not retried");

    let statuses = running.engine.statuses();
    let bob = &statuses[&MailboxId::new("bob")];
    assert_eq!(bob.state, MailboxState::Disabled, "bob's state");
    assert_eq!(bob.next_poll, None, "bob's next poll");
    for name in ["alice", "carol"] {
        let status = &statuses[&MailboxId::new(name)];
        assert_eq!(status.state, MailboxState::Waiting, "{name}'s state");
        assert!(status.next_poll.is_some(), "{name} has a next poll");
        assert_eq!(status.cycles, 2, "{name}'s cycles");
    }

    let mut expected = Vec::new();
    for name in ["alice", "carol"] {
        for n in 1..=2 {
            expected.push((format!("{name}-{n}@example.org"), Owner::user(name)));
        }
    }
    assert_eq!(
        running.snapshot().party_counts(),
        expected_counts(&expected),
        "alice and carol synced both messages, bob none"
    );
    running.engine.stop().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_rejected_credentials_disable_one_mailbox() -> TestResult {
    rejected_credentials_disable_one_mailbox(Protocol::Imap).await
}

#[tokio::test(start_paused = true)]
async fn pop3_rejected_credentials_disable_one_mailbox() -> TestResult {
    rejected_credentials_disable_one_mailbox(Protocol::Pop3).await
}

#[tokio::test(start_paused = true)]
async fn enabled_mailbox_syncs_after_login_is_fixed() -> TestResult {
    let service = service_with(&["bob"]);
    deliver(&service, "bob", "waiting@example.org")?;
    account(&service, "bob")
        .faults()
        .switch_on(FaultKind::LoginRejected);
    let config = config(pipe_profile(Protocol::Imap), vec![user("bob")]);
    let running = start_engine(&service, config)?;
    let bob = MailboxId::new("bob");

    tokio::time::sleep_until(running.start + MINUTE).await;
    let state = running
        .engine
        .mailbox_status(&bob)
        .map(|status| status.state);
    assert_eq!(
        state,
        Some(MailboxState::Disabled),
        "bob after the rejected login"
    );
    assert_eq!(
        running.snapshot().incoming_activities(),
        0,
        "records while disabled"
    );

    account(&service, "bob")
        .faults()
        .switch_off(FaultKind::LoginRejected);
    assert!(running.engine.enable(&bob), "enable a disabled mailbox");
    tokio::time::sleep_until(running.start + 2 * MINUTE).await;

    let events = running.events.events();
    let enabled = events
        .iter()
        .filter(|event| matches!(event, Event::MailboxEnabled { mailbox, .. } if *mailbox == bob))
        .count();
    assert_eq!(enabled, 1, "MailboxEnabled events");
    assert_eq!(
        running.snapshot().party_counts(),
        once_each(&[("waiting@example.org", Owner::user("bob"))]),
        "the waiting message is synced once"
    );
    let state = running
        .engine
        .mailbox_status(&bob)
        .map(|status| status.state);
    assert_eq!(state, Some(MailboxState::Waiting), "bob after enabling");
    running.engine.stop().await;
    Ok(())
}

/// Checks that a one-shot sync with a wrong password raises one
/// credentials alert for that mailbox and still syncs the others.
async fn one_shot_sync_alerts_on_rejected_credentials(protocol: Protocol) -> TestResult {
    let names = ["alice", "bob"];
    let service = service_with(&names);
    for name in names {
        deliver(&service, name, &format!("{name}-1@example.org"))?;
    }
    let wrong = Credentials::new(address("bob"), "wrong-password");
    let config = config(
        pipe_profile(protocol),
        vec![user("alice"), user("bob").with_credentials(wrong)],
    );
    let store = MemoryStore::new();
    let connector = PipeConnector {
        service: service.clone(),
    };

    let report = sync_once(&config, &ids(&names), &store, &connector).await?;

    let alerts: Vec<&Alert> = report.alerts().collect();
    assert_eq!(alerts.len(), 1, "alerts: {alerts:?}");
    assert_eq!(alerts[0].mailbox, MailboxId::new("bob"), "alerted mailbox");
    assert_eq!(alerts[0].code, AlertCode::CredentialsRejected, "alert code");
    assert_eq!(
        report.mailboxes[1].error.as_ref().map(|error| error.0),
        Some(ErrorKind::CredentialsRejected),
        "bob's error"
    );
    assert_eq!(report.mailboxes[0].error, None, "alice's error");
    assert_eq!(report.records_created(), 1, "alice's message is recorded");
    Ok(())
}

#[tokio::test]
async fn imap_one_shot_sync_alerts_on_rejected_credentials() -> TestResult {
    one_shot_sync_alerts_on_rejected_credentials(Protocol::Imap).await
}

#[tokio::test]
async fn pop3_one_shot_sync_alerts_on_rejected_credentials() -> TestResult {
    one_shot_sync_alerts_on_rejected_credentials(Protocol::Pop3).await
}
