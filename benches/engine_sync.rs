//! Messages per second: the engine syncing a 10,000-message mailbox over
//! loopback TCP from the simulated service and from Dovecot, each next to a
//! raw client that only reads the same bytes from the same server.
//!
//! Every iteration syncs the whole mailbox into an empty store (the engine)
//! or downloads it (the raw client). The engine runs on one thread, as the
//! scenario runner drives it.
//!
//! Run: `eval "$(scripts/dovecot-test-server start)"; cargo bench --bench engine_sync`.

mod support;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::{
    Config, Credentials, MailboxConfig, MailboxId, MemoryStore, Owner, Protocol, ServerProfile,
    TcpConnector, TrackingFilter, sync_once,
};
use support::{MESSAGES, Target};

/// The allocator of the `mailsim` binary, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config(target: &Target, protocol: Protocol) -> Config {
    let (host, port) = match protocol {
        Protocol::Imap => &target.imap,
        Protocol::Pop3 => &target.pop3,
    };
    let profile = ServerProfile::new("server", host.clone(), *port, protocol);
    let mailbox = MailboxConfig::direct("inbox", Owner::user("bench"), &target.user, "server")
        .with_credentials(Credentials::new(&target.user, target.password.as_str()))
        .with_filter(TrackingFilter::All);
    let mut config = Config {
        profiles: vec![profile],
        mailboxes: vec![mailbox],
        ..Config::default()
    };
    config.settings.max_messages_per_cycle = MESSAGES;
    config
}

async fn engine_sync(config: &Config) {
    let store = MemoryStore::new();
    let report = sync_once(config, &[MailboxId::new("inbox")], &store, &TcpConnector)
        .await
        .expect("valid config");
    assert_eq!(report.mailboxes[0].error, None);
    assert_eq!(report.records_created(), MESSAGES);
}

fn compare(c: &mut Criterion, name: &str, target: &Target, runtime: &tokio::runtime::Runtime) {
    let imap = config(target, Protocol::Imap);
    let pop3 = config(target, Protocol::Pop3);
    let mut group = c.benchmark_group(format!("{name}_10k"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("imap_engine", |b| {
        b.to_async(runtime).iter(|| engine_sync(&imap))
    });
    group.bench_function("imap_raw_client", |b| {
        b.to_async(runtime).iter(|| support::raw_imap(target))
    });
    group.bench_function("pop3_engine", |b| {
        b.to_async(runtime).iter(|| engine_sync(&pop3))
    });
    group.bench_function("pop3_raw_client", |b| {
        b.to_async(runtime).iter(|| support::raw_pop3(target))
    });
    group.finish();
}

fn engine_sync_bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (sim, _guard) = support::sim_target();
    compare(c, "sim", &sim, &runtime);
    if let Some(dovecot) = support::dovecot_target(&runtime) {
        compare(c, "dovecot", &dovecot, &runtime);
    }
}

criterion_group!(benches, engine_sync_bench);
criterion_main!(benches);
