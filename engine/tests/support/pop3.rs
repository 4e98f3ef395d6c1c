//! A scripted POP3 peer: USER, PASS, CAPA, UIDL, LIST, RETR, DELE and QUIT
//! (RFC 1939) over `tokio::io::duplex` pipes, with switches for faults. Like
//! the IMAP peer it trusts the client's syntax and is not a simulator.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use engine::{ConnectTarget, Connector};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

/// One mailbox's maildrop and fault switches.
#[derive(Clone, Debug, Default)]
pub struct Maildrop {
    pub password: String,
    /// (UIDL, bytes).
    pub messages: Vec<(String, Vec<u8>)>,
    pub next_uidl: u32,
    /// Offer PIPELINING in CAPA.
    pub pipelining: bool,
    /// Reject PASS with `-ERR [IN-USE]` this many times.
    pub in_use: u32,
    /// Close the connection after this many RETR responses in total.
    pub reset_after_retrs: Option<u32>,
    /// RETR responses sent so far.
    pub retrs: u32,
    /// Accepted DELEs per session after which DELE gets a throttled response.
    pub throttle_dele_after: Option<usize>,
    /// Sessions that ended with QUIT.
    pub quits: u32,
}

impl Maildrop {
    pub fn new(password: &str, pipelining: bool) -> Self {
        Self {
            password: password.to_owned(),
            pipelining,
            ..Self::default()
        }
    }

    pub fn deliver(&mut self, raw: impl Into<Vec<u8>>) {
        self.next_uidl += 1;
        self.messages
            .push((format!("u{}", self.next_uidl), raw.into()));
    }
}

/// Scripted POP3 service: one [`Maildrop`] per mailbox id.
#[derive(Clone, Default)]
pub struct Pop3Peer {
    maildrops: Arc<Mutex<BTreeMap<String, Maildrop>>>,
}

impl Pop3Peer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, mailbox: &str, maildrop: Maildrop) {
        self.lock().insert(mailbox.to_owned(), maildrop);
    }

    pub fn with<T>(&self, mailbox: &str, change: impl FnOnce(&mut Maildrop) -> T) -> T {
        let mut maildrops = self.lock();
        change(maildrops.get_mut(mailbox).expect("maildrop exists"))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Maildrop>> {
        self.maildrops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Connector for Pop3Peer {
    type Stream = DuplexStream;

    async fn connect(&self, target: ConnectTarget<'_>) -> io::Result<DuplexStream> {
        let mailbox = target.mailbox.as_str().to_owned();
        if !self.lock().contains_key(&mailbox) {
            return Err(io::ErrorKind::ConnectionRefused.into());
        }
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve(self.clone(), mailbox, server));
        Ok(client)
    }
}

async fn serve(peer: Pop3Peer, mailbox: String, stream: DuplexStream) {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    if write
        .write_all(b"+OK scripted POP3 peer ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut deleted: Vec<usize> = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.split(' ');
        let command = words.next().unwrap_or("").to_ascii_uppercase();
        let argument = words.next().unwrap_or("");
        let (reply, close) = peer.with(&mailbox, |drop| match command.as_str() {
            "USER" => (b"+OK\r\n".to_vec(), false),
            "PASS" if drop.in_use > 0 => {
                drop.in_use -= 1;
                (b"-ERR [IN-USE] maildrop locked\r\n".to_vec(), true)
            }
            "PASS" if argument == drop.password => (b"+OK logged in\r\n".to_vec(), false),
            "PASS" => (b"-ERR [AUTH] invalid password\r\n".to_vec(), true),
            "CAPA" => {
                let mut reply = b"+OK\r\nUIDL\r\nUSER\r\n".to_vec();
                if drop.pipelining {
                    reply.extend_from_slice(b"PIPELINING\r\n");
                }
                reply.extend_from_slice(b".\r\n");
                (reply, false)
            }
            "UIDL" | "LIST" => {
                let mut reply = b"+OK\r\n".to_vec();
                for (index, (uidl, raw)) in drop.messages.iter().enumerate() {
                    let value = if command == "UIDL" {
                        uidl.clone()
                    } else {
                        raw.len().to_string()
                    };
                    reply.extend_from_slice(format!("{} {value}\r\n", index + 1).as_bytes());
                }
                reply.extend_from_slice(b".\r\n");
                (reply, false)
            }
            "RETR" => {
                if drop.reset_after_retrs == Some(drop.retrs) {
                    drop.reset_after_retrs = None;
                    return (Vec::new(), true);
                }
                drop.retrs += 1;
                let index = argument.parse::<usize>().unwrap_or(0).wrapping_sub(1);
                match drop.messages.get(index) {
                    Some((_, raw)) => (retr_answer(raw), false),
                    None => (b"-ERR no such message\r\n".to_vec(), false),
                }
            }
            "DELE" if drop.throttle_dele_after == Some(deleted.len()) => (
                b"-ERR [SYS/TEMP] Request is throttled. Suggested Backoff Time: 1000 milliseconds\r\n"
                    .to_vec(),
                false,
            ),
            "DELE" => {
                let index = argument.parse::<usize>().unwrap_or(0).wrapping_sub(1);
                deleted.push(index);
                (b"+OK marked\r\n".to_vec(), false)
            }
            "QUIT" => {
                let mut index = 0;
                drop.messages.retain(|_| {
                    let keep = !deleted.contains(&index);
                    index += 1;
                    keep
                });
                drop.quits += 1;
                (b"+OK bye\r\n".to_vec(), true)
            }
            _ => (b"-ERR unknown command\r\n".to_vec(), false),
        });
        if write.write_all(&reply).await.is_err() || close {
            return;
        }
    }
}

/// Builds a RETR response with dot-stuffing.
fn retr_answer(raw: &[u8]) -> Vec<u8> {
    let mut reply = b"+OK message follows\r\n".to_vec();
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            reply.push(b'.');
        }
        reply.extend_from_slice(line);
    }
    if !reply.ends_with(b"\r\n") {
        reply.extend_from_slice(b"\r\n");
    }
    reply.extend_from_slice(b".\r\n");
    reply
}
