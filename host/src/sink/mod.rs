//! Where rows, failed documents and the run log go. The only module that knows SQL.
//!
//! Invariants:
//! - identifiers reach SQL only after [`crate::model::is_safe_identifier`], and quoted;
//! - a row whose id is already stored is counted as a duplicate and never updated;
//! - inserted + duplicates + failed always equals the rows handed in, exactly, on every engine;
//! - a value the database would silently change (MySQL truncation, NULL turned into a default)
//!   fails its row instead;
//! - a batch is one transaction: fully in, or retried after a transient error on a fresh
//!   connection;
//! - a document whose rows the database refuses is kept in the dead-letter table.

#[macro_use]
mod common;
mod dead_letter;
mod insert;
mod mysql;
mod postgres;
mod retry;
mod run_log;
mod schema;
mod sqlite;

use backon::Retryable;

use crate::model::{ColumnType, FailedDocument, Row};
use crate::summary::TypeSummary;

pub use insert::{InsertOutcome, RefusedRow, WriteError};
pub use run_log::{
    LoggedWindow, RUN_MARGIN_SECS, RUN_WITHOUT_DEADLINE_SECS, RunStart, RunStatus, Watermark,
    loaded_spans, watermark,
};
pub use schema::{Dialect, PrepareReport, SchemaChange, TableSpec};

/// The table failed documents are kept in, in the same database as the rows.
pub const DEAD_LETTER_TABLE: &str = "batch_job_failed_documents";
/// The table that records each run of each type: window, counts, status.
pub const RUN_LOG_TABLE: &str = "batch_job_runs";

/// Why the sink could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("unsupported database URL {0:?}: expected sqlite://PATH, mysql://… or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot open database {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0:?} is not a safe SQL identifier (letters, digits and _ only)")]
    UnsafeIdentifier(String),
    #[error(
        "table {table}: column {column} is {found} in the database but the plugin declares {declared}; nothing written for this type"
    )]
    IncompatibleColumn {
        table: String,
        column: String,
        found: String,
        declared: ColumnType,
    },
    #[error("table {table}: {operation}")]
    Database {
        table: String,
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

impl SinkError {
    /// Whether the database refused the login (wrong password, expired token): the credentials
    /// are worth reading again.
    pub fn is_login_failure(&self) -> bool {
        let (SinkError::Connect { source, .. } | SinkError::Database { source, .. }) = self else {
            return false;
        };
        let Some(database) = source.as_database_error() else {
            return false;
        };
        // MySQL 1045 (access denied) has SQLSTATE 28000, PostgreSQL's are 28000 and 28P01.
        database
            .code()
            .is_some_and(|code| code == "28000" || code == "28P01")
    }

    /// Whether the database could not be reached or used (as opposed to a table that does
    /// not fit, or a URL that is not one).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SinkError::Connect { .. } | SinkError::Database { .. })
    }
}

/// A database to write to.
#[derive(Debug)]
pub enum Sink {
    Sqlite(sqlite::SqliteSink),
    Mysql(mysql::MysqlSink),
    Postgres(postgres::PostgresSink),
}

