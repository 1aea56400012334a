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

/// The database engines the sink tests run against. MariaDB and PostgreSQL are the ones
/// `scripts/services.sh` starts on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Mysql,
    Postgres,
}

pub const ENGINES: [Engine; 3] = [Engine::Sqlite, Engine::Mysql, Engine::Postgres];

/// A fresh, empty database of one engine, named after the test.
pub struct TestDatabase {
    pub engine: Engine,
    pub name: String,
    pub url: String,
    _folder: Option<TempDir>,
}

impl TestDatabase {
    pub async fn new(engine: Engine, test: &str) -> TestDatabase {
        let name = format!("bja_{test}_{}", std::process::id());
        match engine {
            Engine::Sqlite => {
                let folder = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/{name}.db", folder.path().display());
                TestDatabase {
                    engine,
                    name,
                    url,
                    _folder: Some(folder),
                }
            }
            Engine::Mysql => {
                let admin = "mysql://root@127.0.0.1:3306/test";
                let mut connection = <sqlx::MySqlConnection as sqlx::Connection>::connect(admin)
                    .await
                    .unwrap();
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
                )))
                .execute(&mut connection)
                .await
                .unwrap();
                let url = format!("mysql://root@127.0.0.1:3306/{name}");
                TestDatabase {
                    engine,
                    name: name.clone(),
                    url,
                    _folder: None,
                }
            }
            Engine::Postgres => {
                let admin = "postgres://postgres@127.0.0.1:5432/test";
                let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
                    .await
                    .unwrap();
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut connection)
                .await
                .unwrap();
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut connection)
                    .await
                    .unwrap();
                let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
                TestDatabase {
                    engine,
                    name: name.clone(),
                    url,
                    _folder: None,
                }
            }
        }
    }

    /// Runs statements (separated by `;`) on the database.
    pub async fn execute(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        match self.engine {
            Engine::Sqlite => {
                let options = self
                    .url
                    .parse::<sqlx::sqlite::SqliteConnectOptions>()
                    .unwrap();
                let pool = SqlitePoolOptions::new()
                    .connect_with(options.create_if_missing(true))
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Engine::Mysql => {
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .connect(&self.url)
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Engine::Postgres => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .connect(&self.url)
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// One integer from a query.
    pub async fn count(&self, sql: &str) -> i64 {
        self.try_count(sql).await.unwrap()
    }

    /// One integer from a query, or the error (a table that does not exist yet).
    pub async fn try_count(&self, sql: &str) -> Result<i64, sqlx::Error> {
        let cast = if self.engine == Engine::Mysql {
            "SIGNED"
        } else {
            "BIGINT"
        };
        let sql = AssertSqlSafe(format!("SELECT CAST(({sql}) AS {cast})"));
        match self.engine {
            Engine::Sqlite => {
                let pool = SqlitePoolOptions::new().connect(&self.url).await?;
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await;
                pool.close().await;
                n
            }
            Engine::Mysql => {
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .connect(&self.url)
                    .await?;
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await;
                pool.close().await;
                n
            }
            Engine::Postgres => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .connect(&self.url)
                    .await?;
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await;
                pool.close().await;
                n
            }
        }
    }

    /// The number of rows of `table` that meet `condition`.
    pub async fn count_rows(&self, table: &str, condition: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM {} WHERE {condition}",
            self.quote(table)
        ))
        .await
    }

    /// Quotes an identifier for this engine.
    pub fn quote(&self, name: &str) -> String {
        match self.engine {
            Engine::Mysql => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }
}

/// A run config writing to a test database.
pub fn config_for(source: &Path, database: &TestDatabase, plugins: &Path) -> RunConfig {
    let mut config = config(source, Path::new("unused"), plugins);
    config.database_url = database.url.clone();
    config
}

/// `count` MisbehavingType documents that each give one row, timestamps from `first`.
pub fn ok_documents(prefix: &str, count: usize, first: i64, step: i64) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({"id": format!("{prefix}{i:08}"), "timestamp": first + i as i64 * step,
                   "type": "MisbehavingType", "data": {"action": "ok"}})
        })
        .collect()
}
