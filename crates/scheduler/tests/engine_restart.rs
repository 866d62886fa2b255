//! Restart safety and catch-up: the ledger decides what already ran; missed fires
//! follow the misfire policy after downtime, a pause or a late wake-up; handlers re-bind
//! by name.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::{handler_job, mins, register_sleeper, scheduler_at, ts};
use jiff::{SignedDuration, Timestamp};
use sundial_scheduler::engine::{Clock, Scheduler, SchedulerEvent};
use sundial_scheduler::job::{FencingToken, JobId, RunId, RunRecord, RunState, TriggerSpec};
use sundial_scheduler::jobs_file::Policies;
use sundial_scheduler::policy::{MisfireMode, MisfirePolicy};
use sundial_scheduler::store::{JobStore, MemoryJobStore};

fn hourly(mode: MisfireMode) -> sundial_scheduler::job::JobSpec {
    handler_job("hourly", TriggerSpec::cron("0 * * * *", "UTC"), "work").with_policies(Policies {
        misfire: MisfirePolicy {
            mode,
            grace: Duration::from_secs(60),
            window: Duration::from_secs(24 * 3600),
        },
        ..Policies::default()
    })
}

fn h(hour: i64) -> Timestamp {
    ts("2024-01-01T00:00:00Z")
        .checked_add(SignedDuration::from_hours(hour))
        .expect("in range")
}

/// First life: 00:00 → 03:30 (fires 01, 02, 03), then shut down. Second life starts
/// at 08:30 on the same store: fires 04..08 were missed while down.
async fn down_five_hours(mode: MisfireMode) -> (Vec<Timestamp>, Scheduler, MemoryJobStore) {
    let store = MemoryJobStore::new();
    {
        let (s, clock) = scheduler_at("2024-01-01T00:00:00Z", &store, "n1");
        register_sleeper(&s, "work", clock, mins(1));
        s.start().await.expect("start");
        s.add(hourly(mode)).await.expect("add");
        tokio::time::sleep(mins(210)).await;
        assert!(s.shutdown(mins(1)).await.drained);
    }
    let (s, clock) = scheduler_at("2024-01-01T08:30:00Z", &store, "n1");
    let rec = register_sleeper(&s, "work", clock, mins(1));
    s.start().await.expect("start (job comes from the store)");
    tokio::time::sleep(mins(45)).await; // to 09:15
    let mut all: Vec<Timestamp> = store.all_runs().iter().map(|r| r.nominal).collect();
    all.sort();
    assert!(
        rec.nominals().iter().all(|n| *n > h(3)),
        "second life ran only new fires"
    );
    (all, s, store)
}

#[tokio::test(start_paused = true)]
async fn restart_run_once_runs_the_latest_missed_fire() {
    let (runs, s, _) = down_five_hours(MisfireMode::RunOnce).await;
    assert_eq!(runs, vec![h(1), h(2), h(3), h(8), h(9)]);
    assert_eq!(s.metrics().missed, 4);
}

#[tokio::test(start_paused = true)]
async fn restart_run_all_is_capped() {
    let (runs, s, _) = down_five_hours(MisfireMode::RunAll { max: 3 }).await;
    // The three newest missed fires run one after another; 04 and 05 are missed.
    assert_eq!(runs, vec![h(1), h(2), h(3), h(6), h(7), h(8), h(9)]);
    assert_eq!(s.metrics().missed, 2);
}

#[tokio::test(start_paused = true)]
async fn restart_skip_runs_nothing_missed() {
    let (runs, s, _) = down_five_hours(MisfireMode::Skip).await;
    assert_eq!(runs, vec![h(1), h(2), h(3), h(9)]);
    assert_eq!(s.metrics().missed, 5);
}

#[tokio::test(start_paused = true)]
async fn runs_in_flight_at_a_crash_are_lost_not_rerun() {
    let store = MemoryJobStore::new();
    let spec = hourly(MisfireMode::RunAll { max: 10 });
    store.save_job(&spec).await.expect("save");
    // The crashed process had recorded 03:00 as running and 04:00 as finished (its mark
    // write for 04:00 was lost).
    for (hour, state) in [(3, RunState::Running), (4, RunState::Succeeded)] {
        let run = RunRecord {
            run_id: RunId::generate(h(hour)),
            job_id: JobId::new("hourly"),
            nominal: h(hour),
            state,
            attempt: 1,
            node_id: "n1".into(),
            fencing_token: FencingToken(1),
            scheduled_at: h(hour),
            started_at: Some(h(hour)),
            finished_at: None,
            exit_code: None,
            http_status: None,
            output: String::new(),
            error: None,
        };
        store.insert_run(&run).await.expect("insert");
    }
    store
        .note_fires(&JobId::new("hourly"), h(3), 4)
        .await
        .expect("mark");
    let (s, clock) = scheduler_at("2024-01-01T05:30:00Z", &store, "n1");
    let mut events = s.subscribe();
    let rec = register_sleeper(&s, "work", clock, mins(1));
    s.start().await.expect("start");
    tokio::time::sleep(mins(10)).await;
    // 04:00 is in the ledger: not run again. 05:00 is missed and runs (run-all).
    assert_eq!(rec.nominals(), vec![h(5)]);
    let runs = store.all_runs();
    assert_eq!(runs[0].nominal, h(3));
    assert_eq!(runs[0].state, RunState::Lost);
    assert_eq!(s.metrics().runs_lost, 1);
    assert_eq!(s.metrics().duplicates, 1);
    let mut lost = 0;
    while let Ok(e) = events.try_recv() {
        if let SchedulerEvent::Lost { run } = e {
            assert_eq!(run.nominal, h(3));
            lost += 1;
        }
    }
    assert_eq!(lost, 1);
}

