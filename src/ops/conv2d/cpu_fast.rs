//! im2col + GEMM general convolution for the CPU backend (the fast path behind
//! `Backend::conv2d_forward` / `conv2d_backward`), with the reference's entry points and semantics.
//! Per image: col (cin·k·k, oh·ow) gathers the input windows, then
//! - forward: y_b (cout, oh·ow) = W (cout, cin·k·k) · col + bias;
//! - input ∂: dcol = Wᵀ · dy_b, scattered back (col2im, adding) into dx_b;
//! - weight ∂: dW = Σ_b dy_b · col_bᵀ, the batch split into one chunk per thread whose partial
//!   sums are added at the end (a fixed split, so results do not depend on scheduling).
//!
//! rayon spreads images over threads; each task runs a single-threaded GEMM on its own scratch.

use rayon::prelude::*;

use super::{check, Conv2dGeom};
use crate::error::Result;
use crate::ops::im2col::Windows;
use crate::ops::precision::{gemm_rounded, GemmPrecision, Operand};
use crate::ops::scratch::ScratchPool;
use crate::ops::{check_len, ParamAt};

/// Fills col (cin·k·k, oh·ow) with the windows of one image xb (cin, h, w), zeros outside.
fn im2col(g: &Conv2dGeom, xb: &[f32], col: &mut [f32]) {
    let win = Windows {
        k: g.k,
        stride: g.stride,
        pad: g.pad as isize,
        oh: g.out_h(),
        ow: g.out_w(),
    };
    crate::ops::im2col::im2col(xb, g.cin, g.h, g.w, &win, col);
}

