//! Backfill: a long range of history cut into shards, each an ordinary event that one run (one
//! Lambda invocation, or one local run) loads. Step Functions' Distributed Map fans the shards
//! out over the job's own function (`deploy/backfill.asl.json`); `batch-job-aurora backfill`
//! runs the same plan on a laptop. There is no scheduler here: only the plan, and the rule
//! that a shard skips what the run log already holds ([`crate::window::WindowPlan::Backfill`]).

use serde::{Deserialize, Serialize};

use crate::sink::{OnExisting, RunRecord};
use crate::window::Window;

/// An hour, in seconds: shards start and end on the hour.
pub const HOUR_SECS: i64 = 3600;

/// The default shard length, in hours, from a measurement (README, "Backfilling"): the release
/// job on one CPU (`cargo xtask bench --engines mysql --job-cpus 0`, one vCPU as a 1,769 MB
/// Lambda has; peak RSS 88 MiB) loaded 22,213 rows/s from the fetch API into MariaDB. Times
/// the 900 s deadline, 20 million rows; with a margin of 4 (Aurora across the network, slow
/// lookups, dense days), 5 million rows per shard: a day holds 200,000 rows an hour. A denser
/// shard still completes, through `DeadlineReached` retries.
pub const DEFAULT_SHARD_HOURS: i64 = 24;

/// The longest shard: a year.
pub const MAX_SHARD_HOURS: i64 = 366 * 24;

/// The most shards one plan may have (ten years of hourly shards fit).
pub const MAX_SHARDS: i64 = 100_000;

/// The largest plan handed to Step Functions inline: its state limit is 256 KiB, and the
/// state around the plan needs room too. A larger plan goes through S3 (an `ItemReader`).
pub const INLINE_PLAN_LIMIT: usize = 200 * 1024;

/// What a backfill asks: every type in every shard, the range inclusive at both ends.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    pub types: Vec<String>,
    pub window: Window,
    pub shard_hours: i64,
    /// The operator tools' `on_existing`, passed through to every shard. Absent or `skip`: a
    /// shard skips what the run log says is loaded; `update` runs every shard again.
    pub on_existing: Option<OnExisting>,
    /// How many shards (per cent) may fail before the Map fails; default 0, so that a failed
    /// execution can be redriven.
    pub tolerated_failure_percentage: f64,
}

/// One shard: an ordinary event of the contract, marked as a backfill's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub types: Vec<String>,
    pub timestamp_from: i64,
    pub timestamp_to: i64,
    /// A backfill shard skips what the run log says is loaded, and continues a window that an
    /// earlier attempt stopped at its deadline from where it stopped.
    pub backfill: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub on_existing: Option<OnExisting>,
}

impl Shard {
    pub fn window(&self) -> Window {
        Window {
            from: self.timestamp_from,
            to: self.timestamp_to,
        }
    }
}

/// Why a plan cannot be made; the message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Invalid(String),
    #[error("the plan has {shards} shards, more than {MAX_SHARDS}: use longer shards")]
    TooManyShards { shards: i64 },
    #[error(
        "the plan is {bytes} bytes, more than Step Functions takes inline ({INLINE_PLAN_LIMIT}): set BATCH_JOB_AURORA_BACKFILL_BUCKET so that it goes through S3"
    )]
    TooLargeInline { bytes: usize },
    #[error("cannot write the plan to s3://{bucket}/{key}: {message}")]
    Store {
        bucket: String,
        key: String,
        message: String,
    },
}

/// `payload` as the object the event's key `key` must be.
fn object_named<'a>(
    key: &str,
    payload: &'a serde_json::Value,
) -> Result<&'a serde_json::Map<String, serde_json::Value>, PlanError> {
    payload.as_object().ok_or_else(|| {
        PlanError::Invalid(format!(
            "{key}: expected an object, got {}",
            crate::document::abbreviate(&payload.to_string())
        ))
    })
}

