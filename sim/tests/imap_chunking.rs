//! Property: a sequence of supported IMAP commands gives byte-identical
//! server output however the input is split into writes.
//!
//! The commands are LOGIN, SELECT, FETCH, UID FETCH, STORE, SEARCH, NOOP,
//! CLOSE and LOGOUT with generated arguments, sent in one go without
//! waiting for replies (pipelined), once as a single write and once in
//! chunks of generated sizes. Each run starts from a fresh copy of the test
//! organisation, so both see the same mailbox state.

mod common;

use std::time::Duration;

use common::imap::{populate, serve};
use proptest::prelude::*;
use sim::conn::Peer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sequence sets over INBOX's three messages, including `*`, ranges, lists
/// and a number past the last message.
fn sequence_set() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec!["1", "2", "3", "*", "1:2", "2:*", "1:*", "1,3", "3:1", "4"])
}

fn fetch_items() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        "FLAGS",
        "UID",
        "RFC822.SIZE",
        "INTERNALDATE",
        "ENVELOPE",
        "BODYSTRUCTURE",
        "BODY",
        "FAST",
        "ALL",
        "FULL",
        "(FLAGS UID RFC822.SIZE)",
        "BODY.PEEK[]",
        "BODY[]",
        "BODY.PEEK[HEADER]",
        "BODY.PEEK[HEADER.FIELDS (Subject From)]",
        "BODY[TEXT]",
        "BODY.PEEK[1]",
        "BODY.PEEK[1.MIME]",
        "BODY.PEEK[]<0.20>",
        "BODY[]<10.5>",
        "RFC822",
        "RFC822.HEADER",
        "(UID BODY.PEEK[])",
    ])
}

fn flags() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        "(\\Seen)",
        "(\\Flagged)",
        "(\\Deleted)",
        "(\\Seen \\Flagged)",
        "(\\Answered \\Draft)",
        "()",
    ])
}

fn search_criteria() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        "ALL",
        "SEEN",
        "UNSEEN",
        "FLAGGED",
        "DELETED",
        "NOT SEEN",
        "OR SEEN FLAGGED",
        "SUBJECT \"Quarterly\"",
        "FROM \"carol\"",
        "UID 1:2",
        "2:*",
        "LARGER 1000",
        "SMALLER 1000",
        "SINCE 1-May-2024",
        "BEFORE 2-May-2024",
        "HEADER Subject numbers",
        "TEXT \"Carol\"",
    ])
}

/// One command line without its tag and CRLF.
fn command() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => proptest::sample::select(vec![
            "LOGIN alice@example.org alice-pw",
            "LOGIN \"alice@example.org\" \"alice-pw\"",
            "LOGIN alice@example.org wrong-pw",
            "LOGIN bob@example.org bob-pw",
        ])
        .prop_map(str::to_owned),
        2 => proptest::sample::select(vec![
            "SELECT INBOX",
            "SELECT inbox",
            "SELECT Archive",
            "SELECT \"Projects/Mailsim\"",
            "SELECT Missing",
        ])
        .prop_map(str::to_owned),
        4 => (sequence_set(), fetch_items()).prop_map(|(set, items)| format!("FETCH {set} {items}")),
        4 => (sequence_set(), fetch_items()).prop_map(|(set, items)| format!("UID FETCH {set} {items}")),
        3 => (
            sequence_set(),
            proptest::sample::select(vec!["FLAGS", "+FLAGS", "-FLAGS", "FLAGS.SILENT", "+FLAGS.SILENT", "-FLAGS.SILENT"]),
            flags(),
        )
            .prop_map(|(set, action, flags)| format!("STORE {set} {action} {flags}")),
        2 => (any::<bool>(), search_criteria()).prop_map(|(uid, criteria)| {
            let prefix = if uid { "UID " } else { "" };
            format!("{prefix}SEARCH {criteria}")
        }),
        1 => Just("NOOP".to_owned()),
        1 => Just("CLOSE".to_owned()),
        1 => Just("LOGOUT".to_owned()),
    ]
}

/// A command sequence, tagged `t1`, `t2`, ... and CRLF-terminated. Most
/// sequences start logged in with INBOX selected, so the commands that need
/// a selected mailbox run.
fn conversation() -> impl Strategy<Value = Vec<u8>> {
    let start = prop_oneof![
        1 => Just(Vec::<String>::new()),
        3 => Just(vec![
            "LOGIN alice@example.org alice-pw".to_owned(),
            "SELECT INBOX".to_owned(),
        ]),
    ];
    (start, proptest::collection::vec(command(), 0..24)).prop_map(|(start, commands)| {
        start
            .into_iter()
            .chain(commands)
            .enumerate()
            .flat_map(|(index, line)| format!("t{} {line}\r\n", index + 1).into_bytes())
            .collect()
    })
}