/// What each engine does in its own SQL; [`Sink`] holds one and adds what all share (retries,
/// statement sizing, fitting dead letters). Dispatch is by enum, not `dyn`: three engines, all
/// known here.
pub(crate) trait Engine {
    /// The dead-letter and run-log tables' DDL, with their names.
    fn bookkeeping_ddl(&self) -> [(&'static str, &'static str); 2];
    /// How this engine spells a type's table.
    fn dialect(&self) -> Dialect;
    /// Whether an existing column's type, as the database names it, holds `kind`'s values.
    fn compatible(&self, found: &str, kind: ColumnType) -> bool;
    /// Rows per statement, under the engine's limit on bound parameters.
    fn rows_per_statement(&self, table: &TableSpec) -> usize;
    /// The largest statement (its bound values) the engine takes.
    fn max_statement_bytes(&self) -> usize;
    /// The columns of `table` with their types; none when it does not exist.
    async fn existing_columns(&self, table: &str) -> Result<Vec<(String, String)>, sqlx::Error>;
    /// Rows in one transaction; how many were inserted (duplicates are skipped).
    async fn insert_chunk(&self, table: &TableSpec, rows: &[Row]) -> Result<u64, WriteError>;
    async fn execute(&self, sql: &str) -> Result<(), sqlx::Error>;
    async fn record_failures(
        &self,
        run_id: &str,
        failures: &[FailedDocument],
    ) -> Result<(), sqlx::Error>;
    async fn run_started(&self, start: RunStart<'_>) -> Result<(), sqlx::Error>;
    async fn run_finished(
        &self,
        run_id: &str,
        type_name: &str,
        counts: &TypeSummary,
        status: RunStatus,
        done_until: Option<i64>,
    ) -> Result<(), sqlx::Error>;
    async fn run_interrupted(&self, run_id: &str, reason: &str) -> Result<(), sqlx::Error>;
    async fn expire_running(&self, now: i64) -> Result<u64, sqlx::Error>;
    async fn logged_windows(&self, type_name: &str) -> Result<Vec<LoggedWindow>, sqlx::Error>;
    async fn failed_attempts(&self, type_name: &str, window_from: i64) -> Result<u64, sqlx::Error>;
    async fn close(&self);
}

/// Dispatches to the engine.
macro_rules! engine {
    ($sink:expr, $engine:ident => $body:expr) => {
        match $sink {
            Sink::Sqlite($engine) => $body,
            Sink::Mysql($engine) => $body,
            Sink::Postgres($engine) => $body,
        }
    };
}
pub(crate) use engine;

impl Sink {
    /// Opens the database at `url` (`sqlite://PATH`, `mysql://…`, `postgres://…`; TLS as the
    /// URL says), creating a SQLite file when missing, and makes sure the dead-letter and run
    /// log tables exist.
    pub async fn connect(url: &str) -> Result<Sink, SinkError> {
        crate::secrets::register_url(url);
        let sink = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Sink::Sqlite(sqlite::SqliteSink::open(url, path).await?)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Sink::Mysql(mysql::MysqlSink::open(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Sink::Postgres(postgres::PostgresSink::open(url).await?)
        } else {
            return Err(SinkError::UnsupportedUrl(crate::http::redact(url)));
        };
        for (table, ddl) in engine!(&sink, engine => engine.bookkeeping_ddl()) {
            sink.retrying(table, "create", || async {
                engine!(&sink, engine => engine.execute(ddl).await)
            })
            .await?;
        }
        sink.upgrade_run_log().await?;
        Ok(sink)
    }

    /// Runs `operation` again after transient errors, with backoff.
    async fn retrying<T, F, Fut>(
        &self,
        table: &str,
        what: &'static str,
        operation: F,
    ) -> Result<T, SinkError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        operation
            .retry(retry::backoff())
            .when(retry::is_transient)
            .notify(|error, delay| {
                tracing::warn!(table, "{what} failed, retrying in {delay:?}: {error}");
            })
            .await
            .map_err(|source| SinkError::Database {
                table: table.to_owned(),
                operation: what,
                source,
            })
    }

    /// Checks that the database still answers: a pooled connection is pinged (a broken one is
    /// replaced by a new one), so a warm process learns at once that the database went away.
    pub async fn health_check(&self) -> Result<(), SinkError> {
        engine!(self, engine => engine.execute("SELECT 1").await).map_err(|source| {
            SinkError::Database {
                table: "-".into(),
                operation: "health check",
                source,
            }
        })
    }

    pub async fn close(&self) {
        engine!(self, engine => engine.close().await)
    }
}

/// Opens and closes one connection to `url` (with `options`, made from it), failing with the
/// real cause when it cannot.
async fn probe<C: sqlx::Connection>(url: &str, options: &C::Options) -> Result<(), SinkError> {
    let connect_error = |source| SinkError::Connect {
        url: crate::http::redact(url),
        source,
    };
    let connection =
        tokio::time::timeout(std::time::Duration::from_secs(15), C::connect_with(options))
            .await
            .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
            .map_err(connect_error)?;
    let _ = connection.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_messages() {
        use crate::http::redact as redact_url;
        assert_eq!(
            redact_url("mysql://u:secret@h:3306/db"),
            "mysql://***@h:3306/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
