//! One type's lane: batches of documents through its plugin, on threads of its own, and the
//! results on to the writer.
//!
//! Plugin threads are plain threads, not tokio's blocking pool: however many instances run,
//! the pool stays free for the reader (and everything else that needs it), so a run always
//! starts reading and always reaches its deadline.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::message::{
    Batch, LaneInput, LaneMessage, ReadReport, Transformed, WriterMessage, document_failure,
};
use super::prepare::LanePlan;
use crate::config::RunSettings;
use crate::error::RunError;
use crate::hooks::Progress;
use crate::plugin::{DocumentResult, TransformWorker};

/// Batches waiting for a lane's plugin; the byte budget bounds them too.
const QUEUED_BATCHES: usize = 4;

/// The most instances of one type's plugin working at once (`--plugin-instances`). Each is a
/// thread and may hold its memory cap (256 MiB by default); beyond the machine's cores more
/// instances only add memory (a Lambda has at most 6 vCPUs).
pub const MAX_PLUGIN_INSTANCES: usize = 16;

/// The instances each lane runs for the `requested` number: at least one, at most
/// [`MAX_PLUGIN_INSTANCES`] (a larger number is said in the log; the CLI refuses it).
pub fn instances(requested: usize) -> usize {
    if requested > MAX_PLUGIN_INSTANCES {
        tracing::warn!(
            "{requested} plugin instances asked for; running {MAX_PLUGIN_INSTANCES}, the most there can be"
        );
    }
    requested.clamp(1, MAX_PLUGIN_INSTANCES)
}

/// A lane's plugin thread, seen from the run; it ends with its report.
pub type LaneTask = oneshot::Receiver<LaneReport>;

/// What a plugin thread leaves when its input is closed and everything was handed on.
#[derive(Debug)]
pub struct LaneReport {
    pub type_name: String,
    /// The notes of the plugin's capability calls.
    pub notes: Vec<String>,
    /// Documents the run's deadline left untransformed (not counted, read again by the next
    /// run).
    pub not_transformed: NotTransformed,
}

/// Documents the run's deadline left untransformed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NotTransformed {
    pub documents: u64,
    /// The earliest timestamp among them: the type's window is done at most up to before it.
    pub earliest: Option<i64>,
}

impl NotTransformed {
    fn add(&mut self, timestamp: i64) {
        self.documents += 1;
        self.earliest = Some(self.earliest.map_or(timestamp, |t| t.min(timestamp)));
    }

