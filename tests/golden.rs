//! Every real GitHub webhook payload through the github plugin, as a wasm component.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use batch_job_aurora::Envelope;
use batch_job_aurora::capability::{Backends, CapabilityHub};
use batch_job_aurora::model::Cell;
use batch_job_aurora::plugin::{DocumentResult, PluginEngine, SandboxLimits};
use serde_json::{Value, json};

use crate::support::{check_goldens, wasm, workspace_root};

fn fixtures() -> Vec<PathBuf> {
    let root = workspace_root().join("tests/data/fixtures/github-webhooks");
    let mut files = Vec::new();
    for event in std::fs::read_dir(&root).expect("tests/data/fixtures/github-webhooks is missing") {
        let event = event.unwrap().path();
        if event.is_dir() {
            for file in std::fs::read_dir(&event).unwrap() {
                let file = file.unwrap().path();
                let file_name = file.to_string_lossy();
                if file_name.ends_with(".json") && !file_name.ends_with(".rows.json") {
                    files.push(file);
                }
            }
        }
    }
    files.sort();
    files
}

fn name(path: &Path) -> String {
    let event = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    format!("{event}/{}", path.file_name().unwrap().to_string_lossy())
}

/// What the contract (§2, GithubType) says the row is, computed independently of the plugin:
/// `None` for a refused document.
fn contract_row(data: &Value) -> Option<Vec<Value>> {
    let truthy = match data.get("head_commit") {
        None | Some(Value::Null) => false,
        Some(Value::Object(map)) => !map.is_empty(),
        Some(Value::String(text)) => !text.is_empty(),
        Some(Value::Array(items)) => !items.is_empty(),
        Some(Value::Bool(flag)) => *flag,
        Some(Value::Number(number)) => number.as_f64() != Some(0.0),
    };
    if !truthy {
        return None;
    }
    let text = |pointer: &str| {
        data.pointer(pointer)
            .filter(|v| v.is_string())
            .cloned()
            .unwrap_or(Value::Null)
    };
    let int = |pointer: &str| {
        data.pointer(pointer)
            .filter(|v| v.is_i64())
            .cloned()
            .unwrap_or(Value::Null)
    };
    Some(vec![
        text("/repository/full_name"),
        text("/sender/login"),
        text("/head_commit/id"),
        text("/head_commit/timestamp"),
        int("/repository/stargazers_count"),
        text("/repository/language"),
        int("/repository/forks_count"),
        int("/repository/open_issues_count"),
        text("/ref"),
    ])
}

fn cell_json(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(text) => json!(text),
        Cell::Int(int) => json!(int),
        Cell::Float(float) => json!(float),
        Cell::Bool(flag) => json!(flag),
    }
}

#[test]
fn every_github_webhook_payload_gives_the_contract_row_or_a_refusal() {
    let engine = PluginEngine::new(SandboxLimits::default()).unwrap();
    let plugin = Arc::new(engine.load(&wasm("github")).unwrap());
    let hub = Arc::new(CapabilityHub::new(Backends::default()));
    let mut worker = engine.worker(Arc::clone(&plugin), hub.grants("GithubType", &[]));
    let files = fixtures();
    assert!(
        files.len() >= 273,
        "expected the 273 bundled payloads, found {}",
        files.len()
    );
    let documents: Vec<Envelope> = files
        .iter()
        .enumerate()
        .map(|(index, path)| {
            Envelope::from_parts(
                &format!("doc{index:05}"),
                1_561_372_607 + index as i64,
                Some("GithubType"),
                &std::fs::read_to_string(path).unwrap(),
            )
        })
        .collect();
    // One call for all of them: the batch path, with its per-document outcomes.
    let results = worker.transform(&documents);
    assert_eq!(results.len(), documents.len());
    let mut goldens = Vec::new();
    let mut rows = 0;
    for ((path, document), result) in files.iter().zip(&documents).zip(results) {
        let data: Value = serde_json::from_str(document.data()).unwrap();
        let expected = contract_row(&data);
        let outcome = match (result, expected) {
            (DocumentResult::Refused(reason), None) => json!({ "refused": reason }),
            (DocumentResult::Rows(found), Some(expected)) => {
                assert_eq!(found.len(), 1, "{}", name(path));
                let row = &found[0];
                assert_eq!(row.id, document.id);
                assert_eq!(row.timestamp, document.timestamp);
                let values: Vec<Value> = row.cells.iter().map(cell_json).collect();
                assert_eq!(values, expected, "{}", name(path));
                rows += 1;
                let columns = plugin.info.columns.iter().map(|column| column.name.clone());
                Value::Object(columns.zip(values).collect())
            }
            (result, expected) => {
                panic!("{}: got {result:?}, contract says {expected:?}", name(path))
            }
        };
        let input = path.file_name().unwrap().to_string_lossy();
        let golden = path.with_file_name(format!(
            "{}.rows.json",
            input.strip_suffix(".json").unwrap_or(&input)
        ));
        goldens.push((golden, outcome));
    }
    assert!(rows >= 2, "the payloads hold pushes with a head_commit");
    check_goldens(&goldens);
}
