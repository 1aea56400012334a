//! `status`: what is loaded, per type, read from the run log and the dead letters, without
//! changing anything. The loaded seconds follow the run log's one rule
//! ([`crate::sink::LoggedWindow::loaded`], [`crate::sink::loaded_spans`]), the same that
//! catch-up's watermark reads, so `status` and catch-up never disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::sink::{
    DEAD_LETTER_TABLE, DeadLetterCount, LoggedWindow, RUN_LOG_TABLE, RunRecord, RunStatus, Sink,
    SinkError, expired, holes, loaded_spans, spans_since, watermark,
};

/// What `status` is asked.
#[derive(Debug, Clone, Default)]
pub struct StatusRequest {
    /// Only these types; every type the tables name when `None`.
    pub types: Option<Vec<String>>,
    /// Only what reaches this second or later (Unix seconds): spans are clipped to it, a hole
    /// from it to the first span counts, and dead letters of documents stamped earlier are left
    /// out.
    pub since: Option<i64>,
    /// The time taken as now, Unix seconds: a row still `running` past its expiry is shown as
    /// interrupted (as the next run will mark it).
    pub now: i64,
}

/// Why `status` could not tell.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(
        "the database has no table {table}: no run has written to it (wrong --database?); status only reads and creates nothing"
    )]
    NoBookkeeping { table: &'static str },
}

/// Every type's coverage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub types: BTreeMap<String, TypeStatus>,
}

