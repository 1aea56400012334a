//! `cargo xtask bench`: generated documents served by the tests' fake fetch API, through the
//! release job into SQLite, MariaDB and PostgreSQL (a first run, then an all-duplicates rerun),
//! next to the databases' own tools loading exactly the same rows, and the GitHub plugin's cost
//! in wasm against the same crate native. Prints a table and writes
//! `target/bench/results.json`; any failure, or a count that is not exactly what the documents
//! must give, ends it with an error.

mod dbtools;
mod generate;
mod measure;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use serde_json::{Value, json};

use dbtools::{Server, ToolRun};
use generate::{Generated, Mix, WINDOW_FROM, WINDOW_TO};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// How many documents to generate, shared out by --mix.
    #[arg(long, default_value_t = 100_000)]
    docs: u64,
    /// The generator's seed: the same seed gives the same documents, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The share of GitHub pushes, Slack events and event ratings, in parts.
    #[arg(long, default_value = "90,5,5")]
    mix: Mix,
    /// The databases: sqlite (a fresh file), mysql (root@127.0.0.1:3306/test) and postgres
    /// (postgres@127.0.0.1:5432/test). Their tables are dropped first.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,mysql,postgres")]
    engines: Vec<Engine>,
    /// Measure another build of the job: a folder laid out like dist/ (batch-job-aurora and
    /// plugins/), e.g. an older commit's. The plugin cost is still the current build's.
    #[arg(long, value_name = "DIR")]
    job: Option<PathBuf>,
    /// Only write the documents (into target/bench/documents) and stop.
    #[arg(long)]
    generate_only: bool,
    /// Run the job on these CPUs only (`taskset -c LIST`): `0` is one vCPU, what a 1,769 MB
    /// Lambda has. The fake fetch API and the databases still run anywhere.
    #[arg(long, value_name = "LIST")]
    job_cpus: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Engine {
    Sqlite,
    Mysql,
    Postgres,
}

impl Engine {
    fn server(self) -> Option<Server> {
        match self {
            Engine::Sqlite => None,
            Engine::Mysql => Some(Server::Mariadb),
            Engine::Postgres => Some(Server::Postgres),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Mysql => "mysql",
            Engine::Postgres => "postgres",
        }
    }
}

/// The type tables and the job's own tables, dropped before an engine's first run.
const TABLES: [&str; 5] = [
    "GithubType",
    "SlackType",
    "EventRatingType",
    "batch_job_runs",
    "batch_job_failed_documents",
];

/// One run of the job.
#[derive(Debug, Clone, Serialize)]
struct JobRun {
    pass: &'static str,
    documents: u64,
    bytes: u64,
    /// Rows handled: inserted plus duplicates.
    rows: u64,
    wall_s: f64,
    rows_per_s: f64,
    documents_per_s: f64,
    mb_per_s: f64,
    /// The job's own CPU (user + system), from wait4: nothing of the bench counts.
    cpu_us_per_document: f64,
    /// The same per row handled, and with the database server's CPU added: what the rows cost
    /// the machine, to set beside the database's own tools.
    cpu_us_per_row: f64,
    job_and_database_cpu_us_per_row: f64,
    user_us_per_document: f64,
    system_us_per_document: f64,
    /// Average cores busy in the job.
    cpu_utilisation: f64,
    peak_rss_mib: f64,
    /// The database server's CPU meanwhile (none for SQLite, which runs inside the job).
    database_cpu_us_per_document: Option<f64>,
    /// The fake fetch API's CPU meanwhile (serving with sendfile).
    fetch_api_cpu_us_per_document: f64,
    /// Time per stage from the job's summary (`stages`: read, hand-off, plugin, write), in µs
    /// per document: time spent in each stage summed over its threads, waits included, so not
    /// CPU. `None` for a job whose summary has no stages (older builds).
    stage_us_per_document: Option<Value>,
    /// The job's --json summary.
    summary: Value,
}

#[derive(Debug, Clone, Serialize)]
struct ToolFigures {
    #[serde(flatten)]
    run: ToolRun,
    /// Our first run's rows/s divided by the tool's.
    ours_over_theirs: f64,
    /// CPU per row, the database server's included: the tool's (client + server) divided by
    /// ours (job + server). Above 1 when the tool spends more.
    theirs_cpu_over_ours: f64,
}

