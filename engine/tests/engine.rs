//! Cycles and scheduling against a scripted IMAP peer over in-memory pipes,
//! in virtual time.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use engine::records::{CommitBatch, CommitReport, Created, Reason, StoreError, SyncState};
use engine::{
    AlertCode, Config, Credentials, CycleOutcome, Engine, EngineSettings, ErrorKind, ErrorLevel,
    Event, MailboxConfig, MailboxId, MailboxState, MemoryStore, NodeId, Owner, Protocol,
    RecordStore, ServerProfile, TrackingFilter, VecSink, sync_once,
};
use support::{Inbox, Peer, corrupt, forwarded, forwarded_inline, message};
use tokio::time::Instant;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MINUTE: Duration = Duration::from_secs(60);

fn profile() -> ServerProfile {
    ServerProfile::new("peer", "peer.invalid", 143, Protocol::Imap)
}

fn user(id: &str) -> MailboxConfig {
    MailboxConfig::direct(id, Owner::user(id), format!("{id}@example.com"), "peer")
        .with_credentials(Credentials::new(id, "pw"))
        .with_filter(TrackingFilter::All)
}

fn queue(id: &str) -> MailboxConfig {
    MailboxConfig::direct(id, Owner::queue(id), format!("{id}@example.com"), "peer")
        .with_credentials(Credentials::new(id, "pw"))
        .with_filter(TrackingFilter::All)
}

fn config(mailboxes: Vec<MailboxConfig>) -> Config {
    Config {
        profiles: vec![profile()],
        mailboxes,
        settings: EngineSettings::default(),
        contacts: Vec::new(),
    }
}

fn peer_with(mailboxes: &[&str]) -> Peer {
    let peer = Peer::new();
    for mailbox in mailboxes {
        peer.add(mailbox, Inbox::new("pw"));
    }
    peer
}

fn ids(names: &[&str]) -> Vec<MailboxId> {
    names.iter().map(MailboxId::new).collect()
}

/// Runs the engine for `duration` of virtual time and returns its events.
async fn run_engine<R: RecordStore>(
    config: Config,
    store: R,
    peer: &Peer,
    duration: Duration,
) -> Result<(Vec<Event>, Engine<R, Peer>), Box<dyn std::error::Error>> {
    let sink = Arc::new(VecSink::new());
    let engine = Engine::start(config, store, peer.clone(), sink.clone())?;
    tokio::time::sleep(duration).await;
    Ok((sink.events(), engine))
}

fn started(events: &[Event], mailbox: &str) -> Vec<(NodeId, Instant)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::CycleStarted {
                mailbox: m,
                node,
                at,
            } if m.as_str() == mailbox => Some((*node, *at)),
            _ => None,
        })
        .collect()
}

fn outcomes(events: &[Event], mailbox: &str) -> Vec<CycleOutcome> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::CycleEnded {
                mailbox: m,
                outcome,
                ..
            } if m.as_str() == mailbox => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

fn reasons(events: &[Event]) -> Vec<Reason> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::EmailProcessed(processed) => Some(processed.reason),
            _ => None,
        })
        .collect()
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[tokio::test]
async fn imap_cycle_creates_each_record_once() -> TestResult {
    let peer = peer_with(&["alice"]);
    for index in 0..120 {
        peer.inbox("alice")
            .deliver(message(&format!("m{index}@example.org"), "hello"));
    }
    let config = config(vec![user("alice")]);
    let store = MemoryStore::new();

    let first = sync_once(&config, &ids(&["alice"]), &store, &peer).await?;
    let second = sync_once(&config, &ids(&["alice"]), &store, &peer).await?;

    assert_eq!(first.records_created(), 120);
    assert_eq!(first.mailboxes[0].fetched, 120);
    assert_eq!(second.mailboxes[0].fetched, 0);
    assert_eq!(second.records_created(), 0);
    assert_eq!(store.snapshot().incoming_activities(), 120);
    Ok(())
}

