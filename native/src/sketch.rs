//! Quantiles of money values per window: a DDSketch-style sketch with a stated relative-error bound.
//!
//! A positive value `x` (cents) falls in bin `i = ceil(log_γ x)`, γ = (1 + α) / (1 − α), and a bin stands for
//! `2γ^i / (γ + 1)`, which is within a relative `α` of every value in it. So any quantile read from the sketch is
//! within `α` of the exact quantile (the value at rank ⌊q·(n − 1)⌋ of the sorted values). Sketches merge by
//! adding bin counts: partitions and windows merge exactly as if one sketch had seen every value.

use crate::change::Change;
use std::collections::BTreeMap;

/// The relative-error bound α of every quantile Pulse reports.
pub const ACCURACY: f64 = 0.01;
/// The quantiles the dashboard and the README show.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];
/// The sketched values of ok purchases, in index order: order value (`amount`) and unit price (`price`).
/// Documents carry them as `<name>_sketch`.
pub const SKETCHED: [&str; 2] = ["amount", "price"];
pub const AMOUNT: usize = 0;
pub const PRICE: usize = 1;

fn gamma() -> f64 {
    (1.0 + ACCURACY) / (1.0 - ACCURACY)
}

/// The bin of a positive value.
pub fn bin(x: f64) -> i32 {
    (x.ln() / gamma().ln()).ceil() as i32
}

/// The value a bin stands for.
pub fn bin_value(i: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(i) / (g + 1.0)
}

#[derive(Default, Clone, PartialEq, Debug)]
pub struct Sketch {
    pub zeros: u64, // values of 0 (a free item), exact
    pub bins: BTreeMap<i32, u64>,
}

impl Sketch {
    pub fn add(&mut self, cents: i64) {
        if cents <= 0 {
            self.zeros += 1;
        } else {
            *self.bins.entry(bin(cents as f64)).or_default() += 1;
        }
    }

    pub fn count(&self) -> u64 {
        self.zeros + self.bins.values().sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.zeros == 0 && self.bins.is_empty()
    }

    pub fn merge(&mut self, other: &Sketch) {
        self.zeros += other.zeros;
        for (&i, &n) in &other.bins {
            *self.bins.entry(i).or_default() += n;
        }
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) within the relative bound; None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64;
        if rank < self.zeros {
            return Some(0.0);
        }
        let mut seen = self.zeros;
        for (&i, &c) in &self.bins {
            seen += c;
            if seen > rank {
                return Some(bin_value(i));
            }
        }
        self.bins.keys().next_back().map(|&i| bin_value(i))
    }
}

/// A window's sketches, with what the changelog needs to know about them.
#[derive(Default)]
pub struct Quantiles {
    pub sketches: [Sketch; SKETCHED.len()],
    pub change: Change,
}

impl Quantiles {
    pub fn add(&mut self, which: usize, cents: i64) {
        self.sketches[which].add(cents);
        self.change.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_within_the_bound_of_its_bin() {
        for cents in (1..2_000_000).step_by(997).chain([1, 2, 3, 100_000_000]) {
            let x = cents as f64;
            let v = bin_value(bin(x));
            assert!((v - x).abs() <= ACCURACY * x * (1.0 + 1e-12), "{cents}: {v}");
        }
    }
}
