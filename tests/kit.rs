//! The plugin author's kit: the frozen WIT keeps loading, and `UBWType` written twice with the
//! kit (Rust and Python, `examples/plugins/`) builds with `plugin build` and gives identical
//! rows under `plugin check --json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use batch_job_aurora::Envelope;
use batch_job_aurora::capability::{Backends, CapabilityHub};
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
    let envelope = Envelope::from_parts("ZnJvemVu", 7, None, r#"{"a":1}"#);
    assert_eq!(
        worker.transform(&[envelope]),
        [DocumentResult::Rows(vec![Row {
            id: "ZnJvemVu".into(),
            timestamp: 7,
            cells: vec![Cell::Int(7)],
        }])]
    );
}

/// A published WIT version never changes: `wit/plugin.wit` is the frozen copy of the version it
/// says, byte for byte, and 1.0.0 (which the frozen test plugin is built against) stays frozen.
/// A change bumps the version (see PLUGINS.md, Versioning).
#[test]
fn the_published_wit_versions_are_frozen() {
    let current = std::fs::read_to_string(workspace_root().join("wit/plugin.wit")).unwrap();
    let version = current
        .lines()
        .find_map(|line| line.strip_prefix("package aurora:plugin@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("wit/plugin.wit names its package version");
    let frozen = |version: &str| {
        std::fs::read_to_string(workspace_root().join(format!("wit/frozen/{version}/plugin.wit")))
            .unwrap_or_default()
    };
    assert!(frozen("1.0.0").contains("package aurora:plugin@1.0.0;"));
    assert_eq!(
        current,
        frozen(version),
        "wit/plugin.wit ({version}) is not wit/frozen/{version}/plugin.wit: a published version \
         never changes; bump the version and freeze the new text"
    );
}

/// Copies a project without its build output into `to`.
pub(crate) fn copy_project(from: &Path, to: &Path) {
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
    copy_project(
        &workspace_root().join("examples/plugins").join(example),
        &project,
    );
    build_plugin_project(&project)
}

/// `plugin build` of a plugin project; returns the component, its last line of output. The
/// Rust build keeps its target folder in the workspace's, so reruns are quick.
pub(crate) fn build_plugin_project(project: &Path) -> PathBuf {
    let target = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .join("kit-examples");
    let output = Command::new(binary())
        .args(["plugin", "build"])
        .arg(project)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "plugin build {}: {stdout}\n{}",
        project.display(),
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
        stats["peak_memory_bytes"].as_u64().unwrap()
            < stats["memory_limit_bytes"].as_u64().unwrap(),
        "{stats}"
    );
}

fn check_output(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(["plugin", "check"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn plugin_check_json_has_the_documented_shape_and_expect_fails_on_a_difference() {
    let github = wasm("github");
    let fixture = workspace_root().join("plugins/github/fixtures/push-and-ping.json");
    let output = check_output(&[
        github.to_str().unwrap(),
        "--docs",
        fixture.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys: Vec<&String> = report.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "columns",
            "failed",
            "input_paths",
            "refused",
            "rows",
            "stats",
            "type",
            "version"
        ]
    );
    assert_eq!(report["type"], "GithubType");
    assert_eq!(
        report["columns"][8],
        serde_json::json!({"name": "ref", "kind": "text"})
    );
    assert_eq!(report["rows"][0]["id"], "AAAAAF0Qp79lNx8dkdk1qQ==");
    assert_eq!(report["rows"][0]["timestamp"], 1561372607);
    assert_eq!(report["rows"][0]["repository_name"], "o/r");
    assert_eq!(
        report["refused"],
        serde_json::json!([{"id": "AAAAAF0Qp79lNx8dkdk1qg==", "reason": "no head_commit: not a push"}])
    );
    assert_eq!(report["failed"], serde_json::json!([]));
    let stats = &report["stats"];
    assert_eq!(stats["documents"], 2);
    assert_eq!(stats["budget_ms_per_document"], 2050);
    assert_eq!(stats["memory_limit_bytes"], 256 << 20);
    assert!(stats["peak_memory_bytes"].as_u64().unwrap() > 0, "{stats}");

    // The SDK's golden file is a valid --expect; a changed value exits 1 and names it.
    let expect = workspace_root().join("plugins/github/fixtures/push-and-ping.rows.json");
    let output = check_output(&[
        github.to_str().unwrap(),
        "--docs",
        fixture.to_str().unwrap(),
        "--expect",
        expect.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let scratch = tempfile::tempdir().unwrap();
    let wrong = scratch.path().join("wrong.json");
    let mut expected: Value =
        serde_json::from_str(&std::fs::read_to_string(&expect).unwrap()).unwrap();
    expected["rows"][0]["language"] = "Go".into();
    std::fs::write(&wrong, expected.to_string()).unwrap();
    let output = check_output(&[
        github.to_str().unwrap(),
        "--docs",
        fixture.to_str().unwrap(),
        "--expect",
        wrong.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("language is \"Rust\", expected \"Go\""),
        "{stderr}"
    );
}

#[test]
fn plugin_check_takes_a_bare_data_object_and_reports_capability_calls() {
    let scratch = tempfile::tempdir().unwrap();
    let docs = scratch.path().join("one.json");
    std::fs::write(
        &docs,
        r#"{"type": "event_callback", "team_id": "T1", "event_time": 5,
            "event": {"type": "message", "channel": "C012AB3CD"}}"#,
    )
    .unwrap();
    let channels = format!(
        "file:{}",
        workspace_root()
            .join("examples/lookups/slack-channels.json")
            .display()
    );
    let slack = wasm("slack");
    let output = check_output(&[
        slack.to_str().unwrap(),
        "--docs",
        docs.to_str().unwrap(),
        "--slack-channels",
        &channels,
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["rows"][0]["id"], "doc-1");
    assert_eq!(report["rows"][0]["team_id"], "T1");
    assert_eq!(
        report["stats"]["capability_calls"],
        serde_json::json!({"slack-channels": 1})
    );
    // Without the lookup the table says why the name is NULL.
    let output = check_output(&[slack.to_str().unwrap(), "--docs", docs.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    assert!(table.contains("channel_name=null"), "{table}");
    assert!(
        table.contains("note: slack-channels not configured"),
        "{table}"
    );
}

/// The examples are what `plugin new` writes today: their copies of the SDK, the Python helper
/// package and the WIT are the current ones.
#[test]
fn the_examples_carry_the_current_sdk_helper_and_wit() {
    let root = workspace_root();
    let mut pairs: Vec<(PathBuf, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(root.join("plugins/sdk/src")).unwrap() {
        let path = entry.unwrap().path();
        pairs.push((
            path.clone(),
            root.join("examples/plugins/ubw-rust/vendor/aurora-plugin-sdk/src")
                .join(path.file_name().unwrap()),
        ));
    }
    for file in ["__init__.py", "wit.py"] {
        pairs.push((
            root.join("kit/python/aurora_kit").join(file),
            root.join("examples/plugins/ubw-python/aurora_kit")
                .join(file),
        ));
    }
    for example in ["ubw-rust", "ubw-python"] {
        pairs.push((
            root.join("wit/plugin.wit"),
            root.join("examples/plugins")
                .join(example)
                .join("wit/plugin.wit"),
        ));
    }
    for (current, copy) in pairs {
        assert_eq!(
            std::fs::read_to_string(&current).unwrap(),
            std::fs::read_to_string(&copy).unwrap_or_default(),
            "{} is not a copy of {}: copy it again",
            copy.display(),
            current.display()
        );
    }
}
