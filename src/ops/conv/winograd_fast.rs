//! Winograd F(2×2, 3×3) convolution for the CPU fast path: the same 3×3 convolution as im2col, with
//! 2.25× fewer multiplications, for the wide layers (ConvNet-3 layers 2 and 3: 128 → 128 channels),
//! where the GEMMs are the whole cost of a training step.
//!
//! Each 2×2 output tile reads a 4×4 input patch d (stride 2). With the standard matrices
//!   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//!   Aᵀ = [1 1 1 0; 0 1 −1 −1],
//! the tile is y = Aᵀ [ Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B) ] A, i.e. for each of the 16 positions ξ one GEMM
//!   M_ξ (cout, T) = U_ξ (cout, cin) · V_ξ (cin, T)      over T tiles of a run of images.
//! Backward is the exact adjoint of that computation (which is the conv's gradient):
//!   dM = A dy Aᵀ per tile, dU_ξ (cout, cin) = Σ_T dM_ξ · V_ξᵀ, dW = Gᵀ dU G.
//! The input gradient is the forward of dy with the flipped, channel-swapped kernel (cpu_fast.rs).
//! Runs of images are sized so V and M (16·c·T floats each) stay in L2 (T ≈ 128 tiles).

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::cpu_fast::{split, Split};
use crate::ops::scratch::ScratchPool;

/// Tiles per GEMM: V and M for 128 channels are then 16·128·128·4 B = 1 MiB each, together in
/// the 2 MiB L2. Measured on ConvNet-3's 128-channel layers (conv_ops, CPU time): 128 beat 256 by
/// 5–10% on the gradients, 512 lost 20–60%, 64 was even with 128.
const TARGET_TILES: usize = 128;

/// Padding (floats, one cache line) added to the tile stride and to the ξ stride of V and M.
/// Unpadded, the 16 ξ blocks of 128·256 floats sit 128 KiB apart: every transform writes 16
/// addresses that map to the same L1 set, and measured 3× slower.
const SKEW: usize = 16;

/// Distance between the ξ blocks of a (16, c, ts) (ξ blocks `xi_stride` apart) buffer.
fn xi_stride(c: usize, ts: usize) -> usize {
    c * ts + SKEW
}

/// Geometry of one Winograd pass: input (S, B, cin, h, w) read at offset −`pad` (negative pads are
/// not needed: callers use im2col there), output (S, B, cout, oh, ow).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wino {
    pub students: usize,
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Wino {
    fn tiles_y(&self) -> usize {
        self.oh.div_ceil(2)
    }
    fn tiles_x(&self) -> usize {
        self.ow.div_ceil(2)
    }
    fn tiles(&self) -> usize {
        self.tiles_y() * self.tiles_x()
    }
    /// Images per GEMM run.
    fn run_len(&self) -> usize {
        (TARGET_TILES / self.tiles()).clamp(1, self.batch)
    }
}

/// U = G g Gᵀ for every student: w (S, cout, cin, 3, 3) → u (S, 16, cout, cin).
pub(crate) fn filter_transform(students: usize, cout: usize, cin: usize, w: &[f32], u: &mut [f32]) {
    let cc = cout * cin;
    u.par_chunks_mut(16 * cc)
        .zip(w.par_chunks(9 * cc))
        .for_each(|(us, ws)| {
            for (k, g) in ws.chunks_exact(9).enumerate() {
                let mut gg = [[0f32; 3]; 4]; // G g (4, 3)
                for b in 0..3 {
                    let (g0, g1, g2) = (g[b], g[3 + b], g[6 + b]);
                    gg[0][b] = g0;
                    gg[1][b] = 0.5 * (g0 + g1 + g2);
                    gg[2][b] = 0.5 * (g0 - g1 + g2);
                    gg[3][b] = g2;
                }
                for (i, r) in gg.iter().enumerate() {
                    let v = [
                        r[0],
                        0.5 * (r[0] + r[1] + r[2]),
                        0.5 * (r[0] - r[1] + r[2]),
                        r[2],
                    ];
                    for (j, &vj) in v.iter().enumerate() {
                        us[(i * 4 + j) * cc + k] = vj;
                    }
                }
            }
        });
    debug_assert_eq!(u.len(), students * 16 * cc);
}

