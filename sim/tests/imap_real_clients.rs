//! Real IMAP clients against the server on an ephemeral loopback port:
//! Python's imaplib, curl, mbsync (isync) and fetchmail. Each must read
//! exactly the stored bytes.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::TestResult;
use common::imap::{ALICE, PLAIN};
use sim::store::{Flags, StoredMessage};
use sim::{AccountSpec, Service, SimClock};

/// Messages in the mailbox that mbsync and fetchmail download.
const LARGE_MAILBOX: usize = 500;

fn organisation(messages: usize) -> Service {
    let service = Service::builder().clock(SimClock::system()).build();
    let alice = service
        .add_account(AccountSpec::new(ALICE.0, ALICE.1))
        .expect("alice is new");
    for number in 1..=messages {
        let date = service.clock().now().fixed_offset();
        alice.modify(|mailboxes| {
            mailboxes.inbox_mut().append(
                Arc::new(StoredMessage {
                    raw: numbered_message(number),
                    internal_date: date,
                    tag: None,
                }),
                Flags::default(),
            )
        });
    }
    service
}

/// Builds a message of about 3.6 KB whose bytes depend on `number`.
fn numbered_message(number: usize) -> Bytes {
    let mut raw = format!(
        "Message-ID: <m{number}@example.org>\r\nFrom: sender{number}@example.org\r\n\
         To: alice@example.org\r\nSubject: message {number}\r\n\r\n"
    )
    .into_bytes();
    while raw.len() < 3600 {
        raw.extend_from_slice(
            format!("line of message {number} at offset {}\r\n", raw.len()).as_bytes(),
        );
    }
    Bytes::from(raw)
}

/// Builds message `number` with LF line ends, as maildir and mbox tools
/// store it.
fn lf_message(number: usize) -> String {
    String::from_utf8_lossy(&numbered_message(number)).replace("\r\n", "\n")
}

