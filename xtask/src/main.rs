//! Project automation, run as `cargo xtask <command>`.
//!
//! - `dist`: the release host and every plugin as a wasm component, laid out as
//!   `dist/batch-job-aurora` and `dist/plugins/<name>.wasm` (a stable interface), plus the
//!   Lambda as `dist/lambda/bootstrap` with `dist/lambda/plugins/`;
//! - `demo`: `dist`, then a run of the bundled examples into `demo.db` (SQLite);
//! - `bench`: `dist`, then a run over generated documents, printing throughput and peak RSS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Builds dist/batch-job-aurora and dist/plugins/*.wasm.
    Dist,
    /// Builds dist, then runs the bundled examples into demo.db.
    Demo {
        /// Where the demo writes.
        #[arg(long, default_value = "sqlite://demo.db")]
        database: String,
    },
    /// Builds dist, then runs generated documents through it and prints the figures.
    Bench {
        /// How many documents to generate (60% GitHub pushes, 20% Slack, 20% ratings).
        #[arg(long, default_value_t = 30_000)]
        documents: usize,
        /// The databases to load: sqlite (a fresh file), mysql (root@127.0.0.1:3306/test) and
        /// postgres (postgres@127.0.0.1:5432/test); their tables are dropped first.
        #[arg(long, value_delimiter = ',', default_value = "sqlite")]
        engines: Vec<String>,
    },
}

/// The plugins that ship, by package and by library (file) name.
const PLUGINS: [(&str, &str); 3] = [
    ("plugin-github", "github"),
    ("plugin-slack", "slack"),
    ("plugin-event-rating", "event_rating"),
];

fn main() -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match Cli::parse().command {
        Task::Dist => dist(&root).map(drop),
        Task::Demo { database } => demo(&root, &database),
        Task::Bench { documents, engines } => bench(&root, documents, &engines),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is in the workspace root")
        .to_owned()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    ensure!(status.success(), "{command:?} failed with {status}");
    Ok(())
}

/// Builds the release host and the plugins, and lays them out in `dist/`.
fn dist(root: &Path) -> Result<PathBuf> {
    ensure_wasm_target()?;
    run(cargo().args(["build", "--release", "-p", "batch-job-aurora-cli"]))?;
    let mut plugins = cargo();
    plugins.args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"]);
    for (package, _) in PLUGINS {
        plugins.args(["-p", package]);
    }
    run(&mut plugins)?;

    let dist = root.join("dist");
    let plugin_dir = dist.join("plugins");
    std::fs::create_dir_all(&plugin_dir)?;
    let target = root.join("target");
    copy(
        &target.join("release/batch-job-aurora"),
        &dist.join("batch-job-aurora"),
    )?;
    // The Lambda: `bootstrap` (the provided.al2023 runtime's entry) with its plugins beside it.
    let lambda = dist.join("lambda");
    std::fs::create_dir_all(lambda.join("plugins"))?;
    copy(&target.join("release/bootstrap"), &lambda.join("bootstrap"))?;
    for (_, name) in PLUGINS {
        let wasm = format!("{name}.wasm");
        copy(
            &target.join("wasm32-wasip2/plugin").join(&wasm),
            &plugin_dir.join(&wasm),
        )?;
        copy(&plugin_dir.join(&wasm), &lambda.join("plugins").join(&wasm))?;
    }
    for entry in std::fs::read_dir(&plugin_dir)? {
        let path = entry?.path();
        println!(
            "{:>10} bytes  {}",
            std::fs::metadata(&path)?.len(),
            path.display()
        );
    }
    println!(
        "{:>10} bytes  {}",
        std::fs::metadata(dist.join("batch-job-aurora"))?.len(),
        dist.join("batch-job-aurora").display()
    );
    Ok(dist)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Installs the wasm target with rustup when the toolchain lacks it.
fn ensure_wasm_target() -> Result<()> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()?;
    let sysroot = String::from_utf8(sysroot.stdout)?;
    if Path::new(sysroot.trim())
        .join("lib/rustlib/wasm32-wasip2")
        .exists()
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))
}

fn demo(root: &Path, database: &str) -> Result<()> {
    let dist = dist(root)?;
    println!("\nrunning the bundled examples into {database}:\n");
    run(Command::new(dist.join("batch-job-aurora")).args([
        "run",
        "--source",
        "file:examples/documents",
        "--database",
        database,
        "--slack-channels",
        "file:examples/lookups/slack-channels.json",
        "--event-codes",
        "file:examples/lookups/event-codes.json",
    ]))
}

