//! placeholder
pub mod config;
pub mod connector;
pub mod decide;
pub mod error;
pub mod events;
pub(crate) mod imap;
pub mod records;
pub mod secret;
pub mod validate;
