//! SQLite: the local runner's default database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Sqlite};

use super::{Dialect, SinkError, TableSpec, Waits, WriteError};
use crate::model::{ColumnType, Row};

/// SQLite allows 32,766 bound parameters per statement; stay well under it.
const MAX_PARAMETERS: usize = 30_000;
/// More rows per statement than this buys nothing measurable.
const MAX_ROWS_PER_STATEMENT: usize = 1_000;

#[derive(Debug)]
pub struct SqliteSink {
    pool: SqlitePool,
    inserts: super::common::PooledInserts,
}

impl SqliteSink {
    pub async fn open(url: &str, path: &str) -> Result<Self, SinkError> {
        Self::connect(url, path, |options| {
            options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        })
        .await
    }

    /// Opens an existing file only to read it: nothing is created, and the journal mode is
    /// left as it is.
    pub async fn open_read_only(url: &str, path: &str) -> Result<Self, SinkError> {
        if !std::path::Path::new(path).is_file() {
            return Err(SinkError::Connect {
                url: url.to_owned(),
                source: sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no database file at {path}"),
                )),
            });
        }
        Self::connect(url, path, |options| options.read_only(true)).await
    }

    /// One connection to the file at `path`, with `how` applied to the shared options: SQLite
    /// has one writer at a time anyway, and one connection keeps every write of the run in
    /// order without busy retries.
    async fn connect(
        url: &str,
        path: &str,
        how: impl FnOnce(SqliteConnectOptions) -> SqliteConnectOptions,
    ) -> Result<Self, SinkError> {
        let connect_error = |source| SinkError::Connect {
            url: url.to_owned(),
            source,
        };
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(connect_error)?
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(how(options))
            .await
            .map_err(connect_error)?;
        Ok(SqliteSink {
            pool,
            inserts: super::common::PooledInserts,
        })
    }
}

