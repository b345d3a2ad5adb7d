//! torchvision-style train transforms for DD-Ranking's `custom_train_trans` (issue #9 item 5):
//! RandomResizedCrop (torchvision's sampler: 10 tries of area fraction ~ U(scale) and log aspect
//! ~ U(log ratio), then the centre-crop fallback; bilinear resize with antialias as torchvision
//! does on tensors, [`super::tv_resize`]), RandomHorizontalFlip, RandomCrop with zero padding, and
//! Normalize. Every draw comes from the keyed counter RNG DSA uses ([`DrawKey`]), so a student's
//! transforms depend only on (seed, run, role, step, image index, stage) and runs reproduce.
//!
//! Word index of a draw: `(b·MAX_STAGES + stage)·16 + k` for image `b` of the batch, transform
//! number `stage` in the list and try `k` (RandomResizedCrop) — so adding a stage or an image never
//! shifts another's draws.

use super::rng::{DrawKey, Purpose};
use super::tv_resize::resize_bilinear_aa;
use crate::error::{Error, Result};

/// Stages a pipeline may hold (the draw index reserves room for this many).
pub const MAX_STAGES: usize = 16;
/// Words of one transform's draws in a table ([`TvTransform::draw`]).
pub const DRAW_WORDS: usize = 4;
/// torchvision's RandomResizedCrop tries before the centre-crop fallback.
pub const RRC_TRIES: usize = 10;

/// One torchvision transform with its settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum TvTransform {
    /// `RandomResizedCrop(size, scale, ratio)`: output size × size.
    RandomResizedCrop {
        size: usize,
        scale: (f64, f64),
        ratio: (f64, f64),
    },
    /// `RandomHorizontalFlip(p)`.
    RandomHorizontalFlip { p: f64 },
    /// `RandomCrop(size, padding)`, zero (constant) padding on all four sides.
    RandomCrop { size: usize, padding: usize },
    /// `Normalize(mean, std)`: (x − mean[c]) / std[c] per channel.
    Normalize { mean: Vec<f32>, std: Vec<f32> },
}

/// A crop box in the (possibly padded) input: top row, left column, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub h: usize,
    pub w: usize,
}

