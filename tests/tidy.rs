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

/// The backticked names in one cell of ARCHITECTURE.md's invariants table.
fn cited_names(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Whether a name cited in the "enforced in" column exists: a file under `host/src/` (or the
/// workspace), or `module::item` whose module file names the item.
fn enforcement_exists(name: &str) -> bool {
    let root = workspace_root();
    let host = root.join("host/src");
    // "plugin/load.rs (`cache_key`: …)" cites both the file and an item in it; items alone
    // are checked through their module path.
    if name.ends_with(".rs") || name.contains('/') {
        return host.join(name).exists() || root.join(name).exists();
    }
    let Some((module, item)) = name.rsplit_once("::") else {
        // A bare item (`cache_key`): somewhere in the library.
        return files("host/src", &[".rs"])
            .iter()
            .any(|file| std::fs::read_to_string(file).is_ok_and(|text| text.contains(name)));
    };
    let module = module.replace("::", "/");
    [format!("{module}.rs"), format!("{module}/mod.rs")]
        .iter()
        .filter_map(|file| std::fs::read_to_string(host.join(file)).ok())
        .any(|text| text.contains(item))
}

/// Whether a test cited in the "kept by" column exists: `module::name` is `fn name` in
/// `tests/module.rs` (`module::*`: the module itself); `module::tests::name` is a unit test in
/// `host/src/module.rs` (or a folder's file of that name).
fn test_exists(name: &str) -> bool {
    let root = workspace_root();
    let (path, function) = name.rsplit_once("::").unwrap_or((name, "*"));
    let (module, unit_test) = match path.strip_suffix("::tests") {
        Some(module) => (module, true),
        None => (path, false),
    };
    let candidates: Vec<PathBuf> = if unit_test {
        let module = module.replace("::", "/");
        files("host/src", &[".rs"])
            .into_iter()
            .filter(|file| {
                file.ends_with(format!("{module}.rs")) || file.ends_with(format!("{module}/mod.rs"))
            })
            .collect()
    } else {
        vec![root.join(format!("tests/{module}.rs"))]
    };
    candidates
        .iter()
        .any(|file| match std::fs::read_to_string(file) {
            Ok(text) => function == "*" || text.contains(&format!("fn {function}(")),
            Err(_) => false,
        })
}

#[test]
fn every_name_the_invariants_table_cites_exists() {
    let architecture = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    let table = architecture
        .split("## Invariants")
        .nth(1)
        .expect("ARCHITECTURE.md has an Invariants section");
    let mut missing = Vec::new();
    for row in table.lines().filter(|line| line.starts_with("| ")).skip(2) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let [_, enforced_in, kept_by] = cells[..] else {
            missing.push(format!("a row without three cells: {row}"));
            continue;
        };
        for name in cited_names(enforced_in) {
            if !enforcement_exists(name) {
                missing.push(format!("enforced in `{name}`"));
            }
        }
        for name in cited_names(kept_by) {
            if !test_exists(name) {
                missing.push(format!("kept by `{name}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's invariants cite names that do not exist:\n{}",
        missing.join("\n")
    );
}
