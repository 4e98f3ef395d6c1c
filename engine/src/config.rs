//! Configuration: server profiles, mailboxes, contacts and engine settings.
//!
//! The types mirror how a CRM administrator configures server-side
//! synchronization: a server profile tells where mail lives, a mailbox
//! tells whose mail it is and how it arrives (polled directly, or copied into a
//! forward mailbox by a server-side rule), and the engine settings size the
//! cluster and its polling. [`Config::validate`](crate::validate) checks the
//! whole set before an engine starts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::secret::Secret;

/// Identifier of a mailbox, unique within a [`Config`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailboxId(Arc<str>);

impl MailboxId {
    /// Creates an identifier.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// Returns the identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MailboxId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

/// Identifier of a server profile, unique within a [`Config`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileId(Arc<str>);

impl ProfileId {
    /// Creates an identifier.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// Returns the identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ProfileId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

/// The CRM entity that owns a mailbox and becomes a party of its email.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// A user, by name.
    User(Arc<str>),
    /// A queue, by name. Each email a queue accepts also gets a queue item.
    Queue(Arc<str>),
}

impl Owner {
    /// Creates a user owner.
    pub fn user(name: impl AsRef<str>) -> Self {
        Self::User(Arc::from(name.as_ref()))
    }

    /// Creates a queue owner.
    pub fn queue(name: impl AsRef<str>) -> Self {
        Self::Queue(Arc::from(name.as_ref()))
    }

    /// Returns the owner's name.
    pub fn name(&self) -> &str {
        match self {
            Self::User(name) | Self::Queue(name) => name,
        }
    }

    /// Returns whether the owner is a queue.
    pub fn is_queue(&self) -> bool {
        matches!(self, Self::Queue(_))
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(name) => write!(f, "user:{name}"),
            Self::Queue(name) => write!(f, "queue:{name}"),
        }
    }
}

/// Mail access protocol of a server profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// IMAP4rev1 (RFC 3501); the engine reads INBOX only.
    Imap,
    /// POP3 (RFC 1939).
    Pop3,
}

impl Protocol {
    /// Lowercase protocol name, used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imap => "imap",
            Self::Pop3 => "pop3",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user name and password for LOGIN (IMAP) or USER/PASS (POP3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The login name.
    pub username: String,
    /// The password; its `Debug` form is redacted.
    pub password: Secret,
}

impl Credentials {
    /// Creates credentials.
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// Default of [`ServerProfile::max_connections`], the CRM's published default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10;

/// Address, protocol and limits of a mail server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerProfile {
    /// Unique identifier.
    pub id: ProfileId,
    /// Host name or IP address, passed to the connector.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// IMAP or POP3.
    pub protocol: Protocol,
    /// Credentials for mailboxes that have none of their own.
    pub credentials: Option<Credentials>,
    /// Maximum connections open at once, over all nodes: per mailbox for a
    /// mailbox with its own credentials, and shared by the mailboxes that
    /// use the profile's credentials.
    ///
    /// NOTE: the CRM documents the default of 10; how it counts the limit
    /// when mailboxes have their own credentials is our reading, not
    /// confirmed against its documentation.
    pub max_connections: usize,
    /// Lower bound on the polling interval of this profile's mailboxes;
    /// `None` uses [`EngineSettings::poll_interval_min`].
    pub min_poll_interval: Option<Duration>,
}

impl ServerProfile {
    /// Creates a profile with the default limits and no shared credentials.
    pub fn new(
        id: impl Into<ProfileId>,
        host: impl Into<String>,
        port: u16,
        protocol: Protocol,
    ) -> Self {
        Self {
            id: id.into(),
            host: host.into(),
            port,
            protocol,
            credentials: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            min_poll_interval: None,
        }
    }
}

/// Route by which one mailbox's mail reaches the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncomingMethod {
    /// The engine polls this mailbox on the given server profile.
    Direct(ProfileId),
    /// A server-side rule copies this mailbox's mail, as an attachment, into
    /// the given forward mailbox; the engine polls only the forward mailbox.
    ViaForward(MailboxId),
}

/// Selection of incoming email that a mailbox's owner tracks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrackingFilter {
    /// Every email.
    All,
    /// Replies to email the CRM already tracks (found by correlation).
    #[default]
    ResponsesToTracked,
    /// Email whose sender is a known contact, plus correlated replies.
    FromKnownContacts,
    /// No email.
    None,
}

/// One mailbox: a user's, a queue's, or a forward mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxConfig {
    /// Unique identifier.
    pub id: MailboxId,
    /// The user or queue that becomes a party of this mailbox's email. A
    /// forward mailbox's owner never becomes a party: its email is attributed
    /// to the mailbox that forwarded it.
    pub owner: Owner,
    /// Email address; a forward mailbox matches a forwarded copy's sender
    /// against these addresses, without regard to case.
    pub address: String,
    /// Credentials; `None` uses the server profile's.
    pub credentials: Option<Credentials>,
    /// Polled directly or reached through a forward mailbox.
    pub incoming: IncomingMethod,
    /// Whether this is a forward mailbox, whose messages are copies that
    /// other mailboxes' server-side rules forwarded as attachments.
    pub is_forward: bool,
    /// Delete each message from the server once its records are committed.
    /// Allowed only on forward and queue mailboxes.
    pub delete_after_processing: bool,
    /// Ignore email received before this time.
    pub process_received_after: Option<DateTime<Utc>>,
    /// Selection of email that becomes records.
    pub tracking_filter: TrackingFilter,
}