/// dW = Gᵀ dU G: du (16, cout, cin) → dw (cout, cin, 3, 3), one student.
pub(crate) fn filter_transform_adjoint(cout: usize, cin: usize, du: &[f32], dw: &mut [f32]) {
    let cc = cout * cin;
    for (k, g) in dw.chunks_exact_mut(9).enumerate() {
        let d = |i: usize, j: usize| du[(i * 4 + j) * cc + k];
        // Gᵀ dU (3, 4), one column j at a time.
        let col = |j: usize| {
            let (d0, d1, d2, d3) = (d(0, j), d(1, j), d(2, j), d(3, j));
            [d0 + 0.5 * (d1 + d2), 0.5 * (d1 - d2), 0.5 * (d1 + d2) + d3]
        };
        let cols = [col(0), col(1), col(2), col(3)];
        let t: [[f32; 4]; 3] = std::array::from_fn(|a| std::array::from_fn(|j| cols[j][a]));
        for (a, r) in t.iter().enumerate() {
            g[a * 3] = r[0] + 0.5 * (r[1] + r[2]);
            g[a * 3 + 1] = 0.5 * (r[1] - r[2]);
            g[a * 3 + 2] = 0.5 * (r[1] + r[2]) + r[3];
        }
    }
}

/// dst = a − b elementwise (unit stride: vectorised, and fully unrolled for a constant length).
#[inline(always)]
fn sub_into(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = x - y;
    }
}

/// dst = a + b elementwise.
#[inline(always)]
fn add_into(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = x + y;
    }
}

/// V = Bᵀ d B for every tile of one image: x (c, h, w) → v (16, c, ts) (ξ blocks `xi_stride`
/// apart) at tiles [t0, t0 + tiles). The common tile-row widths get their own constant-length
/// copy of the body, whose short loops the compiler then unrolls and vectorises.
fn input_transform(p: &Wino, c: usize, x: &[f32], v: &mut [f32], ts: usize, t0: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above), the only requirement.
        return unsafe { input_transform_avx2(p, c, x, v, ts, t0) };
    }
    input_transform_any(p, c, x, v, ts, t0)
}

/// [`input_transform`] compiled for AVX2: its short loops then run 8 lanes wide, not 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn input_transform_avx2(p: &Wino, c: usize, x: &[f32], v: &mut [f32], ts: usize, t0: usize) {
    input_transform_any(p, c, x, v, ts, t0)
}

#[inline(always)]
fn input_transform_any(p: &Wino, c: usize, x: &[f32], v: &mut [f32], ts: usize, t0: usize) {
    match p.tiles_x() {
        4 => input_transform_rows(p, 4, c, x, v, ts, t0),
        8 => input_transform_rows(p, 8, c, x, v, ts, t0),
        16 => input_transform_rows(p, 16, c, x, v, ts, t0),
        n => input_transform_rows(p, n, c, x, v, ts, t0),
    }
}

