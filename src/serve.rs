//! `mailsim serve`: the simulated mail service on TCP.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use clap::Args;

use crate::cli::{EXIT_FAILURE, EXIT_USAGE};

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

    /// Password of every demo account.
    #[arg(
        long,
        default_value = "demo",
        env = "MAILSIM_DEMO_PASSWORD",
        hide_env_values = true
    )]
    pub demo_password: String,
}

/// Runs `mailsim serve` until Ctrl-C.
pub fn run(args: ServeArgs) -> ExitCode {
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
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> ExitCode {
    let bind = sim::server::Bind {
        address: args.bind,
        imap: Some(args.imap_port),
        pop3: Some(args.pop3_port),
        smtp: Some(args.smtp_port),
    };
    let builder = sim::demo::add_to(sim::MailSim::builder().bind(bind), &args.demo_password);
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
    if let Err(error) = print_banner(&server, &args) {
        eprintln!("mailsim serve: cannot write to stdout: {error}");
    }

    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("mailsim serve: cannot wait for Ctrl-C: {error}");
    }
    tracing::info!("stopping");
    server.shutdown().await;
    ExitCode::SUCCESS
}

fn print_banner(server: &sim::MailSim, args: &ServeArgs) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
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
    let password_note = if args.demo_password == "demo" {
        "password \"demo\""
    } else {
        "password as given"
    };
    writeln!(out, "accounts ({password_note}):")?;
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
