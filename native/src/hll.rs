//! Approximate distinct users of long windows: a HyperLogLog per window and partition.
//!
//! Windows up to `EXACT_USERS_UP_TO` keep the exact set of their users (`unique_users` is exact); windows from
//! `SKETCH_USERS_FROM` on keep a HyperLogLog too, and longer windows keep only that, so a day with a million
//! users costs 16 KiB per partition, not a set. Registers merge by maximum: across partitions, and across
//! windows (distinct users over several hours).

use crate::change::Change;
use rustc_hash::FxHasher;
use std::hash::Hasher;

/// The field of `window_users` documents that holds the registers.
pub const FIELD: &str = "users_hll";
/// 2^14 registers: a standard error of 1.04 / √16384 ≈ 0.81 %.
pub const PRECISION: u32 = 14;
pub const REGISTERS: usize = 1 << PRECISION;
/// Windows up to this size (ms) count their users exactly.
pub const EXACT_USERS_UP_TO: i64 = 3_600_000;
/// Windows of this size (ms) or longer carry a HyperLogLog of their users.
pub const SKETCH_USERS_FROM: i64 = 3_600_000;

/// A user id's 64-bit hash, well mixed in every bit (FxHash's output is not): the same in every process.
pub fn user_hash(user: &str) -> u64 {
    mixed_hash(user.as_bytes())
}

/// FxHash of `bytes`, then mixed so that every input bit reaches every output bit (for sketches and filters).
pub fn mixed_hash(bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(bytes);
    let mut x = h.finish();
    // MurmurHash3's 64-bit finaliser
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[derive(Default)]
pub struct Hll {
    pub registers: Vec<u8>, // empty until the first user
    pub change: Change,     // a register rose
}

impl Hll {
    pub fn add(&mut self, hash: u64) {
        if self.registers.is_empty() {
            self.registers = vec![0; REGISTERS];
        }
        let index = (hash >> (64 - PRECISION)) as usize;
        let rank = ((hash << PRECISION) | (1 << (PRECISION - 1))).leading_zeros() as u8 + 1;
        if rank > self.registers[index] {
            self.registers[index] = rank;
            self.change.touch();
        }
    }
}

/// Registers as the changelog and the documents carry them: the non-zero ones while few are, else all.
#[derive(serde::Serialize, serde::Deserialize)]
pub enum Packed {
    Sparse(Vec<(u16, u8)>),
    Dense(Vec<u8>),
}

impl Packed {
    pub fn of(registers: &[u8]) -> Packed {
        let set = registers.iter().filter(|&&r| r > 0).count();
        if set <= REGISTERS / 8 {
            Packed::Sparse(registers.iter().enumerate().filter(|(_, &r)| r > 0).map(|(i, &r)| (i as u16, r)).collect())
        } else {
            Packed::Dense(registers.to_vec())
        }
    }
    pub fn registers(self) -> Vec<u8> {
        match self {
            Packed::Dense(r) if r.len() == REGISTERS => r,
            Packed::Dense(_) => vec![0; REGISTERS],
            Packed::Sparse(pairs) => {
                let mut r = vec![0; REGISTERS];
                for (i, v) in pairs {
                    if let Some(slot) = r.get_mut(i as usize) {
                        *slot = v;
                    }
                }
                r
            }
        }
    }
}

/// The estimated number of distinct values behind `registers` (HyperLogLog with linear counting for small
/// counts; a 64-bit hash needs no large-range correction). Empty registers: 0.
pub fn estimate(registers: &[u8]) -> f64 {
    if registers.is_empty() {
        return 0.0;
    }
    let m = registers.len() as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = registers.iter().map(|&r| (-(r as f64)).exp2()).sum();
    let zeros = registers.iter().filter(|&&r| r == 0).count();
    let raw = alpha * m * m / sum;
    if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_close_for_small_and_large_counts() {
        for n in [1usize, 10, 1000, 50_000, 300_000] {
            let mut h = Hll::default();
            for i in 0..n {
                h.add(user_hash(&format!("user-{i}")));
            }
            let e = estimate(&h.registers);
            assert!((e - n as f64).abs() <= 0.03 * n as f64 + 1.0, "{n}: {e}");
        }
    }
}
