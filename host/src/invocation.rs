//! One scheduled invocation, as the old Lambda took it: its event, its response, and a config
//! built afresh each time (the old code computed its window once, when the module loaded, so a
//! warm container kept fetching a stale window).
//!
//! [`LambdaJob`] is what a container keeps: prepared at init (engine, plugins, backends, the
//! environment read once), then [`LambdaJob::invoke`] per event. Every way an invocation fails
//! is an [`InvocationFailure`] with a short stable [`FailureKind`] name for machines (the
//! `errorType` of the Runtime API) and a message that names the field or the cause.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::capability::Backends;
use crate::credentials::{CredentialsError, DatabaseCredentials};
use crate::document::{ObjectMembers, abbreviate};
use crate::environment::{Environment, from_env};
use crate::error::RunError;
use crate::hooks::{Interrupt, RunHooks};
use crate::job::Job;
use crate::resolve::{Origin, ResolveError, RunRequest, resolve};
use crate::sink::SinkError;
use crate::source::{SourceError, SourceSpec};
use crate::summary::RunSummary;
use crate::window::{Window, unix_now};

/// The event (every key optional). Other keys, such as an EventBridge schedule's, are ignored.
/// [`InvocationEvent::from_payload`] checks it with messages that name the field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InvocationEvent {
    pub types: Option<Vec<String>>,
    pub timestamp_from: Option<i64>,
    pub timestamp_to: Option<i64>,
    /// Gap-free windows for this invocation; `BATCH_JOB_AURORA_CATCH_UP=true` sets it for all.
    pub catch_up: Option<bool>,
    /// `"update"`: rows whose stored values differ from what the plugin yields are
    /// overwritten (reprocessing with a fixed plugin); `"skip"`, the default, keeps them.
    pub on_existing: Option<crate::sink::OnExisting>,
    /// `{"replay": {"types": [...], "stage": "plugin"}}`: the dead letters again, no window.
    pub replay: Option<ReplayEvent>,
    /// A backfill's shard (`"backfill": true`, as `plan` makes them): skips what the run log
    /// says is loaded.
    #[serde(default)]
    pub backfill: bool,
    /// `{"plan": {...}}`: no run, the backfill's shards are the answer.
    #[serde(skip)]
    pub plan: Option<crate::backfill::PlanRequest>,
    /// `{"backfill_summary": {...}}`: no run, the backfill execution's summary from the run log
    /// is the answer (the state machine's last state).
    #[serde(skip)]
    pub backfill_summary: Option<crate::backfill::SummaryRequest>,
}

/// A replay asked by an event: its types (else the event's, else every type with dead
/// letters) and stage (`envelope`, `plugin`, `sink` or `all`, the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReplayEvent {
    pub types: Option<Vec<String>>,
    pub stage: Option<String>,
}

impl InvocationEvent {
    /// Checks an event: `null` or `{}` means every default; each key must have its kind, and
    /// the message of a wrong one names the key (`timestamp_from: expected Unix seconds, got
    /// "yesterday"`).
    pub fn from_payload(payload: &serde_json::Value) -> Result<Self, InvocationFailure> {
        use serde_json::Value;
        let fields = match payload {
            Value::Null => return Ok(InvocationEvent::default()),
            Value::Object(object) => EventFields(object),
            other => {
                return Err(invalid_event(format!(
                    "expected a JSON object (or null), got {}",
                    shown(other)
                )));
            }
        };
        // Checked in this order, so that of two wrong keys the first named here is reported.
        let types = type_list("types", fields.get("types"))?;
        let on_existing = fields.on_existing()?;
        let replay = fields.replay()?;
        let timestamp_from = fields.seconds("timestamp_from")?;
        let timestamp_to = fields.seconds("timestamp_to")?;
        if let (Some(from), Some(to)) = (timestamp_from, timestamp_to)
            && from > to
        {
            return Err(invalid_event(format!(
                "timestamp_from: {from} is after timestamp_to ({to})"
            )));
        }
        let plan = fields
            .get("plan")
            .map(crate::backfill::PlanRequest::from_payload)
            .transpose()
            .map_err(|error| invalid_event(error.to_string()))?;
        let backfill_summary = fields
            .get("backfill_summary")
            .map(crate::backfill::SummaryRequest::from_payload)
            .transpose()
            .map_err(|error| invalid_event(error.to_string()))?;
        Ok(InvocationEvent {
            types,
            timestamp_from,
            timestamp_to,
            catch_up: fields.flag("catch_up")?,
            on_existing,
            replay,
            backfill: fields.flag("backfill")?.unwrap_or(false),
            plan,
            backfill_summary,
        })
    }

