//! The run: source → router → one transform lane per type → writer → sink.
//!
//! ```text
//!  source thread ──(by type)──▶ lane: plugin worker (blocking thread) ──▶ writer task ──▶ sink
//!        └──── envelope failures ───────────────────────────────────────────▶┘
//! ```
//! Every channel is bounded, so memory stays flat however large the window: a slow database
//! slows the plugins, which slow the reader.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::capability::CapabilityHub;
use crate::config::{Progress, RunConfig, Window, unix_now};
use crate::document::{Envelope, EnvelopeError};
use crate::error::RunError;
use crate::job::Job;
use crate::model::{FailedDocument, Stage};
use crate::plugin::{DocumentResult, LoadedPlugin, PluginEngine, PluginSet, TransformWorker};
use crate::sink::{RunStatus, Sink, SinkError, SourcedRow, TableSpec};
use crate::source::{self, FetchApi, SourceItem, SourceSpec};
use crate::summary::{RunSummary, TypeSummary, UNKNOWN_TYPE};

/// Failures are written in groups of this many.
const FAILURES_PER_WRITE: usize = 500;

/// Runs the job once: every selected type's documents from the source, through its plugin,
/// into the database. Documents that fail are counted and kept; the run goes on.
///
/// Loads the plugins and opens the database for this one run; a process that runs many times
/// prepares a [`Job`] once instead.
pub async fn run(config: RunConfig) -> Result<RunSummary, RunError> {
    let job = Job::prepare(&config.plugins_dir, config.limits.clone())?;
    let summary = job.run(config).await;
    job.close().await;
    summary
}

