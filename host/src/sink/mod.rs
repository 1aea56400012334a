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
mod coverage;
mod dead_letter;
mod insert;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
pub mod replay;
mod retry;
mod run_log;
mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(not(any(feature = "sqlite", feature = "mysql", feature = "postgres")))]
compile_error!(
    "batch-job-aurora needs at least one database engine: --features sqlite, mysql or postgres"
);

use std::time::{Duration, Instant};

use backon::Retryable;

use crate::model::{ColumnType, FailedDocument, Row};
use crate::summary::TypeSummary;

pub use coverage::{DeadLetterCount, RunRecord};
pub use insert::{InsertOutcome, OnExisting, RefusedRow, RowFate, WriteError};
#[cfg(feature = "postgres")]
pub use postgres::DDL_LOCK as POSTGRES_DDL_LOCK;
pub use run_log::{
    LoggedWindow, RUN_MARGIN_SECS, RUN_WITHOUT_DEADLINE_SECS, RunStart, RunStatus, Watermark,
    expired, holes, loaded_spans, spans_since, watermark,
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
    #[error(transparent)]
    Missing(#[from] crate::features::Missing),
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
    #[error(
        "table {table} has no primary key or unique index on id, so a rerun would store its rows again (or every row would fail); nothing written for this type; fix it with: {fix}"
    )]
    NoUniqueId { table: String, fix: String },
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

    /// Whether the table does not fit its plugin: that type stops, writing nothing, and the
    /// others go on.
    pub fn is_table_misfit(&self) -> bool {
        matches!(
            self,
            SinkError::IncompatibleColumn { .. } | SinkError::NoUniqueId { .. }
        )
    }

    /// Whether the database could not be reached or used (as opposed to a table that does
    /// not fit, or a URL that is not one).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SinkError::Connect { .. } | SinkError::Database { .. })
    }
}

/// A database to write to, with the deadline of the run it serves.
#[derive(Debug)]
pub struct Sink {
    engine: Kind,
    /// When the current run must end (`None`: no deadline). Every wait of the sink, a lock,
    /// a statement or a retry, ends by then.
    deadline: std::sync::Mutex<Option<Instant>>,
}

/// The engine behind a [`Sink`].
#[derive(Debug)]
enum Kind {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteSink),
    #[cfg(feature = "mysql")]
    Mysql(mysql::MysqlSink),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PostgresSink),
}

impl Kind {
    /// The engine the URL's scheme names, opened; one this build lacks is refused by name.
    async fn open(url: &str, read_only: bool) -> Result<Kind, SinkError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            #[cfg(feature = "sqlite")]
            return Ok(Kind::Sqlite(if read_only {
                sqlite::SqliteSink::open_read_only(url, path).await?
            } else {
                sqlite::SqliteSink::open(url, path).await?
            }));
            #[cfg(not(feature = "sqlite"))]
            return Err({
                let _ = (path, read_only);
                crate::features::Missing {
                    what: "SQLite",
                    feature: "sqlite",
                }
            }
            .into());
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            #[cfg(feature = "mysql")]
            return Ok(Kind::Mysql(mysql::MysqlSink::open(url).await?));
            #[cfg(not(feature = "mysql"))]
            return Err(crate::features::Missing {
                what: "MySQL/MariaDB",
                feature: "mysql",
            }
            .into());
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Ok(Kind::Postgres(postgres::PostgresSink::open(url).await?));
            #[cfg(not(feature = "postgres"))]
            return Err(crate::features::Missing {
                what: "PostgreSQL",
                feature: "postgres",
            }
            .into());
        }
        Err(SinkError::UnsupportedUrl(crate::http::redact(url)))
    }
}

