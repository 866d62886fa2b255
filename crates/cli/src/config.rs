//! Configuration of the `sundial` binary.
//!
//! One TOML file (`--config FILE` or `SUNDIAL_CONFIG`), overridden by `SUNDIAL_*`
//! environment variables, overridden by command-line flags — in that order. Every
//! layer is strict: an unknown key, a wrong type or a bad value is an error that names
//! the key and where it came from (the file with line and column, or the environment
//! variable, or the flag). Nothing is silently ignored, so a typo never turns into a
//! default.
//!
//! Environment variables map onto keys by their section: `SUNDIAL_LOG_LEVEL` and
//! `SUNDIAL_LOG__LEVEL` both set `log.level` (a double underscore always separates
//! levels; a single one after a known section name does too). The variables the
//! scheduler exports to the jobs it runs (`SUNDIAL_JOB_ID`, …) and `SUNDIAL_CONFIG`
//! itself are not configuration and are skipped.
//!
//! Sections are added by the subsystems that use them; each section has defaults, so
//! an empty file (or none) is a valid configuration.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Names of the top-level sections, used to map `SUNDIAL_<SECTION>_<KEY>` variables.
const SECTIONS: &[&str] = &["log", "store", "serve", "ingest", "auth", "metrics"];

/// The name figment gives the command-line layer, used in error messages.
const FLAGS_SOURCE: &str = "command-line flags";

/// `SUNDIAL_*` variables that are not configuration keys.
const RESERVED_ENV: &[&str] = &[
    "config",
    "job_id",
    "run_id",
    "fire_time",
    "attempt",
    "node_id",
    "fencing_token",
];

/// The whole configuration. Each field is a section with its own defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Where embedded data lives: the SQLite database and the local event log.
    pub(crate) data_dir: PathBuf,
    /// Logging (`[log]`).
    pub(crate) log: LogConfig,
    /// The analytics store (`[store]`).
    pub(crate) store: StoreConfig,
    /// The analytics server (`[serve]`).
    pub(crate) serve: ServeConfig,
    /// Ingest limits (`[ingest]`).
    pub(crate) ingest: IngestConfig,
    /// Accounts, sessions and login throttling (`[auth]`).
    pub(crate) auth: AuthConfig,
    /// The metrics engine's maintenance (`[metrics]`).
    pub(crate) metrics: MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            log: LogConfig::default(),
            store: StoreConfig::default(),
            serve: ServeConfig::default(),
            ingest: IngestConfig::default(),
            auth: AuthConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// The `[metrics]` section: the daily close-out and the raw-data retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsConfig {
    /// When the close-out runs (cron, UTC); hourly closes every zone's day out within
    /// the hour after its midnight.
    pub(crate) close_out_cron: String,
    /// Days of raw events kept (session-length and launches-per-device distributions
    /// need them); 0 keeps them forever.
    pub(crate) raw_retention_days: u32,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        let d = sundial_server::MaintenanceSettings::default();
        Self {
            close_out_cron: d.close_out_cron,
            raw_retention_days: d.raw_retention_days.unwrap_or(0),
        }
    }
}

impl MetricsConfig {
    /// The server's settings from this section.
    pub(crate) fn settings(&self) -> sundial_server::MaintenanceSettings {
        sundial_server::MaintenanceSettings {
            close_out_cron: self.close_out_cron.clone(),
            raw_retention_days: (self.raw_retention_days > 0).then_some(self.raw_retention_days),
        }
    }
}

/// The `[auth]` section: sessions, cookies and login throttling of `sundial serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuthConfig {
    /// How long a login session lives, in seconds.
    pub(crate) session_ttl_secs: u64,
    /// Whether session cookies carry `Secure` (set it when clients use HTTPS).
    pub(crate) cookie_secure: bool,
    /// Failed logins per username before lock-outs start.
    pub(crate) login_free_failures_per_user: u32,
    /// Failed logins per client address before lock-outs start.
    pub(crate) login_free_failures_per_ip: u32,
    /// The first lock-out in seconds; each further failure doubles it.
    pub(crate) login_base_delay_secs: u64,
    /// The longest lock-out in seconds.
    pub(crate) login_max_delay_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let d = sundial_server::AuthSettings::default();
        Self {
            session_ttl_secs: d.session_ttl.as_secs(),
            cookie_secure: d.cookie_secure,
            login_free_failures_per_user: d.throttle.free_failures_per_user,
            login_free_failures_per_ip: d.throttle.free_failures_per_ip,
            login_base_delay_secs: d.throttle.base_delay.as_secs(),
            login_max_delay_secs: d.throttle.max_delay.as_secs(),
        }
    }
}