fn bench(root: &Path, documents: usize, engines: &[String]) -> Result<()> {
    let dist = dist(root)?;
    let work = root.join("target/bench");
    std::fs::create_dir_all(&work)?;
    let source = work.join("documents.json");
    let bytes = generate(root, &source, documents)?;
    for engine in engines {
        let database = fresh_database(&work, engine)?;
        for pass in ["first run", "rerun (all duplicates)"] {
            let started = Instant::now();
            let mut child = Command::new(dist.join("batch-job-aurora"))
                .args(["run", "--json", "--source"])
                .arg(format!("file:{}", source.display()))
                .args(["--database", &database])
                .args([
                    "--slack-channels",
                    "file:examples/lookups/slack-channels.json",
                ])
                .args(["--event-codes", "file:examples/lookups/event-codes.json"])
                .stdout(Stdio::piped())
                .spawn()?;
            let peak = peak_rss_kib(child.id(), || {
                child.try_wait().map(|status| status.is_some())
            })?;
            let output = child.wait_with_output()?;
            let elapsed = started.elapsed();
            ensure!(output.status.success(), "the bench run failed");
            let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
            println!(
                "{engine} {pass}: {documents} documents ({:.0} MB) in {:.2} s: {:.0} documents/s, {:.0} MB/s, peak RSS {:.1} MiB\n  {summary}",
                bytes as f64 / 1e6,
                elapsed.as_secs_f64(),
                documents as f64 / elapsed.as_secs_f64(),
                bytes as f64 / 1e6 / elapsed.as_secs_f64(),
                peak as f64 / 1024.0,
            );
        }
    }
    Ok(())
}

/// The URL of an empty database of `engine`, dropping what an earlier bench left.
fn fresh_database(work: &Path, engine: &str) -> Result<String> {
    const TABLES: &str =
        "GithubType, SlackType, EventRatingType, batch_job_runs, batch_job_failed_documents";
    match engine {
        "sqlite" => {
            let database = work.join("bench.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
            }
            Ok(format!("sqlite://{}", database.display()))
        }
        "mysql" => {
            let drop = format!("DROP TABLE IF EXISTS {TABLES}");
            run(Command::new("mariadb").args([
                "-h",
                "127.0.0.1",
                "-u",
                "root",
                "test",
                "-e",
                &drop,
            ]))?;
            Ok("mysql://root@127.0.0.1:3306/test".into())
        }
        "postgres" => {
            let quoted = TABLES
                .split(", ")
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let drop = format!("DROP TABLE IF EXISTS {quoted}");
            run(Command::new("psql").args([
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "test",
                "-c",
                &drop,
            ]))?;
            Ok("postgres://postgres@127.0.0.1:5432/test".into())
        }
        other => bail!("unknown engine {other}: expected sqlite, mysql or postgres"),
    }
}

/// Polls the process's high-water mark of resident memory until it exits.
fn peak_rss_kib(pid: u32, mut exited: impl FnMut() -> std::io::Result<bool>) -> Result<u64> {
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let hwm = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if exited()? {
            return Ok(peak);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `count` documents as one JSON array, from a real push payload, Slack envelopes and
/// ratings; returns the file's size.
fn generate(root: &Path, path: &Path, count: usize) -> Result<u64> {
    use std::io::Write;
    let push_path =
        root.join("tests/data/fixtures/github-webhooks/push/with-new-branch.payload.json");
    let push = std::fs::read_to_string(&push_path)
        .with_context(|| format!("the bench needs {}", push_path.display()))?;
    let push: serde_json::Value = serde_json::from_str(&push)?;
    let push = push.to_string();
    if push.is_empty() {
        bail!("empty push payload");
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"[")?;
    for index in 0..count {
        if index > 0 {
            out.write_all(b",\n")?;
        }
        let timestamp = 1_764_000_000 + (index as i64 % 3600);
        let id = format!("bench{index:019}");
        match index % 10 {
            0..=5 => write!(
                out,
                r#"{{"id":"{id}","timestamp":{timestamp},"type":"GithubType","data":{push}}}"#
            )?,
            6 | 7 => write!(
                out,
                r#"{{"id":"{id}","timestamp":{timestamp},"type":"SlackType","data":{{"type":"event_callback","team_id":"T061EG9R6","event_time":{timestamp},"event":{{"type":"message","channel":"C012AB3CD","ts":"{timestamp}.000100"}}}}}}"#
            )?,
            _ => write!(
                out,
                r#"{{"id":"{id}","timestamp":{timestamp},"type":"EventRatingType","data":{{"button":{},"event_code":"101010"}}}}"#,
                index % 3 + 1
            )?,
        }
    }
    out.write_all(b"]")?;
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}
