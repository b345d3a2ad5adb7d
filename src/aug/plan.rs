//! One cohort step of augmentation: which augmentation a cohort uses ([`AugPlan`]), the draws of
//! every student for one step (sampled on the host from each student's [`DrawKey`]) and their
//! application to the cohort's batch x (S, B, C, H, W). A backend's `augment` is a thin call to
//! [`apply`] (CPU) or a kernel reading the same [`BatchDraws`] (CUDA).
//!
//! "Per batch" with S students: every student has its own batch and its own key, so each student's
//! batch gets its own mode-S op choice, its own λ and permutation (DD-Ranking trains one student at
//! a time and draws them per batch of that student). Nothing is shared between students, so a
//! student's augmentation does not depend on the cohort it runs in.

use rayon::prelude::*;

use super::draws::{
    sample_cutmix, sample_dsa_op, sample_image, sample_mixup, BatchDraws, DsaParams, ImageDraws,
    StudentDraws, DSA_OPS, OP_COLOR, OP_CROP, OP_CUTMIX, OP_CUTOUT, OP_FLIP, OP_MIXUP, OP_ROTATE,
    OP_SCALE,
};
use super::rng::DrawKey;
use super::{color, geometric, mix, shift, ImageDims};
use crate::error::{Error, Result};

/// DSA's `aug_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DsaMode {
    /// One op per batch, chosen uniformly (what the metrics use).
    Single,
    /// All six ops in order.
    All,
}

/// The augmentation of a cohort (DD-Ranking's `data_aug_func`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AugPlan {
    None,
    Dsa { params: DsaParams, mode: DsaMode },
    Mixup { alpha: f64 },
    Cutmix { beta: f64 },
}

/// The batch of a cohort step: x (S, B, C, H, W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchDims {
    pub students: usize,
    pub batch: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl BatchDims {
    /// One student's batch (B, C, H, W).
    pub fn student(&self) -> ImageDims {
        ImageDims {
            n: self.batch,
            c: self.c,
            h: self.h,
            w: self.w,
        }
    }
    pub fn len(&self) -> usize {
        self.students * self.batch * self.c * self.h * self.w
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Draws of one step for every student; `keys[s]` is None for a student trained without
/// augmentation (its `ops` is 0). keys (S).
pub fn sample(plan: &AugPlan, keys: &[Option<DrawKey>], dims: BatchDims) -> Result<BatchDraws> {
    if keys.len() != dims.students {
        return Err(Error::shape(format!(
            "{} draw keys for {} students",
            keys.len(),
            dims.students
        )));
    }
    let b = dims.batch;
    let mut out = BatchDraws {
        students: vec![StudentDraws::default(); dims.students],
        images: vec![ImageDraws::default(); dims.students * b],
    };
    for (s, key) in keys.iter().enumerate() {
        let Some(key) = key else { continue };
        let images = &mut out.images[s * b..(s + 1) * b];
        match plan {
            AugPlan::None => {}
            AugPlan::Dsa { params, mode } => {
                for (i, img) in images.iter_mut().enumerate() {
                    *img = sample_image(key, i as u32, params, dims.h, dims.w);
                }
                out.students[s].ops = match mode {
                    DsaMode::Single => sample_dsa_op(key),
                    DsaMode::All => DSA_OPS.iter().fold(0, |acc, op| acc | op),
                };
            }
            AugPlan::Mixup { alpha } => {
                let (d, _, perm) = sample_mixup(key, *alpha, b);
                out.students[s] = d;
                set_partners(images, &perm);
            }
            AugPlan::Cutmix { beta } => {
                let (d, _, perm) = sample_cutmix(key, *beta, b, dims.h, dims.w);
                out.students[s] = d;
                set_partners(images, &perm);
            }
        }
    }
    Ok(out)
}

fn set_partners(images: &mut [ImageDraws], perm: &[u32]) {
    for (img, &p) in images.iter_mut().zip(perm) {
        img.partner = p;
    }
}

/// Apply the draws to x (S, B, C, H, W) in place. Each student's batch runs its `ops` in the
/// order scale, rotate, flip, color, crop, cutout, mixup, cutmix.
pub fn apply(plan: &AugPlan, draws: &BatchDraws, dims: BatchDims, x: &mut [f32]) -> Result<()> {
    if x.len() != dims.len() {
        return Err(Error::shape(format!(
            "augment: x has {} values, (S, B, C, H, W) = {:?} needs {}",
            x.len(),
            dims,
            dims.len()
        )));
    }
    if draws.students.len() != dims.students || draws.images.len() != dims.students * dims.batch {
        return Err(Error::shape(format!(
            "augment: draws for {} students and {} images, the batch has {} × {}",
            draws.students.len(),
            draws.images.len(),
            dims.students,
            dims.batch
        )));
    }
    let params = match plan {
        AugPlan::Dsa { params, .. } => *params,
        _ => DsaParams::ddranking(),
    };
    let sd = dims.student();
    let per_student = sd.len();
    if per_student == 0 {
        return Ok(());
    }
    x.par_chunks_mut(per_student)
        .zip(draws.students.par_iter())
        .zip(draws.images.par_chunks(dims.batch.max(1)))
        .try_for_each(|((xs, st), imgs)| apply_student(&params, st, imgs, sd, xs))
}

/// An op reading a copy of the batch (first argument) and writing the batch (second).
trait OutOfPlace: Fn(&[f32], &mut [f32]) -> Result<()> {}
impl<F: Fn(&[f32], &mut [f32]) -> Result<()>> OutOfPlace for F {}

/// All ops of one student's batch xs (B, C, H, W), in place.
pub fn apply_student(
    p: &DsaParams,
    st: &StudentDraws,
    imgs: &[ImageDraws],
    dims: ImageDims,
    xs: &mut [f32],
) -> Result<()> {
    if st.ops == 0 {
        return Ok(());
    }
    // (B, C, H, W): the source of the ops that read other pixels or images.
    let mut src = vec![0.0f32; xs.len()];
    let mut out_of_place = |xs: &mut [f32], f: &dyn OutOfPlace| -> Result<()> {
        src.copy_from_slice(xs);
        f(&src, xs)
    };
    if st.ops & OP_SCALE != 0 {
        out_of_place(xs, &|s, o| geometric::scale(dims, imgs, s, o))?;
    }
    if st.ops & OP_ROTATE != 0 {
        out_of_place(xs, &|s, o| geometric::rotate(dims, imgs, s, o))?;
    }
    if st.ops & OP_FLIP != 0 {
        shift::flip(dims, imgs, xs)?;
    }
    if st.ops & OP_COLOR != 0 {
        color::color(dims, imgs, p, xs)?;
    }
    if st.ops & OP_CROP != 0 {
        out_of_place(xs, &|s, o| shift::crop(dims, imgs, s, o))?;
    }
    if st.ops & OP_CUTOUT != 0 {
        shift::cutout(dims, imgs, p, xs)?;
    }
    if st.ops & OP_MIXUP != 0 {
        out_of_place(xs, &|s, o| mix::mixup(dims, st, imgs, s, o))?;
    }
    if st.ops & OP_CUTMIX != 0 {
        out_of_place(xs, &|s, o| mix::cutmix(dims, st, imgs, s, o))?;
    }
    Ok(())
}
