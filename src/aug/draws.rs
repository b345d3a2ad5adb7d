//! The explicit random draws of one augmented batch, and how they are sampled from the
//! counter-based generator. Ops take these structs instead of a generator, so the golden tests feed
//! PyTorch's draws and a GPU gets the host's draws (a few dozen bytes per image) per step.
//!
//! The structs are `#[repr(C)]` and hold only 4-byte fields so the CUDA side can declare the same
//! struct and read the uploaded array directly.

use super::rng::{DrawKey, Purpose};

/// Bits of [`StudentDraws::ops`]; the ops run in this order (DSA mode M's order, then the mixes).
pub const OP_SCALE: u32 = 1 << 0;
pub const OP_ROTATE: u32 = 1 << 1;
pub const OP_FLIP: u32 = 1 << 2;
pub const OP_COLOR: u32 = 1 << 3;
pub const OP_CROP: u32 = 1 << 4;
pub const OP_CUTOUT: u32 = 1 << 5;
pub const OP_MIXUP: u32 = 1 << 6;
pub const OP_CUTMIX: u32 = 1 << 7;

/// DSA's choices in mode S, in DD-Ranking's `ops_in_S_mode_order`.
pub const DSA_OPS: [u32; 6] = [OP_SCALE, OP_ROTATE, OP_FLIP, OP_COLOR, OP_CROP, OP_CUTOUT];

/// DSA strengths (DD-Ranking's `aug_params`; see [`DsaParams::ddranking`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DsaParams {
    /// sx, sy ~ U(1/scale, scale).
    pub scale: f64,
    /// Rotation angle ~ U(−rotate, rotate) degrees.
    pub rotate: f64,
    /// Probability of mirroring the width axis.
    pub flip: f64,
    /// x += (u − 0.5)·brightness.
    pub brightness: f64,
    /// x = (x − m_c)·(u·saturation) + m_c.
    pub saturation: f64,
    /// x = (x − m)·(u + contrast) + m.
    pub contrast: f64,
    /// Shift range as a fraction of the side.
    pub crop: f64,
    /// Cutout side as a fraction of the side.
    pub cutout: f64,
}

impl DsaParams {
    /// `ddranking` 0.2.0's default `aug_params` (also the values of the golden file).
    pub fn ddranking() -> Self {
        DsaParams {
            scale: 1.2,
            rotate: 15.0,
            flip: 0.5,
            brightness: 1.0,
            saturation: 2.0,
            contrast: 0.5,
            crop: 0.125,
            cutout: 0.5,
        }
    }

    /// Largest crop shift along a side of `len` pixels: `int(len·crop + 0.5)` (DSA's rounding).
    pub fn crop_shift(&self, len: usize) -> i32 {
        (len as f64 * self.crop + 0.5) as i32
    }

    /// Cutout side along a side of `len` pixels: `int(len·cutout + 0.5)`.
    pub fn cutout_size(&self, len: usize) -> i32 {
        (len as f64 * self.cutout + 0.5) as i32
    }
}

/// Per-image draws. Fields an op does not use are ignored (mode S fills only the chosen op's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ImageDraws {
    /// Scale factors for x (width) and y (height).
    pub scale_x: f32,
    pub scale_y: f32,
    /// cos and sin of the rotation angle, computed once on the host in f32.
    pub rot_cos: f32,
    pub rot_sin: f32,
    /// 1: mirror the width axis.
    pub flip: u32,
    /// The raw uniforms of brightness, saturation, contrast (DSA's randb, rands, randc).
    pub brightness: f32,
    pub saturation: f32,
    pub contrast: f32,
    /// Crop translation: `crop_x` shifts rows, `crop_y` columns (DSA's translation_x / _y).
    pub crop_x: i32,
    pub crop_y: i32,
    /// Cutout centre row and column (DSA's offset_x / offset_y).
    pub cutout_x: i32,
    pub cutout_y: i32,
    /// Mixup / CutMix: the image of the same student's batch mixed in (x[perm[b]]).
    pub partner: u32,
}

