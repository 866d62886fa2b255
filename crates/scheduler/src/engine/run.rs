//! The engine's mechanics: arming timers, handling due fires, and running them.
//!
//! Synchronous functions here take a job's state lock and never await; whatever must
//! await (claims, ledger writes, the job itself) runs in a task spawned on the
//! engine's [`TaskTracker`](tokio_util::task::TaskTracker), so shutdown can wait for it.
//!
//! A run's life: the fire is decided (`dispatch`: overlap policy) → a slot is added to
//! the job's running set → the run task waits for runs it cancels, claims the fire,
//! inserts its ledger record (refused if the fire is recorded), waits for a permit of
//! its named pool, runs its attempts (timeout, retries with back-off) and records the
//! outcome → the slot is removed, a buffered fire or the next fixed-delay fire follows.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::handler::{Handler, HandlerResult};
use super::metrics::inc;
use super::{
    BackfillReport, EngineError, Inner, JobEntry, JobInfo, JobState, SchedulerEvent, Slot,
    TriggerOutcome, action_kind, count_outcome,
};
use crate::coordinator::ClaimOptions;
use crate::executor::{command, http};
use crate::job::{ActionSpec, Fire, JobSpec, RunContext, RunId, RunRecord, RunState};
use crate::policy::{OverlapDecision, OverlapPolicy, jitter};
use crate::store::{FireMark, StoreError};
use crate::timer::{Job, Repeat};
use crate::trigger::{Trigger, TriggerKind};

fn job_seed(spec: &JobSpec) -> u64 {
    sundial_cron::hash_seed(spec.id.as_str())
}

fn fire_key(spec: &JobSpec, nominal: Timestamp) -> u64 {
    job_seed(spec) ^ (nominal.as_millisecond() as u64).rotate_left(17)
}

/// Marks this node's unfinished runs from a previous process as lost.
pub(super) async fn mark_lost_runs(inner: &Arc<Inner>) -> Result<(), StoreError> {
    let now = inner.clock.now();
    for mut run in inner.store.unfinished_runs(&inner.node_id).await? {
        run.state = RunState::Lost;
        run.finished_at = Some(now);
        run.error = Some("the node stopped while the run was going".to_owned());
        inner.store.update_run(&run).await?;
        inc(&inner.metrics.lost);
        tracing::warn!(job_id = %run.job_id, run_id = %run.run_id, "run lost with its node");
        inner.emit(SchedulerEvent::Lost { run });
    }
    Ok(())
}

/// Marks the runs of claims the coordinator reports lost (their node died) as lost.
pub(super) async fn reap_lost_claims(inner: &Arc<Inner>) -> Result<Vec<RunRecord>, EngineError> {
    let lost = match inner.coordinator.lost_runs().await {
        Ok(lost) => lost,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list lost claims");
            return Ok(Vec::new());
        }
    };
    let now = inner.clock.now();
    let mut reaped = Vec::new();
    for claim in lost {
        // The ledger row of the fire, if its node got as far as recording it.
        let runs = inner.store.runs(&claim.fire.job_id, 1000).await?;
        let Some(mut run) = runs
            .into_iter()
            .find(|r| r.nominal == claim.fire.nominal && !r.state.is_final())
        else {
            continue;
        };
        run.state = RunState::Lost;
        run.finished_at = Some(now);
        run.error = Some(format!(
            "node `{}` went away while the run was going",
            claim.node_id
        ));
        inner.store.update_run(&run).await?;
        inc(&inner.metrics.lost);
        tracing::warn!(job_id = %run.job_id, run_id = %run.run_id, node_id = %claim.node_id, "run lost with its node");
        inner.emit(SchedulerEvent::Lost { run: run.clone() });
        reaped.push(run);
    }
    Ok(reaped)
}

/// Puts a job in the table and arms it.
pub(super) fn insert_job(
    inner: &Arc<Inner>,
    spec: JobSpec,
    trigger: Trigger,
    mark: Option<FireMark>,
) -> Result<(), EngineError> {
    let id = spec.id.clone();
    let paused = spec.paused;
    let entry = Arc::new(JobEntry {
        id: id.clone(),
        state: std::sync::Mutex::new(JobState {
            spec: Arc::new(spec),
            trigger: Arc::new(trigger),
            generation: 0,
            timer: None,
            next: None,
            fired: mark.map_or(0, |m| m.fires),
            last: mark.map(|m| m.last_nominal),
            paused_at: None,
            failures: 0,
            removed: false,
            active: None,
            mark: None,
        }),
    });
    {
        let mut jobs = inner.jobs.write().unwrap_or_else(PoisonError::into_inner);
        if jobs.contains_key(&id) {
            return Err(EngineError::AlreadyExists(id));
        }
        jobs.insert(id, entry.clone());
    }
    if !paused {
        let now = inner.clock.now();
        let mut st = entry.lock();
        match mark {
            Some(m) => catch_up(inner, &entry, &mut st, m.last_nominal, now),
            None => start_fresh(inner, &entry, &mut st, now),
        }
    }
    Ok(())
}

