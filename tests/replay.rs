//! The operator's tools on real databases: `replay` of dead letters (after a Slack outage,
//! after a plugin fix, killed mid-way) and `run --on-existing update` (reprocessing with a
//! fixed plugin). `ReplayType` comes in two versions built from one source
//! (`tests/plugins/replay_v1`): v1 fails documents with `data.odd` and stores `score` 0 for
//! those with `data.buggy`; v2 does neither.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use batch_job_aurora::sink::{Sink, loaded_spans};
use serde_json::{Value, json};

use crate::cli::binary;
use crate::support::{ENGINES, FakePlatform, SLACK_TOKEN, TestDatabase, ndjson, plugin_folder};

const T0: i64 = 1_764_000_000;

/// A ReplayType document.
fn document(id: &str, score: i64, odd: bool, buggy: bool) -> Value {
    json!({"id": id, "timestamp": T0, "type": "ReplayType",
           "data": {"score": score, "label": format!("label {id}"), "odd": odd, "buggy": buggy}})
}

/// Runs the CLI with `args` and `--json`; the summary, after checking the exit code is 0.
fn cli_json(args: &[&str], plugins: &Path, env: &[(&str, String)]) -> Value {
    let output = Command::new(binary())
        .args(args)
        .arg("--plugins")
        .arg(plugins)
        .arg("--json")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("DATAPLATTFORM_EVENT_CODE_TABLE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{args:?}: not JSON: {stdout}"))
}

fn counts(summary: &Value) -> [i64; 4] {
    ["inserted", "duplicates", "refused", "failed"].map(|k| summary[k].as_i64().unwrap_or(-1))
}

fn count(summary: &Value, key: &str) -> i64 {
    summary[key].as_i64().unwrap_or(0)
}

async fn waiting(database: &TestDatabase) -> i64 {
    database
        .count(
            "SELECT COUNT(*) FROM batch_job_failed_documents \
             WHERE replay_outcome IS NULL OR replay_outcome = 'failed'",
        )
        .await
}

