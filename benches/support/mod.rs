//! Shared set-up for the benchmarks: mailboxes of 10,000 messages in the
//! simulated service and in Dovecot, and raw clients that only read bytes.
//!
//! Dovecot is the one `scripts/dovecot-test-server start` runs, named by
//! `MAILSIM_DOVECOT_IMAP`, `MAILSIM_DOVECOT_POP3` and `MAILSIM_DOVECOT_USERS`;
//! benchmarks that compare against it are skipped, with a note, when those
//! are not set.

#![allow(dead_code)]

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Messages in each benchmark mailbox.
pub const MESSAGES: usize = 10_000;

/// Password of every benchmark account.
pub const PASSWORD: &str = "bench-pw";

/// Where a server listens and which account holds the messages.
#[derive(Clone, Debug)]
pub struct Target {
    /// IMAP host and port.
    pub imap: (String, u16),
    /// POP3 host and port.
    pub pop3: (String, u16),
    /// The account's login.
    pub user: String,
    /// The account's password.
    pub password: String,
}

/// A plain-text message of about 3.6 KB, the size the scenario runner's
/// traffic uses by default.
pub fn message(user: &str, index: usize) -> String {
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
    format!(
        "From: Carol <carol@example.org>\r\nTo: {user}\r\nSubject: Order {index}\r\n\
Message-ID: <{index}.{user}>\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000\r\n\r\n{}",
        line.repeat(48)
    )
}

/// Starts the simulated service on its own multi-threaded runtime, as a
/// separate server process would run, with one account of [`MESSAGES`]
/// messages. The runtime lives as long as the returned guard.
pub fn sim_target() -> (Target, SimGuard) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let user = "bench@example.com".to_owned();
    let server = runtime.block_on(async {
        let server = sim::MailSim::builder()
            .account(&user, PASSWORD)
            .start()
            .await
            .expect("server starts");
        let account = server.service().store().account(&user).expect("account");
        for index in 0..MESSAGES {
            server
                .service()
                .insert(&account, Bytes::from(message(&user, index)));
        }
        server
    });
    let address = |addr: Option<std::net::SocketAddr>| {
        let addr = addr.expect("listener enabled");
        (addr.ip().to_string(), addr.port())
    };
    let target = Target {
        imap: address(server.imap_addr()),
        pop3: address(server.pop3_addr()),
        user,
        password: PASSWORD.to_owned(),
    };
    (
        target,
        SimGuard {
            runtime,
            _server: server,
        },
    )
}

/// Keeps a benchmark's simulated service running.
pub struct SimGuard {
    runtime: tokio::runtime::Runtime,
    _server: sim::MailSim,
}

impl SimGuard {
    /// The runtime the service runs on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }
}

fn env_address(name: &str) -> Option<(String, u16)> {
    let value = std::env::var(name).ok()?;
    let (host, port) = value.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// A fresh Dovecot account filled with [`MESSAGES`] messages, or `None`
/// (with a note on stderr) when no test Dovecot is configured.
pub fn dovecot_target(runtime: &tokio::runtime::Runtime) -> Option<Target> {
    let (Some(imap), Some(pop3), Ok(users)) = (
        env_address("MAILSIM_DOVECOT_IMAP"),
        env_address("MAILSIM_DOVECOT_POP3"),
        std::env::var("MAILSIM_DOVECOT_USERS"),
    ) else {
        eprintln!(
            "skipping Dovecot: set MAILSIM_DOVECOT_IMAP, MAILSIM_DOVECOT_POP3 and \
             MAILSIM_DOVECOT_USERS (eval \"$(scripts/dovecot-test-server start)\")"
        );
        return None;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let user = format!("bench-{}-{nanos}@test", std::process::id());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&users)
        .unwrap_or_else(|error| panic!("cannot open {users}: {error}"));
    // One write per line, so concurrent writers never interleave a line.
    file.write_all(format!("{user}:{{PLAIN}}{PASSWORD}\n").as_bytes())
        .expect("append account");
    // Dovecot rereads its passwd-file at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    let target = Target {
        imap,
        pop3,
        user,
        password: PASSWORD.to_owned(),
    };
    runtime.block_on(fill(&target));
    Some(target)
}

/// Logs in, then appends the messages with pipelined APPENDs (LITERAL+).
/// Pipelining starts after LOGIN succeeds because Dovecot's login process
/// does not buffer megabytes of input for the session it hands over to.
async fn fill(target: &Target) {
    let stream = TcpStream::connect((target.imap.0.as_str(), target.imap.1))
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    lines.next_line().await.expect("greeting");
    let login = format!("L LOGIN \"{}\" \"{}\"\r\n", target.user, target.password);
    write
        .write_all(login.as_bytes())
        .await
        .expect("write LOGIN");
    while let Some(line) = lines.next_line().await.expect("read") {
        if line.starts_with("L ") {
            assert!(line.starts_with("L OK"), "LOGIN failed: {line}");
            break;
        }
    }
    let mut commands = Vec::new();
    for index in 0..MESSAGES {
        let body = message(&target.user, index);
        commands
            .extend_from_slice(format!("A{index} APPEND INBOX {{{}+}}\r\n", body.len()).as_bytes());
        commands.extend_from_slice(body.as_bytes());
        commands.extend_from_slice(b"\r\n");
    }
    commands.extend_from_slice(b"Z LOGOUT\r\n");
    let writer = tokio::spawn(async move { write.write_all(&commands).await });
    let mut ok = 0;
    while let Some(line) = lines.next_line().await.expect("read") {
        if line.starts_with('A') {
            assert!(line.contains(" OK"), "APPEND failed: {line}");
            ok += 1;
        }
        if line.starts_with("Z ") {
            break;
        }
    }
    writer.await.expect("writer").expect("write APPENDs");
    assert_eq!(ok, MESSAGES, "every APPEND must succeed");
}

