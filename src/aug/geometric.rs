//! DSA's scale and rotate: an affine grid (`F.affine_grid(θ, align_corners=True)`) sampled
//! bilinearly with zero padding (`F.grid_sample(..., align_corners=True)`), in f32 with PyTorch's
//! CPU order of operations so the golden files match to rounding.

use rayon::prelude::*;

use super::draws::ImageDraws;
use super::ImageDims;
use crate::error::Result;

/// θ = [[sx, 0, 0], [0, sy, 0]] (row-major 2×3): sx acts on x (width), sy on y (height).
pub fn scale_theta(sx: f32, sy: f32) -> [f32; 6] {
    [sx, 0.0, 0.0, 0.0, sy, 0.0]
}

/// θ = [[cos, −sin, 0], [sin, cos, 0]] (DSA writes sin(−a), which is −sin(a) exactly).
pub fn rotate_theta(cos: f32, sin: f32) -> [f32; 6] {
    [cos, -sin, 0.0, sin, cos, 0.0]
}

/// Coordinate k of `torch.linspace(-1, 1, n)` in f32: PyTorch computes the first half from the
/// start and the second half from the end, which makes the grid exactly symmetric.
pub fn linspace_neg_one(k: usize, n: usize) -> f32 {
    if n <= 1 {
        return -1.0;
    }
    let step = 2.0f32 / (n - 1) as f32;
    if k < n / 2 {
        -1.0 + step * k as f32
    } else {
        1.0 - step * (n - 1 - k) as f32
    }
}

/// The grid point of output pixel (i, j): θ·(x_j, y_i, 1), summed left to right in f32.
#[inline]
fn grid_point(theta: &[f32; 6], x: f32, y: f32) -> (f32, f32) {
    (
        x * theta[0] + y * theta[1] + theta[2],
        x * theta[3] + y * theta[4] + theta[5],
    )
}

/// `affine_grid` of one image: grid (H, W, 2), last axis (x, y).
pub fn affine_grid(theta: &[f32; 6], h: usize, w: usize, grid: &mut [f32]) {
    for i in 0..h {
        let y = linspace_neg_one(i, h);
        for j in 0..w {
            let x = linspace_neg_one(j, w);
            let (gx, gy) = grid_point(theta, x, y);
            grid[2 * (i * w + j)] = gx;
            grid[2 * (i * w + j) + 1] = gy;
        }
    }
}

/// Bilinear sample of one channel plane (H, W) at the grid point (gx, gy) with zero padding.
#[inline]
fn sample_plane(plane: &[f32], h: usize, w: usize, gx: f32, gy: f32) -> f32 {
    // align_corners=True: −1 and 1 are the centres of the corner pixels.
    let ix = (gx + 1.0) * ((w - 1) as f32 / 2.0);
    let iy = (gy + 1.0) * ((h - 1) as f32 / 2.0);
    let x0 = ix.floor();
    let y0 = iy.floor();
    let we = ix - x0; // weight of the east column
    let ww = 1.0 - we;
    let ws = iy - y0; // weight of the south row
    let wn = 1.0 - ws;
    let (x0, y0) = (x0 as i64, y0 as i64);
    let tap = |y: i64, x: i64| -> f32 {
        if y >= 0 && y < h as i64 && x >= 0 && x < w as i64 {
            plane[y as usize * w + x as usize]
        } else {
            0.0
        }
    };
    tap(y0, x0) * (wn * ww)
        + tap(y0, x0 + 1) * (wn * we)
        + tap(y0 + 1, x0) * (ws * ww)
        + tap(y0 + 1, x0 + 1) * (ws * we)
}

/// Warp one image src (C, H, W) into out (C, H, W) by θ.
pub fn warp_image(theta: &[f32; 6], c: usize, h: usize, w: usize, src: &[f32], out: &mut [f32]) {
    let plane = h * w;
    for i in 0..h {
        let y = linspace_neg_one(i, h);
        for j in 0..w {
            let x = linspace_neg_one(j, w);
            let (gx, gy) = grid_point(theta, x, y);
            for ch in 0..c {
                out[ch * plane + i * w + j] =
                    sample_plane(&src[ch * plane..(ch + 1) * plane], h, w, gx, gy);
            }
        }
    }
}

