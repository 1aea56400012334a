//! The sink under real faults, through the real binary: a full disk, a failed commit, a table
//! without a unique id, a table locked by another session, a read-only database, ids that
//! differ only in trailing spaces, single-precision columns, first runs racing on a fresh
//! database. Every fault comes at a known point: a filesystem of a known size, a trigger that
//! fails after a known number of rows, a lock held by the test itself.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use batch_job_aurora::model::{Cell, Column, ColumnType, Row};
use batch_job_aurora::sink::{Sink, TableSpec};
use serde_json::{Value, json};

use crate::cli::binary;
use crate::support::{Engine, TestDatabase, config_for, ndjson, ok_documents, plugin_folder, run};

const T0: i64 = 1_764_000_000;
/// How long past its deadline a run may take to end: the last write's own second, the
/// process's start and exit.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// `batch-job-aurora run --json` of `source` into `url`, with extra flags; its output and how
/// long it took.
fn run_binary(source: &Path, url: &str, plugins: &Path, extra: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(binary())
        .args(["run", "--json", "--source"])
        .arg(source)
        .args(["--database", url, "--plugins"])
        .arg(plugins)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output, started.elapsed())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn summary(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no summary; stderr: {}", stderr(output)))
}

/// The status and error the run log holds for the run of MisbehavingType started last.
async fn last_run(database: &TestDatabase) -> (String, String) {
    let last = "SELECT {} FROM batch_job_runs WHERE type_name = 'MisbehavingType' \
                ORDER BY started_at DESC, run_id DESC LIMIT 1";
    let status = database.strings(&last.replace("{}", "status")).await;
    let error = database
        .strings(&last.replace("{}", "COALESCE(error, '')"))
        .await;
    (status[0].clone(), error[0].clone())
}

// 1. A full disk under SQLite: a filesystem of 300 KiB, in a mount namespace of the run's
// own (so that no root is needed), fills part way through 6,000 rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_the_run_and_counts_nothing_it_did_not_store() {
    let plugins = plugin_folder(&["misbehaving"]);
    let documents = ok_documents("full", 6_000, T0, 1);
    let (_folder, source) = ndjson(&documents);
    let mount = tempfile::tempdir().unwrap();
    let kept = tempfile::tempdir().unwrap();
    // Inside the namespace: mount the small filesystem, run, copy the database out (the
    // filesystem goes with the namespace), and exit with the run's code.
    let script = r#"mount -t tmpfs -o size=300k tmpfs "$1" || exit 99
        shift; out="$1"; shift
        "$@"; code=$?
        cp "$MOUNTED"/full.db* "$out"/
        exit $code"#;
    let url = format!("sqlite://{}/full.db", mount.path().display());
    let started = Instant::now();
    let output = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", script, "sh"])
        .arg(mount.path())
        .arg(kept.path())
        .arg(binary())
        .args(["run", "--json", "--rows-per-write", "500", "--source"])
        .arg(&source)
        .args(["--database", &url, "--plugins"])
        .arg(plugins.path())
        .env("MOUNTED", mount.path())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert_ne!(output.status.code(), Some(99), "cannot mount a tmpfs here");
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("database or disk is full"), "{message}");
    let database = TestDatabase::sqlite_file(&kept.path().join("full.db"));
    let stored = database.count_rows("MisbehavingType", "1 = 1").await;
    assert!(
        (1..6_000).contains(&stored),
        "the disk filled part way: {stored} rows"
    );
    let (status, error) = last_run(&database).await;
    assert_eq!(status, "failed", "{message}");
    assert!(error.contains("database or disk is full"), "{error}");
    eprintln!("full disk: exit 1 in {elapsed:?}, {stored} of 6000 rows stored");

    // With room again, the rerun stores the rest: every id once, counted exactly.
    let (output, _) = run_binary(&source, &database.url, plugins.path(), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let counts = &summary(&output)["types"]["MisbehavingType"];
    assert_eq!(counts["duplicates"], stored, "{counts}");
    assert_eq!(counts["inserted"], 6_000 - stored, "{counts}");
    assert_eq!(database.count_rows("MisbehavingType", "1 = 1").await, 6_000);
}

