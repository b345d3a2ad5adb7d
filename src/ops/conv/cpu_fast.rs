//! GEMM-based 3×3 convolution (stride 1, bias) for the CPU backend: the fast path behind
//! `Backend::conv3x3_forward` / `conv3x3_backward`, with the reference's three entry points
//! (`forward`, `backward_input`, `backward_weight`), shapes and semantics (outputs and gradients
//! overwritten, weights read from a flat (S, P) row), plus a scratch pool.
//!
//! Two algorithms, picked per layer by [`ConvPath::resolve`]:
//! - im2col (thin layers, e.g. the 3-channel first layer): one GEMM per image, operands in L2:
//!   forward y_b (cout, oh·ow) = W (cout, 9·cin) · col(x_b) (9·cin, oh·ow) + bias;
//!   weight ∂ dW (cout, 9·cin) = Σ_b dy_b (cout, oh·ow) · col(x_b)ᵀ, db = Σ_b row sums of dy_b.
//! - Winograd F(2×2, 3×3) (wide layers): 2.25× fewer multiplications, see winograd_fast.rs.
//!
//! On both paths the input gradient is the forward of dy with W̃ (W with cin and cout swapped
//! and the 3×3 window flipped) at padding 2 − pad: a gather, so no col2im scatter-add.
//! rayon spreads images over threads; each task runs single-threaded GEMMs on its own scratch,
//! which measured faster here than one multi-threaded GEMM over the whole batch.

use rayon::prelude::*;

use super::winograd_fast as winograd;
use super::ConvGeom;
use crate::error::{Error, Result};
use crate::ops::im2col::{im2col, Windows};
use crate::ops::precision::{gemm_rounded, GemmPrecision, Operand};
use crate::ops::scratch::ScratchPool;
use crate::ops::ParamAt;

/// Which algorithm runs a conv. `Auto` is what the backend uses; tests and benches name one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    /// Winograd for wide layers (both channel counts ≥ 16, padding ≤ 2), im2col otherwise.
    Auto,
    Im2col,
    Winograd,
}

/// Below this many channels a Winograd GEMM (inner dimension = channels) is too thin to pay for
/// its transforms; the first layer (3 → 128) stays on im2col, whose inner dimension is 9·cin.
const WINOGRAD_MIN_CHANNELS: usize = 16;

impl ConvPath {
    /// The concrete path for `g`. Winograd's input gradient runs the forward with padding
    /// 2 − pad, so it needs pad ≤ 2 (pad 3 only occurs on the 1-channel first layer anyway).
    pub fn resolve(self, g: &ConvGeom) -> ConvPath {
        match self {
            ConvPath::Auto
                if g.cin >= WINOGRAD_MIN_CHANNELS
                    && g.cout >= WINOGRAD_MIN_CHANNELS
                    && g.pad <= 2 =>
            {
                ConvPath::Winograd
            }
            ConvPath::Auto => ConvPath::Im2col,
            ConvPath::Winograd if g.pad > 2 => ConvPath::Im2col,
            p => p,
        }
    }
}

/// x (S, B, cin, h, w), params (S, P) with W (cout, cin, 3, 3) and bias (cout) at `at` →
/// y (S, B, cout, oh, ow).
pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    y: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    forward_with(ConvPath::Auto, g, x, params, at, y, pool)
}

/// [`forward`] on a chosen path.
pub fn forward_with(
    path: ConvPath,
    g: &ConvGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    y: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    forward_impl(path, GemmPrecision::Fp32, g, x, params, at, y, pool)
}

/// [`forward`] with GEMM operands rounded as the GPU mode `prec` rounds them (precision study).
/// Any mode but fp32 runs on im2col: the GPU's implicit GEMM rounds the raw weights and
/// activations, and rounding Winograd-domain tiles instead would be a different error model.
pub fn forward_prec(
    prec: GemmPrecision,
    g: &ConvGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    y: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    forward_impl(prec_path(prec), prec, g, x, params, at, y, pool)
}

/// The path a precision runs on: the fast default for fp32, im2col for the GPU modes.
fn prec_path(prec: GemmPrecision) -> ConvPath {
    if prec == GemmPrecision::Fp32 {
        ConvPath::Auto
    } else {
        ConvPath::Im2col
    }
}

