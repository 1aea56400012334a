//! The batch-job-aurora plugin SDK.
//!
//! A plugin is a type that implements [`Plugin`] plus one [`export_plugin!`] line. The SDK owns
//! the WIT bindings (`wit/plugin.wit`), turns each document of a batch into one call of
//! [`Plugin::transform`], and maps a returned `Err` into a failed outcome so that one bad
//! document never fails its neighbours.
//!
//! Two ways to pick attributes, both lenient as the contract requires (a missing step or a value
//! of the wrong kind gives NULL, never an error):
//! - typed serde structs whose members are [`Field`]s: fastest, and the compiler checks names;
//! - [`paths::PathColumn`]s: JSON Pointers into the document, as the old `attributes_keep` did.
//!
//! Declare the columns once with [`columns!`]: a row struct whose fields are the columns, so
//! that `describe` and every row agree by construction.
//!
//! The host is reached through the [`Host`] trait, so a plugin's transform can be unit-tested
//! natively with [`testing::StaticHost`].

mod columns;
mod field;
mod host;
pub mod input;
pub mod paths;
pub mod testing;

pub use columns::Columns;
pub use field::Field;
pub use host::{Host, WasmHost};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "type-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_type_plugin",
        default_bindings_module: "::aurora_plugin_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::aurora::plugin::host::{LogLevel, LookupError, SlackChannel};
pub use bindings::aurora::plugin::types::{
    Capability, Column, ColumnType, Document, Outcome, PluginError, PluginInfo, Row, Value,
};

/// A type plugin: one document type, its columns, and the transform of one document.
pub trait Plugin: 'static {
    /// The document type served, which is also the SQL table name (`GithubType`).
    const TYPE_NAME: &'static str;
    /// The plugin's own version; use `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;

    /// The row type, declared with [`columns!`]: its fields are the columns.
    type Row: Columns;

    /// The columns of each row, in order, besides the implicit `id` and `timestamp`: the
    /// fields of [`Plugin::Row`].
    fn columns() -> Vec<Column> {
        Self::Row::columns()
    }

    /// The host capabilities the plugin uses; any other is denied at run time.
    fn capabilities() -> Vec<Capability> {
        Vec::new()
    }

    /// Paths of the document the transform reads that the SDK cannot see by itself: those read
    /// only on some documents (behind an `if` on a value), or `/data` for a plugin that reads
    /// `document.data` as a whole. JSON Pointers from the document root (`/data/a/b`, `*` for
    /// every member or element). What [`Document::parse`]'s struct and
    /// [`paths::Parsed`] read on every document is found without this; see [`input`].
    const EXTRA_INPUT_PATHS: &'static [&'static str] = &[];

    /// Turns one document into rows, or refuses it. An `Err` marks the document failed; it is
    /// kept by the host with the error so that nothing is lost.
    fn transform(document: &Document, host: &dyn Host) -> Result<Outcome, PluginError>;
}

/// Declares a column; a shorthand for building [`Column`] in [`Plugin::columns`].
pub fn column(name: &str, kind: ColumnType) -> Column {
    Column {
        name: name.to_owned(),
        kind,
    }
}

/// One row keyed by the document id, with values in the declared column order.
pub fn row(values: Vec<Value>) -> Row {
    Row { id: None, values }
}

impl Outcome {
    /// A single row keyed by the document id.
    pub fn row(row: impl Columns) -> Outcome {
        Outcome::Rows(vec![row.into_row()])
    }

    /// A single row of raw values keyed by the document id, in the declared column order.
    /// Prefer [`Outcome::row`] with a [`columns!`] struct, which cannot mix columns up.
    pub fn values(values: Vec<Value>) -> Outcome {
        Outcome::Rows(vec![row(values)])
    }

    /// A refusal with its reason: counted, not stored, not an error.
    pub fn refused(reason: impl Into<String>) -> Outcome {
        Outcome::Refused(reason.into())
    }
}

impl Document {
    /// Parses the document's `data` into `T`. Make `T`'s members [`Field`]s (with
    /// `#[serde(default)]`) so that a missing or wrong-kind attribute gives NULL instead of
    /// failing the whole document.
    ///
    /// A key repeated in an object keeps its last value, at every depth, as Python's `json` (and
    /// so the old job) does.
    ///
    /// The host hands the plugin only the paths `T` reads (see [`input`]).
    pub fn parse<T: serde::de::DeserializeOwned + 'static>(&self) -> Result<T, PluginError> {
        input::before_parse::<T>()?;
        match serde_json::from_str(&self.data) {
            Ok(parsed) => Ok(parsed),
            // A derived struct refuses a repeated key ("duplicate field"), and inside a lenient
            // `Field` the refusal leaves the parser mid-object. A document that failed is read
            // again keeping the last value of each key, still without parsing the members `T`
            // does not ask for: only failing documents pay for the second reading.
            Err(_) => T::deserialize(field::LastWins(&self.data)).map_err(|error| {
                if error.is_data() {
                    return PluginError::InvalidDocument(format!("data is not valid: {error}"));
                }
                // The document is broken where `T` reads. The message of a parse of the whole
                // says where, in the document's own lines and columns.
                match serde_json::from_str::<serde_json::Value>(&self.data) {
                    Err(whole) => data_error(whole),
                    Ok(_) => data_error(error),
                }
            }),
        }
    }
}

