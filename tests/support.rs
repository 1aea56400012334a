//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use batch_job_aurora::SourceSpec;
use batch_job_aurora::plugin::SandboxLimits;
use batch_job_aurora::{RunConfig, RunSummary};
use serde_json::{Map, Value, json};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};
use tempfile::TempDir;

pub use integration_tests::{wasm, workspace_root};

/// A folder holding copies of the named built plugins.
pub fn plugin_folder(names: &[&str]) -> TempDir {
    let folder = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(wasm(name), folder.path().join(format!("{name}.wasm"))).unwrap();
    }
    folder
}

/// A binary of the `batch-job-aurora-cli` package, built once per test run (cargo builds a
/// package's binaries only for that package's own tests), or the prebuilt one that the
/// environment variable `prebuilt` names (a loop of many runs of the same tests, a release
/// build).
pub fn cli_binary(name: &str, prebuilt: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(prebuilt) {
        return PathBuf::from(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "-p",
            "batch-job-aurora-cli",
            "--bin",
            name,
        ])
        .status()
        .unwrap();
    assert!(status.success(), "cannot build {name}");
    let deps = std::env::current_exe().unwrap();
    deps.parent().unwrap().parent().unwrap().join(name)
}

/// Named checks of one test that go on after a failure: [`Checks::finish`] fails with every
/// mismatch, so one failure hides none of the others.
#[derive(Default)]
pub struct Checks(Vec<String>);

impl Checks {
    /// Notes a mismatch of `actual` and `expected` under `name`.
    pub fn eq<T: PartialEq + std::fmt::Debug>(&mut self, name: &str, actual: T, expected: T) {
        if actual != expected {
            self.0
                .push(format!("{name}: got {actual:?}, expected {expected:?}"));
        }
    }

    /// Fails with every mismatch noted.
    pub fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

/// A run config with short sandbox budgets, so that the deliberately bad plugins fail fast.
pub fn config(source: &Path, database: &Path, plugins: &Path) -> RunConfig {
    let mut config = RunConfig::new(
        SourceSpec::Files(source.to_owned()),
        format!("sqlite://{}", database.display()),
        plugins.to_owned(),
    );
    config.plugins.limits = SandboxLimits {
        memory_bytes: 64 << 20,
        call_budget: Duration::from_millis(300),
        budget_per_document: Duration::from_millis(10),
    };
    config
}

pub async fn run(config: RunConfig) -> RunSummary {
    batch_job_aurora::run(config).await.unwrap()
}

/// The bundled examples' lookups as backends.
pub fn example_backends() -> batch_job_aurora::capability::Backends {
    use batch_job_aurora::capability::*;
    let lookups = workspace_root().join("examples/lookups");
    Backends {
        slack: Some(std::sync::Arc::new(
            ChannelMapFile::load(&lookups.join("slack-channels.json")).unwrap(),
        )),
        references: [(
            EVENT_CODES_TABLE.to_owned(),
            std::sync::Arc::new(
                ReferenceFile::load(&lookups.join("event-codes.json"), EVENT_CODES_KEY).unwrap(),
            ) as std::sync::Arc<dyn ReferenceTable>,
        )]
        .into(),
    }
}

/// Every row of a SQLite table as JSON objects, ordered as the query says.
pub async fn query(database: &Path, sql: &str) -> Vec<Map<String, Value>> {
    let pool = SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .map(|column| {
                    let index = column.ordinal();
                    let raw = row.try_get_raw(index).unwrap();
                    let value = if raw.is_null() {
                        Value::Null
                    } else {
                        match raw.type_info().name() {
                            "INTEGER" => json!(row.get::<i64, _>(index)),
                            "REAL" => json!(row.get::<f64, _>(index)),
                            _ => json!(row.get::<String, _>(index)),
                        }
                    };
                    (column.name().to_owned(), value)
                })
                .collect()
        })
        .collect()
}

