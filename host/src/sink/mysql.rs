//! MySQL and MariaDB (Aurora MySQL): the old system's tables, kept exactly.
//!
//! Duplicates are skipped with `INSERT IGNORE` and counted exactly: sqlx sets
//! `CLIENT_FOUND_ROWS`, so `ON DUPLICATE KEY UPDATE` would count a duplicate as affected, but
//! `INSERT IGNORE` reports only inserted rows. `IGNORE` also turns truncations and NULLs into
//! warnings, so every warning is read back in the same transaction, and anything but a
//! duplicate key (1062) rolls the batch back: nothing is ever changed silently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::mysql::{
    MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlSslMode,
};
use sqlx::{Connection, Executor, MySql, Row as _};

use super::{Dialect, SinkError, TableSpec, Waits, WriteError};
use crate::model::{Cell, ColumnType, Row};

/// MySQL refuses statements with more than 65,535 placeholders.
const MAX_PARAMETERS: usize = 65_000;
/// Measured here: 1,000–2,000 rows per statement in one transaction is the fastest.
const MAX_ROWS_PER_STATEMENT: usize = 2_000;
/// The bind buffer reserved per row: a GitHub row's values take about 300 bytes.
const RESERVED_BYTES_PER_ROW: usize = 1_024;
/// MySQL's duplicate-key error number, the only warning an insert may leave.
const DUPLICATE_KEY: u32 = 1062;
/// MySQL 8's "deprecated syntax" note, which an upsert's `VALUES()` leaves.
const DEPRECATED: u32 = 1287;

#[derive(Debug)]
pub struct MysqlSink {
    pool: MySqlPool,
    /// The server's `max_allowed_packet`: no statement may be larger.
    max_packet: usize,
    /// MariaDB bounds any statement with `max_statement_time`; MySQL has no such variable.
    mariadb: bool,
    /// The type of `id` in the tables we create: compared byte for byte and NO PAD.
    id_type: &'static str,
    /// Insert statements by their head and row count: built once, then only bound.
    statements: Mutex<HashMap<(String, usize), Arc<str>>>,
    /// Inserts' connections, kept out of the pool's pings.
    inserts: super::common::InsertConnections<MySql>,
}

/// `id`, byte for byte and NO PAD (trailing spaces count), on MariaDB: ascii_bin is PAD SPACE.
const MARIADB_ID_TYPE: &str = "VARCHAR(24) CHARACTER SET ascii COLLATE ascii_nopad_bin";
/// The same on MySQL 8 (Aurora MySQL 3), which has no ascii_nopad_bin.
const MYSQL_ID_TYPE: &str = "VARCHAR(24) CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin";
/// A server with neither collation (MySQL 5.7): bytes, and binary strings do not pad.
const BINARY_ID_TYPE: &str = "VARBINARY(24)";

