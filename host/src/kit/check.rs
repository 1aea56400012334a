//! `plugin check`: a component run over a document file exactly as a run would run it (the same
//! loading checks, sandbox, time budget and memory cap), with each document's outcome, the time
//! and memory it took, and the capability calls it made.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::KitError;
use crate::capability::{Backends, CapabilityHub, EVENT_CODES_TABLE};
use crate::document::Envelope;
use crate::model::{Capability, Cell, Column, Row, Stage};
use crate::plugin::{DocumentResult, PluginEngine, SandboxLimits};

use crate::config::DOCUMENTS_PER_CALL;

/// The documents of a check, read the way `--docs` takes them.
#[derive(Debug, Default)]
pub struct Documents {
    pub envelopes: Vec<Envelope>,
    /// Elements that are not usable envelopes; they fail at the `envelope` stage, as in a run.
    pub unusable: Vec<Failure>,
    /// Whether the file was one bare `data` object, wrapped with a made-up id and the current
    /// time (whose timestamp `--expect` then does not compare).
    pub made_up: bool,
}

/// Reads a document file: a JSON array of envelopes, NDJSON, or one bare `data` object (then
/// wrapped with the id `doc-1` and the current time). A single object with a string `id` and an
/// object `data` is an envelope.
pub fn read_documents(path: &Path) -> Result<Documents, KitError> {
    let text = std::fs::read_to_string(path).map_err(|source| KitError::Read {
        path: path.to_owned(),
        source,
    })?;
    if let Ok(Json::Object(object)) = serde_json::from_str::<Json>(&text)
        && !(object.get("id").is_some_and(Json::is_string)
            && object.get("data").is_some_and(Json::is_object))
    {
        return Ok(Documents {
            // The text as written, so that repeated keys and all reach the plugin.
            envelopes: vec![Envelope::from_parts(
                "doc-1",
                crate::window::unix_now(),
                None,
                text.trim(),
            )],
            unusable: Vec::new(),
            made_up: true,
        });
    }
    let mut documents = Documents::default();
    crate::source::read_files(&[path.to_owned()], |item| {
        match item {
            Ok(envelope) => documents.envelopes.push(envelope),
            Err(error) => documents.unusable.push(Failure {
                id: error.id,
                stage: Stage::Envelope,
                error: error.reason,
            }),
        }
        ControlFlow::Continue(())
    })
    .map_err(|error| KitError::Invalid(crate::error::chain(&error)))?;
    Ok(documents)
}

/// A refused document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub id: String,
    pub reason: String,
}

/// A failed document: where it failed and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub id: Option<String>,
    pub stage: Stage,
    pub error: String,
}

/// The time, memory and capability use of a check, against the limits.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub documents: usize,
    /// What the plugin declared.
    pub capabilities: Vec<String>,
    /// Compiling the component, instantiating it and calling `describe`.
    pub load_ms: f64,
    /// The first call, which also instantiates the plugin in its sandbox.
    pub first_document_us: f64,
    /// The mean and the largest time of one single-document call, after the first.
    pub mean_us_per_document: f64,
    pub max_us_per_document: f64,
    /// The documents again, in calls of 100 as a run makes them: the time per document there.
    pub batched_us_per_document: f64,
    /// What a single-document call may take before it traps.
    pub budget_ms_per_document: u128,
    pub peak_memory_bytes: usize,
    pub memory_limit_bytes: usize,
    /// Calls by capability, answered or not.
    pub capability_calls: BTreeMap<String, u64>,
    /// Denied or unconfigured capabilities, and what an operator must do for them.
    pub notes: Vec<String>,
}

/// What `plugin check --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    #[serde(rename = "type")]
    pub type_name: String,
    pub version: String,
    pub columns: Vec<Column>,
    /// The paths of `data` the plugin is handed (`null`: whole documents).
    pub input_paths: Option<Vec<String>>,
    /// One object per row: `id`, `timestamp` and a value per column.
    pub rows: Vec<Map<String, Json>>,
    pub refused: Vec<Refusal>,
    pub failed: Vec<Failure>,
    pub stats: Stats,
}

