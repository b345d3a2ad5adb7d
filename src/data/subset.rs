//! Class-balanced random subsets of a real training set (the IOR / ARS baselines, DESIGN.md §2):
//! for each class, `ipc` images drawn uniformly without replacement. The draw depends only on
//! (seed, run, class), through a counter-based SplitMix64 stream, so it is the same on every
//! backend and however students are grouped into cohorts.

use crate::error::{Error, Result};

/// Domain constant so subset streams never coincide with other streams keyed by the same seed.
const SUBSET_DOMAIN: u64 = 0x5355_4253_4554_0001; // "SUBSET" + version

/// SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 stream started from a key.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream keyed by a list of words (each folded in through the mix, so order matters).
    pub fn keyed(words: &[u64]) -> Self {
        let mut s = 0u64;
        for &w in words {
            s = mix64(s ^ w.wrapping_add(0x9E37_79B9_7F4A_7C15));
        }
        SplitMix64 { state: s }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform integer in 0..n (n > 0) by multiply-shift; the bias is below n / 2^64.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// Indices of a class-balanced random subset: for class 0, 1, ... in turn, `ipc` distinct indices
/// of that class (in draw order), so the result is class-major like a synthetic set.
/// `labels`: (N,) class of each training image.
pub fn random_subset(
    labels: &[u32],
    classes: usize,
    ipc: usize,
    seed: u64,
    run: u64,
) -> Result<Vec<usize>> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        let bucket = by_class.get_mut(l as usize).ok_or_else(|| {
            Error::config(format!(
                "label {l} at index {i} is out of range for {classes} classes"
            ))
        })?;
        bucket.push(i);
    }
    let mut out = Vec::with_capacity(classes * ipc); // (classes · ipc,)
    for (c, pool) in by_class.iter_mut().enumerate() {
        if pool.len() < ipc {
            return Err(Error::config(format!(
                "class {c} has {} training images, fewer than IPC {ipc}; cannot draw a random subset",
                pool.len()
            )));
        }
        let mut rng = SplitMix64::keyed(&[SUBSET_DOMAIN, seed, run, c as u64]);
        // Partial Fisher-Yates: the first ipc slots become a uniform sample without replacement.
        for k in 0..ipc {
            let j = k + rng.below(pool.len() - k);
            pool.swap(k, j);
        }
        out.extend_from_slice(&pool[..ipc]);
    }
    Ok(out)
}
