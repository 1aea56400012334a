//! The AWS Lambda entry point, `bootstrap` for the `provided.al2023` runtime. Glue only:
//!
//! - the container's init, once, before the first `/next`: the engine and the plugins
//!   (precompiled `.cwasm` where they match), the backends, the environment read once
//!   ([`LambdaJob::init`]); a failure is POSTed to `/runtime/init/error` with its `errorType`;
//! - per invocation ([`LambdaJob::invoke`]): the event checked before any work, the deadline
//!   from `Lambda-Runtime-Deadline-Ms`, then the run; errors answer with a short stable
//!   `errorType` and are logged as errors;
//! - logs as JSON when `AWS_LAMBDA_LOG_FORMAT=JSON` (Lambda's own switch), and CloudWatch
//!   Embedded Metric Format lines on stdout.
//!
//! `bootstrap --precompile IN.wasm OUT.cwasm [--portable]` (hidden; used by `cargo xtask
//! lambda`) compiles a plugin under exactly this engine's configuration.

// The Runtime API loop's future (lambda_runtime's tower layers around the handler) is deeper
// than rustc's default layout limit.
#![recursion_limit = "256"]

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use batch_job_aurora::invocation::{
    Answer, FailureKind, InvocationFailure, InvocationOutcome, LambdaJob,
};
use batch_job_aurora::metrics::{DEFAULT_NAMESPACE, InvocationMetrics};
use batch_job_aurora::plugin::{PluginEngine, SandboxLimits};
use batch_job_aurora::window::unix_now;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::Instrument;

/// How long before the invocation's deadline the run stops starting new work, so that it can
/// commit what it has and answer in time (`BATCH_JOB_AURORA_DEADLINE_MARGIN_MS`).
const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_millis(1000);

fn main() -> ExitCode {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--precompile") {
        return precompile(&args[1..]);
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(started))
}

/// What every invocation needs besides the job.
struct Settings {
    namespace: String,
    function_name: String,
    deadline_margin: Duration,
}

async fn serve(started: Instant) -> ExitCode {
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = Settings {
        namespace: env
            .get("BATCH_JOB_AURORA_METRICS_NAMESPACE")
            .filter(|namespace| !namespace.is_empty())
            .cloned()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        function_name: env
            .get("AWS_LAMBDA_FUNCTION_NAME")
            .cloned()
            .unwrap_or_default(),
        deadline_margin: env
            .get("BATCH_JOB_AURORA_DEADLINE_MARGIN_MS")
            .and_then(|ms| ms.parse().ok())
            .map_or(DEFAULT_DEADLINE_MARGIN, Duration::from_millis),
    };
    let lambda = match LambdaJob::init(env).await {
        Ok(lambda) => lambda,
        Err(failure) => {
            tracing::error!(
                error_type = failure.kind.as_str(),
                "init failed: {}",
                failure.message
            );
            report_init_error(&failure).await;
            return ExitCode::FAILURE;
        }
    };
    let plugins: Vec<String> = lambda
        .job()
        .plugins()
        .iter()
        .map(|plugin| {
            let how = if plugin.precompiled {
                "precompiled"
            } else {
                "compiled"
            };
            format!("{} {} ({how})", plugin.info.type_name, plugin.info.version)
        })
        .collect();
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        plugins = %plugins.join(", "),
        "initialised"
    );
    // Lambda sends SIGTERM before a shutdown only when extensions are registered; a timeout
    // kills outright, and the run log's expiry (the deadline plus a margin) covers that.
    let interrupt = lambda.interrupt().clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            terminate.recv().await;
            tracing::warn!("SIGTERM: the invocation under way is logged as interrupted");
            interrupt.raise("SIGTERM");
            // Best effort within Lambda's short shutdown grace; should the row not be written
            // in time, the run log's expiry takes it as interrupted later.
            tokio::time::sleep(Duration::from_millis(250)).await;
            std::process::exit(143);
        }
    });
    // Both live as long as the process; the handler borrows them for every invocation.
    let lambda: &'static LambdaJob = Box::leak(Box::new(lambda));
    let settings: &'static Settings = Box::leak(Box::new(settings));
    let handler = service_fn(move |event: LambdaEvent<EventText>| handle(lambda, settings, event));
    match lambda_runtime::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("the Runtime API loop stopped: {error}");
            ExitCode::FAILURE
        }
    }
}

