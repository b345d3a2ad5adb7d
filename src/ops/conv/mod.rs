//! 3×3 convolution, stride 1, zero padding `pad`, with bias, batched over S students × B images.
//!
//! Shapes (see [`ConvGeom`]): x (S, B, cin, h, w); weight (cout, cin, 3, 3) and bias (cout) inside
//! each student's parameter row at [`ParamAt`]; y (S, B, cout, h + 2·pad − 2, w + 2·pad − 2).
//! Backward is split into the input gradient (skipped for the first layer) and the weight/bias
//! gradient, which overwrites the layer's span of the (S, P) gradient buffer.
//!
//! The CPU backend calls [`cpu::forward`], [`cpu::backward_input`] and [`cpu::backward_weight`];
//! a faster CPU path only has to offer the same three signatures.
//! `cpu_fast` is that path (im2col or Winograd + gemm, with a scratch pool), which the CPU
//! backend dispatches to; `cpu` stays the readable reference the fast path is tested against.

pub mod cpu;
pub mod cpu_fast;
mod winograd_fast;

#[cfg(test)]
mod tests_fast;

use super::ParamAt;
use super::{check_len, check_span};
use crate::error::{Error, Result};

/// A 3×3 convolution with stride 1 and bias, batched over students and images.
/// Input (S, B, cin, h, w), output (S, B, cout, h + 2·pad − 2, w + 2·pad − 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub students: usize,
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub pad: usize,
}

impl ConvGeom {
    pub fn out_h(&self) -> usize {
        self.h + 2 * self.pad - 2
    }
    pub fn out_w(&self) -> usize {
        self.w + 2 * self.pad - 2
    }
}

/// Validates the geometry and the lengths shared by all three passes: `x_len` is the input (or
/// input gradient), `p_len` the (S, P) parameter (or gradient) buffer, `y_len` the output side.
pub(crate) fn check(
    g: &ConvGeom,
    op: &str,
    x_len: usize,
    p_len: usize,
    at: ParamAt,
    y_len: usize,
    y_name: &str,
) -> Result<()> {
    if g.h + 2 * g.pad < 3 || g.w + 2 * g.pad < 3 {
        return Err(Error::shape(format!(
            "{op}: a {}×{} input with padding {} is smaller than the 3×3 kernel",
            g.h, g.w, g.pad
        )));
    }
    check_len(op, "x", x_len, g.students * g.batch * g.cin * g.h * g.w)?;
    check_len(op, "params", p_len, g.students * at.row)?;
    check_len(
        op,
        y_name,
        y_len,
        g.students * g.batch * g.cout * g.out_h() * g.out_w(),
    )?;
    check_span(op, "weight", at.weight, g.cout * g.cin * 9, at.row)?;
    check_span(op, "bias", at.bias, g.cout, at.row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(
        s: usize,
        b: usize,
        cin: usize,
        cout: usize,
        h: usize,
        w: usize,
        pad: usize,
    ) -> ConvGeom {
        ConvGeom {
            students: s,
            batch: b,
            cin,
            cout,
            h,
            w,
            pad,
        }
    }

    /// A kernel that is 1 at its centre copies the input (plus bias) when pad = 1.
    #[test]
    fn centre_kernel_is_identity_plus_bias() {
        let g = geom(2, 1, 1, 1, 3, 4, 1);
        let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect(); // (2, 1, 1, 3, 4)
                                                                           // Row per student: 9 weights then the bias.
        let at = ParamAt {
            weight: 0,
            bias: 9,
            row: 10,
        };
        let mut params = vec![0f32; 20];
        for s in 0..2 {
            params[s * 10 + 4] = 1.0;
            params[s * 10 + 9] = s as f32 + 0.25;
        }
        let mut y = vec![0f32; 24];
        cpu::forward(&g, &x, &params, at, &mut y).unwrap();
        for i in 0..24 {
            assert_eq!(y[i], x[i] + (i / 12) as f32 + 0.25, "element {i}");
        }
    }

    /// With pad = 3 (the 1-channel 28 px case) the corner output only sees the padding: bias only.
    #[test]
    fn padding_three_grows_the_image_and_reads_zeros() {
        let g = geom(1, 1, 1, 1, 2, 2, 3);
        assert_eq!((g.out_h(), g.out_w()), (6, 6));
        let x = vec![1.0f32; 4];
        let at = ParamAt {
            weight: 0,
            bias: 9,
            row: 10,
        };
        let mut params = vec![1.0f32; 10];
        params[9] = -0.5;
        let mut y = vec![0f32; 36];
        cpu::forward(&g, &x, &params, at, &mut y).unwrap();
        assert_eq!(y[0], -0.5, "corner sees only zero padding");
        // Output (2, 2) covers input rows/cols −1..=1 shifted by pad: all four pixels.
        assert_eq!(y[2 * 6 + 2], 4.0 - 0.5);
    }

    #[test]
    fn wrong_lengths_are_errors_not_panics() {
        let g = geom(1, 1, 1, 1, 3, 3, 1);
        let at = ParamAt {
            weight: 0,
            bias: 9,
            row: 10,
        };
        let mut y = vec![0f32; 9];
        assert!(cpu::forward(&g, &[0.0; 8], &[0.0; 10], at, &mut y).is_err());
        let bad_at = ParamAt {
            weight: 2,
            bias: 9,
            row: 10,
        };
        assert!(cpu::forward(&g, &[0.0; 9], &[0.0; 10], bad_at, &mut y).is_err());
    }
}