impl AuthConfig {
    /// The server's settings from this section.
    pub(crate) fn settings(&self) -> sundial_server::AuthSettings {
        use std::time::Duration;
        sundial_server::AuthSettings {
            session_ttl: Duration::from_secs(self.session_ttl_secs),
            cookie_secure: self.cookie_secure,
            throttle: sundial_server::ThrottleSettings {
                free_failures_per_user: self.login_free_failures_per_user,
                free_failures_per_ip: self.login_free_failures_per_ip,
                base_delay: Duration::from_secs(self.login_base_delay_secs),
                max_delay: Duration::from_secs(self.login_max_delay_secs),
                ..sundial_server::ThrottleSettings::default()
            },
        }
    }
}

/// The `[serve]` section: what `sundial serve` runs and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServeConfig {
    /// Address the HTTP server listens on.
    pub(crate) listen: String,
    /// The event bus: `local` (a segment log in `data_dir/bus`) or `nats://HOST:PORT`.
    pub(crate) bus: String,
    /// Which roles this process runs.
    pub(crate) role: Role,
    /// PEM certificate chain for HTTPS; empty serves plain HTTP. Needs `tls_key`.
    pub(crate) tls_cert: PathBuf,
    /// PEM private key for HTTPS; empty serves plain HTTP. Needs `tls_cert`.
    pub(crate) tls_key: PathBuf,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            bus: "local".to_owned(),
            role: Role::All,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

/// The roles of a `sundial serve` process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Ingest and aggregation in one process (the default).
    All,
    /// HTTP ingest only: events go to the bus.
    Ingest,
    /// Aggregation only: bus to store (HTTP serves health and metrics).
    Aggregate,
}

/// The `[ingest]` section: limits of the ingest endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct IngestConfig {
    /// Largest request body in bytes, after decompression (413 beyond).
    pub(crate) max_body_bytes: u64,
    /// Most events in one request (413 beyond).
    pub(crate) max_events: u32,
    /// Events older than this many days are rejected.
    pub(crate) max_age_days: u32,
    /// Requests per second per app; 0 means unlimited (429 beyond).
    pub(crate) rate_limit_per_sec: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_events: 1_000,
            max_age_days: 30,
            rate_limit_per_sec: 0,
        }
    }
}

/// The default data directory, relative to the working directory.
pub(crate) const DEFAULT_DATA_DIR: &str = "./sundial-data";

