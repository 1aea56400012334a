//! The SQLite sink: the local runner's default database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, QueryBuilder, Row as _, Sqlite};

use super::{
    DEAD_LETTER_TABLE, InsertOutcome, SchemaChange, SinkError, SourcedRow, TableSpec, sink_failure,
};
use crate::model::{Cell, ColumnType, FailedDocument};

/// SQLite allows 32,766 bound parameters per statement; stay well under it.
const MAX_PARAMETERS: usize = 30_000;
/// More rows per statement than this buys nothing measurable.
const MAX_ROWS_PER_STATEMENT: usize = 1_000;

#[derive(Debug)]
pub struct SqliteSink {
    pool: SqlitePool,
}

impl SqliteSink {
    pub async fn open(url: &str, path: &str) -> Result<Self, SinkError> {
        let connect_error = |source| SinkError::Connect {
            url: url.to_owned(),
            source,
        };
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(connect_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        // One connection: SQLite has one writer at a time anyway, and this keeps every write
        // of the run in order without busy retries.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        let sink = SqliteSink { pool };
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS batch_job_failed_documents (
                run_id TEXT NOT NULL,
                type_name TEXT NOT NULL,
                document_id TEXT,
                timestamp INTEGER,
                stage TEXT NOT NULL,
                error TEXT NOT NULL,
                document TEXT NOT NULL,
                failed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
            )",
        )
        .execute(&sink.pool)
        .await
        .map_err(|source| SinkError::Database {
            table: DEAD_LETTER_TABLE.into(),
            operation: "create",
            source,
        })?;
        Ok(sink)
    }

