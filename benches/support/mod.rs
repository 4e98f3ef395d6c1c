//! Shared set-up for the benchmarks: a filled mailbox and a raw IMAP client
//! that reads literals without parsing them.

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Messages in the benchmark mailbox.
pub const MESSAGES: usize = 10_000;

/// A plain-text message of about `size` bytes with a unique Message-ID.
pub fn message(number: usize, size: usize) -> Bytes {
    let mut raw = format!(
        "From: sender{number}@example.org\r\nTo: bench@example.com\r\n\
         Subject: Benchmark message {number}\r\nMessage-ID: <bench.{number}@example.org>\r\n\
         Date: Mon, 1 Jan 2024 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog while the benchmark runs.\r\n";
    while raw.len() + line.len() <= size {
        raw.extend_from_slice(line);
    }
    Bytes::from(raw)
}

/// Starts the simulated service on loopback with one account of `count`
/// messages of about `size` bytes.
pub async fn filled_server(count: usize, size: usize) -> sim::MailSim {
    let server = sim::MailSim::builder()
        .account("bench@example.com", "secret")
        .start()
        .await
        .expect("server starts");
    let account = server
        .service()
        .store()
        .account("bench@example.com")
        .expect("account exists");
    for number in 0..count {
        server.service().insert(&account, message(number, size));
    }
    server
}

/// Reads until `needle` ends the data read so far; returns everything read.
async fn read_until(stream: &mut TcpStream, buffer: &mut Vec<u8>, needle: &[u8]) -> io::Result<()> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if buffer.ends_with(needle) {
            return Ok(());
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// Logs in, selects INBOX and fetches every message with
/// `UID FETCH 1:* (BODY.PEEK[])`, skipping over each literal by its length
/// without parsing it. Returns (messages, bytes of message data).
pub async fn raw_uid_fetch(
    address: SocketAddr,
    user: &str,
    password: &str,
) -> io::Result<(usize, usize)> {
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut buffer = Vec::new();
    read_until(&mut stream, &mut buffer, b"\r\n").await?;
    let login = format!("a LOGIN {user} {password}\r\nb SELECT INBOX\r\n");
    stream.write_all(login.as_bytes()).await?;
    buffer.clear();
    read_until_tagged(&mut stream, &mut buffer, b"b ").await?;

    stream
        .write_all(b"c UID FETCH 1:* (BODY.PEEK[])\r\n")
        .await?;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let (mut messages, mut bytes) = (0usize, 0usize);
    let mut skip = 0usize;
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut data = &chunk[..read];
        if skip > 0 {
            let taken = skip.min(data.len());
            skip -= taken;
            data = &data[taken..];
        }
        pending.extend_from_slice(data);
        // Walk complete lines; a line ending in {n} announces a literal.
        loop {
            let Some(end) = pending.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line = pending[..end].to_vec();
            pending.drain(..end + 2);
            if line.starts_with(b"c OK") {
                return Ok((messages, bytes));
            }
            if line.starts_with(b"c ") {
                return Err(io::Error::other(
                    String::from_utf8_lossy(&line).into_owned(),
                ));
            }
            if let Some(open) = line.iter().rposition(|&b| b == b'{') {
                if line.ends_with(b"}") {
                    let length: usize = std::str::from_utf8(&line[open + 1..line.len() - 1])
                        .ok()
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| io::Error::other("bad literal length"))?;
                    messages += 1;
                    bytes += length;
                    let buffered = length.min(pending.len());
                    pending.drain(..buffered);
                    skip = length - buffered;
                    if skip > 0 {
                        break;
                    }
                }
            }
        }
    }
}

async fn read_until_tagged(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    tag: &[u8],
) -> io::Result<()> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(start) = find_line_start(buffer, tag) {
            if buffer[start..].windows(2).any(|w| w == b"\r\n") {
                return Ok(());
            }
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn find_line_start(buffer: &[u8], tag: &[u8]) -> Option<usize> {
    if buffer.starts_with(tag) {
        return Some(0);
    }
    buffer
        .windows(2 + tag.len())
        .position(|w| w.starts_with(b"\r\n") && &w[2..] == tag)
        .map(|p| p + 2)
}
