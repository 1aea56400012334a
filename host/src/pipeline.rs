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
use crate::config::{Progress, RunConfig, Window};
use crate::document::{Envelope, EnvelopeError};
use crate::error::RunError;
use crate::model::{FailedDocument, Stage};
use crate::plugin::{DocumentResult, LoadedPlugin, PluginEngine, PluginSet, TransformWorker};
use crate::sink::{RunStatus, Sink, SinkError, SourcedRow, TableSpec};
use crate::source::{self, SourceItem, SourceSpec};
use crate::summary::{RunSummary, TypeSummary, UNKNOWN_TYPE};

/// Failures are written in groups of this many.
const FAILURES_PER_WRITE: usize = 500;

/// Runs the job once: every selected type's documents from the source, through its plugin,
/// into the database. Documents that fail are counted and kept; the run goes on.
pub async fn run(config: RunConfig) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let engine = PluginEngine::new(config.limits.clone())?;
    let plugins = engine.load_folder(&config.plugins_dir)?;
    let selected = select(&plugins, config.types.as_deref())?;
    let SourceSpec::Files(path) = &config.source;
    let files = source::files(path)?;
    let sink = Arc::new(Sink::connect(&config.database_url).await?);
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
                let window = match config.catch_up {
                    Some(catch_up) => Some(catch_up.window(sink.last_success(&type_name).await?)),
                    None => config.window,
                };
                sink.run_started(&summary.run_id, &type_name, window)
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
        let grants = hub.grants(&table.name(), &plugin.info.capabilities);
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

    let router = Router {
        senders: document_senders,
        failures: writer_tx,
        pending_failures: Vec::new(),
        progress: Arc::clone(&config.progress),
        outside_window: 0,
        not_selected: BTreeMap::new(),
    };
    let source_result = tokio::task::spawn_blocking(move || {
        let mut router = router;
        let result = source::read_files(&files, |item| router.route(item));
        router.finish();
        (result, router.outside_window, router.not_selected)
    })
    .await
    .map_err(|error| RunError::Task(error.to_string()))?;

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

    let (read_result, outside_window, not_selected) = source_result;
    if let Err(error) = read_result {
        // Documents read before the error are stored; the run says it did not complete.
        let error = RunError::Source(error);
        summary.error = Some(format!("{:#}", anyhow_like(&error)));
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
        sink.run_finished(&summary.run_id, &table.name(), &logged, status)
            .await?;
    }
    sink.close().await;
    if outside_window > 0 {
        tracing::info!("{outside_window} documents outside the window were skipped");
    }
    for (type_name, count) in not_selected {
        tracing::info!("{count} documents of type {type_name} skipped: type not selected");
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
fn select(
    plugins: &PluginSet,
    types: Option<&[String]>,
) -> Result<Vec<Arc<LoadedPlugin>>, RunError> {
    let Some(types) = types else {
        return Ok(plugins.iter().cloned().collect());
    };
    types
        .iter()
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
fn anyhow_like(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
    outside_window: u64,
    not_selected: BTreeMap<String, u64>,
}

impl Router {
    fn route(&mut self, item: SourceItem) -> ControlFlow<()> {
        Progress::add(&self.progress.documents, 1);
        let envelope = match item {
            Ok(envelope) => envelope,
            Err(error) => return self.fail(envelope_failure(error)),
        };
        let Some(type_name) = envelope.type_name.clone() else {
            let failure = FailedDocument {
                type_name: UNKNOWN_TYPE.into(),
                id: Some(envelope.id.clone()),
                timestamp: Some(envelope.timestamp),
                stage: Stage::Envelope,
                error: "missing type: a file source routes documents by their type".into(),
                document: source::envelope_json(UNKNOWN_TYPE, &envelope),
            };
            return self.fail(failure);
        };
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

    /// Sends what is pending and closes the lanes, so that the workers finish.
    fn finish(&mut self) {
        let _ = self.flush();
        self.senders.clear();
    }
}

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
                DocumentResult::Failed { stage, error } => failures.push(FailedDocument {
                    type_name: type_name.to_owned(),
                    id: Some(document.id.clone()),
                    timestamp: Some(document.timestamp),
                    stage,
                    error,
                    document: source::envelope_json(type_name, &document),
                }),
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
