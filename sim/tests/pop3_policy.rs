//! POP3 responses to account policies and injected faults.

mod common_pop3smtp;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common_pop3smtp::{Client, Protocol, TestResult, add_account, connect, inbox, service_with};
use sim::policy::OFFICE365_BACKOFF;
use sim::store::Account;
use sim::{AccountPolicy, CommandBudget, FaultAction, FaultKind, Limits, ScheduledFault, Service};
use tokio::time::Instant;

const ALICE: &str = "alice@example.com";
const PASSWORD: &str = "alice-secret";
const MESSAGE: &[u8] = b"Subject: hello\r\n\r\nbody\r\n";

fn mailbox(messages: &[&[u8]]) -> (Service, Arc<Account>) {
    let service = service_with(Limits::default());
    add_account(&service, ALICE, PASSWORD, messages);
    let account = service.store().account(ALICE).expect("account exists");
    (service, account)
}

/// Connects, reads the greeting and logs in. Returns the PASS response.
async fn login(service: &Service) -> std::io::Result<(Client, String)> {
    let mut client = connect(service, Protocol::Pop3);
    let greeting = client.text_line().await?;
    assert!(greeting.starts_with("+OK "), "{greeting}");
    let user = client.ask(&format!("USER {ALICE}")).await?;
    assert_eq!(user, "+OK Send PASS\r\n");
    let pass = client.ask(&format!("PASS {PASSWORD}")).await?;
    Ok((client, pass))
}

