//! Plain-loop reference of the normalisation layer. A "pair" is one normalisation group — (image,
//! group) for group norm, (student, channel) for batch norm — with its saved (mean, 1/std); sums
//! run in f64 over the group's elements, then everything elementwise runs over images.

use rayon::prelude::*;

use super::{check, NormLayerGeom, NormLayerKind};
use crate::error::Result;
use crate::ops::{check_len, Mode, ParamAt};

/// Normalisation groups (pairs of saved statistics) in the whole buffer.
fn pairs(g: &NormLayerGeom) -> usize {
    g.stats_len() / 2
}

/// The pair that element (s, b, c, ·) belongs to.
fn pair_of(g: &NormLayerGeom, s: usize, b: usize, c: usize) -> usize {
    match g.kind {
        NormLayerKind::Group { groups } => (s * g.batch + b) * groups + c / (g.c / groups),
        NormLayerKind::Batch => s * g.c + c,
    }
}

/// Calls f(index into x, channel) for every element of pair `k`.
fn for_each_elem(g: &NormLayerGeom, k: usize, mut f: impl FnMut(usize, usize)) {
    let hw = g.h * g.w;
    match g.kind {
        NormLayerKind::Group { groups } => {
            let (img, gi, per) = (k / groups, k % groups, g.c / groups);
            for c in gi * per..(gi + 1) * per {
                let base = (img * g.c + c) * hw;
                (base..base + hw).for_each(|i| f(i, c));
            }
        }
        NormLayerKind::Batch => {
            let (s, c) = (k / g.c, k % g.c);
            for b in 0..g.batch {
                let base = ((s * g.batch + b) * g.c + c) * hw;
                (base..base + hw).for_each(|i| f(i, c));
            }
        }
    }
}

/// Elements per normalisation group.
fn group_size(g: &NormLayerGeom) -> usize {
    match g.kind {
        NormLayerKind::Group { groups } => g.c / groups * g.h * g.w,
        NormLayerKind::Batch => g.batch * g.h * g.w,
    }
}

/// x (S, B, c, h, w) → y (same), statistics into `stats`; batch norm reads or (train mode)
/// updates running (S, R) at `running_at` (running_mean at `.weight`, running_var at `.bias`).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    g: &NormLayerGeom,
    mode: Mode,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    running: &mut [f32],
    running_at: ParamAt,
    stats: &mut [f32],
    y: &mut [f32],
) -> Result<()> {
    let op = "norm forward";
    check(
        g,
        at,
        Some((running.len(), running_at)),
        op,
        &[
            ("x", x.len(), g.len()),
            ("y", y.len(), g.len()),
            ("stats", stats.len(), g.stats_len()),
        ],
    )?;
    check_len(op, "params", params.len(), g.students * at.row)?;
    let n = group_size(g) as f64;
    let use_running = g.kind == NormLayerKind::Batch && mode == Mode::Eval;
    stats.par_chunks_mut(2).enumerate().for_each(|(k, st)| {
        let (mut sum, mut sq) = (0f64, 0f64);
        for_each_elem(g, k, |i, _| sum += x[i] as f64);
        let mean = sum / n;
        for_each_elem(g, k, |i, _| sq += (x[i] as f64 - mean).powi(2));
        st[0] = mean as f32;
        st[1] = (sq / n) as f32; // the biased variance for now; 1/std below
    });
    if g.kind == NormLayerKind::Batch {
        for k in 0..pairs(g) {
            let (s, c) = (k / g.c, k % g.c);
            let row = &mut running[s * running_at.row..][..running_at.row];
            let (rm, rv) = (running_at.weight + c, running_at.bias + c);
            if use_running {
                stats[2 * k] = row[rm];
                stats[2 * k + 1] = row[rv];
            } else {
                let m = g.momentum;
                let unbiased = stats[2 * k + 1] as f64 * n / (n - 1.0).max(1.0);
                row[rm] = (1.0 - m) * row[rm] + m * stats[2 * k];
                row[rv] = (1.0 - m) * row[rv] + m * unbiased as f32;
            }
        }
    }
    for st in stats.chunks_exact_mut(2) {
        st[1] = 1.0 / (st[1] + g.eps).sqrt();
    }
    let (img, hw) = (g.c * g.h * g.w, g.h * g.w);
    let stats = &*stats;
    y.par_chunks_mut(img)
        .zip(x.par_chunks(img))
        .enumerate()
        .for_each(|(i, (yb, xb))| {
            let (s, b) = (i / g.batch, i % g.batch);
            let prow = &params[s * at.row..][..at.row];
            for c in 0..g.c {
                let k = pair_of(g, s, b, c);
                let (mean, rstd) = (stats[2 * k], stats[2 * k + 1]);
                let (gamma, beta) = (prow[at.weight + c], prow[at.bias + c]);
                for j in c * hw..(c + 1) * hw {
                    yb[j] = (xb[j] - mean) * rstd * gamma + beta;
                }
            }
        });
    Ok(())
}

