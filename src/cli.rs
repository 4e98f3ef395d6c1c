//! The `mailsim` command line.
//!
//! Exit status: 0 on success, 1 when a scenario's expectation fails or a
//! command fails at runtime, 2 for invalid usage or input.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::report::{render_html, render_junit, render_text, skipped_expectations};
use crate::runner::{self, RunOptions};
use crate::scenario::{Scenario, Strategy};
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
    /// Run a scenario under each strategy in virtual time and compare them.
    Run(RunArgs),
    /// Sync mailboxes once from a real IMAP or POP3 server and print the records.
    Sync(crate::sync::SyncArgs),
}

/// Report formats of `mailsim run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Strategies side by side, for a terminal or a CI log.
    Text,
    /// The report as JSON (schema in docs/report.md).
    Json,
    /// An HTML page with charts, written to DIR/report.html (needs --out);
    /// stdout gets the text report.
    Html,
}

/// Options of `mailsim run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario file.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,

    /// Run only this strategy (repeatable): forward, individual or mixed.
    #[arg(long = "strategy", value_name = "S")]
    pub strategies: Vec<String>,

    /// Seed of the traffic, replacing the scenario's.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Report format on stdout. With html, DIR/report.html gets the page and
    /// stdout the text report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Also write report.txt and report.json into this folder, creating it,
    /// and report.html with --format html.
    #[arg(long, value_name = "DIR", required_if_eq("format", "html"))]
    pub out: Option<std::path::PathBuf>,

    /// Also write each expectation as a JUnit XML test case to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<std::path::PathBuf>,

    /// Print wall time, simulated messages per second and peak memory on stderr.
    #[arg(long)]
    pub timing: bool,
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
    // In a run, faults and throttling are the subject of the report, not
    // problems of the run, so the engine's and service's logs stay off
    // unless asked for; serve logs its lifecycle.
    let default_filter = match cli.command {
        Command::Serve(_) => "info",
        _ => "off",
    };
    if let Err(error) = init_logging(cli.log.as_deref(), default_filter) {
        eprintln!("mailsim: {error}");
        return ExitCode::from(EXIT_USAGE);
    }
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Check(args) => check(&args),
        Command::Run(args) => run(&args),
        Command::Sync(args) => crate::sync::run(args),
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let scenario = match Scenario::load(&args.file) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut strategies = Vec::new();
    for name in &args.strategies {
        match Strategy::parse(name) {
            Some(strategy) if scenario.strategies.contains(&strategy) => strategies.push(strategy),
            _ => {
                let listed: Vec<&str> = scenario.strategies.iter().map(|s| s.name()).collect();
                eprintln!(
                    "mailsim run: invalid --strategy {name:?}; this scenario compares {}",
                    listed.join(", ")
                );
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    if let Err(message) = runner::check_engine_configs(&scenario) {
        eprintln!("{message}");
        return ExitCode::from(EXIT_USAGE);
    }
    let skipped = if strategies.is_empty() {
        Vec::new()
    } else {
        skipped_expectations(&scenario, &strategies)
    };
    match skipped.len() {
        0 => {}
        1 => eprintln!(
            "mailsim run: 1 expectation skipped: it checks or compares with a strategy --strategy leaves out"
        ),
        count => eprintln!(
            "mailsim run: {count} expectations skipped: they check or compare with a strategy --strategy leaves out"
        ),
    }
    // Fail before a long run, not after it, when the outputs cannot be written.
    if let Some(dir) = &args.out
        && let Err(error) = std::fs::create_dir_all(dir)
    {
        eprintln!(
            "mailsim run: cannot create the output folder {}: {error}; give --out a folder path",
            dir.display()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(file) = &args.junit
        && let Err(error) = std::fs::File::create(file)
    {
        eprintln!(
            "mailsim run: cannot write the JUnit report to {}: {error}",
            file.display()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let options = RunOptions {
        strategies,
        seed: args.seed,
        progress: true,
        trace: false,
    };
    let (report, timing) = match runner::run(&scenario, &options) {
        Ok(result) => result,
        Err(error) => {
            eprintln!("mailsim run: {}: {error}", args.file.display());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let text = render_text(&report);
    let json = report.to_json();
    if let Some(dir) = &args.out {
        let written = std::fs::write(dir.join("report.txt"), &text)
            .and_then(|()| std::fs::write(dir.join("report.json"), &json))
            .and_then(|()| match args.format {
                Format::Html => std::fs::write(dir.join("report.html"), render_html(&report)),
                Format::Text | Format::Json => Ok(()),
            });
        if let Err(error) = written {
            eprintln!(
                "mailsim run: cannot write the report into {}: {error}",
                dir.display()
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    if let Some(file) = &args.junit
        && let Err(error) = std::fs::write(file, render_junit(&report, &timing, &skipped))
    {
        eprintln!(
            "mailsim run: failed to write the JUnit report to {}: {error}",
            file.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let shown = match args.format {
        Format::Text | Format::Html => &text,
        Format::Json => &json,
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(shown.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("mailsim run: cannot write the report to stdout: {error}");
        return ExitCode::from(EXIT_FAILURE);
    }
    if args.timing {
        eprint!("{}", timing.render());
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    let mut failed = false;
    for file in &args.files {
        let checked = Scenario::load(file)
            .map_err(|error| error.to_string())
            .and_then(|scenario| runner::check_engine_configs(&scenario).map(|()| scenario));
        match checked {
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

fn init_logging(filter: Option<&str>, default: &str) -> Result<(), String> {
    let filter = match filter {
        Some(filter) => EnvFilter::try_new(filter)
            .map_err(|error| format!("invalid --log filter {filter:?}: {error}; use a level such as info or a directive such as sim=debug"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    // mailin writes every SMTP line it parses to its log, credentials
    // included; the SMTP session logs the wire itself, with them redacted.
    let filter = filter.add_directive("mailin=off".parse().map_err(|error| format!("{error}"))?);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    Ok(())
}
