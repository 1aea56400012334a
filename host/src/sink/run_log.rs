//! The run log: each run of each type with its window, counts and status, and the one rule that
//! says how far a type is loaded without a hole ([`watermark`]), which catch-up starts from and
//! which `status` and backfill read too.

use super::{Engine, RUN_LOG_TABLE, Sink, SinkError, engine};
use crate::summary::TypeSummary;
use crate::window::Window;

/// The status of a type's run in the run log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Failed too often: closed, with its unread bytes kept, so that catch-up moves on.
    Abandoned,
    /// Stopped by a signal, or found `running` after the longest a run can last (killed
    /// outright: kill -9, out of memory, a Lambda timeout).
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Abandoned => "abandoned",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// The status a run log row names; `None` for one this build does not know.
    pub fn parse(text: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Abandoned,
            RunStatus::Interrupted,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// How long after its deadline a run may still be committing and logging what it did. A row
/// still `running` after its deadline plus this margin belongs to a process that died.
pub const RUN_MARGIN_SECS: i64 = 10 * 60;
/// The longest a run without a deadline is taken to last (a long local backfill). Should one
/// last longer, its row reads `interrupted` until it finishes and says how it ended.
pub const RUN_WITHOUT_DEADLINE_SECS: i64 = 24 * 3600;

/// One window of a type in the run log, as the gap-free rule reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedWindow {
    pub from: i64,
    pub to: i64,
    /// `None`: a status this build does not know, which counts for nothing.
    pub status: Option<RunStatus>,
    /// A default or catch-up window (as opposed to one asked for by hand, or a backfill's).
    pub scheduled: bool,
    /// For a window not done whole: the last second up to which every document of it is known
    /// to be read (finished sub-windows), when there is one.
    pub done_until: Option<i64>,
    /// When the run started, Unix seconds (its clock).
    pub started_at: i64,
}

impl LoggedWindow {
    /// The seconds of this window that are known to be loaded: all of it when it succeeded or
    /// was deliberately abandoned (its bytes kept), its finished part otherwise. A window asked
    /// for by hand reaches no further than its run's start: documents stamped later may still
    /// come, so `--to 100000000000` does not load the future.
    pub fn loaded(&self) -> Option<(i64, i64)> {
        let to = match self.status {
            Some(RunStatus::Succeeded | RunStatus::Abandoned) => self.to,
            _ => self.done_until?.min(self.to),
        };
        let to = if self.scheduled {
            to
        } else {
            to.min(self.started_at)
        };
        (to >= self.from).then_some((self.from, to))
    }
}

/// The loaded seconds of a type: its windows' loaded parts, merged into sorted, disjoint spans
/// (inclusive; spans that touch are one).
pub fn loaded_spans(windows: &[LoggedWindow]) -> Vec<(i64, i64)> {
    let mut parts: Vec<(i64, i64)> = windows.iter().filter_map(LoggedWindow::loaded).collect();
    parts.sort_unstable();
    let mut spans: Vec<(i64, i64)> = Vec::with_capacity(parts.len());
    for (from, to) in parts {
        match spans.last_mut() {
            Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
            _ => spans.push((from, to)),
        }
    }
    spans
}

pub use crate::window::Watermark;

/// The parts of `spans` (sorted and disjoint, as [`loaded_spans`] makes them) from `since` on.
pub fn spans_since(spans: &[(i64, i64)], since: Option<i64>) -> Vec<(i64, i64)> {
    let since = since.unwrap_or(i64::MIN);
    spans
        .iter()
        .filter(|&&(_, to)| to >= since)
        .map(|&(from, to)| (from.max(since), to))
        .collect()
}

