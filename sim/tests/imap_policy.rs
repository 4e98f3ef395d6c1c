//! Policies and faults as an IMAP client sees them: the answers from the
//! policy table (snapshots), connection limits, the command budget,
//! latency, stalls, resets and UIDVALIDITY resets.

mod common;

use std::time::Duration;

use common::imap::{
    ALICE, BOB, Step, Until, ask, connect, greeting, log_in, play, populate, world,
};
use common::{TestResult, service, service_with};
use sim::policy::{OFFICE365_BACKOFF, ScheduledFault};
use sim::store::Protocol;
use sim::{AccountPolicy, CommandBudget, FaultAction, FaultKind, Limits, Service};
use tokio::time::Instant;

use Step::{Closed, Command};

const LOGIN: Step = Command("a0 LOGIN alice@example.org alice-pw");

fn with_alice_policy(policy: AccountPolicy) -> Service {
    let service = world();
    if let Some(alice) = service.store().account(ALICE.0) {
        alice.set_policy(policy);
    }
    service
}

fn budget_of_three() -> Service {
    with_alice_policy(AccountPolicy {
        command_budget: Some(CommandBudget {
            commands: 3,
            window: Duration::from_secs(60),
        }),
        ..AccountPolicy::default()
    })
}

fn budget_with_office365_hint() -> Service {
    with_alice_policy(AccountPolicy {
        command_budget: Some(CommandBudget {
            commands: 1,
            window: Duration::from_secs(60),
        }),
        backoff_hint: Some(OFFICE365_BACKOFF),
        ..AccountPolicy::default()
    })
}

/// A limit of one connection that another client already uses.
fn connection_slot_taken() -> Service {
    let service = with_alice_policy(AccountPolicy {
        max_imap_connections: Some(1),
        ..AccountPolicy::default()
    });
    if let Some(alice) = service.store().account(ALICE.0) {
        // The guard stands for another client's session; it stays counted
        // for the life of this test service.
        std::mem::forget(alice.try_connect(Protocol::Imap, Some(1)));
    }
    service
}

fn switch_on(service: &Service, kind: FaultKind) {
    if let Some(alice) = service.store().account(ALICE.0) {
        alice.faults().switch_on(kind);
    }
}

