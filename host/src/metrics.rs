//! CloudWatch Embedded Metric Format: one JSON line per invocation and one per type, which
//! CloudWatch Logs turns into metrics with no agent and no API call, so dashboards and alarms
//! need no code.
//!
//! - Per invocation, without dimensions and by `FunctionName`: `Duration` (milliseconds),
//!   `IncompleteRun` (1 when the invocation did not complete its run, whatever the reason,
//!   else 0), and the totals `Inserted`, `Duplicates`, `Refused`, `Failed`.
//! - Per type, by `FunctionName` and `Type`: `Inserted`, `Duplicates`, `Refused`, `Failed`.
//! - Per backfill shard (an event with `"backfill": true`), by `FunctionName`:
//!   `BackfillShardCompleted`, `BackfillShardDeadlineReached` (stopped at its deadline, to be
//!   continued by the Map's retry), `BackfillShardFailed` (any other failure), each 0 or 1, and
//!   `BackfillShardDuration`; the shard's window, error type and run id as properties, for
//!   CloudWatch Logs Insights (not as dimensions: a metric per shard would cost per shard).
//! - Per backfill execution (the state machine's summary state), by `FunctionName`:
//!   `BackfillShards`, `BackfillShardsLoaded`, `BackfillShardsFailed`, `BackfillInserted`,
//!   `BackfillDuplicates`, `BackfillRefused`, `BackfillFailed`; the execution's name as a
//!   property.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backfill::BackfillSummary;
use crate::summary::RunSummary;
use crate::window::Window;

/// The namespace when the operator sets none (`BATCH_JOB_AURORA_METRICS_NAMESPACE`).
pub const DEFAULT_NAMESPACE: &str = "BatchJobAurora";

/// What one invocation measured.
#[derive(Debug, Clone)]
pub struct InvocationMetrics<'a> {
    pub namespace: &'a str,
    pub function_name: &'a str,
    /// The run's counts, when it ran.
    pub summary: Option<&'a RunSummary>,
    pub duration: Duration,
    /// Whether the invocation failed to complete its run.
    pub incomplete: bool,
    /// The time of the measurement, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The shard's window, when the invocation ran a backfill's shard.
    pub shard: Option<Window>,
    /// The failure's errorType, when the invocation failed.
    pub error_type: Option<&'a str>,
    /// The execution's summary, when the invocation summarised a backfill.
    pub backfill: Option<&'a BackfillSummary>,
}

const COUNTS: [&str; 4] = ["Inserted", "Duplicates", "Refused", "Failed"];

