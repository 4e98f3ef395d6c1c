//! The mail transaction of one SMTP session and the `mailin` handler that fills it.
//!
//! `mailin` owns its handler, but the session loop also needs the
//! transaction (it stores DATA content that it reads itself), so both share
//! the [`Envelope`] through an `Arc<Mutex<_>>`. The lock is never held
//! across an `.await`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use mailin::{Handler, Response};

use super::reply::Reply;
use crate::service::Service;
use crate::store::Account;

/// Maximum recipients accepted per transaction. RFC 5321 section 4.5.3.1.8
/// requires at least 100. Further RCPT commands get `452 4.5.3`, which
/// bounds memory.
pub const MAX_RECIPIENTS: usize = 100;

/// The state of one SMTP session's current mail transaction.
#[derive(Debug)]
pub struct Envelope {
    service: Service,
    client_ip: Option<IpAddr>,
    /// True when the client greeted with EHLO, for the Received header.
    pub esmtp: bool,
    client_domain: String,
    /// Accepted RCPT commands, repeats included, since mailin stores each.
    accepted_rcpt: usize,
    /// Distinct accepted recipients, as stored account addresses.
    recipients: Vec<String>,
    content: Vec<u8>,
    oversized: bool,
    /// The account named by the last RCPT, whose latency and stall the
    /// session applies before replying.
    last_recipient: Option<Arc<Account>>,
}

impl Envelope {
    /// Creates an empty transaction for a client at `client_ip` (`None` for
    /// in-memory streams).
    pub fn new(service: Service, client_ip: Option<IpAddr>) -> Self {
        Self {
            service,
            client_ip,
            esmtp: false,
            client_domain: String::new(),
            accepted_rcpt: 0,
            recipients: Vec::new(),
            content: Vec::new(),
            oversized: false,
            last_recipient: None,
        }
    }

    /// Takes the account named by the last RCPT, if it named one.
    pub fn take_last_recipient(&mut self) -> Option<Arc<Account>> {
        self.last_recipient.take()
    }

    /// Returns the domain the client gave in HELO or EHLO.
    pub fn client_domain(&self) -> &str {
        &self.client_domain
    }

    /// Stores the content read in the DATA phase; `oversized` content was
    /// discarded and is rejected at the end of DATA.
    pub fn set_content(&mut self, content: Vec<u8>, oversized: bool) {
        self.content = content;
        self.oversized = oversized;
    }

    fn reset(&mut self) {
        self.accepted_rcpt = 0;
        self.recipients.clear();
        self.content = Vec::new();
        self.oversized = false;
    }

    fn accept_recipient<'a>(&mut self, address: &'a str) -> Reply<'a> {
        if self.accepted_rcpt >= MAX_RECIPIENTS {
            return Reply::TooManyRecipients;
        }
        let Some(account) = self.service.store().account(address) else {
            tracing::debug!(recipient = address, "unknown recipient rejected");
            return Reply::UnknownRecipient { address };
        };
        self.last_recipient = Some(Arc::clone(&account));
        // The recipient's mailbox is unreachable: the relay should try later.
        let faults = self.service.active_faults(Some(&account));
        if faults.server_error || faults.connection_refused {
            tracing::warn!(
                mailbox = account.address(),
                "recipient refused by injected fault"
            );
            return Reply::ServerError;
        }
        self.accepted_rcpt += 1;
        let mailbox = account.address();
        if !self.recipients.iter().any(|known| known == mailbox) {
            self.recipients.push(mailbox.to_owned());
        }
        Reply::RecipientAccepted
    }

    /// Ends the DATA phase: delivers the message to every recipient, or
    /// rejects it when it was too big or the server-error fault is on.
    fn finish(&mut self) -> Response {
        let hostname = self.service.hostname().to_owned();
        let reply = if self.service.active_faults(None).server_error {
            tracing::warn!("message rejected by injected server error");
            Reply::ServerError
        } else if self.oversized {
            tracing::info!("message over the size limit rejected");
            Reply::MessageTooBig
        } else {
            let id = self.service.next_sequence();
            self.deliver(id, &hostname);
            Reply::Queued { id }
        };
        self.reset();
        let mut response = reply.to_response();
        // NOTE: mailin 0.6 stays in its DATA state when the end-of-data
        // response is an error, and would then take the next commands for
        // message content. RFC 5321 section 4.1.1.4 ends the transaction
        // either way, so the response is flagged as a success and mailin
        // returns to its command state. The code sent is unchanged.
        response.is_error = false;
        response
    }

    fn deliver(&mut self, id: u64, hostname: &str) {
        let received = self.received_header(id, hostname);
        let mut raw = Vec::with_capacity(received.len() + self.content.len());
        raw.extend_from_slice(received.as_bytes());
        raw.extend_from_slice(&self.content);
        let raw = Bytes::from(raw);
        for recipient in &self.recipients {
            match self.service.deliver(recipient, raw.clone(), None) {
                Ok(()) => {
                    tracing::info!(mailbox = %recipient, id, size = raw.len(), "message delivered")
                }
                Err(error) => tracing::warn!(mailbox = %recipient, id, %error, "delivery failed"),
            }
        }
    }

    /// Builds the trace header of RFC 5321 section 4.4, dated by the service clock.
    fn received_header(&self, id: u64, hostname: &str) -> String {
        let from = match self.client_ip {
            Some(ip) => format!("{} ([{ip}])", self.client_domain),
            None => self.client_domain.clone(),
        };
        let protocol = if self.esmtp { "ESMTP" } else { "SMTP" };
        let recipient = match self.recipients.as_slice() {
            [only] => format!("\r\n\tfor <{only}>"),
            _ => String::new(),
        };
        let date = self.service.clock().now().to_rfc2822();
        format!(
            "Received: from {from}\r\n\tby {hostname} (mailsim) with {protocol} id {id}{recipient};\r\n\t{date}\r\n"
        )
    }
}

/// The `mailin` handler, which shares the [`Envelope`] with the session loop.
#[derive(Clone, Debug)]
pub struct EnvelopeHandler(Arc<Mutex<Envelope>>);

impl EnvelopeHandler {
    /// Creates a handler for `envelope`.
    pub fn new(envelope: Envelope) -> Self {
        Self(Arc::new(Mutex::new(envelope)))
    }

    /// Locks and returns the envelope.
    pub fn envelope(&self) -> MutexGuard<'_, Envelope> {
        // Every change to the envelope is a plain assignment or push, so
        // the data behind a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(|error| error.into_inner())
    }
}

impl Handler for EnvelopeHandler {
    fn helo(&mut self, _ip: IpAddr, domain: &str) -> Response {
        let mut envelope = self.envelope();
        envelope.reset();
        envelope.client_domain = domain.to_owned();
        Reply::Helo {
            hostname: envelope.service.hostname(),
        }
        .to_response()
    }

    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        self.envelope().reset();
        Reply::SenderAccepted.to_response()
    }

    fn rcpt(&mut self, to: &str) -> Response {
        self.envelope().accept_recipient(to).to_response()
    }

    fn data_end(&mut self) -> Response {
        self.envelope().finish()
    }
}
