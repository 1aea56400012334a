//! Hostile conditions (issue 8): each case that once lost a run, waited without end, grew
//! memory or leaked a secret, through the real pipeline or the real binary, on every engine it
//! concerns. Faults are injected at known points; no assertion depends on the machine's speed
//! beyond bounds many times what the work needs.

use std::time::{Duration, Instant};

use batch_job_aurora::sink::Sink;
use batch_job_aurora::window::{CatchUp, Window, WindowPlan};
use serde_json::{Value, json};

use crate::support::{
    ENGINES, Engine, FETCH_KEY, FakePlatform, TestDatabase, config_for, ndjson, ok_documents,
    plugin_folder, run,
};

const T0: i64 = 1_764_000_000;

/// An envelope that fails its check (the timestamp is text), padded to `bytes`.
fn failing_document(id: &str, bytes: usize) -> Value {
    json!({"id": id, "timestamp": "not a number", "type": "MisbehavingType",
           "data": {"action": "ok", "padding": "x".repeat(bytes)}})
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_larger_than_the_packet_never_stop_a_run() {
    let plugins = plugin_folder(&["misbehaving"]);
    let mut documents = ok_documents("good", 10, T0, 1);
    // 600 × 40 KB of dead letters: 24 MB, over MariaDB's 16 MiB packet in one statement.
    documents.extend((0..600).map(|i| failing_document(&format!("bad{i:05}"), 40_000)));
    // One document larger than the packet on its own.
    documents.push(failing_document("huge", 20 << 20));
    let (_folder, source) = ndjson(&documents);
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "big_dead_letters").await;
        let summary = run(config_for(&source, &database, plugins.path())).await;
        assert!(summary.completed(), "{engine:?}: {summary:?}");
        assert_eq!(
            (summary.inserted, summary.failed),
            (10, 601),
            "{engine:?}: every good row stored, every bad document counted once"
        );
        let failed_ids = database
            .count("SELECT COUNT(DISTINCT document_id) FROM batch_job_failed_documents")
            .await;
        assert_eq!(failed_ids, 601, "{engine:?}");
        // The huge one is kept whole: its parts, in order, make the document again.
        let parts: Vec<String> = database
            .strings(
                "SELECT document FROM batch_job_failed_documents \
                 WHERE document_id = 'huge' ORDER BY failure_order",
            )
            .await;
        let whole: String = parts.concat();
        assert_eq!(whole.len(), documents.last().unwrap().to_string().len());
        assert_eq!(
            serde_json::from_str::<Value>(&whole).unwrap(),
            *documents.last().unwrap()
        );
        if engine == Engine::Mysql {
            assert!(parts.len() > 1, "split under the packet");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_that_differ_only_in_case_are_different_documents() {
    let plugins = plugin_folder(&["misbehaving"]);
    // 400 ids with the same letters in different cases: distinct base64 ids.
    let ids: Vec<String> = (0..400u32)
        .map(|pattern| {
            "abcdefghij"
                .chars()
                .enumerate()
                .map(|(bit, c)| {
                    if pattern & (1 << bit) == 0 {
                        c
                    } else {
                        c.to_ascii_uppercase()
                    }
                })
                .collect()
        })
        .collect();
    let documents: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "timestamp": T0, "type": "MisbehavingType", "data": {"action": "ok"}}))
        .collect();
    let (_folder, source) = ndjson(&documents);
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "case_ids").await;
        let summary = run(config_for(&source, &database, plugins.path())).await;
        assert_eq!(
            (summary.inserted, summary.duplicates),
            (400, 0),
            "{engine:?}"
        );
    }
    // A table made by the old job keeps its case-insensitive id: said once, with the fix.
    let database = TestDatabase::new(Engine::Mysql, "case_ids_old").await;
    database
        .execute(
            "CREATE TABLE MisbehavingType (id VARCHAR(24) NOT NULL PRIMARY KEY, \
             timestamp BIGINT NOT NULL, note TEXT) COLLATE utf8mb4_general_ci",
        )
        .await;
    let summary = run(config_for(&source, &database, plugins.path())).await;
    let notes = &summary.types["MisbehavingType"].notes;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("ALTER TABLE `MisbehavingType` MODIFY `id` VARCHAR(24) CHARACTER SET ascii COLLATE ascii_nopad_bin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_of_unselected_types_are_one_skipped_figure() {
    let plugins = plugin_folder(&["misbehaving"]);
    let mut documents = ok_documents("kept", 5, T0, 1);
    documents.extend((0..200_000).map(|i| {
        json!({"id": format!("o{i}"), "timestamp": T0, "type": format!("Other{i}Type"), "data": {}})
    }));
    let (_folder, source) = ndjson(&documents);
    let database = TestDatabase::new(Engine::Sqlite, "unselected").await;
    let mut config = config_for(&source, &database, plugins.path());
    config.run.types = Some(vec!["MisbehavingType".into()]);
    let summary = run(config).await;
    assert_eq!(
        summary.types.keys().collect::<Vec<_>>(),
        ["MisbehavingType"]
    );
    assert_eq!((summary.inserted, summary.skipped), (5, 200_000));
    assert!(serde_json::to_string(&summary).unwrap().len() < 400);
}

