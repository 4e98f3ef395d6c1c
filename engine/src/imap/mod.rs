//! IMAP client: the commands a cycle uses (LOGIN, CAPABILITY, SELECT,
//! UID SEARCH, UID FETCH, UID STORE, UID EXPUNGE, LOGOUT) over any async
//! stream.
//!
//! Parsing and encoding belong to `imap-codec`. This module frames and moves
//! bytes ([`connection`]), issues commands and reads typed responses
//! ([`session`]), and maps failures to cycle errors ([`status`]).

pub(crate) mod connection;
pub(crate) mod session;
pub(crate) mod status;
