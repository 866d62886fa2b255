//! [`EtcdCoordinator`]: per-fire claims and fenced completions, and the state the
//! node's background tasks share ([`CoordinatorShared`]).
//!
//! A claim is one transaction (see the crate docs for why each compare is there):
//!
//! ```text
//! if   create_revision(fires/J/T) == 0          -- nobody took the fire
//! and  lease(nodes/N) == L                      -- this node's session is current
//! and  value(watermarks/J) < T                  -- not below the collected range
//! and  mod_revision(jobs/J) == R                -- scheduled under the current definition
//!      (or create_revision(jobs/J) == 0 for jobs defined in code)
//! then put fires/J/T = {node N, lease L, claimed}; put inflight/N/J/T = L
//! else get fires/J/T, nodes/N, watermarks/J, jobs/J
//! ```
//!
//! The transaction's revision is the fencing token. A retried claim whose first reply
//! was lost finds the fire taken by (N, L) and takes that as its own claim, with the
//! key's revision as the token. Completion deletes `inflight/N/J/T` only if
//! `mod_revision(fires/J/T)` is still the token, so a run that housekeeping declared
//! lost (which rewrote the fire key) is fenced out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp, TxnOpResponse, TxnResponse};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sundial_scheduler::coordinator::{ClaimOptions, Coordinator, CoordinatorError, LostClaim};
use sundial_scheduler::engine::Scheduler;
use sundial_scheduler::job::{FencingToken, Fire, RunState};
use sundial_scheduler::jobs_file::NodeLost;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::client::{CallError, Etcd};
use crate::keys::{self, Keys};
use crate::{ClusterConfig, NodeHealth};

/// What a fire key says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FireRecord {
    /// The fire's nominal instant, exactly (the key has it in milliseconds).
    pub(crate) nominal: Timestamp,
    /// The node that claimed it last.
    pub(crate) node: String,
    /// That node's session lease when it claimed.
    pub(crate) lease: i64,
    /// Claimed, lost with its node, or offered again.
    pub(crate) state: FireState,
    /// The job's policy for a lost fire, as the claimer knew it.
    pub(crate) on_node_lost: NodeLost,
    /// When it was claimed (the claimer's clock).
    pub(crate) claimed_at: Timestamp,
    /// Claims of this fire so far (more than one after `retry`).
    #[serde(default = "one")]
    pub(crate) claims: u32,
}

fn one() -> u32 {
    1
}

/// The states of a fire key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FireState {
    /// Taken by `node` (running or finished: completion does not rewrite it).
    Claimed,
    /// Its node died while running it; recorded lost (`on_node_lost = fail`).
    Lost,
    /// Its node died while running it; may be claimed again (`on_node_lost = retry`).
    Retry,
}

impl FireRecord {
    pub(crate) fn decode(kv: &KeyValue) -> Option<Self> {
        serde_json::from_slice(kv.value()).ok()
    }
}

/// A job definition as this node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Definition {
    /// Stored in etcd at this mod revision.
    Stored(i64),
    /// Deleted from etcd: its fires are not claimed any more.
    Removed,
}

/// The node's session as the claim path sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SessionState {
    /// The session lease, if the node has one.
    pub(crate) lease: Option<i64>,
    /// When the node must consider it gone (last acknowledged keep-alive + TTL −
    /// margin, on the monotonic clock).
    pub(crate) deadline: Option<Instant>,
}

/// Another member as this node sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Member {
    pub(crate) lease: i64,
    pub(crate) claiming: bool,
    /// Its clock minus this node's, at the last sample, in milliseconds.
    pub(crate) offset_ms: i64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) claims_won: AtomicU64,
    pub(crate) claims_taken_elsewhere: AtomicU64,
    pub(crate) completions_fenced: AtomicU64,
    pub(crate) claims_unavailable: AtomicU64,
    pub(crate) fires_reaped: AtomicU64,
    pub(crate) fail_stops: AtomicU64,
}