/// What each engine does in its own SQL; [`Sink`] holds one and adds what all share (retries,
/// statement sizing, fitting dead letters). Dispatch is by enum, not `dyn`: three engines, all
/// known here.
pub(crate) trait Engine {
    /// The dead-letter and run-log tables' DDL, with their names.
    fn bookkeeping_ddl(&self) -> [(&'static str, &'static str); 2];
    /// The bookkeeping tables' columns added since their first version, as (table, column,
    /// type): an older table gets them through [`Sink::upgrade_bookkeeping`].
    fn added_columns(&self) -> [(&'static str, &'static str, &'static str); 10];
    /// The dead-letter table's key, in the order records were written (SQLite's is the rowid).
    fn dead_letter_key(&self) -> &'static str {
        "failure_id"
    }
    /// `failed_at` as Unix seconds, in this engine's SQL.
    fn failed_at_seconds(&self) -> &'static str;
    /// A (quoted) column's value as text, in this engine's SQL.
    fn as_text(&self, column: &str) -> String;
    /// Whether float columns keep two decimals (`DECIMAL(20,2)`), so that a float is compared
    /// with what is stored rounded to them.
    fn decimal_floats(&self) -> bool {
        true
    }
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
    /// Whether `table` has a primary key or a unique index on `id` alone, which skipping
    /// duplicates needs.
    async fn unique_id(&self, table: &str) -> Result<bool, sqlx::Error>;
    /// The DDL that gives `table` the unique `id` it lacks.
    fn unique_id_fix(&self, table: &str) -> String;
    /// Whether a column's type, as the database names it, holds only single-precision floats.
    fn single_precision(&self, _found: &str) -> bool {
        false
    }
    /// Rows in one transaction, no lock or statement waiting longer than `waits`; how many were
    /// inserted (duplicates are skipped, or with `update` overwritten).
    async fn insert_chunk(
        &self,
        table: &TableSpec,
        rows: &[Row],
        waits: Waits,
        update: bool,
    ) -> Result<u64, WriteError>;
    /// The stored rows among `ids`, each value as text ([`Engine::as_text`]): id, timestamp,
    /// then the table's columns.
    async fn stored_rows(
        &self,
        table: &TableSpec,
        ids: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, sqlx::Error>;
    /// Dead letters, by `query` (see `replay.rs`).
    async fn dead_letters(
        &self,
        query: &replay::DeadLetterQuery,
    ) -> Result<Vec<replay::StoredDeadLetter>, sqlx::Error>;
    /// Marks dead-letter records (by key) as replayed by `run_id` with `outcome`.
    async fn mark_replayed(
        &self,
        run_id: &str,
        outcome: &str,
        keys: &[i64],
    ) -> Result<(), sqlx::Error>;
    /// A replayed dead letter that failed again: its records' new stage and errors, one more
    /// attempt.
    async fn replay_failed(
        &self,
        run_id: &str,
        stage: &str,
        records: &[(i64, String)],
    ) -> Result<(), sqlx::Error>;
    /// Deletes the replayed records whose documents are now stored (of `types`, or all);
    /// how many.
    async fn purge_stored(&self, types: Option<&[String]>) -> Result<u64, sqlx::Error>;
    async fn execute(&self, sql: &str) -> Result<(), sqlx::Error>;
    /// Runs DDL, serialised with every other run's DDL where the engine's catalog needs it,
    /// no lock waiting longer than `waits`.
    async fn execute_ddl(&self, sql: &str, waits: Waits) -> Result<(), sqlx::Error>;
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
    /// Every row of the run log, replays (no window) included, with the `optional` columns
    /// that this table has (see [`coverage::OPTIONAL_RUN_LOG_COLUMNS`]).
    async fn run_records(&self, optional: &[&'static str]) -> Result<Vec<RunRecord>, sqlx::Error>;
    /// Dead letters counted by type, stage and replay outcome (`with_outcome`: the table has
    /// the `replay_outcome` column), of documents stamped from `since` on (and those without a
    /// stamp).
    async fn dead_letter_counts(
        &self,
        since: Option<i64>,
        with_outcome: bool,
    ) -> Result<Vec<DeadLetterCount>, sqlx::Error>;
    async fn close(&self);
}

/// Dispatches to the engine.
macro_rules! engine {
    ($sink:expr, $engine:ident => $body:expr) => {
        match &$sink.engine {
            #[cfg(feature = "sqlite")]
            $crate::sink::Kind::Sqlite($engine) => $body,
            #[cfg(feature = "mysql")]
            $crate::sink::Kind::Mysql($engine) => $body,
            #[cfg(feature = "postgres")]
            $crate::sink::Kind::Postgres($engine) => $body,
        }
    };
}
pub(crate) use engine;

/// How long one statement, and one lock wait in it, may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waits {
    pub lock: Duration,
    pub statement: Duration,
}

impl Waits {
    /// Without a deadline: another session's lock is waited for a minute (MySQL's default is a
    /// day, PostgreSQL's for ever), a statement five minutes.
    const WITHOUT_DEADLINE: Waits = Waits {
        lock: Duration::from_secs(60),
        statement: Duration::from_secs(300),
    };
    /// After the deadline, rows already read still get this long each, so that what can be
    /// stored quickly is stored and the run still ends just after its deadline.
    const AFTER_DEADLINE: Duration = Duration::from_secs(1);

    /// The waits allowed now, before `deadline`.
    fn until(deadline: Option<Instant>) -> Waits {
        let Some(deadline) = deadline else {
            return Waits::WITHOUT_DEADLINE;
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Waits::AFTER_DEADLINE);
        // The statement gets a second more than the lock, so that a lock wait ends as one
        // and says so.
        Waits {
            lock: Waits::WITHOUT_DEADLINE.lock.min(left),
            statement: Waits::WITHOUT_DEADLINE
                .statement
                .min(left + Duration::from_secs(1)),
        }
    }

    /// Whole seconds, at least 1, as MySQL's lock timeouts take them.
    #[cfg(any(feature = "mysql", test))]
    fn lock_seconds(self) -> u64 {
        self.lock.as_secs_f64().ceil().max(1.0) as u64
    }
}

impl Sink {
    /// Opens the database at `url` (`sqlite://PATH`, `mysql://…`, `postgres://…`; TLS as the
    /// URL says), creating a SQLite file when missing, and makes sure the dead-letter and run
    /// log tables exist.
    pub async fn connect(url: &str) -> Result<Sink, SinkError> {
        Sink::connect_until(url, None).await
    }

    /// [`Sink::connect`] for a run that must end by `deadline`: making the bookkeeping tables
    /// waits and retries no longer.
    pub async fn connect_until(url: &str, deadline: Option<Instant>) -> Result<Sink, SinkError> {
        let sink = Sink::open(url, deadline, false).await?;
        for (table, ddl) in engine!(&sink, engine => engine.bookkeeping_ddl()) {
            sink.execute_ddl(table, "create", ddl).await?;
        }
        sink.upgrade_bookkeeping().await?;
        Ok(sink)
    }

    /// Opens the database at `url` only to read it (`status`): no table is created or
    /// upgraded, and a SQLite file that does not exist is an error, not a new file.
    pub async fn open_read_only(url: &str) -> Result<Sink, SinkError> {
        Sink::open(url, None, true).await
    }

    async fn open(
        url: &str,
        deadline: Option<Instant>,
        read_only: bool,
    ) -> Result<Sink, SinkError> {
        crate::secrets::register_url(url);
        let engine = Kind::open(url, read_only).await?;
        Ok(Sink {
            engine,
            deadline: std::sync::Mutex::new(deadline),
        })
    }

    /// Sets the deadline of the run this sink now serves (a warm Lambda's sink serves one
    /// invocation after another); `None`: no deadline.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        *self
            .deadline
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = deadline;
    }

    /// Whether writes queue on one connection (SQLite's), so that more than one in flight
    /// would only hold more rows in memory.
    pub fn writes_queue_on_one_connection(&self) -> bool {
        #[cfg(feature = "sqlite")]
        return matches!(self.engine, Kind::Sqlite(_));
        #[cfg(not(feature = "sqlite"))]
        return false;
    }

    fn deadline(&self) -> Option<Instant> {
        *self
            .deadline
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// How long a statement and a lock wait may take now.
    fn waits(&self) -> Waits {
        Waits::until(self.deadline())
    }

    /// DDL, serialised between runs and bounded by the deadline, retried when transient.
    async fn execute_ddl(
        &self,
        table: &str,
        what: &'static str,
        ddl: &str,
    ) -> Result<(), SinkError> {
        self.retrying(table, what, || async {
            let waits = self.waits();
            engine!(self, engine => engine.execute_ddl(ddl, waits).await)
        })
        .await
    }

    /// Marks the types of a run that the database stopped as failed in the run log, with
    /// the reason, so that the log never says `running` for a run that is over. The caller
    /// fails the run with `error` whatever happens here: when the log cannot be written (a
    /// full disk), that is said in the process's own log, and the run's exit and message
    /// still say why.
    pub async fn log_stopped_run(&self, run_id: &str, types: &[String], error: &SinkError) {
        let counts = TypeSummary {
            error: Some(crate::secrets::chain(error)),
            ..TypeSummary::default()
        };
        for type_name in types {
            let type_name = type_name.as_str();
            if let Err(log_error) = self
                .run_finished(run_id, type_name, &counts, RunStatus::Failed, None)
                .await
            {
                tracing::error!(
                    type_name,
                    "cannot mark the run failed in the run log ({}); it stopped because: {}",
                    crate::secrets::chain(&log_error),
                    crate::secrets::chain(error)
                );
            }
        }
    }

    /// Runs `operation` again after transient errors, with backoff, for as long as the
    /// deadline and the retry budget allow.
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
        let budget = retry::Budget::new(self.deadline());
        operation
            .retry(retry::backoff())
            .when(retry::is_transient)
            .adjust(|_, delay| budget.next_delay(delay))
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
#[cfg(any(feature = "mysql", feature = "postgres"))]
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

#[cfg(test)]
mod wait_tests {
    use super::*;

    #[test]
    fn waits_follow_the_time_left() {
        assert_eq!(Waits::until(None), Waits::WITHOUT_DEADLINE);
        let waits = Waits::until(Some(Instant::now() + Duration::from_secs(10)));
        assert!(waits.lock <= Duration::from_secs(10) && waits.lock > Duration::from_secs(9));
        assert_eq!(waits.lock_seconds(), 10);
        assert!(waits.statement > waits.lock);
        // Past the deadline, a write still gets its second.
        let late = Waits::until(Some(Instant::now() - Duration::from_secs(5)));
        assert_eq!(late.lock, Waits::AFTER_DEADLINE);
    }
}
