//! `mailsim sync` killed half-way loses no mail: it prints and saves what
//! each commit decided before the engine deletes anything on the server.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sim::policy::AccountPolicy;
use sim::store::AccountSpec;

const QUEUE: &str = "support@example.test";
const MESSAGES: usize = 200;

fn message(index: usize) -> String {
    format!(
        "From: Carol <carol@example.org>\r\nTo: {QUEUE}\r\nSubject: Order {index}\r\n\
Message-ID: <order.{index}@example.org>\r\n\r\nHello\r\n"
    )
}

fn sync(port: u16, state: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailsim"));
    command
        .args(["sync", "--protocol", "pop3", "--port", &port.to_string()])
        .args([
            "--queue",
            QUEUE,
            "--delete",
            "--batch-size",
            "10",
            "--state",
        ])
        .arg(state)
        .env("MAILSIM_PASSWORD", "pw")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Counts the `record` lines of `lines` per Message-ID.
fn count_records(lines: &[String], counts: &mut BTreeMap<String, usize>) {
    for line in lines {
        if let Some(rest) = line.strip_prefix("record ") {
            let id = rest.split(' ').next().unwrap_or_default().to_owned();
            *counts.entry(id).or_default() += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sync_with_delete_loses_nothing() -> Result<(), Box<dyn std::error::Error>> {
    let mut spec = AccountSpec::new(QUEUE, "pw");
    // Each POP3 command waits 10 ms, so the sync takes seconds and the kill
    // falls in the middle of it.
    spec.policy = AccountPolicy {
        command_latency: Duration::from_millis(10),
        ..AccountPolicy::default()
    };
    let mut builder = sim::MailSim::builder().account_spec(spec);
    for index in 0..MESSAGES {
        builder = builder.message(QUEUE, message(index));
    }
    let served = builder.start().await?;
    let port = served.pop3_addr().ok_or("no POP3 address")?.port();
    let folder = tempfile::tempdir()?;
    let state = folder.path().join("state.json");

    let mut first = sync(port, &state).spawn()?;
    let stdout = first.stdout.take().ok_or("no stdout")?;
    let printed = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let record = line.starts_with("record ");
            lines.push(line);
            if record && lines.len() >= 30 {
                break;
            }
        }
        lines
    })
    .await?;
    first.kill()?;
    first.wait()?;
    let mut counts = BTreeMap::new();
    count_records(&printed, &mut counts);
    assert!(
        counts.len() < MESSAGES,
        "the first sync finished before the kill"
    );

    // The server releases the killed session's maildrop lock once it detects
    // the closed connection, so the next sync may find the maildrop busy.
    let mut second = None;
    for _ in 0..50 {
        let output = tokio::task::spawn_blocking({
            let state = state.clone();
            move || sync(port, &state).output()
        })
        .await??;
        if !String::from_utf8_lossy(&output.stdout).contains("(busy)") {
            second = Some(output);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = second.ok_or("the maildrop stayed locked")?;
    assert!(second.status.success(), "{second:?}");
    let lines: Vec<String> = String::from_utf8(second.stdout)?
        .lines()
        .map(str::to_owned)
        .collect();
    count_records(&lines, &mut counts);

    assert_eq!(counts.len(), MESSAGES, "every message has a record");
    // A kill between printing a batch and saving its state prints that
    // batch again on the next run, so at most one batch of 10 repeats.
    let repeated: usize = counts.values().map(|&count| count - 1).sum();
    assert!(repeated <= 10, "{repeated} records printed twice");
    let account = served
        .service()
        .store()
        .account(QUEUE)
        .ok_or("no account")?;
    assert_eq!(
        account.mailboxes().inbox().len(),
        0,
        "the queue mailbox is empty"
    );
    Ok(())
}
