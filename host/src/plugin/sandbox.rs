//! The sandbox around one plugin instance: WASI with nothing granted, a memory cap, a time
//! budget per call, captured stderr, and the host imports backed by the plugin's grants.

use std::time::{Duration, Instant};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use super::bindings::{self, PluginInput, PluginInstance, PluginPre, Trap};
use super::state::{MeteredLimits, PluginState};
use crate::capability::Grants;
use crate::model::{Outcome, PluginInfo};

/// The limits every plugin call runs under.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    /// The most linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// The time budget of one call, whatever its size.
    pub call_budget: Duration,
    /// Added to the budget for each document of the batch.
    pub budget_per_document: Duration,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes: 256 << 20,
            call_budget: Duration::from_secs(2),
            budget_per_document: Duration::from_millis(50),
        }
    }
}

/// The most stderr kept per instance: enough for a panic message and its context. The instance
/// is recycled before a chatty plugin fills it, because a full pipe would fail its writes.
const STDERR_CAPACITY: usize = 256 << 10;
/// How much of stderr goes into a trap message.
const STDERR_TAIL: usize = 2 << 10;

/// Why a call gave no outcomes.
#[derive(Debug)]
pub enum CallError {
    /// The plugin trapped: the message, with the tail of its stderr.
    Trap(String),
    /// The run's deadline came while the call was running.
    RunDeadline,
}

/// A clock stopped at the Unix epoch: plugins get no time beyond what the WIT gives them.
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The linker shared by every instance: WASI (which a Rust guest's std imports even when it
/// uses none of it) plus the host interface.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    bindings::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// A live plugin instance in its own store.
pub struct Instance {
    store: Store<PluginState>,
    plugin: PluginInstance,
    stderr: MemoryOutputPipe,
    call_budget: Duration,
    budget_per_document: Duration,
}

impl Instance {
    /// Instantiates a plugin of type `type_name` (which tags its log lines; empty only until
    /// `describe` says it). `grants` is `None` only while describing it at load time, when
    /// every lookup is denied. No call runs past `run_deadline`.
    pub fn new(
        engine: &Engine,
        pre: &PluginPre,
        limits: &super::SandboxLimits,
        grants: Option<Grants>,
        type_name: &str,
        run_deadline: Option<Instant>,
    ) -> wasmtime::Result<Self> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // Nothing is granted: no preopened folders, no environment, no arguments, no sockets
        // (denied by default), and stopped clocks.
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .wall_clock(StoppedClock)
            .monotonic_clock(StoppedClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = PluginState {
            wasi,
            table: ResourceTable::new(),
            limits: MeteredLimits {
                limits: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .trap_on_grow_failure(true)
                    .build(),
                peak_memory: 0,
            },
            grants,
            type_name: type_name.to_owned(),
            deadline: Instant::now() + limits.call_budget,
            budget: limits.call_budget,
            run_deadline,
            stopped_by_run_deadline: false,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        // Every tick, the callback checks the wall-clock deadlines of the current call and of
        // the run. A store must be armed before it runs any code, or it traps at once.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            let now = Instant::now();
            if state.run_deadline.is_some_and(|deadline| now >= deadline) {
                state.stopped_by_run_deadline = true;
                return Err(wasmtime::format_err!("the run's deadline came"));
            }
            if now >= state.deadline {
                return Err(wasmtime::format_err!(
                    "plugin ran out of its time budget of {} ms",
                    state.budget.as_millis()
                ));
            }
            Ok(UpdateDeadline::Continue(1))
        });
        let plugin = pre.instantiate(&mut store)?;
        Ok(Instance {
            store,
            plugin,
            stderr,
            call_budget: limits.call_budget,
            budget_per_document: limits.budget_per_document,
        })
    }

    pub fn describe(&mut self) -> wasmtime::Result<PluginInfo> {
        self.arm(0);
        let info = self
            .plugin
            .describe(&mut self.store)
            .map_err(|Trap(trap)| trap)?;
        self.store.data_mut().type_name = info.type_name.clone();
        Ok(info)
    }

    /// The paths the plugin reads; `None` for whole documents.
    pub fn input_paths(&mut self) -> wasmtime::Result<Option<Vec<String>>> {
        self.arm(0);
        self.plugin
            .input_paths(&mut self.store)
            .map_err(|Trap(trap)| trap)
    }

    /// Transforms a batch; a trap comes with the tail of the plugin's stderr.
    pub fn transform(&mut self, batch: &[PluginInput<'_>]) -> Result<Vec<Outcome>, CallError> {
        self.arm(batch.len());
        self.plugin
            .transform(&mut self.store, batch)
            .map_err(|Trap(trap)| {
                if self.store.data().stopped_by_run_deadline {
                    CallError::RunDeadline
                } else {
                    CallError::Trap(self.trap_message(&trap))
                }
            })
    }

    /// The largest linear memory this instance has grown to, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.store.data().limits.peak_memory
    }

    /// Whether stderr is filling up; a fresh instance starts with an empty pipe.
    pub fn should_recycle(&self) -> bool {
        self.stderr.contents().len() > STDERR_CAPACITY / 2
    }

    /// Sets the deadline of the next call: a base budget plus a share per document.
    fn arm(&mut self, documents: usize) {
        let documents = u32::try_from(documents).unwrap_or(u32::MAX);
        let budget = self.call_budget + self.budget_per_document * documents;
        let state = self.store.data_mut();
        state.budget = budget;
        state.deadline = Instant::now() + budget;
    }

    fn trap_message(&self, trap: &wasmtime::Error) -> String {
        let stderr = self.stderr.contents();
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr = stderr.trim();
        let tail = match stderr.char_indices().rev().nth(STDERR_TAIL) {
            Some((start, _)) => &stderr[start..],
            None => stderr,
        };
        if tail.is_empty() {
            format!("plugin trapped: {trap:#}")
        } else {
            format!("plugin trapped: {trap:#}; plugin stderr: {tail}")
        }
    }
}
