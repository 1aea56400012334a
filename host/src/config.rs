//! What one run needs to know. Built by the binaries from flags and environment.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::capability::{Backends, CapabilitySpecs};
use crate::plugin::SandboxLimits;
use crate::source::SourceSpec;

/// An inclusive window of Unix seconds, as the fetch API has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

impl Window {
    pub fn contains(&self, timestamp: i64) -> bool {
        self.from <= timestamp && timestamp <= self.to
    }

    /// The window cut into consecutive parts of `span` seconds (the last one shorter), which
    /// touch without overlapping: each is read, and claimed done, on its own.
    pub fn parts(self, span: i64) -> impl Iterator<Item = Window> {
        let span = span.max(1);
        let mut next = Some(self.from);
        std::iter::from_fn(move || {
            let from = next?;
            let to = from.saturating_add(span - 1).min(self.to);
            next = (to < self.to).then(|| to + 1);
            Some(Window { from, to })
        })
    }

    /// The span of the parts a window is read in when the run has a deadline, so that a window
    /// too big for one run is finished part by part over several: an hour, or a 48th of the
    /// window when that is longer (a window of years must not become a million requests).
    pub fn part_span(&self) -> i64 {
        const PART_SECS: i64 = 3600;
        const MAX_PARTS: i64 = 48;
        let length = self.to.saturating_sub(self.from).saturating_add(1);
        PART_SECS.max(length / MAX_PARTS + 1)
    }
}

/// The contract's default window: the last 70 minutes, so an hourly schedule overlaps by 10.
pub const DEFAULT_SPAN_SECS: i64 = 70 * 60;

impl Window {
    /// The contract's default window ending at `now`.
    pub fn last_70_minutes(now: i64) -> Window {
        Window {
            from: now - DEFAULT_SPAN_SECS,
            to: now,
        }
    }
}

/// Gap-free windows: a missed or failed hourly run leaves no hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// The end of every window, Unix seconds; computed at each invocation.
    pub now: i64,
    /// How far a window reaches back before the watermark; never negative (a negative overlap
    /// would leave a hole that no later run reads).
    pub overlap_secs: i64,
    /// The longest window one run takes, so that it finishes in time; the next run takes the
    /// rest.
    pub max_span_secs: i64,
}

impl CatchUp {
    /// Defaults: 10 minutes of overlap, at most 6 hours per run.
    pub fn at(now: i64) -> Self {
        CatchUp {
            now,
            overlap_secs: 10 * 60,
            max_span_secs: 6 * 3600,
        }
    }

    /// The window of a type whose gap-free loading stands at `watermark` (the run log's one
    /// rule, [`crate::sink::watermark`]): from the watermark less the overlap; from the first
    /// scheduled window when nothing since it is loaded; the contract's last 70 minutes for a
    /// type never run on a scheduled window.
    pub fn window(&self, watermark: Option<crate::sink::Watermark>) -> Window {
        let from = match watermark {
            Some(crate::sink::Watermark {
                done_until: Some(done_until),
                ..
            }) => done_until - self.overlap_secs.max(0),
            Some(crate::sink::Watermark { start, .. }) => start,
            None => return Window::last_70_minutes(self.now),
        }
        .min(self.now);
        Window {
            from,
            to: self.now.min(from.saturating_add(self.max_span_secs.max(1))),
        }
    }
}

/// Which window each type of a run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPlan {
    /// Every document of the source (a file given by hand).
    All,
    /// A window given by hand. It never moves catch-up on.
    Fixed(Window),
    /// The contract's default: the last 70 minutes before `now` (the fetch API's default). A
    /// scheduled window: catch-up starts after it once it succeeded.
    Scheduled { now: i64 },
    /// Gap-free windows: each type starts where its last successful scheduled window ended.
    CatchUp(CatchUp),
}

impl WindowPlan {
    /// Whether the windows of this plan count for catch-up.
    pub fn is_scheduled(&self) -> bool {
        matches!(self, WindowPlan::Scheduled { .. } | WindowPlan::CatchUp(_))
    }

