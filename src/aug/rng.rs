//! Counter-based random numbers for augmentation draws (DESIGN.md §5): every number is a pure
//! function of (seed, run, student role, step, purpose, index), so a student's draws do not depend
//! on which cohort it runs in, on the batch it shares, or on the backend.
//!
//! # The exact algorithm (port it to C/CUDA word for word; only u32/u64 arithmetic)
//! - Block function: Philox4x32-10 (Salmon et al., SC'11; the Random123 constants), checked
//!   against the Random123 known-answer vectors in the tests. One call maps a 128-bit counter and
//!   a 64-bit key to four u32 words.
//! - Key: `[seed as u32, (seed >> 32) as u32]`.
//! - Counter for word `i` of stream `purpose`: `[(purpose << 24) | (i >> 2), step, run, role]`,
//!   the word is lane `i & 3` of the output. So a purpose has 2^26 words per (key, step); a batch
//!   uses a few per image. Image `b` of a batch takes word `b` of each per-image purpose, so its
//!   draws do not depend on the batch size.
//! - `u32 → f32` in [0, 1): `(w >> 8) as f32 · 2⁻²⁴` (exact, never 1.0).
//! - `u32 → f64` in [0, 1): words `2k, 2k+1`: `((w0 >> 5)·2²⁶ + (w1 >> 6)) · 2⁻⁵³`.
//! - Integer in [0, n): `((w as u64 · n) >> 32)` (multiply-shift; the bias is < n/2³² and the
//!   augmentation ranges are ≤ a few hundred).
//!
//! Beta(a, a) and the normal deviates it needs use f64 `ln`/`sqrt`/`cos`/`powf`; they are drawn on
//! the host (one λ per student per step) and uploaded, so no device has to reproduce them.

/// Philox4x32 multipliers and Weyl key increments (Random123).
const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: the standard, crush-resistant choice of Random123.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let p0 = (PHILOX_M0 as u64) * (c[0] as u64);
        let p1 = (PHILOX_M1 as u64) * (c[2] as u64);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// Who draws: one student training in one run at one optimizer step. `role` tells apart the
/// students of one run (synthetic set at learning rate i, random subset, ...); the planner assigns
/// it. `step` counts optimizer steps from 0 over the whole training (it must fit in u32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DrawKey {
    pub seed: u64,
    pub run: u32,
    pub role: u32,
    pub step: u32,
}

/// Independent streams of one key. Each use of randomness has its own purpose, so adding a draw
/// to one never shifts another. Values must stay below 256 (8 bits of the counter word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Purpose {
    OpChoice = 0,
    ScaleX = 1,
    ScaleY = 2,
    Rotate = 3,
    Flip = 4,
    Brightness = 5,
    Saturation = 6,
    Contrast = 7,
    CropX = 8,
    CropY = 9,
    CutoutX = 10,
    CutoutY = 11,
    MixLambda = 12,
    MixPerm = 13,
    CutCentre = 14,
    /// torchvision-style transforms (src/aug/tv.rs): RandomResizedCrop's area and log-ratio
    /// uniforms per try, its crop position, the horizontal-flip coin, RandomCrop's offsets.
    TvArea = 15,
    TvRatio = 16,
    TvTop = 17,
    TvLeft = 18,
    TvFlip = 19,
}

/// Largest word index of one purpose (2^26 words: 2^24 blocks of 4).
pub const WORDS_PER_PURPOSE: u64 = 1 << 26;

impl DrawKey {
    /// Word `index` of stream `purpose`. Indices ≥ 2^26 wrap into the next purpose's range; every
    /// caller in this crate stays far below (a batch of B images uses at most 64·B words).
    pub fn word(&self, purpose: Purpose, index: u32) -> u32 {
        let counter = [
            ((purpose as u32) << 24) | ((index >> 2) & 0x00FF_FFFF),
            self.step,
            self.run,
            self.role,
        ];
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        philox4x32_10(counter, key)[(index & 3) as usize]
    }

    /// Uniform f32 in [0, 1) with 24 random bits.
    pub fn uniform_f32(&self, purpose: Purpose, index: u32) -> f32 {
        u32_to_unit_f32(self.word(purpose, index))
    }

    /// Uniform f64 in [0, 1) with 53 random bits, from words `2·index` and `2·index + 1`.
    pub fn uniform_f64(&self, purpose: Purpose, index: u32) -> f64 {
        let w0 = self.word(purpose, 2 * index);
        let w1 = self.word(purpose, 2 * index + 1);
        u32_pair_to_unit_f64(w0, w1)
    }

    /// Uniform integer in [0, n) (n ≥ 1).
    pub fn below(&self, purpose: Purpose, index: u32, n: u32) -> u32 {
        u32_below(self.word(purpose, index), n)
    }

    /// Uniform integer in [lo, hi) (hi > lo), as `torch.randint(lo, hi)` draws it.
    pub fn int_range(&self, purpose: Purpose, index: u32, lo: i32, hi: i32) -> i32 {
        let n = (hi as i64 - lo as i64).max(1) as u32;
        (lo as i64 + self.below(purpose, index, n) as i64) as i32
    }