impl super::Engine for SqliteSink {
    fn bookkeeping_ddl(&self) -> [(&'static str, &'static str); 2] {
        [
            (
                super::DEAD_LETTER_TABLE,
                "CREATE TABLE IF NOT EXISTS batch_job_failed_documents (
                    run_id TEXT NOT NULL, type_name TEXT NOT NULL, document_id TEXT,
                    timestamp INTEGER, stage TEXT NOT NULL, error TEXT NOT NULL,
                    document TEXT NOT NULL, failed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
                    attempts INTEGER NOT NULL DEFAULT 1, replayed_at INTEGER,
                    replay_run_id TEXT, replay_outcome TEXT)",
            ),
            (
                super::RUN_LOG_TABLE,
                "CREATE TABLE IF NOT EXISTS batch_job_runs (
                    run_id TEXT NOT NULL, type_name TEXT NOT NULL,
                    window_from INTEGER, window_to INTEGER, scheduled BOOLEAN NOT NULL DEFAULT FALSE, status TEXT NOT NULL,
                    inserted INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0,
                    refused INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
                    error TEXT, started_at INTEGER NOT NULL, finished_at INTEGER,
                    done_until INTEGER, expires_at INTEGER,
                    plugin_version TEXT, plugin_sha256 TEXT,
                    updated INTEGER NOT NULL DEFAULT 0, unchanged INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (run_id, type_name))",
            ),
        ]
    }

    fn added_columns(&self) -> [(&'static str, &'static str, &'static str); 10] {
        use super::{DEAD_LETTER_TABLE as D, RUN_LOG_TABLE as R};
        [
            (R, "done_until", "INTEGER"),
            (R, "expires_at", "INTEGER"),
            (R, "plugin_version", "TEXT"),
            (R, "plugin_sha256", "TEXT"),
            (R, "updated", "INTEGER NOT NULL DEFAULT 0"),
            (R, "unchanged", "INTEGER NOT NULL DEFAULT 0"),
            (D, "attempts", "INTEGER NOT NULL DEFAULT 1"),
            (D, "replayed_at", "INTEGER"),
            (D, "replay_run_id", "TEXT"),
            (D, "replay_outcome", "TEXT"),
        ]
    }

    fn dead_letter_key(&self) -> &'static str {
        "rowid"
    }

    fn failed_at_seconds(&self) -> &'static str {
        "CAST(strftime('%s', failed_at) AS INTEGER)"
    }

    fn as_text(&self, column: &str) -> String {
        format!("CAST({column} AS TEXT)")
    }

    /// REAL columns keep the float as it is.
    fn decimal_floats(&self) -> bool {
        false
    }

    fn dialect(&self) -> Dialect {
        Dialect {
            quote: '"',
            id_type: "TEXT",
            timestamp_type: "INTEGER",
            column_type: sql_type,
        }
    }

    /// Whether an existing column's declared type can hold the plugin's values, by SQLite's
    /// type affinity rules (https://www.sqlite.org/datatype3.html, 3.1).
    fn compatible(&self, declared: &str, kind: ColumnType) -> bool {
        let declared = declared.to_ascii_uppercase();
        let affinity = if declared.contains("INT") {
            "INTEGER"
        } else if ["CHAR", "CLOB", "TEXT"]
            .iter()
            .any(|t| declared.contains(t))
        {
            "TEXT"
        } else if declared.is_empty() || declared.contains("BLOB") {
            "BLOB"
        } else if ["REAL", "FLOA", "DOUB"]
            .iter()
            .any(|t| declared.contains(t))
        {
            "REAL"
        } else {
            "NUMERIC"
        };
        match kind {
            ColumnType::Text => affinity == "TEXT" || affinity == "BLOB",
            ColumnType::Int | ColumnType::Bool => affinity == "INTEGER" || affinity == "NUMERIC",
            ColumnType::Float => affinity == "REAL" || affinity == "NUMERIC",
        }
    }

    /// No packet limit; this bounds what one statement holds in memory.
    fn max_statement_bytes(&self) -> usize {
        64 << 20
    }

    fn rows_per_statement(&self, table: &TableSpec) -> usize {
        (MAX_PARAMETERS / (table.columns.len() + 2)).min(MAX_ROWS_PER_STATEMENT)
    }

    /// A unique, whole-table index on `id` alone (a primary key on a TEXT column is one), or
    /// `id INTEGER PRIMARY KEY`, the rowid itself.
    async fn unique_id(&self, table: &str) -> Result<bool, sqlx::Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM pragma_index_list(?1) AS l \
                     WHERE l.\"unique\" = 1 AND l.partial = 0 \
                       AND (SELECT COUNT(*) FROM pragma_index_info(l.name)) = 1 \
                       AND (SELECT lower(name) FROM pragma_index_info(l.name)) = 'id') \
                  + (SELECT COUNT(*) FROM pragma_table_info(?1) \
                     WHERE pk = 1 AND lower(name) = 'id' AND upper(type) = 'INTEGER' \
                       AND (SELECT COUNT(*) FROM pragma_table_info(?1) WHERE pk > 0) = 1)",
        )
        .bind(table)
        .fetch_one(&self.pool)
        .await?;
        Ok(count > 0)
    }

    /// SQLite cannot add a primary key to a table; a unique index does the same here.
    fn unique_id_fix(&self, table: &str) -> String {
        format!("CREATE UNIQUE INDEX \"{table}_id\" ON \"{table}\" (\"id\")")
    }

    /// SQLite has one writer at a time: DDL is serialised already, and lock waits are bounded
    /// by the busy timeout.
    async fn execute_ddl(&self, sql: &str, _waits: Waits) -> Result<(), sqlx::Error> {
        self.execute(sql).await
    }

    bookkeeping!(Sqlite, "SELECT name, type FROM pragma_table_info(?)");
}

impl SqliteSink {
    async fn insert_on(
        &self,
        connection: &mut sqlx::SqliteConnection,
        table: &TableSpec,
        rows: &[Row],
        _waits: Waits,
        update: bool,
    ) -> Result<u64, WriteError> {
        insert_on(connection, table, rows, update).await
    }
}

async fn insert_on(
    connection: &mut sqlx::SqliteConnection,
    table: &TableSpec,
    rows: &[Row],
    update: bool,
) -> Result<u64, WriteError> {
    let mut insert = QueryBuilder::<Sqlite>::new(format!(
        "INSERT INTO \"{}\" ({}) ",
        table.name,
        table.column_list('"')
    ));
    insert.push_values(rows, |mut values, row| push_row!(values, row));
    if update {
        insert.push(format!(
            " ON CONFLICT (\"id\") DO UPDATE SET {}",
            table.update_list('"', |column| format!("excluded.{column}"))
        ));
    } else {
        insert.push(" ON CONFLICT (\"id\") DO NOTHING");
    }
    let mut transaction = sqlx::Connection::begin(connection).await?;
    let inserted = insert
        .build()
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    transaction.commit().await?;
    Ok(inserted)
}

fn sql_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "TEXT",
        ColumnType::Int => "INTEGER",
        ColumnType::Float => "REAL",
        ColumnType::Bool => "BOOLEAN",
    }
}
