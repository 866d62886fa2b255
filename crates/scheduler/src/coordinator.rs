//! The `Coordinator` trait: who runs a fire, and [`LocalCoordinator`] for one node.
//!
//! Before a fire runs, the engine *claims* it. A claim is keyed by the fire identity
//! (job id, nominal instant) — never by the job name — and succeeds at most once per
//! fire whatever the nodes' clocks say; it yields a [`FencingToken`] that increases with
//! every claim and travels with the run (to the job, and to the ledger, which refuses
//! writes carrying an older token). When the run ends the engine *releases* the claim
//! with the final state; the claim itself is not forgotten, so the fire cannot be
//! claimed again.
//!
//! The shape is the etcd design's: a cluster implementation creates the claim key with
//! a create-if-absent transaction (its revision is the token), keeps a session lease
//! per node to say whether the node is alive, and reports through
//! [`Coordinator::lost_runs`] the claims held by nodes whose lease expired without a
//! release — runs lost with their node.
//!
//! [`LocalCoordinator`] holds claims in memory. Tokens start from the wall clock in
//! microseconds at creation, so they also increase across restarts of one node.
//! Released claims more than an hour older than the newest claim are forgotten, so
//! memory follows the fire rate of the last hour; the ledger's fire uniqueness still
//! guards older fires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};

use crate::job::{FencingToken, Fire, RunState};
use crate::jobs_file::NodeLost;

/// What the engine says about a claim besides the fire itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimOptions {
    /// A coordinator that cannot reach its service keeps trying until this instant
    /// (the fire's nominal instant plus the job's misfire grace), then gives up with
    /// [`CoordinatorError::Unavailable`]: the fire is delayed by an outage, not
    /// dropped, and once too late it is counted missed by the engine, once.
    pub deadline: Timestamp,
    /// What a cluster does with the fire if this node dies while running it.
    pub on_node_lost: NodeLost,
}

/// Errors of a [`Coordinator`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The coordination service cannot be reached; fires are not claimed meanwhile
    /// (they become misfires and follow the misfire policy).
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
    /// The claim being released is not held with this token.
    #[error("claim of job `{}` at {} is not held with token {}", .fire.job_id, .fire.nominal, .token.0)]
    NotHeld {
        /// The fire.
        fire: Fire,
        /// The token given.
        token: FencingToken,
    },
}

/// A claim whose node went away before releasing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostClaim {
    /// The fire.
    pub fire: Fire,
    /// The node that held it.
    pub node_id: String,
    /// Its token.
    pub token: FencingToken,
}

/// Decides which node runs each fire. See the module docs.
#[async_trait]
pub trait Coordinator: Send + Sync + std::fmt::Debug + 'static {
    /// This node's id.
    fn node_id(&self) -> &str;

    /// Claims `fire` for this node: `Some(token)` the first time it is claimed
    /// anywhere, `None` if it was claimed before (by any node, released or not) or
    /// this node may not run it (see the implementation).
    async fn claim(
        &self,
        fire: &Fire,
        options: &ClaimOptions,
    ) -> Result<Option<FencingToken>, CoordinatorError>;

    /// Releases a claim when its run has ended with `state`.
    async fn release(
        &self,
        fire: &Fire,
        token: FencingToken,
        state: RunState,
    ) -> Result<(), CoordinatorError>;

    /// Claims held by nodes that are gone and never released: their runs are lost.
    /// Each lost claim is reported once.
    async fn lost_runs(&self) -> Result<Vec<LostClaim>, CoordinatorError>;
}

#[derive(Debug)]
struct Claim {
    token: FencingToken,
    released: Option<RunState>,
}

#[derive(Debug, Default)]
struct Claims {
    map: HashMap<Fire, Claim>,
    newest: Option<Timestamp>,
    /// Size after the last pruning (pruning runs when the map doubles).
    pruned_at: usize,
}

/// A single-node [`Coordinator`]: claims in memory, monotonic tokens.
#[derive(Debug, Clone)]
pub struct LocalCoordinator {
    node_id: Arc<str>,
    next: Arc<AtomicU64>,
    claims: Arc<Mutex<Claims>>,
}