/// One type's coverage. Spans are inclusive Unix seconds, as windows are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    /// The loaded seconds, merged into sorted, disjoint spans.
    pub loaded: Vec<(i64, i64)>,
    /// The seconds missing between loaded spans.
    pub holes: Vec<(i64, i64)>,
    /// Where catch-up stands: gap-free from `start` to `done_until`.
    pub watermark: Option<WatermarkView>,
    /// Windows that failed, were abandoned or were interrupted, with the reason.
    pub failed_windows: Vec<FailedWindow>,
    /// Windows of runs still under way.
    pub running: Vec<RunningWindow>,
    /// Dead letters waiting (never replayed, or replayed and failed again), in records: a
    /// document too large for one record is kept in several.
    pub dead_letters: u64,
    pub dead_letters_by_stage: BTreeMap<String, u64>,
    /// Dead letters replayed, by outcome (stored, duplicate, refused, failed).
    pub replayed: BTreeMap<String, u64>,
    pub last_success: Option<LastSuccess>,
    /// The loaded spans each plugin version produced (`version` null: not recorded, a run
    /// from before versions were logged).
    pub plugin_versions: Vec<VersionSpans>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WatermarkView {
    pub start: i64,
    pub done_until: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedWindow {
    pub from: i64,
    pub to: i64,
    /// `failed`, `abandoned` or `interrupted` (or a status this build does not know).
    pub status: String,
    pub error: Option<String>,
    pub run_id: String,
    pub started_at: i64,
    /// How far the window was read before it stopped, when it was read in parts.
    pub done_until: Option<i64>,
    /// Whether the window is loaded whole by now (by a later run, or: abandoned, its bytes
    /// kept).
    pub loaded_since: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunningWindow {
    pub from: i64,
    pub to: i64,
    pub run_id: String,
    pub started_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastSuccess {
    pub run_id: String,
    /// `None` for a run without a window (a replay).
    pub window: Option<(i64, i64)>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub inserted: i64,
    pub duplicates: i64,
    pub refused: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionSpans {
    pub version: Option<String>,
    pub sha256: Option<String>,
    pub loaded: Vec<(i64, i64)>,
}

/// Reads the coverage from the database at `url`, changing nothing.
pub async fn status(url: &str, request: &StatusRequest) -> Result<StatusReport, StatusError> {
    let sink = Sink::open_read_only(url).await?;
    let result = read(&sink, request).await;
    sink.close().await;
    result
}

/// Every row of the run log at `url`, changing nothing; none when there is no run log yet.
pub async fn run_records(url: &str) -> Result<Vec<RunRecord>, SinkError> {
    let sink = Sink::open_read_only(url).await?;
    let result = async {
        let bookkeeping = sink.bookkeeping().await?;
        if bookkeeping.run_log_columns.is_empty() {
            return Ok(Vec::new());
        }
        sink.run_records(&bookkeeping).await
    }
    .await;
    sink.close().await;
    result
}

async fn read(sink: &Sink, request: &StatusRequest) -> Result<StatusReport, StatusError> {
    let bookkeeping = sink.bookkeeping().await?;
    if bookkeeping.run_log_columns.is_empty() {
        return Err(StatusError::NoBookkeeping {
            table: RUN_LOG_TABLE,
        });
    }
    if bookkeeping.dead_letter_columns.is_empty() {
        return Err(StatusError::NoBookkeeping {
            table: DEAD_LETTER_TABLE,
        });
    }
    let records = sink.run_records(&bookkeeping).await?;
    let dead_letters = sink.dead_letter_counts(&bookkeeping, request.since).await?;
    Ok(report(&records, &dead_letters, request))
}

/// The coverage of run-log rows and dead-letter counts (pure: the tests' tables go here).
pub fn report(
    records: &[RunRecord],
    dead_letters: &[DeadLetterCount],
    request: &StatusRequest,
) -> StatusReport {
    let mut names: BTreeSet<&str> = records.iter().map(|r| r.type_name.as_str()).collect();
    names.extend(dead_letters.iter().map(|d| d.type_name.as_str()));
    if let Some(wanted) = &request.types {
        names = wanted.iter().map(String::as_str).collect();
    }
    let types = names
        .into_iter()
        .map(|name| {
            let own: Vec<&RunRecord> = records.iter().filter(|r| r.type_name == name).collect();
            let letters: Vec<&DeadLetterCount> = dead_letters
                .iter()
                .filter(|d| d.type_name == name)
                .collect();
            (name.to_owned(), type_status(&own, &letters, request))
        })
        .collect();
    StatusReport { types }
}

/// The run log's status of a row, with a `running` row past its expiry taken as interrupted.
fn effective_status(record: &RunRecord, now: i64) -> Option<RunStatus> {
    match RunStatus::parse(&record.status) {
        Some(RunStatus::Running) if expired(record.expires_at, record.started_at, now) => {
            Some(RunStatus::Interrupted)
        }
        status => status,
    }
}

pub(crate) fn logged(record: &RunRecord, now: i64) -> Option<LoggedWindow> {
    let (from, to) = record.window?;
    Some(LoggedWindow {
        from,
        to,
        status: effective_status(record, now),
        scheduled: record.scheduled,
        done_until: record.done_until,
        started_at: record.started_at,
    })
}

fn type_status(
    records: &[&RunRecord],
    dead_letters: &[&DeadLetterCount],
    request: &StatusRequest,
) -> TypeStatus {
    let (since, now) = (request.since, request.now);
    // Replays have no window: they count for no span.
    let windows: Vec<LoggedWindow> = records.iter().filter_map(|r| logged(r, now)).collect();
    let all_spans = loaded_spans(&windows);
    let (failed_windows, running) = unfinished_windows(records, &all_spans, request);
    let (dead_letters_by_stage, replayed) = dead_letter_counts(dead_letters);
    TypeStatus {
        holes: holes(&all_spans, since),
        loaded: spans_since(&all_spans, since),
        watermark: watermark(&windows).map(|w| WatermarkView {
            start: w.start,
            done_until: w.done_until,
        }),
        failed_windows,
        running,
        dead_letters: dead_letters_by_stage.values().sum(),
        dead_letters_by_stage,
        replayed,
        last_success: last_success(records, now),
        plugin_versions: plugin_versions(records, request),
    }
}

/// The windows since `request.since` that did not succeed: failed (or abandoned,
/// interrupted), and still running, each sorted by window.
fn unfinished_windows(
    records: &[&RunRecord],
    all_spans: &[(i64, i64)],
    request: &StatusRequest,
) -> (Vec<FailedWindow>, Vec<RunningWindow>) {
    let mut failed_windows = Vec::new();
    let mut running = Vec::new();
    for record in records {
        let Some((from, to)) = record.window else {
            continue;
        };
        if request.since.is_some_and(|since| to < since) {
            continue;
        }
        let status = effective_status(record, request.now);
        if status == Some(RunStatus::Succeeded) {
            continue;
        }
        if status == Some(RunStatus::Running) {
            running.push(RunningWindow {
                from,
                to,
                run_id: record.run_id.clone(),
                started_at: record.started_at,
            });
            continue;
        }
        let error = match (&record.error, status) {
            (None, Some(RunStatus::Interrupted)) if record.status == "running" => Some(
                "still running after the longest a run can last: its process died (the next run marks it interrupted)"
                    .to_owned(),
            ),
            (error, _) => error.clone(),
        };
        failed_windows.push(FailedWindow {
            from,
            to,
            status: status.map_or_else(|| record.status.clone(), |s| s.as_str().to_owned()),
            error,
            run_id: record.run_id.clone(),
            started_at: record.started_at,
            done_until: record.done_until,
            loaded_since: all_spans
                .iter()
                .any(|&(span_from, span_to)| span_from <= from && to <= span_to),
        });
    }
    failed_windows.sort_by_key(|w| (w.from, w.to, w.started_at));
    running.sort_by_key(|window| (window.from, window.to, window.started_at));
    (failed_windows, running)
}

/// The spans each plugin version (and build) loaded, oldest first.
fn plugin_versions(records: &[&RunRecord], request: &StatusRequest) -> Vec<VersionSpans> {
    let mut by_version: BTreeMap<(Option<String>, Option<String>), Vec<LoggedWindow>> =
        BTreeMap::new();
    for record in records {
        if let Some(window) = logged(record, request.now) {
            by_version
                .entry((record.plugin_version.clone(), record.plugin_sha256.clone()))
                .or_default()
                .push(window);
        }
    }
    let mut versions: Vec<VersionSpans> = by_version
        .into_iter()
        .map(|((version, sha256), windows)| VersionSpans {
            version,
            sha256,
            loaded: spans_since(&loaded_spans(&windows), request.since),
        })
        .filter(|version| !version.loaded.is_empty())
        .collect();
    versions.sort_by(|a, b| a.loaded.cmp(&b.loaded));
    versions
}

/// The run that succeeded last (by when it finished).
fn last_success(records: &[&RunRecord], now: i64) -> Option<LastSuccess> {
    records
        .iter()
        .filter(|r| effective_status(r, now) == Some(RunStatus::Succeeded))
        .max_by_key(|r| (r.finished_at.unwrap_or(r.started_at), r.started_at))
        .map(|r| LastSuccess {
            run_id: r.run_id.clone(),
            window: r.window,
            started_at: r.started_at,
            finished_at: r.finished_at,
            inserted: r.inserted,
            duplicates: r.duplicates,
            refused: r.refused,
            failed: r.failed,
        })
}

/// Dead letters waiting (never replayed, or failed again) by stage, and replayed ones by
/// outcome.
fn dead_letter_counts(
    dead_letters: &[&DeadLetterCount],
) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut waiting_by_stage = BTreeMap::new();
    let mut replayed = BTreeMap::new();
    for count in dead_letters {
        if count.outcome.as_deref().is_none_or(|o| o == "failed") {
            *waiting_by_stage.entry(count.stage.clone()).or_default() += count.count;
        }
        if let Some(outcome) = &count.outcome {
            *replayed.entry(outcome.clone()).or_default() += count.count;
        }
    }
    (waiting_by_stage, replayed)
}

impl StatusReport {
    /// The report for people: one block per type, each span with its times (UTC) and the
    /// seconds to pass to `run --from --to`.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if self.types.is_empty() {
            out.push_str("no type has run against this database yet\n");
        }
        for (name, status) in &self.types {
            status.write_table(name, &mut out);
        }
        out
    }
}

impl TypeStatus {
    fn write_table(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "{name}");
        let mut line = |label: &str, text: String| {
            let _ = writeln!(out, "  {label:<14}{text}");
        };
        if self.loaded.is_empty() {
            line("loaded", "nothing".into());
        }
        for (i, &(from, to)) in self.loaded.iter().enumerate() {
            line(if i == 0 { "loaded" } else { "" }, span(from, to));
        }
        if self.holes.is_empty() {
            line("holes", "none".into());
        }
        for (i, &(from, to)) in self.holes.iter().enumerate() {
            line(if i == 0 { "holes" } else { "" }, span(from, to));
        }
        if let Some(mark) = self.watermark {
            line(
                "catch-up",
                match mark.done_until {
                    Some(until) => format!("gap-free {} .. {}", utc(mark.start), utc(until)),
                    None => format!("nothing loaded since {}", utc(mark.start)),
                },
            );
        }
        for (i, window) in self.failed_windows.iter().enumerate() {
            line(if i == 0 { "not loaded" } else { "" }, window.line());
        }
        for (i, window) in self.running.iter().enumerate() {
            line(
                if i == 0 { "running" } else { "" },
                format!("{}, run {}", span(window.from, window.to), window.run_id),
            );
        }
        line("dead letters", self.dead_letters_line());
        line("last success", self.last_success_line());
        for (i, version) in self.plugin_versions.iter().enumerate() {
            line(if i == 0 { "plugin" } else { "" }, version.line());
        }
    }

    /// `3 waiting (plugin 2, sink 1); replayed: stored 4`.
    fn dead_letters_line(&self) -> String {
        let mut letters = format!("{} waiting", self.dead_letters);
        if !self.dead_letters_by_stage.is_empty() {
            let stages: Vec<String> = self
                .dead_letters_by_stage
                .iter()
                .map(|(stage, n)| format!("{stage} {n}"))
                .collect();
            let _ = write!(letters, " ({})", stages.join(", "));
        }
        if !self.replayed.is_empty() {
            let outcomes: Vec<String> = self
                .replayed
                .iter()
                .map(|(outcome, n)| format!("{outcome} {n}"))
                .collect();
            let _ = write!(letters, "; replayed: {}", outcomes.join(", "));
        }
        letters
    }

    fn last_success_line(&self) -> String {
        let Some(last) = &self.last_success else {
            return "never".into();
        };
        let window = match last.window {
            Some((from, to)) => span(from, to),
            None => "replay (no window)".into(),
        };
        format!(
            "run {} at {}: {}; {} inserted, {} duplicates, {} refused, {} failed",
            last.run_id,
            utc(last.finished_at.unwrap_or(last.started_at)),
            window,
            last.inserted,
            last.duplicates,
            last.refused,
            last.failed
        )
    }
}

