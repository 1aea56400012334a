//! `status`, the coverage view, through the real binary on every engine: run logs written by
//! hand (overlapping windows, holes, failed, abandoned, interrupted and expired windows, a
//! replay, several plugin versions) give exactly the spans expected, with and without the
//! columns later versions add; and `status` changes nothing. Also the run's progress display:
//! summary lines in a log, bars on a terminal.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::cli::binary;
use crate::support::{ENGINES, Engine, TestDatabase, plugin_folder, workspace_root};

const H: i64 = 3600;
/// 2025-12-01 00:00:00 UTC.
const T0: i64 = 1_764_547_200;
const NOW: i64 = T0 + 24 * H;

fn status(url: &str, extra: &[&str]) -> Output {
    Command::new(binary())
        .args(["status", "--database", url])
        .args(extra)
        .env("BATCH_JOB_AURORA_NOW", NOW.to_string())
        .env_remove("DATAPLATTFORM_AURORA_HOST")
        .output()
        .unwrap()
}

/// One run-log row: (run, type, window, scheduled, status, error, done_until, expires_at,
/// plugin version).
type Row = (
    &'static str,
    &'static str,
    Option<(i64, i64)>,
    bool,
    &'static str,
    Option<&'static str>,
    Option<i64>,
    Option<i64>,
    Option<&'static str>,
);

fn run_log() -> Vec<Row> {
    let g = "GithubType";
    let s = "SlackType";
    vec![
        (
            "g1",
            g,
            Some((T0, T0 + H - 1)),
            true,
            "succeeded",
            None,
            None,
            None,
            Some("1.0.0"),
        ),
        // Overlaps g1 by ten minutes.
        (
            "g2",
            g,
            Some((T0 + H - 600, T0 + 2 * H - 1)),
            true,
            "succeeded",
            None,
            None,
            None,
            Some("1.0.0"),
        ),
        (
            "g3",
            g,
            Some((T0 + 2 * H - 600, T0 + 3 * H - 1)),
            true,
            "failed",
            Some("plugin trapped: unreachable"),
            None,
            None,
            Some("1.1.0"),
        ),
        (
            "g4",
            g,
            Some((T0 + 3 * H - 600, T0 + 4 * H - 1)),
            true,
            "succeeded",
            None,
            None,
            None,
            Some("1.1.0"),
        ),
        (
            "g5",
            g,
            Some((T0 + 4 * H - 600, T0 + 5 * H - 1)),
            true,
            "abandoned",
            Some("the body lost its structure"),
            None,
            None,
            Some("1.1.0"),
        ),
        // Stopped part-way: loaded up to its finished sub-windows.
        (
            "g6",
            g,
            Some((T0 + 5 * H - 600, T0 + 8 * H - 1)),
            true,
            "interrupted",
            Some("SIGTERM"),
            Some(T0 + 6 * H - 1),
            None,
            Some("1.1.0"),
        ),
        // A backfill shard, by hand.
        (
            "g7",
            g,
            Some((T0 + 9 * H, T0 + 10 * H - 1)),
            false,
            "succeeded",
            None,
            None,
            None,
            Some("1.1.0"),
        ),
        // Still `running` long after its expiry: its process died.
        (
            "g8",
            g,
            Some((T0 + 10 * H, T0 + 11 * H - 1)),
            true,
            "running",
            None,
            None,
            Some(T0 + 11 * H),
            Some("1.1.0"),
        ),
        // A replay: no window, no span.
        (
            "g-replay",
            g,
            None,
            false,
            "succeeded",
            None,
            None,
            None,
            None,
        ),
        (
            "s1",
            s,
            Some((T0, T0 + H - 1)),
            true,
            "succeeded",
            None,
            None,
            None,
            Some("2.0.0"),
        ),
        // Slack was down: documents failed, but the window was read and accounted for.
        (
            "s2",
            s,
            Some((T0 + H, T0 + 2 * H - 1)),
            true,
            "succeeded",
            None,
            None,
            None,
            Some("2.0.0"),
        ),
        // Under way now.
        (
            "s3",
            s,
            Some((T0 + 2 * H, T0 + 3 * H - 1)),
            true,
            "running",
            None,
            None,
            Some(NOW + H),
            Some("2.0.0"),
        ),
    ]
}

