//! The Lambda's path: the old event and environment in, the old response out, into MariaDB
//! (standing in for Aurora MySQL) from the fake platform.

use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use batch_job_aurora::environment::from_env;
use batch_job_aurora::invocation::{InvocationEvent, InvocationResponse};
use batch_job_aurora::resolve::resolve;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    Checks, Engine, FETCH_KEY, FakePlatform, Moto, SLACK_TOKEN, TestDatabase, plugin_folder,
    workspace_root,
};

#[tokio::test(flavor = "multi_thread")]
async fn the_old_event_and_environment_give_the_old_response_and_tables() {
    let platform = FakePlatform::start();
    crate::fetch::serve_examples(&platform).await;
    let database = TestDatabase::new(Engine::Mysql, "lambda").await;
    let plugins = plugin_folder(&["github", "slack", "event_rating"]);
    let event_codes = format!(
        "file:{}",
        workspace_root()
            .join("examples/lookups/event-codes.json")
            .display()
    );
    let (fetch_url, slack_url) = (platform.fetch_url(), platform.slack_url());
    let plugins_dir = plugins.path().display().to_string();
    let env = |name: &str| -> Option<String> {
        Some(match name {
            "DATAPLATTFORM_AURORA_FETCH_API_URL" => fetch_url.clone(),
            "DATAPLATTFORM_AURORA_FETCH_KEY" => FETCH_KEY.into(),
            "DATAPLATTFORM_AURORA_HOST" => "127.0.0.1".into(),
            "DATAPLATTFORM_AURORA_PORT" => "3306".into(),
            "DATAPLATTFORM_AURORA_DB_NAME" => database.name.clone(),
            "DATAPLATTFORM_AURORA_USER" => "root".into(),
            "DATAPLATTFORM_AURORA_PASSWORD" => String::new(),
            "DATAPLATTFORM_AURORA_SLACK_TOKEN" => SLACK_TOKEN.into(),
            "DATAPLATTFORM_AURORA_SLACK_API_URL" => slack_url.clone(),
            "DATAPLATTFORM_EVENT_CODE_TABLE" => event_codes.clone(),
            "BATCH_JOB_AURORA_PLUGINS" => plugins_dir.clone(),
            _ => return None,
        })
    };
    let event: InvocationEvent = serde_json::from_str(
        r#"{"types": ["GithubType", "SlackType", "EventRatingType"], "timestamp_from": 0, "timestamp_to": 100000000000}"#,
    )
    .unwrap();
    let environment = from_env(env).unwrap();
    let config = resolve(event.run_request(None), &environment, 1_764_003_600).unwrap();
    let summary = batch_job_aurora::run(config).await.unwrap();
    assert_eq!(
        InvocationResponse::from(&summary),
        InvocationResponse {
            status_code: 200,
            body: "10 records inserted into Aurora. 0 duplicates skipped. 0 errors.".into()
        }
    );
    assert_eq!(
        database
            .count_rows("SlackType", "channel_name = 'general'")
            .await,
        2
    );
    assert_eq!(
        database
            .count_rows("EventRatingType", "event_name IS NOT NULL")
            .await,
        3
    );
    // The hourly default: the last 70 minutes before "now" hold every example document.
    let hourly = resolve(
        InvocationEvent::default().run_request(None),
        &environment,
        1_764_003_600,
    )
    .unwrap();
    let summary = batch_job_aurora::run(hourly).await.unwrap();
    assert_eq!(
        InvocationResponse::from(&summary).body,
        "0 records inserted into Aurora. 10 duplicates skipped. 0 errors."
    );
}

// ---------------------------------------------------------------------------------------------
// The real `bootstrap` under a Runtime API (tests/servers/fake_lambda_runtime.py).

/// The `bootstrap` binary, built once per test run.
pub(crate) fn bootstrap() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| crate::support::cli_binary("bootstrap", "BATCH_JOB_AURORA_TEST_BOOTSTRAP"))
}

