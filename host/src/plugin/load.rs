//! The engine and loading: a folder of plugin components, each either precompiled for this
//! engine (`NAME.cwasm`, made by [`PluginEngine::precompile`]) or compiled at load
//! (`NAME.wasm`, through the compile cache when one is set). Native code (a `.cwasm`, a cache
//! entry) is loaded only when it passes the trust rule of `native`; else the `.wasm` is
//! compiled. Every plugin is checked (WIT version, what it declares) before it is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine};

use super::SandboxLimits;
use super::bindings;
use super::native;
use super::sandbox;
use super::state::PluginState;
use crate::model::{PluginInfo, is_safe_identifier};
use crate::projection::InputPaths;

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
    #[error("refusing the native code in {path}: {reason}")]
    UntrustedNativeCode { path: PathBuf, reason: String },
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
}

/// The engine configuration of the host. A `.cwasm` loads only into an engine of the same
/// configuration, so the precompiler (`bootstrap --precompile`) uses this very function.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

/// The WebAssembly engine, with the ticker thread that drives every call's time budget.
pub struct PluginEngine {
    pub(super) engine: Engine,
    linker: Arc<Linker<PluginState>>,
    pub(super) limits: SandboxLimits,
    /// Where compiled `.wasm` plugins are kept between runs, when anywhere.
    compile_cache: Option<PathBuf>,
    /// Whether plugins that list input paths are handed only those (off: whole documents, to
    /// measure what projection saves).
    pub(super) projection: bool,
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
        let engine = Engine::new(&engine_config())
            .map_err(|error| LoadError::Engine(format!("{error:#}")))?;
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
            compile_cache: None,
            projection: true,
            stop_ticker,
            ticker: Some(ticker),
        })
    }

    /// Keeps the native code compiled from each `.wasm` in `folder`, so that the next start
    /// loads it instead of compiling again (see [`PluginEngine::load_cached`]).
    pub fn with_compile_cache(mut self, folder: Option<PathBuf>) -> Self {
        self.compile_cache = folder;
        self
    }

    /// Whether plugins that list their input paths get only those (the default), or whole
    /// documents (`run --no-projection`, to measure what projection saves). Every payload is
    /// checked in all its bytes either way.
    pub fn with_projection(mut self, projection: bool) -> Self {
        self.projection = projection;
        self
    }

    /// Loads every plugin of `folder`, in name order, and indexes the plugins by type. A plugin
    /// is `NAME.cwasm` (precompiled for this engine) or `NAME.wasm`; when both are there the
    /// `.cwasm` is taken if it passes the trust rule of native code, was compiled from that
    /// very `.wasm` and matches this engine, else the `.wasm` is compiled (and the reason
    /// logged). A `.cwasm` refused without a `.wasm` beside it is an error.
    ///
    /// A `.cwasm` is native code: only the operator's folder is read, never a path that a
    /// document or a plugin could name.
    pub fn load_folder(&self, folder: &Path) -> Result<PluginSet, LoadError> {
        let folder_error = |source| LoadError::Folder {
            path: folder.to_owned(),
            source,
        };
        // By name: (the .cwasm, the .wasm).
        let mut artifacts: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
        for entry in std::fs::read_dir(folder).map_err(folder_error)? {
            let path = entry.map_err(folder_error)?.path();
            let (Some(stem), Some(extension)) = (path.file_stem(), path.extension()) else {
                continue;
            };
            if !path.is_file() {
                continue;
            }
            let slot = artifacts
                .entry(stem.to_string_lossy().into_owned())
                .or_default();
            if extension == "cwasm" {
                slot.0 = Some(path);
            } else if extension == "wasm" {
                slot.1 = Some(path);
            }
        }
        let mut plugins: BTreeMap<String, Arc<LoadedPlugin>> = BTreeMap::new();
        for (precompiled, wasm) in artifacts.into_values() {
            let wasm = wasm
                .map(|path| read_wasm(&path).map(|bytes| (path, bytes)))
                .transpose()?;
            let sha256 = wasm
                .as_ref()
                .map(|(_, bytes)| native::hex(&native::wasm_digest(bytes)));
            let mut plugin = match (precompiled, wasm) {
                (Some(precompiled), wasm) => {
                    let compiled_from = wasm.as_ref().map(|(_, bytes)| native::wasm_digest(bytes));
                    match self.load_precompiled(&precompiled, compiled_from.as_ref()) {
                        Ok(plugin) => plugin,
                        Err(error) => match wasm {
                            Some((path, bytes)) => {
                                tracing::warn!(
                                    "{error}; compiling {} instead (slower start)",
                                    path.display()
                                );
                                self.load_wasm(&path, &bytes)?
                            }
                            None => return Err(error),
                        },
                    }
                }
                (None, Some((path, bytes))) => self.load_wasm(&path, &bytes)?,
                (None, None) => continue,
            };
            plugin.sha256 = sha256;
            if let Some(first) = plugins.get(&plugin.info.type_name) {
                return Err(LoadError::DuplicateType {
                    type_name: plugin.info.type_name.clone(),
                    first: first.path.clone(),
                    second: plugin.path.clone(),
                });
            }
            plugins.insert(plugin.info.type_name.clone(), Arc::new(plugin));
        }
        Ok(PluginSet { plugins })
    }

    /// Loads a `.cwasm` made by [`PluginEngine::precompile`], when it passes the trust rule of
    /// native code (see `native`) and, given the digest of the `.wasm` it stands for, was
    /// compiled from that very `.wasm`. wasmtime refuses one made by another version or
    /// configuration, or for CPU features this machine lacks.
    fn load_precompiled(
        &self,
        path: &Path,
        compiled_from: Option<&native::WasmDigest>,
    ) -> Result<LoadedPlugin, LoadError> {
        let component = self.load_native(path, compiled_from)?;
        let mut plugin = self.admit(path, component)?;
        plugin.precompiled = true;
        Ok(plugin)
    }

    /// Reads a native code file that passes the trust rule and maps it into this engine.
    fn load_native(
        &self,
        path: &Path,
        compiled_from: Option<&native::WasmDigest>,
    ) -> Result<Component, LoadError> {
        let untrusted = |reason| LoadError::UntrustedNativeCode {
            path: path.to_owned(),
            reason,
        };
        let file = native::read_trusted(path).map_err(untrusted)?;
        if let Some(digest) = compiled_from {
            file.check_compiled_from(digest).map_err(untrusted)?;
        }
        deserialize(&self.engine, path, file.native_code())
    }

    /// Compiles a plugin (`.wasm`) into `out` (`.cwasm`) under this engine's configuration,
    /// after checking that it loads as a plugin, and checks that the result loads back.
    ///
    /// `portable` compiles for the architecture's baseline instead of this machine's CPU
    /// features, so that the artifact loads on any CPU of the architecture (wasmtime refuses a
    /// `.cwasm` that uses a feature the running CPU lacks, and the loader would then compile
    /// the `.wasm` at start). Everything else about the configuration is the same.
    pub fn precompile(
        &self,
        wasm: &Path,
        out: &Path,
        portable: bool,
    ) -> Result<PluginInfo, LoadError> {
        // Read and compiled once: for this machine the checked component is what is written.
        let bytes = read_wasm(wasm)?;
        let digest = native::wasm_digest(&bytes);
        let component = self.compile(wasm, &bytes)?;
        let plugin = self.admit(wasm, component.clone())?;
        let engine_error = |error: wasmtime::Error| LoadError::Engine(format!("{error:#}"));
        let compiled = if portable {
            let mut config = engine_config();
            config
                .target(&format!(
                    "{}-unknown-{}-gnu",
                    std::env::consts::ARCH,
                    std::env::consts::OS
                ))
                .map_err(engine_error)?;
            let engine = Engine::new(&config).map_err(engine_error)?;
            engine
                .precompile_component(&bytes)
                .map_err(|error| LoadError::NotAComponent {
                    path: wasm.to_owned(),
                    reason: format!("{error:#}"),
                })?
        } else {
            component.serialize().map_err(engine_error)?
        };
        native::write(out, &digest, &compiled, native::SHARED_FILE).map_err(|error| {
            LoadError::Engine(format!("cannot write {}: {error}", out.display()))
        })?;
        self.load_precompiled(out, Some(&digest))?;
        Ok(plugin.info)
    }

    /// Loads one plugin file (`.wasm`): compiles it, checks its WIT version, asks it to
    /// describe itself and checks what it says.
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let bytes = read_wasm(path)?;
        let component = self.compile(path, &bytes)?;
        let mut plugin = self.admit(path, component)?;
        plugin.sha256 = Some(native::hex(&native::wasm_digest(&bytes)));
        Ok(plugin)
    }

    /// Loads a `.wasm` of the folder (its `bytes`): through the compile cache when one is set,
    /// else compiled here (and logged, since it costs a slower start).
    fn load_wasm(&self, wasm: &Path, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        if let Some(cache) = &self.compile_cache {
            return self.load_cached(wasm, bytes, cache);
        }
        let started = std::time::Instant::now();
        let component = self.compile(wasm, bytes)?;
        let plugin = self.admit(wasm, component)?;
        tracing::info!(
            "compiled {} in {} ms (no precompiled .cwasm)",
            wasm.display(),
            started.elapsed().as_millis()
        );
        Ok(plugin)
    }

    /// Loads a `.wasm` through the compile cache in `cache`: the native code compiled from
    /// these very bytes under this very engine is taken from there when it is present and
    /// passes the trust rule of native code (see `native`), else the plugin is compiled and the
    /// result kept there for the next start. Entries are named by the SHA-256 of the component
    /// and the engine's compatibility hash, so a rebuilt plugin or another host build never
    /// meets a stale entry; an entry that is refused is compiled again and replaced. The
    /// folder is made for this user alone; a cache that cannot be written, or that others
    /// could write, costs only the time to compile.
    fn load_cached(
        &self,
        wasm: &Path,
        bytes: &[u8],
        cache: &Path,
    ) -> Result<LoadedPlugin, LoadError> {
        let digest = native::wasm_digest(bytes);
        let entry = cache.join(format!("{}.cwasm", self.cache_key(&digest)));
        if std::fs::symlink_metadata(&entry).is_ok() {
            match self.load_native(&entry, Some(&digest)) {
                Ok(component) => return self.admit(wasm, component),
                Err(error) => tracing::warn!("{error}; compiling {} again", wasm.display()),
            }
        }
        let started = std::time::Instant::now();
        let component = self.compile(wasm, bytes)?;
        let plugin = self.admit(wasm, component.clone())?;
        tracing::info!(
            "compiled {} in {} ms; keeping it in {}",
            wasm.display(),
            started.elapsed().as_millis(),
            cache.display()
        );
        let kept = native::create_private_folder(cache)
            .and_then(|()| native::check_folder(cache).map_err(std::io::Error::other))
            .and_then(|()| {
                component
                    .serialize()
                    .map_err(|error| std::io::Error::other(format!("{error:#}")))
            })
            .and_then(|compiled| native::write(&entry, &digest, &compiled, native::PRIVATE_FILE));
        if let Err(error) = kept {
            tracing::warn!(
                "cannot keep the compiled plugin in {}: {error}",
                cache.display()
            );
        }
        Ok(plugin)
    }

    /// The name of a component's entry in the compile cache.
    fn cache_key(&self, wasm: &native::WasmDigest) -> String {
        use std::hash::{Hash, Hasher};
        let mut engine = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine);
        format!("{}-{:016x}", native::hex(wasm), engine.finish())
    }

    fn compile(&self, path: &Path, bytes: &[u8]) -> Result<Component, LoadError> {
        Component::new(&self.engine, bytes).map_err(|error| LoadError::NotAComponent {
            path: path.to_owned(),
            // The parser's own words, first line: its full text spans a dozen lines.
            reason: error
                .root_cause()
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// Admits a component as a plugin: its WIT version checked, asked to describe itself, and
    /// what it says checked.
    fn admit(&self, path: &Path, component: Component) -> Result<LoadedPlugin, LoadError> {
        self.check_version(path, &component)?;
        let instantiate_error = |error: wasmtime::Error| LoadError::Instantiate {
            path: path.to_owned(),
            reason: format!("{error:#}"),
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(instantiate_error)?;
        let pre = bindings::PluginPre::new(pre).map_err(instantiate_error)?;
        let mut instance = sandbox::Instance::new(&self.engine, &pre, &self.limits, None, "", None)
            .map_err(instantiate_error)?;
        let info: PluginInfo = instance.describe().map_err(instantiate_error)?;
        let invalid = |reason| LoadError::InvalidInfo {
            path: path.to_owned(),
            reason,
        };
        check_info(&info).map_err(invalid)?;
        let listed = instance.input_paths().map_err(instantiate_error)?;
        let input = listed
            .map(|listed| InputPaths::parse(&listed))
            .transpose()
            .map_err(|error| invalid(error.to_string()))?
            .flatten()
            .map(Arc::new);
        Ok(LoadedPlugin {
            path: path.to_owned(),
            info,
            precompiled: false,
            sha256: None,
            input,
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
    /// The file it was loaded from (`.cwasm` or `.wasm`).
    pub path: PathBuf,
    pub info: PluginInfo,
    /// Whether it was loaded precompiled (`.cwasm`) rather than compiled at load.
    pub precompiled: bool,
    /// The SHA-256 of its `.wasm` (hex), when the `.wasm` was there to read.
    pub sha256: Option<String>,
    /// The paths of `data` it reads (`None`: whole documents).
    pub(crate) input: Option<Arc<InputPaths>>,
    pub(super) pre: bindings::PluginPre,
}

impl LoadedPlugin {
    /// The input paths the plugin listed; `None` when it reads whole documents.
    pub fn input_paths(&self) -> Option<&[String]> {
        self.input.as_deref().map(InputPaths::listed)
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("info", &self.info)
            .field("precompiled", &self.precompiled)
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

fn read_wasm(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|error| LoadError::NotAComponent {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// Maps native code read from `path` into memory as a component of `engine`.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path, native_code: &[u8]) -> Result<Component, LoadError> {
    // SAFETY: a `.cwasm` is native code that wasmtime runs without verifying it; it checks only
    // that the bytes were made by the same wasmtime version and configuration for this CPU.
    // So only bytes that passed `native::read_trusted` reach this point: read from a file that
    // only its owner (this user or root) can write, in a folder kept the same way, and made by
    // this host from the `.wasm` whose digest it carries. They are copied into memory of
    // wasmtime's own, so nothing can change them while they run.
    unsafe { Component::deserialize(engine, native_code) }.map_err(|error| {
        LoadError::NotAComponent {
            path: path.to_owned(),
            reason: format!("not a precompiled plugin of this engine: {error:#}"),
        }
    })
}
