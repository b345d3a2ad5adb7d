//! Plain reference loops for the fused norm → ReLU → 2×2 average pool and its backward.
//! Forward saves (mean, 1/std) per normalisation group; backward recomputes the normalised value
//! and the ReLU mask from the saved conv output instead of storing them. Reductions run in f64.

use rayon::prelude::*;

use super::{check, Saved};
use super::{NormGeom, NormKind};
use crate::error::{Error, Result};
use crate::ops::check_len;
use crate::ops::{Mode, ParamAt};

/// Mean and biased variance of the values yielded by `it`, in f64.
fn moments(it: impl Iterator<Item = f32> + Clone) -> (f64, f64) {
    let (mut n, mut sum) = (0usize, 0f64);
    for v in it.clone() {
        n += 1;
        sum += v as f64;
    }
    let mean = sum / n as f64;
    let var = it.map(|v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    (mean, var)
}

/// The affine map of one channel: z = (y − mean)·rstd·γ + β.
#[derive(Clone, Copy)]
struct Affine {
    mean: f32,
    rstd: f32,
    gamma: f32,
    beta: f32,
}

impl Affine {
    const IDENTITY: Affine = Affine {
        mean: 0.0,
        rstd: 1.0,
        gamma: 1.0,
        beta: 0.0,
    };

    fn xhat(&self, y: f32) -> f32 {
        (y - self.mean) * self.rstd
    }
    fn z(&self, y: f32) -> f32 {
        self.xhat(y) * self.gamma + self.beta
    }
}

/// One (h, w) plane: out (h/2, w/2) = avgpool2(relu(z(y))).
fn plane_forward(a: &Affine, yp: &[f32], h: usize, w: usize, outp: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    for i in 0..oh {
        for j in 0..ow {
            let r = |di: usize, dj: usize| a.z(yp[(2 * i + di) * w + 2 * j + dj]).max(0.0);
            outp[i * ow + j] = (r(0, 0) + r(0, 1) + r(1, 0) + r(1, 1)) * 0.25;
        }
    }
}

/// One (h, w) plane of the backward: dz = relu'(z)·dout/4 (pool and ReLU undone) written into
/// `dzp`; returns (Σ dz, Σ dz·x̂) for the norm's reductions.
fn plane_dz(
    a: &Affine,
    yp: &[f32],
    doutp: &[f32],
    h: usize,
    w: usize,
    dzp: &mut [f32],
) -> (f64, f64) {
    let ow = w / 2;
    let (mut sdz, mut sdzx) = (0f64, 0f64);
    for r in 0..h {
        for c in 0..w {
            let y = yp[r * w + c];
            let dz = if a.z(y) > 0.0 {
                doutp[(r / 2) * ow + c / 2] * 0.25
            } else {
                0.0
            };
            dzp[r * w + c] = dz;
            sdz += dz as f64;
            sdzx += dz as f64 * a.xhat(y) as f64;
        }
    }
    (sdz, sdzx)
}

/// dy = γ·rstd·(dz − mean(dz) − x̂·mean(dz·x̂)), in place over a plane holding dz.
fn plane_dy(a: &Affine, yp: &[f32], mean_dz: f32, mean_dzx: f32, dp: &mut [f32]) {
    let k = a.gamma * a.rstd;
    for (d, &y) in dp.iter_mut().zip(yp) {
        *d = k * (*d - mean_dz - a.xhat(y) * mean_dzx);
    }
}

/// γ, β of channel `ch` for student `s`, or the identity when there is no norm.
fn affine(
    g: &NormGeom,
    params: &[f32],
    at: ParamAt,
    s: usize,
    ch: usize,
    saved: [f32; 2],
) -> Affine {
    match g.kind {
        NormKind::None => Affine::IDENTITY,
        _ => Affine {
            mean: saved[0],
            rstd: saved[1],
            gamma: params[s * at.row + at.weight + ch],
            beta: params[s * at.row + at.bias + ch],
        },
    }
}

/// The saved (mean, rstd) of plane (s, b, ch).
fn saved_at(g: &NormGeom, stats: &[f32], s: usize, b: usize, ch: usize) -> [f32; 2] {
    let i = match Saved::of(g.kind) {
        Saved::PerImage => (s * g.batch + b) * g.c + ch,
        Saved::PerChannel => s * g.c + ch,
        Saved::Nothing => return [0.0, 1.0],
    };
    [stats[2 * i], stats[2 * i + 1]]
}

/// y (S, B, c, h, w) → out (S, B, c, h/2, w/2); stats as [`Saved`] says; running (S, R) holds
/// running_mean at `running_at.weight` and running_var at `running_at.bias` (batch norm only).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    g: &NormGeom,
    mode: Mode,
    y: &[f32],
    params: &[f32],
    at: ParamAt,
    running: &mut [f32],
    running_at: ParamAt,
    stats: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    check(
        g,
        "norm_relu_pool forward",
        y.len(),
        params.len(),
        at,
        stats.len(),
        out.len(),
    )?;
    let (c, h, w) = (g.c, g.h, g.w);
    let hw = h * w;
    let eps = g.eps as f64;
    match (g.kind, mode) {
        (NormKind::None, _) => {}
        (NormKind::Instance, _) => {
            stats.par_chunks_mut(2).enumerate().for_each(|(i, st)| {
                let (mean, var) = moments(y[i * hw..][..hw].iter().copied());
                st[0] = mean as f32;
                st[1] = (1.0 / (var + eps).sqrt()) as f32;
            });
        }
        (NormKind::Batch, Mode::Train) => {
            let n = g.batch * hw;
            if n < 2 {
                return Err(Error::shape(format!(
                    "batch norm in train mode needs more than one value per channel, got batch {} of {h}×{w}",
                    g.batch
                )));
            }
            super::check_running(g, running.len(), running_at)?;
            // (S, c) batch moments (mean, biased variance) in f64.
            let mut mom = vec![(0f64, 0f64); g.students * c];
            mom.par_iter_mut().enumerate().for_each(|(i, m)| {
                let (s, ch) = (i / c, i % c);
                let plane = |b: usize| &y[((s * g.batch + b) * c + ch) * hw..][..hw];
                *m = moments((0..g.batch).flat_map(|b| plane(b).iter().copied()));
            });
            // Normalise with the biased variance; the running variance takes the unbiased one.
            let m = g.momentum as f64;
            for (i, &(mean, var)) in mom.iter().enumerate() {
                let (s, ch) = (i / c, i % c);
                stats[2 * i] = mean as f32;
                stats[2 * i + 1] = (1.0 / (var + eps).sqrt()) as f32;
                let unbiased = var * n as f64 / (n - 1) as f64;
                let rm = &mut running[s * running_at.row + running_at.weight + ch];
                *rm = ((1.0 - m) * *rm as f64 + m * mean) as f32;
                let rv = &mut running[s * running_at.row + running_at.bias + ch];
                *rv = ((1.0 - m) * *rv as f64 + m * unbiased) as f32;
            }
        }
        (NormKind::Batch, Mode::Eval) => {
            super::check_running(g, running.len(), running_at)?;
            for (i, st) in stats.chunks_mut(2).enumerate() {
                let (s, ch) = (i / c, i % c);
                st[0] = running[s * running_at.row + running_at.weight + ch];
                let rv = running[s * running_at.row + running_at.bias + ch] as f64;
                st[1] = (1.0 / (rv + eps).sqrt()) as f32;
            }
        }
    }
    let stats = &*stats;
    let out_plane = (h / 2) * (w / 2);
    out.par_chunks_mut(c * out_plane)
        .enumerate()
        .for_each(|(sb, outi)| {
            let (s, b) = (sb / g.batch, sb % g.batch);
            for ch in 0..c {
                let a = affine(g, params, at, s, ch, saved_at(g, stats, s, b, ch));
                let yp = &y[(sb * c + ch) * hw..][..hw];
                plane_forward(&a, yp, h, w, &mut outi[ch * out_plane..][..out_plane]);
            }
        });
    Ok(())
}

