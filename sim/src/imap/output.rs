//! The session's connection: encodes typed replies and applies write faults.
//!
//! Every reply goes through `imap-codec`'s encoders and then through
//! [`Connection::write`], which buffers it and applies the reset-after-bytes
//! fault. Output is flushed once per command, not once per message, so a
//! large FETCH leaves the session in a few large writes.

use std::io;

use imap_codec::encode::{Encoder, Fragment};
use imap_codec::imap_types::response::{Greeting, Response};
use imap_codec::imap_types::utils::escape_byte_string;
use imap_codec::{GreetingCodec, ResponseCodec};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{Connection, ReadError, WriteError};

/// Reason a session ended before the peer logged out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Disconnect {
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// An injected fault cut the connection.
    #[error("connection reset by injected fault")]
    InjectedReset,
    /// The session sent BYE and closes the connection.
    #[error("session closed by server")]
    Bye,
    /// The transport failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<WriteError> for Disconnect {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::InjectedReset(_) => Self::InjectedReset,
            WriteError::Io(error) => Self::Io(error),
        }
    }
}

impl From<ReadError> for Disconnect {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Closed | ReadError::TimedOut => Self::Closed,
            ReadError::Io(error) => Self::Io(error),
        }
    }
}

/// A connection that writes typed IMAP replies.
pub(crate) struct Output<S> {
    conn: Connection<S>,
    /// Cut the connection once this many bytes have been written in total.
    reset_after: Option<u64>,
}

impl<S> Output<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps `stream`.
    pub(crate) fn new(stream: S, write_timeout: std::time::Duration) -> Self {
        Self {
            conn: Connection::new(stream, write_timeout),
            reset_after: None,
        }
    }

    /// Returns the underlying connection, for reading.
    pub(crate) fn conn(&mut self) -> &mut Connection<S> {
        &mut self.conn
    }

    /// Sets the reset-after-bytes fault for the following writes.
    pub(crate) fn set_reset_after(&mut self, reset_after: Option<u64>) {
        self.reset_after = reset_after;
    }

    /// Encodes and buffers the greeting.
    pub(crate) async fn greeting(&mut self, greeting: &Greeting<'_>) -> Result<(), Disconnect> {
        let bytes = GreetingCodec::new().encode(greeting).dump();
        self.write(&bytes).await
    }

    /// Encodes and buffers one response.
    pub(crate) async fn send(&mut self, response: &Response<'_>) -> Result<(), Disconnect> {
        for fragment in ResponseCodec::new().encode(response) {
            let (Fragment::Line { data } | Fragment::Literal { data, .. }) = fragment;
            self.write(&data).await?;
        }
        Ok(())
    }

    /// Encodes and buffers a FETCH response. With `cut_literal`, the
    /// mid-FETCH reset fault is in effect: about half of the first literal
    /// is written, then the connection is aborted.
    pub(crate) async fn send_fetch(
        &mut self,
        response: &Response<'_>,
        cut_literal: bool,
    ) -> Result<(), Disconnect> {
        for fragment in ResponseCodec::new().encode(response) {
            match fragment {
                Fragment::Line { data } => self.write(&data).await?,
                Fragment::Literal { data, .. } if cut_literal => {
                    let half = data.get(..data.len() / 2).unwrap_or_default();
                    self.write(half).await?;
                    tracing::warn!(
                        written = half.len(),
                        literal = data.len(),
                        "connection reset by injected fault in the middle of a FETCH literal"
                    );
                    self.conn.abort().await;
                    return Err(Disconnect::InjectedReset);
                }
                Fragment::Literal { data, .. } => self.write(&data).await?,
            }
        }
        Ok(())
    }

    /// Writes buffered replies to the peer.
    pub(crate) async fn flush(&mut self) -> Result<(), Disconnect> {
        self.conn.flush().await.map_err(Disconnect::Io)
    }

    /// Flushes and closes the connection.
    pub(crate) async fn close(&mut self) {
        self.conn.close().await;
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Disconnect> {
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(bytes = %escape_byte_string(bytes), "sent");
        }
        self.conn.write(bytes, self.reset_after).await?;
        Ok(())
    }
}
