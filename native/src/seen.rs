//! Which windows a user was counted in, for the window sizes that count distinct users exactly: one bitmap per
//! event-time hour the user was active in (a bit per window starting in that hour, for each such size), kept as
//! long as a correction can still reach those windows. A correction asks it whether its user is new to a window
//! whose own user set is gone (closed) or holds only the users counted on time.

use crate::hll::EXACT_USERS_UP_TO;

const HOUR: i64 = 3_600_000;

/// Where each window size's bits lie in an hour's bitmap (sizes that do not count users exactly have none).
#[derive(Clone, Default)]
pub struct Layout {
    spans: Vec<Option<(usize, i64)>>, // per configured size: (first bit, size)
    words: usize,
}

impl Layout {
    pub fn new(sizes: &[i64]) -> Self {
        let mut bit = 0usize;
        let spans = sizes
            .iter()
            .map(|&size| {
                (size <= EXACT_USERS_UP_TO).then(|| {
                    let at = bit;
                    bit += (HOUR / size) as usize + 1; // windows starting in one hour
                    (at, size)
                })
            })
            .collect();
        Layout { spans, words: bit.div_ceil(64) }
    }

    /// The sizes that count users exactly, in layout order (a logged bitmap is read only under the same ones).
    pub fn sizes(&self) -> Vec<i64> {
        self.spans.iter().flatten().map(|s| s.1).collect()
    }

    /// Words per hour's bitmap.
    pub fn words(&self) -> usize {
        self.words
    }

    /// The hour and the bit of the window of the `i`th size starting at `start` (None: not an exact size).
    fn place(&self, i: usize, start: i64) -> Option<(i64, usize)> {
        let (first, size) = self.spans.get(i).copied().flatten()?;
        let hour = start.div_euclid(HOUR) * HOUR;
        Some((hour, first + ((start - hour) / size) as usize))
    }
}

/// A user's bitmaps, by hour: blocks of an hour's start and its `Layout::words` words, in hour order, in one
/// allocation (most users hold one or two hours).
#[derive(Clone, Default)]
pub struct Seen {
    blocks: Vec<u64>,
}

impl Seen {
    /// Bitmaps read back from the changelog, in hour order, each of `layout`'s words.
    pub fn from_hours(layout: &Layout, hours: impl IntoIterator<Item = (i64, Vec<u64>)>) -> Self {
        let mut blocks = Vec::new();
        for (hour, bits) in hours.into_iter().filter(|h| h.1.len() == layout.words) {
            blocks.push(hour as u64);
            blocks.extend_from_slice(&bits);
        }
        blocks.shrink_to_fit();
        Seen { blocks }
    }

    /// Each hour and its bitmap, in hour order.
    pub fn hours(&self, layout: &Layout) -> impl Iterator<Item = (i64, &[u64])> {
        self.blocks.chunks_exact(layout.words + 1).map(|b| (b[0] as i64, &b[1..]))
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Mark the user counted in the window of the `i`th size starting at `start`: true if it was not yet (and for
    /// a size that does not count users exactly).
    pub fn mark(&mut self, layout: &Layout, i: usize, start: i64) -> bool {
        let Some((hour, bit)) = layout.place(i, start) else { return true };
        let stride = layout.words + 1;
        // a user holds the hours of the horizon at most, usually one or two: a scan from the newest
        let b = self.blocks.chunks_exact(stride).rposition(|b| b[0] as i64 <= hour).map_or(0, |b| b + 1);
        let at = match b.checked_sub(1).filter(|&b| self.blocks[b * stride] as i64 == hour) {
            Some(b) => b * stride,
            None => {
                let at = b * stride;
                self.blocks.reserve_exact(stride);
                self.blocks.splice(at..at, std::iter::once(hour as u64).chain(std::iter::repeat_n(0, layout.words)));
                at
            }
        };
        let (word, mask) = (at + 1 + bit / 64, 1u64 << (bit % 64));
        let new = self.blocks[word] & mask == 0;
        self.blocks[word] |= mask;
        new
    }

    /// Forget the hours before `hour`: no correction can reach their windows any more.
    pub fn forget_before(&mut self, layout: &Layout, hour: i64) {
        let stride = layout.words + 1;
        let old = self.blocks.chunks_exact(stride).take_while(|b| (b[0] as i64) < hour).count();
        if old > 0 {
            self.blocks.drain(..old * stride);
        }
    }

    /// Bytes held beyond the struct itself.
    pub fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_new_once_per_size_and_forgotten_hours_are_new_again() {
        let layout = Layout::new(&[10_000, 60_000, 3_600_000, 86_400_000]);
        let mut seen = Seen::default();
        let t = 1_800_000_000_000 - 1_800_000_000_000 % HOUR;
        assert!(seen.mark(&layout, 0, t + 3_590_000));
        assert!(!seen.mark(&layout, 0, t + 3_590_000));
        assert!(seen.mark(&layout, 0, t)); // another window of the same size
        assert!(seen.mark(&layout, 1, t) && seen.mark(&layout, 2, t) && !seen.mark(&layout, 2, t));
        assert!(seen.mark(&layout, 3, t) && seen.mark(&layout, 3, t)); // a day counts users by sketch only
        assert!(seen.mark(&layout, 0, t + HOUR));
        seen.forget_before(&layout, t + HOUR);
        assert!(seen.mark(&layout, 0, t) && !seen.mark(&layout, 0, t + HOUR));
    }
}