/// dout (S, B, c, h/2, w/2) → dy (S, B, c, h, w); γ, β gradients into grads (S, P) at `at`.
/// Train-mode semantics: the statistics depend on y, so their gradient is included.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &NormGeom,
    y: &[f32],
    params: &[f32],
    at: ParamAt,
    stats: &[f32],
    dout: &[f32],
    dy: &mut [f32],
    grads: &mut [f32],
) -> Result<()> {
    check(
        g,
        "norm_relu_pool backward",
        y.len(),
        params.len(),
        at,
        stats.len(),
        dout.len(),
    )?;
    check_len("norm_relu_pool backward", "dy", dy.len(), y.len())?;
    check_len(
        "norm_relu_pool backward",
        "grads",
        grads.len(),
        params.len(),
    )?;
    let (c, h, w) = (g.c, g.h, g.w);
    let (hw, out_plane) = (h * w, (h / 2) * (w / 2));
    // Pass 1: dz into dy, and (Σ dz, Σ dz·x̂) per plane. sums (S, B, c, 2).
    let mut sums = vec![0f64; g.students * g.batch * c * 2];
    dy.par_chunks_mut(c * hw)
        .zip(sums.par_chunks_mut(c * 2))
        .enumerate()
        .for_each(|(sb, (dyi, si))| {
            let (s, b) = (sb / g.batch, sb % g.batch);
            for ch in 0..c {
                let a = affine(g, params, at, s, ch, saved_at(g, stats, s, b, ch));
                let yp = &y[(sb * c + ch) * hw..][..hw];
                let dp = &dout[(sb * c + ch) * out_plane..][..out_plane];
                let (sdz, sdzx) = plane_dz(&a, yp, dp, h, w, &mut dyi[ch * hw..][..hw]);
                si[2 * ch] = sdz;
                si[2 * ch + 1] = sdzx;
            }
        });
    if g.kind == NormKind::None {
        return Ok(());
    }
    // Per (s, ch) totals over the batch: dβ = Σ dz, dγ = Σ dz·x̂. tot (S, c, 2).
    let mut tot = vec![0f64; g.students * c * 2];
    for s in 0..g.students {
        for b in 0..g.batch {
            for k in 0..2 * c {
                tot[s * 2 * c + k] += sums[(s * g.batch + b) * 2 * c + k];
            }
        }
    }
    for s in 0..g.students {
        for ch in 0..c {
            grads[s * at.row + at.weight + ch] = tot[(s * c + ch) * 2 + 1] as f32;
            grads[s * at.row + at.bias + ch] = tot[(s * c + ch) * 2] as f32;
        }
    }
    // Pass 2: the norm's own backward, over the group the statistics were taken on.
    let batch_norm = g.kind == NormKind::Batch;
    let n = if batch_norm { g.batch * hw } else { hw } as f64;
    dy.par_chunks_mut(c * hw).enumerate().for_each(|(sb, dyi)| {
        let (s, b) = (sb / g.batch, sb % g.batch);
        for ch in 0..c {
            let a = affine(g, params, at, s, ch, saved_at(g, stats, s, b, ch));
            let grp = if batch_norm {
                &tot[(s * c + ch) * 2..]
            } else {
                &sums[(sb * c + ch) * 2..]
            };
            let yp = &y[(sb * c + ch) * hw..][..hw];
            plane_dy(
                &a,
                yp,
                (grp[0] / n) as f32,
                (grp[1] / n) as f32,
                &mut dyi[ch * hw..][..hw],
            );
        }
    });
    Ok(())
}
