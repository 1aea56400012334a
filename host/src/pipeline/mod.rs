//! The run: source → router → one transform lane per type → writer → sink.
//!
//! ```text
//!  source (blocking thread, one scan per document)
//!    └─ router ──batches──▶ lane: plugin worker (own thread) ──batches──▶ writer ──▶ sink
//!         └──── envelope failures ───────────────────────────────────────────────▶┘
//! ```
//! Documents cross every channel in batches, never one by one. Each lane has a budget of bytes
//! in flight: a document holds its bytes from the read to the write of its rows, so memory
//! stays flat whatever the size of the window or of its documents. A slow database slows the
//! plugins, which slow the reader.

mod budget;
mod lane;
mod message;
mod prepare;
mod router;
mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::capability::{Backends, CapabilityHub};
use crate::config::RunSettings;
use crate::error::RunError;
use crate::hooks::RunHooks;
use crate::plugin::{PluginEngine, PluginSet};
use crate::sink::{RunStatus, Sink};
use crate::summary::RunSummary;

pub use lane::MAX_PLUGIN_INSTANCES;
pub(crate) use prepare::LanePlan;
pub(crate) use prepare::select;
pub use writer::WRITES_IN_FLIGHT;

/// What a job prepared: the engine and the plugins loaded from `plugins_dir`.
pub(crate) struct Prepared<'a> {
    pub engine: &'a PluginEngine,
    pub plugins: &'a PluginSet,
    pub plugins_dir: &'a std::path::Path,
}

/// One run with what a job prepared, and the database (`sink`) for `config.database_url`,
/// which the caller opens and closes.
pub(crate) async fn run_prepared(
    config: RunSettings,
    hooks: RunHooks,
    prepared: Prepared<'_>,
    sink: Arc<Sink>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let engine = prepared.engine;
    let mut summary = RunSummary {
        run_id: new_run_id(),
        ..Default::default()
    };
    // A replay reads its dead letters first: they say which types it runs.
    let mut types = config.types.clone();
    let mut replay = None;
    if let crate::source::SourceSpec::DeadLetters(spec) = &config.source {
        let letters = dead_letters(&sink, spec, prepared.plugins, &mut types, &mut summary).await?;
        if spec.dry_run {
            return Ok(summary);
        }
        replay = Some((spec.clone(), letters));
    }
    let selected = prepare::select(prepared.plugins, prepared.plugins_dir, types.as_deref())?;
    // The source is checked before anything is written: an unreadable one stops the run.
    let source = match &replay {
        Some((_, letters)) => prepare::OpenedSource::DeadLetters(Arc::clone(letters)),
        None => prepare::open_source(&config)?,
    };

    let plan = prepare::window_plan(&config, &source);
    let lanes = prepare::lanes(&sink, selected, plan, &config, &mut summary).await?;
    // Purged: the records of the types asked for (all, without --types), whatever this
    // replay found waiting.
    let purge = replay
        .as_ref()
        .filter(|(spec, _)| spec.purge_stored)
        .map(|_| config.types.clone());
    let Some(interrupt) = hooks.interrupt.clone() else {
        let summary = read_write_and_log(
            config,
            hooks,
            engine,
            Arc::clone(&sink),
            source,
            lanes,
            summary,
            started,
        )
        .await?;
        return purge_stored(&sink, purge, summary).await;
    };
    let run_id = summary.run_id.clone();
    tokio::select! {
        outcome = read_write_and_log(config, hooks, engine, Arc::clone(&sink), source, lanes, summary, started) => {
            purge_stored(&sink, purge, outcome?).await
        }
        reason = interrupt.raised() => {
            // What was handed on may be half written: nothing of these windows is claimed.
            let said = format!("interrupted by {reason}; the next catch-up reads its window again");
            tracing::warn!(run_id, "{said}");
            sink.run_interrupted(&run_id, &said).await?;
            Err(RunError::Interrupted(reason))
        }
    }
}

