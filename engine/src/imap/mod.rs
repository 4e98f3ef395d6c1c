//! IMAP client: an async driver over `imap-next`, and the commands a cycle
//! uses (LOGIN, SELECT, UID FETCH, UID STORE, UID EXPUNGE, LOGOUT).
//!
//! Parsing and encoding belong to `imap-next` and `imap-codec`; this module
//! only moves bytes ([`driver`]), issues commands and reads typed responses
//! ([`session`]), and maps failures to cycle errors ([`status`]).

pub(crate) mod driver;
pub(crate) mod session;
pub(crate) mod status;