impl MysqlSink {
    pub async fn open(url: &str) -> Result<Self, SinkError> {
        let connect_error = |source| SinkError::Connect {
            url: crate::http::redact(url),
            source,
        };
        let mut options: MySqlConnectOptions = url.parse().map_err(connect_error)?;
        // IAM database authentication sends its token through the cleartext plugin; allowed
        // only when TLS is required, so the token never crosses the network in the clear.
        if matches!(
            options.get_ssl_mode(),
            MySqlSslMode::Required | MySqlSslMode::VerifyCa | MySqlSslMode::VerifyIdentity
        ) {
            options = options.enable_cleartext_plugin(true);
        }
        // One connection first, so that a refused port or a wrong password fails now with its
        // real cause, instead of a pool retrying it until "pool timed out".
        super::probe::<MySqlConnection>(url, &options).await?;
        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|connection, _| {
                Box::pin(async move {
                    // So that SHOW WARNINGS lists every warning of a batch, not the first 64;
                    // and so that no lock is waited for longer than a minute (MySQL's
                    // lock_wait_timeout is a day) where a write does not set its own.
                    let lock = Waits::until(None).lock_seconds();
                    connection
                        .execute(sqlx::AssertSqlSafe(format!(
                            "SET SESSION max_error_count = 65535, \
                             innodb_lock_wait_timeout = {lock}, lock_wait_timeout = {lock}"
                        )))
                        .await
                        .map(drop)
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| SinkError::Connect {
                url: crate::http::redact(url),
                source,
            })?;
        let (max_packet, version, nopad): (u64, String, Option<String>) = sqlx::query_as(
            "SELECT CAST(@@max_allowed_packet AS UNSIGNED), CAST(@@version AS CHAR), \
             (SELECT CAST(MIN(COLLATION_NAME) AS CHAR) FROM information_schema.COLLATIONS \
              WHERE COLLATION_NAME IN ('ascii_nopad_bin', 'utf8mb4_0900_bin'))",
        )
        .fetch_one(&pool)
        .await
        .map_err(|source| SinkError::Connect {
            url: crate::http::redact(url),
            source,
        })?;
        let id_type = match nopad.as_deref() {
            Some("ascii_nopad_bin") => MARIADB_ID_TYPE,
            Some(_) => MYSQL_ID_TYPE,
            None => BINARY_ID_TYPE,
        };
        Ok(MysqlSink {
            pool,
            max_packet: usize::try_from(max_packet).unwrap_or(usize::MAX),
            mariadb: version.contains("MariaDB"),
            id_type,
            statements: Mutex::default(),
            inserts: super::common::InsertConnections::new(),
        })
    }

    /// How a table's `id` compares ids it should keep apart: `None` when byte for byte and
    /// NO PAD, else the collation's name and what it confuses.
    pub async fn id_comparison_fault(
        &self,
        table: &str,
    ) -> Result<Option<(String, &'static str)>, sqlx::Error> {
        let collation: Option<Option<String>> = sqlx::query_scalar(
            "SELECT CAST(COLLATION_NAME AS CHAR) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'id'",
        )
        .bind(table)
        .fetch_optional(&self.pool)
        .await?;
        // No collation: a binary string, compared byte for byte without padding. A NO PAD
        // collation says so in its name on both servers (MariaDB's `_nopad_`, MySQL 8's
        // `_0900_`); every other one pads with spaces.
        Ok(collation.flatten().and_then(|collation| {
            let fault = if !collation.ends_with("_bin") {
                "ids that differ only in case"
            } else if !(collation.contains("_nopad_") || collation.contains("_0900_")) {
                "ids that differ only in trailing spaces"
            } else {
                return None;
            };
            Some((collation, fault))
        }))
    }

    /// The statement that gives an old table's `id` the type of the tables we create.
    pub fn id_fix(&self, table: &str) -> String {
        format!(
            "ALTER TABLE `{table}` MODIFY `id` {} NOT NULL",
            self.id_type
        )
    }

    /// The statement that sets this session's lock waits (and on MariaDB its statement time)
    /// for the next transaction.
    fn waits_statement(&self, waits: Waits) -> String {
        let lock = waits.lock_seconds();
        let mut sql =
            format!("SET SESSION innodb_lock_wait_timeout = {lock}, lock_wait_timeout = {lock}");
        if self.mariadb {
            sql.push_str(&format!(
                ", max_statement_time = {:.3}",
                waits.statement.as_secs_f64()
            ));
        }
        sql
    }

    async fn set_waits(
        &self,
        connection: &mut MySqlConnection,
        waits: Waits,
    ) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(self.waits_statement(waits)))
            .execute(connection)
            .await
            .map(drop)
    }
}

impl super::Engine for MysqlSink {
    /// Half the packet: bound values travel as they are, and the rest of the packet is headroom
    /// for the statement's text and the protocol's length prefixes.
    fn max_statement_bytes(&self) -> usize {
        self.max_packet / 2
    }

    fn added_columns(&self) -> [(&'static str, &'static str, &'static str); 10] {
        use super::{DEAD_LETTER_TABLE as D, RUN_LOG_TABLE as R};
        [
            (R, "done_until", "BIGINT"),
            (R, "expires_at", "BIGINT"),
            (R, "plugin_version", "VARCHAR(64) NULL"),
            (R, "plugin_sha256", "CHAR(64) NULL"),
            (R, "updated", "BIGINT NOT NULL DEFAULT 0"),
            (R, "unchanged", "BIGINT NOT NULL DEFAULT 0"),
            (D, "attempts", "INT NOT NULL DEFAULT 1"),
            (D, "replayed_at", "BIGINT NULL"),
            (D, "replay_run_id", "VARCHAR(64) NULL"),
            (D, "replay_outcome", "VARCHAR(16) NULL"),
        ]
    }

    fn failed_at_seconds(&self) -> &'static str {
        "UNIX_TIMESTAMP(failed_at)"
    }

