//! What a caller hands a run beside its config, to watch or steer it while it goes: live
//! counters, a pause for tests, and an interrupt. Runtime state, not settings: a config can be
//! cloned and resolved again; hooks are shared with the run under way.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a caller hands a run beside its config, to watch or steer it while it goes.
#[derive(Debug, Clone, Default)]
pub struct RunHooks {
    /// Live counters, for a progress display.
    pub progress: Arc<Progress>,
    /// A point where the run waits, for tests that need a crash or a lost connection at a
    /// known moment rather than a lucky one.
    pub pause: Option<Pause>,
    /// Stops the run at once, its types logged `interrupted` (the local runner's SIGTERM and
    /// SIGINT, the Lambda's SIGTERM).
    pub interrupt: Option<Interrupt>,
}

/// After `after_writes` writes of rows have committed, the writer signals `reached` and waits
/// for `resume` before it writes anything else.
#[derive(Debug, Clone)]
pub struct Pause {
    pub after_writes: usize,
    pub reached: Arc<tokio::sync::Notify>,
    pub resume: Arc<tokio::sync::Notify>,
}

impl Pause {
    pub fn after_writes(after_writes: usize) -> Self {
        Pause {
            after_writes,
            reached: Arc::default(),
            resume: Arc::default(),
        }
    }
}

/// Tells a run to stop at once (a signal came): it logs its types as `interrupted` with the
/// reason and returns [`crate::error::RunError::Interrupted`]. Raising it before the run
/// starts, or twice, is fine.
#[derive(Debug, Clone)]
pub struct Interrupt(Arc<tokio::sync::watch::Sender<Option<String>>>);

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt(Arc::new(tokio::sync::watch::Sender::new(None)))
    }
}

impl Interrupt {
    /// Stops the run, for `reason` (`SIGTERM`, say).
    pub fn raise(&self, reason: &str) {
        self.0.send_if_modified(|raised| {
            let first = raised.is_none();
            if first {
                *raised = Some(reason.to_owned());
            }
            first
        });
    }

    /// Waits until it is raised; the reason.
    pub async fn raised(&self) -> String {
        let mut receiver = self.0.subscribe();
        let reason = match receiver.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The sender lives in `self`, so it is never dropped: never stop for that.
            None => std::future::pending().await,
        }
    }
}

/// Counters updated while a run goes, read by progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    pub documents: AtomicU64,
    pub inserted: AtomicU64,
    pub duplicates: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    /// Nanoseconds spent in each stage, summed over its threads: reading and checking
    /// envelopes (the source's reads included), handing them to the lanes (waits for room
    /// included), plugin calls, and database writes.
    pub read_nanos: AtomicU64,
    pub handoff_nanos: AtomicU64,
    pub plugin_nanos: AtomicU64,
    pub write_nanos: AtomicU64,
    /// Bytes read from the source (files, or response bodies as they arrive).
    pub bytes_read: AtomicU64,
    /// The sizes known so far: the files' sizes, the bodies' `Content-Length`.
    pub bytes_total: AtomicU64,
    /// Bodies that came without a `Content-Length`: while there is one, the total is unknown.
    pub sizes_unknown: AtomicU64,
    /// Each type's counters, made when the type is first routed.
    types: Mutex<BTreeMap<String, Arc<TypeProgress>>>,
}

/// One type's live counters.
#[derive(Debug, Default)]
pub struct TypeProgress {
    /// Documents of the type read and handed on.
    pub documents: AtomicU64,
    /// The type's bytes: its body's (fetched), or its documents' (from files).
    pub bytes_read: AtomicU64,
    /// Its body's `Content-Length` (fetched); 0 when unknown.
    pub bytes_total: AtomicU64,
}

/// The counters at one moment, for a display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub documents: u64,
    pub bytes_read: u64,
    /// `None` while some size is unknown (or nothing is known yet).
    pub bytes_total: Option<u64>,
    /// Per type: documents, bytes read, and the size when known.
    pub types: Vec<(String, u64, u64, Option<u64>)>,
}

impl Progress {
    /// The counters of a type, made on first use.
    pub fn of_type(&self, type_name: &str) -> Arc<TypeProgress> {
        let mut types = self
            .types
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        Arc::clone(types.entry(type_name.to_owned()).or_default())
    }

    /// Every counter now.
    pub fn snapshot(&self) -> Snapshot {
        let types = self
            .types
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let total = Self::get(&self.bytes_total);
        Snapshot {
            documents: Self::get(&self.documents),
            bytes_read: Self::get(&self.bytes_read),
            bytes_total: (total > 0 && Self::get(&self.sizes_unknown) == 0).then_some(total),
            types: types
                .iter()
                .map(|(name, counters)| {
                    let total = Self::get(&counters.bytes_total);
                    (
                        name.clone(),
                        Self::get(&counters.documents),
                        Self::get(&counters.bytes_read),
                        (total > 0).then_some(total),
                    )
                })
                .collect(),
        }
    }

    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds the time since `since` to a stage's counter.
    pub fn add_elapsed(counter: &AtomicU64, since: std::time::Instant) {
        Self::add_nanos(counter, since.elapsed());
    }