fn sql_text(value: Option<&str>) -> String {
    value.map_or("NULL".into(), |text| format!("'{text}'"))
}

fn sql_number(value: Option<i64>) -> String {
    value.map_or("NULL".into(), |n| n.to_string())
}

/// The bookkeeping tables as the job makes them, with `later_columns` also the columns of
/// replays and versions, filled with the run log above and dead letters.
async fn prepare(engine: Engine, name: &str, later_columns: bool) -> TestDatabase {
    let database = TestDatabase::new(engine, name).await;
    batch_job_aurora::sink::Sink::connect(&database.url)
        .await
        .unwrap()
        .close()
        .await;
    // The job makes the tables with the later columns; an older database lacks them.
    if !later_columns {
        database
            .execute(
                "ALTER TABLE batch_job_runs DROP COLUMN plugin_version; \
                 ALTER TABLE batch_job_runs DROP COLUMN plugin_sha256; \
                 ALTER TABLE batch_job_failed_documents DROP COLUMN replay_outcome",
            )
            .await;
    }
    let mut statements = Vec::new();
    for (run, type_name, window, scheduled, status, error, done_until, expires_at, version) in
        run_log()
    {
        let started = window.map_or(T0 + 12 * H, |(_, to)| to + 60);
        let finished = (status != "running").then_some(started + 5);
        let (version_columns, version_values) = if later_columns {
            (
                ", plugin_version, plugin_sha256",
                format!(
                    ", {}, {}",
                    sql_text(version),
                    sql_text(version.map(|v| if v == "1.0.0" { "aa11" } else { "bb22" }))
                ),
            )
        } else {
            ("", String::new())
        };
        statements.push(format!(
            "INSERT INTO batch_job_runs (run_id, type_name, window_from, window_to, scheduled, \
             status, inserted, duplicates, refused, failed, error, started_at, finished_at, \
             done_until, expires_at{version_columns}) VALUES ('{run}', '{type_name}', {}, {}, \
             {}, '{status}', 10, 1, 0, {}, {}, {started}, {}, {}, {}{version_values})",
            sql_number(window.map(|w| w.0)),
            sql_number(window.map(|w| w.1)),
            if scheduled { "TRUE" } else { "FALSE" },
            if run == "s2" { 3 } else { 0 },
            sql_text(error),
            sql_number(finished),
            sql_number(done_until),
            sql_number(expires_at.or(Some(started + H))),
        ));
    }
    // Dead letters: (type, stage, replay outcome).
    let letters = [
        ("SlackType", "plugin", None),
        ("SlackType", "plugin", None),
        ("SlackType", "plugin", None),
        ("SlackType", "plugin", Some("stored")),
        ("SlackType", "plugin", Some("failed")),
        ("GithubType", "sink", None),
        ("GithubType", "envelope", None),
    ];
    for (i, (type_name, stage, outcome)) in letters.into_iter().enumerate() {
        let (column, value) = if later_columns {
            (", replay_outcome", format!(", {}", sql_text(outcome)))
        } else {
            ("", String::new())
        };
        statements.push(format!(
            "INSERT INTO batch_job_failed_documents (run_id, type_name, document_id, timestamp, \
             stage, error, document{column}) VALUES ('x', '{type_name}', 'doc{i}', {}, '{stage}', \
             'Slack answered 500', '{{}}'{value})",
            T0 + i64::try_from(i).unwrap()
        ));
    }
    database.execute(&statements.join("; ")).await;
    database
}