/// A config fetching `types` from the platform into a fresh SQLite file.
fn fetch_config(
    platform: &FakePlatform,
    database: &TestDatabase,
    plugins: &std::path::Path,
) -> batch_job_aurora::RunConfig {
    let mut config = platform.config(std::path::Path::new("unused"), plugins);
    config.run.database_url = database.url.clone();
    config.run.windows = WindowPlan::Fixed(Window {
        from: T0 - 100,
        to: T0 + 1_000_000,
    });
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_retry_after_is_capped_and_a_silent_store_ends_at_the_deadline() {
    let platform = FakePlatform::start();
    platform
        .put(
            "/control/documents/MisbehavingType",
            &Value::Array(ok_documents("r", 3, T0, 1)),
        )
        .await;
    platform
        .put(
            "/control/faults",
            &json!({"api_429": 1, "retry_after": 3600}),
        )
        .await;
    let plugins = plugin_folder(&["misbehaving"]);
    let database = TestDatabase::new(Engine::Sqlite, "retry_after").await;
    let mut config = fetch_config(&platform, &database, plugins.path());
    config.run.fetch.max_wait = Duration::from_millis(100);
    let started = Instant::now();
    let summary = run(config).await;
    assert!(summary.completed(), "{summary:?}");
    assert_eq!(summary.inserted, 3);
    assert!(
        started.elapsed() < Duration::from_secs(600),
        "the hour asked for was not waited"
    );

    // A store that never sends a byte: the run's deadline ends it, with the reason.
    platform
        .put("/control/faults", &json!({"slow_first_byte": 3600}))
        .await;
    let database = TestDatabase::new(Engine::Sqlite, "deadline").await;
    let mut config = fetch_config(&platform, &database, plugins.path());
    config.run.deadline = Some(Instant::now() + Duration::from_secs(2));
    let started = Instant::now();
    let summary = run(config).await;
    assert!(started.elapsed() < Duration::from_secs(120));
    let error = summary.types["MisbehavingType"].error.as_deref().unwrap();
    assert!(error.contains("deadline"), "{error}");
    assert_eq!(
        database
            .count("SELECT COUNT(*) FROM batch_job_runs WHERE status = 'failed'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slack_outage_opens_the_circuit_instead_of_waiting_on_every_document() {
    let platform = FakePlatform::start();
    let documents: Vec<Value> = (0..20)
        .map(|i| {
            json!({"id": format!("s{i:04}"), "timestamp": T0, "type": "SlackType",
                   "data": {"type": "event_callback", "team_id": "T1", "event_time": T0,
                            "event": {"type": "message", "channel": format!("C{i:08}")}}})
        })
        .collect();
    platform
        .put("/control/documents/SlackType", &Value::Array(documents))
        .await;
    platform
        .put("/control/faults", &json!({"slack_500": 1_000_000}))
        .await;
    let plugins = plugin_folder(&["slack"]);
    let database = TestDatabase::new(Engine::Sqlite, "slack_down").await;
    let mut config = fetch_config(&platform, &database, plugins.path());
    config.run.capabilities = batch_job_aurora::capability::CapabilitySpecs {
        slack_token: Some(crate::support::SLACK_TOKEN.into()),
        slack_api_url: Some(platform.slack_url()),
        ..Default::default()
    };
    let summary = run(config).await;
    let slack = &summary.types["SlackType"];
    assert_eq!(
        slack.failed, 20,
        "{summary:?}: every document kept, counted"
    );
    assert!(
        slack
            .notes
            .iter()
            .any(|note| note.contains("taken as down")),
        "{:?}",
        slack.notes
    );
    let lookups = platform
        .requests()
        .await
        .iter()
        .filter(|r| r["path"] == "/api/conversations.info")
        .count();
    // The first lookup tries with its retries (at most 5 requests), the next two once each,
    // and then the circuit is open: the other 17 documents fail without a request.
    assert!(lookups <= 5 + 2, "{lookups} lookups");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_element_is_one_dead_letter_and_the_window_completes() {
    let platform = FakePlatform::start();
    let mut elements: Vec<String> = ok_documents("m", 100, T0, 1)
        .iter()
        .map(Value::to_string)
        .collect();
    elements[50] = r#"{"id":"m00000050","timestamp":1764000050,"data":{"action": tru}}"#.into();
    let body = format!("[{}]", elements.join(","));
    platform
        .put_raw("/control/raw/MisbehavingType", &body)
        .await;
    let plugins = plugin_folder(&["misbehaving"]);
    let database = TestDatabase::new(Engine::Sqlite, "malformed").await;
    let summary = run(fetch_config(&platform, &database, plugins.path())).await;
    assert!(summary.completed(), "{summary:?}");
    assert_eq!((summary.inserted, summary.failed), (99, 1));
    let kept = database
        .strings("SELECT document FROM batch_job_failed_documents")
        .await;
    assert_eq!(kept, [elements[50].clone()], "kept byte for byte");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_window_is_given_up_after_three_attempts_and_catch_up_moves_on() {
    let platform = FakePlatform::start();
    let good: Vec<String> = ok_documents("u", 10, T0 - 60, 1)
        .iter()
        .map(Value::to_string)
        .collect();
    // An unterminated string: nothing after it can be found.
    let body = format!(
        "[{},{{\"id\":\"broken\",\"data\":\"never ends",
        good.join(",")
    );
    platform
        .put_raw("/control/raw/MisbehavingType", &body)
        .await;
    let plugins = plugin_folder(&["misbehaving"]);
    let database = TestDatabase::new(Engine::Sqlite, "given_up").await;
    let mut config = fetch_config(&platform, &database, plugins.path());
    config.run.windows = WindowPlan::CatchUp(CatchUp::at(T0));
    for attempt in 1..=3 {
        let summary = run(config.clone()).await;
        assert!(!summary.completed(), "attempt {attempt}");
        assert_eq!(
            summary.inserted + summary.duplicates,
            10,
            "attempt {attempt}"
        );
    }
    let statuses = database
        .strings("SELECT status FROM batch_job_runs ORDER BY started_at, rowid")
        .await;
    assert_eq!(statuses, ["failed", "failed", "abandoned"]);
    let source_letters = database
        .strings("SELECT document FROM batch_job_failed_documents WHERE stage = 'source'")
        .await;
    assert_eq!(source_letters, ["{\"id\":\"broken\",\"data\":\"never ends"]);
    // The next run starts after the given-up window instead of failing on it again.
    platform.put_raw("/control/raw/MisbehavingType", "[]").await;
    let mut later = config.clone();
    later.run.windows = WindowPlan::CatchUp(CatchUp::at(T0 + 3600));
    assert!(run(later).await.completed());
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_echoed_by_a_server_are_scrubbed_from_everything_kept() {
    let platform = FakePlatform::start();
    platform
        .put("/control/faults", &json!({"api_500_echo": 1_000}))
        .await;
    let plugins = plugin_folder(&["misbehaving"]);
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "echoed_secret").await;
        let summary = run(fetch_config(&platform, &database, plugins.path())).await;
        let text = serde_json::to_string(&summary).unwrap() + &summary.table();
        assert!(text.contains("HTTP 500"), "{text}");
        assert!(!text.contains(FETCH_KEY), "{text}");
        let logged = database
            .strings("SELECT COALESCE(error, '') FROM batch_job_runs")
            .await
            .concat();
        assert!(
            logged.contains("HTTP 500") && !logged.contains(FETCH_KEY),
            "{logged}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_database_port_fails_at_once_with_its_cause() {
    for url in [
        "mysql://root@127.0.0.1:1/test",
        "postgres://postgres@127.0.0.1:1/test",
    ] {
        let started = Instant::now();
        let error = Sink::connect(url).await.unwrap_err();
        let chain = batch_job_aurora::error::chain(&error);
        assert!(chain.contains("refused"), "{chain}");
        assert!(started.elapsed() < Duration::from_secs(20), "{url}");
    }
}

#[test]
fn memory_follows_the_bytes_in_flight_not_the_size_of_documents() {
    // 16 documents of 20 MB each: with lanes bounded by a count of documents they were all in
    // memory at once, several times over.
    let folder = tempfile::tempdir().unwrap();
    let source = folder.path().join("big.json");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        file.write_all(b"[").unwrap();
        let padding = "x".repeat(20 << 20);
        for i in 0..16 {
            if i > 0 {
                file.write_all(b",").unwrap();
            }
            write!(
                file,
                r#"{{"id":"big{i:03}","timestamp":{T0},"type":"MisbehavingType","data":{{"action":"ok","padding":"{padding}"}}}}"#
            )
            .unwrap();
        }
        file.write_all(b"]").unwrap();
    }
    let plugins = plugin_folder(&["misbehaving"]);
    let database = folder.path().join("big.db");
    let mut child = std::process::Command::new(crate::cli::binary())
        .args(["run", "--json", "--source"])
        .arg(format!("file:{}", source.display()))
        .arg("--database")
        .arg(format!("sqlite://{}", database.display()))
        .arg("--plugins")
        .arg(plugins.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak_kib = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let hwm = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["inserted"], 16);
    assert!(
        peak_kib < 300 * 1024,
        "peak RSS {} MiB for 16 × 20 MB documents",
        peak_kib / 1024
    );
}