/// State shared by the coordinator and the node's background tasks.
#[derive(Debug)]
pub(crate) struct CoordinatorShared {
    pub(crate) etcd: Etcd,
    pub(crate) keys: Keys,
    pub(crate) config: ClusterConfig,
    pub(crate) session: watch::Sender<SessionState>,
    pub(crate) members: RwLock<HashMap<String, Member>>,
    /// This node's clock minus the members' median (ms), once another member is known.
    pub(crate) skew_ms: Mutex<Option<i64>>,
    pub(crate) skew_ok: AtomicBool,
    pub(crate) leader: AtomicBool,
    pub(crate) definitions: RwLock<HashMap<String, Definition>>,
    pub(crate) definitions_ready: watch::Sender<bool>,
    /// The etcd revision up to which definitions are applied to the scheduler.
    pub(crate) applied_revision: watch::Sender<i64>,
    pub(crate) scheduler: OnceLock<Scheduler>,
    pub(crate) lost: Mutex<Vec<LostClaim>>,
    /// Claims this node holds (until their release), with what their keys say.
    pub(crate) held: Mutex<HashMap<Fire, FireRecord>>,
    /// Wakes housekeeping when a member leaves.
    pub(crate) member_left: Notify,
    /// Wakes [`Cluster::lost_fires`](crate::Cluster::lost_fires) when fires were reaped.
    pub(crate) fires_lost: Notify,
    pub(crate) counters: Counters,
}

impl CoordinatorShared {
    pub(crate) fn new(etcd: Etcd, keys: Keys, config: ClusterConfig) -> Self {
        Self {
            etcd,
            keys,
            config,
            session: watch::channel(SessionState::default()).0,
            members: RwLock::new(HashMap::new()),
            skew_ms: Mutex::new(None),
            skew_ok: AtomicBool::new(true),
            leader: AtomicBool::new(false),
            definitions: RwLock::new(HashMap::new()),
            definitions_ready: watch::channel(false).0,
            applied_revision: watch::channel(0).0,
            scheduler: OnceLock::new(),
            lost: Mutex::new(Vec::new()),
            held: Mutex::new(HashMap::new()),
            member_left: Notify::new(),
            fires_lost: Notify::new(),
            counters: Counters::default(),
        }
    }

    pub(crate) fn node_id(&self) -> &str {
        &self.config.node_id
    }

    pub(crate) fn attach(&self, scheduler: Scheduler) {
        let _ = self.scheduler.set(scheduler);
    }

    /// The session lease if it is live now.
    pub(crate) fn live_lease(&self) -> Option<i64> {
        let state = *self.session.borrow();
        match (state.lease, state.deadline) {
            (Some(lease), Some(deadline)) if Instant::now() < deadline => Some(lease),
            _ => None,
        }
    }

    /// Waits for a live session until `until`.
    async fn wait_for_session(&self, until: Instant) -> Option<i64> {
        let mut rx = self.session.subscribe();
        loop {
            if let Some(lease) = self.live_lease() {
                return Some(lease);
            }
            let state = *rx.borrow_and_update();
            // A session whose deadline passed is replaced by the session task; wait
            // for the change (or poll its deadline) until `until`.
            let wake = match state.deadline {
                Some(d) if d > Instant::now() => d.min(until),
                _ => (Instant::now() + Duration::from_millis(100)).min(until),
            };
            if Instant::now() >= until {
                return None;
            }
            let _ = tokio::time::timeout_at(wake, rx.changed()).await;
        }
    }

    /// Whether this node claims fires now (clock within bounds).
    pub(crate) fn claiming(&self) -> bool {
        self.skew_ok.load(Ordering::Relaxed)
    }

    /// The preferred owner of `job` among the live, claiming members (rendezvous
    /// hashing); this node counts itself if it claims.
    pub(crate) fn preferred_owner(&self, job: &str) -> Option<String> {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        let me = self.node_id();
        let mut best: Option<(u64, &str)> = None;
        let candidates = members
            .iter()
            .filter(|(id, m)| m.claiming && id.as_str() != me)
            .map(|(id, _)| id.as_str())
            .chain(self.claiming().then_some(me));
        for node in candidates {
            let score = rendezvous(node, job);
            if best.is_none_or(|(s, n)| score > s || (score == s && node > n)) {
                best = Some((score, node));
            }
        }
        best.map(|(_, n)| n.to_owned())
    }