#[tokio::test(start_paused = true)]
async fn pop3_wrong_password_gets_auth() -> TestResult {
    let (service, _) = mailbox(&[MESSAGE]);
    let mut client = connect(&service, Protocol::Pop3);
    client.text_line().await?;
    client.ask(&format!("USER {ALICE}")).await?;
    let answer = client.ask("PASS not-the-password").await?;
    assert_eq!(answer, "-ERR [AUTH] Authentication failed\r\n");

    // An unknown user gets the same response, so names cannot be probed.
    client.ask("USER nobody@example.com").await?;
    let answer = client.ask(&format!("PASS {PASSWORD}")).await?;
    assert_eq!(answer, "-ERR [AUTH] Authentication failed\r\n");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_login_rejected_fault_gets_auth() -> TestResult {
    let (service, account) = mailbox(&[MESSAGE]);
    account.faults().switch_on(FaultKind::LoginRejected);
    let (_client, answer) = login(&service).await?;
    assert_eq!(answer, "-ERR [AUTH] Authentication failed\r\n");

    account.faults().switch_off(FaultKind::LoginRejected);
    let (_client, answer) = login(&service).await?;
    assert!(answer.starts_with("+OK "), "{answer}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_second_session_gets_in_use() -> TestResult {
    let (service, _) = mailbox(&[MESSAGE]);
    let (mut first, answer) = login(&service).await?;
    assert!(answer.starts_with("+OK "), "{answer}");

    let (mut second, answer) = login(&service).await?;
    assert_eq!(
        answer,
        "-ERR [IN-USE] Maildrop is locked by another session\r\n"
    );

    // Once the first session has signed off, the second can log in.
    let quit = first.ask("QUIT").await?;
    assert!(quit.starts_with("+OK "), "{quit}");
    first.finish().await?;
    second.ask(&format!("USER {ALICE}")).await?;
    let answer = second.ask(&format!("PASS {PASSWORD}")).await?;
    assert!(answer.starts_with("+OK "), "{answer}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_connection_limit_refuses_21st() -> TestResult {
    let (service, account) = mailbox(&[MESSAGE]);
    account.set_policy(AccountPolicy {
        max_pop3_connections: Some(20),
        ..AccountPolicy::default()
    });
    // The maildrop lock allows one session per mailbox here, so 19 other
    // connections (as from other servers of a cluster) are counted directly.
    let others: Vec<_> = (0..19)
        .map(|_| account.try_connect(sim::Protocol::Pop3, Some(20)))
        .collect::<Option<_>>()
        .ok_or("could not count 19 connections")?;

    let (mut twentieth, answer) = login(&service).await?;
    assert!(answer.starts_with("+OK "), "{answer}");
    assert_eq!(account.connections(sim::Protocol::Pop3), 20);

    let (_client, answer) = login(&service).await?;
    assert_eq!(answer, "-ERR [IN-USE] Too many connections\r\n");
    assert_eq!(account.connections(sim::Protocol::Pop3), 20);

    twentieth.ask("QUIT").await?;
    twentieth.finish().await?;
    assert_eq!(account.connections(sim::Protocol::Pop3), 19);
    drop(others);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_spent_budget_gets_throttled() -> TestResult {
    let (service, account) = mailbox(&[MESSAGE]);
    account.set_policy(AccountPolicy {
        command_budget: Some(CommandBudget {
            commands: 3,
            window: Duration::from_secs(60),
        }),
        ..AccountPolicy::default()
    });
    let (mut client, answer) = login(&service).await?;
    assert!(answer.starts_with("+OK "), "{answer}");
    for _ in 0..3 {
        assert_eq!(client.ask("STAT").await?, "+OK 1 24\r\n");
    }

    // One token comes back every 20 seconds.
    let answer = client.ask("STAT").await?;
    assert_eq!(
        answer,
        "-ERR [SYS/TEMP] Request is throttled. Suggested Backoff Time: 20000 milliseconds\r\n"
    );
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(client.ask("STAT").await?, "+OK 1 24\r\n");
    assert_eq!(client.ask("DELE 1").await?, "+OK Message 1 deleted\r\n");
    let answer = client.ask("NOOP").await?;
    assert!(answer.starts_with("-ERR [SYS/TEMP] "), "{answer}");

    // QUIT is never throttled, so deletions still get applied.
    let quit = client.ask("QUIT").await?;
    assert!(quit.starts_with("+OK "), "{quit}");
    client.finish().await?;
    assert!(inbox(&service, ALICE).is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_throttled_answer_uses_backoff_hint() -> TestResult {
    let (service, account) = mailbox(&[MESSAGE]);
    account.set_policy(AccountPolicy {
        command_budget: Some(CommandBudget {
            commands: 1,
            window: Duration::from_secs(60),
        }),
        backoff_hint: Some(OFFICE365_BACKOFF),
        ..AccountPolicy::default()
    });
    let (mut client, _) = login(&service).await?;
    client.ask("NOOP").await?;
    let answer = client.ask("NOOP").await?;
    assert_eq!(
        answer,
        "-ERR [SYS/TEMP] Request is throttled. Suggested Backoff Time: 300000 milliseconds\r\n"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_server_error_gets_sys_temp() -> TestResult {
    let (service, account) = mailbox(&[MESSAGE]);
    let (mut client, _) = login(&service).await?;
    client.ask("DELE 1").await?;
    account.faults().switch_on(FaultKind::ServerError);
    let answer = client.ask("STAT").await?;
    assert_eq!(
        answer,
        "-ERR [SYS/TEMP] Mail store temporarily unavailable\r\n"
    );

    // QUIT ends the session but cannot remove the marked message.
    let quit = client.ask("QUIT").await?;
    assert_eq!(
        quit,
        "-ERR [SYS/TEMP] Mail store temporarily unavailable, deleted messages not removed\r\n"
    );
    assert!(client.finish().await?.is_empty());
    assert_eq!(inbox(&service, ALICE).len(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_refused_connection_closes_before_greeting() -> TestResult {
    let (service, _) = mailbox(&[MESSAGE]);
    service.faults().switch_on(FaultKind::ConnectionRefused);
    let mut client = connect(&service, Protocol::Pop3);
    assert!(client.read_until_closed().await?.is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_refused_account_closes_at_pass() -> TestResult {
    let (service, account) = mailbox(&[MESSAGE]);
    account.faults().switch_on(FaultKind::ConnectionRefused);
    let mut client = connect(&service, Protocol::Pop3);
    client.text_line().await?;
    client.ask(&format!("USER {ALICE}")).await?;
    client.command(&format!("PASS {PASSWORD}")).await?;
    assert!(client.read_until_closed().await?.is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_reset_mid_fetch_cuts_message() -> TestResult {
    let body = "0123456789abcdef\r\n".repeat(600);
    let message = format!("Subject: big\r\n\r\n{body}");
    let (service, account) = mailbox(&[message.as_bytes(), MESSAGE]);
    let (mut client, _) = login(&service).await?;
    client.ask("DELE 2").await?;
    account.faults().switch_on(FaultKind::ResetMidFetch);
    client.command("RETR 1").await?;
    let received = client.read_until_closed().await?;

    let status = format!("+OK {} octets\r\n", message.len());
    assert!(received.starts_with(status.as_bytes()));
    let content = received.len() - status.len();
    assert_eq!(content, (message.len() + 3) / 2);
    assert!(!received.ends_with(b"\r\n.\r\n"));
    client.finish().await?;
    assert_eq!(inbox(&service, ALICE).len(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_reset_after_bytes_cuts_output() -> TestResult {
    let (service, _) = mailbox(&[MESSAGE]);
    service.faults().switch_on(FaultKind::ResetAfterBytes(50));
    let mut client = connect(&service, Protocol::Pop3);
    client.command(&format!("USER {ALICE}")).await?;
    client.command(&format!("PASS {PASSWORD}")).await?;
    let received = client.read_until_closed().await?;
    assert_eq!(received.len(), 50);
    assert!(received.starts_with(b"+OK mail.example.com POP3 server ready\r\n+OK Send"));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_stall_holds_answer_until_window_ends() -> TestResult {
    let (service, account) = mailbox(&[MESSAGE]);
    let start = Instant::now();
    account.faults().schedule(ScheduledFault {
        kind: FaultKind::Stall,
        from: Duration::from_secs(10),
        until: Some(Duration::from_secs(70)),
    });
    let (mut client, _) = login(&service).await?;
    assert_eq!(client.ask("STAT").await?, "+OK 1 24\r\n");
    assert!(start.elapsed() < Duration::from_secs(1));

    tokio::time::sleep_until(start + Duration::from_secs(15)).await;
    assert_eq!(client.ask("STAT").await?, "+OK 1 24\r\n");
    assert_eq!(start.elapsed(), Duration::from_secs(70));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_latency_delays_each_reply() -> TestResult {
    let (service, account) = mailbox(&[MESSAGE]);
    account.set_policy(AccountPolicy {
        command_latency: Duration::from_millis(250),
        ..AccountPolicy::default()
    });
    let (mut client, _) = login(&service).await?;
    let before = Instant::now();
    client.ask("STAT").await?;
    client.ask("NOOP").await?;
    assert_eq!(before.elapsed(), Duration::from_millis(500));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_idle_session_is_logged_out() -> TestResult {
    let (service, _) = mailbox(&[MESSAGE]);
    let (mut client, _) = login(&service).await?;
    client.ask("DELE 1").await?;
    let before = Instant::now();

    // RFC 1939 autologout: close without a reply and without UPDATE.
    assert!(client.read_until_closed().await?.is_empty());
    assert_eq!(before.elapsed(), Duration::from_secs(600));
    assert_eq!(inbox(&service, ALICE).len(), 1);
    let (_client, answer) = login(&service).await?;
    assert!(answer.starts_with("+OK "), "{answer}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_uidl_changes_only_with_uidvalidity() -> TestResult {
    let (service, account) = mailbox(&[MESSAGE, MESSAGE]);
    let listing = |service: Service| async move {
        let (mut client, _) = login(&service).await?;
        client.command("UIDL").await?;
        let listing = client.pop3_multi_line().await?;
        client.ask("QUIT").await?;
        client.finish().await?;
        std::io::Result::Ok(String::from_utf8_lossy(&listing).into_owned())
    };
    let first = listing(service.clone()).await?;
    let second = listing(service.clone()).await?;
    assert_eq!(first, second);

    service.trigger(&account, FaultAction::UidValidityReset);
    let uid_validity = account.mailboxes().inbox().uid_validity();
    let after = listing(service.clone()).await?;
    assert_ne!(after, first);
    let expected = format!(
        "+OK Unique-ID listing follows\r\n1 {uid_validity}.1\r\n2 {uid_validity}.2\r\n.\r\n"
    );
    assert_eq!(after, expected);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_maildrop_is_fixed_at_login() -> TestResult {
    let (service, account) = mailbox(&[MESSAGE]);
    let (mut client, _) = login(&service).await?;
    service.insert(&account, Bytes::from_static(b"Subject: later\r\n\r\nx\r\n"));
    assert_eq!(client.ask("STAT").await?, "+OK 1 24\r\n");
    client.ask("DELE 1").await?;
    let quit = client.ask("QUIT").await?;
    assert_eq!(
        quit,
        "+OK mail.example.com POP3 server signing off (1 messages left)\r\n"
    );
    client.finish().await?;

    let (mut client, _) = login(&service).await?;
    assert_eq!(client.ask("STAT").await?, "+OK 1 21\r\n");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_refuse_busy_answers_in_use() -> TestResult {
    let (mut client, server) = tokio::io::duplex(1024);
    sim::pop3::refuse_busy(server).await;
    let mut received = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut client, &mut received).await?;
    assert_eq!(received, b"-ERR [IN-USE] Too many connections\r\n");
    Ok(())
}
