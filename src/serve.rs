//! `mailsim serve`: the simulated service on TCP, with the demo
//! organisation or a scenario's.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::cli::{EXIT_FAILURE, EXIT_USAGE};
use crate::runner::{self, traffic::Plan};
use crate::scenario::{Scenario, Strategy};

/// Options of `mailsim serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback exposes the test
    /// accounts to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// IMAP port; 0 picks a free port.
    #[arg(long, default_value_t = 1143)]
    pub imap_port: u16,

    /// POP3 port; 0 picks a free port.
    #[arg(long, default_value_t = 1110)]
    pub pop3_port: u16,

    /// SMTP port; 0 picks a free port.
    #[arg(long, default_value_t = 2525)]
    pub smtp_port: u16,

    /// Password of every account.
    #[arg(
        long,
        alias = "demo-password",
        default_value = "demo",
        env = "MAILSIM_PASSWORD",
        hide_env_values = true
    )]
    pub password: String,

    /// Serve this scenario's mailboxes, per-mailbox limits, faults and
    /// traffic, in real time, instead of the demo organisation.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// With --scenario: whose forwarding rules the mailboxes get
    /// (forward, individual or mixed).
    #[arg(
        long,
        value_name = "S",
        default_value = "forward",
        requires = "scenario"
    )]
    pub strategy: String,
}

/// Runs `mailsim serve` until Ctrl-C.
pub fn run(args: ServeArgs) -> ExitCode {
    let scenario = match &args.scenario {
        None => None,
        Some(path) => match load(path, &args.strategy) {
            Ok(loaded) => Some(loaded),
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mailsim serve: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(serve(args, scenario))
}

fn load(path: &std::path::Path, strategy: &str) -> Result<(Scenario, Strategy), String> {
    let scenario = Scenario::load(path).map_err(|error| error.to_string())?;
    let strategy = Strategy::parse(strategy).ok_or_else(|| {
        format!("mailsim serve: invalid --strategy {strategy:?}; use forward, individual or mixed")
    })?;
    Ok((scenario, strategy))
}

async fn serve(args: ServeArgs, scenario: Option<(Scenario, Strategy)>) -> ExitCode {
    let bind = sim::server::Bind {
        address: args.bind,
        imap: Some(args.imap_port),
        pop3: Some(args.pop3_port),
        smtp: Some(args.smtp_port),
    };
    let mut builder = sim::MailSim::builder().bind(bind);
    if scenario.is_none() {
        builder = sim::demo::add_to(builder, &args.password);
    }
    let server = match builder.start().await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("mailsim serve: {error}");
            eprintln!(
                "Choose other ports with --imap-port, --pop3-port and --smtp-port, or 0 for any free port."
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let printed = match &scenario {
        None => print_demo(&server, &args),
        Some((scenario, strategy)) => {
            match start_scenario(&server, scenario, *strategy, &args.password) {
                Ok(plan) => print_scenario(&server, scenario, *strategy, &plan, &args),
                Err(message) => {
                    eprintln!("mailsim serve: {message}");
                    server.shutdown().await;
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        }
    };
    if let Err(error) = printed {
        eprintln!("mailsim serve: cannot write to stdout: {error}");
    }

    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("mailsim serve: cannot wait for Ctrl-C: {error}");
    }
    tracing::info!("stopping");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Adds the scenario's accounts, rules and faults and starts its traffic.
fn start_scenario(
    server: &sim::MailSim,
    scenario: &Scenario,
    strategy: Strategy,
    password: &str,
) -> Result<Arc<Plan>, String> {
    let service = server.service();
    let password = password.to_owned();
    let accounts = runner::add_accounts(scenario, strategy, service, &|_| password.clone())
        .map_err(|error| error.to_string())?;
    runner::schedule_faults(scenario, strategy, service, &accounts);
    let plan = Arc::new(
        Plan::new(scenario)
            .map_err(|error| format!("cannot read the scenario's .eml files: {error}"))?,
    );
    tokio::spawn(runner::deliver_traffic(
        scenario.clone(),
        Arc::clone(&plan),
        service.clone(),
        tokio::time::Instant::now(),
    ));
    Ok(plan)
}

fn print_listeners(out: &mut impl Write, server: &sim::MailSim) -> std::io::Result<()> {
    writeln!(out, "mailsim serve is listening:")?;
    for (name, address) in [
        ("imap", server.imap_addr()),
        ("pop3", server.pop3_addr()),
        ("smtp", server.smtp_addr()),
    ] {
        if let Some(address) = address {
            writeln!(out, "  {name} {address}")?;
        }
    }
    Ok(())
}

fn password_note(args: &ServeArgs) -> &'static str {
    if args.password == "demo" {
        "password \"demo\""
    } else {
        "password as given"
    }
}

fn print_demo(server: &sim::MailSim, args: &ServeArgs) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    print_listeners(&mut out, server)?;
    writeln!(out, "accounts ({}):", password_note(args))?;
    let store = server.service().store();
    for (address, role) in sim::demo::ACCOUNTS {
        let messages = store
            .account(address)
            .map_or(0, |account| account.mailboxes().inbox().len());
        let rule = server
            .service()
            .forward_rule(address)
            .map(|rule| format!(", forwards to {} as attachment", rule.to))
            .unwrap_or_default();
        writeln!(
            out,
            "  {address:<24} {:<8} {messages:>2} messages{rule}",
            role.name()
        )?;
    }
    writeln!(out, "Press Ctrl-C to stop.")?;
    out.flush()
}

fn print_scenario(
    server: &sim::MailSim,
    scenario: &Scenario,
    strategy: Strategy,
    plan: &Plan,
    args: &ServeArgs,
) -> std::io::Result<()> {
    const SHOWN: usize = 10;
    let mut out = std::io::stdout().lock();
    print_listeners(&mut out, server)?;
    writeln!(
        out,
        "scenario {}, set up for the {} strategy: {} mailboxes ({}):",
        scenario.name,
        strategy.name(),
        scenario.mailboxes.len(),
        password_note(args)
    )?;
    for mailbox in scenario.mailboxes.iter().take(SHOWN) {
        writeln!(out, "  {}", mailbox.address)?;
    }
    if scenario.mailboxes.len() > SHOWN {
        writeln!(out, "  ... and {} more", scenario.mailboxes.len() - SHOWN)?;
    }
    if scenario.uses_forward_mailbox(strategy) {
        writeln!(out, "  {} (forward mailbox)", scenario.forwarding.mailbox)?;
    }
    writeln!(
        out,
        "traffic: {} messages over {}, in real time; faults as scheduled",
        plan.messages.len(),
        crate::scenario::units::format_duration(scenario.duration)
    )?;
    writeln!(out, "Press Ctrl-C to stop.")?;
    out.flush()
}
