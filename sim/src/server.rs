//! TCP listeners, in-memory connections and [`MailSim`], the embeddable test server.
//!
//! A listener accepts connections and runs one session task per connection,
//! at most [`Limits::max_connections`] per protocol; further connections get
//! the protocol's "too many connections" answer. [`connect`] opens the same
//! session over an in-memory pipe, which is how the scenario runner reaches
//! the service in virtual time.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::io::DuplexStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::clock::SimClock;
use crate::conn::Peer;
use crate::forward::ForwardRule;
use crate::limits::Limits;
use crate::service::{Service, ServiceBuilder};
use crate::store::{AccountSpec, Protocol, StoreError};
use crate::{imap, pop3, smtp};

/// Capacity of each direction of an in-memory connection, in bytes.
const PIPE_CAPACITY: usize = 64 * 1024;

/// How long a stopping server waits for open sessions before it aborts them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Opens an in-memory connection to `service`: a session for `protocol`
/// runs on one end of a duplex pipe, and the other end is returned.
pub fn connect(service: &Service, protocol: Protocol) -> DuplexStream {
    let (client, server) = tokio::io::duplex(PIPE_CAPACITY);
    let peer = Peer {
        addr: None,
        session: service.next_session_id(),
    };
    tokio::spawn(run_session(service.clone(), protocol, server, peer));
    client
}

async fn run_session<S>(service: Service, protocol: Protocol, stream: S, peer: Peer)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let result = match protocol {
        Protocol::Imap => imap::serve(service, stream, peer).await,
        Protocol::Pop3 => pop3::serve(service, stream, peer).await,
        Protocol::Smtp => smtp::serve(service, stream, peer).await,
    };
    if let Err(error) = result {
        tracing::debug!(
            protocol = protocol.name(),
            session = peer.session,
            %error,
            "session ended with an I/O error"
        );
    }
}

/// Where the listeners bind. Port 0 asks the OS for a free port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// Address for every listener; loopback by default.
    pub address: IpAddr,
    /// IMAP port; `None` disables IMAP.
    pub imap: Option<u16>,
    /// POP3 port; `None` disables POP3.
    pub pop3: Option<u16>,
    /// SMTP port; `None` disables SMTP.
    pub smtp: Option<u16>,
}

impl Default for Bind {
    /// Loopback, every protocol on an ephemeral port.
    fn default() -> Self {
        Self {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            imap: Some(0),
            pop3: Some(0),
            smtp: Some(0),
        }
    }
}

/// Why the server did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen for {protocol} on {address}: {source}")]
    Bind {
        /// The protocol's name.
        protocol: &'static str,
        /// The requested address.
        address: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// An account, message or rule was invalid.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A message was addressed to an unknown account.
    #[error("message for unknown account {0}")]
    UnknownRecipient(String),
}

/// A mail service listening on TCP, for tests and for `mailsim serve`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::io::{BufRead, BufReader, Write};
///
/// let sim = sim::MailSim::builder()
///     .account("alice@example.com", "secret")
///     .message("alice@example.com", "From: bob@example.org\r\nSubject: Hi\r\n\r\nHello\r\n")
///     .start()
///     .await?;
///
/// // Any client can now connect; here, a plain blocking POP3 exchange.
/// let addr = sim.pop3_addr().expect("POP3 is enabled by default");
/// let lines = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
///     let stream = std::net::TcpStream::connect(addr)?;
///     let mut reader = BufReader::new(stream.try_clone()?);
///     let mut writer = stream;
///     let mut lines = Vec::new();
///     for command in ["", "USER alice@example.com\r\n", "PASS secret\r\n", "STAT\r\n", "QUIT\r\n"] {
///         writer.write_all(command.as_bytes())?;
///         let mut line = String::new();
///         reader.read_line(&mut line)?;
///         lines.push(line);
///     }
///     Ok(lines)
/// })
/// .await??;
/// assert!(lines[3].starts_with("+OK 1 "), "{lines:?}");
///
/// sim.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct MailSim {
    service: Service,
    imap: Option<SocketAddr>,
    pop3: Option<SocketAddr>,
    smtp: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    listeners: JoinSet<()>,
}

impl std::fmt::Debug for MailSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSim")
            .field("imap", &self.imap)
            .field("pop3", &self.pop3)
            .field("smtp", &self.smtp)
            .finish_non_exhaustive()
    }
}

impl MailSim {
    /// A builder for a server on loopback with ephemeral ports.
    pub fn builder() -> MailSimBuilder {
        MailSimBuilder::default()
    }

    /// The service behind the listeners: store, policies, faults, delivery.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The IMAP listener's address, if enabled.
    pub fn imap_addr(&self) -> Option<SocketAddr> {
        self.imap
    }

    /// The POP3 listener's address, if enabled.
    pub fn pop3_addr(&self) -> Option<SocketAddr> {
        self.pop3
    }

    /// The SMTP listener's address, if enabled.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.smtp
    }

    /// Stops accepting, gives open sessions a moment to finish, then ends them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.listeners.join_next().await.is_some() {}
    }
}

/// Builds and starts a [`MailSim`].
#[derive(Default)]
pub struct MailSimBuilder {
    service: ServiceBuilder,
    bind: Bind,
    accounts: Vec<AccountSpec>,
    messages: Vec<(String, Bytes)>,
    rules: Vec<(String, ForwardRule)>,
}