impl InvocationMetrics<'_> {
    /// The EMF lines, each one JSON object to print on a line of its own.
    pub fn emf_lines(&self) -> Vec<String> {
        let metric = |name: &str, unit: &str| json!({"Name": name, "Unit": unit});
        let count_metrics = COUNTS.iter().map(|name| metric(name, "Count"));
        let mut invocation_metrics = vec![
            metric("Duration", "Milliseconds"),
            metric("IncompleteRun", "Count"),
        ];
        invocation_metrics.extend(count_metrics.clone());
        let totals = self.summary.map_or([0; 4], |summary| {
            [
                summary.inserted,
                summary.duplicates,
                summary.refused,
                summary.failed,
            ]
        });
        let mut invocation = json!({
            "_aws": {
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [[], ["FunctionName"]],
                    "Metrics": invocation_metrics,
                }],
            },
            "FunctionName": self.function_name,
            "Duration": self.duration.as_secs_f64() * 1000.0,
            "IncompleteRun": u8::from(self.incomplete),
        });
        for (name, value) in COUNTS.iter().zip(totals) {
            invocation[*name] = json!(value);
        }
        let mut lines = vec![invocation.to_string()];
        for (type_name, counts) in self.summary.iter().flat_map(|summary| &summary.types) {
            let mut line = json!({
                "_aws": {
                    "Timestamp": self.timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": self.namespace,
                        "Dimensions": [["FunctionName", "Type"]],
                        "Metrics": count_metrics.clone().collect::<Vec<Value>>(),
                    }],
                },
                "FunctionName": self.function_name,
                "Type": type_name,
            });
            let values = [
                counts.inserted,
                counts.duplicates,
                counts.refused,
                counts.failed,
            ];
            for (name, value) in COUNTS.iter().zip(values) {
                line[*name] = json!(value);
            }
            lines.push(line.to_string());
        }
        if let Some(shard) = self.shard {
            lines.push(self.shard_line(shard).to_string());
        }
        if let Some(backfill) = self.backfill {
            lines.push(self.backfill_line(backfill).to_string());
        }
        lines
    }

    /// One line by `FunctionName` whose directive names each of `metrics` (a count, but for
    /// `*Duration`, in milliseconds) and whose keys are the metrics' values and `properties`.
    fn line(&self, metrics: &[(&str, Value)], properties: Value) -> Value {
        let directives: Vec<Value> = metrics
            .iter()
            .map(|(name, _)| {
                let unit = if name.ends_with("Duration") {
                    "Milliseconds"
                } else {
                    "Count"
                };
                json!({"Name": name, "Unit": unit})
            })
            .collect();
        let mut line = json!({
            "_aws": {
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": directives,
                }],
            },
            "FunctionName": self.function_name,
        });
        for (name, value) in metrics {
            line[*name] = value.clone();
        }
        if let (Value::Object(line), Value::Object(properties)) = (&mut line, properties) {
            line.extend(properties);
        }
        line
    }

    fn shard_line(&self, shard: Window) -> Value {
        let deadline = self.error_type == Some("DeadlineReached");
        let completed = self.error_type.is_none();
        self.line(
            &[
                ("BackfillShardCompleted", json!(u8::from(completed))),
                ("BackfillShardDeadlineReached", json!(u8::from(deadline))),
                (
                    "BackfillShardFailed",
                    json!(u8::from(!completed && !deadline)),
                ),
                (
                    "BackfillShardDuration",
                    json!(self.duration.as_secs_f64() * 1000.0),
                ),
            ],
            json!({
                "ShardFrom": shard.from,
                "ShardTo": shard.to,
                "ErrorType": self.error_type,
                "RunId": self.summary.map(|summary| summary.run_id.as_str()),
            }),
        )
    }

    fn backfill_line(&self, backfill: &BackfillSummary) -> Value {
        self.line(
            &[
                ("BackfillShards", json!(backfill.shards)),
                ("BackfillShardsLoaded", json!(backfill.loaded_shards)),
                ("BackfillShardsFailed", json!(backfill.failed_shards)),
                ("BackfillInserted", json!(backfill.inserted)),
                ("BackfillDuplicates", json!(backfill.duplicates)),
                ("BackfillRefused", json!(backfill.refused)),
                ("BackfillFailed", json!(backfill.failed)),
            ],
            json!({"Execution": backfill.execution}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_invocation_and_per_type() {
        let mut summary = RunSummary {
            inserted: 3,
            duplicates: 1,
            ..Default::default()
        };
        summary.type_mut("GithubType").inserted = 3;
        summary.type_mut("SlackType").duplicates = 1;
        let metrics = InvocationMetrics {
            namespace: "Test",
            function_name: "job",
            summary: Some(&summary),
            duration: Duration::from_millis(12),
            incomplete: false,
            timestamp_ms: 1_700_000_000_000,
            shard: None,
            error_type: None,
            backfill: None,
        };
        let lines: Vec<Value> = metrics
            .emf_lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        let invocation = &lines[0];
        assert_eq!(
            invocation["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Test"
        );
        assert_eq!(invocation["IncompleteRun"], 0);
        assert_eq!(invocation["Inserted"], 3);
        assert_eq!(invocation["Duration"], 12.0);
        // Every metric a directive names is a key of the line, as EMF requires.
        for line in &lines {
            for metric in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
            {
                let name = metric["Name"].as_str().unwrap();
                assert!(line.get(name).is_some(), "{name} missing in {line}");
            }
        }
        assert_eq!(lines[1]["Type"], "GithubType");
        assert_eq!(lines[2]["Duplicates"], 1);
        let failed = InvocationMetrics {
            summary: None,
            incomplete: true,
            ..metrics
        };
        let lines = failed.emf_lines();
        assert_eq!(lines.len(), 1);
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["IncompleteRun"], 1);
    }

    /// Every metric a directive names is a key of its line, with a number, as EMF requires.
    fn assert_well_formed(line: &Value) {
        for metric in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            let name = metric["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} missing in {line}");
        }
    }

    #[test]
    fn a_backfill_shard_and_an_execution_each_have_a_line() {
        let summary = RunSummary {
            run_id: "run-1".into(),
            inserted: 5,
            ..Default::default()
        };
        let base = InvocationMetrics {
            namespace: "Test",
            function_name: "job",
            summary: Some(&summary),
            duration: Duration::from_millis(1500),
            incomplete: true,
            timestamp_ms: 1_700_000_000_000,
            shard: Some(Window { from: 0, to: 3599 }),
            error_type: Some("DeadlineReached"),
            backfill: None,
        };
        let lines: Vec<Value> = base
            .emf_lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let shard = lines.last().unwrap();
        assert_well_formed(shard);
        assert_eq!(shard["BackfillShardDeadlineReached"], 1);
        assert_eq!(shard["BackfillShardCompleted"], 0);
        assert_eq!(shard["BackfillShardFailed"], 0);
        assert_eq!(shard["ShardTo"], 3599);
        assert_eq!(shard["RunId"], "run-1");
        assert_eq!(shard["BackfillShardDuration"], 1500.0);
        let backfill = BackfillSummary {
            execution: Some("nightly".into()),
            shards: 30,
            loaded_shards: 29,
            failed_shards: 1,
            inserted: 1000,
            ..Default::default()
        };
        let summarised = InvocationMetrics {
            summary: None,
            incomplete: false,
            shard: None,
            error_type: None,
            backfill: Some(&backfill),
            ..base
        };
        let lines = summarised.emf_lines();
        assert_eq!(lines.len(), 2);
        let line: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_well_formed(&line);
        assert_eq!(line["BackfillShardsFailed"], 1);
        assert_eq!(line["BackfillInserted"], 1000);
        assert_eq!(line["Execution"], "nightly");
    }
}