/// The body of [`input_transform`] for `tx_n` tiles per row. Each channel's zero-padded plane is
/// first split into even and odd columns (hp rows of [even n | odd n]); a tile's 4 columns are then
/// even[k], odd[k], even[k + 1], odd[k + 1], so every step is a unit-stride loop over tiles.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_transform_rows(
    p: &Wino,
    tx_n: usize,
    c: usize,
    x: &[f32],
    v: &mut [f32],
    ts: usize,
    t0: usize,
) {
    let n = tx_n + 1; // even/odd columns per padded row: 2n = 2·tx_n + 2 columns read
    let hp = 2 * p.tiles_y() + 2; // padded rows read
    let mut strip = vec![0f32; 2 * n]; // (2n): one zero-padded input row
    let mut eo = vec![0f32; hp * 2 * n]; // (hp, even/odd, n)
    let mut t = vec![0f32; 4 * 2 * n]; // (4, even/odd, n): Bᵀ applied down the columns
    let j0 = p.pad.min(2 * n); // strip column j holds input column j − pad
    let j1 = (p.w + p.pad).min(2 * n);
    let xs = xi_stride(c, ts);
    for ch in 0..c {
        let plane = &x[ch * p.h * p.w..][..p.h * p.w]; // (h, w)
        for (r, row) in eo.chunks_exact_mut(2 * n).enumerate() {
            let iy = r as isize - p.pad as isize;
            if iy < 0 || iy >= p.h as isize || j1 <= j0 {
                row.fill(0.0);
                continue;
            }
            strip.fill(0.0);
            strip[j0..j1].copy_from_slice(&plane[iy as usize * p.w..][..j1 - j0]);
            let (ev, od) = row.split_at_mut(n);
            for ((e, o), pair) in ev.iter_mut().zip(od.iter_mut()).zip(strip.chunks_exact(2)) {
                *e = pair[0];
                *o = pair[1];
            }
        }
        for ty in 0..p.tiles_y() {
            let d = &eo[2 * ty * 2 * n..][..4 * 2 * n]; // padded rows 2ty .. 2ty + 4
            let (d0, rest) = d.split_at(2 * n);
            let (d1, rest) = rest.split_at(2 * n);
            let (d2, d3) = rest.split_at(2 * n);
            let (ta, rest) = t.split_at_mut(2 * n);
            let (tb, rest) = rest.split_at_mut(2 * n);
            let (tc, td) = rest.split_at_mut(2 * n);
            sub_into(ta, d0, d2);
            add_into(tb, d1, d2);
            sub_into(tc, d2, d1);
            sub_into(td, d1, d3);
            let base = ch * ts + t0 + ty * tx_n;
            for (i, ti) in t.chunks_exact(2 * n).enumerate() {
                let (te, to) = ti.split_at(n); // columns 2k and 2k + 1
                let vi = &mut v[(i * 4) * xs + base..];
                sub_into(&mut vi[..tx_n], &te[..tx_n], &te[1..]);
                add_into(&mut vi[xs..][..tx_n], &to[..tx_n], &te[1..]);
                sub_into(&mut vi[2 * xs..][..tx_n], &te[1..], &to[..tx_n]);
                sub_into(&mut vi[3 * xs..][..tx_n], &to[..tx_n], &to[1..]);
            }
        }
    }
}

/// y = Aᵀ M A (+ bias) for every tile of one image: m (16, cout, ts) (ξ blocks `xi_stride` apart)
/// at tiles [t0, ..) → y (cout, oh, ow), cropping the half tiles of an odd output size.
fn output_transform(
    p: &Wino,
    m: &[f32],
    ts: usize,
    t0: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above), the only requirement.
        return unsafe { output_transform_avx2(p, m, ts, t0, bias, y) };
    }
    output_transform_any(p, m, ts, t0, bias, y)
}

/// [`output_transform`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn output_transform_avx2(
    p: &Wino,
    m: &[f32],
    ts: usize,
    t0: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    output_transform_any(p, m, ts, t0, bias, y)
}

#[inline(always)]
fn output_transform_any(
    p: &Wino,
    m: &[f32],
    ts: usize,
    t0: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    match (p.tiles_x(), p.tiles_y()) {
        (4, 4) => output_transform_rows(p, 4, 4, m, ts, t0, bias, y),
        (8, 8) => output_transform_rows(p, 8, 8, m, ts, t0, bias, y),
        (16, 16) => output_transform_rows(p, 16, 16, m, ts, t0, bias, y),
        (tx, ty) => output_transform_rows(p, tx, ty, m, ts, t0, bias, y),
    }
}