impl MailboxConfig {
    /// Creates a mailbox polled directly through `profile`, with the default
    /// filter.
    pub fn direct(
        id: impl Into<MailboxId>,
        owner: Owner,
        address: impl Into<String>,
        profile: impl Into<ProfileId>,
    ) -> Self {
        Self {
            id: id.into(),
            owner,
            address: address.into(),
            credentials: None,
            incoming: IncomingMethod::Direct(profile.into()),
            is_forward: false,
            delete_after_processing: false,
            process_received_after: None,
            tracking_filter: TrackingFilter::default(),
        }
    }

    /// Creates a mailbox whose mail reaches the engine through
    /// `forward_mailbox`.
    pub fn via_forward(
        id: impl Into<MailboxId>,
        owner: Owner,
        address: impl Into<String>,
        forward_mailbox: impl Into<MailboxId>,
    ) -> Self {
        Self {
            id: id.into(),
            owner,
            address: address.into(),
            credentials: None,
            incoming: IncomingMethod::ViaForward(forward_mailbox.into()),
            is_forward: false,
            delete_after_processing: false,
            process_received_after: None,
            tracking_filter: TrackingFilter::default(),
        }
    }

    /// Creates a forward mailbox polled through `profile`.
    pub fn forward(
        id: impl Into<MailboxId>,
        owner: Owner,
        address: impl Into<String>,
        profile: impl Into<ProfileId>,
    ) -> Self {
        Self {
            is_forward: true,
            ..Self::direct(id, owner, address, profile)
        }
    }

    /// Sets the credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets the tracking filter.
    pub fn with_filter(mut self, filter: TrackingFilter) -> Self {
        self.tracking_filter = filter;
        self
    }

    /// Sets delete after processing.
    pub fn with_delete_after_processing(mut self, delete: bool) -> Self {
        self.delete_after_processing = delete;
        self
    }

    /// Returns the profile this mailbox is polled through, if it is polled
    /// directly.
    pub fn profile(&self) -> Option<&ProfileId> {
        match &self.incoming {
            IncomingMethod::Direct(profile) => Some(profile),
            IncomingMethod::ViaForward(_) => None,
        }
    }
}

/// A known sender, for [`TrackingFilter::FromKnownContacts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Display name.
    pub name: String,
    /// Email address, compared without regard to case.
    pub address: String,
}

/// Retry schedule for transient cycle failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after consecutive failed cycles before the failure counts as
    /// permanent and the mailbox is disabled.
    pub max_retries: u32,
    /// Delay before a retry. A longer back-off suggested by the server wins.
    pub interval: Duration,
}

impl Default for RetryPolicy {
    /// 10 retries 5 minutes apart, the CRM's documented behaviour.
    fn default() -> Self {
        Self {
            max_retries: 10,
            interval: Duration::from_secs(5 * 60),
        }
    }
}

/// Cluster size, polling, batching and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineSettings {
    /// Backend nodes.
    pub nodes: usize,
    /// Worker slots per node: cycles that may run on one node at once.
    pub threads_per_node: usize,
    /// Interval between the end of a cycle that found mail and the next one.
    pub poll_interval_min: Duration,
    /// Maximum interval an idle mailbox backs off to.
    pub poll_interval_idle_max: Duration,
    /// Messages fetched and committed together.
    pub batch_size: usize,
    /// Messages one cycle processes at most; the rest waits for the next.
    pub max_messages_per_cycle: usize,
    /// Retries of transient cycle failures.
    pub retry: RetryPolicy,
    /// Failed processing attempts after which a message is quarantined.
    pub max_email_attempts: u32,
    /// Tracking-token prefix; a token is the prefix and then 7 digits.
    pub tracking_token_prefix: String,
    /// Maximum wait for a connection or for the server's next bytes.
    pub command_timeout: Duration,
    /// Largest message, in bytes, the engine downloads; larger ones are
    /// reported as email-level errors and skipped.
    pub max_message_size: usize,
}

impl Default for EngineSettings {
    /// Defaults: the 5-minute interval after a cycle is the CRM's documented
    /// value and the 6-hour idle maximum is the value reported from the
    /// field. Nodes, threads, batch size, cycle limit, timeout and message
    /// size are assumptions, not published values.
    fn default() -> Self {
        Self {
            nodes: 1,
            threads_per_node: 4,
            poll_interval_min: Duration::from_secs(5 * 60),
            poll_interval_idle_max: Duration::from_secs(6 * 60 * 60),
            batch_size: 50,
            max_messages_per_cycle: 1000,
            retry: RetryPolicy::default(),
            max_email_attempts: 3,
            tracking_token_prefix: "CRM:".to_owned(),
            command_timeout: Duration::from_secs(60),
            max_message_size: 32 * 1024 * 1024,
        }
    }
}

/// Everything an engine needs to know about its mailboxes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Server profiles.
    pub profiles: Vec<ServerProfile>,
    /// Mailboxes; individual ones are assigned to nodes in this order.
    pub mailboxes: Vec<MailboxConfig>,
    /// Known senders.
    pub contacts: Vec<Contact>,
    /// Cluster and polling settings.
    pub settings: EngineSettings,
}

impl Config {
    /// Returns the mailbox with `id`.
    pub fn mailbox(&self, id: &MailboxId) -> Option<&MailboxConfig> {
        self.mailboxes.iter().find(|mailbox| &mailbox.id == id)
    }

    /// Returns the profile with `id`.
    pub fn profile(&self, id: &ProfileId) -> Option<&ServerProfile> {
        self.profiles.iter().find(|profile| &profile.id == id)
    }
}