/// Compares each case's rows with its golden file (`<case>.rows.json`, beside the case's
/// input); `BLESS=1` rewrites them. Every case that differs is named, each with its own small
/// diff, rather than one large file changing as a whole.
pub fn check_goldens(cases: &[(PathBuf, Value)]) {
    let bless = std::env::var_os("BLESS").is_some();
    let mut differing = Vec::new();
    for (path, actual) in cases {
        let actual_text = serde_json::to_string_pretty(actual).unwrap() + "\n";
        if bless {
            std::fs::write(path, &actual_text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
            panic!(
                "{} is missing; run with BLESS=1 to create it",
                path.display()
            )
        });
        if serde_json::from_str::<Value>(&expected).unwrap() != *actual {
            differing.push(format!("{}:\n{actual_text}", path.display()));
        }
    }
    assert!(
        differing.is_empty(),
        "{} golden files differ from the run (BLESS=1 re-blesses them); actual rows:\n{}",
        differing.len(),
        differing.join("\n")
    );
}

/// The golden rows of the bundled examples, one file per input.
pub fn example_goldens(tables: &serde_json::Map<String, Value>) -> Vec<(PathBuf, Value)> {
    [
        ("GithubType", "github"),
        ("SlackType", "slack"),
        ("EventRatingType", "event_rating"),
    ]
    .into_iter()
    .map(|(table, input)| {
        (
            workspace_root().join(format!("tests/data/examples/{input}.rows.json")),
            tables[table].clone(),
        )
    })
    .collect()
}

