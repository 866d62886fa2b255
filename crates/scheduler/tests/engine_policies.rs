//! Retries with back-off, per-attempt timeouts, pause after failures, deterministic
//! jitter, named pool limits and fixed-delay jobs on the engine, on virtual time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Recorder, handler_job, mins, register_sleeper, scheduler_at, ts};
use jiff::SignedDuration;
use sundial_scheduler::engine::{HandlerError, Scheduler, SchedulerEvent};
use sundial_scheduler::job::{JobId, RunState, TriggerSpec};
use sundial_scheduler::jobs_file::Policies;
use sundial_scheduler::policy::RetryPolicy;
use sundial_scheduler::store::{JobStore, MemoryJobStore};

#[tokio::test(start_paused = true)]
async fn retries_back_off_then_succeed_in_one_ledger_row() {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at("2024-01-01T00:00:00Z", &store, "n1");
    let rec = Recorder::default();
    let (r, calls) = (rec.clone(), Arc::new(AtomicU32::new(0)));
    s.register_async("flaky", move |ctx| {
        let (r, calls, clock) = (r.clone(), calls.clone(), clock.clone());
        async move {
            r.push(&ctx, clock.now());
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(HandlerError::msg("not yet"))
            } else {
                Ok(())
            }
        }
    });
    s.start().await.expect("start");
    let spec = handler_job(
        "flaky",
        TriggerSpec::at(ts("2024-01-01T00:01:00Z")),
        "flaky",
    )
    .with_policies(Policies {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.0,
            ..RetryPolicy::default()
        },
        ..Policies::default()
    });
    s.add(spec).await.expect("add");
    tokio::time::sleep(mins(5)).await;
    let starts: Vec<_> = rec.all().iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(
        starts,
        vec![
            (ts("2024-01-01T00:01:00Z"), 1),
            (ts("2024-01-01T00:01:10Z"), 2),
            (ts("2024-01-01T00:01:30Z"), 3),
        ]
    );
    let runs = store.all_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].state, runs[0].attempt), (RunState::Succeeded, 3));
    assert_eq!(s.metrics().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_and_pause_after_failures() {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at("2024-01-01T00:00:00Z", &store, "n1");
    let mut events = s.subscribe();
    register_sleeper(&s, "slow", clock, Duration::from_secs(3600));
    s.start().await.expect("start");
    let spec = handler_job(
        "slow",
        TriggerSpec::every(mins(10), ts("2024-01-01T00:00:00Z")),
        "slow",
    )
    .with_policies(Policies {
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_secs(5),
            jitter: 0.0,
            attempt_timeout: Some(Duration::from_secs(60)),
            pause_after_failures: Some(2),
            ..RetryPolicy::default()
        },
        ..Policies::default()
    });
    s.add(spec).await.expect("add");
    tokio::time::sleep(mins(60)).await;
    let runs = store.all_runs();
    // 00:10 and 00:20 time out twice each (60 s + 5 s + 60 s); then the job pauses.
    assert_eq!(runs.len(), 2, "{runs:#?}");
    for run in &runs {
        assert_eq!((run.state, run.attempt), (RunState::TimedOut, 2));
        assert_eq!(
            run.finished_at,
            Some(run.nominal + SignedDuration::from_secs(125))
        );
    }
    let info = s.get(&JobId::new("slow")).expect("job");
    assert!(info.spec.paused);
    assert_eq!(info.next_fire, None);
    let mut paused = false;
    while let Ok(e) = events.try_recv() {
        paused |= matches!(e, SchedulerEvent::PausedAfterFailures { failures: 2, .. });
    }
    assert!(paused);
}

#[tokio::test(start_paused = true)]
async fn jitter_is_deterministic_and_bounded() {
    async fn starts(node: &str) -> Vec<(jiff::Timestamp, jiff::Timestamp)> {
        let store = MemoryJobStore::new();
        let (s, clock) = scheduler_at("2024-01-01T00:00:00Z", &store, node);
        let rec = register_sleeper(&s, "work", clock, Duration::from_secs(1));
        s.start().await.expect("start");
        let spec = handler_job("spread", TriggerSpec::cron("0 * * * *", "UTC"), "work")
            .with_policies(Policies {
                jitter: mins(5),
                ..Policies::default()
            });
        s.add(spec).await.expect("add");
        tokio::time::sleep(mins(6 * 60 + 6)).await;
        rec.all().iter().map(|r| (r.0, r.1)).collect()
    }
    let a = starts("a").await;
    let b = starts("b").await;
    assert_eq!(a.len(), 6);
    assert_eq!(a, b, "same job, same fires: same jitter on every node");
    let delays: std::collections::HashSet<_> = a
        .iter()
        .map(|(nominal, started)| {
            let d = started.duration_since(*nominal);
            assert!(
                d >= SignedDuration::ZERO && d < SignedDuration::from_mins(5),
                "{d}"
            );
            d
        })
        .collect();
    assert!(delays.len() > 1, "jitter varies per fire");
}

