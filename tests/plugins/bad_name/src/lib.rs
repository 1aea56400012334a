//! A plugin whose type name would be SQL injection if it reached SQL unchecked.

use aurora_plugin_sdk::{Column, Document, Host, Outcome, Plugin, PluginError, export_plugin};

struct BadName;

impl Plugin for BadName {
    const TYPE_NAME: &'static str = "Bad`Type; DROP TABLE GithubType; --";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn columns() -> Vec<Column> {
        Vec::new()
    }

    fn transform(_document: &Document, _host: &dyn Host) -> Result<Outcome, PluginError> {
        Ok(Outcome::refused("never called"))
    }
}

export_plugin!(BadName);
