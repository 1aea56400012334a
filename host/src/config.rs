//! What one run needs to know. Built by the binaries from flags and environment.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::capability::Backends;
use crate::plugin::SandboxLimits;
use crate::source::SourceSpec;

/// An inclusive window of Unix seconds, as the fetch API has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

impl Window {
    pub fn contains(&self, timestamp: i64) -> bool {
        self.from <= timestamp && timestamp <= self.to
    }
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub source: SourceSpec,
    /// `sqlite://PATH`.
    pub database_url: String,
    pub plugins_dir: PathBuf,
    /// The types to run; `None` runs every installed plugin's type.
    pub types: Option<Vec<String>>,
    /// Documents outside the window are skipped; `None` takes every document.
    pub window: Option<Window>,
    pub backends: Backends,
    pub limits: SandboxLimits,
    /// Documents per plugin call. About 100 amortises the call; more buys nothing measurable.
    pub documents_per_call: usize,
    /// Rows per database write (one transaction).
    pub rows_per_write: usize,
    /// Live counters, for a progress display.
    pub progress: Arc<Progress>,
}

impl RunConfig {
    /// A config with the defaults for everything but where to read, write and load from.
    pub fn new(source: SourceSpec, database_url: impl Into<String>, plugins_dir: PathBuf) -> Self {
        RunConfig {
            source,
            database_url: database_url.into(),
            plugins_dir,
            types: None,
            window: None,
            backends: Backends::default(),
            limits: SandboxLimits::default(),
            documents_per_call: 100,
            rows_per_write: 2_000,
            progress: Arc::default(),
        }
    }
}

/// Counters updated while a run goes, read by progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    pub documents: AtomicU64,
    pub inserted: AtomicU64,
    pub duplicates: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
}

impl Progress {
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