impl PlanRequest {
    /// Reads `{"types": [...], "timestamp_from": N, "timestamp_to": M, "shard_hours": H,
    /// "on_existing": "update", "tolerated_failure_percentage": P}` (the execution's input);
    /// `shard_hours` defaults to [`DEFAULT_SHARD_HOURS`], the rest of the optional keys to
    /// nothing and 0. Messages name the key, prefixed with `plan.`.
    pub fn from_payload(payload: &serde_json::Value) -> Result<Self, PlanError> {
        use serde_json::Value;
        let invalid = |message: String| PlanError::Invalid(format!("plan.{message}"));
        let object = object_named("plan", payload)?;
        let field = |name: &str| object.get(name).filter(|value| !value.is_null());
        let types = match field("types") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid(format!("types: expected type names, got {item}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => {
                return Err(invalid(format!(
                    "types: expected a non-empty list of type names, got {}",
                    other.map_or("nothing".to_owned(), Value::to_string)
                )));
            }
        };
        let integer = |name: &str| match field(name) {
            None => Ok(None),
            Some(value) => value
                .as_i64()
                .map(Some)
                .ok_or_else(|| invalid(format!("{name}: expected an integer, got {value}"))),
        };
        let from = integer("timestamp_from")?
            .ok_or_else(|| invalid("timestamp_from: required (Unix seconds)".into()))?;
        let to = integer("timestamp_to")?
            .ok_or_else(|| invalid("timestamp_to: required (Unix seconds)".into()))?;
        let shard_hours = integer("shard_hours")?.unwrap_or(DEFAULT_SHARD_HOURS);
        let on_existing = match field("on_existing") {
            None => None,
            Some(value) => Some(value.as_str().and_then(OnExisting::parse).ok_or_else(|| {
                invalid(format!(
                    "on_existing: expected \"skip\" or \"update\", got {value}"
                ))
            })?),
        };
        let tolerated_failure_percentage = match field("tolerated_failure_percentage") {
            None => 0.0,
            Some(value) => match value.as_f64() {
                Some(percent) if (0.0..=100.0).contains(&percent) => percent,
                _ => {
                    return Err(invalid(format!(
                        "tolerated_failure_percentage: expected 0 to 100, got {value}"
                    )));
                }
            },
        };
        let request = PlanRequest {
            types,
            window: Window { from, to },
            shard_hours,
            on_existing,
            tolerated_failure_percentage,
        };
        request.check()?;
        Ok(request)
    }

    /// The checks every plan passes, whoever made the request.
    pub fn check(&self) -> Result<(), PlanError> {
        let invalid = |message: String| Err(PlanError::Invalid(message));
        if self.types.is_empty() {
            return invalid("types: at least one type".into());
        }
        if self.window.from > self.window.to {
            return invalid(format!(
                "timestamp_from: {} is after timestamp_to ({})",
                self.window.from, self.window.to
            ));
        }
        if !(1..=MAX_SHARD_HOURS).contains(&self.shard_hours) {
            return invalid(format!(
                "shard_hours: expected 1 to {MAX_SHARD_HOURS}, got {}",
                self.shard_hours
            ));
        }
        let span = self.shard_hours * HOUR_SECS;
        let shards = self.window.to.div_euclid(span) - self.window.from.div_euclid(span) + 1;
        if shards > MAX_SHARDS {
            return Err(PlanError::TooManyShards { shards });
        }
        Ok(())
    }
}

/// THE plan: the window cut at every multiple of `shard_hours` hours since the epoch (so on
/// the hour, UTC), each shard inclusive at both ends, the first starting at the window's start
/// and the last ending at its end, touching without overlap or gap. Every shard carries every
/// type.
pub fn plan(request: &PlanRequest) -> Result<Vec<Shard>, PlanError> {
    request.check()?;
    let span = request.shard_hours * HOUR_SECS;
    let Window { from, to } = request.window;
    let mut shards = Vec::new();
    let mut start = from;
    loop {
        let boundary = (start.div_euclid(span) + 1).saturating_mul(span);
        let end = boundary.saturating_sub(1).min(to);
        shards.push(Shard {
            types: request.types.clone(),
            timestamp_from: start,
            timestamp_to: end,
            backfill: true,
            on_existing: request.on_existing,
        });
        if end >= to {
            return Ok(shards);
        }
        start = end + 1;
    }
}

/// Where a plan too large to hand over inline is kept for the Map's `ItemReader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanObject {
    pub bucket: String,
    pub key: String,
}

/// The Lambda's answer to `{"plan": …}`: the shards inline (no bucket configured), or where
/// they were written (`BATCH_JOB_AURORA_BACKFILL_BUCKET`), with their number and the Map's
/// tolerated failure percentage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<Shard>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards_object: Option<PlanObject>,
    pub count: usize,
    pub tolerated_failure_percentage: f64,
}

