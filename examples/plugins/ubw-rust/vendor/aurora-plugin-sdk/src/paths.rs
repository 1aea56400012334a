//! Columns declared by path, as the old job's `attributes_keep` did.
//!
//! A path is a JSON Pointer from the document root, whose keys are `id`, `timestamp` and
//! `data` (`/data/head_commit/id`). A step that does not exist, or a value of the wrong kind
//! for the column, gives NULL.

use std::borrow::Cow;

use serde_json::Value as Json;

use crate::{Column, ColumnType, Document, PluginError, Value};

/// A column whose value is found by a JSON Pointer.
#[derive(Debug, Clone, Copy)]
pub struct PathColumn {
    /// The column name.
    pub name: &'static str,
    /// The column type; a value of another kind gives NULL.
    pub kind: ColumnType,
    /// The JSON Pointer from the document root (`/data/repository/full_name`).
    pub pointer: &'static str,
}

/// Declares a path column.
pub const fn path(name: &'static str, kind: ColumnType, pointer: &'static str) -> PathColumn {
    PathColumn {
        name,
        kind,
        pointer,
    }
}

/// The [`Column`]s for `describe`.
pub fn columns(columns: &[PathColumn]) -> Vec<Column> {
    columns
        .iter()
        .map(|column| crate::column(column.name, column.kind))
        .collect()
}

/// A document with its `data` parsed once, to evaluate many paths against.
#[derive(Debug)]
pub struct Parsed<'a> {
    document: &'a Document,
    data: Json,
}

impl<'a> Parsed<'a> {
    /// Parses the document's data.
    pub fn new(document: &'a Document) -> Result<Self, PluginError> {
        // `serde_json::Value` keeps the last value of a repeated key, as Python's `json` does.
        let data = serde_json::from_str(&document.data).map_err(crate::data_error)?;
        Ok(Parsed { document, data })
    }

    /// The raw JSON value at a pointer from the document root, if every step exists.
    ///
    /// A pointer the plugin's input paths do not cover gives `None` and fails the document
    /// (see [`crate::input`]): the host did not hand it that part.
    pub fn pointer(&self, pointer: &str) -> Option<Cow<'_, Json>> {
        crate::input::read(pointer).ok()?;
        match pointer {
            "/id" => Some(Cow::Owned(Json::from(self.document.id.as_str()))),
            "/timestamp" => Some(Cow::Owned(Json::from(self.document.timestamp))),
            // `strip_prefix` leaves "" for "/data" itself, which points at the whole value;
            // "/database" leaves "base", which is no pointer and finds nothing.
            _ => pointer
                .strip_prefix("/data")
                .and_then(|rest| self.data.pointer(rest))
                .map(Cow::Borrowed),
        }
    }

    /// The value of one column: NULL when a step is missing or the kind is wrong.
    pub fn value(&self, column: &PathColumn) -> Value {
        self.pointer(column.pointer)
            .map_or(Value::Null, |json| cell(column.kind, &json))
    }

    /// The text at a pointer; `None` when a step is missing or the value is not a string.
    pub fn text(&self, pointer: &str) -> Option<String> {
        match self.pointer(pointer)?.as_ref() {
            Json::String(text) => Some(text.clone()),
            _ => None,
        }
    }

    /// The integer at a pointer; `None` when missing, not an integer or beyond 64 bits.
    pub fn int(&self, pointer: &str) -> Option<i64> {
        match self.pointer(pointer)?.as_ref() {
            Json::Number(number) => crate::integer(number),
            _ => None,
        }
    }

    /// The number at a pointer, as a float; `None` when missing or not a number.
    pub fn float(&self, pointer: &str) -> Option<f64> {
        self.pointer(pointer)?.as_f64()
    }

    /// The boolean at a pointer; `None` when missing or not a boolean.
    pub fn boolean(&self, pointer: &str) -> Option<bool> {
        self.pointer(pointer)?.as_bool()
    }

    /// The values of all columns, in order.
    pub fn values(&self, columns: &[PathColumn]) -> Vec<Value> {
        columns.iter().map(|column| self.value(column)).collect()
    }
}

/// Converts a JSON value into a cell of `kind`, or NULL when the kind does not match.
pub fn cell(kind: ColumnType, json: &Json) -> Value {
    match (kind, json) {
        (ColumnType::Text, Json::String(text)) => Value::Text(text.clone()),
        (ColumnType::Int, Json::Number(number)) => {
            crate::integer(number).map_or(Value::Null, Value::Int)
        }
        (ColumnType::Float, Json::Number(number)) => {
            number.as_f64().map_or(Value::Null, Value::Float)
        }
        (ColumnType::Boolean, Json::Bool(flag)) => Value::Boolean(flag.to_owned()),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(data: &str) -> Document {
        Document {
            id: "AAAAAF0Qp79lNx8dkdk1qQ==".into(),
            timestamp: 1561372607,
            data: data.into(),
        }
    }

    #[test]
    fn paths_follow_keys_and_indexes_and_give_null_otherwise() {
        let doc = document(r#"{"commits":[{"id":"c1"}],"n":5,"flag":true,"s":"t","z":-0}"#);
        let parsed = Parsed::new(&doc).unwrap();
        let columns = [
            path("first", ColumnType::Text, "/data/commits/0/id"),
            path("missing", ColumnType::Text, "/data/commits/3/id"),
            path("n", ColumnType::Int, "/data/n"),
            path("wrong_kind", ColumnType::Int, "/data/s"),
            path("flag", ColumnType::Boolean, "/data/flag"),
            path("id", ColumnType::Text, "/id"),
            path("ts", ColumnType::Int, "/timestamp"),
            path("through_scalar", ColumnType::Text, "/data/s/x"),
            path("negative_zero", ColumnType::Int, "/data/z"),
        ];
        assert_eq!(
            parsed.values(&columns),
            vec![
                Value::Text("c1".into()),
                Value::Null,
                Value::Int(5),
                Value::Null,
                Value::Boolean(true),
                Value::Text("AAAAAF0Qp79lNx8dkdk1qQ==".into()),
                Value::Int(1561372607),
                Value::Null,
                Value::Int(0),
            ]
        );
        assert_eq!(parsed.int("/data/z"), Some(0));
    }
}