/// Per-student draws of one step.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StudentDraws {
    /// OP_* bits: which ops run on this student's batch (0: not augmented).
    pub ops: u32,
    /// Mixup weights f32(λ) and f32(1 − λ) (1 − λ taken in f64 first, as PyTorch does).
    pub mix_self: f32,
    pub mix_other: f32,
    /// CutMix box: rows [box_r0, box_r1), columns [box_c0, box_c1).
    pub box_r0: i32,
    pub box_r1: i32,
    pub box_c0: i32,
    pub box_c1: i32,
}

/// All draws of one step of a cohort.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchDraws {
    /// (S)
    pub students: Vec<StudentDraws>,
    /// (S, B)
    pub images: Vec<ImageDraws>,
}

/// Mixup weights as PyTorch computes `lam * x + (1 - lam) * x[perm]` with a float64 λ.
pub fn mix_weights(lam: f64) -> (f32, f32) {
    (lam as f32, (1.0 - lam) as f32)
}

/// CutMix box sides along rows and columns: int(len·√(1 − λ)) (DD-Ranking's cut_w, cut_h).
pub fn cutmix_sides(lam: f64, rows: usize, cols: usize) -> (i32, i32) {
    let cut_rat = (1.0 - lam).sqrt();
    (
        (rows as f64 * cut_rat) as i32,
        (cols as f64 * cut_rat) as i32,
    )
}

/// The CutMix box of `ddranking.aug.Cutmix.rand_bbox` for an image of `rows` × `cols`: the side
/// along rows is int(rows·√(1−λ)), the centre (cx, cy) is uniform; returns (r0, r1, c0, c1).
/// DD-Ranking names rows "W" (size[2]) and columns "H" (size[3]); the box is the same.
pub fn cutmix_box(lam: f64, rows: usize, cols: usize, cx: i32, cy: i32) -> (i32, i32, i32, i32) {
    let (cut_r, cut_c) = cutmix_sides(lam, rows, cols);
    let r0 = (cx - cut_r / 2).clamp(0, rows as i32);
    let r1 = (cx + cut_r / 2).clamp(0, rows as i32);
    let c0 = (cy - cut_c / 2).clamp(0, cols as i32);
    let c1 = (cy + cut_c / 2).clamp(0, cols as i32);
    (r0, r1, c0, c1)
}

/// Scale factors from two uniforms: `u·(r − 1/r) + 1/r` in f32, as DSA's `rand_scale`.
pub fn scale_from_uniform(u: f32, ratio: f64) -> f32 {
    let span = (ratio - 1.0 / ratio) as f32;
    let lo = (1.0 / ratio) as f32;
    u * span + lo
}

/// Rotation angle in radians from a uniform: `(u − 0.5)·2·ratio/180·π` step by step in f32, as
/// DSA's `rand_rotate`.
pub fn angle_from_uniform(u: f32, ratio: f64) -> f32 {
    (u - 0.5) * 2.0 * ratio as f32 / 180.0 * std::f32::consts::PI
}

/// DSA draws of image `b` of a batch of `h` × `w` images, for every DSA op (mode M uses all;
/// mode S uses the chosen one). Each field has its own purpose stream, word `b`.
pub fn sample_image(key: &DrawKey, b: u32, p: &DsaParams, h: usize, w: usize) -> ImageDraws {
    let angle = angle_from_uniform(key.uniform_f32(Purpose::Rotate, b), p.rotate);
    let (sx, sy) = (p.crop_shift(h), p.crop_shift(w));
    let (kx, ky) = (p.cutout_size(h), p.cutout_size(w));
    ImageDraws {
        scale_x: scale_from_uniform(key.uniform_f32(Purpose::ScaleX, b), p.scale),
        scale_y: scale_from_uniform(key.uniform_f32(Purpose::ScaleY, b), p.scale),
        rot_cos: angle.cos(),
        rot_sin: angle.sin(),
        flip: ((key.uniform_f32(Purpose::Flip, b) as f64) < p.flip) as u32,
        brightness: key.uniform_f32(Purpose::Brightness, b),
        saturation: key.uniform_f32(Purpose::Saturation, b),
        contrast: key.uniform_f32(Purpose::Contrast, b),
        crop_x: key.int_range(Purpose::CropX, b, -sx, sx + 1),
        crop_y: key.int_range(Purpose::CropY, b, -sy, sy + 1),
        cutout_x: key.int_range(Purpose::CutoutX, b, 0, h as i32 + (1 - kx % 2)),
        cutout_y: key.int_range(Purpose::CutoutY, b, 0, w as i32 + (1 - ky % 2)),
        partner: b,
    }
}