/// The same class on the servers: a disk or quota error inside the transaction, raised once
/// the table holds 1,000 rows. PostgreSQL's comes at COMMIT (a deferred constraint trigger,
/// SQLSTATE 53100 disk_full); MariaDB has no deferred triggers, so its comes from the INSERT
/// (a trigger signalling 1114, "the table is full", as InnoDB does when its tablespace cannot
/// grow).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_on_the_servers_fails_the_write_and_counts_no_row() {
    let plugins = plugin_folder(&["misbehaving"]);
    let (_folder, source) = ndjson(&ok_documents("srvfull", 6_000, T0, 1));
    let (_first, one) = ndjson(&ok_documents("srvfull", 1, T0, 1));
    for engine in [Engine::Postgres, Engine::Mysql] {
        let database = TestDatabase::new(engine, "server_full").await;
        // A first run makes the tables.
        let (output, _) = run_binary(&one, &database.url, plugins.path(), &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        let fault = match engine {
            Engine::Postgres => {
                r#"CREATE FUNCTION fill_up() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN
                     IF (SELECT COUNT(*) FROM "MisbehavingType") > 1000 THEN
                       RAISE EXCEPTION 'could not extend file: No space left on device'
                         USING ERRCODE = 'disk_full';
                     END IF;
                     RETURN NULL;
                   END $$;
                   CREATE CONSTRAINT TRIGGER fill_up AFTER INSERT ON "MisbehavingType"
                     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fill_up()"#
            }
            _ => {
                "CREATE TRIGGER fill_up BEFORE INSERT ON MisbehavingType FOR EACH ROW \
                 IF (SELECT COUNT(*) FROM MisbehavingType) >= 1000 THEN \
                   SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1114, \
                     MESSAGE_TEXT = 'The table ''MisbehavingType'' is full'; \
                 END IF"
            }
        };
        database.execute(fault).await;
        let (output, _) = run_binary(
            &source,
            &database.url,
            plugins.path(),
            &["--rows-per-write", "500"],
        );
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{engine:?}: {message}");
        let reason = match engine {
            Engine::Postgres => "No space left on device",
            _ => "is full",
        };
        assert!(message.contains(reason), "{engine:?}: {message}");
        // The trigger admits a write while the rows committed before it plus its own stay
        // within 1,000, so only a write that starts before the second commit gets in: the
        // first ones in flight, and one more in the slot the first commit frees. That many
        // writes of 500 rows is the most ever stored, and the next write fails whatever the
        // timing.
        let most = (batch_job_aurora::WRITES_IN_FLIGHT + 1) as i64 * 500;
        let stored = database.count_rows("MisbehavingType", "1 = 1").await;
        assert!(
            (1..=most).contains(&stored),
            "{engine:?}: {stored} rows stored"
        );
        let (status, error) = last_run(&database).await;
        assert_eq!(status, "failed", "{engine:?}");
        assert!(error.contains(reason), "{engine:?}: {error}");
        // Nothing was counted as stored that was not: the log's count is no more than the rows.
        let logged = database
            .count("SELECT MAX(inserted) FROM batch_job_runs WHERE status = 'failed'")
            .await;
        assert!(
            logged <= stored,
            "{engine:?}: {logged} logged, {stored} stored"
        );
        assert_eq!(
            database
                .count("SELECT COUNT(*) FROM batch_job_failed_documents")
                .await,
            0,
            "{engine:?}: a full disk is not the rows' fault"
        );
        // With room again, every id once, counted exactly.
        database
            .execute(match engine {
                Engine::Postgres => "DROP TRIGGER fill_up ON \"MisbehavingType\"",
                _ => "DROP TRIGGER fill_up",
            })
            .await;
        let (output, _) = run_binary(&source, &database.url, plugins.path(), &[]);
        assert!(output.status.success(), "{engine:?}: {}", stderr(&output));
        let counts = &summary(&output)["types"]["MisbehavingType"];
        assert_eq!(counts["duplicates"], stored, "{engine:?}: {counts}");
        assert_eq!(counts["inserted"], 6_000 - stored, "{engine:?}: {counts}");
    }
}

