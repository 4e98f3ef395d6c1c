//! A 10 MiB command line and a 10 MiB message over the size limit are
//! rejected while the SMTP server's memory stays bounded. This binary contains
//! one test so that the allocation counter measures only this session.

mod common_pop3smtp;

use common_pop3smtp::allocations::{self, CountingAllocator};
use common_pop3smtp::{Client, Protocol, TestResult, add_account, connect, inbox, service_with};
use sim::Limits;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Heap growth allowed while 10 MiB stream through: the read buffer is
/// bounded by the 64 KiB line limit plus one read, the pipe by its
/// capacity, the stored content by the 256 KiB message limit.
const ALLOWED_GROWTH: usize = 1024 * 1024;

const MAX_MESSAGE: usize = 256 * 1024;

static BLOCK: [u8; 64 * 1024] = [b'A'; 64 * 1024];

/// Sends 10 MiB of `A` from one static block, so the client side does not
/// allocate it.
async fn send_ten_mib(client: &mut Client) -> std::io::Result<()> {
    for _ in 0..160 {
        client.send(&BLOCK).await?;
    }
    Ok(())
}

async fn reply(client: &mut Client, line: &str) -> std::io::Result<String> {
    client.command(line).await?;
    Ok(String::from_utf8_lossy(&client.smtp_reply().await?).into_owned())
}

#[tokio::test(start_paused = true)]
async fn smtp_huge_input_keeps_memory_bounded() -> TestResult {
    let service = service_with(Limits {
        max_message: MAX_MESSAGE,
        ..Limits::default()
    });
    add_account(&service, "alice@example.com", "pw", &[]);
    let mut client = connect(&service, Protocol::Smtp);
    client.smtp_reply().await?;
    reply(&mut client, "EHLO client.example.org").await?;
    let baseline = allocations::reset_peak();

    // A command line of 10 MiB.
    send_ten_mib(&mut client).await?;
    client.send(b"\r\n").await?;
    assert_eq!(client.smtp_reply().await?, b"500 5.5.2 Line too long\r\n");
    let growth = allocations::peak().saturating_sub(baseline);
    assert!(
        growth < ALLOWED_GROWTH,
        "heap grew by {growth} bytes for a 10 MiB line"
    );

    // A message of 10 MiB, 40 times the size limit, in one line.
    let baseline = allocations::reset_peak();
    reply(&mut client, "MAIL FROM:<carol@example.org>").await?;
    reply(&mut client, "RCPT TO:<alice@example.com>").await?;
    assert_eq!(
        reply(&mut client, "DATA").await?,
        "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
    );
    send_ten_mib(&mut client).await?;
    client.send(b"\r\n.\r\n").await?;
    assert_eq!(
        client.smtp_reply().await?,
        b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    let growth = allocations::peak().saturating_sub(baseline);
    assert!(
        growth < ALLOWED_GROWTH,
        "heap grew by {growth} bytes for a 10 MiB message"
    );
    assert!(inbox(&service, "alice@example.com").is_empty());

    assert_eq!(reply(&mut client, "QUIT").await?, "221 Goodbye\r\n");
    client.finish().await?;
    Ok(())
}
