//! Syncs from a real Dovecot over IMAP and POP3, through the engine's
//! library and through `mailsim sync`.
//!
//! The tests need a running Dovecot on loopback, described by three
//! environment variables, as `scripts/dovecot-test-server start` prints them:
//! `MAILSIM_DOVECOT_IMAP` and `MAILSIM_DOVECOT_POP3` (host:port) and
//! `MAILSIM_DOVECOT_USERS` (the passwd-file Dovecot rereads). Each test adds
//! its own fresh account to that file. Without the variables the tests fail
//! and name what is missing.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::{
    AlertCode, Config, Credentials, MailboxConfig, MailboxId, MemoryStore, Owner, Protocol,
    ServerProfile, TcpConnector, TrackingFilter, sync_once,
};
use std::process::Command;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MESSAGES: usize = 1000;
const PASSWORD: &str = "engine-test-pw";

#[derive(Clone)]
struct Dovecot {
    imap: (String, u16),
    pop3: (String, u16),
    users: String,
}

fn dovecot() -> Dovecot {
    let names = [
        "MAILSIM_DOVECOT_IMAP",
        "MAILSIM_DOVECOT_POP3",
        "MAILSIM_DOVECOT_USERS",
    ];
    let values: Vec<Option<String>> = names.iter().map(|name| std::env::var(name).ok()).collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| *name)
        .collect();
    assert!(
        missing.is_empty(),
        "missing environment variables {missing:?}: start Dovecot with \
         `eval \"$(scripts/dovecot-test-server start)\"` before running these tests"
    );
    let [Some(imap), Some(pop3), Some(users)] = <[Option<String>; 3]>::try_from(values)
        .unwrap_or_else(|_| unreachable!("three variables were read"))
    else {
        unreachable!("checked above");
    };
    Dovecot {
        imap: split_address("MAILSIM_DOVECOT_IMAP", &imap),
        pop3: split_address("MAILSIM_DOVECOT_POP3", &pop3),
        users,
    }
}

fn split_address(name: &str, value: &str) -> (String, u16) {
    let (host, port) = value
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{name}={value:?} is not host:port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("{name}={value:?} has an invalid port"));
    (host.to_owned(), port)
}

/// Adds a new account and returns its user name.
fn fresh_user(dovecot: &Dovecot, label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    let user = format!(
        "engine-{label}-{}-{nanos}-{sequence}@test",
        std::process::id()
    );
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&dovecot.users)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", dovecot.users));
    // One write per line: concurrent tests append to the same file, and
    // O_APPEND keeps a single small write whole.
    let line = format!("{user}:{{PLAIN}}{PASSWORD}\n");
    file.write_all(line.as_bytes()).expect("append account");
    user
}

fn message(user: &str, index: usize) -> String {
    format!(
        "From: Carol <carol@example.org>\r\nTo: {user}\r\nSubject: Order {index}\r\n\
Message-ID: <{index}.{user}>\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000\r\n\r\n\
Please ship order {index}.\r\n"
    )
}

/// Logs in as `user` until Dovecot accepts the account. Dovecot checks the
/// passwd-file at most once a second, so an account appended just after a
/// check stays unknown for up to a second.
async fn wait_for_account(dovecot: &Dovecot, user: &str) -> TestResult {
    for _ in 0..10 {
        let stream = TcpStream::connect((dovecot.imap.0.as_str(), dovecot.imap.1)).await?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        lines.next_line().await?;
        let login = format!("L LOGIN \"{user}\" \"{PASSWORD}\"\r\n");
        write.write_all(login.as_bytes()).await?;
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("L OK") {
                write.write_all(b"Z LOGOUT\r\n").await?;
                return Ok(());
            }
            if line.starts_with("L ") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    Err(format!("Dovecot never accepted the new account {user}").into())
}

/// Appends `count` messages to INBOX with pipelined APPENDs (LITERAL+), then
/// waits for every tagged response.
async fn append(dovecot: &Dovecot, user: &str, count: usize) -> TestResult {
    wait_for_account(dovecot, user).await?;
    let stream = TcpStream::connect((dovecot.imap.0.as_str(), dovecot.imap.1)).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let greeting = lines.next_line().await?.unwrap_or_default();
    assert!(greeting.starts_with("* OK"), "greeting: {greeting}");

    let mut commands = format!("L LOGIN \"{user}\" \"{PASSWORD}\"\r\n").into_bytes();
    for index in 0..count {
        let body = message(user, index);
        commands
            .extend_from_slice(format!("A{index} APPEND INBOX {{{}+}}\r\n", body.len()).as_bytes());
        commands.extend_from_slice(body.as_bytes());
        commands.extend_from_slice(b"\r\n");
    }
    commands.extend_from_slice(b"Z LOGOUT\r\n");
    let writer = tokio::spawn(async move { write.write_all(&commands).await });

    let mut ok = 0;
    while let Some(line) = lines.next_line().await? {
        if line.starts_with("L ") || line.starts_with('A') {
            assert!(line.contains(" OK"), "APPEND or LOGIN failed: {line}");
            ok += 1;
        }
        if line.starts_with("Z ") {
            break;
        }
    }
    writer.await??;
    assert_eq!(ok, count + 1, "tagged OK answers");
    Ok(())
}

fn config(dovecot: &Dovecot, protocol: Protocol, user: &str, password: &str) -> Config {
    let (host, port) = match protocol {
        Protocol::Imap => &dovecot.imap,
        Protocol::Pop3 => &dovecot.pop3,
    };
    let profile = ServerProfile::new("dovecot", host.clone(), *port, protocol);
    let mailbox = MailboxConfig::direct("inbox", Owner::user("tester"), user, "dovecot")
        .with_credentials(Credentials::new(user, password))
        .with_filter(TrackingFilter::All);
    let mut config = Config {
        profiles: vec![profile],
        mailboxes: vec![mailbox],
        ..Config::default()
    };
    config.settings.command_timeout = Duration::from_secs(30);
    config
}

async fn sync_twice(protocol: Protocol, label: &str) -> TestResult {
    let dovecot = dovecot();
    let user = fresh_user(&dovecot, label);
    append(&dovecot, &user, MESSAGES).await?;
    let config = config(&dovecot, protocol, &user, PASSWORD);
    let store = MemoryStore::new();
    let mailboxes = [MailboxId::new("inbox")];

    let first = sync_once(&config, &mailboxes, &store, &TcpConnector).await?;
    assert_eq!(first.mailboxes[0].error, None);
    assert_eq!(first.records_created(), MESSAGES);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.incoming_activities(), MESSAGES);
    assert!(snapshot.party_counts().values().all(|&count| count == 1));

    let second = sync_once(&config, &mailboxes, &store, &TcpConnector).await?;
    assert_eq!(second.mailboxes[0].error, None);
    assert_eq!(second.mailboxes[0].fetched, 0);
    assert_eq!(second.records_created(), 0);
    assert_eq!(store.snapshot().incoming_activities(), MESSAGES);
    Ok(())
}