    pub(crate) fn is_preferred(&self, job: &str) -> bool {
        self.preferred_owner(job)
            .is_none_or(|owner| owner == self.node_id())
    }

    pub(crate) fn definition(&self, job: &str) -> Option<Definition> {
        self.definitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(job)
            .copied()
    }

    pub(crate) async fn definitions_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.definitions_ready.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub(crate) fn health(&self) -> NodeHealth {
        let c = &self.counters;
        NodeHealth {
            node_id: self.node_id().to_owned(),
            session: self.live_lease().is_some(),
            claiming: self.live_lease().is_some() && self.claiming(),
            skew_ms: *self.skew_ms.lock().unwrap_or_else(PoisonError::into_inner),
            leader: self.leader.load(Ordering::Relaxed),
            members: self
                .members
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            claims_won: c.claims_won.load(Ordering::Relaxed),
            claims_taken_elsewhere: c.claims_taken_elsewhere.load(Ordering::Relaxed),
            completions_fenced: c.completions_fenced.load(Ordering::Relaxed),
            claims_unavailable: c.claims_unavailable.load(Ordering::Relaxed),
            fires_reaped: c.fires_reaped.load(Ordering::Relaxed),
            fail_stops: c.fail_stops.load(Ordering::Relaxed),
        }
    }

    /// The monotonic instant at which this node's clock reads `at`.
    pub(crate) fn instant_at(&self, at: Timestamp) -> Instant {
        let now = self.config.clock.now();
        let ahead = at.duration_since(now);
        match Duration::try_from(ahead) {
            Ok(d) => Instant::now() + d,
            Err(_) => Instant::now(),
        }
    }
}

