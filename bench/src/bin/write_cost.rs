//! Write cost: the sink alone, writing the GitHub plugin's rows as the job's writer hands them
//! over (the rows of 4 MiB document batches gathered until a write's 2,000 rows), so that the
//! client's CPU per row can be measured apart from the fetch, the scan and the plugin.
//!
//!     write-cost SAMPLE.json github.wasm ROWS DATABASE_URL TABLE
//!
//! The sample's documents are transformed once (not measured), then their rows are repeated
//! with fresh ids until there are `ROWS`. The table is created when missing: run it once on a
//! dropped table for a first run, and again for an all-duplicates rerun. Prints one JSON object:
//! the counts, this process's CPU (every thread: SQLite writes on a thread of its own) per row
//! while writing, and the wall time.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use batch_job_aurora::capability::{Backends, CapabilityHub};
use batch_job_aurora::model::Row;
use batch_job_aurora::plugin::{DocumentResult, PluginEngine, SandboxLimits};
use batch_job_aurora::sink::{OnExisting, Sink, TableSpec};
use batch_job_aurora::{DOCUMENTS_PER_CALL, RunConfig, SourceSpec};
use bench_plugin_cost::{process_cpu, read_envelopes};

/// The router's batch: documents are handed on in batches of about this many bytes.
const BATCH_BYTES: usize = 4 << 20;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [sample, wasm, rows, url, table_name] = &args[..] else {
        bail!("usage: write-cost SAMPLE.json github.wasm ROWS DATABASE_URL TABLE");
    };
    let wanted: usize = rows.parse().context("ROWS")?;
    let envelopes = read_envelopes(sample)?;
    let engine = PluginEngine::new(SandboxLimits::default())?;
    let plugin = Arc::new(engine.load(Path::new(wasm))?);
    let hub = Arc::new(CapabilityHub::new(Backends::default()));
    let columns = plugin.info.columns.clone();
    let mut worker = engine.worker(plugin, hub.grants("GithubType", &[]));

    // Each document's rows with the document's size, as the router weighs its batches.
    let mut sampled: Vec<(usize, Vec<Row>)> = Vec::new();
    for batch in envelopes.chunks(DOCUMENTS_PER_CALL) {
        for (envelope, result) in batch.iter().zip(worker.transform(batch)) {
            if let DocumentResult::Rows(rows) = result {
                sampled.push((envelope.data().len(), rows));
            }
        }
    }
    ensure!(!sampled.is_empty(), "{sample} gives no rows");
    let writes = writes_as_the_job_makes_them(&sampled, wanted);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let figures = runtime.block_on(async {
        let sink = Sink::connect(url).await?;
        let table = TableSpec::new(table_name, &columns)?;
        sink.prepare(&table).await?;
        let (cpu, wall) = (process_cpu(), Instant::now());
        let (mut inserted, mut duplicates, mut refused) = (0, 0, 0);
        for rows in &writes {
            let outcome = sink.write(&table, rows, OnExisting::Skip, false).await?;
            inserted += outcome.inserted;
            duplicates += outcome.duplicates;
            refused += outcome.refused.len();
        }
        let (cpu, wall) = (process_cpu() - cpu, wall.elapsed());
        sink.close().await;
        anyhow::Ok(serde_json::json!({
            "rows": wanted,
            "writes": writes.len(),
            "inserted": inserted,
            "duplicates": duplicates,
            "refused": refused,
            "client_cpu_us_per_row": cpu.as_secs_f64() * 1e6 / wanted as f64,
            "wall_s": wall.as_secs_f64(),
            "rows_per_s": wanted as f64 / wall.as_secs_f64(),
        }))
    })?;
    println!("{figures}");
    Ok(())
}

/// `wanted` rows from the sample's, ids made unique, in writes as the job's writer makes them:
/// rows gathered batch by batch until a write's worth.
fn writes_as_the_job_makes_them(sampled: &[(usize, Vec<Row>)], wanted: usize) -> Vec<Vec<Row>> {
    let defaults = RunConfig::new(SourceSpec::Files(".".into()), "", ".".into());
    let rows_per_write = defaults.run.rows_per_write;
    let (mut writes, mut pending, mut batch_bytes, mut made) = (Vec::new(), Vec::new(), 0, 0);
    for (bytes, rows) in sampled.iter().cycle() {
        if made == wanted {
            break;
        }
        for row in rows.iter().take(wanted - made) {
            let mut row = row.clone();
            // As long as the sample's id, so that rows weigh what they do in production.
            row.id = format!("{made:0>width$}", width = row.id.len().max(8));
            pending.push(row);
            made += 1;
        }
        batch_bytes += bytes;
        if batch_bytes >= BATCH_BYTES || made == wanted {
            batch_bytes = 0;
            if pending.len() >= rows_per_write || made == wanted {
                writes.push(std::mem::take(&mut pending));
            }
        }
    }
    writes
}
