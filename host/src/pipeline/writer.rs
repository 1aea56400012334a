//! Writes rows and failures as they come. Two writes may be in flight at once, each its own
//! transaction on its own connection, so the database executes one while the next is being
//! prepared; every write's counts are added when it completes, so they stay exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::budget::ByteBudget;
use super::message::{Batch, Transformed, WriterMessage, document_failure};
use crate::hooks::{Pause, Progress};
use crate::model::{FailedDocument, Row, Stage};
use crate::sink::{InsertOutcome, Sink, SinkError, TableSpec};
use crate::summary::TypeSummary;

/// Failures are written in groups of this many, or sooner when they hold this many bytes.
const FAILURES_PER_WRITE: usize = 500;
const FAILURE_BYTES_PER_WRITE: usize = 8 << 20;
/// Writes in flight at once.
const WRITES_IN_FLIGHT: usize = 2;

/// A lane's rows waiting for a write.
#[derive(Default)]
struct Pending {
    rows: Vec<Row>,
    /// For each row, its batch in `batches` and its document there.
    documents: Vec<(usize, usize)>,
    batches: Vec<Batch>,
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

pub async fn write_all(
    sink: Arc<Sink>,
    lanes: Vec<(TableSpec, Arc<ByteBudget>)>,
    mut messages: mpsc::Receiver<WriterMessage>,
    rows_per_write: usize,
    run_id: String,
    progress: Arc<Progress>,
    pause: Option<Pause>,
) -> Result<BTreeMap<String, TypeSummary>, SinkError> {
    let mut writes_done = 0;
    let (tables, budgets): (Vec<TableSpec>, Vec<Arc<ByteBudget>>) = lanes.into_iter().unzip();
    let mut counts: BTreeMap<String, TypeSummary> = BTreeMap::new();
    let mut pending: Vec<Pending> = tables.iter().map(|_| Pending::default()).collect();
    let mut failures = Failures::default();
    let mut writes = FuturesUnordered::new();
    let write = |lane: usize, rows: Pending| {
        let sink = Arc::clone(&sink);
        let table = tables[lane].clone();
        let progress = Arc::clone(&progress);
        async move {
            let started = std::time::Instant::now();
            let outcome = sink.insert(&table, &rows.rows).await;
            Progress::add_elapsed(&progress.write_nanos, started);
            (lane, rows, outcome)
        }
    };
    let mut open = true;
    while open || !writes.is_empty() {
        tokio::select! {
            message = messages.recv(), if open && writes.len() < WRITES_IN_FLIGHT => {
                let Some(message) = message else {
                    open = false;
                    for (lane, rows) in pending.iter_mut().enumerate() {
                        if !rows.batches.is_empty() {
                            writes.push(write(lane, std::mem::take(rows)));
                        }
                    }
                    continue;
                };
                let flush = match message {
                    WriterMessage::Transformed(mut transformed) => {
                        let lane = transformed.lane;
                        let name = tables[lane].name();
                        counts.entry(name.to_owned()).or_default().refused += transformed.refused;
                        Progress::add(&progress.refused, transformed.refused);
                        failures.extend(std::mem::take(&mut transformed.failures));
                        pending[lane].add(transformed);
                        None
                    }
                    WriterMessage::Failures(list) => {
                        failures.extend(list);
                        None
                    }
                    WriterMessage::Flush { lane } => Some(lane),
                };
                // A full write goes; so does everything of a lane whose router waits for bytes.
                let full = pending.iter().enumerate().position(|(lane, rows)| {
                    rows.rows.len() >= rows_per_write
                        || (budgets[lane].has_waiters() && !rows.batches.is_empty())
                });
                for lane in flush.into_iter().chain(full) {
                    if !pending[lane].batches.is_empty() {
                        writes.push(write(lane, std::mem::take(&mut pending[lane])));
                    }
                }
            }
            Some((lane, rows, outcome)) = writes.next(), if !writes.is_empty() => {
                let outcome = outcome?;
                let name = tables[lane].name();
                let entry = counts.entry(name.to_owned()).or_default();
                entry.inserted += outcome.inserted;
                entry.duplicates += outcome.duplicates;
                Progress::add(&progress.inserted, outcome.inserted);
                Progress::add(&progress.duplicates, outcome.duplicates);
                failures.extend(rows.refused(name, &outcome));
                // `rows` drops here, and with it its documents' bytes.
                writes_done += 1;
                if let Some(pause) = pause.as_ref().filter(|p| p.after_writes == writes_done) {
                    pause.reached.notify_one();
                    pause.resume.notified().await;
                }
            }
        }
        if failures.is_due() {
            failures
                .write(&sink, &run_id, &mut counts, &progress)
                .await?;
        }
    }
    failures
        .write(&sink, &run_id, &mut counts, &progress)
        .await?;
    Ok(counts)
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
    ) -> Result<(), SinkError> {
        if self.list.is_empty() {
            return Ok(());
        }
        sink.record_failures(run_id, &self.list).await?;
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
