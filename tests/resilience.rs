//! Exactly once through crashes and lost connections, on MariaDB and PostgreSQL. The fault
//! comes at a known point of the run (the job pauses after a number of writes), never at a
//! moment that depends on the machine's speed.

use std::io::BufRead;
use std::process::{Command, Stdio};

use batch_job_aurora::hooks::Pause;
use serde_json::Value;

use crate::cli::binary;
use crate::support::{Engine, TestDatabase, config_for, ndjson, ok_documents, plugin_folder};

const DOCUMENTS: usize = 6_000;
/// Rows per write in these tests, so that the pause leaves most documents unwritten.
const ROWS_PER_WRITE: usize = 500;

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_mid_way_and_run_again_stores_every_id_once() {
    let plugins = plugin_folder(&["misbehaving"]);
    let (_folder, source) = ndjson(&ok_documents("k", DOCUMENTS, 1_000, 1));
    for engine in [Engine::Mysql, Engine::Postgres] {
        let database = TestDatabase::new(engine, "kill9").await;
        let job = || {
            let mut command = Command::new(binary());
            command
                .args(["run", "--source"])
                .arg(&source)
                .args(["--database", &database.url, "--plugins"])
                .arg(plugins.path())
                .stdout(Stdio::piped());
            command
        };
        // The first run pauses after two writes; it is killed there, mid-run, for certain.
        let mut first = job()
            .args(["--pause-after-writes", "2", "--rows-per-write"])
            .arg(ROWS_PER_WRITE.to_string())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(first.stderr.take().unwrap());
        let paused = stderr
            .lines()
            .map_while(Result::ok)
            .any(|line| line == "paused");
        assert!(paused, "{engine:?}: the run ended without pausing");
        first.kill().unwrap();
        first.wait().unwrap();
        let before = database.count_rows("MisbehavingType", "1 = 1").await;
        // Two writes committed; the others in flight when the writer paused may have too.
        let most = (2 + batch_job_aurora::WRITES_IN_FLIGHT - 1) * ROWS_PER_WRITE;
        assert!(
            (2 * ROWS_PER_WRITE as i64..=most as i64).contains(&before),
            "{engine:?}: {before} rows before the kill"
        );

        let output = job().arg("--json").stderr(Stdio::null()).output().unwrap();
        assert!(output.status.success(), "{engine:?}");
        let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
        let counts = &summary["types"]["MisbehavingType"];
        assert_eq!(
            counts["duplicates"].as_i64().unwrap(),
            before,
            "{engine:?}: {summary}"
        );
        assert_eq!(
            counts["inserted"].as_i64().unwrap(),
            DOCUMENTS as i64 - before,
            "{engine:?}: {summary}"
        );
        assert_eq!(
            database.count_rows("MisbehavingType", "1 = 1").await,
            DOCUMENTS as i64
        );
        // The killed run never reached "succeeded", so catch-up would start before it.
        assert_eq!(
            database
                .count("SELECT COUNT(*) FROM batch_job_runs WHERE status = 'running'")
                .await,
            1
        );
    }
}

/// Kills every connection the job holds to its database, from the server's side.
async fn kill_connections(admin: &TestDatabase, target: &TestDatabase) {
    let sql = match target.engine {
        Engine::Mysql => format!(
            "SELECT CAST(COUNT(KILL_ME) AS SIGNED) FROM (SELECT ID AS KILL_ME FROM information_schema.PROCESSLIST WHERE DB = '{}' AND ID <> CONNECTION_ID()) AS victims",
            target.name
        ),
        _ => format!(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
            target.name
        ),
    };
    if target.engine == Engine::Mysql {
        // MariaDB has no function that kills; list the ids and KILL each.
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .connect(&admin.url)
            .await
            .unwrap();
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND ID <> CONNECTION_ID()",
            target.name
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        for id in ids {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL {id}")))
                .execute(&pool)
                .await;
        }
        pool.close().await;
    } else {
        admin.count(&sql).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_killed_mid_run_are_replaced_and_the_run_completes() {
    let plugins = plugin_folder(&["misbehaving"]);
    let (_folder, source) = ndjson(&ok_documents("c", DOCUMENTS, 1_000, 1));
    for engine in [Engine::Mysql, Engine::Postgres] {
        let database = TestDatabase::new(engine, "connkill").await;
        let admin = TestDatabase::new(engine, "connkill_admin").await;
        let mut config = config_for(&source, &database, plugins.path());
        config.run.rows_per_write = ROWS_PER_WRITE;
        // The run pauses after two writes, while another may be in flight; every connection
        // it holds is killed from the server's side there, and then it goes on.
        let pause = Pause::after_writes(2);
        let hooks = batch_job_aurora::hooks::RunHooks {
            pause: Some(pause.clone()),
            ..Default::default()
        };
        let job = tokio::spawn(batch_job_aurora::run_with(config, hooks));
        pause.reached.notified().await;
        kill_connections(&admin, &database).await;
        pause.resume.notify_one();
        let summary = job.await.unwrap().unwrap();
        let counts = &summary.types["MisbehavingType"];
        assert!(summary.completed(), "{engine:?}: {summary:?}");
        assert_eq!(counts.failed, 0, "{engine:?}: {summary:?}");
        // A commit whose answer was lost is retried and then counted as duplicates: every id
        // is still stored exactly once and the counts add up.
        assert_eq!(
            counts.inserted + counts.duplicates,
            DOCUMENTS as u64,
            "{engine:?}: {summary:?}"
        );
        assert_eq!(
            database.count_rows("MisbehavingType", "1 = 1").await,
            DOCUMENTS as i64
        );
    }
}