/// A replay's waiting dead letters, as `spec` selects them. Without `--types`, the types it
/// runs are those of its dead letters that have a plugin; the others are said and left
/// waiting. The summary says how many dead letters are read (a dry run stops there).
async fn dead_letters(
    sink: &Sink,
    spec: &crate::sink::replay::Replay,
    plugins: &PluginSet,
    types: &mut Option<Vec<String>>,
    summary: &mut RunSummary,
) -> Result<Arc<Vec<crate::sink::replay::DeadLetter>>, RunError> {
    let mut query = spec.query.clone();
    query.types = types.clone();
    let mut letters = sink.dead_letters(&query).await?;
    if types.is_none() {
        let mut found: BTreeMap<String, u64> = BTreeMap::new();
        for letter in &letters {
            *found.entry(letter.type_name.clone()).or_default() += 1;
        }
        let (served, unserved): (Vec<_>, Vec<_>) = found
            .into_iter()
            .partition(|(type_name, _)| plugins.get(type_name).is_some());
        for (type_name, count) in unserved {
            tracing::warn!(
                type_name,
                "{count} dead letters of a type no plugin serves: left waiting"
            );
            summary.type_mut(&type_name).notes.push(format!(
                "{count} dead letters left waiting: no plugin serves this type"
            ));
        }
        letters.retain(|letter| plugins.get(&letter.type_name).is_some());
        *types = Some(served.into_iter().map(|(type_name, _)| type_name).collect());
    }
    summary.replayed = Some(letters.len() as u64);
    if spec.dry_run {
        for letter in &letters {
            summary.type_mut(&letter.type_name);
        }
        for type_name in types.iter().flatten() {
            let count = letters.iter().filter(|l| &l.type_name == type_name).count();
            summary
                .type_mut(type_name)
                .notes
                .push(format!("dry run: {count} dead letters would be replayed"));
        }
    }
    Ok(Arc::new(letters))
}

/// After a replay with `--purge-stored`: deletes the dead letters whose documents are stored.
async fn purge_stored(
    sink: &Sink,
    purge: Option<Option<Vec<String>>>,
    mut summary: RunSummary,
) -> Result<RunSummary, RunError> {
    if let Some(types) = purge {
        summary.purged = Some(sink.purge_stored(types.as_deref()).await?);
    }
    Ok(summary)
}

/// The run once its lanes are ready: read, transform and write, then log how each type ended.
#[allow(clippy::too_many_arguments)]
async fn read_write_and_log(
    config: RunSettings,
    hooks: RunHooks,
    engine: &PluginEngine,
    sink: Arc<Sink>,
    source: prepare::OpenedSource,
    lanes: Vec<LanePlan>,
    mut summary: RunSummary,
    started: Instant,
) -> Result<RunSummary, RunError> {
    let backends = match &config.backends {
        Some(backends) => backends.clone(),
        None => Backends::configure(&config.capabilities).await?,
    };
    let hub = Arc::new(CapabilityHub::new(backends).with_deadline(config.deadline));
    let (writer_tx, writer_rx) = mpsc::channel(8);
    let mut inputs = Vec::new();
    let mut lane_tasks = Vec::new();
    for lane in &lanes {
        let workers = (0..lane::instances(config.plugin_instances))
            .map(|_| {
                let grants = hub.grants(lane.table.name(), &lane.plugin.info.capabilities);
                engine.worker(Arc::clone(&lane.plugin), grants)
            })
            .collect();
        let (input, tasks) =
            lane::start(lane, workers, writer_tx.clone(), &config, &hooks.progress)?;
        inputs.push(input);
        lane_tasks.extend(tasks);
    }
    let settings = writer::WriterSettings {
        rows_per_write: config.rows_per_write,
        run_id: summary.run_id.clone(),
        on_existing: config.on_existing,
        replay: match &source {
            prepare::OpenedSource::DeadLetters(letters) => Some(Arc::clone(letters)),
            _ => None,
        },
        progress: Arc::clone(&hooks.progress),
        pause: hooks.pause.clone(),
    };
    let tables = lanes
        .iter()
        .map(|lane| (lane.table.clone(), Arc::clone(&lane.budget)))
        .collect();
    let mut writer = AbortOnDrop(tokio::spawn(writer::write_all(
        Arc::clone(&sink),
        tables,
        writer_rx,
        settings,
    )));

    let mut read = router::read_source(source, inputs, writer_tx, &config, &hooks.progress).await?;

    let lane_reports = lane_reports(lane_tasks).await?;
    lane::report_deadline_stops(&lane_reports, &mut read);
    let counts = match (&mut writer.0)
        .await
        .map_err(|error| RunError::Task(error.to_string()))?
    {
        Ok(counts) => counts,
        // The database could not store a write (a full disk, a lock held past the deadline):
        // the run fails with the reason, and the run log says so rather than `running`.
        Err(error) => {
            let types: Vec<String> = lanes.iter().map(|l| l.table.name().to_owned()).collect();
            sink.log_stopped_run(&summary.run_id, &types, &error).await;
            return Err(error.into());
        }
    };

    let abandoned = give_up_unreadable(
        &sink,
        &lanes,
        &read,
        config.max_window_attempts,
        &mut summary,
    )
    .await?;
    add_up(&mut summary, &mut read, counts, lane_reports, &hooks);
    log_how_types_ended(&sink, &lanes, &summary, &read, &abandoned).await?;
    tracing::info!(
        run_id = %summary.run_id,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "run finished: {} inserted, {} duplicates, {} refused, {} failed, {} skipped",
        summary.inserted,
        summary.duplicates,
        summary.refused,
        summary.failed,
        summary.skipped
    );
    Ok(summary)
}

