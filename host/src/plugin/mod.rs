//! Plugins: the engine and loading a folder of components (`load`), the trust rule of the
//! native code it loads (`native`), the sandbox around an instance (`sandbox`), and calling
//! `transform` (`worker`). Only `bindings` names a generated WIT type.
//!
//! Every call runs under a time budget (epoch interruption, not counting time spent in host
//! lookups), the run's deadline (a call in progress is interrupted there, and its documents are
//! left for the next run) and a memory cap. A trap fails only the documents it hit: the instance is thrown
//! away (a trapped instance cannot be entered again) and the batch's other documents are
//! retried one by one on a fresh instance.

mod bindings;
mod load;
mod native;
mod sandbox;
mod state;
mod worker;

pub use load::{LoadError, LoadedPlugin, PluginEngine, PluginSet, engine_config};
pub use sandbox::SandboxLimits;
pub use worker::{DocumentResult, TransformWorker};
