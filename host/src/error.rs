//! Errors that stop a run before it can do its work.

use crate::plugin::LoadError;
use crate::sink::SinkError;
use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot load plugins")]
    Plugins(#[from] LoadError),
    #[error(
        "no plugins in {folder}: nothing could be stored (build them with `cargo xtask dist`, or pass --plugins DIR)"
    )]
    NoPlugins { folder: std::path::PathBuf },
    #[error("no plugin for type {type_name:?} (installed: {installed})")]
    NoPluginForType {
        type_name: String,
        installed: String,
    },
    #[error("cannot use the database")]
    Sink(#[from] SinkError),
    #[error("cannot read the source")]
    Source(#[from] SourceError),
    #[error("cannot set up the plugins' lookups")]
    Capabilities(#[from] crate::capability::CapabilityError),
    #[error("a run task failed: {0}")]
    Task(String),
    #[error("interrupted by {0}: the run log says so, and catch-up reads its windows again")]
    Interrupted(String),
}

/// Errors become text through [`crate::secrets::chain`] (scrubbed); here too for the binaries.
pub use crate::secrets::chain;
