//! POP3 server sessions.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::Peer;
use crate::service::Service;

/// Serves one POP3 session on `stream` until the peer logs out or disconnects.
pub async fn serve<S>(service: Service, stream: S, peer: Peer) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _ = (service, stream, peer);
    todo!("pop3 session")
}

/// Answers "too many connections" and closes.
pub async fn refuse_busy<S: tokio::io::AsyncWrite + Unpin>(stream: S) {
    let _ = stream;
    todo!()
}