    /// The run's clock: the plan's now, else the system's (the run log's times and expiries
    /// follow it, so that a run given a time judges by that time).
    pub fn now(&self) -> i64 {
        match self {
            WindowPlan::Scheduled { now } | WindowPlan::CatchUp(CatchUp { now, .. }) => *now,
            WindowPlan::All | WindowPlan::Fixed(_) => unix_now(),
        }
    }
}

/// Tells a run to stop at once (a signal came): it logs its types as `interrupted` with the
/// reason and returns [`crate::error::RunError::Interrupted`]. Raising it before the run
/// starts, or twice, is fine.
#[derive(Debug, Clone)]
pub struct Interrupt(Arc<tokio::sync::watch::Sender<Option<String>>>);

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt(Arc::new(tokio::sync::watch::Sender::new(None)))
    }
}

impl Interrupt {
    /// Stops the run, for `reason` (`SIGTERM`, say).
    pub fn raise(&self, reason: &str) {
        self.0.send_if_modified(|raised| {
            let first = raised.is_none();
            if first {
                *raised = Some(reason.to_owned());
            }
            first
        });
    }

    /// Waits until it is raised; the reason.
    pub async fn raised(&self) -> String {
        let mut receiver = self.0.subscribe();
        let reason = match receiver.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The sender lives in `self`, so it is never dropped: never stop for that.
            None => std::future::pending().await,
        }
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_secs() as i64)
}

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
    let engine = var("DATAPLATTFORM_AURORA_ENGINE").unwrap_or_else(|| "mysql".into());
    let (scheme, default_port, tls_key, ca_key) = match engine.as_str() {
        "mysql" => ("mysql", "3306", "ssl-mode", "ssl-ca"),
        "postgres" | "postgresql" => ("postgres", "5432", "sslmode", "sslrootcert"),
        _ => {
            return Err(ConfigError::Invalid {
                name: "DATAPLATTFORM_AURORA_ENGINE",
                value: engine,
                reason: "expected mysql or postgres",
            });
        }
    };
    let port = var("DATAPLATTFORM_AURORA_PORT").unwrap_or_else(|| default_port.into());
    if port.parse::<u16>().is_err() {
        return Err(ConfigError::Invalid {
            name: "DATAPLATTFORM_AURORA_PORT",
            value: port,
            reason: "expected a port number",
        });
    }
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
    })
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub source: SourceSpec,
    /// `sqlite://PATH`.
    pub database_url: String,
    pub plugins_dir: PathBuf,
    /// Where the native code compiled from `.wasm` plugins is kept between runs (`None`:
    /// compiled at every start). A `.cwasm` in the plugin folder needs no cache.
    pub compile_cache: Option<PathBuf>,
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
    pub limits: SandboxLimits,
    /// Documents per plugin call. About 100 amortises the call; more buys nothing measurable.
    pub documents_per_call: usize,
    /// Instances of each type's plugin working at once, each on whole batches.
    pub plugin_instances: usize,
    /// Rows per database write (one transaction).
    pub rows_per_write: usize,
    /// The bytes of documents one type may have in flight, from the source's read to the
    /// database's write. Bounds memory whatever the size of the documents.
    pub lane_bytes: usize,
    /// Live counters, for a progress display.
    pub progress: Arc<Progress>,
    /// How the fetch API is used.
    pub fetch: FetchOptions,
    /// When the run must have answered (a Lambda's invocation deadline less a margin): no new
    /// work starts after it, what was stored stays stored, and unfinished types fail with the
    /// reason. `None`: no deadline.
    pub deadline: Option<std::time::Instant>,
    /// How often a catch-up window whose body cannot be read is tried before it is given up
    /// (closed, with its unread bytes kept) so that catch-up moves on.
    pub max_window_attempts: u64,
    /// A point where the run waits, for tests that need a crash or a lost connection at a
    /// known moment rather than a lucky one.
    pub pause: Option<Pause>,
    /// Stops the run at once, its types logged `interrupted` (the local runner's SIGTERM and
    /// SIGINT).
    pub interrupt: Option<Interrupt>,
}

