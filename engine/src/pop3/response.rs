//! POP3 response parsing: status lines and dot-terminated multi-line bodies.
//!
//! The parser is sans-I/O: the session feeds it whatever bytes arrived and
//! requests the next response, and "need more input" (`Ok(None)`) is a
//! normal result. Lines and bodies are bounded so a peer cannot make the engine
//! buffer without limit. Complete lines move out of the input buffer as
//! soon as they are read, so a long body arriving in small chunks is scanned
//! once.

use bytes::{Buf, Bytes, BytesMut};

/// A status line: `+OK ...` or `-ERR [CODE] ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// `+OK` and the rest of the line.
    Ok(String),
    /// `-ERR`, its RFC 2449 response code if any, and the text after it.
    Err {
        /// The code between brackets, uppercase, such as `IN-USE` or `SYS/TEMP`.
        code: Option<String>,
        /// The text after the code.
        text: String,
    },
}

/// Failure to read a response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// A line exceeded the limit.
    #[error("response line longer than {0} bytes")]
    LineTooLong(usize),
    /// A multi-line body exceeded the limit.
    #[error("multi-line response longer than {0} bytes")]
    BodyTooLarge(usize),
    /// A status line starts with neither `+OK` nor `-ERR`.
    #[error("status line starts with neither +OK nor -ERR: {0:?}")]
    NotAStatus(String),
}

/// Buffered input and the state of the multi-line body being read.
#[derive(Debug)]
pub(crate) struct Reader {
    input: BytesMut,
    /// Bytes of `input` already searched for a line end, or for a line
    /// starting with "." while reading a body.
    scanned: usize,
    max_line: usize,
    /// Offsets of stuffed dots in the body being read.
    stuffed: Vec<usize>,
}

