//! One scheduled invocation, as the old Lambda took it: its event, its response, and a config
//! built from the environment afresh each time (the old code computed its window once, when the
//! module loaded, so a warm container kept fetching a stale window).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{CatchUp, ConfigError, RunConfig, Window, WindowPlan, from_env};
use crate::source::{SourceError, SourceSpec};
use crate::summary::RunSummary;

/// The event (every key optional). Other keys, such as an EventBridge schedule's, are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct InvocationEvent {
    pub types: Option<Vec<String>>,
    pub timestamp_from: Option<i64>,
    pub timestamp_to: Option<i64>,
    /// Gap-free windows for this invocation; `BATCH_JOB_AURORA_CATCH_UP=true` sets it for all.
    pub catch_up: Option<bool>,
}

/// `{"statusCode": 200, "body": "N records inserted into Aurora. M duplicates skipped. E errors."}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvocationResponse {
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    pub body: String,
}

impl From<&RunSummary> for InvocationResponse {
    fn from(summary: &RunSummary) -> Self {
        InvocationResponse {
            status_code: 200,
            body: summary.lambda_body(),
        }
    }
}

/// Why an invocation could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("DATAPLATTFORM_AURORA_FETCH_API_URL is not set")]
    NoSource,
    #[error("DATAPLATTFORM_AURORA_HOST is not set: no database")]
    NoDatabase,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// The run config of one invocation, from the event and the environment (`var`), at `now`.
pub async fn invocation_config(
    event: &InvocationEvent,
    var: impl Fn(&str) -> Option<String>,
    now: i64,
) -> Result<RunConfig, InvocationError> {
    let environment = from_env(var)?;
    let base_url = environment.fetch_api_url.ok_or(InvocationError::NoSource)?;
    let source = SourceSpec::parse(&base_url, environment.fetch_key.as_deref())?;
    let database = environment
        .database_url
        .ok_or(InvocationError::NoDatabase)?;
    let plugins = environment.plugins_dir.unwrap_or_else(default_plugins_dir);
    let mut config = RunConfig::new(source, database, plugins);
    config.types = event.types.clone();
    let catch_up = event.catch_up.unwrap_or(environment.catch_up);
    config.windows = if event.timestamp_from.is_some() || event.timestamp_to.is_some() {
        let default = Window::last_70_minutes(now);
        WindowPlan::Fixed(Window {
            from: event.timestamp_from.unwrap_or(default.from),
            to: event.timestamp_to.unwrap_or(default.to),
        })
    } else if catch_up {
        WindowPlan::CatchUp(CatchUp::at(now))
    } else {
        // The contract's default, a scheduled window: the run takes the last 70 minutes.
        WindowPlan::Scheduled { now }
    };
    config.capabilities = environment.capabilities;
    Ok(config)
}

/// The plugins of a Lambda: a layer's `/opt/plugins`, else `plugins/` beside the executable.
fn default_plugins_dir() -> PathBuf {
    let layer = PathBuf::from("/opt/plugins");
    if layer.is_dir() {
        return layer;
    }
    std::env::current_exe()
        .map(|exe| exe.with_file_name("plugins"))
        .unwrap_or_else(|_| PathBuf::from("plugins"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        let value = match name {
            "DATAPLATTFORM_AURORA_FETCH_API_URL" => "https://api.example/get_docs/",
            "DATAPLATTFORM_AURORA_FETCH_KEY" => "k",
            "DATAPLATTFORM_AURORA_HOST" => "db",
            "DATAPLATTFORM_AURORA_DB_NAME" => "raw",
            "DATAPLATTFORM_AURORA_USER" => "job",
            _ => return None,
        };
        Some(value.to_owned())
    }

    #[tokio::test]
    async fn the_default_window_is_computed_at_each_invocation() {
        let event = InvocationEvent::default();
        let first = invocation_config(&event, env, 10_000).await.unwrap();
        let later = invocation_config(&event, env, 13_600).await.unwrap();
        // No window of its own: the run takes the last 70 minutes before the invocation's now,
        // and logs it as scheduled.
        assert_eq!(first.windows, WindowPlan::Scheduled { now: 10_000 });
        assert_eq!(later.windows, WindowPlan::Scheduled { now: 13_600 });
        assert_eq!(first.database_url, "mysql://job:@db:3306/raw");
    }

    #[tokio::test]
    async fn the_event_picks_types_and_window() {
        let event: InvocationEvent = serde_json::from_str(
            r#"{"types": ["GithubType"], "timestamp_from": 0, "timestamp_to": 100000000000, "source": "aws.events"}"#,
        )
        .unwrap();
        let config = invocation_config(&event, env, 5).await.unwrap();
        assert_eq!(config.types, Some(vec!["GithubType".to_owned()]));
        assert_eq!(
            config.windows,
            WindowPlan::Fixed(Window {
                from: 0,
                to: 100_000_000_000
            })
        );
        let catch_up = InvocationEvent {
            catch_up: Some(true),
            ..Default::default()
        };
        let config = invocation_config(&catch_up, env, 5).await.unwrap();
        assert_eq!(config.windows, WindowPlan::CatchUp(CatchUp::at(5)));
    }

    #[test]
    fn the_response_is_the_old_one() {
        let summary = RunSummary {
            inserted: 3,
            duplicates: 2,
            failed: 1,
            ..Default::default()
        };
        let response = serde_json::to_value(InvocationResponse::from(&summary)).unwrap();
        assert_eq!(
            response,
            serde_json::json!({"statusCode": 200, "body": "3 records inserted into Aurora. 2 duplicates skipped. 1 errors."})
        );
    }
}
