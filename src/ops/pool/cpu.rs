//! Plain-loop reference of max and average pooling (rayon over planes).

use rayon::prelude::*;

use super::{check, PoolGeom, PoolKind};
use crate::error::Result;

/// The input rows or columns window o covers: [o·stride − pad, … + k) clipped to [0, n).
fn span(o: usize, g: &PoolGeom, n: usize) -> std::ops::Range<usize> {
    let lo = (o * g.stride) as isize - g.pad as isize;
    (lo.max(0) as usize)..((lo + g.k as isize).min(n as isize) as usize)
}

/// x (S, B, c, h, w) → y (S, B, c, oh, ow).
pub fn forward(g: &PoolGeom, x: &[f32], y: &mut [f32]) -> Result<()> {
    check(
        g,
        "pool forward",
        &[("x", x.len(), g.in_len()), ("y", y.len(), g.out_len())],
    )?;
    let (oh, ow) = (g.out_h(), g.out_w());
    if g.planes() == 0 {
        return Ok(());
    }
    let area = (g.k * g.k) as f32;
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(g.h * g.w))
        .for_each(|(yp, xp)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (rows, cols) = (span(oy, g, g.h), span(ox, g, g.w));
                    yp[oy * ow + ox] = match g.kind {
                        PoolKind::Max => rows
                            .flat_map(|iy| cols.clone().map(move |ix| (iy, ix)))
                            .map(|(iy, ix)| xp[iy * g.w + ix])
                            .fold(f32::NEG_INFINITY, f32::max),
                        PoolKind::Avg => {
                            rows.flat_map(|iy| cols.clone().map(move |ix| xp[iy * g.w + ix]))
                                .sum::<f32>()
                                / area
                        }
                    };
                }
            }
        });
    Ok(())
}

/// dy (S, B, c, oh, ow) → dx (S, B, c, h, w), overwritten; x is the forward's input.
pub fn backward(g: &PoolGeom, x: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    check(
        g,
        "pool backward",
        &[
            ("x", x.len(), g.in_len()),
            ("dy", dy.len(), g.out_len()),
            ("dx", dx.len(), g.in_len()),
        ],
    )?;
    let (oh, ow) = (g.out_h(), g.out_w());
    if g.planes() == 0 {
        return Ok(());
    }
    let area = (g.k * g.k) as f32;
    dx.par_chunks_mut(g.h * g.w)
        .zip(x.par_chunks(g.h * g.w).zip(dy.par_chunks(oh * ow)))
        .for_each(|(dp, (xp, gp))| {
            dp.fill(0.0);
            for oy in 0..oh {
                for ox in 0..ow {
                    let d = gp[oy * ow + ox];
                    let (rows, cols) = (span(oy, g, g.h), span(ox, g, g.w));
                    match g.kind {
                        PoolKind::Max => {
                            // The first maximum in row-major order takes the whole gradient.
                            let mut best = (f32::NEG_INFINITY, usize::MAX);
                            for iy in rows {
                                for ix in cols.clone() {
                                    let v = xp[iy * g.w + ix];
                                    if v > best.0 || best.1 == usize::MAX {
                                        best = (v, iy * g.w + ix);
                                    }
                                }
                            }
                            dp[best.1] += d;
                        }
                        PoolKind::Avg => {
                            for iy in rows {
                                for ix in cols.clone() {
                                    dp[iy * g.w + ix] += d / area;
                                }
                            }
                        }
                    }
                }
            }
        });
    Ok(())
}
