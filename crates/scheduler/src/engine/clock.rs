//! Wall-clock time for the engine, and its mapping onto the timer driver's clock.
//!
//! Schedules name wall-clock instants ([`Timestamp`]); the timer driver sleeps on
//! tokio's monotonic clock. The engine converts each deadline when it arms a timer
//! (`instant = now_monotonic + (deadline − clock.now())`) and, when the timer fires,
//! checks the wall clock again: a fire is never started before its deadline, even if
//! the wall clock was stepped back meanwhile (the timer is re-armed instead).
//!
//! [`TokioClock`] derives wall time from tokio's clock, so under
//! `#[tokio::test(start_paused = true)]` days of schedules run in milliseconds and
//! every instant a test sees is exact.

use std::fmt;

use jiff::Timestamp;
use tokio::time::Instant;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system's wall clock shifted by a fixed offset: a node whose clock is wrong,
/// for tests of clock skew (`sundial run` takes it from a test-only setting).
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset: jiff::SignedDuration,
}

impl OffsetClock {
    /// The system clock plus `offset` (negative: behind).
    pub fn new(offset: jiff::SignedDuration) -> Self {
        Self { offset }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let now = Timestamp::now();
        now.checked_add(self.offset).unwrap_or(now)
    }
}

/// Wall time that follows tokio's clock from a chosen starting instant: `start` at the
/// moment of creation, then advancing exactly as `tokio::time::Instant` does (paused
/// and advanced by tests, or real).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: Instant,
    start: Timestamp,
}

impl TokioClock {
    /// A clock that reads `start` now.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            origin: Instant::now(),
            start,
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        self.start.checked_add(elapsed).unwrap_or(Timestamp::MAX)
    }
}

/// The monotonic instant at which `clock` will read `at` (now if `at` has passed).
pub(crate) fn instant_for(clock: &dyn Clock, at: Timestamp) -> Instant {
    let now = Instant::now();
    let ahead = at.duration_since(clock.now());
    match std::time::Duration::try_from(ahead) {
        Ok(d) => now
            .checked_add(d)
            .unwrap_or_else(|| now + std::time::Duration::from_secs(30 * 365 * 86_400)),
        Err(_) => now, // in the past
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let start: Timestamp = "2024-01-01T00:00:00Z".parse().expect("ts");
        let clock = TokioClock::starting_at(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert_eq!(clock.now(), "2024-01-02T00:00:00Z".parse().expect("ts"));
        let at: Timestamp = "2024-01-02T00:00:05Z".parse().expect("ts");
        assert_eq!(
            instant_for(&clock, at),
            Instant::now() + Duration::from_secs(5)
        );
        assert_eq!(instant_for(&clock, start), Instant::now());
    }
}
