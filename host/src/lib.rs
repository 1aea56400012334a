//! batch-job-aurora: copies raw data points into per-type SQL tables through WebAssembly type
//! plugins.
//!
//! The one entry point is [`run`]: it loads the plugins, opens the sink, streams documents from
//! the source through each type's plugin, and writes rows and failures. The binaries only turn
//! their input (flags, or a Lambda event) into a [`resolve::RunRequest`], let
//! [`resolve::resolve`] make the [`RunConfig`], and print the [`RunSummary`]. A process that
//! runs many times (the Lambda) prepares a [`Job`] once, which keeps the engine, the plugins
//! and the database pool between runs.
// `unsafe` only where wasmtime requires it: mapping a precompiled plugin (`plugin/load.rs`).
#![deny(unsafe_code)]

pub mod backfill;
pub mod capability;
pub mod config;
pub mod credentials;
pub mod document;
pub mod environment;
pub mod error;
pub mod hooks;
pub mod http;
pub mod invocation;
pub mod job;
pub mod kit;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod plugin;
pub mod resolve;
pub mod secrets;
pub mod sink;
pub mod source;
pub mod summary;
pub mod window;

pub use config::RunConfig;
pub use error::RunError;
pub use job::Job;
pub use pipeline::{run, run_with};
pub use summary::{RunSummary, TypeSummary};
