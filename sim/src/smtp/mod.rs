//! SMTP ingress: the service's MTA, accepting mail for its accounts.
//!
//! Commands are parsed and sequenced by `mailin`'s state machine
//! (`mailin-embedded` runs its own thread per connection, which cannot serve
//! an in-memory stream on a paused clock). This module drives it from an
//! async loop over any `AsyncRead + AsyncWrite`:
//!
//! - [`reply`]: the replies this server composes, as typed values.
//! - [`data`]: the DATA phase, read incrementally with dot-unstuffing and a
//!   size limit.
//! - [`envelope`]: the mail transaction and the `mailin` handler. Accepted
//!   mail gets a `Received:` header and goes through [`Service::deliver`],
//!   so receive limits and forwarding rules apply.
//! - `session`: the loop, with bounded lines, the idle timeout and faults.
//!
//! SMTP needs no login here, so an account's policies apply where its
//! address first appears, at RCPT: its command latency delays the reply, a
//! stall on it stalls the reply, and a server-error or connection-refused
//! fault on it answers `451 4.3.0` so the sending relay retries later. Its
//! receive limit applies through delivery. Its command budget is not
//! charged: the budget models mailbox access, which SMTP ingress is not.
//! Service-wide faults (connection refused, stall, server error, reset
//! after N bytes) apply to every session.

pub mod data;
pub mod envelope;
pub mod reply;
mod session;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

pub use reply::Reply;

use crate::conn::Peer;
use crate::service::Service;

/// Serves one SMTP session on `stream` until the peer logs out or disconnects.
///
/// Returns an error only when the transport fails; a peer that disconnects,
/// a timeout and an injected reset all end with `Ok(())`.
pub async fn serve<S>(service: Service, stream: S, peer: Peer) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let span = tracing::info_span!(
        "session",
        protocol = "smtp",
        session = peer.session,
        peer = ?peer.addr,
    );
    session::run(service, stream, peer).instrument(span).await
}

/// Rejects a connection over the listener's connection limit with
/// `421 4.7.0 <hostname> Too many connections, try again later` and closes it.
///
/// Unlike the IMAP and POP3 versions this takes the host name, because
/// RFC 5321 section 4.2 puts the server's domain in a 421 reply.
pub async fn refuse_busy<S: AsyncWrite + Unpin>(mut stream: S, hostname: &str) {
    let mut bytes = Vec::new();
    Reply::TooManyConnections { hostname }.encode(&mut bytes);
    if let Err(error) = stream.write_all(&bytes).await {
        tracing::debug!(protocol = "smtp", %error, "writing the too-many-connections reply failed");
    }
    let _ = stream.shutdown().await;
}
