//! General 2-D convolution: k×k window, stride, zero padding, optional bias, batched over S
//! students × B images (ResNet, VGG, AlexNet, LeNet layers; ConvNet keeps its fused 3×3 path in
//! `ops::conv`).
//!
//! Shapes (see [`Conv2dGeom`]): x (S, B, cin, h, w); weight (cout, cin, k, k) and, with `bias`,
//! bias (cout) in each student's parameter row at [`ParamAt`]; y (S, B, cout, oh, ow) with
//! oh = (h + 2·pad − k) / stride + 1 (PyTorch's floor). Backward overwrites dx and the layer's
//! span of the (S, P) gradient buffer.
//!
//! [`cpu`] is the plain-loop reference; [`cpu_fast`] (im2col + `gemm`) is what the CPU backend runs.

pub mod cpu;
pub mod cpu_fast;

use super::{check_len, check_span, ParamAt};
use crate::error::{Error, Result};

/// A k×k convolution with stride and padding. Input (S, B, cin, h, w), output (S, B, cout, oh, ow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeom {
    pub students: usize,
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    /// Whether the layer has a bias (ResNet's convs have none).
    pub bias: bool,
}

impl Conv2dGeom {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Elements of x.
    pub fn in_len(&self) -> usize {
        self.students * self.batch * self.cin * self.h * self.w
    }
    /// Elements of y.
    pub fn out_len(&self) -> usize {
        self.students * self.batch * self.cout * self.out_h() * self.out_w()
    }
    /// Elements of the weight (cout, cin, k, k).
    pub fn weight_len(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }
}

