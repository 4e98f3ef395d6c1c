//! Helpers shared by the protocol tests: a fixed-epoch service, an
//! in-memory client that sends in chunks of any size, and transcript
//! rendering for snapshots.
//!
//! Nothing here depends on a protocol. A test marks where a reply ends by
//! passing a function that finds the end of one reply in the bytes
//! received so far.

#![allow(dead_code)]

pub mod allocations;
pub mod imap;

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sim::conn::Peer;
use sim::{Limits, Service, SimClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

/// Result type for tests.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The wall-clock date at which every test service starts.
pub const EPOCH: &str = "2024-05-01T09:00:00Z";

/// Chunk sizes every transcript is fed in; `usize::MAX` sends each step whole.
pub const CHUNK_SIZES: [usize; 8] = [1, 2, 3, 5, 7, 16, 64, usize::MAX];

/// Capacity of the in-memory pipe between client and server.
const PIPE_CAPACITY: usize = 64 * 1024;

/// How long a client waits for a reply before the test fails. Tests run on
/// a paused clock, so this is virtual time. It is longer than any idle
/// timeout, so an autologout shows up as a reply, not as a timeout.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// Returns the start of every test clock.
pub fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(EPOCH)
        .map(|date| date.with_timezone(&Utc))
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// Builds a service on the test clock with `limits`.
pub fn service_with(limits: Limits) -> Service {
    Service::builder()
        .clock(SimClock::starting_at(epoch()))
        .hostname("mailsim.test")
        .limits(limits)
        .build()
}

/// Builds a service on the test clock with default limits.
pub fn service() -> Service {
    service_with(Limits::default())
}

/// A session entry point: `sim::imap::serve`, `sim::pop3::serve`, ...
pub type ServeFn = fn(Service, DuplexStream, Peer) -> JoinHandle<std::io::Result<()>>;

/// The client side of one in-memory session.
pub struct Client {
    stream: DuplexStream,
    chunk: usize,
    received: Vec<u8>,
    transcript: String,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl Client {
    /// Starts a session with `serve` and returns its client, which sends
    /// in chunks of `chunk` bytes.
    pub fn connect(service: &Service, serve: ServeFn, chunk: usize) -> Self {
        let (client, server) = tokio::io::duplex(PIPE_CAPACITY);
        let peer = Peer {
            addr: None,
            session: service.next_session_id(),
        };
        let handle = serve(service.clone(), server, peer);
        Self {
            stream: client,
            chunk: chunk.max(1),
            received: Vec::new(),
            transcript: String::new(),
            server: Some(handle),
        }
    }

    /// Sends `bytes` in chunks, yielding between chunks so the server reads
    /// each one separately, and records them as client lines.
    pub async fn send(&mut self, bytes: &[u8]) -> TestResult {
        render_into(&mut self.transcript, "C", bytes);
        for piece in bytes.chunks(self.chunk) {
            self.stream.write_all(piece).await?;
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Sends bytes without recording them, for inputs too large to snapshot.
    pub async fn send_unrecorded(&mut self, bytes: &[u8]) -> TestResult {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads until `complete` finds the end of a reply in the unread bytes,
    /// then returns that reply and records it as server lines. `complete`
    /// returns the reply's length, or `None` while it is incomplete.
    pub async fn receive(
        &mut self,
        complete: impl Fn(&[u8]) -> TestResult<Option<usize>>,
    ) -> TestResult<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(length) = complete(&self.received)? {
                let reply: Vec<u8> = self.received.drain(..length).collect();
                render_into(&mut self.transcript, "S", &reply);
                return Ok(reply);
            }
            let mut buffer = [0u8; 16 * 1024];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buffer)).await;
            match read {
                Err(_) => {
                    return Err(format!(
                        "no complete reply; received so far: {}",
                        escape(&self.received)
                    )
                    .into());
                }
                Ok(Ok(0)) => {
                    return Err(format!(
                        "connection closed before a complete reply; received: {}",
                        escape(&self.received)
                    )
                    .into());
                }
                Ok(Ok(n)) => self.received.extend_from_slice(&buffer[..n]),
                Ok(Err(error)) => return Err(error.into()),
            }
        }
    }

    /// Reads until the server closes the connection and returns what came.
    pub async fn receive_to_end(&mut self) -> TestResult<Vec<u8>> {
        let mut rest = std::mem::take(&mut self.received);
        tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_to_end(&mut rest))
            .await
            .map_err(|_| "server did not close the connection")??;
        render_into(&mut self.transcript, "S", &rest);
        Ok(rest)
    }

    /// Closes the client's side and waits for the session to end, failing
    /// if the server task panicked.
    pub async fn finish(mut self) -> TestResult<String> {
        self.stream.shutdown().await.ok();
        let mut rest = std::mem::take(&mut self.received);
        tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_to_end(&mut rest))
            .await
            .map_err(|_| "server did not close the connection")?
            .ok();
        render_into(&mut self.transcript, "S", &rest);
        if let Some(server) = self.server.take() {
            let result = tokio::time::timeout(REPLY_TIMEOUT, server)
                .await
                .map_err(|_| "server session did not end")?;
            result
                .map_err(|error| format!("server session panicked: {error}"))?
                .ok();
        }
        Ok(self.transcript)
    }

    /// Returns the transcript so far.
    pub fn transcript(&self) -> &str {
        &self.transcript
    }
}

/// Appends `bytes` to `out` as lines prefixed with `direction` and `: `.
/// Each CRLF-terminated line is one transcript line; a last piece without
/// CRLF is prefixed with `direction` and `~ `. Bytes other than printable
/// ASCII, and backslashes, are escaped, so the rendering maps back to
/// exactly one byte string.
pub fn render_into(out: &mut String, direction: &str, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match rest.windows(2).position(|pair| pair == b"\r\n") {
            Some(end) => {
                let _ = writeln!(out, "{direction}: {}", escape(&rest[..end]));
                rest = &rest[end + 2..];
            }
            None => {
                let _ = writeln!(out, "{direction}~ {}", escape(rest));
                rest = &[];
            }
        }
    }
}

/// Escapes bytes for a transcript line.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b' '..=b'~' => out.push(byte as char),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
    out
}

/// Serves sessions with `serve` on an ephemeral loopback TCP port until
/// the returned task is dropped or aborted; returns the bound address.
pub async fn tcp_server<F, Fut>(
    service: Service,
    serve: F,
) -> TestResult<(std::net::SocketAddr, JoinHandle<()>)>
where
    F: Fn(Service, tokio::net::TcpStream, Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, remote)) = listener.accept().await {
            let peer = Peer {
                addr: Some(remote),
                session: service.next_session_id(),
            };
            tokio::spawn(serve(service.clone(), stream, peer));
        }
    });
    Ok((address, task))
}
