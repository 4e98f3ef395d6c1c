//! A 10 MiB command line is rejected while the POP3 server's memory stays
//! bounded. This binary contains one test so that the allocation counter
//! measures only this session.

mod common_pop3smtp;

use common_pop3smtp::allocations::{self, CountingAllocator};
use common_pop3smtp::{Protocol, TestResult, connect, service_with};
use sim::Limits;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Heap growth allowed while the line streams through: the read buffer is
/// bounded by the 64 KiB line limit plus one read, the pipe by its capacity.
const ALLOWED_GROWTH: usize = 1024 * 1024;

#[tokio::test(start_paused = true)]
async fn pop3_huge_line_keeps_memory_bounded() -> TestResult {
    let service = service_with(Limits::default());
    let mut client = connect(&service, Protocol::Pop3);
    client.text_line().await?;
    let baseline = allocations::reset_peak();

    // Stream the line from one static block, so the client side does not
    // allocate it either.
    static BLOCK: [u8; 64 * 1024] = [b'A'; 64 * 1024];
    for _ in 0..160 {
        client.send(&BLOCK).await?;
    }
    client.send(b"\r\nCAPA\r\n").await?;

    assert_eq!(client.text_line().await?, "-ERR Line too long\r\n");
    let capa = client.pop3_multi_line().await?;
    assert!(capa.starts_with(b"+OK Capability list follows\r\n"));
    let growth = allocations::peak().saturating_sub(baseline);
    assert!(
        growth < ALLOWED_GROWTH,
        "heap grew by {growth} bytes for a 10 MiB line"
    );

    let quit = client.ask("QUIT").await?;
    assert!(quit.starts_with("+OK "), "{quit}");
    client.finish().await?;
    Ok(())
}
