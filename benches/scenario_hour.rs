//! One simulated hour of a 1,000-mailbox scenario per strategy, through the
//! whole path: traffic, the simulated service, IMAP over in-memory pipes,
//! the engine, records and metrics.
//!
//! Run: `cargo bench --bench scenario_hour`.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mailsim::runner::{RunOptions, run};
use mailsim::scenario::{Scenario, Strategy};

/// The allocator of the `mailsim` binary, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SCENARIO: &str = r#"
name = "bench-hour"
seed = 1
duration = "1h"
drain = "10m"

[cluster]
nodes = 4
threads_per_node = 4

[records]
cost = "10ms"

[[users]]
name = "staff"
count = 990
address = "user{n:04}@bench.example"

[[queues]]
name = "queues"
count = 10
address = "queue{n:02}@bench.example"

[[traffic]]
to = "staff"
rate = "4/h"

[[traffic]]
to = "queues"
rate = "30/h"
"#;

fn scenario_hour(c: &mut Criterion) {
    let scenario =
        Scenario::parse("bench-hour.toml", SCENARIO, Path::new(".")).expect("valid scenario");
    let mut group = c.benchmark_group("scenario_hour_1000_mailboxes");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    for strategy in [Strategy::Forward, Strategy::Individual] {
        let options = RunOptions {
            strategies: vec![strategy],
            ..RunOptions::default()
        };
        group.bench_function(strategy.name(), |b| {
            b.iter(|| {
                let (report, _) = run(&scenario, &options).expect("run succeeds");
                assert_eq!(report.strategies[0].lost, 0);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, scenario_hour);
criterion_main!(benches);