/// The mode-S op of one student's batch: uniform over [`DSA_OPS`] (word 0 of `OpChoice`).
pub fn sample_dsa_op(key: &DrawKey) -> u32 {
    DSA_OPS[key.below(Purpose::OpChoice, 0, DSA_OPS.len() as u32) as usize]
}

/// A Mixup draw for one student's batch of `batch` images: λ ~ Beta(alpha, alpha) and a
/// permutation. Returns the student draws and the partners (B).
pub fn sample_mixup(key: &DrawKey, alpha: f64, batch: usize) -> (StudentDraws, f64, Vec<u32>) {
    let lam = key.beta_symmetric(Purpose::MixLambda, alpha);
    let perm = key.permutation(Purpose::MixPerm, batch);
    let (mix_self, mix_other) = mix_weights(lam);
    (
        StudentDraws {
            ops: OP_MIXUP,
            mix_self,
            mix_other,
            ..Default::default()
        },
        lam,
        perm,
    )
}

/// A CutMix draw: λ ~ Beta(beta, beta), a permutation, a centre uniform over the image.
pub fn sample_cutmix(
    key: &DrawKey,
    beta: f64,
    batch: usize,
    h: usize,
    w: usize,
) -> (StudentDraws, f64, Vec<u32>) {
    let lam = key.beta_symmetric(Purpose::MixLambda, beta);
    let perm = key.permutation(Purpose::MixPerm, batch);
    let cx = key.below(Purpose::CutCentre, 0, h as u32) as i32;
    let cy = key.below(Purpose::CutCentre, 1, w as u32) as i32;
    let (box_r0, box_r1, box_c0, box_c1) = cutmix_box(lam, h, w, cx, cy);
    let d = StudentDraws {
        ops: OP_CUTMIX,
        box_r0,
        box_r1,
        box_c0,
        box_c1,
        ..Default::default()
    };
    (d, lam, perm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_structs_have_the_layout_the_device_side_declares() {
        // 13 and 7 four-byte fields, no padding: the CUDA structs must match.
        assert_eq!(std::mem::size_of::<ImageDraws>(), 52);
        assert_eq!(std::mem::size_of::<StudentDraws>(), 28);
    }

    #[test]
    fn cutmix_box_follows_rand_bbox() {
        // λ = 0.75: √(1 − λ) = 0.5, sides 16 (rows) and 8 (columns) of a 32 × 16 image.
        assert_eq!(cutmix_sides(0.75, 32, 16), (16, 8));
        // Centre (0, 15): rows clip(−8, 0) .. 8, columns 11 .. clip(19, 16).
        assert_eq!(cutmix_box(0.75, 32, 16, 0, 15), (0, 8, 11, 16));
        // λ = 1: empty box.
        let (r0, r1, c0, c1) = cutmix_box(1.0, 32, 32, 5, 6);
        assert_eq!((r1 - r0, c1 - c0), (0, 0));
    }

    #[test]
    fn scale_and_angle_conversions_hit_their_ends() {
        assert!((scale_from_uniform(0.0, 1.2) - (1.0 / 1.2) as f32).abs() < 1e-7);
        assert!((scale_from_uniform(1.0, 1.2) - 1.2).abs() < 1e-6);
        assert!((angle_from_uniform(0.0, 15.0) + 15f32.to_radians()).abs() < 1e-6);
        assert_eq!(angle_from_uniform(0.5, 15.0), 0.0);
        let (a, b) = mix_weights(0.3);
        assert_eq!((a, b), (0.3f32, 0.7f32));
    }
}
