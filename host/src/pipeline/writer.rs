//! Writes rows and failures as they come. Up to [`WRITES_IN_FLIGHT`] writes at once (two on
//! SQLite), each its own transactions on its own connection, so the database executes some while
//! the next is being prepared; every write's counts are added when it completes, so they stay
//! exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::budget::ByteBudget;
use super::message::{Batch, Transformed, WriterMessage, document_failure};
use crate::hooks::{Pause, Progress};
use crate::model::{FailedDocument, Row, Stage};
use crate::sink::replay::{DeadLetter, ReplayOutcome};
use crate::sink::{InsertOutcome, OnExisting, RowFate, Sink, SinkError, TableSpec};
use crate::summary::TypeSummary;

/// Failures are written in groups of this many, or sooner when they hold this many bytes.
const FAILURES_PER_WRITE: usize = 500;
const FAILURE_BYTES_PER_WRITE: usize = 8 << 20;
/// Writes in flight at once into a database server. Four rather than two: PostgreSQL's first
/// runs wait on their commits (the WAL's flush: the write stage alone, one writer, ran at
/// 91.9k–96.5k rows/s with `synchronous_commit=off` against 49.5k–56.0k), and commits in flight
/// together are flushed together (51.3–53.1k rows/s against 46.1–46.8k, the peak RSS 110–122 MiB
/// against 108). MariaDB neither gains nor loses.
pub const WRITES_IN_FLIGHT: usize = 4;
/// SQLite's writes queue on its one connection: two keep it busy.
const WRITES_IN_FLIGHT_ON_ONE_CONNECTION: usize = 2;

/// A lane's rows waiting for a write.
#[derive(Default)]
struct Pending {
    rows: Vec<Row>,
    /// For each row, its batch in `batches` and its document there.
    documents: Vec<(usize, usize)>,
    batches: Vec<Batch>,
    /// In a replay, dead-letter records to mark with this write (refused documents, which
    /// have no rows).
    marks: BTreeMap<ReplayOutcome, Vec<i64>>,
}

impl Pending {
    fn add(&mut self, transformed: Transformed) {
        if transformed.rows.is_empty() {
            // Nothing of it is written: its documents and their bytes can go now.
            return;
        }
        let batch = self.batches.len();
        self.documents.extend(
            transformed
                .row_documents
                .iter()
                .map(|&document| (batch, document)),
        );
        self.rows.extend(transformed.rows);
        self.batches.push(transformed.batch);
    }

    /// In a replay, the dead letters whose documents this write stored, and those whose rows
    /// were all stored before (a document with a refused row fails, and is marked so).
    fn replayed(&self, outcome: &InsertOutcome) -> BTreeMap<usize, ReplayOutcome> {
        let mut documents: BTreeMap<(usize, usize), Option<ReplayOutcome>> = BTreeMap::new();
        for (row, fate) in outcome.fates.iter().enumerate() {
            let slot = documents
                .entry(self.documents[row])
                .or_insert(Some(ReplayOutcome::Duplicate));
            *slot = match (fate, *slot) {
                (RowFate::Refused, _) | (_, None) => None,
                (RowFate::Inserted | RowFate::Updated, _) => Some(ReplayOutcome::Stored),
                (_, kept) => kept,
            };
        }
        documents
            .into_iter()
            .filter_map(|((batch, document), outcome)| {
                Some((self.batches[batch].documents[document].origin?, outcome?))
            })
            .collect()
    }

    /// The dead letters of the rows a write refused.
    fn refused(&self, type_name: &str, outcome: &InsertOutcome) -> Vec<FailedDocument> {
        outcome
            .refused
            .iter()
            .map(|refused| {
                let (batch, document) = self.documents[refused.index];
                document_failure(
                    type_name,
                    &self.batches[batch].documents[document],
                    Stage::Sink,
                    refused.error.clone(),
                )
            })
            .collect()
    }
}

/// What the writer needs besides its lanes: the run's settings and hooks.
pub struct WriterSettings {
    pub rows_per_write: usize,
    pub run_id: String,
    pub on_existing: OnExisting,
    /// In a replay, the dead letters being replayed (documents' `origin` indexes them).
    pub replay: Option<Arc<Vec<DeadLetter>>>,
    pub progress: Arc<Progress>,
    pub pause: Option<Pause>,
}

