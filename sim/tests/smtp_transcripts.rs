//! Byte-exact SMTP transcripts. Each runs once in lockstep for the snapshot
//! and again with its input in chunks of 1, 2, 3, 5, 7, 16, 64 bytes and all
//! at once, which must give the same server output.

mod common_pop3smtp;

use common_pop3smtp::{
    Expect, Protocol, TestResult, add_account, escape, inbox, raw, run_lockstep, service_with,
    step, transcript_in_all_chunkings,
};
use sim::{Limits, Service};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

/// The message as the client means it; the wire form below stuffs its dots.
const MESSAGE: &[u8] = b"From: Carol <carol@example.org>\r\n\
To: alice@example.com, bob@example.com\r\n\
Subject: Quote request\r\n\
Message-ID: <q1@example.org>\r\n\
\r\n\
Please send a quote.\r\n\
.\r\n\
.leading dot\r\n\
Thanks\r\n";

const MESSAGE_ON_WIRE: &[u8] = b"From: Carol <carol@example.org>\r\n\
To: alice@example.com, bob@example.com\r\n\
Subject: Quote request\r\n\
Message-ID: <q1@example.org>\r\n\
\r\n\
Please send a quote.\r\n\
..\r\n\
..leading dot\r\n\
Thanks\r\n\
.\r\n";

fn two_mailboxes() -> Service {
    let service = service_with(Limits::default());
    add_account(&service, ALICE, "pw", &[]);
    add_account(&service, BOB, "pw", &[]);
    service
}