#[allow(clippy::too_many_arguments)]
fn forward_impl(
    path: ConvPath,
    prec: GemmPrecision,
    g: &ConvGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    y: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    check(
        g,
        at,
        "conv forward",
        &[("x", x.len(), in_len(g)), ("y", y.len(), out_len(g))],
    )?;
    check_len("conv forward", "params", params.len(), g.students * at.row)?;
    if g.students * g.batch == 0 {
        return Ok(());
    }
    match path.resolve(g) {
        ConvPath::Winograd => {
            let (cin, cout) = (g.cin, g.cout);
            let mut wts = pool.take(g.students * cout * cin * 9); // (S, cout, cin, 3, 3)
            let mut bias = pool.take(g.students * cout); // (S, cout)
            for s in 0..g.students {
                let row = &params[s * at.row..][..at.row];
                wts[s * cout * cin * 9..][..cout * cin * 9]
                    .copy_from_slice(&row[at.weight..][..cout * cin * 9]);
                bias[s * cout..][..cout].copy_from_slice(&row[at.bias..][..cout]);
            }
            let mut u = pool.take(g.students * 16 * cout * cin); // (S, 16, cout, cin)
            winograd::filter_transform(g.students, cout, cin, &wts, &mut u);
            let p = wino_forward_geom(g);
            winograd::forward(&p, x, &u, Some(&bias), y, pool);
        }
        _ => im2col_forward(prec, g, x, params, at, y, pool),
    }
    Ok(())
}

fn wino_forward_geom(g: &ConvGeom) -> winograd::Wino {
    winograd::Wino {
        students: g.students,
        batch: g.batch,
        cin: g.cin,
        cout: g.cout,
        h: g.h,
        w: g.w,
        pad: g.pad,
        oh: g.out_h(),
        ow: g.out_w(),
    }
}

fn im2col_forward(
    prec: GemmPrecision,
    g: &ConvGeom,
    x: &[f32],
    params: &[f32],
    at: ParamAt,
    y: &mut [f32],
    pool: &ScratchPool,
) {
    let (cin, cout, k) = (g.cin, g.cout, 9 * g.cin);
    let ohw = g.out_h() * g.out_w();
    let col_len = k * ohw; // (9·cin, oh·ow)
    y.par_chunks_mut(cout * ohw)
        .zip(x.par_chunks(cin * g.h * g.w))
        .enumerate()
        .for_each_init(
            || pool.take(col_len),
            |col, (i, (yb, xb))| {
                // yb (cout, oh·ow), xb (cin, h, w) of image i = s·B + b.
                let prow = &params[(i / g.batch) * at.row..][..at.row];
                let wt = &prow[at.weight..][..cout * k]; // (cout, 9·cin)
                let bias = &prow[at.bias..][..cout]; // (cout)
                im2col(
                    xb,
                    cin,
                    g.h,
                    g.w,
                    &win3(g.pad as isize, g.out_h(), g.out_w()),
                    col,
                );
                for (row, &b) in yb.chunks_exact_mut(ohw).zip(bias) {
                    row.fill(b);
                }
                let wt = Operand {
                    data: wt,
                    cs: 1,
                    rs: k as isize,
                }; // (cout, 9·cin)
                let col = Operand {
                    data: &col[..],
                    cs: 1,
                    rs: ohw as isize,
                }; // (9·cin, oh·ow)
                gemm_rounded(prec, pool, cout, ohw, k, yb, ohw as isize, true, wt, col);
            },
        );
}

/// params (S, P), dy (S, B, cout, oh, ow) → dx (S, B, cin, h, w), overwritten.
pub fn backward_input(
    g: &ConvGeom,
    params: &[f32],
    at: ParamAt,
    dy: &[f32],
    dx: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    backward_input_with(ConvPath::Auto, g, params, at, dy, dx, pool)
}

/// [`backward_input`] on a chosen path.
pub fn backward_input_with(
    path: ConvPath,
    g: &ConvGeom,
    params: &[f32],
    at: ParamAt,
    dy: &[f32],
    dx: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    backward_input_impl(path, GemmPrecision::Fp32, g, params, at, dy, dx, pool)
}

/// [`backward_input`] with GEMM operands rounded as `prec` says (see [`forward_prec`]).
pub fn backward_input_prec(
    prec: GemmPrecision,
    g: &ConvGeom,
    params: &[f32],
    at: ParamAt,
    dy: &[f32],
    dx: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    backward_input_impl(prec_path(prec), prec, g, params, at, dy, dx, pool)
}

