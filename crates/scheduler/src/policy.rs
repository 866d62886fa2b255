//! Policies: what the scheduler does when runs overlap, when fires were missed, when a
//! run fails, and how it spreads fires with jitter.
//!
//! Every policy here is a pure decision (state in, decision out) so that each one's
//! timeline can be tested without a clock. The timelines below use `|` for nominal
//! fires, `[====]` for a run and `x` for a fire that does not run.
//!
//! Invariants:
//! - decisions depend only on their inputs: replaying the same history gives the same
//!   decisions (jitter and back-off jitter are hashes of (job, nominal instant,
//!   attempt), never a random number generator), so every node of a cluster agrees;
//! - jitter never moves a fire past the next nominal fire;
//! - every fire that does not run is counted (missed or skipped), never silently lost.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What happens when a fire is due while previous runs of the same job still run.
///
/// ```text
/// fires:            |         |         |         |
/// Allow:            [==============]
///                             [==============]          (runs side by side)
/// Skip:             [==============]  x         [====    (the 2nd fire is skipped)
/// BufferOne:        [==============][=====]             (at most one waits; more skip)
/// BufferAll(max):   [==============][=====][=====]      (up to `max` wait, in order)
/// CancelPrevious:   [=========>c[========               (cancel token fired, then start)
/// TerminatePrevious:[=========>k[========               (process group killed, then start)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Start the new run beside the running ones (bounded by the job's concurrency limit).
    Allow,
    /// Drop the new fire (counted as skipped). The default: most cron jobs must not
    /// overlap themselves.
    #[default]
    Skip,
    /// Keep at most one fire waiting; it starts when the running one ends.
    BufferOne,
    /// Keep up to `max` fires waiting, started in order.
    BufferAll {
        /// The bound on waiting fires.
        max: u32,
    },
    /// Ask running runs to stop (cancellation token), wait for them, then start.
    CancelPrevious,
    /// Kill running runs (a command's whole process group) at once, then start.
    TerminatePrevious,
}

/// The overlap decision for one due fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapDecision {
    /// Start it now.
    Start,
    /// Queue it behind the running run.
    Buffer,
    /// Do not run it; count it as skipped.
    Skip,
    /// Cancel (cooperatively) the running runs, then start it.
    CancelThenStart,
    /// Kill the running runs, then start it.
    TerminateThenStart,
}

impl OverlapPolicy {
    /// Decides for a fire that is due while `running` runs are going and `buffered`
    /// fires wait. `limit` is the job's concurrency limit (at least 1).
    pub fn decide(self, running: u32, buffered: u32, limit: u32) -> OverlapDecision {
        let limit = limit.max(1);
        if running == 0 && buffered == 0 {
            return OverlapDecision::Start;
        }
        match self {
            OverlapPolicy::Allow if running < limit => OverlapDecision::Start,
            OverlapPolicy::Allow => OverlapDecision::Skip,
            OverlapPolicy::Skip => OverlapDecision::Skip,
            OverlapPolicy::BufferOne if buffered == 0 => OverlapDecision::Buffer,
            OverlapPolicy::BufferOne => OverlapDecision::Skip,
            OverlapPolicy::BufferAll { max } if buffered < max => OverlapDecision::Buffer,
            OverlapPolicy::BufferAll { .. } => OverlapDecision::Skip,
            OverlapPolicy::CancelPrevious => OverlapDecision::CancelThenStart,
            OverlapPolicy::TerminatePrevious => OverlapDecision::TerminateThenStart,
        }
    }
}

/// What happens to fires whose nominal instant passed while the scheduler could not run
/// them (downtime, a pause, a late wake-up, etcd unavailable).
///
/// A fire that is late by no more than `grace` is not a misfire: it runs normally.
/// Fires older than `window` are never run (counted as missed) whatever the mode.
///
/// ```text
/// fires:     |    |    |    |    |   now
/// down:      ^^^^^^^^^^^^^^^^^^^^^^^^^
/// Skip:      x    x    x    x    x   (next run at the next fire)
/// RunOnce:   x    x    x    x    [=] (one run, for the latest missed fire)
/// RunAll:    [=][=][=][=][=]         (each missed fire in order, up to `max`)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MisfirePolicy {
    /// What to do with missed fires.
    pub mode: MisfireMode,
    /// Lateness that still counts as on time.
    pub grace: Duration,
    /// How far back catch-up looks; older fires are missed.
    pub window: Duration,
}

/// The catch-up modes of [`MisfirePolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisfireMode {
    /// Run none of them.
    Skip,
    /// Run once, for the latest missed fire. The default.
    #[default]
    RunOnce,
    /// Run every missed fire in the window, oldest first, at most `max`.
    RunAll {
        /// Cap on catch-up runs; fires beyond it are missed.
        max: u32,
    },
}

impl Default for MisfirePolicy {
    fn default() -> Self {
        Self {
            mode: MisfireMode::RunOnce,
            grace: Duration::from_secs(60),
            window: Duration::from_secs(24 * 3600),
        }
    }
}