/// When the run log cannot be written either (its table fails too), the exit code and the
/// message still say why the run stopped, and the log's failure is said as well.
#[tokio::test(flavor = "multi_thread")]
async fn when_the_run_log_cannot_be_written_the_exit_and_message_still_say_why() {
    let plugins = plugin_folder(&["misbehaving"]);
    let (_folder, source) = ndjson(&ok_documents("nolog", 100, T0, 1));
    let database = TestDatabase::new(Engine::Postgres, "no_log").await;
    let (output, _) = run_binary(&source, &database.url, plugins.path(), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    database
        .execute(
            r#"CREATE FUNCTION no_room() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 RAISE EXCEPTION 'could not extend file: No space left on device'
                   USING ERRCODE = 'disk_full';
               END $$;
               CREATE TRIGGER no_room BEFORE INSERT ON "MisbehavingType"
                 FOR EACH ROW EXECUTE FUNCTION no_room();
               CREATE TRIGGER no_room BEFORE UPDATE ON batch_job_runs
                 FOR EACH ROW EXECUTE FUNCTION no_room()"#,
        )
        .await;
    let (_more, more) = ndjson(&ok_documents("nolog-more", 10, T0, 1));
    let (output, _) = run_binary(&more, &database.url, plugins.path(), &[]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    let last_line = message.lines().last().unwrap_or_default();
    assert!(
        last_line.starts_with("error: ") && last_line.contains("No space left on device"),
        "{message}"
    );
    assert!(
        message.contains("cannot mark the run failed in the run log"),
        "{message}"
    );
    assert_eq!(database.count_rows("MisbehavingType", "1 = 1").await, 100);
}

// 4. A table without a unique id: refused before anything is written, with the DDL that
// fixes it; with it applied, reruns count duplicates.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_a_unique_id_is_refused_with_the_fix() {
    let plugins = plugin_folder(&["misbehaving"]);
    let (_folder, source) = ndjson(&ok_documents("nokey", 50, T0, 1));
    for engine in crate::support::ENGINES {
        let database = TestDatabase::new(engine, "no_key").await;
        database
            .execute(&format!(
                "CREATE TABLE {} (id VARCHAR(24) NOT NULL, timestamp BIGINT NOT NULL, note TEXT)",
                database.quote("MisbehavingType")
            ))
            .await;
        let (output, _) = run_binary(&source, &database.url, plugins.path(), &[]);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{engine:?}: {}",
            stderr(&output)
        );
        assert_eq!(database.count_rows("MisbehavingType", "1 = 1").await, 0);
        let error = summary(&output)["types"]["MisbehavingType"]["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            error.contains("no primary key or unique index on id"),
            "{engine:?}: {error}"
        );
        let fix = error.split("fix it with: ").nth(1).unwrap();
        database.execute(fix).await;
        for (inserted, duplicates) in [(50, 0), (0, 50)] {
            let (output, _) = run_binary(&source, &database.url, plugins.path(), &[]);
            assert!(output.status.success(), "{engine:?}: {}", stderr(&output));
            let counts = &summary(&output)["types"]["MisbehavingType"];
            assert_eq!(
                (counts["inserted"].as_i64(), counts["duplicates"].as_i64()),
                (Some(inserted), Some(duplicates)),
                "{engine:?}"
            );
        }
        assert_eq!(database.count_rows("MisbehavingType", "1 = 1").await, 50);
    }
}

