//! Backfill: the plan as the Lambda answers it (inline, or through S3 when larger than Step
//! Functions takes), a shard that skips what is loaded, a shard stopped at its deadline that
//! continues where it stopped (`DeadlineReached`), and the local `backfill --parallel 3`
//! killed with -9 mid-way and resumed, every document stored once.

use std::io::BufRead;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::cli::binary;
use crate::lambda::{Bootstrap, RuntimeApi, body, error, lambda_env, lambda_plugins};
use crate::support::{Engine, FETCH_KEY, FakePlatform, Moto, TestDatabase, plugin_folder};

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600;

/// `per_day` MisbehavingType documents on each of `days` days from [`START`], each one row.
fn days_of_documents(days: i64, per_day: i64) -> Vec<Value> {
    (0..days)
        .flat_map(|day| {
            (0..per_day).map(move |i| {
                json!({"id": format!("d{day:03}n{i:05}"), "timestamp": START + day * DAY + i * (DAY / per_day),
                       "type": "MisbehavingType", "data": {"action": "ok"}})
            })
        })
        .collect()
}

/// How many fetch API requests (step 1) the platform saw.
async fn fetches(platform: &FakePlatform) -> Vec<Value> {
    platform
        .requests()
        .await
        .into_iter()
        .filter(|request| {
            request["path"]
                .as_str()
                .is_some_and(|path| path.starts_with("/get_docs/"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_backfill_killed_mid_way_resumes_and_stores_every_document_once() {
    const DAYS: i64 = 30;
    const PER_DAY: i64 = 40;
    let platform = FakePlatform::start();
    platform
        .put(
            "/control/documents/MisbehavingType",
            &json!(days_of_documents(DAYS, PER_DAY)),
        )
        .await;
    let plugins = plugin_folder(&["misbehaving"]);
    let database = TestDatabase::new(Engine::Mysql, "backfill_local").await;
    let backfill = || {
        let mut command = Command::new(binary());
        command
            .args(["backfill", "--types", "MisbehavingType"])
            .args(["--from", &START.to_string()])
            .args(["--to", &(START + DAYS * DAY - 1).to_string()])
            .args(["--shard-hours", "24", "--parallel", "3"])
            .args(["--source", &platform.fetch_url()])
            .args(["--database", &database.url, "--plugins"])
            .arg(plugins.path())
            .args(["--compile-cache", "off"])
            .env("DATAPLATTFORM_AURORA_FETCH_KEY", FETCH_KEY)
            .env_remove("DATAPLATTFORM_AURORA_HOST")
            .stdout(Stdio::piped());
        command
    };
    // Killed with -9 once 10 shards ended: the others that were running are cut wherever
    // they were, and no shard starts after the pause.
    let mut first = backfill()
        .args(["--pause-after-shards", "10"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(first.stderr.take().unwrap());
    let mut first_lines = Vec::new();
    for line in stderr.lines().map_while(Result::ok) {
        let paused = line == "paused";
        first_lines.push(line);
        if paused {
            break;
        }
    }
    assert_eq!(
        first_lines.last().map(String::as_str),
        Some("paused"),
        "{first_lines:#?}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let before = database.count_rows("MisbehavingType", "1 = 1").await;
    assert!(before >= 10 * PER_DAY, "{before} rows before the kill");
    let loaded_lines = first_lines
        .iter()
        .filter(|line| line.contains("MisbehavingType: ") && line.contains(" inserted"))
        .count();
    assert!(loaded_lines >= 10, "{first_lines:#?}");

    let fetched_before = fetches(&platform).await.len();
    let output = backfill().stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let skipped = stderr
        .lines()
        .filter(|line| line.ends_with("MisbehavingType: skipped, loaded already"))
        .count();
    // Every shard that succeeded before the kill is skipped, without a request.
    assert!(skipped >= 10, "{stderr}");
    let fetched = fetches(&platform).await.len() - fetched_before;
    assert_eq!(fetched as i64, DAYS - skipped as i64, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} shards loaded, {skipped} skipped (loaded already), 0 failed",
            DAYS - skipped as i64
        )),
        "{stderr}"
    );
    // Every document exactly once.
    assert_eq!(
        database.count_rows("MisbehavingType", "1 = 1").await,
        DAYS * PER_DAY
    );
    assert_eq!(
        database
            .count("SELECT COUNT(DISTINCT id) FROM MisbehavingType")
            .await,
        DAYS * PER_DAY
    );
    // The plan is the same from `plan --json`.
    let plan = Command::new(binary())
        .args(["plan", "--types", "MisbehavingType", "--json"])
        .args(["--from", &START.to_string()])
        .args(["--to", &(START + DAYS * DAY - 1).to_string()])
        .args(["--shard-hours", "24"])
        .output()
        .unwrap();
    assert!(plan.status.success());
    let shards: Vec<Value> = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(shards.len() as i64, DAYS);
    assert_eq!(
        shards[1],
        json!({"types": ["MisbehavingType"], "timestamp_from": START + DAY,
               "timestamp_to": START + 2 * DAY - 1, "backfill": true})
    );
}

/// Slack events with one row each, at `timestamp`.
fn slack_event(id: String, timestamp: i64) -> Value {
    json!({"id": id, "timestamp": timestamp, "type": "SlackType",
           "data": {"type": "event_callback", "team_id": "T061EG9R6", "event_time": timestamp,
                    "event": {"type": "message", "channel": "C012AB3CD", "ts": "1.000100"}}})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lambda_plans_shards_and_a_shard_resumes_skips_and_reports_its_deadline() {
    let platform = FakePlatform::start();
    // One day of Slack events, 20 an hour.
    let documents: Vec<Value> = (0..24 * 20)
        .map(|i| slack_event(format!("s{i:06}"), START + i * (HOUR / 20)))
        .collect();
    platform
        .put("/control/documents/SlackType", &json!(documents))
        .await;
    let database = TestDatabase::new(Engine::Mysql, "backfill_lambda").await;
    let plugins = lambda_plugins();
    let moto = Moto::start();
    let bucket = "backfill-test";
    let created = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{created:?}");

    // Without a bucket: the plan inline, and one too large for Step Functions refused.
    let runtime = RuntimeApi::start();
    let plain = Bootstrap::start(
        &runtime,
        &lambda_env(&platform, &database, plugins.path(), 3306),
    );
    let small = runtime
        .invoke(
            json!({"plan": {"types": ["SlackType"], "timestamp_from": START,
                                "timestamp_to": START + DAY - 1, "shard_hours": 6}}),
        )
        .await;
    assert_eq!(small["kind"], "response", "{small}");
    assert_eq!(small["body"]["count"], 4);
    assert_eq!(small["body"]["tolerated_failure_percentage"], 0.0);
    assert_eq!(
        small["body"]["shards"][3],
        json!({"types": ["SlackType"], "timestamp_from": START + 18 * HOUR,
               "timestamp_to": START + DAY - 1, "backfill": true})
    );
    let year = json!({"plan": {"types": ["SlackType"], "timestamp_from": START,
                               "timestamp_to": START + 365 * DAY - 1, "shard_hours": 1}});
    let refused = runtime.invoke(year.clone()).await;
    let (kind, message) = error(&refused);
    assert_eq!(kind, "InvalidConfig");
    assert!(
        message.contains("BATCH_JOB_AURORA_BACKFILL_BUCKET"),
        "{message}"
    );
    let bad = runtime
        .invoke(json!({"plan": {"types": ["NoSuchType"], "timestamp_from": 0, "timestamp_to": 1}}))
        .await;
    assert_eq!(error(&bad).0, "UnknownType");
    let bad = runtime
        .invoke(json!({"plan": {"types": ["SlackType"], "timestamp_from": 0, "timestamp_to": 1, "on_existing": "replace"}}))
        .await;
    assert_eq!(error(&bad).0, "InvalidEvent");
    drop(plain);

    // With the bucket: a year of hourly shards (8,760, about 1.1 MB) goes through S3.
    let runtime = RuntimeApi::start();
    let mut env = lambda_env(&platform, &database, plugins.path(), 3306);
    env.extend(moto.env());
    env.push(("BATCH_JOB_AURORA_BACKFILL_BUCKET", bucket.into()));
    let lambda = Bootstrap::start(&runtime, &env);
    let planned = runtime.invoke(year).await;
    assert_eq!(planned["kind"], "response", "{planned}");
    assert_eq!(planned["body"]["count"], 8760);
    assert!(planned["body"].get("shards").is_none(), "{planned}");
    let object = &planned["body"]["shards_object"];
    assert_eq!(object["bucket"], bucket);
    // Read back through boto3 (moto's S3 wants a signed request).
    let read = crate::support::run_python(&[
        "-c",
        "import sys, boto3; print(boto3.client('s3', endpoint_url=sys.argv[1], region_name='eu-central-1', aws_access_key_id='test', aws_secret_access_key='test').get_object(Bucket=sys.argv[2], Key=sys.argv[3])['Body'].read().decode())",
        &moto.endpoint,
        bucket,
        object["key"].as_str().unwrap(),
    ]);
    let stored: Vec<Value> = serde_json::from_str(&read).unwrap();
    assert_eq!(stored.len(), 8760);
    assert_eq!(
        stored[8759],
        json!({"types": ["SlackType"], "timestamp_from": START + 8759 * HOUR,
               "timestamp_to": START + 8760 * HOUR - 1, "backfill": true})
    );

    // A shard of the day before: nothing there; it opens the database and makes the table.
    let shard = |from: i64| json!({"types": ["SlackType"], "timestamp_from": from, "timestamp_to": from + DAY - 1, "backfill": true});
    body(&runtime.invoke(shard(START - DAY)).await);

    // The day's shard, whose store turns slow after its 5th body: read in hourly parts with a
    // deadline, it stops at its deadline after 4 or so parts, and says DeadlineReached.
    let bodies_before = platform
        .requests()
        .await
        .iter()
        .filter(|request| request["path"].as_str().unwrap().starts_with("/store/"))
        .count();
    platform
        .put(
            "/control/faults",
            &json!({"slow_first_byte": 8, "slow_from_body": bodies_before + 5}),
        )
        .await;
    let before = runtime.wait(0).await.len();
    runtime.enqueue(shard(START), 4_000).await;
    let stopped = runtime.wait(before + 1).await.pop().unwrap();
    let (kind, message) = error(&stopped);
    assert_eq!(kind, "DeadlineReached", "{message}");
    let done_until = database
        .count("SELECT CAST(done_until AS SIGNED) FROM batch_job_runs WHERE window_from = 1767225600 AND status = 'failed'")
        .await;
    assert!(
        (START + HOUR - 1..START + DAY - 1).contains(&done_until)
            && (done_until - START + 1) % HOUR == 0,
        "done until {done_until}"
    );
    let stored_before = database.count_rows("SlackType", "1 = 1").await;
    assert_eq!(stored_before, (done_until - START + 1) / HOUR * 20);

    // The retry continues where it stopped: its first request starts after done_until.
    platform.put("/control/faults", &json!({})).await;
    let fetched_before = fetches(&platform).await.len();
    let retried = runtime.invoke(shard(START)).await;
    assert_eq!(
        body(&retried),
        format!(
            "{} records inserted into Aurora. 0 duplicates skipped. 0 errors.",
            24 * 20 - stored_before
        )
    );
    let retry_fetches = fetches(&platform).await;
    let first_retry = &retry_fetches[fetched_before];
    assert!(
        first_retry["query"]
            .as_str()
            .unwrap()
            .contains(&format!("timestamp_from={}", done_until + 1)),
        "{first_retry}"
    );
    assert_eq!(database.count_rows("SlackType", "1 = 1").await, 24 * 20);

    // Now loaded: the same shard again is skipped without a request; `on_existing: update`
    // reads it again (every row the same: counted unchanged, neither inserted nor a duplicate).
    let fetched_before = fetches(&platform).await.len();
    body(&runtime.invoke(shard(START)).await);
    assert_eq!(fetches(&platform).await.len(), fetched_before);
    let mut update = shard(START);
    update["on_existing"] = json!("update");
    assert_eq!(
        body(&runtime.invoke(update).await),
        "0 records inserted into Aurora. 0 duplicates skipped. 0 errors."
    );
    assert_eq!(database.count_rows("SlackType", "1 = 1").await, 24 * 20);
    drop(lambda);
}
