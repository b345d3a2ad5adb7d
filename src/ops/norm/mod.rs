//! A standalone normalisation layer (no fused ReLU or pool): GroupNorm(groups, c) — instance norm
//! is GroupNorm(c, c) — or BatchNorm2d, as the ResNet and VGG students use them.
//!
//! Shapes (see [`NormLayerGeom`]): x and y (S, B, c, h, w); γ and β (c) at `at.weight` / `at.bias`
//! in each student's parameter row. Group norm normalises per image over (c/groups, h, w); batch
//! norm per channel over (B, h, w), updating the running statistics in train mode (momentum, the
//! unbiased variance) and normalising with them in eval mode. Both use the biased variance and
//! eps inside the square root, as PyTorch does.
//!
//! Forward saves (mean, 1/std) per normalisation group in `stats`: group norm (S, B, groups, 2),
//! batch norm (S, c, 2). Backward (train-mode semantics) recomputes x̂ from x and those.

pub mod cpu;

use super::{check_len, check_span, ParamAt};
use crate::error::{Error, Result};

/// Which normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NormLayerKind {
    /// GroupNorm(groups, c); `groups = c` is instance norm.
    Group { groups: usize },
    /// BatchNorm2d with running statistics.
    Batch,
}

/// A normalisation layer over x (S, B, c, h, w).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormLayerGeom {
    pub students: usize,
    pub batch: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kind: NormLayerKind,
    pub eps: f32,
    /// Batch norm running-statistics momentum (PyTorch's 0.1).
    pub momentum: f32,
}