/// First arming of a job the ledger has never seen: fires after now; a one-shot whose
/// instant has passed is overdue and follows the misfire policy.
fn start_fresh(inner: &Arc<Inner>, entry: &Arc<JobEntry>, st: &mut JobState, now: Timestamp) {
    if let TriggerKind::At(at) = st.trigger.kind()
        && *at <= now
        && st.fired == 0
    {
        let at = *at;
        let from = at
            .checked_sub(SignedDuration::from_nanos(1))
            .unwrap_or(Timestamp::MIN);
        catch_up(inner, entry, st, from, now);
        return;
    }
    arm_after(inner, entry, st, now);
}

/// Handles the fires in `(from, now]` with the misfire policy, then arms the next.
fn catch_up(
    inner: &Arc<Inner>,
    entry: &Arc<JobEntry>,
    st: &mut JobState,
    from: Timestamp,
    now: Timestamp,
) {
    let policy = st.spec.policies.misfire;
    // Fires older than the window are missed whatever the mode: count them without
    // listing more than the limit.
    let window_start = now.checked_sub(policy.window).unwrap_or(Timestamp::MIN);
    let mut missed_old = 0u64;
    let mut cursor = from;
    if from < window_start && !st.trigger.waits_for_completion() {
        let horizon = window_start
            .checked_sub(SignedDuration::from_nanos(1))
            .unwrap_or(Timestamp::MIN);
        loop {
            let old = st.trigger.fires_between(
                cursor,
                horizon,
                st.fired + missed_old,
                inner.catch_up_limit,
            );
            let Some(last) = old.last() else { break };
            missed_old += old.len() as u64;
            cursor = *last;
            if old.len() < inner.catch_up_limit {
                break;
            }
        }
    }
    let overdue =
        st.trigger
            .fires_between(cursor, now, st.fired + missed_old, inner.catch_up_limit);
    if missed_old > 0 {
        st.fired += missed_old;
        st.last = Some(st.last.map_or(cursor, |l| l.max(cursor)));
        inner
            .metrics
            .missed
            .fetch_add(missed_old, std::sync::atomic::Ordering::Relaxed);
        inner
            .metrics
            .fires
            .fetch_add(missed_old, std::sync::atomic::Ordering::Relaxed);
        inner.emit(SchedulerEvent::Missed {
            job_id: entry.id.clone(),
            nominal: vec![cursor],
            count: missed_old,
        });
        note_fires(inner, &entry.id, cursor, missed_old);
    }
    if !overdue.is_empty() {
        handle_due(inner, entry, st, &overdue, now, Duration::ZERO);
    }
    if st.timer.is_none() && st.next.is_none() {
        if st.trigger.waits_for_completion() && st.fired > 0 {
            if st.active.as_ref().is_none_or(|a| a.running.is_empty()) {
                let next = st.trigger.after_completion(now, st.fired);
                if let Some(next) = next {
                    arm(inner, entry, st, next);
                }
            }
        } else {
            arm_after(inner, entry, st, now);
        }
    }
}

/// Arms the first fire strictly after `after` (and after the last handled one).
fn arm_after(inner: &Arc<Inner>, entry: &Arc<JobEntry>, st: &mut JobState, after: Timestamp) {
    if st.trigger.waits_for_completion() && st.fired > 0 {
        return; // the next fire comes from a completion
    }
    let after = st.last.map_or(after, |l| l.max(after));
    if let Some(next) = st.trigger.next_after(after, st.fired) {
        arm(inner, entry, st, next);
    }
}

/// Arms the job's timer for `nominal` plus its deterministic jitter.
fn arm(inner: &Arc<Inner>, entry: &Arc<JobEntry>, st: &mut JobState, nominal: Timestamp) {
    if inner.stopping.is_cancelled() || st.removed || st.spec.paused {
        return;
    }
    let max_jitter = st.spec.policies.jitter;
    let delay = if max_jitter.is_zero() {
        Duration::ZERO
    } else {
        let following = st.trigger.next_after(nominal, st.fired + 1);
        jitter(job_seed(&st.spec), nominal, following, max_jitter)
    };
    let at = nominal.checked_add(delay).unwrap_or(nominal);
    let deadline = super::clock::instant_for(inner.clock.as_ref(), at);
    let generation = st.generation;
    let weak = Arc::downgrade(inner);
    let job_entry = entry.clone();
    let job = Job::from_async(move |_| {
        let weak = weak.clone();
        let entry = job_entry.clone();
        async move {
            if let Some(inner) = weak.upgrade() {
                on_timer(&inner, &entry, generation);
            }
        }
    });
    st.next = Some((nominal, delay));
    match inner.timer.schedule(deadline, Repeat::Once, job) {
        Ok(id) => st.timer = Some(id),
        Err(e) => {
            st.next = None;
            tracing::warn!(job_id = %entry.id, error = %e, "cannot arm the job's timer");
        }
    }
}

fn disarm(inner: &Inner, st: &mut JobState) {
    if let Some(id) = st.timer.take() {
        let _ = inner.timer.cancel(id);
    }
    st.next = None;
    st.generation += 1;
}