    fn as_text(&self, column: &str) -> String {
        format!("CAST({column} AS CHAR)")
    }

    fn bookkeeping_ddl(&self) -> [(&'static str, &'static str); 2] {
        [
            (
                super::DEAD_LETTER_TABLE,
                "CREATE TABLE IF NOT EXISTS batch_job_failed_documents (
                    failure_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                    run_id VARCHAR(64) NOT NULL, type_name VARCHAR(64) NOT NULL,
                    document_id VARCHAR(255), timestamp BIGINT, stage VARCHAR(16) NOT NULL,
                    error TEXT NOT NULL, document LONGTEXT NOT NULL,
                    failed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                    attempts INT NOT NULL DEFAULT 1, replayed_at BIGINT NULL,
                    replay_run_id VARCHAR(64) NULL, replay_outcome VARCHAR(16) NULL,
                    KEY (run_id), KEY (type_name, document_id))",
            ),
            (
                super::RUN_LOG_TABLE,
                "CREATE TABLE IF NOT EXISTS batch_job_runs (
                    run_id VARCHAR(64) NOT NULL, type_name VARCHAR(64) NOT NULL,
                    window_from BIGINT, window_to BIGINT, scheduled BOOLEAN NOT NULL DEFAULT FALSE, status VARCHAR(16) NOT NULL,
                    inserted BIGINT NOT NULL DEFAULT 0, duplicates BIGINT NOT NULL DEFAULT 0,
                    refused BIGINT NOT NULL DEFAULT 0, failed BIGINT NOT NULL DEFAULT 0,
                    error TEXT, started_at BIGINT NOT NULL, finished_at BIGINT,
                    done_until BIGINT, expires_at BIGINT,
                    plugin_version VARCHAR(64) NULL, plugin_sha256 CHAR(64) NULL,
                    updated BIGINT NOT NULL DEFAULT 0, unchanged BIGINT NOT NULL DEFAULT 0,
                    PRIMARY KEY (run_id, type_name), KEY (type_name, status))",
            ),
        ]
    }

    /// CONTRACT §3: `id VARCHAR(24)` primary key, `timestamp BIGINT`; the id compared
    /// byte for byte (base64 is case-sensitive) and NO PAD (PAD SPACE collations, ascii_bin
    /// among them, ignore trailing spaces), which fixes the old tables' case-insensitive
    /// default.
    fn dialect(&self) -> Dialect {
        Dialect {
            quote: '`',
            id_type: self.id_type,
            timestamp_type: "BIGINT",
            column_type: sql_type,
        }
    }

    /// Whether a column's type (`COLUMN_TYPE`, e.g. `int(11)`, `tinyint(1)`) holds the values.
    fn compatible(&self, found: &str, kind: ColumnType) -> bool {
        let base = found
            .split(['(', ' '])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match kind {
            ColumnType::Text => matches!(
                base.as_str(),
                "varchar" | "char" | "text" | "tinytext" | "mediumtext" | "longtext"
            ),
            ColumnType::Int => matches!(
                base.as_str(),
                "int" | "integer" | "bigint" | "mediumint" | "smallint" | "tinyint"
            ),
            ColumnType::Float => matches!(
                base.as_str(),
                "decimal" | "numeric" | "double" | "float" | "real"
            ),
            ColumnType::Bool => matches!(
                base.as_str(),
                "tinyint" | "bit" | "smallint" | "int" | "bigint" | "boolean" | "bool"
            ),
        }
    }

    fn rows_per_statement(&self, table: &TableSpec) -> usize {
        (MAX_PARAMETERS / (table.columns.len() + 2)).min(MAX_ROWS_PER_STATEMENT)
    }

    /// A unique index (the primary key among them) on the whole of `id` alone.
    async fn unique_id(&self, table: &str) -> Result<bool, sqlx::Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.STATISTICS s \
             WHERE s.TABLE_SCHEMA = DATABASE() AND s.TABLE_NAME = ? AND s.NON_UNIQUE = 0 \
               AND s.COLUMN_NAME = 'id' AND s.SEQ_IN_INDEX = 1 AND s.SUB_PART IS NULL \
               AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS o \
                   WHERE o.TABLE_SCHEMA = s.TABLE_SCHEMA AND o.TABLE_NAME = s.TABLE_NAME \
                     AND o.INDEX_NAME = s.INDEX_NAME AND o.SEQ_IN_INDEX > 1)",
        )
        .bind(table)
        .fetch_one(&self.pool)
        .await?;
        Ok(count > 0)
    }

    fn unique_id_fix(&self, table: &str) -> String {
        format!("ALTER TABLE `{table}` ADD PRIMARY KEY (`id`)")
    }

    /// `float` (and `float(M,D)`) is 4 bytes: about 7 significant digits. `FLOAT(p)` with
    /// p > 24 is created as `double`.
    fn single_precision(&self, found: &str) -> bool {
        found
            .split(['(', ' '])
            .next()
            .unwrap_or_default()
            .eq_ignore_ascii_case("float")
    }

    /// MySQL serialises concurrent DDL on one table with metadata locks, and `CREATE TABLE IF
    /// NOT EXISTS` of a table made meanwhile is a note: no lock of ours is needed. The
    /// metadata lock wait is bounded.
    async fn execute_ddl(&self, sql: &str, waits: Waits) -> Result<(), sqlx::Error> {
        let mut connection = self.pool.acquire().await?;
        self.set_waits(&mut connection, waits).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut *connection)
            .await
            .map(drop)
    }

    bookkeeping!(
        MySql,
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION"
    );
}

