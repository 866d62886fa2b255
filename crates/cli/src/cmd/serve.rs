//! `sundial serve`: the analytics platform — HTTP ingest, the bus, the aggregator and
//! the store — on embedded defaults with zero configuration, or scale-out by role.
//!
//! Start-up order: open the store (migrations), open the bus, start the aggregator
//! (roles `all` and `aggregate`), then listen. Shutdown (SIGINT / SIGTERM): stop
//! accepting connections, let in-flight requests finish (their events are durable
//! before they are answered), stop the aggregator between batches, close the bus.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use jiff::SignedDuration;
use metrics_exporter_prometheus::PrometheusBuilder;
use sundial_analytics::aggregate::AggregateStore;
use sundial_analytics::bus::Bus;
use sundial_analytics::ingest::Limits;
use sundial_analytics::{AccountStore, Store};
use sundial_bus::{LocalBus, LocalLog, NatsBus, NatsOptions, Options};
use sundial_scheduler::coordinator::Coordinator;
use sundial_server::{AggregatorSettings, IngestSettings, Readiness, ServerState};
use tokio_util::sync::CancellationToken;

use crate::cmd::{StoreArgs, open_store, runtime};
use crate::config::{Config, Role};

/// Arguments of `sundial serve`.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on (overrides `serve.listen`; default 127.0.0.1:8080).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) listen: Option<String>,
    /// Event bus: `local` or `nats://HOST:PORT` (overrides `serve.bus`).
    #[arg(long, value_name = "BUS")]
    pub(crate) bus: Option<String>,
    /// Roles to run: all, ingest or aggregate (overrides `serve.role`).
    #[arg(long, value_enum)]
    pub(crate) role: Option<Role>,
    /// PEM certificate chain: serve HTTPS (with --tls-key; overrides `serve.tls_cert`).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert (overrides `serve.tls_key`).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// Join an etcd cluster so that the scheduled analytics jobs (the close-out) run
    /// on one node of the cluster per fire: etcd://HOST:PORT[,HOST:PORT…][/PREFIX]
    /// (needs a build with the `etcd` feature).
    #[arg(long, value_name = "URL")]
    pub(crate) cluster: Option<String>,
    /// This node's id in the cluster (default: the host name and listen address).
    #[arg(long, value_name = "ID", requires = "cluster")]
    pub(crate) node_id: Option<String>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

