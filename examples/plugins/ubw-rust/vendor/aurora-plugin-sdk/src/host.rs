//! The host capabilities as a trait, so that transforms can be tested natively.

use crate::bindings::aurora::plugin::host as imports;
use crate::{LogLevel, LookupError, SlackChannel};

/// What the host offers a plugin. In a component this is [`WasmHost`]; in native unit tests
/// use [`crate::testing::StaticHost`].
pub trait Host {
    /// Writes a line to the host's log.
    fn log(&self, level: LogLevel, message: &str);

    /// Looks up a Slack channel by id; `Ok(None)` means Slack answered `ok: false`.
    fn slack_channel(&self, channel_id: &str) -> Result<Option<SlackChannel>, LookupError>;

    /// Every item of a reference table whose key equals `key`, as JSON object texts.
    fn reference_lookup(&self, table: &str, key: &str) -> Result<Vec<String>, LookupError>;
}

/// The host as seen from inside a component: each call goes through the WIT imports.
#[derive(Debug, Clone, Copy)]
pub struct WasmHost;

impl Host for WasmHost {
    fn log(&self, level: LogLevel, message: &str) {
        imports::log(level, message);
    }

    fn slack_channel(&self, channel_id: &str) -> Result<Option<SlackChannel>, LookupError> {
        imports::lookup_slack_channel(channel_id)
    }

    fn reference_lookup(&self, table: &str, key: &str) -> Result<Vec<String>, LookupError> {
        imports::reference_lookup(table, key)
    }
}
