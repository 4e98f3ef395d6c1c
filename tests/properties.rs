//! Properties of the scenario runner, the engine and the simulated service
//! over generated scenarios.
//!
//! Each scenario property generates a scenario file (see
//! `properties/scenario.rs`): 2 to 12 mailboxes in user and queue groups,
//! 1 to 3 hours of traffic with rates, bursts, replies and cc copies, a
//! fault schedule, IMAP or POP3, and the strategies. A failing case shrinks
//! to a small scenario and the failure message prints its TOML text, which
//! `mailsim run FILE` replays. The crash-and-retry property at engine level
//! (`properties/pipes.rs`) cuts in-memory connections after any number of
//! reads and writes instead.
//!
//! Case counts keep the whole file at about three minutes in the test
//! profile on a 2-core machine. Set `PROPTEST_CASES` to run more.

#[path = "properties/checks.rs"]
mod checks;
#[path = "properties/pipes.rs"]
mod pipes;
#[path = "properties/scenario.rs"]
mod scenario;

use mailsim::report::render_text;
use mailsim::runner::{RunOptions, run};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use scenario::{FaultSpec, FaultTargetSpec, Faults, Shape, Spec, Target};

/// Proptest settings for properties whose cases run whole scenarios:
/// `cases` cases unless `PROPTEST_CASES` is set, and shrinking bounded so
/// a failure still ends in minutes.
fn config(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        default.cases
    } else {
        cases
    };
    ProptestConfig {
        cases,
        max_shrink_iters: 2048,
        max_shrink_time: 240_000,
        ..default
    }
}

/// Expectations appended to the scenarios of the no-loss properties, so
/// that `mailsim run` on a saved failing case exits with 1 as well.
const NO_LOSS: &str = "
[[expect]]
metric = \"lost\"
equals = 0

[[expect]]
metric = \"duplicated\"
equals = 0
";

/// Reports `problem` with the scenario's text. The text ends with a
/// comment line, which takes the full stop proptest appends.
fn fail(problem: String, text: &str) -> TestCaseError {
    TestCaseError::fail(format!(
        "{problem}\nscenario:\n{text}\n# end of the scenario"
    ))
}

proptest! {
    #![proptest_config(config(600))]

    /// With transient faults that end before the drain, retries that
    /// outlast them, and one-shot UIDVALIDITY resets and corrupt messages,
    /// every delivery yields exactly one record per party under every
    /// strategy, over IMAP and POP3.
    #[test]
    fn transient_faults_lose_and_duplicate_nothing(
        spec in scenario::spec(Shape {
            with_mixed: true,
            ..Shape::with_faults(Faults::NotPermanent)
        }),
    ) {
        let text = spec.render() + NO_LOSS;
        let run = checks::run(&text).map_err(|problem| fail(problem, &text))?;
        checks::no_loss_no_duplicate(&run).map_err(|problem| fail(problem, &text))?;
    }
}

proptest! {
    #![proptest_config(config(400))]

    /// Without permanent faults, forward, individual and mixed create
    /// records for the same (Message-ID, party) pairs.
    #[test]
    fn strategies_create_same_records(
        spec in scenario::spec(Shape {
            with_mixed: true,
            ..Shape::with_faults(Faults::NotPermanent)
        }),
    ) {
        let text = spec.render();
        let run = checks::run(&text).map_err(|problem| fail(problem, &text))?;
        checks::same_records(&run).map_err(|problem| fail(problem, &text))?;
    }
}

/// Generates a fault of any kind on one mailbox. Without `until` it lasts
/// to the end of the run.
fn single_mailbox_fault() -> impl Strategy<Value = FaultSpec> {
    let kind = proptest::sample::select(vec![
        "stall",
        "server-error",
        "reset-mid-fetch",
        "reset-after-bytes",
        "connection-refused",
        "login-rejected",
        "uidvalidity-reset",
        "corrupt-message",
    ]);
    (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        kind,
        prop_oneof![1u64..1_000, 1_000u64..100_000],
        0u32..1000,
        proptest::option::weighted(0.8, 1u32..=1000),
    )
        .prop_map(|(group, member, kind, amount, from, length)| FaultSpec {
            target: FaultTargetSpec::Direct(Target::Mailbox(group, member)),
            kind,
            amount: if kind == "corrupt-message" {
                amount % 3 + 1
            } else {
                amount
            },
            from,
            length,
            into_drain_minutes: 0,
        })
}

/// Returns the address a single-mailbox fault of `spec` strikes.
fn faulty_address(spec: &Spec, fault: &FaultSpec) -> String {
    let FaultTargetSpec::Direct(Target::Mailbox(group, member)) = &fault.target else {
        unreachable!("single_mailbox_fault targets one mailbox");
    };
    let group = group.index(spec.groups.len());
    let member = member.index(spec.groups[group].count as usize);
    spec.address(group, member as u32)
}