#[tokio::test(start_paused = true)]
async fn pause_then_resume_catches_up_by_policy() {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at("2024-01-01T00:00:00Z", &store, "n1");
    let rec = register_sleeper(&s, "work", clock, mins(1));
    s.start().await.expect("start");
    s.add(hourly(MisfireMode::RunOnce)).await.expect("add");
    let id = JobId::new("hourly");
    tokio::time::sleep(mins(90)).await; // 01:30: 01 ran
    s.pause(&id).await.expect("pause");
    assert!(
        store.load_jobs().await.expect("load")[0].paused,
        "pause is persisted"
    );
    tokio::time::sleep(mins(120)).await; // 03:30: 02, 03 missed while paused
    assert_eq!(s.upcoming(&id, 3).expect("job"), Vec::<Timestamp>::new());
    s.resume(&id).await.expect("resume");
    tokio::time::sleep(mins(40)).await; // 04:10
    let seen = rec.all();
    assert_eq!(
        seen.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        vec![
            (h(1), h(1)),
            (h(3), h(3) + SignedDuration::from_mins(30)), // catch-up at resume
            (h(4), h(4)),
        ]
    );
    assert_eq!(s.metrics().missed, 1);
}

/// A wall clock the test can step (suspend/resume, NTP steps) on top of tokio's.
#[derive(Debug)]
struct SteppedClock {
    base: sundial_scheduler::engine::TokioClock,
    offset_ms: AtomicI64,
}

