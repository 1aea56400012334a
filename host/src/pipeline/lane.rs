//! One type's lane: batches of documents through its plugin, on a blocking thread, and the
//! results on to the writer.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::budget::{ByteBudget, Permit};
use super::prepare::Lane;
use super::writer::{Transformed, WriterMessage};
use crate::config::{Progress, RunConfig, Window};
use crate::document::Envelope;
use crate::model::{FailedDocument, Stage};
use crate::plugin::{DocumentResult, TransformWorker};

/// Batches waiting for a lane's plugin; the byte budget bounds them too.
const QUEUED_BATCHES: usize = 4;

/// A lane's plugin thread; it ends with its type's name and capability notes.
pub type LaneTask = JoinHandle<(String, Vec<String>)>;

/// Documents of one type, with the bytes they hold.
#[derive(Debug, Default)]
pub struct Batch {
    pub documents: Vec<Envelope>,
    pub permit: Permit,
}

/// What the router sends a lane.
pub enum LaneMessage {
    Batch(Batch),
    /// The router is waiting for bytes: everything before this must be written now, not when
    /// a full write has gathered, or nothing would ever give bytes back.
    Flush,
}

/// The router's end of a lane.
pub struct LaneInput {
    pub type_name: String,
    pub window: Option<Window>,
    pub sender: mpsc::Sender<LaneMessage>,
    pub budget: Arc<ByteBudget>,
    pub documents_per_batch: usize,
}

/// Starts a lane's plugin threads, one per worker (each with its own plugin instance, taking
/// whole batches, so the rows of a batch keep their order); returns the lane's input and the
/// tasks, which end with the type's capability notes once the input is dropped and everything
/// was handed to the writer.
pub fn start(
    lane: &Lane,
    workers: Vec<TransformWorker>,
    writer: mpsc::Sender<WriterMessage>,
    config: &RunConfig,
) -> (LaneInput, Vec<LaneTask>) {
    let (sender, receiver) = mpsc::channel(QUEUED_BATCHES);
    let receiver = Arc::new(Mutex::new(receiver));
    let type_name = lane.table.name().to_owned();
    let index = lane.index;
    let tasks = workers
        .into_iter()
        .map(|worker| {
            let (type_name, receiver, writer) =
                (type_name.clone(), Arc::clone(&receiver), writer.clone());
            let progress = Arc::clone(&config.progress);
            tokio::task::spawn_blocking(move || {
                transform_all(worker, &receiver, writer, index, type_name, progress)
            })
        })
        .collect();
    let input = LaneInput {
        type_name,
        window: lane.window,
        sender,
        budget: Arc::clone(&lane.budget),
        documents_per_batch: config.documents_per_call.max(1),
    };
    (input, tasks)
}

fn transform_all(
    mut worker: TransformWorker,
    batches: &Mutex<mpsc::Receiver<LaneMessage>>,
    writer: mpsc::Sender<WriterMessage>,
    lane: usize,
    type_name: String,
    progress: Arc<Progress>,
) -> (String, Vec<String>) {
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
                let transformed = transform(&mut worker, batch, lane, &type_name);
                Progress::add_elapsed(&progress.plugin_nanos, started);
                WriterMessage::Transformed(transformed)
            }
        };
        if writer.blocking_send(message).is_err() {
            break; // The writer stopped; its error ends the run.
        }
    }
    let notes = worker.notes();
    (type_name, notes)
}

fn transform(
    worker: &mut TransformWorker,
    batch: Batch,
    lane: usize,
    type_name: &str,
) -> Transformed {
    let results = worker.transform(&batch.documents);
    let mut transformed = Transformed {
        lane,
        rows: Vec::new(),
        row_documents: Vec::new(),
        refused: 0,
        failures: Vec::new(),
        batch: Batch::default(),
    };
    for (index, (document, result)) in batch.documents.iter().zip(results).enumerate() {
        match result {
            DocumentResult::Rows(rows) => {
                transformed
                    .row_documents
                    .extend(std::iter::repeat_n(index, rows.len()));
                transformed.rows.extend(rows);
            }
            DocumentResult::Refused(reason) => {
                tracing::trace!(type_name, id = %document.id, "refused: {reason}");
                transformed.refused += 1;
            }
            DocumentResult::Failed { stage, error } => {
                transformed
                    .failures
                    .push(document_failure(type_name, document, stage, error));
            }
        }
    }
    transformed.batch = batch;
    transformed
}

/// The dead-letter record of a checked envelope that failed at `stage`: the document exactly
/// as it was read.
pub fn document_failure(
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
        document: envelope.raw().to_owned(),
    }
}