    pub fn add_nanos(counter: &AtomicU64, elapsed: std::time::Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Snapshot {
    /// One line for a log that is not a terminal, `elapsed` after the run started:
    /// `read 1.2 MB of 4.0 MB (30%, 0.6 MB/s, ETA 5s); 1200 docs (600 docs/s): A 700, B 500`.
    pub fn summary_line(&self, elapsed: Duration) -> String {
        let seconds = elapsed.as_secs_f64().max(0.001);
        let mut line = format!("read {}", bytes_text(self.bytes_read));
        if let Some(total) = self.bytes_total {
            let _ = write!(
                line,
                " of {} ({}%",
                bytes_text(total),
                percent(self.bytes_read, total)
            );
            line.push_str(&format!(", {}/s", rate_text(self.bytes_read, seconds)));
            if let Some(eta) = eta(self.bytes_read, total, seconds) {
                let _ = write!(line, ", ETA {eta}");
            }
            line.push(')');
        } else {
            let _ = write!(line, " ({}/s)", rate_text(self.bytes_read, seconds));
        }
        let _ = write!(
            line,
            "; {} docs ({:.0} docs/s)",
            self.documents,
            self.documents as f64 / seconds
        );
        let types: Vec<String> = self
            .types
            .iter()
            .map(|(name, documents, read, total)| match total {
                Some(total) => format!("{name} {documents} ({}%)", percent(*read, *total)),
                None => format!("{name} {documents}"),
            })
            .collect();
        if !types.is_empty() {
            let _ = write!(line, ": {}", types.join(", "));
        }
        line
    }
}

/// `512 B`, `12.3 kB`, `1.2 MB` (decimal units, one decimal).
pub fn bytes_text(bytes: u64) -> String {
    human(bytes as f64)
}

fn rate_text(bytes: u64, seconds: f64) -> String {
    human(bytes as f64 / seconds)
}

fn human(bytes: f64) -> String {
    if bytes < 1e3 {
        format!("{bytes:.0} B")
    } else if bytes < 1e6 {
        format!("{:.1} kB", bytes / 1e3)
    } else {
        format!("{:.1} MB", bytes / 1e6)
    }
}

fn percent(read: u64, total: u64) -> u64 {
    (read.min(total) * 100).checked_div(total).unwrap_or(100)
}

/// The time left at the rate so far, `None` before anything was read.
fn eta(read: u64, total: u64, seconds: f64) -> Option<String> {
    if read == 0 {
        return None;
    }
    let left = total.saturating_sub(read) as f64 * seconds / read as f64;
    let left = left.round() as u64;
    Some(if left >= 3600 {
        format!("{}h {}m", left / 3600, left / 60 % 60)
    } else if left >= 60 {
        format!("{}m {}s", left / 60, left % 60)
    } else {
        format!("{left}s")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_says_rates_percentages_and_eta_where_the_size_is_known() {
        let progress = Progress::default();
        Progress::add(&progress.bytes_total, 4_000_000);
        Progress::add(&progress.bytes_read, 1_000_000);
        Progress::add(&progress.documents, 1200);
        let a = progress.of_type("A");
        Progress::add(&a.documents, 700);
        Progress::add(&a.bytes_read, 500_000);
        Progress::add(&a.bytes_total, 2_000_000);
        Progress::add(&progress.of_type("B").documents, 500);
        let cases = [
            (
                "size known",
                progress.snapshot(),
                Duration::from_secs(2),
                "read 1.0 MB of 4.0 MB (25%, 500.0 kB/s, ETA 6s); 1200 docs (600 docs/s): A 700 (25%), B 500",
            ),
            (
                "size unknown",
                Snapshot {
                    bytes_total: None,
                    types: vec![],
                    ..progress.snapshot()
                },
                Duration::from_secs(3),
                "read 1.0 MB (333.3 kB/s); 1200 docs (400 docs/s)",
            ),
            (
                "nothing read yet",
                Snapshot {
                    bytes_total: Some(10),
                    ..Snapshot::default()
                },
                Duration::from_secs(1),
                "read 0 B of 10 B (0%, 0 B/s); 0 docs (0 docs/s)",
            ),
            (
                "an hour to go",
                Snapshot {
                    bytes_read: 1_000_000,
                    bytes_total: Some(1_000_000_000),
                    ..Snapshot::default()
                },
                Duration::from_secs(4),
                "read 1.0 MB of 1000.0 MB (0%, 250.0 kB/s, ETA 1h 6m); 0 docs (0 docs/s)",
            ),
        ];
        for (name, snapshot, elapsed, expected) in cases {
            assert_eq!(snapshot.summary_line(elapsed), expected, "{name}");
        }
        // A body without a Content-Length makes the run's total unknown.
        Progress::add(&progress.sizes_unknown, 1);
        assert_eq!(progress.snapshot().bytes_total, None);
    }

    #[tokio::test]
    async fn an_interrupt_raised_before_the_wait_is_seen() {
        let interrupt = Interrupt::default();
        interrupt.raise("SIGTERM");
        interrupt.raise("SIGINT");
        assert_eq!(interrupt.clone().raised().await, "SIGTERM");
    }
}
