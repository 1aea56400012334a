//! Project automation, run as `cargo xtask <command>`.
//!
//! - `dist`: the release host and every plugin as a wasm component, laid out as
//!   `dist/batch-job-aurora` and `dist/plugins/<name>.wasm` (a stable interface), plus the
//!   Lambda as `dist/lambda/bootstrap` with `dist/lambda/plugins/`;
//! - `demo`: `dist`, then a run of the bundled examples into `demo.db` (SQLite);
//! - `bench`: `dist`, then generated documents through the fetch API into each database, next
//!   to the databases' own tools and the plugin's native cost (see `bench.rs`).
//!
//! Builds go to `$CARGO_TARGET_DIR` when it is set, else `target/`.

mod bench;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
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
    /// Builds dist, then runs generated documents through it into each database, next to the
    /// databases' own tools; prints the figures and writes target/bench/results.json.
    Bench(bench::BenchArgs),
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
    let target = target_dir(&root);
    match Cli::parse().command {
        Task::Dist => dist(&root, &target, &[]).map(drop),
        Task::Demo { database } => demo(&root, &target, &database),
        Task::Bench(args) => bench::run(&root, &target, args),
    }
}

/// Where cargo builds: `$CARGO_TARGET_DIR` (relative to the workspace root) or `target/`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
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

/// Builds the release host and the plugins, and lays them out in `dist/`. `also` names more
/// release packages to build in the same cargo call (so that features unify as for the host).
fn dist(root: &Path, target: &Path, also: &[&str]) -> Result<PathBuf> {
    ensure_wasm_target()?;
    let mut host = cargo();
    host.args(["build", "--release", "-p", "batch-job-aurora-cli"]);
    for package in also {
        host.args(["-p", package]);
    }
    run(&mut host)?;
    let mut plugins = cargo();
    plugins.args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"]);
    for (package, _) in PLUGINS {
        plugins.args(["-p", package]);
    }
    run(&mut plugins)?;

    let dist = root.join("dist");
    let plugin_dir = dist.join("plugins");
    std::fs::create_dir_all(&plugin_dir)?;
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

fn demo(root: &Path, target: &Path, database: &str) -> Result<()> {
    let dist = dist(root, target, &[])?;
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
