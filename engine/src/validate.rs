//! Validation of a [`Config`] before an engine starts.
//!
//! Every check runs, so one call lists every problem; each message names the
//! bad value and the fix.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{Config, EngineSettings, IncomingMethod, MailboxConfig, ServerProfile};

/// One invalid value in a [`Config`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Two profiles share an identifier.
    #[error("server profile id {0:?} is used twice; give each profile a unique id")]
    DuplicateProfile(String),
    /// Two mailboxes share an identifier.
    #[error("mailbox id {0:?} is used twice; give each mailbox a unique id")]
    DuplicateMailbox(String),
    /// Two mailboxes share an address, so a forwarded copy's sender is ambiguous.
    #[error(
        "mailboxes {first:?} and {second:?} both have address {address:?}; \
         give each mailbox its own address"
    )]
    DuplicateAddress {
        /// The shared address.
        address: String,
        /// The first mailbox with it.
        first: String,
        /// The second mailbox with it.
        second: String,
    },
    /// A profile has no host.
    #[error("server profile {0:?} has an empty host; set the server's host name or address")]
    EmptyHost(String),
    /// A profile has port 0.
    #[error("server profile {0:?} has port 0; set the server's IMAP or POP3 port")]
    ZeroPort(String),
    /// A profile allows no connection.
    #[error("server profile {0:?} has max_connections 0; allow at least 1 (default 10)")]
    ZeroConnections(String),
    /// A profile's minimum interval is zero.
    #[error("server profile {0:?} has a min_poll_interval of 0; set a positive interval or none")]
    ZeroProfileInterval(String),
    /// A mailbox address is not an email address.
    #[error("mailbox {mailbox:?} has address {address:?}, which has no '@'; set its email address")]
    InvalidAddress {
        /// The mailbox.
        mailbox: String,
        /// The address.
        address: String,
    },
    /// A mailbox names a profile that does not exist.
    #[error(
        "mailbox {mailbox:?} uses server profile {profile:?}, which is not configured; add the profile or fix the id"
    )]
    UnknownProfile {
        /// The mailbox.
        mailbox: String,
        /// The missing profile.
        profile: String,
    },
    /// A mailbox names a forward mailbox that does not exist.
    #[error(
        "mailbox {mailbox:?} is forwarded to {forward:?}, which is not configured; add that forward mailbox or fix the id"
    )]
    UnknownForwardMailbox {
        /// The mailbox.
        mailbox: String,
        /// The missing forward mailbox.
        forward: String,
    },
    /// A mailbox is forwarded to a mailbox that is not a forward mailbox.
    #[error(
        "mailbox {mailbox:?} is forwarded to {forward:?}, which has is_forward = false; set is_forward on {forward:?} or forward elsewhere"
    )]
    NotAForwardMailbox {
        /// The mailbox.
        mailbox: String,
        /// The target without `is_forward`.
        forward: String,
    },
    /// A forward mailbox is itself reached through a forward mailbox.
    #[error(
        "forward mailbox {0:?} has incoming method via forward mailbox; a forward mailbox must be polled directly through a server profile"
    )]
    ForwardViaForward(String),
    /// Delete after processing on a user mailbox.
    #[error(
        "mailbox {0:?} belongs to a user and has delete_after_processing set; it is allowed only on forward and queue mailboxes, so unset it"
    )]
    DeleteOnUserMailbox(String),
    /// Delete after processing on a mailbox the engine never polls.
    #[error(
        "mailbox {0:?} is reached through a forward mailbox and has delete_after_processing set; the engine never polls it, so unset it and set it on the forward mailbox"
    )]
    DeleteOnForwardedMailbox(String),
    /// A directly polled mailbox has no credentials.
    #[error(
        "mailbox {mailbox:?} has no credentials and its server profile {profile:?} has none; set credentials on one of them"
    )]
    MissingCredentials {
        /// The mailbox.
        mailbox: String,
        /// Its profile.
        profile: String,
    },
    /// A setting that must be positive is zero.
    #[error("setting {0} is 0; it must be at least 1")]
    ZeroSetting(&'static str),
    /// The minimum interval exceeds the idle maximum.
    #[error(
        "poll_interval_min ({min:?}) is longer than poll_interval_idle_max ({max:?}); make the idle maximum at least the minimum"
    )]
    IntervalOrder {
        /// The minimum.
        min: std::time::Duration,
        /// The idle maximum.
        max: std::time::Duration,
    },
    /// The tracking-token prefix is unusable.
    #[error(
        "tracking_token_prefix {0:?} is empty or contains whitespace or digits at its end; use a prefix such as \"CRM:\""
    )]
    InvalidTokenPrefix(String),
}

