//! The one road from a caller's inputs to a run: what was asked (the local runner's flags, or
//! a Lambda invocation's event, each turned into a [`RunRequest`]), plus the [`Environment`],
//! plus now, give one [`RunConfig`] through [`resolve`]. Every default is written here once:
//! flags and events beat the environment, which beats the defaults.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::capability::CapabilitySpecs;
use crate::config::RunConfig;
use crate::environment::{ConfigError, Environment};
use crate::plugin::SandboxLimits;
use crate::source::{SourceError, SourceSpec};
use crate::window::{WindowPlan, WindowRequest};

/// The local runner's database when neither a flag nor the environment names one.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://batch-job-aurora.db";

/// Who asks for the run. Their defaults differ only where [`resolve`] says so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// `batch-job-aurora run`.
    #[default]
    LocalRunner,
    /// One scheduled invocation of the Lambda (`bootstrap`).
    Lambda,
}

/// What a caller asks of one run, as plain data: the local runner's flags (its clap structs
/// stay in the binary), or a Lambda event (`InvocationEvent::run_request`). `None` everywhere
/// means "the environment's, else the default".
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub origin: Origin,
    /// `file:PATH` or the fetch API's base URL.
    pub source: Option<String>,
    pub database: Option<String>,
    pub plugins: Option<PathBuf>,
    pub types: Option<Vec<String>>,
    /// A window by hand (a bound left out is the default window's).
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Gap-free windows; `None`: the Lambda takes `BATCH_JOB_AURORA_CATCH_UP`, the local runner
    /// does not.
    pub catch_up: Option<bool>,
    pub overlap_secs: Option<i64>,
    pub max_catch_up_secs: Option<i64>,
    pub slack_channels: Option<String>,
    pub event_codes: Option<String>,
    pub limits: Option<SandboxLimits>,
    pub deadline: Option<Instant>,
    pub max_wait: Option<Duration>,
    pub retry_budget: Option<Duration>,
    /// A folder, or `off`.
    pub compile_cache: Option<String>,
    /// `Some(false)`: plugins get whole documents even when they list their input paths.
    pub projection: Option<bool>,
    pub plugin_instances: Option<usize>,
    pub rows_per_write: Option<usize>,
    /// What a row whose id is stored already does (`None`: skip, the contract's rule).
    pub on_existing: Option<crate::sink::OnExisting>,
    /// A replay of the database's dead letters instead of a read of the source: no window.
    pub replay: Option<crate::sink::replay::Replay>,
    /// A backfill's shard (`"backfill": true`): the window given by hand is read only where
    /// the run log does not say it is loaded ([`WindowPlan::Backfill`]).
    pub backfill: bool,
}

