//! A plugin whose type name would be SQL injection if it reached SQL unchecked.

use aurora_plugin_sdk::{Document, Host, Outcome, Plugin, PluginError, export_plugin};

struct BadName;

aurora_plugin_sdk::columns! {
    #[allow(dead_code)]
    struct NoColumns {}
}

impl Plugin for BadName {
    const TYPE_NAME: &'static str = "Bad`Type; DROP TABLE GithubType; --";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    type Row = NoColumns;

    fn transform(_document: &Document, _host: &dyn Host) -> Result<Outcome, PluginError> {
        Ok(Outcome::refused("never called"))
    }
}

export_plugin!(BadName);
