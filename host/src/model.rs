//! The host's own view of what plugins declare and return. The WIT-generated types stay inside
//! `plugin::bindings`; everything else speaks these.

use std::fmt;

/// The SQL-facing type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Text,
    Int,
    Float,
    Bool,
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Text => "text",
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::Bool => "bool",
        })
    }
}

/// A column a plugin writes, besides the implicit `id` and `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
}

/// A host capability a plugin can ask for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    SlackChannels,
    ReferenceTable(String),
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::SlackChannels => f.write_str("slack-channels"),
            Capability::ReferenceTable(table) => write!(f, "reference-table({table})"),
        }
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PluginInfo {
    pub type_name: String,
    pub version: String,
    pub columns: Vec<Column>,
    pub capabilities: Vec<Capability>,
}

/// One cell of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Cell {
    /// The column type this cell fits, or `None` for NULL, which fits every column.
    pub fn kind(&self) -> Option<ColumnType> {
        match self {
            Cell::Null => None,
            Cell::Text(_) => Some(ColumnType::Text),
            Cell::Int(_) => Some(ColumnType::Int),
            Cell::Float(_) => Some(ColumnType::Float),
            Cell::Bool(_) => Some(ColumnType::Bool),
        }
    }
}

/// A checked row: its primary key, the document timestamp, and one cell per declared column.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub timestamp: i64,
    pub cells: Vec<Cell>,
}

/// A row as a plugin returned it, before the host checks it against the declared columns.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginRow {
    /// The row's own id; `None` means the document's.
    pub id: Option<String>,
    pub cells: Vec<Cell>,
}

/// What a plugin made of one document, before the host checks its rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Rows(Vec<PluginRow>),
    /// The type does not want the document (not an error).
    Refused(String),
    /// The plugin's own error for the document (not a trap).
    Failed(String),
}

/// The severity of a plugin's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Whether a name may reach SQL as an identifier: ASCII letters, digits and `_`, starting with a
/// letter or `_`, at most 64 characters (MySQL's limit).
pub fn is_safe_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(first) if first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain_words_only() {
        for good in ["GithubType", "event_name", "_x1"] {
            assert!(is_safe_identifier(good), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Github Type",
            "a;DROP TABLE x",
            "na`me",
            "tÿpe",
            &"a".repeat(65),
        ] {
            assert!(!is_safe_identifier(bad), "{bad}");
        }
    }
}

/// Where a document failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The envelope was unusable (missing id, wrong kinds, wrong type, not JSON).
    Envelope,
    /// The plugin returned an error for it.
    Plugin,
    /// The plugin trapped on it (panic, memory cap, time budget).
    Trap,
    /// The plugin's rows did not match its declared columns.
    Validation,
    /// The database refused its rows.
    Sink,
    /// Bytes the source could not read as documents (the rest of a body whose structure was
    /// lost), kept when its window is given up.
    Source,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Envelope => "envelope",
            Stage::Plugin => "plugin",
            Stage::Trap => "trap",
            Stage::Validation => "validation",
            Stage::Sink => "sink",
            Stage::Source => "source",
        }
    }
}

/// A document that could not be stored, kept whole with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedDocument {
    pub type_name: String,
    pub id: Option<String>,
    pub timestamp: Option<i64>,
    pub stage: Stage,
    pub error: String,
    /// The raw document (the whole envelope when known, else what was read).
    pub document: String,
    /// In a replay, the dead letter it came from (its place in the replay's list): it is
    /// marked failed again rather than kept twice.
    pub origin: Option<usize>,
}