/// The S3 key of a plan: named by its content, so that starting the same backfill again
/// writes the same object.
pub fn plan_key(json: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(json);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("backfill/plans/{hex}.json")
}

/// Where a plan too large for a state is written: S3, with the AWS SDK (feature `aws`).
#[cfg(feature = "aws")]
pub type PlanStore = aws_sdk_s3::Client;
/// A build without the AWS SDK has no store: every plan is answered inline.
#[cfg(not(feature = "aws"))]
#[derive(Debug, Clone)]
pub enum PlanStore {}

/// Answers a plan: inline when no bucket is given (refused when larger than
/// [`INLINE_PLAN_LIMIT`]), else written to the bucket as one JSON array (what the Map's
/// `ItemReader` with `InputType: JSON` reads), whatever its size.
pub async fn answer(
    request: &PlanRequest,
    bucket: Option<(&PlanStore, &str)>,
) -> Result<PlanAnswer, PlanError> {
    let shards = plan(request)?;
    let json = serde_json::to_vec(&shards).expect("shards serialize");
    let count = shards.len();
    let tolerated_failure_percentage = request.tolerated_failure_percentage;
    let Some((client, bucket)) = bucket else {
        if json.len() > INLINE_PLAN_LIMIT {
            return Err(PlanError::TooLargeInline { bytes: json.len() });
        }
        return Ok(PlanAnswer {
            shards: Some(shards),
            shards_object: None,
            count,
            tolerated_failure_percentage,
        });
    };
    #[cfg(not(feature = "aws"))]
    {
        let _ = bucket;
        match *client {}
    }
    #[cfg(feature = "aws")]
    {
        let key = plan_key(&json);
        client
            .put_object()
            .bucket(bucket)
            .key(&key)
            .content_type("application/json")
            .body(json.into())
            .send()
            .await
            .map_err(|error| PlanError::Store {
                bucket: bucket.to_owned(),
                key: key.clone(),
                message: crate::error::chain(&error),
            })?;
        Ok(PlanAnswer {
            shards: None,
            shards_object: Some(PlanObject {
                bucket: bucket.to_owned(),
                key,
            }),
            count,
            tolerated_failure_percentage,
        })
    }
}

/// An S3 client through the standard AWS configuration; path-style addressing when an
/// endpoint is given (`AWS_ENDPOINT_URL`: a local stand-in has no bucket host names).
#[cfg(feature = "aws")]
pub async fn s3_client(endpoint_given: bool) -> Result<PlanStore, crate::features::Missing> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    // A checksum only when S3 requires one: a plain body, which stand-ins read as AWS does.
    let s3 = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(endpoint_given)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    Ok(aws_sdk_s3::Client::from_conf(s3))
}

/// Without the AWS SDK a backfill bucket cannot be used.
#[cfg(not(feature = "aws"))]
pub async fn s3_client(_endpoint_given: bool) -> Result<PlanStore, crate::features::Missing> {
    Err(crate::features::Missing {
        what: "S3 (the backfill bucket)",
        feature: "aws",
    })
}

/// What a backfill's last state asks with `{"backfill_summary": …}`: the execution's input (the
/// plan request), when the execution started and its name, all from Step Functions' context
/// object (`$$.Execution`).
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRequest {
    pub plan: PlanRequest,
    /// Unix seconds: only runs started from here on are counted (this execution's, a redrive's
    /// included). `None`: every run over the range.
    pub since: Option<i64>,
    pub execution: Option<String>,
}

