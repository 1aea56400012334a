//! What a run did, per type and in total.

use std::collections::BTreeMap;

use serde::Serialize;

/// The counts of one type. `error` is set when the type could not run to the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeSummary {
    pub inserted: u64,
    pub duplicates: u64,
    pub refused: u64,
    pub failed: u64,
    /// With `--on-existing update`: stored rows overwritten because the plugin now yields
    /// other values, and stored rows it yields the same (absent: none).
    #[serde(skip_serializing_if = "is_zero")]
    pub updated: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub unchanged: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The counts of a run. Totals are the sums over `types`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    #[serde(skip)]
    pub run_id: String,
    pub inserted: u64,
    pub duplicates: u64,
    pub refused: u64,
    pub failed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub updated: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub unchanged: u64,
    /// A replay: the dead letters it read (a document kept in parts is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
    /// A replay with `--purge-stored`: the dead-letter records deleted because their
    /// documents are stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged: Option<u64>,
    pub types: BTreeMap<String, TypeSummary>,
    /// Documents of types that were not selected (one figure, however many types they name),
    /// and documents outside their type's window: read, and deliberately not counted above.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// Where the time went, per stage (milliseconds summed over each stage's threads).
    pub stages: StageTimes,
    /// Set when the source could not be read to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Types a backfill shard skipped without fetching: the run log says their part of the
    /// window is loaded already.
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub already_loaded: std::collections::BTreeSet<String>,
    /// Types stopped at the run's deadline: the rest of their window is the next run's.
    #[serde(skip)]
    pub stopped_at_deadline: std::collections::BTreeSet<String>,
}

/// Milliseconds spent per stage, summed over the stage's threads: `read` (scanning and checking
/// envelopes, the source's reads included), `handoff` (routing to the lanes, waits for room
/// included), `plugin` (plugin calls), `write` (database writes, two may overlap).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StageTimes {
    pub read_ms: u64,
    pub handoff_ms: u64,
    pub plugin_ms: u64,
    pub write_ms: u64,
}

impl StageTimes {
    pub fn from_progress(progress: &crate::hooks::Progress) -> Self {
        use crate::hooks::Progress;
        let ms = |counter| Progress::get(counter) / 1_000_000;
        StageTimes {
            read_ms: ms(&progress.read_nanos),
            handoff_ms: ms(&progress.handoff_nanos),
            plugin_ms: ms(&progress.plugin_nanos),
            write_ms: ms(&progress.write_nanos),
        }
    }
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// The type name failures are filed under when a document does not say its type.
pub const UNKNOWN_TYPE: &str = "unknown";

impl RunSummary {
    pub fn type_mut(&mut self, type_name: &str) -> &mut TypeSummary {
        self.types.entry(type_name.to_owned()).or_default()
    }

    /// Sets the totals from the per-type counts.
    pub fn total(&mut self) {
        let types = self.types.values();
        self.inserted = types.clone().map(|t| t.inserted).sum();
        self.duplicates = types.clone().map(|t| t.duplicates).sum();
        self.refused = types.clone().map(|t| t.refused).sum();
        self.updated = types.clone().map(|t| t.updated).sum();
        self.unchanged = types.clone().map(|t| t.unchanged).sum();
        self.failed = types.map(|t| t.failed).sum();
    }

    /// Whether the run did not complete only because its deadline came: every type that did
    /// not finish was stopped by it, and the source was readable.
    pub fn stopped_only_by_deadline(&self) -> bool {
        !self.completed()
            && self.error.is_none()
            && self
                .types
                .iter()
                .filter(|(_, t)| t.error.is_some())
                .all(|(name, _)| self.stopped_at_deadline.contains(name))
    }

    /// Whether every type and the source ran to the end (documents may still have failed).
    pub fn completed(&self) -> bool {
        self.error.is_none() && self.types.values().all(|t| t.error.is_none())
    }

    /// The Lambda's body: `N records inserted into Aurora. M duplicates skipped. E errors.`
    pub fn lambda_body(&self) -> String {
        format!(
            "{} records inserted into Aurora. {} duplicates skipped. {} errors.",
            self.inserted, self.duplicates, self.failed
        )
    }

    /// A short table for people (with `updated` and `unchanged` when a run updated).
    pub fn table(&self) -> String {
        let updates = self.updated + self.unchanged > 0;
        let mut text = format!(
            "{:<20} {:>10} {:>10} {:>10} {:>10}",
            "type", "inserted", "duplicates", "refused", "failed"
        );
        if updates {
            text.push_str(&format!(" {:>10} {:>10}", "updated", "unchanged"));
        }
        text.push('\n');
        let mut line = |name: &str, t: &TypeSummary| {
            text.push_str(&format!(
                "{:<20} {:>10} {:>10} {:>10} {:>10}",
                name, t.inserted, t.duplicates, t.refused, t.failed
            ));
            if updates {
                text.push_str(&format!(" {:>10} {:>10}", t.updated, t.unchanged));
            }
            text.push('\n');
        };
        for (name, t) in &self.types {
            line(name, t);
        }
        let total = TypeSummary {
            inserted: self.inserted,
            duplicates: self.duplicates,
            refused: self.refused,
            failed: self.failed,
            updated: self.updated,
            unchanged: self.unchanged,
            ..Default::default()
        };
        line("total", &total);
        if let Some(replayed) = self.replayed {
            text.push_str(&format!("replayed: {replayed} dead letters\n"));
        }
        if let Some(purged) = self.purged {
            text.push_str(&format!(
                "purged: {purged} dead-letter records whose documents are stored\n"
            ));
        }
        if self.skipped > 0 {
            text.push_str(&format!(
                "skipped: {} documents of types not selected or outside the window\n",
                self.skipped
            ));
        }
        for (name, t) in &self.types {
            for note in &t.notes {
                text.push_str(&format!("note: {name}: {note}\n"));
            }
            if let Some(error) = &t.error {
                text.push_str(&format!("error: {name}: {error}\n"));
            }
        }
        if let Some(error) = &self.error {
            text.push_str(&format!("error: {error}\n"));
        }
        if self.failed > 0 && self.replayed.is_some() {
            text.push_str(&format!(
                "dead letters that failed again keep their records in batch_job_failed_documents, with the new reason (replay_run_id {})\n",
                self.run_id
            ));
        } else if self.failed > 0 {
            text.push_str(&format!(
                "failed documents are kept in table batch_job_failed_documents (run_id {})\n",
                self.run_id
            ));
        }
        text
    }
}