/// Warp every image of x (N, C, H, W) by its own θ into out (N, C, H, W).
pub fn warp_batch(dims: ImageDims, thetas: &[[f32; 6]], x: &[f32], out: &mut [f32]) -> Result<()> {
    dims.check("warp input", x.len())?;
    dims.check("warp output", out.len())?;
    dims.check_per_image("warp thetas", thetas.len())?;
    let img = dims.image_len();
    out.par_chunks_mut(img)
        .zip(x.par_chunks(img))
        .zip(thetas.par_iter())
        .for_each(|((o, s), theta)| warp_image(theta, dims.c, dims.h, dims.w, s, o));
    Ok(())
}

/// DSA scale: x (N, C, H, W) → out (N, C, H, W) with each image's `scale_x`, `scale_y`.
pub fn scale(dims: ImageDims, draws: &[ImageDraws], x: &[f32], out: &mut [f32]) -> Result<()> {
    let thetas: Vec<[f32; 6]> = draws
        .iter()
        .map(|d| scale_theta(d.scale_x, d.scale_y))
        .collect();
    warp_batch(dims, &thetas, x, out)
}

/// DSA rotate: x (N, C, H, W) → out (N, C, H, W) with each image's `rot_cos`, `rot_sin`.
pub fn rotate(dims: ImageDims, draws: &[ImageDraws], x: &[f32], out: &mut [f32]) -> Result<()> {
    let thetas: Vec<[f32; 6]> = draws
        .iter()
        .map(|d| rotate_theta(d.rot_cos, d.rot_sin))
        .collect();
    warp_batch(dims, &thetas, x, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(dims: ImageDims) -> Vec<f32> {
        (0..dims.len())
            .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
            .collect()
    }

    #[test]
    fn identity_theta_reproduces_the_image() {
        // θ = identity puts every grid point on a pixel centre: the weights are exactly 1 and 0
        // when the linspace step 2/(n − 1) is a power of two (sides 5 and 9), so this is exact.
        let dims = ImageDims {
            n: 2,
            c: 3,
            h: 5,
            w: 9,
        };
        let x = ramp(dims);
        let mut out = vec![0.0; dims.len()];
        warp_batch(
            dims,
            &[scale_theta(1.0, 1.0), rotate_theta(1.0, 0.0)],
            &x,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, x);
    }

    #[test]
    fn linspace_is_symmetric_and_hits_the_ends() {
        for n in [2usize, 3, 8, 28, 32, 64] {
            assert_eq!(linspace_neg_one(0, n), -1.0);
            assert_eq!(linspace_neg_one(n - 1, n), 1.0);
            for k in 0..n {
                assert_eq!(
                    linspace_neg_one(k, n),
                    -linspace_neg_one(n - 1 - k, n),
                    "n {n} k {k}"
                );
            }
        }
    }

    #[test]
    fn rotation_by_half_turn_reverses_both_axes() {
        // cos = −1, sin = 0 maps (x, y) to (−x, −y): pixel (i, j) reads (H−1−i, W−1−j), exact
        // for sides whose linspace step is a power of two.
        let dims = ImageDims {
            n: 1,
            c: 2,
            h: 5,
            w: 3,
        };
        let x = ramp(dims);
        let mut out = vec![0.0; dims.len()];
        warp_batch(dims, &[rotate_theta(-1.0, 0.0)], &x, &mut out).unwrap();
        for ch in 0..2 {
            for i in 0..5 {
                for j in 0..3 {
                    assert_eq!(out[ch * 15 + i * 3 + j], x[ch * 15 + (4 - i) * 3 + (2 - j)]);
                }
            }
        }
    }

    #[test]
    fn zooming_out_fills_zeros_at_the_border() {
        // sx = sy = 2 reads twice as far out: corner pixels sample outside the image → 0.
        let dims = ImageDims {
            n: 1,
            c: 1,
            h: 9,
            w: 9,
        };
        let x = vec![1.0; dims.len()];
        let mut out = vec![0.0; dims.len()];
        warp_batch(dims, &[scale_theta(2.0, 2.0)], &x, &mut out).unwrap();
        assert_eq!(out[0], 0.0);
        assert_eq!(out[4 * 9 + 4], 1.0);
    }
}
