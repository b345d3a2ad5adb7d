//! Plain reference loops for the linear classifier head, batched over students × images.
//! Dot products accumulate in f64: the head sums up to W·hf² (2048 for ConvNet-3) products.

use rayon::prelude::*;

use super::check;
use crate::backend::{LinearGeom, ParamAt};
use crate::error::Result;

/// out[s, b, o] = Σ_i x[s, b, i]·W[o, i] + bias[o].
/// x (S, B, fin), params (S, P) with W (fout, fin) and bias (fout), out (S, B, fout).
pub fn forward(
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
                let dot: f64 = wt[o * fin..][..fin]
                    .iter()
                    .zip(xr)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                *y = (dot + bias[o] as f64) as f32;
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
            let sum: f64 = (0..fout)
                .map(|o| dor[o] as f64 * wt[o * fin + i] as f64)
                .sum();
            *d = sum as f32;
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
                    let sum: f64 = (0..nb)
                        .map(|b| ds[b * fout + o] as f64 * xs[b * fin + i] as f64)
                        .sum();
                    *gwi = sum as f32;
                }
                let gb: f64 = (0..nb).map(|b| ds[b * fout + o] as f64).sum();
                row[at.bias + o] = gb as f32;
            }
        });
    Ok(())
}
