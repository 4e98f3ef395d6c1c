//! mailsim: a mail server simulator and test harness for email sync engines.
//!
//! # Layout
//!
//! - [`cli`]: the `mailsim` command line (clap definitions and dispatch).
//! - [`serve`]: `mailsim serve`, the simulated service on TCP.
//! - [`sync`]: `mailsim sync`, one sync of real mailboxes by the engine.
//! - [`scenario`]: scenario files, checked and resolved.
//! - [`runner`]: one world per strategy in virtual time, and the metrics.
//! - [`report`]: the side-by-side report in text and JSON.
//!
//! The simulated service lives in the `sim` crate and the sync engine in the
//! `engine` crate; this package wires them together.

pub mod cli;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod serve;
pub mod sync;
