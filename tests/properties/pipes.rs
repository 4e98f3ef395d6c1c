//! The engine against the simulated service over in-memory pipes, with a
//! connector that cuts connections after a chosen number of reads and
//! writes, for the crash-and-retry property at engine level.
//!
//! Every read or write that moves at least one byte counts as one I/O
//! operation. The counter runs over all connections in the order the engine
//! opens them, so a cut at operation `k` falls inside whichever connection
//! is open at that point. That may be in the greeting, the login, a
//! listing, a download, a flag update or the logout.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use engine::events::{Event, EventSink};
use engine::records::SourceKey;
use engine::{
    Config, ConnectTarget, Connector, Credentials, Engine, EngineSettings, MailboxConfig,
    MailboxId, MemoryStore, Owner, Protocol, ServerProfile, TrackingFilter, VecSink, sync_once,
};
use mail_builder::MessageBuilder;
use mail_builder::headers::date::Date;
use proptest::prelude::*;
use sim::{AccountSpec, ForwardMode, ForwardRule, Service};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::time::Instant;

const PASSWORD: &str = "secret";
const PROFILE: &str = "sim";
const FORWARD: &str = "forward";

/// How a cut connection fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Reads and writes fail with `ConnectionReset`.
    Reset,
    /// Reads return end of stream and writes fail with `BrokenPipe`, as
    /// when the server closes the connection.
    Close,
}

/// One mailbox of the generated organisation.
#[derive(Clone, Debug)]
pub struct MailboxSpec {
    /// A queue polled directly deletes processed mail; a user keeps it.
    pub queue: bool,
    /// Whether a server-side rule forwards its mail to the forward mailbox.
    pub via_forward: bool,
}

/// One message: its body size and the mailboxes it goes to, as indices
/// into the organisation (duplicates collapse).
#[derive(Clone, Debug)]
pub struct MessageSpec {
    pub body_bytes: usize,
    pub recipients: Vec<prop::sample::Index>,
    /// Delivered after the first `sync_once` attempt, or ten minutes into
    /// the scheduled engine's run, instead of before the start.
    pub late: bool,
}

/// An organisation, its mail and where the connections are cut.
#[derive(Clone, Debug)]
pub struct CrashSpec {
    pub pop3: bool,
    pub mailboxes: Vec<MailboxSpec>,
    pub messages: Vec<MessageSpec>,
    pub batch_size: usize,
    pub max_per_cycle: usize,
    /// Cut points as permille of the I/O operations of an uncut sync.
    pub cuts: Vec<u32>,
    pub mode: CutMode,
    /// Runs the scheduled [`Engine`], which retries on its own, instead of
    /// calling `sync_once` until it succeeds.
    pub scheduled: bool,
}

impl CrashSpec {
    fn name(index: usize) -> String {
        format!("mailbox{}", index + 1)
    }

    fn address(name: &str) -> String {
        format!("{name}@example.com")
    }

    fn uses_forward(&self) -> bool {
        self.mailboxes.iter().any(|mailbox| mailbox.via_forward)
    }

    /// Ids of the mailboxes the engine polls: the direct ones and, when
    /// some mailbox forwards, the forward mailbox.
    pub fn polled(&self) -> Vec<MailboxId> {
        let mut polled: Vec<MailboxId> = self
            .mailboxes
            .iter()
            .enumerate()
            .filter(|(_, mailbox)| !mailbox.via_forward)
            .map(|(index, _)| MailboxId::new(Self::name(index)))
            .collect();
        if self.uses_forward() {
            polled.push(MailboxId::new(FORWARD));
        }
        polled
    }

    /// Returns the names of the mailboxes message `message` goes to.
    pub fn recipients(&self, message: &MessageSpec) -> Vec<String> {
        let mut indices: Vec<usize> = message
            .recipients
            .iter()
            .map(|index| index.index(self.mailboxes.len()))
            .collect();
        indices.sort_unstable();
        indices.dedup();
        indices.into_iter().map(Self::name).collect()
    }

    fn owner(&self, index: usize) -> Owner {
        let name = Self::name(index);
        if self.mailboxes[index].queue {
            Owner::queue(&name)
        } else {
            Owner::user(&name)
        }
    }

