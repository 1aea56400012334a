//! Exactly once through crashes and lost connections, on MariaDB and PostgreSQL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::binary;
use crate::support::{Engine, TestDatabase, config_for, ndjson, ok_documents, plugin_folder};

const DOCUMENTS: usize = 60_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_mid_way_and_run_again_stores_every_id_once() {
    let plugins = plugin_folder(&["misbehaving"]);
    let (_folder, source) = ndjson(&ok_documents("k", DOCUMENTS, 1_000, 1));
    for engine in [Engine::Mysql, Engine::Postgres] {
        let database = TestDatabase::new(engine, "kill9").await;
        let job = |json: bool| {
            let mut command = Command::new(binary());
            command
                .args(["run", "--source"])
                .arg(&source)
                .args(["--database", &database.url, "--plugins"])
                .arg(plugins.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if json {
                command.arg("--json");
            }
            command
        };
        let mut first = job(false).spawn().unwrap();
        // Wait until some batches are in, then kill -9 in the middle of the run.
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if has_rows(&database).await {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the run never started"
            );
        }
        first.kill().unwrap();
        first.wait().unwrap();
        let before = database.count_rows("MisbehavingType", "1 = 1").await;
        assert!(
            before < DOCUMENTS as i64,
            "{engine:?}: killed too late to prove anything ({before})"
        );

        let output = job(true).output().unwrap();
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

/// Whether the job has stored some rows yet (its table may not exist yet).
async fn has_rows(database: &TestDatabase) -> bool {
    let sql = format!("SELECT COUNT(*) FROM {}", database.quote("MisbehavingType"));
    database
        .try_count(&sql)
        .await
        .is_ok_and(|stored| stored > 0)
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
        config.rows_per_write = 500;
        let job = tokio::spawn(batch_job_aurora::run(config));
        let mut kills = 0;
        while !job.is_finished() && kills < 3 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            if has_rows(&database).await {
                kill_connections(&admin, &database).await;
                kills += 1;
            }
        }
        let summary = job.await.unwrap().unwrap();
        assert!(
            kills > 0,
            "{engine:?}: the run ended before a connection could be killed"
        );
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
