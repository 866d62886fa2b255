//! The timer driver on tokio's paused (virtual) clock: days of timers in milliseconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sundial_scheduler::timer::{
    DriverConfig, DriverError, FireContext, Job, PoolConfig, Repeat, SaturationPolicy, spawn,
};
use tokio::time::{Instant, sleep};

type Log = Arc<Mutex<Vec<(FireContext, Instant)>>>;

/// A job that records (context, start instant) and then takes `busy` (virtual) time.
fn recorder(log: &Log, busy: Duration) -> Job {
    let log = log.clone();
    Job::from_async(move |ctx| {
        let log = log.clone();
        async move {
            log.lock().expect("log lock").push((ctx, Instant::now()));
            if !busy.is_zero() {
                sleep(busy).await;
            }
        }
    })
}

fn entries(log: &Log) -> Vec<(FireContext, Instant)> {
    log.lock().expect("log lock").clone()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn one_shot_fires_at_its_deadline_in_virtual_time() {
    let (timers, _task) = spawn(DriverConfig::default());
    let log = Log::default();
    let start = Instant::now();
    let at = start + Duration::from_millis(1500);
    timers
        .schedule(at, Repeat::Once, recorder(&log, Duration::ZERO))
        .expect("schedule");
    sleep(Duration::from_millis(1499)).await;
    assert!(entries(&log).is_empty(), "fired early");
    sleep(Duration::from_millis(10)).await;
    let got = entries(&log);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.scheduled, at);
    assert_eq!(
        got[0].1, at,
        "started exactly at the deadline on the virtual clock"
    );
}

#[tokio::test(start_paused = true)]
async fn fixed_rate_does_not_drift_over_a_day() {
    let (timers, _task) = spawn(DriverConfig::default());
    let log = Log::default();
    let first = Instant::now() + HOUR;
    // Each run takes ten minutes: fixed rate must not add it to the period.
    timers
        .schedule(
            first,
            Repeat::FixedRate(HOUR),
            recorder(&log, Duration::from_secs(600)),
        )
        .expect("schedule");
    sleep(HOUR * 24 + Duration::from_secs(1)).await;
    let got = entries(&log);
    assert_eq!(got.len(), 24);
    for (n, (ctx, started)) in got.iter().enumerate() {
        assert_eq!(ctx.fire, n as u64);
        assert_eq!(ctx.scheduled, first + HOUR * n as u32);
        assert_eq!(*started, ctx.scheduled);
    }
}

#[tokio::test(start_paused = true)]
async fn fixed_delay_counts_from_completion() {
    let (timers, _task) = spawn(DriverConfig::default());
    let log = Log::default();
    let first = Instant::now() + HOUR;
    let busy = Duration::from_secs(600);
    timers
        .schedule(first, Repeat::FixedDelay(HOUR), recorder(&log, busy))
        .expect("schedule");
    sleep(HOUR * 6).await;
    let got = entries(&log);
    // 1h, 2h10, 3h20, 4h30, 5h40 (fixed rate would have fired six times by 6h).
    assert_eq!(got.len(), 5);
    for (n, (ctx, started)) in got.iter().enumerate() {
        assert_eq!(ctx.scheduled, first + (HOUR + busy) * n as u32);
        assert_eq!(*started, ctx.scheduled);
    }
}

#[tokio::test(start_paused = true)]
async fn cancelled_timers_do_not_fire() {
    let (timers, _task) = spawn(DriverConfig::default());
    let log = Log::default();
    let once = timers
        .schedule_after(HOUR, Repeat::Once, recorder(&log, Duration::ZERO))
        .expect("schedule");
    let rate = timers
        .schedule_after(
            HOUR,
            Repeat::FixedRate(HOUR),
            recorder(&log, Duration::ZERO),
        )
        .expect("schedule");
    timers.cancel(once).expect("cancel");
    sleep(HOUR * 3 + Duration::from_secs(1)).await;
    assert_eq!(entries(&log).len(), 3);
    timers.cancel(rate).expect("cancel");
    sleep(HOUR * 3).await;
    assert_eq!(entries(&log).len(), 3, "no fire after cancel");
}

#[tokio::test(start_paused = true)]
async fn thousands_of_timers_over_three_days_fire_on_time() {
    let (timers, _task) = spawn(DriverConfig::default());
    let log = Log::default();
    let start = Instant::now();
    let mut x: u64 = 0x1234_5678;
    let mut expected = Vec::new();
    for _ in 0..5_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = start + Duration::from_millis(x % (3 * 86_400_000));
        expected.push(at);
        timers
            .schedule(at, Repeat::Once, recorder(&log, Duration::ZERO))
            .expect("schedule");
    }
    sleep(Duration::from_secs(3 * 86_400 + 1)).await;
    let got = entries(&log);
    assert_eq!(got.len(), expected.len());
    for (ctx, started) in &got {
        assert!(*started >= ctx.scheduled, "never early");
        assert!(
            *started - ctx.scheduled < Duration::from_millis(1),
            "within the tick"
        );
    }
    let mut seen: Vec<Instant> = got.iter().map(|(c, _)| c.scheduled).collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test(start_paused = true)]
async fn saturated_pool_drops_and_counts_without_delaying_the_timer() {
    let (timers, _task) = spawn(DriverConfig {
        pool: PoolConfig {
            async_workers: 1,
            blocking_workers: 1,
            saturation: SaturationPolicy::QueueUpTo(1),
        },
        ..DriverConfig::default()
    });
    let log = Log::default();
    let at = Instant::now() + Duration::from_secs(1);
    for _ in 0..4 {
        // Each run blocks its worker for an hour of virtual time.
        timers
            .schedule(at, Repeat::Once, recorder(&log, HOUR))
            .expect("schedule");
    }
    let later = Log::default();
    timers
        .schedule(at + Duration::from_secs(1), Repeat::Once, {
            let later = later.clone();
            Job::from_blocking(move |ctx| later.lock().expect("lock").push((ctx, Instant::now())))
        })
        .expect("schedule");
    sleep(Duration::from_secs(3)).await;
    let m = timers.pool().metrics();
    assert_eq!(m.dispatched, 5);
    assert_eq!(m.dropped, 2, "one running, one queued, two dropped");
    assert_eq!(entries(&log).len(), 1);
    let blocking = entries(&later);
    assert_eq!(
        blocking.len(),
        1,
        "the blocking lane is not held up by the async lane"
    );
}

#[tokio::test(start_paused = true)]
async fn zero_period_is_rejected_and_shutdown_stops_the_driver() {
    let (timers, task) = spawn(DriverConfig::default());
    let job = Job::from_blocking(|_| {});
    assert_eq!(
        timers.schedule_after(HOUR, Repeat::FixedRate(Duration::ZERO), job.clone()),
        Err(DriverError::ZeroPeriod)
    );
    timers.shutdown();
    task.await.expect("driver task ends cleanly");
    assert_eq!(
        timers.schedule_after(HOUR, Repeat::Once, job),
        Err(DriverError::Stopped)
    );
}
