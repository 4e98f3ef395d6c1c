//! A scripted IMAP peer for engine tests: just enough of RFC 3501 to respond to
//! the commands a sync cycle sends (LOGIN, CAPABILITY, STATUS, SELECT, UID FETCH,
//! UID STORE, UID EXPUNGE, EXPUNGE, LOGOUT), over `tokio::io::duplex` pipes,
//! with switches for the faults the tests need. It is not a simulator: it
//! keeps one INBOX per mailbox id and trusts the client's syntax.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub mod pop3;

use engine::{ConnectTarget, Connector};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

/// One mailbox's INBOX and fault switches.
#[derive(Clone, Debug, Default)]
pub struct Inbox {
    pub password: String,
    pub uid_validity: u32,
    pub next_uid: u32,
    /// (UID, bytes, \Deleted).
    pub messages: Vec<(u32, Vec<u8>, bool)>,
    /// Reject LOGIN with `NO [AUTHENTICATIONFAILED]`.
    pub reject_login: bool,
    /// Refuse this many connections.
    pub refuse: u32,
    /// Reject this many LOGINs with a throttled `NO [UNAVAILABLE]`.
    pub throttle: u32,
    /// Suggested back-off in the throttled answer, in milliseconds.
    pub throttle_backoff_ms: u64,
    /// Cut the connection halfway through the body fetch with this index
    /// (0 is the first body fetch served).
    pub reset_body_fetch: Option<u32>,
    /// Body fetches served so far.
    pub body_fetches: u32,
    /// Connections accepted.
    pub connections: u32,
    /// Latency before each answer.
    pub latency: Duration,
    /// Answer UID SEARCH with BAD, like a server without SEARCH.
    pub no_search: bool,
    /// Send FETCH responses in descending UID order, which RFC 3501 allows.
    pub reverse_fetch: bool,
}

impl Inbox {
    pub fn new(password: &str) -> Self {
        Self {
            password: password.to_owned(),
            uid_validity: 1,
            next_uid: 1,
            ..Self::default()
        }
    }

    pub fn deliver(&mut self, raw: impl Into<Vec<u8>>) -> u32 {
        let uid = self.next_uid;
        self.next_uid += 1;
        self.messages.push((uid, raw.into(), false));
        uid
    }

    /// Renumbers every message as after a UIDVALIDITY change.
    pub fn reset_uid_validity(&mut self) {
        self.uid_validity += 1;
        self.next_uid = 1;
        for message in &mut self.messages {
            message.0 = self.next_uid;
            self.next_uid += 1;
        }
    }
}

/// Scripted IMAP service: one [`Inbox`] per mailbox id.
#[derive(Clone, Default)]
pub struct Peer {
    inboxes: Arc<Mutex<BTreeMap<String, Inbox>>>,
}

impl Peer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn inbox(&self, mailbox: &str) -> InboxGuard<'_> {
        InboxGuard {
            guard: self.lock(),
            mailbox: mailbox.to_owned(),
        }
    }

    pub fn add(&self, mailbox: &str, inbox: Inbox) {
        self.lock().insert(mailbox.to_owned(), inbox);
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Inbox>> {
        self.inboxes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct InboxGuard<'a> {
    guard: MutexGuard<'a, BTreeMap<String, Inbox>>,
    mailbox: String,
}

impl std::ops::Deref for InboxGuard<'_> {
    type Target = Inbox;
    fn deref(&self) -> &Inbox {
        self.guard.get(&self.mailbox).expect("inbox exists")
    }
}

impl std::ops::DerefMut for InboxGuard<'_> {
    fn deref_mut(&mut self) -> &mut Inbox {
        self.guard.get_mut(&self.mailbox).expect("inbox exists")
    }
}

impl Connector for Peer {
    type Stream = DuplexStream;

    async fn connect(&self, target: ConnectTarget<'_>) -> io::Result<DuplexStream> {
        let mailbox = target.mailbox.as_str().to_owned();
        {
            let mut inboxes = self.lock();
            let inbox = inboxes
                .get_mut(&mailbox)
                .ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            if inbox.refuse > 0 {
                inbox.refuse -= 1;
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            inbox.connections += 1;
        }
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve(self.clone(), mailbox, server));
        Ok(client)
    }
}

async fn serve(peer: Peer, mailbox: String, stream: DuplexStream) {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    let _ = write
        .write_all(b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] scripted peer ready\r\n")
        .await;
    while let Ok(Some(line)) = lines.next_line().await {
        let latency = peer.inbox(&mailbox).latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let (reply, cut) = answer(&peer, &mailbox, &line);
        let bytes = match cut {
            Some(cut) => reply.get(..cut).unwrap_or_default().to_vec(),
            None => reply,
        };
        if write.write_all(&bytes).await.is_err() || cut.is_some() {
            return;
        }
        if line
            .split(' ')
            .nth(1)
            .is_some_and(|c| c.eq_ignore_ascii_case("LOGOUT"))
        {
            return;
        }
    }
}