    /// Checks an event given as JSON text, as the Runtime API delivers it. Only the keys the
    /// job reads are parsed; the others are checked to be well formed and skipped, however
    /// deep they nest. Anything that is not a readable event is [`FailureKind::InvalidEvent`],
    /// with a message that says why (and names the key when one is at fault).
    pub fn from_json(text: &str) -> Result<Self, InvocationFailure> {
        let invalid = |message: String| InvocationFailure::new(FailureKind::InvalidEvent, message);
        let event: &serde_json::value::RawValue = serde_json::from_str(text)
            .map_err(|error| invalid(format!("the event is not JSON: {error}")))?;
        let text = event.get();
        if !text.starts_with('{') {
            // Not an object: a scalar or a list is shown as such; a list too deep to be read
            // whole is shown cut short.
            return match serde_json::from_str(text) {
                Ok(value) => Self::from_payload(&value),
                Err(_) => Err(invalid(format!(
                    "expected a JSON object (or null), got {}",
                    abbreviate(text)
                ))),
            };
        }
        let members = ObjectMembers::parse(text)
            .map_err(|error| invalid(format!("the event is not a JSON object: {error}")))?;
        let mut read = serde_json::Map::new();
        for key in Self::KEYS {
            let Some(value) = members.get(key) else {
                continue;
            };
            let value = serde_json::from_str(value.get()).map_err(|error| {
                invalid(format!(
                    "{key}: cannot be read ({error}): {}",
                    abbreviate(value.get())
                ))
            })?;
            read.insert(key.to_owned(), value);
        }
        Self::from_payload(&serde_json::Value::Object(read))
    }

    /// What the event asks, for [`crate::resolve::resolve`]; `deadline` is the invocation's.
    pub fn run_request(&self, deadline: Option<Instant>) -> RunRequest {
        RunRequest {
            origin: Origin::Lambda,
            from: self.timestamp_from,
            to: self.timestamp_to,
            catch_up: self.catch_up,
            deadline,
            on_existing: self.on_existing,
            replay: self
                .replay
                .as_ref()
                .map(|replay| crate::sink::replay::Replay {
                    query: crate::sink::replay::DeadLetterQuery {
                        stages: replay
                            .stage
                            .as_deref()
                            .and_then(crate::sink::replay::stages)
                            .unwrap_or_default(),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
            types: match &self.replay {
                Some(ReplayEvent {
                    types: Some(types), ..
                }) => Some(types.clone()),
                _ => self.types.clone(),
            },
            backfill: self.backfill,
            ..RunRequest::default()
        }
    }

    /// The keys an event may have; any other is ignored.
    const KEYS: [&str; 9] = [
        "types",
        "timestamp_from",
        "timestamp_to",
        "catch_up",
        "on_existing",
        "replay",
        "backfill",
        "plan",
        "backfill_summary",
    ];
}

/// The members of an event object, each read with a message that names its key. A `null`
/// member is an absent one.
struct EventFields<'a>(&'a serde_json::Map<String, serde_json::Value>);

impl<'a> EventFields<'a> {
    fn get(&self, name: &str) -> Option<&'a serde_json::Value> {
        self.0.get(name).filter(|value| !value.is_null())
    }

    fn seconds(&self, name: &str) -> Result<Option<i64>, InvocationFailure> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value.as_i64().map(Some).ok_or_else(|| {
                invalid_event(format!(
                    "{name}: expected Unix seconds, got {}",
                    shown(value)
                ))
            }),
        }
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, InvocationFailure> {
        match self.get(name) {
            None => Ok(None),
            Some(serde_json::Value::Bool(flag)) => Ok(Some(*flag)),
            Some(other) => Err(invalid_event(format!(
                "{name}: expected true or false, got {}",
                shown(other)
            ))),
        }
    }

    fn on_existing(&self) -> Result<Option<crate::sink::OnExisting>, InvocationFailure> {
        let Some(value) = self.get("on_existing") else {
            return Ok(None);
        };
        let parsed = value.as_str().and_then(crate::sink::OnExisting::parse);
        parsed.map(Some).ok_or_else(|| {
            invalid_event(format!(
                "on_existing: expected \"skip\" or \"update\", got {}",
                shown(value)
            ))
        })
    }