/// One run with a prepared engine, its plugins and an open database.
pub(crate) async fn run_prepared(
    config: RunConfig,
    engine: &PluginEngine,
    plugins: &PluginSet,
    sink: Arc<Sink>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let selected = select(plugins, config.types.as_deref())?;
    // The source is checked before anything is written: an unreadable one stops the run.
    let (source, default_window) = match &config.source {
        SourceSpec::Files(path) => (Source::Files(source::files(path)?), None),
        SourceSpec::Fetch { base_url, key } => {
            let api = FetchApi::new(base_url, key, config.fetch.timeouts.clone())?
                .with_backoff(config.fetch.backoff);
            // Computed at each invocation: a warm Lambda must not keep a stale window.
            (
                Source::Fetch(api),
                Some(Window::last_70_minutes(config.now.unwrap_or_else(unix_now))),
            )
        }
    };
    let mut summary = RunSummary {
        run_id: new_run_id(),
        ..Default::default()
    };

    // Prepare every table before reading anything. A table that does not fit its plugin stops
    // that type alone, and nothing is written for it.
    let mut lanes = Vec::new();
    let mut windows = HashMap::new();
    for plugin in selected {
        let type_name = plugin.info.type_name.clone();
        let table = TableSpec::new(&type_name, &plugin.info.columns)?;
        match sink.prepare(&table).await {
            Ok(changes) => {
                for change in changes {
                    tracing::info!(table = %type_name, "schema: {change:?}");
                }
                // Catch-up and the contract's default are scheduled windows; one given by hand
                // (or a whole file) is not, and never moves catch-up on.
                let (window, scheduled) = match (config.catch_up, config.window) {
                    (Some(catch_up), _) => {
                        let last_end = sink.last_success(&type_name).await?;
                        let first_start = sink.first_attempt(&type_name).await?;
                        (Some(catch_up.window(last_end, first_start)), true)
                    }
                    (None, Some(window)) => (Some(window), false),
                    (None, None) => (default_window, default_window.is_some()),
                };
                sink.run_started(&summary.run_id, &type_name, window, scheduled)
                    .await?;
                windows.insert(type_name.clone(), window);
                lanes.push((table, plugin));
                summary.type_mut(&type_name);
            }
            Err(error @ SinkError::IncompatibleColumn { .. }) => {
                tracing::error!("{error}");
                summary.type_mut(&type_name).error = Some(error.to_string());
            }
            Err(error) => return Err(error.into()),
        }
    }

    let hub = Arc::new(CapabilityHub::new(config.backends.clone()));
    let (writer_tx, writer_rx) = mpsc::channel::<WriterMessage>(8);
    let mut document_senders = HashMap::new();
    let mut lane_tasks = Vec::new();
    for (lane, (table, plugin)) in lanes.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Arc<Envelope>>(config.documents_per_call * 2);
        document_senders.insert(table.name().to_owned(), (tx, windows[table.name()]));
        let grants = hub.grants(table.name(), &plugin.info.capabilities);
        let worker = engine.worker(Arc::clone(plugin), grants);
        let writer_tx = writer_tx.clone();
        let documents_per_call = config.documents_per_call;
        let type_name = table.name().to_owned();
        lane_tasks.push(tokio::task::spawn_blocking(move || {
            transform_lane(worker, rx, writer_tx, lane, &type_name, documents_per_call)
        }));
    }

    let writer = tokio::spawn(write_all(
        Arc::clone(&sink),
        lanes.iter().map(|(table, _)| table.clone()).collect(),
        writer_rx,
        config.rows_per_write,
        summary.run_id.clone(),
        Arc::clone(&config.progress),
    ));

    let mut type_errors = BTreeMap::new();
    match source {
        Source::Files(files) => {
            let mut router = Router::new(document_senders, writer_tx, &config.progress, None);
            let result = tokio::task::spawn_blocking(move || {
                source::read_files(&files, |item| router.route(item))
            })
            .await
            .map_err(|error| RunError::Task(error.to_string()))?;
            if let Err(error) = result {
                // Documents read before the error are stored; the run says it did not complete.
                summary.error = Some(error_chain(&RunError::Source(error)));
            }
        }
        Source::Fetch(api) => {
            // Types run concurrently, so fetching one overlaps transforming and writing another;
            // the semaphore bounds how many downloads run at once.
            let downloads = Arc::new(tokio::sync::Semaphore::new(config.fetch.concurrency.max(1)));
            let mut fetches = Vec::new();
            for (type_name, (lane, window)) in document_senders {
                let senders = HashMap::from([(type_name.clone(), (lane, window))]);
                let mut router = Router::new(
                    senders,
                    writer_tx.clone(),
                    &config.progress,
                    Some(type_name.clone()),
                );
                let (api, downloads) = (api.clone(), Arc::clone(&downloads));
                let window = window.unwrap_or_else(|| Window::last_70_minutes(unix_now()));
                fetches.push(tokio::spawn(async move {
                    let _permit = downloads.acquire_owned().await;
                    let result = api
                        .fetch(&type_name, window, move |item| router.route(item))
                        .await;
                    (type_name, result)
                }));
            }
            drop(writer_tx);
            for fetch in fetches {
                let (type_name, result) = fetch
                    .await
                    .map_err(|error| RunError::Task(error.to_string()))?;
                if let Err(error) = result {
                    let error = error_chain(&RunError::Source(error));
                    tracing::error!(type_name, "{error}");
                    type_errors.insert(type_name, error);
                }
            }
        }
    }

    let mut notes = Vec::new();
    for task in lane_tasks {
        let (type_name, lane_notes) = task
            .await
            .map_err(|error| RunError::Task(error.to_string()))?;
        notes.push((type_name, lane_notes));
    }
    let counts = writer
        .await
        .map_err(|error| RunError::Task(error.to_string()))??;

    for (type_name, error) in type_errors {
        summary.type_mut(&type_name).error = Some(error);
    }
    for (type_name, counts) in counts {
        let entry = summary.type_mut(&type_name);
        entry.inserted += counts.inserted;
        entry.duplicates += counts.duplicates;
        entry.refused += counts.refused;
        entry.failed += counts.failed;
    }
    for (type_name, lane_notes) in notes {
        summary.type_mut(&type_name).notes.extend(lane_notes);
    }
    summary.total();
    // A window counts as done only when the source was read to its end: every document of it
    // was then stored, counted as a duplicate or refusal, or kept as failed.
    for (table, _) in &lanes {
        let counts = &summary.types[table.name()];
        let status = if summary.error.is_none() && counts.error.is_none() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        let mut logged = counts.clone();
        logged.error = logged.error.or_else(|| summary.error.clone());
        sink.run_finished(&summary.run_id, table.name(), &logged, status)
            .await?;
    }
    tracing::info!(
        run_id = %summary.run_id,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "run finished: {} inserted, {} duplicates, {} refused, {} failed",
        summary.inserted,
        summary.duplicates,
        summary.refused,
        summary.failed
    );
    Ok(summary)
}

