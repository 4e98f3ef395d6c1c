//! IMAP4rev1 server sessions (RFC 3501) with UIDPLUS (RFC 4315), IDLE
//! (RFC 2177) and LITERAL+ (RFC 7888).
//!
//! Commands are decoded and replies encoded by `imap-codec`, so this
//! module contains no IMAP grammar of its own. Parsing and encoding sit apart from the
//! handlers, which work on typed commands and return typed replies.
//!
//! # Layout
//!
//! - `reader`: command framing, literals and input limits.
//! - `output`: reply encoding and the write-side faults.
//! - `response`: typed status replies, response codes, capabilities.
//! - `session`: connection states, the command loop, policies and faults.
//! - `selection`: a session's numbering of its selected mailbox.
//! - `auth`: LOGIN and AUTHENTICATE PLAIN.
//! - `mailboxes`: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST,
//!   LSUB and STATUS.
//! - `select`: SELECT, EXAMINE, CHECK, CLOSE, UNSELECT and EXPUNGE.
//! - `fetch` with `message` and `structure`: FETCH, MIME parts, ENVELOPE
//!   and BODYSTRUCTURE of stored messages.
//! - `search`: SEARCH.
//! - `flags`: STORE and flag conversions.
//! - `transfer`: COPY and APPEND with UIDPLUS response codes.
//! - `idle`: IDLE.

mod auth;
mod fetch;
mod flags;
mod idle;
mod mailboxes;
mod message;
mod output;
mod reader;
mod response;
mod search;
mod select;
mod selection;
mod session;
mod structure;
mod transfer;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use crate::conn::Peer;
use crate::service::Service;

/// Serves one IMAP session on `stream` until the peer logs out or disconnects.
///
/// Returns an error only when the transport fails; a peer that hangs up, an
/// autologout or an injected fault ends the session with `Ok`.
pub async fn serve<S>(service: Service, stream: S, peer: Peer) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let span = tracing::info_span!(
        "session",
        protocol = "imap",
        session = peer.session,
        peer = ?peer.addr,
        mailbox = tracing::field::Empty,
    );
    async move {
        tracing::info!("session started");
        session::Session::new(service, stream)
            .run()
            .await
            .map_err(|error| match error {
                output::Disconnect::Io(error) => error,
                other => std::io::Error::other(other),
            })
    }
    .instrument(span)
    .await
}

/// Writes `* BYE [UNAVAILABLE] Too many connections` and closes `stream`.
/// A listener calls this when it has no room for another connection.
pub async fn refuse_busy<S: AsyncWrite + Unpin>(stream: S) {
    use imap_codec::GreetingCodec;
    use imap_codec::encode::Encoder;
    use tokio::io::AsyncWriteExt;

    let mut stream = stream;
    let bytes = GreetingCodec::new()
        .encode(&response::busy_greeting())
        .dump();
    let result = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    }
    .await;
    if let Err(error) = result {
        tracing::debug!(protocol = "imap", %error, "could not send the busy greeting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[tokio::test]
    async fn serve_future_is_send() {
        let service = Service::builder().build();
        let (_client, server) = tokio::io::duplex(64);
        let peer = Peer {
            addr: None,
            session: 1,
        };
        let future = serve(service, server, peer);
        assert_send(&future);
    }
}