#[tokio::test(start_paused = true)]
async fn imap_throttled_answer_suggests_backoff() -> TestResult {
    let transcript = play(
        budget_of_three,
        &[
            LOGIN,
            Command("a1 NOOP"),
            Command("a2 SELECT INBOX"),
            Command("a3 NOOP"),
            Command("a4 NOOP"),
            Command("a5 FETCH 1 UID"),
            Command("z9 LOGOUT"),
            Closed,
        ],
    )
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_throttled_answer_uses_office365_hint() -> TestResult {
    let transcript = play(
        budget_with_office365_hint,
        &[
            LOGIN,
            Command("a1 NOOP"),
            Command("a2 NOOP"),
            Command("z9 LOGOUT"),
            Closed,
        ],
    )
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_connection_limit_answer() -> TestResult {
    let transcript = play(
        connection_slot_taken,
        &[
            LOGIN,
            Command("a1 LOGIN bob@example.org bob-pw"),
            Command("z9 LOGOUT"),
            Closed,
        ],
    )
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_login_rejected_fault_answer() -> TestResult {
    let transcript = play(
        world,
        &[
            Step::Act(|service| switch_on(service, FaultKind::LoginRejected)),
            LOGIN,
            Command("a1 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3"),
            Command("z9 LOGOUT"),
            Closed,
        ],
    )
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_server_error_fault_answer() -> TestResult {
    let transcript = play(
        world,
        &[
            LOGIN,
            Command("a1 SELECT INBOX"),
            Step::Act(|service| switch_on(service, FaultKind::ServerError)),
            Command("a2 FETCH 1 UID"),
            Command("a3 NOOP"),
            Step::Act(|service| {
                if let Some(alice) = service.store().account(ALICE.0) {
                    alice.faults().switch_off(FaultKind::ServerError);
                }
            }),
            Command("a4 NOOP"),
            Command("z9 LOGOUT"),
            Closed,
        ],
    )
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_connection_refused_at_login_closes_silently() -> TestResult {
    let transcript = play(
        world,
        &[
            Step::Act(|service| switch_on(service, FaultKind::ConnectionRefused)),
            Step::Send(b"a1 LOGIN bob@example.org wrong\r\n"),
            Step::Wait(Until::Tagged("a1")),
            Step::Send(b"a2 LOGIN alice@example.org alice-pw\r\n"),
            Closed,
        ],
    )
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_wrong_password_is_rejected() -> TestResult {
    let service = world();
    let (mut client, reply) = log_in(&service, (ALICE.0, "not-the-password")).await?;
    assert!(
        reply.starts_with("l1 NO [AUTHENTICATIONFAILED] "),
        "{reply}"
    );
    let select = ask(&mut client, "a1 SELECT INBOX").await?;
    assert_eq!(select, "a1 BAD Not logged in\r\n");
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_twenty_first_connection_gets_limit() -> TestResult {
    let service = with_alice_policy(AccountPolicy {
        max_imap_connections: Some(20),
        ..AccountPolicy::default()
    });
    let mut sessions = Vec::new();
    for _ in 0..20 {
        let (client, reply) = log_in(&service, ALICE).await?;
        assert_eq!(reply, "l1 OK Logged in\r\n");
        sessions.push(client);
    }
    let (mut extra, reply) = log_in(&service, ALICE).await?;
    assert_eq!(
        reply,
        "l1 NO [LIMIT] Too many simultaneous connections for this mailbox\r\n"
    );

    // Another account is not affected.
    let (bob, reply) = log_in(&service, BOB).await?;
    assert_eq!(reply, "l1 OK Logged in\r\n");
    bob.finish().await?;

    // A freed slot can be taken again by the refused client.
    let mut first = sessions.remove(0);
    let logout = ask(&mut first, "z9 LOGOUT").await?;
    assert!(logout.ends_with("z9 OK LOGOUT completed\r\n"), "{logout}");
    first.finish().await?;
    let retry = ask(&mut extra, &format!("l2 LOGIN {} {}", ALICE.0, ALICE.1)).await?;
    assert_eq!(retry, "l2 OK Logged in\r\n");
    for client in sessions {
        client.finish().await?;
    }
    extra.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_spent_budget_recovers_after_backoff() -> TestResult {
    let service = budget_of_three();
    let (mut client, _) = log_in(&service, ALICE).await?;
    for tag in ["a1", "a2", "a3"] {
        let reply = ask(&mut client, &format!("{tag} NOOP")).await?;
        assert_eq!(reply, format!("{tag} OK NOOP completed\r\n"));
    }
    let throttled = ask(&mut client, "a4 NOOP").await?;
    assert_eq!(
        throttled,
        "a4 NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: 20000 milliseconds\r\n"
    );
    tokio::time::sleep(Duration::from_millis(20_000)).await;
    let after = ask(&mut client, "a5 NOOP").await?;
    assert_eq!(after, "a5 OK NOOP completed\r\n");
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_latency_delays_each_reply() -> TestResult {
    let service = with_alice_policy(AccountPolicy {
        command_latency: Duration::from_millis(250),
        ..AccountPolicy::default()
    });
    let (mut client, _) = log_in(&service, ALICE).await?;
    let start = Instant::now();
    ask(&mut client, "a1 NOOP").await?;
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    ask(&mut client, "a2 NOOP").await?;
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_scheduled_stall_delays_reply() -> TestResult {
    let service = world();
    let (mut client, _) = log_in(&service, ALICE).await?;
    let alice = service.store().account(ALICE.0).ok_or("alice exists")?;
    let now = service.clock().elapsed();
    alice.faults().schedule(ScheduledFault {
        kind: FaultKind::Stall,
        from: now,
        until: Some(now + Duration::from_secs(90)),
    });
    let start = Instant::now();
    let reply = ask(&mut client, "a1 NOOP").await?;
    assert_eq!(reply, "a1 OK NOOP completed\r\n");
    assert_eq!(start.elapsed(), Duration::from_secs(90));
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_runtime_stall_ends_on_switch_off() -> TestResult {
    let service = world();
    let (mut client, _) = log_in(&service, ALICE).await?;
    let alice = service.store().account(ALICE.0).ok_or("alice exists")?;
    alice.faults().switch_on(FaultKind::Stall);
    let switch_off = {
        let alice = alice.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            alice.faults().switch_off(FaultKind::Stall);
        })
    };
    let start = Instant::now();
    let reply = ask(&mut client, "a1 NOOP").await?;
    assert_eq!(reply, "a1 OK NOOP completed\r\n");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(10), "{waited:?}");
    assert!(waited <= Duration::from_secs(11), "{waited:?}");
    switch_off.await?;
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_endless_stall_ends_in_autologout() -> TestResult {
    let service = world();
    let (mut client, _) = log_in(&service, ALICE).await?;
    let alice = service.store().account(ALICE.0).ok_or("alice exists")?;
    alice.faults().switch_on(FaultKind::Stall);
    let start = Instant::now();
    client.send(b"a1 NOOP\r\n").await?;
    let rest = client.receive_to_end().await?;
    assert_eq!(rest, b"* BYE Autologout; idle for too long\r\n");
    assert_eq!(start.elapsed(), service.limits().imap_idle_timeout);
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_reset_mid_fetch_cuts_inside_literal() -> TestResult {
    let service = world();
    let (mut client, _) = log_in(&service, ALICE).await?;
    ask(&mut client, "a1 SELECT INBOX").await?;
    switch_on(&service, FaultKind::ResetMidFetch);
    client.send(b"a2 FETCH 2 BODY.PEEK[]\r\n").await?;
    let received = client.receive_to_end().await?;

    let head = b"* 2 FETCH (BODY[] {800}\r\n";
    assert!(
        received.starts_with(head),
        "{}",
        String::from_utf8_lossy(&received)
    );
    let literal = &received[head.len()..];
    assert_eq!(literal.len(), 400);
    assert_eq!(literal, &common::imap::MULTIPART[..400]);
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_reset_after_bytes_cuts_exactly() -> TestResult {
    let service = world();
    switch_on(&service, FaultKind::ResetAfterBytes(150));
    let mut client = connect(&service, usize::MAX);
    client
        .send(b"a1 LOGIN alice@example.org alice-pw\r\na2 CAPABILITY\r\n")
        .await?;
    let received = client.receive_to_end().await?;
    assert_eq!(received.len(), 150);
    assert!(received.starts_with(b"* OK [CAPABILITY"));
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_uid_validity_reset_ends_selected_session() -> TestResult {
    let service = world();
    let (mut client, _) = log_in(&service, ALICE).await?;
    ask(&mut client, "a1 SELECT INBOX").await?;
    let alice = service.store().account(ALICE.0).ok_or("alice exists")?;
    service.trigger(&alice, FaultAction::UidValidityReset);
    client.send(b"a2 NOOP\r\n").await?;
    let rest = client.receive_to_end().await?;
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "* BYE [UNAVAILABLE] UIDVALIDITY of the selected mailbox changed\r\n"
    );
    client.finish().await?;

    // A new session sees the new UIDVALIDITY.
    let uid_validity = alice.mailboxes().inbox().uid_validity();
    assert_ne!(uid_validity, 1);
    let (mut again, _) = log_in(&service, ALICE).await?;
    let select = ask(&mut again, "a1 SELECT INBOX").await?;
    let expected = format!("* OK [UIDVALIDITY {uid_validity}] UIDs valid\r\n");
    assert!(select.contains(&expected), "{select}");
    again.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_corrupt_message_is_fetchable() -> TestResult {
    let service = world();
    let alice = service.store().account(ALICE.0).ok_or("alice exists")?;
    service.trigger(&alice, FaultAction::CorruptMessage);
    let (mut client, _) = log_in(&service, ALICE).await?;
    ask(&mut client, "a1 SELECT INBOX").await?;
    let fetch = ask(
        &mut client,
        "a2 FETCH 4 (ENVELOPE BODYSTRUCTURE BODY.PEEK[])",
    )
    .await?;
    assert!(fetch.starts_with("* 4 FETCH (ENVELOPE ("), "{fetch}");
    assert!(fetch.ends_with("a2 OK FETCH completed\r\n"), "{fetch}");
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_service_wide_refusal_closes_before_greeting() -> TestResult {
    let service = world();
    service.faults().switch_on(FaultKind::ConnectionRefused);
    let mut client = connect(&service, usize::MAX);
    let received = client.receive_to_end().await?;
    assert!(received.is_empty());
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_too_many_bad_commands_close_session() -> TestResult {
    let limits = Limits {
        max_consecutive_errors: 3,
        ..Limits::default()
    };
    let service = service_with(limits);
    populate(&service);
    let mut client = connect(&service, usize::MAX);
    client.receive(greeting).await?;
    ask(&mut client, "b1 FOO").await?;
    // A good command resets the count.
    ask(&mut client, "b2 NOOP").await?;
    ask(&mut client, "b3 FOO").await?;
    ask(&mut client, "b4 FOO").await?;
    client.send(b"b5 FOO\r\n").await?;
    let rest = client.receive_to_end().await?;
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "b5 BAD Invalid command or arguments\r\n* BYE Too many invalid commands\r\n"
    );
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_idle_session_is_logged_out() -> TestResult {
    let service = service();
    let mut client = connect(&service, usize::MAX);
    client.receive(greeting).await?;
    let start = Instant::now();
    let rest = client.receive_to_end().await?;
    assert_eq!(rest, b"* BYE Autologout; idle for too long\r\n");
    assert_eq!(start.elapsed(), Duration::from_secs(30 * 60));
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_busy_listener_sends_bye() -> TestResult {
    use tokio::io::AsyncReadExt;

    let (mut client, server) = tokio::io::duplex(1024);
    sim::imap::refuse_busy(server).await;
    let mut received = Vec::new();
    client.read_to_end(&mut received).await?;
    assert_eq!(
        String::from_utf8_lossy(&received),
        "* BYE [UNAVAILABLE] Too many connections\r\n"
    );
    Ok(())
}
