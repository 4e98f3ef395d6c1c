//! `mailsim check` on broken scenario files: each problem is reported with
//! file, line and column, and nothing runs.

use std::path::Path;
use std::process::Command;

fn check(file: &str) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", file])
        .output()
        .expect("mailsim runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_problem(file: &str, location: &str, message: &str) {
    let path = format!("tests/scenarios/broken/{file}");
    let (code, stderr) = check(&path);
    assert_eq!(code, 2, "{file}: exit status\n{stderr}");
    let expected = format!("{path}:{location}: ");
    assert!(
        stderr.contains(&expected),
        "{file}: no {expected:?} in\n{stderr}"
    );
    assert!(
        stderr.contains(message),
        "{file}: no {message:?} in\n{stderr}"
    );
}

#[test]
fn unknown_key_is_located() {
    assert_problem("unknown-key.toml", "12:1", "unknown key `sizes`");
}

#[test]
fn bad_duration_is_located() {
    assert_problem(
        "bad-duration.toml",
        "2:12",
        "invalid duration \"90 minutes\"",
    );
}

#[test]
fn empty_group_is_located() {
    assert_problem(
        "empty-group.toml",
        "6:9",
        "a group needs at least 1 mailbox",
    );
}

#[test]
fn fault_on_unknown_mailbox_is_located() {
    assert_problem(
        "unknown-fault-mailbox.toml",
        "14:11",
        "no mailbox \"user3@example.test\"",
    );
}

#[test]
fn unknown_metric_is_located() {
    assert_problem(
        "unknown-metric.toml",
        "14:10",
        "unknown metric \"latency.p95\"",
    );
}

#[test]
fn empty_name_is_located() {
    assert_problem("empty-name.toml", "1:8", "name is empty");
}

#[test]
fn zero_sla_is_located() {
    assert_problem("zero-sla.toml", "3:7", "sla is 0s; it must be above 0s");
}

#[test]
fn poll_interval_under_a_second_is_located() {
    assert_problem(
        "short-poll-interval.toml",
        "5:17",
        "poll_interval is 1ms; it must be at least 1s",
    );
}

#[test]
fn ratio_to_own_strategy_is_located() {
    assert_problem(
        "ratio-to-itself.toml",
        "16:12",
        "ratio_to \"forward\" is the expectation's own strategy",
    );
}

#[test]
fn mixed_strategy_without_forward_group_is_located() {
    assert_problem(
        "mixed-without-forward-group.toml",
        "3:14",
        "no group has mixed = \"forward\"",
    );
}

#[test]
fn run_over_49_days_is_located() {
    assert_problem(
        "too-long.toml",
        "3:9",
        "duration and drain together are 50d; at most 49 days are allowed",
    );
}

#[test]
fn every_problem_of_a_file_is_listed() {
    let (code, stderr) = check("tests/scenarios/broken/several-problems.toml");
    assert_eq!(code, 2);
    insta::assert_snapshot!(stderr);
}

#[test]
fn run_refuses_a_broken_scenario() {
    let output = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "tests/scenarios/broken/empty-group.toml"])
        .output()
        .expect("mailsim runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        output.stdout.is_empty(),
        "a broken scenario printed a report"
    );
}

#[test]
fn every_library_scenario_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let (code, stderr) = check(path.to_str().unwrap());
            assert_eq!(code, 0, "{}: {stderr}", path.display());
        }
    }
}