/// Returns the reply and, for an injected reset, how many bytes of it to
/// send before closing.
fn answer(peer: &Peer, mailbox: &str, line: &str) -> (Vec<u8>, Option<usize>) {
    let mut words = line.splitn(3, ' ');
    let tag = words.next().unwrap_or("*");
    let command = words.next().unwrap_or("").to_ascii_uppercase();
    let rest = words.next().unwrap_or("");
    let mut inbox = peer.inbox(mailbox);
    let reply = match command.as_str() {
        "LOGIN" => {
            let password = rest.rsplit(' ').next().unwrap_or("").trim_matches('"');
            if inbox.throttle > 0 {
                inbox.throttle -= 1;
                format!(
                    "{tag} NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: {} milliseconds\r\n",
                    inbox.throttle_backoff_ms
                )
            } else if inbox.reject_login || password != inbox.password {
                format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
            } else {
                format!("{tag} OK LOGIN completed\r\n")
            }
        }
        "CAPABILITY" => format!("* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK done\r\n"),
        "STATUS" => format!(
            "* STATUS INBOX (UIDVALIDITY {} UIDNEXT {} MESSAGES {})\r\n{tag} OK STATUS completed\r\n",
            inbox.uid_validity,
            inbox.next_uid,
            inbox.messages.len()
        ),
        "SELECT" => format!(
            "* {} EXISTS\r\n* OK [UIDVALIDITY {}] ok\r\n* OK [UIDNEXT {}] ok\r\n{tag} OK [READ-WRITE] SELECT completed\r\n",
            inbox.messages.len(),
            inbox.uid_validity,
            inbox.next_uid
        ),
        "UID" => return uid_command(&mut inbox, tag, rest),
        "EXPUNGE" => {
            inbox.messages.retain(|m| !m.2);
            format!("{tag} OK EXPUNGE completed\r\n")
        }
        "LOGOUT" => format!("* BYE logging out\r\n{tag} OK LOGOUT completed\r\n"),
        _ => format!("{tag} BAD unknown command\r\n"),
    };
    (reply.into_bytes(), None)
}

fn uid_command(inbox: &mut Inbox, tag: &str, rest: &str) -> (Vec<u8>, Option<usize>) {
    let mut words = rest.splitn(3, ' ');
    let command = words.next().unwrap_or("").to_ascii_uppercase();
    let set = words.next().unwrap_or("");
    let items = words.next().unwrap_or("").to_ascii_uppercase();
    let max_uid = inbox.messages.iter().map(|m| m.0).max().unwrap_or(0);
    let wanted = |uid: u32| in_set(set, uid, max_uid);
    match command.as_str() {
        "FETCH" => {
            let bodies = items.contains("BODY.PEEK[]");
            let mut out = Vec::new();
            let mut order: Vec<usize> = (0..inbox.messages.len()).collect();
            if inbox.reverse_fetch {
                order.reverse();
            }
            for index in order {
                let (uid, raw, _) = &inbox.messages[index];
                if !wanted(*uid) {
                    continue;
                }
                let seq = index + 1;
                if bodies {
                    let date = if items.contains("INTERNALDATE") {
                        " INTERNALDATE \"01-Jan-2024 09:00:00 +0000\""
                    } else {
                        ""
                    };
                    out.extend_from_slice(
                        format!(
                            "* {seq} FETCH (UID {uid}{date} BODY[] {{{}}}\r\n",
                            raw.len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(raw);
                    out.extend_from_slice(b")\r\n");
                } else {
                    out.extend_from_slice(
                        format!("* {seq} FETCH (UID {uid} RFC822.SIZE {})\r\n", raw.len())
                            .as_bytes(),
                    );
                }
            }
            out.extend_from_slice(format!("{tag} OK FETCH completed\r\n").as_bytes());
            if !bodies {
                return (out, None);
            }
            let index = inbox.body_fetches;
            inbox.body_fetches += 1;
            if inbox.reset_body_fetch == Some(index) {
                let cut = out.len() / 2;
                return (out, Some(cut));
            }
            (out, None)
        }
        "STORE" => {
            for message in &mut inbox.messages {
                if wanted(message.0) {
                    message.2 = true;
                }
            }
            (format!("{tag} OK STORE completed\r\n").into_bytes(), None)
        }
        "EXPUNGE" => {
            inbox.messages.retain(|m| !(m.2 && wanted(m.0)));
            (format!("{tag} OK EXPUNGE completed\r\n").into_bytes(), None)
        }
        _ => (
            format!("{tag} BAD unknown UID command\r\n").into_bytes(),
            None,
        ),
    }
}

/// Returns whether `uid` is in an IMAP sequence set such as `1:3,7,9:*`.
fn in_set(set: &str, uid: u32, max_uid: u32) -> bool {
    let value = |text: &str| {
        if text == "*" {
            max_uid
        } else {
            text.parse().unwrap_or(0)
        }
    };
    set.split(',').any(|part| match part.split_once(':') {
        Some((a, b)) => {
            let (a, b) = (value(a), value(b));
            (a.min(b)..=a.max(b)).contains(&uid)
        }
        None => value(part) == uid,
    })
}

/// Builds a plain message with `id` as Message-ID.
pub fn message(id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Carol <carol@example.org>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
Message-ID: <{id}>\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

/// Builds a copy of `original` forwarded as an attachment by `from`.
pub fn forwarded(from: &str, id: &str, original: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "From: {from}\r\nTo: fwd@example.com\r\nSubject: FW: copy\r\nMessage-ID: <{id}>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nForwarded by rule.\r\n\
--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(original);
    out.extend_from_slice(b"\r\n--b--\r\n");
    out
}

/// Builds a copy forwarded inline: the original's text in the body and no
/// attachment.
pub fn forwarded_inline(from: &str, id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: fwd@example.com\r\nSubject: FW: copy\r\nMessage-ID: <{id}>\r\n\r\n\
-----Original Message-----\r\nFrom: carol@example.org\r\nSubject: hello\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

/// Bytes with no header section, like a corrupt store hands out.
pub fn corrupt() -> Vec<u8> {
    let mut raw: Vec<u8> = (0..62u8).map(|i| 0x80 | i).collect();
    raw.extend_from_slice(b"\r\n");
    raw.extend((0..62u8).map(|i| 0xc0 | (i % 60)));
    raw.extend_from_slice(b"\r\n");
    raw
}