#[tokio::test(start_paused = true)]
async fn named_pools_limit_runs_across_jobs() {
    let store = MemoryJobStore::new();
    let clock: Arc<dyn sundial_scheduler::engine::Clock> = Arc::new(
        sundial_scheduler::engine::TokioClock::starting_at(ts("2024-01-01T00:00:00Z")),
    );
    let s = Scheduler::builder()
        .store(Arc::new(store.clone()))
        .clock(clock.clone())
        .pool("etl", 1)
        .build();
    let rec = register_sleeper(&s, "work", clock, mins(10));
    s.start().await.expect("start");
    for id in ["a", "b", "c"] {
        let spec = handler_job(id, TriggerSpec::at(ts("2024-01-01T01:00:00Z")), "work")
            .with_policies(Policies {
                pool: "etl".into(),
                ..Policies::default()
            });
        s.add(spec).await.expect("add");
    }
    tokio::time::sleep(mins(65)).await;
    assert_eq!(s.metrics().pool_waiting, 2, "two wait for the one permit");
    tokio::time::sleep(mins(60)).await;
    let mut starts: Vec<_> = rec.all().iter().map(|r| r.1).collect();
    starts.sort();
    assert_eq!(
        starts,
        vec![
            ts("2024-01-01T01:00:00Z"),
            ts("2024-01-01T01:10:00Z"),
            ts("2024-01-01T01:20:00Z")
        ]
    );
    // Lateness counts the wait for the pool: 0, 10 and 20 minutes.
    let m = s.metrics();
    assert_eq!(m.lateness.count, 3);
    assert!(
        (m.lateness.sum_seconds - 1800.0).abs() < 1e-3,
        "{}",
        m.lateness.sum_seconds
    );
}

#[tokio::test(start_paused = true)]
async fn fixed_delay_counts_from_each_completion() {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at("2024-01-01T00:00:00Z", &store, "n1");
    let rec = register_sleeper(&s, "work", clock, mins(3));
    s.start().await.expect("start");
    let spec = handler_job(
        "d",
        TriggerSpec::delay(mins(10), ts("2024-01-01T00:00:00Z")),
        "work",
    );
    s.add(spec).await.expect("add");
    tokio::time::sleep(mins(60)).await;
    // 00:10 runs to 00:13; next 00:23 → 00:26; 00:36 → 00:39; 00:49 → 00:52.
    let starts: Vec<_> = rec.all().iter().map(|r| r.1).collect();
    assert_eq!(
        starts,
        ["00:10", "00:23", "00:36", "00:49"]
            .iter()
            .map(|t| ts(&format!("2024-01-01T{t}:00Z")))
            .collect::<Vec<_>>()
    );
    let next = s.upcoming(&JobId::new("d"), 3).expect("job");
    assert_eq!(
        next,
        vec![ts("2024-01-01T01:02:00Z")],
        "one known fire ahead"
    );
}

#[tokio::test(start_paused = true)]
async fn update_and_remove_leave_running_runs_alone() {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at("2024-01-01T00:00:00Z", &store, "n1");
    let rec = register_sleeper(&s, "work", clock, mins(30));
    s.start().await.expect("start");
    let id = JobId::new("j");
    s.add(handler_job(
        "j",
        TriggerSpec::cron("0 * * * *", "UTC"),
        "work",
    ))
    .await
    .expect("add");
    tokio::time::sleep(mins(70)).await; // 01:00 runs until 01:30
    s.update(handler_job(
        "j",
        TriggerSpec::cron("15 * * * *", "UTC"),
        "work",
    ))
    .await
    .expect("update");
    assert_eq!(
        s.running(&id).expect("job").len(),
        1,
        "update did not cancel it"
    );
    assert_eq!(
        s.upcoming(&id, 2).expect("job"),
        vec![ts("2024-01-01T01:15:00Z"), ts("2024-01-01T02:15:00Z")]
    );
    // 01:15 is skipped (01:00 still runs, overlap skip); 02:15 runs.
    tokio::time::sleep(mins(70)).await; // 02:20
    s.remove(&id).await.expect("remove");
    tokio::time::sleep(mins(60)).await;
    assert_eq!(
        rec.nominals(),
        vec![ts("2024-01-01T01:00:00Z"), ts("2024-01-01T02:15:00Z")]
    );
    let runs = store.all_runs();
    assert!(
        runs.iter().all(|r| r.state == RunState::Succeeded),
        "{runs:#?}"
    );
    assert!(s.get(&id).is_err());
}

