//! Simulation clock: wall-clock dates derived from `tokio::time`.
//!
//! Every timer in `sim` is a `tokio::time` timer, so a runtime started with a
//! paused clock drives the whole service in virtual time. Dates that reach the
//! wire (INTERNALDATE, `Received:` stamps, forwarded copies) come from this
//! clock as well, so they follow virtual time too.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

/// A fixed wall-clock epoch tied to the tokio instant at which it was taken.
#[derive(Clone, Copy, Debug)]
pub struct SimClock {
    epoch: DateTime<Utc>,
    start: Instant,
}

impl SimClock {
    /// Creates a clock whose `now()` is `epoch` at the current tokio instant.
    pub fn starting_at(epoch: DateTime<Utc>) -> Self {
        Self {
            epoch,
            start: Instant::now(),
        }
    }

    /// Creates a clock that follows the system's wall clock.
    pub fn system() -> Self {
        Self::starting_at(Utc::now())
    }

    /// The wall-clock date at the clock's start.
    pub fn epoch(&self) -> DateTime<Utc> {
        self.epoch
    }

    /// The tokio instant at the clock's start.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Time since the clock's start.
    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }

    /// The current wall-clock date.
    pub fn now(&self) -> DateTime<Utc> {
        self.date_at(self.elapsed())
    }

    /// The wall-clock date at `offset` after the start.
    pub fn date_at(&self, offset: Duration) -> DateTime<Utc> {
        let delta = TimeDelta::from_std(offset).unwrap_or(TimeDelta::MAX);
        self.epoch.checked_add_signed(delta).unwrap_or(self.epoch)
    }

    /// The tokio instant at `offset` after the start.
    pub fn instant_at(&self, offset: Duration) -> Instant {
        self.start + offset
    }
}
