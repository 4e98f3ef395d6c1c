//! Parsing and processing one message by size class: the work the engine
//! does per fetched message, without the protocol, for a message fetched
//! directly and for the same message forwarded as an attachment.
//!
//! Run: `cargo bench --bench processing`.

use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::process::{Processed, Processor};
use engine::{Config, MailboxConfig, MailboxId, Owner, ServerProfile, TrackingFilter};

/// The allocator of the `mailsim` binary, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [(&str, usize); 4] = [
    ("1KB", 1_000),
    ("4KB", 4_000),
    ("100KB", 100_000),
    ("1MB", 1_000_000),
];

fn message(size: usize) -> Vec<u8> {
    let mut raw = b"From: Carol <carol@example.org>\r\nTo: alice@example.com\r\n\
Subject: Order confirmation\r\nMessage-ID: <order.1@example.org>\r\n\
In-Reply-To: <quote.1@example.com>\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000\r\n\r\n"
        .to_vec();
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
    while raw.len() + line.len() <= size {
        raw.extend_from_slice(line);
    }
    raw
}

fn forwarded(original: &[u8]) -> Bytes {
    sim::forward::forwarded_copy(
        original,
        sim::ForwardMode::Attachment,
        &sim::forward::CopyHeaders {
            from: "alice@example.com",
            to: "forward@example.com",
            sequence: 1,
            hostname: "mailsim.test",
            date: chrono::DateTime::UNIX_EPOCH,
        },
    )
}

fn config() -> Config {
    let profile = ServerProfile::new("server", "127.0.0.1", 143, engine::Protocol::Imap);
    Config {
        profiles: vec![profile],
        mailboxes: vec![
            MailboxConfig::direct("alice", Owner::user("alice"), "alice@example.com", "server")
                .with_filter(TrackingFilter::All),
            MailboxConfig::forward(
                "forward",
                Owner::queue("forward"),
                "forward@example.com",
                "server",
            ),
        ],
        ..Config::default()
    }
}

fn processing(c: &mut Criterion) {
    let processor = Processor::new(&config());
    let direct = MailboxId::new("alice");
    let forward = MailboxId::new("forward");
    let mut group = c.benchmark_group("process_message");
    group.measurement_time(Duration::from_secs(5));
    for (name, size) in SIZES {
        let raw = message(size);
        let copy = forwarded(&raw);
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_with_input(BenchmarkId::new("direct", name), &raw, |b, raw| {
            b.iter(|| {
                assert!(matches!(
                    processor.process(&direct, raw),
                    Processed::Draft(_)
                ))
            })
        });
        group.bench_with_input(BenchmarkId::new("forwarded", name), &copy, |b, copy| {
            b.iter(|| {
                assert!(matches!(
                    processor.process(&forward, copy),
                    Processed::Draft(_)
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, processing);
criterion_main!(benches);
