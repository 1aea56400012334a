//! Reading the source: each document to its type's lane, in batches, within the lane's budget
//! of bytes in flight; envelope failures to the writer; and the deadline.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use super::lane::{Batch, LaneInput, LaneMessage, document_failure};
use super::prepare::Source;
use super::writer::WriterMessage;
use crate::config::{Progress, RunConfig};
use crate::document::EnvelopeError;
use crate::error::RunError;
use crate::model::{FailedDocument, Stage};
use crate::source::{self, SourceError, SourceItem};
use crate::summary::UNKNOWN_TYPE;

/// Envelope failures are handed to the writer in groups of this many.
const FAILURES_PER_MESSAGE: usize = 100;
/// A batch is handed on when it holds this many bytes, even with fewer documents.
const BATCH_BYTES: usize = 4 << 20;

/// What reading the source left to report.
#[derive(Debug, Default)]
pub struct ReadReport {
    /// The source could not be read to its end (a file source).
    pub source_error: Option<String>,
    /// Types whose window could not be read to its end, with the reason.
    pub type_errors: BTreeMap<String, String>,
    /// Documents of types not selected, or outside their window.
    pub skipped: u64,
    /// For a type stopped at the deadline: the last second up to which its window is done
    /// (its documents came in time order, so every earlier one was handed on), or `None` when
    /// that cannot be said.
    pub stopped_at: BTreeMap<String, Option<i64>>,
    /// Types whose body lost its structure, with the bytes that could not be read as
    /// documents (kept when the window is given up).
    pub unreadable: BTreeMap<String, Option<bytes::Bytes>>,
}

/// Reads the whole source, then closes every lane's input.
pub async fn read_source(
    source: Source,
    inputs: Vec<LaneInput>,
    writer: mpsc::Sender<WriterMessage>,
    config: &RunConfig,
) -> Result<ReadReport, RunError> {
    let report = Arc::new(Mutex::new(ReadReport::default()));
    match source {
        Source::Files(files) => {
            let mut router = Router::new(inputs, writer, &report, config, None);
            let result = tokio::task::spawn_blocking(move || {
                let result = source::read_files(&files, |item| router.route(item));
                (result, router.stopped_by_deadline())
            })
            .await
            .map_err(|error| RunError::Task(error.to_string()))?;
            match result {
                (Err(_), true) => {}
                (Err(error), false) => {
                    // Documents read before the error are stored; the run says it did not
                    // complete.
                    lock(&report).source_error =
                        Some(crate::error::chain(&RunError::Source(error)));
                }
                (Ok(()), _) => {}
            }
        }
        Source::Fetch(api) => {
            // Types run concurrently, so fetching one overlaps transforming and writing
            // another; the semaphore bounds how many downloads run at once.
            let downloads = Arc::new(tokio::sync::Semaphore::new(config.fetch.concurrency.max(1)));
            let mut fetches = Vec::new();
            for input in inputs {
                let type_name = input.type_name.clone();
                let window = input.window.expect("a fetched type always has a window");
                let mut router = Router::new(
                    vec![input],
                    writer.clone(),
                    &report,
                    config,
                    Some(type_name.clone()),
                );
                let (api, downloads, deadline) =
                    (api.clone(), Arc::clone(&downloads), config.deadline);
                fetches.push(tokio::spawn(async move {
                    let _permit = downloads.acquire_owned().await;
                    let result = api
                        .fetch(&type_name, window, deadline, move |item| router.route(item))
                        .await;
                    (type_name, result)
                }));
            }
            drop(writer);
            for fetch in fetches {
                let (type_name, result) = fetch
                    .await
                    .map_err(|error| RunError::Task(error.to_string()))?;
                if let Err(error) = result {
                    let mut report = lock(&report);
                    if report.stopped_at.contains_key(&type_name) {
                        continue; // Stopped at the deadline, which is said already.
                    }
                    if let SourceError::Scan { .. } = &error {
                        report
                            .unreadable
                            .insert(type_name.clone(), error.unread_tail().cloned());
                    }
                    let message = crate::error::chain(&RunError::Source(error));
                    tracing::error!(type_name, "{message}");
                    report.type_errors.insert(type_name, message);
                }
            }
        }
    }
    // Every router was dropped by now, which flushed it into the report.
    let report = std::mem::take(&mut *lock(&report));
    Ok(report)
}

