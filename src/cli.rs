//! The `mailsim` command line.
//!
//! Exit status: 0 on success, 1 when a scenario's expectation fails or a
//! command fails at runtime, 2 for invalid usage or input.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::scenario::Scenario;
use crate::serve::{self, ServeArgs};

/// Exit status for a command that ran and failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for invalid usage or input; nothing ran.
pub const EXIT_USAGE: u8 = 2;

/// Mail server simulator and test harness for email sync engines.
#[derive(Debug, Parser)]
#[command(name = "mailsim", version, about)]
pub struct Cli {
    /// Log filter in `tracing` syntax, such as `info` or `sim=debug`; the
    /// RUST_LOG variable is used when this is absent.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the simulated IMAP, POP3 and SMTP service on TCP until Ctrl-C.
    Serve(ServeArgs),
    /// Check scenario files without running them.
    Check(CheckArgs),
}

/// Options of `mailsim check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Scenario files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,
}

/// Parses the command line, runs the command and returns its exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.log.as_deref(), "info");
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Check(args) => check(&args),
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    let mut failed = false;
    for file in &args.files {
        match Scenario::load(file) {
            Ok(scenario) => println!(
                "{}: ok ({} mailboxes in {} groups, {} traffic rules, {} faults, {} expectations)",
                file.display(),
                scenario.mailboxes.len(),
                scenario.groups.len(),
                scenario.traffic.len(),
                scenario.faults.len(),
                scenario.expectations.len()
            ),
            Err(error) => {
                eprintln!("{error}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

fn init_logging(filter: Option<&str>, default: &str) {
    let filter = match filter {
        Some(filter) => EnvFilter::new(filter),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