/// The job's timer fired.
fn on_timer(inner: &Arc<Inner>, entry: &Arc<JobEntry>, generation: u64) {
    if inner.stopping.is_cancelled() {
        return;
    }
    let now = inner.clock.now();
    let mut st = entry.lock();
    if st.generation != generation || st.removed || st.spec.paused {
        return;
    }
    st.timer = None;
    let Some((nominal, delay)) = st.next.take() else {
        return;
    };
    let deadline = nominal.checked_add(delay).unwrap_or(nominal);
    if now < deadline {
        // The wall clock is behind the monotonic one (stepped back): not yet.
        arm(inner, entry, &mut st, nominal);
        return;
    }
    // The armed fire, and any later ones a late wake-up passed.
    let mut due = vec![nominal];
    if !st.trigger.waits_for_completion() {
        due.extend(
            st.trigger
                .fires_between(nominal, now, st.fired + 1, inner.catch_up_limit),
        );
    }
    handle_due(inner, entry, &mut st, &due, now, delay);
    if st.timer.is_none() && !st.trigger.waits_for_completion() {
        arm_after(inner, entry, &mut st, now);
    } else if st.timer.is_none()
        && st.trigger.waits_for_completion()
        && st.active.as_ref().is_none_or(|a| a.running.is_empty())
    {
        // Nothing started (skipped or missed): the delay counts from now.
        if let Some(next) = st.trigger.after_completion(now, st.fired) {
            arm(inner, entry, &mut st, next);
        }
    }
}

