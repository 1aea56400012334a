//! Backfill: a long range of history cut into shards, each an ordinary event that one run (one
//! Lambda invocation, or one local run) loads. Step Functions' Distributed Map fans the shards
//! out over the job's own function (`deploy/backfill.asl.json`); `batch-job-aurora backfill`
//! runs the same plan on a laptop. There is no scheduler here: only the plan, and the rule
//! that a shard skips what the run log already holds ([`crate::window::WindowPlan::Backfill`]).

use serde::{Deserialize, Serialize};

use crate::window::Window;

/// An hour, in seconds: shards start and end on the hour.
pub const HOUR_SECS: i64 = 3600;

/// The default shard length, in hours, from a measurement (README, "Backfilling"): the
/// benchmark's 39,151 rows/s into MariaDB on 2 cores at 32.3 µs of CPU per document, taken
/// down to one vCPU (a 1,769 MB Lambda) and a database across the network, about 15,000
/// rows/s; times the 900 s deadline, 13.5 million rows; with a margin of 4 (slow lookups, a
/// busy Aurora, dense days), 3.4 million rows per shard: a day holds 140,000 rows an hour.
/// A denser shard still completes, through `DeadlineReached` retries.
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
    /// The operator tools' `on_existing` (`"skip"` or `"update"`), passed through to every
    /// shard. Absent or `"skip"`: a shard skips what the run log says is loaded.
    pub on_existing: Option<String>,
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
    pub on_existing: Option<String>,
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

/// Checks the operator tools' `on_existing`.
pub fn check_on_existing(value: &str) -> Result<(), PlanError> {
    match value {
        "skip" | "update" => Ok(()),
        other => Err(PlanError::Invalid(format!(
            "on_existing: expected \"skip\" or \"update\", got {other:?}"
        ))),
    }
}

/// Whether a shard with this `on_existing` skips what is loaded (absent or `"skip"`).
pub fn skips_loaded(on_existing: Option<&str>) -> bool {
    on_existing.is_none_or(|value| value == "skip")
}

impl PlanRequest {
    /// Reads `{"types": [...], "timestamp_from": N, "timestamp_to": M, "shard_hours": H,
    /// "on_existing": "update", "tolerated_failure_percentage": P}` (the execution's input);
    /// `shard_hours` defaults to [`DEFAULT_SHARD_HOURS`], the rest of the optional keys to
    /// nothing and 0. Messages name the key, prefixed with `plan.`.
    pub fn from_payload(payload: &serde_json::Value) -> Result<Self, PlanError> {
        use serde_json::Value;
        let invalid = |message: String| PlanError::Invalid(format!("plan.{message}"));
        let Value::Object(object) = payload else {
            return Err(PlanError::Invalid(format!(
                "plan: expected an object, got {}",
                crate::document::abbreviate(&payload.to_string())
            )));
        };
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
            Some(Value::String(value)) => {
                check_on_existing(value).map_err(|error| invalid(error.to_string()))?;
                Some(value.clone())
            }
            Some(other) => {
                return Err(invalid(format!(
                    "on_existing: expected \"skip\" or \"update\", got {other}"
                )));
            }
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
        if let Some(value) = &self.on_existing {
            check_on_existing(value)?;
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
            on_existing: request.on_existing.clone(),
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
        update.on_existing = Some("update".into());
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
        assert!(skips_loaded(None));
        assert!(skips_loaded(Some("skip")));
        assert!(!skips_loaded(Some("update")));
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
}