/// The body of [`output_transform`]: an image's tiles are contiguous in every ξ block, so both
/// 1-D transforms run as unit-stride loops over all tiles; only the final interleave into rows of
/// 2·tx_n pixels is strided.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_transform_rows(
    p: &Wino,
    tx_n: usize,
    ty_n: usize,
    m: &[f32],
    ts: usize,
    t0: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let nt = tx_n * ty_n;
    let xs = xi_stride(p.cout, ts);
    let mut sm = vec![0f32; 8 * nt]; // (2, 4, nt): Aᵀ M
    let mut yq = vec![0f32; 4 * nt]; // (2, 2, nt): Aᵀ M A
    let mut row = vec![0f32; 2 * tx_n]; // one output row before cropping
    for co in 0..p.cout {
        let b = bias.map_or(0.0, |b| b[co]);
        let blk = |i: usize, j: usize| &m[(i * 4 + j) * xs + co * ts + t0..][..nt];
        let (s0, s1) = sm.split_at_mut(4 * nt);
        for j in 0..4 {
            let (m0, m1, m2, m3) = (blk(0, j), blk(1, j), blk(2, j), blk(3, j));
            let a = s0[j * nt..][..nt]
                .iter_mut()
                .zip(s1[j * nt..][..nt].iter_mut());
            for (k, (a0, a1)) in a.enumerate() {
                *a0 = m0[k] + m1[k] + m2[k];
                *a1 = m1[k] - m2[k] - m3[k];
            }
        }
        for (sp, yp) in sm.chunks_exact(4 * nt).zip(yq.chunks_exact_mut(2 * nt)) {
            let (q0, rest) = sp.split_at(nt);
            let (q1, rest) = rest.split_at(nt);
            let (q2, q3) = rest.split_at(nt);
            let (y0, y1) = yp.split_at_mut(nt);
            for k in 0..nt {
                y0[k] = q0[k] + q1[k] + q2[k] + b;
                y1[k] = q1[k] - q2[k] - q3[k] + b;
            }
        }
        let plane = &mut y[co * p.oh * p.ow..][..p.oh * p.ow]; // (oh, ow)
        for ty in 0..ty_n {
            for (r, yp) in yq.chunks_exact(2 * nt).enumerate() {
                let oy = 2 * ty + r;
                if oy >= p.oh {
                    continue;
                }
                let (y0, y1) = (&yp[ty * tx_n..][..tx_n], &yp[nt + ty * tx_n..][..tx_n]);
                let dst = &mut plane[oy * p.ow..][..p.ow];
                let full = p.ow == 2 * tx_n;
                let out = if full { &mut dst[..] } else { &mut row[..] };
                for ((pair, &a), &c) in out.chunks_exact_mut(2).zip(y0).zip(y1) {
                    pair[0] = a;
                    pair[1] = c;
                }
                if !full {
                    dst.copy_from_slice(&row[..p.ow]);
                }
            }
        }
    }
}

/// dM = A dy Aᵀ for every tile of one image: dy (cout, oh, ow) → dm (16, cout, ts) (ξ blocks
/// `xi_stride` apart) at [t0, ..); the cropped half tiles count as zero gradient.
fn output_transform_adjoint(p: &Wino, dy: &[f32], dm: &mut [f32], ts: usize, t0: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above), the only requirement.
        return unsafe { output_adjoint_avx2(p, dy, dm, ts, t0) };
    }
    output_adjoint_any(p, dy, dm, ts, t0)
}

/// [`output_transform_adjoint`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn output_adjoint_avx2(p: &Wino, dy: &[f32], dm: &mut [f32], ts: usize, t0: usize) {
    output_adjoint_any(p, dy, dm, ts, t0)
}

#[inline(always)]
fn output_adjoint_any(p: &Wino, dy: &[f32], dm: &mut [f32], ts: usize, t0: usize) {
    match (p.tiles_x(), p.tiles_y()) {
        (4, 4) => output_adjoint_rows(p, 4, 4, dy, dm, ts, t0),
        (8, 8) => output_adjoint_rows(p, 8, 8, dy, dm, ts, t0),
        (16, 16) => output_adjoint_rows(p, 16, 16, dy, dm, ts, t0),
        (tx, ty) => output_adjoint_rows(p, tx, ty, dy, dm, ts, t0),
    }
}

