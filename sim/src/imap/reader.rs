//! Command framing: lines and literals in, decoded commands out.
//!
//! A command is one or more lines joined by literals. The reader reads one
//! bounded line at a time and decodes the buffer with `imap-codec`'s
//! [`CommandCodec`], which reports a complete command, a literal announcement (`{n}` or `{n+}`) at the
//! end of the buffer, or bytes that are not a command. Synchronizing
//! literals get a `+` continuation request before their data is read;
//! non-synchronizing ones (LITERAL+) are read at once. Literals over the
//! limit are refused before any of their data is read, so a peer cannot
//! make the session buffer more than one line plus the literal limit.

use std::time::Duration;

use bytes::Buf;
use imap_codec::CommandCodec;
use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::core::{LiteralMode, Tag};
use imap_codec::imap_types::utils::escape_byte_string;
use tokio::io::{AsyncRead, AsyncWrite};

use super::output::{Disconnect, Output};
use super::response;
use crate::conn::{Line, ReadError};

/// Literals allowed in one command. Real commands use at most a handful
/// (LOGIN two, APPEND one); the cap bounds how often a command is decoded.
pub(super) const MAX_LITERALS: usize = 16;

/// A unit of client input, as the reader found it.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A complete, well-formed command.
    Command(Command<'static>),
    /// Bytes that are not a valid command; `tag` when the line began with one.
    Invalid {
        /// The tag, if the line started with a valid one.
        tag: Option<Tag<'static>>,
    },
    /// A line over the line limit, discarded up to its end.
    LineTooLong {
        /// The command's tag, known when an earlier line of it was read.
        tag: Option<Tag<'static>>,
    },
    /// A synchronizing literal over the limit. No continuation request was
    /// sent, so the client abandons the command and the session goes on.
    LiteralRefused {
        /// The command's tag.
        tag: Tag<'static>,
        /// The announced length.
        length: u32,
    },
    /// A non-synchronizing literal over the limit. Its data is already on
    /// the way, so the session replies and closes (RFC 7888 section 4).
    LiteralOverrun {
        /// The command's tag, if it had a valid one.
        tag: Option<Tag<'static>>,
        /// The announced length.
        length: u32,
    },
}

/// Bounds for reading one command.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadLimits {
    /// Maximum bytes of command text outside literals, line endings included.
    pub max_line: usize,
    /// Maximum bytes of literal data in one command.
    pub max_literal: usize,
    /// Autologout: how long to wait for more input.
    pub timeout: Duration,
    /// Whether incoming bytes may be written to the trace log; false before
    /// login, when they may carry a password.
    pub trace_input: bool,
}

/// Reads commands, keeping one reusable buffer for the command bytes.
#[derive(Debug, Default)]
pub(crate) struct CommandReader {
    buffer: Vec<u8>,
}

impl CommandReader {
    /// Reads the next command.
    pub(crate) async fn next<S>(
        &mut self,
        out: &mut Output<S>,
        limits: ReadLimits,
    ) -> Result<Frame, ReadError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.buffer.clear();
        let mut text_bytes = 0;
        let mut literal_bytes = 0;
        let mut literals = 0;
        loop {
            let line = match out
                .conn()
                .read_line(limits.max_line, limits.timeout)
                .await?
            {
                Line::Complete(line) => line,
                Line::TooLong { head } => {
                    // A continuation line belongs to the command's first line;
                    // otherwise the tag is at the start of this one.
                    let tag = if self.buffer.is_empty() {
                        leading_tag(&head)
                    } else {
                        leading_tag(&self.buffer)
                    };
                    return Ok(self.finish(Frame::LineTooLong { tag }));
                }
            };
            if limits.trace_input && tracing::enabled!(tracing::Level::TRACE) {
                if carries_credentials(&line) {
                    tracing::trace!("received LOGIN or AUTHENTICATE line <redacted>");
                } else {
                    tracing::trace!(bytes = %escape_byte_string(&line), "received line");
                }
            }
            text_bytes += line.len() + 2;
            if text_bytes > limits.max_line {
                let tag = leading_tag(&self.buffer);
                return Ok(self.finish(Frame::LineTooLong { tag }));
            }
            self.buffer.extend_from_slice(&line);
            self.buffer.extend_from_slice(b"\r\n");

            let (tag, length, mode) = match CommandCodec::new().decode(&self.buffer) {
                Ok((b"", command)) => {
                    let command = command.into_static();
                    return Ok(self.finish(Frame::Command(command)));
                }
                Err(CommandDecodeError::LiteralFound { tag, length, mode }) => {
                    (tag.into_static(), length, mode)
                }
                // A complete line that is not a command, or a command that
                // ends before the line does.
                Ok(_) | Err(CommandDecodeError::Incomplete | CommandDecodeError::Failed) => {
                    let tag = leading_tag(&self.buffer);
                    if let Some(length) = non_sync_announcement(&line) {
                        // The client sends the literal without waiting, so
                        // its data must not be read as the next command.
                        if !self.discard_command(out, length, limits).await? {
                            return Ok(self.finish(Frame::LiteralOverrun { tag, length }));
                        }
                    }
                    return Ok(self.finish(Frame::Invalid { tag }));
                }
            };

            literals += 1;
            let size = length as usize;
            if literals > MAX_LITERALS || literal_bytes + size > limits.max_literal {
                let frame = match mode {
                    LiteralMode::Sync => Frame::LiteralRefused { tag, length },
                    LiteralMode::NonSync => Frame::LiteralOverrun {
                        tag: Some(tag),
                        length,
                    },
                };
                return Ok(self.finish(frame));
            }
            if mode == LiteralMode::Sync {
                request_literal(out).await?;
            }
            self.read_literal(out, size, limits).await?;
            literal_bytes += size;
        }
    }

    /// Appends `size` bytes of literal data to the buffer.
    async fn read_literal<S>(
        &mut self,
        out: &mut Output<S>,
        size: usize,
        limits: ReadLimits,
    ) -> Result<(), ReadError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.buffer.reserve(size);
        let mut remaining = size;
        while remaining > 0 {
            let conn = out.conn();
            if conn.input().is_empty() {
                conn.fill(limits.timeout).await?;
            }
            let input = conn.input();
            let take = remaining.min(input.len());
            self.buffer.extend_from_slice(&input[..take]);
            input.advance(take);
            remaining -= take;
        }
        if limits.trace_input && tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(length = size, "received literal");
        }
        Ok(())
    }

    /// Skips the rest of a command that failed to decode: the announced
    /// non-synchronizing literal and any further lines and literals of it.
    /// Returns false when a literal is over the limit, so the connection
    /// has to close instead.
    async fn discard_command<S>(
        &mut self,
        out: &mut Output<S>,
        first_length: u32,
        limits: ReadLimits,
    ) -> Result<bool, ReadError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut length = first_length;
        for _ in 0..MAX_LITERALS {
            if length as usize > limits.max_literal {
                return Ok(false);
            }
            skip_bytes(out, length as usize, limits.timeout).await?;
            match out
                .conn()
                .read_line(limits.max_line, limits.timeout)
                .await?
            {
                Line::Complete(line) => match non_sync_announcement(&line) {
                    Some(next) => length = next,
                    None => return Ok(true),
                },
                Line::TooLong { .. } => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Releases the buffer if a large literal grew it, then returns `frame`.
    fn finish(&mut self, frame: Frame) -> Frame {
        self.buffer.clear();
        if self.buffer.capacity() > RETAINED_CAPACITY {
            self.buffer = Vec::new();
        }
        frame
    }
}

/// Buffer capacity kept between commands. Larger buffers (from an APPEND)
/// are freed, so an idle session keeps little memory.
const RETAINED_CAPACITY: usize = 64 * 1024;

async fn request_literal<S>(out: &mut Output<S>) -> Result<(), ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let result = async {
        out.send(&response::continuation("Ready for literal data"))
            .await?;
        out.flush().await
    }
    .await;
    result.map_err(|error| match error {
        Disconnect::Io(error) => ReadError::Io(error),
        _ => ReadError::Closed,
    })
}

