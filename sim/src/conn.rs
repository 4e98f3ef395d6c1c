//! Buffered, bounded I/O shared by the IMAP, POP3 and SMTP sessions.
//!
//! A [`Connection`] wraps any `AsyncRead + AsyncWrite`, so the same session
//! code serves TCP sockets and `tokio::io::duplex` pipes. It bounds how much a
//! peer can make it buffer, and it applies the byte-count reset fault to
//! everything the server writes.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

/// Who is on the other end, for logs.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// Remote address; `None` for in-memory streams.
    pub addr: Option<SocketAddr>,
    /// Session id, unique within the service.
    pub session: u64,
}

/// One line read from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its line ending (CRLF, or a bare LF).
    Complete(BytesMut),
    /// A line longer than the limit; it was discarded up to its end except
    /// for its first bytes, which may carry a tag to answer with.
    TooLong {
        /// Up to [`TOO_LONG_HEAD`] bytes from the start of the line.
        head: BytesMut,
    },
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// Nothing arrived within the idle timeout.
    #[error("idle timeout")]
    TimedOut,
    /// The transport failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why writing stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The reset-after-bytes fault cut the connection.
    #[error("connection reset by injected fault after {0} bytes")]
    InjectedReset(u64),
    /// The transport failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

const READ_CHUNK: usize = 16 * 1024;

/// Bytes kept from the start of an overlong line.
pub const TOO_LONG_HEAD: usize = 64;
// Writes of a whole buffer or more bypass it, so a larger buffer would only
// cost memory per session.
const WRITE_BUFFER: usize = 16 * 1024;

/// A buffered connection with bounded reads and fault-aware writes.
pub struct Connection<S> {
    stream: BufWriter<S>,
    input: BytesMut,
    written: u64,
    write_timeout: Duration,
    /// Discarding the rest of an overlong line.
    skipping: bool,
    /// The start of the overlong line being discarded.
    skipped_head: BytesMut,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps `stream`. A write or flush that cannot finish within
    /// `write_timeout`, because the peer stopped reading, fails with
    /// `TimedOut`, so a stuck peer cannot hold a session forever.
    pub fn new(stream: S, write_timeout: Duration) -> Self {
        Self {
            stream: BufWriter::with_capacity(WRITE_BUFFER, stream),
            input: BytesMut::with_capacity(READ_CHUNK),
            written: 0,
            write_timeout,
            skipping: false,
            skipped_head: BytesMut::new(),
        }
    }

    /// Bytes received but not consumed yet.
    pub fn input(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    /// Total bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Reads more bytes into the input buffer, waiting at most `timeout`.
    pub async fn fill(&mut self, timeout: Duration) -> Result<usize, ReadError> {
        self.input.reserve(READ_CHUNK);
        let read = tokio::time::timeout(timeout, self.stream.get_mut().read_buf(&mut self.input));
        match read.await {
            Err(_) => Err(ReadError::TimedOut),
            Ok(Ok(0)) => Err(ReadError::Closed),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(error)) => Err(ReadError::Io(error)),
        }
    }

    /// Reads one line of at most `max_line` bytes (line ending included).
    pub async fn read_line(
        &mut self,
        max_line: usize,
        timeout: Duration,
    ) -> Result<Line, ReadError> {
        let mut scanned = 0;
        loop {
            if let Some(offset) = memchr_lf(&self.input[scanned..]) {
                let end = scanned + offset;
                let line_len = end + 1;
                if self.skipping {
                    self.input.advance(line_len);
                    self.skipping = false;
                    let head = std::mem::take(&mut self.skipped_head);
                    return Ok(Line::TooLong { head });
                }
                if line_len > max_line {
                    let head = BytesMut::from(&self.input[..line_len.min(TOO_LONG_HEAD)]);
                    self.input.advance(line_len);
                    return Ok(Line::TooLong { head });
                }
                let mut line = self.input.split_to(line_len);
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                return Ok(Line::Complete(line));
            }
            if self.skipping || self.input.len() > max_line {
                // Drop what is buffered so memory stays bounded, and keep
                // discarding until the line ends.
                if !self.skipping {
                    let keep = self.input.len().min(TOO_LONG_HEAD);
                    self.skipped_head = BytesMut::from(&self.input[..keep]);
                }
                self.input.clear();
                self.skipping = true;
                scanned = 0;
            } else {
                scanned = self.input.len();
            }
            self.fill(timeout).await?;
        }
    }