/// Returns the tags of the tagged responses in `output`, in order.
fn tagged_responses(output: &[u8]) -> Vec<String> {
    output
        .split(|&byte| byte == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let (tag, _) = line.split_once(' ')?;
            let number = tag.strip_prefix('t')?;
            number
                .parse::<u32>()
                .is_ok()
                .then(|| tag.to_owned())
        })
        .collect()
}

/// Returns the tags a server must answer: every command up to and
/// including the first LOGOUT, after which the session ends.
fn expected_tags(input: &[u8]) -> Vec<String> {
    let mut tags = Vec::new();
    for line in input.split(|&byte| byte == b'\n') {
        let line = String::from_utf8_lossy(line);
        let Some((tag, command)) = line.trim_end().split_once(' ') else {
            continue;
        };
        tags.push(tag.to_owned());
        if command == "LOGOUT" {
            break;
        }
    }
    tags
}

/// Plays `input` on a fresh organisation in chunks of the sizes in `sizes`
/// (repeated), then hangs up, and returns everything the server sent.
/// Fails if the session panics or does not end.
async fn run_chunked(input: &[u8], sizes: &[usize]) -> Result<Vec<u8>, String> {
    let service = common::service();
    populate(&service);
    let (client, server) = tokio::io::duplex(64 * 1024);
    let session = serve(
        service,
        server,
        Peer {
            addr: None,
            session: 1,
        },
    );
    let (mut reader, mut writer) = tokio::io::split(client);
    // Drain output concurrently, so neither side blocks on a full pipe.
    let drain = tokio::spawn(async move {
        let mut output = Vec::new();
        let _ = reader.read_to_end(&mut output).await;
        output
    });

    let mut offset = 0;
    for size in sizes.iter().cycle() {
        if offset >= input.len() {
            break;
        }
        let end = offset.saturating_add((*size).max(1)).min(input.len());
        // The session stops reading after LOGOUT; the rest is not needed.
        if writer.write_all(&input[offset..end]).await.is_err() {
            break;
        }
        offset = end;
        tokio::task::yield_now().await;
    }
    let _ = writer.shutdown().await;

    let ended = tokio::time::timeout(Duration::from_secs(24 * 3600), session)
        .await
        .map_err(|_| "session did not end after the client hung up".to_owned())?;
    match ended {
        Err(error) => return Err(format!("session task failed: {error}")),
        Ok(Err(error)) => return Err(format!("session ended with an error: {error}")),
        Ok(Ok(())) => {}
    }
    drop(writer);
    drain
        .await
        .map_err(|error| format!("reader failed: {error}"))
}

/// Renders `bytes` as transcript lines prefixed with `direction`.
fn lines(direction: &str, bytes: &[u8]) -> String {
    let mut out = String::new();
    common::render_into(&mut out, direction, bytes);
    out
}

fn on_paused_runtime<T>(test: impl Future<Output = T>) -> Result<T, TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    Ok(runtime.block_on(test))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        // As in the other session properties here: proptest resolves this
        // file's workspace-relative name against the package directory,
        // where it does not exist, so it could not save failing cases.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn imap_commands_give_same_output_in_any_chunking(
        input in conversation(),
        sizes in proptest::collection::vec(1usize..48, 1..8),
    ) {
        let (whole, split) = on_paused_runtime(async {
            let whole = run_chunked(&input, &[usize::MAX]).await;
            let split = run_chunked(&input, &sizes).await;
            (whole, split)
        })?;
        let whole = whole.map_err(TestCaseError::fail)?;
        let split = split.map_err(TestCaseError::fail)?;
        prop_assert_eq!(
            tagged_responses(&whole),
            expected_tags(&input),
            "not every command got one tagged response, in order\ninput:\n{}\noutput:\n{}",
            lines("C", &input),
            lines("S", &whole)
        );
        prop_assert!(
            whole == split,
            "output differs when split in chunks of {:?}\ninput:\n{}\nwhole:\n{}\nsplit:\n{}",
            sizes,
            lines("C", &input),
            lines("S", &whole),
            lines("S", &split)
        );
    }
}
