//! Plain reference loops for the linear classifier head, batched over students × images.
//! Dot products accumulate in f64: the head sums up to W·hf² (2048 for ConvNet-3) products.
//!
//! The loops are generic over [`Products`], how one product is formed and summed, so the
//! precision study's rounded head (`rounded.rs`) runs the very same loops with GPU-rounded
//! products summed in f32.

use std::iter::Sum;
use std::ops::Add;

use rayon::prelude::*;

use super::check;
use super::LinearGeom;
use crate::error::Result;
use crate::ops::ParamAt;

/// How the loops multiply two operands and sum the products.
pub(super) trait Products: Sync {
    /// The accumulator type.
    type Acc: Copy + Send + Sum + Add<Output = Self::Acc>;
    /// One product of a GEMM operand pair.
    fn mul(&self, a: f32, b: f32) -> Self::Acc;
    /// A value that enters a sum unrounded (the bias and its gradient are never GEMM operands).
    fn widen(&self, a: f32) -> Self::Acc;
    fn narrow(&self, acc: Self::Acc) -> f32;
}

/// The reference: exact products, f64 sums.
struct Exact;

impl Products for Exact {
    type Acc = f64;
    fn mul(&self, a: f32, b: f32) -> f64 {
        a as f64 * b as f64
    }
    fn widen(&self, a: f32) -> f64 {
        a as f64
    }
    fn narrow(&self, acc: f64) -> f32 {
        acc as f32
    }
}

/// out[s, b, o] = Σ_i x[s, b, i]·W[o, i] + bias[o].
/// x (S, B, fin), params (S, P) with W (fout, fin) and bias (fout), out (S, B, fout).
pub fn forward(
    g: &LinearGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    out: &mut [f32],
) -> Result<()> {
    forward_with(&Exact, g, x, params, at, out)
}

/// [`forward`] with products formed and summed by `p`.
pub(super) fn forward_with<P: Products>(
    p: &P,
    g: &LinearGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    out: &mut [f32],
) -> Result<()> {
    check(
        g,
        "linear forward",
        x.len(),
        params.len(),
        at,
        out.len(),
        "out",
    )?;
    let (fin, fout) = (g.fin, g.fout);
    out.par_chunks_mut(fout)
        .enumerate()
        .for_each(|(sb, o_row)| {
            let s = sb / g.batch;
            let xr = &x[sb * fin..][..fin]; // (fin)
            let wt = &params[s * at.row + at.weight..][..fout * fin]; // (fout, fin)
            let bias = &params[s * at.row + at.bias..][..fout]; // (fout)
            for (o, y) in o_row.iter_mut().enumerate() {
                let dot: P::Acc = wt[o * fin..][..fin]
                    .iter()
                    .zip(xr)
                    .map(|(&a, &b)| p.mul(a, b))
                    .sum();
                *y = p.narrow(dot + p.widen(bias[o]));
            }
        });
    Ok(())
}

/// dx[s, b, i] = Σ_o dout[s, b, o]·W[o, i].
/// params (S, P), dout (S, B, fout), dx (S, B, fin).
pub fn backward_input(
    g: &LinearGeom,
    params: &[f32],
    at: ParamAt,
    dout: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    backward_input_with(&Exact, g, params, at, dout, dx)
}

/// [`backward_input`] with products formed and summed by `p`.
pub(super) fn backward_input_with<P: Products>(
    p: &P,
    g: &LinearGeom,
    params: &[f32],
    at: ParamAt,
    dout: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    check(
        g,
        "linear backward_input",
        dx.len(),
        params.len(),
        at,
        dout.len(),
        "dout",
    )?;
    let (fin, fout) = (g.fin, g.fout);
    dx.par_chunks_mut(fin).enumerate().for_each(|(sb, dxr)| {
        let s = sb / g.batch;
        let wt = &params[s * at.row + at.weight..][..fout * fin]; // (fout, fin)
        let dor = &dout[sb * fout..][..fout]; // (fout)
        for (i, d) in dxr.iter_mut().enumerate() {
            let sum: P::Acc = (0..fout).map(|o| p.mul(dor[o], wt[o * fin + i])).sum();
            *d = p.narrow(sum);
        }
    });
    Ok(())
}

/// dW[o, i] = Σ_b dout[b, o]·x[b, i], dbias[o] = Σ_b dout[b, o], into grads (S, P) at `at`.
/// x (S, B, fin), dout (S, B, fout), grads (S, P).
pub fn backward_weight(
    g: &LinearGeom,
    x: &[f32],
    dout: &[f32],
    at: ParamAt,
    grads: &mut [f32],
) -> Result<()> {
    backward_weight_with(&Exact, g, x, dout, at, grads)
}

/// [`backward_weight`] with products formed and summed by `p`.
pub(super) fn backward_weight_with<P: Products>(
    p: &P,
    g: &LinearGeom,
    x: &[f32],
    dout: &[f32],
    at: ParamAt,
    grads: &mut [f32],
) -> Result<()> {
    check(
        g,
        "linear backward_weight",
        x.len(),
        grads.len(),
        at,
        dout.len(),
        "dout",
    )?;
    let (fin, fout, nb) = (g.fin, g.fout, g.batch);
    grads
        .par_chunks_mut(at.row)
        .enumerate()
        .for_each(|(s, row)| {
            let xs = &x[s * nb * fin..][..nb * fin]; // (B, fin)
            let ds = &dout[s * nb * fout..][..nb * fout]; // (B, fout)
            for o in 0..fout {
                let gw = &mut row[at.weight + o * fin..][..fin];
                for (i, gwi) in gw.iter_mut().enumerate() {
                    let sum: P::Acc = (0..nb)
                        .map(|b| p.mul(ds[b * fout + o], xs[b * fin + i]))
                        .sum();
                    *gwi = p.narrow(sum);
                }
                let gb: P::Acc = (0..nb).map(|b| p.widen(ds[b * fout + o])).sum();
                row[at.bias + o] = p.narrow(gb);
            }
        });
    Ok(())
}