/// The seconds missing between loaded `spans` (sorted and disjoint, as [`loaded_spans`] makes
/// them), inclusive; with `since`, also the seconds from it to the first span (or every second
/// from it, as far as the last span, when nothing is loaded after it: none). What lies after
/// the last span is not a hole: it is what the next run loads.
pub fn holes(spans: &[(i64, i64)], since: Option<i64>) -> Vec<(i64, i64)> {
    let spans = spans_since(spans, since);
    let mut holes = Vec::new();
    if let (Some(since), Some(&(first, _))) = (since, spans.first())
        && since < first
    {
        holes.push((since, first - 1));
    }
    holes.extend(
        spans
            .windows(2)
            .map(|pair| (pair[0].1 + 1, pair[1].0 - 1))
            .filter(|(from, to)| from <= to),
    );
    holes
}

/// Whether a row still `running` at `now` belongs to a process that died: the rule
/// [`Sink::expire_running`] applies in SQL (a row of an older version, without an expiry, is
/// given the longest a run without a deadline lasts).
pub fn expired(expires_at: Option<i64>, started_at: i64, now: i64) -> bool {
    expires_at.unwrap_or(started_at.saturating_add(RUN_WITHOUT_DEADLINE_SECS + RUN_MARGIN_SECS))
        < now
}

/// THE rule: a type's gap-free watermark advances only over contiguous windows that succeeded or
/// were deliberately abandoned (and over the finished part of one that stopped early), whatever
/// kind of run made them (scheduled, catch-up, by hand, backfill), counting from the type's
/// first scheduled window. `None` when the type never ran a scheduled window.
pub fn watermark(windows: &[LoggedWindow]) -> Option<Watermark> {
    let start = windows
        .iter()
        .filter(|window| window.scheduled)
        .map(|window| window.from)
        .min()?;
    let done_until = loaded_spans(windows)
        .into_iter()
        .find(|&(from, to)| from <= start && start <= to)
        .map(|(_, to)| to);
    Some(Watermark { start, done_until })
}

/// How a type's run started, as the run log keeps it.
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    pub run_id: &'a str,
    pub type_name: &'a str,
    pub window: Option<Window>,
    /// Only the default and catch-up windows are scheduled; see [`LoggedWindow::scheduled`].
    pub scheduled: bool,
    /// The run's clock, Unix seconds.
    pub started_at: i64,
    /// After this (Unix seconds), a row still `running` is taken as interrupted: the run's
    /// deadline plus [`RUN_MARGIN_SECS`].
    pub expires_at: i64,
    /// The version of the type's plugin, and the SHA-256 of its `.wasm` when known.
    pub plugin_version: Option<&'a str>,
    pub plugin_sha256: Option<&'a str>,
}

impl Sink {
    /// Records that a type's run started, with its window.
    pub async fn run_started(&self, start: RunStart<'_>) -> Result<(), SinkError> {
        self.retrying(RUN_LOG_TABLE, "insert", || async {
            engine!(self, engine => engine.run_started(start).await)
        })
        .await
    }

    /// Records how a type's run ended; `done_until`, when set, is how far its window is known
    /// to be read (a run stopped before its end, with finished sub-windows).
    pub async fn run_finished(
        &self,
        run_id: &str,
        type_name: &str,
        counts: &TypeSummary,
        status: RunStatus,
        done_until: Option<i64>,
    ) -> Result<(), SinkError> {
        self.retrying(RUN_LOG_TABLE, "update", || async {
            engine!(self, engine => engine.run_finished(run_id, type_name, counts, status, done_until).await)
        })
        .await
    }

    /// Marks every type of a run that is still `running` as interrupted, with the reason.
    pub async fn run_interrupted(&self, run_id: &str, reason: &str) -> Result<(), SinkError> {
        self.retrying(RUN_LOG_TABLE, "update", || async {
            engine!(self, engine => engine.run_interrupted(run_id, reason).await)
        })
        .await
    }

    /// Takes every row still `running` after its expiry (`now` past it) as interrupted: its
    /// process died without saying how it ended. Returns how many rows that was.
    pub async fn expire_running(&self, now: i64) -> Result<u64, SinkError> {
        self.retrying(RUN_LOG_TABLE, "update", || async {
            engine!(self, engine => engine.expire_running(now).await)
        })
        .await
    }