    fn merge(&mut self, other: NotTransformed) {
        self.documents += other.documents;
        self.earliest = match (self.earliest, other.earliest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Says, in what the reader reports, which types the deadline stopped in their plugins: the
/// type fails with the reason, and its window is claimed at most up to before the earliest
/// document left untransformed, and no further than the reader's finished parts
/// (`done_until`): before that point every document was read, and every one read before the
/// earliest left was through its plugin. Without a finished part nothing is claimed.
pub fn report_deadline_stops(reports: &[LaneReport], read: &mut ReadReport) {
    let mut stopped: std::collections::BTreeMap<&str, NotTransformed> = Default::default();
    for report in reports.iter().filter(|r| r.not_transformed.documents > 0) {
        stopped
            .entry(&report.type_name)
            .or_default()
            .merge(report.not_transformed);
    }
    for (type_name, left) in stopped {
        let done_until = match (read.done_until.get(type_name), left.earliest) {
            (Some(until), Some(earliest)) => Some((*until).min(earliest - 1)),
            _ => None,
        };
        let rest = match done_until {
            Some(until) => {
                format!("the window is done up to {until}; the next run takes the rest")
            }
            None => "the next run reads this window again".to_owned(),
        };
        read.stopped.insert(type_name.to_owned());
        read.type_errors.insert(
            type_name.to_owned(),
            format!(
                "stopped at the run's deadline with {} documents not through the plugin (not counted); {rest}",
                left.documents
            ),
        );
        match done_until {
            Some(until) => read.done_until.insert(type_name.to_owned(), until),
            None => read.done_until.remove(type_name),
        };
    }
}

/// Starts a lane's plugin threads, one per worker (each with its own plugin instance, taking
/// whole batches, so the rows of a batch keep their order); returns the lane's input and the
/// tasks, which end with the lane's report once the input is dropped and everything was
/// handed to the writer. No plugin call starts after the run's deadline.
pub fn start(
    lane: &LanePlan,
    workers: Vec<TransformWorker>,
    writer: mpsc::Sender<WriterMessage>,
    config: &RunSettings,
    progress: &Arc<Progress>,
) -> Result<(LaneInput, Vec<LaneTask>), RunError> {
    let (sender, receiver) = mpsc::channel(QUEUED_BATCHES);
    let receiver = Arc::new(Mutex::new(receiver));
    let type_name = lane.table.name().to_owned();
    let index = lane.index;
    let mut tasks = Vec::with_capacity(workers.len());
    for (number, mut worker) in workers.into_iter().enumerate() {
        worker.stop_at(config.deadline);
        let (type_name, receiver, writer) =
            (type_name.clone(), Arc::clone(&receiver), writer.clone());
        let progress = Arc::clone(progress);
        let (done, task) = oneshot::channel();
        std::thread::Builder::new()
            // Linux keeps 15 bytes of a thread's name.
            .name(format!("plugin-{index}-{number}"))
            .spawn(move || {
                let report = transform_all(worker, &receiver, writer, index, type_name, progress);
                let _ = done.send(report);
            })
            .map_err(|error| {
                RunError::Task(format!(
                    "cannot start a plugin thread for {}: {error}",
                    lane.table.name()
                ))
            })?;
        tasks.push(task);
    }
    let input = LaneInput {
        type_name,
        window: lane.window,
        sender,
        budget: Arc::clone(&lane.budget),
        documents_per_batch: config.documents_per_call.max(1),
    };
    Ok((input, tasks))
}

fn transform_all(
    mut worker: TransformWorker,
    batches: &Mutex<mpsc::Receiver<LaneMessage>>,
    writer: mpsc::Sender<WriterMessage>,
    lane: usize,
    type_name: String,
    progress: Arc<Progress>,
) -> LaneReport {
    let mut not_transformed = NotTransformed::default();
    // The lock is held only while waiting for the next batch, not while transforming it.
    let next = || {
        batches
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .blocking_recv()
    };
    while let Some(message) = next() {
        let message = match message {
            LaneMessage::Flush => WriterMessage::Flush { lane },
            LaneMessage::Batch(batch) => {
                let started = std::time::Instant::now();
                let transformed =
                    transform(&mut worker, batch, lane, &type_name, &mut not_transformed);
                Progress::add_elapsed(&progress.plugin_nanos, started);
                WriterMessage::Transformed(transformed)
            }
        };
        if writer.blocking_send(message).is_err() {
            break; // The writer stopped; its error ends the run.
        }
    }
    if not_transformed.documents > 0 {
        tracing::warn!(
            type_name,
            "the run's deadline came: {} documents were not transformed",
            not_transformed.documents
        );
    }
    LaneReport {
        notes: worker.notes(),
        type_name,
        not_transformed,
    }
}

fn transform(
    worker: &mut TransformWorker,
    batch: Batch,
    lane: usize,
    type_name: &str,
    not_transformed: &mut NotTransformed,
) -> Transformed {
    let results = worker.transform(&batch.documents);
    let mut transformed = Transformed {
        lane,
        rows: Vec::new(),
        row_documents: Vec::new(),
        refused: 0,
        refused_origins: Vec::new(),
        empty_origins: Vec::new(),
        failures: Vec::new(),
        batch: Batch::default(),
    };
    for (index, (document, result)) in batch.documents.iter().zip(results).enumerate() {
        match result {
            DocumentResult::Rows(rows) => {
                if rows.is_empty() {
                    transformed.empty_origins.extend(document.origin);
                }
                transformed
                    .row_documents
                    .extend(std::iter::repeat_n(index, rows.len()));
                transformed.rows.extend(rows);
            }
            DocumentResult::Refused(reason) => {
                tracing::trace!(type_name, id = %document.id, "refused: {reason}");
                transformed.refused += 1;
                transformed.refused_origins.extend(document.origin);
            }
            DocumentResult::Failed { stage, error } => {
                transformed
                    .failures
                    .push(document_failure(type_name, document, stage, error));
            }
            DocumentResult::NotTransformed => not_transformed.add(document.timestamp),
        }
    }
    transformed.batch = batch;
    transformed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(type_name: &str, documents: u64, earliest: i64) -> LaneReport {
        LaneReport {
            type_name: type_name.into(),
            notes: Vec::new(),
            not_transformed: NotTransformed {
                documents,
                earliest: Some(earliest),
            },
        }
    }

    #[test]
    fn a_deadline_stop_in_a_plugin_claims_the_window_only_before_what_it_left() {
        let mut read = ReadReport::default();
        // The reader finished A's parts up to 500, and all of C's window (up to 1,000).
        read.done_until.insert("A".into(), 500);
        read.done_until.insert("C".into(), 1_000);
        // B: no part of its window was read to its end, so nothing can be claimed.
        let reports = [
            stopped("A", 3, 300),
            // Two instances of A: their documents add up, the earliest counts.
            stopped("A", 2, 200),
            stopped("B", 1, 100),
            // The reader read all of C, but its plugin left documents from 50 on.
            stopped("C", 4, 50),
            LaneReport {
                type_name: "D".into(),
                notes: Vec::new(),
                not_transformed: NotTransformed::default(),
            },
        ];
        report_deadline_stops(&reports, &mut read);
        assert_eq!(read.done_until.get("A"), Some(&199));
        assert_eq!(read.done_until.get("B"), None);
        assert_eq!(read.done_until.get("C"), Some(&49));
        assert!(!read.done_until.contains_key("D"));
        assert!(!read.type_errors.contains_key("D"));
        assert!(
            read.type_errors["A"].contains("with 5 documents not through the plugin")
                && read.type_errors["A"].contains("done up to 199"),
            "{}",
            read.type_errors["A"]
        );
        assert!(read.type_errors["B"].contains("the next run reads this window again"));
    }
}
