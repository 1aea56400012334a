//! PostgreSQL (Aurora PostgreSQL). Each batch is one statement,
//! `INSERT … SELECT … FROM UNNEST($1::text[], $2::int8[], …)` with `ON CONFLICT DO NOTHING` (on
//! `"id"`), one array a column in PostgreSQL's binary format: one round trip, atomic on its own,
//! and its row count is exactly the rows inserted. (It replaced a `COPY` into a temporary
//! staging table and an `INSERT … SELECT` from it, which wrote every row twice; see the README's
//! performance section for the figures.)

use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Postgres};

use super::{Dialect, SinkError, TableSpec, Waits, WriteError};
use crate::model::{Cell, ColumnType, Row};

/// A column is one parameter, whatever the rows; this bounds one statement's size.
const MAX_ROWS_PER_STATEMENT: usize = 5_000;
/// The advisory lock every run's DDL takes, so that two first runs do not race in
/// `CREATE TABLE IF NOT EXISTS` (whose catalog insert fails the loser with a duplicate key on
/// `pg_type_typname_nsp_index`). The number is arbitrary, fixed, and ours ("bja-ddl").
pub const DDL_LOCK: i64 = 0x626a_612d_6464_6c00;

#[derive(Debug)]
pub struct PostgresSink {
    pool: PgPool,
    /// Inserts' connections, kept out of the pool's pings.
    inserts: super::common::InsertConnections<sqlx::Postgres>,
}

impl PostgresSink {
    pub async fn open(url: &str) -> Result<Self, SinkError> {
        // One connection first, so that a refused port or a wrong password fails now with its
        // real cause, instead of a pool retrying it until "pool timed out".
        let options: sqlx::postgres::PgConnectOptions =
            url.parse().map_err(|source| SinkError::Connect {
                url: crate::http::redact(url),
                source,
            })?;
        super::probe::<PgConnection>(url, &options).await?;
        // Without a deadline no lock is waited for longer than this (PostgreSQL's default is
        // for ever), and no statement runs longer; a write with less time left sets its own.
        let waits = Waits::until(None);
        let options = options.options([
            ("lock_timeout", format!("{}ms", waits.lock.as_millis())),
            (
                "statement_timeout",
                format!("{}ms", waits.statement.as_millis()),
            ),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|source| SinkError::Connect {
                url: crate::http::redact(url),
                source,
            })?;
        Ok(PostgresSink {
            pool,
            inserts: super::common::InsertConnections::new(),
        })
    }
}

impl super::Engine for PostgresSink {
    fn bookkeeping_ddl(&self) -> [(&'static str, &'static str); 2] {
        [
            (
                super::DEAD_LETTER_TABLE,
                "CREATE TABLE IF NOT EXISTS batch_job_failed_documents (
                    failure_id BIGSERIAL PRIMARY KEY,
                    run_id TEXT NOT NULL, type_name TEXT NOT NULL, document_id TEXT,
                    timestamp BIGINT, stage TEXT NOT NULL, error TEXT NOT NULL,
                    document TEXT NOT NULL, failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    attempts INT NOT NULL DEFAULT 1, replayed_at BIGINT,
                    replay_run_id TEXT, replay_outcome TEXT)",
            ),
            (
                super::RUN_LOG_TABLE,
                "CREATE TABLE IF NOT EXISTS batch_job_runs (
                    run_id TEXT NOT NULL, type_name TEXT NOT NULL,
                    window_from BIGINT, window_to BIGINT, scheduled BOOLEAN NOT NULL DEFAULT FALSE, status TEXT NOT NULL,
                    inserted BIGINT NOT NULL DEFAULT 0, duplicates BIGINT NOT NULL DEFAULT 0,
                    refused BIGINT NOT NULL DEFAULT 0, failed BIGINT NOT NULL DEFAULT 0,
                    error TEXT, started_at BIGINT NOT NULL, finished_at BIGINT,
                    done_until BIGINT, expires_at BIGINT,
                    plugin_version TEXT, plugin_sha256 TEXT,
                    updated BIGINT NOT NULL DEFAULT 0, unchanged BIGINT NOT NULL DEFAULT 0,
                    PRIMARY KEY (run_id, type_name))",
            ),
        ]
    }

    fn added_columns(&self) -> [(&'static str, &'static str, &'static str); 10] {
        use super::{DEAD_LETTER_TABLE as D, RUN_LOG_TABLE as R};
        [
            (R, "done_until", "BIGINT"),
            (R, "expires_at", "BIGINT"),
            (R, "plugin_version", "TEXT"),
            (R, "plugin_sha256", "TEXT"),
            (R, "updated", "BIGINT NOT NULL DEFAULT 0"),
            (R, "unchanged", "BIGINT NOT NULL DEFAULT 0"),
            (D, "attempts", "INT NOT NULL DEFAULT 1"),
            (D, "replayed_at", "BIGINT"),
            (D, "replay_run_id", "TEXT"),
            (D, "replay_outcome", "TEXT"),
        ]
    }

    fn failed_at_seconds(&self) -> &'static str {
        "CAST(EXTRACT(EPOCH FROM failed_at) AS BIGINT)"
    }

    fn as_text(&self, column: &str) -> String {
        format!("CAST({column} AS TEXT)")
    }

    fn dialect(&self) -> Dialect {
        Dialect {
            quote: '"',
            id_type: "VARCHAR(24)",
            timestamp_type: "BIGINT",
            column_type: sql_type,
        }
    }

    /// Whether a column's `data_type` holds the values.
    fn compatible(&self, found: &str, kind: ColumnType) -> bool {
        match kind {
            ColumnType::Text => matches!(found, "text" | "character varying" | "character"),
            ColumnType::Int => matches!(found, "integer" | "bigint" | "smallint"),
            ColumnType::Float => matches!(found, "numeric" | "double precision" | "real"),
            ColumnType::Bool => found == "boolean",
        }
    }

    /// No packet limit; this bounds what one statement holds in memory.
    fn max_statement_bytes(&self) -> usize {
        64 << 20
    }

    fn rows_per_statement(&self, _table: &TableSpec) -> usize {
        MAX_ROWS_PER_STATEMENT
    }

    /// A unique, whole-table index on `id` alone: what `ON CONFLICT ("id")` needs.
    async fn unique_id(&self, table: &str) -> Result<bool, sqlx::Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
             WHERE n.nspname = current_schema() AND c.relname = $1 AND i.indisunique \
               AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = 'id'",
        )
        .bind(table)
        .fetch_one(&self.pool)
        .await?;
        Ok(count > 0)
    }

    fn unique_id_fix(&self, table: &str) -> String {
        format!("ALTER TABLE \"{table}\" ADD PRIMARY KEY (\"id\")")
    }

    /// `real` is 4 bytes: about 7 significant digits.
    fn single_precision(&self, found: &str) -> bool {
        found == "real"
    }

    /// Under [`DDL_LOCK`], held to the end of the DDL's transaction.
    async fn execute_ddl(&self, sql: &str, waits: Waits) -> Result<(), sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SET LOCAL client_min_messages = warning; {}; SELECT pg_advisory_xact_lock({DDL_LOCK})",
            set_local_waits(waits)
        )))
        .execute(&mut *transaction)
        .await?;
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await
    }

    bookkeeping!(
        Postgres,
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
    );
}