/// A stable 64-bit score of (node, job) for rendezvous hashing.
pub(crate) fn rendezvous(node: &str, job: &str) -> u64 {
    let h = sundial_cron::hash_seed(node) ^ sundial_cron::hash_seed(job).rotate_left(29);
    // splitmix64 finaliser: FNV alone clusters on similar ids.
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The coordinator of a cluster node. See the module docs.
#[derive(Debug, Clone)]
pub struct EtcdCoordinator {
    shared: Arc<CoordinatorShared>,
}

/// Why a claim transaction failed, read from its `else` branch.
enum Refusal {
    /// The fire key exists.
    Taken(KeyValue),
    /// This node's session key does not carry the lease.
    SessionGone,
    /// The watermark key does not exist yet.
    NoWatermark,
    /// The fire is at or below the watermark.
    Collected,
    /// The job's definition moved on (or a code job is shadowed by a stored one).
    StaleDefinition,
}

fn kv_of(resp: &TxnResponse, index: usize) -> Option<KeyValue> {
    match resp.op_responses().into_iter().nth(index)? {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    }
}

impl EtcdCoordinator {
    pub(crate) fn new(shared: Arc<CoordinatorShared>) -> Self {
        Self { shared }
    }

    fn claim_txn(
        &self,
        fire: &Fire,
        lease: i64,
        options: &ClaimOptions,
    ) -> Option<(Txn, FireRecord)> {
        let k = &self.shared.keys;
        let job = fire.job_id.as_str();
        let node = self.shared.node_id();
        let fire_key = k.fire(job, fire.nominal);
        let job_key = k.job(job);
        let definition = match self.shared.definition(job) {
            Some(Definition::Removed) => return None,
            Some(Definition::Stored(rev)) => {
                Compare::mod_revision(job_key.clone(), CompareOp::Equal, rev)
            }
            None => Compare::create_revision(job_key.clone(), CompareOp::Equal, 0),
        };
        let record = FireRecord {
            nominal: fire.nominal,
            node: node.to_owned(),
            lease,
            state: FireState::Claimed,
            on_node_lost: options.on_node_lost,
            claimed_at: self.shared.config.clock.now(),
            claims: 1,
        };
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let txn = Txn::new()
            .when([
                Compare::create_revision(fire_key.clone(), CompareOp::Equal, 0),
                Compare::lease(k.node(node), CompareOp::Equal, lease),
                Compare::value(
                    k.watermark(job),
                    CompareOp::Less,
                    keys::instant(fire.nominal),
                ),
                definition,
            ])
            .and_then([
                TxnOp::put(fire_key.clone(), value, None),
                TxnOp::put(k.inflight(node, job, fire.nominal), lease.to_string(), None),
            ])
            .or_else([
                TxnOp::get(fire_key, None),
                TxnOp::get(k.node(node), None),
                TxnOp::get(k.watermark(job), None),
                TxnOp::get(job_key, None),
            ]);
        Some((txn, record))
    }

    /// Remembers a claim this node holds, for its release.
    fn remember(&self, fire: &Fire, record: FireRecord) {
        self.shared
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(fire.clone(), record);
    }

    fn refusal(&self, fire: &Fire, lease: i64, resp: &TxnResponse) -> Refusal {
        if let Some(kv) = kv_of(resp, 0) {
            return Refusal::Taken(kv);
        }
        if kv_of(resp, 1).is_none_or(|kv| kv.lease() != lease) {
            return Refusal::SessionGone;
        }
        match kv_of(resp, 2) {
            None => return Refusal::NoWatermark,
            Some(kv) if kv.value() >= keys::instant(fire.nominal).as_bytes() => {
                return Refusal::Collected;
            }
            Some(_) => {}
        }
        Refusal::StaleDefinition
    }

    /// Claims a fire offered again after its node was lost (`on_node_lost = retry`).
    async fn reclaim(
        &self,
        fire: &Fire,
        lease: i64,
        kv: &KeyValue,
        until: Instant,
    ) -> Result<Option<FencingToken>, CallError> {
        let Some(mut record) = FireRecord::decode(kv) else {
            return Ok(None);
        };
        let k = &self.shared.keys;
        let job = fire.job_id.as_str();
        let node = self.shared.node_id().to_owned();
        record.node.clone_from(&node);
        record.lease = lease;
        record.state = FireState::Claimed;
        record.claimed_at = self.shared.config.clock.now();
        record.claims += 1;
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let fire_key = k.fire(job, fire.nominal);
        let observed = kv.mod_revision();
        let txn = Txn::new()
            .when([
                Compare::mod_revision(fire_key.clone(), CompareOp::Equal, observed),
                Compare::lease(k.node(&node), CompareOp::Equal, lease),
            ])
            .and_then([
                TxnOp::put(fire_key.clone(), value, None),
                TxnOp::put(
                    k.inflight(&node, job, fire.nominal),
                    lease.to_string(),
                    None,
                ),
                TxnOp::delete(k.retry(job, fire.nominal), None),
            ])
            .or_else([TxnOp::get(fire_key, None)]);
        let resp = self.shared.etcd.txn("reclaim", Some(until), txn).await?;
        if resp.succeeded() {
            self.remember(fire, record);
            return Ok(resp
                .header()
                .map(|h| FencingToken(h.revision().unsigned_abs())));
        }
        // A retried reclaim whose reply was lost: ours if it names this session.
        let own = kv_of(&resp, 0).and_then(|kv| {
            let rec = FireRecord::decode(&kv)?;
            (rec.node == node && rec.lease == lease && rec.state == FireState::Claimed)
                .then(|| (FencingToken(kv.mod_revision().unsigned_abs()), rec))
        });
        Ok(own.map(|(token, rec)| {
            self.remember(fire, rec);
            token
        }))
    }

    /// Creates the job's watermark key (at zero) if it does not exist.
    async fn create_watermark(&self, job: &str, until: Instant) -> Result<(), CallError> {
        let key = self.shared.keys.watermark(job);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, keys::instant(Timestamp::UNIX_EPOCH), None)]);
        self.shared
            .etcd
            .txn("create watermark", Some(until), txn)
            .await
            .map(|_| ())
    }

    /// The fire key, by a linearizable read.
    async fn peek(&self, fire: &Fire, until: Instant) -> Result<Option<KeyValue>, CallError> {
        let key = self.shared.keys.fire(fire.job_id.as_str(), fire.nominal);
        let resp = self
            .shared
            .etcd
            .call("read fire", Some(until), |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(resp.kvs().first().cloned())
    }

    /// What an existing fire key means for this node: its own claim (a retry whose
    /// first reply was lost: the same token), a fire offered again, or taken.
    async fn existing(
        &self,
        fire: &Fire,
        kv: &KeyValue,
        lease: Option<i64>,
        until: Instant,
    ) -> Result<Option<FencingToken>, CallError> {
        let Some(record) = FireRecord::decode(kv) else {
            return Ok(None);
        };
        if record.node == self.shared.node_id()
            && Some(record.lease) == lease
            && record.state == FireState::Claimed
        {
            self.remember(fire, record);
            return Ok(Some(FencingToken(kv.mod_revision().unsigned_abs())));
        }
        match (record.state, lease) {
            (FireState::Retry, Some(lease)) => self.reclaim(fire, lease, kv, until).await,
            _ => Ok(None),
        }
    }

    /// A node whose clock is too far off does not claim — unless, after three
    /// takeover delays, nobody has taken the fire. By then the fire is late, not
    /// early, by the skewed clock too, and a late run beats none: this covers the
    /// moments when the set of claiming members changes (a member left and the
    /// median moved) and fires due just then would otherwise be refused by everyone.
    /// True when this node should claim.
    async fn last_resort(&self, fire: &Fire, until: Instant) -> Result<bool, CallError> {
        let shared = &self.shared;
        let give_up = Instant::now() + shared.config.takeover_delay * 3;
        while Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if shared.claiming() {
                return Ok(true);
            }
        }
        if self.peek(fire, until).await?.is_some() {
            tracing::debug!(job_id = %fire.job_id, nominal = %fire.nominal, "clock skew too large: not claiming");
            return Ok(false);
        }
        tracing::warn!(
            job_id = %fire.job_id,
            nominal = %fire.nominal,
            "clock skew too large, but nobody took the fire: claiming it late as a last resort"
        );
        Ok(true)
    }

    async fn claim_inner(
        &self,
        fire: &Fire,
        options: &ClaimOptions,
    ) -> Result<Option<FencingToken>, CallError> {
        let shared = &self.shared;
        let job = fire.job_id.as_str();
        let until = shared.instant_at(options.deadline);
        if matches!(shared.definition(job), Some(Definition::Removed)) {
            return Ok(None);
        }
        if !shared.is_preferred(job) {
            // Leave the fire to its preferred owner for a moment; correctness does
            // not depend on this, only the spread of load and etcd writes does.
            tokio::time::sleep(shared.config.takeover_delay).await;
            if let Some(kv) = self.peek(fire, until).await? {
                let lease = shared.live_lease();
                return self.existing(fire, &kv, lease, until).await;
            }
        }
        let mut watermark_created = false;
        loop {
            let Some(lease) = shared.wait_for_session(until).await else {
                return Err(CallError::Unavailable(
                    "this node has no live session".to_owned(),
                ));
            };
            if !shared.claiming() && !self.last_resort(fire, until).await? {
                return Ok(None);
            }
            let Some((txn, record)) = self.claim_txn(fire, lease, options) else {
                return Ok(None);
            };
            let resp = shared.etcd.txn("claim", Some(until), txn).await?;
            if resp.succeeded() {
                self.remember(fire, record);
                return Ok(resp
                    .header()
                    .map(|h| FencingToken(h.revision().unsigned_abs())));
            }
            match self.refusal(fire, lease, &resp) {
                Refusal::Taken(kv) => {
                    return self.existing(fire, &kv, Some(lease), until).await;
                }
                Refusal::SessionGone => {
                    // The session task notices too; wait for the next session.
                    let mut state = *shared.session.borrow();
                    if state.lease == Some(lease) {
                        state.deadline = Some(Instant::now());
                        shared.session.send_replace(state);
                    }
                }
                Refusal::NoWatermark if !watermark_created => {
                    self.create_watermark(job, until).await?;
                    watermark_created = true;
                }
                Refusal::NoWatermark | Refusal::Collected => {
                    tracing::warn!(job_id = job, nominal = %fire.nominal, "fire older than the collected range: not claimed");
                    return Ok(None);
                }
                Refusal::StaleDefinition => {
                    tracing::info!(job_id = job, nominal = %fire.nominal, "job definition changed: fire of the old definition not claimed");
                    return Ok(None);
                }
            }
        }
    }
}

