//! What every handler shares: the store, the bus, ingest settings, the app cache and
//! the per-app rate limiter.
//!
//! The app cache maps app keys to apps so that ingest does not query the store per
//! request. An entry is trusted for [`APP_CACHE_TTL`]; after that the next request
//! reloads it, so a changed time zone, key rotation or signing requirement takes effect
//! within that time. Unknown keys are not cached (a 401 costs one indexed look-up).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use sundial_analytics::bus::Bus;
use sundial_analytics::ingest::Limits;
use sundial_analytics::{App, Store, StoreError};

use crate::auth::{AuthSettings, AuthState};

/// How long a cached app is trusted.
pub const APP_CACHE_TTL: Duration = Duration::from_secs(5);

/// Ingest settings (the `[ingest]` configuration section).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestSettings {
    /// Largest request body, after decompression (413 beyond). Default 1 MiB.
    pub max_body_bytes: usize,
    /// Validation limits (events per request, future clamp, age window).
    pub limits: Limits,
    /// Requests per second allowed per app (429 beyond); `None` (default) is unlimited.
    pub rate_limit_per_sec: Option<u32>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_body_bytes: 1 << 20,
            limits: Limits::default(),
            rate_limit_per_sec: None,
        }
    }
}

/// Readiness of the parts of the process, as `/readyz` reports it; and the in-process
/// hand-off between the admin API and the aggregator.
#[derive(Debug, Default)]
pub struct Readiness {
    aggregator: RwLock<Option<Result<(), String>>>,
    /// How many app changes that invalidate the aggregator's caches (data deleted, app
    /// deleted, time zone changed) the admin API made. The admin API holds the lock
    /// while it changes the store and the aggregator while it applies a batch, so a
    /// batch never mixes caches from before a change with rows from after it; the
    /// aggregator drops its caches when the count moved.
    app_changes: tokio::sync::Mutex<u64>,
}

impl Readiness {
    /// Records the aggregator's state: `Ok` running, `Err` failing (with why).
    pub fn set_aggregator(&self, state: Result<(), String>) {
        if let Ok(mut slot) = self.aggregator.write() {
            *slot = Some(state);
        }
    }

    /// Locks out aggregator batches of this process while app data changes; bump the
    /// count when the change invalidates the aggregator's caches.
    pub async fn lock_app_changes(&self) -> tokio::sync::MutexGuard<'_, u64> {
        self.app_changes.lock().await
    }

    /// The aggregator's state, `None` when this process runs no aggregator.
    pub fn aggregator(&self) -> Option<Result<(), String>> {
        self.aggregator.read().ok().and_then(|s| s.clone())
    }
}

/// Shared by every handler (cheap to clone).
#[derive(Clone, Debug)]
pub struct ServerState {
    pub(crate) inner: Arc<Inner>,
    /// Accounts and login throttling; replaced by [`ServerState::with_auth`].
    pub(crate) auth: Arc<AuthState>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) bus: Option<Arc<dyn Bus>>,
    pub(crate) settings: IngestSettings,
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) readiness: Arc<Readiness>,
    apps: RwLock<HashMap<String, (Arc<App>, Instant)>>,
    limiter: Mutex<HashMap<i64, Bucket>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("store", &self.store)
            .field("bus", &self.bus)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A token bucket: `rate` tokens per second, holding at most `rate`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ServerState {
    /// State for a server over `store`. `bus` is `None` for a process that does not
    /// ingest (ingest routes then answer 503). `metrics` renders `/metrics`.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Option<Arc<dyn Bus>>,
        settings: IngestSettings,
        metrics: Option<PrometheusHandle>,
        readiness: Arc<Readiness>,
    ) -> Self {
        ServerState {
            inner: Arc::new(Inner {
                store,
                bus,
                settings,
                metrics,
                readiness,
                apps: RwLock::new(HashMap::new()),
                limiter: Mutex::new(HashMap::new()),
            }),
            auth: Arc::new(AuthState::new(AuthSettings::default(), None)),
        }
    }

    /// Drops a cached app (after its key was rotated, its settings changed, or it was
    /// deleted), so that ingest sees the change at once.
    pub(crate) fn forget_app_key(&self, key: &str) {
        if let Ok(mut apps) = self.inner.apps.write() {
            apps.remove(key);
        }
    }

    /// The app with this key, from the cache or the store.
    pub(crate) async fn app_by_key(&self, key: &str) -> Result<Option<Arc<App>>, StoreError> {
        if let Ok(apps) = self.inner.apps.read()
            && let Some((app, at)) = apps.get(key)
            && at.elapsed() < APP_CACHE_TTL
        {
            return Ok(Some(app.clone()));
        }
        let Some(app) = self.inner.store.app_by_key(key).await? else {
            if let Ok(mut apps) = self.inner.apps.write() {
                apps.remove(key);
            }
            return Ok(None);
        };
        let app = Arc::new(app);
        if let Ok(mut apps) = self.inner.apps.write() {
            apps.insert(key.to_owned(), (app.clone(), Instant::now()));
        }
        Ok(Some(app))
    }

    /// Takes one request from the app's rate-limit bucket; `false` means over the limit.
    /// The app's own limit (`app_rate`) wins over the server-wide one.
    pub(crate) fn admit(&self, app_id: i64, app_rate: Option<u32>) -> bool {
        let Some(rate) = app_rate.or(self.inner.settings.rate_limit_per_sec) else {
            return true;
        };
        let rate = f64::from(rate.max(1));
        let now = Instant::now();
        let Ok(mut buckets) = self.inner.limiter.lock() else {
            return true;
        };
        let bucket = buckets.entry(app_id).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