/// `SET LOCAL` of the lock and statement timeouts, for the current transaction.
fn set_local_waits(waits: Waits) -> String {
    format!(
        "SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
        waits.lock.as_millis().max(1),
        waits.statement.as_millis().max(1)
    )
}

impl PostgresSink {
    async fn insert_on(
        &self,
        connection: &mut PgConnection,
        table: &TableSpec,
        rows: &[Row],
        waits: Waits,
        update: bool,
    ) -> Result<u64, WriteError> {
        insert_on(connection, table, rows, waits, update).await
    }
}

async fn insert_on(
    connection: &mut PgConnection,
    table: &TableSpec,
    rows: &[Row],
    waits: Waits,
    update: bool,
) -> Result<u64, WriteError> {
    let ids = rows
        .iter()
        .map(|row| postgres_text(&row.id))
        .collect::<Result<Vec<_>, _>>()?;
    let mut query = sqlx::query(AssertSqlSafe(insert_statement(table, update)))
        .bind(ids)
        .bind(rows.iter().map(|row| row.timestamp).collect::<Vec<_>>());
    for (index, column) in table.columns.iter().enumerate() {
        query = bind_column(query, column, index, rows)?;
    }
    if waits == Waits::until(None) {
        // The session has these waits from its connect options: the statement alone, one
        // round trip, is the whole write.
        return Ok(query.execute(&mut *connection).await?.rows_affected());
    }
    // Less time is left than the usual waits: they are set for this write's transaction.
    let mut transaction = connection.begin().await?;
    sqlx::raw_sql(AssertSqlSafe(set_local_waits(waits)))
        .execute(&mut *transaction)
        .await?;
    let inserted = query.execute(&mut *transaction).await?.rows_affected();
    transaction.commit().await?;
    Ok(inserted)
}

