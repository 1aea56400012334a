//! batch-job-aurora: copies raw data points into per-type SQL tables through WebAssembly type
//! plugins.
//!
//! The one entry point is [`run`]: it loads the plugins, opens the sink, streams documents from
//! the source through each type's plugin, and writes rows and failures. The binaries only turn
//! their input (flags, or a Lambda event) into a [`resolve::RunRequest`], let
//! [`resolve::resolve`] make the [`RunConfig`], and print the [`RunSummary`]. A process that
//! runs many times (the Lambda) prepares a [`Job`] once, which keeps the engine, the plugins
//! and the database pool between runs.
//!
//! The boundary: the run's machinery is `pub(crate)`: the pipeline (router, lanes, writer), the
//! scanner and the sources, the envelope, the settings, credentials, secrets, the job and the
//! summary's internals. What the binaries (`cli/`), the integration tests (`tests/`) and the
//! benchmark (`bench/`) need of them is re-exported here by name ([`Job`], [`RunConfig`],
//! [`RunSummary`], [`Envelope`], [`SourceSpec`], [`MAX_PLUGIN_INSTANCES`], …). The public
//! modules are the vocabulary of those callers: the rows (`model`), windows, the resolver,
//! the Lambda's invocation and backfill, the sink's operator tools (replay, status), plugins
//! and their capabilities, errors, metrics, and the plugin author's kit (`kit`, feature `kit`).
// `unsafe` only where wasmtime requires it: mapping a precompiled plugin (`plugin/load.rs`).
#![deny(unsafe_code)]

pub mod backfill;
pub mod capability;
pub(crate) mod config;
pub(crate) mod credentials;
pub(crate) mod database_variables;
pub(crate) mod document;
pub mod environment;
pub mod error;
pub mod features;
pub mod hooks;
pub mod http;
pub mod invocation;
pub(crate) mod job;
#[cfg(feature = "kit")]
pub mod kit;
pub mod metrics;
pub mod model;
pub(crate) mod pipeline;
pub mod plugin;
pub(crate) mod projection;
pub mod resolve;
pub(crate) mod secrets;
pub mod sink;
pub(crate) mod source;
pub mod status;
pub(crate) mod summary;
pub mod window;

pub use config::{DOCUMENTS_PER_CALL, RunConfig};
pub use document::Envelope;
pub use error::RunError;
pub use job::Job;
pub use job::{run, run_with};
pub use pipeline::{MAX_PLUGIN_INSTANCES, WRITES_IN_FLIGHT};
pub use source::SourceSpec;
pub use summary::{RunSummary, TypeSummary};

/// The host's passes over a payload's bytes, for the benchmark that measures them against the
/// SIMD JSON crates (`bench/src/bin/payload_passes.rs`). Not part of the library's API.
#[doc(hidden)]
pub mod passes {
    pub use crate::projection::{InputPaths, Projection, check, check_and_project};
    pub use crate::source::scan::ArrayScanner;
}