/// Python's `int(round(x))` for the non-negative values the sampler rounds (ties to even).
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// RandomResizedCrop's size choice given its draws: try k uses `area_frac[k]` (the U(scale) value)
/// and `aspect[k]` (exp of the U(log ratio) value). Returns (h, w) and the accepted try, or the
/// centre-crop fallback's (h, w) and None — torchvision's `get_params` line by line.
pub fn rrc_size(
    height: usize,
    width: usize,
    ratio: (f64, f64),
    tries: impl IntoIterator<Item = (f64, f64)>,
) -> (usize, usize, Option<usize>) {
    let area = (height * width) as f64;
    for (k, (frac, aspect)) in tries.into_iter().take(RRC_TRIES).enumerate() {
        let target = area * frac;
        let w = py_round((target * aspect).sqrt());
        let h = py_round((target / aspect).sqrt());
        if 0 < w && w as usize <= width && 0 < h && h as usize <= height {
            return (h as usize, w as usize, Some(k));
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (lo, hi) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (h, w) = if in_ratio < lo {
        (py_round(width as f64 / lo) as usize, width)
    } else if in_ratio > hi {
        (height, py_round(height as f64 * hi) as usize)
    } else {
        (height, width)
    };
    (h.min(height), w.min(width), None)
}

/// The draw index of image `b`, stage `stage`, sub-draw `k`.
fn index(b: usize, stage: usize, k: usize) -> u32 {
    ((b * MAX_STAGES + stage) * 16 + k) as u32
}

impl TvTransform {
    /// Output (H, W) for an input of (H, W); an error when the input cannot take the transform.
    pub fn out_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        match self {
            TvTransform::RandomResizedCrop { size, .. } => Ok((*size, *size)),
            TvTransform::RandomCrop { size, padding } => {
                if h + 2 * padding < *size || w + 2 * padding < *size {
                    return Err(Error::config(format!(
                        "RandomCrop({size}, padding={padding}) is larger than the {h}×{w} image plus padding"
                    )));
                }
                Ok((*size, *size))
            }
            _ => Ok((h, w)),
        }
    }

    /// RandomResizedCrop's box on an h × w image, drawn from `key` for image `b` at `stage`.
    pub fn rrc_box(
        &self,
        key: &DrawKey,
        b: usize,
        stage: usize,
        h: usize,
        w: usize,
    ) -> Option<CropBox> {
        let TvTransform::RandomResizedCrop { scale, ratio, .. } = self else {
            return None;
        };
        let (l0, l1) = (ratio.0.ln(), ratio.1.ln());
        let tries = (0..RRC_TRIES).map(|k| {
            let frac = scale.0
                + (scale.1 - scale.0) * key.uniform_f64(Purpose::TvArea, index(b, stage, k));
            let aspect =
                (l0 + (l1 - l0) * key.uniform_f64(Purpose::TvRatio, index(b, stage, k))).exp();
            (frac, aspect)
        });
        let (bh, bw, accepted) = rrc_size(h, w, *ratio, tries);
        let (top, left) = match accepted {
            Some(_) => (
                key.below(Purpose::TvTop, index(b, stage, 0), (h - bh + 1) as u32) as usize,
                key.below(Purpose::TvLeft, index(b, stage, 0), (w - bw + 1) as u32) as usize,
            ),
            None => ((h - bh) / 2, (w - bw) / 2),
        };
        Some(CropBox {
            top,
            left,
            h: bh,
            w: bw,
        })
    }

    /// The transform's draws for image `b` at `stage` on an h × w input, as [`DRAW_WORDS`] words:
    /// RandomResizedCrop [top, left, h, w]; RandomHorizontalFlip [flip (0/1)]; RandomCrop [top,
    /// left] in the padded image; Normalize none (zeros). A table of these is what a device reads.
    pub fn draw(
        &self,
        key: &DrawKey,
        b: usize,
        stage: usize,
        h: usize,
        w: usize,
    ) -> Result<[u32; DRAW_WORDS]> {
        self.out_hw(h, w)?;
        Ok(match self {
            TvTransform::RandomResizedCrop { .. } => {
                let bx = self
                    .rrc_box(key, b, stage, h, w)
                    .expect("RandomResizedCrop");
                [bx.top, bx.left, bx.h, bx.w].map(|v| v as u32)
            }
            TvTransform::RandomHorizontalFlip { p } => {
                let u = key.uniform_f32(Purpose::TvFlip, index(b, stage, 0)) as f64;
                [u32::from(u < *p), 0, 0, 0]
            }
            TvTransform::RandomCrop { size, padding } => [
                key.below(
                    Purpose::TvTop,
                    index(b, stage, 0),
                    (h + 2 * padding - size + 1) as u32,
                ),
                key.below(
                    Purpose::TvLeft,
                    index(b, stage, 0),
                    (w + 2 * padding - size + 1) as u32,
                ),
                0,
                0,
            ],
            TvTransform::Normalize { .. } => [0; DRAW_WORDS],
        })
    }

    /// Applies the transform with the draws `d` of [`TvTransform::draw`] to one image x (C, H, W)
    /// → (C, H', W'). Draws that do not fit the image (a box outside it) are an error.
    pub fn apply_drawn(
        &self,
        d: [u32; DRAW_WORDS],
        x: &[f32],
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<f32>> {
        if x.len() != c * h * w {
            return Err(Error::shape(format!(
                "{self:?}: {} values for a {c}×{h}×{w} image",
                x.len()
            )));
        }
        let (oh, ow) = self.out_hw(h, w)?;
        let d = d.map(|v| v as usize);
        Ok(match self {
            TvTransform::RandomResizedCrop { size, .. } => {
                let bx = CropBox {
                    top: d[0],
                    left: d[1],
                    h: d[2],
                    w: d[3],
                };
                if bx.h == 0 || bx.w == 0 || bx.top + bx.h > h || bx.left + bx.w > w {
                    return Err(Error::shape(format!(
                        "RandomResizedCrop: box {bx:?} outside the {h}×{w} image"
                    )));
                }
                resized_crop(x, c, h, w, bx, *size, *size)
            }
            TvTransform::RandomHorizontalFlip { .. } => match d[0] {
                0 => x.to_vec(),
                _ => hflip(x, w),
            },
            TvTransform::RandomCrop { size, padding } => {
                if d[0] + size > h + 2 * padding || d[1] + size > w + 2 * padding {
                    return Err(Error::shape(format!(
                        "RandomCrop: offset ({}, {}) outside the padded {h}×{w} image",
                        d[0], d[1]
                    )));
                }
                pad_crop(x, c, h, w, *padding, d[0], d[1], *size)
            }
            TvTransform::Normalize { mean, std } => normalize(x, c, mean, std)?,
        })
        .inspect(|y: &Vec<f32>| debug_assert_eq!(y.len(), c * oh * ow))
    }

    /// Applies the transform to one image x (C, H, W) → (C, H', W'), drawing from `key`.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        key: &DrawKey,
        b: usize,
        stage: usize,
        x: &[f32],
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<f32>> {
        self.apply_drawn(self.draw(key, b, stage, h, w)?, x, c, h, w)
    }
}

/// `F.resized_crop`: the box (inside the image) resized to oh × ow.
pub fn resized_crop(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    bx: CropBox,
    oh: usize,
    ow: usize,
) -> Vec<f32> {
    assert!(
        bx.top + bx.h <= h && bx.left + bx.w <= w,
        "crop box {bx:?} outside {h}×{w}"
    );
    let mut crop = Vec::with_capacity(c * bx.h * bx.w); // (C, bh, bw)
    for ch in 0..c {
        for y in bx.top..bx.top + bx.h {
            let row = (ch * h + y) * w;
            crop.extend_from_slice(&x[row + bx.left..row + bx.left + bx.w]);
        }
    }
    resize_bilinear_aa(&crop, c, bx.h, bx.w, oh, ow)
}

/// `F.hflip`: mirror along the width axis.
pub fn hflip(x: &[f32], w: usize) -> Vec<f32> {
    x.chunks_exact(w)
        .flat_map(|row| row.iter().rev().copied())
        .collect()
}

/// `F.crop(F.pad(x, padding), top, left, size, size)` with zero padding: out[c, y, x] =
/// x[c, y + top − padding, x + left − padding], 0 outside the image.
#[allow(clippy::too_many_arguments)]
pub fn pad_crop(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    padding: usize,
    top: usize,
    left: usize,
    size: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; c * size * size]; // (C, size, size)
    for ch in 0..c {
        for y in 0..size {
            let sy = (y + top) as isize - padding as isize;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            for xx in 0..size {
                let sx = (xx + left) as isize - padding as isize;
                if sx >= 0 && sx < w as isize {
                    out[(ch * size + y) * size + xx] = x[(ch * h + sy as usize) * w + sx as usize];
                }
            }
        }
    }
    out
}

/// `F.normalize`: (x − mean[c]) / std[c] in float32 (torchvision's sub_ then div_).
pub fn normalize(x: &[f32], c: usize, mean: &[f32], std: &[f32]) -> Result<Vec<f32>> {
    if mean.len() != c || std.len() != c || std.contains(&0.0) {
        return Err(Error::config(format!(
            "Normalize needs one mean and one non-zero std per channel ({c}), got mean {mean:?}, std {std:?}"
        )));
    }
    let hw = x.len() / c;
    Ok(x.iter()
        .enumerate()
        .map(|(i, &v)| (v - mean[i / hw]) / std[i / hw])
        .collect())
}

/// A `custom_train_trans` list applied in order.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TvPipeline(pub Vec<TvTransform>);

impl TvPipeline {
    /// The output (H, W) for (H, W) input, checking every stage (at most [`MAX_STAGES`]).
    pub fn out_hw(&self, mut h: usize, mut w: usize) -> Result<(usize, usize)> {
        if self.0.len() > MAX_STAGES {
            return Err(Error::config(format!(
                "custom_train_trans has {} transforms; at most {MAX_STAGES}",
                self.0.len()
            )));
        }
        for t in &self.0 {
            (h, w) = t.out_hw(h, w)?;
        }
        Ok((h, w))
    }

    /// Transforms a batch x (B, C, H, W) image by image; the output is (B, C, H', W') with
    /// (H', W') = `out_hw(H, W)`.
    pub fn apply_batch(
        &self,
        key: &DrawKey,
        x: &[f32],
        b: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<f32>> {
        let (oh, ow) = self.out_hw(h, w)?;
        if x.len() != b * c * h * w {
            return Err(Error::shape(format!(
                "custom_train_trans: {} values for ({b}, {c}, {h}, {w})",
                x.len()
            )));
        }
        let mut out = Vec::with_capacity(b * c * oh * ow); // (B, C, oh, ow)
        for (n, img) in x.chunks_exact(c * h * w).enumerate() {
            let (mut cur, mut ch, mut cw) = (img.to_vec(), h, w);
            for (stage, t) in self.0.iter().enumerate() {
                let (nh, nw) = t.out_hw(ch, cw)?;
                cur = t.apply(key, n, stage, &cur, c, ch, cw)?;
                (ch, cw) = (nh, nw);
            }
            out.extend_from_slice(&cur);
        }
        Ok(out)
    }

    /// Words of one image's entry in a step table: a switch word (1: transform this image, 0:
    /// leave it) and [`DRAW_WORDS`] per stage.
    pub fn entry_words(&self) -> usize {
        1 + self.0.len() * DRAW_WORDS
    }

    /// Image `b`'s table entry on an h × w input: its draws from `key`, or all zeros (switch off)
    /// for None. The draws are those [`TvPipeline::apply_batch`] makes for image `b`.
    pub fn entry(&self, key: Option<&DrawKey>, b: usize, h: usize, w: usize) -> Result<Vec<u32>> {
        let mut out = vec![0u32; self.entry_words()]; // (1 + stages·DRAW_WORDS)
        let Some(key) = key else {
            return Ok(out);
        };
        out[0] = 1;
        let (mut ch, mut cw) = (h, w);
        for (stage, t) in self.0.iter().enumerate() {
            out[1 + stage * DRAW_WORDS..][..DRAW_WORDS]
                .copy_from_slice(&t.draw(key, b, stage, ch, cw)?);
            (ch, cw) = t.out_hw(ch, cw)?;
        }
        Ok(out)
    }

    /// Applies a table entry to one image x (C, H, W): None when its switch is off, else the
    /// transformed (C, H', W').
    pub fn apply_entry(
        &self,
        entry: &[u32],
        x: &[f32],
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Option<Vec<f32>>> {
        if entry.len() != self.entry_words() {
            return Err(Error::shape(format!(
                "custom_train_trans: a table entry of {} words for {} stages",
                entry.len(),
                self.0.len()
            )));
        }
        if entry[0] == 0 {
            return Ok(None);
        }
        let (mut cur, mut ch, mut cw) = (x.to_vec(), h, w);
        for (stage, t) in self.0.iter().enumerate() {
            let d: [u32; DRAW_WORDS] = entry[1 + stage * DRAW_WORDS..][..DRAW_WORDS]
                .try_into()
                .expect("DRAW_WORDS words");
            let (nh, nw) = t.out_hw(ch, cw)?;
            cur = t.apply_drawn(d, &cur, c, ch, cw)?;
            (ch, cw) = (nh, nw);
        }
        Ok(Some(cur))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(step: u32) -> DrawKey {
        DrawKey {
            seed: 7,
            run: 1,
            role: 2,
            step,
        }
    }

    #[test]
    fn python_round_is_ties_to_even() {
        assert_eq!(
            (
                py_round(2.5),
                py_round(3.5),
                py_round(0.5),
                py_round(4.4999)
            ),
            (2, 4, 0, 4)
        );
    }

    /// The same key gives the same output; another step gives other boxes; sizes follow out_hw.
    #[test]
    fn pipeline_reproduces_and_keeps_shapes() {
        let p = TvPipeline(vec![
            TvTransform::RandomResizedCrop {
                size: 24,
                scale: (0.08, 1.0),
                ratio: (0.75, 4.0 / 3.0),
            },
            TvTransform::RandomHorizontalFlip { p: 0.5 },
            TvTransform::RandomCrop {
                size: 20,
                padding: 2,
            },
            TvTransform::Normalize {
                mean: vec![0.5; 3],
                std: vec![0.25; 3],
            },
        ]);
        let x: Vec<f32> = (0..4 * 3 * 32 * 32)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let a = p.apply_batch(&key(0), &x, 4, 3, 32, 32).unwrap();
        assert_eq!(a.len(), 4 * 3 * 20 * 20);
        assert_eq!(a, p.apply_batch(&key(0), &x, 4, 3, 32, 32).unwrap());
        assert_ne!(a, p.apply_batch(&key(1), &x, 4, 3, 32, 32).unwrap());
        assert!(p.apply_batch(&key(0), &x, 4, 3, 16, 16).is_err()); // wrong length
        let big = TvPipeline(vec![TvTransform::RandomCrop {
            size: 40,
            padding: 2,
        }]);
        assert!(big.out_hw(32, 32).is_err());
    }

    /// Boxes always lie inside the image; the fallback takes the centre.
    #[test]
    fn boxes_stay_inside_and_fallback_is_centred() {
        let t = TvTransform::RandomResizedCrop {
            size: 32,
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
        };
        for step in 0..200 {
            let bx = t.rrc_box(&key(step), 3, 0, 32, 40).unwrap();
            assert!(
                bx.h > 0 && bx.w > 0 && bx.top + bx.h <= 32 && bx.left + bx.w <= 40,
                "{bx:?}"
            );
        }
        // Aspect ≥ 3 never fits a square image at ≥ 95 % of its area: fallback, width-limited.
        assert_eq!(
            rrc_size(32, 32, (3.0, 4.0), std::iter::repeat((0.97, 3.5))),
            (11, 32, None)
        );
        let t = TvTransform::RandomResizedCrop {
            size: 8,
            scale: (0.97, 1.0),
            ratio: (3.0, 4.0),
        };
        let bx = t.rrc_box(&key(0), 0, 0, 32, 32).unwrap();
        assert_eq!(
            bx,
            CropBox {
                top: 10,
                left: 0,
                h: 11,
                w: 32
            }
        );
    }
}
