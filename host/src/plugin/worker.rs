//! Calling a plugin: batches of documents in, one checked result per document out.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Engine;

use super::SandboxLimits;
use super::bindings::PluginInput;
use super::load::{LoadedPlugin, PluginEngine};
use super::sandbox::{self, CallError};
use crate::capability::Grants;
use crate::document::{Envelope, check_id_length};
use crate::model::{Cell, Column, Outcome, PluginRow, Row, Stage};
use crate::projection::{self, InputPaths, Projection, SyntaxError};

/// What became of one document.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentResult {
    Rows(Vec<Row>),
    Refused(String),
    Failed {
        stage: Stage,
        error: String,
    },
    /// The run's deadline came before the plugin was done with it: it is not counted, and the
    /// next run reads it again.
    NotTransformed,
}

/// Transforms documents of one type. Owns at most one live instance; it is replaced after a
/// trap, and lazily created.
pub struct TransformWorker {
    engine: Engine,
    limits: SandboxLimits,
    plugin: Arc<LoadedPlugin>,
    grants: Grants,
    instance: Option<sandbox::Instance>,
    /// The largest linear memory any of this worker's instances has grown to.
    peak_memory: usize,
    /// No call starts after it, and a call still running then is interrupted.
    run_deadline: Option<Instant>,
    /// The paths the plugin is handed, when it is handed only some.
    input: Option<Arc<InputPaths>>,
    /// One projection per document of the last batch, kept for their memory.
    projections: Vec<Projection>,
}

/// The memory a kept projection may hold on to between batches.
const PROJECTION_BYTES_KEPT: usize = 64 << 10;

/// One document as the plugin is handed it: its payload whole, or the projection of it.
struct Handed<'a> {
    envelope: &'a Envelope,
    projection: Option<&'a Projection>,
}

impl Handed<'_> {
    /// The payload the plugin gets.
    fn data(&self) -> &str {
        self.projection
            .map_or_else(|| self.envelope.data(), |projection| &projection.text)
    }
}

impl TransformWorker {
    pub(super) fn new(
        engine: Engine,
        limits: SandboxLimits,
        plugin: Arc<LoadedPlugin>,
        grants: Grants,
        projection: bool,
    ) -> Self {
        let input = plugin.input.clone().filter(|_| projection);
        TransformWorker {
            engine,
            limits,
            plugin,
            grants,
            instance: None,
            peak_memory: 0,
            run_deadline: None,
            input,
            projections: Vec::new(),
        }
    }

    /// Stops at the run's deadline: no call starts after it, a call still running then is
    /// interrupted, and the documents it did not finish are [`DocumentResult::NotTransformed`].
    pub fn stop_at(&mut self, run_deadline: Option<Instant>) {
        self.run_deadline = run_deadline;
        // An instance armed for another deadline is not reused.
        self.instance = None;
    }

    /// One result per document, in order. Never fails as a whole: a payload that is not
    /// well-formed JSON, traps and bad rows fail only the documents they hit; past the run's
    /// deadline nothing is transformed.
    pub fn transform(&mut self, documents: &[Envelope]) -> Vec<DocumentResult> {
        if documents.is_empty() {
            return Vec::new();
        }
        if self.past_deadline() {
            return vec![DocumentResult::NotTransformed; documents.len()];
        }
        // Every payload is checked in all its bytes here, projected or not, so that all
        // plugins agree on what is JSON.
        let mut projections = std::mem::take(&mut self.projections);
        let checks: Vec<Result<(), SyntaxError>> = match &self.input {
            Some(paths) => {
                if projections.len() < documents.len() {
                    projections.resize_with(documents.len(), Projection::default);
                }
                documents
                    .iter()
                    .zip(projections.iter_mut())
                    .map(|(document, into)| {
                        projection::check_and_project(document.data(), paths, into)
                    })
                    .collect()
            }
            None => documents
                .iter()
                .map(|document| projection::check(document.data()))
                .collect(),
        };
        let projected = self.input.is_some();
        let handed: Vec<Handed<'_>> = documents
            .iter()
            .enumerate()
            .filter(|(index, _)| checks[*index].is_ok())
            .map(|(index, envelope)| Handed {
                envelope,
                projection: projected.then(|| &projections[index]),
            })
            .collect();
        let mut handed_results = self.transform_handed(&handed).into_iter();
        let results = checks
            .into_iter()
            .map(|check| match check {
                Ok(()) => handed_results
                    .next()
                    .expect("one result per document handed to the plugin"),
                Err(error) => DocumentResult::Failed {
                    stage: Stage::Plugin,
                    error: format!("invalid document: {error}"),
                },
            })
            .collect();
        drop(handed);
        // A projection that grew for one large payload gives its memory back: what a worker
        // keeps between batches stays small whatever the documents.
        for projection in &mut projections {
            if projection.text.capacity() > PROJECTION_BYTES_KEPT {
                *projection = Projection::default();
            }
        }
        self.projections = projections;
        results
    }

