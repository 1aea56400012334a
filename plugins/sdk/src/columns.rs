//! Declaring each column once: [`columns!`](crate::columns!) makes a row struct whose fields are
//! the columns, in order, with their kinds.

use crate::{Column, Row, Value};

/// A row type whose fields are its columns, made by [`columns!`](crate::columns!).
///
/// The struct literal names every column, so no value can be forgotten or land in its
/// neighbour's column, and each field's Rust type follows its column's kind.
pub trait Columns {
    /// The columns for `describe`, in field order.
    fn columns() -> Vec<Column>;
    /// The values, in the same order.
    fn into_values(self) -> Vec<Value>;

    /// A row keyed by the document id.
    fn into_row(self) -> Row
    where
        Self: Sized,
    {
        Row {
            id: None,
            values: self.into_values(),
        }
    }

    /// A row with its own id, for a plugin that yields several rows per document.
    fn into_row_with_id(self, id: impl Into<String>) -> Row
    where
        Self: Sized,
    {
        Row {
            id: Some(id.into()),
            values: self.into_values(),
        }
    }
}

/// Declares a plugin's columns once, as a row struct. Each field is a column: its name is the
/// column name (or the string after `as`, for names that are Rust keywords), and its kind is
/// `Text`, `Int`, `Float` or `Boolean`, which makes the field an `Option` of `String`, `i64`,
/// `f64` or `bool` (`None` is SQL NULL).
///
/// ```
/// aurora_plugin_sdk::columns! {
///     /// One push.
///     pub struct PushRow {
///         repository_name: Text,
///         stargazers_count: Int,
///         git_ref as "ref": Text,
///     }
/// }
/// use aurora_plugin_sdk::Columns;
/// let names: Vec<String> = PushRow::columns().into_iter().map(|c| c.name).collect();
/// assert_eq!(names, ["repository_name", "stargazers_count", "ref"]);
/// ```
#[macro_export]
macro_rules! columns {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident $(as $column:literal)? : $kind:ident
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $(
                $(#[$field_meta])*
                pub $field: $crate::__column_type!($kind),
            )*
        }

        impl $crate::Columns for $name {
            fn columns() -> ::std::vec::Vec<$crate::Column> {
                ::std::vec![$(
                    $crate::column([$($column,)? ::std::stringify!($field)][0], $crate::ColumnType::$kind)
                ),*]
            }

            fn into_values(self) -> ::std::vec::Vec<$crate::Value> {
                ::std::vec![$($crate::Value::from(self.$field)),*]
            }
        }
    };
}

/// The Rust type of a column kind's field.
#[doc(hidden)]
#[macro_export]
macro_rules! __column_type {
    (Text) => { ::std::option::Option<::std::string::String> };
    (Int) => { ::std::option::Option<i64> };
    (Float) => { ::std::option::Option<f64> };
    (Boolean) => { ::std::option::Option<bool> };
}

#[cfg(test)]
mod tests {
    use crate::{ColumnType, Columns, Value, column};

    crate::columns! {
        struct Sample {
            name: Text,
            count: Int,
            ratio: Float,
            flag: Boolean,
            kind as "type": Text,
        }
    }

    #[test]
    fn one_declaration_gives_columns_and_values_in_the_same_order() {
        assert_eq!(
            Sample::columns(),
            vec![
                column("name", ColumnType::Text),
                column("count", ColumnType::Int),
                column("ratio", ColumnType::Float),
                column("flag", ColumnType::Boolean),
                column("type", ColumnType::Text),
            ]
        );
        let row = Sample {
            kind: Some("t".into()),
            flag: None,
            ratio: Some(0.5),
            count: Some(3),
            name: Some("n".into()),
        };
        assert_eq!(
            row.into_values(),
            vec![
                Value::Text("n".into()),
                Value::Int(3),
                Value::Float(0.5),
                Value::Null,
                Value::Text("t".into()),
            ]
        );
    }
}
