//! The host capabilities plugins may call: their backends, the per-run cache, and the grants
//! that decide which plugin may call what.
//!
//! Backends are synchronous: plugins run on blocking threads, so a backend that talks to the
//! network blocks that thread only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::model::Capability;

#[cfg(feature = "aws")]
mod dynamo;
mod slack;

#[cfg(feature = "aws")]
pub use dynamo::DynamoTable;
pub use slack::{DEFAULT_BASE_URL as SLACK_DEFAULT_BASE_URL, SlackWebApi};

/// The reference table the event-rating type reads, configured by
/// `DATAPLATTFORM_EVENT_CODE_TABLE`.
pub const EVENT_CODES_TABLE: &str = "event-codes";
/// The attribute the event-code table is keyed by.
pub const EVENT_CODES_KEY: &str = "event_code";

/// Why a capability could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot set up the Slack client")]
    Slack(#[source] crate::http::HttpError),
    #[error("event codes from DynamoDB table {table:?}")]
    Missing {
        table: String,
        #[source]
        source: crate::features::Missing,
    },
}

/// Where the capabilities' answers come from, as the operator says.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CapabilitySpecs {
    /// A channel map file (`file:PATH`) for local runs; beats the token.
    pub slack_channels: Option<String>,
    /// Slack's bot token (`DATAPLATTFORM_AURORA_SLACK_TOKEN`, or the secret
    /// `DATAPLATTFORM_AURORA_SLACK_TOKEN_SECRET`).
    pub slack_token: Option<crate::credentials::ApiCredential>,
    /// Slack's Web API (`DATAPLATTFORM_AURORA_SLACK_API_URL`, default `https://slack.com/api/`).
    pub slack_api_url: Option<String>,
    /// The event-code table: `file:PATH` or a DynamoDB table name
    /// (`DATAPLATTFORM_EVENT_CODE_TABLE`).
    pub event_codes: Option<String>,
}

impl std::fmt::Debug for CapabilitySpecs {
    /// Never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapabilitySpecs")
            .field("slack_channels", &self.slack_channels)
            .field("slack_token", &self.slack_token.as_ref().map(|_| "***"))
            .field("slack_api_url", &self.slack_api_url)
            .field("event_codes", &self.event_codes)
            .finish()
    }
}

impl Backends {
    /// Sets up the backends the specs name. Must run inside the runtime the run uses: the HTTP
    /// and AWS clients block on it from plugin threads.
    pub async fn configure(specs: &CapabilitySpecs) -> Result<Backends, CapabilityError> {
        let mut backends = Backends::default();
        let slack_file = specs
            .slack_channels
            .as_deref()
            .map(|spec| spec.strip_prefix("file:").unwrap_or(spec));
        if let Some(path) = slack_file {
            backends.slack = Some(Arc::new(ChannelMapFile::load(Path::new(path))?));
        } else if let Some(token) = specs.slack_token.clone() {
            let base = specs
                .slack_api_url
                .as_deref()
                .unwrap_or(SLACK_DEFAULT_BASE_URL);
            let api = SlackWebApi::new(base, token, tokio::runtime::Handle::current())
                .map_err(CapabilityError::Slack)?;
            backends.slack = Some(Arc::new(api));
        }
        match specs.event_codes.as_deref().filter(|spec| !spec.is_empty()) {
            Some(spec) if spec.starts_with("file:") => {
                let table =
                    ReferenceFile::load(Path::new(&spec["file:".len()..]), EVENT_CODES_KEY)?;
                backends
                    .references
                    .insert(EVENT_CODES_TABLE.to_owned(), Arc::new(table));
            }
            #[cfg(not(feature = "aws"))]
            Some(table) => {
                return Err(CapabilityError::Missing {
                    table: table.to_owned(),
                    source: crate::features::Missing {
                        what: "DynamoDB",
                        feature: "aws",
                    },
                });
            }
            #[cfg(feature = "aws")]
            Some(table) => {
                let table = DynamoTable::new(table, EVENT_CODES_KEY).await;
                backends
                    .references
                    .insert(EVENT_CODES_TABLE.to_owned(), Arc::new(table));
            }
            None => {}
        }
        Ok(backends)
    }
}