/// The `[store]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StoreConfig {
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`; empty means SQLite in `data_dir`.
    pub(crate) url: String,
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogConfig {
    /// A `tracing` filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// directives such as `info,sundial_scheduler=debug`.
    pub(crate) level: String,
    /// `pretty` (human-readable, the default) or `json` (one object per line).
    pub(crate) format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Pretty,
        }
    }
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Values given as command-line flags; they override the file and the environment.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) log: Option<LogOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) store: Option<StoreOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) serve: Option<ServeOverrides>,
}

/// Flag overrides of the `[serve]` section.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ServeOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_key: Option<PathBuf>,
}

/// Flag overrides of the `[store]` section.
#[derive(Debug, Default, Serialize)]
pub(crate) struct StoreOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
}

/// Flag overrides of the `[log]` section.
#[derive(Debug, Default, Serialize)]
pub(crate) struct LogOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<LogFormat>,
}

/// A configuration that could not be loaded; the message names the key and its source.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file named by `--config` could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown key, wrong type,
    /// bad enum value); the message carries line, column and key.
    #[error("invalid config file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// An environment variable or a flag does not fit the schema.
    #[error("invalid configuration: {0}")]
    Layer(String),
    /// A value has the right type but is not acceptable.
    #[error("invalid value for `{key}` ({source_name}): {reason}")]
    Value {
        key: &'static str,
        source_name: String,
        reason: String,
    },
}

impl Config {
    /// Loads the configuration: defaults, then the file (if any), then `SUNDIAL_*`
    /// environment variables, then `overrides`.
    pub(crate) fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            check_file(path)?;
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(environment()).merge(Flags(overrides));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Layer(render_figment_error(e)))?;
        config.validate(&figment)?;
        Ok(config)
    }

    /// Checks values whose type alone does not make them valid.
    fn validate(&self, figment: &Figment) -> Result<(), ConfigError> {
        if let Err(reason) = check_log_filter(&self.log.level) {
            return Err(ConfigError::Value {
                key: "log.level",
                source_name: source_of(figment, "log.level"),
                reason: format!(
                    "`{}` is not a log filter ({reason}); use error, warn, info, debug, \
                     trace or directives such as `info,sundial_scheduler=debug`",
                    self.log.level
                ),
            });
        }
        let url = &self.store.url;
        if !(url.is_empty()
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Value {
                key: "store.url",
                source_name: source_of(figment, "store.url"),
                reason: "use sqlite://PATH or postgres://USER@HOST/DB (or leave it empty for \
                         SQLite in the data directory)"
                    .to_owned(),
            });
        }
        if self.serve.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Value {
                key: "serve.listen",
                source_name: source_of(figment, "serve.listen"),
                reason: format!(
                    "`{}` is not an address; use HOST:PORT such as 127.0.0.1:8080",
                    self.serve.listen
                ),
            });
        }
        if self.serve.tls_cert.as_os_str().is_empty() != self.serve.tls_key.as_os_str().is_empty() {
            let key = if self.serve.tls_cert.as_os_str().is_empty() {
                "serve.tls_cert"
            } else {
                "serve.tls_key"
            };
            return Err(ConfigError::Value {
                key,
                source_name: source_of(figment, key),
                reason: "HTTPS needs both serve.tls_cert and serve.tls_key (or neither)".to_owned(),
            });
        }
        let bus = &self.serve.bus;
        if !(bus == "local" || bus.starts_with("nats://")) {
            return Err(ConfigError::Value {
                key: "serve.bus",
                source_name: source_of(figment, "serve.bus"),
                reason: format!("`{bus}` is not a bus; use local or nats://HOST:PORT"),
            });
        }
        if let Err(e) = sundial_cron::Schedule::parse(&self.metrics.close_out_cron) {
            return Err(ConfigError::Value {
                key: "metrics.close_out_cron",
                source_name: source_of(figment, "metrics.close_out_cron"),
                reason: e.to_string(),
            });
        }
        if self.metrics.raw_retention_days != 0
            && self.metrics.raw_retention_days < self.ingest.max_age_days + 2
        {
            return Err(ConfigError::Value {
                key: "metrics.raw_retention_days",
                source_name: source_of(figment, "metrics.raw_retention_days"),
                reason: format!(
                    "must be 0 (keep forever) or at least ingest.max_age_days + 2 ({}): \
                     late events are accepted that far back",
                    self.ingest.max_age_days + 2
                ),
            });
        }
        let ingest = &self.ingest;
        let auth = &self.auth;
        let checks: [(&'static str, bool, &str); 6] = [
            (
                "auth.session_ttl_secs",
                (60..=400 * 86_400).contains(&auth.session_ttl_secs),
                "must be between 60 and 34560000 (400 days)",
            ),
            (
                "auth.login_base_delay_secs",
                (1..=3600).contains(&auth.login_base_delay_secs),
                "must be between 1 and 3600",
            ),
            (
                "auth.login_max_delay_secs",
                auth.login_max_delay_secs >= auth.login_base_delay_secs
                    && auth.login_max_delay_secs <= 86_400,
                "must be at least login_base_delay_secs and at most 86400",
            ),
            (
                "ingest.max_body_bytes",
                ingest.max_body_bytes >= 1024,
                "must be at least 1024",
            ),
            (
                "ingest.max_events",
                ingest.max_events >= 1,
                "must be at least 1",
            ),
            (
                "ingest.max_age_days",
                (1..=3650).contains(&ingest.max_age_days),
                "must be between 1 and 3650",
            ),
        ];
        for (key, ok, reason) in checks {
            if !ok {
                return Err(ConfigError::Value {
                    key,
                    source_name: source_of(figment, key),
                    reason: reason.to_owned(),
                });
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Value {
                key: "data_dir",
                source_name: source_of(figment, "data_dir"),
                reason: "must not be empty".to_owned(),
            });
        }
        Ok(())
    }

    /// The configuration as TOML, as `sundial config show` prints it.
    pub(crate) fn to_toml(&self) -> String {
        // Serialising plain structs of strings and enums cannot fail.
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Accepts what `EnvFilter` accepts, except a lone word that is not a level: `loud` or
/// `verbose` would parse as "everything from a module named loud", which is never what
/// was meant.
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    let trimmed = filter.trim();
    let lone_word = !trimmed.is_empty()
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if lone_word && !LEVELS.contains(&trimmed.to_ascii_lowercase().as_str()) {
        return Err(format!("`{trimmed}` is not a level"));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The flag layer: the overrides under a name that error messages can show.
struct Flags<'a>(&'a Overrides);

impl figment::Provider for Flags<'_> {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(FLAGS_SOURCE)
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::defaults(self.0).data()
    }
}

/// Reads and validates the file on its own, so that errors carry line and column.
fn check_file(path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str::<Config>(&text).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    Ok(())
}

/// The `SUNDIAL_*` environment provider with the key mapping described above.
fn environment() -> Env {
    Env::prefixed("SUNDIAL_")
        .filter(|key| !RESERVED_ENV.contains(&key.as_str().to_ascii_lowercase().as_str()))
        .map(|key| map_env_key(key.as_str()).into())
}

/// Maps a variable name (prefix stripped) to a dotted key: `LOG_LEVEL` → `log.level`,
/// `LOG__LEVEL` → `log.level`, anything else unchanged (and then rejected as unknown).
fn map_env_key(key: &str) -> String {
    let lower = key.to_ascii_lowercase();
    if lower.contains("__") {
        return lower.replace("__", ".");
    }
    for section in SECTIONS {
        if let Some(rest) = lower
            .strip_prefix(section)
            .and_then(|r| r.strip_prefix('_'))
        {
            return format!("{section}.{rest}");
        }
    }
    lower
}

/// Names where a key's value came from, for error messages.
fn source_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(meta) => match &meta.source {
            Some(source) => format!("from {} {source}", meta.name),
            None => format!("from {}", meta.name),
        },
        None => "default".to_owned(),
    }
}

/// Figment's errors name the key and the provider; render all of them, one per line.
fn render_figment_error(error: figment::Error) -> String {
    let mut out = String::new();
    for (i, e) in error.into_iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&FigmentErrorDisplay(&e).to_string());
    }
    out
}

struct FigmentErrorDisplay<'a>(&'a figment::Error);

impl fmt::Display for FigmentErrorDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(f, "{}", e.kind)?;
        if !e.path.is_empty() {
            write!(f, " for key `{}`", e.path.join("."))?;
        }
        if let Some(meta) = &e.metadata {
            if meta.name.contains("environment") && !e.path.is_empty() {
                let var = e.path.join("_").to_ascii_uppercase();
                return write!(f, " (environment variable SUNDIAL_{var})");
            }
            write!(f, " in {}", meta.name)?;
            if let Some(source) = &meta.source {
                write!(f, " ({source})")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "info,sundial_scheduler=debug",
            "sundial=trace",
        ] {
            assert!(check_log_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["loud", "verbose", "in fo==", "info,x=loud"] {
            assert!(check_log_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_keys_map_by_section() {
        assert_eq!(map_env_key("LOG_LEVEL"), "log.level");
        assert_eq!(map_env_key("LOG__LEVEL"), "log.level");
        assert_eq!(map_env_key("LOG_FORMAT"), "log.format");
        assert_eq!(map_env_key("BOGUS_KEY"), "bogus_key");
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::default();
        assert!(config.validate(&Figment::new()).is_ok());
        assert_eq!(config.log.format, LogFormat::Pretty);
    }

    #[test]
    fn rendered_config_round_trips() {
        let config = Config {
            data_dir: "/var/lib/sundial".into(),
            log: LogConfig {
                level: "debug".into(),
                format: LogFormat::Json,
            },
            store: StoreConfig {
                url: "postgres://sundial@db/sundial".into(),
            },
            serve: ServeConfig {
                listen: "0.0.0.0:9000".into(),
                bus: "nats://127.0.0.1:4222".into(),
                role: Role::Ingest,
                tls_cert: "/etc/sundial/cert.pem".into(),
                tls_key: "/etc/sundial/key.pem".into(),
            },
            ingest: IngestConfig {
                rate_limit_per_sec: 50,
                ..IngestConfig::default()
            },
            auth: AuthConfig {
                session_ttl_secs: 3600,
                cookie_secure: true,
                ..AuthConfig::default()
            },
            metrics: MetricsConfig {
                close_out_cron: "15 0 * * *".into(),
                raw_retention_days: 90,
            },
        };
        let back: Config = toml::from_str(&config.to_toml()).expect("round trip");
        assert_eq!(back, config);
    }
}