/// Loads `wasm` under `limits` and runs it over `documents` with the capabilities of
/// `backends`, one document per call so that each one's time is seen.
pub fn check(
    wasm: &Path,
    documents: &Documents,
    limits: SandboxLimits,
    backends: Backends,
) -> Result<CheckReport, KitError> {
    let engine = PluginEngine::new(limits.clone())?;
    let started = Instant::now();
    let plugin = Arc::new(engine.load(wasm)?);
    let load = started.elapsed();
    let info = plugin.info.clone();
    let hub = Arc::new(CapabilityHub::new(backends.clone()));
    let grants = hub.grants(&info.type_name, &info.capabilities);
    let mut worker = engine.worker(Arc::clone(&plugin), grants.clone());

    let mut rows = Vec::new();
    let mut refused = Vec::new();
    let mut failed = documents.unusable.clone();
    let mut times = Vec::with_capacity(documents.envelopes.len());
    for envelope in &documents.envelopes {
        let started = Instant::now();
        let results = worker.transform(std::slice::from_ref(envelope));
        times.push(started.elapsed());
        for result in results {
            match result {
                DocumentResult::Rows(list) => {
                    rows.extend(list.into_iter().map(|row| row_object(&info.columns, row)));
                }
                DocumentResult::Refused(reason) => refused.push(Refusal {
                    id: envelope.id.clone(),
                    reason,
                }),
                DocumentResult::Failed { stage, error } => failed.push(Failure {
                    id: Some(envelope.id.clone()),
                    stage,
                    error,
                }),
                // `plugin check` sets no deadline.
                DocumentResult::NotTransformed => {}
            }
        }
    }

    let capability_calls = grants.calls();
    // The same documents in the run's batch size, on the same (warm) instance; their outcomes
    // are the ones above, so only the time is kept.
    let started = Instant::now();
    for batch in documents.envelopes.chunks(DOCUMENTS_PER_CALL) {
        worker.transform(batch);
    }
    let batched = started.elapsed();

    let micros = |duration: &Duration| duration.as_secs_f64() * 1e6;
    // The first call instantiates; the others are the steady state.
    let rest = times
        .get(1..)
        .filter(|rest| !rest.is_empty())
        .unwrap_or(&times);
    let mean = if rest.is_empty() {
        0.0
    } else {
        rest.iter().map(micros).sum::<f64>() / rest.len() as f64
    };
    let mut notes = worker.notes();
    notes.extend(ungrantable_tables(&info.capabilities));
    let stats = Stats {
        documents: documents.envelopes.len() + documents.unusable.len(),
        capabilities: info.capabilities.iter().map(ToString::to_string).collect(),
        load_ms: load.as_secs_f64() * 1e3,
        first_document_us: times.first().map_or(0.0, micros),
        mean_us_per_document: mean,
        max_us_per_document: rest.iter().map(micros).fold(0.0, f64::max),
        batched_us_per_document: if documents.envelopes.is_empty() {
            0.0
        } else {
            micros(&batched) / documents.envelopes.len() as f64
        },
        budget_ms_per_document: (limits.call_budget + limits.budget_per_document).as_millis(),
        // After the batched pass too: a call of 100 documents needs more memory than one.
        peak_memory_bytes: worker.peak_memory_bytes(),
        memory_limit_bytes: limits.memory_bytes,
        capability_calls,
        notes,
    };
    Ok(CheckReport {
        type_name: info.type_name,
        version: info.version,
        columns: info.columns,
        input_paths: plugin.input_paths().map(<[String]>::to_vec),
        rows,
        refused,
        failed,
        stats,
    })
}