/// The plugins to run: the requested types, or every installed one.
pub(crate) fn select(
    plugins: &PluginSet,
    types: Option<&[String]>,
) -> Result<Vec<Arc<LoadedPlugin>>, RunError> {
    let Some(types) = types else {
        return Ok(plugins.iter().cloned().collect());
    };
    let mut seen = std::collections::HashSet::new();
    types
        .iter()
        .filter(|type_name| seen.insert(type_name.as_str()))
        .map(|type_name| {
            plugins
                .get(type_name)
                .cloned()
                .ok_or_else(|| RunError::NoPluginForType {
                    type_name: type_name.clone(),
                    installed: plugins.type_names().collect::<Vec<_>>().join(", "),
                })
        })
        .collect()
}

/// A run id that sorts by start time: `YYYYMMDDThhmmssZ-<pid>-<nanos>`-like but dependency
/// free: Unix milliseconds and the process id.
fn new_run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", now.as_millis(), std::process::id())
}

/// Formats an error with its whole chain, as `{:#}` does for anyhow.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A source, checked and ready to read.
enum Source {
    Files(Vec<std::path::PathBuf>),
    Fetch(FetchApi),
}

enum WriterMessage {
    Transformed {
        lane: usize,
        rows: Vec<SourcedRow>,
        refused: u64,
        failures: Vec<FailedDocument>,
    },
    Failures(Vec<FailedDocument>),
}

/// Hands each document to its type's lane, on the source's thread.
struct Router {
    /// Each selected type's lane and window.
    senders: HashMap<String, (mpsc::Sender<Arc<Envelope>>, Option<Window>)>,
    failures: mpsc::Sender<WriterMessage>,
    pending_failures: Vec<FailedDocument>,
    progress: Arc<Progress>,
    /// The type a fetched window was asked for; `None` for file sources, which route by the
    /// documents' own `type`.
    expected_type: Option<String>,
    outside_window: u64,
    not_selected: BTreeMap<String, u64>,
}

impl Router {
    fn new(
        senders: HashMap<String, (mpsc::Sender<Arc<Envelope>>, Option<Window>)>,
        failures: mpsc::Sender<WriterMessage>,
        progress: &Arc<Progress>,
        expected_type: Option<String>,
    ) -> Self {
        Router {
            senders,
            failures,
            pending_failures: Vec::new(),
            progress: Arc::clone(progress),
            expected_type,
            outside_window: 0,
            not_selected: BTreeMap::new(),
        }
    }

