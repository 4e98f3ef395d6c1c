//! Properties of the SMTP session under arbitrary input.

mod common_pop3smtp;

use common_pop3smtp::{Protocol, add_account, run_pieces, service_with, split_by};
use proptest::prelude::*;
use sim::{Limits, Service};

const GREETING: &[u8] = b"220 mail.example.com ESMTP\r\n";

fn mailbox() -> Service {
    let limits = Limits {
        max_line: 256,
        max_message: 512,
        max_consecutive_errors: 50,
        ..Limits::default()
    };
    let service = service_with(limits);
    add_account(&service, "alice@example.com", "pw", &[]);
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

/// A line a client could send: commands, message content and the end of DATA.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("EHLO client.example.org".to_owned()),
        Just("HELO client.example.org".to_owned()),
        Just("MAIL FROM:<carol@example.org>".to_owned()),
        Just("RCPT TO:<alice@example.com>".to_owned()),
        Just("RCPT TO:<nobody@example.com>".to_owned()),
        Just("DATA".to_owned()),
        Just("RSET".to_owned()),
        Just("NOOP".to_owned()),
        Just("VRFY alice".to_owned()),
        Just("QUIT".to_owned()),
        Just("Subject: test".to_owned()),
        Just(String::new()),
        Just(".".to_owned()),
        Just("..stuffed".to_owned()),
        "[a-z .]{0,40}",
    ]
}

/// Arbitrary bytes mixed with protocol lines, so that sessions reach DATA.
fn hostile_input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        line().prop_map(|line| format!("{line}\r\n").into_bytes()),
        Just(b"\r\n.\r\n".to_vec()),
        Just(vec![b'x'; 600]),
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
            run_pieces(&mailbox(), Protocol::Smtp, split_by(&input, &sizes)).await
        });
        prop_assert!(output.starts_with(GREETING));
        prop_assert!(output.ends_with(b"\r\n"));
        // Every reply line starts with a three-digit code.
        for reply_line in output.split(|&byte| byte == b'\n').filter(|l| !l.is_empty()) {
            let code = reply_line.get(..3).unwrap_or_default();
            prop_assert!(code.iter().all(u8::is_ascii_digit), "{}", reply_line.escape_ascii());
        }
    }

    #[test]
    fn valid_lines_give_same_output_in_any_chunking(
        lines in proptest::collection::vec(line(), 0..24),
        sizes in proptest::collection::vec(1usize..24, 1..8),
    ) {
        let input: Vec<u8> = lines
            .iter()
            .flat_map(|line| format!("{line}\r\n").into_bytes())
            .collect();
        let (whole, split) = on_paused_runtime(async {
            let whole = run_pieces(&mailbox(), Protocol::Smtp, vec![input.clone()]).await;
            let split = run_pieces(&mailbox(), Protocol::Smtp, split_by(&input, &sizes)).await;
            (whole, split)
        });
        prop_assert_eq!(whole, split);
    }
}
