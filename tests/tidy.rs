//! The invariants of ARCHITECTURE.md that a grep can keep true. Each check names the file and
//! line that breaks it.

use std::path::{Path, PathBuf};

use crate::support::workspace_root;

/// Every file under `dir` (relative to the workspace) whose name ends with one of `suffixes`.
fn files(dir: &str, suffixes: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, suffixes: &[&str], found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target" | ".git" | ".venv" | "dist" | "node_modules"
                ) && !name.starts_with(".venv")
                {
                    walk(&path, suffixes, found);
                }
            } else if suffixes.iter().any(|suffix| name.ends_with(suffix)) {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&workspace_root().join(dir), suffixes, &mut found);
    found.sort();
    found
}

/// The lines of `files` that contain `needle`, as `path:line: text`, skipping the files that
/// `allowed` accepts.
fn offenders(files: &[PathBuf], needle: &str, allowed: impl Fn(&Path) -> bool) -> Vec<String> {
    let root = workspace_root();
    let mut found = Vec::new();
    for file in files.iter().filter(|file| !allowed(file)) {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if line.contains(needle) {
                let path = file.strip_prefix(root).unwrap_or(file);
                found.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

fn under(file: &Path, dir: &str) -> bool {
    file.starts_with(workspace_root().join(dir))
}

#[test]
fn only_the_sink_knows_sql() {
    let host = files("host/src", &[".rs"]);
    let found = offenders(&host, "sqlx", |file| under(file, "host/src/sink"));
    assert!(
        found.is_empty(),
        "sqlx outside host/src/sink:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_lambda_binary_knows_the_lambda_runtime() {
    let rust = files(".", &[".rs"]);
    let found = offenders(&rust, "lambda_runtime", |file| {
        file == workspace_root().join("cli/src/lambda.rs") || under(file, "tests")
    });
    assert!(
        found.is_empty(),
        "lambda_runtime outside cli/src/lambda.rs:\n{}",
        found.join("\n")
    );
    let manifests = files(".", &["Cargo.toml"]);
    let found = offenders(&manifests, "lambda_runtime", |file| {
        file == workspace_root().join("cli/Cargo.toml")
            || file == workspace_root().join("Cargo.toml")
    });
    assert!(
        found.is_empty(),
        "lambda_runtime as a dependency of:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_library_has_no_binary_dependencies() {
    let manifest = std::fs::read_to_string(workspace_root().join("host/Cargo.toml")).unwrap();
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or_default();
    for binary_only in [
        "clap",
        "indicatif",
        "lambda_runtime",
        "anyhow",
        "tracing-subscriber",
    ] {
        assert!(
            !dependencies
                .lines()
                .any(|line| line.starts_with(&format!("{binary_only}."))
                    || line.starts_with(&format!("{binary_only} "))),
            "host/Cargo.toml depends on {binary_only}, which belongs to the binaries"
        );
    }
}

#[test]
fn nothing_reaches_outside_the_repository() {
    let sources = files(
        ".",
        &[".rs", ".sh", ".py", ".toml", ".yaml", ".yml", "run", ".md"],
    );
    // Spelled in pieces so that this file does not match itself.
    let mut found = offenders(&sources, concat!("..", "/shared"), |_| false);
    found.extend(offenders(&sources, concat!("/work", "/"), |_| false));
    assert!(
        found.is_empty(),
        "paths outside the repository:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_test_is_ignored() {
    let rust = files(".", &[".rs"]);
    let this_file = workspace_root().join("tests/tidy.rs");
    let found = offenders(&rust, "#[ignore", |file| *file == this_file);
    assert!(found.is_empty(), "ignored tests:\n{}", found.join("\n"));
}

#[test]
fn generated_wit_types_stay_in_the_bindings() {
    let host = files("host/src", &[".rs"]);
    let bindings = workspace_root().join("host/src/plugin/bindings.rs");
    let mut found = offenders(&host, "aurora::plugin::", |file| *file == bindings);
    for generated in [
        "bindings::Document",
        "bindings::Outcome",
        "bindings::Row",
        "bindings::Value",
        "bindings::PluginError",
        "bindings::LookupError",
        "bindings::SlackChannel",
        "bindings::LogLevel",
        "bindgen!",
    ] {
        found.extend(offenders(&host, generated, |file| *file == bindings));
    }
    assert!(
        found.is_empty(),
        "generated WIT types outside host/src/plugin/bindings.rs:\n{}",
        found.join("\n")
    );
}
