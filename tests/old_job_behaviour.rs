//! The old job's behaviour where running its own code side by side found ours different
//! (issue 15), and the inputs the runtime or the summary could not take: each through the real
//! wasm plugins, the real pipeline or the real `bootstrap`.

use std::sync::Arc;

use batch_job_aurora::capability::{
    Backends, ChannelMapFile, EVENT_CODES_KEY, EVENT_CODES_TABLE, ReferenceFile, ReferenceTable,
};
use serde_json::{Value, json};

use crate::lambda::{Bootstrap, RuntimeApi, body, error, lambda_env, lambda_plugins};
use crate::support::{
    Engine, FakePlatform, TestDatabase, config_for, ok_documents, plugin_folder, run,
};

const T0: i64 = 1_764_000_000;

/// `depth` arrays around `inner`: deeper than serde_json's default limit of 128.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Writes documents given as JSON text (which a `serde_json::Value` could not always hold:
/// lone surrogates, `1e400`, repeated keys) as an NDJSON file of a fresh folder.
fn ndjson_text(lines: &[String]) -> (tempfile::TempDir, std::path::PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("documents.ndjson");
    std::fs::write(&path, lines.join("\n")).unwrap();
    (folder, path)
}

/// Queues a Runtime API invocation whose body is `text` as is, and waits for its result.
async fn invoke_raw(runtime: &RuntimeApi, text: &str) -> Value {
    let client = reqwest::Client::new();
    let before = runtime.wait(0).await.len();
    let queued: Value = client
        .put(format!("http://{}/control/enqueue", runtime.address()))
        .json(&json!({"raw_event": text}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let result = runtime.wait(before + 1).await.pop().unwrap();
    assert_eq!(result["request_id"], queued["request_id"]);
    result
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_the_runtime_cannot_read_is_an_invalid_event_and_counted_incomplete() {
    let platform = FakePlatform::start();
    let database = TestDatabase::new(Engine::Mysql, "unreadable_event").await;
    let plugins = lambda_plugins();
    let runtime = RuntimeApi::start();
    let lambda = Bootstrap::start(
        &runtime,
        &lambda_env(&platform, &database, plugins.path(), 3306),
    );

    // Too deep for serde_json's recursion limit: lambda_runtime answered with its own type
    // name (`&lambda_runtime::deserializer::DeserializeError`) and no metric.
    let deep = invoke_raw(&runtime, &nested(600, "1")).await;
    let (kind, message) = error(&deep);
    assert_eq!(kind, "InvalidEvent");
    assert!(
        message.starts_with("expected a JSON object (or null), got [[[["),
        "{message}"
    );
    let deep_types = invoke_raw(
        &runtime,
        &format!(r#"{{"types": {}}}"#, nested(600, r#""GithubType""#)),
    )
    .await;
    let (kind, message) = error(&deep_types);
    assert_eq!(kind, "InvalidEvent");
    assert!(message.starts_with("types: cannot be read"), "{message}");
    let not_json = invoke_raw(&runtime, "{\"types\": [\"GithubType\"").await;
    let (kind, message) = error(&not_json);
    assert_eq!(kind, "InvalidEvent");
    assert!(message.starts_with("the event is not JSON: "), "{message}");
    // A key the job does not read may nest as deep as it likes.
    let deep_detail = invoke_raw(
        &runtime,
        &format!(
            r#"{{"detail": {}, "types": ["GithubType"], "timestamp_from": 0, "timestamp_to": 1}}"#,
            nested(600, "{}")
        ),
    )
    .await;
    assert_eq!(
        body(&deep_detail),
        "0 records inserted into Aurora. 0 duplicates skipped. 0 errors."
    );

    // Every failed invocation is an error in the log and an IncompleteRun of 1.
    let errors: Vec<Value> = lambda
        .logs()
        .into_iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|line| line["error_type"] == "InvalidEvent")
    );
    let incomplete: Vec<i64> = lambda
        .metrics()
        .iter()
        .filter(|line| line.get("Type").is_none())
        .map(|line| line["IncompleteRun"].as_i64().unwrap())
        .collect();
    assert_eq!(incomplete, [1, 1, 1, 0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_envelopes_of_unselected_types_are_one_skipped_figure_and_the_rest_are_kept() {
    let plugins = plugin_folder(&["misbehaving"]);
    let mut documents: Vec<String> = ok_documents("kept", 5, T0, 1)
        .iter()
        .map(Value::to_string)
        .collect();
    // Broken envelopes (the timestamp is text) claiming 200,000 distinct types not selected.
    documents.extend((0..200_000).map(|i| {
        json!({"id": format!("o{i}"), "timestamp": "never", "type": format!("Other{i}Type"), "data": {}})
            .to_string()
    }));
    // A broken envelope of the selected type, and one that says no type: failed and kept.
    documents.push(
        json!({"id": "mine", "timestamp": "never", "type": "MisbehavingType", "data": {}})
            .to_string(),
    );
    documents.push(json!({"id": "nobody", "timestamp": T0, "data": {}}).to_string());
    let (_folder, source) = ndjson_text(&documents);
    let database = TestDatabase::new(Engine::Sqlite, "unselected_broken").await;
    let mut config = config_for(&source, &database, plugins.path());
    config.run.types = Some(vec!["MisbehavingType".into()]);
    let summary = run(config).await;
    assert_eq!(
        (summary.inserted, summary.failed, summary.skipped),
        (5, 2, 200_000),
        "{} types in the summary",
        summary.types.len()
    );
    assert_eq!(
        summary.types.keys().collect::<Vec<_>>(),
        ["MisbehavingType", "unknown"]
    );
    let json = serde_json::to_string(&summary).unwrap();
    assert!(json.len() < 600, "{json}");
    assert_eq!(
        database
            .strings("SELECT document_id FROM batch_job_failed_documents ORDER BY document_id")
            .await,
        ["mine", "nobody"]
    );
}

/// The backends of the bent-document test: one Slack channel, and an event whose name is a
/// number in the event-code table.
fn lookups(folder: &std::path::Path) -> Backends {
    let channels = folder.join("slack-channels.json");
    std::fs::write(&channels, r#"{"C1": "general"}"#).unwrap();
    let events = folder.join("event-codes.json");
    std::fs::write(
        &events,
        json!([{"event_id": "e5", "event_code": "303030", "event_name": 5,
                "code_valid_from": T0 - 10, "code_valid_to": T0 + 1000}])
        .to_string(),
    )
    .unwrap();
    Backends {
        slack: Some(Arc::new(ChannelMapFile::load(&channels).unwrap())),
        references: [(
            EVENT_CODES_TABLE.to_owned(),
            Arc::new(ReferenceFile::load(&events, EVENT_CODES_KEY).unwrap())
                as Arc<dyn ReferenceTable>,
        )]
        .into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_three_plugins_store_what_the_old_job_stored_from_bent_documents() {
    let deep = nested(600, "{}");
    // Members no plugin reads: a lone surrogate, a number past f64, nesting past 128.
    let unread = [r#""\ud800""#, "1e400", deep.as_str()];
    let mut documents = Vec::new();
    for (n, bent) in unread.iter().enumerate() {
        documents.push(format!(
            r#"{{"id":"g{n}","timestamp":{T0},"type":"GithubType","data":{{"bent":{bent},
                "head_commit":{{"id":"c{n}","added":{bent}}},
                "repository":{{"full_name":"o/r","stargazers_count":-0,"owner":{bent}}}}}}}"#
        ));
        documents.push(format!(
            r#"{{"id":"s{n}","timestamp":{T0},"type":"SlackType","data":{{"authed_users":{bent},
                "team_id":"T1","event_time":-0,"event":{{"type":"message","channel":"C1","blocks":{bent}}}}}}}"#
        ));
        documents.push(format!(
            r#"{{"id":"r{n}","timestamp":{T0},"type":"EventRatingType","data":{{"button":-0,
                "event_code":"303030","extra":{bent}}}}}"#
        ));
    }
    // A repeated key in `data` keeps its last value, with a bent member beside it.
    documents.push(format!(
        r#"{{"id":"g3","timestamp":{T0},"type":"GithubType","data":{{"head_commit":{{"id":"x"}},
            "bent":"\ud800","head_commit":{{"id":"c3"}},"repository":{{"stargazers_count":-0}}}}}}"#
    ));
    documents.push(format!(
        r#"{{"id":"s3","timestamp":{T0},"type":"SlackType","data":{{"team_id":"T0","bent":1e400,
            "team_id":"T1","event_time":-0,"event":{{"type":"message","channel":"C1"}}}}}}"#
    ));
    documents.push(format!(
        r#"{{"id":"r3","timestamp":{T0},"type":"EventRatingType","data":{{"button":-0,
            "bent":{deep},"event_code":"000","event_code":"303030"}}}}"#
    ));
    // A repeated envelope key keeps its last value, as Python's `json` does.
    documents.push(format!(
        r#"{{"id":"wrong","timestamp":"x","type":"GithubType","id":"again","timestamp":{T0},
            "data":{{"head_commit":{{"id":"c9"}}}}}}"#
    ));
    let documents: Vec<String> = documents
        .iter()
        .map(|document| document.replace('\n', " "))
        .collect();
    let (folder, source) = ndjson_text(&documents);
    let plugins = plugin_folder(&["github", "slack", "event_rating"]);
    let database = TestDatabase::new(Engine::Sqlite, "bent_documents").await;
    let mut config = config_for(&source, &database, plugins.path());
    config.run.backends = Some(lookups(folder.path()));
    let summary = run(config).await;
    assert_eq!(
        (summary.inserted, summary.refused, summary.failed),
        (13, 0, 0),
        "{:?}",
        summary.types
    );
    assert_eq!(
        database
            .strings(
            "SELECT id || ' ' || commit_id || ' ' || COALESCE(CAST(stargazers_count AS TEXT), 'NULL') \
             FROM GithubType ORDER BY id"
        )
        .await,
        ["again c9 NULL", "g0 c0 0", "g1 c1 0", "g2 c2 0", "g3 c3 0"]
    );
    assert_eq!(
        database
            .strings(
            "SELECT id || ' ' || COALESCE(CAST(slack_timestamp AS TEXT), 'NULL') || ' ' || channel_name \
             FROM SlackType ORDER BY id"
        )
        .await,
        ["s0 0 general", "s1 0 general", "s2 0 general", "s3 0 general"]
    );
    assert_eq!(
        database
            .strings(
                "SELECT id || ' ' || COALESCE(CAST(button AS TEXT), 'NULL') || ' ' || event_name \
             FROM EventRatingType ORDER BY id"
            )
            .await,
        ["r0 0 5", "r1 0 5", "r2 0 5", "r3 0 5"]
    );
}
