//! POP3 cycles against a scripted peer over in-memory pipes, in virtual time.

mod support;

use std::sync::Arc;
use std::time::Duration;

use engine::records::Reason;
use engine::{
    AlertCode, Config, Credentials, CycleOutcome, Engine, ErrorKind, Event, MailboxConfig,
    MailboxId, MemoryStore, Owner, Protocol, ServerProfile, TrackingFilter, VecSink, sync_once,
};
use support::pop3::{Maildrop, Pop3Peer};
use support::{corrupt, message};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MINUTE: Duration = Duration::from_secs(60);

fn config(owner: Owner, delete: bool) -> Config {
    let mailbox = MailboxConfig::direct("box", owner, "box@example.com", "pop")
        .with_credentials(Credentials::new("box", "pw"))
        .with_filter(TrackingFilter::All)
        .with_delete_after_processing(delete);
    let mut config = Config {
        profiles: vec![ServerProfile::new(
            "pop",
            "peer.invalid",
            110,
            Protocol::Pop3,
        )],
        mailboxes: vec![mailbox],
        ..Config::default()
    };
    config.settings.batch_size = 4;
    config
}

fn peer(pipelining: bool, messages: usize) -> Pop3Peer {
    let peer = Pop3Peer::new();
    let mut maildrop = Maildrop::new("pw", pipelining);
    for index in 0..messages {
        maildrop.deliver(message(&format!("m{index}@example.org"), "hello"));
    }
    peer.add("box", maildrop);
    peer
}