/// Applies the misfire policy to due fires (oldest first) and dispatches those to run.
fn handle_due(
    inner: &Arc<Inner>,
    entry: &Arc<JobEntry>,
    st: &mut JobState,
    due: &[Timestamp],
    now: Timestamp,
    jitter: Duration,
) {
    let Some(&newest) = due.last() else { return };
    // Jitter is part of the schedule, not lateness.
    let judged_at = now.checked_sub(jitter).unwrap_or(now);
    let plan = st.spec.policies.misfire.plan(due, judged_at);
    let count = due.len() as u64;
    st.fired += count;
    st.last = Some(st.last.map_or(newest, |l| l.max(newest)));
    inner
        .metrics
        .fires
        .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
    if !plan.missed.is_empty() {
        inner.metrics.missed.fetch_add(
            plan.missed.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        tracing::info!(job_id = %entry.id, missed = plan.missed.len(), "fires missed");
        inner.emit(SchedulerEvent::Missed {
            job_id: entry.id.clone(),
            count: plan.missed.len() as u64,
            nominal: plan.missed,
        });
    }
    st.mark = Some((newest, count));
    // The first fire meets the overlap policy. Further fires of a catch-up plan start
    // beside it when the policy allows (`allow`, within the concurrency limit) and
    // otherwise queue behind it in order: a planned catch-up is neither skipped nor
    // allowed to cancel itself.
    let overlap = st.spec.policies.overlap;
    let mut fires = plan.run.into_iter();
    let first = fires.next();
    let outcome = first.map(|first| dispatch(inner, entry, st, first, overlap));
    if let Some((nominal, count)) = st.mark.take() {
        // No run took the mark: write it now.
        note_fires(inner, &entry.id, nominal, count);
    }
    let Some(outcome) = outcome else { return };
    if outcome == TriggerOutcome::Skipped {
        let rest = fires.count() as u64;
        inner
            .metrics
            .skipped
            .fetch_add(rest, std::sync::atomic::Ordering::Relaxed);
        return;
    }
    let limit = st.spec.policies.max_concurrency;
    for nominal in fires {
        let (running, buffered) = st.active.as_ref().map_or((0, 0), |a| a.overlap_counts());
        if overlap.decide(running, buffered, limit) == OverlapDecision::Start {
            start_run(inner, entry, st, nominal, Vec::new());
        } else {
            st.active
                .get_or_insert_with(Box::default)
                .buffered
                .push_back(nominal);
        }
    }
}

/// Writes the job's fire mark in the background.
fn note_fires(inner: &Arc<Inner>, id: &crate::job::JobId, nominal: Timestamp, count: u64) {
    let store = inner.store.clone();
    let id = id.clone();
    let weak = Arc::downgrade(inner);
    inner.tracker.spawn(async move {
        if let Err(e) = store.note_fires(&id, nominal, count).await {
            tracing::warn!(job_id = %id, error = %e, "cannot record the fire mark");
            if let Some(inner) = weak.upgrade() {
                inc(&inner.metrics.store_errors);
            }
        }
    });
}

/// Decides overlap for a due fire and starts, buffers or skips it.
fn dispatch(
    inner: &Arc<Inner>,
    entry: &Arc<JobEntry>,
    st: &mut JobState,
    nominal: Timestamp,
    overlap: OverlapPolicy,
) -> TriggerOutcome {
    let (running, buffered) = st.active.as_ref().map_or((0, 0), |a| a.overlap_counts());
    let limit = st.spec.policies.max_concurrency;
    match overlap.decide(running, buffered, limit) {
        OverlapDecision::Start => start_run(inner, entry, st, nominal, Vec::new()),
        OverlapDecision::Buffer => {
            st.active
                .get_or_insert_with(Box::default)
                .buffered
                .push_back(nominal);
            TriggerOutcome::Buffered
        }
        OverlapDecision::Skip => {
            inc(&inner.metrics.skipped);
            tracing::info!(job_id = %entry.id, %nominal, "fire skipped: previous run still going");
            inner.emit(SchedulerEvent::Skipped {
                job_id: entry.id.clone(),
                nominal,
            });
            TriggerOutcome::Skipped
        }
        decision @ (OverlapDecision::CancelThenStart | OverlapDecision::TerminateThenStart) => {
            let kill = decision == OverlapDecision::TerminateThenStart;
            let mut wait = Vec::new();
            if let Some(active) = &st.active {
                for slot in &active.running {
                    slot.cancel.cancel();
                    if kill {
                        slot.kill.cancel();
                    }
                    wait.push(slot.done.clone());
                }
            }
            start_run(inner, entry, st, nominal, wait)
        }
    }
}

/// Adds a running slot and spawns the run task.
fn start_run(
    inner: &Arc<Inner>,
    entry: &Arc<JobEntry>,
    st: &mut JobState,
    nominal: Timestamp,
    wait: Vec<CancellationToken>,
) -> TriggerOutcome {
    if inner.stopping.is_cancelled() {
        return TriggerOutcome::Skipped;
    }
    let run_id = RunId::generate(inner.clock.now());
    let claimed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slot = Slot {
        run_id,
        claimed: claimed.clone(),
        cancel: CancellationToken::new(),
        kill: CancellationToken::new(),
        done: CancellationToken::new(),
    };
    let (cancel, kill, done) = (slot.cancel.clone(), slot.kill.clone(), slot.done.clone());
    st.active
        .get_or_insert_with(Box::default)
        .running
        .push(slot);
    inner
        .metrics
        .running
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let spec = st.spec.clone();
    let mark = st.mark.take();
    let inner2 = inner.clone();
    let entry2 = entry.clone();
    inner.tracker.spawn(async move {
        if let Some((last, count)) = mark
            && let Err(e) = inner2.store.note_fires(&spec.id, last, count).await
        {
            inc(&inner2.metrics.store_errors);
            tracing::warn!(job_id = %spec.id, error = %e, "cannot record the fire mark");
        }
        for t in wait {
            t.cancelled().await;
        }
        let fire = Fire {
            job_id: spec.id.clone(),
            nominal,
        };
        let state = execute_fire(&inner2, &spec, &fire, run_id, &cancel, &kill, &claimed).await;
        done.cancel();
        finish_slot(&inner2, &entry2, run_id, state);
    });
    TriggerOutcome::Started(run_id)
}

/// A run ended (or never started: `None`): bookkeeping, then what follows it.
fn finish_slot(inner: &Arc<Inner>, entry: &Arc<JobEntry>, run_id: RunId, state: Option<RunState>) {
    inner
        .metrics
        .running
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    maybe_prune(inner);
    let now = inner.clock.now();
    let mut st = entry.lock();
    if let Some(active) = st.active.as_mut() {
        active.running.retain(|s| s.run_id != run_id);
    }
    match state {
        Some(RunState::Succeeded) => st.failures = 0,
        Some(RunState::Failed | RunState::TimedOut) => {
            st.failures += 1;
            if let Some(limit) = st.spec.policies.retry.pause_after_failures
                && st.failures >= limit
                && !st.spec.paused
            {
                let failures = st.failures;
                tracing::warn!(job_id = %entry.id, failures, "job paused after repeated failures");
                if let Some(spec) = pause_locked(inner, &mut st, now) {
                    let store = inner.store.clone();
                    inner.tracker.spawn(async move {
                        if let Err(e) = store.save_job(&spec).await {
                            tracing::warn!(job_id = %spec.id, error = %e, "cannot save the paused job");
                        }
                    });
                }
                inner.emit(SchedulerEvent::PausedAfterFailures {
                    job_id: entry.id.clone(),
                    failures,
                });
            }
        }
        _ => {}
    }
    let can_continue = !st.removed && !st.spec.paused && !inner.stopping.is_cancelled();
    if can_continue {
        let next = st.active.as_mut().and_then(|a| a.buffered.pop_front());
        if let Some(nominal) = next {
            start_run(inner, entry, &mut st, nominal, Vec::new());
        }
    } else if let Some(active) = st.active.as_mut() {
        active.buffered.clear();
    }
    let idle = st.active.as_ref().is_none_or(|a| a.running.is_empty());
    if can_continue
        && idle
        && st.trigger.waits_for_completion()
        && st.timer.is_none()
        && let Some(next) = st.trigger.after_completion(now, st.fired)
    {
        arm(inner, entry, &mut st, next);
    }
    if st
        .active
        .as_ref()
        .is_some_and(|a| a.running.is_empty() && a.buffered.is_empty())
    {
        st.active = None;
    }
}

/// Prunes the ledger in the background after every `PRUNE_EVERY` finished runs.
fn maybe_prune(inner: &Arc<Inner>) {
    let Some(retention) = inner.retention else {
        return;
    };
    let n = inner
        .finished
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    if !n.is_multiple_of(super::PRUNE_EVERY) {
        return;
    }
    let store = inner.store.clone();
    let now = inner.clock.now();
    inner.tracker.spawn(async move {
        match store.prune_runs(retention, now).await {
            Ok(n) => tracing::debug!(deleted = n, "run ledger pruned"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the run ledger"),
        }
    });
}

/// Claims, records and runs one fire with its retries. `None` when it did not run
/// (claimed elsewhere, already in the ledger, or cancelled before starting).
async fn execute_fire(
    inner: &Arc<Inner>,
    spec: &Arc<JobSpec>,
    fire: &Fire,
    run_id: RunId,
    cancel: &CancellationToken,
    kill: &CancellationToken,
    claimed: &std::sync::atomic::AtomicBool,
) -> Option<RunState> {
    let options = ClaimOptions {
        deadline: fire
            .nominal
            .checked_add(spec.policies.misfire.grace)
            .unwrap_or(Timestamp::MAX),
        on_node_lost: spec.policies.on_node_lost,
    };
    let token = match inner.coordinator.claim(fire, &options).await {
        Ok(Some(token)) => token,
        Ok(None) => {
            inc(&inner.metrics.not_claimed);
            tracing::debug!(job_id = %fire.job_id, nominal = %fire.nominal, "fire claimed elsewhere");
            return None;
        }
        Err(e) => {
            // The coordinator kept trying until the misfire grace ran out: the fire
            // is missed (once: this is its only claim on this node).
            inc(&inner.metrics.not_claimed);
            inc(&inner.metrics.missed);
            tracing::warn!(job_id = %fire.job_id, nominal = %fire.nominal, error = %e, "cannot claim the fire; missed");
            inner.emit(SchedulerEvent::Missed {
                job_id: fire.job_id.clone(),
                nominal: vec![fire.nominal],
                count: 1,
            });
            return None;
        }
    };
    // A free permit of the job's pool lets the run be recorded as running at once
    // (one ledger write); otherwise it is recorded as scheduled while it waits.
    let pool = inner.pool(&spec.policies.pool);
    let early = pool.clone().try_acquire_owned().ok();
    let recorded_at = inner.clock.now();
    let mut rec = RunRecord {
        run_id,
        job_id: fire.job_id.clone(),
        nominal: fire.nominal,
        state: if early.is_some() {
            RunState::Running
        } else {
            RunState::Scheduled
        },
        attempt: u32::from(early.is_some()),
        node_id: inner.node_id.to_string(),
        fencing_token: token,
        scheduled_at: recorded_at,
        started_at: early.as_ref().map(|_| recorded_at),
        finished_at: None,
        exit_code: None,
        http_status: None,
        output: String::new(),
        error: None,
    };
    let inserted = inner.store.insert_run(&rec).await;
    if !matches!(inserted, Err(StoreError::DuplicateFire(_))) {
        claimed.store(true, std::sync::atomic::Ordering::Release);
    }
    match inserted {
        Ok(()) => {}
        Err(StoreError::DuplicateFire(_)) => {
            inc(&inner.metrics.duplicates);
            tracing::info!(job_id = %fire.job_id, nominal = %fire.nominal, "fire already in the ledger: not run again");
            release_later(inner, fire, token, RunState::Cancelled);
            return None;
        }
        Err(e) => {
            // Running without a record would break restart safety; not running loses
            // the fire. Run, and say so loudly.
            inc(&inner.metrics.store_errors);
            tracing::error!(job_id = %fire.job_id, error = %e, "cannot record the run; running it anyway");
        }
    }
    let permit = match early {
        Some(permit) => Some(permit),
        None => {
            inner
                .metrics
                .pool_waiting
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let permit = tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                p = pool.acquire_owned() => p.ok(),
            };
            inner
                .metrics
                .pool_waiting
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            permit
        }
    };
    let Some(_permit) = permit else {
        rec.state = RunState::Cancelled;
        rec.finished_at = Some(inner.clock.now());
        rec.error = Some("cancelled before it started".to_owned());
        write_run(inner, &rec).await;
        release_later(inner, fire, token, rec.state);
        count_outcome(&inner.metrics, rec.state);
        if inner.listened() {
            inner.emit(SchedulerEvent::Failed { run: rec.clone() });
        }
        return Some(rec.state);
    };

    let started = match rec.started_at {
        Some(at) => at,
        None => {
            let at = inner.clock.now();
            rec.state = RunState::Running;
            rec.started_at = Some(at);
            rec.attempt = 1;
            write_run(inner, &rec).await;
            at
        }
    };
    inc(&inner.metrics.started);
    let lateness = Duration::try_from(started.duration_since(fire.nominal)).unwrap_or_default();
    inner.metrics.lateness.observe(lateness);
    if inner.listened() {
        inner.emit(SchedulerEvent::Started { run: rec.clone() });
    }

    let retry = spec.policies.retry;
    let max_attempts = retry.max_attempts.max(1);
    let span = tracing::info_span!(
        "run",
        job_id = %fire.job_id,
        run_id = %run_id,
        node_id = %inner.node_id,
        nominal = %fire.nominal,
        action = action_kind(&spec.action),
    );
    let mut attempt = 1;
    loop {
        rec.attempt = attempt;
        let ctx = RunContext {
            job_id: fire.job_id.clone(),
            run_id,
            nominal: fire.nominal,
            attempt,
            node_id: inner.node_id.clone(),
            fencing_token: token,
            cancel: cancel.child_token(),
        };
        let result = execute_action(inner, spec, ctx, retry.attempt_timeout, cancel, kill)
            .instrument(span.clone())
            .await;
        rec.state = result.state;
        rec.exit_code = result.exit_code;
        rec.http_status = result.http_status;
        rec.output = result.output;
        rec.error = result.error;
        let retryable = matches!(rec.state, RunState::Failed | RunState::TimedOut);
        if !retryable || cancel.is_cancelled() {
            break;
        }
        let Some(pause) = retry.backoff(fire_key(spec, fire.nominal), attempt + 1) else {
            break;
        };
        if attempt >= max_attempts {
            break;
        }
        tracing::info!(parent: &span, attempt, ?pause, error = rec.error.as_deref().unwrap_or(""), "attempt failed; retrying");
        write_run(inner, &rec).await;
        inc(&inner.metrics.retries);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = cancel.cancelled() => {
                rec.state = RunState::Cancelled;
                break;
            }
        }
        attempt += 1;
    }
    let finished = inner.clock.now();
    rec.finished_at = Some(finished);
    write_run(inner, &rec).await;
    release_later(inner, fire, token, rec.state);
    inner
        .metrics
        .duration
        .observe(Duration::try_from(finished.duration_since(started)).unwrap_or_default());
    count_outcome(&inner.metrics, rec.state);
    tracing::info!(parent: &span, state = %rec.state, attempts = rec.attempt, "run ended");
    let state = rec.state;
    if inner.listened() {
        inner.emit(if state == RunState::Succeeded {
            SchedulerEvent::Finished { run: rec }
        } else {
            SchedulerEvent::Failed { run: rec }
        });
    }
    Some(state)
}