    /// Every logged window of a type, for [`watermark`] and [`loaded_spans`].
    pub async fn logged_windows(&self, type_name: &str) -> Result<Vec<LoggedWindow>, SinkError> {
        self.retrying(RUN_LOG_TABLE, "read", || async {
            engine!(self, engine => engine.logged_windows(type_name).await)
        })
        .await
    }

    /// Where a type's gap-free loading stands, by [`watermark`].
    pub async fn watermark(&self, type_name: &str) -> Result<Option<Watermark>, SinkError> {
        Ok(watermark(&self.logged_windows(type_name).await?))
    }

    /// How many scheduled runs of a type failed on the window that starts at `window_from`.
    pub async fn failed_attempts(
        &self,
        type_name: &str,
        window_from: i64,
    ) -> Result<u64, SinkError> {
        self.retrying(RUN_LOG_TABLE, "read", || async {
            engine!(self, engine => engine.failed_attempts(type_name, window_from).await)
        })
        .await
    }

    /// Adds the bookkeeping tables' columns that a table made by an older version lacks. Two
    /// processes may race here; a column the other one added meanwhile is fine.
    pub(super) async fn upgrade_bookkeeping(&self) -> Result<(), SinkError> {
        let added = engine!(self, engine => engine.added_columns());
        let mut known: std::collections::HashMap<&str, Vec<String>> = Default::default();
        for (table, column, kind) in added {
            if !known.contains_key(table) {
                known.insert(table, self.columns_of(table).await?);
            }
            if known[table].iter().any(|name| name == column) {
                continue;
            }
            let ddl = format!("ALTER TABLE {table} ADD COLUMN {column} {kind}");
            let result = engine!(self, engine => engine.execute(&ddl).await);
            if let Err(source) = result
                && !self
                    .columns_of(table)
                    .await?
                    .iter()
                    .any(|name| name == column)
            {
                return Err(SinkError::Database {
                    table: table.into(),
                    operation: "add a column",
                    source,
                });
            }
        }
        Ok(())
    }

