//! Real clients against `mailsim serve` on ephemeral loopback ports:
//! Python's imaplib, poplib and smtplib, curl, fetchmail and mbsync.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use support::{Served, run_ok, test_file};

fn python(script: &str, args: &[String]) {
    let path = test_file(&format!("clients/{script}"));
    let mut all = vec![path.to_string_lossy().into_owned()];
    all.extend(args.iter().cloned());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    run_ok("python3", &refs);
}

#[test]
fn python_imaplib_round_trip() {
    let served = Served::start(&[]);
    python(
        "imap_client.py",
        &[
            served.imap.port().to_string(),
            served.smtp.port().to_string(),
        ],
    );
}

#[test]
fn python_poplib_round_trip() {
    let served = Served::start(&[]);
    python(
        "pop3_client.py",
        &[
            served.pop3.port().to_string(),
            served.smtp.port().to_string(),
        ],
    );
}

#[test]
fn python_smtplib_delivers_and_rejects() {
    let served = Served::start(&[]);
    python("smtp_client.py", &[served.smtp.port().to_string()]);
}

#[test]
fn curl_reads_and_sends_over_every_protocol() {
    let served = Served::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("message.eml");
    fs::write(
        &message,
        "From: curl@example.org\r\nTo: carol@demo.test\r\nSubject: sent by curl\r\n\r\nhello from curl\r\n",
    )
    .unwrap();

    let smtp_url = format!("smtp://{}", served.smtp);
    run_ok(
        "curl",
        &[
            "--silent",
            "--show-error",
            &smtp_url,
            "--mail-from",
            "curl@example.org",
            "--mail-rcpt",
            "carol@demo.test",
            "--upload-file",
            message.to_str().unwrap(),
        ],
    );

    // LIST over IMAP.
    let imap_root = format!("imap://{}/", served.imap);
    let listing = run_ok(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--user",
            "carol@demo.test:demo",
            &imap_root,
        ],
    );
    assert!(String::from_utf8_lossy(&listing.stdout).contains("INBOX"));

    // The newest message over IMAP by UID search, then fetched.
    let search_url = format!("imap://{}/INBOX", served.imap);
    let search = run_ok(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--user",
            "carol@demo.test:demo",
            &search_url,
            "--request",
            "UID SEARCH SUBJECT \"sent by curl\"",
        ],
    );
    let search = String::from_utf8_lossy(&search.stdout).into_owned();
    let uid = search.split_whitespace().last().expect("a UID").to_owned();
    let fetch_url = format!("imap://{}/INBOX;UID={uid}", served.imap);
    let fetched = run_ok(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--user",
            "carol@demo.test:demo",
            &fetch_url,
        ],
    );
    assert!(String::from_utf8_lossy(&fetched.stdout).contains("hello from curl"));

    // The same message over POP3: it is the last one in the maildrop.
    let pop3_root = format!("pop3://{}/", served.pop3);
    let list = run_ok(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--user",
            "carol@demo.test:demo",
            &pop3_root,
        ],
    );
    let count = String::from_utf8_lossy(&list.stdout).lines().count();
    let retr_url = format!("pop3://{}/{count}", served.pop3);
    let retrieved = run_ok(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--user",
            "carol@demo.test:demo",
            &retr_url,
        ],
    );
    assert!(String::from_utf8_lossy(&retrieved.stdout).contains("hello from curl"));
}

const BULK: usize = 500;

/// Sends BULK messages to `recipient` and returns how many it then has.
fn fill_mailbox(served: &Served, recipient: &str) -> usize {
    python(
        "bulk_send.py",
        &[
            served.smtp.port().to_string(),
            recipient.to_owned(),
            BULK.to_string(),
        ],
    );
    // The demo messages are there too: count them over POP3 with curl.
    let url = format!("pop3://{}/", served.pop3);
    let list = run_ok(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--user",
            &format!("{recipient}:demo"),
            &url,
        ],
    );
    String::from_utf8_lossy(&list.stdout).lines().count()
}

#[test]
fn fetchmail_retrieves_every_message() {
    let served = Served::start(&[]);
    let total = fill_mailbox(&served, "bob@demo.test");
    assert!(total >= BULK);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    for protocol in ["POP3", "IMAP"] {
        let port = if protocol == "POP3" {
            served.pop3.port()
        } else {
            served.imap.port()
        };
        let target = out.join(protocol);
        fs::create_dir(&target).unwrap();
        let rc = dir.path().join(format!("fetchmailrc-{protocol}"));
        fs::write(
            &rc,
            format!(
                "poll 127.0.0.1 service {port} protocol {protocol} auth password\n  \
                 user \"bob@demo.test\" password \"demo\" keep fetchall sslproto \"\"\n  \
                 mda \"/bin/sh -c 'cat > {}/$$.eml'\"\n",
                target.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).unwrap();
        let home = dir.path().to_str().unwrap();
        let output = std::process::Command::new("fetchmail")
            .args([
                "--nodetach",
                "--nosyslog",
                "--fetchmailrc",
                rc.to_str().unwrap(),
                "--pidfile",
            ])
            .arg(dir.path().join(format!("pid-{protocol}")))
            .env("HOME", home)
            .env("FETCHMAILHOME", home)
            .output()
            .expect("fetchmail runs (install it with scripts/test-deps)");
        // fetchmail exits with 0 when it retrieved mail.
        assert!(
            output.status.success(),
            "fetchmail {protocol} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let retrieved = fs::read_dir(&target).unwrap().count();
        assert_eq!(retrieved, total, "fetchmail over {protocol}");
    }
}

#[test]
fn mbsync_retrieves_every_message() {
    let served = Served::start(&[]);
    let total = fill_mailbox(&served, "carol@demo.test");

    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Mail");
    fs::create_dir(&maildir).unwrap();
    let config = dir.path().join("mbsyncrc");
    fs::write(
        &config,
        format!(
            "IMAPAccount sim\nHost 127.0.0.1\nPort {}\nUser carol@demo.test\nPass demo\n\
             SSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore sim-remote\nAccount sim\n\n\
             MaildirStore local\nPath {}/\nInbox {}\n\n\
             Channel sim\nFar :sim-remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSync Pull\nSyncState *\n",
            served.imap.port(),
            maildir.display(),
            dir.path().join("inbox").display()
        ),
    )
    .unwrap();
    run_ok("mbsync", &["--config", config.to_str().unwrap(), "--all"]);
    let inbox = dir.path().join("inbox");
    let retrieved = fs::read_dir(inbox.join("new")).unwrap().count()
        + fs::read_dir(inbox.join("cur")).unwrap().count();
    assert_eq!(retrieved, total);
}

#[test]
fn serve_runs_a_scenario_organisation() {
    let scenario = test_file("../scenarios/fault-isolation.toml");
    let served = Served::start(&[
        "--scenario",
        scenario.to_str().unwrap(),
        "--strategy",
        "forward",
        "--password",
        "pw-for-test",
    ]);
    let url = format!("imap://{}/INBOX", served.imap);
    let status = run_ok(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--user",
            "support@northwind.example:pw-for-test",
            &url,
            "--request",
            "STATUS INBOX (MESSAGES)",
        ],
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("MESSAGES"));
    // Every mailbox forwards under the forward strategy, so the forward
    // mailbox exists and takes the same password.
    let forward = run_ok(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--user",
            "crm-forward@mailsim.test:pw-for-test",
            &url,
            "--request",
            "STATUS INBOX (MESSAGES)",
        ],
    );
    assert!(String::from_utf8_lossy(&forward.stdout).contains("MESSAGES"));
}