/// Writes every lane's rows and every failure that arrives on `messages`, until it closes and
/// the last write completes. Returns the counts per type.
pub async fn write_all(
    sink: Arc<Sink>,
    lanes: Vec<(TableSpec, Arc<ByteBudget>)>,
    mut messages: mpsc::Receiver<WriterMessage>,
    settings: WriterSettings,
) -> Result<BTreeMap<String, TypeSummary>, SinkError> {
    let in_flight = if sink.writes_queue_on_one_connection() {
        WRITES_IN_FLIGHT_ON_ONE_CONNECTION
    } else {
        WRITES_IN_FLIGHT
    };
    let mut writer = Writer::new(sink, lanes, settings);
    let mut writes = FuturesUnordered::new();
    let mut open = true;
    while open || !writes.is_empty() {
        tokio::select! {
            message = messages.recv(), if open && writes.len() < in_flight => {
                let due = match message {
                    Some(message) => writer.take(message),
                    None => {
                        open = false;
                        writer.lanes_with_work()
                    }
                };
                for lane in due {
                    writes.push(writer.write(lane));
                }
            }
            Some((lane, rows, outcome)) = writes.next(), if !writes.is_empty() => {
                writer.completed(lane, rows, outcome?).await;
            }
        }
        if writer.failures.is_due() {
            writer.write_failures().await?;
        }
    }
    writer.write_failures().await?;
    Ok(writer.counts)
}

/// The writer's state between messages: rows waiting per lane, failures waiting, counts.
struct Writer {
    sink: Arc<Sink>,
    tables: Vec<TableSpec>,
    budgets: Vec<Arc<ByteBudget>>,
    settings: WriterSettings,
    counts: BTreeMap<String, TypeSummary>,
    pending: Vec<Pending>,
    failures: Failures,
    writes_done: usize,
}

impl Writer {
    fn new(
        sink: Arc<Sink>,
        lanes: Vec<(TableSpec, Arc<ByteBudget>)>,
        settings: WriterSettings,
    ) -> Self {
        let (tables, budgets): (Vec<TableSpec>, Vec<Arc<ByteBudget>>) = lanes.into_iter().unzip();
        Self {
            sink,
            pending: tables.iter().map(|_| Pending::default()).collect(),
            tables,
            budgets,
            settings,
            counts: BTreeMap::new(),
            failures: Failures::default(),
            writes_done: 0,
        }
    }

    /// Takes one message in. Returns the lanes whose rows should be written now: a full
    /// write, a lane asked to flush, or a lane whose router waits for the bytes it holds.
    fn take(&mut self, message: WriterMessage) -> Vec<usize> {
        let flush = match message {
            WriterMessage::Transformed(transformed) => {
                self.take_transformed(transformed);
                None
            }
            WriterMessage::Failures(list) => {
                self.failures.extend(list);
                None
            }
            WriterMessage::Flush { lane } => Some(lane),
        };
        let full = self.pending.iter().enumerate().position(|(lane, rows)| {
            rows.rows.len() >= self.settings.rows_per_write
                || (self.budgets[lane].has_waiters() && !rows.batches.is_empty())
        });
        flush
            .into_iter()
            .chain(full)
            .filter(|&lane| !self.pending[lane].batches.is_empty())
            .collect()
    }

    fn take_transformed(&mut self, mut transformed: Transformed) {
        let lane = transformed.lane;
        let name = self.tables[lane].name();
        self.counts.entry(name.to_owned()).or_default().refused += transformed.refused;
        Progress::add(&self.settings.progress.refused, transformed.refused);
        if let Some(letters) = self.settings.replay.as_deref() {
            // Marked with the lane's next write, inside it: awaited here, a mark could wait
            // for the connection a write in flight holds (SQLite has one).
            let marks = &mut self.pending[lane].marks;
            for (outcome, origins) in [
                (ReplayOutcome::Refused, &transformed.refused_origins),
                (ReplayOutcome::Stored, &transformed.empty_origins),
            ] {
                for &origin in origins {
                    marks
                        .entry(outcome)
                        .or_default()
                        .extend(letters[origin].keys());
                }
            }
        }
        self.failures
            .extend(std::mem::take(&mut transformed.failures));
        self.pending[lane].add(transformed);
    }

    /// Once the messages end: every lane with rows or replay marks still waiting.
    fn lanes_with_work(&self) -> Vec<usize> {
        (0..self.pending.len())
            .filter(|&lane| {
                let rows = &self.pending[lane];
                !rows.batches.is_empty() || !rows.marks.is_empty()
            })
            .collect()
    }

