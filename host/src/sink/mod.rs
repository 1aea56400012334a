//! Where rows and failed documents go. The only module that knows SQL.
//!
//! Invariants:
//! - identifiers reach SQL only after [`crate::model::is_safe_identifier`], and quoted;
//! - a row whose id is already stored is counted as a duplicate and never updated;
//! - inserted + duplicates + failed always equals the rows handed in;
//! - a document whose rows the database refuses is kept in the dead-letter table.

mod sqlite;

use std::sync::Arc;

use crate::document::Envelope;
use crate::model::{Column, ColumnType, FailedDocument, Row, is_safe_identifier};

/// The table failed documents are kept in, in the same database as the rows.
pub const DEAD_LETTER_TABLE: &str = "batch_job_failed_documents";

/// Why the sink could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("unsupported database URL {0:?}: expected sqlite://PATH")]
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

/// A type's table: its name and the plugin's columns (besides `id` and `timestamp`).
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub name: String,
    pub columns: Vec<Column>,
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
}

/// A row with the document it came from, kept so that a refused row can be dead-lettered whole.
#[derive(Debug, Clone)]
pub struct SourcedRow {
    pub row: Row,
    pub document: Arc<Envelope>,
}

/// What one insert did. `inserted + duplicates + failed.len()` equals the rows handed in.
#[derive(Debug, Default)]
pub struct InsertOutcome {
    pub inserted: u64,
    pub duplicates: u64,
    pub failed: Vec<FailedDocument>,
}

/// A schema change made to fit the plugin's columns, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    Created,
    AddedColumn(String),
}

/// A database to write to.
#[derive(Debug)]
pub enum Sink {
    Sqlite(sqlite::SqliteSink),
}

impl Sink {
    /// Opens the database at `url` (`sqlite://PATH`), creating the file when missing, and makes
    /// sure the dead-letter table exists.
    pub async fn connect(url: &str) -> Result<Sink, SinkError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return Ok(Sink::Sqlite(sqlite::SqliteSink::open(url, path).await?));
        }
        Err(SinkError::UnsupportedUrl(redact_url(url)))
    }

    /// Creates the table when missing, or checks it and adds missing columns.
    pub async fn prepare(&self, table: &TableSpec) -> Result<Vec<SchemaChange>, SinkError> {
        match self {
            Sink::Sqlite(sink) => sink.prepare(table).await,
        }
    }

    /// Inserts rows, skipping and counting those whose id is already stored.
    pub async fn insert(
        &self,
        table: &TableSpec,
        rows: &[SourcedRow],
    ) -> Result<InsertOutcome, SinkError> {
        match self {
            Sink::Sqlite(sink) => sink.insert(table, rows).await,
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
        match self {
            Sink::Sqlite(sink) => sink.record_failures(run_id, failures).await,
        }
    }

    pub async fn close(&self) {
        match self {
            Sink::Sqlite(sink) => sink.close().await,
        }
    }
}

/// A URL fit for messages: any password is replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The dead-letter record of a row the database refused.
fn sink_failure(table: &TableSpec, row: &SourcedRow, error: &sqlx::Error) -> FailedDocument {
    FailedDocument {
        type_name: table.name.clone(),
        id: Some(row.row.id.clone()),
        timestamp: Some(row.row.timestamp),
        stage: crate::model::Stage::Sink,
        error: format!("database refused the row: {error}"),
        document: crate::source::envelope_json(&table.name, &row.document),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("mysql://u:secret@h:3306/db"),
            "mysql://u:***@h:3306/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn hostile_table_names_are_refused() {
        let error = TableSpec::new("GithubType; DROP TABLE x", &[]).unwrap_err();
        assert!(matches!(error, SinkError::UnsafeIdentifier(_)));
    }
}