impl NormLayerGeom {
    /// Elements of x and y.
    pub fn len(&self) -> usize {
        self.students * self.batch * self.c * self.h * self.w
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Elements of the saved statistics.
    pub fn stats_len(&self) -> usize {
        match self.kind {
            NormLayerKind::Group { groups } => self.students * self.batch * groups * 2,
            NormLayerKind::Batch => self.students * self.c * 2,
        }
    }
}

/// Validates the geometry, the γ/β span (and the running span for batch norm) and the buffers.
pub(crate) fn check(
    g: &NormLayerGeom,
    at: ParamAt,
    running: Option<(usize, ParamAt)>,
    op: &str,
    bufs: &[(&str, usize, usize)],
) -> Result<()> {
    if let NormLayerKind::Group { groups } = g.kind {
        if groups == 0 || g.c % groups != 0 {
            return Err(Error::shape(format!(
                "{op}: {} channels do not split into {groups} groups",
                g.c
            )));
        }
    }
    check_span(op, "weight", at.weight, g.c, at.row)?;
    check_span(op, "bias", at.bias, g.c, at.row)?;
    if let (NormLayerKind::Batch, Some((len, r))) = (g.kind, running) {
        check_span(op, "running_mean", r.weight, g.c, r.row)?;
        check_span(op, "running_var", r.bias, g.c, r.row)?;
        check_len(op, "running", len, g.students * r.row)?;
    }
    for &(name, got, want) in bufs {
        check_len(op, name, got, want)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Mode;

    fn wave(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
            .collect()
    }

    /// Finite-difference step and tolerance: the forward is evaluated in f32 and differenced in
    /// f64; at this step the truncation and rounding error stay below 2e-3 relative.
    const FD_STEP: f32 = 1e-2;
    const FD_TOL: f64 = 2e-3;

    fn kinds() -> [NormLayerKind; 3] {
        [
            NormLayerKind::Group { groups: 4 },
            NormLayerKind::Group { groups: 2 },
            NormLayerKind::Batch,
        ]
    }

    #[test]
    fn backward_matches_finite_differences() {
        for kind in kinds() {
            let g = NormLayerGeom {
                students: 2,
                batch: 3,
                c: 4,
                h: 3,
                w: 2,
                kind,
                eps: 1e-5,
                momentum: 0.1,
            };
            let row = 2 * g.c + 1;
            let at = ParamAt {
                weight: 1,
                bias: 1 + g.c,
                row,
            };
            let x = wave(g.len(), 1);
            let p: Vec<f32> = wave(g.students * row, 2)
                .iter()
                .map(|v| 1.0 + 0.5 * v)
                .collect();
            let dy = wave(g.len(), 3);
            let run = ParamAt {
                weight: 0,
                bias: g.c,
                row: 2 * g.c,
            };
            let loss = |x: &[f32], p: &[f32]| {
                let (mut y, mut st) = (vec![0.0; g.len()], vec![0.0; g.stats_len()]);
                let mut running = vec![0.5; g.students * run.row];
                cpu::forward(
                    &g,
                    Mode::Train,
                    x,
                    p,
                    at,
                    &mut running,
                    run,
                    &mut st,
                    &mut y,
                )
                .unwrap();
                y.iter()
                    .zip(&dy)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
            };
            let (mut y, mut st) = (vec![0.0; g.len()], vec![0.0; g.stats_len()]);
            let mut running = vec![0.5; g.students * run.row];
            cpu::forward(
                &g,
                Mode::Train,
                &x,
                &p,
                at,
                &mut running,
                run,
                &mut st,
                &mut y,
            )
            .unwrap();
            let (mut dx, mut dp) = (vec![0.0; g.len()], vec![7.0; p.len()]);
            cpu::backward(&g, &x, &p, at, &st, &dy, &mut dx, &mut dp).unwrap();
            for i in (0..x.len()).step_by(5) {
                let (mut a, mut b) = (x.clone(), x.clone());
                a[i] += FD_STEP;
                b[i] -= FD_STEP;
                let fd = (loss(&a, &p) - loss(&b, &p)) / (2.0 * FD_STEP as f64);
                assert!(
                    (fd - dx[i] as f64).abs() <= FD_TOL * (1.0 + fd.abs()),
                    "{kind:?} dx[{i}] {fd} vs {}",
                    dx[i]
                );
            }
            for s in 0..g.students {
                for j in 1..row {
                    let i = s * row + j;
                    let (mut a, mut b) = (p.clone(), p.clone());
                    a[i] += FD_STEP;
                    b[i] -= FD_STEP;
                    let fd = (loss(&x, &a) - loss(&x, &b)) / (2.0 * FD_STEP as f64);
                    assert!(
                        (fd - dp[i] as f64).abs() <= FD_TOL * (1.0 + fd.abs()),
                        "{kind:?} dp[{i}] {fd} vs {}",
                        dp[i]
                    );
                }
                assert_eq!(dp[s * row], 7.0, "entries outside γ and β are left alone");
            }
        }
    }

    /// Batch norm in train mode moves the running stats by the momentum towards the batch mean and
    /// the unbiased variance; eval mode then normalises with them.
    #[test]
    fn batch_norm_running_statistics() {
        let g = NormLayerGeom {
            students: 1,
            batch: 2,
            c: 1,
            h: 1,
            w: 2,
            kind: NormLayerKind::Batch,
            eps: 0.0,
            momentum: 0.1,
        };
        let at = ParamAt {
            weight: 0,
            bias: 1,
            row: 2,
        };
        let run = ParamAt {
            weight: 0,
            bias: 1,
            row: 2,
        };
        let x = [1.0, 2.0, 3.0, 6.0]; // mean 3, biased var 3.5, unbiased 14/3
        let (mut y, mut st, mut running) = (vec![0.0; 4], vec![0.0; 2], vec![0.0, 1.0]);
        cpu::forward(
            &g,
            Mode::Train,
            &x,
            &[1.0, 0.0],
            at,
            &mut running,
            run,
            &mut st,
            &mut y,
        )
        .unwrap();
        assert!(
            (running[0] - 0.3).abs() < 1e-6 && (running[1] - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-6,
            "{running:?}"
        );
        cpu::forward(
            &g,
            Mode::Eval,
            &x,
            &[1.0, 0.0],
            at,
            &mut running,
            run,
            &mut st,
            &mut y,
        )
        .unwrap();
        assert!(
            (y[0] - (1.0 - 0.3) / running[1].sqrt()).abs() < 1e-6,
            "{y:?}"
        );
    }

    #[test]
    fn groups_that_do_not_divide_are_errors() {
        let g = NormLayerGeom {
            students: 1,
            batch: 1,
            c: 3,
            h: 1,
            w: 1,
            kind: NormLayerKind::Group { groups: 2 },
            eps: 1e-5,
            momentum: 0.1,
        };
        let at = ParamAt {
            weight: 0,
            bias: 3,
            row: 6,
        };
        let e = cpu::forward(
            &g,
            Mode::Train,
            &[0.0; 3],
            &[0.0; 6],
            at,
            &mut [],
            at,
            &mut [0.0; 4],
            &mut [0.0; 3],
        )
        .unwrap_err();
        assert!(e.to_string().contains("groups"), "{e}");
    }
}