/// Everything `status` could change: the schema and the bookkeeping rows.
async fn snapshot(database: &TestDatabase) -> Vec<String> {
    let schema = match database.engine {
        Engine::Sqlite => "SELECT name || ':' || sql FROM sqlite_master ORDER BY 1",
        Engine::Mysql => {
            "SELECT CAST(CONCAT(TABLE_NAME, '.', COLUMN_NAME, ':', COLUMN_TYPE) AS CHAR) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1"
        }
        Engine::Postgres => {
            "SELECT table_name || '.' || column_name || ':' || data_type \
             FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1"
        }
    };
    let mut snapshot = database.strings(schema).await;
    snapshot.extend(
        database
            .strings(
                "SELECT CONCAT(run_id, ' ', type_name, ' ', status, ' ', \
                 COALESCE(CAST(done_until AS CHAR(20)), '-')) FROM batch_job_runs ORDER BY 1",
            )
            .await,
    );
    snapshot.push(
        database
            .count("SELECT COUNT(*) FROM batch_job_failed_documents")
            .await
            .to_string(),
    );
    snapshot
}

fn failed(windows: &Value) -> Vec<(i64, i64, String, bool)> {
    windows
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["from"].as_i64().unwrap(),
                w["to"].as_i64().unwrap(),
                w["status"].as_str().unwrap().to_owned(),
                w["loaded_since"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn status_shows_exact_spans_and_changes_nothing_on_every_engine() {
    for engine in ENGINES {
        for later_columns in [false, true] {
            let case = format!("{engine:?}, later columns: {later_columns}");
            let name = format!("status_{}", u8::from(later_columns));
            let database = prepare(engine, &name, later_columns).await;
            let before = snapshot(&database).await;

            let output = status(&database.url, &["--json"]);
            assert!(
                output.status.success(),
                "{case}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let report: Value = serde_json::from_slice(&output.stdout).unwrap();
            let github = &report["types"]["GithubType"];
            assert_eq!(
                github["loaded"],
                json!([
                    [T0, T0 + 2 * H - 1],
                    [T0 + 3 * H - 600, T0 + 6 * H - 1],
                    [T0 + 9 * H, T0 + 10 * H - 1]
                ]),
                "{case}"
            );
            assert_eq!(
                github["holes"],
                json!([[T0 + 2 * H, T0 + 3 * H - 601], [T0 + 6 * H, T0 + 9 * H - 1]]),
                "{case}"
            );
            let t = |status: &str| status.to_owned();
            assert_eq!(
                failed(&github["failed_windows"]),
                [
                    (T0 + 2 * H - 600, T0 + 3 * H - 1, t("failed"), false),
                    (T0 + 4 * H - 600, T0 + 5 * H - 1, t("abandoned"), true),
                    (T0 + 5 * H - 600, T0 + 8 * H - 1, t("interrupted"), false),
                    (T0 + 10 * H, T0 + 11 * H - 1, t("interrupted"), false),
                ],
                "{case}"
            );
            assert_eq!(
                github["failed_windows"][0]["error"], "plugin trapped: unreachable",
                "{case}"
            );
            assert_eq!(github["watermark"]["done_until"], T0 + 2 * H - 1, "{case}");
            assert_eq!(github["dead_letters"], 2, "{case}");
            assert_eq!(
                github["dead_letters_by_stage"],
                json!({"envelope": 1, "sink": 1}),
                "{case}"
            );
            assert_eq!(github["last_success"]["run_id"], "g-replay", "{case}");
            assert_eq!(github["last_success"]["window"], Value::Null, "{case}");

            let slack = &report["types"]["SlackType"];
            assert_eq!(slack["loaded"], json!([[T0, T0 + 2 * H - 1]]), "{case}");
            assert_eq!(slack["holes"], json!([]), "{case}");
            assert_eq!(slack["failed_windows"], json!([]), "{case}");
            assert_eq!(slack["running"][0]["run_id"], "s3", "{case}");
            assert_eq!(slack["last_success"]["run_id"], "s2", "{case}");
            assert_eq!(slack["last_success"]["failed"], 3, "{case}");

            if later_columns {
                let versions: Vec<(Value, Value)> = github["plugin_versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| (v["version"].clone(), v["loaded"].clone()))
                    .collect();
                assert_eq!(
                    versions,
                    [
                        (json!("1.0.0"), json!([[T0, T0 + 2 * H - 1]])),
                        (
                            json!("1.1.0"),
                            json!([
                                [T0 + 3 * H - 600, T0 + 6 * H - 1],
                                [T0 + 9 * H, T0 + 10 * H - 1]
                            ])
                        ),
                    ],
                    "{case}"
                );
                assert_eq!(github["plugin_versions"][0]["sha256"], "aa11", "{case}");
                assert_eq!(slack["dead_letters"], 4, "{case}");
                assert_eq!(
                    slack["replayed"],
                    json!({"failed": 1, "stored": 1}),
                    "{case}"
                );
            } else {
                assert_eq!(
                    github["plugin_versions"][0]["version"],
                    Value::Null,
                    "{case}"
                );
                assert_eq!(slack["dead_letters"], 5, "{case}");
                assert_eq!(slack["replayed"], json!({}), "{case}");
            }

            // Only the types asked for, from a second on.
            let output = status(
                &database.url,
                &[
                    "--json",
                    "--types",
                    "GithubType",
                    "--since",
                    &(T0 + 4 * H).to_string(),
                ],
            );
            let report: Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(
                report["types"].as_object().unwrap().len(),
                1,
                "{case}: {report}"
            );
            assert_eq!(
                report["types"]["GithubType"]["loaded"],
                json!([[T0 + 4 * H, T0 + 6 * H - 1], [T0 + 9 * H, T0 + 10 * H - 1]]),
                "{case}"
            );

            // The table for people.
            let output = status(&database.url, &[]);
            assert!(output.status.success(), "{case}");
            let table = String::from_utf8(output.stdout).unwrap();
            for expected in [
                "GithubType",
                "holes",
                "2025-12-01 06:00:00 .. 2025-12-01 08:59:59 (3h 0m; --from 1764568800 --to 1764579599)",
                "plugin trapped: unreachable",
                "dead letters  2 waiting (envelope 1, sink 1)",
            ] {
                assert!(table.contains(expected), "{case}: {expected:?} in\n{table}");
            }
            if engine == Engine::Postgres && later_columns {
                println!("status of a real scenario ({case}):\n{table}");
            }

            // Nothing changed: the expired `running` row is still `running`.
            assert_eq!(snapshot(&database).await, before, "{case}");
            assert!(
                before
                    .iter()
                    .any(|row| row.starts_with("g8 GithubType running"))
            );
        }
    }
}

#[tokio::test]
async fn status_without_the_bookkeeping_tables_says_so_and_creates_nothing() {
    // No SQLite file: an error, and still no file.
    let folder = tempfile::tempdir().unwrap();
    let missing = folder.path().join("missing.db");
    let output = status(&format!("sqlite://{}", missing.display()), &[]);
    assert!(!output.status.success());
    assert!(!missing.exists(), "status created the database file");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no database file"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Databases without the tables, on every engine: said, and still without them.
    for engine in ENGINES {
        let database = TestDatabase::new(engine, "status_empty").await;
        database.execute("CREATE TABLE other (id INTEGER)").await;
        let before = snapshot_tables(&database).await;
        let output = status(&database.url, &["--json"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{engine:?}: {stderr}");
        assert!(
            stderr.contains("the database has no table batch_job_runs")
                && stderr.contains("creates nothing"),
            "{engine:?}: {stderr}"
        );
        assert_eq!(snapshot_tables(&database).await, before, "{engine:?}");
    }
}

async fn snapshot_tables(database: &TestDatabase) -> Vec<String> {
    database
        .strings(match database.engine {
            Engine::Sqlite => "SELECT name FROM sqlite_master ORDER BY 1",
            Engine::Mysql => {
                "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1"
            }
            Engine::Postgres => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() ORDER BY 1"
            }
        })
        .await
}

/// The example documents and the arguments of a run over them.
fn example_run(database: &Path, plugins: &Path) -> Vec<String> {
    let examples = workspace_root().join("examples");
    vec![
        "run".into(),
        "-v".into(),
        "--source".into(),
        format!("file:{}", examples.join("documents").display()),
        "--database".into(),
        format!("sqlite://{}", database.display()),
        "--plugins".into(),
        plugins.display().to_string(),
        "--slack-channels".into(),
        format!(
            "file:{}",
            examples.join("lookups/slack-channels.json").display()
        ),
        "--event-codes".into(),
        format!(
            "file:{}",
            examples.join("lookups/event-codes.json").display()
        ),
    ]
}

/// The bytes of the example documents a `file:` source reads.
fn example_bytes() -> u64 {
    std::fs::read_dir(workspace_root().join("examples/documents"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|e| e == "json" || e == "ndjson" || e == "jsonl")
        })
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum()
}

#[test]
fn a_run_in_a_log_prints_summary_lines_at_v() {
    let plugins = plugin_folder(&["github", "slack", "event_rating"]);
    let database = plugins.path().join("progress.db");
    let output = Command::new(binary())
        .args(example_run(&database, plugins.path()))
        .env("BATCH_JOB_AURORA_PROGRESS_INTERVAL_MS", "0")
        .env_remove("DATAPLATTFORM_EVENT_CODE_TABLE")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("progress: "))
        .collect();
    println!("summary lines:\n{}", lines.join("\n"));
    let last = lines.last().expect("no progress line");
    let total = example_bytes();
    let size = if total < 1000 {
        format!("{total} B")
    } else {
        format!("{:.1} kB", total as f64 / 1e3)
    };
    assert!(
        last.starts_with(&format!("read {size} of {size} (100%")),
        "{last}"
    );
    // Each type's documents, counted as they are routed.
    for type_name in ["GithubType", "SlackType", "EventRatingType"] {
        assert!(
            last.contains(&format!("{type_name} ")),
            "{type_name} in {last}"
        );
    }
    // Without -v, a log gets no progress at all.
    let quiet = Command::new(binary())
        .args(
            example_run(&plugins.path().join("quiet.db"), plugins.path())
                .into_iter()
                .filter(|arg| arg != "-v"),
        )
        .env("BATCH_JOB_AURORA_PROGRESS_INTERVAL_MS", "0")
        .env_remove("DATAPLATTFORM_EVENT_CODE_TABLE")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("progress:"));
}

/// Through a pseudo-terminal (`script`): the bars, with the source's percentage and each type's
/// documents per second. The run pauses after its first write (a hidden test flag), so the bars
/// are drawn whatever the machine's speed; the test waits for them, then ends the run.
#[test]
fn a_run_on_a_terminal_draws_bars_per_type() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` for a pseudo-terminal");
        return;
    }
    let plugins = plugin_folder(&["github", "slack", "event_rating"]);
    let database = plugins.path().join("bars.db");
    let mut command = vec![binary().display().to_string()];
    command.extend(example_run(&database, plugins.path()));
    command.retain(|arg| arg != "-v");
    command.extend(["--pause-after-writes".into(), "1".into()]);
    let line = command
        .iter()
        .map(|arg| format!("'{arg}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "200")
        .env_remove("DATAPLATTFORM_EVENT_CODE_TABLE")
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0; 4096];
        while let Ok(read) = stdout.read(&mut buffer) {
            if read == 0 || sender.send(buffer[..read].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = String::new();
    let wanted = ["source", "%", "ETA", "GithubType", "docs/s", "paused"];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !wanted.iter().all(|text| screen.contains(text)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match receiver.recv_timeout(left) {
            Ok(bytes) => screen.push_str(&String::from_utf8_lossy(&bytes)),
            Err(_) => break,
        }
    }
    // Ctrl-C through the terminal ends the paused run (SIGINT); kill is the fallback.
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        let _ = stdin.write_all(b"\x03");
        let _ = stdin.flush();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Ok(bytes) =
            receiver.recv_timeout(until.saturating_duration_since(std::time::Instant::now()))
        {
            screen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let plain = strip_ansi(&screen);
    println!("the bars, as drawn:\n{plain}");
    for text in wanted {
        assert!(plain.contains(text), "{text:?} not drawn:\n{plain}");
    }
}

fn strip_ansi(text: &str) -> String {
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            plain.push(c);
        }
    }
    plain
}