/// Why a lookup gave no answer; mirrors the WIT `lookup-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupFailure {
    Denied,
    NotConfigured(String),
    Unavailable(String),
}

impl fmt::Display for LookupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupFailure::Denied => f.write_str("denied"),
            LookupFailure::NotConfigured(what) => write!(f, "not configured: {what}"),
            LookupFailure::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// What bounds one lookup of a backend that waits on the network.
#[derive(Debug, Clone, Copy, Default)]
pub struct LookupLimits {
    /// Whether the lookup may try again. Not right after a failure of the same capability:
    /// a backend that is down costs one request per lookup, not a round of retries, until
    /// its circuit opens.
    pub retries: bool,
    /// The run's deadline: the lookup gives up rather than wait past it.
    pub deadline: Option<Instant>,
}

/// Answers Slack channel lookups: `Ok(None)` when Slack does not know the channel.
pub trait SlackDirectory: Send + Sync {
    fn channel_name(
        &self,
        channel_id: &str,
        limits: LookupLimits,
    ) -> Result<Option<String>, String>;
}

/// Answers reference-table lookups: every item (a JSON object text) under `key`.
pub trait ReferenceTable: Send + Sync {
    fn items(&self, key: &str, limits: LookupLimits) -> Result<Vec<String>, String>;
}

/// A channel map file for local runs: `{"C012AB3CD": "general", "C999": null}`, where `null`
/// stands for Slack's `ok: false`.
#[derive(Debug)]
pub struct ChannelMapFile {
    channels: HashMap<String, Option<String>>,
}

impl ChannelMapFile {
    pub fn load(path: &Path) -> Result<Self, CapabilityError> {
        let channels = read_json(path)?;
        Ok(ChannelMapFile { channels })
    }
}

impl SlackDirectory for ChannelMapFile {
    fn channel_name(&self, channel_id: &str, _: LookupLimits) -> Result<Option<String>, String> {
        Ok(self.channels.get(channel_id).cloned().flatten())
    }
}

/// A reference table file for local runs: a JSON array of objects, indexed by one attribute.
#[derive(Debug)]
pub struct ReferenceFile {
    by_key: HashMap<String, Vec<String>>,
}

impl ReferenceFile {
    pub fn load(path: &Path, key_attribute: &str) -> Result<Self, CapabilityError> {
        let items: Vec<serde_json::Map<String, serde_json::Value>> = read_json(path)?;
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        for (index, item) in items.into_iter().enumerate() {
            let key = match item.get(key_attribute) {
                Some(serde_json::Value::String(key)) => key.clone(),
                Some(serde_json::Value::Number(key)) => key.to_string(),
                _ => {
                    return Err(CapabilityError::Invalid {
                        path: path.to_owned(),
                        reason: format!("item {index} has no string {key_attribute}"),
                    });
                }
            };
            by_key
                .entry(key)
                .or_default()
                .push(serde_json::Value::Object(item).to_string());
        }
        Ok(ReferenceFile { by_key })
    }
}

