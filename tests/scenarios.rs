//! Every scenario in `scenarios/`, run through the library: text and JSON
//! reports are snapshotted, and runs are deterministic.

use std::path::{Path, PathBuf};
use std::process::Command;

use mailsim::report::render_text;
use mailsim::runner::{RunOptions, run};
use mailsim::scenario::Scenario;

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"))
}

fn load(name: &str) -> Scenario {
    let path = scenario_path(name);
    let text = std::fs::read_to_string(&path).unwrap();
    // A relative file name keeps the snapshots free of machine paths.
    Scenario::parse(
        &format!("scenarios/{name}.toml"),
        &text,
        path.parent().unwrap(),
    )
    .unwrap()
}

fn reports(scenario: &Scenario) -> (String, String) {
    let (report, _timing) = run(scenario, &RunOptions::default()).unwrap();
    (render_text(&report), report.to_json())
}

fn snapshot(name: &str) {
    let (text, json) = reports(&load(name));
    insta::assert_snapshot!(format!("{name}_text"), text);
    insta::assert_snapshot!(format!("{name}_json"), json);
}

#[test]
fn performance_report() {
    snapshot("performance");
}

#[test]
fn throttling_report() {
    snapshot("throttling");
}

#[test]
fn fault_isolation_report() {
    snapshot("fault-isolation");
}

#[test]
fn fault_isolation_resets_report() {
    snapshot("fault-isolation-resets");
}

#[test]
fn poison_message_report() {
    snapshot("poison-message");
}

#[test]
fn pop3_inline_forward_report() {
    snapshot("pop3-inline-forward");
}

#[test]
fn mixed_deployment_report() {
    snapshot("mixed-deployment");
}

#[test]
fn idle_backoff_report() {
    snapshot("idle-backoff");
}

#[test]
fn dedup_correlation_report() {
    snapshot("dedup-correlation");
}

#[test]
fn eml_replay_report() {
    snapshot("eml-replay");
}

/// `scale` with 200 mailboxes for 2 hours instead of 10,000 for a day.
#[test]
fn reduced_scale_report() {
    let path = scenario_path("scale");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("count = 9950", "count = 190")
        .replace("count = 50", "count = 10")
        .replace("duration = \"24h\"", "duration = \"2h\"")
        .replace("drain = \"2h\"", "drain = \"30m\"");
    let scenario = Scenario::parse(
        "scenarios/scale.toml (reduced)",
        &text,
        path.parent().unwrap(),
    )
    .unwrap();
    assert_eq!(scenario.mailboxes.len(), 200);
    let (text, json) = reports(&scenario);
    insta::assert_snapshot!("scale_reduced_text", text);
    insta::assert_snapshot!("scale_reduced_json", json);
}

#[test]
fn same_seed_gives_identical_reports() {
    let scenario = load("dedup-correlation");
    let first = reports(&scenario);
    let second = reports(&scenario);
    assert_eq!(first.0, second.0);
    assert_eq!(first.1, second.1);
}

#[test]
fn other_seed_changes_the_traffic() {
    let scenario = load("dedup-correlation");
    let (first, _) = reports(&scenario);
    let options = RunOptions {
        seed: Some(scenario.seed + 1),
        ..RunOptions::default()
    };
    let (report, _) = run(&scenario, &options).unwrap();
    assert_ne!(first, render_text(&report));
}

fn run_binary(args: &[&str]) -> (Option<i32>, Vec<u8>) {
    let output = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("mailsim runs");
    (output.status.code(), output.stdout)
}

#[test]
fn separate_processes_print_identical_bytes() {
    for format in ["text", "json"] {
        let args = ["run", "scenarios/poison-message.toml", "--format", format];
        let (first_code, first) = run_binary(&args);
        let (second_code, second) = run_binary(&args);
        assert_eq!(first_code, Some(0));
        assert_eq!(second_code, Some(0));
        assert!(!first.is_empty());
        assert_eq!(first, second, "{format} reports differ between processes");
    }
}

#[test]
fn failed_expectation_exits_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("strict.toml");
    let text = std::fs::read_to_string(scenario_path("eml-replay"))
        .unwrap()
        .replace("equals = 12", "equals = 13")
        .replace(
            "eml_dir = \"eml/real\"",
            &format!(
                "eml_dir = {:?}",
                scenario_path("eml-replay")
                    .parent()
                    .unwrap()
                    .join("eml/real")
            ),
        );
    std::fs::write(&file, text).unwrap();
    let (code, stdout) = run_binary(&["run", file.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let stdout = String::from_utf8(stdout).unwrap();
    assert!(
        stdout.contains("FAIL  forward records: measured 12, expected equals 13"),
        "{stdout}"
    );
}

#[test]
fn out_folder_gets_both_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reports");
    let (code, stdout) = run_binary(&[
        "run",
        "scenarios/eml-replay.toml",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    let text = std::fs::read(out.join("report.txt")).unwrap();
    assert_eq!(text, stdout);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["scenario"], "eml-replay");
}
