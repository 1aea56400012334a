//! Before anything is read: which plugins run, from which source, in which windows, into
//! which tables.

use std::path::Path;
use std::sync::Arc;

use super::budget::ByteBudget;
use crate::config::RunSettings;
use crate::error::RunError;
use crate::plugin::{LoadedPlugin, PluginSet};
use crate::sink::{RUN_MARGIN_SECS, RUN_WITHOUT_DEADLINE_SECS, RunStart, Sink, TableSpec};
use crate::source::{self, FetchApi, SourceSpec};
use crate::summary::RunSummary;
use crate::window::{Window, WindowPlan, WindowRequest, unix_now};

/// One type's way through the run: its table, its plugin and its window.
#[derive(Debug)]
pub struct LanePlan {
    /// The lane's place in the run, which the writer keys its tables by.
    pub index: usize,
    pub table: TableSpec,
    pub plugin: Arc<LoadedPlugin>,
    /// Documents outside it are skipped; `None` takes every document.
    pub window: Option<Window>,
    /// This scheduled window failed so often before that, should its body be unreadable
    /// again, it is given up (its unread bytes kept) so that catch-up moves on.
    pub last_attempt: bool,
    /// The lane's bytes in flight, shared by the router (which takes them) and the writer
    /// (which writes at once while the router waits for them).
    pub budget: Arc<ByteBudget>,
}

/// A source, checked and ready to read.
pub enum OpenedSource {
    Files(Vec<std::path::PathBuf>),
    Fetch(FetchApi),
    /// A replay's dead letters, read from the database when the run starts.
    DeadLetters(Arc<Vec<crate::sink::replay::DeadLetter>>),
}

/// The plugins to run: the requested types, or every installed one. No plugin at all is an
/// error: a run that could not store anything must not look like one that had nothing to do.
pub fn select(
    plugins: &PluginSet,
    folder: &Path,
    types: Option<&[String]>,
) -> Result<Vec<Arc<LoadedPlugin>>, RunError> {
    if plugins.iter().next().is_none() {
        return Err(RunError::NoPlugins {
            folder: folder.to_owned(),
        });
    }
    let Some(types) = types else {
        return Ok(plugins.iter().cloned().collect());
    };
    let mut seen = std::collections::HashSet::new();
    types
        .iter()
        .filter(|type_name| seen.insert(type_name.as_str()))
        .map(|type_name| {
            plugins
                .get(type_name)
                .cloned()
                .ok_or_else(|| RunError::NoPluginForType {
                    type_name: type_name.clone(),
                    installed: plugins.type_names().collect::<Vec<_>>().join(", "),
                })
        })
        .collect()
}

pub fn open_source(config: &RunSettings) -> Result<OpenedSource, RunError> {
    Ok(match &config.source {
        SourceSpec::Files(path) => OpenedSource::Files(source::files(path)?),
        SourceSpec::Fetch { base_url, key } => OpenedSource::Fetch(
            FetchApi::new(base_url, key.clone(), config.fetch.timeouts.clone())?
                .with_backoff(config.fetch.backoff)
                .with_max_wait(config.fetch.max_wait)
                .with_retry_budget(config.fetch.retry_budget),
        ),
        SourceSpec::DeadLetters(_) => OpenedSource::DeadLetters(Arc::default()),
    })
}

/// The run's window plan: the fetch API always reads a window, by default the contract's last
/// 70 minutes, computed now (a warm Lambda must not keep a stale window).
pub fn window_plan(config: &RunSettings, source: &OpenedSource) -> WindowPlan {
    match (config.windows, source) {
        (WindowPlan::All, OpenedSource::Fetch(_)) => {
            WindowPlan::resolve(&WindowRequest::default(), true, unix_now())
        }
        (plan, _) => plan,
    }
}

/// Prepares every table before anything is read, and logs each type's run as started. A table
/// that does not fit its plugin stops that type alone, and nothing is written for it. Rows
/// left `running` by a process that died are taken as interrupted first.
pub async fn lanes(
    sink: &Sink,
    plugins: Vec<Arc<LoadedPlugin>>,
    plan: WindowPlan,
    config: &RunSettings,
    summary: &mut RunSummary,
) -> Result<Vec<LanePlan>, RunError> {
    let now = plan.now();
    let expired = sink.expire_running(now).await?;
    if expired > 0 {
        tracing::warn!(
            "{expired} run log rows were still running after the longest a run can last: taken as interrupted"
        );
    }
    let expires_at = now
        + config
            .deadline
            .map_or(RUN_WITHOUT_DEADLINE_SECS, |deadline| {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                i64::try_from(left.as_secs()).unwrap_or(i64::MAX / 4)
            })
        + RUN_MARGIN_SECS;
    let mut lanes = Vec::new();
    for plugin in plugins {
        let type_name = plugin.info.type_name.clone();
        let table = TableSpec::new(&type_name, &plugin.info.columns)?;
        match sink.prepare(&table).await {
            Ok(report) => {
                for change in report.changes {
                    tracing::info!(table = %type_name, "schema: {change:?}");
                }
                summary.type_mut(&type_name).notes.extend(report.notes);
            }
            Err(error) if error.is_table_misfit() => {
                tracing::error!("{error}");
                summary.type_mut(&type_name).error = Some(error.to_string());
                continue;
            }
            Err(error) => return Err(error.into()),
        }
        let window = match plan {
            WindowPlan::CatchUp(catch_up) => {
                Some(catch_up.window(sink.watermark(&type_name).await?))
            }
            WindowPlan::Backfill(shard) => {
                let loaded = crate::sink::loaded_spans(&sink.logged_windows(&type_name).await?);
                match shard.unloaded(&loaded) {
                    Some(window) => Some(window),
                    None => {
                        // Loaded already: skipped without fetching, and nothing logged.
                        tracing::info!(type_name, "the shard is loaded already: skipped");
                        if summary
                            .types
                            .get(&type_name)
                            .is_some_and(|t| *t == Default::default())
                        {
                            summary.types.remove(&type_name);
                        }
                        summary.already_loaded.insert(type_name);
                        continue;
                    }
                }
            }
            plan => plan.common_window(),
        };
        let last_attempt = match (plan, window) {
            (WindowPlan::CatchUp(_), Some(window)) => {
                sink.failed_attempts(&type_name, window.from).await? + 1
                    >= config.max_window_attempts
            }
            _ => false,
        };
        sink.run_started(RunStart {
            run_id: &summary.run_id,
            type_name: &type_name,
            window,
            scheduled: plan.is_scheduled(),
            started_at: now,
            expires_at,
            plugin_version: Some(&plugin.info.version),
            plugin_sha256: plugin.sha256.as_deref(),
        })
        .await?;
        summary.type_mut(&type_name);
        lanes.push(LanePlan {
            index: lanes.len(),
            table,
            plugin,
            window,
            last_attempt,
            budget: ByteBudget::new(config.lane_bytes),
        });
    }
    Ok(lanes)
}