/// `INSERT INTO "T" (…) SELECT … FROM UNNEST($1::text[], $2::int8[], …) AS u ON CONFLICT …`.
/// Floats travel as text, as the shortest decimal that reads back as the same `f64` (what the
/// old job sent), and become `NUMERIC` in the statement: a `float8` would be rounded to 15
/// digits by PostgreSQL first, and could then round to another cent.
fn insert_statement(table: &TableSpec, update: bool) -> String {
    let mut arrays = vec!["$1::text[]".to_owned(), "$2::int8[]".to_owned()];
    let mut selected = vec!["u.c0".to_owned(), "u.c1".to_owned()];
    for (index, column) in table.columns.iter().enumerate() {
        let parameter = index + 3;
        let name = format!("u.c{}", index + 2);
        let (array, value) = match column.kind {
            ColumnType::Text => ("text[]", name),
            ColumnType::Int => ("int8[]", name),
            ColumnType::Float => ("text[]", format!("CAST({name} AS NUMERIC)")),
            ColumnType::Bool => ("bool[]", name),
        };
        arrays.push(format!("${parameter}::{array}"));
        selected.push(value);
    }
    let aliases: Vec<String> = (0..arrays.len()).map(|i| format!("c{i}")).collect();
    let on_conflict = if update {
        format!(
            "DO UPDATE SET {}",
            table.update_list('"', |column| format!("EXCLUDED.{column}"))
        )
    } else {
        "DO NOTHING".to_owned()
    };
    format!(
        "INSERT INTO \"{}\" ({}) SELECT {} FROM UNNEST({}) AS u({}) ON CONFLICT (\"id\") {on_conflict}",
        table.name,
        table.column_list('"'),
        selected.join(", "),
        arrays.join(", "),
        aliases.join(", "),
    )
}

type InsertQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds the values of the table's column number `index` in every row, as one array. A value
/// PostgreSQL cannot hold (a NUL in text, a float that is not finite) or of another kind than
/// the column's fails the rows, which the caller then writes one by one to find it.
fn bind_column<'q>(
    query: InsertQuery<'q>,
    column: &crate::model::Column,
    index: usize,
    rows: &'q [Row],
) -> Result<InsertQuery<'q>, WriteError> {
    let mismatch = |cell: &Cell| {
        WriteError::Changed(format!(
            "column {} is {} but the row holds {cell:?}",
            column.name, column.kind
        ))
    };
    Ok(match column.kind {
        ColumnType::Text => query.bind(values(rows, index, |cell: &'q Cell| match cell {
            Cell::Text(text) => postgres_text(text),
            other => Err(mismatch(other)),
        })?),
        ColumnType::Int => query.bind(values(rows, index, |cell| match cell {
            Cell::Int(value) => Ok(*value),
            other => Err(mismatch(other)),
        })?),
        // As decimal text (see `insert_statement`).
        ColumnType::Float => query.bind(values(rows, index, |cell| match cell {
            Cell::Float(value) if value.is_finite() => Ok(value.to_string()),
            Cell::Float(value) => Err(WriteError::Changed(format!(
                "{value} cannot be stored as a number"
            ))),
            other => Err(mismatch(other)),
        })?),
        ColumnType::Bool => query.bind(values(rows, index, |cell| match cell {
            Cell::Bool(value) => Ok(*value),
            other => Err(mismatch(other)),
        })?),
    })
}

/// The column number `index` of every row, NULL as `None` and every other cell through `value`.
fn values<'q, T>(
    rows: &'q [Row],
    index: usize,
    value: impl Fn(&'q Cell) -> Result<T, WriteError>,
) -> Result<Vec<Option<T>>, WriteError> {
    rows.iter()
        .map(|row| match &row.cells[index] {
            Cell::Null => Ok(None),
            cell => value(cell).map(Some),
        })
        .collect()
}

/// Text as PostgreSQL can hold it: anything but a NUL character.
fn postgres_text(text: &str) -> Result<&str, WriteError> {
    if text.contains('\0') {
        return Err(WriteError::Changed(
            "PostgreSQL text cannot hold a NUL character".into(),
        ));
    }
    Ok(text)
}

/// The natural equivalents of CONTRACT §3: a 64-bit int is BIGINT, float keeps DECIMAL(20,2).
fn sql_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "TEXT",
        ColumnType::Int => "BIGINT",
        ColumnType::Float => "NUMERIC(20,2)",
        ColumnType::Bool => "BOOLEAN",
    }
}