/// Writes documents as NDJSON into a file of a fresh folder.
pub fn ndjson(documents: &[Value]) -> (TempDir, PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("documents.ndjson");
    let text: String = documents
        .iter()
        .map(|document| format!("{document}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    (folder, path)
}

/// The database engines the sink tests run against. MariaDB and PostgreSQL are the ones
/// `scripts/services.sh` starts on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Mysql,
    Postgres,
}

pub const ENGINES: [Engine; 3] = [Engine::Sqlite, Engine::Mysql, Engine::Postgres];

/// `bja_<test>_<pid>` of earlier runs, as a LIKE pattern (`_` escaped; the pid is digits).
fn stale_pattern(test: &str) -> String {
    format!("bja\\_{}\\_%", test.replace('_', "\\_"))
}

/// Whether a database left by an earlier run of a test may go: its name ends in the pid of the
/// test process that made it, and a process that still runs (another checkout's suite on this
/// machine, say) keeps its database.
fn is_abandoned(database: &str) -> bool {
    match database
        .rsplit('_')
        .next()
        .and_then(|pid| pid.parse::<u32>().ok())
    {
        Some(pid) if pid == std::process::id() => true,
        Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        None => true,
    }
}

/// A fresh, empty database of one engine, named after the test.
pub struct TestDatabase {
    pub engine: Engine,
    pub name: String,
    pub url: String,
    _folder: Option<TempDir>,
}

impl TestDatabase {
    pub async fn new(engine: Engine, test: &str) -> TestDatabase {
        let name = format!("bja_{test}_{}", std::process::id());
        match engine {
            Engine::Sqlite => {
                let folder = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/{name}.db", folder.path().display());
                TestDatabase {
                    engine,
                    name,
                    url,
                    _folder: Some(folder),
                }
            }
            Engine::Mysql => {
                let admin = "mysql://root@127.0.0.1:3306/test";
                let mut connection = <sqlx::MySqlConnection as sqlx::Connection>::connect(admin)
                    .await
                    .unwrap();
                // Earlier runs' databases of this test go first, so that they never pile up on a
                // machine whose services outlive the runs.
                let stale: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA \
                     WHERE SCHEMA_NAME = '{name}' OR SCHEMA_NAME LIKE '{}'",
                    stale_pattern(test)
                )))
                .fetch_all(&mut connection)
                .await
                .unwrap();
                for database in stale.into_iter().filter(|name| is_abandoned(name)) {
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS `{database}`"
                    )))
                    .execute(&mut connection)
                    .await
                    .unwrap();
                }
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut connection)
                    .await
                    .unwrap();
                let url = format!("mysql://root@127.0.0.1:3306/{name}");
                TestDatabase {
                    engine,
                    name: name.clone(),
                    url,
                    _folder: None,
                }
            }
            Engine::Postgres => {
                let admin = "postgres://postgres@127.0.0.1:5432/test";
                let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
                    .await
                    .unwrap();
                let stale: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT datname::text FROM pg_database WHERE datname = '{name}' OR datname LIKE '{}'",
                    stale_pattern(test)
                )))
                .fetch_all(&mut connection)
                .await
                .unwrap();
                for database in stale.into_iter().filter(|name| is_abandoned(name)) {
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    )))
                    .execute(&mut connection)
                    .await
                    .unwrap();
                }
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut connection)
                    .await
                    .unwrap();
                let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
                TestDatabase {
                    engine,
                    name: name.clone(),
                    url,
                    _folder: None,
                }
            }
        }
    }

    /// An existing SQLite file, left where it is.
    pub fn sqlite_file(path: &Path) -> TestDatabase {
        TestDatabase {
            engine: Engine::Sqlite,
            name: path.display().to_string(),
            url: format!("sqlite://{}", path.display()),
            _folder: None,
        }
    }

    /// Runs statements (separated by `;`) on the database.
    pub async fn execute(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        match self.engine {
            Engine::Sqlite => {
                let options = self
                    .url
                    .parse::<sqlx::sqlite::SqliteConnectOptions>()
                    .unwrap();
                let pool = SqlitePoolOptions::new()
                    .connect_with(options.create_if_missing(true))
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Engine::Mysql => {
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .connect(&self.url)
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Engine::Postgres => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .connect(&self.url)
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// One integer from a query.
    pub async fn count(&self, sql: &str) -> i64 {
        self.try_count(sql).await.unwrap()
    }

    /// One integer from a query, or the error (a table that does not exist yet).
    pub async fn try_count(&self, sql: &str) -> Result<i64, sqlx::Error> {
        let cast = if self.engine == Engine::Mysql {
            "SIGNED"
        } else {
            "BIGINT"
        };
        let sql = AssertSqlSafe(format!("SELECT CAST(({sql}) AS {cast})"));
        match self.engine {
            Engine::Sqlite => {
                let pool = SqlitePoolOptions::new().connect(&self.url).await?;
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await;
                pool.close().await;
                n
            }
            Engine::Mysql => {
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .connect(&self.url)
                    .await?;
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await;
                pool.close().await;
                n
            }
            Engine::Postgres => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .connect(&self.url)
                    .await?;
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await;
                pool.close().await;
                n
            }
        }
    }

    /// The first column of every row of a query, as text (`failure_order` names the
    /// dead-letter table's insertion order on every engine).
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        let order = match self.engine {
            Engine::Sqlite => "rowid",
            _ => "failure_id",
        };
        let sql = AssertSqlSafe(sql.replace("failure_order", order));
        match self.engine {
            Engine::Sqlite => {
                let pool = SqlitePoolOptions::new().connect(&self.url).await.unwrap();
                let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
            Engine::Mysql => {
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .connect(&self.url)
                    .await
                    .unwrap();
                let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
            Engine::Postgres => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .connect(&self.url)
                    .await
                    .unwrap();
                let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
        }
    }

    /// The number of rows of `table` that meet `condition`.
    pub async fn count_rows(&self, table: &str, condition: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM {} WHERE {condition}",
            self.quote(table)
        ))
        .await
    }

    /// Quotes an identifier for this engine.
    pub fn quote(&self, name: &str) -> String {
        match self.engine {
            Engine::Mysql => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }
}

/// A run config writing to a test database.
pub fn config_for(source: &Path, database: &TestDatabase, plugins: &Path) -> RunConfig {
    let mut config = config(source, Path::new("unused"), plugins);
    config.run.database_url = database.url.clone();
    config
}

/// `count` MisbehavingType documents that each give one row, timestamps from `first`.
pub fn ok_documents(prefix: &str, count: usize, first: i64, step: i64) -> Vec<Value> {
    (0..count)
        .map(|i| {
            json!({"id": format!("{prefix}{i:08}"), "timestamp": first + i as i64 * step,
                   "type": "MisbehavingType", "data": {"action": "ok"}})
        })
        .collect()
}

/// The fake platform (`tests/servers/fake_platform.py`): the fetch API, its presigned store and
/// Slack's Web API, on a free port of 127.0.0.1, stopped when dropped.
pub struct FakePlatform {
    child: std::process::Child,
    pub port: u16,
}

pub const FETCH_KEY: &str = "test-api-key";
pub const SLACK_TOKEN: &str = "xoxb-test-token";

impl FakePlatform {
    pub fn start() -> FakePlatform {
        use std::io::BufRead;
        let script = workspace_root().join("tests/servers/fake_platform.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the fake platform");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .parse()
            .unwrap();
        FakePlatform { child, port }
    }

    pub fn fetch_url(&self) -> String {
        format!("http://127.0.0.1:{}/get_docs/", self.port)
    }

    pub fn slack_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/", self.port)
    }

    pub async fn put(&self, path: &str, body: &Value) {
        let response = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}{path}", self.port))
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// Puts a body as it is (bent JSON).
    pub async fn put_raw(&self, path: &str, body: &str) {
        let response = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}{path}", self.port))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// Every request the server saw: method, path, query, headers.
    pub async fn requests(&self) -> Vec<Value> {
        reqwest::get(format!("http://127.0.0.1:{}/control/requests", self.port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A run config reading from this server with fast retries.
    pub fn config(&self, database: &Path, plugins: &Path) -> RunConfig {
        let mut config = config(Path::new("unused"), database, plugins);
        config.run.source = SourceSpec::Fetch {
            base_url: self.fetch_url(),
            key: FETCH_KEY.into(),
        };
        config.run.fetch.backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_millis(200))
            .with_max_times(4);
        config
    }
}

impl Drop for FakePlatform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The documents of a bundled example file (a JSON array or NDJSON).
pub fn example_documents(name: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(workspace_root().join("examples/documents").join(name)).unwrap();
    match serde_json::from_str(&text) {
        Ok(Value::Array(documents)) => documents,
        _ => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    }
}

/// moto's server (from `.venv`, which `scripts/test.sh` installs) as DynamoDB on a free port of
/// 127.0.0.1, stopped when dropped.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let venv = workspace_root().join(".venv/bin");
        let server = venv.join("moto_server");
        assert!(
            server.exists(),
            "{} is missing: run scripts/test.sh, which installs moto",
            server.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Creates `table` with the example events plus `filler` others, through boto3.
    pub fn seed(&self, table: &str, filler: usize) {
        let status = std::process::Command::new(workspace_root().join(".venv/bin/python"))
            .arg(workspace_root().join("tests/servers/seed_dynamodb.py"))
            .args([&self.endpoint, table])
            .arg(workspace_root().join("examples/lookups/event-codes.json"))
            .arg(filler.to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Creates or updates a Secrets Manager secret (a rotation), through boto3; returns its
    /// full ARN.
    pub fn put_secret(&self, name: &str, value: &str) -> String {
        let script = r#"
import sys, boto3
endpoint, name, value = sys.argv[1:4]
client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="eu-central-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
try:
    answer = client.put_secret_value(SecretId=name, SecretString=value)
except client.exceptions.ResourceNotFoundException:
    answer = client.create_secret(Name=name, SecretString=value)
print(answer["ARN"])
"#;
        run_python(&["-c", script, &self.endpoint, name, value])
    }

    /// The environment the AWS SDK needs to talk to this server and nothing else.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "eu-central-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

/// Runs the tests' Python (`.venv`, with boto3) with `args`, with the instance metadata
/// service out of reach; asserts it succeeded and returns its stdout, trimmed.
pub fn run_python<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let output = std::process::Command::new(workspace_root().join(".venv/bin/python"))
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
