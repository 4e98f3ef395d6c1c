//! A small demo organisation for `mailsim serve` and for trying clients by hand.
//!
//! Three users and a support queue each have a server-side rule that forwards
//! every message as an attachment to a central forward mailbox, which is the
//! set-up a CRM sync engine polls in "forward mailbox" mode. Their INBOXes
//! hold a few messages: new enquiries, replies that carry a `CRM:` tracking
//! token or an `In-Reply-To` header, and one message sent to both a user and
//! the queue.

use std::time::Duration;

use bytes::Bytes;
use mail_builder::MessageBuilder;
use mail_builder::headers::date::Date;

use crate::forward::{ForwardMode, ForwardRule};
use crate::server::MailSimBuilder;

/// The demo's mail domain.
pub const DOMAIN: &str = "demo.test";

/// The demo's forward mailbox.
pub const FORWARD_MAILBOX: &str = "crm-forward@demo.test";

/// The role an account plays in the demo organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A person's mailbox.
    User,
    /// A shared queue mailbox.
    Queue,
    /// The central mailbox that forwarding rules copy mail into.
    Forward,
}

impl Role {
    /// The role's lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Queue => "queue",
            Self::Forward => "forward",
        }
    }
}

/// The demo accounts and their roles, in display order.
pub const ACCOUNTS: [(&str, Role); 5] = [
    ("alice@demo.test", Role::User),
    ("bob@demo.test", Role::User),
    ("carol@demo.test", Role::User),
    ("support@demo.test", Role::Queue),
    (FORWARD_MAILBOX, Role::Forward),
];

/// Midnight UTC, 1 March 2024: the Date header of the first demo message.
const FIRST_DATE: i64 = 1_709_251_200;

/// Adds the demo accounts, all with `password`, their forwarding rules and
/// their messages to `builder`.
pub fn add_to(mut builder: MailSimBuilder, password: &str) -> MailSimBuilder {
    for (address, role) in ACCOUNTS {
        builder = builder.account(address, password);
        if role != Role::Forward {
            builder = builder.forward(
                address,
                ForwardRule {
                    to: FORWARD_MAILBOX.to_owned(),
                    mode: ForwardMode::Attachment,
                    delay: Duration::ZERO,
                },
            );
        }
    }
    for (to, message) in messages() {
        builder = builder.message(to, message);
    }
    builder
}

/// The demo messages as (recipient, raw bytes), in delivery order.
pub fn messages() -> Vec<(&'static str, Bytes)> {
    let mut messages = Vec::new();
    let mut sequence = 0;
    let mut next = |to: &'static str, from: &str, subject: &str, reply_to: Option<&str>| {
        sequence += 1;
        let id = format!("demo.{sequence}@example.org");
        let mut builder = MessageBuilder::new()
            .from(from)
            .to(to)
            .subject(subject)
            .message_id(id.clone())
            .date(Date::new(FIRST_DATE + sequence * 3600))
            .text_body(format!(
                "Hello,\r\n\r\nThis is demo message {sequence} about \"{subject}\".\r\n\r\nRegards\r\n"
            ));
        if let Some(parent) = reply_to {
            builder = builder.in_reply_to(parent).references(parent);
        }
        let raw = Bytes::from(builder.write_to_vec().unwrap_or_default());
        messages.push((to, raw));
        id
    };

    let quote = next(
        "alice@demo.test",
        "dana@customer.example",
        "Quote for 40 licences",
        None,
    );
    next(
        "alice@demo.test",
        "dana@customer.example",
        "Re: Quote for 40 licences",
        Some(&quote),
    );
    next(
        "alice@demo.test",
        "erin@partner.example",
        "Partner webinar CRM:0000042",
        None,
    );
    next(
        "bob@demo.test",
        "frank@customer.example",
        "Invoice 1187",
        None,
    );
    let outage = next(
        "bob@demo.test",
        "grace@customer.example",
        "Login problems since Monday",
        None,
    );
    next(
        "bob@demo.test",
        "grace@customer.example",
        "Re: Login problems since Monday",
        Some(&outage),
    );
    next(
        "carol@demo.test",
        "heidi@prospect.example",
        "Demo request",
        None,
    );
    next(
        "support@demo.test",
        "ivan@customer.example",
        "Cannot reset password",
        None,
    );
    next(
        "support@demo.test",
        "judy@customer.example",
        "Export to CSV fails CRM:0000107",
        None,
    );

    // One message to both a user and the queue: a sync engine must create one
    // email activity with two parties.
    sequence += 1;
    let shared = MessageBuilder::new()
        .from("mallory@customer.example")
        .to(vec!["carol@demo.test", "support@demo.test"])
        .subject("Contract renewal")
        .message_id(format!("demo.{sequence}@example.org"))
        .date(Date::new(FIRST_DATE + sequence * 3600))
        .text_body("Please send the renewal contract to both of you.\r\n")
        .write_to_vec()
        .unwrap_or_default();
    let shared = Bytes::from(shared);
    messages.push(("carol@demo.test", shared.clone()));
    messages.push(("support@demo.test", shared));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_deterministic() {
        assert_eq!(messages(), messages());
    }

    #[test]
    fn every_recipient_is_a_demo_account() {
        for (to, _) in messages() {
            assert!(ACCOUNTS.iter().any(|(address, _)| *address == to), "{to}");
        }
    }
}
