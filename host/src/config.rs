//! What one run needs to know: the plugins a job is prepared with and the settings of one run
//! of it, plain data. [`crate::resolve::resolve`] makes it from flags or an event and the
//! environment.

use std::path::PathBuf;

use crate::capability::{Backends, CapabilitySpecs};
use crate::plugin::SandboxLimits;
use crate::source::SourceSpec;
use crate::window::WindowPlan;

/// Documents per plugin call, in a run and in the kit's check. About 100 amortises the call;
/// more buys nothing measurable.
pub const DOCUMENTS_PER_CALL: usize = 100;

/// Everything one run needs, as [`crate::resolve::resolve`] makes it: the plugins a
/// [`crate::Job`] is prepared with, and what one run of that job does. Runtime hooks (live
/// counters, the test pause, the interrupt) are handed to the run beside it ([`crate::hooks::RunHooks`]).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub plugins: PluginSetup,
    pub run: RunSettings,
}

/// What a job is prepared with, once: the plugins and the sandbox they run in.
#[derive(Debug, Clone)]
pub struct PluginSetup {
    /// The folder of plugin components.
    pub dir: PathBuf,
    /// Where the native code compiled from `.wasm` plugins is kept between runs (`None`:
    /// compiled at every start). A `.cwasm` in the plugin folder needs no cache.
    pub compile_cache: Option<PathBuf>,
    pub limits: SandboxLimits,
    /// Whether plugins that list input paths are handed only those (`--no-projection`: off).
    pub projection: bool,
}

/// What one run of a prepared job does: [`crate::Job::run`] takes exactly this.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub source: SourceSpec,
    /// `sqlite://PATH`.
    pub database_url: String,
    /// The types to run; `None` runs every installed plugin's type.
    pub types: Option<Vec<String>>,
    /// Which window each type reads; documents outside it are skipped. `All` with the fetch
    /// API means its default, the last 70 minutes before the run starts.
    pub windows: WindowPlan,
    /// Where the plugins' lookups go (plain data; the run sets up the clients).
    pub capabilities: CapabilitySpecs,
    /// Clients set up already, instead of `capabilities` (tests and embedders with backends
    /// of their own).
    pub backends: Option<Backends>,
    /// Documents per plugin call ([`DOCUMENTS_PER_CALL`]).
    pub documents_per_call: usize,
    /// Instances of each type's plugin working at once, each on whole batches.
    pub plugin_instances: usize,
    /// Rows per database write (one transaction).
    pub rows_per_write: usize,
    /// The bytes of documents one type may have in flight, from the source's read to the
    /// database's write. Bounds memory whatever the size of the documents.
    pub lane_bytes: usize,
    /// How the fetch API is used.
    pub fetch: FetchOptions,
    /// When the run must have answered (a Lambda's invocation deadline less a margin): no new
    /// work starts after it, what was stored stays stored, and unfinished types fail with the
    /// reason. `None`: no deadline.
    pub deadline: Option<std::time::Instant>,
    /// How often a catch-up window whose body cannot be read is tried before it is given up
    /// (closed, with its unread bytes kept) so that catch-up moves on.
    pub max_window_attempts: u64,
    /// What a row whose id is stored already does: skipped (the contract's rule), or
    /// overwritten when its values differ (reprocessing with a fixed plugin).
    pub on_existing: crate::sink::OnExisting,
}

/// How the fetch API is used.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub timeouts: crate::source::FetchTimeouts,
    /// How many types download at once.
    pub concurrency: usize,
    pub backoff: backon::ExponentialBuilder,
    /// The longest single wait between tries, a `Retry-After` included.
    pub max_wait: std::time::Duration,
    /// The most time one request may take, its tries and waits together.
    pub retry_budget: std::time::Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeouts: Default::default(),
            concurrency: 2,
            backoff: crate::http::backoff(),
            max_wait: crate::http::MAX_WAIT,
            retry_budget: crate::http::RETRY_BUDGET,
        }
    }
}

impl RunConfig {
    /// A config with the defaults for everything but where to read, write and load from.
    pub fn new(source: SourceSpec, database_url: impl Into<String>, plugins_dir: PathBuf) -> Self {
        RunConfig {
            plugins: PluginSetup {
                dir: plugins_dir,
                compile_cache: None,
                limits: SandboxLimits::default(),
                projection: true,
            },
            run: RunSettings {
                source,
                database_url: database_url.into(),
                types: None,
                windows: WindowPlan::All,
                capabilities: CapabilitySpecs::default(),
                backends: None,
                documents_per_call: DOCUMENTS_PER_CALL,
                plugin_instances: 1,
                rows_per_write: 2_000,
                lane_bytes: 64 << 20,
                fetch: FetchOptions::default(),
                deadline: None,
                max_window_attempts: 3,
                on_existing: crate::sink::OnExisting::Skip,
            },
        }
    }
}
