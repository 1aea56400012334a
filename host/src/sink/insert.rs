//! Rows in: statements sized by rows and bytes, one transaction each, retried when transient;
//! a statement the database refuses is split to find its bad rows.

use backon::Retryable;

use super::{Engine, Sink, SinkError, TableSpec, engine, retry};
use crate::model::Row;

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
    pub(super) fn is_transient(&self) -> bool {
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

impl Sink {
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
    /// refused its values, `Err` when it could not store it at all (unavailable through every
    /// retry the deadline allows, a full disk, a failed commit): then nothing of it is counted,
    /// and the run stops with the reason.
    async fn insert_chunk(
        &self,
        table: &TableSpec,
        rows: &[Row],
    ) -> Result<Result<u64, WriteError>, SinkError> {
        let budget = retry::Budget::new(self.deadline());
        let attempt = || async {
            let waits = self.waits();
            engine!(self, engine => engine.insert_chunk(table, rows, waits).await)
        };
        match attempt
            .retry(retry::backoff())
            .when(WriteError::is_transient)
            .adjust(|_, delay| budget.next_delay(delay))
            .notify(|error, delay| tracing::warn!(table = %table.name, "insert failed, retrying in {delay:?}: {error}"))
            .await
        {
            Err(WriteError::Database(source)) if retry::is_storage_failure(&source) => {
                Err(SinkError::Database {
                    table: table.name.clone(),
                    operation: "insert",
                    source,
                })
            }
            other => Ok(other),
        }
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

/// Consecutive chunks of `items` (with the index of each chunk's first item) of at most
/// `max_items` items and, unless one item alone is larger, `max_bytes` bytes.
pub(super) fn chunks_by_size<T>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_sized_by_bytes() {
        let sizes = [10usize, 10, 10, 50, 10, 200, 5];
        let chunks = chunks_by_size(&sizes, 3, 40, |size| *size);
        let starts: Vec<(usize, usize)> = chunks.iter().map(|(s, c)| (*s, c.len())).collect();
        // A chunk closes at 3 items or before passing 40 bytes; a larger item goes alone.
        assert_eq!(starts, [(0, 3), (3, 1), (4, 1), (5, 1), (6, 1)]);
    }
}
