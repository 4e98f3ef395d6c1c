//! POP3 server sessions (RFC 1939, CAPA from RFC 2449, response codes from RFC 3206).
//!
//! No maintained POP3 server crate exists, so the protocol is written here,
//! split the way protocol crates usually are:
//!
//! - [`command`]: bytes to typed [`Command`]s, with bounded line length;
//!   "no complete line yet" is an ordinary result.
//! - [`response`]: typed [`Response`]s that encode to bytes, so session code
//!   never writes reply text and cannot send a non-POP3 line.
//! - [`maildrop`]: the INBOX snapshot a session works on, with deletion marks.
//! - `session`: the AUTHORIZATION / TRANSACTION / UPDATE state machine, the
//!   only part that does I/O; it applies the account's policy and faults.
//!
//! Sessions reply to the account's policy the way production servers do:
//! bad credentials get `-ERR [AUTH]`, the connection limit and the maildrop
//! lock `-ERR [IN-USE]`, a spent command budget and server errors
//! `-ERR [SYS/TEMP]`.

pub mod command;
pub mod maildrop;
pub mod response;
mod session;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

pub use command::{Command, CommandError};
pub use response::{ErrorResponse, Response};

use crate::conn::Peer;
use crate::service::Service;

/// Serves one POP3 session on `stream` until the peer logs out or disconnects.
///
/// Returns an error only when the transport fails; a peer that disconnects,
/// an autologout and an injected reset all end with `Ok(())`.
pub async fn serve<S>(service: Service, stream: S, peer: Peer) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let span = tracing::info_span!(
        "session",
        protocol = "pop3",
        session = peer.session,
        peer = ?peer.addr,
        mailbox = tracing::field::Empty,
    );
    session::run(service, stream).instrument(span).await
}

/// Rejects a connection over the listener's connection limit with
/// `-ERR [IN-USE] Too many connections` and closes it.
pub async fn refuse_busy<S: AsyncWrite + Unpin>(mut stream: S) {
    let mut bytes = bytes::BytesMut::new();
    Response::Error(ErrorResponse::TooManyConnections).encode(&mut bytes);
    if let Err(error) = stream.write_all(&bytes).await {
        tracing::debug!(protocol = "pop3", %error, "writing the too-many-connections response failed");
    }
    let _ = stream.shutdown().await;
}