#[derive(Debug, Clone, Serialize)]
struct EngineFigures {
    engine: Engine,
    runs: Vec<JobRun>,
    tools: Vec<ToolFigures>,
}

pub fn run(root: &Path, target: &Path, args: BenchArgs) -> Result<()> {
    ensure!(args.docs > 0, "--docs must be at least 1");
    let work = target.join("bench");
    if args.generate_only {
        let generated = generate::generate(
            root,
            &work.join("documents"),
            args.docs,
            args.seed,
            args.mix,
        )?;
        println!("{}", serde_json::to_string_pretty(&generated)?);
        return Ok(());
    }
    let dist = crate::dist(root, target, &["bench-plugin-cost"])?;
    let job_dir = match &args.job {
        Some(dir) => {
            std::fs::canonicalize(dir).with_context(|| format!("--job {}", dir.display()))?
        }
        None => dist.clone(),
    };
    let binary = job_dir.join("batch-job-aurora");
    ensure!(binary.is_file(), "no job at {}", binary.display());
    std::fs::create_dir_all(&work)?;
    let load_at_start = load_average();
    let (job, start_up) = start_up(binary, args.job_cpus.clone(), &work)?;
    if let Some(cpus) = &args.job_cpus {
        println!("the job runs on CPU {cpus} only (taskset -c {cpus})");
    }

    println!(
        "\ngenerating {} documents (seed {}) …",
        args.docs, args.seed
    );
    let generated = generate::generate(
        root,
        &work.join("documents"),
        args.docs,
        args.seed,
        args.mix,
    )?;
    for file in &generated.files {
        println!(
            "  {:<16} {:>8} documents {:>9.1} MB  ({} give a row)",
            file.type_name,
            file.documents,
            file.bytes as f64 / 1e6,
            file.rows
        );
    }

    println!("plugin cost: the GitHub transform in wasm and native …");
    let plugin_cost = plugin_cost(target, &dist, &generated)?;
    println!("write cost: the sink alone writing the GitHub rows, first run and rerun …");
    let write_cost = write_cost(target, &dist, &work, &generated, &args.engines)?;

    let platform = FakePlatform::start(root)?;
    for file in &generated.files {
        platform.put(
            &format!("/control/documents-file/{}", file.type_name),
            &json!({"path": file.path}),
        )?;
    }
    let mut engines = Vec::new();
    for engine in &args.engines {
        println!(
            "{}: first run, the database's tools, then the rerun …",
            engine.name()
        );
        engines.push(
            bench_engine(root, &work, &job, *engine, &platform, &generated)
                .with_context(|| format!("the {} bench", engine.name()))?,
        );
    }
    drop(platform);

    let results = json!({
        "date": generate::now_iso8601(),
        "machine": machine(load_at_start),
        "git": git(root),
        "job": job.binary.display().to_string(),
        "start_up": start_up,
        "arguments": {
            "docs": args.docs,
            "seed": args.seed,
            "mix": args.mix,
            "engines": args.engines,
            "window": {"from": WINDOW_FROM, "to": WINDOW_TO},
        },
        "documents": {
            "total": generated.documents(),
            "bytes": generated.bytes(),
            "rows": generated.rows(),
            "types": generated.files,
        },
        "plugin_cost": plugin_cost,
        "write_cost": write_cost,
        "engines": engines,
        "notes": [
            "CPU µs per document is the job's own user+system time from wait4, divided by every document read",
            "stage_us_per_document comes from the job's summary (stages): time in each stage summed over its threads, waits included; absent for builds without it",
            "database CPU is every process of the server, so other load on the same server counts too",
        ],
    });
    print_table(&results, &engines, &generated);
    let path = work.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
    println!("\nwrote {}", path.display());
    Ok(())
}

/// The job being measured, and the compile cache it is run with (when it has one).
struct JobUnderTest {
    binary: PathBuf,
    compile_cache: Option<PathBuf>,
    /// `--job-cpus`.
    cpus: Option<String>,
    /// Whether the job has `run --no-projection` (an older one does not): then each engine
    /// also gets a first run with whole documents, to show what projection saves.
    has_no_projection: bool,
}