#[tokio::test(start_paused = true)]
async fn reconcile_adds_updates_removes_and_keeps() {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at("2024-01-01T00:00:00Z", &store, "n1");
    register_sleeper(&s, "work", clock, mins(1));
    s.start().await.expect("start");
    let every =
        |id: &str, anchor: &str| handler_job(id, TriggerSpec::every(mins(7), ts(anchor)), "work");
    let first = s
        .reconcile(vec![
            every("keep", "2024-01-01T00:00:01Z"),
            every("drop", "2024-01-01T00:00:01Z"),
        ])
        .await
        .expect("reconcile");
    assert_eq!(first.added.len(), 2);
    let next_before = s.get(&JobId::new("keep")).expect("job").next_fire;
    // Reloaded later: "keep" is re-anchored by the loader but unchanged in definition.
    let second = s
        .reconcile(vec![
            every("keep", "2024-01-01T00:05:03Z"),
            handler_job("new", TriggerSpec::cron("0 0 * * *", "UTC"), "work"),
        ])
        .await
        .expect("reconcile");
    assert_eq!(second.unchanged, vec![JobId::new("keep")]);
    assert_eq!(second.added, vec![JobId::new("new")]);
    assert_eq!(second.removed, vec![JobId::new("drop")]);
    assert_eq!(
        s.get(&JobId::new("keep")).expect("job").next_fire,
        next_before
    );
    let mut changed = every("keep", "2024-01-01T00:00:01Z");
    changed.policies.max_concurrency = 3;
    let third = s.reconcile(vec![changed]).await.expect("reconcile");
    assert_eq!(third.updated, vec![JobId::new("keep")]);
    assert_eq!(s.list().len(), 1);
    assert_eq!(store.load_jobs().await.expect("jobs").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_fails_its_run_and_the_job_goes_on() {
    let store = MemoryJobStore::new();
    let (s, _clock) = scheduler_at("2024-01-01T00:00:00Z", &store, "n1");
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    s.register_async("boom", move |_ctx| {
        let c = c.clone();
        async move {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("handler panics on purpose");
            }
            Ok(())
        }
    });
    s.start().await.expect("start");
    s.add(handler_job(
        "p",
        TriggerSpec::cron("0 * * * *", "UTC"),
        "boom",
    ))
    .await
    .expect("add");
    tokio::time::sleep(mins(130)).await;
    let mut runs = store.all_runs();
    runs.sort_by_key(|r| r.nominal);
    let states: Vec<_> = runs.iter().map(|r| (r.state, r.error.clone())).collect();
    assert_eq!(
        states,
        vec![
            (RunState::Failed, Some("the handler panicked".to_owned())),
            (RunState::Succeeded, None),
        ]
    );
    assert_eq!(s.metrics().running, 0);
}

#[tokio::test(start_paused = true)]
async fn retention_prunes_the_ledger_as_runs_finish() {
    use sundial_scheduler::engine::PRUNE_EVERY;
    use sundial_scheduler::store::Retention;
    let store = MemoryJobStore::new();
    let clock: Arc<dyn sundial_scheduler::engine::Clock> = Arc::new(
        sundial_scheduler::engine::TokioClock::starting_at(ts("2024-01-01T00:00:00Z")),
    );
    let s = Scheduler::builder()
        .store(Arc::new(store.clone()))
        .clock(clock.clone())
        .retention(Retention {
            keep_last: Some(5),
            max_age: None,
        })
        .build();
    register_sleeper(&s, "work", clock, Duration::from_secs(1));
    s.start().await.expect("start");
    s.add(handler_job(
        "busy",
        TriggerSpec::every(mins(1), ts("2024-01-01T00:00:00Z")),
        "work",
    ))
    .await
    .expect("add");
    let total = PRUNE_EVERY + 10;
    tokio::time::sleep(mins(total) + Duration::from_secs(30)).await;
    let kept = store.all_runs().len() as u64;
    assert_eq!(s.metrics().runs_succeeded, total);
    // Pruned to 5 at the 256th run; 10 more since.
    assert_eq!(kept, 5 + 10, "{kept}");
    let newest = s.runs(&JobId::new("busy"), 1).await.expect("runs");
    assert_eq!(
        newest[0].nominal,
        ts("2024-01-01T00:00:00Z") + SignedDuration::from_mins(total as i64)
    );
}
