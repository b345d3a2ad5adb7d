//! Plain reference loops for the 3×3 convolution (stride 1, zero padding, bias): forward,
//! input gradient and weight/bias gradient. Rayon runs over students × images (forward, input
//! gradient) and students × output channels (weight gradient). Readability over speed: a faster
//! path lives elsewhere and is tested against these loops.

use rayon::prelude::*;

use super::check;
use super::ConvGeom;
use crate::error::Result;
use crate::ops::ParamAt;

/// Output columns `c` whose input column `c + kw − pad` lies inside [0, w).
fn valid_cols(g: &ConvGeom, kw: usize) -> (usize, usize) {
    let c0 = g.pad.saturating_sub(kw);
    let c1 = g.out_w().min((g.w + g.pad).saturating_sub(kw));
    (c0, c1.max(c0))
}

/// Input row read by output row `r` at kernel row `kh`, if it lies inside the image.
fn input_row(g: &ConvGeom, r: usize, kh: usize) -> Option<usize> {
    (r + kh).checked_sub(g.pad).filter(|&ir| ir < g.h)
}

/// y = conv(x, weight) + bias.
/// x (S, B, cin, h, w), params (S, P), y (S, B, cout, oh, ow).
pub fn forward(g: &ConvGeom, x: &[f32], params: &[f32], at: ParamAt, y: &mut [f32]) -> Result<()> {
    check(g, "conv forward", x.len(), params.len(), at, y.len(), "y")?;
    let (cin, cout, h, w) = (g.cin, g.cout, g.h, g.w);
    let (oh, ow) = (g.out_h(), g.out_w());
    y.par_chunks_mut(cout * oh * ow)
        .enumerate()
        .for_each(|(sb, yi)| {
            let s = sb / g.batch;
            let xi = &x[sb * cin * h * w..][..cin * h * w]; // (cin, h, w)
            let wt = &params[s * at.row + at.weight..][..cout * cin * 9]; // (cout, cin, 3, 3)
            let bias = &params[s * at.row + at.bias..][..cout]; // (cout)
            for co in 0..cout {
                let yc = &mut yi[co * oh * ow..][..oh * ow]; // (oh, ow)
                yc.fill(bias[co]);
                for ci in 0..cin {
                    let xc = &xi[ci * h * w..][..h * w]; // (h, w)
                    for kh in 0..3 {
                        for kw in 0..3 {
                            let wv = wt[((co * cin + ci) * 3 + kh) * 3 + kw];
                            let (c0, c1) = valid_cols(g, kw);
                            for r in 0..oh {
                                let Some(ir) = input_row(g, r, kh) else {
                                    continue;
                                };
                                // Output columns c0..c1 read input columns from c0 + kw − pad on.
                                let xs = &xc[ir * w + c0 + kw - g.pad..][..c1 - c0];
                                let ys = &mut yc[r * ow + c0..][..c1 - c0];
                                for (y, &xv) in ys.iter_mut().zip(xs) {
                                    *y += wv * xv;
                                }
                            }
                        }
                    }
                }
            }
        });
    Ok(())
}

/// dx = convᵀ(dy, weight): every output gradient is scattered back to the inputs it read.
/// params (S, P), dy (S, B, cout, oh, ow), dx (S, B, cin, h, w).
pub fn backward_input(
    g: &ConvGeom,
    params: &[f32],
    at: ParamAt,
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    check(
        g,
        "conv backward_input",
        dx.len(),
        params.len(),
        at,
        dy.len(),
        "dy",
    )?;
    let (cin, cout, h, w) = (g.cin, g.cout, g.h, g.w);
    let (oh, ow) = (g.out_h(), g.out_w());
    dx.par_chunks_mut(cin * h * w)
        .enumerate()
        .for_each(|(sb, dxi)| {
            let s = sb / g.batch;
            let dyi = &dy[sb * cout * oh * ow..][..cout * oh * ow]; // (cout, oh, ow)
            let wt = &params[s * at.row + at.weight..][..cout * cin * 9]; // (cout, cin, 3, 3)
            dxi.fill(0.0);
            for co in 0..cout {
                let dyc = &dyi[co * oh * ow..][..oh * ow]; // (oh, ow)
                for ci in 0..cin {
                    let dxc = &mut dxi[ci * h * w..][..h * w]; // (h, w)
                    for kh in 0..3 {
                        for kw in 0..3 {
                            let wv = wt[((co * cin + ci) * 3 + kh) * 3 + kw];
                            let (c0, c1) = valid_cols(g, kw);
                            for r in 0..oh {
                                let Some(ir) = input_row(g, r, kh) else {
                                    continue;
                                };
                                let dys = &dyc[r * ow + c0..][..c1 - c0];
                                let dxs = &mut dxc[ir * w + c0 + kw - g.pad..][..c1 - c0];
                                for (dx, &d) in dxs.iter_mut().zip(dys) {
                                    *dx += wv * d;
                                }
                            }
                        }
                    }
                }
            }
        });
    Ok(())
}

