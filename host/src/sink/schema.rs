//! Tables: what a type's table must hold, how each engine spells it, and fitting an existing
//! table to its plugin without ever changing something silently.

use super::{Engine, Sink, SinkError, engine};
use crate::model::{Column, ColumnType, is_safe_identifier};

/// A type's table: its name and the plugin's columns (besides `id` and `timestamp`). Only
/// [`TableSpec::new`] makes one, so every spec's identifiers have been checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableSpec {
    pub(super) name: String,
    pub(super) columns: Vec<Column>,
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

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// `CREATE TABLE IF NOT EXISTS` in an engine's words.
    pub(super) fn create_sql(&self, dialect: &Dialect) -> String {
        let q = dialect.quote;
        let mut ddl = format!(
            "CREATE TABLE IF NOT EXISTS {q}{}{q} ({q}id{q} {} NOT NULL, {q}timestamp{q} {} NOT NULL",
            self.name, dialect.id_type, dialect.timestamp_type
        );
        for column in &self.columns {
            ddl.push_str(&format!(
                ", {q}{}{q} {}",
                column.name,
                (dialect.column_type)(column.kind)
            ));
        }
        ddl + &format!(", PRIMARY KEY ({q}id{q}))")
    }

    /// `ALTER TABLE … ADD COLUMN` in an engine's words.
    pub(super) fn add_column_sql(&self, column: &Column, dialect: &Dialect) -> String {
        let q = dialect.quote;
        format!(
            "ALTER TABLE {q}{}{q} ADD COLUMN {q}{}{q} {}",
            self.name,
            column.name,
            (dialect.column_type)(column.kind)
        )
    }

    /// `id`, `timestamp` and the plugin's columns, quoted and comma separated.
    pub(super) fn column_list(&self, quote: char) -> String {
        let mut list = format!("{quote}id{quote}, {quote}timestamp{quote}");
        for column in &self.columns {
            list.push_str(&format!(", {quote}{}{quote}", column.name));
        }
        list
    }
}

/// How an engine spells a type's table.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    pub(super) quote: char,
    pub(super) id_type: &'static str,
    pub(super) timestamp_type: &'static str,
    pub(super) column_type: fn(ColumnType) -> &'static str,
}

/// What preparing a table did, and what a person should know about it.
#[derive(Debug, Default)]
pub struct PrepareReport {
    pub changes: Vec<SchemaChange>,
    /// A problem of an existing table that the job does not fix on its own (for the summary).
    pub note: Option<String>,
}

/// A schema change made to fit the plugin's columns, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    Created,
    AddedColumn(String),
}

impl Sink {
    /// Creates the table when missing; otherwise compares it with the plugin's columns, adds
    /// the missing ones, and refuses incompatible types. Extra columns in the table are fine.
    pub async fn prepare(&self, table: &TableSpec) -> Result<PrepareReport, SinkError> {
        let existing = self
            .retrying(&table.name, "read columns", || async {
                engine!(self, engine => engine.existing_columns(&table.name).await)
            })
            .await?;
        if existing.is_empty() {
            let ddl = table.create_sql(&engine!(self, engine => engine.dialect()));
            self.retrying(&table.name, "create", || async {
                engine!(self, engine => engine.execute(&ddl).await)
            })
            .await?;
            return Ok(PrepareReport {
                changes: vec![SchemaChange::Created],
                note: None,
            });
        }
        // Base64 ids are case-sensitive; a case-insensitive `id` takes distinct documents for
        // duplicates. Said, not fixed: altering someone's table is theirs to decide.
        let note = match self {
            Sink::Mysql(engine) => self
                .retrying(&table.name, "read the id collation", || async {
                    engine.case_insensitive_id(&table.name).await
                })
                .await?
                .map(|collation| {
                    format!(
                        "table {} compares ids case-insensitively (collation {collation}), so ids that differ only in case count as duplicates; fix it with: ALTER TABLE `{}` MODIFY `id` VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL",
                        table.name, table.name
                    )
                }),
            _ => None,
        };
        let mut missing = Vec::new();
        for column in &table.columns {
            match existing
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&column.name))
            {
                Some((_, found)) if engine!(self, engine => engine.compatible(found, column.kind)) =>
                    {}
                Some((name, found)) => {
                    return Err(SinkError::IncompatibleColumn {
                        table: table.name.clone(),
                        column: name.clone(),
                        found: found.clone(),
                        declared: column.kind,
                    });
                }
                None => missing.push(column),
            }
        }
        // Every column is checked before any is added, so a refused table is left untouched.
        let mut changes = Vec::new();
        for column in missing {
            let ddl = table.add_column_sql(column, &engine!(self, engine => engine.dialect()));
            self.retrying(&table.name, "add column", || async {
                engine!(self, engine => engine.execute(&ddl).await)
            })
            .await?;
            tracing::warn!(table = %table.name, "added missing column {} {}", column.name, column.kind);
            changes.push(SchemaChange::AddedColumn(column.name.clone()));
        }
        if let Some(note) = &note {
            tracing::warn!("{note}");
        }
        Ok(PrepareReport { changes, note })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_table_names_are_refused() {
        let error = TableSpec::new("GithubType; DROP TABLE x", &[]).unwrap_err();
        assert!(matches!(error, SinkError::UnsafeIdentifier(_)));
    }
}