/// After `after_writes` writes of rows have committed, the writer signals `reached` and waits
/// for `resume` before it writes anything else.
#[derive(Debug, Clone)]
pub struct Pause {
    pub after_writes: usize,
    pub reached: Arc<tokio::sync::Notify>,
    pub resume: Arc<tokio::sync::Notify>,
}

impl Pause {
    pub fn after_writes(after_writes: usize) -> Self {
        Pause {
            after_writes,
            reached: Arc::default(),
            resume: Arc::default(),
        }
    }
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
            source,
            database_url: database_url.into(),
            plugins_dir,
            compile_cache: None,
            types: None,
            windows: WindowPlan::All,
            capabilities: CapabilitySpecs::default(),
            backends: None,
            limits: SandboxLimits::default(),
            documents_per_call: 100,
            plugin_instances: 1,
            rows_per_write: 2_000,
            lane_bytes: 64 << 20,
            progress: Arc::default(),
            fetch: FetchOptions::default(),
            deadline: None,
            max_window_attempts: 3,
            pause: None,
            interrupt: None,
        }
    }
}

/// Counters updated while a run goes, read by progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    pub documents: AtomicU64,
    pub inserted: AtomicU64,
    pub duplicates: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    /// Nanoseconds spent in each stage, summed over its threads: reading and checking
    /// envelopes (the source's reads included), handing them to the lanes (waits for room
    /// included), plugin calls, and database writes.
    pub read_nanos: AtomicU64,
    pub handoff_nanos: AtomicU64,
    pub plugin_nanos: AtomicU64,
    pub write_nanos: AtomicU64,
}

impl Progress {
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds the time since `since` to a stage's counter.
    pub fn add_elapsed(counter: &AtomicU64, since: std::time::Instant) {
        Self::add_nanos(counter, since.elapsed());
    }

    pub fn add_nanos(counter: &AtomicU64, elapsed: std::time::Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(nanos, Ordering::Relaxed);
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

    #[test]
    fn catch_up_starts_at_the_watermark_minus_the_overlap_and_is_bounded() {
        use crate::sink::Watermark;
        let catch_up = CatchUp::at(100_000);
        let window = |from, to| Window { from, to };
        let done = |start, until| {
            Some(Watermark {
                start,
                done_until: Some(until),
            })
        };
        assert_eq!(catch_up.window(None), window(100_000 - 4200, 100_000));
        assert_eq!(catch_up.window(done(1, 90_000)), window(89_400, 100_000));
        assert_eq!(catch_up.window(done(1, 1_000)), window(400, 400 + 6 * 3600));
        // Nothing loaded since the first scheduled window: start where it did.
        let nothing = Some(Watermark {
            start: 95_000,
            done_until: None,
        });
        assert_eq!(catch_up.window(nothing), window(95_000, 100_000));
        // A negative overlap (refused by the binaries) never opens a hole.
        let negative = CatchUp {
            overlap_secs: -600,
            ..catch_up
        };
        assert_eq!(negative.window(done(1, 90_000)), window(90_000, 100_000));
    }

    #[test]
    fn a_window_is_cut_into_touching_parts() {
        let window = Window { from: 0, to: 9_000 };
        let parts: Vec<_> = window.parts(3_600).collect();
        assert_eq!(
            parts,
            [
                Window { from: 0, to: 3_599 },
                Window {
                    from: 3_600,
                    to: 7_199
                },
                Window {
                    from: 7_200,
                    to: 9_000
                }
            ]
        );
        assert_eq!(window.part_span(), 3_600);
        let one = Window { from: 5, to: 5 };
        assert_eq!(one.parts(3_600).collect::<Vec<_>>(), [one]);
        let huge = Window {
            from: 0,
            to: 100_000_000_000,
        };
        assert!(huge.parts(huge.part_span()).count() <= 48);
    }

    #[tokio::test]
    async fn an_interrupt_raised_before_the_wait_is_seen() {
        let interrupt = Interrupt::default();
        interrupt.raise("SIGTERM");
        interrupt.raise("SIGINT");
        assert_eq!(interrupt.clone().raised().await, "SIGTERM");
    }
}