    fn past_deadline(&self) -> bool {
        self.run_deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    fn transform_handed(&mut self, documents: &[Handed<'_>]) -> Vec<DocumentResult> {
        if documents.is_empty() {
            return Vec::new();
        }
        if self.past_deadline() {
            return vec![DocumentResult::NotTransformed; documents.len()];
        }
        match self.call(documents) {
            Ok(outcomes) if outcomes.len() == documents.len() => documents
                .iter()
                .zip(outcomes)
                .map(|(document, outcome)| self.document_result(document, outcome))
                .collect(),
            Ok(outcomes) if documents.len() == 1 => vec![DocumentResult::Failed {
                stage: Stage::Validation,
                error: format!("plugin returned {} outcomes for 1 document", outcomes.len()),
            }],
            Ok(_) => self.one_by_one(documents),
            Err(CallError::RunDeadline) => {
                self.instance = None;
                vec![DocumentResult::NotTransformed; documents.len()]
            }
            Err(CallError::Trap(trap)) => {
                // The instance cannot be entered again after a trap.
                self.instance = None;
                if documents.len() == 1 {
                    vec![DocumentResult::Failed {
                        stage: Stage::Trap,
                        error: trap,
                    }]
                } else {
                    tracing::debug!(
                        type_name = %self.plugin.info.type_name,
                        "plugin trapped on a batch of {}; retrying its documents one by one",
                        documents.len()
                    );
                    self.one_by_one(documents)
                }
            }
        }
    }

    fn one_by_one(&mut self, documents: &[Handed<'_>]) -> Vec<DocumentResult> {
        documents
            .iter()
            .flat_map(|document| self.transform_handed(std::slice::from_ref(document)))
            .collect()
    }

    /// Calls the plugin; `Err` is a trap (or an instance that could not be made), with the
    /// plugin's stderr appended so the real reason (a panic message) is kept.
    fn call(&mut self, batch: &[Handed<'_>]) -> Result<Vec<Outcome>, CallError> {
        if self
            .instance
            .as_ref()
            .is_none_or(sandbox::Instance::should_recycle)
        {
            let instance = sandbox::Instance::new(
                &self.engine,
                &self.plugin.pre,
                &self.limits,
                Some(self.grants.clone()),
                &self.plugin.info.type_name,
                self.run_deadline,
            )
            .map_err(|error| CallError::Trap(format!("cannot instantiate plugin: {error:#}")))?;
            self.instance = Some(instance);
        }
        let inputs: Vec<PluginInput<'_>> = batch
            .iter()
            .map(|handed| PluginInput {
                id: &handed.envelope.id,
                timestamp: handed.envelope.timestamp,
                data: handed.data(),
            })
            .collect();
        let instance = self.instance.as_mut().expect("instance was just made");
        let result = instance.transform(&inputs);
        self.peak_memory = self.peak_memory.max(instance.peak_memory());
        result
    }

    /// Turns an outcome into checked rows, or fails the document with the reason.
    fn document_result(&self, handed: &Handed<'_>, outcome: Outcome) -> DocumentResult {
        let document = handed.envelope;
        match outcome {
            Outcome::Refused(reason) => DocumentResult::Refused(reason),
            // A place the plugin names is a place in what it was handed: told as the place in
            // the document that is kept.
            Outcome::Failed(error) => DocumentResult::Failed {
                stage: Stage::Plugin,
                error: match handed.projection {
                    Some(projection) => projection.message_about_original(document.data(), &error),
                    None => error,
                },
            },
            // Zero rows would leave the document counted nowhere.
            Outcome::Rows(rows) if rows.is_empty() => {
                DocumentResult::Refused("the plugin returned no rows".into())
            }
            Outcome::Rows(rows) => match check_rows(document, &self.plugin.info.columns, rows) {
                Ok(rows) => DocumentResult::Rows(rows),
                Err(error) => DocumentResult::Failed {
                    stage: Stage::Validation,
                    error,
                },
            },
        }
    }

    /// The largest linear memory, in bytes, that any instance of this worker has grown to.
    pub fn peak_memory_bytes(&self) -> usize {
        self.peak_memory
    }

    /// The notes the plugin's capability calls left, for the run summary.
    pub fn notes(&self) -> Vec<String> {
        self.grants.notes()
    }
}

/// Checks rows against the declared columns: count, types, and ids.
fn check_rows(
    document: &Envelope,
    columns: &[Column],
    rows: Vec<PluginRow>,
) -> Result<Vec<Row>, String> {
    // Most documents give one row: no set of ids to keep for those.
    let mut ids = (rows.len() > 1).then(std::collections::HashSet::new);
    rows.into_iter()
        .enumerate()
        .map(|(index, row)| {
            if row.cells.len() != columns.len() {
                return Err(format!(
                    "row {index} has {} values for {} declared columns",
                    row.cells.len(),
                    columns.len()
                ));
            }
            let cells: Vec<Cell> = row.cells;
            for (cell, column) in cells.iter().zip(columns) {
                if let Some(kind) = cell.kind()
                    && kind != column.kind
                {
                    return Err(format!(
                        "row {index}: column {} is declared {} but the plugin gave {kind}",
                        column.name, column.kind
                    ));
                }
            }
            let id = row.id.unwrap_or_else(|| document.id.clone());
            check_id_length(&id).map_err(|reason| format!("row {index}: {reason}"))?;
            if let Some(ids) = ids.as_mut()
                && !ids.insert(id.clone())
            {
                return Err(format!("row {index}: id {id} is given to two rows"));
            }
            Ok(Row {
                id,
                timestamp: document.timestamp,
                cells,
            })
        })
        .collect()
}
/// Workers are made by the engine (which loads plugins, and knows nothing of workers).
impl PluginEngine {
    /// A worker that transforms documents of one plugin's type with the given grants.
    pub fn worker(&self, plugin: Arc<LoadedPlugin>, grants: Grants) -> TransformWorker {
        TransformWorker::new(
            self.engine.clone(),
            self.limits.clone(),
            plugin,
            grants,
            self.projection,
        )
    }
}