/// A second session that holds a lock on the type's table until dropped.
struct LockHolder {
    _pool: Box<dyn std::any::Any + Send>,
}

async fn hold_table_lock(database: &TestDatabase) -> LockHolder {
    match database.engine {
        Engine::Mysql => {
            let pool = sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(1)
                .connect(&database.url)
                .await
                .unwrap();
            let mut connection = pool.acquire().await.unwrap();
            sqlx::raw_sql("LOCK TABLES MisbehavingType WRITE")
                .execute(&mut *connection)
                .await
                .unwrap();
            LockHolder {
                _pool: Box::new((connection, pool)),
            }
        }
        _ => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&database.url)
                .await
                .unwrap();
            let mut transaction = pool.begin().await.unwrap();
            sqlx::raw_sql("LOCK TABLE \"MisbehavingType\" IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *transaction)
                .await
                .unwrap();
            LockHolder {
                _pool: Box::new((transaction, pool)),
            }
        }
    }
}

// 5. A table locked by another session: the run ends at its deadline (MySQL would wait a
// day, PostgreSQL for ever), what was stored stays, the run log says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_table_ends_the_run_at_its_deadline() {
    let plugins = plugin_folder(&["misbehaving"]);
    let (_first, first) = ndjson(&ok_documents("lockedold", 100, T0, 1));
    let (_second, second) = ndjson(&ok_documents("lockednew", 100, T0, 1));
    let deadline = 5;
    for engine in [Engine::Mysql, Engine::Postgres] {
        let database = TestDatabase::new(engine, "locked").await;
        let (output, _) = run_binary(&first, &database.url, plugins.path(), &[]);
        assert!(output.status.success(), "{engine:?}: {}", stderr(&output));
        let lock = hold_table_lock(&database).await;
        let (output, elapsed) = run_binary(
            &second,
            &database.url,
            plugins.path(),
            &["--deadline", &deadline.to_string()],
        );
        drop(lock);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{engine:?}: {message}");
        assert!(
            elapsed < Duration::from_secs(deadline) + DEADLINE_MARGIN,
            "{engine:?}: {elapsed:?} against --deadline {deadline}"
        );
        let reason = match engine {
            Engine::Mysql => "Lock wait timeout exceeded",
            _ => "canceling statement due to lock timeout",
        };
        assert!(message.contains(reason), "{engine:?}: {message}");
        let (status, error) = last_run(&database).await;
        assert_eq!(status, "failed", "{engine:?}");
        assert!(error.contains(reason), "{engine:?}: {error}");
        assert_eq!(
            database
                .count_rows("MisbehavingType", "id LIKE 'lockedold%'")
                .await,
            100,
            "{engine:?}: what was stored stays stored"
        );
        eprintln!("{engine:?} locked table: exit 1 in {elapsed:?} (deadline {deadline} s)");
    }
}

// 10. A read-only database: retries stop at the deadline. PostgreSQL: the database's
// transactions default to read-only (SQLSTATE 25006, what a failed-over writer says).
// MariaDB: making the server read-only would hit every other test, so a trigger answers
// the type's inserts with the error a read-only server gives (1290).
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_database_ends_the_run_at_its_deadline() {
    let plugins = plugin_folder(&["misbehaving"]);
    let (_first, first) = ndjson(&ok_documents("roold", 10, T0, 1));
    let (_second, second) = ndjson(&ok_documents("ronew", 10, T0, 1));
    let deadline = 6;
    for engine in [Engine::Postgres, Engine::Mysql] {
        let database = TestDatabase::new(engine, "read_only").await;
        let (output, _) = run_binary(&first, &database.url, plugins.path(), &[]);
        assert!(output.status.success(), "{engine:?}: {}", stderr(&output));
        database
            .execute(&match engine {
                Engine::Postgres => format!(
                    "ALTER DATABASE {} SET default_transaction_read_only = on",
                    database.name
                ),
                _ => "CREATE TRIGGER read_only BEFORE INSERT ON MisbehavingType FOR EACH ROW \
                      SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1290, MESSAGE_TEXT = \
                      'The MariaDB server is running with the --read-only option so it cannot execute this statement'"
                    .to_owned(),
            })
            .await;
        let (output, elapsed) = run_binary(
            &second,
            &database.url,
            plugins.path(),
            &["--deadline", &deadline.to_string()],
        );
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{engine:?}: {message}");
        assert!(message.contains("read-only"), "{engine:?}: {message}");
        assert!(
            elapsed < Duration::from_secs(deadline) + DEADLINE_MARGIN,
            "{engine:?}: {elapsed:?} against --deadline {deadline}"
        );
        eprintln!("{engine:?} read-only: exit 1 in {elapsed:?} (deadline {deadline} s)");
        assert_eq!(database.count_rows("MisbehavingType", "1 = 1").await, 10);
    }
}

