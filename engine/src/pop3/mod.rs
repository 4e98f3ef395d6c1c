//! POP3 client, written here because no maintained async POP3 client crate
//! fits: a sans-I/O response parser ([`response`]) and the commands a cycle
//! uses ([`session`]).

pub(crate) mod response;
pub(crate) mod session;
