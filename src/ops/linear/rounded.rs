//! The linear head with its products rounded as a GPU GEMM mode rounds them (the precision study,
//! `ops::precision`): the reference loops of `cpu.rs`, each product computed by
//! `GemmPrecision::mul` and summed in f32 like a tensor-core accumulator. The head is under 1 %
//! of a ConvNet's FLOPs, so plain loops suffice. Bias and its gradient stay fp32 (an epilogue add
//! and a plain sum on the GPU, never a GEMM operand).

use super::cpu::{self, Products};
use super::LinearGeom;
use crate::error::Result;
use crate::ops::precision::GemmPrecision;
use crate::ops::ParamAt;

/// A GPU mode's rounded products, summed in f32.
struct Rounded(GemmPrecision);

impl Products for Rounded {
    type Acc = f32;
    fn mul(&self, a: f32, b: f32) -> f32 {
        self.0.mul(a, b)
    }
    fn widen(&self, a: f32) -> f32 {
        a
    }
    fn narrow(&self, acc: f32) -> f32 {
        acc
    }
}

/// out[s, b, o] = Σ_i x[s, b, i]·W[o, i] + bias[o].
/// x (S, B, fin), params (S, P) with W (fout, fin) and bias (fout), out (S, B, fout).
pub fn forward(
    p: GemmPrecision,
    g: &LinearGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    out: &mut [f32],
) -> Result<()> {
    cpu::forward_with(&Rounded(p), g, x, params, at, out)
}

/// dx[s, b, i] = Σ_o dout[s, b, o]·W[o, i].
/// params (S, P), dout (S, B, fout), dx (S, B, fin).
pub fn backward_input(
    p: GemmPrecision,
    g: &LinearGeom,
    params: &[f32],
    at: ParamAt,
    dout: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    cpu::backward_input_with(&Rounded(p), g, params, at, dout, dx)
}

/// dW[o, i] = Σ_b dout[b, o]·x[b, i], dbias[o] = Σ_b dout[b, o], into grads (S, P) at `at`.
/// x (S, B, fin), dout (S, B, fout), grads (S, P).
pub fn backward_weight(
    p: GemmPrecision,
    g: &LinearGeom,
    x: &[f32],
    dout: &[f32],
    at: ParamAt,
    grads: &mut [f32],
) -> Result<()> {
    cpu::backward_weight_with(&Rounded(p), g, x, dout, at, grads)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In fp32 mode the rounded loops are the reference loops up to f32 vs f64 summation; in TF32
    /// mode they equal the reference run on operands rounded beforehand.
    #[test]
    fn matches_the_reference_on_pre_rounded_operands() {
        let g = LinearGeom {
            students: 2,
            batch: 3,
            fin: 40,
            fout: 5,
        };
        let at = ParamAt {
            row: 210,
            weight: 0,
            bias: 200,
        };
        let x: Vec<f32> = (0..2 * 3 * 40)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 23.0)
            .collect();
        let params: Vec<f32> = (0..2 * 210)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 61.0)
            .collect();
        let dout: Vec<f32> = (0..2 * 3 * 5)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        // f32 sums of 40 products of |x| ≤ 2.2 and |w| ≤ 0.8 against f64 sums: each addition rounds
        // by ≤ 2⁻²⁴ of a running sum ≤ 70, so ≤ 40·2⁻²⁴·70 ≈ 1.7e-4 in the worst case (typically
        // ~100× less); an indexing error moves an output by O(1).
        const F32_SUM_ATOL: f32 = 2e-4;
        for p in [
            GemmPrecision::Fp32,
            GemmPrecision::Tf32,
            GemmPrecision::Bf16,
        ] {
            let r = |v: &[f32]| v.iter().map(|&a| p.head(a)).collect::<Vec<f32>>();
            // Bias is not rounded: restore it in the pre-rounded parameter copy.
            let mut pr = r(&params);
            for s in 0..2 {
                pr[s * 210 + 200..s * 210 + 205]
                    .copy_from_slice(&params[s * 210 + 200..s * 210 + 205]);
            }
            let (mut got, mut want) = (vec![0f32; 30], vec![0f32; 30]);
            forward(p, &g, &x, &params, at, &mut got).unwrap();
            crate::ops::linear::cpu::forward(&g, &r(&x), &pr, at, &mut want).unwrap();
            close(&got, &want, F32_SUM_ATOL, "forward");
            let (mut got, mut want) = (vec![0f32; 240], vec![0f32; 240]);
            backward_input(p, &g, &params, at, &dout, &mut got).unwrap();
            crate::ops::linear::cpu::backward_input(&g, &pr, at, &r(&dout), &mut want).unwrap();
            close(&got, &want, F32_SUM_ATOL, "backward_input");
            let (mut got, mut want) = (vec![0f32; 420], vec![0f32; 420]);
            backward_weight(p, &g, &x, &dout, at, &mut got).unwrap();
            crate::ops::linear::cpu::backward_weight(&g, &r(&x), &r(&dout), at, &mut want).unwrap();
            // The bias gradient sums unrounded dout: compare it against the unrounded reference.
            let mut wb = vec![0f32; 420];
            crate::ops::linear::cpu::backward_weight(&g, &x, &dout, at, &mut wb).unwrap();
            for s in 0..2 {
                want[s * 210 + 200..s * 210 + 205]
                    .copy_from_slice(&wb[s * 210 + 200..s * 210 + 205]);
            }
            close(&got, &want, F32_SUM_ATOL, "backward_weight");
        }
    }

    fn close(got: &[f32], want: &[f32], atol: f32, what: &str) {
        let (i, e) = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold((0, 0f32), |m, (i, e)| if e > m.1 { (i, e) } else { m });
        assert!(
            e <= atol,
            "{what}: worst error {e} at {i} (got {}, want {})",
            got[i],
            want[i]
        );
    }
}
