//! What a caller hands a run beside its config, to watch or steer it while it goes: live
//! counters, a pause for tests, and an interrupt. Runtime state, not settings: a config can be
//! cloned and resolved again; hooks are shared with the run under way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl Progress {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_interrupt_raised_before_the_wait_is_seen() {
        let interrupt = Interrupt::default();
        interrupt.raise("SIGTERM");
        interrupt.raise("SIGINT");
        assert_eq!(interrupt.clone().raised().await, "SIGTERM");
    }
}