    /// `{"replay": {"types": [...], "stage": "..."}}`, which goes with no window.
    fn replay(&self) -> Result<Option<ReplayEvent>, InvocationFailure> {
        let replay = match self.get("replay") {
            None => return Ok(None),
            Some(serde_json::Value::Object(replay)) => EventFields(replay),
            Some(other) => {
                return Err(invalid_event(format!(
                    "replay: expected {{\"types\": [...], \"stage\": \"...\"}}, got {}",
                    shown(other)
                )));
            }
        };
        let types = type_list("replay.types", replay.get("types"))?;
        let stage = match replay.get("stage") {
            None => None,
            Some(value) => Some(
                value
                    .as_str()
                    .filter(|stage| crate::sink::replay::stages(stage).is_some())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        invalid_event(format!(
                            "replay.stage: expected \"envelope\", \"plugin\", \"sink\" or \"all\", got {}",
                            shown(value)
                        ))
                    })?,
            ),
        };
        if let Some(window) = ["timestamp_from", "timestamp_to", "catch_up"]
            .into_iter()
            .find(|name| self.get(name).is_some())
        {
            return Err(invalid_event(format!(
                "replay: a replay has no window, so {window} cannot go with it"
            )));
        }
        Ok(Some(ReplayEvent { types, stage }))
    }
}

/// A list of type names: absent, or a non-empty list of strings.
fn type_list(
    name: &str,
    value: Option<&serde_json::Value>,
) -> Result<Option<Vec<String>>, InvocationFailure> {
    match value {
        None => Ok(None),
        Some(serde_json::Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    invalid_event(format!(
                        "{name}: expected type names (strings), got {}",
                        shown(item)
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(invalid_event(format!(
            "{name}: expected a non-empty list of type names, got {}",
            shown(other)
        ))),
    }
}

fn invalid_event(message: String) -> InvocationFailure {
    InvocationFailure::new(FailureKind::InvalidEvent, message)
}

/// A value as JSON, cut short: it goes into an error message and a log line.
fn shown(value: &serde_json::Value) -> String {
    abbreviate(&value.to_string())
}

/// `{"statusCode": 200, "body": "N records inserted into Aurora. M duplicates skipped. E errors."}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvocationResponse {
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    pub body: String,
}

impl From<&RunSummary> for InvocationResponse {
    fn from(summary: &RunSummary) -> Self {
        InvocationResponse {
            status_code: 200,
            body: summary.lambda_body(),
        }
    }
}

/// What an invocation answers: the old job's response to a run, a backfill's plan, or a
/// backfill execution's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Run(InvocationResponse),
    Plan(crate::backfill::PlanAnswer),
    BackfillSummary(crate::backfill::BackfillSummary),
}

/// Why an invocation (or the container's init) failed, as a short stable name: the
/// `errorType` that alarms and Step Functions match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FailureKind {
    /// The event is not the expected shape; the message names the key.
    InvalidEvent,
    /// The event asks for a type no installed plugin serves.
    UnknownType,
    /// The environment does not describe a usable setup (a variable is missing or wrong).
    InvalidConfig,
    /// The container could not be set up (the plugins folder cannot be loaded).
    InitFailed,
    /// The source could not be used at all.
    SourceFailed,
    /// The database could not be reached or used.
    DatabaseUnavailable,
    /// The database credentials (a secret, an IAM token) could not be had.
    CredentialsUnavailable,
    /// The run went through, but a type or its window was not read to the end; what was
    /// stored stays stored, and catch-up fills the rest.
    IncompleteRun,
    /// The run stopped at the invocation's deadline with its window not read to the end; what
    /// was stored stays stored and the run log says how far it got, so that a retry (a
    /// backfill shard's) continues from there. Retryable.
    DeadlineReached,
    /// A bug or an unexpected failure of the host itself.
    Internal,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::InvalidEvent => "InvalidEvent",
            FailureKind::UnknownType => "UnknownType",
            FailureKind::InvalidConfig => "InvalidConfig",
            FailureKind::InitFailed => "InitFailed",
            FailureKind::SourceFailed => "SourceFailed",
            FailureKind::DatabaseUnavailable => "DatabaseUnavailable",
            FailureKind::CredentialsUnavailable => "CredentialsUnavailable",
            FailureKind::IncompleteRun => "IncompleteRun",
            FailureKind::DeadlineReached => "DeadlineReached",
            FailureKind::Internal => "Internal",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed invocation: its kind and a one-line message with the whole cause chain.
#[derive(Clone, PartialEq, Eq)]
pub struct InvocationFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl InvocationFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        InvocationFailure {
            kind,
            message: message.into(),
        }
    }

    /// From an error, with its whole source chain in the message.
    pub fn from_error(kind: FailureKind, error: &dyn std::error::Error) -> Self {
        InvocationFailure::new(kind, crate::error::chain(error))
    }
}