/// The row counts an insert is sent with: the largest, then each two thirds of the one before,
/// down to one. A chunk's rows are padded up to the next of these with repeats of its last row
/// (duplicates within the statement, which `IGNORE` skips and counts as warnings), so that a
/// connection prepares a handful of statements once instead of one per chunk size: preparing
/// a 2,000-row insert sends back a definition of each of its 26,000 placeholders, a megabyte.
fn statement_rows(rows: usize, largest: usize) -> usize {
    let mut shape = largest.max(rows);
    while shape * 2 / 3 >= rows && shape > 1 {
        shape = shape * 2 / 3;
    }
    shape
}

impl MysqlSink {
    /// The text of an insert of `rows` rows into `table`, built once per shape and kept (an
    /// upsert's, of any row count, is built each time).
    fn insert_statement(&self, table: &TableSpec, rows: usize, update: bool) -> Arc<str> {
        let head = format!(
            "INSERT {}INTO `{}` ({}) VALUES ",
            if update { "" } else { "IGNORE " },
            table.name,
            table.column_list('`')
        );
        let mut statements = self
            .statements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(statement) = statements.get(&(head.clone(), rows)) {
            return Arc::clone(statement);
        }
        // No spaces: the text is hashed and compared on every execute (sqlx's statement
        // cache), and a 5,000-row insert has 65,000 placeholders.
        let placeholders = format!("({})", vec!["?"; table.columns.len() + 2].join(","));
        let mut sql = head.clone();
        sql.push_str(&vec![placeholders.as_str(); rows].join(","));
        if update {
            // `VALUES()` is what MariaDB knows; MySQL 8 says it is deprecated (1287), which is
            // no change of a value.
            sql.push_str(&format!(
                " ON DUPLICATE KEY UPDATE {}",
                table.update_list('`', |column| format!("VALUES({column})"))
            ));
        }
        let sql: Arc<str> = sql.into();
        if !update {
            statements.insert((head, rows), Arc::clone(&sql));
        }
        sql
    }

