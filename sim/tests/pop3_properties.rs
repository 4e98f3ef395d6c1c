//! Properties of the POP3 session under arbitrary input.

mod common_pop3smtp;

use common_pop3smtp::{Protocol, add_account, run_pieces, service_with, split_by};
use proptest::prelude::*;
use sim::{Limits, Service};

const GREETING: &[u8] = b"+OK mail.example.com POP3 server ready\r\n";

fn mailbox() -> Service {
    let limits = Limits {
        max_line: 256,
        max_consecutive_errors: 50,
        ..Limits::default()
    };
    let service = service_with(limits);
    add_account(
        &service,
        "alice@example.com",
        "secret",
        &[
            b"Subject: one\r\n\r\n.dot\r\nbody\r\n",
            b"Subject: two\n\nbare line feeds\n",
            b"no header and no line ending",
        ],
    );
    service
}

/// Runs the session on a paused clock, as every test here does.
fn on_paused_runtime<T>(test: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
        .block_on(test)
}

/// A command line a client could send, valid or nearly so.
fn command() -> impl Strategy<Value = String> {
    let number = 0u32..5;
    prop_oneof![
        Just("CAPA".to_owned()),
        Just("USER alice@example.com".to_owned()),
        Just("PASS secret".to_owned()),
        Just("PASS wrong".to_owned()),
        Just("STAT".to_owned()),
        Just("LIST".to_owned()),
        Just("UIDL".to_owned()),
        Just("RSET".to_owned()),
        Just("NOOP".to_owned()),
        Just("QUIT".to_owned()),
        number.clone().prop_map(|n| format!("LIST {n}")),
        number.clone().prop_map(|n| format!("UIDL {n}")),
        number.clone().prop_map(|n| format!("RETR {n}")),
        number.clone().prop_map(|n| format!("DELE {n}")),
        (number, 0u32..4).prop_map(|(n, lines)| format!("TOP {n} {lines}")),
    ]
}

/// Arbitrary bytes mixed with command lines, so that sessions get past login.
fn hostile_input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        command().prop_map(|line| format!("{line}\r\n").into_bytes()),
        Just(b"\r\n".to_vec()),
        Just(vec![b'x'; 300]),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn arbitrary_input_never_breaks_session(
        input in hostile_input(),
        sizes in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let output = on_paused_runtime(async {
            run_pieces(&mailbox(), Protocol::Pop3, split_by(&input, &sizes)).await
        });
        prop_assert!(output.starts_with(GREETING));
        prop_assert!(output.ends_with(b"\r\n"));
        let bare_line_feeds = output
            .windows(2)
            .filter(|pair| pair[1] == b'\n' && pair[0] != b'\r')
            .count();
        prop_assert_eq!(bare_line_feeds, 0);
    }

    #[test]
    fn valid_commands_give_same_output_in_any_chunking(
        commands in proptest::collection::vec(command(), 0..20),
        sizes in proptest::collection::vec(1usize..24, 1..8),
    ) {
        let input: Vec<u8> = commands
            .iter()
            .flat_map(|line| format!("{line}\r\n").into_bytes())
            .collect();
        let (whole, split) = on_paused_runtime(async {
            let whole = run_pieces(&mailbox(), Protocol::Pop3, vec![input.clone()]).await;
            let split = run_pieces(&mailbox(), Protocol::Pop3, split_by(&input, &sizes)).await;
            (whole, split)
        });
        prop_assert_eq!(whole, split);
    }
}
