//! Project automation, run as `cargo xtask <command>`.
//!
//! - `dist`: the release host and every plugin as a wasm component, laid out as
//!   `dist/batch-job-aurora` and `dist/plugins/<name>.wasm` (a stable interface), plus the
//!   Lambda as `dist/lambda/bootstrap` with `dist/lambda/plugins/`;
//! - `lambda`: `dist`, then `dist/lambda.zip`: `bootstrap` and `plugins/*.cwasm` precompiled by
//!   that very `bootstrap` (built without the kit and SQLite: [`LAMBDA_FEATURES`]; with each
//!   `.wasm` beside it, which the loader falls back on), after
//!   checking that `bootstrap` needs no glibc newer than Amazon Linux 2023's (2.34); also an
//!   arm64 zip when the aarch64 cross linker and Rust target are installed;
//! - `demo`: the runner with only what the demo uses (`--no-default-features --features sqlite`:
//!   no AWS SDK, no kit, no Lambda) and the plugins, laid out in `dist/demo/`, then a run of the
//!   bundled examples into `demo.db` (SQLite);
//! - `bench`: `dist`, then generated documents through the fetch API into each database, next
//!   to the databases' own tools and the plugin's native cost (see `bench.rs`).
//!
//! Builds go to `$CARGO_TARGET_DIR` when it is set, else `target/`.

mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    /// Builds dist, then dist/lambda.zip (bootstrap + precompiled plugins).
    Lambda,
    /// Builds dist/demo (a runner with SQLite only, and the plugins), then runs the bundled
    /// examples into demo.db.
    Demo {
        /// Where the demo writes.
        #[arg(long, default_value = "sqlite://demo.db")]
        database: String,
    },
    /// Builds dist, then runs generated documents through it into each database, next to the
    /// databases' own tools; prints the figures and writes target/bench/results.json.
    Bench(bench::BenchArgs),
    /// The passes over a payload's bytes (today's scanner, the host's check and cut) against
    /// simd-json and sonic-rs, on the benchmark's GitHub pushes (run `bench` first, or
    /// `bench --generate-only`).
    PayloadPasses,
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
        Task::Lambda => lambda(&root, &target),
        Task::Demo { database } => demo(&root, &target, &database),
        Task::Bench(args) => bench::run(&root, &target, args),
        Task::PayloadPasses => payload_passes(&root, &target),
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

/// Cargo, without the variables `cargo run` gave xtask itself. Some build scripts (ring's) rerun
/// when `CARGO_MANIFEST_DIR` or `CARGO_PKG_*` change, so with them a release build from here
/// would not reuse the one `scripts/test.sh` makes from a shell: CI built ring and all above it
/// twice.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// Builds `payload-passes` (with the SIMD crates, which nothing else builds) and runs it.
fn payload_passes(root: &Path, target: &Path) -> Result<()> {
    let documents = target.join("bench/documents/GithubType.json");
    ensure!(
        documents.exists(),
        "{} is missing: run `cargo xtask bench --generate-only` first",
        documents.display()
    );
    run(cargo().current_dir(root).args([
        "build",
        "--release",
        "-p",
        "bench-plugin-cost",
        "--features",
        "scanners",
        "--bin",
        "payload-passes",
    ]))?;
    run(Command::new(target.join("release/payload-passes")).arg(&documents))
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
    build_plugins()?;

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

/// Builds every plugin that ships as a wasm component (`target/wasm32-wasip2/plugin/`).
fn build_plugins() -> Result<()> {
    let mut plugins = cargo();
    plugins.args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"]);
    for (package, _) in PLUGINS {
        plugins.args(["-p", package]);
    }
    run(&mut plugins)
}

/// What the Lambda's `bootstrap` is built with: the AWS SDK and the Aurora engines; no plugin
/// kit, no SQLite.
const LAMBDA_FEATURES: &str = "lambda,mysql,postgres";

/// The build of the Lambda's `bootstrap` with [`LAMBDA_FEATURES`] (for `target`, else this
/// machine).
fn bootstrap_build(target: Option<&str>) -> Command {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "batch-job-aurora-cli",
        "--bin",
        "bootstrap",
        "--no-default-features",
        "--features",
        LAMBDA_FEATURES,
    ]);
    if let Some(target) = target {
        build.args(["--target", target]);
    }
    build
}

/// The newest glibc symbol version the Lambda OS (Amazon Linux 2023) provides.
const LAMBDA_GLIBC: (u32, u32) = (2, 34);

/// Builds `dist/lambda.zip` (and `dist/lambda-arm64.zip` when it can).
fn lambda(root: &Path, target: &Path) -> Result<()> {
    let dist = dist(root, target, &[])?;
    let folder = dist.join("lambda");
    let bootstrap = folder.join("bootstrap");
    run(&mut bootstrap_build(None))?;
    copy(&target.join("release/bootstrap"), &bootstrap)?;
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
    lambda_arm64(target, &dist)
}

/// The arm64 (Graviton) zip, when Debian's aarch64 cross linker and the Rust target are
/// installed; skipped with a message otherwise. Its plugins are `.wasm`, compiled at init: the
/// precompiler is the x86_64 `bootstrap`, whose engine compiles for its own CPU only.
fn lambda_arm64(target_dir: &Path, dist: &Path) -> Result<()> {
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
    run(bootstrap_build(Some(TARGET))
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", LINKER)
        .env("CC_aarch64_unknown_linux_gnu", LINKER))?;
    let folder = dist.join("lambda-arm64");
    std::fs::create_dir_all(folder.join("plugins"))?;
    let bootstrap = folder.join("bootstrap");
    copy(
        &target_dir.join(TARGET).join("release/bootstrap"),
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

/// What the demo's runner is built with: SQLite and files; no AWS SDK, kit or Lambda, so that a
/// fresh clone's first run compiles only what it uses. The release profile, as `dist`'s.
const DEMO_FEATURES: &str = "sqlite";

fn demo(root: &Path, target: &Path, database: &str) -> Result<()> {
    ensure_wasm_target()?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "batch-job-aurora-cli",
        "--bin",
        "batch-job-aurora",
        "--no-default-features",
        "--features",
        DEMO_FEATURES,
    ]))?;
    build_plugins()?;
    let folder = root.join("dist/demo");
    std::fs::create_dir_all(folder.join("plugins"))?;
    let runner = folder.join("batch-job-aurora");
    copy(&target.join("release/batch-job-aurora"), &runner)?;
    for (_, name) in PLUGINS {
        let wasm = format!("{name}.wasm");
        copy(
            &target.join("wasm32-wasip2/plugin").join(&wasm),
            &folder.join("plugins").join(&wasm),
        )?;
    }
    println!("\nrunning the bundled examples into {database}:\n");
    run(Command::new(&runner).args([
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
