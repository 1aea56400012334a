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
mod mysql;
mod postgres;
mod retry;
mod sqlite;

use backon::Retryable;

use crate::config::Window;
use crate::model::{Column, ColumnType, FailedDocument, Row, is_safe_identifier};
use crate::summary::TypeSummary;

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

/// Why one write did not go in.
#[derive(Debug)]
pub enum WriteError {
    /// The database failed; maybe transient.
    Database(sqlx::Error),
    /// MySQL accepted the statement but would have changed values (warnings other than
    /// duplicate keys); the transaction was rolled back.
    Changed(String),
}

impl WriteError {
    fn is_transient(&self) -> bool {
        matches!(self, WriteError::Database(error) if retry::is_transient(error))
    }
}

impl From<sqlx::Error> for WriteError {
    fn from(error: sqlx::Error) -> Self {
        WriteError::Database(error)
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Database(error) => write!(f, "{error}"),
            WriteError::Changed(warnings) => {
                write!(f, "the database would change values: {warnings}")
            }
        }
    }
}

/// A type's table: its name and the plugin's columns (besides `id` and `timestamp`). Only
/// [`TableSpec::new`] makes one, so every spec's identifiers have been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    name: String,
    columns: Vec<Column>,
}

impl TableSpec {
    /// A spec whose every identifier has been checked.
    pub fn new(name: &str, columns: &[Column]) -> Result<Self, SinkError> {
        for identifier in std::iter::once(name).chain(columns.iter().map(|c| c.name.as_str())) {
            if !is_safe_identifier(identifier) {
                return Err(SinkError::UnsafeIdentifier(identifier.to_owned()));
            }
        }
        Ok(TableSpec {
            name: name.to_owned(),
            columns: columns.to_vec(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// `CREATE TABLE IF NOT EXISTS` in an engine's words.
    fn create_sql(&self, dialect: &Dialect) -> String {
        let q = dialect.quote;
        let mut ddl = format!(
            "CREATE TABLE IF NOT EXISTS {q}{}{q} ({q}id{q} {} NOT NULL, {q}timestamp{q} {} NOT NULL",
            self.name, dialect.id_type, dialect.timestamp_type
        );
        for column in &self.columns {
            ddl.push_str(&format!(
                ", {q}{}{q} {}",
                column.name,
                (dialect.column_type)(column.kind)
            ));
        }
        ddl + &format!(", PRIMARY KEY ({q}id{q}))")
    }

    /// `ALTER TABLE … ADD COLUMN` in an engine's words.
    fn add_column_sql(&self, column: &Column, dialect: &Dialect) -> String {
        let q = dialect.quote;
        format!(
            "ALTER TABLE {q}{}{q} ADD COLUMN {q}{}{q} {}",
            self.name,
            column.name,
            (dialect.column_type)(column.kind)
        )
    }

    /// `id`, `timestamp` and the plugin's columns, quoted and comma separated.
    fn column_list(&self, quote: char) -> String {
        let mut list = format!("{quote}id{quote}, {quote}timestamp{quote}");
        for column in &self.columns {
            list.push_str(&format!(", {quote}{}{quote}", column.name));
        }
        list
    }
}

/// How an engine spells a type's table.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    quote: char,
    id_type: &'static str,
    timestamp_type: &'static str,
    column_type: fn(ColumnType) -> &'static str,
}

/// What one insert did. `inserted + duplicates + refused.len()` equals the rows handed in.
#[derive(Debug, Default)]
pub struct InsertOutcome {
    pub inserted: u64,
    pub duplicates: u64,
    /// The rows the database refused, by their index in the rows handed in, with its words.
    pub refused: Vec<RefusedRow>,
}

/// A row the database refused, or would have changed.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRow {
    pub index: usize,
    pub error: String,
}

/// What preparing a table did, and what a person should know about it.
#[derive(Debug, Default)]
pub struct PrepareReport {
    pub changes: Vec<SchemaChange>,
    /// A problem of an existing table that the job does not fix on its own (for the summary).
    pub note: Option<String>,
}

/// A schema change made to fit the plugin's columns, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    Created,
    AddedColumn(String),
}

/// The status of a type's run in the run log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Failed too often: closed, with its unread bytes kept, so that catch-up moves on.
    Abandoned,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Abandoned => "abandoned",
        }
    }
}