/// dweight[co, ci, kh, kw] = Σ_b Σ_(r,c) dy[b, co, r, c]·x[b, ci, r + kh − pad, c + kw − pad] and
/// dbias[co] = Σ_b Σ_(r,c) dy[b, co, r, c], written into grads (S, P) at `at`.
/// The sums run over B·oh·ow terms (8192 for a batch of 8 at 32 px): each column sums its oh rows
/// in f32, and the columns and images accumulate in f64.
/// x (S, B, cin, h, w), dy (S, B, cout, oh, ow), grads (S, P).
pub fn backward_weight(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    at: ParamAt,
    grads: &mut [f32],
) -> Result<()> {
    check(
        g,
        "conv backward_weight",
        x.len(),
        grads.len(),
        at,
        dy.len(),
        "dy",
    )?;
    let (cin, cout, h, w) = (g.cin, g.cout, g.h, g.w);
    let (oh, ow) = (g.out_h(), g.out_w());
    // (S, cout, cin·9 + 1): the weight gradient of one output channel followed by its bias gradient.
    let per_co = cin * 9 + 1;
    let mut tmp = vec![0f32; g.students * cout * per_co];
    tmp.par_chunks_mut(per_co)
        .enumerate()
        .for_each(|(sco, out)| {
            let (s, co) = (sco / cout, sco % cout);
            let mut bias_acc = 0f64;
            let mut acc = vec![0f64; cin * 9]; // (cin, 3, 3)
            let mut lanes = vec![0f32; ow]; // (ow) column partial sums
            for b in 0..g.batch {
                let sb = s * g.batch + b;
                let dyc = &dy[(sb * cout + co) * oh * ow..][..oh * ow]; // (oh, ow)
                bias_acc += dyc.iter().map(|&v| v as f64).sum::<f64>();
                for ci in 0..cin {
                    let xc = &x[(sb * cin + ci) * h * w..][..h * w]; // (h, w)
                    for kh in 0..3 {
                        for kw in 0..3 {
                            let (c0, c1) = valid_cols(g, kw);
                            // Per-column f32 partial sums over the oh rows (a vectorisable
                            // multiply-add), then one f64 sum across columns and images.
                            let lanes = &mut lanes[..c1 - c0];
                            lanes.fill(0.0);
                            for r in 0..oh {
                                let Some(ir) = input_row(g, r, kh) else {
                                    continue;
                                };
                                let dys = &dyc[r * ow + c0..][..c1 - c0];
                                let xs = &xc[ir * w + c0 + kw - g.pad..][..c1 - c0];
                                for ((l, &d), &xv) in lanes.iter_mut().zip(dys).zip(xs) {
                                    *l += d * xv;
                                }
                            }
                            let sum: f64 = lanes.iter().map(|&l| l as f64).sum();
                            acc[(ci * 3 + kh) * 3 + kw] += sum;
                        }
                    }
                }
            }
            for (o, a) in out.iter_mut().zip(&acc) {
                *o = *a as f32;
            }
            out[cin * 9] = bias_acc as f32;
        });
    for s in 0..g.students {
        let row = &mut grads[s * at.row..][..at.row];
        for co in 0..cout {
            let src = &tmp[(s * cout + co) * per_co..][..per_co];
            row[at.weight + co * cin * 9..][..cin * 9].copy_from_slice(&src[..cin * 9]);
            row[at.bias + co] = src[cin * 9];
        }
    }
    Ok(())
}