impl ReferenceTable for ReferenceFile {
    fn items(&self, key: &str, _: LookupLimits) -> Result<Vec<String>, String> {
        Ok(self.by_key.get(key).cloned().unwrap_or_default())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CapabilityError> {
    let text = std::fs::read_to_string(path).map_err(|source| CapabilityError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|error| CapabilityError::Invalid {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// The backends the operator configured for a run.
#[derive(Clone, Default)]
pub struct Backends {
    pub slack: Option<Arc<dyn SlackDirectory>>,
    pub references: HashMap<String, Arc<dyn ReferenceTable>>,
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends")
            .field("slack", &self.slack.is_some())
            .field("references", &self.references.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// After this many lookups in a row failed, a capability's backend is taken as down for the
/// rest of the run: later lookups fail at once instead of each waiting through its retries.
pub const FAILURES_TO_OPEN: u32 = 3;

/// The backends of one run with their answers cached, shared by every plugin of the run. Only
/// answers are cached: a failed lookup is tried again next time, until the capability's
/// circuit opens.
#[derive(Default)]
pub struct CapabilityHub {
    backends: Backends,
    slack_cache: Mutex<HashMap<String, Option<String>>>,
    reference_cache: Mutex<HashMap<(String, String), Vec<String>>>,
    /// Failures in a row, per capability.
    failures_in_a_row: Mutex<HashMap<String, u32>>,
    /// The run's deadline: no lookup waits past it, and none starts after it.
    deadline: Option<Instant>,
}

/// Why the hub has no answer for a lookup.
enum Unanswered {
    /// The backend failed this time, with its reason.
    Failed(String),
    /// The backend failed this many times in a row: it is taken as down (its circuit is open).
    Down(u32),
    /// The run's deadline has passed: no lookup starts any more.
    PastDeadline,
}

impl CapabilityHub {
    /// Runs `lookup` unless the run's deadline has passed or the capability's circuit is open;
    /// counts its failures in a row. `lookup` is told its limits: no retry right after a
    /// failure, so that a backend that is down is tried once per lookup until the circuit
    /// opens, and no wait past the run's deadline.
    fn guarded<T>(
        &self,
        capability: &str,
        lookup: impl FnOnce(LookupLimits) -> Result<T, String>,
    ) -> Result<T, Unanswered> {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Err(Unanswered::PastDeadline);
        }
        let failures = lock(&self.failures_in_a_row)
            .get(capability)
            .copied()
            .unwrap_or(0);
        if failures >= FAILURES_TO_OPEN {
            return Err(Unanswered::Down(failures));
        }
        let result = lookup(LookupLimits {
            retries: failures == 0,
            deadline: self.deadline,
        });
        let mut counts = lock(&self.failures_in_a_row);
        let count = counts.entry(capability.to_owned()).or_default();
        match &result {
            Ok(_) => *count = 0,
            Err(_) => *count += 1,
        }
        result.map_err(Unanswered::Failed)
    }
}

impl CapabilityHub {
    pub fn new(backends: Backends) -> Self {
        CapabilityHub {
            backends,
            ..Default::default()
        }
    }

    /// Bounds every lookup by the run's deadline (`None`: no deadline).
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The grants of one plugin: what it declared, intersected with what is configured.
    pub fn grants(self: &Arc<Self>, type_name: &str, declared: &[Capability]) -> Grants {
        Grants {
            type_name: type_name.to_owned(),
            hub: Arc::clone(self),
            slack: declared.contains(&Capability::SlackChannels),
            tables: declared
                .iter()
                .filter_map(|capability| match capability {
                    Capability::ReferenceTable(table) => Some(table.clone()),
                    Capability::SlackChannels => None,
                })
                .collect(),
            notes: Arc::default(),
            calls: Arc::default(),
        }
    }
}

/// What one plugin may call. Every answer that is not a plain answer leaves a note for the run
/// summary, so that a run with no Slack token says why its channel names are NULL.
#[derive(Clone)]
pub struct Grants {
    type_name: String,
    hub: Arc<CapabilityHub>,
    slack: bool,
    tables: HashSet<String>,
    notes: Arc<Mutex<BTreeSet<String>>>,
    /// How often the plugin called each capability, answered or not (for `plugin check`).
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grants")
            .field("type_name", &self.type_name)
            .field("slack", &self.slack)
            .field("tables", &self.tables)
            .finish()
    }
}

impl Grants {
    pub fn slack_channel(&self, channel_id: &str) -> Result<Option<String>, LookupFailure> {
        self.count("slack-channels");
        if !self.slack {
            return Err(self.note(LookupFailure::Denied, "slack-channels"));
        }
        let Some(directory) = &self.hub.backends.slack else {
            let why = "no Slack token (DATAPLATTFORM_AURORA_SLACK_TOKEN) or channel map file";
            return Err(self.note(LookupFailure::NotConfigured(why.into()), "slack-channels"));
        };
        if let Some(name) = lock(&self.hub.slack_cache).get(channel_id) {
            return Ok(name.clone());
        }
        let name = self
            .hub
            .guarded("slack-channels", |limits| {
                directory.channel_name(channel_id, limits)
            })
            .map_err(|unanswered| self.unavailable(unanswered, "slack-channels"))?;
        lock(&self.hub.slack_cache).insert(channel_id.to_owned(), name.clone());
        Ok(name)
    }

    pub fn reference(&self, table: &str, key: &str) -> Result<Vec<String>, LookupFailure> {
        let capability = format!("reference-table({table})");
        self.count(&capability);
        if !self.tables.contains(table) {
            return Err(self.note(LookupFailure::Denied, &capability));
        }
        let Some(backend) = self.hub.backends.references.get(table) else {
            let why = match table {
                EVENT_CODES_TABLE => "no DATAPLATTFORM_EVENT_CODE_TABLE".to_owned(),
                _ => format!("no backend for reference table {table}"),
            };
            return Err(self.note(LookupFailure::NotConfigured(why), &capability));
        };
        let cache_key = (table.to_owned(), key.to_owned());
        if let Some(items) = lock(&self.hub.reference_cache).get(&cache_key) {
            return Ok(items.clone());
        }
        let items = self
            .hub
            .guarded(&capability, |limits| backend.items(key, limits))
            .map_err(|unanswered| self.unavailable(unanswered, &capability))?;
        lock(&self.hub.reference_cache).insert(cache_key, items.clone());
        Ok(items)
    }

    /// The notes left so far, for the run summary.
    pub fn notes(&self) -> Vec<String> {
        lock(&self.notes).iter().cloned().collect()
    }

    /// How often the plugin called each capability so far, by capability.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        lock(&self.calls).clone()
    }

    fn count(&self, capability: &str) {
        let mut calls = lock(&self.calls);
        // Per lookup, so no new key string unless this capability is counted for the first time.
        match calls.get_mut(capability) {
            Some(count) => *count += 1,
            None => {
                calls.insert(capability.to_owned(), 1);
            }
        }
    }

    fn note(&self, failure: LookupFailure, capability: &str) -> LookupFailure {
        let note = match &failure {
            LookupFailure::Denied => {
                format!("called {capability}, which it did not declare: denied")
            }
            LookupFailure::NotConfigured(why) => format!("{capability} not configured: {why}"),
            LookupFailure::Unavailable(_) => format!("{capability} failed at least once"),
        };
        self.leave_note(note);
        failure
    }

    /// The plugin's answer for a lookup the hub could not answer, with a note saying why.
    fn unavailable(&self, unanswered: Unanswered, capability: &str) -> LookupFailure {
        let (why, note) = match unanswered {
            Unanswered::Failed(why) => (why, format!("{capability} failed at least once")),
            Unanswered::Down(failures) => {
                let why = format!(
                    "{capability} is taken as down for the rest of the run after {failures} failures in a row"
                );
                let note =
                    format!("{capability} was down: {why}; its documents failed and are kept");
                (why, note)
            }
            Unanswered::PastDeadline => (
                "the run's deadline has passed: no more lookups".to_owned(),
                format!(
                    "{capability} was not asked after the run's deadline; documents that needed it failed and are kept"
                ),
            ),
        };
        self.leave_note(note);
        LookupFailure::Unavailable(why)
    }

    /// Keeps `note` for the run summary, logged the first time it is left.
    fn leave_note(&self, note: String) {
        if lock(&self.notes).insert(note.clone()) {
            tracing::warn!(type_name = %self.type_name, "{note}");
        }
    }
}

/// Locks a mutex, going on with the data when another thread panicked while holding it: the
/// caches and notes stay consistent at every step.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
