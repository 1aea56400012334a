//! Which seconds a run reads: windows, the plans that pick them, and the clock. A leaf: it
//! depends on nothing else in the crate, so that the source, the sink and the resolver can all
//! use it.

/// An inclusive window of Unix seconds, as the fetch API has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

impl Window {
    pub fn contains(&self, timestamp: i64) -> bool {
        self.from <= timestamp && timestamp <= self.to
    }

    /// The window cut into consecutive parts of `span` seconds (the last one shorter), which
    /// touch without overlapping: each is read, and claimed done, on its own.
    pub fn parts(self, span: i64) -> impl Iterator<Item = Window> {
        let span = span.max(1);
        let mut next = Some(self.from);
        std::iter::from_fn(move || {
            let from = next?;
            let to = from.saturating_add(span - 1).min(self.to);
            next = (to < self.to).then(|| to + 1);
            Some(Window { from, to })
        })
    }

    /// The span of the parts a window is read in when the run has a deadline, so that a window
    /// too big for one run is finished part by part over several: an hour, or a 48th of the
    /// window when that is longer (a window of years must not become a million requests).
    pub fn part_span(&self) -> i64 {
        const PART_SECS: i64 = 3600;
        const MAX_PARTS: i64 = 48;
        let length = self.to.saturating_sub(self.from).saturating_add(1);
        PART_SECS.max(length / MAX_PARTS + 1)
    }

    /// The part of this window that `loaded` (sorted, disjoint, inclusive spans of loaded
    /// seconds) does not cover: from its first unloaded second to its last; `None` when all
    /// of it is loaded.
    pub fn unloaded(&self, loaded: &[(i64, i64)]) -> Option<Window> {
        let covered = |second: i64| {
            loaded
                .iter()
                .find(|&&(from, to)| from <= second && second <= to)
                .copied()
        };
        let from = match covered(self.from) {
            Some((_, to)) if to >= self.to => return None,
            Some((_, to)) => to + 1,
            None => self.from,
        };
        let to = match covered(self.to) {
            Some((from, _)) => from - 1,
            None => self.to,
        };
        Some(Window { from, to })
    }

    /// The contract's default window ending at `now`.
    pub fn last_70_minutes(now: i64) -> Window {
        Window {
            from: now - DEFAULT_SPAN_SECS,
            to: now,
        }
    }
}

/// The contract's default window: the last 70 minutes, so an hourly schedule overlaps by 10.
pub const DEFAULT_SPAN_SECS: i64 = 70 * 60;

/// How far a catch-up window reaches back before the watermark by default.
pub const DEFAULT_OVERLAP_SECS: i64 = 10 * 60;

/// The longest window one catch-up run takes by default.
pub const DEFAULT_MAX_CATCH_UP_SECS: i64 = 6 * 3600;

/// Where a type's gap-free loading stands (the run log's one rule, `sink::watermark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// Where the type's first scheduled window started: contiguity counts from here; holes
    /// before it are a backfill's business.
    pub start: i64,
    /// Every second from `start` up to this one is loaded; `None` when `start` itself is not.
    pub done_until: Option<i64>,
}

/// Gap-free windows: a missed or failed hourly run leaves no hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// The end of every window, Unix seconds; computed at each invocation.
    pub now: i64,
    /// How far a window reaches back before the watermark; never negative (a negative overlap
    /// would leave a hole that no later run reads).
    pub overlap_secs: i64,
    /// The longest window one run takes, so that it finishes in time; the next run takes the
    /// rest.
    pub max_span_secs: i64,
}

impl CatchUp {
    /// Defaults: 10 minutes of overlap, at most 6 hours per run.
    pub fn at(now: i64) -> Self {
        CatchUp {
            now,
            overlap_secs: DEFAULT_OVERLAP_SECS,
            max_span_secs: DEFAULT_MAX_CATCH_UP_SECS,
        }
    }

    /// The window of a type whose gap-free loading stands at `watermark`: from the watermark
    /// less the overlap; from the first scheduled window when nothing since it is loaded; the
    /// contract's last 70 minutes for a type never run on a scheduled window.
    pub fn window(&self, watermark: Option<Watermark>) -> Window {
        let from = match watermark {
            Some(Watermark {
                done_until: Some(done_until),
                ..
            }) => done_until - self.overlap_secs.max(0),
            Some(Watermark { start, .. }) => start,
            None => return Window::last_70_minutes(self.now),
        }
        .min(self.now);
        Window {
            from,
            to: self.now.min(from.saturating_add(self.max_span_secs.max(1))),
        }
    }
}

/// What a caller asks about windows, by flags or by an event. [`WindowPlan::resolve`] is the
/// one rule that turns it into a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRequest {
    /// A window given by hand; a bound left out is the default window's.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Gap-free windows (when no window is given by hand).
    pub catch_up: bool,
    /// The catch-up window's overlap with what is loaded.
    pub overlap_secs: i64,
    /// The longest catch-up window of one run.
    pub max_span_secs: i64,
}

impl Default for WindowRequest {
    fn default() -> Self {
        WindowRequest {
            from: None,
            to: None,
            catch_up: false,
            overlap_secs: DEFAULT_OVERLAP_SECS,
            max_span_secs: DEFAULT_MAX_CATCH_UP_SECS,
        }
    }
}

/// Which window each type of a run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPlan {
    /// Every document of the source (a file given by hand).
    All,
    /// A window given by hand. It never moves catch-up on.
    Fixed(Window),
    /// The contract's default: the last 70 minutes before `now` (the fetch API's default). A
    /// scheduled window: catch-up starts after it once it succeeded.
    Scheduled { now: i64 },
    /// Gap-free windows: each type starts where its last successful scheduled window ended.
    CatchUp(CatchUp),
    /// A backfill's shard: each type reads only the part of the window that the run log does
    /// not say is loaded ([`Window::unloaded`]), and a type with nothing left is skipped
    /// without fetching. So a shard that succeeded is skipped, and a retry of one stopped at
    /// its deadline continues where it stopped. It never moves catch-up on by itself.
    Backfill(Window),
}