fn outcomes(events: &[Event]) -> Vec<CycleOutcome> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::CycleEnded { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn pop3_sync_creates_each_record_once() -> TestResult {
    for pipelining in [false, true] {
        let peer = peer(pipelining, 10);
        let config = config(Owner::user("alice"), false);
        let store = MemoryStore::new();
        let mailboxes = [MailboxId::new("box")];

        let first = sync_once(&config, &mailboxes, &store, &peer).await?;
        let second = sync_once(&config, &mailboxes, &store, &peer).await?;

        assert_eq!(first.records_created(), 10, "pipelining = {pipelining}");
        assert_eq!(second.mailboxes[0].fetched, 0, "pipelining = {pipelining}");
        assert_eq!(
            store.snapshot().incoming_activities(),
            10,
            "pipelining = {pipelining}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn stuffed_lines_arrive_unstuffed() -> TestResult {
    let peer = peer(true, 0);
    let raw = b"From: carol@example.org\r\nSubject: dots\r\nMessage-ID: <d@example.org>\r\n\r\n.hidden\r\n..two\r\n";
    peer.with("box", |drop| drop.deliver(raw.to_vec()));
    let config = config(Owner::user("alice"), false);
    let store = MemoryStore::new();

    let report = sync_once(&config, &[MailboxId::new("box")], &store, &peer).await?;

    assert_eq!(report.records_created(), 1);
    assert_eq!(&*store.snapshot().activities[0].message_id, "d@example.org");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn reset_mid_retr_keeps_progress_without_duplicates() -> TestResult {
    for pipelining in [false, true] {
        let peer = peer(pipelining, 10);
        peer.with("box", |drop| drop.reset_after_retrs = Some(6));
        let store = Arc::new(MemoryStore::new());
        let sink = Arc::new(VecSink::new());
        let engine = Engine::start(
            config(Owner::user("alice"), false),
            store.clone(),
            peer.clone(),
            sink.clone(),
        )?;
        tokio::time::sleep(30 * MINUTE).await;
        engine.stop().await;

        let outcomes = outcomes(&sink.events());
        assert_eq!(
            outcomes.first(),
            Some(&CycleOutcome::Failed {
                kind: ErrorKind::ConnectionReset,
                retry: true
            }),
            "pipelining = {pipelining}"
        );
        let snapshot = store.snapshot();
        assert_eq!(
            snapshot.incoming_activities(),
            10,
            "pipelining = {pipelining}"
        );
        assert!(snapshot.party_counts().values().all(|&count| count == 1));
        // The six messages read before the reset were committed, so the
        // retry downloads only the other four.
        let retrs = peer.with("box", |drop| drop.retrs);
        assert_eq!(retrs, 10, "pipelining = {pipelining}");
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn poison_message_blocks_pipelined_cycle() -> TestResult {
    let peer = peer(true, 2);
    peer.with("box", |drop| {
        drop.deliver(corrupt());
        drop.deliver(message("after@example.org", "behind the poison"));
    });
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(VecSink::new());
    let engine = Engine::start(
        config(Owner::queue("support"), true),
        store.clone(),
        peer.clone(),
        sink.clone(),
    )?;
    tokio::time::sleep(12 * MINUTE).await;
    engine.stop().await;

    let events = sink.events();
    assert_eq!(
        outcomes(&events),
        [
            CycleOutcome::Blocked,
            CycleOutcome::Blocked,
            CycleOutcome::Completed
        ]
    );
    let alerts: Vec<AlertCode> = events
        .iter()
        .filter_map(|event| match event {
            Event::Alert(alert) => Some(alert.code),
            _ => None,
        })
        .collect();
    assert_eq!(alerts, [AlertCode::EmailQuarantined]);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.incoming_activities(), 3);
    assert_eq!(snapshot.quarantined.len(), 1);
    // Every cycle ended with QUIT, so handled messages were deleted.
    assert_eq!(peer.with("box", |drop| drop.quits), 3);
    assert!(peer.with("box", |drop| drop.messages.is_empty()));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn locked_maildrop_is_retried() -> TestResult {
    let peer = peer(true, 3);
    peer.with("box", |drop| drop.in_use = 1);
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(VecSink::new());
    let engine = Engine::start(
        config(Owner::user("alice"), false),
        store.clone(),
        peer.clone(),
        sink.clone(),
    )?;
    tokio::time::sleep(10 * MINUTE).await;
    engine.stop().await;

    let outcomes = outcomes(&sink.events());
    assert_eq!(
        outcomes.first(),
        Some(&CycleOutcome::Failed {
            kind: ErrorKind::Busy,
            retry: true
        })
    );
    assert_eq!(outcomes.get(1), Some(&CycleOutcome::Completed));
    assert_eq!(store.snapshot().incoming_activities(), 3);
    Ok(())
}

#[tokio::test]
async fn wrong_password_raises_alert() -> TestResult {
    let peer = peer(true, 1);
    peer.with("box", |drop| drop.password = "other".into());
    let config = config(Owner::user("alice"), false);
    let store = MemoryStore::new();

    let report = sync_once(&config, &[MailboxId::new("box")], &store, &peer).await?;

    let codes: Vec<AlertCode> = report.alerts().map(|alert| alert.code).collect();
    assert_eq!(codes, [AlertCode::CredentialsRejected]);
    assert_eq!(
        report.mailboxes[0].error.as_ref().map(|error| error.0),
        Some(ErrorKind::CredentialsRejected)
    );
    let reasons: Vec<Reason> = report
        .events
        .iter()
        .filter_map(|event| match event {
            Event::EmailProcessed(processed) => Some(processed.reason),
            _ => None,
        })
        .collect();
    assert!(reasons.is_empty());
    Ok(())
}

/// A DELE with a throttled response fails the cycle, but the cycle still ends
/// with QUIT, so the DELEs accepted before it apply, and the next cycle
/// deletes the rest without recording anything twice.
#[tokio::test]
async fn throttled_dele_still_applies_accepted_deletions() -> TestResult {
    for pipelining in [false, true] {
        let peer = peer(pipelining, 5);
        peer.with("box", |drop| drop.throttle_dele_after = Some(2));
        let config = config(Owner::queue("support"), true);
        let store = MemoryStore::new();
        let mailbox = [MailboxId::new("box")];

        let report = sync_once(&config, &mailbox, &store, &peer).await?;
        assert_eq!(
            report.mailboxes[0].error.as_ref().map(|error| error.0),
            Some(ErrorKind::Throttled),
            "pipelining {pipelining}"
        );
        assert_eq!(store.snapshot().incoming_activities(), 5);
        assert_eq!(peer.with("box", |drop| drop.quits), 1);
        assert_eq!(peer.with("box", |drop| drop.messages.len()), 3);

        peer.with("box", |drop| drop.throttle_dele_after = None);
        let report = sync_once(&config, &mailbox, &store, &peer).await?;
        assert!(
            report.mailboxes[0].error.is_none(),
            "pipelining {pipelining}"
        );
        assert_eq!(store.snapshot().incoming_activities(), 5);
        assert!(peer.with("box", |drop| drop.messages.is_empty()));
    }
    Ok(())
}