/// A database to write to.
#[derive(Debug)]
pub enum Sink {
    Sqlite(sqlite::SqliteSink),
    Mysql(mysql::MysqlSink),
    Postgres(postgres::PostgresSink),
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
        Ok(sink)
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

    /// Creates the table when missing; otherwise compares it with the plugin's columns, adds
    /// the missing ones, and refuses incompatible types. Extra columns in the table are fine.
    pub async fn prepare(&self, table: &TableSpec) -> Result<PrepareReport, SinkError> {
        let existing = self
            .retrying(&table.name, "read columns", || async {
                engine!(self, engine => engine.existing_columns(&table.name).await)
            })
            .await?;
        if existing.is_empty() {
            let ddl = table.create_sql(&engine!(self, engine => engine.dialect()));
            self.retrying(&table.name, "create", || async {
                engine!(self, engine => engine.execute(&ddl).await)
            })
            .await?;
            return Ok(PrepareReport {
                changes: vec![SchemaChange::Created],
                note: None,
            });
        }
        // Base64 ids are case-sensitive; a case-insensitive `id` takes distinct documents for
        // duplicates. Said, not fixed: altering someone's table is theirs to decide.
        let note = match self {
            Sink::Mysql(engine) => self
                .retrying(&table.name, "read the id collation", || async {
                    engine.case_insensitive_id(&table.name).await
                })
                .await?
                .map(|collation| {
                    format!(
                        "table {} compares ids case-insensitively (collation {collation}), so ids that differ only in case count as duplicates; fix it with: ALTER TABLE `{}` MODIFY `id` VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL",
                        table.name, table.name
                    )
                }),
            _ => None,
        };
        let mut missing = Vec::new();
        for column in &table.columns {
            match existing
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&column.name))
            {
                Some((_, found)) if engine!(self, engine => engine.compatible(found, column.kind)) =>
                    {}
                Some((name, found)) => {
                    return Err(SinkError::IncompatibleColumn {
                        table: table.name.clone(),
                        column: name.clone(),
                        found: found.clone(),
                        declared: column.kind,
                    });
                }
                None => missing.push(column),
            }
        }
        // Every column is checked before any is added, so a refused table is left untouched.
        let mut changes = Vec::new();
        for column in missing {
            let ddl = table.add_column_sql(column, &engine!(self, engine => engine.dialect()));
            self.retrying(&table.name, "add column", || async {
                engine!(self, engine => engine.execute(&ddl).await)
            })
            .await?;
            tracing::warn!(table = %table.name, "added missing column {} {}", column.name, column.kind);
            changes.push(SchemaChange::AddedColumn(column.name.clone()));
        }
        if let Some(note) = &note {
            tracing::warn!("{note}");
        }
        Ok(PrepareReport { changes, note })
    }

    /// Inserts rows in transactions, skipping and counting those whose id is already stored.
    /// A chunk the database refuses is split to find its bad rows, which come back as failed.
    pub async fn insert(
        &self,
        table: &TableSpec,
        rows: &[Row],
    ) -> Result<InsertOutcome, SinkError> {
        let per_statement = engine!(self, engine => engine.rows_per_statement(table));
        let max_bytes = engine!(self, engine => engine.max_statement_bytes());
        let mut outcome = InsertOutcome::default();
        for (first, chunk) in chunks_by_size(rows, per_statement, max_bytes, row_bytes) {
            match self.insert_chunk(table, chunk).await? {
                Ok(inserted) => outcome.add(chunk.len(), inserted),
                Err(_) if chunk.len() > 1 => {
                    for (offset, row) in chunk.iter().enumerate() {
                        match self.insert_chunk(table, std::slice::from_ref(row)).await? {
                            Ok(inserted) => outcome.add(1, inserted),
                            Err(error) => outcome.refuse(first + offset, &error),
                        }
                    }
                }
                Err(error) => outcome.refuse(first, &error),
            }
        }
        Ok(outcome)
    }

    /// One chunk in one transaction: `Ok(Ok(inserted))`, `Ok(Err(_))` when the database
    /// refused it, `Err` when it stayed unavailable through every retry.
    async fn insert_chunk(
        &self,
        table: &TableSpec,
        rows: &[Row],
    ) -> Result<Result<u64, WriteError>, SinkError> {
        let attempt = || async { engine!(self, engine => engine.insert_chunk(table, rows).await) };
        match attempt
            .retry(retry::backoff())
            .when(WriteError::is_transient)
            .notify(|error, delay| tracing::warn!(table = %table.name, "insert failed, retrying in {delay:?}: {error}"))
            .await
        {
            Err(WriteError::Database(source)) if retry::is_transient(&source) => Err(SinkError::Database {
                table: table.name.clone(),
                operation: "insert",
                source,
            }),
            other => Ok(other),
        }
    }

    /// Keeps failed documents in the dead-letter table.
    pub async fn record_failures(
        &self,
        run_id: &str,
        failures: &[FailedDocument],
    ) -> Result<(), SinkError> {
        if failures.is_empty() {
            return Ok(());
        }
        // Values come from bad input: fit them to the table's columns first, and split a
        // document too large for one statement across consecutive records.
        let max_bytes = engine!(self, engine => engine.max_statement_bytes());
        let records: Vec<FailedDocument> = failures
            .iter()
            .flat_map(|failure| split_dead_letter(fit_dead_letter(failure), max_bytes / 2))
            .collect();
        for (_, chunk) in chunks_by_size(&records, 500, max_bytes, dead_letter_bytes) {
            self.record_failure_chunk(run_id, chunk).await?;
        }
        Ok(())
    }

    /// One statement's worth of dead letters; the records the database refuses even so are
    /// tried one by one, and one it refuses alone goes to the log whole.
    async fn record_failure_chunk(
        &self,
        run_id: &str,
        failures: &[FailedDocument],
    ) -> Result<(), SinkError> {
        let batch = self
            .retrying(DEAD_LETTER_TABLE, "insert", || async {
                engine!(self, engine => engine.record_failures(run_id, failures).await)
            })
            .await;
        match batch {
            Ok(()) => Ok(()),
            // Still refused: keep every record that can be kept. A record the database cannot
            // take at all goes to the log whole, so that it is not lost either.
            Err(SinkError::Database { source, .. }) if !retry::is_transient(&source) => {
                for failure in failures {
                    let one = std::slice::from_ref(failure);
                    if let Err(error) =
                        engine!(self, engine => engine.record_failures(run_id, one).await)
                    {
                        tracing::error!(
                            type_name = %failure.type_name,
                            id = failure.id.as_deref().unwrap_or("-"),
                            stage = failure.stage.as_str(),
                            error = %failure.error,
                            document = %failure.document,
                            "cannot keep a failed document in {DEAD_LETTER_TABLE}: {error}"
                        );
                    }
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Records that a type's run started, with its window.
    /// Only scheduled windows (the default and catch-up ones) count for catch-up; a window
    /// someone asked for by hand does not.
    pub async fn run_started(
        &self,
        run_id: &str,
        type_name: &str,
        window: Option<Window>,
        scheduled: bool,
    ) -> Result<(), SinkError> {
        self.retrying(RUN_LOG_TABLE, "insert", || async {
            engine!(self, engine => engine.run_started(run_id, type_name, window, scheduled).await)
        })
        .await
    }

    /// Records how a type's run ended; `window_end`, when set, is where its window is done
    /// (a run stopped at its deadline).
    pub async fn run_finished(
        &self,
        run_id: &str,
        type_name: &str,
        counts: &TypeSummary,
        status: RunStatus,
        window_end: Option<i64>,
    ) -> Result<(), SinkError> {
        self.retrying(RUN_LOG_TABLE, "update", || async {
            engine!(self, engine => engine.run_finished(run_id, type_name, counts, status, window_end).await)
        })
        .await
    }

    /// Where the last successful window of a type ended, if any.
    pub async fn last_success(&self, type_name: &str) -> Result<Option<i64>, SinkError> {
        self.retrying(RUN_LOG_TABLE, "read", || async {
            engine!(self, engine => engine.last_success(type_name).await)
        })
        .await
    }

    /// How many scheduled runs of a type failed on the window that starts at `window_from`.
    pub async fn failed_attempts(
        &self,
        type_name: &str,
        window_from: i64,
    ) -> Result<u64, SinkError> {
        self.retrying(RUN_LOG_TABLE, "read", || async {
            engine!(self, engine => engine.failed_attempts(type_name, window_from).await)
        })
        .await
    }

    /// Where the first logged window of a type started, if it was ever run.
    pub async fn first_attempt(&self, type_name: &str) -> Result<Option<i64>, SinkError> {
        self.retrying(RUN_LOG_TABLE, "read", || async {
            engine!(self, engine => engine.first_attempt(type_name).await)
        })
        .await
    }

    pub async fn close(&self) {
        engine!(self, engine => engine.close().await)
    }
}

impl InsertOutcome {
    fn add(&mut self, rows: usize, inserted: u64) {
        self.inserted += inserted;
        self.duplicates += rows as u64 - inserted;
    }

    fn refuse(&mut self, index: usize, error: &WriteError) {
        self.refused.push(RefusedRow {
            index,
            error: format!("database refused the row: {error}"),
        });
    }
}

/// Opens and closes one connection to `url` (with `options`, made from it), failing with the
/// real cause when it cannot.
async fn probe<C: sqlx::Connection>(url: &str, options: &C::Options) -> Result<(), SinkError> {
    let connect_error = |source| SinkError::Connect {
        url: crate::http::redact(url),
        source,
    };
    let connection = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        C::connect_with(options),
    )
        .await
        .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
        .map_err(connect_error)?;
    let _ = connection.close().await;
    Ok(())
}

/// Consecutive chunks of `items` (with the index of each chunk's first item) of at most
/// `max_items` items and, unless one item alone is larger, `max_bytes` bytes.
fn chunks_by_size<T>(
    items: &[T],
    max_items: usize,
    max_bytes: usize,
    bytes_of: fn(&T) -> usize,
) -> Vec<(usize, &[T])> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, item) in items.iter().enumerate() {
        let size = bytes_of(item);
        if index > start && (index - start >= max_items.max(1) || bytes + size > max_bytes) {
            chunks.push((start, &items[start..index]));
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < items.len() {
        chunks.push((start, &items[start..]));
    }
    chunks
}

/// About what a row takes in a statement: its values and a little for each.
fn row_bytes(row: &Row) -> usize {
    let cells: usize = row
        .cells
        .iter()
        .map(|cell| match cell {
            crate::model::Cell::Text(text) => text.len() + 9,
            _ => 9,
        })
        .sum();
    row.id.len() + 18 + cells
}

fn dead_letter_bytes(failure: &FailedDocument) -> usize {
    failure.document.len()
        + failure.error.len()
        + failure.type_name.len()
        + failure.id.as_ref().map_or(0, String::len)
        + 128
}

/// A dead letter whose document is larger than `max_part` bytes, as consecutive records of
/// parts of it (`[part 2/5]` before the error): written in one go, in order, so that the
/// document is kept whole and can be put together again by `failure_id`.
fn split_dead_letter(failure: FailedDocument, max_part: usize) -> Vec<FailedDocument> {
    let max_part = max_part.max(1024);
    if failure.document.len() <= max_part {
        return vec![failure];
    }
    let mut parts = Vec::new();
    let mut rest = failure.document.as_str();
    while !rest.is_empty() {
        let mut end = max_part.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(index, part)| FailedDocument {
            error: format!("[part {}/{count}] {}", index + 1, failure.error),
            document: part.to_owned(),
            ..failure.clone()
        })
        .collect()
}

/// A dead-letter record that fits the table on every engine: no NUL characters (PostgreSQL
/// text cannot hold them), a type name of at most 64 characters, a document id of at most 255
/// (else none: the whole document is kept anyway), an error of at most 8,000.
fn fit_dead_letter(failure: &FailedDocument) -> FailedDocument {
    fn clean(text: &str, limit: usize) -> String {
        let text: String = text.chars().take(limit).collect();
        if text.contains('\0') {
            text.replace('\0', "\\0")
        } else {
            text
        }
    }
    FailedDocument {
        type_name: clean(&failure.type_name, 64),
        id: failure
            .id
            .as_deref()
            .filter(|id| id.chars().count() <= 255)
            .map(|id| clean(id, 255)),
        timestamp: failure.timestamp,
        stage: failure.stage,
        error: clean(&crate::secrets::scrub(&failure.error), 8_000),
        document: if failure.document.contains('\0') {
            failure.document.replace('\0', "\\u0000")
        } else {
            failure.document.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        use crate::http::redact as redact_url;
        assert_eq!(
            redact_url("mysql://u:secret@h:3306/db"),
            "mysql://***@h:3306/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn dead_letters_are_fitted_to_their_columns() {
        let failure = FailedDocument {
            type_name: "T".repeat(100),
            id: Some("x".repeat(300)),
            timestamp: None,
            stage: crate::model::Stage::Envelope,
            error: format!("bad \0 {}", "e".repeat(10_000)),
            document: "{\"id\":\"a\0\"}".into(),
        };
        let fitted = fit_dead_letter(&failure);
        assert_eq!(fitted.type_name.len(), 64);
        assert_eq!(fitted.id, None);
        assert_eq!(fitted.error.chars().count(), 8_001);
        assert!(!fitted.error.contains('\0') && !fitted.document.contains('\0'));
    }

    #[test]
    fn statements_are_sized_by_bytes_and_big_documents_split_in_order() {
        let sizes = [10usize, 10, 10, 50, 10, 200, 5];
        let chunks = chunks_by_size(&sizes, 3, 40, |size| *size);
        let starts: Vec<(usize, usize)> = chunks.iter().map(|(s, c)| (*s, c.len())).collect();
        // A chunk closes at 3 items or before passing 40 bytes; a larger item goes alone.
        assert_eq!(starts, [(0, 3), (3, 1), (4, 1), (5, 1), (6, 1)]);

        let failure = FailedDocument {
            type_name: "T".into(),
            id: Some("a".into()),
            timestamp: Some(1),
            stage: crate::model::Stage::Plugin,
            error: "boom".into(),
            document: "é".repeat(3_000),
        };
        let parts = split_dead_letter(failure.clone(), 1_025);
        assert_eq!(parts.len(), 6);
        assert!(parts.iter().all(|part| part.document.len() <= 1_025));
        assert_eq!(parts[1].error, "[part 2/6] boom");
        let whole: String = parts.iter().map(|part| part.document.as_str()).collect();
        assert_eq!(whole, failure.document);
        assert_eq!(split_dead_letter(failure.clone(), 1 << 20), vec![failure]);
    }

    #[test]
    fn hostile_table_names_are_refused() {
        let error = TableSpec::new("GithubType; DROP TABLE x", &[]).unwrap_err();
        assert!(matches!(error, SinkError::UnsafeIdentifier(_)));
    }
}
