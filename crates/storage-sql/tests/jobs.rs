//! The scheduler's JobStore on SQLite and PostgreSQL: specs, the ledger's fire
//! uniqueness and fencing, fire marks, retention; and a scheduler restarted on a real
//! SQLite file that runs no fire twice and follows its misfire policy.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sundial_scheduler::engine::{Clock, Scheduler, TokioClock};
use sundial_scheduler::job::{
    ActionSpec, FencingToken, Fire, JobId, JobSpec, RunId, RunRecord, RunState, TriggerSpec,
};
use sundial_scheduler::jobs_file::Policies;
use sundial_scheduler::policy::{MisfireMode, MisfirePolicy, OverlapPolicy};
use sundial_scheduler::store::{JobStore, Retention, StoreError};
use sundial_storage_sql::SqlStore;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn run(job: &str, nominal: Timestamp, node: &str, token: u64) -> RunRecord {
    RunRecord {
        run_id: RunId::generate(nominal),
        job_id: JobId::new(job),
        nominal,
        state: RunState::Running,
        attempt: 1,
        node_id: node.into(),
        fencing_token: FencingToken(token),
        scheduled_at: nominal,
        started_at: Some(nominal + SignedDuration::from_nanos(123_456_789)),
        finished_at: None,
        exit_code: None,
        http_status: None,
        output: String::new(),
        error: None,
    }
}

#[tokio::test]
async fn specs_ledger_marks_and_retention_on_both_backends() {
    for t in common::both().await {
        let store = &t.store;
        let backend = store.backend_name();
        // Specs: upsert, load in id order, delete.
        let mut spec = JobSpec::new(
            "nightly",
            TriggerSpec::cron("30 2 * * *", "Europe/Berlin"),
            ActionSpec::handler("backup"),
        )
        .with_policies(Policies {
            overlap: OverlapPolicy::BufferAll { max: 3 },
            ..Policies::default()
        });
        store.save_job(&spec).await.expect("save");
        spec.paused = true;
        store.save_job(&spec).await.expect("save again");
        let other = JobSpec::new(
            "a-first",
            TriggerSpec::every(Duration::from_secs(90), ts("2024-01-01T00:00:07Z")),
            ActionSpec::handler("x"),
        );
        store.save_job(&other).await.expect("save");
        assert_eq!(
            store.load_jobs().await.expect("load"),
            vec![other.clone(), spec.clone()],
            "{backend}"
        );
        assert!(store.delete_job(&other.id).await.expect("delete"));
        assert!(!store.delete_job(&other.id).await.expect("delete"));

        // The ledger: one row per fire; nominal instants round-trip to the nanosecond.
        let nominal = ts("2024-03-31T01:00:00.000000001Z");
        let mut r = run("nightly", nominal, "n1", 10);
        store.insert_run(&r).await.expect("insert");
        let dup = run("nightly", nominal, "n2", 11);
        assert!(
            matches!(
                store.insert_run(&dup).await,
                Err(StoreError::DuplicateFire(_))
            ),
            "{backend}"
        );
        let fire = Fire {
            job_id: JobId::new("nightly"),
            nominal,
        };
        assert!(store.was_recorded(&fire).await.expect("query"));
        assert_eq!(store.get_run(r.run_id).await.expect("get"), Some(r.clone()));
        assert_eq!(
            store.unfinished_runs("n1").await.expect("query"),
            vec![r.clone()]
        );
        // Fencing: an older token cannot overwrite.
        let mut stale = r.clone();
        stale.fencing_token = FencingToken(9);
        stale.state = RunState::Failed;
        assert!(matches!(
            store.update_run(&stale).await,
            Err(StoreError::Fenced(_))
        ));
        r.state = RunState::Succeeded;
        r.exit_code = Some(0);
        r.http_status = Some(204);
        r.output = "tail ✓".into();
        r.finished_at = Some(nominal + SignedDuration::from_secs(5));
        store.update_run(&r).await.expect("update");
        assert_eq!(store.get_run(r.run_id).await.expect("get"), Some(r.clone()));
        assert!(store.unfinished_runs("n1").await.expect("query").is_empty());
        let missing = run("nightly", ts("2030-01-01T00:00:00Z"), "n1", 1);
        assert!(matches!(
            store.update_run(&missing).await,
            Err(StoreError::RunNotFound(_))
        ));

        // Fire marks: the latest instant wins, counts add up.
        let id = JobId::new("nightly");
        assert_eq!(store.fire_mark(&id).await.expect("mark"), None);
        store.note_fires(&id, nominal, 1).await.expect("note");
        store
            .note_fires(&id, ts("2024-01-01T00:00:00Z"), 2)
            .await
            .expect("note");
        let mark = store.fire_mark(&id).await.expect("mark").expect("some");
        assert_eq!((mark.last_nominal, mark.fires), (nominal, 3), "{backend}");

        // Retention: keep the last 2 finished per job, and nothing older than 30 days;
        // unfinished runs stay.
        let base = ts("2024-06-01T00:00:00Z");
        for day in 0..5 {
            let mut r = run(
                "daily",
                base + SignedDuration::from_hours(24 * day),
                "n1",
                1,
            );
            r.state = if day == 0 {
                RunState::Running
            } else {
                RunState::Succeeded
            };
            store.insert_run(&r).await.expect("insert");
        }
        let deleted = store
            .prune_runs(
                Retention {
                    keep_last: Some(2),
                    max_age: None,
                },
                base,
            )
            .await
            .expect("prune");
        assert_eq!(deleted, 2, "{backend}");
        let left: Vec<_> = store
            .runs(&JobId::new("daily"), 10)
            .await
            .expect("runs")
            .iter()
            .map(|r| r.nominal)
            .collect();
        assert_eq!(
            left,
            vec![
                base + SignedDuration::from_hours(96),
                base + SignedDuration::from_hours(72),
                base
            ]
        );
        let deleted = store
            .prune_runs(
                Retention {
                    keep_last: None,
                    max_age: Some(Duration::from_secs(30 * 86_400)),
                },
                ts("2024-07-04T12:00:00Z"),
            )
            .await
            .expect("prune");
        // Older than 30 days and finished: daily 06-04 and nightly 03-31.
        assert_eq!(deleted, 2, "{backend}");
        t.store.close().await;
    }
}

