//! Faults on a schedule, and what they strike.

use std::time::Duration;

use toml::Spanned;

use super::{Names, Resolver, span_of};
use crate::scenario::file;
use crate::scenario::units::Span;
use crate::scenario::{Fault, FaultKind, FaultTarget};

impl Resolver<'_, '_> {
    /// Resolves one fault. `forward_used` tells whether any listed strategy
    /// has a forward mailbox, and `end` is `duration + drain`.
    pub(super) fn fault(
        &mut self,
        fault: &Spanned<file::FaultTable>,
        names: &Names<'_>,
        forward_used: bool,
        end: Duration,
    ) -> Option<Fault> {
        let raw = fault.get_ref();
        let target = self.fault_target(fault, names, forward_used)?;
        let kind = self.fault_kind(raw)?;
        let from = raw.from.get_ref().0;
        if from >= end {
            self.error(
                span_of(&raw.from),
                format!(
                    "from {} is after the run ends at {}; the fault would never happen",
                    raw.from.get_ref(),
                    Span(end)
                ),
            );
        }
        let until = match &raw.until {
            Some(until) if kind.is_one_shot() => {
                self.error(
                    span_of(until),
                    format!("{} happens once at `from`; remove until", kind.name()),
                );
                None
            }
            Some(until) if until.get_ref().0 <= from => {
                self.error(
                    span_of(until),
                    format!(
                        "until {} is not after from {}",
                        until.get_ref(),
                        raw.from.get_ref()
                    ),
                );
                None
            }
            Some(until) => Some(until.get_ref().0),
            None => None,
        };
        Some(Fault {
            target,
            kind,
            from,
            until,
        })
    }

    fn fault_target(
        &mut self,
        fault: &Spanned<file::FaultTable>,
        names: &Names<'_>,
        forward_used: bool,
    ) -> Option<FaultTarget> {
        let raw = fault.get_ref();
        let chosen = [
            raw.mailbox.as_ref(),
            raw.group.as_ref(),
            raw.reads_mail_of.as_ref(),
        ]
        .iter()
        .filter(|target| target.is_some())
        .count();
        if chosen != 1 {
            self.error(
                span_of(fault),
                "a fault needs exactly one target key: mailbox, group or reads_mail_of",
            );
            return None;
        }
        if let Some(mailbox) = &raw.mailbox {
            if mailbox.get_ref() == "forward" {
                if !forward_used {
                    self.error(
                        span_of(mailbox),
                        "no listed strategy uses the forward mailbox; add \"forward\" to strategies, or give a group mixed = \"forward\"",
                    );
                }
                return Some(FaultTarget::ForwardMailbox);
            }
            return match names.mailbox(mailbox.get_ref()) {
                Some(index) => Some(FaultTarget::Mailboxes(vec![index])),
                None => {
                    self.error(
                        span_of(mailbox),
                        format!(
                            "no mailbox {:?} in this scenario; use an address from a [[users]] or [[queues]] group, or \"forward\"",
                            mailbox.get_ref()
                        ),
                    );
                    None
                }
            };
        }
        if let Some(group) = &raw.group {
            return match names.group(group.get_ref()) {
                Some(group) => Some(FaultTarget::Mailboxes(group.mailboxes.clone())),
                None => {
                    self.error(span_of(group), names.unknown_group(group.get_ref()));
                    None
                }
            };
        }
        let name = raw.reads_mail_of.as_ref()?;
        match names.mailboxes_named(name.get_ref()) {
            Ok(mailboxes) => Some(FaultTarget::ReadsMailOf(mailboxes)),
            Err(message) => {
                self.error(span_of(name), message);
                None
            }
        }
    }

    fn fault_kind(&mut self, raw: &file::FaultTable) -> Option<FaultKind> {
        let kind = match raw.kind.get_ref().as_str() {
            "login-rejected" => FaultKind::LoginRejected,
            "connection-refused" => FaultKind::ConnectionRefused,
            "reset-mid-fetch" => FaultKind::ResetMidFetch,
            "stall" => FaultKind::Stall,
            "server-error" => FaultKind::ServerError,
            "uidvalidity-reset" => FaultKind::UidValidityReset,
            "corrupt-message" => {
                let count = raw.count.as_ref().map_or(1, |count| *count.get_ref());
                if count == 0
                    && let Some(span) = raw.count.as_ref()
                {
                    self.error(span_of(span), "corrupt-message needs count = 1 or more");
                }
                FaultKind::CorruptMessage(count.max(1))
            }
            "reset-after-bytes" => match &raw.bytes {
                Some(bytes) => FaultKind::ResetAfterBytes(*bytes.get_ref()),
                None => {
                    self.error(
                        span_of(&raw.kind),
                        "reset-after-bytes needs bytes = <number of bytes>",
                    );
                    // Keep checking the rest of the fault.
                    FaultKind::ResetAfterBytes(0)
                }
            },
            other => {
                self.error(
                    span_of(&raw.kind),
                    format!(
                        "unknown fault kind {other:?}; valid kinds: login-rejected, connection-refused, \
                         reset-after-bytes, reset-mid-fetch, stall, server-error, uidvalidity-reset, corrupt-message"
                    ),
                );
                return None;
            }
        };
        if let Some(bytes) = &raw.bytes
            && !matches!(kind, FaultKind::ResetAfterBytes(_))
        {
            self.error(
                span_of(bytes),
                "bytes applies only to kind = \"reset-after-bytes\"",
            );
        }
        if let Some(count) = &raw.count
            && !matches!(kind, FaultKind::CorruptMessage(_))
        {
            self.error(
                span_of(count),
                "count applies only to kind = \"corrupt-message\"",
            );
        }
        Some(kind)
    }
}
