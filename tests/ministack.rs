//! The backfill's state machine executed for real, with no Docker and no AWS: MiniStack 1.5.33
//! (`scripts/ministack.sh`, its own venv) runs `deploy/backfill.asl.json` (Distributed Map, S3
//! `ItemReader`, `MaxConcurrency`, `Retry`, `ToleratedFailurePercentage`) over the real
//! `bootstrap`, zipped with its precompiled plugins and run by MiniStack as a local
//! `provided.al2023` process, against the fake fetch API and a real MariaDB.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lambda::{bootstrap, lambda_plugins};
use crate::support::{
    Engine, FETCH_KEY, FakePlatform, SLACK_TOKEN, TestDatabase, run_python, workspace_root,
};

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600;
const PER_DAY: i64 = 10;
const BUCKET: &str = "backfill-bucket";

struct MiniStack {
    child: Child,
    endpoint: String,
}

impl MiniStack {
    fn start() -> MiniStack {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let child = Command::new(workspace_root().join("scripts/ministack.sh"))
            .env("GATEWAY_PORT", port.to_string())
            // The functions it runs inherit this: their AWS SDK calls come back here.
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "MiniStack did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(2));
        MiniStack { child, endpoint }
    }

    fn driver(&self, args: &[&str]) -> String {
        let script = workspace_root().join("tests/servers/ministack_backfill.py");
        let mut all = vec![script.to_str().unwrap(), &self.endpoint];
        all.extend(args);
        run_python(&all)
    }

    /// A function from `zip` and a state machine over it; returns the machine's ARN.
    fn setup(&self, name: &str, zip: &std::path::Path, env: &Value, timeout: u32) -> String {
        let asl = workspace_root().join("deploy/backfill.asl.json");
        self.driver(&[
            "setup",
            name,
            zip.to_str().unwrap(),
            asl.to_str().unwrap(),
            &env.to_string(),
            &timeout.to_string(),
            "3",
            BUCKET,
        ])
    }

    fn run(&self, machine: &str, input: Value) -> Value {
        serde_json::from_str(&self.driver(&["run", machine, &input.to_string()])).unwrap()
    }
}

impl Drop for MiniStack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The function's zip as `cargo xtask lambda` lays it out: `bootstrap` and `plugins/`.
fn function_zip(folder: &std::path::Path) -> std::path::PathBuf {
    let plugins = lambda_plugins();
    let zip = folder.join("function.zip");
    let script = r#"
import os, sys, zipfile
zip_path, bootstrap, plugins = sys.argv[1:4]
with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo("bootstrap"); info.external_attr = 0o755 << 16
    z.writestr(info, open(bootstrap, "rb").read(), zipfile.ZIP_DEFLATED)
    for name in sorted(os.listdir(plugins)):
        info = zipfile.ZipInfo("plugins/" + name); info.external_attr = 0o644 << 16
        z.writestr(info, open(os.path.join(plugins, name), "rb").read(), zipfile.ZIP_DEFLATED)
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&zip)
        .arg(bootstrap())
        .arg(plugins.path())
        .status()
        .unwrap();
    assert!(status.success());
    zip
}

/// Mixed documents: a GitHub push and a Slack event for every slot of each day.
fn documents(days: std::ops::Range<i64>) -> (Vec<Value>, Vec<Value>) {
    let mut github = Vec::new();
    let mut slack = Vec::new();
    for day in days {
        for i in 0..PER_DAY {
            let timestamp = START + day * DAY + i * (DAY / PER_DAY) + 7;
            github.push(json!({"id": format!("g{day:03}n{i:04}"), "timestamp": timestamp, "type": "GithubType",
                "data": {"head_commit": {"id": format!("c{day}{i}"), "timestamp": "2026-01-01T00:00:00Z"},
                         "repository": {"full_name": "octo/backfill"}, "ref": "refs/heads/main"}}));
            slack.push(json!({"id": format!("s{day:03}n{i:04}"), "timestamp": timestamp, "type": "SlackType",
                "data": {"type": "event_callback", "team_id": "T061EG9R6", "event_time": timestamp,
                         "event": {"type": "message", "channel": "C012AB3CD", "ts": "1.000100"}}}));
        }
    }
    (github, slack)
}

