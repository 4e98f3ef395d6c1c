//! Byte-exact IMAP conversations, one snapshot each. Every conversation is
//! played in chunk sizes from 1 byte to whole steps and must give the same
//! transcript each time.

mod common;

use common::TestResult;
use common::imap::{ALICE, Step, Until, deliver_late, transcript};
use sim::Service;

use Step::{Closed, Command, Raw, Wait};

const LOGIN: Step = Command("a0 LOGIN alice@example.org alice-pw");
const SELECT: Step = Command("a1 SELECT INBOX");
const LOGOUT: Step = Command("z9 LOGOUT");

#[tokio::test(start_paused = true)]
async fn imap_greeting_capability_noop_logout() -> TestResult {
    let transcript = transcript(&[
        Command("a1 CAPABILITY"),
        Command("a2 NOOP"),
        Command("a3 LOGOUT"),
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_login_failure_and_success() -> TestResult {
    let transcript = transcript(&[
        Command("a1 LOGIN alice@example.org wrong"),
        Command("a2 LOGIN nobody@example.org alice-pw"),
        Command("a3 SELECT INBOX"),
        Raw(b"a4 LOGIN {17}\r\n", Until::Tagged("a4")),
        Raw(b"alice@example.org {8}\r\n", Until::Tagged("a4")),
        Raw(b"alice-pw\r\n", Until::Tagged("a4")),
        Command("a5 LOGIN alice@example.org alice-pw"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_authenticate_plain() -> TestResult {
    let transcript = transcript(&[
        Command("a1 AUTHENTICATE CRAM-MD5"),
        Command("a2 AUTHENTICATE PLAIN"),
        Raw(b"*\r\n", Until::Tagged("a2")),
        Command("a3 AUTHENTICATE PLAIN"),
        Raw(b"AGFsaWNlQGV4YW1wbGUub3JnAHdyb25n\r\n", Until::Tagged("a3")),
        Command("a4 AUTHENTICATE PLAIN"),
        Raw(b"not base64!\r\n", Until::Tagged("a4")),
        Command("a5 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3"),
        Command("a6 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_list_lsub_status_and_folders() -> TestResult {
    let transcript = transcript(&[
        Command("b1 LIST \"\" \"\""),
        LOGIN,
        Command("b2 LIST \"\" \"\""),
        Command("b3 LIST \"\" *"),
        Command("b4 LIST \"\" %"),
        Command("b5 LIST Projects/ %"),
        Command("b6 LIST \"\" inbox"),
        Command("b7 CREATE Projects/Tests/Unit"),
        Command("b8 CREATE INBOX"),
        Command("b9 LSUB \"\" *"),
        Command("c1 SUBSCRIBE Projects/Mailsim"),
        Command("c2 LSUB \"\" %"),
        Command("c3 STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"),
        Command("c4 STATUS Archive (MESSAGES UIDNEXT)"),
        Command("c5 STATUS Nope (MESSAGES)"),
        Command("c6 RENAME Projects Work"),
        Command("c7 LIST \"\" Work*"),
        Command("c8 LSUB \"\" *"),
        Command("c9 RENAME Nope Other"),
        Command("d1 RENAME Archive Work"),
        Command("d2 DELETE Work/Tests/Unit"),
        Command("d3 DELETE INBOX"),
        Command("d4 DELETE Nope"),
        Command("d5 UNSUBSCRIBE Work/Mailsim"),
        Command("d6 LSUB \"\" *"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_select_examine_close_unselect() -> TestResult {
    let transcript = transcript(&[
        LOGIN,
        Command("a2 FETCH 1 FLAGS"),
        Command("a3 SELECT INBOX"),
        Command("a4 EXAMINE INBOX"),
        Command("a5 STORE 1 +FLAGS (\\Deleted)"),
        Command("a6 CLOSE"),
        Command("a7 CLOSE"),
        Command("a8 SELECT Projects/Mailsim"),
        Command("a9 UNSELECT"),
        Command("b1 SELECT Nope"),
        Command("b2 CHECK"),
        Command("b3 SELECT INBOX"),
        Command("b4 CHECK"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_fetch_metadata_items() -> TestResult {
    let transcript = transcript(&[
        LOGIN,
        SELECT,
        Command("f1 FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE)"),
        Command("f2 FETCH 1 ENVELOPE"),
        Command("f3 FETCH 2:3 ENVELOPE"),
        Command("f4 FETCH 2 BODYSTRUCTURE"),
        Command("f5 FETCH 3 BODYSTRUCTURE"),
        Command("f6 FETCH 1 BODY"),
        Command("f7 FETCH 1:* FAST"),
        Command("f8 FETCH 2 ALL"),
        Command("f9 FETCH 3 FULL"),
        Command("g1 UID FETCH 2:* FLAGS"),
        Command("g2 UID FETCH 9:* UID"),
        Command("g3 FETCH 7 UID"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_fetch_body_sections() -> TestResult {
    let transcript = transcript(&[
        LOGIN,
        SELECT,
        Command("f1 UID FETCH 1 BODY.PEEK[HEADER]"),
        Command("f2 FETCH 1 BODY.PEEK[TEXT]"),
        Command("f3 FETCH 1 BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)]"),
        Command(
            "f4 FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (RETURN-PATH MESSAGE-ID DATE FROM SENDER TO CC)]",
        ),
        Command("f5 FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.1] BODY.PEEK[1.2.MIME] BODY.PEEK[2])"),
        Command("f6 FETCH 2 (BODY.PEEK[2.MIME] BODY.PEEK[3] BODY.PEEK[1.1.1])"),
        Command("f7 FETCH 3 (BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1])"),
        Command("f8 FETCH 3 BODY.PEEK[2.HEADER.FIELDS (SUBJECT FROM)]"),
        Command("f9 FETCH 1 BODY.PEEK[1]"),
        Command("g1 FETCH 1:3 FLAGS"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_fetch_partial_and_seen() -> TestResult {
    let transcript = transcript(&[
        LOGIN,
        SELECT,
        Command("f1 FETCH 1 BODY.PEEK[]<0.20>"),
        Command("f2 FETCH 1 BODY.PEEK[TEXT]<7.12>"),
        Command("f3 FETCH 1 BODY.PEEK[]<100000.10>"),
        Command("f4 UID FETCH 1:* BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]<0.16>"),
        Command("f5 FETCH 1 (RFC822.HEADER RFC822.SIZE)"),
        Command("f6 FETCH 1 RFC822.TEXT"),
        Command("f7 FETCH 3 BODY[2.1]<0.9>"),
        Command("f8 FETCH 3 (FLAGS BODY[2.1])"),
        Command("f9 FETCH 2 RFC822"),
        Command("g1 FETCH 1:* FLAGS"),
        Command("g2 EXAMINE INBOX"),
        Command("g3 FETCH 1 BODY[]"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_search_keys() -> TestResult {
    let transcript = transcript(&[
        LOGIN,
        SELECT,
        Command("s1 SEARCH ALL"),
        Command("s2 SEARCH SEEN"),
        Command("s3 SEARCH UNSEEN"),
        Command("s4 SEARCH FLAGGED UNDELETED"),
        Command("s5 SEARCH DELETED"),
        Command("s6 SEARCH ANSWERED"),
        Command("s7 SEARCH NEW"),
        Command("s8 SEARCH OLD"),
        Command("s9 SEARCH RECENT"),
        Command("t1 SEARCH SINCE 2-May-2024"),
        Command("t2 SEARCH BEFORE 2-May-2024"),
        Command("t3 SEARCH ON 3-May-2024"),
        Command("t4 SEARCH SENTSINCE 2-May-2024"),
        Command("t5 SEARCH SENTBEFORE 2-May-2024"),
        Command("t5a SEARCH SENTON 3-May-2024"),
        Command("t6 SEARCH LARGER 600"),
        Command("t7 SEARCH SMALLER 600"),
        Command("t8 SEARCH HEADER MESSAGE-ID <multi-2@example.net>"),
        Command("t9 SEARCH HEADER In-Reply-To \"\""),
        Command("u1 SEARCH FROM carol"),
        Command("u2 SEARCH TO bob@example.org"),
        Command("u3 SEARCH SUBJECT \"crm:0002503\""),
        Raw(
            b"u4 SEARCH CHARSET UTF-8 SUBJECT {7}\r\n",
            Until::Tagged("u4"),
        ),
        Raw("Grüße\r\n".as_bytes(), Until::Tagged("u4")),
        Command("u5 SEARCH NOT SEEN"),
        Command("u6 SEARCH OR SEEN FLAGGED"),
        Command("u7 SEARCH (OR SEEN FLAGGED) SINCE 3-May-2024"),
        Command("u8 SEARCH 2:3 UID 3"),
        Command("u9 UID SEARCH 2:*"),
        Command("v1 UID SEARCH UID 1,3"),
        Command("v2 SEARCH BODY \"numbers attached\""),
        Command("v3 SEARCH TEXT \"sync stopped\""),
        Command("v4 SEARCH CHARSET ISO-8859-1 ALL"),
        Command("v5 SEARCH KEYWORD $Label1"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_store_flags() -> TestResult {
    let transcript = transcript(&[
        LOGIN,
        SELECT,
        Command("t1 STORE 1 +FLAGS (\\Deleted)"),
        Command("t2 STORE 1:2 -FLAGS.SILENT (\\Seen)"),
        Command("t3 UID STORE 3 FLAGS ($Label1 \\Answered)"),
        Command("t4 STORE 2 +FLAGS (\\Recent)"),
        Command("t5 STORE 2 FLAGS.SILENT ()"),
        Command("t6 FETCH 1:* FLAGS"),
        Command("t7 SEARCH KEYWORD $label1"),
        Command("t8 SELECT INBOX"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_copy_and_append_with_uidplus() -> TestResult {
    let transcript = transcript(&[
        LOGIN,
        SELECT,
        Command("c1 COPY 1:2 Archive"),
        Command("c2 UID COPY 3 Archive"),
        Command("c3 COPY 1 Nope"),
        Command("c4 UID COPY 9 Archive"),
        Raw(
            b"c5 APPEND Archive (\\Seen $Sent) \"01-May-2024 10:00:00 +0200\" {29}\r\n",
            Until::Tagged("c5"),
        ),
        Raw(
            b"Subject: appended\r\n\r\nHello!\r\n\r\n",
            Until::Tagged("c5"),
        ),
        Raw(
            b"c6 APPEND Archive {27+}\r\nSubject: fast\r\n\r\nLITERAL+\r\n\r\n",
            Until::Tagged("c6"),
        ),
        Raw(b"c7 APPEND Nope {5+}\r\nhello\r\n", Until::Tagged("c7")),
        Command("c8 STATUS Archive (MESSAGES RECENT UIDNEXT)"),
        Command("c9 SELECT Archive"),
        Command("d1 FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)"),
        Command("d2 FETCH 5 BODY.PEEK[]"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

fn expunge_first_elsewhere(service: &Service) {
    if let Some(account) = service.store().account(ALICE.0) {
        account.modify(|mailboxes| mailboxes.inbox_mut().expunge_where(|entry| entry.uid == 1));
    }
}

#[tokio::test(start_paused = true)]
async fn imap_expunge_and_uid_expunge() -> TestResult {
    let transcript = transcript(&[
        LOGIN,
        SELECT,
        Command("e1 STORE 1:3 +FLAGS.SILENT (\\Deleted)"),
        Command("e2 UID EXPUNGE 2"),
        Command("e3 FETCH 1:* UID"),
        Command("e4 EXPUNGE"),
        Command("e5 SELECT INBOX"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_expunge_by_other_session_waits_for_noop() -> TestResult {
    let transcript = transcript(&[
        LOGIN,
        SELECT,
        Step::Act(expunge_first_elsewhere),
        Command("e1 FETCH 1:* UID"),
        Command("e2 SEARCH ALL"),
        Command("e3 STORE 2 +FLAGS (\\Flagged)"),
        Command("e4 UID FETCH 1:* UID"),
        Command("e5 FETCH 1:* UID"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_idle_reports_delivery() -> TestResult {
    let transcript = transcript(&[
        LOGIN,
        SELECT,
        Command("i1 IDLE"),
        Step::Act(deliver_late),
        Wait(Until::Responses(2)),
        Step::Act(expunge_first_elsewhere),
        Wait(Until::Responses(1)),
        Raw(b"DONE\r\n", Until::Tagged("i1")),
        Command("i2 FETCH 3 (UID FLAGS ENVELOPE)"),
        Command("i3 IDLE"),
        Raw(b"NOPE\r\n", Until::Tagged("i3")),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn imap_malformed_commands_get_bad() -> TestResult {
    let transcript = transcript(&[
        Command("m1 FOO"),
        Raw(b"\r\n", Until::Responses(1)),
        Raw(b"* NOOP\r\n", Until::Responses(1)),
        Command("m2 LOGIN"),
        Command("m3 NOOP extra"),
        Command("m4 FETCH 1 (FLAGS"),
        Raw(b"m5 FOO {5+}\r\nhello\r\n", Until::Tagged("m5")),
        Raw(b"m6 APPEND INBOX {99999999}\r\n", Until::Tagged("m6")),
        Command("m7 COMPRESS DEFLATE"),
        LOGIN,
        SELECT,
        Command("m8 FETCH 0 FLAGS"),
        Command("m9 FETCH 1 BODY[3.X]"),
        Command("n1 UID FETCH x FLAGS"),
        Command("n2 STATUS INBOX (FOO)"),
        Command("n3 FETCH 1 BINARY[1]"),
        Command("n4 NOOP"),
        LOGOUT,
        Closed,
    ])
    .await?;
    insta::assert_snapshot!(transcript);
    Ok(())
}

#[test]
fn transcript_marks_partial_last_line() {
    let mut out = String::new();
    common::render_into(&mut out, "S", b"a\r\nb\\\x00c");
    assert_eq!(out, "S: a\nS~ b\\\\\\x00c\n");
}
