//! How the engine opens a connection to a mail server.
//!
//! The protocol clients work over any `AsyncRead + AsyncWrite` stream, so the
//! same engine talks to a real server over TCP ([`TcpConnector`]) or to an
//! in-process simulator over `tokio::io::duplex` pipes. Such a connector is
//! the caller's, and it may use the mailbox to route or to reject.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{MailboxId, Protocol, ServerProfile};

/// Purpose of a connection: the server and the mailbox to sync.
#[derive(Clone, Copy, Debug)]
pub struct ConnectTarget<'a> {
    /// The server profile: host, port and protocol.
    pub profile: &'a ServerProfile,
    /// The mailbox about to be synced.
    pub mailbox: &'a MailboxId,
}

impl ConnectTarget<'_> {
    /// The protocol the connection will speak.
    pub fn protocol(&self) -> Protocol {
        self.profile.protocol
    }
}

/// Opens streams to mail servers.
///
/// An error of kind [`io::ErrorKind::ConnectionRefused`] counts as a refused
/// connection (a server-profile error); any other error as a reset. The
/// engine bounds the call with its command timeout.
pub trait Connector: Send + Sync + 'static {
    /// The stream type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Opens a stream to `target.profile`.
    fn connect(
        &self,
        target: ConnectTarget<'_>,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Connects over TCP to the profile's host and port.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    type Stream = TcpStream;

    async fn connect(&self, target: ConnectTarget<'_>) -> io::Result<TcpStream> {
        let stream =
            TcpStream::connect((target.profile.host.as_str(), target.profile.port)).await?;
        // Commands are small and each waits for its response, so Nagle's
        // algorithm would only add delay.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

impl<T: Connector> Connector for std::sync::Arc<T> {
    type Stream = T::Stream;

    fn connect(
        &self,
        target: ConnectTarget<'_>,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        T::connect(self, target)
    }
}
