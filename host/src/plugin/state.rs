//! The store data of one plugin instance: what the sandbox sets up (WASI, limits, budgets) and
//! what the host interface's implementations (`bindings`) use (grants, the type for log lines).
//! Apart from both, so that each depends on it and neither on the other.

use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capability::{Grants, LookupFailure};
use crate::model::LogLevel;

/// The store data of one plugin instance.
pub struct PluginState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: MeteredLimits,
    pub(super) grants: Option<Grants>,
    /// The plugin's type, which tags its log lines.
    pub(super) type_name: String,
    /// When the current call runs out of time. Host lookups push it back by the time they
    /// take, so a slow Slack answer does not count against the plugin.
    pub(super) deadline: Instant,
    pub(super) budget: Duration,
    /// The run's deadline: a call still running then is interrupted, whatever its budget.
    pub(super) run_deadline: Option<Instant>,
    /// Whether the last call was interrupted by the run's deadline (not a fault of the plugin).
    pub(super) stopped_by_run_deadline: bool,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The store limits, remembering the largest linear memory they allowed (for `plugin check`).
pub(super) struct MeteredLimits {
    pub(super) limits: StoreLimits,
    pub(super) peak_memory: usize,
}

impl ResourceLimiter for MeteredLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl PluginState {
    /// Runs a host lookup, pushing the call's deadline back by the time it took.
    pub(super) fn timed<T>(
        &mut self,
        lookup: impl FnOnce(&Grants) -> Result<T, LookupFailure>,
    ) -> Result<T, LookupFailure> {
        let Some(grants) = &self.grants else {
            return Err(LookupFailure::Denied);
        };
        let started = Instant::now();
        let answer = lookup(grants);
        self.deadline += started.elapsed();
        answer
    }

    /// A plugin's log line, tagged with its type.
    pub(super) fn plugin_log(&self, level: LogLevel, message: &str) {
        // Plugins run once per document; cap a line so a runaway plugin cannot flood the log.
        let message: String = message.chars().take(1000).collect();
        let type_name = self.type_name.as_str();
        match level {
            LogLevel::Debug => tracing::debug!(type_name, "plugin: {message}"),
            LogLevel::Info => tracing::info!(type_name, "plugin: {message}"),
            LogLevel::Warn => tracing::warn!(type_name, "plugin: {message}"),
            LogLevel::Error => tracing::error!(type_name, "plugin: {message}"),
        }
    }
}
