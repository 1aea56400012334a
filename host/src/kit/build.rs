//! `plugin build`: a Rust project through cargo for `wasm32-wasip2`, a Python project through
//! componentize-py. Either way the result is one component file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::scaffold::COMPONENTIZE_PY_VERSION;
use super::{KitError, Lang};

/// Which language a project folder is in: `Cargo.toml` makes it Rust, `app.py` Python.
pub fn detect(dir: &Path) -> Result<Lang, KitError> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("app.py").is_file() {
        Ok(Lang::Python)
    } else {
        Err(KitError::Invalid(format!(
            "{} is not a plugin project: it has neither Cargo.toml nor app.py",
            dir.display()
        )))
    }
}

/// Builds the project in `dir` and returns the component's path. Progress goes to stderr.
pub fn build(dir: &Path) -> Result<PathBuf, KitError> {
    match detect(dir)? {
        Lang::Rust => build_rust(dir),
        Lang::Python => build_python(dir),
    }
}

fn run(command: &mut Command) -> Result<std::process::Output, KitError> {
    let shown = format!("{command:?}");
    command.output().map_err(|source| KitError::Spawn {
        command: shown,
        source,
    })
}

fn run_checked(command: &mut Command) -> Result<(), KitError> {
    let shown = format!("{command:?}");
    let status = command.status().map_err(|source| KitError::Spawn {
        command: shown.clone(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(KitError::Command {
            command: shown,
            status: status.to_string(),
        })
    }
}

/// Adds the `wasm32-wasip2` target with rustup when the toolchain lacks it.
fn ensure_wasm_target(dir: &Path) -> Result<(), KitError> {
    let sysroot = run(Command::new("rustc")
        .current_dir(dir)
        .args(["--print", "sysroot"]))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib/wasm32-wasip2")
        .exists()
    {
        return Ok(());
    }
    eprintln!("adding the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
    run_checked(
        Command::new("rustup")
            .current_dir(dir)
            .args(["target", "add", "wasm32-wasip2"]),
    )
}

fn build_rust(dir: &Path) -> Result<PathBuf, KitError> {
    ensure_wasm_target(dir)?;
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        // Flags meant for an outer native build (when run from a test) must not reach this one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stderr(Stdio::inherit());
    let output = run(&mut command)?;
    let shown = format!("{command:?}");
    if !output.status.success() {
        return Err(KitError::Command {
            command: shown,
            status: output.status.to_string(),
        });
    }
    // The artifact of the project's own cdylib, as cargo reports it.
    let mut component = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let wasm = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .find(|file| file.ends_with(".wasm"));
        if let Some(wasm) = wasm {
            component = Some(PathBuf::from(wasm));
        }
    }
    component.ok_or_else(|| {
        KitError::Invalid(format!(
            "{shown} built no .wasm: is the [lib] crate-type \"cdylib\"?"
        ))
    })
}

/// The folder the kit keeps its own tools in: `BATCH_JOB_AURORA_KIT_HOME`, else the job's
/// cache folder ([`crate::environment::cache_dir`]), else one in the temporary folder.
pub fn kit_home() -> PathBuf {
    if let Some(home) = std::env::var_os("BATCH_JOB_AURORA_KIT_HOME") {
        return PathBuf::from(home);
    }
    crate::environment::cache_dir(|name| std::env::var(name).ok())
        .unwrap_or_else(|| std::env::temp_dir().join("batch-job-aurora"))
}

/// componentize-py in the kit's own venv, installed there first when missing.
pub fn componentize_py() -> Result<PathBuf, KitError> {
    let venv = kit_home().join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}"));
    let bin = venv.join("bin");
    let tool = bin.join("componentize-py");
    if tool.is_file() {
        return Ok(tool);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!(
        "installing componentize-py {COMPONENTIZE_PY_VERSION} into {}",
        venv.display()
    );
    run_checked(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
    run_checked(
        Command::new(bin.join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}")),
    )?;
    Ok(tool)
}

fn build_python(dir: &Path) -> Result<PathBuf, KitError> {
    let tool = componentize_py()?;
    let dir = std::path::absolute(dir).map_err(|source| KitError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let name = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let out = dir.join("build");
    std::fs::create_dir_all(&out).map_err(|source| KitError::Write {
        path: out.clone(),
        source,
    })?;
    let component = out.join(format!("{name}.wasm"));
    // --stub-wasi: the component imports no WASI at all (no files, clock, random or network),
    // only the host interface; the sandbox stays as tight as for a Rust plugin.
    run_checked(
        Command::new(tool)
            .current_dir(&dir)
            .arg("-d")
            .arg(dir.join("wit"))
            .args(["-w", "type-plugin", "componentize", "--stub-wasi", "-p"])
            .arg(&dir)
            .arg("app")
            .arg("-o")
            .arg(&component)
            .stdout(Stdio::inherit()),
    )?;
    Ok(component)
}
