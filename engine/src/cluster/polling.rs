//! When a mailbox polls next: adaptive intervals and retries.
//!
//! After a cycle that found mail the next poll is the minimum interval after
//! the cycle's end. Each cycle that finds nothing doubles the interval, up to
//! the idle maximum. A failed cycle is retried after the retry interval, or
//! after the server's suggested back-off when that is longer. After
//! `max_retries` consecutive failures, or at once for rejected credentials,
//! the failure is permanent and the mailbox is disabled.

use std::time::Duration;

use crate::config::RetryPolicy;
use crate::error::{CycleError, ErrorKind};

/// Decision after a failed cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Retry after this delay.
    Retry(Duration),
    /// Disable the mailbox, for the reason the kind names.
    Disable(ErrorKind),
}

/// A mailbox's polling state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Polling {
    min: Duration,
    idle_max: Duration,
    retry: RetryPolicy,
    interval: Duration,
    failures: u32,
}

impl Polling {
    pub(crate) fn new(min: Duration, idle_max: Duration, retry: RetryPolicy) -> Self {
        Self {
            min,
            idle_max: idle_max.max(min),
            retry,
            interval: min,
            failures: 0,
        }
    }

    /// Returns the current interval after a successful cycle.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Returns the number of consecutive failed cycles.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Returns the delay until the next poll after a cycle that succeeded.
    pub(crate) fn after_success(&mut self, found_mail: bool) -> Duration {
        self.failures = 0;
        self.interval = if found_mail {
            self.min
        } else {
            self.interval.saturating_mul(2).min(self.idle_max)
        };
        self.interval
    }

    /// Decides between a retry and disabling after a failed cycle.
    /// Decides what follows a failed cycle. A cycle that committed some
    /// mail before it failed made progress, so the failures before it no
    /// longer count towards disabling the mailbox.
    pub(crate) fn after_failure(
        &mut self,
        error: &CycleError,
        made_progress: bool,
    ) -> AfterFailure {
        if error.is_permanent() {
            return AfterFailure::Disable(error.kind());
        }
        if made_progress {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures > self.retry.max_retries {
            return AfterFailure::Disable(ErrorKind::RetriesExhausted);
        }
        let backoff = error.suggested_backoff().unwrap_or_default();
        AfterFailure::Retry(self.retry.interval.max(backoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SessionError;

    const MINUTE: Duration = Duration::from_secs(60);

    fn polling() -> Polling {
        Polling::new(5 * MINUTE, 360 * MINUTE, RetryPolicy::default())
    }

    fn throttled(backoff: Option<Duration>) -> CycleError {
        SessionError::Throttled {
            backoff,
            text: "throttled".into(),
        }
        .into()
    }

    #[test]
    fn idle_cycles_double_up_to_idle_max() {
        let mut polling = polling();
        let delays: Vec<u64> = (0..9)
            .map(|_| polling.after_success(false).as_secs() / 60)
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 360, 360, 360]);
    }

    #[test]
    fn mail_resets_to_minimum() {
        let mut polling = polling();
        polling.after_success(false);
        polling.after_success(false);
        assert_eq!(polling.after_success(true), 5 * MINUTE);
    }

    #[test]
    fn retries_then_disables() {
        let mut polling = polling();
        let reset: CycleError = SessionError::Closed.into();
        for _ in 0..10 {
            assert_eq!(
                polling.after_failure(&reset, false),
                AfterFailure::Retry(5 * MINUTE)
            );
        }
        assert_eq!(
            polling.after_failure(&reset, false),
            AfterFailure::Disable(ErrorKind::RetriesExhausted)
        );
    }

    #[test]
    fn success_resets_retry_count() {
        let mut polling = polling();
        let reset: CycleError = SessionError::Closed.into();
        for _ in 0..10 {
            polling.after_failure(&reset, false);
        }
        polling.after_success(true);
        assert_eq!(polling.failures(), 0);
        assert_eq!(
            polling.after_failure(&reset, false),
            AfterFailure::Retry(5 * MINUTE)
        );
    }

    #[test]
    fn longer_server_backoff_wins() {
        let mut polling = polling();
        let long = throttled(Some(Duration::from_secs(600)));
        let short = throttled(Some(Duration::from_secs(1)));
        assert_eq!(
            polling.after_failure(&long, false),
            AfterFailure::Retry(600 * Duration::from_secs(1))
        );
        assert_eq!(
            polling.after_failure(&short, false),
            AfterFailure::Retry(5 * MINUTE)
        );
    }

    #[test]
    fn rejected_credentials_disable_at_once() {
        let mut polling = polling();
        let rejected: CycleError = SessionError::CredentialsRejected("no".into()).into();
        assert_eq!(
            polling.after_failure(&rejected, false),
            AfterFailure::Disable(ErrorKind::CredentialsRejected)
        );
    }

    #[test]
    fn progress_restarts_the_retry_count() {
        let mut polling = polling();
        let reset: CycleError = SessionError::Closed.into();
        for _ in 0..10 {
            polling.after_failure(&reset, false);
        }
        assert_eq!(polling.failures(), 10);
        assert_eq!(
            polling.after_failure(&reset, true),
            AfterFailure::Retry(5 * MINUTE)
        );
        assert_eq!(polling.failures(), 1);
    }
}
