//! DD-Ranking's `random_data_format: image`: random subsets are written as JPEG files and read
//! back before training (`get_random_data_path_from_cifar`: de-normalise, clamp to [0, 1],
//! torchvision `ToPILImage` — `x.mul(255).byte()`, a truncation — then PIL's `save(".jpg")` at its
//! default quality 75). This module does the same round trip in memory.
//!
//! Residual difference to PIL (README "Deliberate differences"): the `image` crate's encoder uses
//! the same libjpeg quality scaling and standard tables, but keeps chroma at full resolution
//! (4:4:4) where PIL subsamples it (4:2:0), and its DCT / decoder round differently; pixel values
//! differ by a few levels, mostly in colour.

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageFormat};

use crate::data::Norm;
use crate::error::{Error, Result};

/// PIL's default JPEG quality, which DD-Ranking's `image_pil.save(path)` uses.
pub const REFERENCE_JPEG_QUALITY: u8 = 75;

/// [0, 1] pixels to bytes as torchvision's `ToPILImage` does for float tensors: ×255, truncated.
/// A tiny epsilon keeps exact byte values: k/255 in f32 times 255 can land just below k. (The
/// reference de-normalises in f32 first and then truncates, so it sometimes gives k − 1 there;
/// ddr-fast gives k.)
fn to_byte(x: f32) -> u8 {
    (x.clamp(0.0, 1.0) * 255.0 + 1e-4).floor().min(255.0) as u8
}

/// One (C, H, W) image in [0, 1] through a JPEG file at `quality` and back, in place.
/// C must be 1 (grey) or 3 (RGB).
pub fn round_trip_pixels(img: &mut [f32], channels: usize, size: usize, quality: u8) -> Result<()> {
    let plane = size * size;
    if img.len() != channels * plane || !matches!(channels, 1 | 3) {
        return Err(Error::shape(format!(
            "JPEG round trip: {} values for a {channels}×{size}×{size} image (1 or 3 channels)",
            img.len()
        )));
    }
    // (H, W, C) interleaved bytes, as image files hold them.
    let mut bytes = vec![0u8; channels * plane];
    for c in 0..channels {
        for p in 0..plane {
            bytes[p * channels + c] = to_byte(img[c * plane + p]);
        }
    }
    let color = if channels == 3 {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    };
    let mut file = Vec::new();
    JpegEncoder::new_with_quality(&mut file, quality)
        .encode(&bytes, size as u32, size as u32, color)
        .map_err(|e| Error::config(format!("JPEG round trip: encoding failed: {e}")))?;
    let decoded = image::load_from_memory_with_format(&file, ImageFormat::Jpeg)
        .map_err(|e| Error::config(format!("JPEG round trip: decoding failed: {e}")))?;
    let back = if channels == 3 {
        decoded.to_rgb8().into_raw()
    } else {
        decoded.to_luma8().into_raw()
    };
    for c in 0..channels {
        for p in 0..plane {
            img[c * plane + p] = f32::from(back[p * channels + c]) / 255.0;
        }
    }
    Ok(())
}

/// Normalised images (N, C, H, W) through DD-Ranking's JPEG files and back: un-normalise with
/// `norm`, round-trip each image at quality 75, normalise again.
pub fn round_trip_normalised(
    images: &mut [f32],
    channels: usize,
    size: usize,
    norm: &Norm,
) -> Result<()> {
    let plane = size * size;
    let per = channels * plane;
    if per == 0 || images.len() % per != 0 {
        return Err(Error::shape(format!(
            "JPEG round trip: {} values are not whole {channels}×{size}×{size} images",
            images.len()
        )));
    }
    norm.invert(images, channels, plane);
    for img in images.chunks_mut(per) {
        round_trip_pixels(img, channels, size, REFERENCE_JPEG_QUALITY)?;
    }
    norm.apply(images, channels, plane);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth image survives JPEG q75 within a few levels; a step between two halves rings.
    #[test]
    fn round_trip_is_lossy_but_close() {
        let size = 32;
        let plane = size * size;
        let mut img: Vec<f32> = (0..3 * plane)
            .map(|i| {
                let (c, p) = (i / plane, i % plane);
                let (y, x) = (p / size, p % size);
                ((x + 2 * y + 40 * c) % 256) as f32 / 255.0
            })
            .collect();
        let orig = img.clone();
        round_trip_pixels(&mut img, 3, size, REFERENCE_JPEG_QUALITY).unwrap();
        let diffs: Vec<f32> = img.iter().zip(&orig).map(|(a, b)| (a - b).abs()).collect();
        let max = diffs.iter().cloned().fold(0.0, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        assert!(
            max > 0.0,
            "JPEG q75 left the image unchanged: not a round trip"
        );
        // q75 on a smooth gradient: mean error well under 2 levels.
        assert!(mean < 2.0 / 255.0, "mean error {mean}");
        // Every value is a byte again.
        assert!(img
            .iter()
            .all(|v| (v * 255.0 - (v * 255.0).round()).abs() < 1e-3));
    }

    #[test]
    fn exact_bytes_are_kept_by_the_truncation() {
        for k in 0..=255u8 {
            assert_eq!(to_byte(f32::from(k) / 255.0), k);
        }
    }

    #[test]
    fn normalised_round_trip_restores_the_space() {
        let norm = Norm::cifar();
        let size = 8;
        let mut px: Vec<f32> = (0..2 * 3 * size * size)
            .map(|i| (i % 97) as f32 / 96.0)
            .collect();
        let mut x = px.clone();
        norm.apply(&mut x, 3, size * size);
        round_trip_normalised(&mut x, 3, size, &norm).unwrap();
        round_trip_pixels(&mut px[..3 * size * size], 3, size, 75).unwrap();
        round_trip_pixels(&mut px[3 * size * size..], 3, size, 75).unwrap();
        norm.apply(&mut px, 3, size * size);
        for (a, b) in x.iter().zip(&px) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(round_trip_normalised(&mut x[..5], 3, size, &norm).is_err());
    }
}
