//! The sinks against real MariaDB, PostgreSQL and SQLite: the old DDL, exact duplicate counts,
//! schema evolution and conflicts, values never changed silently, and gap-free catch-up.

use batch_job_aurora::model::{Cell, Column, ColumnType, Row};
use batch_job_aurora::sink::{Sink, SinkError, TableSpec};
use batch_job_aurora::window::CatchUp;
use batch_job_aurora::window::WindowPlan;
use serde_json::{Value, json};

use crate::support::{
    ENGINES, Engine, TestDatabase, config_for, ndjson, ok_documents, plugin_folder, run,
    workspace_root,
};

/// The table the old Python job created, by hand, per engine.
fn old_github_ddl(engine: Engine) -> &'static str {
    match engine {
        Engine::Mysql => {
            "CREATE TABLE GithubType (id VARCHAR(24) NOT NULL, timestamp BIGINT NOT NULL,
             repository_name TEXT, github_username TEXT, commit_id TEXT, commit_timestamp TEXT,
             stargazers_count INT, language TEXT, forks_count INT, open_issues_count INT, ref TEXT,
             PRIMARY KEY (id))"
        }
        _ => {
            "CREATE TABLE \"GithubType\" (id VARCHAR(24) NOT NULL PRIMARY KEY, timestamp BIGINT NOT NULL,
             repository_name TEXT, github_username TEXT, commit_id TEXT, commit_timestamp TEXT,
             stargazers_count INT, language TEXT, forks_count INT, open_issues_count INT, ref TEXT)"
        }
    }
}

/// GitHub push documents from a real payload, with the given ids.
fn pushes(ids: &[&str]) -> Vec<Value> {
    let payload = workspace_root()
        .join("tests/data/fixtures/github-webhooks/push/with-new-branch.payload.json");
    let data: Value = serde_json::from_str(&std::fs::read_to_string(payload).unwrap()).unwrap();
    ids.iter()
        .enumerate()
        .map(|(i, id)| json!({"id": id, "timestamp": 1_700_000_000 + i as i64, "type": "GithubType", "data": data}))
        .collect()
}

