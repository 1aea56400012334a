//! The plugin author's kit: the frozen WIT keeps loading, and `UBWType` written twice with the
//! kit (Rust and Python, `examples/plugins/`) builds with `plugin build` and gives identical
//! rows under `plugin check --json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use batch_job_aurora::capability::{Backends, CapabilityHub};
use batch_job_aurora::document::Envelope;
use batch_job_aurora::model::{Cell, Row};
use batch_job_aurora::plugin::{DocumentResult, PluginEngine, SandboxLimits};
use serde_json::Value;

use crate::cli::binary;
use crate::support::{wasm, workspace_root};

#[test]
fn a_plugin_built_against_the_frozen_wit_1_0_0_keeps_loading_and_running() {
    let engine = PluginEngine::new(SandboxLimits::default()).unwrap();
    let plugin = Arc::new(engine.load(&wasm("frozen_1_0_0")).unwrap());
    assert_eq!(plugin.info.type_name, "FrozenType");
    let hub = Arc::new(CapabilityHub::new(Backends::default()));
    let grants = hub.grants("FrozenType", &plugin.info.capabilities);
    let mut worker = engine.worker(Arc::clone(&plugin), grants);
    let envelope = Arc::new(Envelope {
        id: "ZnJvemVu".into(),
        timestamp: 7,
        type_name: None,
        data: r#"{"a":1}"#.into(),
    });
    assert_eq!(
        worker.transform(&[envelope]),
        [DocumentResult::Rows(vec![Row {
            id: "ZnJvemVu".into(),
            timestamp: 7,
            cells: vec![Cell::Int(7)],
        }])]
    );
}

/// A published WIT version never changes: while `wit/plugin.wit` still says 1.0.0 it must be
/// the frozen copy, byte for byte. A change bumps the version (see PLUGINS.md, Versioning).
#[test]
fn the_published_wit_1_0_0_is_frozen() {
    let current = std::fs::read_to_string(workspace_root().join("wit/plugin.wit")).unwrap();
    let frozen =
        std::fs::read_to_string(workspace_root().join("wit/frozen/1.0.0/plugin.wit")).unwrap();
    assert!(frozen.contains("package aurora:plugin@1.0.0;"));
    if current.contains("package aurora:plugin@1.0.0;") {
        assert_eq!(
            current, frozen,
            "wit/plugin.wit changed but still says 1.0.0: bump its version"
        );
    }
}

/// Copies a project without its build output into `to`.
fn copy_project(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["target", "build", "__pycache__"].contains(&name.to_str().unwrap()) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_project(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// `plugin build` of a copy of an example; returns the component, its last line of output.
fn plugin_build(example: &str, scratch: &Path) -> PathBuf {
    let project = scratch.join(example);
    copy_project(&workspace_root().join("examples/plugins").join(example), &project);
    // The Rust build keeps its target folder in the workspace's, so reruns are quick.
    let target = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .join("kit-examples");
    let output = Command::new(binary())
        .args(["plugin", "build"])
        .arg(&project)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "plugin build {example}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.trim_end().lines().last().unwrap();
    let wasm = PathBuf::from(last);
    assert!(wasm.is_file(), "the last line is not the component: {last}");
    wasm
}

fn plugin_check(wasm: &Path, docs: &Path, expect: &Path) -> Value {
    let output = Command::new(binary())
        .args(["plugin", "check", "--json", "--docs"])
        .arg(docs)
        .arg("--expect")
        .arg(expect)
        .arg(wasm)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "plugin check {}: {}",
        wasm.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn ubw_type_written_in_rust_and_in_python_gives_identical_rows() {
    let scratch = tempfile::tempdir().unwrap();
    let rust = plugin_build("ubw-rust", scratch.path());
    let python = plugin_build("ubw-python", scratch.path());
    let data = workspace_root().join("tests/data/ubw");
    let docs = data.join("documents.json");
    let expect = data.join("documents.rows.json");
    let rust = plugin_check(&rust, &docs, &expect);
    let python = plugin_check(&python, &docs, &expect);
    for report in [&rust, &python] {
        assert_eq!(report["type"], "UBWType");
        assert_eq!(
            report["columns"],
            serde_json::json!([
                {"name": "reg_period", "kind": "text"},
                {"name": "used_hours", "kind": "float"}
            ])
        );
    }
    assert_eq!(rust["rows"], python["rows"]);
    assert_eq!(rust["refused"], python["refused"]);
    let failures = |report: &Value| -> Vec<(Value, Value)> {
        report["failed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|failure| (failure["id"].clone(), failure["stage"].clone()))
            .collect()
    };
    assert_eq!(failures(&rust), failures(&python));
    let stats = &python["stats"];
    assert!(
        stats["peak_memory_bytes"].as_u64().unwrap() < stats["memory_limit_bytes"].as_u64().unwrap(),
        "{stats}"
    );
}
