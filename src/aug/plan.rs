//! One cohort step of augmentation: which augmentation a cohort uses ([`AugPlan`]), the draws of
//! every student for one step (sampled on the host from each student's [`DrawKey`]) and their
//! application to the cohort's batch x (S, B, C, H, W). A backend's `augment` is a thin call to
//! [`apply`] (CPU) or a kernel reading the same [`BatchDraws`] (CUDA).
//!
//! The backend method this is written for is `Backend::augment(plan, draws, dims, x)`.
//! CPU: `aug::apply(plan, draws, dims, x)`. CUDA: upload `draws.students` (S × 28 bytes) and
//! `draws.images` (S·B × 52 bytes), both `#[repr(C)]` with 4-byte fields, and run one kernel per
//! op bit in the order of [`apply_student`].
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

/// The draws of a step fit a batch of `dims`: one entry per student and per image, only known op
/// bits, mix partners inside their student's batch, CutMix boxes inside the image. Every backend
/// checks this before augmenting, so bad draws are one error on every device.
pub fn check_draws(draws: &BatchDraws, dims: BatchDims) -> Result<()> {
    if draws.students.len() != dims.students || draws.images.len() != dims.students * dims.batch {
        return Err(Error::shape(format!(
            "augment: draws for {} students and {} images, the batch has {} × {}",
            draws.students.len(),
            draws.images.len(),
            dims.students,
            dims.batch
        )));
    }
    let known = DSA_OPS
        .iter()
        .fold(OP_MIXUP | OP_CUTMIX, |acc, op| acc | op);
    for (s, st) in draws.students.iter().enumerate() {
        if st.ops & !known != 0 {
            return Err(Error::shape(format!(
                "augment: student {s} has unknown op bits {:#x}",
                st.ops & !known
            )));
        }
        if st.ops & (OP_MIXUP | OP_CUTMIX) == 0 {
            continue;
        }
        let images = &draws.images[s * dims.batch..(s + 1) * dims.batch];
        if let Some((b, d)) = images
            .iter()
            .enumerate()
            .find(|(_, d)| d.partner as usize >= dims.batch)
        {
            return Err(Error::shape(format!(
                "augment: mix partner of student {s} image {b} is {} but the batch has {} images",
                d.partner, dims.batch
            )));
        }
        let in_range = |lo: i32, hi: i32, len: usize| 0 <= lo && lo <= hi && hi as usize <= len;
        if st.ops & OP_CUTMIX != 0
            && !(in_range(st.box_r0, st.box_r1, dims.h) && in_range(st.box_c0, st.box_c1, dims.w))
        {
            return Err(Error::shape(format!(
                "augment: cutmix box of student {s} rows {}..{} columns {}..{} outside a {}×{} image",
                st.box_r0, st.box_r1, st.box_c0, st.box_c1, dims.h, dims.w
            )));
        }
    }
    Ok(())
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
    check_draws(draws, dims)?;
    let params = dsa_params(plan);
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

/// The DSA strengths the ops read: the plan's for DSA, else DD-Ranking's defaults (unused then).
pub fn dsa_params(plan: &AugPlan) -> DsaParams {
    match plan {
        AugPlan::Dsa { params, .. } => *params,
        _ => DsaParams::ddranking(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(role: u32, step: u32) -> DrawKey {
        DrawKey {
            seed: 7,
            run: 1,
            role,
            step,
        }
    }

    fn batch(dims: BatchDims) -> Vec<f32> {
        (0..dims.len())
            .map(|i| ((i * 31) % 97) as f32 / 20.0 - 2.4)
            .collect()
    }

    fn dsa(mode: DsaMode) -> AugPlan {
        AugPlan::Dsa {
            params: DsaParams::ddranking(),
            mode,
        }
    }

    #[test]
    fn sampled_dsa_draws_lie_in_their_ranges() {
        let p = DsaParams::ddranking();
        let dims = BatchDims {
            students: 4,
            batch: 64,
            c: 3,
            h: 32,
            w: 32,
        };
        let max_angle = (15.0f64).to_radians();
        let mut flips = 0;
        let mut total = 0;
        for step in 0..20 {
            let keys: Vec<Option<DrawKey>> = (0..4).map(|r| Some(key(r, step))).collect();
            let d = sample(&dsa(DsaMode::All), &keys, dims).unwrap();
            for img in &d.images {
                for s in [img.scale_x, img.scale_y] {
                    assert!((1.0 / 1.2 - 1e-6..1.2).contains(&(s as f64)), "scale {s}");
                }
                let angle = (img.rot_sin as f64).atan2(img.rot_cos as f64);
                assert!(angle.abs() <= max_angle + 1e-6, "angle {angle}");
                assert!(((img.rot_cos as f64).hypot(img.rot_sin as f64) - 1.0).abs() < 1e-6);
                for u in [img.brightness, img.saturation, img.contrast] {
                    assert!((0.0..1.0).contains(&u));
                }
                assert!(
                    img.crop_x.abs() <= p.crop_shift(32) && img.crop_y.abs() <= p.crop_shift(32)
                );
                // k = 16 is even, so offsets lie in [0, 32].
                assert!((0..=32).contains(&img.cutout_x) && (0..=32).contains(&img.cutout_y));
                flips += img.flip as usize;
                total += 1;
            }
            assert!(d.students.iter().all(|s| s.ops == 0b11_1111));
        }
        // Flip probability 0.5 over 5120 images: std ≈ 36.
        assert!(
            (flips as i64 - total as i64 / 2).abs() < 250,
            "{flips} flips of {total}"
        );
    }

    #[test]
    fn mode_s_picks_each_op_about_equally() {
        let dims = BatchDims {
            students: 1,
            batch: 1,
            c: 1,
            h: 8,
            w: 8,
        };
        let mut counts = [0usize; 6];
        for step in 0..6000 {
            let d = sample(&dsa(DsaMode::Single), &[Some(key(0, step))], dims).unwrap();
            let op = d.students[0].ops;
            let at = DSA_OPS.iter().position(|&o| o == op).expect("one DSA op");
            counts[at] += 1;
        }
        // 1000 expected per op, std ≈ 29.
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn mix_draws_are_permutations_with_weights_summing_to_one() {
        let dims = BatchDims {
            students: 3,
            batch: 16,
            c: 3,
            h: 32,
            w: 32,
        };
        let keys: Vec<Option<DrawKey>> = (0..3).map(|r| Some(key(r, 5))).collect();
        for plan in [AugPlan::Mixup { alpha: 0.8 }, AugPlan::Cutmix { beta: 1.0 }] {
            let d = sample(&plan, &keys, dims).unwrap();
            for s in 0..3 {
                let mut p: Vec<u32> = d.images[s * 16..(s + 1) * 16]
                    .iter()
                    .map(|i| i.partner)
                    .collect();
                p.sort_unstable();
                assert_eq!(p, (0..16).collect::<Vec<u32>>());
                let st = d.students[s];
                if let AugPlan::Mixup { .. } = plan {
                    assert!((st.mix_self + st.mix_other - 1.0).abs() < 1e-6);
                    assert!((0.0..=1.0).contains(&st.mix_self));
                } else {
                    assert!(0 <= st.box_r0 && st.box_r0 <= st.box_r1 && st.box_r1 <= 32);
                    assert!(0 <= st.box_c0 && st.box_c0 <= st.box_c1 && st.box_c1 <= 32);
                }
            }
        }
    }

    #[test]
    fn a_student_gets_the_same_result_alone_or_in_a_cohort() {
        // Students' keys, not their position in the cohort, decide their draws.
        let one = BatchDims {
            students: 1,
            batch: 5,
            c: 3,
            h: 12,
            w: 10,
        };
        let three = BatchDims { students: 3, ..one };
        let keys = [Some(key(4, 9)), None, Some(key(2, 9))];
        for plan in [
            dsa(DsaMode::All),
            dsa(DsaMode::Single),
            AugPlan::Mixup { alpha: 0.5 },
            AugPlan::Cutmix { beta: 1.0 },
        ] {
            let mut x = batch(three);
            let original = x.clone();
            let d = sample(&plan, &keys, three).unwrap();
            apply(&plan, &d, three, &mut x).unwrap();
            let per = one.len();
            for (s, k) in keys.iter().enumerate() {
                let mut alone = original[s * per..(s + 1) * per].to_vec();
                let da = sample(&plan, &[*k], one).unwrap();
                apply(&plan, &da, one, &mut alone).unwrap();
                assert_eq!(
                    alone,
                    x[s * per..(s + 1) * per],
                    "plan {plan:?} student {s}"
                );
            }
            // The student without a key is untouched; the others changed.
            assert_eq!(x[per..2 * per], original[per..2 * per]);
            assert_ne!(x[..per], original[..per], "plan {plan:?}");
        }
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let dims = BatchDims {
            students: 2,
            batch: 3,
            c: 1,
            h: 4,
            w: 4,
        };
        assert!(sample(&AugPlan::None, &[None], dims).is_err());
        let d = sample(&AugPlan::None, &[None, None], dims).unwrap();
        let mut x = vec![0.0; dims.len() - 1];
        assert!(apply(&AugPlan::None, &d, dims, &mut x).is_err());
    }

    #[test]
    fn bad_draws_are_one_error_before_any_op_runs() {
        let dims = BatchDims {
            students: 2,
            batch: 3,
            c: 1,
            h: 4,
            w: 5,
        };
        let keys = [Some(key(0, 1)), Some(key(1, 1))];
        let plan = AugPlan::Cutmix { beta: 1.0 };
        let good = sample(&plan, &keys, dims).unwrap();
        assert!(check_draws(&good, dims).is_ok());
        let mut partner = good.clone();
        partner.images[4].partner = 3;
        let mut boxed = good.clone();
        boxed.students[1].box_c1 = 6;
        let mut unknown = good.clone();
        unknown.students[0].ops |= 1 << 9;
        for (what, bad) in [("partner", partner), ("box", boxed), ("op bits", unknown)] {
            let mut x = batch(dims);
            let before = x.clone();
            assert!(apply(&plan, &bad, dims, &mut x).is_err(), "{what}");
            assert_eq!(x, before, "{what}: nothing may change");
        }
    }
}
