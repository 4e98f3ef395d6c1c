//! The JUnit report: valid against the usual JUnit XML schema (checked
//! with xmllint), one test case per expectation and strategy, and a failure
//! element that gives the measured value and the bound.

use std::path::{Path, PathBuf};
use std::process::Command;

use mailsim::report::{Report, RunTiming, render_junit};
use mailsim::runner::{RunOptions, run};
use mailsim::scenario::Scenario;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema() -> PathBuf {
    manifest_dir().join("tests/junit/junit.xsd")
}

fn small_report() -> Report {
    let path = manifest_dir().join("tests/html/small.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let scenario = Scenario::parse("tests/html/small.toml", &text, path.parent().unwrap()).unwrap();
    run(&scenario, &RunOptions::default()).unwrap().0
}

/// Validates `file` against the JUnit schema; returns xmllint's verdict
/// and its messages.
fn validate(file: &Path) -> (bool, String) {
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema())
        .arg(file)
        .output()
        .expect("xmllint not found; install the Debian package libxml2-utils (scripts/test-deps)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `mailsim run` on the small scenario with `--junit` and the given
/// format, and returns the JUnit file's text.
fn junit_from_cli(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junit.xml");
    let output = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .current_dir(manifest_dir())
        .args([
            "run",
            "tests/html/small.toml",
            "--format",
            format,
            "--junit",
        ])
        .arg(&file)
        .output()
        .unwrap();
    // One expectation of the scenario fails.
    assert_eq!(output.status.code(), Some(1), "{format}");
    let (valid, messages) = validate(&file);
    assert!(valid, "--format {format}: {messages}");
    std::fs::read_to_string(&file).unwrap()
}

#[test]
fn junit_file_validates_against_schema() {
    let xml = junit_from_cli("text");
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
}

#[test]
fn junit_file_is_written_with_every_format() {
    for format in ["json", "text"] {
        let xml = junit_from_cli(format);
        assert!(xml.contains("<testsuites"), "{format}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junit.xml");
    let output = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .current_dir(manifest_dir())
        .args(["run", "tests/html/small.toml", "--format", "html", "--out"])
        .arg(dir.path().join("report"))
        .arg("--junit")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(validate(&file).0);
}

#[test]
fn schema_rejects_a_test_case_without_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.xml");
    std::fs::write(
        &file,
        "<testsuites><testsuite name=\"s\" tests=\"1\"><testcase classname=\"s\"/></testsuite></testsuites>\n",
    )
    .unwrap();
    let (valid, messages) = validate(&file);
    assert!(!valid);
    assert!(messages.contains("name"), "{messages}");
}

#[test]
fn test_cases_match_expectations() {
    let report = small_report();
    let xml = render_junit(&report, &RunTiming::default(), &[]);
    let document = roxmltree::Document::parse(&xml).unwrap();

    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("4"));
    assert_eq!(root.attribute("failures"), Some("1"));

    let suites: Vec<_> = root.children().filter(|node| node.is_element()).collect();
    assert_eq!(suites.len(), 1);
    let suite = suites[0];
    assert_eq!(suite.tag_name().name(), "testsuite");
    assert_eq!(suite.attribute("name"), Some("small-report"));
    assert_eq!(suite.attribute("tests"), Some("4"));
    assert_eq!(suite.attribute("failures"), Some("1"));
    assert_eq!(suite.attribute("errors"), Some("0"));

    let cases: Vec<_> = suite
        .children()
        .filter(|node| node.has_tag_name("testcase"))
        .collect();
    let names: Vec<&str> = cases
        .iter()
        .map(|case| case.attribute("name").unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "forward: lost equals 0",
            "individual: lost equals 0",
            "forward: latency.p99 max 5m00s",
            "forward: throttled / individual throttled min 1",
        ]
    );
    for case in &cases {
        assert_eq!(case.attribute("classname"), Some("small-report"));
    }
}

#[test]
fn failure_gives_measured_value_and_bound() {
    let report = small_report();
    let failing = report
        .expectations
        .iter()
        .find(|result| !result.passed)
        .unwrap();
    let xml = render_junit(&report, &RunTiming::default(), &[]);
    let document = roxmltree::Document::parse(&xml).unwrap();

    let failures: Vec<_> = document
        .descendants()
        .filter(|node| node.has_tag_name("failure"))
        .collect();
    assert_eq!(failures.len(), 1);
    let failure = failures[0];
    let case = failure.parent_element().unwrap();
    assert_eq!(
        case.attribute("name"),
        Some("forward: latency.p99 max 5m00s")
    );
    let expected = format!("measured {}, expected max 5m00s", failing.measured_text);
    assert_eq!(failure.attribute("message"), Some(expected.as_str()));
    assert_eq!(failure.attribute("type"), Some("expectation"));
    let text = failure.text().unwrap();
    assert!(text.contains(&expected), "{text}");
    assert!(text.contains("forward latency.p99"), "{text}");
}

#[test]
fn suite_carries_run_facts_and_text_report() {
    let report = small_report();
    let timing = RunTiming {
        wall: vec![
            ("forward".to_owned(), std::time::Duration::from_millis(1250)),
            (
                "individual".to_owned(),
                std::time::Duration::from_millis(500),
            ),
        ],
        ..RunTiming::default()
    };
    let xml = render_junit(&report, &timing, &[]);
    let document = roxmltree::Document::parse(&xml).unwrap();
    let suite = document
        .descendants()
        .find(|node| node.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("time"), Some("1.750"));
    let property = |name: &str| {
        document
            .descendants()
            .find(|node| node.has_tag_name("property") && node.attribute("name") == Some(name))
            .and_then(|node| node.attribute("value"))
    };
    assert_eq!(property("seed"), Some("3"));
    assert_eq!(property("file"), Some("tests/html/small.toml"));
    assert_eq!(property("strategies"), Some("forward,individual"));
    let output = document
        .descendants()
        .find(|node| node.has_tag_name("system-out"))
        .and_then(|node| node.text())
        .unwrap();
    assert!(output.starts_with("scenario small-report"), "{output}");
}

/// Expectations on a strategy that `--strategy` leaves out appear as
/// skipped test cases, so a dashboard still lists them.
#[test]
fn left_out_strategy_gives_skipped_cases() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junit.xml");
    let output = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .current_dir(manifest_dir())
        .args(["run", "tests/html/small.toml", "--strategy", "individual"])
        .arg("--junit")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));

    let (valid, messages) = validate(&file);
    assert!(valid, "{messages}");

    let xml = std::fs::read_to_string(&file).unwrap();
    let document = roxmltree::Document::parse(&xml).unwrap();
    let skipped: Vec<&str> = document
        .descendants()
        .filter(|node| node.has_tag_name("testcase"))
        .filter(|case| case.children().any(|child| child.has_tag_name("skipped")))
        .filter_map(|case| case.attribute("name"))
        .collect();
    assert_eq!(
        skipped,
        [
            "forward: lost equals 0",
            "forward: latency.p99 max 5m00s",
            "forward: throttled / individual throttled min 1",
        ]
    );

    let suite = document
        .descendants()
        .find(|node| node.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("skipped"), Some("3"));
    assert_eq!(suite.attribute("tests"), Some("4"));
}
