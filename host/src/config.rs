//! What one run needs to know. Built by the binaries from flags and environment.

use std::path::PathBuf;

use crate::capability::{Backends, CapabilitySpecs};
use crate::plugin::SandboxLimits;
use crate::source::SourceSpec;
use crate::window::WindowPlan;

/// Why the environment does not describe a database.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set (needed with DATAPLATTFORM_AURORA_HOST)")]
    Missing(&'static str),
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// The database URL from the old job's variables (`DATAPLATTFORM_AURORA_HOST`, `_PORT`,
/// `_DB_NAME`, `_USER`, `_PASSWORD`), plus `DATAPLATTFORM_AURORA_ENGINE` (`mysql`, the default,
/// or `postgres`), `DATAPLATTFORM_AURORA_TLS` (`disable`, `prefer`, `require`, `verify-ca`,
/// `verify-full`) and `DATAPLATTFORM_AURORA_TLS_CA` (a CA bundle file). `None` when no host is
/// set.
pub fn database_url_from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let Some(host) = var("DATAPLATTFORM_AURORA_HOST").filter(|host| !host.is_empty()) else {
        return Ok(None);
    };
    let (engine, port) = database_engine_and_port(&var)?;
    let (scheme, tls_key, ca_key) = match engine {
        DatabaseEngine::Mysql => ("mysql", "ssl-mode", "ssl-ca"),
        DatabaseEngine::Postgres => ("postgres", "sslmode", "sslrootcert"),
    };
    let name = var("DATAPLATTFORM_AURORA_DB_NAME")
        .ok_or(ConfigError::Missing("DATAPLATTFORM_AURORA_DB_NAME"))?;
    let user = var("DATAPLATTFORM_AURORA_USER")
        .ok_or(ConfigError::Missing("DATAPLATTFORM_AURORA_USER"))?;
    let password = var("DATAPLATTFORM_AURORA_PASSWORD").unwrap_or_default();
    let encode = |text: &str| utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
    let mut url = format!(
        "{scheme}://{}:{}@{host}:{port}/{}",
        encode(&user),
        encode(&password),
        encode(&name)
    );
    let mut parameters = Vec::new();
    if let Some(tls) = var("DATAPLATTFORM_AURORA_TLS") {
        let mode = match (scheme, tls.as_str()) {
            ("mysql", "disable") => "DISABLED",
            ("mysql", "prefer") => "PREFERRED",
            ("mysql", "require") => "REQUIRED",
            ("mysql", "verify-ca") => "VERIFY_CA",
            ("mysql", "verify-full") => "VERIFY_IDENTITY",
            (
                "postgres",
                mode @ ("disable" | "prefer" | "require" | "verify-ca" | "verify-full"),
            ) => mode,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "DATAPLATTFORM_AURORA_TLS",
                    value: tls,
                    reason: "expected disable, prefer, require, verify-ca or verify-full",
                });
            }
        };
        parameters.push(format!("{tls_key}={mode}"));
    }
    if let Some(ca) = var("DATAPLATTFORM_AURORA_TLS_CA") {
        parameters.push(format!("{ca_key}={}", encode(&ca)));
    }
    if !parameters.is_empty() {
        url = format!("{url}?{}", parameters.join("&"));
    }
    Ok(Some(url))
}

/// The engine `DATAPLATTFORM_AURORA_ENGINE` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatabaseEngine {
    Mysql,
    Postgres,
}

/// `DATAPLATTFORM_AURORA_ENGINE` (`mysql`, the default, or `postgres`) and
/// `DATAPLATTFORM_AURORA_PORT` (by default the engine's), read once for the URL and for an IAM
/// token alike.
pub(crate) fn database_engine_and_port(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<(DatabaseEngine, u16), ConfigError> {
    let engine = var("DATAPLATTFORM_AURORA_ENGINE").unwrap_or_else(|| "mysql".into());
    let engine = match engine.as_str() {
        "mysql" => DatabaseEngine::Mysql,
        "postgres" | "postgresql" => DatabaseEngine::Postgres,
        _ => {
            return Err(ConfigError::Invalid {
                name: "DATAPLATTFORM_AURORA_ENGINE",
                value: engine,
                reason: "expected mysql or postgres",
            });
        }
    };
    let default_port = match engine {
        DatabaseEngine::Mysql => 3306,
        DatabaseEngine::Postgres => 5432,
    };
    let Some(port) = var("DATAPLATTFORM_AURORA_PORT") else {
        return Ok((engine, default_port));
    };
    let port = port.parse::<u16>().map_err(|_| ConfigError::Invalid {
        name: "DATAPLATTFORM_AURORA_PORT",
        value: port,
        reason: "expected a port number",
    })?;
    Ok((engine, port))
}

/// What the environment says: the old job's variables and this job's own, read in one place
/// for both binaries. Flags of the local runner beat it.
#[derive(Clone, Default)]
pub struct Environment {
    /// `DATAPLATTFORM_AURORA_FETCH_API_URL`.
    pub fetch_api_url: Option<String>,
    /// `DATAPLATTFORM_AURORA_FETCH_KEY`, or the secret `DATAPLATTFORM_AURORA_FETCH_KEY_SECRET`.
    pub fetch_key: Option<crate::credentials::ApiCredential>,
    /// From `DATAPLATTFORM_AURORA_HOST` and its siblings ([`database_url_from_env`]).
    pub database_url: Option<String>,
    /// `DATAPLATTFORM_AURORA_SLACK_TOKEN` (or the secret `…_SLACK_TOKEN_SECRET`),
    /// `DATAPLATTFORM_AURORA_SLACK_API_URL` and `DATAPLATTFORM_EVENT_CODE_TABLE`.
    pub capabilities: CapabilitySpecs,
    /// `BATCH_JOB_AURORA_PLUGINS`.
    pub plugins_dir: Option<PathBuf>,
    /// `BATCH_JOB_AURORA_COMPILE_CACHE`: the local runner's compile cache, or `off`.
    pub compile_cache: Option<String>,
    /// `BATCH_JOB_AURORA_CATCH_UP=true`.
    pub catch_up: bool,
    /// This user's cache folder for the job ([`cache_dir`]).
    pub cache_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Environment {
    /// Never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field(
                "fetch_api_url",
                &self.fetch_api_url.as_deref().map(crate::http::redact),
            )
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::http::redact),
            )
            .field("plugins_dir", &self.plugins_dir)
            .field("catch_up", &self.catch_up)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

