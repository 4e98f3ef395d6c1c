//! Property: no byte sequence, split at any points, panics an IMAP session.
//! The session replies with well-formed responses and ends cleanly when the
//! client hangs up.

mod common;

use std::time::Duration;

use common::imap::{populate, serve};
use imap_codec::decode::{Decoder, GreetingDecodeError, ResponseDecodeError};
use imap_codec::{GreetingCodec, ResponseCodec};
use proptest::prelude::*;
use sim::conn::Peer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fragments that lead the session into its deeper states: login, a
/// selected mailbox, literals, IDLE, AUTHENTICATE and large FETCHes.
const FRAGMENTS: &[&[u8]] = &[
    b"a1 LOGIN alice@example.org alice-pw\r\n",
    b"a2 SELECT INBOX\r\n",
    b"a3 FETCH 1:* (BODY[] ENVELOPE BODYSTRUCTURE)\r\n",
    b"a4 UID FETCH 1:* (BODY.PEEK[1.2.MIME]<0.10> FLAGS)\r\n",
    b"a5 IDLE\r\n",
    b"DONE\r\n",
    b"a6 APPEND INBOX {5}\r\n",
    b"a7 APPEND INBOX (\\Seen) {5+}\r\n",
    b"hello\r\n",
    b"a8 AUTHENTICATE PLAIN\r\n",
    b"AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3\r\n",
    b"a9 SEARCH OR SEEN (NOT DELETED) HEADER Subject x\r\n",
    b"b1 STORE 1:* +FLAGS (\\Deleted)\r\n",
    b"b2 EXPUNGE\r\n",
    b"b3 COPY 1:* Archive\r\n",
    b"b4 LIST \"\" *\r\n",
    b"b5 EXAMINE Archive\r\n",
    b"b6 UID EXPUNGE 1:*\r\n",
    b"b7 LOGOUT\r\n",
    b"{",
    b"}",
    b"{4294967295}\r\n",
    b"{99+}\r\n",
    b"\r\n",
    b"\n",
    b"(",
    b")",
    b"*",
    b" ",
    b"\"",
    b"\\",
    b"\0",
];

fn input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => proptest::sample::select(FRAGMENTS).prop_map(|fragment| fragment.to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..24),
    ];
    // Half of the inputs start logged in with INBOX selected, so random
    // bytes also reach the selected state.
    let prefix = prop_oneof![
        Just(Vec::new()),
        Just(b"a1 LOGIN alice@example.org alice-pw\r\na2 SELECT INBOX\r\n".to_vec()),
    ];
    (prefix, proptest::collection::vec(piece, 0..48))
        .prop_map(|(prefix, pieces)| [prefix, pieces.concat()].concat())
}

/// Checks that `output` is a greeting followed by complete responses.
fn well_formed(output: &[u8]) -> Result<(), String> {
    if output.is_empty() {
        return Err("no greeting".into());
    }
    let mut rest = match GreetingCodec::new().decode(output) {
        Ok((rest, _)) => rest,
        Err(GreetingDecodeError::Incomplete | GreetingDecodeError::Failed) => {
            return Err("invalid greeting".into());
        }
    };
    while !rest.is_empty() {
        rest = match ResponseCodec::new().decode(rest) {
            Ok((remaining, _)) => remaining,
            Err(
                ResponseDecodeError::Incomplete
                | ResponseDecodeError::LiteralFound { .. }
                | ResponseDecodeError::Failed,
            ) => {
                return Err(format!(
                    "invalid or cut response: {}",
                    common::escape(&rest[..rest.len().min(200)])
                ));
            }
        };
    }
    Ok(())
}

/// Plays `input` in chunks of the sizes in `cuts` (repeated), hangs up and
/// returns the server's output, or an error if the session panicked.
async fn run_session(input: Vec<u8>, cuts: Vec<usize>) -> Result<Vec<u8>, String> {
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
    for cut in cuts.iter().cycle() {
        if offset >= input.len() {
            break;
        }
        let end = (offset + cut).min(input.len());
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
    if let Err(error) = ended {
        return Err(format!("session task failed: {error}"));
    }
    drop(writer);
    drain
        .await
        .map_err(|error| format!("reader failed: {error}"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn imap_session_survives_any_input(
        input in input(),
        cuts in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let output = runtime
            .block_on(run_session(input, cuts))
            .map_err(TestCaseError::fail)?;
        well_formed(&output).map_err(TestCaseError::fail)?;
    }
}