fn lock(report: &Mutex<ReadReport>) -> std::sync::MutexGuard<'_, ReadReport> {
    report.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// A lane as the router sees it: where to send, the batch being gathered, and whether its
/// documents came in time order (which lets a deadline stop say how far the window is done).
struct RoutedLane {
    input: LaneInput,
    batch: Batch,
    last_timestamp: Option<i64>,
    in_time_order: bool,
}

/// Hands each document to its type's lane, on the source's thread.
struct Router {
    lanes: Vec<RoutedLane>,
    writer: mpsc::Sender<WriterMessage>,
    failures: Vec<FailedDocument>,
    progress: Arc<Progress>,
    /// The type a fetched window was asked for; `None` for file sources, which route by the
    /// documents' own `type`.
    expected_type: Option<String>,
    deadline: Option<Instant>,
    stopped_by_deadline: bool,
    skipped: u64,
    report: Arc<Mutex<ReadReport>>,
    /// When `route` last returned: the time until it is called again is the source's.
    returned: Instant,
}

impl Router {
    fn new(
        inputs: Vec<LaneInput>,
        writer: mpsc::Sender<WriterMessage>,
        report: &Arc<Mutex<ReadReport>>,
        config: &RunConfig,
        expected_type: Option<String>,
    ) -> Self {
        Router {
            lanes: inputs
                .into_iter()
                .map(|input| RoutedLane {
                    input,
                    batch: Batch::default(),
                    last_timestamp: None,
                    in_time_order: true,
                })
                .collect(),
            writer,
            failures: Vec::new(),
            progress: Arc::clone(&config.progress),
            expected_type,
            deadline: config.deadline,
            stopped_by_deadline: false,
            skipped: 0,
            report: Arc::clone(report),
            returned: Instant::now(),
        }
    }

    fn stopped_by_deadline(&self) -> bool {
        self.stopped_by_deadline
    }

    fn route(&mut self, item: SourceItem) -> ControlFlow<()> {
        // Two clock reads per document: the read stage ends where the hand-off starts.
        let started = Instant::now();
        Progress::add_nanos(&self.progress.read_nanos, started - self.returned);
        let flow = self.route_timed(item);
        let returned = Instant::now();
        Progress::add_nanos(&self.progress.handoff_nanos, returned - started);
        self.returned = returned;
        flow
    }