/// Releases a claim in a tracked task of its own: the run's slot is free as soon as
/// the run is recorded, so a slow release (a cluster's coordinator waiting out an etcd
/// election) never makes the job's next fires meet a busy overlap policy. Shutdown
/// waits for it like for any other task.
fn release_later(
    inner: &Arc<Inner>,
    fire: &Fire,
    token: crate::job::FencingToken,
    state: RunState,
) {
    let coordinator = inner.coordinator.clone();
    let fire = fire.clone();
    inner.tracker.spawn(async move {
        if let Err(e) = coordinator.release(&fire, token, state).await {
            tracing::warn!(job_id = %fire.job_id, error = %e, "cannot release the claim");
        }
    });
}

async fn write_run(inner: &Inner, rec: &RunRecord) {
    if let Err(e) = inner.store.update_run(rec).await {
        inc(&inner.metrics.store_errors);
        tracing::warn!(job_id = %rec.job_id, run_id = %rec.run_id, error = %e, "cannot update the run record");
    }
}

struct AttemptResult {
    state: RunState,
    exit_code: Option<i32>,
    http_status: Option<u16>,
    output: String,
    error: Option<String>,
}

impl AttemptResult {
    fn state(state: RunState, error: Option<String>) -> Self {
        Self {
            state,
            exit_code: None,
            http_status: None,
            output: String::new(),
            error,
        }
    }
}

