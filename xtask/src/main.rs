//! Project automation, run as `cargo xtask <command>`.
//!
//! - `dist`: the release host and every plugin as a wasm component, laid out as
//!   `dist/batch-job-aurora` and `dist/plugins/<name>.wasm` (a stable interface), plus the
//!   Lambda as `dist/lambda/bootstrap` with `dist/lambda/plugins/`;
//! - `lambda`: `dist`, then `dist/lambda.zip`: `bootstrap` and `plugins/*.cwasm` precompiled by
//!   that very `bootstrap` (with each `.wasm` beside it, which the loader falls back on), after
//!   checking that `bootstrap` needs no glibc newer than Amazon Linux 2023's (2.34); also an
//!   arm64 zip when the aarch64 cross linker and Rust target are installed;
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
    /// Builds dist, then dist/lambda.zip (bootstrap + precompiled plugins).
    Lambda,
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
        Task::Lambda => lambda(&root),
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

/// The newest glibc symbol version the Lambda OS (Amazon Linux 2023) provides.
const LAMBDA_GLIBC: (u32, u32) = (2, 34);

/// Builds `dist/lambda.zip` (and `dist/lambda-arm64.zip` when it can).
fn lambda(root: &Path) -> Result<()> {
    let dist = dist(root)?;
    let folder = dist.join("lambda");
    let bootstrap = folder.join("bootstrap");
    check_glibc(&bootstrap)?;
    for (_, name) in PLUGINS {
        let wasm = folder.join("plugins").join(format!("{name}.wasm"));
        let cwasm = folder.join("plugins").join(format!("{name}.cwasm"));
        // Portable: for any x86_64 CPU, not only this machine's (Lambda's may lack a feature
        // of it, and wasmtime would refuse the artifact).
        run(Command::new(&bootstrap)
            .arg("--precompile")
            .arg(&wasm)
            .arg(&cwasm)
            .arg("--portable"))?;
    }
    let zip = dist.join("lambda.zip");
    make_zip(&folder, &zip)?;
    println!(
        "{:>10} bytes  {} (x86_64: bootstrap, plugins/*.cwasm and *.wasm)",
        std::fs::metadata(&zip)?.len(),
        zip.display()
    );
    lambda_arm64(root, &dist)
}

/// The arm64 (Graviton) zip, when Debian's aarch64 cross linker and the Rust target are
/// installed; skipped with a message otherwise. Its plugins are `.wasm`, compiled at init: the
/// precompiler is the x86_64 `bootstrap`, whose engine compiles for its own CPU only.
fn lambda_arm64(root: &Path, dist: &Path) -> Result<()> {
    const TARGET: &str = "aarch64-unknown-linux-gnu";
    const LINKER: &str = "aarch64-linux-gnu-gcc";
    let linker = Command::new(LINKER)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()?;
    let sysroot = String::from_utf8(sysroot.stdout)?;
    let target = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(TARGET)
        .exists();
    if !linker || !target {
        println!(
            "arm64 skipped: needs {LINKER} (apt-get install gcc-aarch64-linux-gnu) and the Rust target (rustup target add {TARGET}); found linker: {linker}, target: {target}"
        );
        return Ok(());
    }
    run(cargo()
        .args([
            "build",
            "--release",
            "-p",
            "batch-job-aurora-cli",
            "--bin",
            "bootstrap",
        ])
        .args(["--target", TARGET])
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", LINKER)
        .env("CC_aarch64_unknown_linux_gnu", LINKER))?;
    let folder = dist.join("lambda-arm64");
    std::fs::create_dir_all(folder.join("plugins"))?;
    let bootstrap = folder.join("bootstrap");
    copy(
        &root.join("target").join(TARGET).join("release/bootstrap"),
        &bootstrap,
    )?;
    check_glibc(&bootstrap)?;
    for (_, name) in PLUGINS {
        let wasm = format!("{name}.wasm");
        copy(
            &dist.join("plugins").join(&wasm),
            &folder.join("plugins").join(&wasm),
        )?;
    }
    let zip = dist.join("lambda-arm64.zip");
    make_zip(&folder, &zip)?;
    println!(
        "{:>10} bytes  {} (arm64: bootstrap, plugins/*.wasm)",
        std::fs::metadata(&zip)?.len(),
        zip.display()
    );
    Ok(())
}

