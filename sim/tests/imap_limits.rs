//! Input limits: line length, literal size before and after login, and
//! large literals that are within the limits.

mod common;

use common::imap::{ALICE, ask, connect, continue_with, greeting, log_in, populate};
use common::{TestResult, service_with};
use sim::{Limits, Service};

fn service_limited(max_line: usize, max_literal: usize) -> Service {
    let service = service_with(Limits {
        max_line,
        max_literal,
        ..Limits::default()
    });
    populate(&service);
    service
}

/// Builds a LOGIN line of exactly `length` bytes, CRLF included.
fn login_line(length: usize) -> String {
    let head = "a1 LOGIN alice@example.org \"";
    let padding = length - head.len() - "\"\r\n".len();
    format!("{head}{}\"", "x".repeat(padding))
}

#[tokio::test(start_paused = true)]
async fn imap_line_limit_is_exact() -> TestResult {
    let service = service_limited(100, 1024);
    let mut client = connect(&service, usize::MAX);
    client.receive(greeting).await?;

    let at_limit = ask(&mut client, &login_line(100)).await?;
    assert_eq!(
        at_limit,
        "a1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
    );

    client
        .send(format!("{}\r\n", login_line(101)).as_bytes())
        .await?;
    // The tag survives the discarded line, so the client gets its answer.
    let next = ask(&mut client, "a2 NOOP").await?;
    assert_eq!(
        next,
        "a1 BAD Command line too long\r\na2 OK NOOP completed\r\n"
    );
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_oversized_sync_literal_is_refused() -> TestResult {
    let service = service_limited(64 * 1024, 1024 * 1024);
    let (mut client, _) = log_in(&service, ALICE).await?;
    let refused = ask(&mut client, "a1 APPEND INBOX {10485760}").await?;
    assert_eq!(
        refused,
        "a1 NO [TOOBIG] Literal of 10485760 octets is over the size limit, or the command has more than 16 literals\r\n"
    );
    // The client abandons the command; the session goes on.
    let status = ask(&mut client, "a2 STATUS INBOX (MESSAGES)").await?;
    assert_eq!(
        status,
        "* STATUS INBOX (MESSAGES 3)\r\na2 OK STATUS completed\r\n"
    );
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_oversized_non_sync_literal_closes_connection() -> TestResult {
    let service = service_limited(64 * 1024, 1024 * 1024);
    let (mut client, _) = log_in(&service, ALICE).await?;
    client
        .send(b"a1 APPEND INBOX {10485760+}\r\nSubject: too big\r\n")
        .await?;
    let rest = client.receive_to_end().await?;
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "a1 BAD [TOOBIG] Literal of 10485760 octets is over the size limit, or the command has more than 16 literals\r\n\
         * BYE Literal too large, closing connection\r\n"
    );
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_login_literal_uses_line_limit() -> TestResult {
    let service = service_limited(1000, 1024 * 1024);
    let mut client = connect(&service, usize::MAX);
    client.receive(greeting).await?;
    let refused = ask(&mut client, "a1 LOGIN {1001}").await?;
    assert_eq!(
        refused,
        "a1 NO [TOOBIG] Literal of 1001 octets is over the size limit, or the command has more than 16 literals\r\n"
    );
    let accepted = ask(&mut client, "a2 LOGIN {17}").await?;
    assert_eq!(accepted, "+ Ready for literal data\r\n");
    let login = continue_with(&mut client, "alice@example.org alice-pw", "a2").await?;
    assert_eq!(login, "a2 OK Logged in\r\n");
    client.finish().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_large_append_round_trips_exactly() -> TestResult {
    let service = service_limited(64 * 1024, 8 * 1024 * 1024);
    let (mut client, _) = log_in(&service, ALICE).await?;

    let mut message = b"Subject: large\r\n\r\n".to_vec();
    while message.len() < 2 * 1024 * 1024 {
        message.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop\r\n",
        );
    }
    let length = message.len();
    client
        .send_unrecorded(format!("a1 APPEND INBOX {{{length}+}}\r\n").as_bytes())
        .await?;
    client.send_unrecorded(&message).await?;
    let append = continue_with(&mut client, "", "a1").await?;
    assert_eq!(append, "a1 OK [APPENDUID 1 4] APPEND completed\r\n");

    ask(&mut client, "a2 SELECT INBOX").await?;
    let fetch = ask(&mut client, "a3 UID FETCH 4 BODY.PEEK[]").await?;
    let head = format!("* 4 FETCH (UID 4 BODY[] {{{length}}}\r\n");
    assert!(
        fetch.starts_with(&head),
        "{}",
        &fetch[..80.min(fetch.len())]
    );
    let body = &fetch.as_bytes()[head.len()..head.len() + length];
    assert_eq!(body, &message[..]);
    client.finish().await?;
    Ok(())
}