/// One attempt of the job's action.
async fn execute_action(
    inner: &Arc<Inner>,
    spec: &JobSpec,
    ctx: RunContext,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    kill: &CancellationToken,
) -> AttemptResult {
    match &spec.action {
        ActionSpec::Handler { name } => {
            let Some(handler) = inner.handler(name) else {
                tracing::error!(job_id = %spec.id, handler = %name, "no handler registered under this name");
                inner.emit(SchedulerEvent::HandlerMissing {
                    job_id: spec.id.clone(),
                    handler: name.clone(),
                });
                return AttemptResult::state(
                    RunState::Failed,
                    Some(format!("no handler registered under `{name}`")),
                );
            };
            run_handler(handler, ctx, timeout, cancel, kill).await
        }
        ActionSpec::Command(cmd) => {
            let mut cmd = cmd.clone();
            let env = [
                ("SUNDIAL_JOB_ID", ctx.job_id.to_string()),
                ("SUNDIAL_RUN_ID", ctx.run_id.to_string()),
                ("SUNDIAL_FIRE_TIME", ctx.nominal.to_string()),
                ("SUNDIAL_ATTEMPT", ctx.attempt.to_string()),
                ("SUNDIAL_NODE_ID", ctx.node_id.to_string()),
                ("SUNDIAL_FENCING_TOKEN", ctx.fencing_token.0.to_string()),
            ];
            for (k, v) in env {
                cmd.env.insert(k.to_owned(), v);
            }
            match command::run_with_kill(&cmd, timeout, &ctx.cancel, kill).await {
                Ok(out) => {
                    let output = String::from_utf8_lossy(&out.output).into_owned();
                    let (state, exit_code, error) = match out.end {
                        command::CommandEnd::Exited(0) => (RunState::Succeeded, Some(0), None),
                        command::CommandEnd::Exited(c) => {
                            (RunState::Failed, Some(c), Some(format!("exit status {c}")))
                        }
                        command::CommandEnd::Signalled(s) => {
                            (RunState::Failed, None, Some(format!("killed by signal {s}")))
                        }
                        command::CommandEnd::TimedOut => (
                            RunState::TimedOut,
                            None,
                            Some("timed out; process group stopped".to_owned()),
                        ),
                        command::CommandEnd::Cancelled => (
                            RunState::Cancelled,
                            None,
                            Some("cancelled; process group stopped".to_owned()),
                        ),
                    };
                    AttemptResult {
                        state,
                        exit_code,
                        http_status: None,
                        output,
                        error,
                    }
                }
                Err(e) => AttemptResult::state(RunState::Failed, Some(e.to_string())),
            }
        }
        ActionSpec::Http(req) => {
            let token = ctx.cancel.clone();
            let stop = kill.clone();
            let combined = CancellationToken::new();
            let c2 = combined.clone();
            let watcher = tokio::spawn(async move {
                tokio::select! {
                    () = token.cancelled() => {}
                    () = stop.cancelled() => {}
                }
                c2.cancel();
            });
            let out = http::run(req, &http_headers(&ctx), timeout, &combined).await;
            watcher.abort();
            match out {
                Ok(resp) => AttemptResult {
                    state: match resp.end {
                        http::HttpEnd::Status(_) if resp.success => RunState::Succeeded,
                        http::HttpEnd::Status(_) => RunState::Failed,
                        http::HttpEnd::TimedOut => RunState::TimedOut,
                        http::HttpEnd::Cancelled => RunState::Cancelled,
                    },
                    exit_code: None,
                    http_status: match resp.end {
                        http::HttpEnd::Status(s) => Some(s),
                        _ => None,
                    },
                    error: match resp.end {
                        http::HttpEnd::Status(s) if !resp.success => {
                            Some(format!("unexpected HTTP status {s}"))
                        }
                        http::HttpEnd::TimedOut => Some("request timed out".to_owned()),
                        http::HttpEnd::Cancelled => Some("request cancelled".to_owned()),
                        http::HttpEnd::Status(_) => None,
                    },
                    output: resp.body,
                },
                Err(e) => AttemptResult::state(RunState::Failed, Some(e.to_string())),
            }
        }
    }
    .with_cancel_note(cancel)
}

