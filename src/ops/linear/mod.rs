//! The linear head: y = x·Wᵀ + b, batched over S students × B images.
//!
//! Shapes (see [`LinearGeom`]): x (S, B, fin) (the flattened NCHW features, index c·hf² + h·hf + w);
//! W (fout, fin) and b (fout) in each student's parameter row at [`ParamAt`]; out (S, B, fout).

pub mod cpu;
pub mod rounded;

use super::ParamAt;
use super::{check_len, check_span};
use crate::error::Result;

/// y = x·Wᵀ + b. Input (S, B, fin), weight (fout, fin), output (S, B, fout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearGeom {
    pub students: usize,
    pub batch: usize,
    pub fin: usize,
    pub fout: usize,
}

/// Validates lengths: `x_len` input side, `p_len` (S, P), `y_len` output side.
pub(crate) fn check(
    g: &LinearGeom,
    op: &str,
    x_len: usize,
    p_len: usize,
    at: ParamAt,
    y_len: usize,
    y_name: &str,
) -> Result<()> {
    check_len(op, "x", x_len, g.students * g.batch * g.fin)?;
    check_len(op, "params", p_len, g.students * at.row)?;
    check_len(op, y_name, y_len, g.students * g.batch * g.fout)?;
    check_span(op, "weight", at.weight, g.fout * g.fin, at.row)?;
    check_span(op, "bias", at.bias, g.fout, at.row)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two students with different weights see their own rows.
    #[test]
    fn each_student_uses_its_own_row() {
        let g = LinearGeom {
            students: 2,
            batch: 1,
            fin: 2,
            fout: 1,
        };
        let at = ParamAt {
            weight: 0,
            bias: 2,
            row: 3,
        };
        let params = [1.0f32, 2.0, 0.5, -1.0, 3.0, 0.0]; // (2, 3)
        let x = [1.0f32, 1.0, 2.0, 1.0]; // (2, 1, 2)
        let mut out = [0f32; 2];
        cpu::forward(&g, &x, &params, at, &mut out).unwrap();
        assert_eq!(out, [3.5, 1.0]);
    }
}
