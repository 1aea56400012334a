//! Native tests of plugins: a host that answers from maps, document files, and golden tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use serde_json::value::RawValue;

use crate::{Document, Host, LogLevel, LookupError, Outcome, Plugin, SlackChannel, Value};

/// A host that answers from maps given by the test. A capability left unset answers
/// `not-configured`, as the real host does when the operator configured nothing.
#[derive(Debug, Default)]
pub struct StaticHost {
    slack_channels: Option<HashMap<String, Option<String>>>,
    references: HashMap<String, HashMap<String, Vec<String>>>,
}

impl StaticHost {
    /// A host with no capability configured.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a Slack channel answer; `None` stands for `{"ok": false}`.
    pub fn with_channel(mut self, id: &str, name: Option<&str>) -> Self {
        self.slack_channels
            .get_or_insert_with(HashMap::new)
            .insert(id.to_owned(), name.map(str::to_owned));
        self
    }

    /// Adds a reference-table item (a JSON object) under `key`.
    pub fn with_reference(mut self, table: &str, key: &str, item: serde_json::Value) -> Self {
        self.references
            .entry(table.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_default()
            .push(item.to_string());
        self
    }
}

impl Host for StaticHost {
    fn log(&self, _level: LogLevel, _message: &str) {}

    fn slack_channel(&self, channel_id: &str) -> Result<Option<SlackChannel>, LookupError> {
        let channels = self
            .slack_channels
            .as_ref()
            .ok_or_else(|| LookupError::NotConfigured("no Slack channels in this test".into()))?;
        Ok(channels
            .get(channel_id)
            .cloned()
            .flatten()
            .map(|name| SlackChannel {
                id: channel_id.to_owned(),
                name,
            }))
    }

    fn reference_lookup(&self, table: &str, key: &str) -> Result<Vec<String>, LookupError> {
        let items = self
            .references
            .get(table)
            .ok_or_else(|| LookupError::NotConfigured(format!("no table {table} in this test")))?;
        Ok(items.get(key).cloned().unwrap_or_default())
    }
}

/// Reads a document file the way `batch-job-aurora plugin check --docs` does: a JSON array of
/// envelopes (`{"id", "timestamp", "data"}`), NDJSON of envelopes, or one bare `data` object.
/// A bare object gets the id `doc-1` and timestamp 0 here (`plugin check` gives it the current
/// time); a single object with `id` and an object `data` is read as an envelope.
pub fn read_documents(text: &str) -> Result<Vec<Document>, String> {
    /// An envelope with its `data` kept as written, as the host passes it on.
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        id: String,
        timestamp: i64,
        #[serde(borrow, default)]
        data: Option<&'a RawValue>,
    }
    fn envelope(raw: &str, index: usize) -> Result<Document, String> {
        let envelope: Envelope = serde_json::from_str(raw)
            .map_err(|error| format!("document {index} is not an envelope: {error}"))?;
        let data = match envelope.data.map(RawValue::get) {
            None | Some("null") => "{}".to_owned(),
            Some(data) => data.to_owned(),
        };
        Ok(Document {
            id: envelope.id,
            timestamp: envelope.timestamp,
            data,
        })
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|error| error.to_string())?;
        return items
            .into_iter()
            .enumerate()
            .map(|(index, item)| envelope(item.get(), index))
            .collect();
    }
    if let Ok(Json::Object(object)) = serde_json::from_str::<Json>(text) {
        if object.get("id").is_some_and(Json::is_string)
            && object.get("data").is_some_and(Json::is_object)
        {
            return Ok(vec![envelope(text, 0)?]);
        }
        // Kept as written: the plugin sees the text itself, repeated keys and all.
        return Ok(vec![Document {
            id: "doc-1".into(),
            timestamp: 0,
            data: text.trim().to_owned(),
        }]);
    }
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| envelope(line, index))
        .collect()
}

/// The outcomes of documents as `plugin check --json` prints them:
/// `{"rows": [{"id", "timestamp", <column>: value…}], "refused": [{"id", "reason"}],
/// "failed": [{"id", "stage", "error"}]}`.
pub fn render<P: Plugin>(documents: &[Document], host: &dyn Host) -> Json {
    let columns = P::columns();
    let mut rows = Vec::new();
    let mut refused = Vec::new();
    let mut failed = Vec::new();
    for document in documents {
        match crate::input::transform_checked::<P>(document, host) {
            Ok(Outcome::Rows(list)) => {
                for row in list {
                    let mut object = serde_json::Map::new();
                    object.insert(
                        "id".into(),
                        Json::from(row.id.unwrap_or_else(|| document.id.clone())),
                    );
                    object.insert("timestamp".into(), Json::from(document.timestamp));
                    for (column, value) in columns.iter().zip(row.values) {
                        object.insert(column.name.clone(), cell_json(value));
                    }
                    rows.push(Json::Object(object));
                }
            }
            Ok(Outcome::Refused(reason)) => {
                refused.push(serde_json::json!({"id": document.id, "reason": reason}));
            }
            Ok(Outcome::Failed(error)) | Err(error) => failed.push(serde_json::json!({
                "id": document.id, "stage": "plugin", "error": error.to_string()
            })),
        }
    }
    serde_json::json!({"rows": rows, "refused": refused, "failed": failed})
}

fn cell_json(value: Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Text(text) => Json::from(text),
        Value::Int(int) => Json::from(int),
        Value::Float(float) => Json::from(float),
        Value::Boolean(flag) => Json::from(flag),
    }
}

/// Golden tests: every `fixtures/<case>.json` under `dir` (a document file, see
/// [`read_documents`]) is transformed, and its outcomes (see [`render`]) must equal
/// `fixtures/<case>.rows.json`. With `BLESS=1` in the environment the expected files are
/// written instead. Panics with every difference at once.
///
/// ```text
/// #[test]
/// fn golden() {
///     aurora_plugin_sdk::testing::golden::<MyPlugin>(env!("CARGO_MANIFEST_DIR"), &StaticHost::new());
/// }
/// ```
pub fn golden<P: Plugin>(dir: impl AsRef<Path>, host: &dyn Host) {
    let fixtures = dir.as_ref().join("fixtures");
    let bless = std::env::var_os("BLESS").is_some_and(|value| value != "0" && !value.is_empty());
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", fixtures.display()))
        .map(|entry| entry.expect("readable fixtures folder").path())
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            name.ends_with(".json") && !name.ends_with(".rows.json")
        })
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no fixtures/<case>.json in {}",
        fixtures.display()
    );
    let mut differences = Vec::new();
    for case in cases {
        let text = std::fs::read_to_string(&case)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", case.display()));
        let documents = read_documents(&text)
            .unwrap_or_else(|error| panic!("{} is not a document file: {error}", case.display()));
        let actual = render::<P>(&documents, host);
        let expected_path = case.with_extension("rows.json");
        let pretty = serde_json::to_string_pretty(&actual).expect("JSON values serialize") + "\n";
        if bless {
            std::fs::write(&expected_path, pretty).unwrap_or_else(|error| {
                panic!("cannot write {}: {error}", expected_path.display())
            });
            continue;
        }
        let expected: Option<Json> = std::fs::read_to_string(&expected_path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        if expected.as_ref() != Some(&actual) {
            differences.push(format!(
                "{}: expected {}, got:\n{pretty}",
                case.display(),
                if expected.is_some() {
                    "otherwise"
                } else {
                    "a .rows.json file"
                },
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} golden case(s) differ (run with BLESS=1 to accept):\n{}",
        differences.len(),
        differences.join("\n")
    );
}
