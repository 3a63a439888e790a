//! A Bloom filter: "certainly not here" or "perhaps here". A sealed run answers only after it; its false
//! positives cost a block read, never a wrong answer.

const BITS_PER_KEY: usize = 10; // about 1 % false positives with 7 probes
const PROBES: u64 = 7;

pub struct Bloom {
    bits: Vec<u64>,
}

impl Bloom {
    pub fn with_capacity(keys: usize) -> Self {
        Bloom { bits: vec![0; (keys * BITS_PER_KEY).div_ceil(64).max(1)] }
    }

    fn positions(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let n = (self.bits.len() * 64) as u64;
        let (h1, h2) = (hash, hash.rotate_left(32) | 1);
        (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % n) as usize)
    }

    pub fn add(&mut self, hash: u64) {
        let positions: Vec<usize> = self.positions(hash).collect();
        for p in positions {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    pub fn may_hold(&self, hash: u64) -> bool {
        self.positions(hash).all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    pub fn bytes(&self) -> usize {
        self.bits.len() * 8
    }
}