async fn outcomes(database: &TestDatabase, outcome: &str) -> i64 {
    database
        .count(&format!(
            "SELECT COUNT(*) FROM batch_job_failed_documents WHERE replay_outcome = '{outcome}' \
             AND replayed_at IS NOT NULL AND replay_run_id IS NOT NULL"
        ))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_after_a_plugin_fix_stores_what_failed_marks_it_and_moves_no_window() {
    let v1 = plugin_folder(&["replay_v1"]);
    let v2 = plugin_folder(&["replay_v2"]);
    let documents: Vec<Value> = (0..20)
        .map(|i| document(&format!("p{i:04}"), i, i % 4 == 0, false))
        .collect();
    let (_folder, source) = ndjson(&documents);
    let source = source.display().to_string();
    let (from, to) = ((T0 - 60).to_string(), (T0 + 60).to_string());
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "replay_fix").await;
        let url = database.url.as_str();
        let run = cli_json(
            &[
                "run",
                "--source",
                &source,
                "--database",
                url,
                "--from",
                &from,
                "--to",
                &to,
            ],
            v1.path(),
            &[],
        );
        assert_eq!(counts(&run), [15, 0, 0, 5], "{engine:?}: {run}");
        let spans = || async {
            let sink = Sink::connect(url).await.unwrap();
            let spans = loaded_spans(&sink.logged_windows("ReplayType").await.unwrap());
            sink.close().await;
            spans
        };
        let spans_before = spans().await;
        assert_eq!(spans_before, [(T0 - 60, T0 + 60)], "{engine:?}");

        // v1 again: every one fails again, stays the record it was, with one attempt more.
        let again = cli_json(&["replay", "--database", url], v1.path(), &[]);
        assert_eq!(counts(&again), [0, 0, 0, 5], "{engine:?}: {again}");
        assert_eq!(count(&again, "replayed"), 5, "{engine:?}: {again}");
        assert_eq!(
            database
                .count("SELECT COUNT(*) FROM batch_job_failed_documents")
                .await,
            5,
            "{engine:?}: a failure again is no new record"
        );
        assert_eq!(outcomes(&database, "failed").await, 5, "{engine:?}");
        assert_eq!(
            database
                .count("SELECT COUNT(*) FROM batch_job_failed_documents WHERE attempts = 2")
                .await,
            5,
            "{engine:?}"
        );

        // A dry run changes nothing.
        let dry = cli_json(&["replay", "--database", url, "--dry-run"], v2.path(), &[]);
        assert_eq!(count(&dry, "replayed"), 5, "{engine:?}: {dry}");
        assert_eq!(waiting(&database).await, 5, "{engine:?}");

        // v2 stores them, and the records say so.
        let fixed = cli_json(
            &[
                "replay",
                "--database",
                url,
                "--types",
                "ReplayType",
                "--stage",
                "plugin",
            ],
            v2.path(),
            &[],
        );
        assert_eq!(counts(&fixed), [5, 0, 0, 0], "{engine:?}: {fixed}");
        assert_eq!(count(&fixed, "replayed"), 5, "{engine:?}: {fixed}");
        assert_eq!(
            fixed["types"]["ReplayType"]["inserted"], 5,
            "{engine:?}: {fixed}"
        );
        assert_eq!(database.count_rows("ReplayType", "1 = 1").await, 20);
        assert_eq!(outcomes(&database, "stored").await, 5, "{engine:?}");
        assert_eq!(waiting(&database).await, 0, "{engine:?}");

        // Idempotent: nothing is waiting, nothing is stored.
        let second = cli_json(&["replay", "--database", url], v2.path(), &[]);
        assert_eq!(counts(&second), [0, 0, 0, 0], "{engine:?}: {second}");
        assert_eq!(count(&second, "replayed"), 0, "{engine:?}: {second}");

        // A replay has no window: the spans are as they were, its runs are logged without
        // one, with the plugin's version and digest.
        assert_eq!(spans().await, spans_before, "{engine:?}");
        assert_eq!(
            database
                .count(
                    "SELECT COUNT(*) FROM batch_job_runs WHERE window_from IS NULL \
                     AND window_to IS NULL AND status = 'succeeded'"
                )
                .await,
            // v1's and v2's replays; the one with nothing waiting ran no type.
            2,
            "{engine:?}"
        );
        let versions = database
            .strings(
                "SELECT plugin_version FROM batch_job_runs WHERE inserted = 5 \
                 AND window_from IS NULL",
            )
            .await;
        assert_eq!(versions, ["2.0.0"], "{engine:?}");
        let digests = database
            .strings("SELECT plugin_sha256 FROM batch_job_runs")
            .await;
        assert!(
            digests.iter().all(|d| d.len() == 64),
            "{engine:?}: {digests:?}"
        );

        // --purge-stored deletes the records whose documents are stored, and only those.
        let purge = cli_json(
            &["replay", "--database", url, "--purge-stored"],
            v2.path(),
            &[],
        );
        assert_eq!(count(&purge, "purged"), 5, "{engine:?}: {purge}");
        assert_eq!(
            database
                .count("SELECT COUNT(*) FROM batch_job_failed_documents")
                .await,
            0,
            "{engine:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_after_a_slack_outage_stores_every_dead_letter_once() {
    let platform = FakePlatform::start();
    let plugins = plugin_folder(&["slack"]);
    let documents: Vec<Value> = (0..12)
        .map(|i| {
            let channel = if i % 2 == 0 { "C012AB3CD" } else { "C024BE91L" };
            json!({"id": format!("s{i:04}"), "timestamp": T0, "type": "SlackType",
                   "data": {"type": "event_callback", "team_id": "T1", "event_time": T0,
                            "event": {"type": "message", "channel": channel}}})
        })
        .collect();
    let (_folder, source) = ndjson(&documents);
    let source = source.display().to_string();
    let env = [
        ("DATAPLATTFORM_AURORA_SLACK_TOKEN", SLACK_TOKEN.to_owned()),
        ("DATAPLATTFORM_AURORA_SLACK_API_URL", platform.slack_url()),
    ];
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "replay_slack").await;
        let url = database.url.as_str();
        // Slack answers 500 to everything: every document is a dead letter.
        platform
            .put("/control/faults", &json!({"slack_500": 1_000_000}))
            .await;
        let outage = cli_json(
            &[
                "run",
                "--source",
                &source,
                "--database",
                url,
                "--max-wait",
                "1",
                "--retry-budget",
                "1",
            ],
            plugins.path(),
            &env,
        );
        assert_eq!(counts(&outage), [0, 0, 0, 12], "{engine:?}: {outage}");
        assert_eq!(waiting(&database).await, 12, "{engine:?}");

        // Slack is back.
        platform.put("/control/faults", &json!({})).await;
        let replay = cli_json(&["replay", "--database", url], plugins.path(), &env);
        assert_eq!(counts(&replay), [12, 0, 0, 0], "{engine:?}: {replay}");
        assert_eq!(count(&replay, "replayed"), 12, "{engine:?}: {replay}");
        assert_eq!(database.count_rows("SlackType", "1 = 1").await, 12);
        assert_eq!(
            database
                .count_rows("SlackType", "channel_name IN ('general', 'fun')")
                .await,
            12,
            "{engine:?}"
        );
        assert_eq!(outcomes(&database, "stored").await, 12, "{engine:?}");

        let second = cli_json(&["replay", "--database", url], plugins.path(), &env);
        assert_eq!(counts(&second), [0, 0, 0, 0], "{engine:?}: {second}");
        assert_eq!(count(&second, "replayed"), 0, "{engine:?}: {second}");
        assert_eq!(database.count_rows("SlackType", "1 = 1").await, 12);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_killed_mid_way_and_replayed_again_stores_every_document_once() {
    const DOCUMENTS: i64 = 3_000;
    let v1 = plugin_folder(&["replay_v1"]);
    let v2 = plugin_folder(&["replay_v2"]);
    let documents: Vec<Value> = (0..DOCUMENTS)
        .map(|i| document(&format!("k{i:06}"), i, true, false))
        .collect();
    let (_folder, source) = ndjson(&documents);
    let source = source.display().to_string();
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "replay_kill").await;
        let url = database.url.as_str();
        let run = cli_json(
            &["run", "--source", &source, "--database", url],
            v1.path(),
            &[],
        );
        assert_eq!(counts(&run), [0, 0, 0, DOCUMENTS], "{engine:?}: {run}");

        // The replay pauses after two writes of 500 rows; it is killed there, for certain.
        let mut first = Command::new(binary())
            .args(["replay", "--database", url, "--plugins"])
            .arg(v2.path())
            .args(["--pause-after-writes", "2", "--rows-per-write", "500"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(first.stderr.take().unwrap());
        let mut said = Vec::new();
        let paused = stderr.lines().map_while(Result::ok).any(|line| {
            said.push(line.clone());
            line == "paused"
        });
        assert!(
            paused,
            "{engine:?}: the replay ended without pausing: {said:?}"
        );
        first.kill().unwrap();
        first.wait().unwrap();
        let before = database.count_rows("ReplayType", "1 = 1").await;
        // Two writes committed; the others in flight when it paused may have too.
        let most = (2 + batch_job_aurora::WRITES_IN_FLIGHT - 1) as i64 * 500;
        assert!(
            (1_000..=most).contains(&before),
            "{engine:?}: {before} rows before the kill"
        );

        let again = cli_json(&["replay", "--database", url], v2.path(), &[]);
        let inserted = count(&again, "inserted");
        let duplicates = count(&again, "duplicates");
        assert_eq!(inserted + before, DOCUMENTS, "{engine:?}: {again}");
        // What the killed replay stored and marked is not read again; what it stored
        // without marking is read again, and is a duplicate.
        assert_eq!(
            count(&again, "replayed"),
            inserted + duplicates,
            "{engine:?}: {again}"
        );
        assert_eq!(database.count_rows("ReplayType", "1 = 1").await, DOCUMENTS);
        assert_eq!(waiting(&database).await, 0, "{engine:?}");
        assert_eq!(
            outcomes(&database, "stored").await + outcomes(&database, "duplicate").await,
            DOCUMENTS,
            "{engine:?}"
        );
        assert_eq!(
            outcomes(&database, "duplicate").await,
            duplicates,
            "{engine:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reprocessing_with_a_fixed_plugin_updates_exactly_the_rows_that_differ() {
    let v1 = plugin_folder(&["replay_v1"]);
    let v2 = plugin_folder(&["replay_v2"]);
    let documents: Vec<Value> = (0..20)
        .map(|i| document(&format!("u{i:04}"), 100 + i, false, i % 3 == 0))
        .collect();
    let (_folder, source) = ndjson(&documents);
    let source = source.display().to_string();
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "reprocess").await;
        let url = database.url.as_str();
        let run = |plugins: &Path, on_existing: &str| {
            cli_json(
                &[
                    "run",
                    "--source",
                    &source,
                    "--database",
                    url,
                    "--on-existing",
                    on_existing,
                ],
                plugins,
                &[],
            )
        };
        assert_eq!(counts(&run(v1.path(), "skip")), [20, 0, 0, 0], "{engine:?}");
        assert_eq!(database.count_rows("ReplayType", "score = 0").await, 7);

        // skip, the default: v2's rows are duplicates, and the wrong ones stay.
        let skip = run(v2.path(), "skip");
        assert_eq!(counts(&skip), [0, 20, 0, 0], "{engine:?}: {skip}");
        assert_eq!(skip.get("updated"), None, "{engine:?}: {skip}");
        assert_eq!(database.count_rows("ReplayType", "score = 0").await, 7);

        // update: exactly the seven wrong rows are corrected.
        let update = run(v2.path(), "update");
        assert_eq!(counts(&update), [0, 0, 0, 0], "{engine:?}: {update}");
        assert_eq!(count(&update, "updated"), 7, "{engine:?}: {update}");
        assert_eq!(count(&update, "unchanged"), 13, "{engine:?}: {update}");
        let per_type = &update["types"]["ReplayType"];
        assert_eq!(
            (count(per_type, "updated"), count(per_type, "unchanged")),
            (7, 13)
        );
        assert_eq!(database.count_rows("ReplayType", "score = 0").await, 0);
        assert_eq!(database.count_rows("ReplayType", "1 = 1").await, 20);
        assert_eq!(
            database
                .count_rows("ReplayType", "score >= 100 AND score < 120")
                .await,
            20,
            "{engine:?}"
        );

        // Again: nothing differs any more.
        let again = run(v2.path(), "update");
        assert_eq!(
            (count(&again, "updated"), count(&again, "unchanged")),
            (0, 20),
            "{engine:?}: {again}"
        );
        // The run log says which version made each run, and what it updated.
        let logged = database
            .strings(
                "SELECT plugin_version FROM batch_job_runs WHERE updated = 7 AND unchanged = 13",
            )
            .await;
        assert_eq!(logged, ["2.0.0"], "{engine:?}");
        assert_eq!(
            database
                .count("SELECT COUNT(*) FROM batch_job_runs WHERE plugin_version = '1.0.0'")
                .await,
            1,
            "{engine:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_kept_in_parts_is_rejoined_and_replayed_whole() {
    let v2 = plugin_folder(&["replay_v2"]);
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "replay_parts").await;
        // Opening the sink makes the bookkeeping tables.
        Sink::connect(&database.url).await.unwrap().close().await;
        let whole = document("parts01", 7, true, false).to_string();
        let (a, b) = whole.split_at(whole.len() / 2);
        for (index, part) in [a, b].iter().enumerate() {
            database
                .execute(&format!(
                    "INSERT INTO batch_job_failed_documents \
                     (run_id, type_name, document_id, timestamp, stage, error, document) \
                     VALUES ('r1', 'ReplayType', 'parts01', {T0}, 'plugin', \
                     '[part {}/2] version 1 cannot read odd documents', '{}')",
                    index + 1,
                    part.replace('\'', "''")
                ))
                .await;
        }
        let replay = cli_json(&["replay", "--database", &database.url], v2.path(), &[]);
        assert_eq!(counts(&replay), [1, 0, 0, 0], "{engine:?}: {replay}");
        assert_eq!(count(&replay, "replayed"), 1, "{engine:?}: {replay}");
        assert_eq!(database.count_rows("ReplayType", "score = 7").await, 1);
        assert_eq!(outcomes(&database, "stored").await, 2, "{engine:?}");
    }
}