/// As `Kind: message`, so that even a Debug print (as the Lambda runtime crate's layers make) reads
/// like an error, not like a crash dump.
impl std::fmt::Debug for InvocationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::fmt::Display for InvocationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvocationFailure {}

impl From<RunError> for InvocationFailure {
    fn from(error: RunError) -> Self {
        let kind = match &error {
            RunError::Plugins(_) | RunError::NoPlugins { .. } => FailureKind::InitFailed,
            RunError::NoPluginForType {
                type_name,
                installed,
            } => {
                return InvocationFailure::new(
                    FailureKind::UnknownType,
                    format!("types: no plugin for type {type_name:?} (installed: {installed})"),
                );
            }
            RunError::Sink(SinkError::UnsupportedUrl(_)) | RunError::Capabilities(_) => {
                FailureKind::InvalidConfig
            }
            RunError::Sink(sink) if sink.is_table_misfit() => FailureKind::IncompleteRun,
            RunError::Sink(sink) if sink.is_unavailable() => FailureKind::DatabaseUnavailable,
            RunError::Sink(_) | RunError::Task(_) => FailureKind::Internal,
            RunError::Source(SourceError::Credentials(_)) => FailureKind::CredentialsUnavailable,
            RunError::Source(_) => FailureKind::SourceFailed,
            // Stopped by a signal: nothing is claimed, catch-up reads the windows again.
            RunError::Interrupted(_) => FailureKind::IncompleteRun,
        };
        InvocationFailure::from_error(kind, &error)
    }
}

impl From<ResolveError> for InvocationFailure {
    fn from(error: ResolveError) -> Self {
        let kind = match &error {
            ResolveError::Source(_) => FailureKind::SourceFailed,
            _ => FailureKind::InvalidConfig,
        };
        InvocationFailure::from_error(kind, &error)
    }
}

impl From<CredentialsError> for InvocationFailure {
    fn from(error: CredentialsError) -> Self {
        let kind = match &error {
            CredentialsError::Config(_) => FailureKind::InvalidConfig,
            _ => FailureKind::CredentialsUnavailable,
        };
        InvocationFailure::from_error(kind, &error)
    }
}

/// The rule of a scheduled invocation: a run that did not read every type's window to its end
/// is an error ([`FailureKind::IncompleteRun`]), so that it is retried and alarmed on. Failed
/// documents alone are not: they are counted and kept.
pub fn require_completed(summary: &RunSummary) -> Result<(), InvocationFailure> {
    if summary.completed() {
        return Ok(());
    }
    let mut reasons: Vec<String> = summary
        .types
        .iter()
        .filter_map(|(type_name, counts)| {
            counts
                .error
                .as_ref()
                .map(|error| format!("{type_name}: {error}"))
        })
        .collect();
    if let Some(error) = &summary.error {
        reasons.push(error.clone());
    }
    let kind = if summary.stopped_only_by_deadline() {
        FailureKind::DeadlineReached
    } else {
        FailureKind::IncompleteRun
    };
    Err(InvocationFailure::new(
        kind,
        format!(
            "the run did not complete (what was read is stored; {}): {}",
            summary.lambda_body(),
            reasons.join("; ")
        ),
    ))
}

/// What a Lambda container keeps between invocations: the prepared job (engine and plugins),
/// the backends, the credentials, and the environment as it was at init.
#[derive(Debug)]
pub struct LambdaJob {
    job: Job,
    /// For the database's credentials, made afresh when they expire.
    env: HashMap<String, String>,
    /// The environment as it was at init; each invocation resolves its run with it.
    environment: Environment,
    backends: Backends,
    credentials: DatabaseCredentials,
    /// Raised by a SIGTERM (sent before a shutdown when extensions are registered): the run
    /// under way logs its types as `interrupted`.
    interrupt: Interrupt,
    /// `BATCH_JOB_AURORA_BACKFILL_BUCKET` and its client: where plans are written for the
    /// backfill's Map to read.
    backfill_bucket: Option<(crate::backfill::PlanStore, String)>,
}

