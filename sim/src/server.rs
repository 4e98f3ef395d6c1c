//! TCP listeners and the embeddable test server.

/// A running mail service with TCP listeners.
pub struct MailSim;

/// Builds a [`MailSim`].
pub struct MailSimBuilder;