impl MailSimBuilder {
    /// Adds an unthrottled account with an INBOX.
    pub fn account(self, address: impl Into<String>, password: impl Into<String>) -> Self {
        self.account_spec(AccountSpec::new(address, password))
    }

    /// Adds an account with its policy and folders.
    pub fn account_spec(mut self, spec: AccountSpec) -> Self {
        self.accounts.push(spec);
        self
    }

    /// Adds a message to an account's INBOX at start.
    pub fn message(mut self, address: impl Into<String>, raw: impl Into<Bytes>) -> Self {
        self.messages.push((address.into(), raw.into()));
        self
    }

    /// Adds a forwarding rule to an account.
    pub fn forward(mut self, address: impl Into<String>, rule: ForwardRule) -> Self {
        self.rules.push((address.into(), rule));
        self
    }

    /// Sets where the listeners bind.
    pub fn bind(mut self, bind: Bind) -> Self {
        self.bind = bind;
        self
    }

    /// Sets the session limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.service = self.service.limits(limits);
        self
    }

    /// Sets the clock.
    pub fn clock(mut self, clock: SimClock) -> Self {
        self.service = self.service.clock(clock);
        self
    }

    /// Sets the host name in greetings.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.service = self.service.hostname(hostname);
        self
    }

    /// Creates the service, binds the listeners and starts accepting.
    pub async fn start(self) -> Result<MailSim, StartError> {
        let service = self.service.build();
        for spec in self.accounts {
            service.add_account(spec)?;
        }
        for (address, rule) in self.rules {
            service.set_forward_rule(&address, rule)?;
        }
        // Rules are in place first, so the initial messages are forwarded too.
        for (address, raw) in self.messages {
            service
                .deliver(&address, raw, None)
                .map_err(|_| StartError::UnknownRecipient(address.clone()))?;
        }
        let listening = listen(service.clone(), &self.bind).await?;
        Ok(MailSim {
            service,
            imap: listening.imap,
            pop3: listening.pop3,
            smtp: listening.smtp,
            stop: listening.stop,
            listeners: listening.tasks,
        })
    }
}

/// Bound listeners and the switch that stops them.
pub struct Listening {
    /// The IMAP address, if enabled.
    pub imap: Option<SocketAddr>,
    /// The POP3 address, if enabled.
    pub pop3: Option<SocketAddr>,
    /// The SMTP address, if enabled.
    pub smtp: Option<SocketAddr>,
    /// Send `true` to stop accepting and end the sessions.
    pub stop: watch::Sender<bool>,
    /// One task per listener; each ends after its sessions have.
    pub tasks: JoinSet<()>,
}

/// Binds a listener for each enabled protocol of `bind` and serves `service` on them.
pub async fn listen(service: Service, bind: &Bind) -> Result<Listening, StartError> {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut addresses = [None; 3];
    let protocols = [
        (Protocol::Imap, bind.imap),
        (Protocol::Pop3, bind.pop3),
        (Protocol::Smtp, bind.smtp),
    ];
    for (index, (protocol, port)) in protocols.into_iter().enumerate() {
        let Some(port) = port else { continue };
        let address = SocketAddr::new(bind.address, port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StartError::Bind {
                protocol: protocol.name(),
                address,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| StartError::Bind {
            protocol: protocol.name(),
            address,
            source,
        })?;
        tracing::info!(protocol = protocol.name(), address = %local, "listening");
        addresses[index] = Some(local);
        tasks.spawn(accept_loop(
            service.clone(),
            protocol,
            listener,
            stopped.clone(),
        ));
    }
    Ok(Listening {
        imap: addresses[0],
        pop3: addresses[1],
        smtp: addresses[2],
        stop,
        tasks,
    })
}

async fn accept_loop(
    service: Service,
    protocol: Protocol,
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(service.limits().max_connections));
    let mut sessions = JoinSet::new();
    let mut refused: u64 = 0;
    loop {
        // Reap finished sessions so the set does not grow with every connection.
        while sessions.try_join_next().is_some() {}
        tokio::select! {
            biased;
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    match Arc::clone(&slots).try_acquire_owned() {
                        Ok(slot) => {
                            let peer = Peer { addr: Some(addr), session: service.next_session_id() };
                            let service = service.clone();
                            sessions.spawn(async move {
                                run_session(service, protocol, stream, peer).await;
                                drop(slot);
                            });
                        }
                        Err(_) => {
                            // One line per burst of refusals, not per connection.
                            refused += 1;
                            if refused.is_power_of_two() {
                                tracing::warn!(
                                    protocol = protocol.name(),
                                    %addr,
                                    refused,
                                    "connection limit reached; refusing connections"
                                );
                            }
                            sessions.spawn(refuse_busy(protocol, stream, service.hostname().to_owned()));
                        }
                    }
                }
                Err(error) => {
                    // Accept errors (such as running out of file descriptors)
                    // are transient; back off briefly instead of spinning.
                    tracing::warn!(protocol = protocol.name(), %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sessions.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
    }
    tracing::info!(protocol = protocol.name(), "listener stopped");
}

async fn refuse_busy(protocol: Protocol, stream: TcpStream, hostname: String) {
    match protocol {
        Protocol::Imap => imap::refuse_busy(stream).await,
        Protocol::Pop3 => pop3::refuse_busy(stream).await,
        Protocol::Smtp => smtp::refuse_busy(stream, &hostname).await,
    }
}
