//! Test support for the POP3 and SMTP servers: fixtures, an in-memory
//! client, and transcripts that run in lockstep and again with the same
//! input fed in chunks of every size.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod allocations;

use std::net::SocketAddr;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use sim::conn::Peer;
use sim::{AccountSpec, Limits, Service, SimClock};
use tokio::io::{
    AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf,
};
use tokio::task::JoinHandle;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Capacity of each direction of the in-memory pipe, like a socket buffer.
pub const PIPE_CAPACITY: usize = 64 * 1024;

/// Chunk sizes every transcript is replayed with; `usize::MAX` sends all at once.
pub const CHUNK_SIZES: [usize; 8] = [1, 2, 3, 5, 7, 16, 64, usize::MAX];

pub const HOSTNAME: &str = "mail.example.com";

/// Returns the wall-clock date at which every test's clock starts.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 9, 30, 0)
        .single()
        .expect("valid date")
}

/// Builds a service on a clock starting at [`epoch`]. Call it inside a
/// paused runtime.
pub fn service_with(limits: Limits) -> Service {
    Service::builder()
        .clock(SimClock::starting_at(epoch()))
        .hostname(HOSTNAME)
        .limits(limits)
        .build()
}

/// Adds an account with `messages` stored in its INBOX in order.
pub fn add_account(service: &Service, address: &str, password: &str, messages: &[&[u8]]) {
    let account = service
        .add_account(AccountSpec::new(address, password))
        .expect("new account");
    for message in messages {
        service.insert(&account, Bytes::copy_from_slice(message));
    }
}

/// Returns the raw bytes in `address`'s INBOX, in UID order.
pub fn inbox(service: &Service, address: &str) -> Vec<Bytes> {
    let account = service.store().account(address).expect("account exists");
    let mailboxes = account.mailboxes();
    mailboxes
        .inbox()
        .messages()
        .iter()
        .map(|entry| entry.message.raw.clone())
        .collect()
}

/// Which protocol a session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pop3,
    Smtp,
}

fn peer() -> Peer {
    Peer {
        addr: Some(SocketAddr::from(([127, 0, 0, 1], 49152))),
        session: 1,
    }
}

/// Starts a session of `protocol` on an in-memory pipe.
pub fn connect(service: &Service, protocol: Protocol) -> Client {
    let (client, server) = tokio::io::duplex(PIPE_CAPACITY);
    let service = service.clone();
    let task = tokio::spawn(async move {
        match protocol {
            Protocol::Pop3 => sim::pop3::serve(service, server, peer()).await,
            Protocol::Smtp => sim::smtp::serve(service, server, peer()).await,
        }
    });
    let (reader, writer) = tokio::io::split(client);
    Client {
        reader: BufReader::new(reader),
        writer,
        task,
    }
}

/// The client end of a session.
pub struct Client {
    reader: BufReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Client {
    /// Sends `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// Sends `line` followed by CRLF.
    pub async fn command(&mut self, line: &str) -> std::io::Result<()> {
        self.send(format!("{line}\r\n").as_bytes()).await
    }

    /// Reads one line, line ending included; empty at end of stream.
    pub async fn line(&mut self) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).await?;
        Ok(line)
    }

    /// Reads one line as text.
    pub async fn text_line(&mut self) -> std::io::Result<String> {
        Ok(String::from_utf8_lossy(&self.line().await?).into_owned())
    }

    /// Sends a command and returns the one-line response as text.
    pub async fn ask(&mut self, line: &str) -> std::io::Result<String> {
        self.command(line).await?;
        self.text_line().await
    }

    /// Reads a POP3 status line and, when it is `+OK`, the multi-line body
    /// up to and including the terminating `.` line.
    pub async fn pop3_multi_line(&mut self) -> std::io::Result<Vec<u8>> {
        let mut response = self.line().await?;
        if !response.starts_with(b"+OK") {
            return Ok(response);
        }
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                return Ok(response);
            }
            let end = line == b".\r\n";
            response.extend_from_slice(&line);
            if end {
                return Ok(response);
            }
        }
    }

    /// Reads one SMTP reply: lines up to the one with a space after the code.
    pub async fn smtp_reply(&mut self) -> std::io::Result<Vec<u8>> {
        let mut reply = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                return Ok(reply);
            }
            let last = line.get(3) != Some(&b'-');
            reply.extend_from_slice(&line);
            if last {
                return Ok(reply);
            }
        }
    }

    /// Closes the sending side and returns whatever the server still sends.
    pub async fn finish(mut self) -> std::io::Result<Vec<u8>> {
        // The server may have closed already, which makes shutdown fail.
        let _ = self.writer.shutdown().await;
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).await?;
        self.task.await??;
        Ok(rest)
    }

    /// Reads until the server closes, without closing the sending side.
    pub async fn read_until_closed(&mut self) -> std::io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).await?;
        Ok(rest)
    }

    /// Drops the connection without a goodbye and waits for the session to end.
    pub async fn drop_connection(self) -> std::io::Result<()> {
        let Client {
            reader,
            writer,
            task,
        } = self;
        drop(reader.into_inner().unsplit(writer));
        task.await?
    }
}

/// What a transcript step waits for after sending its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No response (SMTP message content before the final dot).
    Nothing,
    /// One POP3 status line.
    Line,
    /// A POP3 status line and, after `+OK`, a multi-line body.
    MultiLine,
    /// One SMTP reply, possibly multi-line.
    Reply,
}

