//! Which item shards a flush publishes: the heavy documents (a nested row per item) go out on a cadence of their
//! own that grows with the window, so a long window's rows are not re-indexed every few seconds while nearly all
//! of them are unchanged; a closing window publishes the shards that changed since, and the window's summary says
//! it is final. Windows shorter than `ITEMS_FROM` keep no item rows at all (unless they are the longest).

use pyo3::prelude::*;

use crate::state::State;

/// The shortest window that keeps item rows (a shorter one does only if no window is this long).
pub const ITEMS_FROM: i64 = 60_000;
/// The longest a changed window's item shards wait for their next publication (a window publishes at most every
/// half its size, and never more often than details flushes come).
pub const ITEMS_EVERY_MAX: i64 = 60_000;

/// What a flush does about item shards.
#[pyclass(eq, eq_int, module = "pulse.aggregate._core")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Details {
    /// None but those of closing windows.
    #[pyo3(name = "CLOSING")]
    Closing,
    /// Also those whose cadence has come (a details flush).
    #[pyo3(name = "DUE")]
    Due,
    /// Every pending one (stopping, handing a partition over, caught up).
    #[pyo3(name = "ALL")]
    All,
}

/// The item shards one flush publishes, decided once and applied to both the documents and the state.
#[derive(Default)]
pub struct ItemPlan {
    pub windows: Vec<(i64, i64)>, // windows whose pending shards go out
    pub item_state: bool,         // the current item state's pending shards go out
    pub complete: bool,           // nothing stays pending
}

impl ItemPlan {
    pub fn publishes(&self, key: &(i64, i64)) -> bool {
        self.windows.contains(key)
    }
}

/// How long a window's changed item shards wait between publications.
pub fn items_every(size: i64) -> i64 {
    (size / 2).min(ITEMS_EVERY_MAX)
}

/// The shortest window, among windows of `sizes`, that keeps item rows (decided once, at construction).
pub fn items_from(sizes: &[i64]) -> i64 {
    ITEMS_FROM.min(sizes.iter().copied().max().unwrap_or(0))
}

/// The plan for a flush at wall-clock `now` that closes `finals`.
pub fn plan(st: &State, finals: &[(i64, i64)], details: Details, now: i64) -> ItemPlan {
    let mut out = ItemPlan { complete: true, ..Default::default() };
    for (key, win) in &st.windows {
        if win.items.to_publish() == 0 {
            continue;
        }
        let due = details == Details::Due && now - win.items.published_at >= items_every(win.size);
        if finals.contains(key) || details == Details::All || due {
            out.windows.push(*key);
        } else {
            out.complete = false;
        }
    }
    let state = &st.catalog.item_state;
    if state.to_publish() != 0 {
        let due = details == Details::Due && now - state.published_at >= ITEMS_EVERY_MAX;
        out.item_state = details == Details::All || due;
        out.complete &= out.item_state;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_windows_wait_longer_up_to_a_minute() {
        assert_eq!(items_every(60_000), 30_000);
        assert_eq!(items_every(3_600_000), 60_000);
        assert_eq!(items_every(86_400_000), 60_000);
    }

    #[test]
    fn short_windows_keep_items_only_when_nothing_is_longer() {
        assert_eq!(items_from(&[10_000, 60_000, 3_600_000]), 60_000);
        assert_eq!(items_from(&[10_000, 30_000]), 30_000);
    }
}