/// Validates the geometry, the parameter spans and the named buffer lengths (name, got, want).
pub(crate) fn check(
    g: &Conv2dGeom,
    at: ParamAt,
    op: &str,
    bufs: &[(&str, usize, usize)],
) -> Result<()> {
    if g.k == 0 || g.stride == 0 || g.h + 2 * g.pad < g.k || g.w + 2 * g.pad < g.k {
        return Err(Error::shape(format!(
            "{op}: a {k}×{k} window with stride {s} and padding {p} does not fit a {h}×{w} input",
            k = g.k,
            s = g.stride,
            p = g.pad,
            h = g.h,
            w = g.w
        )));
    }
    check_span(op, "weight", at.weight, g.weight_len(), at.row)?;
    if g.bias {
        check_span(op, "bias", at.bias, g.cout, at.row)?;
    }
    for &(name, got, want) in bufs {
        check_len(op, name, got, want)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::scratch::ScratchPool;

    /// Deterministic pseudo-random values in [−1, 1).
    pub(crate) fn wave(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
            .collect()
    }

    fn geoms() -> Vec<Conv2dGeom> {
        let g = |cin, cout, h, k, stride, pad, bias| Conv2dGeom {
            students: 2,
            batch: 2,
            cin,
            cout,
            h,
            w: h + 1,
            k,
            stride,
            pad,
            bias,
        };
        vec![
            g(3, 4, 7, 3, 1, 1, false),
            g(3, 5, 8, 3, 2, 1, false),
            g(4, 3, 6, 1, 2, 0, false),
            g(2, 3, 9, 5, 1, 2, true),
            g(3, 2, 9, 5, 2, 0, true),
        ]
    }

    /// Relative tolerance of the fast path against the reference: both sum the same products in
    /// f32, only in another order (k·k·cin ≤ 50 terms here).
    const FAST_TOL: f32 = 1e-5;

    /// Finite-difference step and tolerance: central differences of an f32 forward in f64 sums
    /// lose about 1e-3 relative accuracy at this step.
    const FD_STEP: f32 = 1e-2;
    const FD_TOL: f64 = 2e-3;

    fn close(a: &[f32], b: &[f32], what: &str) {
        let (i, d) = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .enumerate()
            .fold((0, 0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
        assert!(
            d <= FAST_TOL,
            "{what}: worst index {i}: {} vs {}",
            a[i],
            b[i]
        );
    }

    #[test]
    fn fast_path_matches_the_reference() {
        let pool = ScratchPool::new();
        for g in geoms() {
            let row = g.weight_len() + g.cout;
            let at = ParamAt {
                weight: 0,
                bias: g.weight_len(),
                row,
            };
            let x = wave(g.in_len(), 1);
            let p = wave(g.students * row, 2);
            let dy = wave(g.out_len(), 3);
            let (mut y0, mut y1) = (vec![0.0; g.out_len()], vec![9.0; g.out_len()]);
            cpu::forward(&g, &x, &p, at, &mut y0).unwrap();
            cpu_fast::forward(&g, &x, &p, at, &mut y1, &pool).unwrap();
            close(&y1, &y0, &format!("forward {g:?}"));
            let (mut d0, mut d1) = (vec![0.0; g.in_len()], vec![9.0; g.in_len()]);
            cpu::backward_input(&g, &p, at, &dy, &mut d0).unwrap();
            cpu_fast::backward_input(&g, &p, at, &dy, &mut d1, &pool).unwrap();
            close(&d1, &d0, &format!("backward_input {g:?}"));
            let (mut w0, mut w1) = (vec![0.0; p.len()], vec![9.0; p.len()]);
            cpu::backward_weight(&g, &x, &dy, at, &mut w0).unwrap();
            cpu_fast::backward_weight(&g, &x, &dy, at, &mut w1, &pool).unwrap();
            if !g.bias {
                // Without a bias the bias span is not the layer's: both leave it alone.
                for s in 0..g.students {
                    w1[s * row + at.bias..][..g.cout].fill(0.0);
                    w0[s * row + at.bias..][..g.cout].fill(0.0);
                }
            }
            close(&w1, &w0, &format!("backward_weight {g:?}"));
        }
    }

    /// The reference backward is the gradient of L = Σ y·dy, checked by central differences on
    /// sampled inputs and parameters.
    #[test]
    fn reference_backward_matches_finite_differences() {
        for g in geoms() {
            let row = g.weight_len() + g.cout;
            let at = ParamAt {
                weight: 0,
                bias: g.weight_len(),
                row,
            };
            let x = wave(g.in_len(), 4);
            let p = wave(g.students * row, 5);
            let dy = wave(g.out_len(), 6);
            let loss = |x: &[f32], p: &[f32]| {
                let mut y = vec![0.0; g.out_len()];
                cpu::forward(&g, x, p, at, &mut y).unwrap();
                y.iter()
                    .zip(&dy)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
            };
            let mut dx = vec![0.0; g.in_len()];
            cpu::backward_input(&g, &p, at, &dy, &mut dx).unwrap();
            let mut dp = vec![0.0; p.len()];
            cpu::backward_weight(&g, &x, &dy, at, &mut dp).unwrap();
            for i in (0..x.len()).step_by(7) {
                let (mut a, mut b) = (x.clone(), x.clone());
                a[i] += FD_STEP;
                b[i] -= FD_STEP;
                let fd = (loss(&a, &p) - loss(&b, &p)) / (2.0 * FD_STEP as f64);
                assert!(
                    (fd - dx[i] as f64).abs() <= FD_TOL * (1.0 + fd.abs()),
                    "dx[{i}] {fd} vs {}",
                    dx[i]
                );
            }
            let span = if g.bias { row } else { g.weight_len() };
            for s in 0..g.students {
                for j in (0..span).step_by(5) {
                    let i = s * row + j;
                    let (mut a, mut b) = (p.clone(), p.clone());
                    a[i] += FD_STEP;
                    b[i] -= FD_STEP;
                    let fd = (loss(&x, &a) - loss(&x, &b)) / (2.0 * FD_STEP as f64);
                    assert!(
                        (fd - dp[i] as f64).abs() <= FD_TOL * (1.0 + fd.abs()),
                        "dp[{i}] {fd} vs {}",
                        dp[i]
                    );
                }
            }
        }
    }

    #[test]
    fn windows_that_do_not_fit_are_errors() {
        let g = Conv2dGeom {
            students: 1,
            batch: 1,
            cin: 1,
            cout: 1,
            h: 2,
            w: 2,
            k: 5,
            stride: 1,
            pad: 1,
            bias: false,
        };
        let at = ParamAt {
            weight: 0,
            bias: 0,
            row: 25,
        };
        let e = cpu::forward(&g, &[0.0; 4], &[0.0; 25], at, &mut [0.0; 1]).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
    }
}