proptest! {
    #![proptest_config(config(300))]

    /// With individual mailboxes and a worker slot for each, a fault on one
    /// mailbox leaves every other mailbox's arrival and record times
    /// unchanged.
    #[test]
    fn fault_on_one_mailbox_leaves_others_unchanged(
        spec in scenario::spec(Shape {
            spare_capacity: true,
            ..Shape::with_faults(Faults::None)
        }),
        fault in single_mailbox_fault(),
    ) {
        let healthy = spec.render();
        let mut faulty_spec = spec.clone();
        faulty_spec.faults = vec![fault.clone()];
        let faulty = faulty_spec.render();
        let address = faulty_address(&spec, &fault);

        let without_fault = checks::run(&healthy).map_err(|problem| fail(problem, &healthy))?;
        let with_fault = checks::run(&faulty).map_err(|problem| fail(problem, &faulty))?;
        prop_assert_eq!(without_fault.traces.len(), 1);
        prop_assert_eq!(with_fault.traces.len(), 1);
        checks::other_mailboxes_unchanged(
            &without_fault.traces[0],
            &with_fault.traces[0],
            &address,
        )
        .map_err(|problem| fail(format!("fault on {address}: {problem}"), &faulty))?;
    }
}

proptest! {
    #![proptest_config(config(400))]

    /// Connections cut after any number of bytes, in windows that end
    /// before the drain, lose and duplicate nothing once the engine retries.
    #[test]
    fn cut_connections_lose_and_duplicate_nothing(
        spec in scenario::spec(Shape::with_faults(Faults::ResetAfterBytes)),
    ) {
        let text = spec.render() + NO_LOSS;
        let run = checks::run(&text).map_err(|problem| fail(problem, &text))?;
        checks::no_loss_no_duplicate(&run).map_err(|problem| fail(problem, &text))?;
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// A connection cut after any number of reads and writes, and retried
    /// by calling `sync_once` until it succeeds or by the scheduled engine,
    /// leaves one record per message and party, and no processed mail on
    /// deleting mailboxes.
    #[test]
    fn cut_sync_retried_records_each_message_once(spec in pipes::crash_spec()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let outcome = runtime
            .block_on(pipes::run_with_cuts(&spec))
            .map_err(TestCaseError::fail)?;
        prop_assert!(
            outcome.decided_again.is_empty(),
            "messages decided again after {} cuts in {} I/O operations: {:?}",
            outcome.cuts_made,
            outcome.uncut_operations,
            outcome.decided_again
        );
        if let Some(created) = outcome.created_after_clean {
            prop_assert_eq!(created, 0, "the sync after the clean one created records");
        }
        prop_assert_eq!(
            &outcome.parties,
            &spec.expected_parties(),
            "records after {} cuts in {} I/O operations",
            outcome.cuts_made,
            outcome.uncut_operations
        );
        for (mailbox, left) in &outcome.left_on_server {
            prop_assert_eq!(*left, 0, "messages left in {}", mailbox);
        }
    }
}

proptest! {
    #![proptest_config(config(200))]

    /// The same scenario and seed give the same text and JSON report twice,
    /// whatever its faults and settings.
    #[test]
    fn same_seed_gives_same_report(
        spec in scenario::spec(Shape {
            with_mixed: true,
            lossy_settings: true,
            ..Shape::with_faults(Faults::Any)
        }),
    ) {
        let text = spec.render();
        let parsed = checks::parse(&text).map_err(TestCaseError::fail)?;
        let options = RunOptions::default();
        let (first, _) = run(&parsed, &options)
            .map_err(|error| fail(format!("the first run failed: {error}"), &text))?;
        let (second, _) = run(&parsed, &options)
            .map_err(|error| fail(format!("the second run failed: {error}"), &text))?;
        prop_assert_eq!(
            render_text(&first),
            render_text(&second),
            "text reports differ\nscenario:\n{}",
            text
        );
        prop_assert_eq!(
            first.to_json(),
            second.to_json(),
            "JSON reports differ\nscenario:\n{}",
            text
        );
    }
}

proptest! {
    #![proptest_config(config(150))]

    /// A strategy's report is the same whether it runs alone or next to
    /// the others, and a seed given as a run option acts as the seed key.
    #[test]
    fn strategy_report_same_alone_or_together(
        spec in scenario::spec(Shape {
            with_mixed: true,
            lossy_settings: true,
            ..Shape::with_faults(Faults::Any)
        }),
    ) {
        let text = spec.render();
        let mut other_seed = spec.clone();
        other_seed.seed += 1;
        let other_text = other_seed.render();
        let parsed = checks::parse(&text).map_err(TestCaseError::fail)?;
        let other_parsed = checks::parse(&other_text).map_err(TestCaseError::fail)?;

        let (together, _) = run(&parsed, &RunOptions::default())
            .map_err(|error| fail(format!("the run failed: {error}"), &text))?;
        let seed_option = RunOptions {
            seed: Some(spec.seed),
            ..RunOptions::default()
        };
        let (overridden, _) = run(&other_parsed, &seed_option)
            .map_err(|error| fail(format!("the run with a seed option failed: {error}"), &text))?;
        prop_assert_eq!(
            &overridden.strategies,
            &together.strategies,
            "the seed option {} on a file with seed {} gives other reports\nscenario:\n{}",
            spec.seed,
            other_seed.seed,
            text
        );

        for (index, strategy) in parsed.strategies.iter().enumerate() {
            let alone = RunOptions {
                strategies: vec![*strategy],
                ..RunOptions::default()
            };
            let (report, _) = run(&parsed, &alone)
                .map_err(|error| fail(format!("the run of {strategy:?} failed: {error}"), &text))?;
            prop_assert_eq!(report.strategies.len(), 1);
            prop_assert_eq!(
                &report.strategies[0],
                &together.strategies[index],
                "{:?} alone differs from {:?} next to the others\nscenario:\n{}",
                strategy,
                strategy,
                text
            );
        }
    }
}