impl WindowPlan {
    /// THE default-window rule. A window given by hand is read as given (a bound left out is
    /// the last 70 minutes'); else catch-up when asked; else, when the run reads by window
    /// (`scheduled_by_default`: the fetch API, a scheduled invocation), the contract's last 70
    /// minutes before `now`; else every document.
    pub fn resolve(request: &WindowRequest, scheduled_by_default: bool, now: i64) -> WindowPlan {
        if request.from.is_some() || request.to.is_some() {
            let default = Window::last_70_minutes(now);
            return WindowPlan::Fixed(Window {
                from: request.from.unwrap_or(default.from),
                to: request.to.unwrap_or(default.to),
            });
        }
        if request.catch_up {
            WindowPlan::CatchUp(CatchUp {
                overlap_secs: request.overlap_secs,
                max_span_secs: request.max_span_secs,
                ..CatchUp::at(now)
            })
        } else if scheduled_by_default {
            WindowPlan::Scheduled { now }
        } else {
            WindowPlan::All
        }
    }

    /// Whether the windows of this plan count for catch-up.
    pub fn is_scheduled(&self) -> bool {
        matches!(self, WindowPlan::Scheduled { .. } | WindowPlan::CatchUp(_))
    }

    /// The one window every type reads, when the plan fixes one (not every document, and not
    /// catch-up, where each type has its own).
    pub fn common_window(&self) -> Option<Window> {
        match self {
            WindowPlan::Fixed(window) => Some(*window),
            WindowPlan::Scheduled { now } => Some(Window::last_70_minutes(*now)),
            WindowPlan::All | WindowPlan::CatchUp(_) | WindowPlan::Backfill(_) => None,
        }
    }

    /// The run's clock: the plan's now, else the system's (the run log's times and expiries
    /// follow it, so that a run given a time judges by that time).
    pub fn now(&self) -> i64 {
        match self {
            WindowPlan::Scheduled { now } | WindowPlan::CatchUp(CatchUp { now, .. }) => *now,
            WindowPlan::All | WindowPlan::Fixed(_) | WindowPlan::Backfill(_) => unix_now(),
        }
    }
}

/// When an operation allowed `budget` from now must be over: then, or at the run's deadline
/// when that comes first. Every bounded wait (database retries, HTTP retries, a lookup's scan)
/// ends by this one rule.
pub fn operation_end(
    budget: std::time::Duration,
    deadline: Option<std::time::Instant>,
) -> std::time::Instant {
    let end = std::time::Instant::now() + budget;
    deadline.map_or(end, |deadline| deadline.min(end))
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_starts_at_the_watermark_minus_the_overlap_and_is_bounded() {
        let catch_up = CatchUp::at(100_000);
        let window = |from, to| Window { from, to };
        let done = |start, until| {
            Some(Watermark {
                start,
                done_until: Some(until),
            })
        };
        assert_eq!(catch_up.window(None), window(100_000 - 4200, 100_000));
        assert_eq!(catch_up.window(done(1, 90_000)), window(89_400, 100_000));
        assert_eq!(catch_up.window(done(1, 1_000)), window(400, 400 + 6 * 3600));
        // Nothing loaded since the first scheduled window: start where it did.
        let nothing = Some(Watermark {
            start: 95_000,
            done_until: None,
        });
        assert_eq!(catch_up.window(nothing), window(95_000, 100_000));
        // A negative overlap (refused by the binaries) never opens a hole.
        let negative = CatchUp {
            overlap_secs: -600,
            ..catch_up
        };
        assert_eq!(negative.window(done(1, 90_000)), window(90_000, 100_000));
    }

    #[test]
    fn a_backfill_shard_reads_only_what_is_not_loaded() {
        let shard = Window { from: 100, to: 199 };
        let w = |from, to| Some(Window { from, to });
        type Case = (&'static str, &'static [(i64, i64)], Option<Window>);
        let cases: [Case; 7] = [
            ("nothing loaded", &[], w(100, 199)),
            ("all loaded", &[(0, 500)], None),
            ("loaded exactly", &[(100, 199)], None),
            ("a deadline stopped it at 149", &[(100, 149)], w(150, 199)),
            ("the end is loaded", &[(150, 300)], w(100, 149)),
            ("both ends loaded", &[(50, 120), (180, 250)], w(121, 179)),
            ("loaded elsewhere", &[(0, 99), (200, 300)], w(100, 199)),
        ];
        for (name, loaded, expected) in cases {
            assert_eq!(shard.unloaded(loaded), expected, "{name}");
        }
    }

    #[test]
    fn a_window_is_cut_into_touching_parts() {
        let window = Window { from: 0, to: 9_000 };
        let parts: Vec<_> = window.parts(3_600).collect();
        assert_eq!(
            parts,
            [
                Window { from: 0, to: 3_599 },
                Window {
                    from: 3_600,
                    to: 7_199
                },
                Window {
                    from: 7_200,
                    to: 9_000
                }
            ]
        );
        assert_eq!(window.part_span(), 3_600);
        let one = Window { from: 5, to: 5 };
        assert_eq!(one.parts(3_600).collect::<Vec<_>>(), [one]);
        let huge = Window {
            from: 0,
            to: 100_000_000_000,
        };
        assert!(huge.parts(huge.part_span()).count() <= 48);
    }
}