    /// Builds the engine configuration.
    pub fn config(&self) -> Config {
        let protocol = if self.pop3 {
            Protocol::Pop3
        } else {
            Protocol::Imap
        };
        let port = if self.pop3 { 110 } else { 143 };
        let profile = ServerProfile::new(PROFILE, "sim.invalid", port, protocol);
        let mut mailboxes = Vec::new();
        if self.uses_forward() {
            let address = Self::address(FORWARD);
            mailboxes.push(
                MailboxConfig::forward(FORWARD, Owner::queue(FORWARD), &address, PROFILE)
                    .with_credentials(Credentials::new(&address, PASSWORD))
                    .with_delete_after_processing(true),
            );
        }
        for (index, mailbox) in self.mailboxes.iter().enumerate() {
            let name = Self::name(index);
            let address = Self::address(&name);
            let config = if mailbox.via_forward {
                MailboxConfig::via_forward(name.as_str(), self.owner(index), &address, FORWARD)
            } else {
                MailboxConfig::direct(name.as_str(), self.owner(index), &address, PROFILE)
                    .with_credentials(Credentials::new(&address, PASSWORD))
                    .with_delete_after_processing(mailbox.queue)
            };
            mailboxes.push(config.with_filter(TrackingFilter::All));
        }
        Config {
            profiles: vec![profile],
            mailboxes,
            contacts: Vec::new(),
            settings: EngineSettings {
                batch_size: self.batch_size,
                max_messages_per_cycle: self.max_per_cycle,
                ..EngineSettings::default()
            },
        }
    }

    /// Builds the service with every account and forwarding rule, on the
    /// current runtime's clock.
    pub fn service(&self) -> Service {
        let service = Service::builder().build();
        let mut names: Vec<String> = (0..self.mailboxes.len()).map(Self::name).collect();
        if self.uses_forward() {
            names.push(FORWARD.to_owned());
        }
        for name in &names {
            service
                .add_account(AccountSpec::new(Self::address(name), PASSWORD))
                .unwrap_or_else(|error| panic!("account {name} cannot be added: {error}"));
        }
        for (index, mailbox) in self.mailboxes.iter().enumerate() {
            if mailbox.via_forward {
                let rule = ForwardRule {
                    to: Self::address(FORWARD),
                    mode: ForwardMode::Attachment,
                    delay: Duration::ZERO,
                };
                service
                    .set_forward_rule(&Self::address(&Self::name(index)), rule)
                    .unwrap_or_else(|error| panic!("forward rule rejected: {error}"));
            }
        }
        service
    }