/// The job's command, on `cpus` only when given.
fn job_command(binary: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus]).arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

/// Starts the job twice on an empty source, from an empty compile cache: the first start
/// compiles the plugins and fills the cache (a laptop's first run, or a Lambda container
/// without `.cwasm`), the second loads them from it, as every measured run then does. A build
/// without a compile cache is measured as it is.
fn start_up(binary: PathBuf, cpus: Option<String>, work: &Path) -> Result<(JobUnderTest, Value)> {
    let help = Command::new(&binary).args(["run", "--help"]).output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    let has_no_projection = help.contains("--no-projection");
    if !help.contains("--compile-cache") {
        let job = JobUnderTest {
            binary,
            compile_cache: None,
            cpus,
            has_no_projection,
        };
        return Ok((job, Value::Null));
    }
    let cache = work.join("compile-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let empty = work.join("empty.json");
    std::fs::write(&empty, "[]")?;
    let database = work.join("start-up.db");
    let mut seconds = Vec::new();
    for _ in 0..2 {
        let _ = std::fs::remove_file(&database);
        let measured = measure::run(
            job_command(&binary, cpus.as_deref())
                .args(["run", "--source"])
                .arg(format!("file:{}", empty.display()))
                .arg("--database")
                .arg(format!("sqlite://{}", database.display()))
                .arg("--compile-cache")
                .arg(&cache)
                .stdin(Stdio::null()),
        )?;
        ensure!(
            measured.success(),
            "the job did not start: {}",
            measured.stderr_text()
        );
        seconds.push(measured.wall.as_secs_f64());
    }
    println!(
        "start-up: {:.2} s compiling the plugins into the compile cache, {:.2} s loading them from it",
        seconds[0], seconds[1]
    );
    let figures = json!({"compiling_s": seconds[0], "from_compile_cache_s": seconds[1]});
    let job = JobUnderTest {
        binary,
        compile_cache: Some(cache),
        cpus,
        has_no_projection,
    };
    Ok((job, figures))
}

fn bench_engine(
    root: &Path,
    work: &Path,
    job: &JobUnderTest,
    engine: Engine,
    platform: &FakePlatform,
    generated: &Generated,
) -> Result<EngineFigures> {
    // An empty database: no tables of the job's.
    let empty_database = || empty_database(engine, &work.join("bench.db"), &TABLES);
    let database = empty_database()?;
    // The documents read once, so that the first run does not read them from disk after a
    // build or another engine's runs pushed them out of the page cache: a first run slowed by
    // the disk once looked like a slower job.
    for file in &generated.files {
        std::io::copy(&mut std::fs::File::open(&file.path)?, &mut std::io::sink())?;
    }
    // A pass of the job, checked against what the documents must give, and printed.
    let pass = |name: &'static str, rerun: bool, flags: &[&str]| -> Result<JobRun> {
        let run = run_job(
            root,
            job,
            engine,
            &database,
            platform,
            generated,
            (name, flags),
        )?;
        check_counts(&run.summary, generated, rerun)?;
        print_run(engine, &run);
        Ok(run)
    };
    let first = pass("first run", false, &[])?;

    let mut tools = Vec::new();
    if let Some(server) = engine.server() {
        let mut exports = Vec::new();
        for table in &TABLES[..3] {
            if let Some(export) = server.export(work, table)?
                && export.rows > 0
            {
                exports.push(export);
            }
        }
        let exported: u64 = exports.iter().map(|export| export.rows).sum();
        ensure!(
            exported == first.rows,
            "exported {exported} rows, but the first run stored {}",
            first.rows
        );
        for run in server.tools(work, &exports)? {
            let figures = ToolFigures {
                ours_over_theirs: first.rows_per_s / run.rows_per_s,
                theirs_cpu_over_ours: (run.client_cpu_us_per_row + run.server_cpu_us_per_row)
                    / first.job_and_database_cpu_us_per_row,
                run,
            };
            println!(
                "  {:<40} {:>9.0} rows/s  ours ÷ theirs {:.2}",
                figures.run.tool, figures.run.rows_per_s, figures.ours_over_theirs
            );
            tools.push(figures);
        }
    }

    let rerun = pass("rerun (all duplicates)", true, &[])?;
    let mut runs = vec![first, rerun];
    if job.has_no_projection {
        empty_database()?;
        runs.push(pass("first, no projection", false, &["--no-projection"])?);
    }
    Ok(EngineFigures {
        engine,
        runs,
        tools,
    })
}

