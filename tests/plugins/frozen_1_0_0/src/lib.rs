//! A plugin built straight against the frozen `aurora:plugin@1.0.0` (`wit/frozen/1.0.0`), with
//! no SDK in between, the way a plugin published when 1.0.0 was current was built. The host
//! must keep loading and running it whatever later changes `wit/`.

wit_bindgen::generate!({
    path: "../../../wit/frozen/1.0.0",
    world: "type-plugin",
});

use aurora::plugin::host::{LogLevel, log};
use aurora::plugin::types::{Column, ColumnType, Document, Outcome, PluginInfo, Row, Value};

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Frozen;

impl exports::aurora::plugin::plugin::Guest for Frozen {
    fn describe() -> PluginInfo {
        PluginInfo {
            type_name: "FrozenType".into(),
            version: "1.0.0".into(),
            columns: vec![Column {
                name: "size".into(),
                kind: ColumnType::Int,
            }],
            capabilities: Vec::new(),
        }
    }

    fn transform(batch: Vec<Document>) -> Vec<Outcome> {
        log(LogLevel::Debug, "frozen plugin called");
        batch
            .into_iter()
            .map(|document| {
                Outcome::Rows(vec![Row {
                    id: None,
                    values: vec![Value::Int(document.data.len() as i64)],
                }])
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
export!(Frozen);