impl SummaryRequest {
    /// Reads `{"input": {…the execution's input…}, "started_at": "2026-12-03T16:50:00.123Z"
    /// (RFC 3339, as `$$.Execution.StartTime` gives it) or Unix seconds, "execution": "name"}`.
    pub fn from_payload(payload: &serde_json::Value) -> Result<Self, PlanError> {
        use serde_json::Value;
        let invalid = |message: String| PlanError::Invalid(format!("backfill_summary.{message}"));
        let object = object_named("backfill_summary", payload)?;
        let field = |name: &str| object.get(name).filter(|value| !value.is_null());
        let input = field("input").ok_or_else(|| {
            invalid("input: required (the execution's input, $$.Execution.Input)".into())
        })?;
        let plan =
            PlanRequest::from_payload(input).map_err(|error| invalid(format!("input: {error}")))?;
        let since = match field("started_at") {
            None => None,
            Some(Value::Number(number)) => Some(number.as_i64().ok_or_else(|| {
                invalid(format!("started_at: expected Unix seconds, got {number}"))
            })?),
            Some(Value::String(text)) => Some(
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|error| {
                        invalid(format!(
                            "started_at: expected an RFC 3339 time, got {text:?} ({error})"
                        ))
                    })?
                    .unix_timestamp(),
            ),
            Some(other) => {
                return Err(invalid(format!(
                    "started_at: expected an RFC 3339 time or Unix seconds, got {other}"
                )));
            }
        };
        let execution = match field("execution") {
            None => None,
            Some(Value::String(name)) => Some(name.clone()),
            Some(other) => {
                return Err(invalid(format!(
                    "execution: expected the execution's name, got {other}"
                )));
            }
        };
        Ok(SummaryRequest {
            plan,
            since,
            execution,
        })
    }
}

/// How many shards not loaded a summary lists (it counts them all).
pub const UNLOADED_LISTED: usize = 20;

/// One summary per backfill execution, from the run log: which shards are loaded by now, and
/// what the execution's runs counted. The run log, not the Map's results, is the source: it
/// holds every attempt's counts (retries and redrives included) and the one loaded-seconds
/// rule that resume and catch-up follow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackfillSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// Shards in the plan.
    pub shards: usize,
    /// Shards whose every type is loaded over the shard's whole window.
    pub loaded_shards: usize,
    /// Of those, the shards that were loaded before the execution started (it skipped them).
    pub loaded_before: usize,
    /// Shards with a type not loaded whole: they failed, or never ran.
    pub failed_shards: usize,
    /// The first [`UNLOADED_LISTED`] of them, with the types missing.
    pub unloaded: Vec<UnloadedShard>,
    /// The records of the execution's runs over the range (every type, every attempt).
    pub inserted: i64,
    pub duplicates: i64,
    pub refused: i64,
    pub failed: i64,
    /// Run-log rows counted (one per type and run).
    pub runs: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnloadedShard {
    pub timestamp_from: i64,
    pub timestamp_to: i64,
    pub types: Vec<String>,
}