/// One invocation's result: the summary when the run went through (also when it did not
/// complete), and the response or the failure.
#[derive(Debug)]
pub struct InvocationOutcome {
    pub summary: Option<RunSummary>,
    /// The window every type took, when the event or the default fixed one (not with
    /// catch-up, where each type has its own).
    pub window: Option<Window>,
    /// The event's window when the event is a backfill's shard (`"backfill": true`), run or not.
    pub shard: Option<Window>,
    pub result: Result<Answer, InvocationFailure>,
}

impl InvocationOutcome {
    /// An invocation that failed before any run.
    pub fn failed(failure: InvocationFailure) -> Self {
        InvocationOutcome {
            summary: None,
            window: None,
            shard: None,
            result: Err(failure),
        }
    }
}

impl LambdaJob {
    /// The container's init, from the environment `env` (read once): checks the settings,
    /// builds the engine, loads the plugins and sets up the backends. No database connection
    /// is made: a database that is down fails an invocation, not the init.
    pub async fn init(env: HashMap<String, String>) -> Result<LambdaJob, InvocationFailure> {
        let var = |name: &str| env.get(name).cloned();
        let invalid = |error: &dyn std::error::Error| {
            InvocationFailure::from_error(FailureKind::InvalidConfig, error)
        };
        let environment = from_env(var).map_err(|error| invalid(&error))?;
        // The run an empty event would make: the source, the database and the plugins are
        // checked once, here.
        let config = resolve(
            InvocationEvent::default().run_request(None),
            &environment,
            unix_now(),
        )?;
        let credentials = DatabaseCredentials::from_env(var).map_err(|error| invalid(&error))?;
        let job = Job::prepare_from(&config.plugins)?;
        // The API credentials' secrets are read once here: a secret that cannot be read fails
        // the init, not every run. They are read again only after an API refuses them.
        let api_credentials = [
            match &config.run.source {
                SourceSpec::Fetch { key, .. } => Some(key),
                SourceSpec::Files(_) | SourceSpec::DeadLetters(_) => None,
            },
            environment.capabilities.slack_token.as_ref(),
        ];
        for credential in api_credentials.into_iter().flatten() {
            credential.get().await?;
        }
        let backends = Backends::configure(&environment.capabilities)
            .await
            .map_err(|error| invalid(&error))?;
        let backfill_bucket =
            match var("BATCH_JOB_AURORA_BACKFILL_BUCKET").filter(|b| !b.is_empty()) {
                Some(bucket) => {
                    let endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
                        .iter()
                        .any(|name| var(name).is_some_and(|url| !url.is_empty()));
                    Some((
                        crate::backfill::s3_client(endpoint)
                            .await
                            .map_err(|error| invalid(&error))?,
                        bucket,
                    ))
                }
                None => None,
            };
        Ok(LambdaJob {
            job,
            env,
            environment,
            backends,
            credentials,
            interrupt: Default::default(),
            backfill_bucket,
        })
    }

    /// What stops the invocation under way (raised on SIGTERM).
    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    pub fn job(&self) -> &Job {
        &self.job
    }

    /// One invocation, its event given as JSON text: the event is checked first (its keys,
    /// then its types against the installed plugins), then the database URL is made (reading
    /// the secret or making a token when needed), then the job runs. A refused login reads the
    /// credentials again and runs once more.
    pub async fn invoke(
        &self,
        event: &str,
        now: i64,
        deadline: Option<Instant>,
    ) -> InvocationOutcome {
        let event = match InvocationEvent::from_json(event) {
            Ok(event) => event,
            Err(failure) => return InvocationOutcome::failed(failure),
        };
        if let Some(plan) = &event.plan {
            return self.plan(plan).await;
        }
        if let Some(request) = &event.backfill_summary {
            return self.summarize_backfill(request, now).await;
        }
        let mut outcome = self.run(&event, now, deadline).await;
        if event.backfill {
            outcome.shard = match (event.timestamp_from, event.timestamp_to) {
                (Some(from), Some(to)) => Some(Window { from, to }),
                _ => outcome.window,
            };
        }
        outcome
    }