impl AttemptResult {
    /// An attempt that failed because its run was cancelled counts as cancelled.
    fn with_cancel_note(mut self, cancel: &CancellationToken) -> Self {
        if cancel.is_cancelled() && self.state == RunState::Failed {
            self.state = RunState::Cancelled;
        }
        self
    }
}

fn http_headers(ctx: &RunContext) -> Vec<(&'static str, String)> {
    vec![
        ("x-sundial-job-id", ctx.job_id.to_string()),
        ("x-sundial-run-id", ctx.run_id.to_string()),
        ("x-sundial-fire-time", ctx.nominal.to_string()),
        ("x-sundial-attempt", ctx.attempt.to_string()),
        ("x-sundial-node-id", ctx.node_id.to_string()),
        ("x-sundial-fencing-token", ctx.fencing_token.0.to_string()),
    ]
}

async fn run_handler(
    handler: Handler,
    ctx: RunContext,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    kill: &CancellationToken,
) -> AttemptResult {
    let attempt_cancel = ctx.cancel.clone();
    let mut task = match handler {
        // Polled inline (no task hop on the way to the handler); a panic is caught.
        Handler::Async(f) => {
            let fut = CatchUnwind(f(ctx));
            return run_inline(fut, attempt_cancel, timeout, cancel, kill).await;
        }
        Handler::Blocking(f) => tokio::task::spawn_blocking(move || f(ctx)),
    };
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        joined = &mut task => match joined {
            Ok(Ok(())) => AttemptResult::state(RunState::Succeeded, None),
            Ok(Err(e)) if cancel.is_cancelled() => AttemptResult::state(RunState::Cancelled, Some(e.to_string())),
            Ok(Err(e)) => AttemptResult::state(RunState::Failed, Some(e.to_string())),
            Err(e) if e.is_panic() => AttemptResult::state(RunState::Failed, Some("the handler panicked".to_owned())),
            Err(_) => AttemptResult::state(RunState::Cancelled, Some("the handler was aborted".to_owned())),
        },
        () = deadline => {
            // Tell a cooperative handler, and stop an async one (a blocking one cannot
            // be stopped: it is detached and its result ignored).
            attempt_cancel.cancel();
            task.abort();
            AttemptResult::state(RunState::TimedOut, Some("timed out".to_owned()))
        }
        () = kill.cancelled() => {
            attempt_cancel.cancel();
            task.abort();
            AttemptResult::state(RunState::Cancelled, Some("terminated".to_owned()))
        }
    }
}

/// Polls a handler future, turning a panic into an error.
struct CatchUnwind(Pin<Box<dyn Future<Output = HandlerResult> + Send>>);

impl Future for CatchUnwind {
    type Output = Option<HandlerResult>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Some(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }
}

async fn run_inline(
    fut: CatchUnwind,
    attempt_cancel: CancellationToken,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    kill: &CancellationToken,
) -> AttemptResult {
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = fut => match r {
            Some(Ok(())) => AttemptResult::state(RunState::Succeeded, None),
            Some(Err(e)) if cancel.is_cancelled() => AttemptResult::state(RunState::Cancelled, Some(e.to_string())),
            Some(Err(e)) => AttemptResult::state(RunState::Failed, Some(e.to_string())),
            None => {
                tracing::error!("the handler panicked");
                AttemptResult::state(RunState::Failed, Some("the handler panicked".to_owned()))
            }
        },
        () = deadline => {
            // Tell the handler, and drop its future (it stops at its next await).
            attempt_cancel.cancel();
            AttemptResult::state(RunState::TimedOut, Some("timed out".to_owned()))
        }
        () = kill.cancelled() => {
            attempt_cancel.cancel();
            AttemptResult::state(RunState::Cancelled, Some("terminated".to_owned()))
        }
    }
}

/// Manual fire with an optional overlap override.
pub(super) fn trigger_now(
    inner: &Arc<Inner>,
    entry: &Arc<JobEntry>,
    overlap: Option<OverlapPolicy>,
) -> TriggerOutcome {
    let now = inner.clock.now();
    let mut st = entry.lock();
    let policy = overlap.unwrap_or(st.spec.policies.overlap);
    inc(&inner.metrics.fires);
    dispatch(inner, entry, &mut st, now, policy)
}

