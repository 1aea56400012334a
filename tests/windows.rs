//! Windows, catch-up and the run log, through the real binary: the gap-free rule over every
//! kind of run, a deadline inside an unsorted window, a refused negative overlap, and runs
//! that end by a signal or are killed outright. Faults come at known points (a fetch fault
//! counted per request, a body that stalls after a number of served ones, the writer's pause),
//! and time is the runs' own clock (`--now`), never the machine's speed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::{Value, json};

use crate::cli::binary;
use crate::support::{
    ENGINES, Engine, FETCH_KEY, FakePlatform, TestDatabase, ndjson, ok_documents, plugin_folder,
};

const HOUR: i64 = 3600;
/// The runs' clock: a fixed hour, so that windows are the same on every machine.
const T0: i64 = 1_800_000_000;

/// `batch-job-aurora run` from `source` into `database`, with the MisbehavingType plugin.
fn job(source: &str, database: &TestDatabase, plugins: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .args([
            "run",
            "--json",
            "--source",
            source,
            "--database",
            &database.url,
        ])
        .arg("--plugins")
        .arg(plugins)
        .env("DATAPLATTFORM_AURORA_FETCH_KEY", FETCH_KEY)
        .env_remove("DATAPLATTFORM_EVENT_CODE_TABLE")
        .env_remove("BATCH_JOB_AURORA_NOW")
        .stdin(Stdio::null());
    command
}

/// Runs `command` to its end; its exit code and summary (`{}` when it printed none).
fn finish(command: &mut Command) -> (i32, Value, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    let summary = serde_json::from_slice(&stdout).unwrap_or_else(|_| json!({}));
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    (status.code().unwrap_or(-1), summary, stderr)
}

fn inserted(summary: &Value) -> i64 {
    summary["inserted"].as_i64().unwrap_or(0)
}

