//! Property: a sequence of supported IMAP commands gives byte-identical
//! server output however the input is split into writes.
//!
//! The commands are LOGIN, SELECT, FETCH, UID FETCH, STORE, SEARCH, NOOP,
//! CLOSE and LOGOUT with generated arguments, sent in one go without
//! waiting for replies (pipelined), once as a single write and once in
//! chunks of generated sizes. String arguments come as atoms, quoted
//! strings and both kinds of literal. Each run starts from a fresh copy of
//! the test organisation, so both see the same mailbox state. The property
//! also checks that every command up to the first LOGOUT gets one tagged
//! response, in order, unless the server ends the session with BYE first.

mod common;

use std::time::Duration;

use common::imap::{populate, serve};
use proptest::prelude::*;
use sim::conn::Peer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sequence sets over INBOX's three messages, including `*`, ranges, lists
/// and a number past the last message.
fn sequence_set() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        "1", "2", "3", "*", "1:2", "2:*", "1:*", "1,3", "3:1", "4",
    ])
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

/// How a string argument is written: as an atom, a quoted string, a
/// synchronizing literal (`{n}`, the server sends a continuation request
/// before the data) or a non-synchronizing literal (`{n+}`, LITERAL+).
#[derive(Clone, Copy, Debug)]
enum StringForm {
    Atom,
    Quoted,
    Literal,
    LiteralPlus,
}

impl StringForm {
    fn render(self, value: &str) -> String {
        match self {
            Self::Atom => value.to_owned(),
            Self::Quoted => format!("\"{value}\""),
            Self::Literal => format!("{{{}}}\r\n{value}", value.len()),
            Self::LiteralPlus => format!("{{{}+}}\r\n{value}", value.len()),
        }
    }
}

fn astring() -> impl Strategy<Value = StringForm> {
    prop_oneof![
        Just(StringForm::Atom),
        Just(StringForm::Quoted),
        Just(StringForm::Literal),
        Just(StringForm::LiteralPlus),
    ]
}

/// Generates one command without its tag and final CRLF. Literals put
/// CRLFs inside it.
fn command() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => (
            proptest::sample::select(vec![
                ("alice@example.org", "alice-pw"),
                ("alice@example.org", "wrong-pw"),
                ("bob@example.org", "bob-pw"),
            ]),
            astring(),
            astring(),
        )
            .prop_map(|((user, password), user_form, password_form)| {
                format!("LOGIN {} {}", user_form.render(user), password_form.render(password))
            }),
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
        1 => (any::<bool>(), astring()).prop_map(|(uid, form)| {
            let prefix = if uid { "UID " } else { "" };
            format!("{prefix}SEARCH SUBJECT {}", form.render("numbers"))
        }),
        1 => Just("NOOP".to_owned()),
        1 => Just("CLOSE".to_owned()),
        1 => Just("LOGOUT".to_owned()),
    ]
}

/// Generates a command sequence. Most sequences start logged in with INBOX
/// selected, so the commands that need a selected mailbox run.
fn conversation() -> impl Strategy<Value = Vec<String>> {
    let start = prop_oneof![
        1 => Just(Vec::<String>::new()),
        3 => Just(vec![
            "LOGIN alice@example.org alice-pw".to_owned(),
            "SELECT INBOX".to_owned(),
        ]),
    ];
    (start, proptest::collection::vec(command(), 0..24))
        .prop_map(|(start, commands)| start.into_iter().chain(commands).collect())
}

/// Returns the input for `commands`: each tagged `t1`, `t2`, ... and
/// ended with CRLF.
fn tagged_input(commands: &[String]) -> Vec<u8> {
    commands
        .iter()
        .enumerate()
        .flat_map(|(index, line)| format!("t{} {line}\r\n", index + 1).into_bytes())
        .collect()
}

/// Returns the tags the server must send a tagged response for: every
/// command up to and including the first LOGOUT, which ends the session.
fn expected_tags(commands: &[String]) -> Vec<String> {
    let answered = commands
        .iter()
        .position(|command| command == "LOGOUT")
        .map_or(commands.len(), |logout| logout + 1);
    (1..=answered).map(|number| format!("t{number}")).collect()
}

/// Returns the tags of the tagged responses in `output`, in order.
fn tagged_responses(output: &[u8]) -> Vec<String> {
    output
        .split(|&byte| byte == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let (tag, _) = line.split_once(' ')?;
            let number = tag.strip_prefix('t')?;
            number.parse::<u32>().is_ok().then(|| tag.to_owned())
        })
        .collect()
}

/// Returns true when the last response in `output` is an untagged BYE.
fn ends_with_bye(output: &[u8]) -> bool {
    let trimmed = output.strip_suffix(b"\r\n").unwrap_or(output);
    let last_line = trimmed
        .rsplit(|&byte| byte == b'\n')
        .next()
        .unwrap_or_default();
    last_line.starts_with(b"* BYE ")
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
        // 1,024 cases unless PROPTEST_CASES sets the count.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(1024),
        // As in the other session properties here: proptest resolves this
        // file's workspace-relative name against the package directory,
        // where it does not exist, so it could not save failing cases.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn imap_commands_give_same_output_in_any_chunking(
        commands in conversation(),
        sizes in proptest::collection::vec(1usize..48, 1..8),
    ) {
        let input = tagged_input(&commands);
        let (whole, split) = on_paused_runtime(async {
            let whole = run_chunked(&input, &[usize::MAX]).await;
            let split = run_chunked(&input, &sizes).await;
            (whole, split)
        })?;
        let whole = whole.map_err(TestCaseError::fail)?;
        let split = split.map_err(TestCaseError::fail)?;
        let tags = tagged_responses(&whole);
        let expected = expected_tags(&commands);
        prop_assert_eq!(
            &tags[..],
            &expected[..tags.len().min(expected.len())],
            "tagged responses are not one per command in order\ninput:\n{}\noutput:\n{}",
            lines("C", &input),
            lines("S", &whole)
        );
        // A server may end the session early with an untagged BYE, as it
        // does after too many invalid commands in a row.
        prop_assert!(
            tags.len() == expected.len() || ends_with_bye(&whole),
            "{} of {} commands got a tagged response before the session ended without BYE\ninput:\n{}\noutput:\n{}",
            tags.len(),
            expected.len(),
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
