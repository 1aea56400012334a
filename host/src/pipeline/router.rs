//! Reading the source: each document to its type's lane, in batches, within the lane's budget
//! of bytes in flight; envelope failures to the writer; and the deadline.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use super::message::{Batch, LaneInput, LaneMessage, ReadReport, WriterMessage, document_failure};
use super::prepare::OpenedSource;
use crate::config::RunSettings;
use crate::document::{Envelope, EnvelopeError};
use crate::error::RunError;
use crate::hooks::{Progress, TypeProgress};
use crate::model::{FailedDocument, Stage};
use crate::source::{self, SourceError, SourceItem};
use crate::summary::UNKNOWN_TYPE;
use crate::window::Window;

/// Envelope failures are handed to the writer in groups of this many.
const FAILURES_PER_MESSAGE: usize = 100;
/// A batch is handed on when it holds this many bytes, even with fewer documents.
const BATCH_BYTES: usize = 4 << 20;

/// Reads the whole source, then closes every lane's input.
pub async fn read_source(
    source: OpenedSource,
    inputs: Vec<LaneInput>,
    writer: mpsc::Sender<WriterMessage>,
    config: &RunSettings,
    progress: &Arc<Progress>,
) -> Result<ReadReport, RunError> {
    let report = Arc::new(Mutex::new(ReadReport::default()));
    match source {
        OpenedSource::Files(files) => {
            let router = Router::new(inputs, writer, &report, config, progress, None);
            read_files(files, router, progress, &report).await?;
        }
        OpenedSource::DeadLetters(letters) => {
            let mut router = Router::new(inputs, writer, &report, config, progress, None);
            tokio::task::spawn_blocking(move || {
                for (index, letter) in letters.iter().enumerate() {
                    if router.replay(index, letter).is_break() {
                        break;
                    }
                }
            })
            .await
            .map_err(|error| RunError::Task(error.to_string()))?;
        }
        OpenedSource::Fetch(api) => {
            fetch_types(api, inputs, writer, config, progress, &report).await?
        }
    }
    // Every router was dropped by now, which flushed it into the report.
    let report = std::mem::take(&mut *lock(&report));
    Ok(report)
}

/// Reads files on a blocking thread. Documents read before an error are stored; the report
/// says the source did not complete (unless the deadline stopped it, which is said already).
async fn read_files(
    files: Vec<std::path::PathBuf>,
    mut router: Router,
    progress: &Arc<Progress>,
    report: &Arc<Mutex<ReadReport>>,
) -> Result<(), RunError> {
    let sizes: u64 = files
        .iter()
        .filter_map(|file| std::fs::metadata(file).ok())
        .map(|metadata| metadata.len())
        .sum();
    Progress::add(&progress.bytes_total, sizes);
    let counted = Arc::clone(progress);
    let (result, stopped_by_deadline) = tokio::task::spawn_blocking(move || {
        let result =
            source::read_files_counted(&files, &counted.bytes_read, |item| router.route(item));
        (result, router.stopped_by_deadline())
    })
    .await
    .map_err(|error| RunError::Task(error.to_string()))?;
    if let (Err(error), false) = (result, stopped_by_deadline) {
        lock(report).source_error = Some(crate::error::chain(&RunError::Source(error)));
    }
    Ok(())
}