/// A row as the JSON object `--expect` compares: `id`, `timestamp`, a value per column.
fn row_object(columns: &[Column], row: Row) -> Map<String, Json> {
    let mut object = Map::new();
    object.insert("id".into(), Json::from(row.id));
    object.insert("timestamp".into(), Json::from(row.timestamp));
    for (column, cell) in columns.iter().zip(row.cells) {
        object.insert(column.name.clone(), cell_json(cell));
    }
    object
}

/// A note for each reference table the plugin asks for that no operator setting can grant.
fn ungrantable_tables(capabilities: &[Capability]) -> Vec<String> {
    capabilities
        .iter()
        .filter_map(|capability| match capability {
            Capability::ReferenceTable(table) if table != EVENT_CODES_TABLE => Some(format!(
                "{capability}: no operator setting exists for this table yet; only reference-table({EVENT_CODES_TABLE}) can be granted"
            )),
            _ => None,
        })
        .collect()
}

fn cell_json(cell: Cell) -> Json {
    match cell {
        Cell::Null => Json::Null,
        Cell::Text(text) => Json::from(text),
        Cell::Int(int) => Json::from(int),
        Cell::Float(float) => Json::from(float),
        Cell::Bool(flag) => Json::from(flag),
    }
}

/// The differences between a report and the expected outcomes: either an array of rows, or an
/// object with `rows` and optionally `refused` (compared whole) and `failed` (compared by id
/// and stage: error texts differ between SDKs). Numbers compare by value (`2` equals `2.0`).
/// `timestamp` is not compared when `made_up` (a bare data object was given the current time).
pub fn compare(report: &CheckReport, expected: &Json, made_up: bool) -> Vec<String> {
    let mut differences = Vec::new();
    let (rows, refused, failed) = match expected {
        Json::Array(rows) => (Some(rows), None, None),
        Json::Object(object) => (
            object.get("rows").and_then(Json::as_array),
            object.get("refused").and_then(Json::as_array),
            object.get("failed").and_then(Json::as_array),
        ),
        _ => {
            return vec!["the expected file is neither an array of rows nor an object".into()];
        }
    };
    if let Some(rows) = rows {
        if rows.len() != report.rows.len() {
            differences.push(format!(
                "{} rows, expected {}",
                report.rows.len(),
                rows.len()
            ));
        }
        for (index, (actual, expected)) in report.rows.iter().zip(rows).enumerate() {
            let Some(expected) = expected.as_object() else {
                differences.push(format!("expected row {index} is not an object"));
                continue;
            };
            let mut keys: Vec<&String> = actual.keys().chain(expected.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                if made_up && key == "timestamp" {
                    continue;
                }
                let (a, e) = (actual.get(key), expected.get(key));
                if !same(a, e) {
                    differences.push(format!(
                        "row {index} ({}): {key} is {}, expected {}",
                        actual.get("id").map_or("?".into(), Json::to_string),
                        a.map_or("missing".into(), Json::to_string),
                        e.map_or("missing".into(), Json::to_string),
                    ));
                }
            }
        }
    }
    if let Some(refused) = refused {
        let actual = serde_json::to_value(&report.refused).unwrap_or_default();
        if actual.as_array() != Some(refused) {
            differences.push(format!(
                "refused {actual}, expected {}",
                Json::from(refused.clone())
            ));
        }
    }
    if let Some(failed) = failed {
        let key = |id: Option<&Json>, stage: Option<&Json>| {
            format!(
                "{}@{}",
                id.map_or("null".into(), Json::to_string),
                stage.and_then(Json::as_str).unwrap_or("?")
            )
        };
        let actual: Vec<String> = report
            .failed
            .iter()
            .map(|failure| {
                key(
                    Some(&Json::from(failure.id.clone())),
                    Some(&Json::from(failure.stage.as_str())),
                )
            })
            .collect();
        let expected: Vec<String> = failed
            .iter()
            .map(|failure| key(failure.get("id"), failure.get("stage")))
            .collect();
        if actual != expected {
            differences.push(format!(
                "failed {}, expected {}",
                actual.join(", "),
                expected.join(", ")
            ));
        }
    }
    differences
}

