//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use batch_job_aurora::plugin::SandboxLimits;
use batch_job_aurora::source::SourceSpec;
use batch_job_aurora::{RunConfig, RunSummary};
use serde_json::{Map, Value, json};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};
use tempfile::TempDir;

pub use integration_tests::{wasm, workspace_root};

/// A folder holding copies of the named built plugins.
pub fn plugin_folder(names: &[&str]) -> TempDir {
    let folder = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(wasm(name), folder.path().join(format!("{name}.wasm"))).unwrap();
    }
    folder
}

/// A run config with short sandbox budgets, so that the deliberately bad plugins fail fast.
pub fn config(source: &Path, database: &Path, plugins: &Path) -> RunConfig {
    let mut config = RunConfig::new(
        SourceSpec::Files(source.to_owned()),
        format!("sqlite://{}", database.display()),
        plugins.to_owned(),
    );
    config.limits = SandboxLimits {
        memory_bytes: 64 << 20,
        call_budget: Duration::from_millis(300),
        budget_per_document: Duration::from_millis(10),
    };
    config
}

pub async fn run(config: RunConfig) -> RunSummary {
    batch_job_aurora::run(config).await.unwrap()
}

/// The bundled examples' lookups as backends.
pub fn example_backends() -> batch_job_aurora::capability::Backends {
    use batch_job_aurora::capability::*;
    let lookups = workspace_root().join("examples/lookups");
    Backends {
        slack: Some(std::sync::Arc::new(
            ChannelMapFile::load(&lookups.join("slack-channels.json")).unwrap(),
        )),
        references: [(
            EVENT_CODES_TABLE.to_owned(),
            std::sync::Arc::new(
                ReferenceFile::load(&lookups.join("event-codes.json"), EVENT_CODES_KEY).unwrap(),
            ) as std::sync::Arc<dyn ReferenceTable>,
        )]
        .into(),
    }
}

/// Every row of a SQLite table as JSON objects, ordered as the query says.
pub async fn query(database: &Path, sql: &str) -> Vec<Map<String, Value>> {
    let pool = SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .map(|column| {
                    let index = column.ordinal();
                    let raw = row.try_get_raw(index).unwrap();
                    let value = if raw.is_null() {
                        Value::Null
                    } else {
                        match raw.type_info().name() {
                            "INTEGER" => json!(row.get::<i64, _>(index)),
                            "REAL" => json!(row.get::<f64, _>(index)),
                            _ => json!(row.get::<String, _>(index)),
                        }
                    };
                    (column.name().to_owned(), value)
                })
                .collect()
        })
        .collect()
}

/// Compares `actual` with the golden file `tests/data/<name>`; `BLESS=1` rewrites the file.
pub fn check_golden(name: &str, actual: &Value) {
    let path: PathBuf = workspace_root().join("tests/data").join(name);
    let actual_text = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &actual_text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run with BLESS=1 to create it",
            path.display()
        )
    });
    let expected: Value = serde_json::from_str(&expected).unwrap();
    assert!(
        &expected == actual,
        "{} differs from the run (BLESS=1 re-blesses it). Actual:\n{actual_text}",
        path.display()
    );
}

/// Writes documents as NDJSON into a file of a fresh folder.
pub fn ndjson(documents: &[Value]) -> (TempDir, PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("documents.ndjson");
    let text: String = documents
        .iter()
        .map(|document| format!("{document}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    (folder, path)
}