/// An invocation's failure as the Runtime API takes it: `errorType` is the short stable kind.
struct Failure(InvocationFailure);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Failure> for Diagnostic {
    fn from(Failure(failure): Failure) -> Diagnostic {
        Diagnostic {
            error_type: failure.kind.as_str().to_owned(),
            error_message: failure.message,
        }
    }
}

/// The event as the Runtime API delivered it: its JSON text, checked by the job itself, or why
/// it is not JSON at all. lambda_runtime deserializes the event before the handler runs and
/// answers a failure itself, with its own Rust type name as the errorType and no metric; taking
/// the text, and never failing to, leaves every event to the job's own check, so that each one
/// that cannot be read is an `InvalidEvent` that emits `IncompleteRun` like every failure.
enum EventText {
    Json(Box<RawValue>),
    Unreadable(String),
}

impl<'de> Deserialize<'de> for EventText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A raw value is checked to be well formed, however deep it nests, and not parsed.
        Ok(match Box::<RawValue>::deserialize(deserializer) {
            Ok(text) => EventText::Json(text),
            Err(error) => EventText::Unreadable(error.to_string()),
        })
    }
}

async fn handle(
    lambda: &'static LambdaJob,
    settings: &'static Settings,
    event: LambdaEvent<EventText>,
) -> Result<Answer, Failure> {
    let started = Instant::now();
    let span = tracing::info_span!("invocation", request_id = %event.context.request_id);
    async move {
        let deadline = run_deadline(event.context.deadline, settings.deadline_margin);
        let outcome = match event.payload {
            EventText::Json(text) => invoke(lambda, text, deadline).await,
            EventText::Unreadable(error) => InvocationOutcome::failed(InvocationFailure::new(
                FailureKind::InvalidEvent,
                format!("the event is not JSON: {error}"),
            )),
        };
        let (window_from, window_to) = outcome
            .window
            .map_or((None, None), |window| (Some(window.from), Some(window.to)));
        if let Some(summary) = &outcome.summary {
            let types: Vec<&str> = summary.types.keys().map(String::as_str).collect();
            tracing::info!(
                run_id = %summary.run_id,
                types = %types.join(","),
                window_from,
                window_to,
                inserted = summary.inserted,
                duplicates = summary.duplicates,
                refused = summary.refused,
                failed = summary.failed,
                counts = %serde_json::to_string(summary).unwrap_or_default(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "run finished"
            );
        }
        if let Err(failure) = &outcome.result {
            tracing::error!(
                error_type = failure.kind.as_str(),
                run_id = outcome
                    .summary
                    .as_ref()
                    .map(|summary| summary.run_id.as_str()),
                "{}",
                failure.message
            );
        }
        let metrics = InvocationMetrics {
            namespace: &settings.namespace,
            function_name: &settings.function_name,
            summary: outcome.summary.as_ref(),
            duration: started.elapsed(),
            incomplete: outcome.result.is_err(),
            timestamp_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |now| now.as_millis() as u64),
            shard: outcome.shard,
            error_type: outcome
                .result
                .as_ref()
                .err()
                .map(|failure| failure.kind.as_str()),
            backfill: match &outcome.result {
                Ok(Answer::BackfillSummary(summary)) => Some(summary),
                _ => None,
            },
        };
        // EMF lines go to stdout, one JSON object per line, apart from the log.
        for line in metrics.emf_lines() {
            println!("{line}");
        }
        outcome.result.map_err(Failure)
    }
    .instrument(span)
    .await
}