// 14. Ids that differ only in trailing spaces are different documents on MariaDB; an old PAD
// SPACE table is named in the notes with its fix.
#[tokio::test(flavor = "multi_thread")]
async fn ids_that_differ_only_in_trailing_spaces_are_different_documents() {
    let plugins = plugin_folder(&["misbehaving"]);
    let documents: Vec<Value> = ["odd-pad", "odd-pad ", "odd-pad  "]
        .iter()
        .map(|id| json!({"id": id, "timestamp": T0, "type": "MisbehavingType", "data": {"action": "ok"}}))
        .collect();
    let (_folder, source) = ndjson(&documents);
    for engine in crate::support::ENGINES {
        let database = TestDatabase::new(engine, "pad_ids").await;
        let summary = run(config_for(&source, &database, plugins.path())).await;
        assert_eq!((summary.inserted, summary.duplicates), (3, 0), "{engine:?}");
    }
    // The job's own earlier tables (ascii_bin, PAD SPACE) are said once, with the fix.
    let database = TestDatabase::new(Engine::Mysql, "pad_ids_old").await;
    database
        .execute(
            "CREATE TABLE MisbehavingType (id VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin \
             NOT NULL PRIMARY KEY, timestamp BIGINT NOT NULL, note TEXT)",
        )
        .await;
    let summary = run(config_for(&source, &database, plugins.path())).await;
    let notes = &summary.types["MisbehavingType"].notes;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("trailing spaces"), "{notes:?}");
    let fix = notes[0].split("fix it with: ").nth(1).unwrap();
    assert!(fix.contains("ascii_nopad_bin"), "{fix}");
    database.execute("DELETE FROM MisbehavingType").await;
    database.execute(fix).await;
    let summary = run(config_for(&source, &database, plugins.path())).await;
    assert!(summary.types["MisbehavingType"].notes.is_empty());
    assert_eq!((summary.inserted, summary.duplicates), (3, 0));
}