#[allow(clippy::too_many_arguments)]
fn backward_input_impl(
    path: ConvPath,
    prec: GemmPrecision,
    g: &ConvGeom,
    params: &[f32],
    at: ParamAt,
    dy: &[f32],
    dx: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    let op = "conv backward_input";
    check(
        g,
        at,
        op,
        &[("dx", dx.len(), in_len(g)), ("dy", dy.len(), out_len(g))],
    )?;
    check_len(op, "params", params.len(), g.students * at.row)?;
    if g.students * g.batch == 0 {
        return Ok(());
    }
    input_grad(path.resolve(g), prec, g, params, at, dy, dx, pool);
    Ok(())
}

/// x (S, B, cin, h, w), dy (S, B, cout, oh, ow) → dW and db written (not added) into grads (S, P)
/// at `at`; the rest of grads is left alone.
pub fn backward_weight(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    at: ParamAt,
    grads: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    backward_weight_with(ConvPath::Auto, g, x, dy, at, grads, pool)
}

/// [`backward_weight`] on a chosen path.
pub fn backward_weight_with(
    path: ConvPath,
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    at: ParamAt,
    grads: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    backward_weight_impl(path, GemmPrecision::Fp32, g, x, dy, at, grads, pool)
}

/// [`backward_weight`] with GEMM operands rounded as `prec` says (see [`forward_prec`]); the
/// bias gradient (a plain sum, no GEMM on the GPU either) stays fp32.
pub fn backward_weight_prec(
    prec: GemmPrecision,
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    at: ParamAt,
    grads: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    backward_weight_impl(prec_path(prec), prec, g, x, dy, at, grads, pool)
}

#[allow(clippy::too_many_arguments)]
fn backward_weight_impl(
    path: ConvPath,
    prec: GemmPrecision,
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    at: ParamAt,
    grads: &mut [f32],
    pool: &ScratchPool,
) -> Result<()> {
    let op = "conv backward_weight";
    check(
        g,
        at,
        op,
        &[("x", x.len(), in_len(g)), ("dy", dy.len(), out_len(g))],
    )?;
    check_len(op, "grads", grads.len(), g.students * at.row)?;
    if g.students * g.batch == 0 {
        // No images: the gradients of a sum over nothing are zero, and they must be overwritten.
        for grow in grads.chunks_exact_mut(at.row) {
            grow[at.weight..][..g.cout * 9 * g.cin].fill(0.0);
            grow[at.bias..][..g.cout].fill(0.0);
        }
        return Ok(());
    }
    match path.resolve(g) {
        ConvPath::Winograd => {
            let (cin, cout) = (g.cin, g.cout);
            let mut du = pool.take(g.students * 16 * cout * cin); // (S, 16, cout, cin)
            let mut db = pool.take(g.students * cout); // (S, cout)
            winograd::weight_grad(&wino_forward_geom(g), x, dy, &mut du, &mut db, pool);
            grads
                .par_chunks_mut(at.row)
                .enumerate()
                .for_each(|(s, grow)| {
                    let dus = &du[s * 16 * cout * cin..][..16 * cout * cin];
                    let dw = &mut grow[at.weight..][..cout * cin * 9];
                    winograd::filter_transform_adjoint(cout, cin, dus, dw);
                    grow[at.bias..][..cout].copy_from_slice(&db[s * cout..][..cout]);
                });
        }
        _ => im2col_weight_grad(prec, g, x, at, dy, grads, pool),
    }
    Ok(())
}

