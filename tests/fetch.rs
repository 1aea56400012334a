//! The fetch API client against a local server that speaks the two-step protocol and
//! misbehaves on demand; Slack's Web API the same way.

use std::time::{Duration, Instant};

use batch_job_aurora::window::Window;
use serde_json::{Value, json};

use crate::support::{FETCH_KEY, FakePlatform, example_documents, plugin_folder, query, run};

const WINDOW: Window = Window {
    from: 1_763_990_000,
    to: 1_764_010_000,
};

/// Serves the bundled examples as the three types' windows.
pub async fn serve_examples(platform: &FakePlatform) {
    for (type_name, file) in [
        ("GithubType", "github.json"),
        ("SlackType", "slack.ndjson"),
        ("EventRatingType", "event_rating.json"),
    ] {
        platform
            .put(
                &format!("/control/documents/{type_name}"),
                &Value::Array(example_documents(file)),
            )
            .await;
    }
}

/// The plugins, a SQLite file and a config reading WINDOW from the platform with fast retries.
/// Keep the folders alive as long as the run.
fn run_setup(
    platform: &FakePlatform,
    plugins: &[&str],
) -> (
    tempfile::TempDir,
    tempfile::TempDir,
    std::path::PathBuf,
    batch_job_aurora::RunConfig,
) {
    let plugins = plugin_folder(plugins);
    let database = tempfile::tempdir().unwrap();
    let path = database.path().join("x.db");
    let mut config = platform.config(&path, plugins.path());
    config.run.windows = batch_job_aurora::window::WindowPlan::Fixed(WINDOW);
    (plugins, database, path, config)
}

fn count(summary: &batch_job_aurora::RunSummary, type_name: &str) -> (u64, u64, u64, u64) {
    let t = &summary.types[type_name];
    (t.inserted, t.duplicates, t.refused, t.failed)
}

