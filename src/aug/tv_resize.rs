//! Bilinear resize as torchvision applies it to float tensors (`F.resize(..., antialias=True)`, its
//! default since 0.17): PyTorch's separable anti-aliased kernel (`_upsample_bilinear2d_aa`,
//! align_corners = False), width pass first, then height, each skipped when that size does not
//! change. Upscaling reduces to ordinary bilinear weights with edge taps renormalised; downscaling
//! widens the triangle filter to `scale` input pixels, so every input pixel contributes.
//!
//! The float32 arithmetic follows PyTorch's CPU kernel step by step (where it promotes to double
//! and rounds back), so results agree to rounding (tests/fixtures/torchvision_transforms).

/// Taps of one output position: the first input index and normalised weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Taps {
    pub first: usize,
    pub weights: Vec<f32>,
}

/// The triangle filter of bilinear interpolation.
fn triangle(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Taps of every output position along one axis of `input` → `output` samples.
pub fn aa_taps(input: usize, output: usize) -> Vec<Taps> {
    let scale = input as f32 / output as f32; // area_pixel_compute_scale, align_corners = False
    let support: f32 = if scale >= 1.0 { scale } else { 1.0 }; // (interp_size / 2)·max(scale, 1)
    let invscale: f32 = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..output)
        .map(|i| {
            // PyTorch: `scalar_t center = scale * (i + 0.5)` evaluates in double, rounds to float;
            // `(j + xmin - center + 0.5) * invscale` is float, then double, then float again.
            let center = (scale as f64 * (i as f64 + 0.5)) as f32;
            let lo = (((center - support) as f64 + 0.5) as i64).max(0);
            let hi = (((center + support) as f64 + 0.5) as i64).min(input as i64);
            let mut w: Vec<f32> = (lo..hi)
                .map(|j| triangle((((j as f32 - center) as f64 + 0.5) * invscale as f64) as f32))
                .collect();
            let total: f32 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            Taps {
                first: lo as usize,
                weights: w,
            }
        })
        .collect()
}

/// Resizes one image x (C, H, W) to (C, oh, ow).
pub fn resize_bilinear_aa(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), c * h * w, "resize input (C, H, W)");
    let mut cur = x.to_vec(); // (C, h, cw)
    let mut cw = w;
    if ow != w {
        let taps = aa_taps(w, ow);
        let mut out = vec![0f32; c * h * ow]; // (C, h, ow)
        for (row_in, row_out) in cur.chunks_exact(w).zip(out.chunks_exact_mut(ow)) {
            for (o, t) in row_out.iter_mut().zip(&taps) {
                *o = dot(&row_in[t.first..], &t.weights, 1);
            }
        }
        cur = out;
        cw = ow;
    }
    if oh != h {
        let taps = aa_taps(h, oh);
        let mut out = vec![0f32; c * oh * cw]; // (C, oh, cw)
        for ch in 0..c {
            let plane = &cur[ch * h * cw..(ch + 1) * h * cw];
            for (y, t) in taps.iter().enumerate() {
                for xx in 0..cw {
                    out[(ch * oh + y) * cw + xx] = dot(&plane[t.first * cw + xx..], &t.weights, cw);
                }
            }
        }
        cur = out;
    }
    cur
}

/// src[0]·w[0] + src[stride]·w[1] + …, accumulated in float32 in this order (PyTorch's loop).
fn dot(src: &[f32], w: &[f32], stride: usize) -> f32 {
    let mut t = src[0] * w[0];
    for (k, wk) in w.iter().enumerate().skip(1) {
        t += src[k * stride] * wk;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity_and_weights_sum_to_one() {
        let x: Vec<f32> = (0..2 * 5 * 7).map(|i| (i as f32 * 0.37).sin()).collect();
        assert_eq!(resize_bilinear_aa(&x, 2, 5, 7, 5, 7), x);
        for (i, o) in [(7, 3), (3, 7), (32, 48), (17, 32)] {
            for t in aa_taps(i, o) {
                let s: f32 = t.weights.iter().sum();
                assert!((s - 1.0).abs() < 1e-6, "{i}->{o}: {s}");
                assert!(t.first + t.weights.len() <= i);
            }
        }
    }

    /// Doubling: interior outputs are the 3/4–1/4 mixes of plain bilinear (align_corners False).
    #[test]
    fn upscale_by_two_is_plain_bilinear_inside() {
        let x = [0.0f32, 4.0, 8.0];
        let y = resize_bilinear_aa(&x, 1, 1, 3, 1, 6);
        assert_eq!(y[1], 1.0); // 0.75·0 + 0.25·4
        assert_eq!(y[2], 3.0);
        assert_eq!(y[0], 0.0); // edge: the tap beyond the image is dropped and renormalised
    }
}