/// Whether a number read as a float is a negative zero: serde_json's reading of the integer
/// `-0`, which Python's `json` reads as the int 0.
pub(crate) fn is_negative_zero(number: f64) -> bool {
    number == 0.0 && number.is_sign_negative()
}

/// A JSON number as an integer column takes it: `None` when it is not an integer of 64 bits,
/// and 0 for `-0` (read as the float -0.0 by serde_json, as the int 0 by Python).
pub fn integer(number: &serde_json::Number) -> Option<i64> {
    number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|float| is_negative_zero(*float))
            .map(|_| 0)
    })
}

/// The document error for data that is not JSON, naming the real fault where serde_json's
/// message would mislead.
pub(crate) fn data_error(error: serde_json::Error) -> PluginError {
    let message = error.to_string();
    // serde_json reports a lone surrogate escape (`"\ud800"`) as the end of a hex escape.
    if message.starts_with("unexpected end of hex escape")
        || message.starts_with("lone leading surrogate in hex escape")
    {
        return PluginError::InvalidDocument(format!(
            "data is not valid: a lone surrogate escape (\\uD800 to \\uDFFF without its pair) \
             at line {} column {}; JSON text must be valid Unicode",
            error.line(),
            error.column()
        ));
    }
    PluginError::InvalidDocument(format!("data is not valid JSON: {message}"))
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::InvalidDocument(message) => write!(f, "invalid document: {message}"),
            PluginError::CapabilityFailed(message) => write!(f, "capability failed: {message}"),
            PluginError::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl From<LookupError> for PluginError {
    fn from(error: LookupError) -> Self {
        PluginError::CapabilityFailed(match error {
            LookupError::Denied => "capability denied".to_owned(),
            LookupError::NotConfigured(what) => format!("not configured: {what}"),
            LookupError::Unavailable(why) => format!("unavailable: {why}"),
        })
    }
}

macro_rules! value_from {
    ($($rust:ty => $variant:ident),* $(,)?) => {$(
        impl From<$rust> for Value {
            fn from(value: $rust) -> Self {
                Value::$variant(value.into())
            }
        }
        impl From<Option<$rust>> for Value {
            fn from(value: Option<$rust>) -> Self {
                value.map_or(Value::Null, Value::from)
            }
        }
        impl From<Field<$rust>> for Value {
            fn from(field: Field<$rust>) -> Self {
                field.into_option().into()
            }
        }
    )*};
}

value_from!(String => Text, &str => Text, i64 => Int, f64 => Float, bool => Boolean);

#[doc(hidden)]
pub mod __private {
    use super::*;

    pub fn describe<P: Plugin>() -> PluginInfo {
        PluginInfo {
            type_name: P::TYPE_NAME.to_owned(),
            version: P::VERSION.to_owned(),
            columns: P::columns(),
            capabilities: P::capabilities(),
        }
    }

    pub fn input_paths<P: Plugin>() -> Option<Vec<String>> {
        crate::input::input_paths::<P>()
    }

    pub fn transform<P: Plugin>(batch: Vec<Document>) -> Vec<Outcome> {
        batch
            .iter()
            .map(|document| {
                crate::input::transform_checked::<P>(document, &WasmHost)
                    .unwrap_or_else(Outcome::Failed)
            })
            .collect()
    }
}

/// Exports a [`Plugin`] implementation as the component's `aurora:plugin/plugin` interface, and
/// its input paths as `aurora:plugin/input`.
///
/// ```text
/// struct Github;
/// impl aurora_plugin_sdk::Plugin for Github { /* … */ }
/// aurora_plugin_sdk::export_plugin!(Github);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        struct __AuroraPluginExport;

        impl $crate::bindings::exports::aurora::plugin::plugin::Guest for __AuroraPluginExport {
            fn describe() -> $crate::PluginInfo {
                $crate::__private::describe::<$plugin>()
            }

            fn transform(batch: ::std::vec::Vec<$crate::Document>) -> ::std::vec::Vec<$crate::Outcome> {
                $crate::__private::transform::<$plugin>(batch)
            }
        }

        impl $crate::bindings::exports::aurora::plugin::input::Guest for __AuroraPluginExport {
            fn input_paths() -> ::std::option::Option<::std::vec::Vec<::std::string::String>> {
                $crate::__private::input_paths::<$plugin>()
            }
        }

        // Only a component exports these names: a native build (unit tests, `cargo build` of
        // the workspace) cannot link symbols named like `aurora:plugin/plugin@1.0.0#describe`.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_type_plugin!(__AuroraPluginExport with_types_in $crate::bindings);

        /// The plugin's entry points in a native build, where nothing is exported.
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __aurora_plugin_entry_points() -> (
            fn() -> $crate::PluginInfo,
            fn(::std::vec::Vec<$crate::Document>) -> ::std::vec::Vec<$crate::Outcome>,
        ) {
            use $crate::bindings::exports::aurora::plugin::plugin::Guest as _;
            (__AuroraPluginExport::describe, __AuroraPluginExport::transform)
        }

        /// The plugin's input paths in a native build (see the SDK's `input` module).
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __aurora_plugin_input_paths() -> ::std::option::Option<::std::vec::Vec<::std::string::String>> {
            $crate::__private::input_paths::<$plugin>()
        }
    };
}