/// The shipped plugins as the zip has them: each `.wasm` with its `.cwasm`, precompiled by
/// `bootstrap --precompile --portable`, as `cargo xtask lambda` makes them.
pub(crate) fn lambda_plugins() -> TempDir {
    let folder = plugin_folder(&["github", "slack", "event_rating"]);
    for name in ["github", "slack", "event_rating"] {
        let output = Command::new(bootstrap())
            .arg("--precompile")
            .arg(folder.path().join(format!("{name}.wasm")))
            .arg(folder.path().join(format!("{name}.cwasm")))
            .arg("--portable")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    folder
}

/// The fake Runtime API on a free port of 127.0.0.1, stopped when dropped.
pub(crate) struct RuntimeApi {
    child: Child,
    port: u16,
    client: reqwest::Client,
}

impl RuntimeApi {
    pub(crate) fn start() -> RuntimeApi {
        let script = workspace_root().join("tests/servers/fake_lambda_runtime.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the fake Runtime API");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        RuntimeApi {
            child,
            port: line
                .trim()
                .strip_prefix("listening on ")
                .unwrap()
                .parse()
                .unwrap(),
            client: reqwest::Client::new(),
        }
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Queues an invocation whose deadline is `deadline_ms` away; returns its request id.
    pub(crate) async fn enqueue(&self, event: Value, deadline_ms: u64) -> String {
        let answer: Value = self
            .client
            .put(format!("http://{}/control/enqueue", self.address()))
            .json(&json!({"event": event, "deadline_ms_from_now": deadline_ms}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["request_id"].as_str().unwrap().to_owned()
    }

    /// Waits for `count` results in all (60 s at most: a hang fails the test, not the suite).
    pub(crate) async fn wait(&self, count: usize) -> Vec<Value> {
        let results: Vec<Value> = self
            .client
            .get(format!(
                "http://{}/control/wait?count={count}&timeout=60",
                self.address()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(results.len() >= count, "only {results:?}");
        results
    }

    /// Queues one invocation and waits for its result.
    pub(crate) async fn invoke(&self, event: Value) -> Value {
        let before = self.wait(0).await.len();
        let request_id = self.enqueue(event, 900_000).await;
        let result = self.wait(before + 1).await.pop().unwrap();
        assert_eq!(result["request_id"], request_id.as_str());
        result
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `bootstrap`, with its stdout (EMF) and stderr (logs) collected line by line.
pub(crate) struct Bootstrap {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Bootstrap {
    /// Starts `bootstrap` with only the given environment plus Lambda's own variables.
    pub(crate) fn start(runtime: &RuntimeApi, env: &[(&str, String)]) -> Bootstrap {
        let mut command = Command::new(bootstrap());
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", "batch-job-aurora")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_REGION", "eu-central-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("BATCH_JOB_AURORA_METRICS_NAMESPACE", "BatchJobAuroraTest")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Bootstrap {
            child,
            stdout,
            stderr,
        }
    }

    /// The log lines so far, each parsed as JSON (every one must be).
    pub(crate) fn logs(&self) -> Vec<Value> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log: {line}"))
            })
            .collect()
    }

    /// The EMF lines so far, parsed.
    pub(crate) fn metrics(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|_| panic!("not an EMF line: {line}"))
            })
            .collect()
    }

    /// Everything it printed, for checks that a secret never shows.
    pub(crate) fn output(&self) -> String {
        let mut text = self.stdout.lock().unwrap().join("\n");
        text.push('\n');
        text.push_str(&self.stderr.lock().unwrap().join("\n"));
        text
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy to the database that the test switches off and on: off, it cuts every open
/// connection and closes each new one at once, so the database is "down" exactly when the
/// test says, with no timing involved.
pub(crate) struct DatabaseProxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl DatabaseProxy {
    pub(crate) fn start(target: u16) -> DatabaseProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (state, open) = (Arc::clone(&up), Arc::clone(&connections));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                if !state.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut open = open.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        DatabaseProxy {
            port,
            up,
            connections,
        }
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for connection in self.connections.lock().unwrap().drain(..) {
                let _ = connection.shutdown(Shutdown::Both);
            }
        }
    }
}

/// The Lambda's environment for a run from `platform` into `database` through `port`.
pub(crate) fn lambda_env(
    platform: &FakePlatform,
    database: &TestDatabase,
    plugins: &Path,
    port: u16,
) -> Vec<(&'static str, String)> {
    vec![
        ("DATAPLATTFORM_AURORA_FETCH_API_URL", platform.fetch_url()),
        ("DATAPLATTFORM_AURORA_FETCH_KEY", FETCH_KEY.into()),
        ("DATAPLATTFORM_AURORA_HOST", "127.0.0.1".into()),
        ("DATAPLATTFORM_AURORA_PORT", port.to_string()),
        ("DATAPLATTFORM_AURORA_DB_NAME", database.name.clone()),
        ("DATAPLATTFORM_AURORA_USER", "root".into()),
        ("DATAPLATTFORM_AURORA_SLACK_TOKEN", SLACK_TOKEN.into()),
        ("DATAPLATTFORM_AURORA_SLACK_API_URL", platform.slack_url()),
        (
            "DATAPLATTFORM_EVENT_CODE_TABLE",
            format!(
                "file:{}",
                workspace_root()
                    .join("examples/lookups/event-codes.json")
                    .display()
            ),
        ),
        ("BATCH_JOB_AURORA_PLUGINS", plugins.display().to_string()),
    ]
}

pub(crate) fn every_type_ever() -> Value {
    json!({"types": ["GithubType", "SlackType", "EventRatingType"], "timestamp_from": 0, "timestamp_to": 100_000_000_000_i64})
}

pub(crate) fn body(result: &Value) -> &str {
    assert_eq!(result["kind"], "response", "{result}");
    result["body"]["body"].as_str().unwrap()
}

pub(crate) fn error(result: &Value) -> (&str, &str) {
    assert_eq!(result["kind"], "error", "{result}");
    // Lambda reports the body's errorType (lambda_runtime's header says "unhandled").
    (
        result["body"]["errorType"].as_str().unwrap(),
        result["body"]["errorMessage"].as_str().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_answers_events_through_the_runtime_api() {
    let platform = FakePlatform::start();
    crate::fetch::serve_examples(&platform).await;
    let database = TestDatabase::new(Engine::Mysql, "runtime_api").await;
    let plugins = lambda_plugins();
    let runtime = RuntimeApi::start();
    let started = std::time::Instant::now();
    let lambda = Bootstrap::start(
        &runtime,
        &lambda_env(&platform, &database, plugins.path(), 3306),
    );

    // The invocations, in order (the rerun follows the window); every answer is checked and
    // every mismatch reported, and so are the logs and metrics below.
    enum Answer {
        Body(&'static str),
        Error(&'static str, &'static str),
    }
    let invocations = [
        (
            // The last 70 minutes before now, which hold none of the examples.
            "the default event",
            json!({}),
            Answer::Body("0 records inserted into Aurora. 0 duplicates skipped. 0 errors."),
        ),
        (
            "a window with every example",
            every_type_ever(),
            Answer::Body("10 records inserted into Aurora. 0 duplicates skipped. 0 errors."),
        ),
        (
            "the same window again",
            every_type_ever(),
            Answer::Body("0 records inserted into Aurora. 10 duplicates skipped. 0 errors."),
        ),
        (
            "a type no plugin serves",
            json!({"types": ["GithubType", "Robert'); DROP TABLE GithubType;--"]}),
            Answer::Error(
                "UnknownType",
                r#"types: no plugin for type "Robert'); DROP TABLE GithubType;--" (installed: EventRatingType, GithubType, SlackType)"#,
            ),
        ),
        (
            "a window that is not a number",
            json!({"timestamp_from": "yesterday", "timestamp_to": 5}),
            Answer::Error(
                "InvalidEvent",
                r#"timestamp_from: expected Unix seconds, got "yesterday""#,
            ),
        ),
    ];
    let mut checks = Checks::default();
    let mut results = Vec::new();
    for (case, event, answer) in invocations {
        let result = runtime.invoke(event).await;
        if results.is_empty() {
            eprintln!(
                "first invocation answered {} ms after the process started (debug build)",
                started.elapsed().as_millis()
            );
        }
        match answer {
            Answer::Body(expected) => checks.eq(
                case,
                (result["kind"].as_str(), result["body"]["body"].as_str()),
                (Some("response"), Some(expected)),
            ),
            Answer::Error(kind, message) => checks.eq(
                case,
                (
                    result["kind"].as_str(),
                    result["body"]["errorType"].as_str(),
                    result["body"]["errorMessage"].as_str(),
                ),
                (Some("error"), Some(kind), Some(message)),
            ),
        }
        results.push(result);
    }
    let (window, bad_window) = (&results[1], &results[4]);
    checks.eq(
        "GithubType rows",
        database.count_rows("GithubType", "1 = 1").await,
        2,
    );

    // JSON logs: the run's line carries the request id, run id, types, window and counts; the
    // errors are logged as errors, once, and not as panics.
    let logs = lambda.logs();
    // Every plugin came precompiled: nothing was compiled at init.
    let plugins_loaded = logs
        .iter()
        .find(|line| line["message"] == "initialised")
        .and_then(|line| line["plugins"].as_str())
        .unwrap_or_default();
    checks.eq(
        "plugins precompiled at init",
        plugins_loaded.matches("(precompiled)").count(),
        3,
    );
    let finished: Vec<&Value> = logs
        .iter()
        .filter(|line| line["message"] == "run finished")
        .collect();
    checks.eq("'run finished' log lines", finished.len(), 3);
    if let Some(second) = finished.get(1) {
        checks.eq(
            "the window's log line: request id",
            &second["span"]["request_id"],
            &window["request_id"],
        );
        checks.eq(
            "the window's log line: inserted",
            &second["inserted"],
            &json!(10),
        );
        checks.eq(
            "the window's log line: types",
            &second["types"],
            &json!("EventRatingType,GithubType,SlackType"),
        );
        checks.eq(
            "the window's log line: window",
            (&second["window_from"], &second["window_to"]),
            (&json!(0), &json!(100_000_000_000_i64)),
        );
        checks.eq(
            "the window's log line: a run id",
            second["run_id"].as_str().is_some_and(|id| !id.is_empty()),
            true,
        );
    }
    let errors: Vec<&Value> = logs
        .iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    checks.eq("ERROR log lines", errors.len(), 2);
    if let [unknown, bad] = errors.as_slice() {
        checks.eq(
            "the unknown type's error line",
            &unknown["error_type"],
            &json!("UnknownType"),
        );
        checks.eq(
            "the bad window's error line: request id",
            &bad["span"]["request_id"],
            &bad_window["request_id"],
        );
    }
    checks.eq(
        "no panic in the output",
        lambda.output().contains("panic"),
        false,
    );

    // EMF: one line per invocation, plus one per type of each run.
    let metrics = lambda.metrics();
    let per_invocation: Vec<&Value> = metrics
        .iter()
        .filter(|line| line.get("Type").is_none())
        .collect();
    checks.eq("EMF lines per invocation", per_invocation.len(), 5);
    for line in &metrics {
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        checks.eq(
            "EMF namespace",
            &directive["Namespace"],
            &json!("BatchJobAuroraTest"),
        );
        checks.eq(
            "EMF function name",
            &line["FunctionName"],
            &json!("batch-job-aurora"),
        );
        for metric in directive["Metrics"].as_array().into_iter().flatten() {
            let name = metric["Name"].as_str().unwrap_or_default();
            checks.eq(
                &format!("EMF metric {name} has its value"),
                line.get(name).is_some(),
                true,
            );
        }
    }
    let incomplete: Vec<Option<i64>> = per_invocation
        .iter()
        .map(|line| line["IncompleteRun"].as_i64())
        .collect();
    checks.eq(
        "IncompleteRun per invocation",
        incomplete,
        [0, 0, 0, 1, 1].map(Some).to_vec(),
    );
    if let [_, window, rerun, ..] = per_invocation.as_slice() {
        checks.eq("the window's Inserted", &window["Inserted"], &json!(10));
        checks.eq("the rerun's Duplicates", &rerun["Duplicates"], &json!(10));
    }
    checks.eq(
        "a GithubType line with Inserted 2",
        metrics
            .iter()
            .any(|line| line["Type"] == "GithubType" && line["Inserted"] == 2),
        true,
    );
    checks.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_is_down_fails_the_invocation_not_the_init() {
    let platform = FakePlatform::start();
    crate::fetch::serve_examples(&platform).await;
    let database = TestDatabase::new(Engine::Mysql, "database_down").await;
    let plugins = lambda_plugins();
    let proxy = DatabaseProxy::start(3306);
    proxy.set_up(false);
    let runtime = RuntimeApi::start();
    let _lambda = Bootstrap::start(
        &runtime,
        &lambda_env(&platform, &database, plugins.path(), proxy.port),
    );

    // Down from the start: the init went through, the invocation fails.
    let down = runtime.invoke(every_type_ever()).await;
    assert_eq!(error(&down).0, "DatabaseUnavailable", "{down}");
    proxy.set_up(true);
    let back = runtime.invoke(every_type_ever()).await;
    assert_eq!(
        body(&back),
        "10 records inserted into Aurora. 0 duplicates skipped. 0 errors."
    );
    // Down while the container is warm: its pooled connections are cut.
    proxy.set_up(false);
    let down_again = runtime.invoke(every_type_ever()).await;
    assert_eq!(error(&down_again).0, "DatabaseUnavailable", "{down_again}");
    proxy.set_up(true);
    let back_again = runtime.invoke(every_type_ever()).await;
    assert_eq!(
        body(&back_again),
        "0 records inserted into Aurora. 10 duplicates skipped. 0 errors."
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugins_folder_that_cannot_be_loaded_is_an_init_error() {
    let platform = FakePlatform::start();
    let database = TestDatabase::new(Engine::Mysql, "init_error").await;
    let plugins = lambda_plugins();
    std::fs::write(plugins.path().join("broken.wasm"), b"not a component").unwrap();
    let runtime = RuntimeApi::start();
    let mut lambda = Bootstrap::start(
        &runtime,
        &lambda_env(&platform, &database, plugins.path(), 3306),
    );
    let results = runtime.wait(1).await;
    assert_eq!(results[0]["kind"], "init_error", "{results:?}");
    assert_eq!(results[0]["error_type"], "InitFailed");
    assert_eq!(results[0]["body"]["errorType"], "InitFailed");
    let message = results[0]["body"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("broken.wasm"), "{message}");
    let status = lambda.child.wait().unwrap();
    assert!(!status.success());
    // A bad setting is an init error too, named after the variable.
    let runtime = RuntimeApi::start();
    let mut env = lambda_env(&platform, &database, plugins.path(), 3306);
    env.push(("DATAPLATTFORM_AURORA_IAM_AUTH", "yes".into()));
    let _lambda = Bootstrap::start(&runtime, &env);
    let results = runtime.wait(1).await;
    assert_eq!(results[0]["kind"], "init_error", "{results:?}");
    assert_eq!(results[0]["body"]["errorType"], "InvalidConfig");
    let message = results[0]["body"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("DATAPLATTFORM_AURORA_IAM_AUTH"),
        "{message}"
    );
    // A precompiled plugin of another engine is not an error: its .wasm is compiled instead.
    std::fs::remove_file(plugins.path().join("broken.wasm")).unwrap();
    std::fs::write(plugins.path().join("github.cwasm"), b"\x7fELF not ours").unwrap();
    let runtime = RuntimeApi::start();
    let lambda = Bootstrap::start(
        &runtime,
        &lambda_env(&platform, &database, plugins.path(), 3306),
    );
    let result = runtime.invoke(json!({"types": ["GithubType"]})).await;
    body(&result);
    let logs = lambda.logs();
    assert!(
        logs.iter().any(|line| line["level"] == "WARN"
            && line["message"]
                .as_str()
                .is_some_and(|m| m.contains("github.cwasm"))),
        "{logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_comes_from_secrets_manager_and_is_read_again_when_refused() {
    let platform = FakePlatform::start();
    crate::fetch::serve_examples(&platform).await;
    let database = TestDatabase::new(Engine::Mysql, "secret_rotation").await;
    let user = format!("bja_secret_{}", std::process::id());
    let grant = |password: &str| {
        format!(
            "CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'; \
             CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY '{password}'; \
             ALTER USER '{user}'@'%' IDENTIFIED BY '{password}'; \
             ALTER USER '{user}'@'localhost' IDENTIFIED BY '{password}'; \
             GRANT ALL ON `{}`.* TO '{user}'@'%'; GRANT ALL ON `{}`.* TO '{user}'@'localhost'",
            database.name, database.name
        )
    };
    database.execute(&grant("first-Pa55word")).await;
    let moto = Moto::start();
    let secret = "batch-job-aurora/database";
    moto.put_secret(
        secret,
        &json!({"username": user, "password": "first-Pa55word"}).to_string(),
    );
    let plugins = lambda_plugins();
    let proxy = DatabaseProxy::start(3306);
    let runtime = RuntimeApi::start();
    let mut env = lambda_env(&platform, &database, plugins.path(), proxy.port);
    env.retain(|(name, _)| *name != "DATAPLATTFORM_AURORA_USER");
    env.push(("DATAPLATTFORM_AURORA_USER", user.clone()));
    env.push(("DATAPLATTFORM_AURORA_PASSWORD_SECRET", secret.into()));
    env.push(("AWS_ENDPOINT_URL", moto.endpoint.clone()));
    let lambda = Bootstrap::start(&runtime, &env);

    let first = runtime.invoke(every_type_ever()).await;
    assert_eq!(
        body(&first),
        "10 records inserted into Aurora. 0 duplicates skipped. 0 errors."
    );
    // Rotated: the database and the secret get a new password, and the open connections go.
    database.execute(&grant("second-Pa55word")).await;
    moto.put_secret(
        secret,
        &json!({"username": user, "password": "second-Pa55word"}).to_string(),
    );
    proxy.set_up(false);
    proxy.set_up(true);
    let rotated = runtime.invoke(every_type_ever()).await;
    assert_eq!(
        body(&rotated),
        "0 records inserted into Aurora. 10 duplicates skipped. 0 errors."
    );
    let output = lambda.output();
    assert!(output.contains("refused the login"), "{output}");
    assert!(!output.contains("Pa55word"), "{output}");
    database
        .execute(&format!(
            "DROP USER '{user}'@'%'; DROP USER '{user}'@'localhost'"
        ))
        .await;
}