impl FailedWindow {
    /// Its status and span, how far it was read, and on a second line its run and reason.
    fn line(&self) -> String {
        let mut text = format!("{:<12}{}", self.status, span(self.from, self.to));
        if let Some(until) = self.done_until {
            let _ = write!(text, ", read up to {}", utc(until));
        }
        if self.loaded_since {
            text.push_str(", loaded since");
        }
        let _ = write!(
            text,
            "\n{:16}run {}: {}",
            "",
            self.run_id,
            self.error.as_deref().unwrap_or("(no reason logged)")
        );
        text
    }
}

impl VersionSpans {
    /// `1.2.0 (sha256 0123456789ab…): <span>; <span>`.
    fn line(&self) -> String {
        let mut label = self
            .version
            .clone()
            .unwrap_or_else(|| "not recorded".into());
        if let Some(sha) = &self.sha256 {
            let _ = write!(
                label,
                " (sha256 {}…)",
                sha.chars().take(12).collect::<String>()
            );
        }
        let spans: Vec<String> = self.loaded.iter().map(|&(f, t)| span(f, t)).collect();
        format!("{label}: {}", spans.join("; "))
    }
}

/// A span for people: its ends in UTC, its length, and the seconds for `--from`/`--to`.
fn span(from: i64, to: i64) -> String {
    format!(
        "{} .. {} ({}; --from {from} --to {to})",
        utc(from),
        utc(to),
        length(to.saturating_sub(from).saturating_add(1))
    )
}