#[tokio::test]
async fn listing_without_search_falls_back_to_fetch() -> TestResult {
    let peer = peer_with(&["alice"]);
    peer.inbox("alice").no_search = true;
    for index in 0..7 {
        peer.inbox("alice")
            .deliver(message(&format!("m{index}@example.org"), "hello"));
    }
    let config = config(vec![user("alice")]);
    let store = MemoryStore::new();

    let report = sync_once(&config, &ids(&["alice"]), &store, &peer).await?;

    assert_eq!(report.mailboxes[0].error, None);
    assert_eq!(report.records_created(), 7);
    Ok(())
}

#[tokio::test]
async fn oversized_message_skipped_as_email_error() -> TestResult {
    let peer = peer_with(&["alice"]);
    peer.inbox("alice")
        .deliver(message("small@example.org", "small"));
    peer.inbox("alice")
        .deliver(message("large@example.org", &"x".repeat(4000)));
    peer.inbox("alice")
        .deliver(message("after@example.org", "after"));
    for no_search in [false, true] {
        peer.inbox("alice").no_search = no_search;
        let mut config = config(vec![user("alice")]);
        config.settings.max_message_size = 1000;
        let store = MemoryStore::new();

        let report = sync_once(&config, &ids(&["alice"]), &store, &peer).await?;

        assert_eq!(
            reasons(&report.events),
            [
                Reason::AcceptAll,
                Reason::MessageTooLarge,
                Reason::AcceptAll
            ],
            "no_search = {no_search}"
        );
        let too_large = report
            .events
            .iter()
            .filter(|event| {
                matches!(
                    event,
                    Event::Error {
                        kind: ErrorKind::MessageTooLarge,
                        level: ErrorLevel::Email,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(too_large, 1, "no_search = {no_search}");
        assert_eq!(report.mailboxes[0].fetched, 2, "no_search = {no_search}");
    }
    Ok(())
}

#[tokio::test]
async fn received_after_uses_internaldate() -> TestResult {
    let peer = peer_with(&["alice"]);
    // The server received it on 1 January 2024; its Date header says 2030.
    let raw = "From: carol@example.org\r\nSubject: hi\r\nMessage-ID: <late@example.org>\r\n\
Date: Tue, 1 Jan 2030 09:00:00 +0000\r\n\r\nBody\r\n";
    peer.inbox("alice").deliver(raw);
    for (cutoff, expected) in [
        ("2023-12-31T00:00:00Z", Reason::AcceptAll),
        ("2025-01-01T00:00:00Z", Reason::ReceivedBeforeStart),
    ] {
        let mut config = config(vec![user("alice")]);
        config.mailboxes[0].process_received_after = Some(cutoff.parse()?);
        let store = MemoryStore::new();

        let report = sync_once(&config, &ids(&["alice"]), &store, &peer).await?;

        assert_eq!(reasons(&report.events), [expected], "cutoff {cutoff}");
    }
    Ok(())
}

#[tokio::test]
async fn uidvalidity_reset_resyncs_without_duplicates() -> TestResult {
    let peer = peer_with(&["alice"]);
    for index in 0..3 {
        peer.inbox("alice")
            .deliver(message(&format!("m{index}@example.org"), "hello"));
    }
    let config = config(vec![user("alice")]);
    let store = MemoryStore::new();
    sync_once(&config, &ids(&["alice"]), &store, &peer).await?;

    peer.inbox("alice").reset_uid_validity();
    peer.inbox("alice")
        .deliver(message("m3@example.org", "new"));
    let resync = sync_once(&config, &ids(&["alice"]), &store, &peer).await?;

    assert_eq!(resync.mailboxes[0].fetched, 4);
    assert_eq!(resync.records_created(), 1);
    let reasons = reasons(&resync.events);
    assert_eq!(
        reasons.iter().filter(|r| **r == Reason::Duplicate).count(),
        3
    );
    assert_eq!(store.snapshot().incoming_activities(), 4);
    let state = &store.snapshot().sync_states[&MailboxId::new("alice")];
    assert_eq!(state.imap.map(|cursor| cursor.uid_validity), Some(2));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn reset_mid_fetch_retried_without_loss_or_duplicate() -> TestResult {
    let peer = peer_with(&["alice"]);
    for index in 0..120 {
        peer.inbox("alice")
            .deliver(message(&format!("m{index}@example.org"), "hello"));
    }
    // The FETCH is cut halfway, after the first batch of 50 was committed.
    peer.inbox("alice").reset_body_fetch = Some(0);
    let store = Arc::new(MemoryStore::new());
    let (events, engine) = run_engine(
        config(vec![user("alice")]),
        store.clone(),
        &peer,
        30 * MINUTE,
    )
    .await?;
    engine.stop().await;

    let outcomes = outcomes(&events, "alice");
    assert_eq!(
        outcomes.first(),
        Some(&CycleOutcome::Failed {
            kind: ErrorKind::ConnectionReset,
            retry: true
        })
    );
    assert_eq!(outcomes.get(1), Some(&CycleOutcome::Completed));
    let times: Vec<Instant> = started(&events, "alice").iter().map(|s| s.1).collect();
    assert_eq!(gaps(&times).first(), Some(&(5 * MINUTE)));
    let committed_before_reset = events
        .iter()
        .position(|event| matches!(event, Event::CycleEnded { .. }))
        .map(|end| {
            events[..end]
                .iter()
                .filter(|event| matches!(event, Event::EmailProcessed(_)))
                .count()
        });
    assert_eq!(committed_before_reset, Some(50));
    let snapshot = store.snapshot();
    assert_eq!(snapshot.incoming_activities(), 120);
    assert_eq!(snapshot.party_counts().len(), 120);
    assert!(snapshot.party_counts().values().all(|&count| count == 1));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn out_of_order_fetch_loses_nothing() -> TestResult {
    let peer = peer_with(&["alice"]);
    peer.inbox("alice").reverse_fetch = true;
    for index in 0..120 {
        peer.inbox("alice")
            .deliver(message(&format!("m{index}@example.org"), "hello"));
    }
    // Cut halfway: the messages with the highest UIDs arrived and were
    // committed, but the watermark must stay below the lowest missing UID.
    peer.inbox("alice").reset_body_fetch = Some(0);
    let store = Arc::new(MemoryStore::new());
    let (events, engine) = run_engine(
        config(vec![user("alice")]),
        store.clone(),
        &peer,
        30 * MINUTE,
    )
    .await?;
    engine.stop().await;

    assert_eq!(
        outcomes(&events, "alice").get(1),
        Some(&CycleOutcome::Completed)
    );
    // The retry downloads the 50 committed messages again and finds them
    // to be duplicates.
    let duplicates = reasons(&events)
        .iter()
        .filter(|reason| **reason == Reason::Duplicate)
        .count();
    assert_eq!(duplicates, 50);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.incoming_activities(), 120);
    assert!(snapshot.party_counts().values().all(|&count| count == 1));
    let cursor = snapshot.sync_states[&MailboxId::new("alice")].imap;
    assert_eq!(cursor.map(|cursor| cursor.last_uid), Some(120));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn rejected_credentials_disable_exactly_one_mailbox() -> TestResult {
    let peer = peer_with(&["alice", "bob", "carol"]);
    peer.inbox("bob").reject_login = true;
    let config = config(vec![user("alice"), user("bob"), user("carol")]);
    let (events, engine) = run_engine(config, MemoryStore::new(), &peer, 2 * 60 * MINUTE).await?;

    let disabled: Vec<&str> = events
        .iter()
        .filter_map(|event| match event {
            Event::MailboxDisabled { mailbox, kind, .. } => {
                assert_eq!(*kind, ErrorKind::CredentialsRejected);
                Some(mailbox.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(disabled, ["bob"]);
    let alerts: Vec<(AlertCode, &str)> = events
        .iter()
        .filter_map(|event| match event {
            Event::Alert(alert) => Some((alert.code, alert.mailbox.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(alerts, [(AlertCode::CredentialsRejected, "bob")]);
    assert_eq!(started(&events, "bob").len(), 1);
    assert!(started(&events, "alice").len() > 1);
    assert!(started(&events, "carol").len() > 1);
    let bob = engine
        .mailbox_status(&MailboxId::new("bob"))
        .expect("bob is polled");
    assert_eq!(bob.state, MailboxState::Disabled);
    assert_eq!(engine.next_poll(&MailboxId::new("bob")), None);
    assert!(engine.next_poll(&MailboxId::new("alice")).is_some());
    engine.stop().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn individual_mailboxes_spread_over_nodes() -> TestResult {
    let names = ["a", "b", "c", "d", "e"];
    let peer = peer_with(&names);
    let mut config = config(names.iter().map(|name| user(name)).collect());
    config.settings.nodes = 2;
    let (events, engine) = run_engine(config, MemoryStore::new(), &peer, MINUTE).await?;
    engine.stop().await;

    let nodes: Vec<usize> = names
        .iter()
        .map(|name| started(&events, name).first().map_or(usize::MAX, |s| s.0.0))
        .collect();
    assert_eq!(nodes, [0, 1, 0, 1, 0]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn forward_mailbox_serial_on_one_node() -> TestResult {
    let peer = peer_with(&["fwd", "dave"]);
    peer.inbox("fwd").latency = Duration::from_millis(200);
    for index in 0..30 {
        let original = message(&format!("m{index}@example.org"), "hello");
        let from = ["alice@example.com", "bob@example.com"][index % 2];
        peer.inbox("fwd")
            .deliver(forwarded(from, &format!("w{index}@example.com"), &original));
    }
    let mut config = config(vec![
        MailboxConfig::forward("fwd", Owner::user("admin"), "fwd@example.com", "peer")
            .with_credentials(Credentials::new("fwd", "pw")),
        MailboxConfig::via_forward("alice", Owner::user("alice"), "alice@example.com", "fwd")
            .with_filter(TrackingFilter::All),
        MailboxConfig::via_forward("bob", Owner::user("bob"), "bob@example.com", "fwd")
            .with_filter(TrackingFilter::All),
        user("dave"),
    ]);
    config.settings.nodes = 3;
    config.settings.batch_size = 5;
    config.settings.max_messages_per_cycle = 10;
    let store = Arc::new(MemoryStore::new());
    let (events, engine) = run_engine(config, store.clone(), &peer, 60 * MINUTE).await?;
    engine.stop().await;

    let forward_nodes: Vec<NodeId> = started(&events, "fwd").iter().map(|s| s.0).collect();
    assert!(
        forward_nodes.len() >= 3,
        "limit of 10 per cycle needs 3 cycles"
    );
    assert!(forward_nodes.iter().all(|node| *node == NodeId(0)));
    assert!(
        started(&events, "alice").is_empty(),
        "forwarded mailboxes are not polled"
    );
    assert_eq!(
        started(&events, "dave").first().map(|s| s.0),
        Some(NodeId(1))
    );

    // Start and end events of the forward mailbox alternate: one cycle at a time.
    let mut running = false;
    for event in &events {
        match event {
            Event::CycleStarted { mailbox, .. } if mailbox.as_str() == "fwd" => {
                assert!(!running, "two forward cycles overlapped");
                running = true;
            }
            Event::CycleEnded { mailbox, .. } if mailbox.as_str() == "fwd" => running = false,
            _ => {}
        }
    }
    let snapshot = store.snapshot();
    assert_eq!(snapshot.incoming_activities(), 30);
    let alice_parties = snapshot
        .parties
        .iter()
        .filter(|party| party.owner == Owner::user("alice"))
        .count();
    assert_eq!(alice_parties, 15);
    assert!(
        snapshot
            .parties
            .iter()
            .all(|party| party.fetched_by == MailboxId::new("fwd"))
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn idle_mailbox_backs_off_and_returns_to_minimum() -> TestResult {
    let peer = peer_with(&["alice"]);
    let sink = Arc::new(VecSink::new());
    let engine = Engine::start(
        config(vec![user("alice")]),
        MemoryStore::new(),
        peer.clone(),
        sink.clone(),
    )?;
    let alice = MailboxId::new("alice");

    tokio::time::sleep(2 * 60 * MINUTE + MINUTE).await;
    let times: Vec<Instant> = started(&sink.events(), "alice")
        .iter()
        .map(|s| s.1)
        .collect();
    assert_eq!(gaps(&times), [10 * MINUTE, 20 * MINUTE, 40 * MINUTE]);
    let status = engine.mailbox_status(&alice).expect("alice is polled");
    assert_eq!(status.interval, 80 * MINUTE);
    let last = *times.last().expect("cycles ran");
    assert_eq!(engine.next_poll(&alice), Some(last + 80 * MINUTE));

    // The next cycle, 80 minutes after the last, finds the mail.
    peer.inbox("alice")
        .deliver(message("m1@example.org", "hello"));
    tokio::time::sleep_until(last + 80 * MINUTE + MINUTE).await;
    let status = engine.mailbox_status(&alice).expect("alice is polled");
    assert_eq!(status.interval, 5 * MINUTE);
    let times: Vec<Instant> = started(&sink.events(), "alice")
        .iter()
        .map(|s| s.1)
        .collect();
    let found_at = *times.last().expect("cycle that found mail");
    assert_eq!(found_at, last + 80 * MINUTE);
    assert_eq!(engine.next_poll(&alice), Some(found_at + 5 * MINUTE));
    engine.stop().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn throttled_login_waits_suggested_backoff() -> TestResult {
    let peer = peer_with(&["alice"]);
    peer.inbox("alice").throttle = 1;
    peer.inbox("alice").throttle_backoff_ms = 600_000;
    let (events, engine) = run_engine(
        config(vec![user("alice")]),
        MemoryStore::new(),
        &peer,
        30 * MINUTE,
    )
    .await?;
    engine.stop().await;

    let throttled: Vec<Option<Duration>> = events
        .iter()
        .filter_map(|event| match event {
            Event::Throttled { backoff, .. } => Some(*backoff),
            _ => None,
        })
        .collect();
    assert_eq!(throttled, [Some(Duration::from_secs(600))]);
    let times: Vec<Instant> = started(&events, "alice").iter().map(|s| s.1).collect();
    assert_eq!(gaps(&times).first(), Some(&Duration::from_secs(600)));
    assert_eq!(
        outcomes(&events, "alice").get(1),
        Some(&CycleOutcome::Completed)
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn refused_connections_retry_then_disable() -> TestResult {
    let peer = peer_with(&["alice"]);
    peer.inbox("alice").refuse = u32::MAX;
    let (events, engine) = run_engine(
        config(vec![user("alice")]),
        MemoryStore::new(),
        &peer,
        2 * 60 * MINUTE,
    )
    .await?;

    let outcomes = outcomes(&events, "alice");
    assert_eq!(outcomes.len(), 11, "one try and 10 retries");
    for outcome in &outcomes[..10] {
        assert_eq!(
            *outcome,
            CycleOutcome::Failed {
                kind: ErrorKind::ConnectionRefused,
                retry: true
            }
        );
    }
    assert_eq!(
        outcomes[10],
        CycleOutcome::Failed {
            kind: ErrorKind::ConnectionRefused,
            retry: false
        }
    );
    let times: Vec<Instant> = started(&events, "alice").iter().map(|s| s.1).collect();
    assert!(gaps(&times).iter().all(|gap| *gap == 5 * MINUTE));
    let levels: Vec<ErrorLevel> = events
        .iter()
        .filter_map(|event| match event {
            Event::Error { level, .. } => Some(*level),
            _ => None,
        })
        .collect();
    assert_eq!(levels.len(), 11);
    assert!(
        levels
            .iter()
            .all(|level| *level == ErrorLevel::ServerProfile)
    );
    let alerts: Vec<AlertCode> = events
        .iter()
        .filter_map(|event| match event {
            Event::Alert(alert) => Some(alert.code),
            _ => None,
        })
        .collect();
    assert_eq!(alerts, [AlertCode::RetriesExhausted]);
    assert_eq!(
        engine
            .mailbox_status(&MailboxId::new("alice"))
            .map(|s| s.state),
        Some(MailboxState::Disabled)
    );
    engine.stop().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn poison_message_blocks_then_is_quarantined() -> TestResult {
    let peer = peer_with(&["support"]);
    peer.inbox("support")
        .deliver(message("m1@example.org", "first"));
    peer.inbox("support").deliver(corrupt());
    peer.inbox("support")
        .deliver(message("m3@example.org", "behind the poison"));
    let store = Arc::new(MemoryStore::new());
    let (events, engine) = run_engine(
        config(vec![queue("support")]),
        store.clone(),
        &peer,
        12 * MINUTE,
    )
    .await?;
    engine.stop().await;

    let outcomes = outcomes(&events, "support");
    assert_eq!(
        outcomes,
        [
            CycleOutcome::Blocked,
            CycleOutcome::Blocked,
            CycleOutcome::Completed
        ]
    );
    let failures = events
        .iter()
        .filter(|event| {
            matches!(
                event,
                Event::Error {
                    kind: ErrorKind::ProcessingFailed,
                    level: ErrorLevel::Email,
                    ..
                }
            )
        })
        .count();
    assert_eq!(failures, 3);
    let alerts: Vec<AlertCode> = events
        .iter()
        .filter_map(|event| match event {
            Event::Alert(alert) => Some(alert.code),
            _ => None,
        })
        .collect();
    assert_eq!(alerts, [AlertCode::EmailQuarantined]);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.quarantined.len(), 1);
    assert_eq!(snapshot.quarantined[0].attempts, 3);
    assert_eq!(snapshot.incoming_activities(), 2);
    assert_eq!(snapshot.queue_items.len(), 2);
    assert!(
        snapshot.sync_states[&MailboxId::new("support")]
            .failures
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn inline_forward_reported_once_not_retried() -> TestResult {
    let peer = peer_with(&["fwd"]);
    let original = message("m1@example.org", "hello");
    peer.inbox("fwd")
        .deliver(forwarded("alice@example.com", "w1@example.com", &original));
    peer.inbox("fwd")
        .deliver(forwarded_inline("bob@example.com", "w2@example.com"));
    let config = config(vec![
        MailboxConfig::forward("fwd", Owner::user("admin"), "fwd@example.com", "peer")
            .with_credentials(Credentials::new("fwd", "pw")),
        MailboxConfig::via_forward("alice", Owner::user("alice"), "alice@example.com", "fwd")
            .with_filter(TrackingFilter::All),
        MailboxConfig::via_forward("bob", Owner::user("bob"), "bob@example.com", "fwd")
            .with_filter(TrackingFilter::All),
    ]);
    let store = MemoryStore::new();

    let first = sync_once(&config, &ids(&["fwd"]), &store, &peer).await?;
    let second = sync_once(&config, &ids(&["fwd"]), &store, &peer).await?;

    assert_eq!(
        reasons(&first.events),
        [Reason::AcceptAll, Reason::NotForwardedAsAttachment]
    );
    let errors: Vec<(ErrorLevel, ErrorKind)> = first
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Error { level, kind, .. } => Some((*level, *kind)),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [(ErrorLevel::Email, ErrorKind::NotForwardedAsAttachment)]
    );
    assert!(
        second
            .events
            .iter()
            .all(|event| !matches!(event, Event::Error { .. }))
    );
    let snapshot = store.snapshot();
    assert_eq!(snapshot.parties.len(), 1);
    assert_eq!(snapshot.parties[0].owner, Owner::user("alice"));
    assert_eq!(&*snapshot.activities[0].message_id, "m1@example.org");
    Ok(())
}

#[tokio::test]
async fn same_message_to_user_and_queue_deduplicated() -> TestResult {
    let peer = peer_with(&["alice", "support"]);
    let shared = message("shared@example.org", "to both");
    peer.inbox("alice").deliver(shared.clone());
    peer.inbox("support").deliver(shared);
    let config = config(vec![user("alice"), queue("support")]);
    let store = MemoryStore::new();

    let report = sync_once(&config, &ids(&["alice", "support"]), &store, &peer).await?;

    let processed: Vec<(Reason, Created)> = report
        .events
        .iter()
        .filter_map(|event| match event {
            Event::EmailProcessed(p) => Some((p.reason, p.created)),
            _ => None,
        })
        .collect();
    assert_eq!(
        processed,
        [
            (Reason::AcceptAll, Created::Activity),
            (Reason::Duplicate, Created::Party)
        ]
    );
    let snapshot = store.snapshot();
    assert_eq!(snapshot.activities.len(), 1);
    assert_eq!(snapshot.parties.len(), 2);
    assert_eq!(snapshot.queue_items.len(), 1);
    Ok(())
}

#[tokio::test]
async fn replies_correlate_by_each_key() -> TestResult {
    let peer = peer_with(&["alice"]);
    let store = MemoryStore::new();
    store.track_outgoing("sent-1@crm.example.com", "Offer", "CRM:");
    let token = store.track_outgoing("sent-2@crm.example.com", "Offer 2", "CRM:");
    store.track_outgoing("sent-3@crm.example.com", "Offer 3", "CRM:");
    let headers = [
        "In-Reply-To: <sent-1@crm.example.com>\r\n".to_owned(),
        String::new(),
        "References: <unknown@x> <sent-3@crm.example.com>\r\n".to_owned(),
        String::new(),
    ];
    let subjects = [
        "Re: Offer".to_owned(),
        format!("Re: Offer 2 {token}"),
        "Re: Offer 3".to_owned(),
        "Unrelated".to_owned(),
    ];
    for (index, (header, subject)) in headers.iter().zip(&subjects).enumerate() {
        let raw = format!(
            "From: carol@example.org\r\nSubject: {subject}\r\nMessage-ID: <r{index}@example.org>\r\n{header}\r\nBody\r\n"
        );
        peer.inbox("alice").deliver(raw);
    }
    let config = config(vec![
        user("alice").with_filter(TrackingFilter::ResponsesToTracked),
    ]);

    let report = sync_once(&config, &ids(&["alice"]), &store, &peer).await?;

    assert_eq!(
        reasons(&report.events),
        [
            Reason::CorrelationMatch,
            Reason::CorrelationMatch,
            Reason::CorrelationMatch,
            Reason::NoCorrelationMatch
        ]
    );
    let regarding: Vec<Option<u64>> = store.snapshot().activities[3..]
        .iter()
        .map(|a| a.regarding)
        .collect();
    assert_eq!(regarding, [Some(0), Some(1), Some(2)]);
    Ok(())
}

#[tokio::test]
async fn delete_after_processing_removes_committed_messages() -> TestResult {
    let peer = peer_with(&["support"]);
    for index in 0..7 {
        peer.inbox("support")
            .deliver(message(&format!("m{index}@example.org"), "hello"));
    }
    let config = config(vec![queue("support").with_delete_after_processing(true)]);
    let store = MemoryStore::new();

    let report = sync_once(&config, &ids(&["support"]), &store, &peer).await?;

    assert_eq!(report.records_created(), 7);
    assert!(peer.inbox("support").messages.is_empty());
    Ok(())
}

/// Fails chosen commits, before or after applying them.
struct FlakyStore {
    inner: MemoryStore,
    commits: AtomicU32,
    fail_commit: u32,
    apply_before_failing: bool,
}

impl RecordStore for FlakyStore {
    async fn sync_state(&self, mailbox: &MailboxId) -> Result<SyncState, StoreError> {
        self.inner.sync_state(mailbox).await
    }

    async fn commit(&self, batch: CommitBatch) -> Result<CommitReport, StoreError> {
        let index = self.commits.fetch_add(1, Ordering::Relaxed);
        if index != self.fail_commit {
            return self.inner.commit(batch).await;
        }
        if self.apply_before_failing {
            self.inner.commit(batch).await?;
        }
        Err(StoreError::Unavailable("injected failure".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn failed_commit_retried_without_duplicates() -> TestResult {
    for apply_before_failing in [false, true] {
        let peer = peer_with(&["alice"]);
        for index in 0..120 {
            peer.inbox("alice")
                .deliver(message(&format!("m{index}@example.org"), "hello"));
        }
        let store = Arc::new(FlakyStore {
            inner: MemoryStore::new(),
            commits: AtomicU32::new(0),
            fail_commit: 1,
            apply_before_failing,
        });
        let (events, engine) = run_engine(
            config(vec![user("alice")]),
            store.clone(),
            &peer,
            30 * MINUTE,
        )
        .await?;
        engine.stop().await;

        assert_eq!(
            outcomes(&events, "alice").first(),
            Some(&CycleOutcome::Failed {
                kind: ErrorKind::Store,
                retry: true
            }),
            "apply_before_failing = {apply_before_failing}"
        );
        let snapshot = store.inner.snapshot();
        assert_eq!(
            snapshot.incoming_activities(),
            120,
            "apply_before_failing = {apply_before_failing}"
        );
        assert!(snapshot.party_counts().values().all(|&count| count == 1));
    }
    Ok(())
}
