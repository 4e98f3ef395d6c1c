//! Mailbox groups, contacts and address patterns.

use std::collections::BTreeSet;

use toml::Spanned;

use super::{Resolver, span_of};
use crate::scenario::file::{self, GroupTable};
use crate::scenario::{Contacts, Group, GroupKind, Incoming, Mailbox, Tracking};

/// Most mailboxes a scenario may have, over all groups. Each mailbox costs a
/// store account and an engine task, so a larger organisation would exhaust
/// memory before it ran.
pub const MAX_MAILBOXES: u32 = 100_000;

/// Most contacts a scenario may list.
pub const MAX_CONTACTS: u32 = 100_000;

/// Widest zero padding `{n:WIDTH}` allows.
const MAX_PAD: usize = 12;

/// Group names that mean something else where a group name is expected.
const RESERVED_NAMES: [&str; 2] = ["forward", "all"];

impl Resolver<'_, '_> {
    pub(super) fn groups(
        &mut self,
        users: &[Spanned<GroupTable>],
        queues: &[Spanned<GroupTable>],
    ) -> (Vec<Group>, Vec<Mailbox>) {
        let mut groups = Vec::new();
        let mut mailboxes: Vec<Mailbox> = Vec::new();
        let mut seen_names = BTreeSet::new();
        let mut seen_addresses = BTreeSet::new();
        let mut total: u64 = 0;
        let tables = users
            .iter()
            .map(|t| (GroupKind::User, t))
            .chain(queues.iter().map(|t| (GroupKind::Queue, t)));
        for (kind, table) in tables {
            let table = table.get_ref();
            let name = table.name.get_ref().clone();
            if name.is_empty() || name.contains('.') || name.contains('@') {
                self.error(
                    span_of(&table.name),
                    format!("invalid group name {name:?}: use letters, digits, '-' or '_' (no '.' or '@')"),
                );
            }
            if RESERVED_NAMES.contains(&name.as_str()) {
                self.error(
                    span_of(&table.name),
                    format!("group name {name:?} is reserved (it names the forward mailbox or every strategy); choose another"),
                );
            }
            if !seen_names.insert(name.clone()) {
                self.error(
                    span_of(&table.name),
                    format!("group name {name:?} is used twice"),
                );
            }
            let count = *table.count.get_ref();
            total += u64::from(count);
            if count == 0 {
                self.error(
                    span_of(&table.count),
                    format!("group {name:?} has count = 0; a group needs at least 1 mailbox"),
                );
            }
            if total > u64::from(MAX_MAILBOXES) {
                self.error(
                    span_of(&table.count),
                    format!("the groups have {total} mailboxes in all; at most {MAX_MAILBOXES} are allowed"),
                );
                continue;
            }
            let pattern = table.address.get_ref();
            let addresses = match expand_pattern(pattern, count) {
                Ok(addresses) => addresses,
                Err(message) => {
                    self.error(span_of(&table.address), message);
                    Vec::new()
                }
            };
            let group_index = groups.len();
            let mut indices = Vec::new();
            let mut clashes = Vec::new();
            for address in addresses {
                if !seen_addresses.insert(address.to_ascii_lowercase()) {
                    clashes.push(address);
                    continue;
                }
                indices.push(mailboxes.len());
                mailboxes.push(Mailbox {
                    address,
                    group: group_index,
                });
            }
            if let Some(first) = clashes.first() {
                self.error(
                    span_of(&table.address),
                    format!(
                        "{} addresses of this group, such as {first}, belong to an earlier group too; give each group its own pattern",
                        clashes.len()
                    ),
                );
            }
            let tracking = match table.tracking.as_ref().map(|t| (t, t.get_ref().as_str())) {
                None | Some((_, "all")) => Tracking::All,
                Some((_, "responses")) => Tracking::Responses,
                Some((_, "contacts")) => Tracking::Contacts,
                Some((_, "none")) => Tracking::None,
                Some((span, other)) => {
                    self.error(
                        span_of(span),
                        format!("unknown tracking filter {other:?}; valid filters: all, responses, contacts, none"),
                    );
                    Tracking::All
                }
            };
            let mixed = match table.mixed.as_ref().map(|m| (m, m.get_ref().as_str())) {
                None | Some((_, "direct")) => Incoming::Direct,
                Some((_, "forward")) => Incoming::ViaForward,
                Some((span, other)) => {
                    self.error(
                        span_of(span),
                        format!("unknown incoming method {other:?} for mixed; valid methods: direct, forward"),
                    );
                    Incoming::Direct
                }
            };
            groups.push(Group {
                name,
                kind,
                mailboxes: indices,
                tracking,
                mixed,
            });
        }
        if groups.is_empty() {
            self.error(
                0..0,
                "the scenario has no mailboxes; add a [[users]] or [[queues]] group",
            );
        }
        (groups, mailboxes)
    }