    fn route(&mut self, item: SourceItem) -> ControlFlow<()> {
        Progress::add(&self.progress.documents, 1);
        let mut envelope = match item {
            Ok(envelope) => envelope,
            Err(mut error) => {
                if let Some(expected) = &self.expected_type {
                    error.type_name = Some(expected.clone());
                }
                return self.fail(envelope_failure(error));
            }
        };
        let type_name = match (envelope.type_name.take(), &self.expected_type) {
            (Some(found), Some(expected)) if &found != expected => {
                envelope.type_name = Some(found.clone());
                let error = format!("type is {found}, but the window of {expected} was asked for");
                return self.fail(document_failure(
                    expected,
                    &envelope,
                    Stage::Envelope,
                    error,
                ));
            }
            (Some(found), _) => found,
            // A fetched window's documents are of the type asked for, said or not.
            (None, Some(expected)) => expected.clone(),
            (None, None) => {
                let error = "missing type: a file source routes documents by their type";
                return self.fail(document_failure(
                    UNKNOWN_TYPE,
                    &envelope,
                    Stage::Envelope,
                    error.into(),
                ));
            }
        };
        envelope.type_name = Some(type_name.clone());
        match self.senders.get(&type_name) {
            Some((_, Some(window))) if !window.contains(envelope.timestamp) => {
                self.outside_window += 1;
                ControlFlow::Continue(())
            }
            // A closed lane means the run is stopping; stop reading too.
            Some((lane, _)) => match lane.blocking_send(Arc::new(envelope)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            },
            None => {
                *self.not_selected.entry(type_name).or_default() += 1;
                ControlFlow::Continue(())
            }
        }
    }

    fn fail(&mut self, failure: FailedDocument) -> ControlFlow<()> {
        self.pending_failures.push(failure);
        if self.pending_failures.len() < FAILURES_PER_WRITE {
            return ControlFlow::Continue(());
        }
        self.flush()
    }