/// Why the inputs do not make a run.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no source: {0}")]
    NoSource(&'static str),
    #[error("DATAPLATTFORM_AURORA_HOST is not set: no database")]
    NoDatabase,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// THE resolver: the run that `request` asks for, in `environment`, at `now` (the end of a
/// scheduled or catch-up window). The run sets up its backends from the capabilities; a
/// Lambda hands it those it made at init.
pub fn resolve(
    request: RunRequest,
    environment: &Environment,
    now: i64,
) -> Result<RunConfig, ResolveError> {
    let lambda = request.origin == Origin::Lambda;
    let source = match request.replay.clone() {
        // A replay reads the dead letters of the database it writes to.
        Some(replay) => SourceSpec::DeadLetters(replay),
        None => {
            let Some(source) = request.source.or_else(|| environment.fetch_api_url.clone()) else {
                return Err(ResolveError::NoSource(if lambda {
                    "DATAPLATTFORM_AURORA_FETCH_API_URL is not set"
                } else {
                    "pass --source SPEC or set DATAPLATTFORM_AURORA_FETCH_API_URL"
                }));
            };
            SourceSpec::parse(&source, environment.fetch_key.clone())?
        }
    };
    let database = match request
        .database
        .or_else(|| environment.database_url.clone())
    {
        Some(database) => database,
        // A Lambda has no disk to keep a database on.
        None if lambda => return Err(ResolveError::NoDatabase),
        None => DEFAULT_DATABASE_URL.to_owned(),
    };
    let plugins = plugins_dir(request.plugins, environment, request.origin);
    let mut config = RunConfig::new(source, database, plugins);
    let run = &mut config.run;
    run.types = request.types;
    let windows = WindowRequest {
        from: request.from,
        to: request.to,
        catch_up: request.catch_up.unwrap_or(lambda && environment.catch_up),
        overlap_secs: request
            .overlap_secs
            .unwrap_or(WindowRequest::default().overlap_secs),
        max_span_secs: request
            .max_catch_up_secs
            .unwrap_or(WindowRequest::default().max_span_secs),
    };
    // A scheduled invocation reads the contract's window whatever its source; the local runner
    // does so with the fetch API, and reads a file whole.
    let scheduled = lambda || matches!(run.source, SourceSpec::Fetch { .. });
    run.windows = match run.source {
        // A replay has no window: the run log keeps its run without one, so neither the
        // watermark nor the loaded spans move.
        SourceSpec::DeadLetters(_) => WindowPlan::All,
        _ => WindowPlan::resolve(&windows, scheduled, now),
    };
    run.on_existing = request.on_existing.unwrap_or_default();
    if let WindowPlan::Fixed(window) = run.windows
        && request.backfill
        && run.on_existing != crate::sink::OnExisting::Update
    {
        run.windows = WindowPlan::Backfill(window);
    }
    run.capabilities = CapabilitySpecs {
        slack_channels: request.slack_channels,
        event_codes: request
            .event_codes
            .or_else(|| environment.capabilities.event_codes.clone()),
        ..environment.capabilities.clone()
    };
    if let Some(limits) = request.limits {
        config.plugins.limits = limits;
    }
    run.deadline = request.deadline;
    if let Some(max_wait) = request.max_wait {
        run.fetch.max_wait = max_wait;
    }
    if let Some(retry_budget) = request.retry_budget {
        run.fetch.retry_budget = retry_budget;
    }
    // The Lambda's only writable disk is /tmp, gone with the container: it never keeps one.
    if !lambda {
        config.plugins.compile_cache = compile_cache(
            request
                .compile_cache
                .or_else(|| environment.compile_cache.clone()),
            environment,
        );
    }
    if let Some(projection) = request.projection {
        config.plugins.projection = projection;
    }
    if let Some(instances) = request.plugin_instances {
        run.plugin_instances = instances;
    }
    if let Some(rows) = request.rows_per_write {
        run.rows_per_write = rows.max(1);
    }
    Ok(config)
}

/// The plugins folder: the one given, else `BATCH_JOB_AURORA_PLUGINS`, else (for a Lambda) a
/// layer's `/opt/plugins`, else `plugins` beside the executable.
pub fn plugins_dir(given: Option<PathBuf>, environment: &Environment, origin: Origin) -> PathBuf {
    if let Some(dir) = given.or_else(|| environment.plugins_dir.clone()) {
        return dir;
    }
    let layer = PathBuf::from("/opt/plugins");
    if origin == Origin::Lambda && layer.is_dir() {
        return layer;
    }
    std::env::current_exe()
        .map(|exe| exe.with_file_name("plugins"))
        .unwrap_or_else(|_| PathBuf::from("plugins"))
}

/// The compile cache's folder: the one given, else the user's cache folder; none for `off`
/// or when there is no home to put it in.
fn compile_cache(given: Option<String>, environment: &Environment) -> Option<PathBuf> {
    match given.as_deref() {
        Some("off") => None,
        Some(folder) => Some(PathBuf::from(folder)),
        None => environment.cache_dir.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::{from_env, test_env};
    use crate::window::{CatchUp, Window};

    const NOW: i64 = 1_764_003_600;
    const FETCH: &str = "https://api.example/get_docs/";

    fn environment(pairs: &[(&str, &str)]) -> Environment {
        from_env(test_env(pairs)).unwrap()
    }

    /// The old job's variables: the fetch API, its key and a MySQL database.
    const LAMBDA_ENV: &[(&str, &str)] = &[
        ("DATAPLATTFORM_AURORA_FETCH_API_URL", FETCH),
        ("DATAPLATTFORM_AURORA_FETCH_KEY", "k"),
        ("DATAPLATTFORM_AURORA_HOST", "db"),
        ("DATAPLATTFORM_AURORA_DB_NAME", "raw"),
        ("DATAPLATTFORM_AURORA_USER", "job"),
        ("BATCH_JOB_AURORA_PLUGINS", "/srv/plugins"),
    ];

    fn lambda(event: &str) -> RunRequest {
        crate::invocation::InvocationEvent::from_json(event)
            .unwrap()
            .run_request(None)
    }

    fn local(adjust: impl FnOnce(&mut RunRequest)) -> RunRequest {
        let mut request = RunRequest::default();
        adjust(&mut request);
        request
    }

    struct Case {
        name: &'static str,
        request: RunRequest,
        env: &'static [(&'static str, &'static str)],
        now: i64,
        windows: WindowPlan,
        plugins: PathBuf,
        database: &'static str,
    }

    fn beside_the_executable() -> PathBuf {
        std::env::current_exe().unwrap().with_file_name("plugins")
    }

    #[test]
    fn flags_or_an_event_with_the_environment_and_now_make_one_config() {
        let file_env: &[(&str, &str)] = &[];
        let cases = [
            Case {
                name: "lambda, empty event: the scheduled last 70 minutes before now",
                request: lambda("{}"),
                env: LAMBDA_ENV,
                now: NOW,
                windows: WindowPlan::Scheduled { now: NOW },
                plugins: "/srv/plugins".into(),
                database: "mysql://job:@db:3306/raw",
            },
            Case {
                name: "lambda, a later invocation: the window moves with now",
                request: lambda("null"),
                env: LAMBDA_ENV,
                now: NOW + 3600,
                windows: WindowPlan::Scheduled { now: NOW + 3600 },
                plugins: "/srv/plugins".into(),
                database: "mysql://job:@db:3306/raw",
            },
            Case {
                name: "lambda, both bounds: the window as given",
                request: lambda(r#"{"timestamp_from": 0, "timestamp_to": 100}"#),
                env: LAMBDA_ENV,
                now: NOW,
                windows: WindowPlan::Fixed(Window { from: 0, to: 100 }),
                plugins: "/srv/plugins".into(),
                database: "mysql://job:@db:3306/raw",
            },
            Case {
                name: "lambda, only a start: it ends at now",
                request: lambda(r#"{"timestamp_from": 5}"#),
                env: LAMBDA_ENV,
                now: NOW,
                windows: WindowPlan::Fixed(Window { from: 5, to: NOW }),
                plugins: "/srv/plugins".into(),
                database: "mysql://job:@db:3306/raw",
            },
            Case {
                name: "lambda, only an end: it starts 70 minutes before now",
                request: lambda(r#"{"timestamp_to": 7}"#),
                env: LAMBDA_ENV,
                now: NOW,
                windows: WindowPlan::Fixed(Window {
                    from: NOW - 70 * 60,
                    to: 7,
                }),
                plugins: "/srv/plugins".into(),
                database: "mysql://job:@db:3306/raw",
            },
            Case {
                name: "lambda, catch-up asked by the event",
                request: lambda(r#"{"catch_up": true}"#),
                env: LAMBDA_ENV,
                now: NOW,
                windows: WindowPlan::CatchUp(CatchUp::at(NOW)),
                plugins: "/srv/plugins".into(),
                database: "mysql://job:@db:3306/raw",
            },
            Case {
                name: "lambda, catch-up from the environment",
                request: lambda("{}"),
                env: &[
                    ("DATAPLATTFORM_AURORA_FETCH_API_URL", FETCH),
                    ("DATAPLATTFORM_AURORA_FETCH_KEY", "k"),
                    ("DATAPLATTFORM_AURORA_HOST", "db"),
                    ("DATAPLATTFORM_AURORA_ENGINE", "postgres"),
                    ("DATAPLATTFORM_AURORA_DB_NAME", "raw"),
                    ("DATAPLATTFORM_AURORA_USER", "job"),
                    ("BATCH_JOB_AURORA_CATCH_UP", "true"),
                ],
                now: NOW,
                windows: WindowPlan::CatchUp(CatchUp::at(NOW)),
                plugins: beside_the_executable(),
                database: "postgres://job:@db:5432/raw",
            },
            Case {
                name: "lambda, the event's catch_up false beats the environment's",
                request: lambda(r#"{"catch_up": false}"#),
                env: &[
                    ("DATAPLATTFORM_AURORA_FETCH_API_URL", FETCH),
                    ("DATAPLATTFORM_AURORA_FETCH_KEY", "k"),
                    ("DATAPLATTFORM_AURORA_HOST", "db"),
                    ("DATAPLATTFORM_AURORA_DB_NAME", "raw"),
                    ("DATAPLATTFORM_AURORA_USER", "job"),
                    ("BATCH_JOB_AURORA_CATCH_UP", "true"),
                ],
                now: NOW,
                windows: WindowPlan::Scheduled { now: NOW },
                plugins: beside_the_executable(),
                database: "mysql://job:@db:3306/raw",
            },
            Case {
                name: "local, a file and nothing else: every document, the default database",
                request: local(|r| r.source = Some("file:docs.json".into())),
                env: file_env,
                now: NOW,
                windows: WindowPlan::All,
                plugins: beside_the_executable(),
                database: DEFAULT_DATABASE_URL,
            },
            Case {
                name: "local, the fetch API from the environment: the scheduled window",
                request: local(|_| ()),
                env: LAMBDA_ENV,
                now: NOW,
                windows: WindowPlan::Scheduled { now: NOW },
                plugins: "/srv/plugins".into(),
                database: "mysql://job:@db:3306/raw",
            },
            Case {
                name: "local, flags beat the environment",
                request: local(|r| {
                    r.source = Some("file:docs.json".into());
                    r.database = Some("sqlite://x.db".into());
                    r.plugins = Some("here".into());
                    r.from = Some(1);
                    r.to = Some(2);
                }),
                env: LAMBDA_ENV,
                now: NOW,
                windows: WindowPlan::Fixed(Window { from: 1, to: 2 }),
                plugins: "here".into(),
                database: "sqlite://x.db",
            },
            Case {
                name: "local, catch-up with its own overlap and span",
                request: local(|r| {
                    r.catch_up = Some(true);
                    r.overlap_secs = Some(0);
                    r.max_catch_up_secs = Some(3600);
                }),
                env: LAMBDA_ENV,
                now: NOW,
                windows: WindowPlan::CatchUp(CatchUp {
                    now: NOW,
                    overlap_secs: 0,
                    max_span_secs: 3600,
                }),
                plugins: "/srv/plugins".into(),
                database: "mysql://job:@db:3306/raw",
            },
            Case {
                name: "local, the environment's catch-up is the Lambda's alone",
                request: local(|r| r.source = Some("file:docs.json".into())),
                env: &[("BATCH_JOB_AURORA_CATCH_UP", "true")],
                now: NOW,
                windows: WindowPlan::All,
                plugins: beside_the_executable(),
                database: DEFAULT_DATABASE_URL,
            },
        ];
        let mut failures = Vec::new();
        for case in cases {
            let config = match resolve(case.request, &environment(case.env), case.now) {
                Ok(config) => config,
                Err(error) => {
                    failures.push(format!("{}: {error}", case.name));
                    continue;
                }
            };
            let got = (
                config.run.windows,
                config.plugins.dir,
                config.run.database_url.as_str(),
                config.run.documents_per_call,
            );
            let expected = (
                case.windows,
                case.plugins,
                case.database,
                crate::config::DOCUMENTS_PER_CALL,
            );
            if got != expected {
                failures.push(format!("{}: got {got:?}, expected {expected:?}", case.name));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// A case's name, its request and environment, and the start of the expected error.
    type FailingCase = (
        &'static str,
        RunRequest,
        &'static [(&'static str, &'static str)],
        &'static str,
    );

    #[test]
    fn what_cannot_make_a_run_is_said() {
        let cases: [FailingCase; 4] = [
            (
                "local without a source",
                local(|_| ()),
                &[],
                "no source: pass --source SPEC or set DATAPLATTFORM_AURORA_FETCH_API_URL",
            ),
            (
                "lambda without a source",
                lambda("{}"),
                &[],
                "no source: DATAPLATTFORM_AURORA_FETCH_API_URL is not set",
            ),
            (
                "lambda without a database",
                lambda("{}"),
                &[
                    ("DATAPLATTFORM_AURORA_FETCH_API_URL", FETCH),
                    ("DATAPLATTFORM_AURORA_FETCH_KEY", "k"),
                ],
                "DATAPLATTFORM_AURORA_HOST is not set: no database",
            ),
            (
                "the fetch API without a key",
                local(|r| r.source = Some(FETCH.into())),
                &[],
                "the fetch API needs a key",
            ),
        ];
        let mut failures = Vec::new();
        for (name, request, env, expected) in cases {
            match resolve(request, &environment(env), NOW) {
                Ok(_) => failures.push(format!("{name}: resolved")),
                Err(error) if error.to_string().starts_with(expected) => {}
                Err(error) => failures.push(format!("{name}: {error}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn the_compile_cache_is_the_local_runners_alone() {
        let env = environment(&[("BATCH_JOB_AURORA_COMPILE_CACHE", "/cache")]);
        let file = || local(|r| r.source = Some("file:docs.json".into()));
        let cases = [
            ("the environment's", file(), Some(PathBuf::from("/cache"))),
            (
                "the flag beats it",
                local(|r| {
                    r.source = Some("file:docs.json".into());
                    r.compile_cache = Some("/flag".into());
                }),
                Some(PathBuf::from("/flag")),
            ),
            (
                "off",
                local(|r| {
                    r.source = Some("file:docs.json".into());
                    r.compile_cache = Some("off".into());
                }),
                None,
            ),
        ];
        for (name, request, expected) in cases {
            assert_eq!(
                resolve(request, &env, NOW).unwrap().plugins.compile_cache,
                expected,
                "{name}"
            );
        }
        let lambda_env = environment(&[
            ("DATAPLATTFORM_AURORA_FETCH_API_URL", FETCH),
            ("DATAPLATTFORM_AURORA_FETCH_KEY", "k"),
            ("DATAPLATTFORM_AURORA_HOST", "db"),
            ("DATAPLATTFORM_AURORA_DB_NAME", "raw"),
            ("DATAPLATTFORM_AURORA_USER", "job"),
            ("BATCH_JOB_AURORA_COMPILE_CACHE", "/cache"),
        ]);
        assert_eq!(
            resolve(lambda("{}"), &lambda_env, NOW)
                .unwrap()
                .plugins
                .compile_cache,
            None,
            "the lambda"
        );
        let home = environment(&[("HOME", "/home/u")]);
        assert_eq!(
            resolve(file(), &home, NOW).unwrap().plugins.compile_cache,
            Some(PathBuf::from("/home/u/.cache/batch-job-aurora")),
            "the user's cache folder"
        );
    }
}