async fn scheduler(store: &SqlStore, start: Timestamp, seen: Arc<AtomicU32>) -> Scheduler {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start));
    let s = Scheduler::builder()
        .node_id("n1")
        .store(Arc::new(store.clone()))
        .clock(clock)
        .build();
    s.register_async("work", move |_ctx| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
    });
    s
}

async fn wait_for(seen: &AtomicU32, n: u32) {
    let reached = async {
        while seen.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), reached)
        .await
        .expect("runs started");
}

/// The daemon restart story on a real SQLite file (real time, a job every second):
/// runs in flight at a "kill -9" are marked lost and never rerun, and the fires missed
/// while down run by the run-all policy.
#[tokio::test]
async fn restart_on_a_sqlite_file_is_safe() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = JobId::new("every-second");
    let spec = JobSpec::new(
        "every-second",
        TriggerSpec::cron("* * * * * *", "UTC"),
        ActionSpec::handler("work"),
    )
    .with_policies(Policies {
        overlap: OverlapPolicy::Allow,
        max_concurrency: 100,
        misfire: MisfirePolicy {
            mode: MisfireMode::RunAll { max: 10 },
            grace: Duration::ZERO,
            window: Duration::from_secs(86_400),
        },
        ..Policies::default()
    });
    let t0 = ts("2024-01-01T00:00:00.5Z");
    {
        let store = SqlStore::open_in(dir.path()).await.expect("open");
        let seen = Arc::new(AtomicU32::new(0));
        let s = scheduler(&store, t0, seen.clone()).await;
        s.start().await.expect("start");
        s.add(spec).await.expect("add");
        wait_for(&seen, 2).await; // each run hangs for an hour
        // "kill -9": nothing is finished or released; the next life sees the file only.
        std::mem::forget(s);
        store.close().await;
    }
    let store = SqlStore::open_in(dir.path()).await.expect("reopen");
    let first = store.runs(&id, 100).await.expect("runs");
    assert!(first.len() >= 2);
    assert!(first.iter().all(|r| r.state == RunState::Running));
    let last = first.iter().map(|r| r.nominal).max().expect("runs");
    // Down for a while: the next life starts 3.2 s after the last recorded fire.
    let seen = Arc::new(AtomicU32::new(0));
    let s = scheduler(
        &store,
        last + SignedDuration::from_millis(3200),
        seen.clone(),
    )
    .await;
    s.start().await.expect("start");
    wait_for(&seen, 3).await;
    let runs = store.runs(&id, 100).await.expect("runs");
    for r in &runs {
        if r.nominal <= last {
            assert_eq!(r.state, RunState::Lost, "{r:?}");
        }
    }
    let caught_up: Vec<_> = runs
        .iter()
        .filter(|r| r.nominal > last && r.nominal <= last + SignedDuration::from_secs(3))
        .map(|r| r.nominal)
        .collect();
    let mut expected: Vec<_> = (1..=3)
        .map(|k| last + SignedDuration::from_secs(k))
        .collect();
    expected.reverse();
    assert_eq!(caught_up, expected, "each missed fire ran once");
    assert_eq!(s.metrics().runs_lost, first.len() as u64);
    assert_eq!(
        runs.iter().filter(|r| r.nominal <= last).count(),
        first.len(),
        "no lost fire was run again"
    );
    s.shutdown(Duration::from_millis(100)).await;
}