/// The body of [`output_transform_adjoint`]: dy is first split into the 4 pixels of each tile
/// (4 arrays over all tiles), then the 16 outputs are unit-stride combinations of those.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_adjoint_rows(
    p: &Wino,
    tx_n: usize,
    ty_n: usize,
    dy: &[f32],
    dm: &mut [f32],
    ts: usize,
    t0: usize,
) {
    let nt = tx_n * ty_n;
    let xs = xi_stride(p.cout, ts);
    let mut d = vec![0f32; 4 * nt]; // (2 rows, 2 columns, nt): the tile pixels, zero when cropped
    let mut e = vec![0f32; 8 * nt]; // (4, 2, nt): A dy
    let mut row = vec![0f32; 2 * tx_n];
    for co in 0..p.cout {
        let plane = &dy[co * p.oh * p.ow..][..p.oh * p.ow]; // (oh, ow)
        for ty in 0..ty_n {
            for r in 0..2 {
                let oy = 2 * ty + r;
                row.fill(0.0);
                if oy < p.oh {
                    row[..p.ow].copy_from_slice(&plane[oy * p.ow..][..p.ow]);
                }
                let (d0, d1) = d[2 * r * nt..][..2 * nt].split_at_mut(nt);
                let (d0, d1) = (&mut d0[ty * tx_n..][..tx_n], &mut d1[ty * tx_n..][..tx_n]);
                for ((a, c), pair) in d0.iter_mut().zip(d1.iter_mut()).zip(row.chunks_exact(2)) {
                    *a = pair[0];
                    *c = pair[1];
                }
            }
        }
        // A dy down the rows: e_i = (d_0, d_0 + d_1, d_0 − d_1, −d_1), per column parity q.
        let (r0, r1) = d.split_at(2 * nt);
        let (e0, rest) = e.split_at_mut(2 * nt);
        let (e1, rest) = rest.split_at_mut(2 * nt);
        let (e2, e3) = rest.split_at_mut(2 * nt);
        for k in 0..2 * nt {
            e0[k] = r0[k];
            e1[k] = r0[k] + r1[k];
            e2[k] = r0[k] - r1[k];
            e3[k] = -r1[k];
        }
        for (i, ei) in e.chunks_exact(2 * nt).enumerate() {
            let (ev, od) = ei.split_at(nt);
            let di = &mut dm[(i * 4) * xs + co * ts + t0..];
            di[..nt].copy_from_slice(ev);
            add_into(&mut di[xs..][..nt], ev, od);
            sub_into(&mut di[2 * xs..][..nt], ev, od);
            for (dst, &o) in di[3 * xs..][..nt].iter_mut().zip(od) {
                *dst = -o;
            }
        }
    }
}

/// x (S, B, cin, h, w), u (S, 16, cout, cin), bias (S, cout) when given → y (S, B, cout, oh, ow).
pub(crate) fn forward(
    p: &Wino,
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    pool: &ScratchPool,
) {
    let (in_img, out_img) = (p.cin * p.h * p.w, p.cout * p.oh * p.ow);
    let run = p.run_len();
    let ts = run * p.tiles() + SKEW;
    let (xv, xm) = (xi_stride(p.cin, ts), xi_stride(p.cout, ts));
    // (student, first image, output slice) of every run; runs never cross students.
    let mut runs = Vec::new();
    for (s, ys) in y.chunks_mut(p.batch * out_img).enumerate() {
        for (r, yr) in ys.chunks_mut(run * out_img).enumerate() {
            runs.push((s, r * run, yr));
        }
    }
    runs.into_par_iter().for_each_init(
        || (pool.take(16 * xv), pool.take(16 * xm)),
        |(v, m), (student, first, out)| {
            let n = out.len() / out_img;
            let i0 = student * p.batch + first;
            for k in 0..n {
                let xb = &x[(i0 + k) * in_img..][..in_img];
                input_transform(p, p.cin, xb, v, ts, k * p.tiles());
            }
            let us = &u[student * 16 * p.cout * p.cin..][..16 * p.cout * p.cin];
            let nt = n * p.tiles();
            for xi in 0..16 {
                let (uk, vk) = (&us[xi * p.cout * p.cin..], &v[xi * xv..]);
                let mk = &mut m[xi * xm..][..p.cout * ts];
                // SAFETY: uk is (cout, cin) row-major, vk (cin, ts) row-major read over its first
                // nt ≤ ts columns, mk (cout, ts) likewise; each slice holds those extents.
                unsafe {
                    gemm(
                        p.cout,
                        nt,
                        p.cin,
                        mk.as_mut_ptr(),
                        1,
                        ts as isize,
                        false,
                        uk.as_ptr(),
                        1,
                        p.cin as isize,
                        vk.as_ptr(),
                        1,
                        ts as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    )
                }
            }
            let b = bias.map(|b| &b[student * p.cout..][..p.cout]);
            for (k, yb) in out.chunks_exact_mut(out_img).enumerate() {
                output_transform(p, m, ts, k * p.tiles(), b, yb);
            }
        },
    );
}

