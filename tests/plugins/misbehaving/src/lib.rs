//! A deliberately bad plugin: what it does to a document is named by `data.action`. The host's
//! tests use it to prove that traps, bad rows and denied capabilities fail only the documents
//! they hit.

use aurora_plugin_sdk::{Document, Host, Outcome, Plugin, PluginError, Row, Value, export_plugin};
use serde::Deserialize;

struct Misbehaving;

#[derive(Deserialize)]
struct Order {
    action: String,
    #[serde(default)]
    ids: Vec<String>,
}

aurora_plugin_sdk::columns! {
    struct NoteRow {
        note: Text,
    }
}

impl Plugin for Misbehaving {
    const TYPE_NAME: &'static str = "MisbehavingType";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    // Most rows below are raw values (`Outcome::values`): some are wrong on purpose.
    type Row = NoteRow;

    fn transform(document: &Document, host: &dyn Host) -> Result<Outcome, PluginError> {
        let order: Order = document.parse()?;
        match order.action.as_str() {
            "ok" => Ok(Outcome::row(NoteRow {
                note: Some("ok".into()),
            })),
            "refuse" => Ok(Outcome::refused("asked to refuse")),
            "error" => Err(PluginError::Internal("asked to fail".into())),
            "panic" => panic!("deliberate panic on {}", document.id),
            "loop" => {
                let mut counter = 0u64;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "alloc" => {
                // black_box keeps the optimiser from eliding an allocation nobody reads.
                let block = std::hint::black_box(vec![1u8; 1 << 30]);
                Ok(Outcome::values(vec![Value::Text(
                    block[block.len() - 1].to_string(),
                )]))
            }
            "wrong-type" => Ok(Outcome::values(vec![Value::Int(5)])),
            "wrong-count" => Ok(Outcome::values(vec![Value::Null, Value::Null])),
            "rows" => Ok(Outcome::Rows(
                order
                    .ids
                    .into_iter()
                    .map(|id| Row {
                        id: Some(id),
                        values: vec![Value::Text("one of several".into())],
                    })
                    .collect(),
            )),
            // Capabilities this plugin never declared: the host must deny them.
            "snoop" => {
                let slack = host.slack_channel("C012AB3CD");
                let events = host.reference_lookup("event-codes", "101010");
                let note = format!("slack: {slack:?}; events: {events:?}");
                Ok(Outcome::values(vec![Value::Text(note)]))
            }
            other => Err(PluginError::InvalidDocument(format!(
                "unknown action {other}"
            ))),
        }
    }
}

export_plugin!(Misbehaving);