/// Starts `command`, which pauses after its first write, and returns once it has.
fn start_paused(command: &mut Command) -> Child {
    let mut child = command
        .args(["--pause-after-writes", "1", "--rows-per-write", "500"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let paused = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line == "paused");
    assert!(paused, "the run ended without pausing");
    // The rest is read too, so that what the run says on its way out finds an open pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Waits for `child` to end, at most a minute (a hung process fails the test instead of
/// hanging it).
fn wait_at_most_a_minute(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("the process did not end within a minute");
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args(["-s", name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn catch_up_failing_for_hours_then_one_ordinary_run_leaves_no_hole() {
    let platform = FakePlatform::start();
    // 300 documents, one every 50 s, from the first catch-up window's start to almost 3 hours
    // after it ends.
    let documents = ok_documents("w", 300, T0 - 70 * 60, 50);
    let plugins = plugin_folder(&["misbehaving"]);
    let source = platform.fetch_url();
    for engine in ENGINES {
        platform
            .put("/control/documents/MisbehavingType", &json!(documents))
            .await;
        let database = TestDatabase::new(engine, "hours_of_failures").await;
        let run = |now: i64, catch_up: bool| {
            let mut command = job(&source, &database, plugins.path());
            command.args(["--now", &now.to_string()]);
            if catch_up {
                command.arg("--catch-up");
            }
            finish(&mut command)
        };
        let (code, _, stderr) = run(T0, true);
        assert_eq!(code, 0, "{engine:?}: {stderr}");
        // Catch-up fails for three hours: every presigned URL has expired, twice.
        for hour in 1..=3 {
            platform.put("/control/faults", &json!({"expire": 2})).await;
            let (code, _, _) = run(T0 + hour * HOUR, true);
            assert_eq!(code, 3, "{engine:?}: hour {hour} was meant to fail");
        }
        platform.put("/control/faults", &json!({})).await;
        // One ordinary run succeeds: the last 70 minutes only.
        let (code, _, stderr) = run(T0 + 3 * HOUR, false);
        assert_eq!(code, 0, "{engine:?}: {stderr}");
        // Catch-up starts where the gap-free part ends (T0, less the overlap), not after the
        // ordinary run.
        let (code, _, stderr) = run(T0 + 3 * HOUR, true);
        assert_eq!(code, 0, "{engine:?}: {stderr}");
        assert_eq!(
            database
                .count(&format!(
                    "SELECT MAX(window_from) FROM batch_job_runs \
                     WHERE status = 'succeeded' AND window_to = {} AND window_from < {T0}",
                    T0 + 3 * HOUR
                ))
                .await,
            T0 - 600,
            "{engine:?}"
        );
        assert_eq!(
            database.count_rows("MisbehavingType", "1 = 1").await,
            300,
            "{engine:?}: every document stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_inside_an_unsorted_window_claims_finished_parts_only_and_catch_up_stores_every_document_once()
 {
    let platform = FakePlatform::start();
    // 600 documents, one every 30 s from T0 - 10 minutes, served in no time order.
    const COUNT: usize = 600;
    let mut documents = ok_documents("u", COUNT, T0 - 600, 30);
    documents.sort_by_key(|document| {
        let i: usize = document["id"].as_str().unwrap()[1..].parse().unwrap();
        (i * 373) % COUNT
    });
    let plugins = plugin_folder(&["misbehaving"]);
    let source = platform.fetch_url();
    for engine in [Engine::Sqlite, Engine::Postgres] {
        platform.put("/control/reset", &json!({})).await;
        platform
            .put("/control/documents/MisbehavingType", &json!(documents))
            .await;
        let database = TestDatabase::new(engine, "unsorted_deadline").await;
        let catch_up = |now: i64, deadline: u64| {
            let mut command = job(&source, &database, plugins.path());
            command.args(["--catch-up", "--now", &now.to_string()]);
            command.args(["--deadline", &deadline.to_string()]);
            finish(&mut command)
        };
        let (code, first, stderr) = catch_up(T0, 60);
        assert_eq!(code, 0, "{engine:?}: {stderr}");
        // Five hours later the window is [T0 - 10 min, T0 + 5 h], read in parts of an hour.
        // The third part's body stalls half-way: the deadline comes inside it, at a known
        // point, after two finished parts.
        platform
            .put("/control/faults", &json!({"stall_after": 2}))
            .await;
        let (code, stopped, stderr) = catch_up(T0 + 5 * HOUR, 5);
        assert_eq!(code, 3, "{engine:?}: {stderr}");
        let error = stopped["types"]["MisbehavingType"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains("deadline"), "{engine:?}: {stopped}");
        let finished_parts_end = T0 - 600 + 2 * HOUR - 1;
        assert_eq!(
            database
                .count("SELECT done_until FROM batch_job_runs WHERE status = 'failed'")
                .await,
            finished_parts_end,
            "{engine:?}: progress is claimed up to the finished parts, not the documents seen"
        );
        let stored = database.count_rows("MisbehavingType", "1 = 1").await;
        let in_parts = database
            .count_rows(
                "MisbehavingType",
                &format!("timestamp <= {finished_parts_end}"),
            )
            .await;
        assert_eq!(in_parts, 240, "{engine:?}: both finished parts are stored");
        // The half-read third part's documents wait in a batch that is not full yet (a
        // finished part hands its batch on at once); the deadline starts no plugin call, so
        // they are not stored now, and, since nothing past the finished parts is claimed,
        // catch-up reads them again below.
        assert_eq!(
            stored, in_parts,
            "{engine:?}: nothing of the half-read part is stored"
        );
        platform.put("/control/release", &json!({})).await;
        platform.put("/control/faults", &json!({})).await;
        // Catch-up runs until it completes; every document is then stored exactly once.
        let mut total = inserted(&first) + inserted(&stopped);
        let mut runs = 0;
        loop {
            runs += 1;
            assert!(runs <= 3, "{engine:?}: catch-up never completed");
            let (code, summary, stderr) = catch_up(T0 + 5 * HOUR, 60);
            total += inserted(&summary);
            if code == 0 {
                break;
            }
            assert_eq!(code, 3, "{engine:?}: {stderr}");
        }
        assert_eq!(
            total, COUNT as i64,
            "{engine:?}: each document inserted once"
        );
        assert_eq!(
            database.count_rows("MisbehavingType", "1 = 1").await,
            COUNT as i64,
            "{engine:?}"
        );
    }
}

#[test]
fn a_negative_overlap_or_an_empty_catch_up_span_is_refused_like_a_bad_flag() {
    let refused: [&[&str]; 3] = [
        &["--overlap-minutes=-5"],
        &["--max-catch-up-hours", "0"],
        &["--max-catch-up-hours=-3"],
    ];
    for flags in refused {
        let output = Command::new(binary())
            .args(["run", "--catch-up", "--source", "file:/nonexistent"])
            .args(["--database", "sqlite:///nonexistent/never.db"])
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        let flag = flags[0].split('=').next().unwrap();
        assert!(stderr.contains(flag), "{flags:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_and_sigint_log_the_run_as_interrupted_and_the_next_run_stores_the_rest() {
    const COUNT: usize = 6_000;
    let (_folder, path) = ndjson(&ok_documents("s", COUNT, T0 - 60, 0));
    let source = format!("file:{}", path.display());
    let plugins = plugin_folder(&["misbehaving"]);
    for engine in [Engine::Sqlite, Engine::Postgres] {
        for (name, code) in [("TERM", 143), ("INT", 130)] {
            let database = TestDatabase::new(engine, "signalled").await;
            let mut paused = start_paused(&mut job(&source, &database, plugins.path()));
            signal(&paused, name);
            let status = wait_at_most_a_minute(&mut paused);
            assert_eq!(status.code(), Some(code), "{engine:?} SIG{name}");
            let logged = database
                .strings("SELECT status || ': ' || COALESCE(error, '') FROM batch_job_runs")
                .await;
            assert_eq!(logged.len(), 1, "{engine:?} SIG{name}: {logged:?}");
            assert!(
                logged[0].starts_with(&format!("interrupted: interrupted by SIG{name}")),
                "{engine:?}: {logged:?}"
            );
            let (exit, _, stderr) = finish(&mut job(&source, &database, plugins.path()));
            assert_eq!(exit, 0, "{engine:?}: {stderr}");
            assert_eq!(
                database.count_rows("MisbehavingType", "1 = 1").await,
                COUNT as i64,
                "{engine:?} SIG{name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_outright_is_taken_as_interrupted_once_past_its_deadline_and_margin() {
    let (_folder, path) = ndjson(&ok_documents("k", 3_000, T0 - 60, 0));
    let source = format!("file:{}", path.display());
    let plugins = plugin_folder(&["misbehaving"]);
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let database = TestDatabase::new(engine, "killed_outright").await;
        let catch_up = |now: i64| {
            let mut command = job(&source, &database, plugins.path());
            command.args(["--catch-up", "--deadline", "30", "--now", &now.to_string()]);
            command
        };
        let mut process = start_paused(&mut catch_up(T0));
        process.kill().unwrap();
        process.wait().unwrap();
        let killed = format!("SELECT status FROM batch_job_runs WHERE started_at = {T0}");
        let killed_status = || database.strings(&killed);
        assert_eq!(killed_status().await, ["running"], "{engine:?}");
        // The row holds the longest the run could last: its deadline plus the margin.
        let expires_at = database
            .count(&format!(
                "SELECT expires_at FROM batch_job_runs WHERE started_at = {T0}"
            ))
            .await;
        assert!(
            (T0 + 600..=T0 + 630).contains(&expires_at),
            "{engine:?}: {expires_at}"
        );
        // A minute later it may still be running somewhere: left alone.
        let (code, _, stderr) = finish(&mut catch_up(T0 + 60));
        assert_eq!(code, 0, "{engine:?}: {stderr}");
        assert_eq!(killed_status().await, ["running"], "{engine:?}");
        // Past its deadline and margin it cannot be: taken as interrupted.
        let (code, _, stderr) = finish(&mut catch_up(T0 + 631));
        assert_eq!(code, 0, "{engine:?}: {stderr}");
        assert_eq!(killed_status().await, ["interrupted"], "{engine:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_log_made_by_an_older_version_gets_the_new_columns_and_its_stale_rows_end() {
    let (_folder, path) = ndjson(&ok_documents("o", 10, T0 - 60, 1));
    let source = format!("file:{}", path.display());
    let plugins = plugin_folder(&["misbehaving"]);
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let database = TestDatabase::new(engine, "old_run_log").await;
        database
            .execute(
                "CREATE TABLE batch_job_runs (run_id TEXT NOT NULL, type_name TEXT NOT NULL, \
                 window_from BIGINT, window_to BIGINT, scheduled BOOLEAN NOT NULL DEFAULT FALSE, \
                 status TEXT NOT NULL, inserted BIGINT NOT NULL DEFAULT 0, \
                 duplicates BIGINT NOT NULL DEFAULT 0, refused BIGINT NOT NULL DEFAULT 0, \
                 failed BIGINT NOT NULL DEFAULT 0, error TEXT, started_at BIGINT NOT NULL, \
                 finished_at BIGINT, PRIMARY KEY (run_id, type_name)); \
                 INSERT INTO batch_job_runs (run_id, type_name, status, started_at) \
                 VALUES ('killed-long-ago', 'MisbehavingType', 'running', 1000)",
            )
            .await;
        let mut command = job(&source, &database, plugins.path());
        command.args(["--catch-up", "--now", &T0.to_string()]);
        let (code, summary, stderr) = finish(&mut command);
        assert_eq!(code, 0, "{engine:?}: {stderr}");
        assert_eq!(inserted(&summary), 10, "{engine:?}");
        assert_eq!(
            database
                .count("SELECT COUNT(*) FROM batch_job_runs WHERE expires_at IS NOT NULL AND done_until IS NULL")
                .await,
            1,
            "{engine:?}"
        );
        assert_eq!(
            database
                .strings("SELECT status FROM batch_job_runs WHERE run_id = 'killed-long-ago'")
                .await,
            ["interrupted"],
            "{engine:?}"
        );
    }
}