fn presign_calls(requests: &[Value], type_name: &str) -> usize {
    requests
        .iter()
        .filter(|r| r["path"] == format!("/get_docs/{type_name}"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn bursts_of_5xx_and_429_are_retried_and_nothing_is_lost() {
    let platform = FakePlatform::start();
    serve_examples(&platform).await;
    platform
        .put(
            "/control/faults",
            &json!({"api_503": 2, "store_503": 1, "api_429": 1}),
        )
        .await;
    let (_plugins, _database, _path, config) = run_setup(&platform, &["github"]);
    let started = Instant::now();
    let summary = run(config).await;
    assert!(summary.completed(), "{summary:?}");
    assert_eq!(count(&summary, "GithubType"), (2, 0, 8, 0));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let requests = platform.requests().await;
    assert_eq!(presign_calls(&requests, "GithubType"), 4);
    // The window went out as asked, inclusive, with the key in its header.
    let first = requests
        .iter()
        .find(|r| r["path"] == "/get_docs/GithubType")
        .unwrap();
    assert_eq!(
        first["query"],
        "timestamp_from=1763990000&timestamp_to=1764010000"
    );
    assert_eq!(first["headers"]["x-api-key"], FETCH_KEY);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_fails_at_once_with_a_clear_error_and_no_secret() {
    let platform = FakePlatform::start();
    serve_examples(&platform).await;
    let (_plugins, _database, _path, mut config) = run_setup(&platform, &["github", "slack"]);
    config.run.source = batch_job_aurora::SourceSpec::Fetch {
        base_url: platform.fetch_url(),
        key: "wrong-key-secret".into(),
    };
    let summary = run(config).await;
    assert!(!summary.completed());
    let error = summary.types["GithubType"].error.clone().unwrap();
    assert!(error.contains("HTTP 403"), "{error}");
    assert!(error.contains("/get_docs/GithubType"), "{error}");
    assert!(!error.contains("wrong-key-secret"), "{error}");
    // No retries on a 4xx other than 429.
    assert_eq!(presign_calls(&platform.requests().await, "GithubType"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_presigned_url_is_asked_for_again_once() {
    let platform = FakePlatform::start();
    serve_examples(&platform).await;
    platform
        .put(
            "/control/faults",
            &json!({"expire": 1, "url_key": "all_docs_url"}),
        )
        .await;
    let (_plugins, _database, _path, config) = run_setup(&platform, &["github"]);
    let summary = run(config.clone()).await;
    assert!(summary.completed(), "{summary:?}");
    assert_eq!(count(&summary, "GithubType"), (2, 0, 8, 0));
    assert_eq!(presign_calls(&platform.requests().await, "GithubType"), 2);

    // Expired twice: the type fails, with the store's answer and no signature in the message.
    platform.put("/control/faults", &json!({"expire": 2})).await;
    let summary = run(config).await;
    let error = summary.types["GithubType"].error.clone().unwrap();
    assert!(
        error.contains("HTTP 403") && error.contains("Request has expired"),
        "{error}"
    );
    assert!(
        !error.contains("deadbeefsecret") && !error.contains("AKIASECRET"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_cut_off_mid_array_fails_that_type_and_keeps_what_came_before() {
    let platform = FakePlatform::start();
    serve_examples(&platform).await;
    platform
        .put(
            "/control/generate/GithubType",
            &json!({"count": 4000, "first_timestamp": 1_764_000_000, "data": {"head_commit": {"id": "c"}, "ref": "r"}}),
        )
        .await;
    platform
        .put("/control/faults", &json!({"cut_off": true}))
        .await;
    let (_plugins, _database, path, config) = run_setup(&platform, &["github", "event_rating"]);
    let summary = run(config).await;
    assert!(!summary.completed());
    let error = summary.types["GithubType"].error.clone().unwrap();
    assert!(
        error.contains("not valid JSON") || error.contains("reading documents"),
        "{error}"
    );
    let stored = summary.types["GithubType"].inserted;
    assert!(
        (1000..4000).contains(&stored),
        "documents before the cut stay stored: {stored}"
    );
    // Another type's window is cut too (the fault is global) but fails on its own.
    assert!(summary.types["EventRatingType"].error.is_some());
    let runs = query(
        &path,
        "SELECT type_name, status FROM batch_job_runs ORDER BY type_name",
    )
    .await;
    assert!(runs.iter().all(|run| run["status"] == "failed"), "{runs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_first_byte_is_waited_for_and_a_dead_one_times_out() {
    let platform = FakePlatform::start();
    serve_examples(&platform).await;
    // The store holds its first byte until the test lets it go: first until the download is
    // known to be waiting (a slow store, waited for), then for ever (a dead one).
    platform
        .put("/control/faults", &json!({"hold_first_byte": true}))
        .await;
    let (_plugins, _database, _path, mut config) = run_setup(&platform, &["event_rating"]);
    config.run.backends = Some(crate::support::example_backends());
    config.run.fetch.timeouts.read = Duration::from_secs(600);
    let job = tokio::spawn(batch_job_aurora::run(config.clone()));
    while !platform.requests().await.iter().any(|r| {
        r["path"]
            .as_str()
            .unwrap_or_default()
            .starts_with("/store/")
    }) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    platform.put("/control/release", &json!({})).await;
    let summary = job.await.unwrap().unwrap();
    assert!(summary.completed(), "{summary:?}");
    assert_eq!(count(&summary, "EventRatingType").0, 3);

    platform.put("/control/reset", &json!({})).await;
    serve_examples(&platform).await;
    platform
        .put("/control/faults", &json!({"hold_first_byte": true}))
        .await;
    config.run.fetch.timeouts.read = Duration::from_millis(300);
    let summary = run(config).await;
    let error = summary.types["EventRatingType"].error.clone().unwrap();
    assert!(error.contains("timed out"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn envelopes_are_checked_against_the_type_asked_for() {
    let platform = FakePlatform::start();
    let documents = json!([
        {"id": "ok1", "timestamp": 1_764_000_000, "data": {"head_commit": {"id": "a"}}},
        {"id": "other", "timestamp": 1_764_000_000, "type": "SlackType", "data": {}},
        {"timestamp": 1_764_000_000, "type": "GithubType", "data": {}},
        {"id": "ok2", "timestamp": 1_764_000_000, "type": "GithubType", "data": {"head_commit": {"id": "b"}}}
    ]);
    platform
        .put("/control/documents/GithubType", &documents)
        .await;
    let (_plugins, _database, path, config) = run_setup(&platform, &["github"]);
    let summary = run(config).await;
    assert!(summary.completed());
    assert_eq!(count(&summary, "GithubType"), (2, 0, 0, 2));
    let failed = query(
        &path,
        "SELECT type_name, error FROM batch_job_failed_documents ORDER BY rowid",
    )
    .await;
    assert!(failed.iter().all(|f| f["type_name"] == "GithubType"));
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("type is \"SlackType\""),
        "{failed:?}"
    );
    assert!(
        failed[1]["error"].as_str().unwrap().contains("missing id"),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_names_come_from_conversations_info_once_per_channel_with_429s_waited_out() {
    let platform = FakePlatform::start();
    serve_examples(&platform).await;
    platform
        .put("/control/faults", &json!({"slack_429": 1}))
        .await;
    let (_plugins, _database, path, mut config) = run_setup(&platform, &["slack"]);
    config.run.capabilities = batch_job_aurora::capability::CapabilitySpecs {
        slack_token: Some(crate::support::SLACK_TOKEN.into()),
        slack_api_url: Some(platform.slack_url()),
        ..Default::default()
    };
    let summary = run(config).await;
    assert!(summary.completed(), "{summary:?}");
    assert_eq!(count(&summary, "SlackType"), (5, 0, 0, 0));
    let names = query(&path, "SELECT channel_name FROM SlackType ORDER BY id").await;
    let names: Vec<&Value> = names.iter().map(|row| &row["channel_name"]).collect();
    assert_eq!(
        names,
        [
            &json!("general"),
            &Value::Null,
            &Value::Null,
            &Value::Null,
            &json!("general")
        ]
    );
    let lookups: Vec<Value> = platform
        .requests()
        .await
        .into_iter()
        .filter(|r| r["path"] == "/api/conversations.info")
        .collect();
    // C012AB3CD once (plus the 429), C0UNKNOWN once: cached for the run, ok:false included.
    assert_eq!(lookups.len(), 3, "{lookups:?}");
    for lookup in &lookups {
        assert_eq!(
            lookup["headers"]["authorization"],
            format!("Bearer {}", crate::support::SLACK_TOKEN)
        );
        assert!(
            !lookup["query"].as_str().unwrap().contains("xoxb"),
            "the token never goes in the query"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn all_three_types_over_http_enriched_from_slack_and_dynamodb_land_as_the_examples_do() {
    let platform = FakePlatform::start();
    serve_examples(&platform).await;
    let moto = crate::support::Moto::start();
    // 3,000 filler events make the table span more than one scan page.
    moto.seed("events", 3000);
    let plugins = plugin_folder(&["github", "slack", "event_rating"]);
    let database = tempfile::tempdir().unwrap();
    let path = database.path().join("http.db");
    let output = std::process::Command::new(crate::cli::binary())
        .args([
            "run",
            "--json",
            "--from",
            &WINDOW.from.to_string(),
            "--to",
            &WINDOW.to.to_string(),
        ])
        .args(["--database", &format!("sqlite://{}", path.display())])
        .arg("--plugins")
        .arg(plugins.path())
        .env("DATAPLATTFORM_AURORA_FETCH_API_URL", platform.fetch_url())
        .env("DATAPLATTFORM_AURORA_FETCH_KEY", FETCH_KEY)
        .env(
            "DATAPLATTFORM_AURORA_SLACK_TOKEN",
            crate::support::SLACK_TOKEN,
        )
        .env("DATAPLATTFORM_AURORA_SLACK_API_URL", platform.slack_url())
        .env("DATAPLATTFORM_EVENT_CODE_TABLE", "events")
        .envs(moto.env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stderr.contains(FETCH_KEY) && !stderr.contains("deadbeefsecret"),
        "{stderr}"
    );
    let mut summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    summary.as_object_mut().unwrap().remove("stages");
    assert_eq!(
        summary,
        json!({"inserted": 10, "duplicates": 0, "refused": 10, "failed": 0, "types": {
            "EventRatingType": {"inserted": 3, "duplicates": 0, "refused": 2, "failed": 0},
            "GithubType": {"inserted": 2, "duplicates": 0, "refused": 8, "failed": 0},
            "SlackType": {"inserted": 5, "duplicates": 0, "refused": 0, "failed": 0}}})
    );
    // The same rows as the offline examples give (tests/data/examples.golden.json).
    let mut tables = serde_json::Map::new();
    for table in ["GithubType", "SlackType", "EventRatingType"] {
        let rows = query(&path, &format!("SELECT * FROM {table} ORDER BY id")).await;
        tables.insert(
            table.into(),
            Value::Array(rows.into_iter().map(Value::Object).collect()),
        );
    }
    crate::support::check_goldens(&crate::support::example_goldens(&tables));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slack_timeout_is_an_error_value_that_fails_the_document_not_a_trap() {
    use batch_job_aurora::capability::{Backends, SlackWebApi};
    let platform = FakePlatform::start();
    serve_examples(&platform).await;
    platform
        .put("/control/faults", &json!({"slack_slow": 2}))
        .await;
    let (_plugins, _database, path, mut config) = run_setup(&platform, &["slack"]);
    let slack = SlackWebApi::new(
        &platform.slack_url(),
        crate::support::SLACK_TOKEN,
        tokio::runtime::Handle::current(),
    )
    .unwrap()
    .with_retries(
        backon::ExponentialBuilder::default().with_max_times(1),
        Duration::from_millis(300),
    );
    config.run.backends = Some(Backends {
        slack: Some(std::sync::Arc::new(slack)),
        ..Default::default()
    });
    let summary = run(config).await;
    assert!(summary.completed(), "{summary:?}");
    let slack = &summary.types["SlackType"];
    // Three events name a channel and fail (kept); the two without one are stored.
    assert_eq!((slack.inserted, slack.failed), (2, 3), "{slack:?}");
    assert!(
        slack
            .notes
            .iter()
            .any(|note| note.contains("slack-channels failed")),
        "{slack:?}"
    );
    let failed = query(&path, "SELECT stage, error FROM batch_job_failed_documents").await;
    for failure in &failed {
        assert_eq!(failure["stage"], "plugin", "{failure:?}");
        let error = failure["error"].as_str().unwrap();
        assert!(
            error.contains("timed out") && !error.contains(crate::support::SLACK_TOKEN),
            "{error}"
        );
    }
}
