//! The DATA phase: message content up to `<CRLF>.<CRLF>`, with dot-unstuffing.
//!
//! The reader is sans-I/O and works on whatever bytes have arrived, so lines
//! of any length pass through without being buffered whole, and content
//! beyond the size limit is dropped as it arrives instead of stored.
//! A line starts only after CRLF (RFC 5321 section 4.1.1.4), so a bare LF
//! followed by `.` neither ends the message nor loses its dot. This rules
//! out SMTP smuggling through mixed line endings.

use bytes::{Buf, BytesMut};

/// The reader's position within the current line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// At the start of a line.
    LineStart,
    /// Inside a line.
    InLine,
    /// Just after a CR inside a line.
    AfterCr,
    /// After a `.` at the start of a line.
    AfterDot,
    /// After `.` and CR at the start of a line.
    AfterDotCr,
}

/// Whether the end of the content has been seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The terminating line has not arrived yet.
    NeedMore,
    /// The terminating line was consumed; later bytes are the next command.
    Complete,
}

/// Decodes DATA content, keeping at most `max_size` octets of it.
#[derive(Debug)]
pub struct DataReader {
    position: Position,
    max_size: usize,
    size: usize,
}

impl DataReader {
    /// Creates a reader at the start of the content, which is the start of a line.
    pub fn new(max_size: usize) -> Self {
        Self {
            position: Position::LineStart,
            max_size,
            size: 0,
        }
    }

    /// Returns true once the content exceeded the maximum size. `content`
    /// was emptied then and receives nothing more.
    pub fn oversized(&self) -> bool {
        self.size > self.max_size
    }

    /// Returns the octets of content read so far, stored or not.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Consumes bytes from `input`, appending unstuffed content to `content`,
    /// up to and including the terminating `.` line.
    pub fn read(&mut self, input: &mut BytesMut, content: &mut Vec<u8>) -> Progress {
        let mut consumed = 0;
        let mut progress = Progress::NeedMore;
        while let Some(rest) = input.get(consumed..).filter(|rest| !rest.is_empty()) {
            if self.position == Position::InLine {
                // Fast path: copy up to the next CR in one go.
                let run = rest
                    .iter()
                    .position(|&byte| byte == b'\r')
                    .unwrap_or(rest.len());
                if run > 0 {
                    self.emit(rest.get(..run).unwrap_or_default(), content);
                    consumed += run;
                    continue;
                }
            }
            let byte = rest.first().copied().unwrap_or_default();
            consumed += 1;
            match (self.position, byte) {
                (Position::LineStart, b'.') => self.position = Position::AfterDot,
                (Position::AfterDot, b'\r') => self.position = Position::AfterDotCr,
                (Position::AfterDotCr, b'\n') => {
                    progress = Progress::Complete;
                    break;
                }
                (Position::AfterDotCr, _) => {
                    // ".\r" then something else: the dot was stuffing and
                    // the CR is content.
                    self.position = Position::AfterCr;
                    self.emit(b"\r", content);
                    self.content_byte(byte, content);
                }
                // A dot followed by anything else was added by the client
                // (RFC 5321 section 4.5.2) and is dropped.
                _ => self.content_byte(byte, content),
            }
        }
        input.advance(consumed);
        progress
    }

    fn content_byte(&mut self, byte: u8, content: &mut Vec<u8>) {
        self.position = match (self.position, byte) {
            (_, b'\r') => Position::AfterCr,
            (Position::AfterCr, b'\n') => Position::LineStart,
            _ => Position::InLine,
        };
        self.emit(&[byte], content);
    }

    fn emit(&mut self, bytes: &[u8], content: &mut Vec<u8>) {
        let was_oversized = self.oversized();
        self.size = self.size.saturating_add(bytes.len());
        if self.oversized() {
            if !was_oversized {
                // Give the memory back at once; the message is rejected.
                *content = Vec::new();
            }
            return;
        }
        content.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `chunk` bytes until the content ends.
    /// Returns the content, whether it was oversized, and the bytes after
    /// the terminating line.
    fn read_all(stream: &[u8], chunk: usize, max: usize) -> (Vec<u8>, bool, Vec<u8>) {
        let mut reader = DataReader::new(max);
        let mut input = BytesMut::new();
        let mut content = Vec::new();
        let mut fed = 0;
        for piece in stream.chunks(chunk) {
            input.extend_from_slice(piece);
            fed += piece.len();
            if reader.read(&mut input, &mut content) == Progress::Complete {
                let mut rest = input.to_vec();
                rest.extend_from_slice(&stream[fed..]);
                return (content, reader.oversized(), rest);
            }
        }
        panic!("no terminating line in {}", stream.escape_ascii());
    }

    #[test]
    fn unstuffs_dots_at_line_start() {
        let stream = b"Subject: x\r\n\r\n..leading\r\n.\tx\r\nmid.dot\r\n.\r\nQUIT\r\n";
        let (content, oversized, rest) = read_all(stream, stream.len(), 1000);
        assert_eq!(content, b"Subject: x\r\n\r\n.leading\r\n\tx\r\nmid.dot\r\n");
        assert!(!oversized);
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn same_content_in_any_chunking() {
        let stream = b"A: b\r\n\r\n.\rx\r\n..\r\nline\n.\r\nstill\r\r\n.\r\n";
        let (expected, _, _) = read_all(stream, stream.len(), 1000);
        assert_eq!(expected, b"A: b\r\n\r\n\rx\r\n.\r\nline\n.\r\nstill\r\r\n");
        for chunk in 1..stream.len() {
            let (content, _, rest) = read_all(stream, chunk, 1000);
            assert_eq!(content, expected, "chunk size {chunk}");
            assert!(rest.is_empty(), "chunk size {chunk}");
        }
    }

    #[test]
    fn bare_lf_dot_does_not_end_message() {
        let stream = b"a\n.\r\nb\r\n.\r\n";
        let (content, _, rest) = read_all(stream, 1, 1000);
        assert_eq!(content, b"a\n.\r\nb\r\n");
        assert!(rest.is_empty());
    }

    #[test]
    fn empty_message_ends_at_first_line() {
        let (content, oversized, _) = read_all(b".\r\n", 1, 1000);
        assert!(content.is_empty());
        assert!(!oversized);
    }

    #[test]
    fn oversized_content_is_dropped() {
        let mut stream = vec![b'x'; 5000];
        stream.extend_from_slice(b"\r\n.\r\n");
        let mut reader = DataReader::new(1000);
        let mut input = BytesMut::new();
        let mut content = Vec::new();
        for piece in stream.chunks(100) {
            input.extend_from_slice(piece);
            reader.read(&mut input, &mut content);
            assert!(content.len() <= 1000);
        }
        assert!(reader.oversized());
        assert!(content.is_empty());
        assert_eq!(reader.size(), 5002);
    }

    #[test]
    fn content_at_limit_is_kept() {
        let (content, oversized, _) = read_all(b"abc\r\n.\r\n", 3, 5);
        assert_eq!(content, b"abc\r\n");
        assert!(!oversized);
    }
}
