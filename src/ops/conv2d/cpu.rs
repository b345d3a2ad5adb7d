//! Plain-loop reference of the general convolution (rayon over students × images).

use rayon::prelude::*;

use super::{check, Conv2dGeom};
use crate::error::Result;
use crate::ops::{check_len, ParamAt};

/// The input pixel (iy, ix) that output pixel (oy, ox) reads through tap (ky, kx), if inside.
#[inline]
pub(crate) fn tap(
    g: &Conv2dGeom,
    oy: usize,
    ox: usize,
    ky: usize,
    kx: usize,
) -> Option<(usize, usize)> {
    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
    (iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w)
        .then_some((iy as usize, ix as usize))
}

/// x (S, B, cin, h, w), params (S, P) → y (S, B, cout, oh, ow).
pub fn forward(
    g: &Conv2dGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    y: &mut [f32],
) -> Result<()> {
    check(
        g,
        at,
        "conv2d forward",
        &[("x", x.len(), g.in_len()), ("y", y.len(), g.out_len())],
    )?;
    check_len(
        "conv2d forward",
        "params",
        params.len(),
        g.students * at.row,
    )?;
    let (oh, ow, k) = (g.out_h(), g.out_w(), g.k);
    if g.students * g.batch == 0 {
        return Ok(());
    }
    y.par_chunks_mut(g.cout * oh * ow)
        .zip(x.par_chunks(g.cin * g.h * g.w))
        .enumerate()
        .for_each(|(i, (yb, xb))| {
            let row = &params[(i / g.batch) * at.row..][..at.row];
            let wt = &row[at.weight..][..g.weight_len()]; // (cout, cin, k, k)
            for co in 0..g.cout {
                let b = if g.bias { row[at.bias + co] } else { 0.0 };
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b;
                        for ci in 0..g.cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    if let Some((iy, ix)) = tap(g, oy, ox, ky, kx) {
                                        acc += wt[((co * g.cin + ci) * k + ky) * k + kx]
                                            * xb[(ci * g.h + iy) * g.w + ix];
                                    }
                                }
                            }
                        }
                        yb[(co * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        });
    Ok(())
}

/// params (S, P), dy (S, B, cout, oh, ow) → dx (S, B, cin, h, w), overwritten.
pub fn backward_input(
    g: &Conv2dGeom,
    params: &[f32],
    at: ParamAt,
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    let op = "conv2d backward_input";
    check(
        g,
        at,
        op,
        &[("dx", dx.len(), g.in_len()), ("dy", dy.len(), g.out_len())],
    )?;
    check_len(op, "params", params.len(), g.students * at.row)?;
    let (oh, ow, k) = (g.out_h(), g.out_w(), g.k);
    if g.students * g.batch == 0 {
        return Ok(());
    }
    dx.par_chunks_mut(g.cin * g.h * g.w)
        .zip(dy.par_chunks(g.cout * oh * ow))
        .enumerate()
        .for_each(|(i, (dxb, dyb))| {
            let wt = &params[(i / g.batch) * at.row + at.weight..][..g.weight_len()];
            dxb.fill(0.0);
            for co in 0..g.cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let d = dyb[(co * oh + oy) * ow + ox];
                        for ci in 0..g.cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    if let Some((iy, ix)) = tap(g, oy, ox, ky, kx) {
                                        dxb[(ci * g.h + iy) * g.w + ix] +=
                                            wt[((co * g.cin + ci) * k + ky) * k + kx] * d;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
    Ok(())
}

/// x (S, B, cin, h, w), dy (S, B, cout, oh, ow) → dW (and db with a bias) written, not added,
/// into grads (S, P) at `at`; the rest of grads is left alone.
pub fn backward_weight(
    g: &Conv2dGeom,
    x: &[f32],
    dy: &[f32],
    at: ParamAt,
    grads: &mut [f32],
) -> Result<()> {
    let op = "conv2d backward_weight";
    check(
        g,
        at,
        op,
        &[("x", x.len(), g.in_len()), ("dy", dy.len(), g.out_len())],
    )?;
    check_len(op, "grads", grads.len(), g.students * at.row)?;
    let (oh, ow, k) = (g.out_h(), g.out_w(), g.k);
    let (xl, yl) = (g.cin * g.h * g.w, g.cout * oh * ow); // per image
    grads
        .par_chunks_mut(at.row)
        .enumerate()
        .for_each(|(s, grow)| {
            let dw = &mut grow[at.weight..][..g.weight_len()];
            dw.fill(0.0);
            for b in 0..g.batch {
                let (xb, dyb) = (
                    &x[(s * g.batch + b) * xl..][..xl],
                    &dy[(s * g.batch + b) * yl..][..yl],
                );
                for co in 0..g.cout {
                    for ci in 0..g.cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let mut acc = 0.0;
                                for oy in 0..oh {
                                    for ox in 0..ow {
                                        if let Some((iy, ix)) = tap(g, oy, ox, ky, kx) {
                                            acc += dyb[(co * oh + oy) * ow + ox]
                                                * xb[(ci * g.h + iy) * g.w + ix];
                                        }
                                    }
                                }
                                dw[((co * g.cin + ci) * k + ky) * k + kx] += acc;
                            }
                        }
                    }
                }
            }
            if g.bias {
                for co in 0..g.cout {
                    grow[at.bias + co] = (0..g.batch)
                        .map(|b| {
                            dy[(s * g.batch + b) * yl + co * oh * ow..][..oh * ow]
                                .iter()
                                .sum::<f32>()
                        })
                        .sum();
                }
            }
        });
    Ok(())
}