    /// Delivers the messages whose `late` flag equals `late`.
    pub async fn deliver(&self, service: &Service, late: bool) {
        for (index, message) in self.messages.iter().enumerate() {
            if message.late != late {
                continue;
            }
            let raw = render_message(index, message.body_bytes);
            for name in self.recipients(message) {
                service
                    .deliver(&Self::address(&name), raw.clone(), None)
                    .unwrap_or_else(|error| panic!("delivery to {name} failed: {error}"));
            }
        }
        // Forwarded copies are delivered by a task of the service.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    /// Returns one record per (Message-ID, recipient owner): what the
    /// store must hold after every message is synced.
    pub fn expected_parties(&self) -> BTreeMap<(Arc<str>, Owner), usize> {
        let mut expected = BTreeMap::new();
        for (index, message) in self.messages.iter().enumerate() {
            let mut recipients: Vec<usize> = message
                .recipients
                .iter()
                .map(|recipient| recipient.index(self.mailboxes.len()))
                .collect();
            recipients.sort_unstable();
            recipients.dedup();
            for recipient in recipients {
                expected.insert((Arc::from(message_id(index)), self.owner(recipient)), 1);
            }
        }
        expected
    }

    /// Returns the messages left in the INBOX of each mailbox that deletes
    /// processed mail.
    pub fn left_on_server(&self, service: &Service) -> Vec<(String, usize)> {
        self.deleting()
            .into_iter()
            .map(|name| {
                let left = Self::inbox_len(service, &name);
                (name, left)
            })
            .collect()
    }

    /// Names of the mailboxes that delete processed mail: queues polled
    /// directly, and the forward mailbox.
    fn deleting(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .mailboxes
            .iter()
            .enumerate()
            .filter(|(_, mailbox)| mailbox.queue && !mailbox.via_forward)
            .map(|(index, _)| Self::name(index))
            .collect();
        if self.uses_forward() {
            names.push(FORWARD.to_owned());
        }
        names
    }

    /// Returns the number of messages left in the INBOX of `name`.
    fn inbox_len(service: &Service, name: &str) -> usize {
        service
            .store()
            .account(&Self::address(name))
            .map_or(0, |account| account.mailboxes().inbox().len())
    }
}

fn message_id(index: usize) -> String {
    format!("message-{}@example.org", index + 1)
}

/// Renders message `index` with a body of about `body_bytes` bytes and a
/// fixed date, so the bytes are the same in every run.
fn render_message(index: usize, body_bytes: usize) -> Bytes {
    let line = "All work and no play makes Jack a dull boy.\r\n";
    let body = line.repeat(body_bytes / line.len() + 1);
    let id = message_id(index);
    let raw = MessageBuilder::new()
        .from(("Carol Customer", "carol@example.org"))
        .to("team@example.com")
        .message_id(id.as_str())
        .subject(format!("Order {}", index + 1))
        .date(Date::new(1_704_067_200))
        .text_body(body)
        .write_to_vec()
        .expect("writing a message into a Vec cannot fail");
    Bytes::from(raw)
}

/// The I/O operation counter shared by every connection of one run, and the
/// operations after which a connection is cut.
#[derive(Debug, Default)]
pub struct Cuts {
    operations: AtomicUsize,
    pending: Mutex<VecDeque<usize>>,
    /// Connections cut so far.
    pub cut_connections: AtomicUsize,
}

impl Cuts {
    /// Cuts at each of `points` (sorted, in I/O operations from the start).
    pub fn at(points: Vec<usize>) -> Self {
        Self {
            pending: Mutex::new(points.into()),
            ..Self::default()
        }
    }

    /// Returns the I/O operations counted so far.
    pub fn operations(&self) -> usize {
        self.operations.load(Ordering::SeqCst)
    }

    /// Returns true, and consumes the cut point, when the next operation
    /// falls on or past the next cut point.
    fn cut_now(&self) -> bool {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let done = self.operations.load(Ordering::SeqCst);
        if pending.front().is_some_and(|&point| point <= done) {
            pending.pop_front();
            while pending.front().is_some_and(|&point| point <= done) {
                pending.pop_front();
            }
            self.cut_connections.fetch_add(1, Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    fn count(&self) {
        self.operations.fetch_add(1, Ordering::SeqCst);
    }
}

/// A pipe to the service that fails from the cut on.
pub struct CutStream {
    inner: DuplexStream,
    cuts: Arc<Cuts>,
    mode: CutMode,
    cut: bool,
}

impl CutStream {
    fn check(&mut self) -> bool {
        if !self.cut && self.cuts.cut_now() {
            self.cut = true;
        }
        self.cut
    }
}

impl AsyncRead for CutStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.check() {
            return match self.mode {
                CutMode::Reset => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
                CutMode::Close => Poll::Ready(Ok(())),
            };
        }
        let before = buffer.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(context, buffer);
        if matches!(result, Poll::Ready(Ok(()))) && buffer.filled().len() > before {
            self.cuts.count();
        }
        result
    }
}

impl AsyncWrite for CutStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.check() {
            let kind = match self.mode {
                CutMode::Reset => io::ErrorKind::ConnectionReset,
                CutMode::Close => io::ErrorKind::BrokenPipe,
            };
            return Poll::Ready(Err(kind.into()));
        }
        let result = Pin::new(&mut self.inner).poll_write(context, bytes);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.cuts.count();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

/// Opens a new in-memory session for each connection, wrapped in a
/// [`CutStream`] that shares one [`Cuts`].
pub struct CutConnector {
    pub service: Service,
    pub cuts: Arc<Cuts>,
    pub mode: CutMode,
}

impl Connector for CutConnector {
    type Stream = CutStream;