impl Clock for SteppedClock {
    fn now(&self) -> Timestamp {
        self.base.now() + SignedDuration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

#[tokio::test(start_paused = true)]
async fn late_wake_and_backward_steps() {
    let store = MemoryJobStore::new();
    let clock = Arc::new(SteppedClock {
        base: sundial_scheduler::engine::TokioClock::starting_at(ts("2024-01-01T00:00:00Z")),
        offset_ms: AtomicI64::new(0),
    });
    let s = Scheduler::builder()
        .store(Arc::new(store.clone()))
        .clock(clock.clone())
        .build();
    let rec = register_sleeper(&s, "work", clock.clone(), mins(1));
    s.start().await.expect("start");
    s.add(hourly(MisfireMode::RunOnce)).await.expect("add");
    tokio::time::sleep(mins(30)).await;
    // The machine sleeps: the wall clock jumps 3 h ahead while the monotonic timer
    // still waits for "01:00". When it fires, the wall says 04:00.
    clock.offset_ms.store(3 * 3_600_000, Ordering::SeqCst);
    tokio::time::sleep(mins(31)).await; // wall 04:01
    // 04:00 itself is due on time; 01..03 are late and run-once lets the newest on-time
    // fire stand for them.
    assert_eq!(rec.nominals(), vec![h(4)]);
    assert_eq!(s.metrics().missed, 3);
    // The wall clock is stepped back 20 minutes before 05:00: the timer (armed for
    // wall 05:00, monotonic 59 min from here) fires early by the wall and re-arms.
    clock
        .offset_ms
        .store(3 * 3_600_000 - 20 * 60_000, Ordering::SeqCst);
    tokio::time::sleep(mins(90)).await;
    let seen = rec.all();
    let five = seen.iter().find(|r| r.0 == h(5)).expect("05:00 ran");
    assert!(five.1 >= h(5), "never before its nominal instant: {five:?}");
}

#[tokio::test(start_paused = true)]
async fn handlers_rebind_by_name_and_missing_ones_are_reported() {
    let store = MemoryJobStore::new();
    store
        .save_job(&handler_job(
            "report",
            TriggerSpec::cron("0 * * * *", "UTC"),
            "mailer",
        ))
        .await
        .expect("save");
    let (s, clock) = scheduler_at("2024-01-01T00:30:00Z", &store, "n1");
    let mut events = s.subscribe();
    s.start().await.expect("start");
    let id = JobId::new("report");
    assert_eq!(
        s.missing_handlers(),
        vec![(id.clone(), "mailer".to_owned())]
    );
    assert_eq!(s.list().len(), 1, "the job is kept, not dropped");
    tokio::time::sleep(mins(40)).await; // 01:00 fires with no handler
    let runs = s.runs(&id, 10).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Failed);
    assert_eq!(
        runs[0].error.as_deref(),
        Some("no handler registered under `mailer`")
    );
    let mut saw_missing = false;
    while let Ok(e) = events.try_recv() {
        saw_missing |= matches!(e, SchedulerEvent::HandlerMissing { .. });
    }
    assert!(saw_missing);
    let rec = register_sleeper(&s, "mailer", clock, mins(1));
    assert!(s.missing_handlers().is_empty());
    tokio::time::sleep(mins(60)).await; // 02:00 runs with the handler
    assert_eq!(rec.nominals(), vec![h(2)]);
    assert_eq!(
        s.runs(&id, 10).await.expect("runs")[0].state,
        RunState::Succeeded
    );
}

#[tokio::test(start_paused = true)]
async fn backfill_runs_only_unrecorded_fires() {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at("2024-01-01T05:30:00Z", &store, "n1");
    let rec = register_sleeper(&s, "work", clock, mins(1));
    s.start().await.expect("start");
    s.add(hourly(MisfireMode::Skip)).await.expect("add");
    let id = JobId::new("hourly");
    let first = s.backfill(&id, h(1), h(3)).await.expect("backfill");
    assert_eq!((first.queued, first.already_recorded), (3, 0));
    tokio::time::sleep(mins(10)).await;
    assert_eq!(rec.nominals(), vec![h(1), h(2), h(3)]);
    let again = s.backfill(&id, h(2), h(4)).await.expect("backfill");
    assert_eq!((again.queued, again.already_recorded), (1, 2));
    tokio::time::sleep(mins(10)).await;
    assert_eq!(rec.nominals(), vec![h(1), h(2), h(3), h(4)]);
    assert!(s.backfill(&id, h(4), h(1)).await.is_err());
}

/// A coordinator that reports one claim lost with another node.
#[derive(Debug)]
struct LosingCoordinator {
    inner: sundial_scheduler::coordinator::LocalCoordinator,
    lost: std::sync::Mutex<Vec<sundial_scheduler::coordinator::LostClaim>>,
}

#[async_trait::async_trait]
impl sundial_scheduler::coordinator::Coordinator for LosingCoordinator {
    fn node_id(&self) -> &str {
        self.inner.node_id()
    }
    async fn claim(
        &self,
        fire: &sundial_scheduler::job::Fire,
        options: &sundial_scheduler::coordinator::ClaimOptions,
    ) -> Result<Option<FencingToken>, sundial_scheduler::coordinator::CoordinatorError> {
        self.inner.claim(fire, options).await
    }
    async fn release(
        &self,
        fire: &sundial_scheduler::job::Fire,
        token: FencingToken,
        state: RunState,
    ) -> Result<(), sundial_scheduler::coordinator::CoordinatorError> {
        self.inner.release(fire, token, state).await
    }
    async fn lost_runs(
        &self,
    ) -> Result<
        Vec<sundial_scheduler::coordinator::LostClaim>,
        sundial_scheduler::coordinator::CoordinatorError,
    > {
        Ok(std::mem::take(&mut *self.lost.lock().expect("lock")))
    }
}

#[tokio::test(start_paused = true)]
async fn claims_lost_with_another_node_are_marked_lost() {
    let store = MemoryJobStore::new();
    // Node n2 recorded 02:00 as running, then died; the coordinator says so.
    let run = RunRecord {
        run_id: RunId::generate(h(2)),
        job_id: JobId::new("hourly"),
        nominal: h(2),
        state: RunState::Running,
        attempt: 1,
        node_id: "n2".into(),
        fencing_token: FencingToken(7),
        scheduled_at: h(2),
        started_at: Some(h(2)),
        finished_at: None,
        exit_code: None,
        http_status: None,
        output: String::new(),
        error: None,
    };
    store.insert_run(&run).await.expect("insert");
    let fire = run.fire();
    let coordinator = Arc::new(LosingCoordinator {
        inner: sundial_scheduler::coordinator::LocalCoordinator::new("n1"),
        lost: std::sync::Mutex::new(vec![sundial_scheduler::coordinator::LostClaim {
            fire,
            node_id: "n2".into(),
            token: FencingToken(7),
        }]),
    });
    let clock: Arc<dyn Clock> = Arc::new(sundial_scheduler::engine::TokioClock::starting_at(h(3)));
    let s = Scheduler::builder()
        .node_id("n1")
        .store(Arc::new(store.clone()))
        .coordinator(coordinator)
        .clock(clock)
        .build();
    s.start().await.expect("start");
    let runs = store.all_runs();
    assert_eq!(runs[0].state, RunState::Lost);
    assert_eq!(runs[0].finished_at, Some(h(3)));
    assert_eq!(
        runs[0].error.as_deref(),
        Some("node `n2` went away while the run was going")
    );
    assert_eq!(s.metrics().runs_lost, 1);
    assert!(
        s.reap_lost_runs().await.expect("reap").is_empty(),
        "reported once"
    );
}
