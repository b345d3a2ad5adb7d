//! Norm → ReLU → 2×2 average pool, fused: the tail of every ConvNet block.
//!
//! Shapes (see [`NormGeom`]): y (S, B, c, h, w) is the conv output; out (S, B, c, h/2, w/2).
//! Norms: instance = GroupNorm(c, c) (per image and channel over h×w), batch = BatchNorm2d (per
//! channel over B×h×w; train mode updates the running statistics with momentum and the unbiased
//! variance, eval mode normalises with them), none. Both use the biased variance and eps inside
//! the square root. γ and β sit at `at.weight` / `at.bias` in each student's parameter row.
//!
//! Forward saves (mean, 1/std) per normalisation group in `stats` (layout [`Saved`]); backward
//! recomputes x̂ and the ReLU mask from y and those statistics (nothing else is stored).

pub mod cpu;
pub mod cpu_fast;

#[cfg(test)]
mod tests_fast;

use super::ParamAt;
use super::{check_len, check_span};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NormKind {
    /// GroupNorm(C, C): per sample and channel over H×W, affine.
    Instance,
    /// BatchNorm2d: per channel over (B, H, W), running statistics.
    Batch,
    None,
}

/// Norm → ReLU → 2×2 average pool, fused. Input (S, B, c, h, w), output (S, B, c, h/2, w/2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormGeom {
    pub students: usize,
    pub batch: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kind: NormKind,
    pub eps: f32,
    /// Batch norm running-statistics momentum (PyTorch's 0.1).
    pub momentum: f32,
}

/// What forward saves for backward, per norm kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// Instance norm: (S, B, c, 2) = (mean, rstd) per image and channel.
    PerImage,
    /// Batch norm: (S, c, 2) = (mean, rstd) per channel.
    PerChannel,
    /// No norm: nothing (a zero-length buffer).
    Nothing,
}

impl Saved {
    pub fn of(kind: NormKind) -> Saved {
        match kind {
            NormKind::Instance => Saved::PerImage,
            NormKind::Batch => Saved::PerChannel,
            NormKind::None => Saved::Nothing,
        }
    }
}

/// Length of the `stats` buffer forward fills and backward reads.
pub fn stats_len(g: &NormGeom) -> usize {
    match Saved::of(g.kind) {
        Saved::PerImage => g.students * g.batch * g.c * 2,
        Saved::PerChannel => g.students * g.c * 2,
        Saved::Nothing => 0,
    }
}

/// Validates the geometry and lengths: y (S, B, c, h, w), params (S, P), stats, out / dout.
pub(crate) fn check(
    g: &NormGeom,
    op: &str,
    y_len: usize,
    p_len: usize,
    at: ParamAt,
    stats_len_got: usize,
    out_len: usize,
) -> Result<()> {
    if g.h % 2 != 0 || g.w % 2 != 0 || g.h == 0 || g.w == 0 {
        return Err(Error::shape(format!(
            "{op}: 2×2 pooling needs an even, non-empty image, got {}×{}",
            g.h, g.w
        )));
    }
    check_len(op, "y", y_len, g.students * g.batch * g.c * g.h * g.w)?;
    check_len(op, "stats", stats_len_got, stats_len(g))?;
    check_len(
        op,
        "out",
        out_len,
        g.students * g.batch * g.c * (g.h / 2) * (g.w / 2),
    )?;
    if g.kind != NormKind::None {
        check_len(op, "params", p_len, g.students * at.row)?;
        check_span(op, "norm weight", at.weight, g.c, at.row)?;
        check_span(op, "norm bias", at.bias, g.c, at.row)?;
    }
    Ok(())
}

/// Validates the batch-norm running statistics buffer (S, R).
pub(crate) fn check_running(g: &NormGeom, len: usize, at: ParamAt) -> Result<()> {
    let op = "batch norm running statistics";
    check_len(op, "running", len, g.students * at.row)?;
    check_span(op, "running_mean", at.weight, g.c, at.row)?;
    check_span(op, "running_var", at.bias, g.c, at.row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Mode;

    fn geom(kind: NormKind, b: usize) -> NormGeom {
        NormGeom {
            students: 1,
            batch: b,
            c: 1,
            h: 2,
            w: 2,
            kind,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// No norm: out = mean of relu over each 2×2 window.
    #[test]
    fn none_is_relu_then_average() {
        let g = geom(NormKind::None, 1);
        let y = [1.0f32, -2.0, 3.0, 0.5]; // (1, 1, 1, 2, 2)
        let mut out = [0f32];
        cpu::forward(
            &g,
            Mode::Train,
            &y,
            &[],
            ParamAt {
                weight: 0,
                bias: 0,
                row: 0,
            },
            &mut [],
            ParamAt {
                weight: 0,
                bias: 0,
                row: 0,
            },
            &mut [],
            &mut out,
        )
        .unwrap();
        assert_eq!(out[0], (1.0 + 3.0 + 0.5) / 4.0);
    }

    /// Batch norm train mode: running_mean ← 0.9·old + 0.1·mean, running_var with n/(n − 1).
    #[test]
    fn batch_norm_running_statistics_use_the_unbiased_variance() {
        let g = geom(NormKind::Batch, 2);
        let y: Vec<f32> = vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]; // (1, 2, 1, 2, 2)
        let at = ParamAt {
            weight: 0,
            bias: 1,
            row: 2,
        };
        let params = [1.0f32, 0.0];
        let mut running = [0.5f32, 2.0];
        let mut stats = [0f32; 2];
        let mut out = [0f32; 2];
        cpu::forward(
            &g,
            Mode::Train,
            &y,
            &params,
            at,
            &mut running,
            at,
            &mut stats,
            &mut out,
        )
        .unwrap();
        // mean 3.5, biased var 5.25, unbiased 6.
        assert!((running[0] - (0.9 * 0.5 + 0.1 * 3.5)).abs() < 1e-6);
        assert!((running[1] - (0.9 * 2.0 + 0.1 * 6.0)).abs() < 1e-6);
        assert!((stats[1] - 1.0 / (5.25f32 + 1e-5).sqrt()).abs() < 1e-6);
    }
}
