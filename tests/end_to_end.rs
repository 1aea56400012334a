//! The bundled examples through the three real plugins into SQLite, checked against the
//! contract's tables and golden rows; reruns and bad envelopes.

use serde_json::{Value, json};

use crate::support::{
    check_goldens, config, example_backends, example_goldens, ndjson, plugin_folder, query, run,
    workspace_root,
};

const REAL_PLUGINS: [&str; 3] = ["github", "slack", "event_rating"];

#[tokio::test(flavor = "multi_thread")]
async fn the_examples_land_as_the_contract_says_and_a_rerun_only_counts_duplicates() {
    let plugins = plugin_folder(&REAL_PLUGINS);
    let database = tempfile::tempdir().unwrap();
    let database = database.path().join("examples.db");
    let source = workspace_root().join("examples/documents");
    let mut first = config(&source, &database, plugins.path());
    first.run.backends = Some(example_backends());
    let summary = run(first.clone()).await;
    assert!(summary.completed(), "{summary:?}");
    assert_eq!(summary.failed, 0, "{summary:?}");
    let counts = |s: &batch_job_aurora::RunSummary, t: &str| {
        let c = &s.types[t];
        (c.inserted, c.duplicates, c.refused, c.failed)
    };
    assert_eq!(counts(&summary, "GithubType"), (2, 0, 8, 0));
    assert_eq!(counts(&summary, "SlackType"), (5, 0, 0, 0));
    assert_eq!(counts(&summary, "EventRatingType"), (3, 0, 2, 0));

    // Contract §6: the GithubType table has exactly the §3 columns, in order.
    let columns = query(
        &database,
        "SELECT name, type FROM pragma_table_info('GithubType')",
    )
    .await;
    let columns: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            "id TEXT",
            "timestamp INTEGER",
            "repository_name TEXT",
            "github_username TEXT",
            "commit_id TEXT",
            "commit_timestamp TEXT",
            "stargazers_count INTEGER",
            "language TEXT",
            "forks_count INTEGER",
            "open_issues_count INTEGER",
            "ref TEXT"
        ]
    );

    let mut tables = serde_json::Map::new();
    for table in ["GithubType", "SlackType", "EventRatingType"] {
        let rows = query(&database, &format!("SELECT * FROM {table} ORDER BY id")).await;
        tables.insert(
            table.into(),
            Value::Array(rows.into_iter().map(Value::Object).collect()),
        );
    }
    check_goldens(&example_goldens(&tables));

    let rerun = run(first).await;
    assert_eq!(counts(&rerun, "GithubType"), (0, 2, 8, 0));
    assert_eq!(counts(&rerun, "SlackType"), (0, 5, 0, 0));
    assert_eq!(counts(&rerun, "EventRatingType"), (0, 3, 2, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_lookups_slack_names_are_null_and_the_summary_says_why() {
    let plugins = plugin_folder(&REAL_PLUGINS);
    let database = tempfile::tempdir().unwrap();
    let database = database.path().join("no-lookups.db");
    let source = workspace_root().join("examples/documents/slack.ndjson");
    let summary = run(config(&source, &database, plugins.path())).await;
    let slack = &summary.types["SlackType"];
    assert_eq!(slack.inserted, 5);
    assert!(
        slack
            .notes
            .iter()
            .any(|note| note.contains("slack-channels not configured")),
        "{slack:?}"
    );
    let names = query(
        &database,
        "SELECT count(*) AS n FROM SlackType WHERE channel_name IS NULL",
    )
    .await;
    assert_eq!(names[0]["n"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_envelopes_are_counted_and_kept_whole_and_the_rest_goes_on() {
    let good =
        json!({"id": "good1", "timestamp": 5, "type": "EventRatingType", "data": {"button": 1}});
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("mixed.ndjson");
    let lines = [
        good.to_string(),
        "{not json".to_owned(),
        json!({"id": "noTs", "type": "EventRatingType", "data": {}}).to_string(),
        json!({"id": "badData", "timestamp": 5, "type": "EventRatingType", "data": [1]})
            .to_string(),
        json!({"id": "noType", "timestamp": 5, "data": {}}).to_string(),
        json!({"id": "other", "timestamp": 5, "type": "NotInstalledType", "data": {}}).to_string(),
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    let plugins = plugin_folder(&REAL_PLUGINS);
    let database = folder.path().join("envelopes.db");
    let summary = run(config(&path, &database, plugins.path())).await;
    // The good rating has no event_code: refused, not failed.
    assert_eq!(summary.types["EventRatingType"].refused, 1);
    assert_eq!(summary.types["EventRatingType"].failed, 2);
    assert_eq!(summary.types["unknown"].failed, 2);
    assert_eq!(summary.failed, 4);
    let failed = query(
        &database,
        "SELECT type_name, document_id, stage, error, document FROM batch_job_failed_documents ORDER BY rowid",
    )
    .await;
    let reasons: Vec<(String, String)> = failed
        .iter()
        .map(|row| {
            assert_eq!(row["stage"], "envelope");
            (
                row["document"].as_str().unwrap().to_owned(),
                row["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(reasons[0].0, "{not json");
    assert!(reasons[0].1.starts_with("not a JSON object"), "{reasons:?}");
    assert!(reasons[1].1.starts_with("missing timestamp"), "{reasons:?}");
    assert!(
        reasons[2].1.starts_with("data is not an object"),
        "{reasons:?}"
    );
    assert!(reasons[3].1.starts_with("missing type"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_and_a_type_list_select_documents() {
    let documents: Vec<Value> = (0..10)
        .map(|i| json!({"id": format!("w{i}"), "timestamp": 100 + i, "type": "MisbehavingType", "data": {"action": "ok"}}))
        .collect();
    let (_folder, source) = ndjson(&documents);
    let plugins = plugin_folder(&["misbehaving", "github"]);
    let database = tempfile::tempdir().unwrap();
    let database = database.path().join("window.db");
    let mut selective = config(&source, &database, plugins.path());
    selective.run.windows =
        batch_job_aurora::window::WindowPlan::Fixed(batch_job_aurora::window::Window {
            from: 102,
            to: 105,
        });
    selective.run.types = Some(vec!["MisbehavingType".into()]);
    let summary = run(selective).await;
    assert_eq!(summary.inserted, 4, "inclusive at both ends: {summary:?}");
    assert_eq!(
        summary.types.keys().collect::<Vec<_>>(),
        ["MisbehavingType"]
    );
}
