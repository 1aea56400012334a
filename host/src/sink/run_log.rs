//! The run log: each run of each type with its window, counts and status, which catch-up reads
//! to leave no hole.

use super::{Engine, RUN_LOG_TABLE, Sink, SinkError, engine};
use crate::config::Window;
use crate::summary::TypeSummary;

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
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Abandoned => "abandoned",
        }
    }
}

impl Sink {
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
}
