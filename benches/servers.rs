//! The simulated service as a server, against Dovecot and hoodiecrow-imap
//! in the same run: a raw client's `UID FETCH 1:* (BODY.PEEK[])` of 10,000
//! messages of about 3.6 KB, POP3 RETR of the same, APPEND into the store
//! and SMTP ingest on one connection.
//!
//! Run:
//!   eval "$(scripts/dovecot-test-server start)"
//!   npm install --prefix target/hoodiecrow hoodiecrow-imap
//!   NODE_PATH=target/hoodiecrow/node_modules node scripts/hoodiecrow-server.js 10993 &
//!   MAILSIM_BENCH_HOODIECROW=127.0.0.1:10993 cargo bench --bench servers

mod support;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use support::{MESSAGES, Target};

/// The allocator of the `mailsim` binary, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Messages sent per APPEND and SMTP iteration.
const BATCH: usize = 2_000;

fn uid_fetch(c: &mut Criterion, runtime: &tokio::runtime::Runtime, targets: &[(&str, Target)]) {
    let mut group = c.benchmark_group("uid_fetch_10k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    for (name, target) in targets {
        group.bench_with_input(BenchmarkId::from_parameter(name), target, |b, target| {
            b.to_async(runtime).iter(|| support::raw_imap(target))
        });
    }
    group.finish();
}

fn pop3_retr(c: &mut Criterion, runtime: &tokio::runtime::Runtime, targets: &[(&str, Target)]) {
    let mut group = c.benchmark_group("pop3_retr_10k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(MESSAGES as u64));
    for (name, target) in targets {
        group.bench_with_input(BenchmarkId::from_parameter(name), target, |b, target| {
            b.to_async(runtime).iter(|| support::raw_pop3(target))
        });
    }
    group.finish();
}

/// Appends `BATCH` messages over one IMAP connection, pipelined with LITERAL+.
async fn append(address: (String, u16), user: String, password: String) {
    let stream = TcpStream::connect((address.0.as_str(), address.1))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    lines.next_line().await.expect("greeting");
    let mut commands = format!("L LOGIN \"{user}\" \"{password}\"\r\n").into_bytes();
    for index in 0..BATCH {
        let body = support::message(&user, index);
        commands
            .extend_from_slice(format!("A{index} APPEND INBOX {{{}+}}\r\n", body.len()).as_bytes());
        commands.extend_from_slice(body.as_bytes());
        commands.extend_from_slice(b"\r\n");
    }
    commands.extend_from_slice(b"Z LOGOUT\r\n");
    let writer = tokio::spawn(async move { write.write_all(&commands).await });
    let mut ok = 0;
    while let Some(line) = lines.next_line().await.expect("read") {
        if line.starts_with('A') && line.contains(" OK") {
            ok += 1;
        }
        if line.starts_with("Z ") {
            break;
        }
    }
    writer.await.expect("writer").expect("write");
    assert_eq!(ok, BATCH, "every APPEND must succeed");
}

/// Sends `BATCH` messages over one SMTP connection, one transaction each,
/// waiting for every reply as a client without PIPELINING does.
async fn smtp_ingest(address: std::net::SocketAddr, to: String) {
    let stream = TcpStream::connect(address).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let reply = async |lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>| {
        // Multi-line replies continue with "250-".
        loop {
            let line = lines.next_line().await.expect("read").expect("a reply");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    };
    reply(&mut lines).await;
    write
        .write_all(b"EHLO bench.example\r\n")
        .await
        .expect("write");
    reply(&mut lines).await;
    for index in 0..BATCH {
        for command in [
            "MAIL FROM:<carol@example.org>\r\n".to_owned(),
            format!("RCPT TO:<{to}>\r\n"),
            "DATA\r\n".to_owned(),
        ] {
            write.write_all(command.as_bytes()).await.expect("write");
            let line = reply(&mut lines).await;
            assert!(line.starts_with('2') || line.starts_with('3'), "{line}");
        }
        let body = support::message(&to, index);
        write.write_all(body.as_bytes()).await.expect("write");
        write.write_all(b"\r\n.\r\n").await.expect("write");
        let line = reply(&mut lines).await;
        assert!(line.starts_with("250"), "{line}");
    }
    write.write_all(b"QUIT\r\n").await.expect("write");
}

fn ingest(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let server = runtime.block_on(async {
        sim::MailSim::builder()
            .account("append@example.com", support::PASSWORD)
            .account("smtp@example.com", support::PASSWORD)
            .start()
            .await
            .expect("server starts")
    });
    let imap = server.imap_addr().expect("imap");
    let smtp = server.smtp_addr().expect("smtp");
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("imap_append", |b| {
        b.to_async(runtime).iter(|| {
            append(
                (imap.ip().to_string(), imap.port()),
                "append@example.com".to_owned(),
                support::PASSWORD.to_owned(),
            )
        })
    });
    group.bench_function("smtp_one_connection", |b| {
        b.to_async(runtime)
            .iter(|| smtp_ingest(smtp, "smtp@example.com".to_owned()))
    });
    group.finish();
    runtime.block_on(server.shutdown());
}

fn servers(c: &mut Criterion) {
    // The clients run on one thread; each server runs on its own threads
    // (the simulated service on its own runtime), as separate processes would.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (sim, _guard) = support::sim_target();
    let mut imap_targets = vec![("mailsim", sim.clone())];
    let mut pop3_targets = vec![("mailsim", sim)];
    if let Some(dovecot) = support::dovecot_target(&runtime) {
        imap_targets.push(("dovecot", dovecot.clone()));
        pop3_targets.push(("dovecot", dovecot));
    }
    if let Some(hoodiecrow) = support::hoodiecrow_target() {
        imap_targets.push(("hoodiecrow", hoodiecrow));
    }
    uid_fetch(c, &runtime, &imap_targets);
    pop3_retr(c, &runtime, &pop3_targets);
    ingest(c, &runtime);
}

criterion_group!(benches, servers);
criterion_main!(benches);