    /// Writes `bytes`, cutting the connection once `reset_after` total bytes
    /// have been written.
    pub async fn write(
        &mut self,
        bytes: &[u8],
        reset_after: Option<u64>,
    ) -> Result<(), WriteError> {
        if let Some(limit) = reset_after {
            let room = limit.saturating_sub(self.written);
            if (bytes.len() as u64) > room {
                let head = &bytes[..room as usize];
                self.write_all(head).await?;
                self.written += room;
                self.abort().await;
                return Err(WriteError::InjectedReset(limit));
            }
        }
        self.write_all(bytes).await?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match tokio::time::timeout(self.write_timeout, self.stream.write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(write_timed_out()),
        }
    }

    /// Writes buffered output to the peer.
    pub async fn flush(&mut self) -> io::Result<()> {
        match tokio::time::timeout(self.write_timeout, self.stream.flush()).await {
            Ok(result) => result,
            Err(_) => Err(write_timed_out()),
        }
    }

    /// Flushes what was written and shuts the stream down in the middle of
    /// the exchange.
    ///
    /// NOTE: on TCP this sends FIN, not RST: the generic stream offers no
    /// SO_LINGER, so a peer sees an unexpected end of stream rather than
    /// "connection reset by peer". Clients treat both as a broken session.
    pub async fn abort(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.get_mut().shutdown().await;
    }

    /// Flushes and closes the connection cleanly.
    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = tokio::time::timeout(self.write_timeout, self.stream.shutdown()).await;
    }
}

fn write_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "peer stopped reading; write timed out",
    )
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn reads_lines_in_any_chunking() {
        let input = b"first line\r\nsecond\nthird\r\n";
        for chunk in 1..input.len() {
            let (client, server) = tokio::io::duplex(64);
            let writer = tokio::spawn(async move {
                let mut client = client;
                for piece in input.chunks(chunk) {
                    client.write_all(piece).await.unwrap();
                }
                client
            });
            let mut conn = Connection::new(server, TIMEOUT);
            for expected in [&b"first line"[..], b"second", b"third"] {
                let line = conn.read_line(100, TIMEOUT).await.unwrap();
                assert_eq!(
                    line,
                    Line::Complete(BytesMut::from(expected)),
                    "chunk {chunk}"
                );
            }
            drop(writer.await.unwrap());
        }
    }

    #[tokio::test]
    async fn overlong_line_is_discarded() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut conn = Connection::new(server, TIMEOUT);
        let writer = tokio::spawn(async move {
            client.write_all(&vec![b'x'; 100_000]).await.unwrap();
            client.write_all(b"\r\nnext\r\n").await.unwrap();
            client
        });
        let Line::TooLong { head } = conn.read_line(1000, TIMEOUT).await.unwrap() else {
            panic!("expected an overlong line");
        };
        assert_eq!(head.len(), TOO_LONG_HEAD);
        assert!(conn.input().capacity() < 64 * 1024);
        assert_eq!(
            conn.read_line(1000, TIMEOUT).await.unwrap(),
            Line::Complete(BytesMut::from(&b"next"[..]))
        );
        drop(writer.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn stuck_reader_times_out_writes() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut conn = Connection::new(server, TIMEOUT);
        let error = conn.write(&vec![b'x'; 64 * 1024], None).await.unwrap_err();
        match error {
            WriteError::Io(error) => assert_eq!(error.kind(), io::ErrorKind::TimedOut),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn reset_fault_cuts_output() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut conn = Connection::new(server, TIMEOUT);
        conn.write(b"12345", Some(8)).await.unwrap();
        let error = conn.write(b"67890", Some(8)).await.unwrap_err();
        assert!(matches!(error, WriteError::InjectedReset(8)));
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"12345678");
    }
}