    /// A uniform permutation of 0..n (Fisher–Yates from the top: position i swaps with
    /// `below(word i, i + 1)`), using words 1..n of `purpose`.
    pub fn permutation(&self, purpose: Purpose, n: usize) -> Vec<u32> {
        let mut p: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = self.below(purpose, i as u32, i as u32 + 1) as usize;
            p.swap(i, j);
        }
        p
    }

    /// λ ~ Beta(a, a) (a > 0) as X/(X + Y) with X, Y ~ Gamma(a) from [`gamma_bounded`], X from
    /// blocks 0..16 and Y from blocks 16..32 of `purpose`.
    pub fn beta_symmetric(&self, purpose: Purpose, a: f64) -> f64 {
        let x = self.gamma_bounded(purpose, 0, a);
        let y = self.gamma_bounded(purpose, GAMMA_ATTEMPTS, a);
        if x + y > 0.0 {
            x / (x + y)
        } else {
            // Both gammas underflowed (only possible for tiny a): Beta(a, a) puts half its mass near
            // each end, so pick an end with the next word of the stream.
            if self.word(purpose, 8 * GAMMA_ATTEMPTS) & 1 == 0 {
                0.0
            } else {
                1.0
            }
        }
    }

    /// Gamma(a, 1) by Marsaglia–Tsang (2000), with a bounded number of counters: attempt t uses
    /// the four words of block `first_block + t` (t < [`GAMMA_ATTEMPTS`]): words 0, 1 give a normal
    /// deviate by Box–Muller, word 2 the acceptance uniform, word 3 of the accepted block the boost
    /// uniform for a < 1 (Gamma(a) = Gamma(a + 1)·U^(1/a)). Each attempt is accepted with
    /// probability > 0.95, so all 16 failing has probability < 1e-20; then the mode of the
    /// Marsaglia–Tsang proposal (d) is returned so the count of counters stays bounded.
    fn gamma_bounded(&self, purpose: Purpose, first_block: u32, a: f64) -> f64 {
        let boosted = a < 1.0;
        let shape = if boosted { a + 1.0 } else { a };
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        for t in 0..GAMMA_ATTEMPTS {
            let base = 4 * (first_block + t);
            let u1 = u32_to_open_unit_f64(self.word(purpose, base));
            let u2 = u32_to_unit_f64(self.word(purpose, base + 1));
            let u3 = u32_to_open_unit_f64(self.word(purpose, base + 2));
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let v = 1.0 + c * z;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            if u3.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
                let g = d * v;
                return if boosted {
                    let ub = u32_to_open_unit_f64(self.word(purpose, base + 3));
                    g * ub.powf(1.0 / a)
                } else {
                    g
                };
            }
        }
        if boosted {
            d * 0.5f64.powf(1.0 / a)
        } else {
            d
        }
    }
}

/// Marsaglia–Tsang attempts per gamma deviate (the counter budget; see `gamma_bounded`).
pub const GAMMA_ATTEMPTS: u32 = 16;