/// Runs `sundial serve` until SIGINT or SIGTERM.
pub(crate) fn run(
    config: &Config,
    cluster: Option<&str>,
    node_id: Option<&str>,
) -> anyhow::Result<ExitCode> {
    #[cfg(not(feature = "etcd"))]
    if cluster.is_some() {
        let _ = node_id;
        return Ok(crate::cmd::cluster::unsupported());
    }
    #[cfg(feature = "etcd")]
    let cluster = match cluster.map(crate::cmd::cluster::parse_url).transpose() {
        Ok(url) => url,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let metrics = PrometheusBuilder::new()
        .set_buckets(&[
            0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ])
        .context("cannot configure metrics")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    runtime()?.block_on(async {
        let store = Arc::new(open_store(config).await?);
        let serve = &config.serve;
        let bus: Arc<dyn Bus> = if serve.bus == "local" {
            let dir = config.data_dir.join("bus");
            let log = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || LocalLog::open(&dir, Options::default())
            })
            .await
            .context("bus task failed")?
            .with_context(|| format!("cannot open the local event log in {}", dir.display()))?;
            let report = log.recovery();
            tracing::info!(dir = %dir.display(), recovery = ?report, "local event log open");
            Arc::new(LocalBus::new(log))
        } else {
            let (url, options) = nats_options(&serve.bus)?;
            Arc::new(
                NatsBus::connect(url, options)
                    .await
                    .context("cannot open the NATS bus")?,
            )
        };
        let shutdown = CancellationToken::new();
        let readiness = Arc::new(Readiness::default());
        let ingest = &config.ingest;
        let settings = IngestSettings {
            max_body_bytes: usize::try_from(ingest.max_body_bytes).unwrap_or(usize::MAX),
            limits: Limits {
                max_events: ingest.max_events as usize,
                max_age: SignedDuration::from_hours(24 * i64::from(ingest.max_age_days)),
                ..Limits::default()
            },
            rate_limit_per_sec: (ingest.rate_limit_per_sec > 0)
                .then_some(ingest.rate_limit_per_sec),
        };

        let aggregator = match serve.role {
            Role::All | Role::Aggregate => {
                let agg_store: Arc<dyn AggregateStore> = store.clone();
                Some(tokio::spawn(sundial_server::run_aggregator(
                    bus.clone(),
                    agg_store,
                    AggregatorSettings::default(),
                    readiness.clone(),
                    shutdown.clone(),
                )))
            }
            Role::Ingest => None,
        };
        // The daily close-out runs where the aggregator does; in a cluster, each
        // scheduled pass on one node.
        #[cfg(feature = "etcd")]
        let cluster = match (&cluster, serve.role) {
            (Some(url), Role::All | Role::Aggregate) => {
                let node = node_id.map_or_else(
                    || format!("{}-{}", host_name(), serve.listen.replace([':', '.'], "-")),
                    str::to_owned,
                );
                let joined = sundial_cluster_etcd::Cluster::join(
                    sundial_cluster_etcd::ClusterConfig::new(url.clone(), node),
                )
                .await
                .context("cannot join the cluster")?;
                Some(joined)
            }
            _ => None,
        };
        let maintenance = match serve.role {
            Role::All | Role::Aggregate => {
                #[cfg(feature = "etcd")]
                let coordination = cluster.as_ref().map(|c| {
                    let coordinator: Arc<dyn Coordinator> = c.coordinator();
                    (c.health().node_id, coordinator)
                });
                #[cfg(not(feature = "etcd"))]
                let coordination: Option<(String, Arc<dyn Coordinator>)> = None;
                let settings = config.metrics.settings();
                let scheduler = match coordination {
                    Some((node, coordinator)) => {
                        sundial_server::start_maintenance_with(
                            store.clone(),
                            settings,
                            &node,
                            coordinator,
                        )
                        .await
                    }
                    None => sundial_server::start_maintenance(store.clone(), settings).await,
                }
                .context("cannot start the close-out job")?;
                #[cfg(feature = "etcd")]
                if let Some(cluster) = &cluster {
                    cluster.attach(&scheduler);
                }
                Some(scheduler)
            }
            Role::Ingest => None,
        };
        let ingest_bus = match serve.role {
            Role::All | Role::Ingest => Some(bus.clone()),
            Role::Aggregate => None,
        };
        let state_store: Arc<dyn Store> = store.clone();
        let accounts: Arc<dyn AccountStore> = store.clone();
        first_run_hint(accounts.as_ref(), config).await?;
        let state = ServerState::new(state_store, ingest_bus, settings, Some(metrics), readiness)
            .with_auth(config.auth.settings(), accounts);
        let app = sundial_server::router(state);

        let addr: SocketAddr = serve
            .listen
            .parse()
            .with_context(|| format!("invalid listen address {}", serve.listen))?;
        let tls = if serve.tls_cert.as_os_str().is_empty() {
            None
        } else {
            Some(tls_config(&serve.tls_cert, &serve.tls_key).await?)
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr().unwrap_or(addr);
        // Handle SIGTERM from before the listening line on: a supervisor (or a test)
        // that stops the server right after it announced itself gets a clean shutdown.
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tracing::info!(
            address = %local,
            role = ?serve.role,
            bus = bus.kind(),
            store = store.backend_name(),
            data_dir = %config.data_dir.display(),
            tls = tls.is_some(),
            "sundial serve is listening"
        );
        // A line on stdout for scripts and tests that start on port 0.
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("listening on {scheme}://{local}");

        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal(term).await;
            tracing::info!("shutting down");
            signal.cancel();
        });
        // The client address feeds per-address login throttling and the audit log.
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        match tls {
            None => axum::serve(listener, service)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await
                .context("HTTP server failed")?,
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let stop = shutdown.clone();
                let on_stop = handle.clone();
                tokio::spawn(async move {
                    stop.cancelled().await;
                    on_stop.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
                });
                let listener = listener
                    .into_std()
                    .context("cannot hand the listener to the TLS server")?;
                axum_server::from_tcp_rustls(listener, tls)
                    .handle(handle)
                    .serve(service)
                    .await
                    .context("HTTPS server failed")?;
            }
        }
        shutdown.cancel();
        if let Some(task) = aggregator {
            let _ = task.await;
        }
        if let Some(scheduler) = maintenance {
            scheduler.shutdown(sundial_server::MAINTENANCE_GRACE).await;
        }
        #[cfg(feature = "etcd")]
        if let Some(cluster) = cluster {
            cluster.leave().await;
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Loads the certificate chain and key for HTTPS (rustls with the ring provider).
async fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    // Installing fails only if a provider is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "cannot load the TLS certificate {} and key {}",
                cert.display(),
                key.display()
            )
        })
}

/// First run: when no admin account exists, says in the log exactly how to create one
/// (there is never a default password).
async fn first_run_hint(accounts: &dyn AccountStore, config: &Config) -> anyhow::Result<()> {
    let admins = accounts
        .count_admins()
        .await
        .context("cannot count admin accounts")?;
    if admins == 0 {
        let store = if config.store.url.is_empty() {
            format!("--data-dir {}", config.data_dir.display())
        } else {
            "--store URL".to_owned()
        };
        tracing::warn!(
            "no admin account exists: the admin API and the dashboard are locked until \
             one is created; run `sundial account create --username admin --role admin \
             {store}` (it asks for a password)"
        );
    }
    Ok(())
}

/// Splits `nats://HOST:PORT[?stream=NAME]` into the server URL and the stream settings.
/// A named stream `NAME` uses the subject `sundial.events.NAME`, so that several
/// deployments (or tests) can share one NATS server.
fn nats_options(bus: &str) -> anyhow::Result<(&str, NatsOptions)> {
    let (url, query) = bus.split_once('?').unwrap_or((bus, ""));
    let mut options = NatsOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("stream", name))
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                options.stream = name.to_owned();
                options.subject = format!("sundial.events.{name}");
            }
            _ => anyhow::bail!(
                "invalid bus URL `{bus}`: the only parameter is stream=NAME (letters, digits, \
                 `_`, `-`)"
            ),
        }
    }
    Ok((url, options))
}

async fn wait_for_signal(term: Option<tokio::signal::unix::Signal>) {
    let Some(mut term) = term else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The machine's host name (for default cluster node ids).
#[cfg(feature = "etcd")]
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "serve".to_owned())
}