/// Fetches every type's window. Types run concurrently, so fetching one overlaps
/// transforming and writing another; a semaphore bounds how many downloads run at once.
async fn fetch_types(
    api: crate::source::FetchApi,
    inputs: Vec<LaneInput>,
    writer: mpsc::Sender<WriterMessage>,
    config: &RunSettings,
    progress: &Arc<Progress>,
    report: &Arc<Mutex<ReadReport>>,
) -> Result<(), RunError> {
    let downloads = Arc::new(tokio::sync::Semaphore::new(config.fetch.concurrency.max(1)));
    let mut fetches = Vec::new();
    for input in inputs {
        let type_name = input.type_name.clone();
        let window = input.window.expect("a fetched type always has a window");
        // With a deadline the window is read part by part, each claimed as it is read to its
        // end, so that a window too big for one run finishes over several.
        let parts: Vec<Window> = match config.deadline {
            Some(_) => window.parts(window.part_span()).collect(),
            None => vec![window],
        };
        let router = Arc::new(Mutex::new(Router::new(
            vec![input],
            writer.clone(),
            report,
            config,
            progress,
            Some(type_name.clone()),
        )));
        let (api, downloads, deadline) = (api.clone(), Arc::clone(&downloads), config.deadline);
        fetches.push(tokio::spawn(async move {
            let _permit = downloads.acquire_owned().await;
            let result = read_parts(&api, &type_name, &parts, deadline, &router).await;
            // The router hands on what it gathered when dropped, which blocks: not on the
            // runtime's threads.
            let _ = tokio::task::spawn_blocking(move || drop(router)).await;
            (type_name, result)
        }));
    }
    drop(writer);
    for fetch in fetches {
        let (type_name, result) = fetch
            .await
            .map_err(|error| RunError::Task(error.to_string()))?;
        let Err(error) = result else { continue };
        let mut report = lock(report);
        if report.stopped.contains(&type_name) {
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
    Ok(())
}

/// Reads a fetched window's parts in order, each claimed done once read to its end. Stops at
/// the first part that fails or that the deadline cuts.
async fn read_parts(
    api: &crate::source::FetchApi,
    type_name: &str,
    parts: &[Window],
    deadline: Option<Instant>,
    router: &Arc<Mutex<Router>>,
) -> Result<(), SourceError> {
    for part in parts {
        let routing = Arc::clone(router);
        let progress = Arc::clone(&lock(router).progress);
        let result = api
            .fetch_counted(type_name, *part, deadline, &progress, move |item| {
                lock(&routing).route(item)
            })
            .await;
        let mut router = lock(router);
        match result {
            Err(SourceError::Deadline) => {
                router.stop_at_deadline();
                return Ok(());
            }
            Err(error) => return Err(error),
            Ok(()) if router.halted => return Ok(()),
            Ok(()) => router.part_done(part.to),
        }
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// A lane as the router sees it: where to send, the batch being gathered, and how far its
/// window is known to be read.
struct RoutedLane {
    input: LaneInput,
    batch: Batch,
    /// The end of the window's parts read to their end so far.
    done_until: Option<i64>,
    /// The type's live counters.
    progress: Arc<TypeProgress>,
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
    /// Routing stopped (the deadline, or a lane that closed): the part being read is not done.
    halted: bool,
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
        config: &RunSettings,
        progress: &Arc<Progress>,
        expected_type: Option<String>,
    ) -> Self {
        Router {
            lanes: inputs
                .into_iter()
                .map(|input| RoutedLane {
                    progress: progress.of_type(&input.type_name),
                    input,
                    batch: Batch::default(),
                    done_until: None,
                })
                .collect(),
            writer,
            failures: Vec::new(),
            progress: Arc::clone(progress),
            expected_type,
            deadline: config.deadline,
            stopped_by_deadline: false,
            halted: false,
            skipped: 0,
            report: Arc::clone(report),
            returned: Instant::now(),
        }
    }

    fn stopped_by_deadline(&self) -> bool {
        self.stopped_by_deadline
    }

    /// A dead letter's document, routed as a run routes it. It is of the dead letter's type
    /// (a fetched document need not say its type); what fails again carries where it came
    /// from, so that the dead letter is marked rather than kept twice.
    fn replay(
        &mut self,
        origin: usize,
        letter: &crate::sink::replay::DeadLetter,
    ) -> ControlFlow<()> {
        let item = crate::document::parse_envelope(bytes::Bytes::from(letter.document.clone()));
        let mut envelope = match item {
            Ok(envelope) => envelope,
            Err(error) => {
                Progress::add(&self.progress.documents, 1);
                let mut failure = envelope_failure(error);
                failure.type_name = letter.type_name.clone();
                failure.origin = Some(origin);
                return self.fail(failure);
            }
        };
        envelope.origin = Some(origin);
        match &envelope.type_name {
            Some(found) if found != &letter.type_name => {
                Progress::add(&self.progress.documents, 1);
                let error = format!(
                    "type is {found:?}, but the window of {} was asked for",
                    letter.type_name
                );
                let failure =
                    document_failure(&letter.type_name, &envelope, Stage::Envelope, error);
                self.fail(failure)
            }
            _ => {
                envelope.type_name = Some(letter.type_name.clone());
                self.route(Ok(envelope))
            }
        }
    }

    fn route(&mut self, item: SourceItem) -> ControlFlow<()> {
        // Two clock reads per document: the read stage ends where the hand-off starts.
        let started = Instant::now();
        Progress::add_nanos(&self.progress.read_nanos, started - self.returned);
        let flow = self.route_timed(item);
        self.halted |= flow.is_break();
        let returned = Instant::now();
        Progress::add_nanos(&self.progress.handoff_nanos, returned - started);
        self.returned = returned;
        flow
    }

    fn route_timed(&mut self, item: SourceItem) -> ControlFlow<()> {
        Progress::add(&self.progress.documents, 1);
        let envelope = match item {
            Ok(envelope) => envelope,
            Err(error) => return self.envelope_failed(error),
        };
        let (lane, envelope) = match self.lane_for(envelope) {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.stop_at_deadline();
            return ControlFlow::Break(());
        }
        self.gather(lane, envelope)
    }

    /// An element that is no usable envelope. A broken one that says it is of a type not
    /// selected is skipped, like a good one of that type: the run that selects the type keeps
    /// it as failed. One figure, however many types they claim.
    fn envelope_failed(&mut self, mut error: EnvelopeError) -> ControlFlow<()> {
        match (&self.expected_type, &error.type_name) {
            (Some(expected), _) => error.type_name = Some(expected.clone()),
            (None, Some(claimed)) if !self.selected(claimed) => {
                self.skipped += 1;
                return ControlFlow::Continue(());
            }
            (None, _) => {}
        }
        self.fail(envelope_failure(error))
    }

    /// The lane an envelope goes to, with its type settled; or what routing does instead: a
    /// failure for a wrong or missing type, a skip for a type not selected or a timestamp
    /// outside the window.
    fn lane_for(&mut self, mut envelope: Envelope) -> Result<(usize, Envelope), ControlFlow<()>> {
        let type_name = match (envelope.type_name.take(), &self.expected_type) {
            (Some(found), Some(expected)) if &found != expected => {
                let error =
                    format!("type is {found:?}, but the window of {expected} was asked for");
                envelope.type_name = Some(found);
                let failure = document_failure(expected, &envelope, Stage::Envelope, error);
                return Err(self.fail(failure));
            }
            (Some(found), _) => found,
            // A fetched window's documents are of the type asked for, said or not.
            (None, Some(expected)) => expected.clone(),
            (None, None) => {
                let error = "missing type: a file source routes documents by their type";
                let failure =
                    document_failure(UNKNOWN_TYPE, &envelope, Stage::Envelope, error.into());
                return Err(self.fail(failure));
            }
        };
        let Some(lane) = self.lane_of(&type_name) else {
            // One figure for every type not selected, however many there are.
            self.skipped += 1;
            return Err(ControlFlow::Continue(()));
        };
        envelope.type_name = Some(type_name);
        if self.lanes[lane]
            .input
            .window
            .is_some_and(|window| !window.contains(envelope.timestamp))
        {
            self.skipped += 1;
            return Err(ControlFlow::Continue(()));
        }
        Ok((lane, envelope))
    }

    /// Adds a document to its lane's batch, within the lane's budget of bytes, and hands the
    /// batch on when it is full.
    fn gather(&mut self, lane: usize, envelope: Envelope) -> ControlFlow<()> {
        let routed = &mut self.lanes[lane];
        Progress::add(&routed.progress.documents, 1);
        if self.expected_type.is_none() {
            // A file source's bytes are the whole source's; a type's share is its documents'.
            // (A fetched body's bytes are counted as they arrive.)
            Progress::add(&routed.progress.bytes_read, envelope.size() as u64);
        }
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

    /// A part of the (single) lane's window was read to its end, after every earlier one.
    fn part_done(&mut self, part_end: i64) {
        for lane in 0..self.lanes.len() {
            // What the part gathered goes on now if the lane has room, so that a deadline
            // finds it through the plugin instead of waiting for a full batch (a backfill
            // shard's retry continues after `done_until`, which stops before anything
            // untransformed).
            self.send_if_room(lane);
            let routed = &mut self.lanes[lane];
            routed.done_until = Some(part_end);
            lock(&self.report)
                .done_until
                .insert(routed.input.type_name.clone(), part_end);
        }
    }

    /// Hands the lane's gathered batch on if its queue has room, without waiting; else the
    /// batch stays, to go with the next document or when the source ends.
    fn send_if_room(&mut self, lane: usize) {
        use tokio::sync::mpsc::error::TrySendError;
        let routed = &mut self.lanes[lane];
        if routed.batch.documents.is_empty() {
            return;
        }
        let batch = LaneMessage::Batch(std::mem::take(&mut routed.batch));
        if let Err(
            TrySendError::Full(LaneMessage::Batch(batch))
            | TrySendError::Closed(LaneMessage::Batch(batch)),
        ) = routed.input.sender.try_send(batch)
        {
            routed.batch = batch;
        }
    }

    /// The deadline came: no new work starts. Every lane says how far its window is known to
    /// be read: to the end of its finished parts, never further on the strength of the order
    /// documents came in.
    fn stop_at_deadline(&mut self) {
        self.stopped_by_deadline = true;
        self.halted = true;
        let mut report = lock(&self.report);
        for routed in &self.lanes {
            let type_name = routed.input.type_name.clone();
            let said = match routed.done_until {
                Some(until) => format!(
                    "stopped at the run's deadline: the window is read up to {until} (its finished parts); the next catch-up takes the rest"
                ),
                None => "stopped at the run's deadline before a part of the window was read to its end; the next catch-up reads it again".to_owned(),
            };
            report.type_errors.insert(type_name.clone(), said);
            report.stopped.insert(type_name);
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
        origin: None,
    }
}
