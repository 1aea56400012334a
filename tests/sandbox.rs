//! Deliberately bad plugins: the host survives, counts each failure, keeps the failed
//! documents with the reason, and stores the good documents of the same batch.

use serde_json::{Value, json};

use crate::support::{config, ndjson, plugin_folder, query, run};

fn order(index: usize, action: &str) -> Value {
    json!({
        "id": format!("m{index:02}"),
        "timestamp": 1000 + index,
        "type": "MisbehavingType",
        "data": {"action": action, "ids": ["m-several-1", "m-several-2"]}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn traps_and_bad_rows_fail_only_their_own_documents() {
    let actions = [
        "ok",
        "panic",
        "ok",
        "loop",
        "ok",
        "alloc",
        "wrong-type",
        "wrong-count",
        "error",
        "refuse",
        "rows",
        "snoop",
        "ok",
    ];
    let documents: Vec<Value> = actions
        .iter()
        .enumerate()
        .map(|(i, a)| order(i, a))
        .collect();
    let (_source, source) = ndjson(&documents);
    let plugins = plugin_folder(&["misbehaving"]);
    let database = tempfile::tempdir().unwrap();
    let database = database.path().join("sandbox.db");
    let mut config = config(&source, &database, plugins.path());
    // All thirteen in one plugin call, so the first trap takes the whole batch down and the
    // host must retry its other documents one by one.
    config.documents_per_call = 100;
    let summary = run(config).await;

    let counts = &summary.types["MisbehavingType"];
    assert_eq!(
        (
            counts.inserted,
            counts.duplicates,
            counts.refused,
            counts.failed
        ),
        (4 + 2 + 1, 0, 1, 6),
        "{summary:?}"
    );
    assert!(summary.completed());

    let stored = query(
        &database,
        "SELECT id, note FROM MisbehavingType ORDER BY id",
    )
    .await;
    let ids: Vec<&str> = stored
        .iter()
        .map(|row| row["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "m-several-1",
            "m-several-2",
            "m00",
            "m02",
            "m04",
            "m11",
            "m12"
        ]
    );
    let snoop = stored.iter().find(|row| row["id"] == "m11").unwrap()["note"]
        .as_str()
        .unwrap();
    assert_eq!(
        snoop,
        "slack: Err(LookupError::Denied); events: Err(LookupError::Denied)"
    );

    let failed = query(
        &database,
        "SELECT document_id, stage, error, document FROM batch_job_failed_documents ORDER BY document_id",
    )
    .await;
    let failure = |id: &str| failed.iter().find(|row| row["document_id"] == id).unwrap();
    let expect = |id: &str, stage: &str, needle: &str| {
        let row = failure(id);
        assert_eq!(row["stage"], stage, "{row:?}");
        let error = row["error"].as_str().unwrap();
        assert!(error.contains(needle), "{id}: {error:?} lacks {needle:?}");
        let document: Value = serde_json::from_str(row["document"].as_str().unwrap()).unwrap();
        assert_eq!(
            document["data"]["action"],
            actions[id[1..].parse::<usize>().unwrap()]
        );
    };
    assert_eq!(failed.len(), 6);
    expect("m01", "trap", "deliberate panic on m01");
    expect("m03", "trap", "time budget");
    expect("m05", "trap", "memory");
    expect(
        "m06",
        "validation",
        "column note is declared text but the plugin gave int",
    );
    expect("m07", "validation", "2 values for 1 declared columns");
    expect("m08", "plugin", "asked to fail");
}