#[async_trait]
impl Coordinator for EtcdCoordinator {
    fn node_id(&self) -> &str {
        self.shared.node_id()
    }

    async fn claim(
        &self,
        fire: &Fire,
        options: &ClaimOptions,
    ) -> Result<Option<FencingToken>, CoordinatorError> {
        let c = &self.shared.counters;
        match self.claim_inner(fire, options).await {
            Ok(Some(token)) => {
                c.claims_won.fetch_add(1, Ordering::Relaxed);
                Ok(Some(token))
            }
            Ok(None) => {
                c.claims_taken_elsewhere.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => {
                c.claims_unavailable.fetch_add(1, Ordering::Relaxed);
                Err(CoordinatorError::Unavailable(e.to_string()))
            }
        }
    }

    async fn release(
        &self,
        fire: &Fire,
        token: FencingToken,
        state: RunState,
    ) -> Result<(), CoordinatorError> {
        let k = &self.shared.keys;
        let job = fire.job_id.as_str();
        let fire_key = k.fire(job, fire.nominal);
        let held = self
            .shared
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(fire);
        // A run cancelled because its session was lost (fail-stop) did not happen:
        // record the fire lost (or offer it again) now, as housekeeping would.
        let lost = held
            .filter(|r| state == RunState::Cancelled && Some(r.lease) != self.shared.live_lease());
        let mut ops = vec![TxnOp::delete(
            k.inflight(self.shared.node_id(), job, fire.nominal),
            None,
        )];
        if let Some(record) = &lost {
            let mut record = record.clone();
            let retry = record.on_node_lost == NodeLost::Retry;
            record.state = if retry {
                FireState::Retry
            } else {
                FireState::Lost
            };
            ops.push(TxnOp::put(
                fire_key.clone(),
                serde_json::to_vec(&record).unwrap_or_default(),
                None,
            ));
            if retry {
                ops.push(TxnOp::put(k.retry(job, fire.nominal), "", None));
            }
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                fire_key,
                CompareOp::Equal,
                i64::try_from(token.0).unwrap_or(i64::MAX),
            )])
            .and_then(ops);
        let until = Instant::now() + Duration::from_secs(60);
        let resp = self
            .shared
            .etcd
            .txn("release", Some(until), txn)
            .await
            .map_err(|e| CoordinatorError::Unavailable(e.to_string()))?;
        if resp.succeeded() {
            if lost.is_some() {
                self.shared
                    .counters
                    .fires_reaped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(job_id = job, nominal = %fire.nominal, "fire lost: its run was aborted when this node's session was lost");
            }
            Ok(())
        } else {
            self.shared
                .counters
                .completions_fenced
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(job_id = job, nominal = %fire.nominal, token = token.0, "completion fenced out: the fire was declared lost meanwhile");
            Err(CoordinatorError::NotHeld {
                fire: fire.clone(),
                token,
            })
        }
    }

    async fn lost_runs(&self) -> Result<Vec<LostClaim>, CoordinatorError> {
        Ok(std::mem::take(
            &mut *self
                .shared
                .lost
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_jobs_over_nodes() {
        let nodes = ["n1", "n2", "n3"];
        let mut owned = [0u32; 3];
        for j in 0..3000 {
            let job = format!("job-{j}");
            let (i, _) = nodes
                .iter()
                .enumerate()
                .max_by_key(|(_, n)| rendezvous(n, &job))
                .expect("nodes");
            owned[i] += 1;
        }
        for count in owned {
            assert!((800..1200).contains(&count), "{owned:?}");
        }
    }

    #[test]
    fn fire_records_round_trip() {
        let rec = FireRecord {
            nominal: Timestamp::UNIX_EPOCH,
            node: "n1".into(),
            lease: 42,
            state: FireState::Retry,
            on_node_lost: NodeLost::Retry,
            claimed_at: Timestamp::UNIX_EPOCH,
            claims: 2,
        };
        let text = serde_json::to_string(&rec).expect("json");
        assert!(text.contains("\"state\":\"retry\""), "{text}");
        assert_eq!(
            serde_json::from_str::<FireRecord>(&text).expect("back"),
            rec
        );
    }
}