#[tokio::test]
async fn imap_sync_creates_each_record_once() -> TestResult {
    sync_twice(Protocol::Imap, "imap").await
}

#[tokio::test]
async fn pop3_sync_creates_each_record_once() -> TestResult {
    sync_twice(Protocol::Pop3, "pop3").await
}

#[tokio::test]
async fn wrong_password_raises_alert() -> TestResult {
    let dovecot = dovecot();
    let user = fresh_user(&dovecot, "badpw");
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        let config = config(&dovecot, protocol, &user, "not-the-password");
        let store = MemoryStore::new();
        let report = sync_once(&config, &[MailboxId::new("inbox")], &store, &TcpConnector).await?;
        let codes: Vec<AlertCode> = report.alerts().map(|alert| alert.code).collect();
        assert_eq!(codes, [AlertCode::CredentialsRejected], "{protocol}");
        assert_eq!(report.records_created(), 0, "{protocol}");
    }
    Ok(())
}

#[tokio::test]
async fn delete_after_processing_empties_queue_mailbox() -> TestResult {
    let dovecot = dovecot();
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        let user = fresh_user(&dovecot, "delete");
        append(&dovecot, &user, 30).await?;
        let mut config = config(&dovecot, protocol, &user, PASSWORD);
        config.mailboxes[0].owner = Owner::queue("support");
        config.mailboxes[0].delete_after_processing = true;
        let store = MemoryStore::new();
        let mailboxes = [MailboxId::new("inbox")];

        let first = sync_once(&config, &mailboxes, &store, &TcpConnector).await?;
        assert_eq!(first.records_created(), 30, "{protocol}");
        assert_eq!(store.snapshot().queue_items.len(), 30, "{protocol}");

        // A store without sync state would fetch whatever is still there.
        let fresh = MemoryStore::new();
        let after = sync_once(&config, &mailboxes, &fresh, &TcpConnector).await?;
        assert_eq!(after.mailboxes[0].error, None, "{protocol}");
        assert_eq!(after.mailboxes[0].fetched, 0, "{protocol}");
    }
    Ok(())
}

/// Runs `mailsim sync` for `user` with its state in `state`; returns the
/// records-created count it prints.
fn mailsim_sync(dovecot: &Dovecot, protocol: &str, user: &str, state: &std::path::Path) -> usize {
    let (host, port) = match protocol {
        "imap" => &dovecot.imap,
        _ => &dovecot.pop3,
    };
    let output = Command::new(env!("CARGO_BIN_EXE_mailsim"))
        .args([
            "sync",
            "--host",
            host,
            "--port",
            &port.to_string(),
            "--protocol",
            protocol,
        ])
        .args([
            "--mailbox",
            user,
            "--state",
            state.to_str().expect("UTF-8 path"),
        ])
        .env("MAILSIM_PASSWORD", PASSWORD)
        .output()
        .expect("mailsim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "mailsim sync failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !stdout.contains(PASSWORD),
        "the password reached the output"
    );
    let total = stdout
        .lines()
        .find_map(|line| line.strip_prefix("records created: "))
        .expect("a summary line");
    let records = stdout
        .lines()
        .filter(|line| line.starts_with("record "))
        .count();
    let total: usize = total.parse().expect("a count");
    assert_eq!(records, total, "one record line per record");
    total
}

async fn command_syncs_twice(protocol: &str) -> TestResult {
    let dovecot = dovecot();
    let user = fresh_user(&dovecot, &format!("cli-{protocol}"));
    append(&dovecot, &user, MESSAGES).await?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.json");
    let first = tokio::task::spawn_blocking({
        let (dovecot, user, state, protocol) = (
            dovecot.clone(),
            user.clone(),
            state.clone(),
            protocol.to_owned(),
        );
        move || mailsim_sync(&dovecot, &protocol, &user, &state)
    })
    .await?;
    assert_eq!(first, MESSAGES);
    let second = tokio::task::spawn_blocking({
        let (dovecot, user, state, protocol) = (
            dovecot.clone(),
            user.clone(),
            state.clone(),
            protocol.to_owned(),
        );
        move || mailsim_sync(&dovecot, &protocol, &user, &state)
    })
    .await?;
    assert_eq!(second, 0);
    Ok(())
}

#[tokio::test]
async fn mailsim_sync_imap_creates_each_record_once() -> TestResult {
    command_syncs_twice("imap").await
}

#[tokio::test]
async fn mailsim_sync_pop3_creates_each_record_once() -> TestResult {
    command_syncs_twice("pop3").await
}