/// `(w >> 8) · 2⁻²⁴`: 24 bits, exactly representable in f32, in [0, 1).
pub fn u32_to_unit_f32(w: u32) -> f32 {
    (w >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// `w · 2⁻³²` in [0, 1) (32 bits; used inside the Beta sampler).
fn u32_to_unit_f64(w: u32) -> f64 {
    w as f64 * (1.0 / 4_294_967_296.0)
}

/// `(w + 0.5) · 2⁻³²` in (0, 1): safe to take the logarithm of.
fn u32_to_open_unit_f64(w: u32) -> f64 {
    (w as f64 + 0.5) * (1.0 / 4_294_967_296.0)
}

/// 53 bits from two words: 27 from the first, 26 from the second.
pub fn u32_pair_to_unit_f64(w0: u32, w1: u32) -> f64 {
    let hi = (w0 >> 5) as u64;
    let lo = (w1 >> 6) as u64;
    ((hi << 26) | lo) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// Multiply-shift reduction of a word to [0, n).
pub fn u32_below(w: u32, n: u32) -> u32 {
    ((w as u64 * n as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DrawKey {
        DrawKey {
            seed: 0x1234_5678_9abc_def0,
            run: 2,
            role: 5,
            step: 77,
        }
    }

    #[test]
    fn philox_matches_random123_known_answers() {
        // The three known-answer vectors of Random123's kat_vectors file (philox4x32, 10 rounds).
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn draws_are_deterministic() {
        let k = key();
        let a: Vec<u32> = (0..64).map(|i| k.word(Purpose::Rotate, i)).collect();
        let b: Vec<u32> = (0..64).map(|i| k.word(Purpose::Rotate, i)).collect();
        assert_eq!(a, b);
        assert_eq!(
            k.beta_symmetric(Purpose::MixLambda, 0.8),
            k.beta_symmetric(Purpose::MixLambda, 0.8)
        );
        assert_eq!(
            k.permutation(Purpose::MixPerm, 33),
            k.permutation(Purpose::MixPerm, 33)
        );
    }

    #[test]
    fn every_key_field_and_purpose_changes_the_stream() {
        let base = key();
        let stream =
            |k: DrawKey, p: Purpose| -> Vec<u32> { (0..16).map(|i| k.word(p, i)).collect() };
        let s0 = stream(base, Purpose::Rotate);
        let variants = [
            DrawKey {
                seed: base.seed + 1,
                ..base
            },
            DrawKey {
                seed: base.seed ^ (1 << 40),
                ..base
            },
            DrawKey {
                run: base.run + 1,
                ..base
            },
            DrawKey {
                role: base.role + 1,
                ..base
            },
            DrawKey {
                step: base.step + 1,
                ..base
            },
        ];
        for v in variants {
            let s = stream(v, Purpose::Rotate);
            let same = s.iter().zip(&s0).filter(|(a, b)| a == b).count();
            assert!(
                same <= 1,
                "key {v:?} shares {same} of 16 words with {base:?}"
            );
        }
        let other = stream(base, Purpose::Flip);
        assert!(other.iter().zip(&s0).filter(|(a, b)| a == b).count() <= 1);
    }

    #[test]
    fn uniforms_are_roughly_uniform() {
        // 100k draws into 10 bins: each bin expects 10k with std ≈ 95; 6 std = 570.
        let k = key();
        let n = 100_000u32;
        let mut bins = [0u32; 10];
        let mut sum = 0.0f64;
        for i in 0..n {
            let u = k.uniform_f32(Purpose::Brightness, i);
            assert!((0.0..1.0).contains(&u), "uniform {u} at {i} outside [0, 1)");
            bins[(u * 10.0) as usize] += 1;
            sum += u as f64;
        }
        for (b, &c) in bins.iter().enumerate() {
            assert!((c as i64 - 10_000).abs() < 570, "bin {b} holds {c} of {n}");
        }
        // Mean 0.5, std of the mean sqrt(1/12/n) ≈ 9.1e-4; 6 std.
        assert!((sum / n as f64 - 0.5).abs() < 5.5e-3);
    }

    #[test]
    fn integers_cover_their_range() {
        let k = key();
        let mut seen = [0u32; 9];
        for i in 0..9000 {
            let v = k.int_range(Purpose::CropX, i, -4, 5);
            assert!((-4..=4).contains(&v));
            seen[(v + 4) as usize] += 1;
        }
        // Each of 9 values expects 1000 (std ≈ 31).
        assert!(
            seen.iter().all(|&c| (800..1200).contains(&c)),
            "counts {seen:?}"
        );
    }

    #[test]
    fn permutation_is_a_permutation_and_varies() {
        for step in 0..20 {
            let k = DrawKey { step, ..key() };
            let mut p = k.permutation(Purpose::MixPerm, 50);
            p.sort_unstable();
            assert_eq!(p, (0..50).collect::<Vec<u32>>());
        }
        let a = key().permutation(Purpose::MixPerm, 50);
        let b = DrawKey { step: 1, ..key() }.permutation(Purpose::MixPerm, 50);
        assert_ne!(a, b);
        // Position 0 of a size-4 permutation is uniform: 4000 draws, 1000 each (std ≈ 27).
        let mut first = [0u32; 4];
        for step in 0..4000 {
            first[DrawKey { step, ..key() }.permutation(Purpose::MixPerm, 4)[0] as usize] += 1;
        }
        assert!(
            first.iter().all(|&c| (850..1150).contains(&c)),
            "first elements {first:?}"
        );
    }

    #[test]
    fn beta_has_the_right_mean_and_variance() {
        // Beta(a, a): mean 1/2, variance 1/(4(2a + 1)). 20k draws; the sample variance of the
        // mean is var/n, so 6 std is well inside the bounds used.
        for a in [0.2, 0.8, 1.0, 2.5] {
            let n = 20_000u32;
            let draws: Vec<f64> = (0..n)
                .map(|step| DrawKey { step, ..key() }.beta_symmetric(Purpose::MixLambda, a))
                .collect();
            assert!(draws.iter().all(|&l| (0.0..=1.0).contains(&l)));
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|l| (l - mean) * (l - mean)).sum::<f64>() / n as f64;
            let want_var = 1.0 / (4.0 * (2.0 * a + 1.0));
            assert!(
                (mean - 0.5).abs() < 6.0 * (want_var / n as f64).sqrt(),
                "a {a}: mean {mean}"
            );
            assert!(
                (var - want_var).abs() < 0.05 * want_var,
                "a {a}: var {var} want {want_var}"
            );
        }
    }

    #[test]
    fn unit_conversions_stay_in_range() {
        assert_eq!(u32_to_unit_f32(0), 0.0);
        assert!(u32_to_unit_f32(u32::MAX) < 1.0);
        assert!(u32_pair_to_unit_f64(u32::MAX, u32::MAX) < 1.0);
        assert_eq!(u32_below(u32::MAX, 7), 6);
        assert_eq!(u32_below(0, 7), 0);
    }
}
