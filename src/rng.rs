//! A small, explicit pseudo-random generator for data order.
//!
//! The shuffle of each epoch is derived from (seed, epoch) alone, not from libtorch's global
//! generator, so the data order does not depend on how many random numbers anything else drew,
//! and a run can be reproduced (or resumed) from its seed.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to shuffle data.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..bound` (bound > 0), without modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % bound;
            }
        }
    }
}

/// The permutation of `0..n` used for epoch `epoch` of a run seeded with `seed`
/// (Fisher–Yates shuffle).
pub fn epoch_permutation(n: usize, seed: u64, epoch: usize) -> Vec<i64> {
    let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<i64> = (0..n as i64).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// A seed for libtorch's generator at step `step` (from 0) of epoch `epoch` of a run seeded
/// with `seed` (it drives dropout), distinct from the shuffle's and the augmentation's streams.
///
/// libtorch's generator is reseeded before every step because its state can be neither read
/// nor set through tch: a run resumed at any step then draws the same dropout masks as the
/// uninterrupted run.
pub fn step_seed(seed: u64, epoch: usize, step: usize) -> u64 {
    let mut mixer = SplitMix64::new(seed ^ 0x5851_F42D_4C95_7F2D ^ ((epoch as u64) << 40));
    let mut rng = SplitMix64::new(mixer.next_u64() ^ step as u64);
    // libtorch takes a signed seed; keep it non-negative.
    rng.next_u64() >> 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_holds_every_index_once() {
        let mut p = epoch_permutation(1000, 42, 3);
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn permutation_depends_on_seed_and_epoch_only() {
        assert_eq!(epoch_permutation(100, 1, 0), epoch_permutation(100, 1, 0));
        assert_ne!(epoch_permutation(100, 1, 0), epoch_permutation(100, 1, 1));
        assert_ne!(epoch_permutation(100, 1, 0), epoch_permutation(100, 2, 0));
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let x = rng.below(10) as usize;
            seen[x] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