    pub async fn prepare(&self, table: &TableSpec) -> Result<Vec<SchemaChange>, SinkError> {
        let database_error = |operation| {
            move |source| SinkError::Database {
                table: table.name.clone(),
                operation,
                source,
            }
        };
        let existing = sqlx::query(AssertSqlSafe(format!(
            "SELECT name, type FROM pragma_table_info('{}')",
            table.name
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(database_error("read columns"))?;
        if existing.is_empty() {
            let mut ddl = format!(
                "CREATE TABLE \"{}\" (\"id\" TEXT NOT NULL PRIMARY KEY, \"timestamp\" INTEGER NOT NULL",
                table.name
            );
            for column in &table.columns {
                ddl.push_str(&format!(", \"{}\" {}", column.name, sql_type(column.kind)));
            }
            ddl.push(')');
            sqlx::query(AssertSqlSafe(ddl))
                .execute(&self.pool)
                .await
                .map_err(database_error("create"))?;
            return Ok(vec![SchemaChange::Created]);
        }
        let existing: Vec<(String, String)> = existing
            .iter()
            .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
            .collect();
        let mut changes = Vec::new();
        for column in &table.columns {
            let found = existing
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&column.name));
            match found {
                Some((_, declared)) if compatible(declared, column.kind) => {}
                Some((name, declared)) => {
                    return Err(SinkError::IncompatibleColumn {
                        table: table.name.clone(),
                        column: name.clone(),
                        found: declared.clone(),
                        declared: column.kind,
                    });
                }
                None => {
                    sqlx::query(AssertSqlSafe(format!(
                        "ALTER TABLE \"{}\" ADD COLUMN \"{}\" {}",
                        table.name,
                        column.name,
                        sql_type(column.kind)
                    )))
                    .execute(&self.pool)
                    .await
                    .map_err(database_error("add column"))?;
                    changes.push(SchemaChange::AddedColumn(column.name.clone()));
                }
            }
        }
        Ok(changes)
    }

    pub async fn insert(
        &self,
        table: &TableSpec,
        rows: &[SourcedRow],
    ) -> Result<InsertOutcome, SinkError> {
        let per_statement =
            (MAX_PARAMETERS / (table.columns.len() + 2)).min(MAX_ROWS_PER_STATEMENT);
        let mut outcome = InsertOutcome::default();
        for chunk in rows.chunks(per_statement) {
            match self.insert_chunk(table, chunk).await {
                Ok(inserted) => {
                    outcome.inserted += inserted;
                    outcome.duplicates += chunk.len() as u64 - inserted;
                }
                // One bad row must not cost its neighbours: find it by inserting one by one.
                Err(_) if chunk.len() > 1 => {
                    for row in chunk {
                        match self.insert_chunk(table, std::slice::from_ref(row)).await {
                            Ok(inserted) => {
                                outcome.inserted += inserted;
                                outcome.duplicates += 1 - inserted;
                            }
                            Err(error) => outcome.failed.push(sink_failure(table, row, &error)),
                        }
                    }
                }
                Err(error) => outcome.failed.push(sink_failure(table, &chunk[0], &error)),
            }
        }
        Ok(outcome)
    }

    /// Inserts rows in one transaction; the number inserted, duplicates being skipped.
    async fn insert_chunk(
        &self,
        table: &TableSpec,
        rows: &[SourcedRow],
    ) -> Result<u64, sqlx::Error> {
        let mut insert = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO \"{}\" (\"id\", \"timestamp\"",
            table.name
        ));
        for column in &table.columns {
            insert.push(format!(", \"{}\"", column.name));
        }
        insert.push(") ");
        insert.push_values(rows, |mut values, sourced| {
            values.push_bind(sourced.row.id.clone());
            values.push_bind(sourced.row.timestamp);
            for cell in &sourced.row.cells {
                match cell {
                    Cell::Null => values.push_bind(None::<String>),
                    Cell::Text(text) => values.push_bind(text.clone()),
                    Cell::Int(int) => values.push_bind(*int),
                    Cell::Float(float) => values.push_bind(*float),
                    Cell::Bool(flag) => values.push_bind(*flag),
                };
            }
        });
        insert.push(" ON CONFLICT (\"id\") DO NOTHING");
        let mut transaction = self.pool.begin().await?;
        let inserted = insert
            .build()
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        transaction.commit().await?;
        Ok(inserted)
    }

    pub async fn record_failures(
        &self,
        run_id: &str,
        failures: &[FailedDocument],
    ) -> Result<(), SinkError> {
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|source| SinkError::Database {
                table: DEAD_LETTER_TABLE.into(),
                operation: "begin",
                source,
            })?;
        for chunk in failures.chunks(MAX_PARAMETERS / 7) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO batch_job_failed_documents \
                 (run_id, type_name, document_id, timestamp, stage, error, document) ",
            );
            insert.push_values(chunk, |mut values, failure| {
                values
                    .push_bind(run_id.to_owned())
                    .push_bind(failure.type_name.clone())
                    .push_bind(failure.id.clone())
                    .push_bind(failure.timestamp)
                    .push_bind(failure.stage.as_str())
                    .push_bind(failure.error.clone())
                    .push_bind(failure.document.clone());
            });
            insert
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(|source| SinkError::Database {
                    table: DEAD_LETTER_TABLE.into(),
                    operation: "insert",
                    source,
                })?;
        }
        transaction
            .commit()
            .await
            .map_err(|source| SinkError::Database {
                table: DEAD_LETTER_TABLE.into(),
                operation: "commit",
                source,
            })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn sql_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "TEXT",
        ColumnType::Int => "INTEGER",
        ColumnType::Float => "REAL",
        ColumnType::Bool => "BOOLEAN",
    }
}

/// Whether an existing column's declared type can hold the plugin's values, by SQLite's type
/// affinity rules (https://www.sqlite.org/datatype3.html, 3.1).
fn compatible(declared: &str, kind: ColumnType) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_decides_compatibility() {
        assert!(compatible("TEXT", ColumnType::Text));
        assert!(compatible("VARCHAR(24)", ColumnType::Text));
        assert!(compatible("INT", ColumnType::Int));
        assert!(compatible("BIGINT", ColumnType::Int));
        assert!(compatible("DECIMAL(20,2)", ColumnType::Float));
        assert!(compatible("BOOL", ColumnType::Bool));
        assert!(!compatible("INTEGER", ColumnType::Text));
        assert!(!compatible("TEXT", ColumnType::Int));
    }
}