/// Reads the environment through `var` (`|name| std::env::var(name).ok()` in the binaries; a
/// map in tests). Empty values count as unset.
pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Environment, ConfigError> {
    use crate::credentials::ApiCredential;
    let var = |name: &str| var(name).filter(|value| !value.is_empty());
    Ok(Environment {
        fetch_api_url: var("DATAPLATTFORM_AURORA_FETCH_API_URL"),
        fetch_key: ApiCredential::from_env(
            var,
            "DATAPLATTFORM_AURORA_FETCH_KEY",
            "DATAPLATTFORM_AURORA_FETCH_KEY_SECRET",
        ),
        database_url: database_url_from_env(var)?,
        capabilities: CapabilitySpecs {
            slack_channels: None,
            slack_token: ApiCredential::from_env(
                var,
                "DATAPLATTFORM_AURORA_SLACK_TOKEN",
                "DATAPLATTFORM_AURORA_SLACK_TOKEN_SECRET",
            ),
            slack_api_url: var("DATAPLATTFORM_AURORA_SLACK_API_URL"),
            event_codes: var("DATAPLATTFORM_EVENT_CODE_TABLE"),
        },
        plugins_dir: var("BATCH_JOB_AURORA_PLUGINS").map(PathBuf::from),
        compile_cache: var("BATCH_JOB_AURORA_COMPILE_CACHE"),
        catch_up: var("BATCH_JOB_AURORA_CATCH_UP").is_some_and(|value| value == "true"),
        cache_dir: cache_dir(var),
    })
}

/// The job's folder in this user's cache: `$XDG_CACHE_HOME/batch-job-aurora`, else
/// `~/.cache/batch-job-aurora`; `None` without a home. The compile cache and the plugin kit's
/// tools live there.
pub fn cache_dir(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let var = |name: &str| var(name).filter(|value| !value.is_empty());
    var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|folder| folder.join("batch-job-aurora"))
}

/// Documents per plugin call, in a run and in the kit's check. About 100 amortises the call;
/// more buys nothing measurable.
pub const DOCUMENTS_PER_CALL: usize = 100;

/// Everything one run needs, as [`crate::resolve::resolve`] makes it: the plugins a
/// [`crate::Job`] is prepared with, and what one run of that job does. Runtime hooks (live
/// counters, the test pause, the interrupt) are handed to the run beside it ([`crate::hooks::RunHooks`]).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub plugins: PluginSetup,
    pub run: RunSettings,
}

/// What a job is prepared with, once: the plugins and the sandbox they run in.
#[derive(Debug, Clone)]
pub struct PluginSetup {
    /// The folder of plugin components.
    pub dir: PathBuf,
    /// Where the native code compiled from `.wasm` plugins is kept between runs (`None`:
    /// compiled at every start). A `.cwasm` in the plugin folder needs no cache.
    pub compile_cache: Option<PathBuf>,
    pub limits: SandboxLimits,
}