/// Reads and drops `size` bytes without keeping more than one read chunk.
async fn skip_bytes<S>(out: &mut Output<S>, size: usize, timeout: Duration) -> Result<(), ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut remaining = size;
    while remaining > 0 {
        let conn = out.conn();
        if conn.input().is_empty() {
            conn.fill(timeout).await?;
        }
        let input = conn.input();
        let take = remaining.min(input.len());
        input.advance(take);
        remaining -= take;
    }
    Ok(())
}

/// Extracts the tag at the start of `bytes`, if it is a valid one.
pub(crate) fn leading_tag(bytes: &[u8]) -> Option<Tag<'static>> {
    let end = bytes
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    let candidate = bytes.get(..end)?;
    Tag::try_from(candidate).ok().map(IntoStatic::into_static)
}

/// Parses the length of a non-synchronizing literal (`{n+}`) announced
/// at the end of `line`, if there is one.
fn non_sync_announcement(line: &[u8]) -> Option<u32> {
    let inner = line.strip_suffix(b"+}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = inner.get(open + 1..)?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // A length past u32 cannot be skipped, so it reads as the largest one,
    // which every limit refuses and the session ends.
    let length = std::str::from_utf8(digits).ok()?.parse::<u64>().ok();
    Some(length.map_or(u32::MAX, |length| u32::try_from(length).unwrap_or(u32::MAX)))
}

/// True when the command word after the tag is LOGIN or AUTHENTICATE,
/// whose arguments are credentials that must never reach a log.
fn carries_credentials(line: &[u8]) -> bool {
    let mut words = line.split(|&byte| byte == b' ');
    let _tag = words.next();
    words.next().is_some_and(|command| {
        command.eq_ignore_ascii_case(b"LOGIN") || command.eq_ignore_ascii_case(b"AUTHENTICATE")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_lines_are_recognised() {
        assert!(carries_credentials(b"a1 LOGIN bob secret"));
        assert!(carries_credentials(
            b"x authenticate PLAIN AGJvYgBzZWNyZXQ="
        ));
        assert!(!carries_credentials(b"a2 SELECT INBOX"));
        assert!(!carries_credentials(b"LOGIN"));
    }

    #[test]
    fn leading_tag_needs_valid_tag() {
        assert_eq!(
            leading_tag(b"a1 NOOP").map(|t| t.inner().to_owned()),
            Some("a1".into())
        );
        assert_eq!(leading_tag(b"a1"), leading_tag(b"a1\r\n"));
        assert!(leading_tag(b"* NOOP").is_none());
        assert!(leading_tag(b"").is_none());
    }

    #[test]
    fn non_sync_announcement_needs_digits() {
        assert_eq!(non_sync_announcement(b"a APPEND x {12+}"), Some(12));
        assert_eq!(non_sync_announcement(b"a APPEND x {12}"), None);
        assert_eq!(non_sync_announcement(b"a APPEND x {+}"), None);
        assert_eq!(non_sync_announcement(b"a {99999999999+}"), Some(u32::MAX));
        assert_eq!(
            non_sync_announcement(b"a {999999999999999999999999+}"),
            Some(u32::MAX)
        );
    }
}
