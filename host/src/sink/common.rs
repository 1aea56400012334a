//! What the three engines share: the bookkeeping statements, written once and expanded per
//! engine, because sqlx's generic bounds over `Database` cost more to read than this does.

/// Expands into the bookkeeping methods of an engine struct with a `pool: Pool<$db>` field and
/// an `inserts` field (its connections for inserts).
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
            update: bool,
        ) -> Result<u64, super::WriteError> {
            let mut connection = self.inserts.take(&self.pool).await?;
            let result = self.insert_on(&mut connection, table, rows, waits, update).await;
            let broken = matches!(result, Err(super::WriteError::Database(_)));
            self.inserts.give_back(connection, broken).await;
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

        async fn stored_rows(
            &self,
            table: &super::TableSpec,
            ids: &[&str],
        ) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
            use sqlx::Row as _;
            let quote = <Self as super::Engine>::dialect(self).quote;
            let quoted = |name: &str| format!("{quote}{name}{quote}");
            let columns: Vec<String> = ["id", "timestamp"]
                .into_iter()
                .chain(table.columns.iter().map(|c| c.name.as_str()))
                .map(|name| <Self as super::Engine>::as_text(self, &quoted(name)))
                .collect();
            let mut select = sqlx::QueryBuilder::<$db>::new(format!(
                "SELECT {} FROM {} WHERE {} IN (",
                columns.join(", "),
                quoted(&table.name),
                quoted("id")
            ));
            let mut list = select.separated(", ");
            for id in ids {
                list.push_bind(id.to_string());
            }
            select.push(")");
            let rows = select.build().fetch_all(&self.pool).await?;
            rows.iter()
                .map(|row| {
                    (0..columns.len())
                        .map(|index| row.try_get::<Option<String>, _>(index))
                        .collect()
                })
                .collect()
        }

        async fn dead_letters(
            &self,
            query: &super::replay::DeadLetterQuery,
        ) -> Result<Vec<super::replay::StoredDeadLetter>, sqlx::Error> {
            let key = <Self as super::Engine>::dead_letter_key(self);
            let mut select = sqlx::QueryBuilder::<$db>::new(format!(
                "SELECT {key}, run_id, type_name, document_id, timestamp, stage, error, document \
                 FROM batch_job_failed_documents \
                 WHERE (replay_outcome IS NULL OR replay_outcome = 'failed') AND stage <> 'source'"
            ));
            if let Some(types) = &query.types {
                select.push(" AND type_name IN (");
                let mut list = select.separated(", ");
                for type_name in types {
                    list.push_bind(type_name.clone());
                }
                select.push(")");
            }
            if !query.stages.is_empty() {
                select.push(" AND stage IN (");
                let mut list = select.separated(", ");
                for stage in &query.stages {
                    list.push_bind(stage.to_string());
                }
                select.push(")");
            }
            let seconds = <Self as super::Engine>::failed_at_seconds(self);
            if let Some(since) = query.failed_since {
                select.push(format!(" AND {seconds} >= ")).push_bind(since);
            }
            if let Some(until) = query.failed_until {
                select.push(format!(" AND {seconds} <= ")).push_bind(until);
            }
            if let Some(run_id) = &query.run_id {
                select.push(" AND run_id = ").push_bind(run_id.clone());
            }
            select.push(format!(" ORDER BY {key}"));
            let rows: Vec<(
                i64,
                String,
                String,
                Option<String>,
                Option<i64>,
                String,
                String,
                String,
            )> = select.build_query_as().fetch_all(&self.pool).await?;
            Ok(rows
                .into_iter()
                .map(
                    |(key, run_id, type_name, document_id, timestamp, stage, error, document)| {
                        super::replay::StoredDeadLetter {
                            key,
                            run_id,
                            type_name,
                            document_id,
                            timestamp,
                            stage,
                            error,
                            document,
                        }
                    },
                )
                .collect())
        }

        async fn mark_replayed(
            &self,
            run_id: &str,
            outcome: &str,
            keys: &[i64],
        ) -> Result<(), sqlx::Error> {
            let key = <Self as super::Engine>::dead_letter_key(self);
            let mut transaction = self.pool.begin().await?;
            for chunk in keys.chunks(1_000) {
                let mut update = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE batch_job_failed_documents SET replayed_at = ",
                );
                update
                    .push_bind(crate::window::unix_now())
                    .push(", replay_run_id = ")
                    .push_bind(run_id.to_owned())
                    .push(", replay_outcome = ")
                    .push_bind(outcome.to_owned())
                    .push(format!(" WHERE {key} IN ("));
                let mut list = update.separated(", ");
                for record in chunk {
                    list.push_bind(*record);
                }
                update.push(")");
                update.build().execute(&mut *transaction).await?;
            }
            transaction.commit().await
        }

        async fn replay_failed(
            &self,
            run_id: &str,
            stage: &str,
            records: &[(i64, String)],
        ) -> Result<(), sqlx::Error> {
            let key = <Self as super::Engine>::dead_letter_key(self);
            let now = crate::window::unix_now();
            let mut transaction = self.pool.begin().await?;
            for (record, error) in records {
                let mut update = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE batch_job_failed_documents SET attempts = attempts + 1, stage = ",
                );
                update
                    .push_bind(stage.to_owned())
                    .push(", error = ")
                    .push_bind(error.clone())
                    .push(", replayed_at = ")
                    .push_bind(now)
                    .push(", replay_run_id = ")
                    .push_bind(run_id.to_owned())
                    .push(", replay_outcome = 'failed'")
                    .push(format!(" WHERE {key} = "))
                    .push_bind(*record);
                update.build().execute(&mut *transaction).await?;
            }
            transaction.commit().await
        }

        async fn purge_stored(&self, types: Option<&[String]>) -> Result<u64, sqlx::Error> {
            let mut delete = sqlx::QueryBuilder::<$db>::new(
                "DELETE FROM batch_job_failed_documents \
                 WHERE replay_outcome IN ('stored', 'duplicate')",
            );
            if let Some(types) = types {
                delete.push(" AND type_name IN (");
                let mut list = delete.separated(", ");
                for type_name in types {
                    list.push_bind(type_name.clone());
                }
                delete.push(")");
            }
            Ok(delete.build().execute(&self.pool).await?.rows_affected())
        }

        async fn run_started(&self, start: super::RunStart<'_>) -> Result<(), sqlx::Error> {
            let mut insert = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO batch_job_runs (run_id, type_name, window_from, window_to, scheduled, status, started_at, expires_at, plugin_version, plugin_sha256) VALUES (",
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
                .push(", ")
                .push_bind(start.plugin_version.map(str::to_owned))
                .push(", ")
                .push_bind(start.plugin_sha256.map(str::to_owned))
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
                .push(", updated = ")
                .push_bind(count(counts.updated))
                .push(", unchanged = ")
                .push_bind(count(counts.unchanged))
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

        async fn run_records(
            &self,
            optional: &[&'static str],
        ) -> Result<Vec<super::RunRecord>, sqlx::Error> {
            use sqlx::Row as _;
            let mut sql = String::from(
                "SELECT run_id, type_name, window_from, window_to, scheduled, status, inserted, \
                 duplicates, refused, failed, error, started_at, finished_at",
            );
            for column in optional {
                sql.push_str(", ");
                sql.push_str(column);
            }
            sql.push_str(" FROM batch_job_runs");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await?;
            // A later version's column is read leniently: whatever type it was given, a value
            // that is not text (or a number) is shown as not recorded.
            let text = |row: &<$db as sqlx::Database>::Row, column: &str| -> Option<String> {
                if !optional.contains(&column) {
                    return None;
                }
                row.try_get::<Option<String>, _>(column).ok().flatten()
            };
            let number = |row: &<$db as sqlx::Database>::Row, column: &str| -> Option<i64> {
                if !optional.contains(&column) {
                    return None;
                }
                row.try_get::<Option<i64>, _>(column).ok().flatten()
            };
            rows.iter()
                .map(|row| {
                    let from: Option<i64> = row.try_get("window_from")?;
                    let to: Option<i64> = row.try_get("window_to")?;
                    Ok(super::RunRecord {
                        run_id: row.try_get("run_id")?,
                        type_name: row.try_get("type_name")?,
                        window: from.zip(to),
                        scheduled: row.try_get("scheduled")?,
                        status: row.try_get("status")?,
                        inserted: row.try_get("inserted")?,
                        duplicates: row.try_get("duplicates")?,
                        refused: row.try_get("refused")?,
                        failed: row.try_get("failed")?,
                        error: row.try_get("error")?,
                        started_at: row.try_get("started_at")?,
                        finished_at: row.try_get("finished_at")?,
                        done_until: number(row, "done_until"),
                        expires_at: number(row, "expires_at"),
                        plugin_version: text(row, "plugin_version"),
                        plugin_sha256: text(row, "plugin_sha256"),
                    })
                })
                .collect()
        }

        async fn dead_letter_counts(
            &self,
            since: Option<i64>,
            with_outcome: bool,
        ) -> Result<Vec<super::DeadLetterCount>, sqlx::Error> {
            use sqlx::Row as _;
            let outcome = if with_outcome { ", replay_outcome" } else { "" };
            let mut select = sqlx::QueryBuilder::<$db>::new(format!(
                "SELECT type_name, stage{outcome}, COUNT(*) AS records \
                 FROM batch_job_failed_documents"
            ));
            if let Some(since) = since {
                select
                    .push(" WHERE timestamp IS NULL OR timestamp >= ")
                    .push_bind(since);
            }
            select.push(format!(" GROUP BY type_name, stage{outcome}"));
            let rows = select.build().fetch_all(&self.pool).await?;
            rows.iter()
                .map(|row| {
                    let records: i64 = row.try_get("records")?;
                    Ok(super::DeadLetterCount {
                        type_name: row.try_get("type_name")?,
                        stage: row.try_get("stage")?,
                        outcome: if with_outcome {
                            row.try_get("replay_outcome")?
                        } else {
                            None
                        },
                        count: u64::try_from(records).unwrap_or(0),
                    })
                })
                .collect()
        }

        async fn close(&self) {
            self.inserts.close().await;
            self.pool.close().await;
        }
    };
}

/// The connections inserts run on, kept apart from sqlx's pool: the pool pings a connection
/// each time it is handed back (and by default each time it is handed out), two round trips
/// around every insert statement. A connection kept here goes straight back to the next
/// insert; one that failed is closed, and a dead one fails its insert, which is retried on
/// another (`insert_chunk`'s retries), so the pings would only have found it sooner.
#[cfg(any(feature = "mysql", feature = "postgres"))]
pub(super) struct InsertConnections<DB: sqlx::Database> {
    idle: std::sync::Mutex<Vec<DB::Connection>>,
}

/// More than the writes in flight ever need at once; any beyond are closed.
#[cfg(any(feature = "mysql", feature = "postgres"))]
const KEPT_INSERT_CONNECTIONS: usize = 4;

#[cfg(any(feature = "mysql", feature = "postgres"))]
impl<DB: sqlx::Database> InsertConnections<DB> {
    pub(super) fn new() -> Self {
        InsertConnections {
            idle: std::sync::Mutex::default(),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<DB::Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A kept connection, or a new one from the pool, detached from it (the pool may open
    /// another in its place for the rest of the sink's work).
    pub(super) async fn take(&self, pool: &sqlx::Pool<DB>) -> Result<DB::Connection, sqlx::Error> {
        let kept = self.idle().pop();
        match kept {
            Some(connection) => Ok(connection),
            None => Ok(pool.acquire().await?.detach()),
        }
    }

    /// Keeps a connection for the next insert, or closes it when its insert failed in the
    /// database (after a failover it may be talking to an instance that is now read-only).
    pub(super) async fn give_back(&self, connection: DB::Connection, broken: bool) {
        use sqlx::Connection as _;
        let extra = if broken {
            Some(connection)
        } else {
            let mut idle = self.idle();
            if idle.len() < KEPT_INSERT_CONNECTIONS {
                idle.push(connection);
                None
            } else {
                Some(connection)
            }
        };
        if let Some(connection) = extra {
            let _ = connection.close().await;
        }
    }

    pub(super) async fn close(&self) {
        use sqlx::Connection as _;
        let kept = std::mem::take(&mut *self.idle());
        for connection in kept {
            let _ = connection.close().await;
        }
    }
}

#[cfg(any(feature = "mysql", feature = "postgres"))]
impl<DB: sqlx::Database> std::fmt::Debug for InsertConnections<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertConnections")
            .field("idle", &self.idle().len())
            .finish()
    }
}

/// SQLite's inserts take the pool's one connection: a second would contend for the file's
/// write lock, and its pings cost no round trip.
#[cfg(feature = "sqlite")]
#[derive(Debug)]
pub(super) struct PooledInserts;

#[cfg(feature = "sqlite")]
impl PooledInserts {
    pub(super) async fn take(
        &self,
        pool: &sqlx::SqlitePool,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, sqlx::Error> {
        pool.acquire().await
    }

    /// Closes the connection when its insert failed in the database: after SQLite rolled a
    /// transaction back on its own, sqlx still counts it open (see `insert_chunk`).
    pub(super) async fn give_back(
        &self,
        connection: sqlx::pool::PoolConnection<sqlx::Sqlite>,
        broken: bool,
    ) {
        if broken {
            let _ = connection.close().await;
        }
    }

    pub(super) async fn close(&self) {}
}

/// Binds a row's cells (SQLite's inserts); NULL is bound untyped, which SQLite accepts for any
/// column.
#[cfg(feature = "sqlite")]
macro_rules! push_row {
    ($values:expr, $row:expr) => {{
        // Borrowed, not cloned: a bind encodes the value as it is pushed.
        let row: &crate::model::Row = $row;
        $values.push_bind(row.id.as_str());
        $values.push_bind(row.timestamp);
        for cell in &row.cells {
            match cell {
                crate::model::Cell::Null => $values.push_bind(None::<&str>),
                crate::model::Cell::Text(text) => $values.push_bind(text.as_str()),
                crate::model::Cell::Int(int) => $values.push_bind(*int),
                crate::model::Cell::Float(float) => $values.push_bind(*float),
                crate::model::Cell::Bool(flag) => $values.push_bind(*flag),
            };
        }
    }};
}
