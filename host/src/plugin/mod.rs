//! Plugins: the engine and loading a folder of components (`load`), the sandbox around an
//! instance (`sandbox`), and calling `transform` (`worker`). Only `bindings` names a generated
//! WIT type.
//!
//! Every call runs under a time budget (epoch interruption, not counting time spent in host
//! lookups) and a memory cap. A trap fails only the documents it hit: the instance is thrown
//! away (a trapped instance cannot be entered again) and the batch's other documents are
//! retried one by one on a fresh instance.

mod bindings;
mod load;
mod sandbox;
mod worker;

pub use load::{LoadError, LoadedPlugin, PluginEngine, PluginSet, engine_config};
pub use sandbox::SandboxLimits;
pub use worker::{DocumentResult, TransformWorker};