impl LocalCoordinator {
    /// A coordinator for the node `node_id`.
    pub fn new(node_id: impl AsRef<str>) -> Self {
        let start = Timestamp::now().as_microsecond().max(1).unsigned_abs();
        Self {
            node_id: Arc::from(node_id.as_ref()),
            next: Arc::new(AtomicU64::new(start)),
            claims: Arc::new(Mutex::new(Claims::default())),
        }
    }

    /// Claims currently remembered (released or not).
    pub fn claims_held(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Coordinator for LocalCoordinator {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    async fn claim(
        &self,
        fire: &Fire,
        _options: &ClaimOptions,
    ) -> Result<Option<FencingToken>, CoordinatorError> {
        let mut claims = self.lock();
        if claims.map.contains_key(fire) {
            return Ok(None);
        }
        let token = FencingToken(self.next.fetch_add(1, Ordering::Relaxed));
        claims.map.insert(
            fire.clone(),
            Claim {
                token,
                released: None,
            },
        );
        claims.newest = Some(claims.newest.map_or(fire.nominal, |n| n.max(fire.nominal)));
        if claims.map.len() >= 2 * claims.pruned_at.max(1024)
            && let Some(newest) = claims.newest
        {
            let horizon = newest
                .checked_sub(SignedDuration::from_hours(1))
                .unwrap_or(Timestamp::MIN);
            claims
                .map
                .retain(|f, c| c.released.is_none() || f.nominal >= horizon);
            claims.pruned_at = claims.map.len();
        }
        Ok(Some(token))
    }

    async fn release(
        &self,
        fire: &Fire,
        token: FencingToken,
        state: RunState,
    ) -> Result<(), CoordinatorError> {
        let mut claims = self.lock();
        match claims.map.get_mut(fire) {
            Some(claim) if claim.token == token => {
                claim.released = Some(state);
                Ok(())
            }
            _ => Err(CoordinatorError::NotHeld {
                fire: fire.clone(),
                token,
            }),
        }
    }

    async fn lost_runs(&self) -> Result<Vec<LostClaim>, CoordinatorError> {
        // One node: a claim outlives its run only if this process dies, and then the
        // memory goes with it; the engine finds such runs in the ledger at start-up.
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobId;

    const OPTS: ClaimOptions = ClaimOptions {
        deadline: Timestamp::MAX,
        on_node_lost: NodeLost::Fail,
    };

    fn fire(job: &str, sec: i64) -> Fire {
        Fire {
            job_id: JobId::new(job),
            nominal: Timestamp::from_second(1_700_000_000 + sec).expect("ts"),
        }
    }

    #[tokio::test]
    async fn a_fire_is_claimed_once_with_increasing_tokens() {
        let c = LocalCoordinator::new("n1");
        let a = c
            .claim(&fire("a", 0), &OPTS)
            .await
            .expect("ok")
            .expect("claimed");
        let b = c
            .claim(&fire("a", 60), &OPTS)
            .await
            .expect("ok")
            .expect("claimed");
        assert!(b > a);
        assert_eq!(c.claim(&fire("a", 0), &OPTS).await.expect("ok"), None);
        c.release(&fire("a", 0), a, RunState::Succeeded)
            .await
            .expect("held");
        assert_eq!(
            c.claim(&fire("a", 0), &OPTS).await.expect("ok"),
            None,
            "released claims are not claimable again"
        );
        assert!(matches!(
            c.release(&fire("a", 60), a, RunState::Failed).await,
            Err(CoordinatorError::NotHeld { .. })
        ));
        let restarted = LocalCoordinator::new("n1");
        let c2 = restarted
            .claim(&fire("b", 0), &OPTS)
            .await
            .expect("ok")
            .expect("claimed");
        assert!(c2 > b, "tokens increase across restarts");
        assert_eq!(c.node_id(), "n1");
    }

    #[tokio::test]
    async fn old_released_claims_are_forgotten() {
        let c = LocalCoordinator::new("n");
        for i in 0..5000 {
            let f = fire("j", i * 60);
            let t = c.claim(&f, &OPTS).await.expect("ok").expect("claimed");
            c.release(&f, t, RunState::Succeeded).await.expect("held");
        }
        // 5000 minutes: released claims an hour older than the newest are pruned.
        assert!(c.claims_held() <= 2048, "{}", c.claims_held());
        assert_eq!(
            c.claim(&fire("j", 4999 * 60), &OPTS).await.expect("ok"),
            None
        );
    }
}
