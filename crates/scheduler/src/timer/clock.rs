//! Conversion between tokio's monotonic [`Instant`] and wheel ticks.
//!
//! The driver reads time only through `tokio::time::Instant`, which is monotonic: a
//! wall-clock jump (NTP step, manual `date -s`, DST) changes nothing here. Under
//! `tokio::time::pause()` the same instants are virtual, which is how tests run days
//! of timers in milliseconds.
//!
//! Ticks count whole tick lengths since the clock's origin. A deadline maps to the
//! first tick at or after it ([`TickClock::tick_ceil`]), the current time to the last
//! tick at or before it ([`TickClock::tick_floor`]), so a timer is never handed out
//! before its deadline instant. Conversions saturate instead of overflowing.

use std::time::Duration;

use tokio::time::Instant;

/// Maps instants to ticks of a fixed length, counted from an origin.
#[derive(Debug, Clone, Copy)]
pub struct TickClock {
    origin: Instant,
    tick_nanos: u128,
}

impl TickClock {
    /// A clock with ticks of `tick` (at least 1 µs) counted from `origin`.
    #[must_use]
    pub fn new(origin: Instant, tick: Duration) -> Self {
        Self {
            origin,
            tick_nanos: tick.as_nanos().max(1_000),
        }
    }

    /// The origin (tick 0).
    #[must_use]
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The tick length.
    #[must_use]
    pub fn tick(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.tick_nanos).unwrap_or(u64::MAX))
    }

    /// The last tick that has started at `at` (0 before the origin).
    #[must_use]
    pub fn tick_floor(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos / self.tick_nanos).unwrap_or(u64::MAX)
    }

    /// The first tick that starts at or after `at` (0 before the origin).
    #[must_use]
    pub fn tick_ceil(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos.div_ceil(self.tick_nanos)).unwrap_or(u64::MAX)
    }

    /// The instant tick `tick` starts, or `None` if it is not representable.
    #[must_use]
    pub fn instant(&self, tick: u64) -> Option<Instant> {
        let nanos = u128::from(tick).checked_mul(self.tick_nanos)?;
        let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
        let sub = (nanos % 1_000_000_000) as u32;
        self.origin.checked_add(Duration::new(secs, sub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_deadlines_up_and_now_down() {
        let origin = Instant::now();
        let c = TickClock::new(origin, Duration::from_millis(1));
        assert_eq!(c.tick_floor(origin), 0);
        assert_eq!(c.tick_ceil(origin), 0);
        let t = origin + Duration::from_micros(2_500);
        assert_eq!(c.tick_floor(t), 2);
        assert_eq!(c.tick_ceil(t), 3);
        assert_eq!(c.instant(3), Some(origin + Duration::from_millis(3)));
        assert_eq!(c.tick_ceil(origin + Duration::from_millis(7)), 7);
    }

    #[test]
    fn instants_before_the_origin_are_tick_zero() {
        let origin = Instant::now() + Duration::from_secs(10);
        let c = TickClock::new(origin, Duration::from_millis(1));
        assert_eq!(c.tick_floor(Instant::now()), 0);
        assert_eq!(c.tick_ceil(Instant::now()), 0);
    }

    #[test]
    fn huge_ticks_do_not_overflow() {
        let c = TickClock::new(Instant::now(), Duration::from_secs(3600));
        assert_eq!(c.instant(u64::MAX), None);
        assert_eq!(c.tick(), Duration::from_secs(3600));
        let far = Instant::now() + Duration::from_secs(1 << 40);
        assert_eq!(c.tick_floor(far), (1 << 40) / 3600);
        let tiny = TickClock::new(Instant::now(), Duration::ZERO);
        assert_eq!(tiny.tick(), Duration::from_micros(1));
    }
}
