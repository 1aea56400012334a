//! Reading the bookkeeping tables for `status`, without changing them: the run log's rows and
//! the dead letters' counts, with the columns that a table of this or a later version has.

use super::{DEAD_LETTER_TABLE, Engine, RUN_LOG_TABLE, Sink, SinkError, engine};

/// Run-log columns that older tables lack (added by upgrades) or that later versions add;
/// each is read only when the table has it.
pub(crate) const OPTIONAL_RUN_LOG_COLUMNS: [&str; 4] = [
    "done_until",
    "expires_at",
    "plugin_version",
    "plugin_sha256",
];

/// One row of the run log, as `status` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunRecord {
    pub run_id: String,
    pub type_name: String,
    /// `None` for a run without a window (a replay).
    pub window: Option<(i64, i64)>,
    pub scheduled: bool,
    /// As stored; see [`super::RunStatus::parse`].
    pub status: String,
    pub inserted: i64,
    pub duplicates: i64,
    pub refused: i64,
    pub failed: i64,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub done_until: Option<i64>,
    pub expires_at: Option<i64>,
    pub plugin_version: Option<String>,
    pub plugin_sha256: Option<String>,
}

/// How many dead letters of a type and stage have a replay outcome (`None`: never replayed,
/// or a table without replays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterCount {
    pub type_name: String,
    pub stage: String,
    pub outcome: Option<String>,
    pub count: u64,
}

/// Whether the bookkeeping tables are there, and which of their later columns.
#[derive(Debug, Clone, Default)]
pub struct Bookkeeping {
    pub run_log_columns: Vec<String>,
    pub dead_letter_columns: Vec<String>,
}

impl Sink {
    /// The bookkeeping tables' column names, in lower case; empty for a missing table.
    pub async fn bookkeeping(&self) -> Result<Bookkeeping, SinkError> {
        let mut columns = Vec::new();
        for table in [RUN_LOG_TABLE, DEAD_LETTER_TABLE] {
            let found = self
                .retrying(table, "read columns", || async {
                    engine!(self, engine => engine.existing_columns(table).await)
                })
                .await?;
            columns.push(
                found
                    .into_iter()
                    .map(|(name, _)| name.to_ascii_lowercase())
                    .collect::<Vec<_>>(),
            );
        }
        let dead_letter_columns = columns.pop().unwrap_or_default();
        let run_log_columns = columns.pop().unwrap_or_default();
        Ok(Bookkeeping {
            run_log_columns,
            dead_letter_columns,
        })
    }

    /// Every row of the run log, with the optional columns `bookkeeping` says it has.
    pub async fn run_records(
        &self,
        bookkeeping: &Bookkeeping,
    ) -> Result<Vec<RunRecord>, SinkError> {
        let optional: Vec<&'static str> = OPTIONAL_RUN_LOG_COLUMNS
            .into_iter()
            .filter(|column| bookkeeping.run_log_columns.iter().any(|c| c == column))
            .collect();
        self.retrying(RUN_LOG_TABLE, "read", || async {
            engine!(self, engine => engine.run_records(&optional).await)
        })
        .await
    }

    /// The dead letters counted by type, stage and replay outcome, of documents stamped from
    /// `since` on (and of those without a stamp).
    pub async fn dead_letter_counts(
        &self,
        bookkeeping: &Bookkeeping,
        since: Option<i64>,
    ) -> Result<Vec<DeadLetterCount>, SinkError> {
        let with_outcome = bookkeeping
            .dead_letter_columns
            .iter()
            .any(|column| column == "replay_outcome");
        self.retrying(DEAD_LETTER_TABLE, "read", || async {
            engine!(self, engine => engine.dead_letter_counts(since, with_outcome).await)
        })
        .await
    }
}
