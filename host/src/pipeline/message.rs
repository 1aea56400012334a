//! The messages between the pipeline's stages: what the router sends a lane, what a lane (or
//! the router) sends the writer, and what the reader reports. The stages know each other only
//! through these.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::budget::{ByteBudget, Permit};
use crate::document::Envelope;
use crate::model::{FailedDocument, Row, Stage};
use crate::window::Window;

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

/// One batch through its plugin.
#[derive(Debug)]
pub struct Transformed {
    pub lane: usize,
    pub rows: Vec<Row>,
    /// For each row, the index of its document in `batch`.
    pub row_documents: Vec<usize>,
    pub refused: u64,
    /// In a replay, the dead letters (by place) whose documents the plugin refused, and those
    /// it made no rows of.
    pub refused_origins: Vec<usize>,
    pub empty_origins: Vec<usize>,
    pub failures: Vec<FailedDocument>,
    /// The documents, kept (with their bytes counted) until their rows are written, so that a
    /// row the database refuses is kept whole.
    pub batch: Batch,
}

pub enum WriterMessage {
    Transformed(Transformed),
    /// Documents that failed before reaching a plugin.
    Failures(Vec<FailedDocument>),
    /// Write what this lane has gathered now.
    Flush {
        lane: usize,
    },
}

/// What reading the source left to report.
#[derive(Debug, Default)]
pub struct ReadReport {
    /// The source could not be read to its end (a file source).
    pub source_error: Option<String>,
    /// Types whose window could not be read to its end, with the reason.
    pub type_errors: BTreeMap<String, String>,
    /// Documents of types not selected, or outside their window.
    pub skipped: u64,
    /// Types stopped at the run's deadline.
    pub stopped: BTreeSet<String>,
    /// For a type whose window was read in parts: the end of its last part read to the end with
    /// every earlier part (every document before it was handed on). A body's order is never
    /// trusted: documents seen in time order say nothing of those not read yet.
    pub done_until: BTreeMap<String, i64>,
    /// Types whose body lost its structure, with the bytes that could not be read as
    /// documents (kept when the window is given up).
    pub unreadable: BTreeMap<String, Option<bytes::Bytes>>,
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
        origin: envelope.origin,
    }
}