/// Queues the unrecorded fires of `[from, to]` to run one after another.
pub(super) async fn backfill(
    inner: &Arc<Inner>,
    entry: &Arc<JobEntry>,
    from: Timestamp,
    to: Timestamp,
) -> Result<BackfillReport, EngineError> {
    let (spec, trigger) = {
        let st = entry.lock();
        (st.spec.clone(), st.trigger.clone())
    };
    let before = from
        .checked_sub(SignedDuration::from_nanos(1))
        .unwrap_or(Timestamp::MIN);
    let fires = trigger.fires_between(before, to, 0, inner.catch_up_limit);
    let mut todo = Vec::new();
    let mut already = 0;
    for nominal in fires {
        let fire = Fire {
            job_id: spec.id.clone(),
            nominal,
        };
        if inner.store.was_recorded(&fire).await? {
            already += 1;
        } else {
            todo.push(fire);
        }
    }
    let report = BackfillReport {
        queued: todo.len(),
        already_recorded: already,
    };
    let inner2 = inner.clone();
    inner.tracker.spawn(async move {
        for fire in todo {
            if inner2.stopping.is_cancelled() {
                break;
            }
            inc(&inner2.metrics.fires);
            let cancel = inner2.stopping.child_token();
            let run_id = RunId::generate(inner2.clock.now());
            execute_fire(
                &inner2,
                &spec,
                &fire,
                run_id,
                &cancel,
                &CancellationToken::new(),
                &std::sync::atomic::AtomicBool::new(false),
            )
            .await;
        }
    });
    Ok(report)
}

/// The next `n` nominal fires.
pub(super) fn upcoming(entry: &JobEntry, n: usize) -> Vec<Timestamp> {
    let st = entry.lock();
    let mut out = Vec::with_capacity(n.min(1024));
    let Some((first, _)) = st.next else {
        return out;
    };
    out.push(first);
    let mut fired = st.fired + 1;
    while out.len() < n {
        let Some(&last) = out.last() else { break };
        match st.trigger.next_after(last, fired) {
            Some(t) => out.push(t),
            None => break,
        }
        fired += 1;
    }
    out.truncate(n);
    out
}

pub(super) fn info(inner: &Inner, entry: &JobEntry) -> JobInfo {
    let st = entry.lock();
    let missing_handler = match &st.spec.action {
        ActionSpec::Handler { name } if inner.handler(name).is_none() => Some(name.clone()),
        _ => None,
    };
    JobInfo {
        spec: (*st.spec).clone(),
        next_fire: st.next.map(|(t, _)| t),
        running: st.active.as_ref().map_or(0, |a| a.running.len()),
        buffered: st.active.as_ref().map_or(0, |a| a.buffered.len()),
        fires: st.fired,
        consecutive_failures: st.failures,
        missing_handler,
    }
}

/// New definition for a job: re-armed from now; runs going keep the old definition.
pub(super) fn replace_spec(
    inner: &Arc<Inner>,
    entry: &Arc<JobEntry>,
    spec: JobSpec,
    trigger: Trigger,
) {
    let now = inner.clock.now();
    let mut st = entry.lock();
    disarm(inner, &mut st);
    let was_paused = st.spec.paused;
    st.spec = Arc::new(spec);
    st.trigger = Arc::new(trigger);
    if st.spec.paused {
        if !was_paused {
            st.paused_at = Some(now);
        }
        return;
    }
    if st.trigger.waits_for_completion() && st.fired > 0 {
        if st.active.as_ref().is_none_or(|a| a.running.is_empty())
            && let Some(next) = st.trigger.after_completion(now, st.fired)
        {
            arm(inner, entry, &mut st, next);
        }
    } else if st.trigger.waits_for_completion() {
        if let Some(next) = st.trigger.next_after(now, 0) {
            arm(inner, entry, &mut st, next);
        }
    } else if let Some(next) = st.trigger.next_after(now, st.fired) {
        arm(inner, entry, &mut st, next);
    }
}

/// The job left the table.
pub(super) fn retire(inner: &Inner, entry: &JobEntry) {
    let mut st = entry.lock();
    st.removed = true;
    disarm(inner, &mut st);
    if let Some(active) = st.active.as_mut() {
        active.buffered.clear();
    }
}

fn pause_locked(inner: &Inner, st: &mut JobState, now: Timestamp) -> Option<JobSpec> {
    if st.spec.paused {
        return None;
    }
    disarm(inner, st);
    let mut spec = (*st.spec).clone();
    spec.paused = true;
    st.spec = Arc::new(spec.clone());
    st.paused_at = Some(now);
    if let Some(active) = st.active.as_mut() {
        active.buffered.clear();
    }
    Some(spec)
}

/// Pauses or resumes; returns the changed spec to save, `None` if nothing changed.
pub(super) fn set_paused(
    inner: &Arc<Inner>,
    entry: &Arc<JobEntry>,
    paused: bool,
) -> Option<JobSpec> {
    let now = inner.clock.now();
    let mut st = entry.lock();
    if paused {
        return pause_locked(inner, &mut st, now);
    }
    if !st.spec.paused {
        return None;
    }
    let mut spec = (*st.spec).clone();
    spec.paused = false;
    st.spec = Arc::new(spec.clone());
    st.failures = 0;
    let from = st.last.or(st.paused_at).unwrap_or(now);
    st.paused_at = None;
    catch_up(inner, entry, &mut st, from, now);
    Some(spec)
}
