//! Max and average pooling with a k×k window, stride and zero padding over x (S, B, c, h, w) →
//! y (S, B, c, oh, ow), oh = (h + 2·pad − k) / stride + 1. Average pooling divides by k² (PyTorch's
//! count_include_pad = True); a global average pool is a window the size of the map (what
//! `AdaptiveAvgPool2d(1)` and ResNet's `avg_pool2d(out, 4)` compute on a 4×4 map). Max pooling
//! ignores padding; its backward routes dy to the first maximum of each window (recomputed from
//! x), as PyTorch's CPU kernel picks it.

pub mod cpu;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PoolKind {
    Max,
    Avg,
}

/// A pooling layer over x (S, B, c, h, w) (S·B·c planes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub students: usize,
    pub batch: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub kind: PoolKind,
}

impl PoolGeom {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn planes(&self) -> usize {
        self.students * self.batch * self.c
    }
    pub fn in_len(&self) -> usize {
        self.planes() * self.h * self.w
    }
    pub fn out_len(&self) -> usize {
        self.planes() * self.out_h() * self.out_w()
    }
}

pub(crate) fn check(g: &PoolGeom, op: &str, bufs: &[(&str, usize, usize)]) -> Result<()> {
    // PyTorch also requires pad ≤ k/2, so every window holds at least one real pixel.
    if g.k == 0
        || g.stride == 0
        || 2 * g.pad > g.k
        || g.h + 2 * g.pad < g.k
        || g.w + 2 * g.pad < g.k
    {
        return Err(Error::shape(format!(
            "{op}: a {k}×{k} window with stride {s} and padding {p} does not fit a {h}×{w} map",
            k = g.k,
            s = g.stride,
            p = g.pad,
            h = g.h,
            w = g.w
        )));
    }
    for &(name, got, want) in bufs {
        super::check_len(op, name, got, want)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
            .collect()
    }

    /// Step and tolerance of the central differences: pooling is piecewise linear, so away from
    /// ties (distinct wave values) the difference quotient is exact up to f32 rounding.
    const FD_STEP: f32 = 1e-3;
    const FD_TOL: f64 = 1e-2;

    #[test]
    fn backward_matches_finite_differences() {
        for (kind, k, stride, pad) in [
            (PoolKind::Max, 2, 2, 0),
            (PoolKind::Max, 3, 2, 1),
            (PoolKind::Avg, 2, 2, 0),
            (PoolKind::Avg, 1, 2, 0),
            (PoolKind::Avg, 5, 5, 0),
        ] {
            let g = PoolGeom {
                students: 2,
                batch: 2,
                c: 2,
                h: 5,
                w: 6,
                k,
                stride,
                pad,
                kind,
            };
            let x = wave(g.in_len(), 1);
            let dy = wave(g.out_len(), 2);
            let loss = |x: &[f32]| {
                let mut y = vec![0.0; g.out_len()];
                cpu::forward(&g, x, &mut y).unwrap();
                y.iter()
                    .zip(&dy)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
            };
            let mut dx = vec![9.0; g.in_len()];
            cpu::backward(&g, &x, &dy, &mut dx).unwrap();
            for i in 0..x.len() {
                let (mut a, mut b) = (x.clone(), x.clone());
                a[i] += FD_STEP;
                b[i] -= FD_STEP;
                let fd = (loss(&a) - loss(&b)) / (2.0 * FD_STEP as f64);
                assert!(
                    (fd - dx[i] as f64).abs() <= FD_TOL * (1.0 + fd.abs()),
                    "{g:?} dx[{i}] {fd} vs {}",
                    dx[i]
                );
            }
        }
    }

    #[test]
    fn max_and_average_of_a_known_map() {
        let g = PoolGeom {
            students: 1,
            batch: 1,
            c: 1,
            h: 2,
            w: 2,
            k: 2,
            stride: 2,
            pad: 0,
            kind: PoolKind::Max,
        };
        let mut y = [0.0];
        cpu::forward(&g, &[1.0, 4.0, -2.0, 3.0], &mut y).unwrap();
        assert_eq!(y, [4.0]);
        cpu::forward(
            &PoolGeom {
                kind: PoolKind::Avg,
                ..g
            },
            &[1.0, 4.0, -2.0, 3.0],
            &mut y,
        )
        .unwrap();
        assert_eq!(y, [1.5]);
        let e = cpu::forward(&PoolGeom { k: 3, ..g }, &[0.0; 4], &mut y).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
    }
}
