//! HTTP faults through the real binary: the fake platform misbehaves at a known point, and the
//! run must end within its bounds (the deadline, the retry budget, the bytes read from an
//! answer) with no secret carried to another origin, printed, logged or stored.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{FETCH_KEY, FakePlatform, SLACK_TOKEN, ok_documents, plugin_folder, query};

const T0: i64 = 1_764_000_000;

/// What one run of the binary left: its exit code, output, and database.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    database: PathBuf,
    _folders: (tempfile::TempDir, tempfile::TempDir),
}

impl Outcome {
    /// The `--json` summary.
    fn summary(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|_| panic!("{}", self.stderr))
    }

    /// The error the run logged for `type_name`.
    async fn logged_error(&self, type_name: &str) -> String {
        let runs = query(
            &self.database,
            &format!("SELECT error FROM batch_job_runs WHERE type_name = '{type_name}'"),
        )
        .await;
        runs[0]["error"].as_str().unwrap_or_default().to_owned()
    }

    /// Everything the run printed and kept: output, logs, and every row of every table.
    async fn everything(&self) -> String {
        let mut text = format!("{}\n{}\n", self.stdout, self.stderr);
        let tables = query(
            &self.database,
            "SELECT name FROM sqlite_master WHERE type = 'table'",
        )
        .await;
        for table in tables {
            let name = table["name"].as_str().unwrap();
            for row in query(&self.database, &format!("SELECT * FROM \"{name}\"")).await {
                text.push_str(&Value::Object(row).to_string());
                text.push('\n');
            }
        }
        text
    }
}

/// Runs `batch-job-aurora run --json` over the platform's window around T0 with `plugins`,
/// into a fresh SQLite file, with Slack's Web API on the platform too.
fn run_binary(platform: &FakePlatform, plugins: &[&str], args: &[&str]) -> Outcome {
    let plugins = plugin_folder(plugins);
    let folder = tempfile::tempdir().unwrap();
    let database = folder.path().join("faults.db");
    let started = Instant::now();
    let output = Command::new(crate::cli::binary())
        .args(["run", "--json"])
        .args(["--from", &(T0 - 100).to_string()])
        .args(["--to", &(T0 + 1000).to_string()])
        .args(["--database", &format!("sqlite://{}", database.display())])
        .arg("--plugins")
        .arg(plugins.path())
        .args(args)
        .env("DATAPLATTFORM_AURORA_FETCH_API_URL", platform.fetch_url())
        .env("DATAPLATTFORM_AURORA_FETCH_KEY", FETCH_KEY)
        .env("DATAPLATTFORM_AURORA_SLACK_TOKEN", SLACK_TOKEN)
        .env("DATAPLATTFORM_AURORA_SLACK_API_URL", platform.slack_url())
        .env_remove("DATAPLATTFORM_EVENT_CODE_TABLE")
        .env("BATCH_JOB_AURORA_LOG", "debug")
        .output()
        .unwrap();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
        database,
        _folders: (plugins, folder),
    }
}

/// A Slack event in `channel`, or in none.
fn slack_event(id: &str, channel: Option<&str>) -> Value {
    let mut event = json!({"type": "message"});
    if let Some(channel) = channel {
        event["channel"] = json!(channel);
    }
    json!({"id": id, "timestamp": T0, "type": "SlackType",
           "data": {"type": "event_callback", "team_id": "T1", "event_time": T0, "event": event}})
}