/// Every problem found in a [`Config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problems)", self.0.len())?;
        for error in &self.0 {
            write!(f, "\n- {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Checks every profile, mailbox and setting, returning all problems.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        check_settings(&self.settings, &mut errors);
        check_profiles(&self.profiles, &mut errors);
        check_mailbox_ids(&self.mailboxes, &mut errors);
        for mailbox in &self.mailboxes {
            check_mailbox(self, mailbox, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

fn check_settings(settings: &EngineSettings, errors: &mut Vec<ConfigError>) {
    let positive = [
        ("nodes", settings.nodes),
        ("threads_per_node", settings.threads_per_node),
        ("batch_size", settings.batch_size),
        ("max_messages_per_cycle", settings.max_messages_per_cycle),
        ("max_email_attempts", settings.max_email_attempts as usize),
        ("max_message_size", settings.max_message_size),
    ];
    for (name, value) in positive {
        if value == 0 {
            errors.push(ConfigError::ZeroSetting(name));
        }
    }
    let durations = [
        ("poll_interval_min", settings.poll_interval_min),
        ("command_timeout", settings.command_timeout),
    ];
    for (name, value) in durations {
        if value.is_zero() {
            errors.push(ConfigError::ZeroSetting(name));
        }
    }
    if settings.poll_interval_min > settings.poll_interval_idle_max {
        errors.push(ConfigError::IntervalOrder {
            min: settings.poll_interval_min,
            max: settings.poll_interval_idle_max,
        });
    }
    let prefix = &settings.tracking_token_prefix;
    let ends_in_digit = prefix.chars().last().is_some_and(|c| c.is_ascii_digit());
    if prefix.is_empty() || prefix.chars().any(char::is_whitespace) || ends_in_digit {
        errors.push(ConfigError::InvalidTokenPrefix(prefix.clone()));
    }
}

fn check_profiles(profiles: &[ServerProfile], errors: &mut Vec<ConfigError>) {
    let mut seen = BTreeMap::new();
    for profile in profiles {
        let id = profile.id.as_str();
        if seen.insert(id, ()).is_some() {
            errors.push(ConfigError::DuplicateProfile(id.to_owned()));
        }
        if profile.host.trim().is_empty() {
            errors.push(ConfigError::EmptyHost(id.to_owned()));
        }
        if profile.port == 0 {
            errors.push(ConfigError::ZeroPort(id.to_owned()));
        }
        if profile.max_connections == 0 {
            errors.push(ConfigError::ZeroConnections(id.to_owned()));
        }
        if profile
            .min_poll_interval
            .is_some_and(|interval| interval.is_zero())
        {
            errors.push(ConfigError::ZeroProfileInterval(id.to_owned()));
        }
    }
}

fn check_mailbox_ids(mailboxes: &[MailboxConfig], errors: &mut Vec<ConfigError>) {
    let mut ids = BTreeMap::new();
    let mut addresses: BTreeMap<String, &str> = BTreeMap::new();
    for mailbox in mailboxes {
        let id = mailbox.id.as_str();
        if ids.insert(id, ()).is_some() {
            errors.push(ConfigError::DuplicateMailbox(id.to_owned()));
        }
        let address = mailbox.address.to_ascii_lowercase();
        if let Some(first) = addresses.get(&address) {
            errors.push(ConfigError::DuplicateAddress {
                address: mailbox.address.clone(),
                first: (*first).to_owned(),
                second: id.to_owned(),
            });
        } else {
            addresses.insert(address, id);
        }
    }
}

fn check_mailbox(config: &Config, mailbox: &MailboxConfig, errors: &mut Vec<ConfigError>) {
    let id = mailbox.id.as_str().to_owned();
    if !mailbox.address.contains('@') {
        errors.push(ConfigError::InvalidAddress {
            mailbox: id.clone(),
            address: mailbox.address.clone(),
        });
    }
    let may_delete = mailbox.is_forward || mailbox.owner.is_queue();
    if mailbox.delete_after_processing && !may_delete {
        errors.push(ConfigError::DeleteOnUserMailbox(id.clone()));
    }

    match &mailbox.incoming {
        IncomingMethod::Direct(profile_id) => match config.profile(profile_id) {
            None => errors.push(ConfigError::UnknownProfile {
                mailbox: id,
                profile: profile_id.to_string(),
            }),
            Some(profile) => {
                if mailbox.credentials.is_none() && profile.credentials.is_none() {
                    errors.push(ConfigError::MissingCredentials {
                        mailbox: id,
                        profile: profile_id.to_string(),
                    });
                }
            }
        },
        IncomingMethod::ViaForward(forward_id) => {
            if mailbox.is_forward {
                errors.push(ConfigError::ForwardViaForward(id.clone()));
            }
            if mailbox.delete_after_processing && may_delete {
                errors.push(ConfigError::DeleteOnForwardedMailbox(id.clone()));
            }
            match config.mailbox(forward_id) {
                None => errors.push(ConfigError::UnknownForwardMailbox {
                    mailbox: id,
                    forward: forward_id.to_string(),
                }),
                Some(forward) if !forward.is_forward => {
                    errors.push(ConfigError::NotAForwardMailbox {
                        mailbox: id,
                        forward: forward_id.to_string(),
                    })
                }
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Credentials, MailboxConfig, Owner, Protocol, ServerProfile};

    fn valid() -> Config {
        let mut profile = ServerProfile::new("exchange", "127.0.0.1", 143, Protocol::Imap);
        profile.credentials = Some(Credentials::new("svc", "pw"));
        Config {
            profiles: vec![profile],
            mailboxes: vec![
                MailboxConfig::forward("fwd", Owner::user("admin"), "fwd@example.com", "exchange")
                    .with_delete_after_processing(true),
                MailboxConfig::via_forward(
                    "alice",
                    Owner::user("alice"),
                    "alice@example.com",
                    "fwd",
                ),
                MailboxConfig::direct(
                    "support",
                    Owner::queue("support"),
                    "support@example.com",
                    "exchange",
                )
                .with_delete_after_processing(true),
            ],
            ..Config::default()
        }
    }

    #[test]
    fn valid_config_passes() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn delete_after_processing_rejected_on_user_mailbox() {
        let mut config = valid();
        config.mailboxes.push(
            MailboxConfig::direct("bob", Owner::user("bob"), "bob@example.com", "exchange")
                .with_delete_after_processing(true),
        );
        let errors = config.validate().unwrap_err().0;
        assert_eq!(errors, vec![ConfigError::DeleteOnUserMailbox("bob".into())]);
    }

    #[test]
    fn unknown_references_are_named() {
        let mut config = valid();
        config.mailboxes.push(MailboxConfig::direct(
            "carol",
            Owner::user("carol"),
            "carol@example.com",
            "nowhere",
        ));
        config.mailboxes.push(MailboxConfig::via_forward(
            "dave",
            Owner::user("dave"),
            "dave@example.com",
            "support",
        ));
        let errors = config.validate().unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("\"nowhere\""), "{text}");
        assert!(text.contains("is_forward = false"), "{text}");
        assert_eq!(errors.0.len(), 2);
    }

    #[test]
    fn missing_credentials_and_duplicates_reported_together() {
        let mut config = valid();
        config.profiles[0].credentials = None;
        config.mailboxes.push(MailboxConfig::via_forward(
            "alice",
            Owner::user("alice2"),
            "ALICE@example.com",
            "fwd",
        ));
        let errors = config.validate().unwrap_err().0;
        assert!(errors.contains(&ConfigError::DuplicateMailbox("alice".into())));
        assert!(
            errors
                .iter()
                .any(|e| matches!(e, ConfigError::DuplicateAddress { .. }))
        );
        assert!(
            errors
                .iter()
                .any(|e| matches!(e, ConfigError::MissingCredentials { .. }))
        );
    }

    #[test]
    fn bad_settings_are_listed() {
        let mut config = valid();
        config.settings.nodes = 0;
        config.settings.poll_interval_min = config.settings.poll_interval_idle_max * 2;
        config.settings.tracking_token_prefix = "CRM 1".into();
        let errors = config.validate().unwrap_err().0;
        assert!(errors.contains(&ConfigError::ZeroSetting("nodes")));
        assert!(
            errors
                .iter()
                .any(|e| matches!(e, ConfigError::IntervalOrder { .. }))
        );
        assert!(errors.contains(&ConfigError::InvalidTokenPrefix("CRM 1".into())));
    }
}