/// What one run of a prepared job does: [`crate::Job::run`] takes exactly this.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub source: SourceSpec,
    /// `sqlite://PATH`.
    pub database_url: String,
    /// The types to run; `None` runs every installed plugin's type.
    pub types: Option<Vec<String>>,
    /// Which window each type reads; documents outside it are skipped. `All` with the fetch
    /// API means its default, the last 70 minutes before the run starts.
    pub windows: WindowPlan,
    /// Where the plugins' lookups go (plain data; the run sets up the clients).
    pub capabilities: CapabilitySpecs,
    /// Clients set up already, instead of `capabilities` (tests and embedders with backends
    /// of their own).
    pub backends: Option<Backends>,
    /// Documents per plugin call ([`DOCUMENTS_PER_CALL`]).
    pub documents_per_call: usize,
    /// Instances of each type's plugin working at once, each on whole batches.
    pub plugin_instances: usize,
    /// Rows per database write (one transaction).
    pub rows_per_write: usize,
    /// The bytes of documents one type may have in flight, from the source's read to the
    /// database's write. Bounds memory whatever the size of the documents.
    pub lane_bytes: usize,
    /// How the fetch API is used.
    pub fetch: FetchOptions,
    /// When the run must have answered (a Lambda's invocation deadline less a margin): no new
    /// work starts after it, what was stored stays stored, and unfinished types fail with the
    /// reason. `None`: no deadline.
    pub deadline: Option<std::time::Instant>,
    /// How often a catch-up window whose body cannot be read is tried before it is given up
    /// (closed, with its unread bytes kept) so that catch-up moves on.
    pub max_window_attempts: u64,
}

/// How the fetch API is used.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub timeouts: crate::source::FetchTimeouts,
    /// How many types download at once.
    pub concurrency: usize,
    pub backoff: backon::ExponentialBuilder,
    /// The longest single wait between tries, a `Retry-After` included.
    pub max_wait: std::time::Duration,
    /// The most time one request may take, its tries and waits together.
    pub retry_budget: std::time::Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeouts: Default::default(),
            concurrency: 2,
            backoff: crate::http::backoff(),
            max_wait: crate::http::MAX_WAIT,
            retry_budget: crate::http::RETRY_BUDGET,
        }
    }
}

impl RunConfig {
    /// A config with the defaults for everything but where to read, write and load from.
    pub fn new(source: SourceSpec, database_url: impl Into<String>, plugins_dir: PathBuf) -> Self {
        RunConfig {
            plugins: PluginSetup {
                dir: plugins_dir,
                compile_cache: None,
                limits: SandboxLimits::default(),
            },
            run: RunSettings {
                source,
                database_url: database_url.into(),
                types: None,
                windows: WindowPlan::All,
                capabilities: CapabilitySpecs::default(),
                backends: None,
                documents_per_call: DOCUMENTS_PER_CALL,
                plugin_instances: 1,
                rows_per_write: 2_000,
                lane_bytes: 64 << 20,
                fetch: FetchOptions::default(),
                deadline: None,
                max_window_attempts: 3,
            },
        }
    }
}

/// An environment made of `pairs`, for the `var` argument of the `from_env` readers.
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_variables_make_a_url_with_secrets_encoded() {
        let env = test_env;
        assert_eq!(database_url_from_env(env(&[])).unwrap(), None);
        let url = database_url_from_env(env(&[
            ("DATAPLATTFORM_AURORA_HOST", "db.example"),
            ("DATAPLATTFORM_AURORA_DB_NAME", "raw"),
            ("DATAPLATTFORM_AURORA_USER", "job"),
            ("DATAPLATTFORM_AURORA_PASSWORD", "p@ss:w/rd"),
            ("DATAPLATTFORM_AURORA_TLS", "verify-full"),
        ]))
        .unwrap();
        assert_eq!(
            url.as_deref(),
            Some("mysql://job:p%40ss%3Aw%2Frd@db.example:3306/raw?ssl-mode=VERIFY_IDENTITY")
        );
        let url = database_url_from_env(env(&[
            ("DATAPLATTFORM_AURORA_HOST", "h"),
            ("DATAPLATTFORM_AURORA_ENGINE", "postgres"),
            ("DATAPLATTFORM_AURORA_DB_NAME", "d"),
            ("DATAPLATTFORM_AURORA_USER", "u"),
        ]))
        .unwrap();
        assert_eq!(url.as_deref(), Some("postgres://u:@h:5432/d"));
        assert!(database_url_from_env(env(&[("DATAPLATTFORM_AURORA_HOST", "h")])).is_err());
    }

    #[test]
    fn the_environment_is_read_in_one_place_and_empty_means_unset() {
        let vars = [
            (
                "DATAPLATTFORM_AURORA_FETCH_API_URL",
                "https://api/get_docs/",
            ),
            ("DATAPLATTFORM_AURORA_FETCH_KEY", "k3y-value"),
            ("DATAPLATTFORM_AURORA_HOST", "db"),
            ("DATAPLATTFORM_AURORA_DB_NAME", "raw"),
            ("DATAPLATTFORM_AURORA_USER", "job"),
            ("DATAPLATTFORM_AURORA_SLACK_TOKEN", ""),
            ("DATAPLATTFORM_EVENT_CODE_TABLE", "events"),
            ("BATCH_JOB_AURORA_CATCH_UP", "true"),
        ];
        let environment = from_env(test_env(&vars)).unwrap();
        assert_eq!(environment.fetch_key, Some("k3y-value".into()));
        assert_eq!(
            environment.database_url.as_deref(),
            Some("mysql://job:@db:3306/raw")
        );
        assert_eq!(environment.capabilities.slack_token, None);
        assert_eq!(
            environment.capabilities.event_codes.as_deref(),
            Some("events")
        );
        assert!(environment.catch_up);
        assert!(!format!("{environment:?}").contains("k3y-value"));
    }
}
