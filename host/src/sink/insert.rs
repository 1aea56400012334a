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

/// What a write does with a row whose id is stored already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExisting {
    /// Keep the stored row; the new one is a duplicate (the contract's rule).
    #[default]
    Skip,
    /// Overwrite the stored row when its values differ (`updated`), else leave it
    /// (`unchanged`): reprocessing with a fixed plugin.
    Update,
}

impl OnExisting {
    pub fn as_str(self) -> &'static str {
        match self {
            OnExisting::Skip => "skip",
            OnExisting::Update => "update",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "skip" => Some(OnExisting::Skip),
            "update" => Some(OnExisting::Update),
            _ => None,
        }
    }
}

/// What a write did with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFate {
    Inserted,
    Duplicate,
    Updated,
    Unchanged,
    Refused,
}

/// What one insert did. `inserted + duplicates + updated + unchanged + refused.len()` equals
/// the rows handed in.
#[derive(Debug, Default)]
pub struct InsertOutcome {
    pub inserted: u64,
    pub duplicates: u64,
    /// With [`OnExisting::Update`]: stored rows overwritten, and stored rows already equal.
    pub updated: u64,
    pub unchanged: u64,
    /// Each row's fate, by its index, when the write was asked for them (else empty).
    pub fates: Vec<RowFate>,
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
        self.insert_rows(table, rows, false).await
    }

    /// [`Sink::insert`], or with `update` an upsert (rows the caller knows to differ).
    async fn insert_rows(
        &self,
        table: &TableSpec,
        rows: &[Row],
        update: bool,
    ) -> Result<InsertOutcome, SinkError> {
        let per_statement = engine!(self, engine => engine.rows_per_statement(table));
        let max_bytes = engine!(self, engine => engine.max_statement_bytes());
        let mut outcome = InsertOutcome::default();
        for (first, chunk) in chunks_by_size(rows, per_statement, max_bytes, row_bytes) {
            match self.insert_chunk(table, chunk, update).await? {
                Ok(inserted) => outcome.add(chunk.len(), inserted),
                Err(_) if chunk.len() > 1 => {
                    for (offset, row) in chunk.iter().enumerate() {
                        match self
                            .insert_chunk(table, std::slice::from_ref(row), update)
                            .await?
                        {
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
        update: bool,
    ) -> Result<Result<u64, WriteError>, SinkError> {
        let budget = retry::Budget::new(self.deadline());
        let attempt = || async {
            let waits = self.waits();
            engine!(self, engine => engine.insert_chunk(table, rows, waits, update).await)
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

impl Sink {
    /// Writes rows by `on_existing`; with `fates` (or an update) each row's fate is known: the
    /// stored rows among them are read first (by id, a statement's worth at a time) and
    /// compared here, then the new rows are inserted and the differing ones overwritten. MySQL
    /// reports *found* rows, so its counts could not tell an unchanged row from a changed
    /// one; comparing here gives exact counts on every engine.
    pub async fn write(
        &self,
        table: &TableSpec,
        rows: &[Row],
        on_existing: OnExisting,
        fates: bool,
    ) -> Result<InsertOutcome, SinkError> {
        if on_existing == OnExisting::Skip && !fates {
            return self.insert(table, rows).await;
        }
        let per_statement = engine!(self, engine => engine.rows_per_statement(table));
        let max_bytes = engine!(self, engine => engine.max_statement_bytes());
        let decimal = engine!(self, engine => engine.decimal_floats());
        let mut outcome = InsertOutcome {
            fates: vec![RowFate::Duplicate; rows.len()],
            ..InsertOutcome::default()
        };
        for (first, chunk) in chunks_by_size(rows, per_statement.min(1_000), max_bytes, row_bytes) {
            let ids: Vec<&str> = chunk.iter().map(|row| row.id.as_str()).collect();
            let stored = self
                .retrying(&table.name, "read stored rows", || async {
                    engine!(self, engine => engine.stored_rows(table, &ids).await)
                })
                .await?;
            let stored: std::collections::HashMap<String, Vec<Option<String>>> = stored
                .into_iter()
                .filter_map(|mut values| {
                    if values.is_empty() {
                        return None;
                    }
                    let id = values.remove(0)?;
                    Some((id, values))
                })
                .collect();
            let mut seen = std::collections::HashSet::new();
            let (mut new, mut changed) = (Vec::new(), Vec::new());
            for (offset, row) in chunk.iter().enumerate() {
                let index = first + offset;
                if !seen.insert(row.id.as_str()) {
                    outcome.fates[index] = RowFate::Duplicate;
                } else if let Some(values) = stored.get(&row.id) {
                    outcome.fates[index] = match on_existing {
                        OnExisting::Skip => RowFate::Duplicate,
                        OnExisting::Update if same_row(table, row, values, decimal) => {
                            RowFate::Unchanged
                        }
                        OnExisting::Update => {
                            changed.push(index);
                            continue;
                        }
                    };
                } else {
                    new.push(index);
                }
            }
            for (indices, update) in [(new, false), (changed, true)] {
                if indices.is_empty() {
                    continue;
                }
                let subset: Vec<Row> = indices.iter().map(|&i| rows[i].clone()).collect();
                let written = self.insert_rows(table, &subset, update).await?;
                let refused: std::collections::HashSet<usize> =
                    written.refused.iter().map(|r| r.index).collect();
                // Rows another writer stored meanwhile are duplicates: the last ones are
                // taken as those (their number is exact, which of them is not).
                let mut lost = if update { 0 } else { written.duplicates };
                for (position, &index) in indices.iter().enumerate().rev() {
                    outcome.fates[index] = if refused.contains(&position) {
                        RowFate::Refused
                    } else if update {
                        RowFate::Updated
                    } else if lost > 0 {
                        lost -= 1;
                        RowFate::Duplicate
                    } else {
                        RowFate::Inserted
                    };
                }
                outcome
                    .refused
                    .extend(written.refused.into_iter().map(|r| RefusedRow {
                        index: indices[r.index],
                        error: r.error,
                    }));
            }
        }
        for fate in &outcome.fates {
            match fate {
                RowFate::Inserted => outcome.inserted += 1,
                RowFate::Duplicate => outcome.duplicates += 1,
                RowFate::Updated => outcome.updated += 1,
                RowFate::Unchanged => outcome.unchanged += 1,
                RowFate::Refused => {}
            }
        }
        outcome.refused.sort_by_key(|r| r.index);
        Ok(outcome)
    }
}

/// Whether a stored row (its values as text, after the id) holds what `row` would store.
/// Floats are compared as the column keeps them: two decimals where it is `DECIMAL(20,2)`.
fn same_row(table: &TableSpec, row: &Row, stored: &[Option<String>], decimal: bool) -> bool {
    use crate::model::{Cell, ColumnType};
    let Some(Some(timestamp)) = stored.first() else {
        return false;
    };
    if timestamp.parse::<i64>().ok() != Some(row.timestamp) {
        return false;
    }
    table
        .columns
        .iter()
        .zip(&row.cells)
        .zip(stored.iter().skip(1))
        .all(|((column, cell), stored)| match (cell, stored.as_deref()) {
            (Cell::Null, None) => true,
            (Cell::Null, Some(_)) | (_, None) => false,
            (Cell::Text(text), Some(found)) => text == found,
            (Cell::Int(value), Some(found)) => found.parse::<i64>().ok() == Some(*value),
            (Cell::Bool(value), Some(found)) => {
                let found = matches!(found, "1" | "t" | "true" | "TRUE");
                found == *value
            }
            (Cell::Float(value), Some(found)) => {
                let Ok(found) = found.parse::<f64>() else {
                    return false;
                };
                if decimal && column.kind == ColumnType::Float {
                    (value * 100.0).round() == (found * 100.0).round()
                } else {
                    value == &found || (value - found).abs() <= 1e-12 * value.abs().max(found.abs())
                }
            }
        })
}

impl InsertOutcome {
    fn add(&mut self, rows: usize, inserted: u64) {
        self.inserted += inserted;
        // An upsert on MySQL reports found rows, two for an updated one: its counts are not
        // read (the caller knows which rows it updates).
        self.duplicates += (rows as u64).saturating_sub(inserted);
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
    fn a_stored_row_is_the_same_only_when_every_value_is() {
        use crate::model::{Cell, Column, ColumnType};
        let table = TableSpec::new(
            "T",
            &[
                Column {
                    name: "n".into(),
                    kind: ColumnType::Int,
                },
                Column {
                    name: "f".into(),
                    kind: ColumnType::Float,
                },
                Column {
                    name: "b".into(),
                    kind: ColumnType::Bool,
                },
                Column {
                    name: "t".into(),
                    kind: ColumnType::Text,
                },
            ],
        )
        .unwrap();
        let row = Row {
            id: "a".into(),
            timestamp: 5,
            cells: vec![
                Cell::Int(3),
                Cell::Float(1.234),
                Cell::Bool(true),
                Cell::Null,
            ],
        };
        let stored = |values: [Option<&str>; 5]| -> Vec<Option<String>> {
            values.iter().map(|v| v.map(str::to_owned)).collect()
        };
        // (name, stored values, decimal floats, same)
        let cases = [
            (
                "MySQL's text",
                stored([Some("5"), Some("3"), Some("1.23"), Some("1"), None]),
                true,
                true,
            ),
            (
                "PostgreSQL's text",
                stored([Some("5"), Some("3"), Some("1.23"), Some("true"), None]),
                true,
                true,
            ),
            (
                "SQLite keeps the float whole",
                stored([Some("5"), Some("3"), Some("1.234"), Some("1"), None]),
                false,
                true,
            ),
            (
                "SQLite: a rounded float differs",
                stored([Some("5"), Some("3"), Some("1.23"), Some("1"), None]),
                false,
                false,
            ),
            (
                "another timestamp",
                stored([Some("6"), Some("3"), Some("1.23"), Some("1"), None]),
                true,
                false,
            ),
            (
                "another int",
                stored([Some("5"), Some("0"), Some("1.23"), Some("1"), None]),
                true,
                false,
            ),
            (
                "another bool",
                stored([Some("5"), Some("3"), Some("1.23"), Some("0"), None]),
                true,
                false,
            ),
            (
                "text where NULL is due",
                stored([Some("5"), Some("3"), Some("1.23"), Some("1"), Some("")]),
                true,
                false,
            ),
            (
                "NULL where a value is due",
                stored([Some("5"), None, Some("1.23"), Some("1"), None]),
                true,
                false,
            ),
        ];
        for (name, values, decimal, same) in cases {
            assert_eq!(same_row(&table, &row, &values, decimal), same, "{name}");
        }
    }

    #[test]
    fn statements_are_sized_by_bytes() {
        let sizes = [10usize, 10, 10, 50, 10, 200, 5];
        let chunks = chunks_by_size(&sizes, 3, 40, |size| *size);
        let starts: Vec<(usize, usize)> = chunks.iter().map(|(s, c)| (*s, c.len())).collect();
        // A chunk closes at 3 items or before passing 40 bytes; a larger item goes alone.
        assert_eq!(starts, [(0, 3), (3, 1), (4, 1), (5, 1), (6, 1)]);
    }
}