/// Both paths run the forward of dy with W̃ (cin, cout, 3, 3), W̃[ci, co] = W[co, ci] flipped.
#[allow(clippy::too_many_arguments)]
fn input_grad(
    path: ConvPath,
    prec: GemmPrecision,
    g: &ConvGeom,
    params: &[f32],
    at: ParamAt,
    dy: &[f32],
    dx: &mut [f32],
    pool: &ScratchPool,
) {
    let (cin, cout) = (g.cin, g.cout);
    let (hw, ohw) = (g.h * g.w, g.out_h() * g.out_w());
    let kt = 9 * cout; // inner dimension of the transposed conv
    let mut wflip = pool.take(g.students * cin * kt); // (S, cin, cout, 3, 3)
    wflip
        .par_chunks_mut(cin * kt)
        .enumerate()
        .for_each(|(s, wf)| {
            let wt = &params[s * at.row + at.weight..][..cout * 9 * cin]; // (cout, cin, 3, 3)
            for ci in 0..cin {
                for co in 0..cout {
                    for t in 0..9 {
                        wf[(ci * cout + co) * 9 + t] = wt[(co * cin + ci) * 9 + (8 - t)];
                    }
                }
            }
        });
    if path == ConvPath::Winograd {
        let mut u = pool.take(g.students * 16 * cin * cout); // (S, 16, cin, cout)
        winograd::filter_transform(g.students, cin, cout, &wflip, &mut u);
        let p = winograd::Wino {
            students: g.students,
            batch: g.batch,
            cin: cout,
            cout: cin,
            h: g.out_h(),
            w: g.out_w(),
            pad: 2 - g.pad, // resolve() only picks Winograd for pad ≤ 2
            oh: g.h,
            ow: g.w,
        };
        winograd::forward(&p, dy, &u, None, dx, pool);
        return;
    }
    let wflip = &wflip;
    // Output pixel (iy, ix) of dx reads dy at (iy + ky − (2 − pad)): padding 2 − pad, negative
    // (a crop) when pad > 2, as for the 28 px first layer with padding 3.
    let off = 2 - g.pad as isize;
    dx.par_chunks_mut(cin * hw)
        .zip(dy.par_chunks(cout * ohw))
        .enumerate()
        .for_each_init(
            || pool.take(kt * hw),
            |col, (i, (dxb, dyb))| {
                // dxb (cin, h·w), dyb (cout, oh, ow), col (9·cout, h·w)
                let wf = &wflip[(i / g.batch) * cin * kt..][..cin * kt]; // (cin, 9·cout)
                im2col(dyb, cout, g.out_h(), g.out_w(), &win3(off, g.h, g.w), col);
                let wf = Operand {
                    data: wf,
                    cs: 1,
                    rs: kt as isize,
                }; // (cin, 9·cout)
                let col = Operand {
                    data: &col[..],
                    cs: 1,
                    rs: hw as isize,
                }; // (9·cout, h·w)
                gemm_rounded(prec, pool, cin, hw, kt, dxb, hw as isize, false, wf, col);
            },
        );
}

fn im2col_weight_grad(
    prec: GemmPrecision,
    g: &ConvGeom,
    x: &[f32],
    at: ParamAt,
    dy: &[f32],
    grads: &mut [f32],
    pool: &ScratchPool,
) {
    let (cin, cout, k) = (g.cin, g.cout, 9 * g.cin);
    let (hw, ohw) = (g.h * g.w, g.out_h() * g.out_w());
    let plen = cout * k + cout;
    let Split { chunk, units, wave } = split(g.batch, g.students, plen);
    for s0 in (0..g.students).step_by(wave) {
        let ns = wave.min(g.students - s0);
        let mut partial = pool.take(ns * units * plen); // (ns, units, cout·k + cout)
        partial.par_chunks_mut(plen).enumerate().for_each_init(
            || pool.take(k * ohw),
            |col, (j, part)| {
                let (s, u) = (s0 + j / units, j % units);
                let (b0, b1) = (u * chunk, ((u + 1) * chunk).min(g.batch));
                let (dw, db) = part.split_at_mut(cout * k); // (cout, 9·cin), (cout)
                db.fill(0.0);
                for b in b0..b1 {
                    let i = s * g.batch + b;
                    let xb = &x[i * cin * hw..][..cin * hw]; // (cin, h, w)
                    let dyb = &dy[i * cout * ohw..][..cout * ohw]; // (cout, oh·ow)
                    im2col(
                        xb,
                        cin,
                        g.h,
                        g.w,
                        &win3(g.pad as isize, g.out_h(), g.out_w()),
                        col,
                    );
                    // col (k, ohw) read as its transpose (ohw, k): row stride 1, column
                    // stride ohw.
                    let dyo = Operand {
                        data: dyb,
                        cs: 1,
                        rs: ohw as isize,
                    }; // (cout, oh·ow)
                    let colt = Operand {
                        data: &col[..],
                        cs: ohw as isize,
                        rs: 1,
                    }; // (oh·ow, 9·cin)
                    gemm_rounded(prec, pool, cout, k, ohw, dw, k as isize, b > b0, dyo, colt);
                    for (acc, row) in db.iter_mut().zip(dyb.chunks_exact(ohw)) {
                        *acc += row.iter().sum::<f32>();
                    }
                }
            },
        );
        let partial = &partial;
        let rows = &mut grads[s0 * at.row..][..ns * at.row];
        rows.par_chunks_mut(at.row)
            .enumerate()
            .for_each(|(j, grow)| {
                let mut parts = partial[j * units * plen..][..units * plen].chunks_exact(plen);
                let first = parts
                    .next()
                    .expect("every student has at least one run of images");
                let (dw, db) = (at.weight, at.bias);
                grow[dw..][..cout * k].copy_from_slice(&first[..cout * k]);
                grow[db..][..cout].copy_from_slice(&first[cout * k..]);
                for p in parts {
                    for (a, v) in grow[dw..][..cout * k].iter_mut().zip(&p[..cout * k]) {
                        *a += v;
                    }
                    for (a, v) in grow[db..][..cout].iter_mut().zip(&p[cout * k..]) {
                        *a += v;
                    }
                }
            });
    }
}

