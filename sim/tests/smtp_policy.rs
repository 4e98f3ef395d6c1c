//! SMTP replies to faults and limits, and delivery through the service's
//! receive limits and forwarding rules.

mod common_pop3smtp;

use std::time::Duration;

use common_pop3smtp::{Client, Protocol, TestResult, add_account, connect, inbox, service_with};
use mail_parser::MessageParser;
use sim::{AccountPolicy, FaultKind, ForwardMode, ForwardRule, Limits, ScheduledFault, Service};
use tokio::time::Instant;

const ALICE: &str = "alice@example.com";
const FORWARD: &str = "forward@example.com";
const MESSAGE: &[u8] =
    b"From: carol@example.org\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nbody\r\n";

fn mailbox() -> Service {
    let service = service_with(Limits::default());
    add_account(&service, ALICE, "pw", &[]);
    service
}

async fn reply(client: &mut Client, line: &str) -> std::io::Result<String> {
    client.command(line).await?;
    Ok(String::from_utf8_lossy(&client.smtp_reply().await?).into_owned())
}

/// Greets, then sends one message to `to`; returns the end-of-data reply.
async fn send_message(client: &mut Client, to: &str, message: &[u8]) -> std::io::Result<String> {
    let greeting = reply(client, "EHLO client.example.org").await?;
    assert!(greeting.starts_with("250-"), "{greeting}");
    let mail = reply(client, "MAIL FROM:<carol@example.org>").await?;
    assert!(mail.starts_with("250 "), "{mail}");
    let rcpt = reply(client, &format!("RCPT TO:<{to}>")).await?;
    assert!(rcpt.starts_with("250 "), "{rcpt}");
    let data = reply(client, "DATA").await?;
    assert!(data.starts_with("354 "), "{data}");
    client.send(message).await?;
    client.send(b".\r\n").await?;
    Ok(String::from_utf8_lossy(&client.smtp_reply().await?).into_owned())
}

async fn greeted(service: &Service) -> std::io::Result<Client> {
    let mut client = connect(service, Protocol::Smtp);
    let greeting = client.smtp_reply().await?;
    assert_eq!(greeting, b"220 mail.example.com ESMTP\r\n");
    Ok(client)
}

