//! Overlap policies, each on its documented timeline: a job fires every 10 minutes
//! (00:10, 00:20, …) and each run takes 23 minutes (virtual time).

mod common;

use common::{Recorder, handler_job, mins, register_sleeper, scheduler_at, ts};
use sundial_scheduler::engine::{HandlerError, Scheduler, TriggerOutcome};
use sundial_scheduler::job::{JobId, RunState, TriggerSpec};
use sundial_scheduler::jobs_file::Policies;
use sundial_scheduler::policy::OverlapPolicy;
use sundial_scheduler::store::MemoryJobStore;

const T0: &str = "2024-01-01T00:00:00Z";

fn at_min(m: i64) -> jiff::Timestamp {
    ts(T0)
        .checked_add(jiff::SignedDuration::from_mins(m))
        .expect("in range")
}

/// Runs the 10-minute job under `overlap` for 65 minutes; returns the recorder, the
/// scheduler and the store.
async fn timeline(
    overlap: OverlapPolicy,
    max_concurrency: u32,
) -> (Recorder, Scheduler, MemoryJobStore) {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at(T0, &store, "n1");
    let rec = register_sleeper(&s, "work", clock, mins(23));
    s.start().await.expect("start");
    let spec =
        handler_job("j", TriggerSpec::every(mins(10), ts(T0)), "work").with_policies(Policies {
            overlap,
            max_concurrency,
            ..Policies::default()
        });
    s.add(spec).await.expect("add");
    tokio::time::sleep(mins(65)).await;
    (rec, s, store)
}

#[tokio::test(start_paused = true)]
async fn skip_drops_fires_while_running() {
    let (rec, s, _) = timeline(OverlapPolicy::Skip, 1).await;
    // 10 runs to 33; 20, 30 skipped; 40 runs to 63; 50, 60 skipped.
    assert_eq!(rec.nominals(), vec![at_min(10), at_min(40)]);
    for (nominal, started, attempt) in rec.all() {
        assert_eq!(nominal, started, "no lateness on virtual time");
        assert_eq!(attempt, 1);
    }
    let m = s.metrics();
    assert_eq!(m.skipped, 4);
    assert_eq!(m.fires, 6);
}

#[tokio::test(start_paused = true)]
async fn allow_runs_side_by_side_up_to_the_limit() {
    let (rec, s, _) = timeline(OverlapPolicy::Allow, 2).await;
    // 10→33 and 20→43 run together; 30 finds two running: skipped; 40 starts (only 20
    // runs), 50 starts (20 ended at 43, only 40 runs); 60 finds 40 and 50: skipped.
    assert_eq!(
        rec.nominals(),
        vec![at_min(10), at_min(20), at_min(40), at_min(50)]
    );
    assert_eq!(s.metrics().skipped, 2);
}

#[tokio::test(start_paused = true)]
async fn buffer_one_keeps_one_waiting() {
    let (rec, s, _) = timeline(OverlapPolicy::BufferOne, 1).await;
    // 10→33; 20 waits, 30 skipped; 20 runs 33→56; 40 waits, 50 skipped; 40 runs 56→79;
    // 60 waits.
    assert_eq!(rec.nominals(), vec![at_min(10), at_min(20), at_min(40)]);
    let starts: Vec<_> = rec.all().iter().map(|r| r.1).collect();
    assert_eq!(starts, vec![at_min(10), at_min(33), at_min(56)]);
    assert_eq!(s.metrics().skipped, 2);
    let info = s.get(&JobId::new("j")).expect("job");
    assert_eq!((info.running, info.buffered), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn buffer_all_keeps_up_to_max_in_order() {
    let (rec, s, _) = timeline(OverlapPolicy::BufferAll { max: 2 }, 1).await;
    // 10→33; 20, 30 wait; 20 runs 33→56; 40 waits (30, 40); 50 skipped (two wait);
    // 30 runs 56→79; 60 waits (40, 60).
    assert_eq!(rec.nominals(), vec![at_min(10), at_min(20), at_min(30)]);
    assert_eq!(s.metrics().skipped, 1);
    assert_eq!(s.get(&JobId::new("j")).expect("job").buffered, 2);
}

#[tokio::test(start_paused = true)]
async fn cancel_previous_cancels_then_starts() {
    let (rec, s, store) = timeline(OverlapPolicy::CancelPrevious, 1).await;
    // Every fire cancels the run going (it stops cooperatively) and starts at once.
    let expected: Vec<_> = (1..=6).map(|k| at_min(10 * k)).collect();
    assert_eq!(rec.nominals(), expected);
    let runs = store.all_runs();
    let cancelled = runs
        .iter()
        .filter(|r| r.state == RunState::Cancelled)
        .count();
    assert_eq!(cancelled, 5, "{runs:#?}");
    assert_eq!(s.metrics().runs_cancelled, 5);
}

#[tokio::test(start_paused = true)]
async fn terminate_previous_stops_an_uncooperative_run() {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at(T0, &store, "n1");
    let rec = Recorder::default();
    let r = rec.clone();
    // Ignores its cancellation token.
    s.register_async("stubborn", move |ctx| {
        let r = r.clone();
        let clock = clock.clone();
        async move {
            r.push(&ctx, clock.now());
            tokio::time::sleep(mins(23)).await;
            Ok::<(), HandlerError>(())
        }
    });
    s.start().await.expect("start");
    let spec = handler_job("j", TriggerSpec::every(mins(10), ts(T0)), "stubborn").with_policies(
        Policies {
            overlap: OverlapPolicy::TerminatePrevious,
            ..Policies::default()
        },
    );
    s.add(spec).await.expect("add");
    tokio::time::sleep(mins(35)).await;
    assert_eq!(rec.nominals(), vec![at_min(10), at_min(20), at_min(30)]);
    let runs = store.all_runs();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].state, RunState::Cancelled);
    assert_eq!(runs[0].error.as_deref(), Some("terminated"));
    assert_eq!(runs[0].finished_at, Some(at_min(20)));
    assert_eq!(runs[2].state, RunState::Running);
}

#[tokio::test(start_paused = true)]
async fn trigger_now_with_an_overlap_override() {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at(T0, &store, "n1");
    let rec = register_sleeper(&s, "work", clock, mins(23));
    s.start().await.expect("start");
    let spec =
        handler_job("j", TriggerSpec::cron("0 0 1 1 *", "UTC"), "work").with_policies(Policies {
            max_concurrency: 2,
            ..Policies::default()
        });
    s.add(spec).await.expect("add");
    let id = JobId::new("j");
    assert!(matches!(
        s.trigger_now(&id, None).expect("job"),
        TriggerOutcome::Started(_)
    ));
    tokio::time::sleep(mins(1)).await;
    // The job's own policy (skip) refuses a second run; the override allows it.
    assert_eq!(
        s.trigger_now(&id, None).expect("job"),
        TriggerOutcome::Skipped
    );
    assert!(matches!(
        s.trigger_now(&id, Some(OverlapPolicy::Allow)).expect("job"),
        TriggerOutcome::Started(_)
    ));
    tokio::time::sleep(mins(1)).await;
    assert_eq!(rec.nominals(), vec![ts(T0), at_min(1)]);
    assert_eq!(s.running(&id).expect("job").len(), 2);
    let report = s.shutdown(mins(1)).await;
    assert!(!report.drained);
    assert_eq!(report.cancelled, 2);
    let runs = store.all_runs();
    assert!(
        runs.iter().all(|r| r.state == RunState::Cancelled),
        "{runs:#?}"
    );
}