fn same(actual: Option<&Json>, expected: Option<&Json>) -> bool {
    match (actual, expected) {
        (Some(Json::Number(a)), Some(Json::Number(e))) => a == e || a.as_f64() == e.as_f64(),
        (a, e) => a == e,
    }
}

impl CheckReport {
    /// The report as a table, for a person: the plugin, each document's outcome, the figures.
    pub fn table(&self) -> String {
        let mut out = String::new();
        self.write_header(&mut out);
        self.write_outcomes(&mut out);
        self.stats.write_figures(&mut out, self);
        out
    }

    fn write_header(&self, out: &mut String) {
        use std::fmt::Write;
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|column| format!("{} {}", column.name, column.kind))
            .collect();
        let _ = writeln!(out, "{} {}", self.type_name, self.version);
        let _ = writeln!(
            out,
            "  columns: id text, timestamp int, {}",
            columns.join(", ")
        );
        if !self.stats.capabilities.is_empty() {
            let _ = writeln!(
                out,
                "  capabilities: {}",
                self.stats.capabilities.join(", ")
            );
        }
        match &self.input_paths {
            Some(paths) => {
                let _ = writeln!(out, "  reads (input paths): {}", paths.join(", "));
            }
            None => {
                let _ = writeln!(out, "  reads: whole documents");
            }
        }
        let _ = writeln!(out);
    }

    /// One line per row, refusal and failure.
    fn write_outcomes(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(out, "{:<26} {:<8} detail", "id", "outcome");
        for row in &self.rows {
            let id = row.get("id").and_then(Json::as_str).unwrap_or("?");
            let cells: Vec<String> = self
                .columns
                .iter()
                .map(|column| {
                    format!(
                        "{}={}",
                        column.name,
                        row.get(&column.name).unwrap_or(&Json::Null)
                    )
                })
                .collect();
            let _ = writeln!(out, "{id:<26} {:<8} {}", "row", cells.join(" "));
        }
        for refusal in &self.refused {
            let _ = writeln!(
                out,
                "{:<26} {:<8} {}",
                refusal.id, "refused", refusal.reason
            );
        }
        for failure in &self.failed {
            let _ = writeln!(
                out,
                "{:<26} {:<8} {}: {}",
                failure.id.as_deref().unwrap_or("(no id)"),
                "failed",
                failure.stage.as_str(),
                failure.error
            );
        }
    }
}

impl Stats {
    /// Counts, times, memory, capability calls and notes.
    fn write_figures(&self, out: &mut String, report: &CheckReport) {
        use std::fmt::Write;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "documents: {} ({} rows, {} refused, {} failed)",
            self.documents,
            report.rows.len(),
            report.refused.len(),
            report.failed.len()
        );
        let _ = writeln!(out, "load: {:.1} ms", self.load_ms);
        let _ = writeln!(
            out,
            "time per document: first {:.0} µs (with instantiation), then mean {:.0} µs, max {:.0} µs; budget {} ms",
            self.first_document_us,
            self.mean_us_per_document,
            self.max_us_per_document,
            self.budget_ms_per_document
        );
        let _ = writeln!(
            out,
            "time per document in calls of {DOCUMENTS_PER_CALL}: {:.1} µs",
            self.batched_us_per_document
        );
        let _ = writeln!(
            out,
            "peak instance memory: {:.1} MiB of {} MiB",
            self.peak_memory_bytes as f64 / f64::from(1 << 20),
            self.memory_limit_bytes >> 20
        );
        if self.capability_calls.is_empty() {
            let _ = writeln!(out, "capability calls: none");
        } else {
            let calls: Vec<String> = self
                .capability_calls
                .iter()
                .map(|(capability, count)| format!("{capability} {count}"))
                .collect();
            let _ = writeln!(out, "capability calls: {}", calls.join(", "));
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
    }
}
