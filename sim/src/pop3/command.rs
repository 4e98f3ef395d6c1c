//! POP3 requests: framing of command lines and parsing into [`Command`].
//!
//! The [`Decoder`] is sans-I/O: the session appends received bytes to a
//! buffer and requests the next command, and "no complete line yet" is an
//! ordinary `Ok(None)`. Memory stays bounded because a line longer than the
//! limit is dropped while it arrives and reported once its end is seen.

use bytes::{Buf, BytesMut};
use thiserror::Error;

use crate::secret::Secret;

/// A POP3 command (RFC 1939 sections 5 to 7, CAPA from RFC 2449).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `CAPA`: list the capabilities.
    Capa,
    /// `USER name`: name the maildrop to open.
    User(String),
    /// `PASS password`: the password; everything after `PASS ` counts, spaces included.
    Pass(Secret<Vec<u8>>),
    /// `STAT`: message count and total size.
    Stat,
    /// `LIST [msg]`: sizes of one or all messages.
    List(Option<u32>),
    /// `UIDL [msg]`: unique ids of one or all messages.
    Uidl(Option<u32>),
    /// `RETR msg`: the whole message.
    Retr(u32),
    /// `TOP msg n`: the header and the first `lines` lines of the body.
    Top {
        /// Message number.
        message: u32,
        /// Body lines to send after the header.
        lines: u32,
    },
    /// `DELE msg`: mark a message for deletion.
    Dele(u32),
    /// `RSET`: unmark every message.
    Rset,
    /// `NOOP`: do nothing.
    Noop,
    /// `QUIT`: apply deletions (in the TRANSACTION state) and close.
    Quit,
}

/// The reason a command line was rejected. The session replies with
/// `-ERR` and keeps reading.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum CommandError {
    /// The line exceeded the maximum line length.
    #[error("line too long")]
    LineTooLong,
    /// The keyword is not a POP3 command this server implements.
    #[error("unknown command")]
    UnknownCommand,
    /// A required argument is missing.
    #[error("missing argument")]
    MissingArgument,
    /// More arguments than the command takes.
    #[error("too many arguments")]
    TooManyArguments,
    /// A message number or line count is not a decimal number in range.
    #[error("invalid number")]
    InvalidNumber,
    /// The user name is not valid UTF-8.
    #[error("invalid user name")]
    InvalidUserName,
}

/// Splits received bytes into command lines of bounded length.
#[derive(Debug)]
pub struct Decoder {
    max_line: usize,
    /// Bytes at the start of the buffer already searched for a line feed.
    scanned: usize,
    /// True while the rest of an overlong line is being dropped.
    skipping: bool,
}

impl Decoder {
    /// Creates a decoder that accepts lines of at most `max_line` bytes,
    /// line ending included.
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            scanned: 0,
            skipping: false,
        }
    }

    /// Takes the next command line out of `input` and parses it. Returns
    /// `Ok(None)` when `input` contains no complete line yet, and the caller reads
    /// more bytes into `input` and calls again.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<Command>, CommandError> {
        let unscanned = input.get(self.scanned..).unwrap_or_default();
        let Some(offset) = unscanned.iter().position(|&byte| byte == b'\n') else {
            if self.skipping || input.len() >= self.max_line {
                // Drop what arrived so far and keep dropping until the line ends.
                input.clear();
                self.skipping = true;
                self.scanned = 0;
            } else {
                self.scanned = input.len();
            }
            return Ok(None);
        };
        let line_len = self.scanned + offset + 1;
        self.scanned = 0;
        if std::mem::take(&mut self.skipping) || line_len > self.max_line {
            input.advance(line_len);
            return Err(CommandError::LineTooLong);
        }
        let line = input.split_to(line_len);
        parse(strip_line_ending(&line)).map(Some)
    }
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses one command line without its line ending. Keywords are case
/// insensitive; arguments are separated by one or more spaces.
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let (keyword, rest) = match line.iter().position(|&byte| byte == b' ') {
        Some(space) => {
            let (keyword, rest) = line.split_at(space);
            (keyword, rest.get(1..).unwrap_or_default())
        }
        None => (line, &[][..]),
    };
    let mut arguments = rest.split(|&byte| byte == b' ').filter(|a| !a.is_empty());
    let keyword = keyword.to_ascii_uppercase();
    let command = match keyword.as_slice() {
        b"CAPA" => Command::Capa,
        b"USER" => {
            let name = required(arguments.next())?;
            let name = std::str::from_utf8(name).map_err(|_| CommandError::InvalidUserName)?;
            Command::User(name.to_owned())
        }
        // RFC 1939 section 7 allows spaces inside the password, so the
        // whole rest of the line is the argument.
        b"PASS" => {
            if rest.is_empty() {
                return Err(CommandError::MissingArgument);
            }
            return Ok(Command::Pass(Secret::new(rest.to_vec())));
        }
        b"STAT" => Command::Stat,
        b"LIST" => Command::List(optional_number(arguments.next())?),
        b"UIDL" => Command::Uidl(optional_number(arguments.next())?),
        b"RETR" => Command::Retr(message_number(required(arguments.next())?)?),
        b"TOP" => {
            let message = message_number(required(arguments.next())?)?;
            let lines = number(required(arguments.next())?)?;
            Command::Top { message, lines }
        }
        b"DELE" => Command::Dele(message_number(required(arguments.next())?)?),
        b"RSET" => Command::Rset,
        b"NOOP" => Command::Noop,
        b"QUIT" => Command::Quit,
        _ => return Err(CommandError::UnknownCommand),
    };
    if arguments.next().is_some() {
        return Err(CommandError::TooManyArguments);
    }
    Ok(command)
}

