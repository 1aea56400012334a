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
//! The boundary: modules only the library uses are `pub(crate)` (`credentials`,
//! `database_variables`, `job`, `secrets`, `summary`; their public names are re-exported
//! where the binaries and tests need them: [`Job`], [`RunSummary`], [`error::chain`]). The
//! other modules are public for the binaries (`cli/`), the integration tests (`tests/`), the
//! benchmark (`bench/`) and the plugin author's kit (`kit`, feature `kit`).
// `unsafe` only where wasmtime requires it: mapping a precompiled plugin (`plugin/load.rs`).
#![deny(unsafe_code)]

pub mod backfill;
pub mod capability;
pub mod config;
pub(crate) mod credentials;
pub(crate) mod database_variables;
pub mod document;
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
pub mod pipeline;
pub mod plugin;
pub mod resolve;
pub(crate) mod secrets;
pub mod sink;
pub mod source;
pub mod status;
pub(crate) mod summary;
pub mod window;

pub use config::RunConfig;
pub use error::RunError;
pub use job::Job;
pub use job::{run, run_with};
pub use summary::{RunSummary, TypeSummary};
