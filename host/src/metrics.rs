//! CloudWatch Embedded Metric Format: one JSON line per invocation and one per type, which
//! CloudWatch Logs turns into metrics with no agent and no API call, so dashboards and alarms
//! need no code.
//!
//! - Per invocation, without dimensions and by `FunctionName`: `Duration` (milliseconds),
//!   `IncompleteRun` (1 when the invocation did not complete its run, whatever the reason,
//!   else 0), and the totals `Inserted`, `Duplicates`, `Refused`, `Failed`.
//! - Per type, by `FunctionName` and `Type`: `Inserted`, `Duplicates`, `Refused`, `Failed`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::summary::RunSummary;

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
        lines
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
}