fn required(argument: Option<&[u8]>) -> Result<&[u8], CommandError> {
    argument.ok_or(CommandError::MissingArgument)
}

fn optional_number(argument: Option<&[u8]>) -> Result<Option<u32>, CommandError> {
    argument.map(message_number).transpose()
}

/// Parses a message number: a decimal number of at least 1 (RFC 1939 section 3).
fn message_number(argument: &[u8]) -> Result<u32, CommandError> {
    match number(argument)? {
        0 => Err(CommandError::InvalidNumber),
        n => Ok(n),
    }
}

fn number(argument: &[u8]) -> Result<u32, CommandError> {
    if argument.is_empty() || !argument.iter().all(u8::is_ascii_digit) {
        return Err(CommandError::InvalidNumber);
    }
    std::str::from_utf8(argument)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or(CommandError::InvalidNumber)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        decoder: &mut Decoder,
        input: &mut BytesMut,
    ) -> Vec<Result<Command, CommandError>> {
        let mut decoded = Vec::new();
        loop {
            match decoder.decode(input) {
                Ok(None) => return decoded,
                Ok(Some(command)) => decoded.push(Ok(command)),
                Err(error) => decoded.push(Err(error)),
            }
        }
    }

    #[test]
    fn parses_every_command() {
        let cases = [
            (&b"CAPA"[..], Command::Capa),
            (
                b"user alice@example.com",
                Command::User("alice@example.com".into()),
            ),
            (
                b"PASS two words",
                Command::Pass(Secret::new(b"two words".to_vec())),
            ),
            (b"STAT", Command::Stat),
            (b"LIST", Command::List(None)),
            (b"LIST 3", Command::List(Some(3))),
            (b"UIDL", Command::Uidl(None)),
            (b"uidl 12", Command::Uidl(Some(12))),
            (b"RETR 1", Command::Retr(1)),
            (
                b"TOP 2 0",
                Command::Top {
                    message: 2,
                    lines: 0,
                },
            ),
            (b"DELE 4", Command::Dele(4)),
            (b"RSET", Command::Rset),
            (b"NOOP", Command::Noop),
            (b"QUIT", Command::Quit),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line), Ok(expected), "{}", line.escape_ascii());
        }
    }

    #[test]
    fn rejects_malformed_arguments() {
        let cases = [
            (&b"RETR"[..], CommandError::MissingArgument),
            (b"RETR 0", CommandError::InvalidNumber),
            (b"RETR -1", CommandError::InvalidNumber),
            (b"RETR 99999999999", CommandError::InvalidNumber),
            (b"LIST 1 2", CommandError::TooManyArguments),
            (b"TOP 1", CommandError::MissingArgument),
            (b"PASS", CommandError::MissingArgument),
            (b"USER \xff", CommandError::InvalidUserName),
            (b"APOP user digest", CommandError::UnknownCommand),
            (b"", CommandError::UnknownCommand),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line), Err(expected), "{}", line.escape_ascii());
        }
    }

    #[test]
    fn decoder_waits_for_complete_line() {
        let mut decoder = Decoder::new(100);
        let mut input = BytesMut::from(&b"STA"[..]);
        assert_eq!(decoder.decode(&mut input), Ok(None));
        input.extend_from_slice(b"T\r\nNOOP\nLI");
        assert_eq!(decoder.decode(&mut input), Ok(Some(Command::Stat)));
        assert_eq!(decoder.decode(&mut input), Ok(Some(Command::Noop)));
        assert_eq!(decoder.decode(&mut input), Ok(None));
        assert_eq!(&input[..], b"LI");
    }

    #[test]
    fn decoder_output_is_independent_of_chunking() {
        let stream = b"USER a\r\nPASS b c\r\nLIST\r\nBOGUS\r\nTOP 1 2\nQUIT\r\n";
        let mut whole = BytesMut::from(&stream[..]);
        let expected = decode_all(&mut Decoder::new(64), &mut whole);
        assert_eq!(expected.len(), 6);
        for chunk in 1..stream.len() {
            let mut decoder = Decoder::new(64);
            let mut input = BytesMut::new();
            let mut decoded = Vec::new();
            for piece in stream.chunks(chunk) {
                input.extend_from_slice(piece);
                decoded.extend(decode_all(&mut decoder, &mut input));
            }
            assert_eq!(decoded, expected, "chunk size {chunk}");
        }
    }

    #[test]
    fn overlong_line_is_dropped_as_it_arrives() {
        let mut decoder = Decoder::new(16);
        let mut input = BytesMut::new();
        for _ in 0..1000 {
            input.extend_from_slice(&[b'x'; 10]);
            assert_eq!(decoder.decode(&mut input), Ok(None));
            assert!(input.len() <= 16, "buffered {} bytes", input.len());
        }
        input.extend_from_slice(b"x\r\nNOOP\r\n");
        assert_eq!(decoder.decode(&mut input), Err(CommandError::LineTooLong));
        assert_eq!(decoder.decode(&mut input), Ok(Some(Command::Noop)));
    }

    #[test]
    fn line_at_limit_is_accepted() {
        let mut decoder = Decoder::new(6);
        let mut input = BytesMut::from(&b"STAT\r\nNOOP\r\n\r\n"[..]);
        assert_eq!(decoder.decode(&mut input), Ok(Some(Command::Stat)));
        assert_eq!(decoder.decode(&mut input), Ok(Some(Command::Noop)));
        assert_eq!(
            decoder.decode(&mut input),
            Err(CommandError::UnknownCommand)
        );
        let mut long = BytesMut::from(&b"STAT \r\n"[..]);
        assert_eq!(decoder.decode(&mut long), Err(CommandError::LineTooLong));
    }
}
