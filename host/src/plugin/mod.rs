//! Plugins: the engine, loading a folder of components, the sandbox, and calling `transform`.
//!
//! Every call runs under a time budget (epoch interruption, not counting time spent in host
//! lookups) and a memory cap. A trap fails only the documents it hit: the instance is thrown
//! away (a trapped instance cannot be entered again) and the batch's other documents are
//! retried one by one on a fresh instance.

mod bindings;
mod sandbox;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

use crate::capability::Grants;
use crate::document::{Envelope, MAX_ID_LEN};
use crate::model::{Cell, Column, PluginInfo, Row, Stage, is_safe_identifier};
use sandbox::PluginState;
pub use sandbox::SandboxLimits;

/// Why a plugin file could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin folder {path}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a WebAssembly component: {reason}")]
    NotAComponent { path: PathBuf, reason: String },
    #[error("{path} is not a batch-job-aurora plugin: it exports no {interface} interface")]
    NotAPlugin {
        path: PathBuf,
        interface: &'static str,
    },
    #[error(
        "{path} speaks WIT {found}, which this host (aurora:plugin@{served}) cannot serve; rebuild it against aurora:plugin@{served}"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: String,
        served: String,
    },
    #[error("{path} cannot be instantiated: {reason}")]
    Instantiate { path: PathBuf, reason: String },
    #[error("{path} declares an invalid plugin: {reason}")]
    InvalidInfo { path: PathBuf, reason: String },
    #[error("{first} and {second} both claim type {type_name}")]
    DuplicateType {
        type_name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
}

/// The WebAssembly engine, with the ticker thread that drives every call's time budget.
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    limits: SandboxLimits,
    stop_ticker: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("limits", &self.limits)
            .finish()
    }
}

/// How often the ticker advances the epoch: the granularity of time budgets.
const TICK: Duration = Duration::from_millis(10);

