//! What a flush publishes besides the summaries. Every part of a window's state knows, by its `Change`, what changed
//! since its document last went out; a plan decides which of those pending documents this flush sends:
//! - summaries go out on every flush that changed them (they are small and what dashboards poll);
//! - breakdowns and user sketches of windows from `DETAILS_FROM` on go out on details flushes;
//! - item shards (a nested row per item, the heaviest documents) on a cadence that grows with the window, so a
//!   long window's rows are not re-indexed every few seconds while nearly all of them are unchanged (a whole
//!   shard goes out when any of its rows changed);
//! - a closing window sends whatever is pending, and its summary says it is final.
//!
//! Windows shorter than `ITEMS_FROM` keep no item rows at all (unless they are the longest).

use pyo3::prelude::*;

use crate::state::State;

/// The shortest window that keeps item rows (a shorter one does only if no window is this long).
pub const ITEMS_FROM: i64 = 60_000;
/// Windows from this size on publish their breakdowns and user sketches on details flushes only (shorter ones, the
/// live view's, on every flush).
pub const DETAILS_FROM: i64 = 60_000;
/// A changed window's item shards wait for their next publication at most half the window, and 1/12 of it but at
/// least `ITEMS_EVERY_MIN` (never more often than details flushes come) and at most `ITEMS_EVERY_MAX`: a longer
/// window serves longer ranges (the query module picks the smallest window that keeps a range under its bucket
/// limit), where the latest window's rows trailing by minutes is a small part of the answer.
pub const ITEMS_EVERY_MIN: i64 = 60_000;
pub const ITEMS_EVERY_MAX: i64 = 900_000;
/// The current item state (a window without end) waits this long between publications.
pub const ITEM_STATE_EVERY: i64 = 300_000;

/// What a flush does about the documents that wait for details flushes.
#[pyclass(eq, eq_int, module = "pulse.aggregate._core")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Details {
    /// None but those of closing windows (and breakdowns of windows shorter than `DETAILS_FROM`).
    #[pyo3(name = "CLOSING")]
    Closing,
    /// Also breakdowns and user sketches, and item shards whose cadence has come (a details flush).
    #[pyo3(name = "DUE")]
    Due,
    /// Every pending one (stopping, handing a partition over, caught up).
    #[pyo3(name = "ALL")]
    All,
}

/// The pending documents one flush publishes, decided once and applied to both the documents and the state.
#[derive(Default)]
pub struct Plan {
    pub items: Vec<(i64, i64)>,      // windows whose pending item shards go out
    pub breakdowns: Vec<(i64, i64)>, // windows whose pending breakdowns and user sketch go out
    pub item_state: bool,            // the current item state's pending shards go out
    pub complete: bool,              // nothing stays pending
}

impl Plan {
    pub fn items_of(&self, key: &(i64, i64)) -> bool {
        self.items.contains(key)
    }
    pub fn breakdowns_of(&self, key: &(i64, i64)) -> bool {
        self.breakdowns.contains(key)
    }
    pub fn publishes_any(&self) -> bool {
        !self.items.is_empty() || !self.breakdowns.is_empty() || self.item_state
    }
}

/// How long a window's changed item shards wait between publications.
pub fn items_every(size: i64) -> i64 {
    (size / 2).min((size / 12).clamp(ITEMS_EVERY_MIN, ITEMS_EVERY_MAX))
}

/// The shortest window, among windows of `sizes`, that keeps item rows (decided once, at construction).
pub fn items_from(sizes: &[i64]) -> i64 {
    ITEMS_FROM.min(sizes.iter().copied().max().unwrap_or(0))
}

/// The plan for a flush at wall-clock `now` that closes `finals`.
pub fn plan(st: &State, finals: &[(i64, i64)], details: Details, now: i64) -> Plan {
    let mut out = Plan { complete: true, ..Default::default() };
    for (key, win) in &st.windows {
        // a closing window, or a flush that publishes everything, sends whatever is pending
        let everything = finals.contains(key) || details == Details::All;
        if win.dims.change.to_publish() || win.user_sketch.change.to_publish() {
            if everything || details == Details::Due || win.size < DETAILS_FROM {
                out.breakdowns.push(*key);
            } else {
                out.complete = false;
            }
        }
        if !win.items.change.to_publish() {
            continue;
        }
        let due = details == Details::Due && now - win.items.published_at >= items_every(win.size);
        if everything || due {
            out.items.push(*key);
        } else {
            out.complete = false;
        }
    }
    let state = &st.catalog.item_state;
    if state.change.to_publish() {
        let due = details == Details::Due && now - state.published_at >= ITEM_STATE_EVERY;
        out.item_state = details == Details::All || due;
        out.complete &= out.item_state;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_windows_wait_longer_up_to_a_quarter_hour() {
        assert_eq!(items_every(10_000), 5_000);
        assert_eq!(items_every(60_000), 30_000);
        assert_eq!(items_every(3_600_000), 300_000);
        assert_eq!(items_every(86_400_000), 900_000);
    }

    #[test]
    fn short_windows_keep_items_only_when_nothing_is_longer() {
        assert_eq!(items_from(&[10_000, 60_000, 3_600_000]), 60_000);
        assert_eq!(items_from(&[10_000, 30_000]), 30_000);
    }
}