/// dy (S, B, c, h, w) → dx (same), dγ and dβ written into grads (S, P) at `at`, with the saved
/// statistics of a train-mode forward of x.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &NormLayerGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    stats: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    grads: &mut [f32],
) -> Result<()> {
    let op = "norm backward";
    check(
        g,
        at,
        None,
        op,
        &[
            ("x", x.len(), g.len()),
            ("dy", dy.len(), g.len()),
            ("dx", dx.len(), g.len()),
            ("stats", stats.len(), g.stats_len()),
        ],
    )?;
    check_len(op, "params", params.len(), g.students * at.row)?;
    check_len(op, "grads", grads.len(), g.students * at.row)?;
    let (img, hw, n) = (g.c * g.h * g.w, g.h * g.w, group_size(g) as f64);
    let student_of = |i: usize| i / (g.batch * img);
    // Per pair: mean of ĝ = dy·γ and of ĝ·x̂ over the group.
    let mut coef = vec![0f32; g.stats_len()]; // (pairs, 2)
    coef.par_chunks_mut(2).enumerate().for_each(|(k, cf)| {
        let (mean, rstd) = (stats[2 * k], stats[2 * k + 1]);
        let (mut sg, mut sgx) = (0f64, 0f64);
        for_each_elem(g, k, |i, c| {
            let gi = dy[i] * params[student_of(i) * at.row + at.weight + c];
            sg += gi as f64;
            sgx += (gi * (x[i] - mean) * rstd) as f64;
        });
        cf[0] = (sg / n) as f32;
        cf[1] = (sgx / n) as f32;
    });
    dx.par_chunks_mut(img).enumerate().for_each(|(i, dxb)| {
        let (s, b) = (i / g.batch, i % g.batch);
        for c in 0..g.c {
            let k = pair_of(g, s, b, c);
            let (mean, rstd) = (stats[2 * k], stats[2 * k + 1]);
            let gamma = params[s * at.row + at.weight + c];
            for (j, d) in (c * hw..).zip(&mut dxb[c * hw..(c + 1) * hw]) {
                let e = i * img + j;
                let xh = (x[e] - mean) * rstd;
                *d = rstd * (dy[e] * gamma - coef[2 * k] - xh * coef[2 * k + 1]);
            }
        }
    });
    grads
        .par_chunks_mut(at.row)
        .enumerate()
        .for_each(|(s, grow)| {
            for c in 0..g.c {
                let (mut dg, mut db) = (0f64, 0f64);
                for b in 0..g.batch {
                    let k = pair_of(g, s, b, c);
                    let (mean, rstd) = (stats[2 * k], stats[2 * k + 1]);
                    let base = ((s * g.batch + b) * g.c + c) * hw;
                    for e in base..base + hw {
                        dg += (dy[e] * (x[e] - mean) * rstd) as f64;
                        db += dy[e] as f64;
                    }
                }
                grow[at.weight + c] = dg as f32;
                grow[at.bias + c] = db as f32;
            }
        });
    Ok(())
}
