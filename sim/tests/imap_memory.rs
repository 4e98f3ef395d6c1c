//! A 10 MiB command line is rejected while the IMAP session's memory stays
//! bounded. This binary contains only this test, so the allocation counter
//! counts no other work.

mod common;

use common::TestResult;
use common::allocations::{self, CountingAllocator};
use common::imap::{Until, ask, connect, greeting, replies, world};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Heap growth allowed while the line streams through. The input buffer
/// keeps at most the 64 KiB line limit plus one 16 KiB read and the pipe its
/// 64 KiB capacity, so the rest is slack for the runtime.
const ALLOWED_GROWTH: usize = 1024 * 1024;

#[tokio::test(start_paused = true)]
async fn imap_ten_mib_line_bounded_memory() -> TestResult {
    let service = world();
    let mut client = connect(&service, usize::MAX);
    client.receive(greeting).await?;
    ask(&mut client, "a0 LOGIN alice@example.org alice-pw").await?;
    let baseline = allocations::reset_peak();

    // The line is streamed from one static block, so the client does not
    // allocate it either.
    static BLOCK: [u8; 64 * 1024] = [b'A'; 64 * 1024];
    client.send_unrecorded(b"a1 SELECT ").await?;
    for _ in 0..160 {
        client.send_unrecorded(&BLOCK).await?;
    }
    client.send_unrecorded(b"\r\na2 NOOP\r\n").await?;

    let rejected = client
        .receive(|bytes| replies(bytes, Until::Responses(1)))
        .await?;
    assert_eq!(rejected, b"a1 BAD Command line too long\r\n");
    let noop = client
        .receive(|bytes| replies(bytes, Until::Tagged("a2")))
        .await?;
    assert_eq!(noop, b"a2 OK NOOP completed\r\n");
    let growth = allocations::peak().saturating_sub(baseline);
    assert!(
        growth < ALLOWED_GROWTH,
        "heap grew by {growth} bytes for a 10 MiB line"
    );
    client.finish().await?;
    Ok(())
}
