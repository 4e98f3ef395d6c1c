//! A sync engine for incoming mail: it polls IMAP and POP3 mailboxes, the
//! way a CRM's server-side synchronization does, and turns messages into
//! email activities, parties and queue items.
//!
//! Two strategies are supported, alone or mixed: *individual* mailboxes,
//! each polled on its own, and a *forward mailbox* into which server-side
//! rules copy every user's and queue's mail as a `message/rfc822`
//! attachment. The engine does not depend on any particular server; it
//! talks to Dovecot, Exchange or an in-process simulator alike through a
//! [`Connector`].
//!
//! # Layout
//!
//! - [`config`]: server profiles, mailboxes, contacts, engine settings;
//!   [`validate`] checks them and names each bad value and its fix.
//! - [`connector`]: opens streams; [`TcpConnector`] by default, any
//!   `AsyncRead + AsyncWrite` stream from a caller's connector.
//! - `imap` and `pop3` (private): protocol clients. IMAP responses are
//!   decoded by `imap-codec`; POP3 has a small sans-I/O response parser.
//! - `cycle` (private): one sync cycle of one mailbox, per protocol.
//! - [`process`]: parses each message once with `mail-parser`,
//!   unwraps forwarded copies, extracts correlation keys.
//! - [`decide`]: duplicate, correlation and filter decisions, made inside
//!   the store's commit.
//! - [`records`]: [`RecordStore`], [`MemoryStore`], records and sync state.
//! - [`cluster`]: [`Engine`], which schedules every mailbox over
//!   `nodes × threads_per_node` worker slots with adaptive polling and
//!   retries.
//! - [`oneshot`]: [`sync_once`], a single drain of some mailboxes for a
//!   command-line sync.
//! - [`events`]: typed [`Event`]s and the [`EventSink`]s that receive them.
//! - [`error`]: error kinds and levels; [`secret`]: redacted passwords.
//!
//! # Data flow
//!
//! ```text
//! Engine task (one per polled mailbox)
//!   └─ wait for next poll, a node slot and a profile connection permit
//!      └─ cycle: Connector → LOGIN / USER+PASS
//!         └─ list new mail: SELECT INBOX + UID SEARCH / CAPA + UIDL + LIST
//!         └─ download: one streamed UID FETCH / pipelined RETRs
//!            └─ per message: process (parse once, unwrap, correlation keys)
//!            └─ every batch_size messages:
//!               RecordStore::commit(CommitBatch: drafts + sync update)
//!               └─ decide::apply_batch under the store's lock → decisions
//!               └─ events: EmailProcessed, Error, Alert
//!         └─ optional delete (UID STORE \Deleted + UID EXPUNGE / DELE)
//!   └─ next poll: minimum interval if mail was found, doubled when idle,
//!      retry interval (or the server's back-off) after a failure
//! ```
//!
//! Records and the sync watermark are committed together, and nothing is
//! deleted from the server before its batch is committed, so a cycle that
//! dies at any point is retried without losing or duplicating mail. The
//! server keeps sending while a batch is processed and committed, so its
//! work overlaps the engine's.
//!
//! # Time
//!
//! Every wait is a `tokio::time` timer and every timestamp a
//! `tokio::time::Instant`, so a runtime with a paused clock runs the engine
//! in virtual time. The engine reads no wall clock; dates in mail are
//! compared with the configured process-received-after time only.

pub mod cluster;
pub mod config;
pub mod connector;
mod cycle;
pub mod decide;
pub mod error;
pub mod events;
mod imap;
pub mod oneshot;
mod pop3;
pub mod process;
pub mod records;
pub mod secret;
pub mod validate;

pub use cluster::{Engine, MailboxState, MailboxStatus};
pub use config::{
    Config, Contact, Credentials, EngineSettings, IncomingMethod, MailboxConfig, MailboxId, Owner,
    ProfileId, Protocol, RetryPolicy, ServerProfile, TrackingFilter,
};
pub use connector::{ConnectTarget, Connector, TcpConnector};
pub use cycle::{CycleFailure, CycleStats};
pub use error::{CycleError, ErrorKind, ErrorLevel, SessionError};
pub use events::{
    Alert, AlertCode, CycleOutcome, EmailProcessed, Event, EventSink, NodeId, NullSink, VecSink,
};
pub use oneshot::{MailboxSync, SyncOnceError, SyncReport, sync_once};
pub use records::{MemoryStore, RecordStore, Snapshot};
pub use secret::Secret;
pub use validate::{ConfigError, ConfigErrors};
