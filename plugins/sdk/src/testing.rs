//! A host for native unit tests of plugins.

use std::collections::HashMap;

use crate::{Host, LogLevel, LookupError, SlackChannel};

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