    /// A bookkeeping table's column names, in lower case.
    async fn columns_of(&self, table: &str) -> Result<Vec<String>, SinkError> {
        let existing = self
            .retrying(table, "read columns", || async {
                engine!(self, engine => engine.existing_columns(table).await)
            })
            .await?;
        Ok(existing
            .into_iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;

    fn window(from: i64, to: i64, status: RunStatus, scheduled: bool) -> LoggedWindow {
        LoggedWindow {
            from,
            to,
            status: Some(status),
            scheduled,
            done_until: None,
            started_at: i64::MAX,
        }
    }
    fn scheduled(from: i64, to: i64, status: RunStatus) -> LoggedWindow {
        window(from, to, status, true)
    }
    fn by_hand(from: i64, to: i64, status: RunStatus) -> LoggedWindow {
        window(from, to, status, false)
    }
    fn partial(from: i64, to: i64, done_until: i64) -> LoggedWindow {
        LoggedWindow {
            done_until: Some(done_until),
            ..scheduled(from, to, RunStatus::Failed)
        }
    }

    use RunStatus::{Abandoned, Failed, Interrupted, Running, Succeeded};

    #[test]
    fn the_watermark_advances_only_over_contiguous_loaded_windows() {
        let done = |start, until| {
            Some(Watermark {
                start,
                done_until: Some(until),
            })
        };
        let nothing_since = |start| {
            Some(Watermark {
                start,
                done_until: None,
            })
        };
        let cases: Vec<(&str, Vec<LoggedWindow>, Option<Watermark>)> = vec![
            ("never run", vec![], None),
            (
                "only by hand: no scheduled start",
                vec![by_hand(0, 10 * H, Succeeded)],
                None,
            ),
            ("one success", vec![scheduled(0, H, Succeeded)], done(0, H)),
            (
                "overlapping hourly windows",
                vec![
                    scheduled(0, 70 * 60, Succeeded),
                    scheduled(H, H + 70 * 60, Succeeded),
                    scheduled(2 * H, 2 * H + 70 * 60, Succeeded),
                ],
                done(0, 2 * H + 70 * 60),
            ),
            (
                "windows that just touch are contiguous",
                vec![
                    scheduled(0, H - 1, Succeeded),
                    scheduled(H, 2 * H, Succeeded),
                ],
                done(0, 2 * H),
            ),
            (
                "a one-second hole stops it",
                vec![
                    scheduled(0, H - 1, Succeeded),
                    scheduled(H + 1, 2 * H, Succeeded),
                ],
                done(0, H - 1),
            ),
            (
                "issue 15: failed catch-up for hours, then one ordinary run",
                vec![
                    scheduled(-600, 0, Succeeded),
                    scheduled(-600, H, Failed),
                    scheduled(-600, 2 * H, Failed),
                    scheduled(-600, 3 * H, Failed),
                    scheduled(3 * H - 70 * 60, 3 * H, Succeeded),
                ],
                done(-600, 0),
            ),
            (
                "failed, running and interrupted windows count for nothing",
                vec![
                    scheduled(0, H, Succeeded),
                    scheduled(H, 2 * H, Failed),
                    scheduled(H, 2 * H, Running),
                    scheduled(H, 2 * H, Interrupted),
                ],
                done(0, H),
            ),
            (
                "an abandoned window is passed over (its bytes are kept)",
                vec![
                    scheduled(0, H, Succeeded),
                    scheduled(H, 2 * H, Abandoned),
                    scheduled(2 * H, 3 * H, Succeeded),
                ],
                done(0, 3 * H),
            ),
            (
                "a by-hand window (a backfill shard) fills a hole",
                vec![
                    scheduled(0, H, Succeeded),
                    scheduled(2 * H, 3 * H, Succeeded),
                    by_hand(H, 2 * H, Succeeded),
                ],
                done(0, 3 * H),
            ),
            (
                "backfill finished out of order: no jump over the shard still missing",
                vec![
                    scheduled(0, H, Succeeded),
                    by_hand(3 * H, 4 * H - 1, Succeeded),
                    by_hand(H + 1, 2 * H - 1, Succeeded),
                    by_hand(2 * H, 3 * H - 1, Failed),
                ],
                done(0, 2 * H - 1),
            ),
            (
                "holes before the first scheduled window are a backfill's business",
                vec![
                    by_hand(-10 * H, -9 * H, Succeeded),
                    scheduled(0, H, Succeeded),
                ],
                done(0, H),
            ),
            (
                "a by-hand window reaching back before the start carries it",
                vec![by_hand(-10 * H, 2 * H, Succeeded), scheduled(0, H, Failed)],
                done(0, 2 * H),
            ),
            (
                "only failures: nothing done since the first scheduled window",
                vec![
                    scheduled(5 * H, 6 * H, Failed),
                    scheduled(5 * H, 7 * H, Failed),
                ],
                nothing_since(5 * H),
            ),
            (
                "a partial window counts up to its finished sub-windows",
                vec![
                    scheduled(0, H, Succeeded),
                    partial(H - 600, 7 * H, 3 * H - 1),
                ],
                done(0, 3 * H - 1),
            ),
            (
                "a partial window with nothing finished counts for nothing",
                vec![scheduled(0, H, Succeeded), partial(H + 1, 7 * H, H)],
                done(0, H),
            ),
            (
                "a partial first window",
                vec![partial(0, 6 * H, 2 * H - 1)],
                done(0, 2 * H - 1),
            ),
            (
                "order of the rows does not matter",
                vec![
                    scheduled(2 * H, 3 * H, Succeeded),
                    scheduled(H, 2 * H, Succeeded),
                    scheduled(0, H, Succeeded),
                ],
                done(0, 3 * H),
            ),
            (
                "a status this build does not know counts for nothing",
                vec![
                    scheduled(0, H, Succeeded),
                    LoggedWindow {
                        status: None,
                        ..scheduled(H, 2 * H, Succeeded)
                    },
                ],
                done(0, H),
            ),
        ];
        for (name, windows, expected) in cases {
            assert_eq!(watermark(&windows), expected, "{name}");
        }
    }

    #[test]
    fn a_window_by_hand_loads_nothing_after_its_run_started() {
        let future = LoggedWindow {
            started_at: 2 * H,
            ..by_hand(0, 100_000_000_000, Succeeded)
        };
        assert_eq!(future.loaded(), Some((0, 2 * H)));
        let too_early = LoggedWindow {
            started_at: -1,
            ..by_hand(0, H, Succeeded)
        };
        assert_eq!(too_early.loaded(), None);
        assert_eq!(
            watermark(&[scheduled(0, H, Succeeded), future]),
            Some(Watermark {
                start: 0,
                done_until: Some(2 * H)
            })
        );
    }

    #[test]
    fn loaded_spans_merge_and_keep_holes() {
        let windows = [
            scheduled(0, H, Succeeded),
            scheduled(H - 600, 2 * H, Succeeded),
            scheduled(3 * H, 4 * H, Succeeded),
            scheduled(2 * H, 3 * H, Failed),
        ];
        assert_eq!(loaded_spans(&windows), [(0, 2 * H), (3 * H, 4 * H)]);
    }

    #[test]
    fn holes_are_the_seconds_between_loaded_spans() {
        type Spans = Vec<(i64, i64)>;
        let cases: Vec<(&str, Spans, Option<i64>, Spans)> = vec![
            ("nothing loaded", vec![], None, vec![]),
            ("nothing loaded, since", vec![], Some(0), vec![]),
            ("one span", vec![(0, H)], None, vec![]),
            (
                "two spans",
                vec![(0, H), (2 * H, 3 * H)],
                None,
                vec![(H + 1, 2 * H - 1)],
            ),
            (
                "a one-second hole",
                vec![(0, H - 1), (H + 1, 2 * H)],
                None,
                vec![(H, H)],
            ),
            (
                "since before the first span: a hole up to it",
                vec![(H, 2 * H)],
                Some(0),
                vec![(0, H - 1)],
            ),
            (
                "since inside a span clips it",
                vec![(0, H), (2 * H, 3 * H)],
                Some(H / 2),
                vec![(H + 1, 2 * H - 1)],
            ),
            (
                "since inside a hole",
                vec![(0, H), (2 * H, 3 * H), (4 * H, 5 * H)],
                Some(H + 10),
                vec![(H + 10, 2 * H - 1), (3 * H + 1, 4 * H - 1)],
            ),
            ("since after everything", vec![(0, H)], Some(2 * H), vec![]),
        ];
        for (name, spans, since, expected) in cases {
            assert_eq!(holes(&spans, since), expected, "{name}");
        }
        assert_eq!(
            spans_since(&[(0, H), (2 * H, 3 * H)], Some(H / 2)),
            [(H / 2, H), (2 * H, 3 * H)]
        );
    }

    #[test]
    fn a_running_row_expires_after_its_expiry_or_the_longest_run() {
        assert!(!expired(Some(100), 0, 100));
        assert!(expired(Some(100), 0, 101));
        let longest = RUN_WITHOUT_DEADLINE_SECS + RUN_MARGIN_SECS;
        assert!(!expired(None, 0, longest));
        assert!(expired(None, 0, longest + 1));
    }

    #[test]
    fn statuses_round_trip() {
        for status in [Running, Succeeded, Failed, Abandoned, Interrupted] {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RunStatus::parse("exploded"), None);
    }
}