impl Reader {
    /// Creates a reader that rejects status and listing lines longer than
    /// `max_line`.
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            input: BytesMut::with_capacity(16 * 1024),
            scanned: 0,
            max_line,
            stuffed: Vec::new(),
        }
    }

    /// Appends received bytes.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Reads a status line, or `None` until a whole line has arrived.
    pub(crate) fn status(&mut self) -> Result<Option<Status>, ParseError> {
        let Some(line) = self.line(self.max_line)? else {
            return Ok(None);
        };
        parse_status(&line).map(Some)
    }

    /// Reads the body of a multi-line response after its status line,
    /// undoing dot-stuffing; `None` until the terminating `.` line arrived.
    /// Line endings are kept as sent. A body without stuffed lines is split
    /// off the input without a copy. `max_body` bounds the body.
    pub(crate) fn body(&mut self, max_body: usize) -> Result<Option<Bytes>, ParseError> {
        loop {
            // Every line that starts with "." is either stuffed or the end.
            let Some(dot) = self.next_line_dot() else {
                if self.input.len() > max_body.saturating_add(3) {
                    return Err(self.body_too_large(max_body));
                }
                return Ok(None);
            };
            if dot > max_body {
                return Err(self.body_too_large(max_body));
            }
            let after = self.input.get(dot + 1..).unwrap_or_default();
            let terminator = match after {
                [] | [b'\r'] => {
                    // The rest of this line has not arrived yet.
                    self.scanned = dot;
                    return Ok(None);
                }
                [b'\r', b'\n', ..] => Some(3),
                [b'\n', ..] => Some(2),
                _ => None,
            };
            let Some(terminator) = terminator else {
                // RFC 1939 section 3: a line starting with "." was sent with
                // an extra "." in front.
                self.stuffed.push(dot);
                self.scanned = dot + 1;
                continue;
            };
            let body = self.take_body(dot);
            self.input.advance(terminator);
            return Ok(Some(body));
        }
    }

    /// Finds the next "." at the start of a line, from `scanned` on.
    fn next_line_dot(&mut self) -> Option<usize> {
        if self.scanned == 0 && self.input.first() == Some(&b'.') {
            return Some(0);
        }
        // A "\n" just before `scanned` may start the line of the next dot.
        let from = self.scanned.saturating_sub(1);
        let haystack = self.input.get(from..).unwrap_or_default();
        match memchr::memmem::find(haystack, b"\n.") {
            Some(offset) => Some(from + offset + 1),
            None => {
                self.scanned = self.input.len();
                None
            }
        }
    }

    /// Splits off the body ending at `end`, removing stuffed dots.
    fn take_body(&mut self, end: usize) -> Bytes {
        self.scanned = 0;
        let raw = self.input.split_to(end);
        if self.stuffed.is_empty() {
            return raw.freeze();
        }
        let mut body = BytesMut::with_capacity(raw.len());
        let mut start = 0;
        for &dot in &self.stuffed {
            body.extend_from_slice(raw.get(start..dot).unwrap_or_default());
            start = dot + 1;
        }
        body.extend_from_slice(raw.get(start..).unwrap_or_default());
        self.stuffed.clear();
        body.freeze()
    }

    fn body_too_large(&mut self, max_body: usize) -> ParseError {
        self.scanned = 0;
        self.stuffed.clear();
        ParseError::BodyTooLarge(max_body)
    }

    /// Splits off the next complete line (LF-terminated, CR optional).
    fn line(&mut self, max_line: usize) -> Result<Option<Bytes>, ParseError> {
        let unscanned = self.input.get(self.scanned..).unwrap_or_default();
        match memchr::memchr(b'\n', unscanned) {
            Some(offset) => {
                let end = self.scanned + offset + 1;
                self.scanned = 0;
                if end > max_line.saturating_add(2) {
                    self.input.advance(end);
                    return Err(ParseError::LineTooLong(max_line));
                }
                Ok(Some(self.input.split_to(end).freeze()))
            }
            None => {
                self.scanned = self.input.len();
                if self.scanned > max_line.saturating_add(2) {
                    return Err(ParseError::LineTooLong(max_line));
                }
                Ok(None)
            }
        }
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_status(line: &[u8]) -> Result<Status, ParseError> {
    let line = String::from_utf8_lossy(trim_line_end(line));
    if let Some(rest) = strip_keyword(&line, "+OK") {
        return Ok(Status::Ok(rest.to_owned()));
    }
    let Some(rest) = strip_keyword(&line, "-ERR") else {
        let start: String = line.chars().take(80).collect();
        return Err(ParseError::NotAStatus(start));
    };
    if let Some(after_bracket) = rest.strip_prefix('[')
        && let Some(close) = after_bracket.find(']')
    {
        let code = after_bracket.get(..close).unwrap_or_default();
        let text = after_bracket
            .get(close + 1..)
            .unwrap_or_default()
            .trim_start();
        return Ok(Status::Err {
            code: Some(code.to_ascii_uppercase()),
            text: text.to_owned(),
        });
    }
    Ok(Status::Err {
        code: None,
        text: rest.to_owned(),
    })
}

/// `line` without `keyword` (case-insensitive) and the space after it.
fn strip_keyword<'a>(line: &'a str, keyword: &str) -> Option<&'a str> {
    let head = line.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = line.get(keyword.len()..)?;
    if rest.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes and collects what `read`
    /// returns once it returns something.
    fn read_chunked<T>(
        input: &[u8],
        chunk: usize,
        mut read: impl FnMut(&mut Reader) -> Result<Option<T>, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut reader = Reader::new(512);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            reader.feed(piece);
            while let Some(value) = read(&mut reader)? {
                out.push(value);
            }
        }
        Ok(out)
    }

    #[test]
    fn status_lines_in_every_chunk_size() -> Result<(), ParseError> {
        let input = b"+OK POP3 ready\r\n-ERR [IN-USE] maildrop locked\r\n-ERR no such message\r\n";
        for chunk in 1..=input.len() {
            let statuses = read_chunked(input, chunk, Reader::status)?;
            assert_eq!(statuses.len(), 3, "chunk {chunk}");
            assert_eq!(statuses[0], Status::Ok("POP3 ready".into()));
            assert_eq!(
                statuses[1],
                Status::Err {
                    code: Some("IN-USE".into()),
                    text: "maildrop locked".into()
                }
            );
            assert_eq!(
                statuses[2],
                Status::Err {
                    code: None,
                    text: "no such message".into()
                }
            );
        }
        Ok(())
    }

    #[test]
    fn body_unstuffs_dots_in_every_chunk_size() -> Result<(), ParseError> {
        let input = b"Subject: x\r\n\r\n..leading dot\r\n.\r\n";
        for chunk in 1..=input.len() {
            let bodies = read_chunked(input, chunk, |reader| reader.body(1024))?;
            assert_eq!(bodies.len(), 1, "chunk {chunk}");
            assert_eq!(&bodies[0][..], b"Subject: x\r\n\r\n.leading dot\r\n");
        }
        Ok(())
    }

    #[test]
    fn status_then_body_share_one_buffer() -> Result<(), ParseError> {
        let mut reader = Reader::new(512);
        reader.feed(b"+OK 2 messages\r\n1 a1\r\n2 b2\r\n.\r\n+OK bye\r\n");
        assert_eq!(reader.status()?, Some(Status::Ok("2 messages".into())));
        let body = reader.body(1024)?.expect("complete body");
        assert_eq!(&body[..], b"1 a1\r\n2 b2\r\n");
        assert_eq!(reader.status()?, Some(Status::Ok("bye".into())));
        Ok(())
    }

    #[test]
    fn bare_lf_line_endings_accepted() -> Result<(), ParseError> {
        let mut reader = Reader::new(512);
        reader.feed(b"+OK\nline\n.\n");
        assert_eq!(reader.status()?, Some(Status::Ok(String::new())));
        assert_eq!(&reader.body(64)?.expect("body")[..], b"line\n");
        Ok(())
    }

    #[test]
    fn overlong_status_line_rejected() {
        let mut reader = Reader::new(16);
        reader.feed(&[b'a'; 40]);
        assert_eq!(reader.status(), Err(ParseError::LineTooLong(16)));
    }

    #[test]
    fn oversized_body_rejected() {
        let mut reader = Reader::new(512);
        reader.feed(b"0123456789\r\n0123456789\r\n.\r\n");
        assert_eq!(reader.body(16), Err(ParseError::BodyTooLarge(16)));
    }

    #[test]
    fn garbage_status_rejected() {
        let mut reader = Reader::new(512);
        reader.feed(b"* OK IMAP ready\r\n");
        assert!(matches!(reader.status(), Err(ParseError::NotAStatus(_))));
    }

    proptest::proptest! {
        #[test]
        fn dot_stuffed_body_round_trips(
            lines in proptest::collection::vec("[.a-z ]{0,20}", 0..20),
            chunk in 1usize..64,
        ) {
            let mut wire = b"+OK\r\n".to_vec();
            let mut expected = Vec::new();
            for line in &lines {
                if line.starts_with('.') {
                    wire.push(b'.');
                }
                wire.extend_from_slice(line.as_bytes());
                wire.extend_from_slice(b"\r\n");
                expected.extend_from_slice(line.as_bytes());
                expected.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b".\r\n");

            let mut reader = Reader::new(512);
            let mut status = None;
            let mut body = None;
            for piece in wire.chunks(chunk) {
                reader.feed(piece);
                if status.is_none() {
                    status = reader.status().expect("valid status");
                }
                if status.is_some() && body.is_none() {
                    body = reader.body(1 << 16).expect("valid body");
                }
            }
            proptest::prop_assert_eq!(status, Some(Status::Ok(String::new())));
            proptest::prop_assert_eq!(body.as_deref(), Some(&expected[..]));
        }
    }
}