/// dU for every student: x (S, B, cin, h, w), dy (S, B, cout, oh, ow) → du (S, 16, cout, cin)
/// and db (S, cout). Each student's batch is cut into runs as `cpu_fast::split` says (private
/// partial sums, added in run order); each run walks its images in GEMM-sized groups near L2.
pub(crate) fn weight_grad(
    p: &Wino,
    x: &[f32],
    dy: &[f32],
    du: &mut [f32],
    db: &mut [f32],
    pool: &ScratchPool,
) {
    let (in_img, out_img, ohw) = (p.cin * p.h * p.w, p.cout * p.oh * p.ow, p.oh * p.ow);
    let group = p.run_len();
    let ts = group * p.tiles() + SKEW;
    let (xv, xm) = (xi_stride(p.cin, ts), xi_stride(p.cout, ts));
    let plen = 16 * p.cout * p.cin + p.cout;
    let ulen = 16 * p.cout * p.cin;
    let Split { chunk, units, wave } = split(p.batch, p.students, plen);
    for s0 in (0..p.students).step_by(wave) {
        let ns = wave.min(p.students - s0);
        let mut partial = pool.take(ns * units * plen); // (ns, units, 16·cout·cin + cout)
        partial.par_chunks_mut(plen).enumerate().for_each_init(
            || (pool.take(16 * xv), pool.take(16 * xm)),
            |(v, dm), (j, part)| {
                let (s, u) = (s0 + j / units, j % units);
                let (b0, b1) = (u * chunk, ((u + 1) * chunk).min(p.batch));
                let (pu, pb) = part.split_at_mut(ulen);
                pb.fill(0.0);
                let mut first = true;
                let mut g0 = b0;
                while g0 < b1 {
                    let n = group.min(b1 - g0);
                    for k in 0..n {
                        let i = s * p.batch + g0 + k;
                        let xb = &x[i * in_img..][..in_img];
                        input_transform(p, p.cin, xb, v, ts, k * p.tiles());
                        let dyb = &dy[i * out_img..][..out_img];
                        output_transform_adjoint(p, dyb, dm, ts, k * p.tiles());
                        for (acc, row) in pb.iter_mut().zip(dyb.chunks_exact(ohw)) {
                            *acc += row.iter().sum::<f32>();
                        }
                    }
                    let nt = n * p.tiles();
                    for xi in 0..16 {
                        let dmk = &dm[xi * xm..];
                        let vk = &v[xi * xv..];
                        let duk = &mut pu[xi * p.cout * p.cin..][..p.cout * p.cin];
                        // SAFETY: duk is (cout, cin) row-major; dmk (cout, ts) row-major read
                        // over nt columns; vk (cin, ts) row-major read as its transpose
                        // (nt, cin): row stride 1, column stride ts. Each slice covers those.
                        unsafe {
                            gemm(
                                p.cout,
                                p.cin,
                                nt,
                                duk.as_mut_ptr(),
                                1,
                                p.cin as isize,
                                !first,
                                dmk.as_ptr(),
                                1,
                                ts as isize,
                                vk.as_ptr(),
                                ts as isize,
                                1,
                                1.0,
                                1.0,
                                false,
                                false,
                                false,
                                Parallelism::None,
                            )
                        }
                    }
                    first = false;
                    g0 += n;
                }
            },
        );
        let partial = &partial;
        let dus = &mut du[s0 * ulen..][..ns * ulen];
        let dbs = &mut db[s0 * p.cout..][..ns * p.cout];
        dus.par_chunks_mut(ulen)
            .zip(dbs.par_chunks_mut(p.cout))
            .enumerate()
            .for_each(|(j, (dus, dbs))| {
                let mut parts = partial[j * units * plen..][..units * plen].chunks_exact(plen);
                let first = parts
                    .next()
                    .expect("every student has at least one run of images");
                let (fu, fb) = first.split_at(ulen);
                dus.copy_from_slice(fu);
                dbs.copy_from_slice(fb);
                for part in parts {
                    let (pu, pb) = part.split_at(ulen);
                    dus.iter_mut().zip(pu).for_each(|(a, v)| *a += v);
                    dbs.iter_mut().zip(pb).for_each(|(a, v)| *a += v);
                }
            });
    }
}