/// One client turn of a transcript.
#[derive(Clone, Debug)]
pub struct Step {
    pub input: Vec<u8>,
    pub expect: Expect,
}

/// Creates a step that sends `line` and CRLF.
pub fn step(line: &str, expect: Expect) -> Step {
    Step {
        input: format!("{line}\r\n").into_bytes(),
        expect,
    }
}

/// Creates a step that sends raw bytes.
pub fn raw(bytes: &[u8], expect: Expect) -> Step {
    Step {
        input: bytes.to_vec(),
        expect,
    }
}

/// A finished transcript.
pub struct Transcript {
    /// Client and server lines in order, escaped, for the snapshot.
    pub text: String,
    /// Every byte the server sent.
    pub server_output: Vec<u8>,
}

/// Runs `steps` one at a time, reading each response before the next step,
/// then closes the client side and collects what the server still sends.
pub async fn run_lockstep(service: &Service, protocol: Protocol, steps: &[Step]) -> Transcript {
    let mut client = connect(service, protocol);
    let mut text = String::new();
    let mut server_output = Vec::new();
    let greeting = match protocol {
        Protocol::Pop3 => client.line().await,
        Protocol::Smtp => client.smtp_reply().await,
    }
    .expect("greeting");
    render(&mut text, "S: ", &greeting);
    server_output.extend_from_slice(&greeting);

    for step in steps {
        render(&mut text, "C: ", &step.input);
        client.send(&step.input).await.expect("send step");
        let answer = match step.expect {
            Expect::Nothing => Ok(Vec::new()),
            Expect::Line => client.line().await,
            Expect::MultiLine => client.pop3_multi_line().await,
            Expect::Reply => client.smtp_reply().await,
        }
        .expect("read response");
        render(&mut text, "S: ", &answer);
        server_output.extend_from_slice(&answer);
    }

    let rest = client.finish().await.expect("session ends cleanly");
    if !rest.is_empty() {
        render(&mut text, "S: ", &rest);
        server_output.extend_from_slice(&rest);
    }
    text.push_str("-- closed\n");
    Transcript {
        text,
        server_output,
    }
}

/// Sends all of `input` in pieces of `chunk` bytes without waiting for
/// answers, closes the sending side, and returns everything the server sent.
pub async fn run_chunked(
    service: &Service,
    protocol: Protocol,
    input: Vec<u8>,
    chunk: usize,
) -> Vec<u8> {
    let pieces = input.chunks(chunk.max(1)).map(<[u8]>::to_vec).collect();
    run_pieces(service, protocol, pieces).await
}

/// Splits `input` into pieces whose sizes repeat `sizes` (zeros count as 1).
pub fn split_by(input: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut rest = input;
    for size in sizes.iter().cycle() {
        if rest.is_empty() || sizes.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at((*size).clamp(1, rest.len()));
        pieces.push(piece.to_vec());
        rest = tail;
    }
    if !rest.is_empty() {
        pieces.push(rest.to_vec());
    }
    pieces
}

/// Sends `pieces` one write each without waiting for answers, closes the
/// sending side, and returns everything the server sent. Panics if the
/// session fails or panics.
pub async fn run_pieces(service: &Service, protocol: Protocol, pieces: Vec<Vec<u8>>) -> Vec<u8> {
    let client = connect(service, protocol);
    let Client {
        mut reader,
        mut writer,
        task,
    } = client;
    let sender = tokio::spawn(async move {
        for piece in pieces {
            // The server stops reading after QUIT; the rest is not needed.
            if writer.write_all(&piece).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut output = Vec::new();
    reader
        .read_to_end(&mut output)
        .await
        .expect("read server output");
    sender.await.expect("sender task");
    task.await
        .expect("session task")
        .expect("session ends cleanly");
    output
}

/// Runs a transcript in lockstep on `make_service()`, then replays its
/// input in every chunk size on fresh services and checks that the server
/// sends the same bytes. Returns the lockstep transcript.
pub async fn transcript_in_all_chunkings(
    make_service: impl Fn() -> Service,
    protocol: Protocol,
    steps: &[Step],
) -> Transcript {
    let transcript = run_lockstep(&make_service(), protocol, steps).await;
    let input: Vec<u8> = steps.iter().flat_map(|step| step.input.clone()).collect();
    for chunk in CHUNK_SIZES {
        let output = run_chunked(&make_service(), protocol, input.clone(), chunk).await;
        assert_eq!(
            escape(&output),
            escape(&transcript.server_output),
            "server output differs when the input comes in chunks of {chunk} bytes"
        );
    }
    transcript
}

/// Appends `bytes` line by line, each prefixed and escaped so that the
/// text shows every byte, line endings included.
pub fn render(text: &mut String, prefix: &str, bytes: &[u8]) {
    for line in bytes.split_inclusive(|&byte| byte == b'\n') {
        text.push_str(prefix);
        text.push_str(&escape(line));
        text.push('\n');
    }
}

/// Printable ASCII as it is, `\r`, `\n`, `\t` and `\\` escaped, anything
/// else as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'\r' => text.push_str("\\r"),
            b'\n' => text.push_str("\\n"),
            b'\t' => text.push_str("\\t"),
            b'\\' => text.push_str("\\\\"),
            0x20..=0x7e => text.push(char::from(byte)),
            _ => text.push_str(&format!("\\x{byte:02x}")),
        }
    }
    text
}
