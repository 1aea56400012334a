//! The Lambda's path: the old event and environment in, the old response out, into MariaDB
//! (standing in for Aurora MySQL) from the fake platform.

use batch_job_aurora::invocation::{InvocationEvent, InvocationResponse, invocation_config};

use crate::support::{
    Engine, FETCH_KEY, FakePlatform, SLACK_TOKEN, TestDatabase, plugin_folder, workspace_root,
};

#[tokio::test(flavor = "multi_thread")]
async fn the_old_event_and_environment_give_the_old_response_and_tables() {
    let platform = FakePlatform::start();
    crate::fetch::serve_examples(&platform).await;
    let database = TestDatabase::new(Engine::Mysql, "lambda").await;
    let plugins = plugin_folder(&["github", "slack", "event_rating"]);
    let event_codes = format!(
        "file:{}",
        workspace_root()
            .join("examples/lookups/event-codes.json")
            .display()
    );
    let (fetch_url, slack_url) = (platform.fetch_url(), platform.slack_url());
    let plugins_dir = plugins.path().display().to_string();
    let env = |name: &str| -> Option<String> {
        Some(match name {
            "DATAPLATTFORM_AURORA_FETCH_API_URL" => fetch_url.clone(),
            "DATAPLATTFORM_AURORA_FETCH_KEY" => FETCH_KEY.into(),
            "DATAPLATTFORM_AURORA_HOST" => "127.0.0.1".into(),
            "DATAPLATTFORM_AURORA_PORT" => "3306".into(),
            "DATAPLATTFORM_AURORA_DB_NAME" => database.name.clone(),
            "DATAPLATTFORM_AURORA_USER" => "root".into(),
            "DATAPLATTFORM_AURORA_PASSWORD" => String::new(),
            "DATAPLATTFORM_AURORA_SLACK_TOKEN" => SLACK_TOKEN.into(),
            "DATAPLATTFORM_AURORA_SLACK_API_URL" => slack_url.clone(),
            "DATAPLATTFORM_EVENT_CODE_TABLE" => event_codes.clone(),
            "BATCH_JOB_AURORA_PLUGINS" => plugins_dir.clone(),
            _ => return None,
        })
    };
    let event: InvocationEvent = serde_json::from_str(
        r#"{"types": ["GithubType", "SlackType", "EventRatingType"], "timestamp_from": 0, "timestamp_to": 100000000000}"#,
    )
    .unwrap();
    let config = invocation_config(&event, env, 1_764_003_600).await.unwrap();
    let summary = batch_job_aurora::run(config).await.unwrap();
    assert_eq!(
        InvocationResponse::from(&summary),
        InvocationResponse {
            status_code: 200,
            body: "10 records inserted into Aurora. 0 duplicates skipped. 0 errors.".into()
        }
    );
    assert_eq!(
        database
            .count_rows("SlackType", "channel_name = 'general'")
            .await,
        2
    );
    assert_eq!(
        database
            .count_rows("EventRatingType", "event_name IS NOT NULL")
            .await,
        3
    );
    // The hourly default: the last 70 minutes before "now" hold every example document.
    let hourly = invocation_config(&InvocationEvent::default(), env, 1_764_003_600)
        .await
        .unwrap();
    let summary = batch_job_aurora::run(hourly).await.unwrap();
    assert_eq!(
        InvocationResponse::from(&summary).body,
        "0 records inserted into Aurora. 10 duplicates skipped. 0 errors."
    );
}
