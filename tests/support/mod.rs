//! Helpers shared by integration tests: a `mailsim serve` child process and
//! running external clients.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A `mailsim serve` process on ephemeral loopback ports, stopped on drop.
pub struct Served {
    child: Child,
    pub imap: SocketAddr,
    pub pop3: SocketAddr,
    pub smtp: SocketAddr,
}

impl Served {
    /// Starts `mailsim serve` with every port set to 0 and reads the bound
    /// addresses from its banner.
    pub fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailsim"))
            .args([
                "--log",
                "warn",
                "serve",
                "--imap-port",
                "0",
                "--pop3-port",
                "0",
                "--smtp-port",
                "0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mailsim binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut addresses = std::collections::BTreeMap::new();
        for line in lines.by_ref() {
            let line = line.expect("banner is UTF-8");
            if line.starts_with("Press Ctrl-C") {
                break;
            }
            let mut words = line.split_whitespace();
            if let (Some(name @ ("imap" | "pop3" | "smtp")), Some(address)) =
                (words.next(), words.next())
            {
                addresses.insert(
                    name.to_owned(),
                    address.parse::<SocketAddr>().expect("address"),
                );
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let get = |name: &str| {
            *addresses
                .get(name)
                .unwrap_or_else(|| panic!("banner lacks {name}"))
        };
        Self {
            imap: get("imap"),
            pop3: get("pop3"),
            smtp: get("smtp"),
            child,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SIGINT exercises the Ctrl-C path; kill is the fallback.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a file under `tests/`.
pub fn test_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(relative)
}

/// Runs `program` and fails the test with its output unless it exits with 0.
pub fn run_ok(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {program} (is it installed? see scripts/test-deps): {error}")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
