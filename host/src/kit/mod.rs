//! The plugin author's kit behind `batch-job-aurora plugin new | build | check`.
//!
//! - [`scaffold`] writes a standalone plugin project, in Rust or Python, with the SDK (or the
//!   Python helper package) and the WIT copied in, so that it builds with no checkout of this
//!   repository.
//! - [`build`] turns such a project into a component, installing what is missing where that
//!   needs no question (the `wasm32-wasip2` target; componentize-py in a venv of its own).
//! - [`check`] loads a component the way a run does and runs it over a document file under the
//!   production sandbox, reporting each document's outcome, the time and memory it took and
//!   the capability calls it made.

pub mod build;
pub mod check;
pub mod scaffold;

use std::path::PathBuf;

/// The language of a plugin project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
}

impl std::str::FromStr for Lang {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "rust" => Ok(Lang::Rust),
            "python" => Ok(Lang::Python),
            other => Err(format!("unknown language {other:?}: rust or python")),
        }
    }
}

/// Why a kit command failed.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {command}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status})")]
    Command { command: String, status: String },
    #[error(transparent)]
    Load(#[from] crate::plugin::LoadError),
    #[error(transparent)]
    Capability(#[from] crate::capability::CapabilityError),
}