impl PluginEngine {
    pub fn new(limits: SandboxLimits) -> Result<Self, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine =
            Engine::new(&config).map_err(|error| LoadError::Engine(format!("{error:#}")))?;
        let linker =
            sandbox::linker(&engine).map_err(|error| LoadError::Engine(format!("{error:#}")))?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop_ticker);
            std::thread::Builder::new()
                .name("epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|error| LoadError::Engine(error.to_string()))?
        };
        Ok(PluginEngine {
            engine,
            linker: Arc::new(linker),
            limits,
            stop_ticker,
            ticker: Some(ticker),
        })
    }

    /// Loads every `*.wasm` in `folder`, in name order, and indexes the plugins by type.
    pub fn load_folder(&self, folder: &Path) -> Result<PluginSet, LoadError> {
        let folder_error = |source| LoadError::Folder {
            path: folder.to_owned(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(folder).map_err(folder_error)? {
            let path = entry.map_err(folder_error)?.path();
            if path
                .extension()
                .is_some_and(|extension| extension == "wasm")
                && path.is_file()
            {
                paths.push(path);
            }
        }
        paths.sort();
        let mut plugins: BTreeMap<String, Arc<LoadedPlugin>> = BTreeMap::new();
        for path in paths {
            let plugin = self.load(&path)?;
            if let Some(first) = plugins.get(&plugin.info.type_name) {
                return Err(LoadError::DuplicateType {
                    type_name: plugin.info.type_name.clone(),
                    first: first.path.clone(),
                    second: path,
                });
            }
            plugins.insert(plugin.info.type_name.clone(), Arc::new(plugin));
        }
        Ok(PluginSet { plugins })
    }

    /// Loads one plugin file: compiles it, checks its WIT version, asks it to describe itself
    /// and checks what it says.
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let component =
            Component::from_file(&self.engine, path).map_err(|error| LoadError::NotAComponent {
                path: path.to_owned(),
                reason: format!("{error:#}"),
            })?;
        self.check_version(path, &component)?;
        let instantiate_error = |error: wasmtime::Error| LoadError::Instantiate {
            path: path.to_owned(),
            reason: format!("{error:#}"),
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(instantiate_error)?;
        let pre = bindings::TypePluginPre::new(pre).map_err(instantiate_error)?;
        let mut instance = sandbox::Instance::new(&self.engine, &pre, &self.limits, None)
            .map_err(instantiate_error)?;
        let info: PluginInfo = instance.describe().map_err(instantiate_error)?;
        check_info(&info).map_err(|reason| LoadError::InvalidInfo {
            path: path.to_owned(),
            reason,
        })?;
        Ok(LoadedPlugin {
            path: path.to_owned(),
            info,
            pre,
        })
    }

    /// Refuses a component built against a WIT version this host cannot serve. The host serves
    /// its own version and older minors of the same major.
    fn check_version(&self, path: &Path, component: &Component) -> Result<(), LoadError> {
        let prefix = format!("{}@", bindings::PLUGIN_INTERFACE);
        let exported = component
            .component_type()
            .exports(&self.engine)
            .find_map(|(name, item)| {
                (matches!(item.ty, ComponentItem::ComponentInstance(_))
                    && name.starts_with(&prefix))
                .then(|| name[prefix.len()..].to_owned())
            });
        let Some(version) = exported else {
            return Err(LoadError::NotAPlugin {
                path: path.to_owned(),
                interface: bindings::PLUGIN_INTERFACE,
            });
        };
        let (major, minor, _) = bindings::PACKAGE_VERSION;
        let parsed: Vec<u64> = version
            .split(['.', '-', '+'])
            .take(2)
            .map(|part| part.parse().unwrap_or(u64::MAX))
            .collect();
        if parsed.first() == Some(&major) && parsed.get(1).is_some_and(|found| *found <= minor) {
            return Ok(());
        }
        let (served_major, served_minor, served_patch) = bindings::PACKAGE_VERSION;
        Err(LoadError::UnsupportedVersion {
            path: path.to_owned(),
            found: format!("{}@{version}", bindings::PACKAGE),
            served: format!("{served_major}.{served_minor}.{served_patch}"),
        })
    }

    /// A worker that transforms documents of one plugin's type with the given grants.
    pub fn worker(&self, plugin: Arc<LoadedPlugin>, grants: Grants) -> TransformWorker {
        TransformWorker {
            engine: self.engine.clone(),
            limits: self.limits.clone(),
            plugin,
            grants,
            instance: None,
            peak_memory: 0,
        }
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// Checks what a plugin declares before anything of it reaches SQL.
fn check_info(info: &PluginInfo) -> Result<(), String> {
    if !is_safe_identifier(&info.type_name) {
        return Err(format!(
            "type name {:?} is not a safe table name (letters, digits and _ only)",
            info.type_name
        ));
    }
    if info.version.trim().is_empty() {
        return Err("empty version".into());
    }
    let mut seen = std::collections::HashSet::new();
    for column in &info.columns {
        if !is_safe_identifier(&column.name) {
            return Err(format!(
                "column name {:?} is not a safe column name (letters, digits and _ only)",
                column.name
            ));
        }
        let lower = column.name.to_ascii_lowercase();
        if lower == "id" || lower == "timestamp" {
            return Err(format!(
                "column {} is implicit and must not be declared",
                column.name
            ));
        }
        if !seen.insert(lower) {
            return Err(format!("column {} is declared twice", column.name));
        }
    }
    Ok(())
}

/// A loaded, checked plugin, ready to instantiate.
pub struct LoadedPlugin {
    pub path: PathBuf,
    pub info: PluginInfo,
    pre: bindings::TypePluginPre<PluginState>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

/// The plugins of a folder, by type.
#[derive(Debug, Default)]
pub struct PluginSet {
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
}

impl PluginSet {
    pub fn get(&self, type_name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(type_name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.values()
    }

    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.plugins.keys().map(String::as_str)
    }
}

/// What became of one document.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentResult {
    Rows(Vec<Row>),
    Refused(String),
    Failed { stage: Stage, error: String },
}

/// Transforms documents of one type. Owns at most one live instance; it is replaced after a
/// trap, and lazily created.
pub struct TransformWorker {
    engine: Engine,
    limits: SandboxLimits,
    plugin: Arc<LoadedPlugin>,
    grants: Grants,
    instance: Option<sandbox::Instance>,
    /// The largest linear memory any of this worker's instances has grown to.
    peak_memory: usize,
}

impl TransformWorker {
    /// One result per document, in order. Never fails as a whole: traps and bad rows fail only
    /// the documents they hit.
    pub fn transform(&mut self, documents: &[Arc<Envelope>]) -> Vec<DocumentResult> {
        if documents.is_empty() {
            return Vec::new();
        }
        let batch: Vec<bindings::Document> = documents
            .iter()
            .map(|envelope| bindings::Document {
                id: envelope.id.clone(),
                timestamp: envelope.timestamp,
                data: envelope.data.clone(),
            })
            .collect();
        match self.call(&batch) {
            Ok(outcomes) if outcomes.len() == documents.len() => documents
                .iter()
                .zip(outcomes)
                .map(|(document, outcome)| self.check(document, outcome))
                .collect(),
            Ok(outcomes) if documents.len() == 1 => vec![DocumentResult::Failed {
                stage: Stage::Validation,
                error: format!("plugin returned {} outcomes for 1 document", outcomes.len()),
            }],
            Ok(_) => self.one_by_one(documents),
            Err(trap) => {
                // The instance cannot be entered again after a trap.
                self.instance = None;
                if documents.len() == 1 {
                    vec![DocumentResult::Failed {
                        stage: Stage::Trap,
                        error: trap,
                    }]
                } else {
                    tracing::debug!(
                        type_name = %self.plugin.info.type_name,
                        "plugin trapped on a batch of {}; retrying its documents one by one",
                        documents.len()
                    );
                    self.one_by_one(documents)
                }
            }
        }
    }

    fn one_by_one(&mut self, documents: &[Arc<Envelope>]) -> Vec<DocumentResult> {
        documents
            .iter()
            .flat_map(|document| self.transform(std::slice::from_ref(document)))
            .collect()
    }

    /// Calls the plugin; `Err` is a trap (or an instance that could not be made), with the
    /// plugin's stderr appended so the real reason (a panic message) is kept.
    fn call(&mut self, batch: &[bindings::Document]) -> Result<Vec<bindings::Outcome>, String> {
        if self
            .instance
            .as_ref()
            .is_none_or(sandbox::Instance::should_recycle)
        {
            let instance = sandbox::Instance::new(
                &self.engine,
                &self.plugin.pre,
                &self.limits,
                Some(self.grants.clone()),
            )
            .map_err(|error| format!("cannot instantiate plugin: {error:#}"))?;
            self.instance = Some(instance);
        }
        let instance = self.instance.as_mut().expect("instance was just made");
        let result = instance.transform(batch);
        self.peak_memory = self.peak_memory.max(instance.peak_memory());
        result
    }

    /// Turns an outcome into checked rows, or fails the document with the reason.
    fn check(&self, document: &Envelope, outcome: bindings::Outcome) -> DocumentResult {
        match outcome {
            bindings::Outcome::Refused(reason) => DocumentResult::Refused(reason),
            bindings::Outcome::Failed(error) => DocumentResult::Failed {
                stage: Stage::Plugin,
                error: error.to_string(),
            },
            // Zero rows would leave the document counted nowhere.
            bindings::Outcome::Rows(rows) if rows.is_empty() => {
                DocumentResult::Refused("the plugin returned no rows".into())
            }
            bindings::Outcome::Rows(rows) => {
                match check_rows(document, &self.plugin.info.columns, rows) {
                    Ok(rows) => DocumentResult::Rows(rows),
                    Err(error) => DocumentResult::Failed {
                        stage: Stage::Validation,
                        error,
                    },
                }
            }
        }
    }

    /// The largest linear memory, in bytes, that any instance of this worker has grown to.
    pub fn peak_memory_bytes(&self) -> usize {
        self.peak_memory
    }

    /// The notes the plugin's capability calls left, for the run summary.
    pub fn notes(&self) -> Vec<String> {
        self.grants.notes()
    }
}

/// Checks rows against the declared columns: count, types, and ids.
fn check_rows(
    document: &Envelope,
    columns: &[Column],
    rows: Vec<bindings::Row>,
) -> Result<Vec<Row>, String> {
    let mut ids = std::collections::HashSet::new();
    rows.into_iter()
        .enumerate()
        .map(|(index, row)| {
            if row.values.len() != columns.len() {
                return Err(format!(
                    "row {index} has {} values for {} declared columns",
                    row.values.len(),
                    columns.len()
                ));
            }
            let cells: Vec<Cell> = row.values.into_iter().map(Cell::from).collect();
            for (cell, column) in cells.iter().zip(columns) {
                if let Some(kind) = cell.kind()
                    && kind != column.kind
                {
                    return Err(format!(
                        "row {index}: column {} is declared {} but the plugin gave {kind}",
                        column.name, column.kind
                    ));
                }
            }
            let id = row.id.unwrap_or_else(|| document.id.clone());
            if id.is_empty() || id.len() > MAX_ID_LEN {
                return Err(format!(
                    "row {index}: id must have 1 to {MAX_ID_LEN} characters, has {}",
                    id.len()
                ));
            }
            if !ids.insert(id.clone()) {
                return Err(format!("row {index}: id {id} is given to two rows"));
            }
            Ok(Row {
                id,
                timestamp: document.timestamp,
                cells,
            })
        })
        .collect()
}
