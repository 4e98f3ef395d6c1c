//! The only IMAP code that does I/O: it moves bytes between a stream and
//! `imap-next`'s sans-I/O client.
//!
//! `imap-next` ships its own driver, but only for `TcpStream`; this one takes
//! any `AsyncRead + AsyncWrite`, so the same client runs over TCP and over
//! in-memory pipes. Every read and write is bounded by the command timeout,
//! a `tokio::time` timer, so a paused clock drives it too.

use std::time::Duration;

use imap_next::client::{Client, Event, Options};
use imap_next::{Interrupt, Io, State};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::SessionError;

const READ_CHUNK: usize = 64 * 1024;

/// An `imap-next` client bound to a stream.
pub(crate) struct Driver<S> {
    stream: S,
    client: Client,
    buffer: Box<[u8]>,
    timeout: Duration,
}

impl<S> Driver<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps `stream`; responses larger than `max_response_size` bytes are
    /// protocol errors.
    pub(crate) fn new(stream: S, timeout: Duration, max_response_size: usize) -> Self {
        let mut options = Options::default();
        options.max_response_size = u32::try_from(max_response_size).unwrap_or(u32::MAX);
        // Some servers end lines with a bare LF; accepting it costs nothing.
        options.crlf_relaxed = true;
        Self {
            stream,
            client: Client::new(options),
            buffer: vec![0; READ_CHUNK].into_boxed_slice(),
            timeout,
        }
    }

    /// The sans-I/O client, to enqueue commands.
    pub(crate) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Runs the client until its next event, writing its output and feeding
    /// it input as it asks.
    pub(crate) async fn next_event(&mut self) -> Result<Event, SessionError> {
        loop {
            match self.client.next() {
                Ok(event) => return Ok(event),
                Err(Interrupt::Io(Io::Output(bytes))) => self.write(&bytes).await?,
                Err(Interrupt::Io(Io::NeedMoreInput)) => self.read().await?,
                Err(Interrupt::Error(error)) => {
                    return Err(SessionError::Protocol(format!(
                        "unusable response from the server: {error}"
                    )));
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(SessionError::TimedOut(self.timeout)),
            Ok(result) => result.map_err(SessionError::from),
        }
    }

    async fn read(&mut self) -> Result<(), SessionError> {
        let read = self.stream.read(&mut self.buffer);
        match tokio::time::timeout(self.timeout, read).await {
            Err(_) => Err(SessionError::TimedOut(self.timeout)),
            Ok(Err(error)) => Err(SessionError::from(error)),
            Ok(Ok(0)) => Err(SessionError::Closed),
            Ok(Ok(count)) => {
                let input = self.buffer.get(..count).unwrap_or_default();
                self.client.enqueue_input(input);
                Ok(())
            }
        }
    }

    /// Closes the write half; errors are irrelevant at that point.
    pub(crate) async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(self.timeout, self.stream.shutdown()).await;
    }
}