/// Every lane's report, once its plugin threads end.
async fn lane_reports(tasks: Vec<lane::LaneTask>) -> Result<Vec<lane::LaneReport>, RunError> {
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        reports.push(
            task.await
                .map_err(|_| RunError::Task("a plugin thread ended without its report".into()))?,
        );
    }
    Ok(reports)
}

/// The summary from what the reader, the lanes and the writer each report.
fn add_up(
    summary: &mut RunSummary,
    read: &mut message::ReadReport,
    counts: BTreeMap<String, crate::summary::TypeSummary>,
    lane_reports: Vec<lane::LaneReport>,
    hooks: &RunHooks,
) {
    summary.error = read.source_error.take();
    summary.skipped = read.skipped;
    summary.stopped_at_deadline = read.stopped.clone();
    for (type_name, error) in std::mem::take(&mut read.type_errors) {
        summary.type_mut(&type_name).error = Some(error);
    }
    for (type_name, counts) in counts {
        let entry = summary.type_mut(&type_name);
        entry.inserted += counts.inserted;
        entry.duplicates += counts.duplicates;
        entry.refused += counts.refused;
        entry.failed += counts.failed;
        entry.updated += counts.updated;
        entry.unchanged += counts.unchanged;
    }
    // Each distinct note of a type once, however many plugin instances made it.
    let mut notes: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for report in lane_reports {
        notes
            .entry(report.type_name)
            .or_default()
            .extend(report.notes);
    }
    for (type_name, lane_notes) in notes {
        summary.type_mut(&type_name).notes.extend(lane_notes);
    }
    summary.total();
    summary.stages = crate::summary::StageTimes::from_progress(&hooks.progress);
}

/// The run log's end of each type's run. A window counts as done only when the source was
/// read to its end: every document of it was then stored, counted as a duplicate or refusal,
/// or kept as failed. A window read in parts that stopped early (the deadline, a failed part)
/// is done up to its last finished part, which the run log keeps for the gap-free rule
/// (`sink::watermark`).
async fn log_how_types_ended(
    sink: &Sink,
    lanes: &[LanePlan],
    summary: &RunSummary,
    read: &message::ReadReport,
    abandoned: &std::collections::BTreeSet<String>,
) -> Result<(), RunError> {
    for lane in lanes {
        let type_name = lane.table.name();
        let counts = &summary.types[type_name];
        let status = if abandoned.contains(type_name) {
            RunStatus::Abandoned
        } else if summary.error.is_none() && counts.error.is_none() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        let done_until = (status == RunStatus::Failed)
            .then(|| read.done_until.get(type_name).copied())
            .flatten();
        let mut logged = counts.clone();
        logged.error = logged.error.or_else(|| summary.error.clone());
        sink.run_finished(&summary.run_id, type_name, &logged, status, done_until)
            .await?;
    }
    Ok(())
}

/// A spawned task aborted when the run awaiting it is dropped (an interrupt): its open
/// transaction is then rolled back instead of holding locks that the run log's last update
/// waits for.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Gives up the windows that failed their last attempt with a body that cannot be read: the
/// bytes that could not be read as documents are kept as one dead letter, and the type says
/// so loudly. Returns the types given up.
async fn give_up_unreadable(
    sink: &Sink,
    lanes: &[LanePlan],
    read: &message::ReadReport,
    attempts: u64,
    summary: &mut RunSummary,
) -> Result<std::collections::BTreeSet<String>, RunError> {
    let mut abandoned = std::collections::BTreeSet::new();
    for lane in lanes.iter().filter(|lane| lane.last_attempt) {
        let type_name = lane.table.name();
        let Some(tail) = read.unreadable.get(type_name) else {
            continue;
        };
        if let Some(tail) = tail {
            let failure = crate::model::FailedDocument {
                type_name: type_name.to_owned(),
                id: None,
                timestamp: None,
                stage: crate::model::Stage::Source,
                error: read.type_errors.get(type_name).cloned().unwrap_or_default(),
                document: String::from_utf8_lossy(tail).into_owned(),
                origin: None,
            };
            sink.record_failures(&summary.run_id, &[failure]).await?;
            summary.type_mut(type_name).failed += 1;
        }
        let window = lane.window.map(|w| format!("[{}, {}]", w.from, w.to));
        summary.type_mut(type_name).notes.push(format!(
            "ALERT: window {} given up after {attempts} failed attempts with a body that cannot be read; its unread bytes are kept in batch_job_failed_documents (stage source) and catch-up moves on",
            window.unwrap_or_default(),
        ));
        abandoned.insert(type_name.to_owned());
    }
    Ok(abandoned)
}

/// A run id that sorts by start time: Unix milliseconds and the process id.
fn new_run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", now.as_millis(), std::process::id())
}
