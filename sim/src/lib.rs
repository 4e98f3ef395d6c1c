//! A simulated mail service: IMAP, POP3 and SMTP servers over one store, with
//! per-account throttling, forwarding rules and injected faults.
//!
//! # Layout
//!
//! - [`store`]: accounts, folders and messages; raw bytes are shared, not copied.
//! - [`policy`]: throttling limits, token buckets and fault switches per account.
//! - [`service`]: the shared [`Service`] handle; delivery, the receive limit,
//!   forwarding rules and the scheduler for delayed work.
//! - [`forward`]: forwarded copies (as attachment or inline) and corrupt messages.
//! - [`conn`]: bounded, fault-aware I/O over any `AsyncRead + AsyncWrite`.
//! - [`imap`], [`pop3`], [`smtp`]: one session type per protocol.
//! - [`demo`]: the demo organisation that `mailsim serve` starts with.
//! - [`server`]: TCP listeners and [`MailSim`], the embeddable test server.
//!
//! Data flows one way: deliveries (SMTP or [`Service::deliver`]) land in the
//! store and wake IMAP IDLE sessions; protocol sessions read and change the
//! store under each account's lock, consulting the account's policy and
//! faults before every command. Every timer is a `tokio::time` timer, so a
//! runtime with a paused clock runs the whole service in virtual time.

pub mod clock;
pub mod conn;
pub mod demo;
pub mod forward;
pub mod imap;
pub mod limits;
pub mod policy;
pub mod pop3;
pub mod secret;
pub mod server;
pub mod service;
pub mod smtp;
pub mod store;

pub use clock::SimClock;
pub use forward::{ForwardMode, ForwardRule};
pub use limits::Limits;
pub use policy::{AccountPolicy, CommandBudget, FaultAction, FaultKind, ScheduledFault};
pub use secret::Secret;
pub use server::{MailSim, MailSimBuilder};
pub use service::{DeliveryEvent, DeliveryObserver, Service};
pub use store::{AccountSpec, Protocol, Store};
