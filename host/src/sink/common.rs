//! What the three engines share: the bookkeeping statements, written once and expanded per
//! engine, because sqlx's generic bounds over `Database` cost more to read than this does.

/// Expands into the bookkeeping methods of an engine struct with a `pool: Pool<$db>` field.
/// `$columns_sql` lists a table's columns as (name, type) rows, the table name bound once.
macro_rules! bookkeeping {
    ($db:ty, $columns_sql:expr) => {
        /// The columns of `table`, with their types as the database names them; none when the
        /// table does not exist.
        async fn existing_columns(
            &self,
            table: &str,
        ) -> Result<Vec<(String, String)>, sqlx::Error> {
            use sqlx::Row as _;
            let rows = sqlx::query($columns_sql)
                .bind(table)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        }

        /// Inserts rows in one transaction (the engine's `insert_on`); the number inserted,
        /// duplicates being skipped. After a database error the connection is closed rather
        /// than reused: after a failover it may be talking to an instance that is now
        /// read-only. And after SQLite rolled a transaction back on its own (SQLITE_FULL),
        /// sqlx still counts it open (its ROLLBACK fails unnoticed): the connection's next
        /// `begin` is a `SAVEPOINT`, which opens a transaction that, after one more failure,
        /// nothing ever commits. Every later "commit" then only releases a savepoint, reports
        /// success, and is rolled back when the connection closes (measured on a full tmpfs:
        /// 250 rows stored, 1,900 reported).
        async fn insert_chunk(
            &self,
            table: &super::TableSpec,
            rows: &[crate::model::Row],
            waits: super::Waits,
        ) -> Result<u64, super::WriteError> {
            let mut connection = self.pool.acquire().await?;
            let result = self.insert_on(&mut connection, table, rows, waits).await;
            if matches!(result, Err(super::WriteError::Database(_))) {
                let _ = connection.close().await;
            }
            result
        }

        async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&self.pool)
                .await
                .map(drop)
        }

        async fn record_failures(
            &self,
            run_id: &str,
            failures: &[crate::model::FailedDocument],
        ) -> Result<(), sqlx::Error> {
            let mut transaction = self.pool.begin().await?;
            // Seven parameters a row: far under every engine's limit.
            for chunk in failures.chunks(500) {
                let mut insert = sqlx::QueryBuilder::<$db>::new(
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
                insert.build().execute(&mut *transaction).await?;
            }
            transaction.commit().await
        }

        async fn run_started(&self, start: super::RunStart<'_>) -> Result<(), sqlx::Error> {
            let mut insert = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO batch_job_runs (run_id, type_name, window_from, window_to, scheduled, status, started_at, expires_at) VALUES (",
            );
            insert
                .push_bind(start.run_id.to_owned())
                .push(", ")
                .push_bind(start.type_name.to_owned())
                .push(", ")
                .push_bind(start.window.map(|w| w.from))
                .push(", ")
                .push_bind(start.window.map(|w| w.to))
                .push(", ")
                .push_bind(start.scheduled)
                .push(", ")
                .push_bind(super::RunStatus::Running.as_str())
                .push(", ")
                .push_bind(start.started_at)
                .push(", ")
                .push_bind(start.expires_at)
                .push(")");
            insert.build().execute(&self.pool).await.map(drop)
        }

        async fn run_finished(
            &self,
            run_id: &str,
            type_name: &str,
            counts: &crate::summary::TypeSummary,
            status: super::RunStatus,
            done_until: Option<i64>,
        ) -> Result<(), sqlx::Error> {
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let mut update = sqlx::QueryBuilder::<$db>::new("UPDATE batch_job_runs SET status = ");
            update
                .push_bind(status.as_str())
                .push(", inserted = ")
                .push_bind(count(counts.inserted))
                .push(", duplicates = ")
                .push_bind(count(counts.duplicates))
                .push(", refused = ")
                .push_bind(count(counts.refused))
                .push(", failed = ")
                .push_bind(count(counts.failed))
                .push(", error = ")
                .push_bind(counts.error.clone())
                .push(", done_until = ")
                .push_bind(done_until)
                .push(", finished_at = ")
                .push_bind(crate::window::unix_now())
                .push(" WHERE run_id = ")
                .push_bind(run_id.to_owned())
                .push(" AND type_name = ")
                .push_bind(type_name.to_owned());
            update.build().execute(&self.pool).await.map(drop)
        }

        async fn run_interrupted(&self, run_id: &str, reason: &str) -> Result<(), sqlx::Error> {
            let mut update = sqlx::QueryBuilder::<$db>::new("UPDATE batch_job_runs SET status = ");
            update
                .push_bind(super::RunStatus::Interrupted.as_str())
                .push(", error = ")
                .push_bind(reason.to_owned())
                .push(", finished_at = ")
                .push_bind(crate::window::unix_now())
                .push(" WHERE status = ")
                .push_bind(super::RunStatus::Running.as_str())
                .push(" AND run_id = ")
                .push_bind(run_id.to_owned());
            update.build().execute(&self.pool).await.map(drop)
        }

        async fn expire_running(&self, now: i64) -> Result<u64, sqlx::Error> {
            let mut update = sqlx::QueryBuilder::<$db>::new("UPDATE batch_job_runs SET status = ");
            update
                .push_bind(super::RunStatus::Interrupted.as_str())
                .push(", error = ")
                .push_bind(
                    "still running after the longest a run can last (its deadline plus a margin): \
                     its process died without saying how it ended (killed, out of memory, timed out)",
                )
                .push(" WHERE status = ")
                .push_bind(super::RunStatus::Running.as_str())
                // Rows of older versions have no expiry: the longest a run without a deadline
                // lasts, from their start.
                .push(" AND COALESCE(expires_at, started_at + ")
                .push_bind(super::RUN_WITHOUT_DEADLINE_SECS + super::RUN_MARGIN_SECS)
                .push(") < ")
                .push_bind(now);
            let done = update.build().execute(&self.pool).await?;
            Ok(done.rows_affected())
        }

        async fn logged_windows(
            &self,
            type_name: &str,
        ) -> Result<Vec<super::LoggedWindow>, sqlx::Error> {
            let mut select = sqlx::QueryBuilder::<$db>::new(
                "SELECT window_from, window_to, status, scheduled, done_until, started_at \
                 FROM batch_job_runs WHERE window_from IS NOT NULL AND window_to IS NOT NULL \
                 AND type_name = ",
            );
            select.push_bind(type_name.to_owned());
            let rows: Vec<(i64, i64, String, bool, Option<i64>, i64)> =
                select.build_query_as().fetch_all(&self.pool).await?;
            Ok(rows
                .into_iter()
                .map(
                    |(from, to, status, scheduled, done_until, started_at)| super::LoggedWindow {
                        from,
                        to,
                        status: super::RunStatus::parse(&status),
                        scheduled,
                        done_until,
                        started_at,
                    },
                )
                .collect())
        }

        async fn failed_attempts(
            &self,
            type_name: &str,
            window_from: i64,
        ) -> Result<u64, sqlx::Error> {
            let mut select = sqlx::QueryBuilder::<$db>::new(
                "SELECT COUNT(*) FROM batch_job_runs \
                 WHERE scheduled = TRUE AND status = 'failed' AND type_name = ",
            );
            select
                .push_bind(type_name.to_owned())
                .push(" AND window_from = ")
                .push_bind(window_from);
            let count: i64 = select.build_query_scalar().fetch_one(&self.pool).await?;
            Ok(u64::try_from(count).unwrap_or(0))
        }

        async fn close(&self) {
            self.pool.close().await;
        }
    };
}

/// Binds a row's cells; NULL is bound untyped, which SQLite and MySQL accept for any column.
/// `decimal_floats` binds floats as text rounded to the 2 decimals of `DECIMAL(20,2)`: MySQL
/// would otherwise round a double itself and say so with a note that fails the row.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
macro_rules! push_row {
    ($values:expr, $row:expr) => {
        push_row!($values, $row, false)
    };
    ($values:expr, $row:expr, $decimal_floats:expr) => {{
        let row: &crate::model::Row = $row;
        $values.push_bind(row.id.clone());
        $values.push_bind(row.timestamp);
        for cell in &row.cells {
            match cell {
                crate::model::Cell::Null => $values.push_bind(None::<String>),
                crate::model::Cell::Text(text) => $values.push_bind(text.clone()),
                crate::model::Cell::Int(int) => $values.push_bind(*int),
                crate::model::Cell::Float(float) if $decimal_floats => {
                    $values.push_bind(format!("{float:.2}"))
                }
                crate::model::Cell::Float(float) => $values.push_bind(*float),
                crate::model::Cell::Bool(flag) => $values.push_bind(*flag),
            };
        }
    }};
}