    async fn insert_on(
        &self,
        connection: &mut MySqlConnection,
        table: &TableSpec,
        rows: &[Row],
        waits: Waits,
        update: bool,
    ) -> Result<u64, WriteError> {
        if rows.is_empty() {
            return Ok(0);
        }
        // An update overwrites: no IGNORE, so a value the database would change fails the
        // row; and no padding, since a repeated row would be updated once more.
        let shape = if update {
            rows.len()
        } else {
            statement_rows(rows.len(), super::Engine::rows_per_statement(self, table))
        };
        let sql = self.insert_statement(table, shape, update);
        let padding = std::iter::repeat_n(rows.last(), shape - rows.len()).flatten();
        let arguments = bind_rows(table, rows.iter().chain(padding))?;
        // The waits are set in the round trip that begins the transaction.
        let begin = format!("{}; BEGIN", self.waits_statement(waits));
        let mut transaction = connection.begin_with(sqlx::AssertSqlSafe(begin)).await?;
        let inserted = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        // Every duplicate (the padding's among them) leaves one warning (1062). When the count
        // says there is nothing else, the warnings need not be read: an all-duplicates rerun
        // then costs no 2,000-row answer. An update reports found rows (CLIENT_FOUND_ROWS),
        // never fewer than it was given.
        let duplicates = if update { 0 } else { shape as u64 - inserted };
        let warning_count: u64 = sqlx::query_scalar("SELECT CAST(@@warning_count AS UNSIGNED)")
            .fetch_one(&mut *transaction)
            .await?;
        if warning_count == duplicates {
            transaction.commit().await?;
            return Ok(inserted);
        }
        let warnings = sqlx::raw_sql("SHOW WARNINGS")
            .fetch_all(&mut *transaction)
            .await?;
        let changed: Vec<String> = warnings
            .iter()
            .filter_map(|warning| {
                let code = warning
                    .try_get::<u32, _>(1)
                    .or_else(|_| warning.try_get::<i64, _>(1).map(|code| code as u32))
                    .unwrap_or(0);
                let message: String = warning.try_get(2).unwrap_or_default();
                (code != DUPLICATE_KEY && code != DEPRECATED).then(|| format!("{code}: {message}"))
            })
            .take(5)
            .collect();
        if !changed.is_empty() {
            transaction.rollback().await?;
            return Err(WriteError::Changed(changed.join("; ")));
        }
        transaction.commit().await?;
        Ok(inserted)
    }
}

/// The rows' values as binds; NULL bound untyped, which MySQL accepts for any column. Floats
/// go as text rounded to the 2 decimals of `DECIMAL(20,2)`: MySQL would otherwise round a
/// double itself and say so with a note that fails the row.
fn bind_rows<'r>(
    table: &TableSpec,
    rows: impl Iterator<Item = &'r Row> + Clone,
) -> Result<MySqlArguments, WriteError> {
    use sqlx::Arguments as _;
    use std::fmt::Write as _;
    let encode = |error| WriteError::Database(sqlx::Error::Encode(error));
    // Reserved generously rather than weighed: weighing every row first costs a pass over
    // them, and the pages of a reservation that are never written are never touched.
    let count = rows.clone().count();
    let mut arguments = MySqlArguments::default();
    arguments.reserve(
        count * (table.columns.len() + 2),
        count * RESERVED_BYTES_PER_ROW,
    );
    let mut decimal = String::new();
    for row in rows {
        arguments.add(row.id.as_str()).map_err(encode)?;
        arguments.add(row.timestamp).map_err(encode)?;
        for cell in &row.cells {
            match cell {
                Cell::Null => arguments.add(None::<&str>),
                Cell::Text(text) => arguments.add(text.as_str()),
                Cell::Int(int) => arguments.add(*int),
                Cell::Float(float) => {
                    decimal.clear();
                    let _ = write!(decimal, "{float:.2}");
                    arguments.add(decimal.as_str())
                }
                Cell::Bool(flag) => arguments.add(*flag),
            }
            .map_err(encode)?;
        }
    }
    Ok(arguments)
}

/// CONTRACT §3: text → TEXT, int → INT, float → DECIMAL(20,2), bool → BOOL.
fn sql_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "TEXT",
        ColumnType::Int => "INT",
        ColumnType::Float => "DECIMAL(20,2)",
        ColumnType::Bool => "BOOL",
    }
}
