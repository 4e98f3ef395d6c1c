//! Byte-exact POP3 transcripts. Each runs once in lockstep for the snapshot
//! and again with its input in chunks of 1, 2, 3, 5, 7, 16, 64 bytes and all
//! at once, which must give the same server output.

mod common_pop3smtp;

use common_pop3smtp::{
    Expect, Protocol, TestResult, add_account, inbox, service_with, step,
    transcript_in_all_chunkings,
};
use sim::{Limits, Service};

const ALICE: &str = "alice@example.com";
const PASSWORD: &str = "alice-secret";

/// Has a lone "." line and lines starting with dots, which RETR must stuff.
const QUOTE: &[u8] = b"From: Carol <carol@example.org>\r\n\
To: alice@example.com\r\n\
Subject: Quote request\r\n\
Message-ID: <q1@example.org>\r\n\
\r\n\
Please send a quote.\r\n\
.\r\n\
..two dots\r\n\
.leading dot\r\n\
Thanks\r\n";

const NEWSLETTER: &[u8] = b"From: news@example.net\r\n\
Subject: Weekly news\r\n\
\r\n\
line 1\r\n\
line 2\r\n\
.line 3\r\n\
line 4\r\n";

/// The last line has no line ending; RETR adds CRLF before the terminator.
const UNTERMINATED: &[u8] = b"From: bob@example.org\r\nSubject: No newline\r\n\r\nlast line";

fn mailbox() -> Service {
    let service = service_with(Limits::default());
    add_account(
        &service,
        ALICE,
        PASSWORD,
        &[QUOTE, NEWSLETTER, UNTERMINATED],
    );
    service
}

fn login() -> Vec<common_pop3smtp::Step> {
    vec![
        step(&format!("USER {ALICE}"), Expect::Line),
        step(&format!("PASS {PASSWORD}"), Expect::Line),
    ]
}

#[tokio::test(start_paused = true)]
async fn pop3_login_and_listing() -> TestResult {
    let steps = [
        step("CAPA", Expect::MultiLine),
        step(&format!("USER {ALICE}"), Expect::Line),
        step("PASS wrong-password", Expect::Line),
        step("PASS alice-secret", Expect::Line),
        step(&format!("user {ALICE}"), Expect::Line),
        step(&format!("pass {PASSWORD}"), Expect::Line),
        step("STAT", Expect::Line),
        step("LIST", Expect::MultiLine),
        step("LIST 2", Expect::Line),
        step("UIDL", Expect::MultiLine),
        step("UIDL 3", Expect::Line),
        step("CAPA", Expect::MultiLine),
        step("NOOP", Expect::Line),
        step("QUIT", Expect::Line),
    ];
    let transcript = transcript_in_all_chunkings(mailbox, Protocol::Pop3, &steps).await;
    insta::assert_snapshot!("pop3_login_and_listing", transcript.text);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_retr_and_top() -> TestResult {
    let mut steps = login();
    steps.extend([
        step("RETR 1", Expect::MultiLine),
        step("TOP 2 0", Expect::MultiLine),
        step("TOP 2 3", Expect::MultiLine),
        step("TOP 2 100", Expect::MultiLine),
        step("RETR 3", Expect::MultiLine),
        step("LIST 3", Expect::Line),
        step("QUIT", Expect::Line),
    ]);
    let transcript = transcript_in_all_chunkings(mailbox, Protocol::Pop3, &steps).await;
    insta::assert_snapshot!("pop3_retr_and_top", transcript.text);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_quit_applies_deletions() -> TestResult {
    let mut steps = login();
    steps.extend([
        step("DELE 1", Expect::Line),
        step("DELE 1", Expect::Line),
        step("RETR 1", Expect::Line),
        step("STAT", Expect::Line),
        step("LIST", Expect::MultiLine),
        step("RSET", Expect::Line),
        step("STAT", Expect::Line),
        step("DELE 2", Expect::Line),
        step("QUIT", Expect::Line),
    ]);
    let transcript = transcript_in_all_chunkings(mailbox, Protocol::Pop3, &steps).await;
    insta::assert_snapshot!("pop3_quit_applies_deletions", transcript.text);

    // The deletion reached the store, and a new session lists the rest
    // with the same unique ids as before.
    let service = mailbox();
    common_pop3smtp::run_lockstep(&service, Protocol::Pop3, &steps).await;
    assert_eq!(inbox(&service, ALICE), [QUOTE, UNTERMINATED]);
    let mut next = login();
    next.extend([step("UIDL", Expect::MultiLine), step("QUIT", Expect::Line)]);
    let after = common_pop3smtp::run_lockstep(&service, Protocol::Pop3, &next).await;
    insta::assert_snapshot!("pop3_next_session_after_deletion", after.text);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_dropped_session_applies_no_deletions() -> TestResult {
    // The client marks messages and disconnects without QUIT.
    let mut steps = login();
    steps.extend([
        step("DELE 1", Expect::Line),
        step("DELE 2", Expect::Line),
        step("STAT", Expect::Line),
    ]);
    let transcript = transcript_in_all_chunkings(mailbox, Protocol::Pop3, &steps).await;
    insta::assert_snapshot!("pop3_dropped_session", transcript.text);

    let service = mailbox();
    common_pop3smtp::run_lockstep(&service, Protocol::Pop3, &steps).await;
    assert_eq!(inbox(&service, ALICE).len(), 3);
    let mut next = login();
    next.extend([step("STAT", Expect::Line), step("QUIT", Expect::Line)]);
    let after = common_pop3smtp::run_lockstep(&service, Protocol::Pop3, &next).await;
    insta::assert_snapshot!("pop3_next_session_after_drop", after.text);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_errors_keep_session_open() -> TestResult {
    let make_service = || {
        let limits = Limits {
            max_line: 32,
            ..Limits::default()
        };
        let service = service_with(limits);
        add_account(&service, ALICE, PASSWORD, &[QUOTE]);
        service
    };
    let steps = [
        step("STAT", Expect::Line),
        step("NOOP", Expect::Line),
        step("PASS alice-secret", Expect::Line),
        step("XTND XLST", Expect::Line),
        step("", Expect::Line),
        step(&"X".repeat(100), Expect::Line),
        step(&format!("USER {ALICE}"), Expect::Line),
        step(&format!("PASS {PASSWORD}"), Expect::Line),
        step("USER bob", Expect::Line),
        step("RETR", Expect::Line),
        step("RETR one", Expect::Line),
        step("RETR 0", Expect::Line),
        step("RETR 2", Expect::Line),
        step("LIST 1 2", Expect::Line),
        step("TOP 1", Expect::Line),
        step("DELE 4294967296", Expect::Line),
        step("UIDL 1", Expect::Line),
        step("QUIT", Expect::Line),
    ];
    let transcript = transcript_in_all_chunkings(make_service, Protocol::Pop3, &steps).await;
    insta::assert_snapshot!("pop3_errors", transcript.text);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn pop3_closes_after_errors_in_a_row() -> TestResult {
    let make_service = || {
        let limits = Limits {
            max_consecutive_errors: 3,
            ..Limits::default()
        };
        service_with(limits)
    };
    // A valid command in between resets the count.
    let steps = [
        step("BAD1", Expect::Line),
        step("BAD2", Expect::Line),
        step("CAPA", Expect::MultiLine),
        step("BAD3", Expect::Line),
        step("BAD4", Expect::Line),
        step("BAD5", Expect::Line),
    ];
    let transcript = transcript_in_all_chunkings(make_service, Protocol::Pop3, &steps).await;
    insta::assert_snapshot!("pop3_errors_in_a_row", transcript.text);
    Ok(())
}
