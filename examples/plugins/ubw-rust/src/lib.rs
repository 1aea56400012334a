//! `UBWType`: hours registered per period, one row per document.
//!
//! Build: `batch-job-aurora plugin build .`; check: `batch-job-aurora plugin check <wasm>
//! --docs fixtures/ubw.json`; test: `cargo test` (re-bless the goldens with `BLESS=1`).

use aurora_plugin_sdk::paths::Parsed;
use aurora_plugin_sdk::{Document, Host, Outcome, Plugin, PluginError, export_plugin};

struct UBWTypePlugin;

aurora_plugin_sdk::columns! {
    /// The columns, declared once: each field is a column (`Text`, `Int`, `Float` or
    /// `Boolean`; `None` is NULL), in table order. `id` and `timestamp` are implicit.
    pub struct UBWTypeRow {
        reg_period: Text,
        /// `DECIMAL(20,2)` in MySQL.
        used_hours: Float,
    }
}

impl Plugin for UBWTypePlugin {
    const TYPE_NAME: &'static str = "UBWType";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    type Row = UBWTypeRow;

    fn transform(document: &Document, _host: &dyn Host) -> Result<Outcome, PluginError> {
        // Paths are JSON Pointers from the envelope: `/data/...`, `/id`, `/timestamp`. A missing
        // step or a value of the wrong kind gives NULL, never an error.
        let data = Parsed::new(document)?;
        Ok(Outcome::row(UBWTypeRow {
            reg_period: data.text("/data/reg_period"),
            used_hours: data.float("/data/used_hrs"),
        }))
    }
}

export_plugin!(UBWTypePlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use aurora_plugin_sdk::testing::{StaticHost, golden};

    /// `fixtures/<case>.json` in, `fixtures/<case>.rows.json` expected (`BLESS=1` rewrites them).
    #[test]
    fn fixtures() {
        golden::<UBWTypePlugin>(env!("CARGO_MANIFEST_DIR"), &StaticHost::new());
    }
}