/// What to do with a list of overdue fires.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatchUp {
    /// Fires to run now, oldest first (their nominal instants keep their identity).
    pub run: Vec<Timestamp>,
    /// Fires that will not run, counted as missed.
    pub missed: Vec<Timestamp>,
}

impl MisfirePolicy {
    /// Sorts `overdue` (nominal instants before `now`, oldest first, none run yet) into
    /// those to run and those missed.
    pub fn plan(&self, overdue: &[Timestamp], now: Timestamp) -> CatchUp {
        let mut plan = CatchUp::default();
        let grace_start = now.checked_sub(self.grace).unwrap_or(Timestamp::MIN);
        let window_start = now.checked_sub(self.window).unwrap_or(Timestamp::MIN);
        // On-time fires (within grace) always run.
        let (late, on_time): (Vec<Timestamp>, Vec<Timestamp>) =
            overdue.iter().partition(|t| **t < grace_start);
        let (in_window, too_old): (Vec<Timestamp>, Vec<Timestamp>) =
            late.into_iter().partition(|t| *t >= window_start);
        plan.missed.extend(too_old);
        match self.mode {
            MisfireMode::Skip => plan.missed.extend(in_window),
            MisfireMode::RunOnce => {
                if on_time.is_empty() {
                    if let Some((last, rest)) = in_window.split_last() {
                        plan.missed.extend_from_slice(rest);
                        plan.run.push(*last);
                    }
                } else {
                    plan.missed.extend(in_window);
                }
            }
            MisfireMode::RunAll { max } => {
                let max = max as usize;
                let keep = in_window
                    .len()
                    .min(max.saturating_sub(on_time.len().min(max)));
                let cut = in_window.len() - keep;
                plan.missed.extend_from_slice(&in_window[..cut]);
                plan.run.extend_from_slice(&in_window[cut..]);
            }
        }
        plan.run.extend(on_time);
        plan.missed.sort();
        plan
    }
}

/// Retries of a failed run: attempts, exponential back-off with deterministic jitter,
/// a per-attempt timeout, and an optional pause of the job after repeated failure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Back-off before the second attempt.
    pub initial_backoff: Duration,
    /// Upper bound on any back-off.
    pub max_backoff: Duration,
    /// Growth factor per attempt (≥ 1).
    pub multiplier: f64,
    /// Fraction of each back-off that is randomised (0 = none, 1 = "full jitter").
    pub jitter: f64,
    /// Each attempt is cancelled after this long.
    pub attempt_timeout: Option<Duration>,
    /// Pause the job after this many consecutive failed fires (all attempts failed).
    pub pause_after_failures: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.5,
            attempt_timeout: None,
            pause_after_failures: None,
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `next_attempt` (2 for the first retry) of the fire
    /// `fire_key`, or `None` when no attempt is left.
    ///
    /// The nominal back-off is `initial · multiplier^(next_attempt − 2)`, capped at
    /// `max_backoff`; jitter subtracts up to `jitter ·` that much, derived from a hash of
    /// (fire, attempt), so all nodes compute the same pause.
    pub fn backoff(&self, fire_key: u64, next_attempt: u32) -> Option<Duration> {
        if next_attempt < 2 || next_attempt > self.max_attempts {
            return None;
        }
        let exponent = i32::try_from(next_attempt - 2).unwrap_or(i32::MAX);
        let nominal = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = nominal.min(self.max_backoff.as_secs_f64());
        let unit = unit_interval(mix(fire_key ^ u64::from(next_attempt).rotate_left(32)));
        let jittered = capped * (1.0 - self.jitter.clamp(0.0, 1.0) * unit);
        Some(Duration::from_secs_f64(jittered.max(0.0)))
    }
}

/// A deterministic delay in `[0, max)` for the fire (job, nominal instant), never reaching
/// the next nominal fire: the bound is `min(max, next_nominal − nominal − 1 ms)`.
pub fn jitter(
    job_seed: u64,
    nominal: Timestamp,
    next_nominal: Option<Timestamp>,
    max: Duration,
) -> Duration {
    let mut bound = max;
    if let Some(next) = next_nominal {
        let gap = next.duration_since(nominal);
        let gap = Duration::try_from(gap).unwrap_or(Duration::ZERO);
        bound = bound.min(gap.saturating_sub(Duration::from_millis(1)));
    }
    if bound.is_zero() {
        return Duration::ZERO;
    }
    let h = mix(job_seed ^ mix(nominal.as_millisecond() as u64));
    let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(h % bound_ms).min(bound)
}

