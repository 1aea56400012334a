//! A DynamoDB table behind a `reference-table` capability (the event-code table).
//!
//! The old job scanned the whole table once per code. This loads it once per run, on the first
//! lookup, following every page, and answers every later lookup from memory.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Value};
use tokio::runtime::Handle;

use super::{LookupLimits, ReferenceTable};

pub struct DynamoTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
    key_attribute: String,
    runtime: Handle,
    loaded: Mutex<Option<HashMap<String, Vec<String>>>>,
}

impl std::fmt::Debug for DynamoTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoTable")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoTable {
    /// A table read through the standard AWS configuration chain (region, credentials and
    /// `AWS_ENDPOINT_URL` from the environment).
    pub async fn new(table: &str, key_attribute: &str) -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        DynamoTable {
            client: aws_sdk_dynamodb::Client::new(&config),
            table: table.to_owned(),
            key_attribute: key_attribute.to_owned(),
            runtime: Handle::current(),
            loaded: Mutex::new(None),
        }
    }

    async fn load(&self) -> Result<HashMap<String, Vec<String>>, String> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        let mut count = 0;
        while let Some(item) = pages.next().await {
            let item = item.map_err(|error| {
                format!(
                    "scanning DynamoDB table {}: {}",
                    self.table,
                    aws_sdk_dynamodb::error::DisplayErrorContext(&error)
                )
            })?;
            let json = item_json(&item);
            let key = match json.get(&self.key_attribute) {
                Some(Value::String(key)) => key.clone(),
                Some(Value::Number(key)) => key.to_string(),
                _ => continue, // An item without the key can never match a lookup.
            };
            by_key
                .entry(key)
                .or_default()
                .push(Value::Object(json).to_string());
            count += 1;
        }
        tracing::info!(table = %self.table, "loaded {count} items from DynamoDB");
        Ok(by_key)
    }
}

impl ReferenceTable for DynamoTable {
    fn items(&self, key: &str, limits: LookupLimits) -> Result<Vec<String>, String> {
        // Holding the lock while loading makes other plugin threads wait for the one scan
        // instead of starting their own.
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if loaded.is_none() {
            // A stalled connection must not hold every lane waiting on this lock for ever, nor
            // the run past its deadline.
            let end = crate::window::operation_end(crate::http::RETRY_BUDGET, limits.deadline);
            // The timer is made inside `block_on`: plugin threads are not the runtime's, and a
            // tokio timer needs the runtime it runs on.
            let items = self
                .runtime
                .block_on(async { tokio::time::timeout_at(end.into(), self.load()).await })
                .map_err(|_| format!("scanning DynamoDB table {} timed out", self.table))??;
            *loaded = Some(items);
        }
        Ok(loaded
            .as_ref()
            .and_then(|items| items.get(key).cloned())
            .unwrap_or_default())
    }
}

/// A DynamoDB item as a JSON object: numbers as numbers, sets as arrays.
fn item_json(item: &HashMap<String, AttributeValue>) -> Map<String, Value> {
    item.iter()
        .map(|(name, value)| (name.clone(), attribute_json(value)))
        .collect()
}

fn attribute_json(value: &AttributeValue) -> Value {
    let number = |text: &str| {
        text.parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::from(text))
    };
    match value {
        AttributeValue::S(text) => Value::from(text.as_str()),
        AttributeValue::N(text) => number(text),
        AttributeValue::Bool(flag) => Value::from(*flag),
        AttributeValue::M(map) => Value::Object(item_json(map)),
        AttributeValue::L(list) => list.iter().map(attribute_json).collect(),
        AttributeValue::Ss(set) => set.iter().map(|text| Value::from(text.as_str())).collect(),
        AttributeValue::Ns(set) => set.iter().map(|text| number(text)).collect(),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_json_with_numbers_as_numbers() {
        let item = HashMap::from([
            ("event_code".to_owned(), AttributeValue::S("101010".into())),
            ("code_valid_from".to_owned(), AttributeValue::N("0".into())),
            ("score".to_owned(), AttributeValue::N("4.5".into())),
            ("tags".to_owned(), AttributeValue::Ss(vec!["a".into()])),
        ]);
        let json = Value::Object(item_json(&item));
        assert_eq!(json["event_code"], "101010");
        assert_eq!(json["code_valid_from"], 0);
        assert_eq!(json["score"], 4.5);
        assert_eq!(json["tags"][0], "a");
    }
}