/// The 3×3, stride-1 windows of im2col (col: (c·9, oh·ow)) with `off` zeros before each edge.
fn win3(off: isize, oh: usize, ow: usize) -> Windows {
    Windows {
        k: 3,
        stride: 1,
        pad: off,
        oh,
        ow,
    }
}

/// How a weight gradient cuts each student's batch: `units` runs of `chunk` images, each summed
/// into a private partial, then the partials added in run order. The cut depends on the batch
/// size only, never on the number of students or threads, so a student's gradient is bitwise the
/// same alone or in a cohort (tests/students.rs checks exactly that). Students go in waves of
/// `wave`, so at most [`MAX_PARTIAL_FLOATS`] of partials exist at once.
pub(crate) struct Split {
    pub chunk: usize,
    pub units: usize,
    pub wave: usize,
}

/// Runs per student: 8 keeps 2 threads busy for a single student and evens out a shared machine.
const RUNS_PER_STUDENT: usize = 8;
/// 64 MiB of partial sums (a 128→128 Winograd partial is 1 MiB: 8 students per wave).
const MAX_PARTIAL_FLOATS: usize = 16 << 20;

pub(crate) fn split(batch: usize, students: usize, plen: usize) -> Split {
    let chunk = batch.div_ceil(batch.clamp(1, RUNS_PER_STUDENT));
    let units = batch.div_ceil(chunk).max(1);
    let wave = (MAX_PARTIAL_FLOATS / (units * plen).max(1)).clamp(1, students.max(1));
    Split { chunk, units, wave }
}

fn in_len(g: &ConvGeom) -> usize {
    g.students * g.batch * g.cin * g.h * g.w
}

fn out_len(g: &ConvGeom) -> usize {
    g.students * g.batch * g.cout * g.out_h() * g.out_w()
}

fn check_len(op: &str, name: &str, found: usize, want: usize) -> Result<()> {
    if found != want {
        return Err(Error::shape(format!(
            "{op}: {name} has {found} elements, expected {want}"
        )));
    }
    Ok(())
}

/// Geometry and parameter offsets first (so `out_h` cannot underflow), then buffer lengths.
fn check(g: &ConvGeom, at: ParamAt, op: &str, bufs: &[(&str, usize, usize)]) -> Result<()> {
    if g.cin == 0 || g.cout == 0 || g.h == 0 || g.w == 0 {
        return Err(Error::shape(format!("{op}: empty geometry {g:?}")));
    }
    if g.h + 2 * g.pad < 3 || g.w + 2 * g.pad < 3 {
        return Err(Error::shape(format!(
            "{op}: a 3×3 window does not fit a {}×{} input with padding {}",
            g.h, g.w, g.pad
        )));
    }
    let wlen = g.cout * g.cin * 9;
    if at.weight + wlen > at.row || at.bias + g.cout > at.row {
        return Err(Error::shape(format!(
            "{op}: weight [{}, +{wlen}) or bias [{}, +{}) outside a parameter row of {}",
            at.weight, at.bias, g.cout, at.row
        )));
    }
    for &(name, found, want) in bufs {
        check_len(op, name, found, want)?;
    }
    Ok(())
}
