//! The only place that calls `bindgen!`, and the only module that names a generated type.
//!
//! The rest of the host sees a thin facade: [`PluginPre`] (a component checked against the
//! world, ready to instantiate), [`PluginInstance`] with `describe` and `transform`, and
//! [`add_to_linker`]. Generated types are converted into the host's own [`crate::model`] types
//! at this module's edge. As in Zed's `wasm_host/wit`, a call answers
//! `Result<_, Trap>`: the outer error is a trap (the instance is dead), while a plugin's own
//! error for a document is a [`model::Outcome::Failed`].

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, HasSelf, InstancePre, Linker, TypedFunc};

use super::state::PluginState;
use crate::capability::LookupFailure;
use crate::model::{self, Capability, Cell, Column, ColumnType, PluginInfo};

wasmtime::component::bindgen!({
    path: "../wit",
    // What every plugin since 1.0.0 exports; `input` (1.1.0) is looked up by name.
    world: "plugin-host",
    // The documents a call hands the plugin borrow the host's buffers (`&str`): they are
    // copied once, into the instance's memory, and never into host strings first.
    ownership: Borrowing {
        duplicate_if_necessary: true
    },
});

use aurora::plugin::host::{LogLevel, LookupError, SlackChannel};
use aurora::plugin::types::{Document, Outcome, PluginError, Value};

/// The WIT package this host serves, as plugins name it in their exports.
pub const PACKAGE: &str = "aurora:plugin";
/// The package version this host was built against.
pub const PACKAGE_VERSION: (u64, u64, u64) = (1, 1, 0);
/// The interface every plugin exports.
pub const PLUGIN_INTERFACE: &str = "aurora:plugin/plugin";
/// The interface a plugin that lists its input paths exports (since 1.1.0). wasmtime finds a
/// later 1.x minor under this name too.
const INPUT_INTERFACE: &str = "aurora:plugin/input@1.1.0";

/// One document as a plugin is handed it: `data` is the payload or its projection.
#[derive(Debug, Clone, Copy)]
pub struct PluginInput<'a> {
    pub id: &'a str,
    pub timestamp: i64,
    pub data: &'a str,
}

/// A trap: the call did not return, and the instance cannot be entered again.
#[derive(Debug)]
pub struct Trap(pub wasmtime::Error);

/// Adds the host interface to a linker.
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    PluginHost::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)
}

/// A component whose imports and exports were checked against the world, ready to instantiate.
#[derive(Clone)]
pub struct PluginPre {
    pre: PluginHostPre<PluginState>,
    /// `input-paths`, when the plugin exports the `input` interface.
    input_paths: Option<ComponentExportIndex>,
}

impl PluginPre {
    pub fn new(pre: InstancePre<PluginState>) -> wasmtime::Result<Self> {
        let component = pre.component();
        let input_paths = component
            .get_export_index(None, INPUT_INTERFACE)
            .and_then(|input| component.get_export_index(Some(&input), "input-paths"));
        Ok(PluginPre {
            pre: PluginHostPre::new(pre)?,
            input_paths,
        })
    }

    pub fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<PluginInstance> {
        let instance = self.pre.instance_pre().instantiate(&mut *store)?;
        let input_paths = self
            .input_paths
            .as_ref()
            .map(|index| instance.get_typed_func(&mut *store, index))
            .transpose()?;
        Ok(PluginInstance {
            plugin: PluginHost::new(&mut *store, &instance)?,
            input_paths,
        })
    }
}

/// A live instance's exports.
pub struct PluginInstance {
    plugin: PluginHost,
    input_paths: Option<TypedFunc<(), (Option<Vec<String>>,)>>,
}

impl PluginInstance {
    pub fn describe(&self, store: &mut Store<PluginState>) -> Result<PluginInfo, Trap> {
        self.plugin
            .aurora_plugin_plugin()
            .call_describe(store)
            .map(PluginInfo::from)
            .map_err(Trap)
    }

    /// The paths the plugin reads; `None` when it reads whole documents (it exports no `input`
    /// interface, or answers `none`).
    pub fn input_paths(&self, store: &mut Store<PluginState>) -> Result<Option<Vec<String>>, Trap> {
        let Some(input_paths) = &self.input_paths else {
            return Ok(None);
        };
        input_paths
            .call(store, ())
            .map(|(paths,)| paths)
            .map_err(Trap)
    }

    /// One outcome per document, as the plugin answered (the count is checked by the caller).
    pub fn transform(
        &self,
        store: &mut Store<PluginState>,
        documents: &[PluginInput<'_>],
    ) -> Result<Vec<model::Outcome>, Trap> {
        let batch: Vec<Document<'_>> = documents
            .iter()
            .map(|input| Document {
                id: input.id,
                timestamp: input.timestamp,
                data: input.data,
            })
            .collect();
        let outcomes = self
            .plugin
            .aurora_plugin_plugin()
            .call_transform(store, &batch)
            .map_err(Trap)?;
        Ok(outcomes.into_iter().map(model::Outcome::from).collect())
    }
}

impl From<Outcome> for model::Outcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Rows(rows) => model::Outcome::Rows(
                rows.into_iter()
                    .map(|row| model::PluginRow {
                        id: row.id,
                        cells: row.values.into_iter().map(Cell::from).collect(),
                    })
                    .collect(),
            ),
            Outcome::Refused(reason) => model::Outcome::Refused(reason),
            Outcome::Failed(error) => model::Outcome::Failed(error.to_string()),
        }
    }
}

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

impl From<LookupFailure> for LookupError {
    fn from(failure: LookupFailure) -> Self {
        match failure {
            LookupFailure::Denied => LookupError::Denied,
            LookupFailure::NotConfigured(what) => LookupError::NotConfigured(what),
            LookupFailure::Unavailable(why) => LookupError::Unavailable(why),
        }
    }
}

impl aurora::plugin::types::Host for PluginState {}

impl aurora::plugin::host::Host for PluginState {
    fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Debug => model::LogLevel::Debug,
            LogLevel::Info => model::LogLevel::Info,
            LogLevel::Warn => model::LogLevel::Warn,
            LogLevel::Error => model::LogLevel::Error,
        };
        self.plugin_log(level, &message);
    }

    fn lookup_slack_channel(
        &mut self,
        channel_id: String,
    ) -> Result<Option<SlackChannel>, LookupError> {
        let name = self.timed(|grants| grants.slack_channel(&channel_id))?;
        Ok(name.map(|name| SlackChannel {
            id: channel_id,
            name,
        }))
    }

    fn reference_lookup(&mut self, table: String, key: String) -> Result<Vec<String>, LookupError> {
        Ok(self.timed(|grants| grants.reference(&table, &key))?)
    }
}