fn print_run(engine: Engine, run: &JobRun) {
    println!(
        "  {} {}: {:.2} s, {:.0} rows/s, {:.1} MB/s, {:.1} CPU µs/doc, peak RSS {:.1} MiB",
        engine.name(),
        run.pass,
        run.wall_s,
        run.rows_per_s,
        run.mb_per_s,
        run.cpu_us_per_document,
        run.peak_rss_mib
    );
}

/// One run of the job over the whole window, measured.
fn run_job(
    root: &Path,
    job: &JobUnderTest,
    engine: Engine,
    database: &str,
    platform: &FakePlatform,
    generated: &Generated,
    (pass, flags): (&'static str, &[&str]),
) -> Result<JobRun> {
    let lookups = root.join("examples/lookups");
    let mut command = job_command(&job.binary, job.cpus.as_deref());
    command
        .args(["run", "--json"])
        .args(flags)
        .arg("--source")
        .arg(format!("http://127.0.0.1:{}/get_docs/", platform.port))
        .args(["--from", &WINDOW_FROM.to_string()])
        .args(["--to", &WINDOW_TO.to_string()])
        .args(["--database", database])
        .arg("--slack-channels")
        .arg(format!(
            "file:{}",
            lookups.join("slack-channels.json").display()
        ))
        .arg("--event-codes")
        .arg(format!(
            "file:{}",
            lookups.join("event-codes.json").display()
        ))
        .stdin(Stdio::null());
    if let Some(cache) = &job.compile_cache {
        command.arg("--compile-cache").arg(cache);
    }
    // Only what the bench sets: no configuration of the caller's reaches the job.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("DATAPLATTFORM_")
            || name.starts_with("BATCH_JOB_AURORA_")
            || name.starts_with("AWS_")
            || name == "RUST_LOG"
        {
            command.env_remove(name.as_ref());
        }
    }
    command.env("DATAPLATTFORM_AURORA_FETCH_KEY", "test-api-key");

    let server_names = engine.server().map(Server::process_names);
    let database_before = server_names.map(measure::cpu_of_processes);
    let api_before = measure::cpu_of_pid(platform.pid());
    let measured = measure::run(&mut command)?;
    std::thread::sleep(Duration::from_millis(50));
    let database_cpu = server_names
        .map(measure::cpu_of_processes)
        .zip(database_before)
        .map(|(after, before)| after.saturating_sub(before));
    let api_cpu = measure::cpu_of_pid(platform.pid()).saturating_sub(api_before);
    if !measured.success() {
        bail!(
            "the job's {pass} ended with {:?}: {}",
            measured.code,
            measured.stderr_text()
        );
    }
    let summary: Value = serde_json::from_slice(&measured.stdout).with_context(|| {
        format!(
            "the job's --json output: {}",
            String::from_utf8_lossy(&measured.stdout)
        )
    })?;
    let count = |name: &str| summary[name].as_u64().unwrap_or(0);
    let rows = count("inserted") + count("duplicates");
    let documents = generated.documents();
    let bytes = generated.bytes();
    let seconds = measured.wall.as_secs_f64();
    let per_document = |d: Duration| d.as_secs_f64() * 1e6 / documents as f64;
    let per_row = |d: Duration| d.as_secs_f64() * 1e6 / rows.max(1) as f64;
    let stage_us_per_document = summary
        .get("stages")
        .and_then(Value::as_object)
        .map(|stages| {
            stages
                .iter()
                .map(|(name, ms)| {
                    let name = name.strip_suffix("_ms").unwrap_or(name).to_owned();
                    let us = ms.as_f64().unwrap_or(0.0) * 1e3 / documents as f64;
                    (name, json!((us * 100.0).round() / 100.0))
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        });
    Ok(JobRun {
        pass,
        documents,
        bytes,
        rows,
        wall_s: seconds,
        rows_per_s: rows as f64 / seconds,
        documents_per_s: documents as f64 / seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
        cpu_us_per_document: per_document(measured.cpu()),
        cpu_us_per_row: per_row(measured.cpu()),
        job_and_database_cpu_us_per_row: per_row(measured.cpu() + database_cpu.unwrap_or_default()),
        user_us_per_document: per_document(measured.user),
        system_us_per_document: per_document(measured.system),
        cpu_utilisation: measured.cpu().as_secs_f64() / seconds,
        peak_rss_mib: measured.peak_rss_kib as f64 / 1024.0,
        database_cpu_us_per_document: database_cpu.map(per_document),
        fetch_api_cpu_us_per_document: per_document(api_cpu),
        stage_us_per_document,
        summary,
    })
}

/// Exactly what the documents must give: every row on the first run, every row a duplicate on
/// the rerun, the refusals the generator made, and no failure.
fn check_counts(summary: &Value, generated: &Generated, rerun: bool) -> Result<()> {
    if let Some(error) = summary.get("error") {
        bail!("the run reports an error: {error}");
    }
    for file in &generated.files {
        let counts = &summary["types"][file.type_name.as_str()];
        let count = |name: &str| counts[name].as_u64().unwrap_or(0);
        let (inserted, duplicates) = if rerun {
            (0, file.rows)
        } else {
            (file.rows, 0)
        };
        let expected = [
            ("inserted", inserted),
            ("duplicates", duplicates),
            ("refused", file.documents - file.rows),
            ("failed", 0),
        ];
        for (name, want) in expected {
            ensure!(
                count(name) == want,
                "{}: {name} is {} where the documents give {want}: {summary}",
                file.type_name,
                count(name)
            );
        }
        if let Some(error) = counts.get("error") {
            bail!("{}: {error}", file.type_name);
        }
    }
    Ok(())
}

/// Runs the plugin-cost binary on the sample of pushes.
fn plugin_cost(target: &Path, dist: &Path, generated: &Generated) -> Result<Value> {
    if generated.sample_documents == 0 {
        return Ok(Value::Null);
    }
    let binary = target.join("release/bench-plugin-cost");
    let measured = measure::run(
        Command::new(&binary)
            .arg(&generated.sample)
            .arg(dist.join("plugins/github.wasm"))
            .stdin(Stdio::null()),
    )?;
    ensure!(
        measured.success(),
        "{} failed: {}",
        binary.display(),
        measured.stderr_text()
    );
    let figures: Value = serde_json::from_slice(&measured.stdout)?;
    println!(
        "  CPU per document: wasm {:.2} µs (whole documents: {:.2} µs), native {:.2} µs: wasm at {:.2}× native speed",
        figures["wasm_us_per_document"].as_f64().unwrap_or(f64::NAN),
        figures["wasm_whole_documents_us_per_document"]
            .as_f64()
            .unwrap_or(f64::NAN),
        figures["native_us_per_document"]
            .as_f64()
            .unwrap_or(f64::NAN),
        figures["wasm_speed_of_native"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(figures)
}

/// The URL of an engine's database without `tables`: a fresh SQLite file at `sqlite_file`, or
/// the server's test database with those tables dropped.
fn empty_database(engine: Engine, sqlite_file: &Path, tables: &[&str]) -> Result<String> {
    Ok(match engine.server() {
        None => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", sqlite_file.display()));
            }
            format!("sqlite://{}", sqlite_file.display())
        }
        Some(server) => {
            server.drop_tables(tables)?;
            match server {
                Server::Mariadb => "mysql://root@127.0.0.1:3306/test".into(),
                Server::Postgres => "postgres://postgres@127.0.0.1:5432/test".into(),
            }
        }
    })
}

/// The table `write-cost` writes into, dropped before its first run.
const WRITE_COST_TABLE: &str = "bench_write_cost";

/// Runs the write-cost binary per engine: into an empty table, then again (all duplicates),
/// with the database server's CPU meanwhile.
fn write_cost(
    target: &Path,
    dist: &Path,
    work: &Path,
    generated: &Generated,
    engines: &[Engine],
) -> Result<Value> {
    if generated.sample_documents == 0 {
        return Ok(Value::Null);
    }
    let binary = target.join("release/write-cost");
    let rows = generated.rows().to_string();
    let mut figures = serde_json::Map::new();
    for &engine in engines {
        let url = empty_database(engine, &work.join("write-cost.db"), &[WRITE_COST_TABLE])?;
        let mut passes = Vec::new();
        for pass in ["first", "rerun"] {
            let processes = engine.server().map(Server::process_names).unwrap_or(&[]);
            let before = measure::cpu_of_processes(processes);
            let measured = measure::run(
                Command::new(&binary)
                    .arg(&generated.sample)
                    .arg(dist.join("plugins/github.wasm"))
                    .args([rows.as_str(), url.as_str(), WRITE_COST_TABLE])
                    .stdin(Stdio::null()),
            )?;
            // A PostgreSQL backend's time reaches the postmaster once it is reaped.
            std::thread::sleep(Duration::from_millis(50));
            let server_cpu = measure::cpu_of_processes(processes).saturating_sub(before);
            ensure!(
                measured.success(),
                "{} failed: {}",
                binary.display(),
                measured.stderr_text()
            );
            let mut run: Value = serde_json::from_slice(&measured.stdout)?;
            let expected = if pass == "first" {
                "inserted"
            } else {
                "duplicates"
            };
            ensure!(
                run[expected].as_u64() == Some(generated.rows()),
                "write-cost's {pass} run into {} gave {run}, not {} {expected}",
                engine.name(),
                generated.rows()
            );
            let server_us = server_cpu.as_secs_f64() * 1e6 / generated.rows() as f64;
            run["pass"] = json!(pass);
            run["server_cpu_us_per_row"] = json!(engine.server().map(|_| server_us));
            println!(
                "  {:<8} {:<5} client {:>5.2} CPU µs/row{}, {:>7.0} rows/s",
                engine.name(),
                pass,
                run["client_cpu_us_per_row"].as_f64().unwrap_or(f64::NAN),
                match engine.server() {
                    Some(_) => format!(", server {server_us:>5.2}"),
                    None => String::new(),
                },
                run["rows_per_s"].as_f64().unwrap_or(f64::NAN),
            );
            passes.push(run);
        }
        figures.insert(engine.name().into(), Value::Array(passes));
    }
    Ok(Value::Object(figures))
}

fn print_table(results: &Value, engines: &[EngineFigures], generated: &Generated) {
    let machine = &results["machine"];
    println!(
        "\n{} documents, {:.1} MB, {} rows; {} ({} cores), load {} at the start",
        generated.documents(),
        generated.bytes() as f64 / 1e6,
        generated.rows(),
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["load_average_at_start"].as_str().unwrap_or("?"),
    );
    println!(
        "\n{:<9} {:<23} {:>7} {:>8} {:>9} {:>7} {:>10} {:>9} {:>10} {:>10} {:>13}",
        "engine",
        "pass",
        "wall s",
        "rows",
        "rows/s",
        "MB/s",
        "CPU µs/doc",
        "peak MiB",
        "DB µs/doc",
        "API µs/doc",
        "job+DB µs/row"
    );
    for engine in engines {
        for run in &engine.runs {
            println!(
                "{:<9} {:<23} {:>7.2} {:>8} {:>9.0} {:>7.1} {:>10.1} {:>9.1} {:>10} {:>10.1} {:>13.1}",
                engine.engine.name(),
                run.pass,
                run.wall_s,
                run.rows,
                run.rows_per_s,
                run.mb_per_s,
                run.cpu_us_per_document,
                run.peak_rss_mib,
                run.database_cpu_us_per_document
                    .map_or("-".into(), |cpu| format!("{cpu:.1}")),
                run.fetch_api_cpu_us_per_document,
                run.job_and_database_cpu_us_per_row,
            );
        }
    }
    if engines.iter().any(|engine| !engine.tools.is_empty()) {
        println!(
            "\n{:<9} {:<36} {:>8} {:>7} {:>9} {:>11} {:>9} {:>13} {:>13}",
            "engine",
            "tool, same rows",
            "rows",
            "wall s",
            "rows/s",
            "client µs/r",
            "DB µs/r",
            "ours ÷ theirs",
            "tool÷our CPU"
        );
        for engine in engines {
            for tool in &engine.tools {
                println!(
                    "{:<9} {:<36} {:>8} {:>7.2} {:>9.0} {:>11.2} {:>9.2} {:>13.2} {:>13.2}",
                    engine.engine.name(),
                    tool.run.tool,
                    tool.run.rows,
                    tool.run.wall_s,
                    tool.run.rows_per_s,
                    tool.run.client_cpu_us_per_row,
                    tool.run.server_cpu_us_per_row,
                    tool.ours_over_theirs,
                    tool.theirs_cpu_over_ours
                );
            }
        }
    }
    let cost = &results["plugin_cost"];
    if !cost.is_null() {
        println!(
            "\nGitHub plugin transform, {} pushes in calls of {}, CPU per document: wasm {:.2} µs projected (check and cut included), {:.2} µs whole; native {:.2} µs whole, wasm at {:.2}× native speed",
            cost["documents"],
            cost["documents_per_call"],
            cost["wasm_us_per_document"].as_f64().unwrap_or(f64::NAN),
            cost["wasm_whole_documents_us_per_document"]
                .as_f64()
                .unwrap_or(f64::NAN),
            cost["native_us_per_document"].as_f64().unwrap_or(f64::NAN),
            cost["wasm_speed_of_native"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let start_up = &results["start_up"];
    if !start_up.is_null() {
        println!(
            "\nstart-up on an empty source: {:.2} s compiling the plugins, {:.2} s loading them from the compile cache (every run above loads them from it)",
            start_up["compiling_s"].as_f64().unwrap_or(f64::NAN),
            start_up["from_compile_cache_s"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
    }
    let staged: Vec<(&EngineFigures, &JobRun)> = engines
        .iter()
        .flat_map(|engine| engine.runs.iter().map(move |run| (engine, run)))
        .filter(|(_, run)| run.stage_us_per_document.is_some())
        .collect();
    if staged.is_empty() {
        println!("per-stage time: not in this job's summary");
        return;
    }
    println!(
        "\n{:<9} {:<23} {:>9} {:>9} {:>9} {:>9}   (µs per document, summed over each stage's threads, waits included)",
        "engine", "pass", "read", "hand-off", "plugin", "write"
    );
    for (engine, run) in staged {
        let stages = run.stage_us_per_document.as_ref().unwrap_or(&Value::Null);
        let stage = |name: &str| stages[name].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<9} {:<23} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            engine.engine.name(),
            run.pass,
            stage("read"),
            stage("handoff"),
            stage("plugin"),
            stage("write")
        );
    }
}

/// The tests' fake fetch API, serving the generated files.
struct FakePlatform {
    child: Child,
    port: u16,
    _stdout: BufReader<ChildStdout>,
}

impl FakePlatform {
    fn start(root: &Path) -> Result<Self> {
        let script = root.join("tests/servers/fake_platform.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", script.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|port| port.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} said {line:?}", script.display());
        };
        Ok(FakePlatform {
            child,
            port,
            _stdout: stdout,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn put(&self, path: &str, body: &Value) -> Result<()> {
        let body = body.to_string();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            stream,
            "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        ensure!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "PUT {path} answered {}",
            answer.lines().next().unwrap_or_default()
        );
        Ok(())
    }
}

impl Drop for FakePlatform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine(load_at_start: String) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: Option<u64> = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok());
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "hostname": read("/proc/sys/kernel/hostname"),
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_gib": memory_kib.map(|kib| (kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_average(),
        "mariadb": version("mariadb", &["--version"]),
        "postgresql": version("psql", &["--version"]),
    })
}

fn version(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn git(root: &Path) -> Value {
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    json!({
        "commit": run(&["rev-parse", "HEAD"]),
        "describe": run(&["describe", "--always", "--dirty"]),
        "branch": run(&["rev-parse", "--abbrev-ref", "HEAD"]),
    })
}