/// Adds col (cin·k·k, oh·ow) back into dxb (cin, h, w) (the adjoint of [`im2col`]).
fn col2im(g: &Conv2dGeom, col: &[f32], dxb: &mut [f32]) {
    let (oh, ow, k) = (g.out_h(), g.out_w(), g.k);
    dxb.fill(0.0);
    for ci in 0..g.cin {
        for ky in 0..k {
            for kx in 0..k {
                let src = &col[((ci * k + ky) * k + kx) * oh * ow..][..oh * ow];
                for oy in 0..oh {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy as usize >= g.h {
                        continue;
                    }
                    let xrow = &mut dxb[(ci * g.h + iy as usize) * g.w..][..g.w];
                    for (ox, &v) in src[oy * ow..][..ow].iter().enumerate() {
                        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                        if ix >= 0 && (ix as usize) < g.w {
                            xrow[ix as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

/// x (S, B, cin, h, w), params (S, P) → y (S, B, cout, oh, ow).
pub fn forward(
    g: &Conv2dGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    y: &mut [f32],
    pool: &ScratchPool,
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
    let (cout, kk, ohw) = (g.cout, g.cin * g.k * g.k, g.out_h() * g.out_w());
    if g.students * g.batch == 0 {
        return Ok(());
    }
    y.par_chunks_mut(cout * ohw)
        .zip(x.par_chunks(g.cin * g.h * g.w))
        .enumerate()
        .for_each_init(
            || pool.take(kk * ohw),
            |col, (i, (yb, xb))| {
                let prow = &params[(i / g.batch) * at.row..][..at.row];
                im2col(g, xb, col);
                for (co, row) in yb.chunks_exact_mut(ohw).enumerate() {
                    row.fill(if g.bias { prow[at.bias + co] } else { 0.0 });
                }
                let wt = Operand {
                    data: &prow[at.weight..][..cout * kk],
                    cs: 1,
                    rs: kk as isize,
                }; // (cout, K)
                let c = Operand {
                    data: &col[..],
                    cs: 1,
                    rs: ohw as isize,
                }; // (K, oh·ow)
                gemm_rounded(
                    GemmPrecision::Fp32,
                    pool,
                    cout,
                    ohw,
                    kk,
                    yb,
                    ohw as isize,
                    true,
                    wt,
                    c,
                );
            },
        );
    Ok(())
}

/// params (S, P), dy (S, B, cout, oh, ow) → dx (S, B, cin, h, w), overwritten.
pub fn backward_input(
    g: &Conv2dGeom,
    params: &[f32],
    at: ParamAt,
    dy: &[f32],
    dx: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    let op = "conv2d backward_input";
    check(
        g,
        at,
        op,
        &[("dx", dx.len(), g.in_len()), ("dy", dy.len(), g.out_len())],
    )?;
    check_len(op, "params", params.len(), g.students * at.row)?;
    let (cout, kk, ohw) = (g.cout, g.cin * g.k * g.k, g.out_h() * g.out_w());
    if g.students * g.batch == 0 {
        return Ok(());
    }
    dx.par_chunks_mut(g.cin * g.h * g.w)
        .zip(dy.par_chunks(cout * ohw))
        .enumerate()
        .for_each_init(
            || pool.take(kk * ohw),
            |col, (i, (dxb, dyb))| {
                let wt = &params[(i / g.batch) * at.row + at.weight..][..cout * kk];
                let wt_t = Operand {
                    data: wt,
                    cs: kk as isize,
                    rs: 1,
                }; // Wᵀ (K, cout)
                let d = Operand {
                    data: dyb,
                    cs: 1,
                    rs: ohw as isize,
                }; // (cout, oh·ow)
                gemm_rounded(
                    GemmPrecision::Fp32,
                    pool,
                    kk,
                    ohw,
                    cout,
                    col,
                    ohw as isize,
                    false,
                    wt_t,
                    d,
                );
                col2im(g, col, dxb);
            },
        );
    Ok(())
}

/// x (S, B, cin, h, w), dy (S, B, cout, oh, ow) → dW (and db with a bias) written, not added,
/// into grads (S, P) at `at`.
pub fn backward_weight(
    g: &Conv2dGeom,
    x: &[f32],
    dy: &[f32],
    at: ParamAt,
    grads: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    let op = "conv2d backward_weight";
    check(
        g,
        at,
        op,
        &[("x", x.len(), g.in_len()), ("dy", dy.len(), g.out_len())],
    )?;
    check_len(op, "grads", grads.len(), g.students * at.row)?;
    let (cout, kk, ohw) = (g.cout, g.cin * g.k * g.k, g.out_h() * g.out_w());
    let (xl, yl) = (g.cin * g.h * g.w, cout * ohw); // per image
                                                    // A fixed number of batch chunks per student (not the thread count), so the summation order,
                                                    // and with it every bit of the result, is the same on any machine.
    let chunks = g.batch.clamp(1, BATCH_CHUNKS);
    let per = g.batch.div_ceil(chunks);
    let mut part = pool.take(g.students * chunks * cout * kk); // (S, chunks, cout, K)
    part.par_chunks_mut(cout * kk).enumerate().for_each_init(
        || pool.take(kk * ohw),
        |col, (t, pw)| {
            let (s, c) = (t / chunks, t % chunks);
            pw.fill(0.0);
            for b in (c * per)..((c + 1) * per).min(g.batch) {
                let i = s * g.batch + b;
                im2col(g, &x[i * xl..][..xl], col);
                let d = Operand {
                    data: &dy[i * yl..][..yl],
                    cs: 1,
                    rs: ohw as isize,
                }; // (cout, oh·ow)
                let ct = Operand {
                    data: &col[..],
                    cs: ohw as isize,
                    rs: 1,
                }; // colᵀ (oh·ow, K)
                gemm_rounded(
                    GemmPrecision::Fp32,
                    pool,
                    cout,
                    kk,
                    ohw,
                    pw,
                    kk as isize,
                    true,
                    d,
                    ct,
                );
            }
        },
    );
    grads
        .par_chunks_mut(at.row)
        .enumerate()
        .for_each(|(s, grow)| {
            let dw = &mut grow[at.weight..][..cout * kk];
            dw.copy_from_slice(&part[s * chunks * cout * kk..][..cout * kk]);
            for c in 1..chunks {
                for (o, &v) in dw
                    .iter_mut()
                    .zip(&part[(s * chunks + c) * cout * kk..][..cout * kk])
                {
                    *o += v;
                }
            }
            if g.bias {
                for co in 0..cout {
                    grow[at.bias + co] = (0..g.batch)
                        .map(|b| {
                            dy[(s * g.batch + b) * yl + co * ohw..][..ohw]
                                .iter()
                                .sum::<f32>()
                        })
                        .sum();
                }
            }
        });
    Ok(())
}

/// Batch chunks per student in the weight gradient: enough to keep a few threads busy with one
/// student, few enough that the partial sums (chunks × cout × K floats) stay small.
const BATCH_CHUNKS: usize = 8;
