//! Plugin cost: the GitHub plugin's transform in wasm, under the production sandbox (the default
//! limits, so the epoch deadline is on), handed the projection of each document (the host's
//! check and cut included) and handed whole documents (`--no-projection`), against the same
//! crate compiled natively and called through the SDK's native entry points on whole
//! documents. All get the same documents in batches of the production size and must give the
//! same rows.
//!
//!     bench-plugin-cost SAMPLE.json github.wasm [ROUNDS]
//!
//! `SAMPLE.json` is a JSON array of `GithubType` envelopes (`cargo xtask bench` writes one).
//! Prints one JSON object: µs of CPU per document for each (this thread's CPU time, best of the
//! rounds), and the wall time beside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use aurora_plugin_sdk::{Document, Outcome, Value};
use batch_job_aurora::DOCUMENTS_PER_CALL;
use batch_job_aurora::capability::{Backends, CapabilityHub};
use batch_job_aurora::model::Cell;
use batch_job_aurora::plugin::{DocumentResult, PluginEngine, SandboxLimits};
use bench_plugin_cost::{read_envelopes, thread_cpu};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (sample, wasm, rounds) = match &args[..] {
        [sample, wasm] => (sample, wasm, 5),
        [sample, wasm, rounds] => (sample, wasm, rounds.parse().context("ROUNDS")?),
        _ => bail!("usage: bench-plugin-cost SAMPLE.json github.wasm [ROUNDS]"),
    };
    let envelopes = read_envelopes(sample)?;
    // The production batch size of a plugin call.
    let per_call = DOCUMENTS_PER_CALL;

    let engine = PluginEngine::new(SandboxLimits::default())?;
    let plugin = Arc::new(engine.load(std::path::Path::new(wasm))?);
    ensure!(
        plugin.info.type_name == "GithubType",
        "{wasm} is the plugin of {}, not GithubType",
        plugin.info.type_name
    );
    let hub = Arc::new(CapabilityHub::new(Backends::default()));
    let mut worker = engine.worker(Arc::clone(&plugin), hub.grants("GithubType", &[]));
    let whole_engine = PluginEngine::new(SandboxLimits::default())?.with_projection(false);
    let whole_plugin = Arc::new(whole_engine.load(std::path::Path::new(wasm))?);
    let mut whole_worker = whole_engine.worker(whole_plugin, hub.grants("GithubType", &[]));
    let (_, native) = github::__aurora_plugin_entry_points();

    let wasm_call = |worker: &mut batch_job_aurora::plugin::TransformWorker| {
        let mut results = Vec::with_capacity(envelopes.len());
        for batch in envelopes.chunks(per_call) {
            results.extend(worker.transform(batch));
        }
        results
    };
    // What the host hands a plugin: owned documents, as the wasm call copies them in.
    let native_call = || {
        let mut results = Vec::with_capacity(envelopes.len());
        for batch in envelopes.chunks(per_call) {
            let documents = batch
                .iter()
                .map(|envelope| Document {
                    id: envelope.id.clone(),
                    timestamp: envelope.timestamp,
                    data: envelope.data().to_owned(),
                })
                .collect();
            results.extend(native(documents));
        }
        results
    };

    // The same rows from both, or the comparison means nothing.
    let from_wasm: Vec<String> = wasm_call(&mut worker).iter().map(wasm_text).collect();
    let from_native: Vec<String> = native_call().iter().map(native_text).collect();
    let from_whole: Vec<String> = wasm_call(&mut whole_worker).iter().map(wasm_text).collect();
    ensure!(
        from_wasm.len() == from_native.len(),
        "wasm and native give different counts"
    );
    ensure!(
        from_wasm == from_whole,
        "wasm gives other results with projection than without"
    );
    if let Some((index, (wasm, native))) = from_wasm
        .iter()
        .zip(&from_native)
        .enumerate()
        .find(|(_, (wasm, native))| wasm != native)
    {
        bail!("document {index}: wasm gives {wasm:?}, native {native:?}");
    }
    let rows = from_wasm.iter().filter(|r| r.starts_with("row")).count();

    // Best of the rounds, in this thread's CPU time (the wasm runs on the calling thread), so
    // that other load on the machine does not count; wall time beside it.
    let mut wasm_best = (Duration::MAX, Duration::MAX);
    let mut native_best = (Duration::MAX, Duration::MAX);
    let mut whole_best = (Duration::MAX, Duration::MAX);
    let best = |best: &mut (Duration, Duration), cpu: Duration, wall: Duration| {
        *best = (best.0.min(cpu), best.1.min(wall));
    };
    for _ in 0..rounds {
        let (cpu, wall) = (thread_cpu(), Instant::now());
        std::hint::black_box(wasm_call(&mut worker));
        best(&mut wasm_best, thread_cpu() - cpu, wall.elapsed());
        let (cpu, wall) = (thread_cpu(), Instant::now());
        std::hint::black_box(native_call());
        best(&mut native_best, thread_cpu() - cpu, wall.elapsed());
        let (cpu, wall) = (thread_cpu(), Instant::now());
        std::hint::black_box(wasm_call(&mut whole_worker));
        best(&mut whole_best, thread_cpu() - cpu, wall.elapsed());
    }
    let per_document = |elapsed: Duration| elapsed.as_secs_f64() * 1e6 / envelopes.len() as f64;
    let bytes: usize = envelopes.iter().map(|e| e.data().len()).sum();
    let result = serde_json::json!({
        "documents": envelopes.len(),
        "rows": rows,
        "average_data_bytes": bytes / envelopes.len(),
        "documents_per_call": per_call,
        "rounds": rounds,
        "wasm_us_per_document": per_document(wasm_best.0),
        "wasm_whole_documents_us_per_document": per_document(whole_best.0),
        "native_us_per_document": per_document(native_best.0),
        "wasm_speed_of_native": native_best.0.as_secs_f64() / wasm_best.0.as_secs_f64(),
        "wasm_wall_us_per_document": per_document(wasm_best.1),
        "native_wall_us_per_document": per_document(native_best.1),
    });
    println!("{result}");
    Ok(())
}

fn wasm_text(result: &DocumentResult) -> String {
    match result {
        DocumentResult::Rows(rows) => {
            let cells: Vec<String> = rows
                .iter()
                .flat_map(|row| row.cells.iter().map(cell_text))
                .collect();
            format!("row {}", cells.join("|"))
        }
        DocumentResult::Refused(reason) => format!("refused {reason}"),
        DocumentResult::Failed { error, .. } => format!("failed {error}"),
        // Only a run's deadline leaves a document untransformed; the benchmark sets none.
        DocumentResult::NotTransformed => "not transformed".into(),
    }
}

fn cell_text(cell: &Cell) -> String {
    match cell {
        Cell::Null => "null".into(),
        Cell::Text(text) => format!("t:{text}"),
        Cell::Int(value) => format!("i:{value}"),
        Cell::Float(value) => format!("f:{value}"),
        Cell::Bool(value) => format!("b:{value}"),
    }
}

fn native_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Rows(rows) => {
            let cells: Vec<String> = rows
                .iter()
                .flat_map(|row| row.values.iter().map(value_text))
                .collect();
            format!("row {}", cells.join("|"))
        }
        Outcome::Refused(reason) => format!("refused {reason}"),
        Outcome::Failed(error) => format!("failed {error}"),
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Text(text) => format!("t:{text}"),
        Value::Int(value) => format!("i:{value}"),
        Value::Float(value) => format!("f:{value}"),
        Value::Boolean(value) => format!("b:{value}"),
    }
}