    pub(super) fn contacts(&mut self, raw: &file::ContactsTable) -> Contacts {
        let count = match &raw.count {
            None => 100,
            Some(count) if *count.get_ref() > MAX_CONTACTS => {
                self.error(
                    span_of(count),
                    format!(
                        "count = {} is too many contacts; at most {MAX_CONTACTS} are allowed",
                        count.get_ref()
                    ),
                );
                0
            }
            Some(count) => *count.get_ref(),
        };
        let addresses = match &raw.address {
            None => expand_pattern("contact{n}@customer.example", count).unwrap_or_default(),
            Some(pattern) => match expand_pattern(pattern.get_ref(), count) {
                Ok(addresses) => addresses,
                Err(message) => {
                    self.error(span_of(pattern), message);
                    Vec::new()
                }
            },
        };
        let unknown_share = self.share(raw.unknown_share.as_ref(), "unknown_share", 0.1);
        Contacts {
            addresses,
            unknown_share,
        }
    }
}

/// Checks that `address` is a plain `local@domain` address: one `@`, both
/// sides non-empty, and no spaces, control characters, quotes or brackets,
/// which would need quoting in a mail header.
pub fn check_address(address: &str) -> Result<(), String> {
    let bad = address
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"<>()[],;:\\".contains(*c));
    if let Some(bad) = bad {
        return Err(format!(
            "address {address:?} contains {bad:?}; use a plain address such as \"user@corp.example\""
        ));
    }
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{address:?} is not an address; use one local part, one '@' and a domain, such as \"user@corp.example\""
        )),
    }
}

/// Expands an address pattern: `{n}` becomes 1..=count, `{n:03}` zero-pads to 3 digits.
pub fn expand_pattern(pattern: &str, count: u32) -> Result<Vec<String>, String> {
    let (before, width, after) = match pattern.find("{n") {
        None if count > 1 => {
            return Err(format!(
                "address pattern {pattern:?} has no {{n}} but count is {count}; add {{n}} where the number goes"
            ));
        }
        None => {
            check_address(pattern)?;
            return Ok(vec![pattern.to_owned()]);
        }
        Some(start) => {
            let end = pattern[start..]
                .find('}')
                .map(|i| start + i)
                .ok_or_else(|| format!("address pattern {pattern:?} has an unclosed {{n"))?;
            let spec = &pattern[start + 2..end];
            let width = match spec.strip_prefix(':') {
                None if spec.is_empty() => 0,
                Some(digits) => digits
                    .parse::<usize>()
                    .ok()
                    .filter(|width| *width <= MAX_PAD)
                    .ok_or_else(|| {
                        format!("invalid placeholder in {pattern:?}; use {{n}} or {{n:03}}, padding to at most {MAX_PAD} digits")
                    })?,
                None => return Err(format!("invalid placeholder in {pattern:?}; use {{n}} or {{n:03}}")),
            };
            (&pattern[..start], width, &pattern[end + 1..])
        }
    };
    // Checking the first address checks the pattern's fixed parts.
    check_address(&format!("{before}{:0width$}{after}", 1)).map_err(|message| {
        format!("address pattern {pattern:?} gives invalid addresses: {message}")
    })?;
    Ok((1..=count)
        .map(|n| format!("{before}{n:0width$}{after}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_expands_numbers() {
        assert_eq!(
            expand_pattern("u{n}@x.test", 3).unwrap(),
            vec!["u1@x.test", "u2@x.test", "u3@x.test"]
        );
        assert_eq!(
            expand_pattern("q{n:03}@x.test", 1).unwrap(),
            vec!["q001@x.test"]
        );
        assert_eq!(
            expand_pattern("only@x.test", 1).unwrap(),
            vec!["only@x.test"]
        );
    }

    #[test]
    fn bad_patterns_are_rejected() {
        assert!(expand_pattern("only@x.test", 2).is_err());
        assert!(expand_pattern("nobody", 1).is_err());
        assert!(expand_pattern("u{n@x.test", 1).is_err());
        assert!(expand_pattern("u{n:99999999999}@x.test", 1).is_err());
        assert!(expand_pattern("u {n}@x.test", 1).is_err());
        assert!(expand_pattern("u{n}@x@y.test", 1).is_err());
        assert!(expand_pattern("u{n}@x.test\r\nBcc: a@b", 1).is_err());
    }

    #[test]
    fn plain_addresses_pass() {
        assert!(check_address("a.b+c@x-y.example").is_ok());
        assert!(check_address("@x.example").is_err());
        assert!(check_address("a@").is_err());
        assert!(check_address("\"a\"@x.example").is_err());
    }
}