    /// An event that asks for a run: its types checked, the database's URL made, the run.
    async fn run(
        &self,
        event: &InvocationEvent,
        now: i64,
        deadline: Option<Instant>,
    ) -> InvocationOutcome {
        let failed = InvocationOutcome::failed;
        if let Err(error) = self.job.ensure_types_served(event.types.as_deref()) {
            return failed(error.into());
        }
        let var = |name: &str| self.env.get(name).cloned();
        let mut refresh = false;
        loop {
            let database = match self.credentials.database_url(var, refresh).await {
                Ok(Some(url)) => url,
                Ok(None) => return failed(ResolveError::NoDatabase.into()),
                Err(error) => return failed(error.into()),
            };
            // The environment with the database's credentials as they are now.
            let environment = Environment {
                database_url: Some(database),
                ..self.environment.clone()
            };
            let mut config = match resolve(event.run_request(deadline), &environment, now) {
                Ok(config) => config,
                Err(error) => return failed(error.into()),
            };
            // The clients made at init, not new ones per invocation.
            config.run.backends = Some(self.backends.clone());
            let hooks = RunHooks {
                interrupt: Some(self.interrupt.clone()),
                ..RunHooks::default()
            };
            let window = config.run.windows.common_window();
            match self.job.run(config.run, hooks).await {
                Ok(summary) => {
                    let result = require_completed(&summary)
                        .map(|()| Answer::Run(InvocationResponse::from(&summary)));
                    return InvocationOutcome {
                        summary: Some(summary),
                        window,
                        shard: None,
                        result,
                    };
                }
                Err(RunError::Sink(error))
                    if !refresh && error.is_login_failure() && self.credentials.can_refresh() =>
                {
                    tracing::warn!("the database refused the login; reading the credentials again");
                    refresh = true;
                }
                Err(error) => return failed(error.into()),
            }
        }
    }
}

impl LambdaJob {
    /// `{"plan": …}`: the shards, checked against the installed types, inline or written to
    /// the backfill bucket.
    async fn plan(&self, plan: &crate::backfill::PlanRequest) -> InvocationOutcome {
        if let Err(error) = self.job.ensure_types_served(Some(&plan.types)) {
            let mut failure = InvocationFailure::from(error);
            failure.message = format!("plan.{}", failure.message);
            return InvocationOutcome::failed(failure);
        }
        let bucket = self
            .backfill_bucket
            .as_ref()
            .map(|(client, bucket)| (client, bucket.as_str()));
        let result = crate::backfill::answer(plan, bucket)
            .await
            .map(Answer::Plan)
            .map_err(|error| {
                let kind = match error {
                    crate::backfill::PlanError::Invalid(_)
                    | crate::backfill::PlanError::TooManyShards { .. } => FailureKind::InvalidEvent,
                    crate::backfill::PlanError::TooLargeInline { .. } => FailureKind::InvalidConfig,
                    // S3 refused or could not be reached: worth a retry.
                    crate::backfill::PlanError::Store { .. } => FailureKind::SourceFailed,
                };
                InvocationFailure::from_error(kind, &error)
            });
        InvocationOutcome {
            summary: None,
            window: None,
            shard: None,
            result,
        }
    }