async fn run(program: &str, args: &[&str], dir: &Path) -> TestResult<Output> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .map_err(|_| format!("{program} timed out"))??;
    if !output.status.success() {
        return Err(format!(
            "{program} failed with {}:\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(output)
}

const IMAPLIB_SCRIPT: &str = r#"
import imaplib, sys

port = int(sys.argv[1])
expected = open(sys.argv[2], "rb").read()

client = imaplib.IMAP4("127.0.0.1", port)
assert "IMAP4REV1" in client.capabilities, client.capabilities
assert client.login("alice@example.org", "alice-pw")[0] == "OK"
typ, folders = client.list()
assert typ == "OK", typ
assert any(f.endswith(b" INBOX") for f in folders), folders
typ, count = client.select("INBOX")
assert typ == "OK", typ
assert count == [b"2"], count
typ, found = client.search(None, "ALL")
assert found == [b"1 2"], found
typ, found = client.search(None, "HEADER", "Message-ID", "<plain-1@example.net>")
assert found == [b"1"], found

typ, data = client.uid("FETCH", "1", "(BODY.PEEK[])")
assert typ == "OK", data
assert data[0][1] == expected, data[0][1][:80]

message = b"Subject: sent by imaplib\r\n\r\nHello from Python.\r\n"
typ, data = client.append("INBOX", "(\\Seen)", None, message)
assert typ == "OK", typ
assert b"APPENDUID" in data[0], data
typ, data = client.fetch("3", "(FLAGS BODY.PEEK[])")
assert data[0][1] == message, data

assert client.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
typ, data = client.expunge()
assert data == [b"1"], data
typ, found = client.search(None, "ALL")
assert found == [b"1 2"], found
client.close()
client.logout()
print("imaplib ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_imaplib_reads_exact_bytes() -> TestResult {
    let service = organisation(0);
    let alice = service.store().account(ALICE.0).ok_or("alice exists")?;
    service.insert(&alice, Bytes::from_static(PLAIN));
    service.insert(&alice, numbered_message(2));
    let (address, server) = common::tcp_server(service, sim::imap::serve).await?;

    let dir = tempfile::tempdir()?;
    let script = dir.path().join("client.py");
    std::fs::write(&script, IMAPLIB_SCRIPT)?;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/messages/plain.eml");
    let port = address.port().to_string();
    let output = run(
        "python3",
        &[&script.to_string_lossy(), &port, &fixture.to_string_lossy()],
        dir.path(),
    )
    .await?;
    assert_eq!(String::from_utf8_lossy(&output.stdout), "imaplib ok\n");
    server.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_message_by_uid() -> TestResult {
    let service = organisation(3);
    let (address, server) = common::tcp_server(service, sim::imap::serve).await?;
    let dir = tempfile::tempdir()?;
    let base = format!("imap://127.0.0.1:{}", address.port());
    let user = format!("{}:{}", ALICE.0, ALICE.1);

    let fetched = run(
        "curl",
        &["-sS", "-u", &user, &format!("{base}/INBOX;UID=2")],
        dir.path(),
    )
    .await?;
    assert_eq!(fetched.stdout, numbered_message(2).to_vec());

    let searched = run(
        "curl",
        &[
            "-sS",
            "-u",
            &user,
            &format!("{base}/INBOX?SUBJECT%20%22message%203%22"),
        ],
        dir.path(),
    )
    .await?;
    assert_eq!(String::from_utf8_lossy(&searched.stdout), "* SEARCH 3\r\n");

    let listed = run(
        "curl",
        &["-sS", "-u", &user, &format!("{base}/")],
        dir.path(),
    )
    .await?;
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "* LIST () \"/\" INBOX\r\n"
    );
    server.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_retrieves_every_message() -> TestResult {
    let service = organisation(LARGE_MAILBOX);
    let (address, server) = common::tcp_server(service, sim::imap::serve).await?;
    let dir = tempfile::tempdir()?;
    let maildir = dir.path().join("mail");
    std::fs::create_dir_all(&maildir)?;
    let config = format!(
        "IMAPAccount sim\nHost 127.0.0.1\nPort {port}\nUser {user}\nPass {pass}\nSSLType None\n\
         AuthMechs LOGIN\n\n\
         IMAPStore remote\nAccount sim\n\n\
         MaildirStore local\nPath {dir}/\nInbox {dir}/INBOX\n\n\
         Channel sim\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSync Pull\n\
         SyncState *\n",
        port = address.port(),
        user = ALICE.0,
        pass = ALICE.1,
        dir = maildir.display(),
    );
    let config_path = dir.path().join("mbsyncrc");
    std::fs::write(&config_path, config)?;
    run(
        "mbsync",
        &["-q", "-c", &config_path.to_string_lossy(), "sim"],
        dir.path(),
    )
    .await?;

    // mbsync stores maildir files with LF line ends and adds an X-TUID
    // header it uses to track new messages.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(maildir.join("INBOX/new"))? {
        let text = String::from_utf8(std::fs::read(entry?.path())?)?;
        let kept: Vec<&str> = text
            .split_inclusive('\n')
            .filter(|line| !line.starts_with("X-TUID: "))
            .collect();
        stored.push(kept.concat());
    }
    assert_eq!(stored.len(), LARGE_MAILBOX);
    stored.sort();
    let mut expected: Vec<String> = (1..=LARGE_MAILBOX).map(lf_message).collect();
    expected.sort();
    assert!(stored == expected, "mbsync stored different bytes");
    server.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchmail_retrieves_every_message() -> TestResult {
    let service = organisation(LARGE_MAILBOX);
    let (address, server) = common::tcp_server(service, sim::imap::serve).await?;
    let dir = tempfile::tempdir()?;
    let mbox = dir.path().join("mbox");
    let rcfile = dir.path().join("fetchmailrc");
    let rc = format!(
        "set no syslog\nset no bouncemail\n\
         poll 127.0.0.1 protocol IMAP port {port} auth password\n  \
         user \"{user}\" password \"{pass}\" is \"tester\" here\n  \
         keep fetchall no sslcertck sslproto \"\"\n  mda \"/bin/sh -c 'cat >> {mbox}; echo >> {mbox}'\"\n",
        port = address.port(),
        user = ALICE.0,
        pass = ALICE.1,
        mbox = mbox.display(),
    );
    std::fs::write(&rcfile, rc)?;
    set_owner_only(&rcfile)?;
    let home = dir.path().to_string_lossy().into_owned();
    let output = tokio::process::Command::new("fetchmail")
        .args(["-f", &rcfile.to_string_lossy(), "--nodetach", "-N"])
        .env("HOME", &home)
        .env("FETCHMAILHOME", &home)
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output).await??;
    assert!(
        output.status.success(),
        "fetchmail failed with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // fetchmail hands each message to the MDA with LF line ends and its
    // own Received header in front; the MDA appends an empty line.
    let delivered = String::from_utf8(std::fs::read(&mbox)?)?;
    let mut received: Vec<String> = Vec::new();
    for chunk in delivered.split("Received: from 127.0.0.1 ").skip(1) {
        let message: Vec<&str> = chunk
            .split_inclusive('\n')
            .skip(1)
            .skip_while(|line| line.starts_with('\t'))
            .collect();
        received.push(message.concat());
    }
    assert_eq!(received.len(), LARGE_MAILBOX);
    received.sort();
    let mut expected: Vec<String> = (1..=LARGE_MAILBOX)
        .map(|number| lf_message(number) + "\n")
        .collect();
    expected.sort();
    assert!(received == expected, "fetchmail delivered different bytes");
    server.abort();
    Ok(())
}

fn set_owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
