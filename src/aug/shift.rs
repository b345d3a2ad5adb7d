//! DSA's pixel-moving ops: flip (mirror the width axis), crop (a translation with zero fill) and
//! cutout (a zeroed square on all channels). Pure copies and zero fills, exact on every backend.

use rayon::prelude::*;

use super::draws::{DsaParams, ImageDraws};
use super::ImageDims;
use crate::error::Result;

/// Mirror each row of one image (C, H, W) in place.
pub fn flip_image(img: &mut [f32], w: usize) {
    for row in img.chunks_mut(w) {
        row.reverse();
    }
}

/// Flip every image of x (N, C, H, W) whose draw says so, in place.
pub fn flip(dims: ImageDims, draws: &[ImageDraws], x: &mut [f32]) -> Result<()> {
    dims.check("flip", x.len())?;
    dims.check_per_image("flip", draws.len())?;
    x.par_chunks_mut(dims.image_len())
        .zip(draws.par_iter())
        .for_each(|(img, d)| {
            if d.flip != 0 {
                flip_image(img, dims.w)
            }
        });
    Ok(())
}

/// DSA crop of one image src (C, H, W) → out (C, H, W): out[c,i,j] = xpad[c, clamp(i+tx+1, 0, H+1),
/// clamp(j+ty+1, 0, W+1)] with xpad the image zero-padded by one pixel, i.e. rows move by −tx and
/// columns by −ty, and pixels shifted in from outside are 0.
pub fn crop_image(src: &[f32], c: usize, h: usize, w: usize, tx: i32, ty: i32, out: &mut [f32]) {
    let plane = h * w;
    for i in 0..h {
        let pi = (i as i64 + tx as i64 + 1).clamp(0, h as i64 + 1);
        for j in 0..w {
            let pj = (j as i64 + ty as i64 + 1).clamp(0, w as i64 + 1);
            let inside = pi >= 1 && pi <= h as i64 && pj >= 1 && pj <= w as i64;
            for ch in 0..c {
                out[ch * plane + i * w + j] = if inside {
                    src[ch * plane + (pi - 1) as usize * w + (pj - 1) as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Crop every image of x (N, C, H, W) into out (N, C, H, W).
pub fn crop(dims: ImageDims, draws: &[ImageDraws], x: &[f32], out: &mut [f32]) -> Result<()> {
    dims.check("crop input", x.len())?;
    dims.check("crop output", out.len())?;
    dims.check_per_image("crop", draws.len())?;
    let img = dims.image_len();
    out.par_chunks_mut(img)
        .zip(x.par_chunks(img))
        .zip(draws.par_iter())
        .for_each(|((o, s), d)| crop_image(s, dims.c, dims.h, dims.w, d.crop_x, d.crop_y, o));
    Ok(())
}

/// The zeroed rows [r0, r1) and columns [c0, c1) of DSA's cutout: k = int(len·ratio + 0.5), the
/// cells clamp(offset − ⌊k/2⌋ + [0, k), 0, len − 1) (clamping makes them one contiguous range).
pub fn cutout_range(offset: i32, k: i32, len: usize) -> (usize, usize) {
    if k <= 0 {
        return (0, 0);
    }
    let last = len as i64 - 1;
    let lo = (offset as i64 - (k / 2) as i64).clamp(0, last);
    let hi = (offset as i64 - (k / 2) as i64 + k as i64 - 1).clamp(0, last);
    (lo as usize, hi as usize + 1)
}

/// The cutout mask (H, W) of one image: 1, 0 inside the square.
pub fn cutout_mask(d: &ImageDraws, p: &DsaParams, h: usize, w: usize, mask: &mut [f32]) {
    let (r0, r1) = cutout_range(d.cutout_x, p.cutout_size(h), h);
    let (c0, c1) = cutout_range(d.cutout_y, p.cutout_size(w), w);
    for i in 0..h {
        for j in 0..w {
            mask[i * w + j] = if (r0..r1).contains(&i) && (c0..c1).contains(&j) {
                0.0
            } else {
                1.0
            };
        }
    }
}

/// Zero the cutout square of one image (C, H, W) on all channels, in place.
pub fn cutout_image(img: &mut [f32], c: usize, h: usize, w: usize, d: &ImageDraws, p: &DsaParams) {
    let (r0, r1) = cutout_range(d.cutout_x, p.cutout_size(h), h);
    let (c0, c1) = cutout_range(d.cutout_y, p.cutout_size(w), w);
    for ch in 0..c {
        for i in r0..r1 {
            let row = (ch * h + i) * w;
            img[row + c0..row + c1].fill(0.0);
        }
    }
}

/// Cutout on every image of x (N, C, H, W), in place.
pub fn cutout(dims: ImageDims, draws: &[ImageDraws], p: &DsaParams, x: &mut [f32]) -> Result<()> {
    dims.check("cutout", x.len())?;
    dims.check_per_image("cutout", draws.len())?;
    x.par_chunks_mut(dims.image_len())
        .zip(draws.par_iter())
        .for_each(|(img, d)| cutout_image(img, dims.c, dims.h, dims.w, d, p));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(dims: ImageDims) -> Vec<f32> {
        (0..dims.len()).map(|i| i as f32 + 1.0).collect()
    }

    #[test]
    fn flip_twice_is_identity_and_flip_once_mirrors() {
        let dims = ImageDims {
            n: 3,
            c: 2,
            h: 4,
            w: 5,
        };
        let x = batch(dims);
        let draws = vec![
            ImageDraws {
                flip: 1,
                ..Default::default()
            };
            3
        ];
        let mut y = x.clone();
        flip(dims, &draws, &mut y).unwrap();
        assert_eq!(y[0], x[4]);
        assert_ne!(y, x);
        flip(dims, &draws, &mut y).unwrap();
        assert_eq!(y, x);
        let keep = vec![ImageDraws::default(); 3];
        flip(dims, &keep, &mut y).unwrap();
        assert_eq!(y, x);
    }

    #[test]
    fn crop_by_zero_is_identity_and_shifts_fill_zeros() {
        let dims = ImageDims {
            n: 2,
            c: 3,
            h: 6,
            w: 7,
        };
        let x = batch(dims);
        let mut y = vec![0.0; dims.len()];
        crop(dims, &[ImageDraws::default(); 2], &x, &mut y).unwrap();
        assert_eq!(y, x);
        // tx = 2: out row i reads row i + 2, the last two rows are zero; ty = −1: out column j
        // reads column j − 1, column 0 is zero.
        let d = ImageDraws {
            crop_x: 2,
            crop_y: -1,
            ..Default::default()
        };
        crop(dims, &[d, d], &x, &mut y).unwrap();
        for i in 0..6 {
            for j in 0..7 {
                let got = y[i * 7 + j];
                let want = if i + 2 < 6 && j >= 1 {
                    x[(i + 2) * 7 + j - 1]
                } else {
                    0.0
                };
                assert_eq!(got, want, "pixel ({i}, {j})");
            }
        }
        // A shift beyond the image leaves only zeros.
        let far = ImageDraws {
            crop_x: 9,
            ..Default::default()
        };
        crop(dims, &[far, far], &x, &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn cutout_zeroes_k_by_k_inside_and_less_at_the_border() {
        let p = DsaParams::ddranking();
        let (h, w) = (32, 32);
        let k = p.cutout_size(h) as usize;
        assert_eq!(k, 16);
        let mut mask = vec![0.0; h * w];
        let count = |m: &[f32]| m.iter().filter(|&&v| v == 0.0).count();
        let centre = ImageDraws {
            cutout_x: 16,
            cutout_y: 16,
            ..Default::default()
        };
        cutout_mask(&centre, &p, h, w, &mut mask);
        assert_eq!(count(&mask), k * k);
        // Offset 0: rows 0..8 only (the other half is clamped onto row 0).
        let corner = ImageDraws {
            cutout_x: 0,
            cutout_y: 0,
            ..Default::default()
        };
        cutout_mask(&corner, &p, h, w, &mut mask);
        assert_eq!(count(&mask), (k / 2) * (k / 2));
        // Offset 32 (allowed for even k): rows 24..31 plus the clamp onto row 31.
        let far = ImageDraws {
            cutout_x: 32,
            cutout_y: 32,
            ..Default::default()
        };
        cutout_mask(&far, &p, h, w, &mut mask);
        assert_eq!(count(&mask), (k / 2) * (k / 2));
        // The image op zeroes exactly the mask's cells on every channel.
        let dims = ImageDims { n: 1, c: 3, h, w };
        let mut x = batch(dims);
        cutout_mask(&centre, &p, h, w, &mut mask);
        cutout(dims, &[centre], &p, &mut x).unwrap();
        for ch in 0..3 {
            for q in 0..h * w {
                assert_eq!(x[ch * h * w + q] == 0.0, mask[q] == 0.0);
            }
        }
    }
}