async fn step_one_requests(platform: &FakePlatform, type_name: &str, from: i64) -> usize {
    let wanted = format!("timestamp_from={from}&");
    platform
        .requests()
        .await
        .iter()
        .filter(|request| {
            request["path"] == format!("/get_docs/{type_name}")
                && request["query"].as_str().unwrap().starts_with(&wanted)
        })
        .count()
}

async fn rows_between(database: &TestDatabase, table: &str, days: std::ops::Range<i64>) -> i64 {
    let condition = format!(
        "timestamp BETWEEN {} AND {}",
        START + days.start * DAY,
        START + days.end * DAY - 1
    );
    database.count_rows(table, &condition).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backfill_state_machine_runs_on_ministack_exactly_once_through_retries_and_resumes() {
    let platform = FakePlatform::start();
    let (github, slack) = documents(0..41);
    // Day 40: a shard far too big for one 10 s invocation (see below).
    platform
        .put("/control/documents/GithubType", &json!(github))
        .await;
    platform
        .put("/control/documents/SlackType", &json!(slack))
        .await;
    let database = TestDatabase::new(Engine::Mysql, "ministack").await;
    let folder = tempfile::tempdir().unwrap();
    let zip = function_zip(folder.path());
    let env = json!({
        "DATAPLATTFORM_AURORA_FETCH_API_URL": platform.fetch_url(),
        "DATAPLATTFORM_AURORA_FETCH_KEY": FETCH_KEY,
        "DATAPLATTFORM_AURORA_HOST": "127.0.0.1",
        "DATAPLATTFORM_AURORA_PORT": "3306",
        "DATAPLATTFORM_AURORA_DB_NAME": database.name,
        "DATAPLATTFORM_AURORA_USER": "root",
        "DATAPLATTFORM_AURORA_SLACK_TOKEN": SLACK_TOKEN,
        "DATAPLATTFORM_AURORA_SLACK_API_URL": platform.slack_url(),
        "BATCH_JOB_AURORA_BACKFILL_BUCKET": BUCKET,
        "AWS_EC2_METADATA_DISABLED": "true",
    });
    let ministack = MiniStack::start();
    let machine = ministack.setup("backfill", &zip, &env, 120);
    let types = json!(["GithubType", "SlackType"]);

    // 30 days in 1-day shards, 3 at once; each shard's first hourly part takes a second, so
    // shards overlap (the fake API counts shards in flight by day);
    // GithubType's request for day 5 is refused twice: the Map's Retry (IncompleteRun) takes it.
    platform
        .put(
            "/control/faults",
            &json!({"slow_first_byte": 1, "slow_on_multiple_of": DAY, "in_flight_span": DAY,
                    "fail_window": {"from": START + 5 * DAY, "type": "GithubType", "times": 2}}),
        )
        .await;
    let input = json!({"types": types, "timestamp_from": START, "timestamp_to": START + 30 * DAY - 1, "shard_hours": 24});
    let first = ministack.run(&machine, input);
    assert_eq!(first["status"], "SUCCEEDED", "{first}");
    for table in ["GithubType", "SlackType"] {
        assert_eq!(rows_between(&database, table, 0..30).await, 30 * PER_DAY);
        assert_eq!(
            database
                .count(&format!("SELECT COUNT(DISTINCT id) FROM {table}"))
                .await,
            30 * PER_DAY
        );
    }
    let in_flight: Value = reqwest::get(format!(
        "http://127.0.0.1:{}/control/in_flight",
        platform.port
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let most = in_flight["max"].as_i64().unwrap();
    assert!((1..=3).contains(&most), "{in_flight}");
    let retried = step_one_requests(&platform, "GithubType", START + 5 * DAY).await;
    assert_eq!(retried, 3, "two refused, then loaded");
    // The execution's summary, from the run log: every shard loaded, every row counted once.
    let summary = &first["summary"];
    assert_eq!(summary["shards"], 30, "{first}");
    assert_eq!(summary["loaded_shards"], 30, "{first}");
    assert_eq!(summary["loaded_before"], 0, "{first}");
    assert_eq!(summary["failed_shards"], 0, "{first}");
    assert_eq!(summary["inserted"], 2 * 30 * PER_DAY, "{first}");
    assert_eq!(summary["duplicates"], 0, "{first}");
    eprintln!(
        "30 days: {} s, 30 shards, most in flight {most}, day 5 tried {retried} times",
        first["seconds"]
    );

    // Days 30–39, with GithubType's day 33 refused for ever: the shard exhausts its retries and
    // the execution fails (ToleratedFailurePercentage 0).
    platform
        .put(
            "/control/faults",
            &json!({"fail_window": {"from": START + 33 * DAY, "type": "GithubType", "times": -1}}),
        )
        .await;
    let input = json!({"types": types, "timestamp_from": START + 30 * DAY, "timestamp_to": START + 40 * DAY - 1, "shard_hours": 24});
    let failed = ministack.run(&machine, input.clone());
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["error"], "States.ExceedToleratedFailureThreshold");
    // The summary ran before the execution failed, and names the shard that did not load.
    let summary = &failed["summary"];
    assert_eq!(summary["shards"], 10, "{failed}");
    assert!(summary["failed_shards"].as_i64().unwrap() >= 1, "{failed}");
    let unloaded = summary["unloaded"].as_array().unwrap();
    assert!(
        unloaded
            .iter()
            .any(|shard| shard["timestamp_from"] == START + 33 * DAY
                && shard["types"] == json!(["GithubType"])),
        "{failed}"
    );
    // A new execution of the same input completes the rest and skips what succeeded.
    platform.put("/control/faults", &json!({})).await;
    let loaded_days: Vec<i64> = {
        let mut days = Vec::new();
        for day in 30..40 {
            if rows_between(&database, "GithubType", day..day + 1).await == PER_DAY
                && rows_between(&database, "SlackType", day..day + 1).await == PER_DAY
            {
                days.push(day);
            }
        }
        days
    };
    let before: Vec<usize> = {
        let mut counts = Vec::new();
        for day in &loaded_days {
            counts.push(step_one_requests(&platform, "SlackType", START + day * DAY).await);
        }
        counts
    };
    // The run log keeps whole seconds: the new execution starts in a later second than every
    // run of the failed one finished, so that its summary tells them apart.
    std::thread::sleep(Duration::from_millis(1100));
    let second = ministack.run(&machine, input);
    assert_eq!(second["status"], "SUCCEEDED", "{second}");
    for (day, count) in loaded_days.iter().zip(before) {
        assert_eq!(
            step_one_requests(&platform, "SlackType", START + day * DAY).await,
            count,
            "day {day} was loaded: its shard is skipped without fetching"
        );
    }
    for table in ["GithubType", "SlackType"] {
        assert_eq!(rows_between(&database, table, 30..40).await, 10 * PER_DAY);
    }
    let summary = &second["summary"];
    assert_eq!(summary["loaded_shards"], 10, "{second}");
    assert_eq!(summary["loaded_before"], loaded_days.len(), "{second}");
    assert_eq!(summary["failed_shards"], 0, "{second}");
    eprintln!(
        "resume: failed after {} s, {} days loaded then; the new execution took {} s",
        failed["seconds"],
        loaded_days.len(),
        second["seconds"]
    );

    // Day 40 on a function with a 10 s timeout (a 7 s run deadline), every store body a
    // second: each invocation reads a few hourly parts, answers DeadlineReached, and the Map's
    // Retry continues from its done_until until the day is loaded, exactly once.
    platform
        .put("/control/faults", &json!({"slow_first_byte": 1}))
        .await;
    let mut short_env = env.clone();
    short_env["BATCH_JOB_AURORA_DEADLINE_MARGIN_MS"] = json!("3000");
    let short = ministack.setup("backfill-short", &zip, &short_env, 10);
    let input = json!({"types": ["SlackType"], "timestamp_from": START + 40 * DAY, "timestamp_to": START + 41 * DAY - 1, "shard_hours": 24});
    let long = ministack.run(&short, input);
    assert_eq!(long["status"], "SUCCEEDED", "{long}");
    assert_eq!(rows_between(&database, "SlackType", 40..41).await, PER_DAY);
    let attempts = database
        .count(&format!(
            "SELECT COUNT(*) FROM batch_job_runs WHERE type_name = 'SlackType' AND window_to = {}",
            START + 41 * DAY - 1
        ))
        .await;
    assert!(attempts >= 2, "{attempts} invocations");
    eprintln!(
        "a day too big for one invocation: {attempts} invocations, {} s",
        long["seconds"]
    );
}