    async fn connect(&self, target: ConnectTarget<'_>) -> io::Result<CutStream> {
        let protocol = match target.protocol() {
            Protocol::Imap => sim::Protocol::Imap,
            Protocol::Pop3 => sim::Protocol::Pop3,
        };
        Ok(CutStream {
            inner: sim::server::connect(&self.service, protocol),
            cuts: Arc::clone(&self.cuts),
            mode: self.mode,
            cut: false,
        })
    }
}

/// What a run with cuts left behind.
pub struct CrashOutcome {
    /// Records created by one more `sync_once` after the first clean one,
    /// which finds nothing new; `None` for the scheduled engine.
    pub created_after_clean: Option<usize>,
    /// Connections the connector cut.
    pub cuts_made: usize,
    /// I/O operations of the same sync without cuts, which the cut points
    /// are fractions of.
    pub uncut_operations: usize,
    /// Messages the engine decided more than once, by the mailbox that
    /// fetched them and their UID or UIDL, with the number of decisions.
    pub decided_again: Vec<(MailboxId, SourceKey, usize)>,
    /// Records per (Message-ID, party) at the end.
    pub parties: BTreeMap<(Arc<str>, Owner), usize>,
    /// Messages left in each deleting mailbox's INBOX at the end.
    pub left_on_server: Vec<(String, usize)>,
}

/// Syncs `spec` once without cuts and returns the I/O operations counted.
async fn uncut_operations(spec: &CrashSpec) -> Result<usize, String> {
    let service = spec.service();
    spec.deliver(&service, false).await;
    let cuts = Arc::new(Cuts::default());
    let connector = CutConnector {
        service,
        cuts: Arc::clone(&cuts),
        mode: spec.mode,
    };
    let store = MemoryStore::new();
    sync_once(&spec.config(), &spec.polled(), &store, &connector)
        .await
        .map_err(|error| format!("the uncut sync failed to start: {error}"))?;
    Ok(cuts.operations())
}

/// Returns the messages decided more than once in `events`.
fn decided_again(events: &[Event]) -> Vec<(MailboxId, SourceKey, usize)> {
    let mut decisions: BTreeMap<(MailboxId, SourceKey), usize> = BTreeMap::new();
    for event in events {
        if let Event::EmailProcessed(processed) = event {
            *decisions
                .entry((processed.mailbox.clone(), processed.key.clone()))
                .or_insert(0) += 1;
        }
    }
    decisions
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|((mailbox, key), count)| (mailbox, key, count))
        .collect()
}

/// Converts the spec's cut points from permille to I/O operations.
fn cut_points(spec: &CrashSpec, total: usize) -> Vec<usize> {
    let mut points: Vec<usize> = spec
        .cuts
        .iter()
        .map(|&permille| total * permille as usize / 1000)
        .collect();
    points.sort_unstable();
    points
}

/// Runs the spec with connections cut at its points, by the scheduled
/// engine or by repeated `sync_once` calls.
pub async fn run_with_cuts(spec: &CrashSpec) -> Result<CrashOutcome, String> {
    if spec.scheduled {
        engine_with_cuts(spec).await
    } else {
        sync_with_cuts(spec).await
    }
}

/// Runs the scheduled engine for two hours with connections cut at the
/// spec's points; the late messages arrive after ten minutes. The engine
/// retries a failed cycle after its retry interval (5 minutes by default),
/// and three cuts stay below its 10 retries, so every mailbox stays enabled.
async fn engine_with_cuts(spec: &CrashSpec) -> Result<CrashOutcome, String> {
    let total = uncut_operations(spec).await?;
    let points = cut_points(spec, total);
    let service = spec.service();
    spec.deliver(&service, false).await;
    let cuts = Arc::new(Cuts::at(points));
    let connector = CutConnector {
        service: service.clone(),
        cuts: Arc::clone(&cuts),
        mode: spec.mode,
    };
    let store = Arc::new(MemoryStore::new());
    let events = Arc::new(VecSink::new());
    let start = Instant::now();
    let engine = Engine::start(
        spec.config(),
        Arc::clone(&store),
        connector,
        Arc::clone(&events) as Arc<dyn EventSink>,
    )
    .map_err(|error| format!("the engine rejected the configuration: {error}"))?;
    tokio::time::sleep_until(start + Duration::from_secs(600)).await;
    spec.deliver(&service, true).await;
    tokio::time::sleep_until(start + Duration::from_secs(2 * 3600)).await;
    engine.stop().await;

    Ok(CrashOutcome {
        created_after_clean: None,
        decided_again: decided_again(&events.events()),
        cuts_made: cuts.cut_connections.load(Ordering::SeqCst),
        uncut_operations: total,
        parties: store.snapshot().party_counts(),
        left_on_server: spec.left_on_server(&service),
    })
}

/// Runs `sync_once` with connections cut at the spec's points, and again
/// after each failure, until one attempt syncs every mailbox without an
/// error. The late messages arrive after the first attempt. A final
/// attempt then runs with nothing new to fetch.
async fn sync_with_cuts(spec: &CrashSpec) -> Result<CrashOutcome, String> {
    let total = uncut_operations(spec).await?;
    let points = cut_points(spec, total);

    let service = spec.service();
    spec.deliver(&service, false).await;
    let cuts = Arc::new(Cuts::at(points.clone()));
    let connector = CutConnector {
        service: service.clone(),
        cuts: Arc::clone(&cuts),
        mode: spec.mode,
    };
    let config = spec.config();
    let polled = spec.polled();
    let store = MemoryStore::new();
    let mut attempts = Vec::new();
    // Each cut fails at most one attempt, so every cut plus one clean
    // attempt, plus one for the late mail, suffices.
    let limit = points.len() + 3;
    let mut clean = false;
    while attempts.len() < limit {
        let report = sync_once(&config, &polled, &store, &connector)
            .await
            .map_err(|error| format!("sync_once failed to start: {error}"))?;
        clean = report
            .mailboxes
            .iter()
            .all(|mailbox| mailbox.error.is_none());
        let first = attempts.is_empty();
        attempts.push(report);
        if first {
            spec.deliver(&service, true).await;
            continue;
        }
        if clean {
            break;
        }
    }
    if !clean {
        let errors: Vec<_> = attempts
            .iter()
            .flat_map(|report| report.mailboxes.iter())
            .filter_map(|mailbox| mailbox.error.as_ref())
            .collect();
        return Err(format!(
            "no clean sync after {} attempts with {} cuts of {points:?}; errors: {errors:?}",
            attempts.len(),
            cuts.cut_connections.load(Ordering::SeqCst)
        ));
    }
    let last = sync_once(&config, &polled, &store, &connector)
        .await
        .map_err(|error| format!("sync_once failed to start: {error}"))?;

    let mut events: Vec<Event> = attempts
        .iter()
        .flat_map(|report| report.events.iter().cloned())
        .collect();
    events.extend(last.events.iter().cloned());
    Ok(CrashOutcome {
        created_after_clean: Some(last.records_created()),
        decided_again: decided_again(&events),
        cuts_made: cuts.cut_connections.load(Ordering::SeqCst),
        uncut_operations: total,
        parties: store.snapshot().party_counts(),
        left_on_server: spec.left_on_server(&service),
    })
}

/// Generates organisations of 1 to 4 mailboxes, 1 to 12 messages of up to
/// 150 KB (larger than the 64 KiB pipe), and 1 to 3 cut points.
pub fn crash_spec() -> impl Strategy<Value = CrashSpec> {
    let mailbox = (any::<bool>(), proptest::bool::weighted(0.3))
        .prop_map(|(queue, via_forward)| MailboxSpec { queue, via_forward });
    let body = prop_oneof![3 => 0usize..4_000, 1 => 4_000usize..150_000];
    let message = (
        body,
        proptest::collection::vec(any::<prop::sample::Index>(), 1..=3),
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(body_bytes, recipients, late)| MessageSpec {
            body_bytes,
            recipients,
            late,
        });
    (
        any::<bool>(),
        proptest::collection::vec(mailbox, 1..=4),
        proptest::collection::vec(message, 1..=12),
        1usize..=10,
        prop_oneof![1 => 1usize..=5, 3 => Just(500usize)],
        proptest::collection::vec(0u32..1000, 1..=3),
        prop_oneof![Just(CutMode::Reset), Just(CutMode::Close)],
        any::<bool>(),
    )
        .prop_map(
            |(pop3, mailboxes, messages, batch_size, max_per_cycle, cuts, mode, scheduled)| {
                CrashSpec {
                    pop3,
                    mailboxes,
                    messages,
                    batch_size,
                    max_per_cycle,
                    cuts,
                    mode,
                    scheduled,
                }
            },
        )
}