    fn route_timed(&mut self, item: SourceItem) -> ControlFlow<()> {
        Progress::add(&self.progress.documents, 1);
        let mut envelope = match item {
            Ok(envelope) => envelope,
            Err(mut error) => {
                match (&self.expected_type, &error.type_name) {
                    (Some(expected), _) => error.type_name = Some(expected.clone()),
                    // A broken envelope that says it is of a type not selected is skipped, like
                    // a good one of that type: the run that selects the type keeps it as
                    // failed. One figure, however many types they claim.
                    (None, Some(claimed)) if !self.selected(claimed) => {
                        self.skipped += 1;
                        return ControlFlow::Continue(());
                    }
                    (None, _) => {}
                }
                return self.fail(envelope_failure(error));
            }
        };
        let type_name = match (envelope.type_name.take(), &self.expected_type) {
            (Some(found), Some(expected)) if &found != expected => {
                let error = format!(
                    "type is {:?}, but the window of {expected} was asked for",
                    found
                );
                envelope.type_name = Some(found);
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
        let Some(lane) = self.lane_of(&type_name) else {
            // One figure for every type not selected, however many there are.
            self.skipped += 1;
            return ControlFlow::Continue(());
        };
        envelope.type_name = Some(type_name);
        if self.lanes[lane]
            .input
            .window
            .is_some_and(|window| !window.contains(envelope.timestamp))
        {
            self.skipped += 1;
            return ControlFlow::Continue(());
        }
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.stop_at_deadline(lane, envelope.timestamp);
            return ControlFlow::Break(());
        }
        let routed = &mut self.lanes[lane];
        routed.in_time_order &= routed
            .last_timestamp
            .is_none_or(|last| last <= envelope.timestamp);
        routed.last_timestamp = Some(envelope.timestamp);
        let permit = match routed.input.budget.try_acquire(envelope.size()) {
            Some(permit) => permit,
            None => {
                // The lane is full: what was gathered goes now, and the writer is told to
                // write it rather than wait for more, or the bytes would never come back.
                if self.send(lane).is_break()
                    || self.lanes[lane]
                        .input
                        .sender
                        .blocking_send(LaneMessage::Flush)
                        .is_err()
                {
                    return ControlFlow::Break(());
                }
                self.lanes[lane].input.budget.acquire(envelope.size())
            }
        };
        let routed = &mut self.lanes[lane];
        routed.batch.permit.merge(permit);
        routed.batch.documents.push(envelope);
        if routed.batch.documents.len() >= routed.input.documents_per_batch
            || routed.batch.permit.bytes() >= BATCH_BYTES
        {
            return self.send(lane);
        }
        ControlFlow::Continue(())
    }

    /// The lane of a selected type.
    fn lane_of(&self, type_name: &str) -> Option<usize> {
        self.lanes
            .iter()
            .position(|lane| lane.input.type_name == type_name)
    }

    fn selected(&self, type_name: &str) -> bool {
        self.lane_of(type_name).is_some()
    }

    /// Hands the lane's gathered batch on. A closed lane means the run is stopping.
    fn send(&mut self, lane: usize) -> ControlFlow<()> {
        let routed = &mut self.lanes[lane];
        if routed.batch.documents.is_empty() {
            return ControlFlow::Continue(());
        }
        let batch = std::mem::take(&mut routed.batch);
        match routed.input.sender.blocking_send(LaneMessage::Batch(batch)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }

    /// The deadline came: no new work starts. Every lane says how far its window is done.
    fn stop_at_deadline(&mut self, lane: usize, first_not_handed_on: i64) {
        self.stopped_by_deadline = true;
        let mut report = lock(&self.report);
        for (index, routed) in self.lanes.iter().enumerate() {
            // Documents in time order: everything before the first one not handed on is done.
            let done_until = routed.in_time_order.then(|| {
                if index == lane {
                    first_not_handed_on - 1
                } else {
                    routed
                        .last_timestamp
                        .map_or_else(|| routed.input.window.map_or(0, |w| w.from) - 1, |t| t - 1)
                }
            });
            let type_name = routed.input.type_name.clone();
            let said = match done_until {
                Some(until) => format!(
                    "stopped at the run's deadline: the window is done up to {until}; the next run takes the rest"
                ),
                None => {
                    "stopped at the run's deadline; the next run reads this window again".to_owned()
                }
            };
            report.type_errors.insert(type_name.clone(), said);
            report.stopped_at.insert(type_name, done_until);
        }
    }

    fn fail(&mut self, failure: FailedDocument) -> ControlFlow<()> {
        self.failures.push(failure);
        if self.failures.len() < FAILURES_PER_MESSAGE {
            return ControlFlow::Continue(());
        }
        self.flush_failures()
    }

    fn flush_failures(&mut self) -> ControlFlow<()> {
        if self.failures.is_empty() {
            return ControlFlow::Continue(());
        }
        let failures = std::mem::take(&mut self.failures);
        match self.writer.blocking_send(WriterMessage::Failures(failures)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }
}

impl Drop for Router {
    /// Hands on what is gathered when the source is done with the router. That is on the
    /// source's blocking thread, so this never blocks a runtime.
    fn drop(&mut self) {
        for lane in 0..self.lanes.len() {
            let _ = self.send(lane);
        }
        let _ = self.flush_failures();
        if self.skipped > 0 {
            tracing::info!(
                "{} documents skipped: type not selected or outside the window",
                self.skipped
            );
        }
        lock(&self.report).skipped += self.skipped;
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
