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

/// What must become of each misbehaving document: stored (with the ids of its rows), refused,
/// or failed at a stage with a reason.
enum Expected {
    Stored(&'static [&'static str]),
    Refused,
    Failed {
        stage: &'static str,
        reason: &'static str,
    },
}

/// Each action of the misbehaving plugin, named, with what must become of its document. All
/// are sent in one plugin call, so the first trap takes the whole batch down and the host must
/// retry the other documents one by one.
const CASES: [(&str, Expected); 13] = [
    ("ok", Expected::Stored(&["m00"])),
    (
        "panic",
        Expected::Failed {
            stage: "trap",
            reason: "deliberate panic on m01",
        },
    ),
    ("ok", Expected::Stored(&["m02"])),
    (
        "loop",
        Expected::Failed {
            stage: "trap",
            reason: "time budget",
        },
    ),
    ("ok", Expected::Stored(&["m04"])),
    (
        "alloc",
        Expected::Failed {
            stage: "trap",
            reason: "memory",
        },
    ),
    (
        "wrong-type",
        Expected::Failed {
            stage: "validation",
            reason: "column note is declared text but the plugin gave int",
        },
    ),
    (
        "wrong-count",
        Expected::Failed {
            stage: "validation",
            reason: "2 values for 1 declared columns",
        },
    ),
    (
        "error",
        Expected::Failed {
            stage: "plugin",
            reason: "asked to fail",
        },
    ),
    ("refuse", Expected::Refused),
    ("rows", Expected::Stored(&["m-several-1", "m-several-2"])),
    ("snoop", Expected::Stored(&["m11"])),
    ("ok", Expected::Stored(&["m12"])),
];

#[tokio::test(flavor = "multi_thread")]
async fn traps_and_bad_rows_fail_only_their_own_documents() {
    let documents: Vec<Value> = CASES
        .iter()
        .enumerate()
        .map(|(i, (action, _))| order(i, action))
        .collect();
    let (_source, source) = ndjson(&documents);
    let plugins = plugin_folder(&["misbehaving"]);
    let database = tempfile::tempdir().unwrap();
    let database = database.path().join("sandbox.db");
    let mut config = config(&source, &database, plugins.path());
    config.run.documents_per_call = 100;
    let summary = run(config).await;

    let stored = query(
        &database,
        "SELECT id, note FROM MisbehavingType ORDER BY id",
    )
    .await;
    let failed = query(
        &database,
        "SELECT document_id, stage, error, document FROM batch_job_failed_documents",
    )
    .await;
    let is_stored = |id: &str| stored.iter().any(|row| row["id"] == id);
    let failure = |id: &str| failed.iter().find(|row| row["document_id"] == id);

    // Every case is checked and every mismatch reported, so one failure hides no other.
    let mut mismatches = Vec::new();
    for (index, (action, expected)) in CASES.iter().enumerate() {
        let id = format!("m{index:02}");
        let case = format!("{id} ({action})");
        match expected {
            Expected::Stored(ids) => {
                for row_id in *ids {
                    if !is_stored(row_id) {
                        mismatches.push(format!("{case}: row {row_id} not stored"));
                    }
                }
                if failure(&id).is_some() {
                    mismatches.push(format!("{case}: stored, yet a dead letter"));
                }
            }
            Expected::Refused => {
                if is_stored(&id) || failure(&id).is_some() {
                    mismatches.push(format!("{case}: refused, yet stored or a dead letter"));
                }
            }
            Expected::Failed { stage, reason } => match failure(&id) {
                None => mismatches.push(format!("{case}: no dead letter")),
                Some(row) => {
                    let error = row["error"].as_str().unwrap_or_default();
                    if row["stage"] != *stage || !error.contains(reason) {
                        mismatches.push(format!(
                            "{case}: expected stage {stage} with {reason:?}, got {} {error:?}",
                            row["stage"]
                        ));
                    }
                    // The dead letter is the document exactly as sent.
                    let document: Value =
                        serde_json::from_str(row["document"].as_str().unwrap_or_default())
                            .unwrap_or_default();
                    if document["data"]["action"] != *action {
                        mismatches.push(format!("{case}: the dead letter is not the document"));
                    }
                }
            },
        }
    }
    if let Some(snoop) = stored.iter().find(|row| row["id"] == "m11")
        && snoop["note"] != "slack: Err(LookupError::Denied); events: Err(LookupError::Denied)"
    {
        mismatches.push(format!(
            "m11 (snoop): undeclared lookups not denied: {snoop:?}"
        ));
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // And the counts add up to exactly those outcomes.
    let counts = &summary.types["MisbehavingType"];
    assert_eq!(
        (
            counts.inserted,
            counts.duplicates,
            counts.refused,
            counts.failed
        ),
        (7, 0, 1, 6),
        "{summary:?}"
    );
    assert_eq!((stored.len(), failed.len()), (7, 6));
    assert!(summary.completed());
}