#[tokio::test(start_paused = true)]
async fn smtp_delivers_to_known_recipients() -> TestResult {
    let steps = [
        step("EHLO client.example.org", Expect::Reply),
        step("MAIL FROM:<carol@example.org>", Expect::Reply),
        step("RCPT TO:<alice@example.com>", Expect::Reply),
        step("RCPT TO:<nobody@example.com>", Expect::Reply),
        step("RCPT TO:<BOB@example.com>", Expect::Reply),
        step("DATA", Expect::Reply),
        raw(MESSAGE_ON_WIRE, Expect::Reply),
        step("QUIT", Expect::Reply),
    ];
    let transcript = transcript_in_all_chunkings(two_mailboxes, Protocol::Smtp, &steps).await;
    insta::assert_snapshot!("smtp_delivery", transcript.text);

    // Both recipients got the original bytes after one Received header.
    let service = two_mailboxes();
    run_lockstep(&service, Protocol::Smtp, &steps).await;
    let alice = inbox(&service, ALICE);
    let bob = inbox(&service, BOB);
    assert_eq!(alice.len(), 1);
    assert_eq!(bob, alice);
    let stored = &alice[0];
    assert!(stored.starts_with(b"Received: "), "{}", escape(stored));
    let header_end = stored
        .windows(2)
        .enumerate()
        .skip(1)
        .find(|(_, pair)| pair[0] == b'\n' && pair[1] != b'\t')
        .map(|(index, _)| index + 1)
        .ok_or("Received header has no end")?;
    assert_eq!(&stored[header_end..], MESSAGE);
    insta::assert_snapshot!("smtp_delivery_stored", escape(&stored[..header_end]));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_helo_without_recipient_in_header() -> TestResult {
    let steps = [
        step("HELO old.example.org", Expect::Reply),
        step("MAIL FROM:<carol@example.org>", Expect::Reply),
        step("RCPT TO:<alice@example.com>", Expect::Reply),
        step("RCPT TO:<bob@example.com>", Expect::Reply),
        step("DATA", Expect::Reply),
        raw(b"Subject: short\r\n\r\nhi\r\n.\r\n", Expect::Reply),
        step("MAIL FROM:<carol@example.org>", Expect::Reply),
        step("RCPT TO:<alice@example.com>", Expect::Reply),
        step("DATA", Expect::Reply),
        raw(b"Subject: second\r\n\r\nbye\r\n.\r\n", Expect::Reply),
        step("QUIT", Expect::Reply),
    ];
    let transcript = transcript_in_all_chunkings(two_mailboxes, Protocol::Smtp, &steps).await;
    insta::assert_snapshot!("smtp_helo_two_transactions", transcript.text);

    let service = two_mailboxes();
    run_lockstep(&service, Protocol::Smtp, &steps).await;
    let alice = inbox(&service, ALICE);
    assert_eq!(alice.len(), 2);
    assert_eq!(inbox(&service, BOB).len(), 1);
    insta::assert_snapshot!(
        "smtp_helo_two_transactions_stored",
        format!("{}\n{}", escape(&alice[0]), escape(&alice[1]))
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_rset_and_bad_sequences() -> TestResult {
    let steps = [
        step("MAIL FROM:<carol@example.org>", Expect::Reply),
        step("EHLO client.example.org", Expect::Reply),
        step("MAIL FROM:<carol@example.org>", Expect::Reply),
        step("RCPT TO:<alice@example.com>", Expect::Reply),
        step("RSET", Expect::Reply),
        step("RCPT TO:<alice@example.com>", Expect::Reply),
        step("DATA", Expect::Reply),
        step("NOOP", Expect::Reply),
        step("VRFY alice", Expect::Reply),
        step("MAIL FROM:carol@example.org", Expect::Reply),
        step("HELP", Expect::Reply),
        step("STARTTLS", Expect::Reply),
        step("AUTH PLAIN AGFsaWNlAHB3", Expect::Reply),
        step("QUIT", Expect::Reply),
    ];
    let transcript = transcript_in_all_chunkings(two_mailboxes, Protocol::Smtp, &steps).await;
    insta::assert_snapshot!("smtp_rset_and_bad_sequences", transcript.text);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_rejects_oversize_message() -> TestResult {
    let make_service = || {
        let limits = Limits {
            max_message: 64,
            ..Limits::default()
        };
        let service = service_with(limits);
        add_account(&service, ALICE, "pw", &[]);
        service
    };
    let big = format!("Subject: big\r\n\r\n{}\r\n.\r\n", "x".repeat(200));
    let steps = [
        step("EHLO client.example.org", Expect::Reply),
        step("MAIL FROM:<carol@example.org>", Expect::Reply),
        step("RCPT TO:<alice@example.com>", Expect::Reply),
        step("DATA", Expect::Reply),
        raw(big.as_bytes(), Expect::Reply),
        step("MAIL FROM:<carol@example.org>", Expect::Reply),
        step("RCPT TO:<alice@example.com>", Expect::Reply),
        step("DATA", Expect::Reply),
        raw(b"Subject: small\r\n\r\nok\r\n.\r\n", Expect::Reply),
        step("QUIT", Expect::Reply),
    ];
    let transcript = transcript_in_all_chunkings(make_service, Protocol::Smtp, &steps).await;
    insta::assert_snapshot!("smtp_oversize", transcript.text);

    let service = make_service();
    run_lockstep(&service, Protocol::Smtp, &steps).await;
    let alice = inbox(&service, ALICE);
    assert_eq!(alice.len(), 1);
    assert!(alice[0].ends_with(b"Subject: small\r\n\r\nok\r\n"));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn smtp_long_line_and_errors_in_a_row() -> TestResult {
    let make_service = || {
        let limits = Limits {
            max_line: 64,
            max_consecutive_errors: 4,
            ..Limits::default()
        };
        service_with(limits)
    };
    let steps = [
        step("EHLO client.example.org", Expect::Reply),
        step(
            &format!("MAIL FROM:<{}@example.org>", "c".repeat(100)),
            Expect::Reply,
        ),
        step("NOOP", Expect::Reply),
        step("BOGUS", Expect::Reply),
        step("RCPT TO:<alice@example.com>", Expect::Reply),
        step("DATA", Expect::Reply),
        step("\u{7f}\u{1}", Expect::Reply),
    ];
    let transcript = transcript_in_all_chunkings(make_service, Protocol::Smtp, &steps).await;
    insta::assert_snapshot!("smtp_errors_in_a_row", transcript.text);
    Ok(())
}