/// `2026-12-01 10:00:00` (UTC) of Unix seconds; a second outside the years -9999..9999 as
/// itself.
pub fn utc(seconds: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        Err(_) => format!("{seconds} (Unix seconds)"),
    }
}

/// `3d 4h`, `2h 10m`, `5m 3s`, `42s`.
fn length(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    const NOW: i64 = 1_000 * H;
    type Spans = Vec<(i64, i64)>;

    fn run(id: &str, from: i64, to: i64, status: &str) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            type_name: "T".into(),
            window: Some((from, to)),
            scheduled: true,
            status: status.into(),
            started_at: to,
            finished_at: Some(to + 60),
            expires_at: Some(to + 600),
            ..RunRecord::default()
        }
    }
    fn versioned(record: RunRecord, version: &str) -> RunRecord {
        RunRecord {
            plugin_version: Some(version.into()),
            plugin_sha256: Some(format!("{version}-sha")),
            ..record
        }
    }
    fn with_error(record: RunRecord, error: &str) -> RunRecord {
        RunRecord {
            error: Some(error.into()),
            ..record
        }
    }
    fn request() -> StatusRequest {
        StatusRequest {
            types: None,
            since: None,
            now: NOW,
        }
    }
    fn statuses(windows: &[FailedWindow]) -> Vec<(i64, i64, &str, bool)> {
        windows
            .iter()
            .map(|w| (w.from, w.to, w.status.as_str(), w.loaded_since))
            .collect()
    }

    struct Case {
        name: &'static str,
        records: Vec<RunRecord>,
        since: Option<i64>,
        loaded: Vec<(i64, i64)>,
        holes: Vec<(i64, i64)>,
        failed: Vec<(i64, i64, &'static str, bool)>,
        versions: Vec<(Option<&'static str>, Spans)>,
    }

    #[test]
    fn spans_holes_failed_windows_and_versions_of_run_logs() {
        let replay = RunRecord {
            window: None,
            ..run("replay", 0, 0, "succeeded")
        };
        let cases = vec![
            Case {
                name: "nothing ran",
                records: vec![],
                since: None,
                loaded: vec![],
                holes: vec![],
                failed: vec![],
                versions: vec![],
            },
            Case {
                name: "overlapping hourly windows are one span",
                records: vec![
                    run("a", 0, 70 * 60, "succeeded"),
                    run("b", H, H + 70 * 60, "succeeded"),
                    run("c", 2 * H, 2 * H + 70 * 60, "succeeded"),
                ],
                since: None,
                loaded: vec![(0, 2 * H + 70 * 60)],
                holes: vec![],
                failed: vec![],
                versions: vec![(None, vec![(0, 2 * H + 70 * 60)])],
            },
            Case {
                name: "a failed window leaves a hole, with its reason",
                records: vec![
                    run("a", 0, H - 1, "succeeded"),
                    with_error(run("b", H, 2 * H - 1, "failed"), "plugin trapped"),
                    run("c", 2 * H, 3 * H - 1, "succeeded"),
                ],
                since: None,
                loaded: vec![(0, H - 1), (2 * H, 3 * H - 1)],
                holes: vec![(H, 2 * H - 1)],
                failed: vec![(H, 2 * H - 1, "failed", false)],
                versions: vec![(None, vec![(0, H - 1), (2 * H, 3 * H - 1)])],
            },
            Case {
                name: "a failed window loaded by a later run is no hole",
                records: vec![
                    run("a", 0, H - 1, "succeeded"),
                    run("b", H, 2 * H - 1, "failed"),
                    run("b2", H, 2 * H - 1, "succeeded"),
                ],
                since: None,
                loaded: vec![(0, 2 * H - 1)],
                holes: vec![],
                failed: vec![(H, 2 * H - 1, "failed", true)],
                versions: vec![(None, vec![(0, 2 * H - 1)])],
            },
            Case {
                name: "an abandoned window is loaded (its bytes kept) and listed",
                records: vec![
                    run("a", 0, H - 1, "succeeded"),
                    run("b", H, 2 * H - 1, "abandoned"),
                ],
                since: None,
                loaded: vec![(0, 2 * H - 1)],
                holes: vec![],
                failed: vec![(H, 2 * H - 1, "abandoned", true)],
                versions: vec![(None, vec![(0, 2 * H - 1)])],
            },
            Case {
                name: "an interrupted window counts up to done_until",
                records: vec![
                    run("a", 0, H - 1, "succeeded"),
                    RunRecord {
                        done_until: Some(3 * H - 1),
                        ..run("b", H, 6 * H - 1, "interrupted")
                    },
                    run("c", 8 * H, 9 * H - 1, "succeeded"),
                ],
                since: None,
                loaded: vec![(0, 3 * H - 1), (8 * H, 9 * H - 1)],
                holes: vec![(3 * H, 8 * H - 1)],
                failed: vec![(H, 6 * H - 1, "interrupted", false)],
                versions: vec![(None, vec![(0, 3 * H - 1), (8 * H, 9 * H - 1)])],
            },
            Case {
                name: "a row still running past its expiry is interrupted; one before it is running",
                records: vec![
                    run("a", 0, H - 1, "succeeded"),
                    RunRecord {
                        expires_at: Some(NOW - 1),
                        ..run("dead", H, 2 * H - 1, "running")
                    },
                    RunRecord {
                        expires_at: Some(NOW + 1),
                        ..run("alive", 2 * H, 3 * H - 1, "running")
                    },
                ],
                since: None,
                loaded: vec![(0, H - 1)],
                holes: vec![],
                failed: vec![(H, 2 * H - 1, "interrupted", false)],
                versions: vec![(None, vec![(0, H - 1)])],
            },
            Case {
                name: "a replay has no window and counts for no span",
                records: vec![run("a", 0, H - 1, "succeeded"), replay.clone()],
                since: None,
                loaded: vec![(0, H - 1)],
                holes: vec![],
                failed: vec![],
                versions: vec![(None, vec![(0, H - 1)])],
            },
            Case {
                name: "several plugin versions, each with the spans it loaded",
                records: vec![
                    versioned(run("a", 0, H - 1, "succeeded"), "1.0.0"),
                    versioned(run("b", H, 2 * H - 1, "succeeded"), "1.0.0"),
                    versioned(run("c", 2 * H, 3 * H - 1, "succeeded"), "1.1.0"),
                    versioned(run("d", 4 * H, 5 * H - 1, "succeeded"), "1.0.0"),
                    run("old", 6 * H, 7 * H - 1, "succeeded"),
                    versioned(run("e", 7 * H, 8 * H - 1, "failed"), "1.1.0"),
                ],
                since: None,
                loaded: vec![(0, 3 * H - 1), (4 * H, 5 * H - 1), (6 * H, 7 * H - 1)],
                holes: vec![(3 * H, 4 * H - 1), (5 * H, 6 * H - 1)],
                failed: vec![(7 * H, 8 * H - 1, "failed", false)],
                versions: vec![
                    (Some("1.0.0"), vec![(0, 2 * H - 1), (4 * H, 5 * H - 1)]),
                    (Some("1.1.0"), vec![(2 * H, 3 * H - 1)]),
                    (None, vec![(6 * H, 7 * H - 1)]),
                ],
            },
            Case {
                name: "since clips spans, adds the hole before the first, drops older failures",
                records: vec![
                    run("a", 0, H - 1, "failed"),
                    run("b", 2 * H, 3 * H - 1, "succeeded"),
                    run("c", 4 * H, 5 * H - 1, "succeeded"),
                ],
                since: Some(H + 10),
                loaded: vec![(2 * H, 3 * H - 1), (4 * H, 5 * H - 1)],
                holes: vec![(H + 10, 2 * H - 1), (3 * H, 4 * H - 1)],
                failed: vec![],
                versions: vec![(None, vec![(2 * H, 3 * H - 1), (4 * H, 5 * H - 1)])],
            },
            Case {
                name: "a window by hand loads nothing after its run started",
                records: vec![RunRecord {
                    scheduled: false,
                    started_at: 2 * H,
                    ..run("hand", 0, 100 * H, "succeeded")
                }],
                since: None,
                loaded: vec![(0, 2 * H)],
                holes: vec![],
                failed: vec![],
                versions: vec![(None, vec![(0, 2 * H)])],
            },
        ];
        for case in cases {
            let request = StatusRequest {
                since: case.since,
                ..request()
            };
            let report = report(&case.records, &[], &request);
            let name = case.name;
            let empty = TypeStatus::default();
            let status = report.types.get("T").unwrap_or(&empty);
            assert_eq!(status.loaded, case.loaded, "{name}: loaded");
            assert_eq!(status.holes, case.holes, "{name}: holes");
            assert_eq!(
                statuses(&status.failed_windows),
                case.failed,
                "{name}: failed"
            );
            let versions: Vec<(Option<&str>, Spans)> = status
                .plugin_versions
                .iter()
                .map(|v| (v.version.as_deref(), v.loaded.clone()))
                .collect();
            assert_eq!(versions, case.versions, "{name}: versions");
        }
    }

    #[test]
    fn waiting_dead_letters_by_stage_and_replay_outcome() {
        let count = |stage: &str, outcome: Option<&str>, count| DeadLetterCount {
            type_name: "T".into(),
            stage: stage.into(),
            outcome: outcome.map(Into::into),
            count,
        };
        let letters = [
            count("plugin", None, 5),
            count("plugin", Some("failed"), 2),
            count("plugin", Some("stored"), 7),
            count("sink", None, 1),
            count("envelope", Some("duplicate"), 3),
        ];
        let report = report(&[], &letters, &request());
        let status = &report.types["T"];
        assert_eq!(status.dead_letters, 8);
        assert_eq!(
            status.dead_letters_by_stage,
            BTreeMap::from([("plugin".into(), 7), ("sink".into(), 1)])
        );
        assert_eq!(
            status.replayed,
            BTreeMap::from([
                ("duplicate".into(), 3),
                ("failed".into(), 2),
                ("stored".into(), 7)
            ])
        );
    }

    #[test]
    fn the_last_success_is_the_latest_finished_and_types_asked_for_are_shown() {
        let records = [
            run("a", 0, H - 1, "succeeded"),
            run("b", H, 2 * H - 1, "succeeded"),
            run("c", 2 * H, 3 * H - 1, "failed"),
        ];
        let request = StatusRequest {
            types: Some(vec!["T".into(), "Never".into()]),
            ..request()
        };
        let report = report(&records, &[], &request);
        assert_eq!(report.types["T"].last_success.as_ref().unwrap().run_id, "b");
        assert_eq!(report.types["Never"], TypeStatus::default());
        assert_eq!(report.types.len(), 2);
    }

    #[test]
    fn json_has_the_promised_shape() {
        let records = [
            run("a", 0, H - 1, "succeeded"),
            run("b", 2 * H, 3 * H - 1, "succeeded"),
        ];
        let json = serde_json::to_value(report(&records, &[], &request())).unwrap();
        let t = &json["types"]["T"];
        assert_eq!(
            t["loaded"],
            serde_json::json!([[0, H - 1], [2 * H, 3 * H - 1]])
        );
        assert_eq!(t["holes"], serde_json::json!([[H, 2 * H - 1]]));
        assert_eq!(t["failed_windows"], serde_json::json!([]));
        assert_eq!(t["dead_letters"], 0);
        assert_eq!(t["last_success"]["run_id"], "b");
    }

    #[test]
    fn times_read_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_764_583_199), "2025-12-01 09:59:59");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        assert_eq!(length(59), "59s");
        assert_eq!(length(3600), "1h 0m");
        assert_eq!(length(90_000), "1d 1h");
    }
}