/// Fails when `binary` needs a glibc symbol newer than the Lambda OS has.
fn check_glibc(binary: &Path) -> Result<()> {
    let output = Command::new("objdump")
        .arg("-T")
        .arg(binary)
        .output()
        .context("cannot run objdump (binutils) to check the glibc symbol versions")?;
    ensure!(
        output.status.success(),
        "objdump -T {} failed: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let newest = newest_glibc(&String::from_utf8_lossy(&output.stdout));
    let Some((version, symbol)) = newest else {
        println!("{}: no versioned glibc symbols", binary.display());
        return Ok(());
    };
    ensure!(
        version <= LAMBDA_GLIBC,
        "{} needs GLIBC_{}.{} (for {symbol}), but the Lambda OS (Amazon Linux 2023) has glibc {}.{}: build on an older system, or for musl",
        binary.display(),
        version.0,
        version.1,
        LAMBDA_GLIBC.0,
        LAMBDA_GLIBC.1
    );
    println!(
        "{}: newest glibc symbol GLIBC_{}.{} ({symbol}), Amazon Linux 2023 has {}.{}",
        binary.display(),
        version.0,
        version.1,
        LAMBDA_GLIBC.0,
        LAMBDA_GLIBC.1
    );
    Ok(())
}

/// The newest `GLIBC_x.y` version in `objdump -T` output, with a symbol that needs it.
fn newest_glibc(objdump: &str) -> Option<((u32, u32), String)> {
    objdump
        .lines()
        .filter_map(|line| {
            let start = line.find("GLIBC_")?;
            let version = line[start + "GLIBC_".len()..]
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()?;
            let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
            let major = parts.next()??;
            let minor = parts.next().flatten().unwrap_or(0);
            let symbol = line
                .split_whitespace()
                .last()
                .unwrap_or_default()
                .to_owned();
            Some(((major, minor), symbol))
        })
        .max_by_key(|(version, _)| *version)
}

/// Zips the contents of `folder` (keeping `bootstrap` executable) into `zip`.
fn make_zip(folder: &Path, zip: &Path) -> Result<()> {
    let _ = std::fs::remove_file(zip);
    let zip = std::path::absolute(zip)?;
    let with_zip = Command::new("zip")
        .current_dir(folder)
        .args(["-q", "-r", "-X", "-9"])
        .arg(&zip)
        .args(["bootstrap", "plugins"])
        .status();
    if with_zip.is_ok_and(|status| status.success()) {
        return Ok(());
    }
    // No zip(1): Python's zipfile, with the Unix mode of each file kept.
    let script = r#"
import os, sys, zipfile
folder, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for base, _, files in os.walk(folder):
        for name in sorted(files):
            path = os.path.join(base, name)
            info = zipfile.ZipInfo.from_file(path, os.path.relpath(path, folder))
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read())
"#;
    run(Command::new("python3")
        .args(["-c", script])
        .arg(folder)
        .arg(&zip))
    .context("neither zip nor python3 could make the zip")
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_newest_glibc_version_is_found() {
        let objdump = "\
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.2.5) malloc
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.34) __libc_start_main
0000000000000000  w   DF *UND*  0000000000000000 (GLIBC_2.28) statx
0000000000000000      DF *UND*  0000000000000000  GLIBC_2.3.4 __sprintf_chk
";
        assert_eq!(
            super::newest_glibc(objdump),
            Some(((2, 34), "__libc_start_main".to_owned()))
        );
        assert_eq!(super::newest_glibc("no symbols"), None);
    }
}