/// Runs one invocation on its own task, so that even a panic is answered as a failure of this
/// invocation (`Internal`), logged and counted in the metrics like any other.
async fn invoke(
    lambda: &'static LambdaJob,
    event: Box<RawValue>,
    deadline: Option<Instant>,
) -> InvocationOutcome {
    let invocation = tokio::spawn(
        async move { lambda.invoke(event.get(), unix_now(), deadline).await }.in_current_span(),
    );
    match invocation.await {
        Ok(outcome) => outcome,
        Err(error) => {
            let why = match error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|message| (*message).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned()),
                Err(error) => error.to_string(),
            };
            InvocationOutcome::failed(InvocationFailure::new(
                FailureKind::Internal,
                format!("the invocation stopped: {why}"),
            ))
        }
    }
}

/// The invocation's deadline (Unix milliseconds) less the margin, as an instant; `None` when
/// the Runtime API gave none.
fn run_deadline(deadline_ms: u64, margin: Duration) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Some(Instant::now() + left.saturating_sub(margin))
}

/// Tells the Runtime API that the init failed; Lambda then reports the errorType and stops
/// the container. lambda_runtime has no call for this.
async fn report_init_error(failure: &InvocationFailure) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let body = serde_json::json!({
        "errorMessage": failure.message,
        "errorType": failure.kind.as_str(),
        "stackTrace": [],
    });
    // The library's client: reqwest is built without a TLS provider of its own.
    let client = match batch_job_aurora::http::client_builder().build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!("cannot report the init error to the Runtime API: {error}");
            return;
        }
    };
    let answer = client
        .post(format!("http://{api}/2018-06-01/runtime/init/error"))
        .header("Lambda-Runtime-Function-Error-Type", failure.kind.as_str())
        .json(&body)
        .send()
        .await;
    if let Err(error) = answer.and_then(|response| response.error_for_status()) {
        tracing::error!("cannot report the init error to the Runtime API: {error}");
    }
}

/// Logs to stderr: JSON objects when Lambda's `AWS_LAMBDA_LOG_FORMAT` is `JSON`, else plain
/// lines. `BATCH_JOB_AURORA_LOG` takes a full tracing filter; Lambda's `AWS_LAMBDA_LOG_LEVEL`
/// is the default.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let mut filter = std::env::var("BATCH_JOB_AURORA_LOG")
        .ok()
        .filter(|filter| !filter.trim().is_empty())
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|level| level.to_ascii_lowercase())
        })
        .unwrap_or_else(|| "info".into());
    // lambda_runtime logs a handler's error again, with Debug formatting, as if it crashed;
    // the handler logs its errors itself. A real panic still reaches stderr through the
    // panic hook. A filter that names lambda_runtime decides for itself.
    if !filter.contains("lambda_runtime") {
        filter.push_str(",lambda_runtime::layers::panic=off");
    }
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|error| {
        eprintln!(
            "BATCH_JOB_AURORA_LOG={filter:?} is not a tracing filter ({error}); logging at info"
        );
        EnvFilter::new("info,lambda_runtime::layers::panic=off")
    });
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format == "JSON");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.without_time().init();
    }
}

/// `bootstrap --precompile IN.wasm OUT.cwasm [--portable]`: compiles a plugin under this very
/// engine's configuration; `--portable` for any CPU of this architecture, not only this one.
fn precompile(args: &[String]) -> ExitCode {
    let (wasm, out, portable) = match args {
        [wasm, out] => (wasm, out, false),
        [wasm, out, flag] if flag == "--portable" => (wasm, out, true),
        _ => {
            eprintln!("usage: bootstrap --precompile IN.wasm OUT.cwasm [--portable]");
            return ExitCode::from(2);
        }
    };
    let result = PluginEngine::new(SandboxLimits::default())
        .and_then(|engine| engine.precompile(wasm.as_ref(), out.as_ref(), portable));
    match result {
        Ok(info) => {
            println!("{} {} -> {out}", info.type_name, info.version);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot precompile {wasm}: {error}");
            ExitCode::FAILURE
        }
    }
}
