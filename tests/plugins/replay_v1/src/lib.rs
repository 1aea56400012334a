//! `ReplayType` in two versions, built from this one source (`replay_v1` is 1.0.0,
//! `replay_v2` 2.0.0). Version 1 has two bugs that version 2 fixes: it fails every document
//! whose `data.odd` is true, and it stores `score` as 0 for every document whose `data.buggy`
//! is true. The replay and reprocess tests run one version, then the other.

use aurora_plugin_sdk::{Document, Host, Outcome, Plugin, PluginError, export_plugin};
use serde::Deserialize;

struct Replay;

/// Whether this build is version 2, the fixed one.
const FIXED: bool = env!("CARGO_PKG_VERSION_MAJOR").as_bytes()[0] == b'2';

#[derive(Deserialize)]
struct Data {
    score: i64,
    label: String,
    #[serde(default)]
    odd: bool,
    #[serde(default)]
    buggy: bool,
    #[serde(default)]
    refuse: bool,
}

aurora_plugin_sdk::columns! {
    struct ReplayRow {
        score: Int,
        label: Text,
    }
}

impl Plugin for Replay {
    const TYPE_NAME: &'static str = "ReplayType";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    type Row = ReplayRow;

    fn transform(document: &Document, _host: &dyn Host) -> Result<Outcome, PluginError> {
        let data: Data = document.parse()?;
        if data.refuse {
            return Ok(Outcome::refused("asked to refuse"));
        }
        if data.odd && !FIXED {
            return Err(PluginError::InvalidDocument(
                "version 1 cannot read odd documents".into(),
            ));
        }
        let score = if data.buggy && !FIXED { 0 } else { data.score };
        Ok(Outcome::row(ReplayRow {
            score: Some(score),
            label: Some(data.label),
        }))
    }
}

export_plugin!(Replay);
