//! A job prepared once and run many times: the engine is built and the plugins are loaded
//! when the job is prepared (a Lambda container's init), and the database pool is opened at
//! the first run and kept, checked before each run, for the next ones.
//!
//! ```no_run
//! # async fn example(config: batch_job_aurora::RunConfig) -> Result<(), batch_job_aurora::RunError> {
//! use batch_job_aurora::Job;
//! let job = Job::prepare_from(&config.plugins)?;
//! let hooks = batch_job_aurora::hooks::RunHooks::default();
//! let summary = job.run(config.run.clone(), hooks.clone()).await?; // opens the database
//! let again = job.run(config.run, hooks).await?; // reuses the engine, plugins and pool
//! job.close().await;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{PluginSetup, RunConfig, RunSettings};
use crate::error::RunError;
use crate::hooks::RunHooks;
use crate::pipeline;
use crate::plugin::{PluginEngine, PluginSet, SandboxLimits};
use crate::sink::Sink;
use crate::summary::RunSummary;

/// Runs the job once: every selected type's documents from the source, through its plugin,
/// into the database. Documents that fail are counted and kept; the run goes on.
///
/// Loads the plugins and opens the database for this one run; a process that runs many times
/// prepares a [`Job`] once instead.
pub async fn run(config: RunConfig) -> Result<RunSummary, RunError> {
    run_with(config, RunHooks::default()).await
}

/// [`run`], with `hooks` that watch and steer it while it goes (a progress display, a signal).
pub async fn run_with(config: RunConfig, hooks: RunHooks) -> Result<RunSummary, RunError> {
    let job = Job::prepare_from(&config.plugins)?;
    let summary = job.run(config.run, hooks).await;
    if let Err(RunError::Interrupted(_)) = &summary {
        // The abandoned run's tasks may still hold connections that never come back; the
        // process is on its way out, so the pool is not waited for long.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), job.close()).await;
    } else {
        job.close().await;
    }
    summary
}

/// The engine and the loaded plugins, plus the database pool once a run opened it.
#[derive(Debug)]
pub struct Job {
    plugins_dir: PathBuf,
    engine: PluginEngine,
    plugins: PluginSet,
    /// The open database and the URL it was opened with.
    sink: tokio::sync::Mutex<Option<(String, Arc<Sink>)>>,
}

impl Job {
    /// Builds the engine and loads every plugin of `plugins_dir` (precompiled `.cwasm` where
    /// it matches the engine, else `.wasm`). Touches no database and no network. A folder
    /// without plugins is an error: nothing could be stored.
    pub fn prepare(plugins_dir: &Path, limits: SandboxLimits) -> Result<Job, RunError> {
        Self::prepare_with_cache(plugins_dir, limits, None)
    }

    /// [`Job::prepare`], keeping what is compiled from `.wasm` plugins in `compile_cache` so
    /// that the next start loads it instead of compiling again.
    pub fn prepare_with_cache(
        plugins_dir: &Path,
        limits: SandboxLimits,
        compile_cache: Option<PathBuf>,
    ) -> Result<Job, RunError> {
        let engine = PluginEngine::new(limits)?.with_compile_cache(compile_cache);
        Self::prepare_in(engine, plugins_dir)
    }

    fn prepare_in(engine: PluginEngine, plugins_dir: &Path) -> Result<Job, RunError> {
        let plugins = engine.load_folder(plugins_dir)?;
        pipeline::select(&plugins, plugins_dir, None)?;
        Ok(Job {
            plugins_dir: plugins_dir.to_owned(),
            engine,
            plugins,
            sink: tokio::sync::Mutex::new(None),
        })
    }

    /// [`Job::prepare_with_cache`] with a config's plugin setup.
    pub fn prepare_from(setup: &PluginSetup) -> Result<Job, RunError> {
        let engine = PluginEngine::new(setup.limits.clone())?
            .with_compile_cache(setup.compile_cache.clone())
            .with_projection(setup.projection);
        Self::prepare_in(engine, &setup.dir)
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> &PluginSet {
        &self.plugins
    }

    /// Fails unless every requested type has a plugin; cheap, so it runs before any work.
    pub fn ensure_types_served(&self, types: Option<&[String]>) -> Result<(), RunError> {
        pipeline::select(&self.plugins, &self.plugins_dir, types).map(drop)
    }

    /// Runs once: the requested types are checked first, then the database is opened (or
    /// the open one checked), then the pipeline runs with the job's plugins and sandbox.
    /// `hooks` watch and steer the run while it goes.
    pub async fn run(
        &self,
        settings: RunSettings,
        hooks: RunHooks,
    ) -> Result<RunSummary, RunError> {
        self.ensure_types_served(settings.types.as_deref())?;
        let sink = self.sink(&settings.database_url, settings.deadline).await?;
        let prepared = pipeline::Prepared {
            engine: &self.engine,
            plugins: &self.plugins,
            plugins_dir: &self.plugins_dir,
        };
        pipeline::run_prepared(settings, hooks, prepared, sink).await
    }

    /// The database for `url`: the open one when it still answers, else a new one. A database
    /// that is down fails here, at the run, not when the job was prepared.
    /// The deadline bounds every wait of the database's, this run's (`None`: no deadline).
    async fn sink(
        &self,
        url: &str,
        deadline: Option<std::time::Instant>,
    ) -> Result<Arc<Sink>, RunError> {
        let mut open = self.sink.lock().await;
        if let Some((open_url, sink)) = open.as_ref()
            && open_url == url
        {
            sink.set_deadline(deadline);
            match sink.health_check().await {
                Ok(()) => return Ok(Arc::clone(sink)),
                Err(error) => {
                    tracing::warn!("the open database does not answer ({error}); reconnecting")
                }
            }
        }
        if let Some((_, old)) = open.take() {
            old.close().await;
        }
        let sink = Arc::new(Sink::connect_until(url, deadline).await?);
        *open = Some((url.to_owned(), Arc::clone(&sink)));
        Ok(sink)
    }

    /// Closes the database pool, if one is open. The job can still run: it opens a new one.
    pub async fn close(&self) {
        if let Some((_, sink)) = self.sink.lock().await.take() {
            sink.close().await;
        }
    }
}
