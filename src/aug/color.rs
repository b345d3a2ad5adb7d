//! DSA's colour ops (brightness, saturation, contrast, and `color` = the three in that order), in
//! place on x (N, C, H, W), in f32 with DSA's order of operations.

use rayon::prelude::*;

use super::draws::{DsaParams, ImageDraws};
use super::ImageDims;
use crate::error::Result;

/// x += (randb − 0.5)·brightness, per image.
pub fn brightness_image(img: &mut [f32], randb: f32, ratio: f64) {
    let shift = (randb - 0.5) * ratio as f32;
    for v in img.iter_mut() {
        *v += shift;
    }
}

/// x = (x − m_c)·(rands·saturation) + m_c with m_c the mean over channels of each pixel.
pub fn saturation_image(img: &mut [f32], c: usize, plane: usize, rands: f32, ratio: f64) {
    let factor = rands * ratio as f32;
    for p in 0..plane {
        let mut sum = 0.0f32;
        for ch in 0..c {
            sum += img[ch * plane + p];
        }
        let mean = sum / c as f32;
        for ch in 0..c {
            let v = &mut img[ch * plane + p];
            *v = (*v - mean) * factor + mean;
        }
    }
}

/// x = (x − m)·(randc + contrast) + m with m the mean over the whole image (C·H·W). The mean is
/// summed in f64 (PyTorch sums pairwise in f32; both are within 1e-7 of the exact mean).
pub fn contrast_image(img: &mut [f32], randc: f32, ratio: f64) {
    let mean = (img.iter().map(|&v| v as f64).sum::<f64>() / img.len() as f64) as f32;
    let factor = randc + ratio as f32;
    for v in img.iter_mut() {
        *v = (*v - mean) * factor + mean;
    }
}

/// DSA `color` of one image: brightness, then saturation, then contrast.
pub fn color_image(img: &mut [f32], c: usize, plane: usize, d: &ImageDraws, p: &DsaParams) {
    brightness_image(img, d.brightness, p.brightness);
    saturation_image(img, c, plane, d.saturation, p.saturation);
    contrast_image(img, d.contrast, p.contrast);
}

fn per_image(
    dims: ImageDims,
    draws: &[ImageDraws],
    x: &mut [f32],
    what: &str,
    f: impl Fn(&mut [f32], &ImageDraws) + Sync,
) -> Result<()> {
    dims.check(what, x.len())?;
    dims.check_per_image(what, draws.len())?;
    x.par_chunks_mut(dims.image_len())
        .zip(draws.par_iter())
        .for_each(|(img, d)| f(img, d));
    Ok(())
}

/// Brightness on every image of x (N, C, H, W), in place.
pub fn brightness(
    dims: ImageDims,
    draws: &[ImageDraws],
    p: &DsaParams,
    x: &mut [f32],
) -> Result<()> {
    per_image(dims, draws, x, "brightness", |img, d| {
        brightness_image(img, d.brightness, p.brightness)
    })
}

/// Saturation on every image of x (N, C, H, W), in place.
pub fn saturation(
    dims: ImageDims,
    draws: &[ImageDraws],
    p: &DsaParams,
    x: &mut [f32],
) -> Result<()> {
    let plane = dims.h * dims.w;
    per_image(dims, draws, x, "saturation", |img, d| {
        saturation_image(img, dims.c, plane, d.saturation, p.saturation)
    })
}

/// Contrast on every image of x (N, C, H, W), in place.
pub fn contrast(dims: ImageDims, draws: &[ImageDraws], p: &DsaParams, x: &mut [f32]) -> Result<()> {
    per_image(dims, draws, x, "contrast", |img, d| {
        contrast_image(img, d.contrast, p.contrast)
    })
}

/// DSA `color` on every image of x (N, C, H, W), in place.
pub fn color(dims: ImageDims, draws: &[ImageDraws], p: &DsaParams, x: &mut [f32]) -> Result<()> {
    let plane = dims.h * dims.w;
    per_image(dims, draws, x, "color", |img, d| {
        color_image(img, dims.c, plane, d, p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<f32> {
        (0..3 * 4 * 5)
            .map(|i| ((i * 13) % 17) as f32 * 0.25 - 2.0)
            .collect()
    }

    #[test]
    fn neutral_draws_leave_the_image_unchanged() {
        let p = DsaParams::ddranking();
        let x = image();
        // randb 0.5 adds 0; rands 0.5 with saturation 2 multiplies by 1; randc 0.5 with contrast
        // 0.5 multiplies by 1. (x − m)·1 + m can round, so compare within 1 ulp of the values.
        let mut y = x.clone();
        let d = ImageDraws {
            brightness: 0.5,
            saturation: 0.5,
            contrast: 0.5,
            ..Default::default()
        };
        color_image(&mut y, 3, 20, &d, &p);
        for (a, b) in x.iter().zip(&y) {
            assert!(
                (a - b).abs() <= 4.0 * f32::EPSILON * a.abs().max(1.0),
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn saturation_zero_makes_channels_equal_and_contrast_keeps_the_mean() {
        let mut y = image();
        saturation_image(&mut y, 3, 20, 0.0, 2.0);
        for p in 0..20 {
            assert_eq!(y[p], y[20 + p]);
            assert_eq!(y[p], y[40 + p]);
        }
        let mut z = image();
        let before: f64 = z.iter().map(|&v| v as f64).sum::<f64>() / 60.0;
        contrast_image(&mut z, 0.9, 0.5);
        let after: f64 = z.iter().map(|&v| v as f64).sum::<f64>() / 60.0;
        assert!((before - after).abs() < 1e-5, "{before} vs {after}");
    }

    #[test]
    fn brightness_shifts_every_value() {
        let x = image();
        let mut y = x.clone();
        brightness_image(&mut y, 0.75, 1.0);
        for (a, b) in x.iter().zip(&y) {
            assert_eq!(*b, a + 0.25);
        }
    }
}