fn requests_to(requests: &[Value], prefix: &str) -> usize {
    requests
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or_default().starts_with(prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slack_that_never_answers_is_waited_for_only_until_the_deadline() {
    let platform = FakePlatform::start();
    // 15 distinct channels, and 3 events without one (stored, they need no lookup).
    let mut documents: Vec<Value> = (0..15)
        .map(|i| slack_event(&format!("s{i:04}"), Some(&format!("C{i:08}"))))
        .collect();
    documents.extend((0..3).map(|i| slack_event(&format!("n{i:04}"), None)));
    platform
        .put("/control/documents/SlackType", &Value::Array(documents))
        .await;
    // Slack holds every answer until released, which never happens.
    platform
        .put("/control/faults", &json!({"slack_hold": true}))
        .await;
    // The deadline leaves the start (loading the plugin) seconds to spare.
    let outcome = run_binary(&platform, &["slack"], &["--deadline", "5"]);
    let summary = outcome.summary();
    let slack = &summary["types"]["SlackType"];
    // The one plugin call, held in its first lookup, is stopped at the deadline: its documents
    // are neither stored nor failed (nothing is counted that the next run must read again),
    // the type fails, and the run says it did not complete.
    assert_eq!(
        (&slack["inserted"], &slack["failed"]),
        (&json!(0), &json!(0)),
        "{summary}"
    );
    let error = slack["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("stopped at the run's deadline with 18 documents not through the plugin"),
        "{summary}"
    );
    assert_eq!(outcome.code, Some(3), "{}", outcome.stderr);
    // The first lookup waits until the deadline; none is made after it.
    let lookups = requests_to(&platform.requests().await, "/api/conversations.info");
    assert_eq!(lookups, 1, "{}", outcome.stderr);
    let letters = query(
        &outcome.database,
        "SELECT error FROM batch_job_failed_documents",
    )
    .await;
    assert!(
        letters.is_empty(),
        "nothing failed, it was stopped: {letters:?}"
    );
    // Six times the deadline: a margin no load reaches, and far below the 83 s the lookups'
    // own timeouts, retries and circuit took.
    assert!(
        outcome.elapsed < Duration::from_secs(30),
        "{:?}",
        outcome.elapsed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn error_bodies_that_never_end_are_read_only_to_their_cap() {
    let platform = FakePlatform::start();
    platform
        .put(
            "/control/documents/MisbehavingType",
            &Value::Array(ok_documents("e", 3, T0, 1)),
        )
        .await;
    platform
        .put(
            "/control/documents/SlackType",
            &json!([slack_event("s1", Some("C012AB3CD"))]),
        )
        .await;
    // One endless 503 at each step: the fetch API, the store, and Slack. Each is retried, and
    // the run completes.
    platform
        .put(
            "/control/faults",
            &json!({"api_503_endless": 1, "store_503_endless": 1, "slack_503_endless": 1}),
        )
        .await;
    let outcome = run_binary(&platform, &["misbehaving", "slack"], &["--max-wait", "1"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    let summary = outcome.summary();
    assert_eq!(summary["inserted"], 4, "{summary}");
    assert!(outcome.stderr.contains("HTTP 503"), "{}", outcome.stderr);
    let sent = platform_sent(&platform).await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    // The client reads 8 KiB and hangs up; what the server wrote besides sat in the two
    // sockets' buffers. Reading the bodies whole would take all 256 MiB of each.
    assert!(sent.iter().all(|&bytes| bytes < 32 << 20), "{sent:?}");

    // A success answer that never ends fails for good at its cap, not at the end of memory.
    platform.put("/control/reset", &json!({})).await;
    platform
        .put("/control/faults", &json!({"api_200_endless": 1}))
        .await;
    let outcome = run_binary(&platform, &["misbehaving"], &[]);
    assert_eq!(outcome.code, Some(3), "{}", outcome.stderr);
    let error = outcome.logged_error("MisbehavingType").await;
    assert!(error.contains("larger than 65536 bytes"), "{error}");
    let sent = platform_sent(&platform).await;
    assert!(sent.len() == 1 && sent[0] < 32 << 20, "{sent:?}");
}

/// The bytes the platform wrote of each endless body before the client hung up.
async fn platform_sent(platform: &FakePlatform) -> Vec<u64> {
    reqwest::get(format!("http://127.0.0.1:{}/control/sent", platform.port))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_for_ever_ends_within_the_retry_budget_without_a_deadline() {
    let platform = FakePlatform::start();
    platform
        .put(
            "/control/faults",
            &json!({"api_429": 1_000_000, "retry_after": 1}),
        )
        .await;
    let outcome = run_binary(&platform, &["misbehaving"], &["--retry-budget", "3"]);
    assert_eq!(outcome.code, Some(3), "{}", outcome.stderr);
    let error = outcome.logged_error("MisbehavingType").await;
    assert!(
        error.contains("HTTP 429") && error.contains("within the retry budget of 3 s"),
        "{error}"
    );
    // Each wait is the second asked for: tries at 0, 1 and 2 s at most, where the backoff
    // alone would have made 7.
    let tries = requests_to(&platform.requests().await, "/get_docs/");
    assert!((1..=3).contains(&tries), "{tries} tries");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed_and_carry_no_secret_to_another_origin() {
    let platform = FakePlatform::start();
    // Another origin (another port) that records whatever reaches it.
    let elsewhere = FakePlatform::start();
    let target = format!("http://127.0.0.1:{}/stolen", elsewhere.port);
    for (step, fault, status) in [
        ("/get_docs/", "api_redirect", "302"),
        ("/store/", "store_redirect", "307"),
    ] {
        platform.put("/control/reset", &json!({})).await;
        platform
            .put(
                "/control/documents/MisbehavingType",
                &Value::Array(ok_documents("r", 3, T0, 1)),
            )
            .await;
        platform
            .put("/control/faults", &json!({ fault: target }))
            .await;
        let outcome = run_binary(&platform, &["misbehaving"], &[]);
        assert_eq!(outcome.code, Some(3), "{fault}: {}", outcome.stderr);
        let error = outcome.logged_error("MisbehavingType").await;
        let origin = format!(
            "a redirect to http://127.0.0.1:{}, not followed",
            elsewhere.port
        );
        assert!(
            error.contains(&format!("HTTP {status}")) && error.contains(&origin),
            "{fault}: {error}"
        );
        assert!(
            !error.contains("/stolen"),
            "only the origin is named: {error}"
        );
        // Asked once: a redirect is an answer, not a failure to retry.
        let requests = platform.requests().await;
        assert_eq!(requests_to(&requests, step), 1, "{fault}: {requests:?}");
        assert!(
            requests
                .iter()
                .all(|r| r["headers"].get("referer").is_none()),
            "{requests:?}"
        );
        // Nothing but the test's own control requests reached the other origin.
        let stolen: Vec<Value> = elsewhere
            .requests()
            .await
            .into_iter()
            .filter(|r| !r["path"].as_str().unwrap().starts_with("/control/"))
            .collect();
        assert!(stolen.is_empty(), "{fault}: {stolen:?}");
    }

    // Slack's Web API the same: the lookup fails (its document is kept), nothing goes there.
    platform.put("/control/reset", &json!({})).await;
    platform
        .put(
            "/control/documents/SlackType",
            &json!([slack_event("s1", Some("C012AB3CD"))]),
        )
        .await;
    platform
        .put("/control/faults", &json!({ "slack_redirect": target }))
        .await;
    let outcome = run_binary(&platform, &["slack"], &[]);
    assert_eq!(outcome.summary()["failed"], 1, "{}", outcome.stderr);
    let letters = query(
        &outcome.database,
        "SELECT error FROM batch_job_failed_documents",
    )
    .await;
    let error = letters[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "a redirect to http://127.0.0.1:{}, not followed",
            elsewhere.port
        )),
        "{error}"
    );
    let requests = platform.requests().await;
    assert_eq!(requests_to(&requests, "/api/"), 1, "{requests:?}");
    assert!(
        elsewhere
            .requests()
            .await
            .iter()
            .all(|r| r["path"].as_str().unwrap().starts_with("/control/")),
        "nothing reached the other origin"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_quoted_in_a_403_is_never_printed_logged_or_stored() {
    let platform = FakePlatform::start();
    platform
        .put(
            "/control/documents/MisbehavingType",
            &Value::Array(ok_documents("q", 3, T0, 1)),
        )
        .await;
    // S3 refuses the URL twice (the second after a new one was asked for), quoting the
    // signature, the credential and the access key id.
    platform
        .put("/control/faults", &json!({"store_403_quote": 2}))
        .await;
    let outcome = run_binary(&platform, &["misbehaving"], &[]);
    assert_eq!(outcome.code, Some(3), "{}", outcome.stderr);
    let error = outcome.logged_error("MisbehavingType").await;
    assert!(
        error.contains("HTTP 403") && error.contains("SignatureDoesNotMatch"),
        "the body was read: {error}"
    );
    let everything = outcome.everything().await;
    for secret in ["deadbeefsecret", "AKIASECRET", FETCH_KEY, SLACK_TOKEN] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
}