    /// One write of a lane's waiting rows, as a future that owns all it needs, so that
    /// `WRITES_IN_FLIGHT` of them run while the writer takes the next messages.
    fn write(
        &mut self,
        lane: usize,
    ) -> impl std::future::Future<Output = (usize, Pending, Result<InsertOutcome, SinkError>)> + use<>
    {
        let rows = std::mem::take(&mut self.pending[lane]);
        let sink = Arc::clone(&self.sink);
        let table = self.tables[lane].clone();
        let progress = Arc::clone(&self.settings.progress);
        let (replay, run_id) = (self.settings.replay.clone(), self.settings.run_id.clone());
        let on_existing = self.settings.on_existing;
        async move {
            let started = std::time::Instant::now();
            let fates = replay.is_some();
            let mut outcome = sink.write(&table, &rows.rows, on_existing, fates).await;
            // In a replay, each dead letter is marked once its rows are committed, in this
            // write's own time.
            if let (Some(letters), Ok(written)) = (replay.as_deref(), &outcome) {
                let mut marks = rows.marks.clone();
                for (origin, replayed) in rows.replayed(written) {
                    marks
                        .entry(replayed)
                        .or_default()
                        .extend(letters[origin].keys());
                }
                for (replayed, keys) in marks {
                    if let Err(error) = sink.mark_replayed(&run_id, replayed, &keys).await {
                        outcome = Err(error);
                        break;
                    }
                }
            }
            Progress::add_elapsed(&progress.write_nanos, started);
            (lane, rows, outcome)
        }
    }

    /// A write completed: its counts are added, its refused rows become failures, and the
    /// test pause is honoured.
    async fn completed(&mut self, lane: usize, rows: Pending, outcome: InsertOutcome) {
        let name = self.tables[lane].name();
        let progress = &self.settings.progress;
        let entry = self.counts.entry(name.to_owned()).or_default();
        entry.inserted += outcome.inserted;
        entry.duplicates += outcome.duplicates;
        entry.updated += outcome.updated;
        entry.unchanged += outcome.unchanged;
        Progress::add(&progress.inserted, outcome.inserted);
        Progress::add(&progress.duplicates, outcome.duplicates);
        self.failures.extend(rows.refused(name, &outcome));
        // `rows` drops here, and with it its documents' bytes.
        drop(rows);
        self.writes_done += 1;
        let writes_done = self.writes_done;
        if let Some(pause) = self
            .settings
            .pause
            .as_ref()
            .filter(|p| p.after_writes == writes_done)
        {
            pause.reached.notify_one();
            pause.resume.notified().await;
        }
    }

    async fn write_failures(&mut self) -> Result<(), SinkError> {
        let letters = self.settings.replay.as_deref().map(Vec::as_slice);
        self.failures
            .write(
                &self.sink,
                &self.settings.run_id,
                &mut self.counts,
                &self.settings.progress,
                letters,
            )
            .await
    }
}

/// Failed documents waiting to be kept.
#[derive(Default)]
struct Failures {
    list: Vec<FailedDocument>,
    bytes: usize,
}

impl Failures {
    fn extend(&mut self, failures: Vec<FailedDocument>) {
        self.bytes += failures.iter().map(|f| f.document.len()).sum::<usize>();
        self.list.extend(failures);
    }

    fn is_due(&self) -> bool {
        self.list.len() >= FAILURES_PER_WRITE || self.bytes >= FAILURE_BYTES_PER_WRITE
    }

    async fn write(
        &mut self,
        sink: &Sink,
        run_id: &str,
        counts: &mut BTreeMap<String, TypeSummary>,
        progress: &Progress,
        letters: Option<&[DeadLetter]>,
    ) -> Result<(), SinkError> {
        if self.list.is_empty() {
            return Ok(());
        }
        // A replayed dead letter that fails again stays the record it is, with the new
        // reason and one attempt more: never kept twice.
        let (again, new): (Vec<&FailedDocument>, Vec<&FailedDocument>) = self
            .list
            .iter()
            .partition(|failure| failure.origin.is_some() && letters.is_some());
        if !new.is_empty() {
            let new: Vec<FailedDocument> = new.into_iter().cloned().collect();
            sink.record_failures(run_id, &new).await?;
        }
        if let Some(letters) = letters {
            for failure in again {
                let letter = &letters[failure.origin.unwrap_or_default()];
                sink.replay_failed(run_id, letter, failure.stage, &failure.error)
                    .await?;
            }
        }
        self.bytes = 0;
        for failure in self.list.drain(..) {
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
}