/// The summary of a backfill from the run log's `records` (every row, as
/// [`crate::sink::Sink::run_records`] reads them); `now` decides which `running` rows have
/// expired (interrupted).
pub fn summarize(
    records: &[RunRecord],
    request: &SummaryRequest,
    now: i64,
) -> Result<BackfillSummary, PlanError> {
    let shards = plan(&request.plan)?;
    let range = request.plan.window;
    let since = request.since.unwrap_or(i64::MIN);
    let of_type = |type_name: &str, before_since: bool| {
        let windows: Vec<_> = records
            .iter()
            .filter(|record| record.type_name == type_name)
            .filter(|record| !before_since || record.finished_at.is_some_and(|at| at < since))
            .filter_map(|record| crate::status::logged(record, now))
            .collect();
        crate::sink::loaded_spans(&windows)
    };
    let covers = |spans: &[(i64, i64)], shard: &Shard| {
        spans
            .iter()
            .any(|&(from, to)| from <= shard.timestamp_from && shard.timestamp_to <= to)
    };
    let loaded_now: Vec<Vec<(i64, i64)>> = request
        .plan
        .types
        .iter()
        .map(|type_name| of_type(type_name, false))
        .collect();
    let loaded_before: Vec<Vec<(i64, i64)>> = request
        .plan
        .types
        .iter()
        .map(|type_name| of_type(type_name, true))
        .collect();
    let mut summary = BackfillSummary {
        execution: request.execution.clone(),
        shards: shards.len(),
        ..BackfillSummary::default()
    };
    for shard in &shards {
        let missing: Vec<String> = request
            .plan
            .types
            .iter()
            .zip(&loaded_now)
            .filter(|(_, spans)| !covers(spans, shard))
            .map(|(type_name, _)| type_name.clone())
            .collect();
        if missing.is_empty() {
            summary.loaded_shards += 1;
            if loaded_before.iter().all(|spans| covers(spans, shard)) {
                summary.loaded_before += 1;
            }
            continue;
        }
        summary.failed_shards += 1;
        if summary.unloaded.len() < UNLOADED_LISTED {
            summary.unloaded.push(UnloadedShard {
                timestamp_from: shard.timestamp_from,
                timestamp_to: shard.timestamp_to,
                types: missing,
            });
        }
    }
    for record in records {
        let in_range = record
            .window
            .is_some_and(|(from, to)| range.from <= from && to <= range.to);
        if in_range && record.started_at >= since && request.plan.types.contains(&record.type_name)
        {
            summary.inserted += record.inserted;
            summary.duplicates += record.duplicates;
            summary.refused += record.refused;
            summary.failed += record.failed;
            summary.runs += 1;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_SECS;
    const DAY: i64 = 24 * H;
    /// 2026-01-01T00:00:00Z.
    const JAN_1: i64 = 1_767_225_600;

    fn request(from: i64, to: i64, shard_hours: i64) -> PlanRequest {
        PlanRequest {
            types: vec!["GithubType".into(), "SlackType".into()],
            window: Window { from, to },
            shard_hours,
            on_existing: None,
            tolerated_failure_percentage: 0.0,
        }
    }

    fn windows(shards: &[Shard]) -> Vec<(i64, i64)> {
        shards
            .iter()
            .map(|shard| (shard.timestamp_from, shard.timestamp_to))
            .collect()
    }

    #[test]
    fn shards_are_aligned_inclusive_and_touch_without_gap_or_overlap() {
        type Case = (&'static str, PlanRequest, Vec<(i64, i64)>);
        let cases: Vec<Case> = vec![
            (
                "one aligned day in 6-hour shards",
                request(JAN_1, JAN_1 + DAY - 1, 6),
                vec![
                    (JAN_1, JAN_1 + 6 * H - 1),
                    (JAN_1 + 6 * H, JAN_1 + 12 * H - 1),
                    (JAN_1 + 12 * H, JAN_1 + 18 * H - 1),
                    (JAN_1 + 18 * H, JAN_1 + DAY - 1),
                ],
            ),
            (
                "an unaligned start and end: the first and last shards are short",
                request(JAN_1 + 5 * H + 17, JAN_1 + 13 * H + 5, 6),
                vec![
                    (JAN_1 + 5 * H + 17, JAN_1 + 6 * H - 1),
                    (JAN_1 + 6 * H, JAN_1 + 12 * H - 1),
                    (JAN_1 + 12 * H, JAN_1 + 13 * H + 5),
                ],
            ),
            (
                "an inclusive end on a boundary is a shard of one second",
                request(JAN_1, JAN_1 + DAY, 24),
                vec![(JAN_1, JAN_1 + DAY - 1), (JAN_1 + DAY, JAN_1 + DAY)],
            ),
            (
                "a window of one second",
                request(JAN_1 + 7, JAN_1 + 7, 1),
                vec![(JAN_1 + 7, JAN_1 + 7)],
            ),
            (
                "a window inside one shard",
                request(JAN_1 + H, JAN_1 + 2 * H, 24),
                vec![(JAN_1 + H, JAN_1 + 2 * H)],
            ),
            (
                "before the epoch, still on the hour",
                request(-2 * H - 1, H, 1),
                vec![
                    (-2 * H - 1, -2 * H - 1),
                    (-2 * H, -H - 1),
                    (-H, -1),
                    (0, H - 1),
                    (H, H),
                ],
            ),
        ];
        let mut failures = Vec::new();
        for (name, request, expected) in cases {
            match plan(&request) {
                Ok(shards) => {
                    if windows(&shards) != expected {
                        failures.push(format!("{name}: got {:?}", windows(&shards)));
                    }
                    if shards.iter().any(|shard| shard.types != request.types) {
                        failures.push(format!("{name}: a shard lacks a type"));
                    }
                }
                Err(error) => failures.push(format!("{name}: {error}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_year_in_6_hour_shards_covers_every_second_once() {
        let year = request(JAN_1 - 1234, JAN_1 + 365 * DAY + 99, 6);
        let shards = plan(&year).unwrap();
        assert_eq!(shards.len(), 1462);
        assert_eq!(shards[0].timestamp_from, year.window.from);
        assert_eq!(shards.last().unwrap().timestamp_to, year.window.to);
        for pair in shards.windows(2) {
            assert_eq!(pair[0].timestamp_to + 1, pair[1].timestamp_from, "{pair:?}");
            assert_eq!((pair[1].timestamp_from).rem_euclid(6 * H), 0, "{pair:?}");
            assert!(pair[0].timestamp_from <= pair[0].timestamp_to);
        }
        // About 150 bytes a shard: a year of 6-hour shards is near Step Functions' limit.
        let bytes = serde_json::to_vec(&shards).unwrap().len();
        assert!(bytes > 150_000, "{bytes}");
        // A year of hourly shards is too large inline.
        let hourly = plan(&request(JAN_1, JAN_1 + 365 * DAY - 1, 1)).unwrap();
        assert!(serde_json::to_vec(&hourly).unwrap().len() > INLINE_PLAN_LIMIT);
    }

    #[test]
    fn a_shard_is_an_ordinary_event_with_the_backfill_mark() {
        let mut update = request(JAN_1, JAN_1 + H - 1, 1);
        update.on_existing = Some(OnExisting::Update);
        let shards = plan(&update).unwrap();
        assert_eq!(
            serde_json::to_value(&shards[0]).unwrap(),
            serde_json::json!({"types": ["GithubType", "SlackType"], "timestamp_from": JAN_1,
                "timestamp_to": JAN_1 + H - 1, "backfill": true, "on_existing": "update"})
        );
        let plain = plan(&request(JAN_1, JAN_1 + H - 1, 1)).unwrap();
        assert!(
            serde_json::to_value(&plain[0])
                .unwrap()
                .get("on_existing")
                .is_none()
        );
    }

    #[test]
    fn a_bad_plan_names_its_field() {
        let cases = [
            (serde_json::json!([1]), "plan: expected an object, got [1]"),
            (
                serde_json::json!({"timestamp_from": 0, "timestamp_to": 1}),
                "plan.types: expected a non-empty list of type names, got nothing",
            ),
            (
                serde_json::json!({"types": ["A"], "timestamp_to": 1}),
                "plan.timestamp_from: required (Unix seconds)",
            ),
            (
                serde_json::json!({"types": ["A"], "timestamp_from": 5, "timestamp_to": 1}),
                "timestamp_from: 5 is after timestamp_to (1)",
            ),
            (
                serde_json::json!({"types": ["A"], "timestamp_from": 0, "timestamp_to": 1, "shard_hours": 0}),
                "shard_hours: expected 1 to 8784, got 0",
            ),
            (
                serde_json::json!({"types": ["A"], "timestamp_from": 0, "timestamp_to": 1, "on_existing": "replace"}),
                "plan.on_existing: expected \"skip\" or \"update\", got \"replace\"",
            ),
            (
                serde_json::json!({"types": ["A"], "timestamp_from": 0, "timestamp_to": 1, "tolerated_failure_percentage": 150}),
                "plan.tolerated_failure_percentage: expected 0 to 100, got 150",
            ),
            (
                serde_json::json!({"types": ["A"], "timestamp_from": 0, "timestamp_to": 100_000_000_000_i64, "shard_hours": 1}),
                "the plan has 27777778 shards, more than 100000: use longer shards",
            ),
        ];
        let mut failures = Vec::new();
        for (payload, expected) in cases {
            match PlanRequest::from_payload(&payload) {
                Ok(_) => failures.push(format!("{payload}: accepted")),
                Err(error) if error.to_string() == expected => {}
                Err(error) => failures.push(format!("{payload}: {error}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        let defaults = PlanRequest::from_payload(
            &serde_json::json!({"types": ["A"], "timestamp_from": 0, "timestamp_to": 1}),
        )
        .unwrap();
        assert_eq!(defaults.shard_hours, DEFAULT_SHARD_HOURS);
        assert_eq!(defaults.tolerated_failure_percentage, 0.0);
        assert_eq!(defaults.on_existing, None);
    }

    #[tokio::test]
    async fn a_plan_too_large_for_step_functions_is_refused_inline() {
        let hourly = request(JAN_1, JAN_1 + 365 * DAY - 1, 1);
        match answer(&hourly, None).await {
            Err(PlanError::TooLargeInline { bytes }) => assert!(bytes > INLINE_PLAN_LIMIT),
            other => panic!("{other:?}"),
        }
        let small = answer(&request(JAN_1, JAN_1 + DAY - 1, 6), None)
            .await
            .unwrap();
        assert_eq!(small.count, 4);
        assert_eq!(small.shards.unwrap().len(), 4);
    }

    fn record(type_name: &str, window: (i64, i64), status: &str, started_at: i64) -> RunRecord {
        RunRecord {
            run_id: format!("run-{started_at}"),
            type_name: type_name.into(),
            window: Some(window),
            status: status.into(),
            inserted: 10,
            duplicates: 1,
            started_at,
            finished_at: Some(started_at + 5),
            ..RunRecord::default()
        }
    }

    #[test]
    fn a_summary_counts_shards_loaded_before_and_during_the_execution_and_names_the_rest() {
        let execution_start = JAN_1 + 10 * DAY;
        let mut request = request(JAN_1, JAN_1 + 3 * DAY - 1, 24);
        request.types = vec!["A".into(), "B".into()];
        let summary_request = SummaryRequest {
            plan: request,
            since: Some(execution_start),
            execution: Some("nightly".into()),
        };
        let day = |n: i64| (JAN_1 + n * DAY, JAN_1 + (n + 1) * DAY - 1);
        let records = vec![
            // Day 0 of both types: loaded by an earlier execution.
            record("A", day(0), "succeeded", execution_start - 100),
            record("B", day(0), "succeeded", execution_start - 100),
            // Day 1: loaded by this one (B after a deadline and a retry).
            record("A", day(1), "succeeded", execution_start + 1),
            RunRecord {
                done_until: Some(JAN_1 + DAY + 3600 - 1),
                ..record("B", day(1), "failed", execution_start + 2)
            },
            record(
                "B",
                (JAN_1 + DAY + 3600, day(1).1),
                "succeeded",
                execution_start + 20,
            ),
            // Day 2: A loaded, B failed for good.
            record("A", day(2), "succeeded", execution_start + 3),
            record("B", day(2), "failed", execution_start + 4),
            // Outside the range, or another type: not counted.
            record("A", day(3), "succeeded", execution_start + 5),
            record("C", day(1), "succeeded", execution_start + 5),
        ];
        let summary = summarize(&records, &summary_request, execution_start + 60).unwrap();
        assert_eq!(
            summary,
            BackfillSummary {
                execution: Some("nightly".into()),
                shards: 3,
                loaded_shards: 2,
                loaded_before: 1,
                failed_shards: 1,
                unloaded: vec![UnloadedShard {
                    timestamp_from: day(2).0,
                    timestamp_to: day(2).1,
                    types: vec!["B".into()],
                }],
                inserted: 50,
                duplicates: 5,
                refused: 0,
                failed: 0,
                runs: 5,
            }
        );
        // Without a start, every run over the range counts; nothing is "before".
        let everything = SummaryRequest {
            since: None,
            ..summary_request
        };
        let summary = summarize(&records, &everything, execution_start + 60).unwrap();
        assert_eq!((summary.runs, summary.loaded_before), (7, 0));
    }

    #[test]
    fn a_summary_request_reads_step_functions_context() {
        let payload = serde_json::json!({
            "input": {"types": ["A"], "timestamp_from": 0, "timestamp_to": 3599, "shard_hours": 1},
            "started_at": "2026-12-03T16:50:00.123Z",
            "execution": "nightly",
        });
        let request = SummaryRequest::from_payload(&payload).unwrap();
        assert_eq!(request.since, Some(1_796_316_600));
        assert_eq!(request.execution.as_deref(), Some("nightly"));
        assert_eq!(request.plan.shard_hours, 1);
        let seconds = serde_json::json!({"input": payload["input"], "started_at": 5});
        assert_eq!(
            SummaryRequest::from_payload(&seconds).unwrap().since,
            Some(5)
        );
        let cases = [
            (
                serde_json::json!({"started_at": 5}),
                "backfill_summary.input: required (the execution's input, $$.Execution.Input)",
            ),
            (
                serde_json::json!({"input": payload["input"], "started_at": "yesterday"}),
                "backfill_summary.started_at: expected an RFC 3339 time, got \"yesterday\"",
            ),
            (
                serde_json::json!({"input": {"types": []}}),
                "backfill_summary.input: plan.types: expected a non-empty list of type names, got []",
            ),
        ];
        for (payload, expected) in cases {
            let error = SummaryRequest::from_payload(&payload)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(expected), "{error}");
        }
    }
}
