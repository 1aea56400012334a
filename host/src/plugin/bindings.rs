//! The only place that calls `bindgen!`. Generated types are converted into the host's own
//! [`crate::model`] types at this module's edge and never leak further.

use crate::model::{Capability, Cell, Column, ColumnType, PluginInfo};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "type-plugin",
});

pub use aurora::plugin::host::{LogLevel, LookupError, SlackChannel};
pub use aurora::plugin::types::{Document, Outcome, PluginError, Row, Value};

/// The WIT package this host serves, as plugins name it in their exports.
pub const PACKAGE: &str = "aurora:plugin";
/// The package version this host was built against.
pub const PACKAGE_VERSION: (u64, u64, u64) = (1, 0, 0);
/// The interface every plugin exports.
pub const PLUGIN_INTERFACE: &str = "aurora:plugin/plugin";

impl From<aurora::plugin::types::PluginInfo> for PluginInfo {
    fn from(info: aurora::plugin::types::PluginInfo) -> Self {
        PluginInfo {
            type_name: info.type_name,
            version: info.version,
            columns: info
                .columns
                .into_iter()
                .map(|column| Column {
                    name: column.name,
                    kind: column.kind.into(),
                })
                .collect(),
            capabilities: info
                .capabilities
                .into_iter()
                .map(Capability::from)
                .collect(),
        }
    }
}

impl From<aurora::plugin::types::ColumnType> for ColumnType {
    fn from(kind: aurora::plugin::types::ColumnType) -> Self {
        use aurora::plugin::types::ColumnType as Wit;
        match kind {
            Wit::Text => ColumnType::Text,
            Wit::Int => ColumnType::Int,
            Wit::Float => ColumnType::Float,
            Wit::Boolean => ColumnType::Bool,
        }
    }
}

impl From<aurora::plugin::types::Capability> for Capability {
    fn from(capability: aurora::plugin::types::Capability) -> Self {
        use aurora::plugin::types::Capability as Wit;
        match capability {
            Wit::SlackChannels => Capability::SlackChannels,
            Wit::ReferenceTable(table) => Capability::ReferenceTable(table),
        }
    }
}

impl From<Value> for Cell {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Cell::Null,
            Value::Text(text) => Cell::Text(text),
            Value::Int(int) => Cell::Int(int),
            Value::Float(float) => Cell::Float(float),
            Value::Boolean(flag) => Cell::Bool(flag),
        }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::InvalidDocument(message) => write!(f, "invalid document: {message}"),
            PluginError::CapabilityFailed(message) => write!(f, "capability failed: {message}"),
            PluginError::Internal(message) => write!(f, "plugin error: {message}"),
        }
    }
}
