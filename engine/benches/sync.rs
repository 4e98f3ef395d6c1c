//! Messages per second: the engine syncing a 10,000-message mailbox from
//! Dovecot over loopback, next to a raw client that only reads the same
//! bytes from the same server.
//!
//! Needs the Dovecot that `scripts/dovecot-test-server start` runs, named by
//! `MAILSIM_DOVECOT_IMAP`, `MAILSIM_DOVECOT_POP3` and `MAILSIM_DOVECOT_USERS`.
//! Setup appends the messages to a fresh account once. Every iteration then
//! syncs the whole mailbox into an empty store (the engine) or downloads it
//! (the raw client).
//!
//! Run: `cargo bench -p engine --bench sync`.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::{
    Config, Credentials, MailboxConfig, MailboxId, MemoryStore, Owner, Protocol, ServerProfile,
    TcpConnector, TrackingFilter, sync_once,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const MESSAGES: usize = 10_000;
const PASSWORD: &str = "bench-pw";

struct Server {
    imap: (String, u16),
    pop3: (String, u16),
}

fn address(name: &str) -> (String, u16) {
    let value = std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start Dovecot with \
             `eval \"$(scripts/dovecot-test-server start)\"` before benchmarking"
        )
    });
    let (host, port) = value
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{name}={value:?} is not host:port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("{name}={value:?} has an invalid port"));
    (host.to_owned(), port)
}

/// Builds a message of about 3.6 KB, the size the scenario runner's traffic
/// model uses.
fn message(user: &str, index: usize) -> String {
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
    format!(
        "From: Carol <carol@example.org>\r\nTo: {user}\r\nSubject: Order {index}\r\n\
Message-ID: <{index}.{user}>\r\nDate: Mon, 1 Jan 2024 09:00:00 +0000\r\n\r\n{}",
        line.repeat(48)
    )
}

fn fresh_user() -> String {
    let users = std::env::var("MAILSIM_DOVECOT_USERS")
        .unwrap_or_else(|_| panic!("MAILSIM_DOVECOT_USERS is not set"));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let user = format!("bench-{}-{nanos}@test", std::process::id());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&users)
        .unwrap_or_else(|error| panic!("cannot open {users}: {error}"));
    // One write per line: concurrent tests append to the same file, and
    // O_APPEND keeps a single small write whole.
    let line = format!("{user}:{{PLAIN}}{PASSWORD}\n");
    file.write_all(line.as_bytes()).expect("append account");
    // Dovecot checks the passwd-file at most once a second (Dovecot 2.3,
    // passwd_file_sync in db-passwd-file.c).
    std::thread::sleep(Duration::from_millis(1100));
    user
}

/// Logs in, then appends the messages with pipelined APPENDs (LITERAL+).
/// Pipelining starts after LOGIN succeeds because Dovecot's login process
/// does not buffer megabytes of input for the session it hands over to.
async fn fill(server: &Server, user: &str) {
    let stream = TcpStream::connect((server.imap.0.as_str(), server.imap.1))
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    lines.next_line().await.expect("greeting");
    write
        .write_all(format!("L LOGIN \"{user}\" \"{PASSWORD}\"\r\n").as_bytes())
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
        let body = message(user, index);
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

fn config(server: &Server, protocol: Protocol, user: &str) -> Config {
    let (host, port) = match protocol {
        Protocol::Imap => &server.imap,
        Protocol::Pop3 => &server.pop3,
    };
    let profile = ServerProfile::new("dovecot", host.clone(), *port, protocol);
    let mailbox = MailboxConfig::direct("inbox", Owner::user("bench"), user, "dovecot")
        .with_credentials(Credentials::new(user, PASSWORD))
        .with_filter(TrackingFilter::All);
    let mut config = Config {
        profiles: vec![profile],
        mailboxes: vec![mailbox],
        ..Config::default()
    };
    config.settings.max_messages_per_cycle = MESSAGES;
    config
}

async fn engine_sync(config: &Config) {
    let store = MemoryStore::new();
    let report = sync_once(config, &[MailboxId::new("inbox")], &store, &TcpConnector)
        .await
        .expect("valid config");
    assert_eq!(report.mailboxes[0].error, None);
    assert_eq!(report.records_created(), MESSAGES);
}

/// Raw buffered input that splits responses at a terminator.
struct RawReader {
    stream: TcpStream,
    buffer: Vec<u8>,
    chunk: Vec<u8>,
}

impl RawReader {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buffer: Vec::with_capacity(256 * 1024),
            chunk: vec![0; 64 * 1024],
        }
    }

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

/// Reads until the last complete line starts with `tag`; returns the bytes
/// read.
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

/// LOGIN, SELECT and one UID FETCH of every body, reading raw bytes.
async fn raw_imap(server: &Server, user: &str) -> usize {
    let mut stream = TcpStream::connect((server.imap.0.as_str(), server.imap.1))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut chunk = vec![0u8; 64 * 1024];
    read_tagged(&mut stream, &mut chunk, b"* OK").await;
    let mut total = 0;
    for (tag, command) in [
        ("a ", format!("LOGIN \"{user}\" \"{PASSWORD}\"")),
        ("b ", "SELECT INBOX".to_owned()),
        ("c ", "UID FETCH 1:* (UID BODY.PEEK[])".to_owned()),
    ] {
        stream
            .write_all(format!("{tag}{command}\r\n").as_bytes())
            .await
            .expect("write");
        total += read_tagged(&mut stream, &mut chunk, tag.as_bytes()).await;
    }
    stream.write_all(b"d LOGOUT\r\n").await.expect("write");
    total
}

/// USER, PASS and RETR of every message, reading raw bytes. RETRs are sent
/// in windows of 50, as the engine does, because Dovecot offers PIPELINING.
async fn raw_pop3(server: &Server, user: &str) -> usize {
    const WINDOW: usize = 50;
    let stream = TcpStream::connect((server.pop3.0.as_str(), server.pop3.1))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = RawReader::new(stream);
    reader.response(b"\r\n").await;
    for command in [format!("USER {user}\r\n"), format!("PASS {PASSWORD}\r\n")] {
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
    reader.stream.write_all(b"QUIT\r\n").await.expect("write");
    total
}

fn dovecot(c: &mut Criterion) {
    let server = Server {
        imap: address("MAILSIM_DOVECOT_IMAP"),
        pop3: address("MAILSIM_DOVECOT_POP3"),
    };
    // One thread, as the scenario runner drives the engine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let user = fresh_user();
    runtime.block_on(fill(&server, &user));
    let imap = config(&server, Protocol::Imap, &user);
    let pop3 = config(&server, Protocol::Pop3, &user);

    let mut group = c.benchmark_group("dovecot_10k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("imap_engine", |b| {
        b.to_async(&runtime).iter(|| engine_sync(&imap))
    });
    group.bench_function("imap_raw_client", |b| {
        b.to_async(&runtime).iter(|| raw_imap(&server, &user))
    });
    group.bench_function("pop3_engine", |b| {
        b.to_async(&runtime).iter(|| engine_sync(&pop3))
    });
    group.bench_function("pop3_raw_client", |b| {
        b.to_async(&runtime).iter(|| raw_pop3(&server, &user))
    });
    group.finish();
}

criterion_group!(benches, dovecot);
criterion_main!(benches);