    /// `{"backfill_summary": …}`: the execution's summary, read from the run log (read only).
    /// A database without a run log yet has loaded nothing: every shard is counted failed.
    async fn summarize_backfill(
        &self,
        request: &crate::backfill::SummaryRequest,
        now: i64,
    ) -> InvocationOutcome {
        let failed = InvocationOutcome::failed;
        if let Err(error) = self.job.ensure_types_served(Some(&request.plan.types)) {
            return failed(error.into());
        }
        let var = |name: &str| self.env.get(name).cloned();
        let url = match self.credentials.database_url(var, false).await {
            Ok(Some(url)) => url,
            Ok(None) => return failed(ResolveError::NoDatabase.into()),
            Err(error) => return failed(error.into()),
        };
        let records = match crate::status::run_records(&url).await {
            Ok(records) => records,
            Err(error) => return failed(RunError::Sink(error).into()),
        };
        let result = crate::backfill::summarize(&records, request, now)
            .map(Answer::BackfillSummary)
            .map_err(|error| InvocationFailure::from_error(FailureKind::InvalidEvent, &error));
        InvocationOutcome {
            summary: None,
            window: None,
            shard: None,
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_and_on_existing_events_are_read_and_checked() {
        use crate::sink::OnExisting;
        use crate::sink::replay::{DeadLetterQuery, Replay};
        let request = |text: &str| InvocationEvent::from_json(text).map(|e| e.run_request(None));
        // (name, event, types, replay, on_existing)
        type Case = (
            &'static str,
            &'static str,
            Option<Vec<String>>,
            Option<Replay>,
            Option<OnExisting>,
        );
        let cases: Vec<Case> = vec![
            ("no replay", "{}", None, None, None),
            (
                "a replay of one type's plugin failures",
                r#"{"replay": {"types": ["SlackType"], "stage": "plugin"}}"#,
                Some(vec!["SlackType".into()]),
                Some(Replay {
                    query: DeadLetterQuery {
                        stages: vec!["plugin", "trap", "validation"],
                        ..Default::default()
                    },
                    ..Default::default()
                }),
                None,
            ),
            (
                "a replay of everything",
                r#"{"replay": {}}"#,
                None,
                Some(Replay::default()),
                None,
            ),
            (
                "a reprocessed window",
                r#"{"types": ["GithubType"], "timestamp_from": 0, "timestamp_to": 9, "on_existing": "update"}"#,
                Some(vec!["GithubType".into()]),
                None,
                Some(OnExisting::Update),
            ),
            (
                "skip said aloud",
                r#"{"on_existing": "skip"}"#,
                None,
                None,
                Some(OnExisting::Skip),
            ),
        ];
        for (name, event, types, replay, on_existing) in cases {
            let request = request(event).unwrap();
            assert_eq!(request.types, types, "{name}");
            assert_eq!(request.replay, replay, "{name}");
            assert_eq!(request.on_existing, on_existing, "{name}");
        }
        let failures = [
            (
                r#"{"replay": {"stage": "everything"}}"#,
                r#"replay.stage: expected "envelope", "plugin", "sink" or "all", got "everything""#,
            ),
            (
                r#"{"replay": {"types": []}}"#,
                "replay.types: expected a non-empty list of type names, got []",
            ),
            (
                r#"{"replay": true}"#,
                r#"replay: expected {"types": [...], "stage": "..."}, got true"#,
            ),
            (
                r#"{"replay": {}, "timestamp_from": 5}"#,
                "replay: a replay has no window, so timestamp_from cannot go with it",
            ),
            (
                r#"{"on_existing": "overwrite"}"#,
                r#"on_existing: expected "skip" or "update", got "overwrite""#,
            ),
        ];
        for (event, message) in failures {
            let failure = request(event).unwrap_err();
            assert_eq!(failure.kind, FailureKind::InvalidEvent, "{event}");
            assert_eq!(failure.message, message, "{event}");
        }
    }

    #[test]
    fn a_bad_event_names_its_key() {
        let failure = |payload: serde_json::Value| {
            let failure = InvocationEvent::from_payload(&payload).unwrap_err();
            assert_eq!(failure.kind, FailureKind::InvalidEvent);
            failure.message
        };
        assert_eq!(
            failure(serde_json::json!({"timestamp_from": "yesterday"})),
            r#"timestamp_from: expected Unix seconds, got "yesterday""#
        );
        assert_eq!(
            failure(serde_json::json!({"timestamp_to": 1.5})),
            "timestamp_to: expected Unix seconds, got 1.5"
        );
        assert_eq!(
            failure(serde_json::json!({"types": "GithubType"})),
            r#"types: expected a non-empty list of type names, got "GithubType""#
        );
        assert_eq!(
            failure(serde_json::json!({"types": [7]})),
            "types: expected type names (strings), got 7"
        );
        assert_eq!(
            failure(serde_json::json!({"timestamp_from": 5, "timestamp_to": 3})),
            "timestamp_from: 5 is after timestamp_to (3)"
        );
        assert_eq!(
            failure(serde_json::json!({"catch_up": "yes"})),
            r#"catch_up: expected true or false, got "yes""#
        );
        assert_eq!(
            failure(serde_json::json!([1])),
            "expected a JSON object (or null), got [1]"
        );
        // Nulls are absent keys, and other keys (an EventBridge event's) are ignored.
        let event = InvocationEvent::from_payload(
            &serde_json::json!({"types": null, "timestamp_from": 0, "source": "aws.events"}),
        )
        .unwrap();
        assert_eq!((event.types, event.timestamp_from), (None, Some(0)));
    }

    #[test]
    fn every_event_that_cannot_be_read_is_an_invalid_event() {
        let failure = |text: &str| {
            let failure = InvocationEvent::from_json(text).unwrap_err();
            assert_eq!(failure.kind, FailureKind::InvalidEvent, "{text}");
            failure.message
        };
        let deep = |depth: usize, inner: &str| {
            format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
        };
        let message = failure(&deep(600, "1"));
        assert!(
            message.starts_with("expected a JSON object (or null), got [[[["),
            "{message}"
        );
        assert!(message.chars().count() < 200, "{message}");
        let message = failure(&format!(r#"{{"types": {}}}"#, deep(600, r#""GithubType""#)));
        assert!(
            message.starts_with("types: cannot be read (recursion limit exceeded"),
            "{message}"
        );
        assert!(failure("oops").starts_with("the event is not JSON: expected value"));
        assert!(failure(r#"{"types": ["#).starts_with("the event is not JSON: "));
        assert_eq!(
            failure(r#"{"timestamp_from": "yesterday"}"#),
            r#"timestamp_from: expected Unix seconds, got "yesterday""#
        );
        assert_eq!(failure("5"), "expected a JSON object (or null), got 5");
        // Keys the job does not read are skipped whatever they hold, however deep; a repeated
        // key keeps its last value; null is every default.
        let deep_detail = format!(
            r#"{{"detail": {}, "types": ["SlackType"], "timestamp_from": 1, "timestamp_from": 2}}"#,
            deep(600, r#""\ud800""#)
        );
        let event = InvocationEvent::from_json(&deep_detail).unwrap();
        assert_eq!(event.types, Some(vec!["SlackType".to_owned()]));
        assert_eq!(event.timestamp_from, Some(2));
        assert_eq!(
            InvocationEvent::from_json(" null ").unwrap(),
            InvocationEvent::default()
        );
    }

    #[test]
    fn an_incomplete_run_is_an_error_and_failed_documents_are_not() {
        let mut summary = RunSummary {
            inserted: 3,
            failed: 2,
            ..Default::default()
        };
        summary.type_mut("GithubType").inserted = 3;
        summary.type_mut("GithubType").failed = 2;
        assert_eq!(require_completed(&summary), Ok(()));
        summary.type_mut("SlackType").error = Some("the body was cut off".into());
        let failure = require_completed(&summary).unwrap_err();
        assert_eq!(failure.kind, FailureKind::IncompleteRun);
        assert_eq!(failure.kind.as_str(), "IncompleteRun");
        assert!(
            failure.message.contains("SlackType: the body was cut off"),
            "{}",
            failure.message
        );
        let source_stopped = RunSummary {
            error: Some("cannot read the source".into()),
            ..Default::default()
        };
        assert_eq!(
            require_completed(&source_stopped).unwrap_err().kind,
            FailureKind::IncompleteRun
        );
    }

    #[test]
    fn run_errors_have_stable_kinds() {
        let unknown = InvocationFailure::from(RunError::NoPluginForType {
            type_name: "Nope; DROP".into(),
            installed: "GithubType".into(),
        });
        assert_eq!(unknown.kind, FailureKind::UnknownType);
        assert_eq!(
            unknown.message,
            r#"types: no plugin for type "Nope; DROP" (installed: GithubType)"#
        );
        assert_eq!(
            format!("{unknown:?}"),
            format!("UnknownType: {}", unknown.message)
        );
        let down = InvocationFailure::from(RunError::Sink(SinkError::UnsupportedUrl("x".into())));
        assert_eq!(down.kind, FailureKind::InvalidConfig);
    }

    #[test]
    fn the_response_is_the_old_one() {
        let summary = RunSummary {
            inserted: 3,
            duplicates: 2,
            failed: 1,
            ..Default::default()
        };
        let response = serde_json::to_value(InvocationResponse::from(&summary)).unwrap();
        assert_eq!(
            response,
            serde_json::json!({"statusCode": 200, "body": "3 records inserted into Aurora. 2 duplicates skipped. 1 errors."})
        );
    }
}