/// SplitMix64's finaliser: a fast, well-distributed, stable 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value in `[0, 1)` from the top 53 bits of `h`.
fn unit_interval(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + min * 60).expect("valid")
    }

    #[test]
    fn overlap_decisions() {
        use OverlapDecision::*;
        for policy in [
            OverlapPolicy::Allow,
            OverlapPolicy::Skip,
            OverlapPolicy::BufferOne,
            OverlapPolicy::BufferAll { max: 3 },
            OverlapPolicy::CancelPrevious,
            OverlapPolicy::TerminatePrevious,
        ] {
            assert_eq!(policy.decide(0, 0, 1), Start, "{policy:?} starts when idle");
        }
        assert_eq!(OverlapPolicy::Allow.decide(1, 0, 2), Start);
        assert_eq!(OverlapPolicy::Allow.decide(2, 0, 2), Skip);
        assert_eq!(OverlapPolicy::Skip.decide(1, 0, 5), Skip);
        assert_eq!(OverlapPolicy::BufferOne.decide(1, 0, 1), Buffer);
        assert_eq!(OverlapPolicy::BufferOne.decide(1, 1, 1), Skip);
        assert_eq!(OverlapPolicy::BufferAll { max: 2 }.decide(1, 1, 1), Buffer);
        assert_eq!(OverlapPolicy::BufferAll { max: 2 }.decide(1, 2, 1), Skip);
        assert_eq!(
            OverlapPolicy::CancelPrevious.decide(1, 0, 1),
            CancelThenStart
        );
        assert_eq!(
            OverlapPolicy::TerminatePrevious.decide(3, 0, 1),
            TerminateThenStart
        );
    }

    fn policy(mode: MisfireMode) -> MisfirePolicy {
        MisfirePolicy {
            mode,
            grace: Duration::from_secs(90),
            window: Duration::from_secs(3600),
        }
    }

    #[test]
    fn misfire_skip() {
        // Down from minute 0 to minute 10; fires every 2 minutes; now = 10.
        let overdue: Vec<_> = (0..5).map(|k| at(2 * k)).collect();
        let plan = policy(MisfireMode::Skip).plan(&overdue, at(10));
        assert!(plan.run.is_empty());
        assert_eq!(plan.missed, overdue);
    }

    #[test]
    fn misfire_run_once_takes_the_latest() {
        let overdue: Vec<_> = (0..5).map(|k| at(2 * k)).collect();
        let plan = policy(MisfireMode::RunOnce).plan(&overdue, at(10));
        assert_eq!(plan.run, vec![at(8)]);
        assert_eq!(plan.missed, vec![at(0), at(2), at(4), at(6)]);
    }

    #[test]
    fn misfire_run_once_prefers_an_on_time_fire() {
        // Minute 9 is within the 90 s grace at now = 10: it runs as a normal fire.
        let overdue = vec![at(3), at(6), at(9)];
        let plan = policy(MisfireMode::RunOnce).plan(&overdue, at(10));
        assert_eq!(plan.run, vec![at(9)]);
        assert_eq!(plan.missed, vec![at(3), at(6)]);
    }

    #[test]
    fn misfire_run_all_is_capped_and_windowed() {
        // Window 1 h at now = 120: minutes 0..=59 are too old.
        let overdue: Vec<_> = (0..12).map(|k| at(10 * k)).collect();
        let plan = policy(MisfireMode::RunAll { max: 3 }).plan(&overdue, at(120));
        assert_eq!(plan.run, vec![at(90), at(100), at(110)]);
        assert_eq!(plan.missed.len(), 9);
        assert_eq!(
            plan.run.len() + plan.missed.len(),
            overdue.len(),
            "nothing lost"
        );
        let uncapped = policy(MisfireMode::RunAll { max: 100 }).plan(&overdue, at(120));
        assert_eq!(
            uncapped.run,
            vec![at(60), at(70), at(80), at(90), at(100), at(110)]
        );
    }

    #[test]
    fn retry_backoff_grows_caps_and_is_deterministic() {
        let policy = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let pauses: Vec<_> = (2..=6)
            .map(|a| policy.backoff(7, a).expect("attempt left"))
            .collect();
        assert_eq!(pauses, [1, 2, 4, 5, 5].map(Duration::from_secs).to_vec());
        assert_eq!(policy.backoff(7, 7), None);
        assert_eq!(policy.backoff(7, 1), None);
        let jittered = RetryPolicy {
            jitter: 1.0,
            ..policy
        };
        for attempt in 2..=6 {
            let a = jittered.backoff(42, attempt).expect("attempt left");
            assert_eq!(Some(a), jittered.backoff(42, attempt), "deterministic");
            assert!(a <= policy.backoff(42, attempt).expect("left"));
        }
        let spread: std::collections::HashSet<_> = (0..50)
            .map(|fire| jittered.backoff(fire, 3).expect("left"))
            .collect();
        assert!(
            spread.len() > 40,
            "jitter spreads retries: {}",
            spread.len()
        );
    }

    #[test]
    fn jitter_is_bounded_by_the_next_fire() {
        let nominal = at(0);
        for seed in 0..1000 {
            let j = jitter(seed, nominal, Some(at(1)), Duration::from_secs(600));
            assert!(j < Duration::from_secs(60), "{j:?}");
            assert_eq!(
                j,
                jitter(seed, nominal, Some(at(1)), Duration::from_secs(600))
            );
        }
        assert_eq!(
            jitter(1, nominal, Some(nominal), Duration::from_secs(5)),
            Duration::ZERO
        );
        assert_eq!(jitter(1, nominal, None, Duration::ZERO), Duration::ZERO);
        let spread: std::collections::HashSet<_> = (0..200)
            .map(|seed| jitter(seed, nominal, None, Duration::from_secs(30)))
            .collect();
        assert!(spread.len() > 150);
    }
}