/// Reads until the last complete line starts with `tag`; returns the bytes read.
async fn read_tagged(stream: &mut TcpStream, chunk: &mut [u8], tag: &[u8]) -> usize {
    let mut total = 0;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let count = stream.read(chunk).await.expect("read");
        assert!(count > 0, "server closed the connection");
        total += count;
        // Keep only the unfinished last line, so the check stays cheap.
        tail.extend_from_slice(&chunk[..count]);
        if tail.ends_with(b"\r\n") {
            let body = &tail[..tail.len() - 2];
            let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(body);
            if last.starts_with(tag) {
                return total;
            }
        }
        if let Some(end) = tail.iter().rposition(|&b| b == b'\n') {
            tail.drain(..=end);
        }
    }
}

/// The raw IMAP client: LOGIN, SELECT and `UID FETCH 1:* (BODY.PEEK[])`,
/// reading the response bytes without parsing the literals. Returns the
/// bytes read.
pub async fn raw_imap(target: &Target) -> usize {
    let mut stream = TcpStream::connect((target.imap.0.as_str(), target.imap.1))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut chunk = vec![0u8; 64 * 1024];
    read_tagged(&mut stream, &mut chunk, b"* OK").await;
    let mut total = 0;
    for (tag, command) in [
        (
            "a ",
            format!("LOGIN \"{}\" \"{}\"", target.user, target.password),
        ),
        ("b ", "SELECT INBOX".to_owned()),
        ("c ", "UID FETCH 1:* (BODY.PEEK[])".to_owned()),
    ] {
        stream
            .write_all(format!("{tag}{command}\r\n").as_bytes())
            .await
            .expect("write");
        total += read_tagged(&mut stream, &mut chunk, tag.as_bytes()).await;
    }
    stream.write_all(b"d LOGOUT\r\n").await.expect("write");
    read_tagged(&mut stream, &mut chunk, b"d ").await;
    total
}

/// Raw buffered input that splits responses at a terminator.
struct RawReader {
    stream: TcpStream,
    buffer: Vec<u8>,
    chunk: Vec<u8>,
}

impl RawReader {
    /// Reads through the next line that ends with `marker` (which must end
    /// in LF); returns the bytes of that response.
    async fn response(&mut self, marker: &[u8]) -> usize {
        let mut searched = 0;
        loop {
            while let Some(offset) = self.buffer[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + offset + 1;
                if self.buffer[..end].ends_with(marker) {
                    self.buffer.drain(..end);
                    return end;
                }
                searched = end;
            }
            let count = self.stream.read(&mut self.chunk).await.expect("read");
            assert!(count > 0, "server closed the connection");
            self.buffer.extend_from_slice(&self.chunk[..count]);
        }
    }
}

/// The raw POP3 client: USER, PASS and RETR of every message in windows of
/// 50 pipelined commands, as the engine sends them. Returns the bytes read.
pub async fn raw_pop3(target: &Target) -> usize {
    const WINDOW: usize = 50;
    let stream = TcpStream::connect((target.pop3.0.as_str(), target.pop3.1))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = RawReader {
        stream,
        buffer: Vec::with_capacity(256 * 1024),
        chunk: vec![0; 64 * 1024],
    };
    reader.response(b"\r\n").await;
    for command in [
        format!("USER {}\r\n", target.user),
        format!("PASS {PASSWORD}\r\n"),
    ] {
        reader
            .stream
            .write_all(command.as_bytes())
            .await
            .expect("write");
        reader.response(b"\r\n").await;
    }
    let mut total = 0;
    let numbers: Vec<usize> = (1..=MESSAGES).collect();
    for window in numbers.chunks(WINDOW) {
        let commands: String = window.iter().map(|n| format!("RETR {n}\r\n")).collect();
        reader
            .stream
            .write_all(commands.as_bytes())
            .await
            .expect("write");
        for _ in window {
            total += reader.response(b"\r\n.\r\n").await;
        }
    }
    // Wait for QUIT's answer: the server releases the maildrop lock only
    // then, and the next iteration logs in again.
    reader.stream.write_all(b"QUIT\r\n").await.expect("write");
    reader.response(b"\r\n").await;
    total
}

/// hoodiecrow-imap, started by `scripts/hoodiecrow-server.js`, when
/// `MAILSIM_BENCH_HOODIECROW` names its address; `None` with a note otherwise.
pub fn hoodiecrow_target() -> Option<Target> {
    let Some(imap) = env_address("MAILSIM_BENCH_HOODIECROW") else {
        eprintln!(
            "skipping hoodiecrow-imap: start scripts/hoodiecrow-server.js and set \
             MAILSIM_BENCH_HOODIECROW=127.0.0.1:PORT"
        );
        return None;
    };
    Some(Target {
        pop3: imap.clone(),
        imap,
        user: "testuser".to_owned(),
        password: "testpass".to_owned(),
    })
}
