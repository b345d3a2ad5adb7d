//! Augmentations of DD-Ranking (DESIGN.md §5) on the CPU: DSA (scale, rotate, flip, color, crop,
//! cutout; modes S and M), Mixup, CutMix, and ZCA whitening (§3). Randomness comes from a
//! counter-based generator ([`rng`]) keyed by (seed, run, student role, step); every op also takes
//! explicit draws ([`draws`]) so tests feed PyTorch's draws and a GPU backend gets the host's.
//!
//! Layout: `rng` (Philox, Beta, permutations), `draws` (the per-image / per-student draw structs and
//! their sampling), `geometric` (scale, rotate), `color`, `shift` (flip, crop, cutout), `mix`
//! (Mixup, CutMix), `plan` (a cohort step: sample + apply over (S, B, C, H, W)), `zca` and `eigen`,
//! `tv` and `tv_resize` (torchvision-style train transforms for `custom_train_trans`).

pub mod color;
pub mod draws;
pub mod eigen;
mod gemm64;
pub mod geometric;
pub mod mix;
pub mod plan;
pub mod rng;
pub mod shift;
pub mod tv;
pub mod tv_resize;
pub mod zca;

pub use draws::{BatchDraws, DsaParams, ImageDraws, StudentDraws};
pub use plan::{apply, check_draws, dsa_params, sample, AugPlan, BatchDims, DsaMode};
pub use rng::{DrawKey, Purpose};
pub use tv::{TvPipeline, TvTransform};
pub use zca::Zca;

use crate::error::{Error, Result};

/// A batch of images x (N, C, H, W) that one op runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl ImageDims {
    /// Values per image (C·H·W).
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn len(&self) -> usize {
        self.n * self.image_len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A buffer of `len` values must hold the whole batch.
    pub fn check(&self, what: &str, len: usize) -> Result<()> {
        if len != self.len() {
            return Err(Error::shape(format!(
                "{what}: {len} values, (N, C, H, W) = ({}, {}, {}, {}) needs {}",
                self.n,
                self.c,
                self.h,
                self.w,
                self.len()
            )));
        }
        Ok(())
    }

    /// A per-image array of `len` entries must have one per image.
    pub fn check_per_image(&self, what: &str, len: usize) -> Result<()> {
        if len != self.n {
            return Err(Error::shape(format!(
                "{what}: {len} per-image entries for {} images",
                self.n
            )));
        }
        Ok(())
    }
}