fn counts(summary: &batch_job_aurora::RunSummary, type_name: &str) -> (u64, u64, u64, u64) {
    let t = &summary.types[type_name];
    (t.inserted, t.duplicates, t.refused, t.failed)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_old_ddl_is_accepted_and_duplicates_are_counted_exactly() {
    let plugins = plugin_folder(&["github"]);
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "old_ddl").await;
        database.execute(old_github_ddl(engine)).await;
        let (_first_folder, first) = ndjson(&pushes(&[
            "AAAAAAAAAAAAAAAAAAAAAA==",
            "AAAAAAAAAAAAAAAAAAAAAQ==",
        ]));
        let summary = run(config_for(&first, &database, plugins.path())).await;
        assert_eq!(counts(&summary, "GithubType"), (2, 0, 0, 0), "{engine:?}");

        // Two stored, three new, and one new id twice in the same batch.
        let (_second_folder, second) = ndjson(&pushes(&[
            "AAAAAAAAAAAAAAAAAAAAAA==",
            "AAAAAAAAAAAAAAAAAAAAAg==",
            "AAAAAAAAAAAAAAAAAAAAAQ==",
            "AAAAAAAAAAAAAAAAAAAAAw==",
            "AAAAAAAAAAAAAAAAAAAABA==",
            "AAAAAAAAAAAAAAAAAAAABA==",
        ]));
        let summary = run(config_for(&second, &database, plugins.path())).await;
        assert_eq!(counts(&summary, "GithubType"), (3, 3, 0, 0), "{engine:?}");
        assert_eq!(
            database.count_rows("GithubType", "1 = 1").await,
            5,
            "{engine:?}"
        );
        assert_eq!(
            database
                .count_rows("GithubType", "repository_name = 'Codertocat/Hello-World'")
                .await,
            5,
            "{engine:?}"
        );
        // The run log holds each run's own counts.
        let logged = "SELECT SUM(inserted) * 100 + SUM(duplicates) FROM batch_job_runs WHERE status = 'succeeded'";
        assert_eq!(database.count(logged).await, 503, "{engine:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_columns_are_added_and_extra_columns_are_left_alone() {
    let plugins = plugin_folder(&["github"]);
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "evolve").await;
        database
            .execute(&format!(
                "CREATE TABLE {} (id VARCHAR(24) NOT NULL PRIMARY KEY, timestamp BIGINT NOT NULL, repository_name TEXT, dashboard_note TEXT)",
                database.quote("GithubType")
            ))
            .await;
        let (_folder, source) = ndjson(&pushes(&["AAAAAAAAAAAAAAAAAAAAAA=="]));
        let summary = run(config_for(&source, &database, plugins.path())).await;
        assert_eq!(counts(&summary, "GithubType"), (1, 0, 0, 0), "{engine:?}");
        assert_eq!(
            database
                .count_rows(
                    "GithubType",
                    "ref = 'refs/heads/master' AND dashboard_note IS NULL"
                )
                .await,
            1,
            "{engine:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incompatible_column_stops_that_type_only_and_writes_nothing() {
    let plugins = plugin_folder(&["github", "misbehaving"]);
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "conflict").await;
        database
            .execute(&format!(
                "CREATE TABLE {} (id VARCHAR(24) NOT NULL PRIMARY KEY, timestamp BIGINT NOT NULL, stargazers_count TEXT)",
                database.quote("GithubType")
            ))
            .await;
        let mut documents = pushes(&["AAAAAAAAAAAAAAAAAAAAAA=="]);
        documents.extend(ok_documents("ok", 3, 1_700_000_000, 1));
        let (_folder, source) = ndjson(&documents);
        let summary = run(config_for(&source, &database, plugins.path())).await;
        let github = &summary.types["GithubType"];
        let error = github.error.as_deref().expect("the type is stopped");
        assert!(
            error.contains("GithubType")
                && error.contains("stargazers_count")
                && error.contains("int"),
            "{engine:?}: {error}"
        );
        assert!(!summary.completed());
        assert_eq!(
            counts(&summary, "MisbehavingType"),
            (3, 0, 0, 0),
            "other types still run"
        );
        assert_eq!(database.count_rows("GithubType", "1 = 1").await, 0);
        // Nothing was added to the refused table either.
        let added = match engine {
            Engine::Sqlite => "SELECT COUNT(*) FROM pragma_table_info('GithubType')".to_owned(),
            Engine::Mysql => "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'GithubType'".to_owned(),
            Engine::Postgres => "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'GithubType'".to_owned(),
        };
        assert_eq!(database.count(&added).await, 3, "{engine:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_identifiers_never_reach_a_database() {
    for name in ["GithubType`; DROP TABLE x; --", "a\"b", "type name", ""] {
        let error = TableSpec::new(name, &[]).unwrap_err();
        assert!(matches!(error, SinkError::UnsafeIdentifier(_)), "{name}");
    }
    let column = Column {
        name: "x; DROP".into(),
        kind: ColumnType::Text,
    };
    assert!(TableSpec::new("GithubType", &[column]).is_err());
}

fn sourced(id: &str, cells: Vec<Cell>) -> Row {
    Row {
        id: id.into(),
        timestamp: 1,
        cells,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn values_the_database_would_change_fail_their_row_not_the_batch() {
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "widths").await;
        let sink = Sink::connect(&database.url).await.unwrap();
        let table = TableSpec::new(
            "Widths",
            &[
                Column {
                    name: "n".into(),
                    kind: ColumnType::Int,
                },
                Column {
                    name: "t".into(),
                    kind: ColumnType::Text,
                },
                Column {
                    name: "f".into(),
                    kind: ColumnType::Float,
                },
            ],
        )
        .unwrap();
        sink.prepare(&table).await.unwrap();
        // MySQL INT is 32-bit: with INSERT IGNORE it would clamp 5e9 to 2147483647 silently.
        let rows = [
            sourced(
                "fits",
                vec![
                    Cell::Int(7),
                    Cell::Text("tab\there\nnewline \\ backslash".into()),
                    Cell::Float(12.34567),
                ],
            ),
            sourced(
                "too-wide",
                vec![Cell::Int(5_000_000_000), Cell::Null, Cell::Null],
            ),
            sourced(
                "fits-too",
                vec![Cell::Null, Cell::Text("ünïcødé".into()), Cell::Null],
            ),
        ];
        let outcome = sink.insert(&table, &rows).await.unwrap();
        let failed: Vec<_> = outcome
            .refused
            .iter()
            .map(|refused| rows[refused.index].id.clone())
            .collect();
        match engine {
            Engine::Mysql => {
                assert_eq!(
                    (outcome.inserted, outcome.duplicates, failed.as_slice()),
                    (2, 0, ["too-wide".to_owned()].as_slice())
                );
                assert!(
                    outcome.refused[0].error.contains("1264"),
                    "{}",
                    outcome.refused[0].error
                );
            }
            // PostgreSQL's BIGINT and SQLite's INTEGER hold it.
            _ => assert_eq!((outcome.inserted, failed.len()), (3, 0), "{engine:?}"),
        }
        assert_eq!(
            database
                .count_rows(
                    "Widths",
                    "n = 7 AND t LIKE 'tab%here%newline%backslash' AND LENGTH(t) = 28"
                )
                .await,
            1,
            "{engine:?}: text round-trips exactly"
        );
        // A float with more decimals than DECIMAL(20,2) is rounded to it, not refused.
        assert_eq!(
            database
                .count_rows("Widths", "f > 12.33 AND f < 12.36")
                .await,
            1,
            "{engine:?}"
        );
        sink.close().await;
    }
}

/// Every string a plugin can return, quotes, backslashes, control characters and all, is
/// stored exactly as it was, in ids too, and nothing in a value can end a statement.
#[tokio::test(flavor = "multi_thread")]
async fn every_text_value_is_stored_exactly() {
    let texts = [
        "",
        "'",
        "''",
        "\\",
        "\\'",
        "it's \\'quoted\\' \"twice\"",
        "'); DROP TABLE Texts; --",
        "\\'); DROP TABLE Texts; --",
        "back\\slash at the end\\",
        "line\nbreak\r\ttab \u{1a} control",
        "_utf8mb4 X'41'",
        "ünïcødé, 漢字 and 🦀 emoji",
        "\u{0}",
    ];
    // Under MySQL's TEXT limit of 65,535 bytes.
    let long = format!("{}\\{}", "'".repeat(30_000), "x".repeat(30_000));
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "texts").await;
        let sink = Sink::connect(&database.url).await.unwrap();
        let table = TableSpec::new(
            "Texts",
            &[Column {
                name: "t".into(),
                kind: ColumnType::Text,
            }],
        )
        .unwrap();
        sink.prepare(&table).await.unwrap();
        let mut rows: Vec<Row> = texts
            .iter()
            .chain([&long.as_str()])
            .enumerate()
            .map(|(index, text)| sourced(&format!("{index:02}"), vec![Cell::Text((*text).into())]))
            .collect();
        rows.push(sourced("q'\\x", vec![Cell::Null]));
        let outcome = sink.insert(&table, &rows).await.unwrap();
        let refused: Vec<&str> = outcome
            .refused
            .iter()
            .map(|refused| rows[refused.index].id.as_str())
            .collect();
        // PostgreSQL's text cannot hold a NUL: that row alone is refused there.
        let nul = format!("{:02}", texts.len() - 1);
        match engine {
            Engine::Postgres => assert_eq!(refused, [nul.as_str()], "{engine:?}"),
            _ => assert!(refused.is_empty(), "{engine:?}: {:?}", outcome.refused),
        }
        // The ids sort alike on every engine: two digits, then a letter.
        let stored = database
            .strings(&format!(
                "SELECT COALESCE(t, '') FROM {} ORDER BY {}",
                database.quote("Texts"),
                database.quote("id")
            ))
            .await;
        let expected: Vec<String> = rows
            .iter()
            .filter(|row| !refused.contains(&row.id.as_str()))
            .map(|row| match &row.cells[0] {
                Cell::Text(text) => text.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(stored, expected, "{engine:?}");
        let ids = database
            .strings(&format!(
                "SELECT {} FROM {} WHERE t IS NULL",
                match engine {
                    Engine::Mysql => "CAST(id AS CHAR)",
                    _ => "id",
                },
                database.quote("Texts")
            ))
            .await;
        assert_eq!(ids, ["q'\\x"], "{engine:?}");
        // And again: every one of them is a duplicate of itself.
        let outcome = sink.insert(&table, &rows).await.unwrap();
        assert_eq!(
            outcome.duplicates as usize + outcome.refused.len(),
            rows.len(),
            "{engine:?}"
        );
        sink.close().await;
    }
}

/// Whatever a write's size, and whether its last row is new, stored already or repeated within
/// the write, the counts are exact and every row is stored once.
#[tokio::test(flavor = "multi_thread")]
async fn every_write_size_counts_exactly() {
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "sizes").await;
        let sink = Sink::connect(&database.url).await.unwrap();
        let table = TableSpec::new(
            "Sizes",
            &[Column {
                name: "n".into(),
                kind: ColumnType::Int,
            }],
        )
        .unwrap();
        sink.prepare(&table).await.unwrap();
        let row = |id: String| Row {
            id,
            timestamp: 1,
            cells: vec![Cell::Int(1)],
        };
        let mut stored = 0;
        for size in [1, 2, 3, 4, 5, 7, 10, 17, 40, 151, 2_001, 4_567] {
            // Even rows new, odd rows stored by the write before (its second half): the last
            // row is new in one size and stored in the next.
            let ids: Vec<String> = (0..size)
                .map(|i| match i % 2 {
                    0 => format!("{size}-{i}"),
                    _ => format!("old-{size}-{i}"),
                })
                .collect();
            let old: Vec<Row> = ids
                .iter()
                .filter(|id| id.starts_with("old-"))
                .map(|id| row(id.clone()))
                .collect();
            let outcome = sink.insert(&table, &old).await.unwrap();
            assert_eq!(outcome.inserted, old.len() as u64, "{engine:?} {size}");
            let rows: Vec<Row> = ids.iter().map(|id| row(id.clone())).collect();
            let outcome = sink.insert(&table, &rows).await.unwrap();
            let new = size - old.len();
            assert_eq!(
                (outcome.inserted, outcome.duplicates, outcome.refused.len()),
                (new as u64, old.len() as u64, 0),
                "{engine:?}: {size} rows"
            );
            // The same write with its last row repeated: one more duplicate.
            let mut repeated = rows.clone();
            repeated.push(rows[size - 1].clone());
            let outcome = sink.insert(&table, &repeated).await.unwrap();
            assert_eq!(
                (outcome.inserted, outcome.duplicates),
                (0, size as u64 + 1),
                "{engine:?}: {size} rows and a repeat"
            );
            stored += size;
        }
        assert_eq!(
            database.count_rows("Sizes", "1 = 1").await,
            stored as i64,
            "{engine:?}"
        );
        sink.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn catch_up_loads_every_document_of_a_missed_gap() {
    let plugins = plugin_folder(&["misbehaving"]);
    let hour = 3600;
    let t0 = 1_800_000_000;
    // One document every 5 minutes from two hours before t0 to five hours after.
    let documents = ok_documents("c", 12 * 7 + 1, t0 - 2 * hour, 300);
    let (folder, source) = ndjson(&documents);
    let in_window = |from: i64, to: i64| {
        documents
            .iter()
            .filter(|d| (from..=to).contains(&d["timestamp"].as_i64().unwrap()))
            .count() as u64
    };
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "catchup").await;
        let mut hourly = config_for(&source, &database, plugins.path());
        // The first run has no history: the contract's last 70 minutes.
        hourly.run.windows = WindowPlan::CatchUp(CatchUp::at(t0));
        let first = run(hourly.clone()).await;
        assert_eq!(first.inserted, in_window(t0 - 70 * 60, t0), "{engine:?}");
        // Three hourly runs are missed; the fourth catches up from t0 - 10 minutes.
        hourly.run.windows = WindowPlan::CatchUp(CatchUp::at(t0 + 4 * hour));
        let caught_up = run(hourly.clone()).await;
        assert_eq!(
            caught_up.duplicates,
            in_window(t0 - 10 * 60, t0),
            "{engine:?}"
        );
        assert_eq!(
            database.count_rows("MisbehavingType", "1 = 1").await as u64,
            in_window(t0 - 70 * 60, t0 + 4 * hour),
            "{engine:?}: no hole"
        );
        // A first run that failed (its file cut off) leaves no hole either: the next run starts
        // where the failed one did.
        let database = TestDatabase::new(engine, "catchup_failed_first").await;
        let cut = folder.path().join("cut.json");
        let array = serde_json::to_string(&documents).unwrap();
        std::fs::write(&cut, &array[..array.len() / 2]).unwrap();
        let mut failing = config_for(&cut, &database, plugins.path());
        failing.run.windows = WindowPlan::CatchUp(CatchUp::at(t0));
        assert!(!run(failing).await.completed());
        let mut later = config_for(&source, &database, plugins.path());
        later.run.windows = WindowPlan::CatchUp(CatchUp::at(t0 + 3 * hour));
        run(later).await;
        assert_eq!(
            database.count_rows("MisbehavingType", "1 = 1").await as u64,
            in_window(t0 - 70 * 60, t0 + 3 * hour),
            "{engine:?}: the failed first window is taken again"
        );
        // A window asked for by hand (the contract's example event: 0 to 100000000000) does
        // not move catch-up on, which would otherwise skip everything up to year 5138.
        let database = TestDatabase::new(engine, "catchup_manual").await;
        let mut manual = config_for(&source, &database, plugins.path());
        manual.run.windows = WindowPlan::Fixed(batch_job_aurora::window::Window {
            from: 0,
            to: 100_000_000_000,
        });
        assert!(run(manual).await.completed());
        let mut scheduled = config_for(&source, &database, plugins.path());
        scheduled.run.windows = WindowPlan::CatchUp(CatchUp::at(t0 + 4 * hour));
        run(scheduled).await;
        assert_eq!(
            database
                .count("SELECT MAX(window_from) FROM batch_job_runs WHERE scheduled = TRUE")
                .await,
            t0 + 4 * hour - 70 * 60,
            "{engine:?}"
        );
        // A bounded catch-up takes at most max_span and leaves the rest to the next run.
        let database = TestDatabase::new(engine, "catchup_bounded").await;
        let mut bounded = config_for(&source, &database, plugins.path());
        bounded.run.windows = WindowPlan::CatchUp(CatchUp::at(t0));
        run(bounded.clone()).await;
        let limited = CatchUp {
            max_span_secs: hour,
            ..CatchUp::at(t0 + 4 * hour)
        };
        bounded.run.windows = WindowPlan::CatchUp(limited);
        run(bounded.clone()).await;
        run(bounded.clone()).await;
        assert_eq!(
            database
                .count("SELECT MAX(window_to) FROM batch_job_runs")
                .await,
            t0 - 600 + hour - 600 + hour,
            "{engine:?}: each bounded run moves one span on"
        );
    }
}