    fn flush(&mut self) -> ControlFlow<()> {
        if self.pending_failures.is_empty() {
            return ControlFlow::Continue(());
        }
        let failures = std::mem::take(&mut self.pending_failures);
        match self
            .failures
            .blocking_send(WriterMessage::Failures(failures))
        {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }
}

impl Drop for Router {
    /// Sends what is pending when the source is done with the router. Failures only pend after
    /// `route` ran, which is on the source's blocking thread, so this never blocks a runtime.
    fn drop(&mut self) {
        let _ = self.flush();
        if self.outside_window > 0 {
            tracing::info!(
                "{} documents outside the window were skipped",
                self.outside_window
            );
        }
        for (type_name, count) in &self.not_selected {
            tracing::info!("{count} documents of type {type_name} skipped: type not selected");
        }
    }
}

/// The dead-letter record of a checked envelope that failed at `stage`, kept whole.
fn document_failure(
    type_name: &str,
    envelope: &Envelope,
    stage: Stage,
    error: String,
) -> FailedDocument {
    FailedDocument {
        type_name: type_name.to_owned(),
        id: Some(envelope.id.clone()),
        timestamp: Some(envelope.timestamp),
        stage,
        error,
        document: source::envelope_json(type_name, envelope),
    }
}

/// The dead-letter record of an element that is no usable envelope, with its raw text.
fn envelope_failure(error: EnvelopeError) -> FailedDocument {
    FailedDocument {
        type_name: error.type_name.unwrap_or_else(|| UNKNOWN_TYPE.into()),
        id: error.id,
        timestamp: error.timestamp,
        stage: Stage::Envelope,
        error: error.reason,
        document: error.raw,
    }
}

/// One type's lane: batches documents into plugin calls and hands the results to the writer.
/// Returns the type's capability notes.
fn transform_lane(
    mut worker: TransformWorker,
    mut documents: mpsc::Receiver<Arc<Envelope>>,
    writer: mpsc::Sender<WriterMessage>,
    lane: usize,
    type_name: &str,
    documents_per_call: usize,
) -> (String, Vec<String>) {
    let mut batch = Vec::with_capacity(documents_per_call);
    while let Some(first) = documents.blocking_recv() {
        batch.push(first);
        while batch.len() < documents_per_call {
            match documents.try_recv() {
                Ok(document) => batch.push(document),
                Err(_) => break,
            }
        }
        let results = worker.transform(&batch);
        let mut rows = Vec::new();
        let mut refused = 0;
        let mut failures = Vec::new();
        for (document, result) in batch.drain(..).zip(results) {
            match result {
                DocumentResult::Rows(document_rows) => {
                    rows.extend(document_rows.into_iter().map(|row| SourcedRow {
                        row,
                        document: Arc::clone(&document),
                    }))
                }
                DocumentResult::Refused(reason) => {
                    tracing::trace!(type_name, id = %document.id, "refused: {reason}");
                    refused += 1;
                }
                DocumentResult::Failed { stage, error } => {
                    failures.push(document_failure(type_name, &document, stage, error));
                }
            }
        }
        let message = WriterMessage::Transformed {
            lane,
            rows,
            refused,
            failures,
        };
        if writer.blocking_send(message).is_err() {
            break; // The writer stopped; its error ends the run.
        }
    }
    (type_name.to_owned(), worker.notes())
}

/// Writes rows and failures as they come, in transactions of about `rows_per_write` rows.
async fn write_all(
    sink: Arc<Sink>,
    tables: Vec<TableSpec>,
    mut messages: mpsc::Receiver<WriterMessage>,
    rows_per_write: usize,
    run_id: String,
    progress: Arc<Progress>,
) -> Result<BTreeMap<String, TypeSummary>, SinkError> {
    let mut counts: BTreeMap<String, TypeSummary> = BTreeMap::new();
    let mut pending_rows: Vec<Vec<SourcedRow>> = vec![Vec::new(); tables.len()];
    let mut pending_failures = Vec::new();
    while let Some(message) = messages.recv().await {
        match message {
            WriterMessage::Transformed {
                lane,
                rows,
                refused,
                failures,
            } => {
                counts
                    .entry(tables[lane].name().to_owned())
                    .or_default()
                    .refused += refused;
                Progress::add(&progress.refused, refused);
                pending_failures.extend(failures);
                pending_rows[lane].extend(rows);
                if pending_rows[lane].len() >= rows_per_write {
                    let rows = std::mem::take(&mut pending_rows[lane]);
                    let failed =
                        write_rows(&sink, &tables[lane], &rows, &mut counts, &progress).await?;
                    pending_failures.extend(failed);
                }
            }
            WriterMessage::Failures(failures) => pending_failures.extend(failures),
        }
        if pending_failures.len() >= FAILURES_PER_WRITE {
            write_failures(
                &sink,
                &run_id,
                &mut pending_failures,
                &mut counts,
                &progress,
            )
            .await?;
        }
    }
    for (table, rows) in tables.iter().zip(pending_rows) {
        let failed = write_rows(&sink, table, &rows, &mut counts, &progress).await?;
        pending_failures.extend(failed);
    }
    write_failures(
        &sink,
        &run_id,
        &mut pending_failures,
        &mut counts,
        &progress,
    )
    .await?;
    Ok(counts)
}

async fn write_rows(
    sink: &Sink,
    table: &TableSpec,
    rows: &[SourcedRow],
    counts: &mut BTreeMap<String, TypeSummary>,
    progress: &Progress,
) -> Result<Vec<FailedDocument>, SinkError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let outcome = sink.insert(table, rows).await?;
    let entry = counts.entry(table.name().to_owned()).or_default();
    entry.inserted += outcome.inserted;
    entry.duplicates += outcome.duplicates;
    Progress::add(&progress.inserted, outcome.inserted);
    Progress::add(&progress.duplicates, outcome.duplicates);
    Ok(outcome.failed)
}

async fn write_failures(
    sink: &Sink,
    run_id: &str,
    failures: &mut Vec<FailedDocument>,
    counts: &mut BTreeMap<String, TypeSummary>,
    progress: &Progress,
) -> Result<(), SinkError> {
    sink.record_failures(run_id, failures).await?;
    for failure in failures.drain(..) {
        tracing::debug!(
            type_name = %failure.type_name,
            id = failure.id.as_deref().unwrap_or("-"),
            stage = failure.stage.as_str(),
            "failed: {}",
            failure.error
        );
        counts.entry(failure.type_name).or_default().failed += 1;
        Progress::add(&progress.failed, 1);
    }
    Ok(())
}
