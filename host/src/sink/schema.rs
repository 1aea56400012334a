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
    /// `"timestamp" = <new>."timestamp", …` for every column but `id`: how an upsert
    /// overwrites a stored row, `new` naming the incoming values (`excluded.`, `EXCLUDED.`, or
    /// MySQL's `VALUES(`…`)`).
    pub(super) fn update_list(&self, quote: char, new: impl Fn(&str) -> String) -> String {
        std::iter::once("timestamp")
            .chain(self.columns.iter().map(|c| c.name.as_str()))
            .map(|name| {
                let quoted = format!("{quote}{name}{quote}");
                format!("{quoted} = {}", new(&quoted))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

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
    /// Problems of an existing table that the job does not fix on its own (for the summary).
    pub notes: Vec<String>,
}

/// A schema change made to fit the plugin's columns, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    Created,
    AddedColumn(String),
}

impl Sink {
    /// Creates the table when missing; otherwise checks it: a unique `id` (without one, a
    /// rerun stores rows twice, or every row fails), the plugin's columns (missing ones are
    /// added, incompatible types refused). Extra columns in the table are fine. Everything is
    /// checked before anything is changed, so a refused table is left untouched.
    pub async fn prepare(&self, table: &TableSpec) -> Result<PrepareReport, SinkError> {
        let existing = self
            .retrying(&table.name, "read columns", || async {
                engine!(self, engine => engine.existing_columns(&table.name).await)
            })
            .await?;
        let dialect = engine!(self, engine => engine.dialect());
        if existing.is_empty() {
            self.execute_ddl(&table.name, "create", &table.create_sql(&dialect))
                .await?;
            return Ok(PrepareReport {
                changes: vec![SchemaChange::Created],
                notes: Vec::new(),
            });
        }
        let unique_id = self
            .retrying(&table.name, "read the indexes", || async {
                engine!(self, engine => engine.unique_id(&table.name).await)
            })
            .await?;
        if !unique_id {
            return Err(SinkError::NoUniqueId {
                table: table.name.clone(),
                fix: engine!(self, engine => engine.unique_id_fix(&table.name)),
            });
        }
        let mut notes = self.id_notes(table).await?;
        let mut missing = Vec::new();
        for column in &table.columns {
            match existing
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&column.name))
            {
                Some((_, found)) if engine!(self, engine => engine.compatible(found, column.kind)) => {
                    if engine!(self, engine => engine.single_precision(found)) {
                        notes.push(single_precision_note(table, column, found, &dialect));
                    }
                }
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
        let mut changes = Vec::new();
        for column in missing {
            let ddl = table.add_column_sql(column, &dialect);
            match self.execute_ddl(&table.name, "add column", &ddl).await {
                Ok(()) => {}
                // Another run added it since the columns were read: the same plugin's column.
                Err(SinkError::Database { source, .. }) if is_duplicate_column(&source) => continue,
                Err(error) => return Err(error),
            }
            tracing::warn!(table = %table.name, "added missing column {} {}", column.name, column.kind);
            changes.push(SchemaChange::AddedColumn(column.name.clone()));
        }
        for note in &notes {
            tracing::warn!("{note}");
        }
        Ok(PrepareReport { changes, notes })
    }

    /// MySQL: an old table's `id` that confuses distinct ids (a case-insensitive or a PAD
    /// SPACE collation). Said, not fixed: altering someone's table is theirs to decide.
    async fn id_notes(&self, table: &TableSpec) -> Result<Vec<String>, SinkError> {
        #[cfg(feature = "mysql")]
        #[allow(irrefutable_let_patterns)] // a build with MySQL alone
        if let super::Kind::Mysql(engine) = &self.engine {
            let fault = self
                .retrying(&table.name, "read the id collation", || async {
                    engine.id_comparison_fault(&table.name).await
                })
                .await?;
            return Ok(fault
                .map(|(collation, confused)| {
                    format!(
                        "table {} compares ids with collation {collation}, so {confused} count as duplicates; fix it with: {}",
                        table.name,
                        engine.id_fix(&table.name)
                    )
                })
                .into_iter()
                .collect());
        }
        let _ = table;
        Ok(Vec::new())
    }
}

/// A single-precision float column keeps about 7 significant digits: 16777217.25 becomes
/// 16777218 (MySQL) or 16777216 (PostgreSQL) without a warning. Said, with the fix: the type
/// the job creates.
fn single_precision_note(
    table: &TableSpec,
    column: &Column,
    found: &str,
    dialect: &Dialect,
) -> String {
    let q = dialect.quote;
    let (name, wanted) = (&column.name, (dialect.column_type)(column.kind));
    let fix = if q == '`' {
        format!("ALTER TABLE `{}` MODIFY `{name}` {wanted}", table.name)
    } else {
        format!(
            "ALTER TABLE \"{}\" ALTER COLUMN \"{name}\" TYPE {wanted}",
            table.name
        )
    };
    format!(
        "table {}: column {name} is {found}, a single-precision float that keeps about 7 significant digits, so larger values are stored rounded; fix it with: {fix}",
        table.name
    )
}

/// "Column already exists", on each engine.
fn is_duplicate_column(error: &sqlx::Error) -> bool {
    let Some(database) = error.as_database_error() else {
        return false;
    };
    // PostgreSQL 42701, MySQL 1060 (SQLSTATE 42S21), SQLite says it in words.
    matches!(database.code().as_deref(), Some("42701" | "42S21"))
        || database.message().contains("duplicate column name")
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