// 15. Single-precision float columns are named in the notes with their fix; the tables the
// job makes keep 16777217.25 exactly.
#[tokio::test(flavor = "multi_thread")]
async fn single_precision_columns_are_named_with_their_fix() {
    let table = TableSpec::new(
        "Floats",
        &[Column {
            name: "f".into(),
            kind: ColumnType::Float,
        }],
    )
    .unwrap();
    let row = Row {
        id: "precise".into(),
        timestamp: 1,
        cells: vec![Cell::Float(16_777_217.25)],
    };
    for engine in crate::support::ENGINES {
        // Made by the job: exact.
        let database = TestDatabase::new(engine, "floats").await;
        let sink = Sink::connect(&database.url).await.unwrap();
        assert!(sink.prepare(&table).await.unwrap().notes.is_empty());
        assert_eq!(
            sink.insert(&table, std::slice::from_ref(&row))
                .await
                .unwrap()
                .inserted,
            1
        );
        let stored = database
            .strings(&format!(
                "SELECT CAST(f AS {}) FROM {}",
                if engine == Engine::Mysql {
                    "CHAR"
                } else {
                    "TEXT"
                },
                database.quote("Floats")
            ))
            .await;
        assert_eq!(stored, ["16777217.25"], "{engine:?}");
        sink.close().await;
        if engine == Engine::Sqlite {
            continue; // REAL is a double there.
        }
        // An old single-precision column: said, with the statement that fixes it.
        let database = TestDatabase::new(engine, "floats_old").await;
        let (id, single) = match engine {
            Engine::Mysql => (
                "VARCHAR(24) CHARACTER SET ascii COLLATE ascii_nopad_bin",
                "FLOAT",
            ),
            _ => ("VARCHAR(24)", "REAL"),
        };
        database
            .execute(&format!(
                "CREATE TABLE {} (id {id} NOT NULL PRIMARY KEY, timestamp BIGINT NOT NULL, f {single})",
                database.quote("Floats")
            ))
            .await;
        let sink = Sink::connect(&database.url).await.unwrap();
        let notes = sink.prepare(&table).await.unwrap().notes;
        assert_eq!(notes.len(), 1, "{engine:?}: {notes:?}");
        assert!(notes[0].contains("column f"), "{notes:?}");
        let fix = notes[0].split("fix it with: ").nth(1).unwrap();
        sink.close().await;
        database.execute(fix).await;
        let sink = Sink::connect(&database.url).await.unwrap();
        assert!(sink.prepare(&table).await.unwrap().notes.is_empty());
        sink.insert(&table, std::slice::from_ref(&row))
            .await
            .unwrap();
        sink.close().await;
        let stored = database
            .strings(&format!(
                "SELECT CAST(f AS {}) FROM {}",
                if engine == Engine::Mysql {
                    "CHAR"
                } else {
                    "TEXT"
                },
                database.quote("Floats")
            ))
            .await;
        assert_eq!(stored, ["16777217.25"], "{engine:?}");
    }
}

// 18. First runs racing on a fresh database. PostgreSQL: the test holds the runs' DDL lock
// until every run waits for it, then lets them all go at once. MariaDB serialises DDL on a
// table itself; its runs race freely.
#[tokio::test(flavor = "multi_thread")]
async fn first_runs_racing_on_a_fresh_database_all_succeed() {
    const RUNS: usize = 6;
    let plugins = plugin_folder(&["misbehaving"]);
    let (_folder, source) = ndjson(&ok_documents("race", 300, T0, 1));
    for engine in [Engine::Postgres, Engine::Mysql] {
        let database = TestDatabase::new(engine, "first_race").await;
        let gate = if engine == Engine::Postgres {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&database.url)
                .await
                .unwrap();
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(batch_job_aurora::sink::POSTGRES_DDL_LOCK)
                .execute(&pool)
                .await
                .unwrap();
            Some(pool)
        } else {
            None
        };
        let children: Vec<_> = (0..RUNS)
            .map(|_| {
                Command::new(binary())
                    .args(["run", "--json", "--source"])
                    .arg(&source)
                    .args(["--database", &database.url, "--plugins"])
                    .arg(plugins.path())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        if let Some(pool) = gate {
            // Every run is at the DDL, waiting for the lock: then they all go at once.
            let waiting = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' \
                           AND NOT granted AND database = (SELECT oid FROM pg_database \
                           WHERE datname = current_database())";
            let started = Instant::now();
            while database.count(waiting).await < RUNS as i64 {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the runs never waited for the DDL lock"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(batch_job_aurora::sink::POSTGRES_DDL_LOCK)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let mut inserted = 0;
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{engine:?}: {}", stderr(&output));
            inserted += summary(&output)["inserted"].as_i64().unwrap();
        }
        assert_eq!(inserted, 300, "{engine:?}: every id stored once");
        assert_eq!(database.count_rows("MisbehavingType", "1 = 1").await, 300);
    }
}