#[tokio::test(start_paused = true)]
async fn smtp_server_error_gets_451() -> TestResult {
    let service = mailbox();
    let mut client = greeted(&service).await?;
    service.faults().switch_on(FaultKind::ServerError);
    let answer = reply(&mut client, "EHLO client.example.org").await?;
    assert_eq!(
        answer,
        "451 4.3.0 Temporary server error, try again later\r\n"
    );
    service.faults().switch_off(FaultKind::ServerError);
    let answer = reply(&mut client, "EHLO client.example.org").await?;
    assert!(answer.starts_with("250-"), "{answer}");
    service.faults().switch_on(FaultKind::ServerError);
    assert_eq!(reply(&mut client, "QUIT").await?, "221 Goodbye\r\n");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_data_server_error_ends_transaction() -> TestResult {
    let service = mailbox();
    let mut client = greeted(&service).await?;
    reply(&mut client, "EHLO client.example.org").await?;
    reply(&mut client, "MAIL FROM:<carol@example.org>").await?;
    reply(&mut client, &format!("RCPT TO:<{ALICE}>")).await?;
    reply(&mut client, "DATA").await?;
    client.send(MESSAGE).await?;
    service.faults().switch_on(FaultKind::ServerError);
    client.send(b".\r\n").await?;
    let answer = client.smtp_reply().await?;
    assert_eq!(
        answer,
        b"451 4.3.0 Temporary server error, try again later\r\n"
    );
    assert!(inbox(&service, ALICE).is_empty());

    // The next transaction starts from MAIL, as after any end of DATA.
    service.faults().switch_off(FaultKind::ServerError);
    let mail = reply(&mut client, "MAIL FROM:<carol@example.org>").await?;
    assert!(mail.starts_with("250 "), "{mail}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_refused_connection_closes_before_greeting() -> TestResult {
    let service = mailbox();
    service.faults().switch_on(FaultKind::ConnectionRefused);
    let mut client = connect(&service, Protocol::Smtp);
    assert!(client.read_until_closed().await?.is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_reset_after_bytes_cuts_output() -> TestResult {
    let service = mailbox();
    service.faults().switch_on(FaultKind::ResetAfterBytes(40));
    let mut client = connect(&service, Protocol::Smtp);
    client.command("EHLO client.example.org").await?;
    let received = client.read_until_closed().await?;
    assert_eq!(received.len(), 40);
    assert!(received.starts_with(b"220 mail.example.com ESMTP\r\n250-mail"));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_stall_delays_greeting_until_window_ends() -> TestResult {
    let service = mailbox();
    let start = Instant::now();
    service.faults().schedule(ScheduledFault {
        kind: FaultKind::Stall,
        from: Duration::ZERO,
        until: Some(Duration::from_secs(30)),
    });
    greeted(&service).await?;
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_idle_client_gets_421() -> TestResult {
    let service = mailbox();
    let mut client = greeted(&service).await?;
    reply(&mut client, "EHLO client.example.org").await?;
    let before = Instant::now();
    let rest = client.read_until_closed().await?;
    assert_eq!(rest, b"421 4.4.2 mail.example.com Timeout exceeded\r\n");
    assert_eq!(before.elapsed(), Duration::from_secs(300));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_idle_client_in_data_gets_421() -> TestResult {
    let service = mailbox();
    let mut client = greeted(&service).await?;
    reply(&mut client, "EHLO client.example.org").await?;
    reply(&mut client, "MAIL FROM:<carol@example.org>").await?;
    reply(&mut client, &format!("RCPT TO:<{ALICE}>")).await?;
    reply(&mut client, "DATA").await?;
    client.send(b"Subject: unfinished\r\n").await?;
    let rest = client.read_until_closed().await?;
    assert_eq!(rest, b"421 4.4.2 mail.example.com Timeout exceeded\r\n");
    assert!(inbox(&service, ALICE).is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_too_many_recipients_gets_452() -> TestResult {
    let service = mailbox();
    let mut client = greeted(&service).await?;
    reply(&mut client, "EHLO client.example.org").await?;
    reply(&mut client, "MAIL FROM:<carol@example.org>").await?;
    for _ in 0..100 {
        let answer = reply(&mut client, &format!("RCPT TO:<{ALICE}>")).await?;
        assert_eq!(answer, "250 2.1.5 Recipient ok\r\n");
    }
    let answer = reply(&mut client, &format!("RCPT TO:<{ALICE}>")).await?;
    assert_eq!(answer, "452 4.5.3 Too many recipients\r\n");

    // A repeated recipient still gets one copy.
    reply(&mut client, "DATA").await?;
    client.send(MESSAGE).await?;
    client.send(b".\r\n").await?;
    client.smtp_reply().await?;
    assert_eq!(inbox(&service, ALICE).len(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_delivery_forwards_as_attachment() -> TestResult {
    let service = mailbox();
    add_account(&service, FORWARD, "pw", &[]);
    service.set_forward_rule(
        ALICE,
        ForwardRule {
            to: FORWARD.to_owned(),
            mode: ForwardMode::Attachment,
            delay: Duration::from_secs(5),
        },
    )?;
    let mut client = greeted(&service).await?;
    let answer = send_message(&mut client, ALICE, MESSAGE).await?;
    assert!(answer.starts_with("250 2.0.0 "), "{answer}");
    assert!(inbox(&service, FORWARD).is_empty());

    // The scheduler runs the forward at 5 s; read the store just after.
    tokio::time::sleep(Duration::from_millis(5001)).await;
    let delivered = inbox(&service, ALICE);
    let forwarded = inbox(&service, FORWARD);
    assert_eq!(forwarded.len(), 1);
    let parsed = MessageParser::new()
        .parse(&forwarded[0])
        .ok_or("forwarded copy does not parse")?;
    let attached = parsed
        .attachments()
        .find_map(|part| part.message())
        .ok_or("forwarded copy has no message/rfc822 part")?;
    assert_eq!(attached.raw_message(), &delivered[0][..]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_delivery_waits_for_receive_limit() -> TestResult {
    let service = mailbox();
    let account = service.store().account(ALICE).ok_or("no account")?;
    account.set_policy(AccountPolicy {
        receive_per_hour: Some(1),
        ..AccountPolicy::default()
    });
    let mut client = greeted(&service).await?;
    for _ in 0..2 {
        let answer = send_message(&mut client, ALICE, MESSAGE).await?;
        assert!(answer.starts_with("250 2.0.0 "), "{answer}");
    }
    assert_eq!(inbox(&service, ALICE).len(), 1);
    assert_eq!(service.deferred_count(ALICE), 1);
    // The hourly bucket has room again after one hour.
    tokio::time::sleep(Duration::from_millis(3_600_001)).await;
    assert_eq!(inbox(&service, ALICE).len(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_accepts_null_sender() -> TestResult {
    let service = mailbox();
    let mut client = greeted(&service).await?;
    reply(&mut client, "EHLO client.example.org").await?;
    let mail = reply(&mut client, "MAIL FROM:<>").await?;
    assert_eq!(mail, "250 2.1.0 Sender ok\r\n");
    reply(&mut client, &format!("RCPT TO:<{ALICE}>")).await?;
    reply(&mut client, "DATA").await?;
    client.send(MESSAGE).await?;
    client.send(b".\r\n").await?;
    let answer = client.smtp_reply().await?;
    assert!(answer.starts_with(b"250 2.0.0 "));
    assert_eq!(inbox(&service, ALICE).len(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_refuse_busy_answers_421() -> TestResult {
    let (mut client, server) = tokio::io::duplex(1024);
    sim::smtp::refuse_busy(server, "mail.example.com").await;
    let mut received = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut client, &mut received).await?;
    assert_eq!(
        received,
        b"421 4.7.0 mail.example.com Too many connections, try again later\r\n"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_recipient_fault_gets_451_at_rcpt() -> TestResult {
    let service = mailbox();
    add_account(&service, "bob@example.com", "pw", &[]);
    let account = service.store().account(ALICE).expect("alice exists");
    account.faults().switch_on(FaultKind::ServerError);
    let mut client = greeted(&service).await?;
    reply(&mut client, "EHLO client.example.org").await?;
    reply(&mut client, "MAIL FROM:<carol@example.org>").await?;
    let refused = reply(&mut client, &format!("RCPT TO:<{ALICE}>")).await?;
    assert_eq!(
        refused,
        "451 4.3.0 Temporary server error, try again later\r\n"
    );
    // Another recipient of the same session is not affected.
    let accepted = reply(&mut client, "RCPT TO:<bob@example.com>").await?;
    assert!(accepted.starts_with("250 "), "{accepted}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_recipient_latency_delays_rcpt_reply() -> TestResult {
    let service = mailbox();
    let account = service.store().account(ALICE).expect("alice exists");
    account.set_policy(AccountPolicy {
        command_latency: Duration::from_millis(250),
        ..AccountPolicy::default()
    });
    let mut client = greeted(&service).await?;
    reply(&mut client, "EHLO client.example.org").await?;
    reply(&mut client, "MAIL FROM:<carol@example.org>").await?;
    let before = Instant::now();
    let accepted = reply(&mut client, &format!("RCPT TO:<{ALICE}>")).await?;
    assert!(accepted.starts_with("250 "), "{accepted}");
    assert_eq!(before.elapsed(), Duration::from_millis(250));
    Ok(())
}
