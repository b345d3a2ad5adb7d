//! Symmetric eigendecomposition in f64 for ZCA whitening (up to D = C·H·W = 3072 for CIFAR, more
//! for 64 px sets), written so that D = 3072 takes seconds on two cores:
//! 1. Householder tridiagonalisation A = Q·T·Qᵀ on the lower triangle only (row-parallel; the
//!    rank-2 update of one step and the matrix-vector product of the next are fused into one
//!    pass over the trailing matrix);
//! 2. Qᵀ formed explicitly by backward accumulation, 32 reflectors at a time in compact WY form
//!    (two gemm calls per block);
//! 3. implicit QL with Wilkinson-type shifts on T (the EISPACK `tql2` iteration). Its plane
//!    rotations are recorded and replayed on Qᵀ in column blocks that stay in cache, one block per
//!    thread, instead of streaming the whole matrix once per rotation sweep.
//!
//! Eigenvectors come back as rows (row i belongs to eigenvalue i, ascending).

use rayon::prelude::*;

use super::gemm64::{gemm_f64, View};
use crate::error::{Error, Result};

/// Columns of Qᵀ per cache block when replaying rotations: n × 32 f64 is 768 KiB at n = 3072.
const BLOCK_COLS: usize = 32;
/// Rotations buffered before a replay (about 80 MB of (index, c, s)).
const ROTATION_BUFFER: usize = 1 << 22;
/// QL iterations allowed per eigenvalue before giving up (EISPACK uses 30).
const MAX_QL_ITERATIONS: usize = 60;

/// Eigenvalues (ascending) and eigenvectors of a symmetric matrix.
pub struct SymEigen {
    pub n: usize,
    /// (n)
    pub values: Vec<f64>,
    /// (n, n): row i is the unit eigenvector of `values[i]`.
    pub vectors: Vec<f64>,
}

/// Eigendecomposition of the symmetric matrix a (n, n), row-major (only symmetric input is
/// meaningful; the lower and upper triangles must agree). Consumes a as workspace.
pub fn sym_eigen(mut a: Vec<f64>, n: usize) -> Result<SymEigen> {
    if a.len() != n * n {
        return Err(Error::shape(format!(
            "eigen: {} values for a {n}×{n} matrix",
            a.len()
        )));
    }
    if let Some(i) = a.iter().position(|v| !v.is_finite()) {
        return Err(Error::config(format!(
            "eigen: the matrix holds a non-finite value at ({}, {})",
            i / n,
            i % n
        )));
    }
    if n == 0 {
        return Ok(SymEigen {
            n,
            values: vec![],
            vectors: vec![],
        });
    }
    let (d, e, taus) = tridiagonalize(&mut a, n);
    // a now holds the Householder vectors in its rows (below the diagonal).
    let qt = form_qt(&a, &taus, n);
    drop(a);
    let (values, vectors) = tridiagonal_ql(d, e, qt, n)?;
    Ok(SymEigen { n, values, vectors })
}

/// Householder reduction of a (n, n) to tridiagonal form, reading and updating only the lower
/// triangle (half the memory traffic of full storage). Returns the diagonal d (n), the
/// subdiagonal e (n; e[i] couples i and i + 1, e[n−1] = 0) and the reflector factors τ (n).
/// Reflector k is H_k = I − τ_k v vᵀ on indices k+1..n with v[k+1] = 1; v is stored in the
/// unused upper triangle, row k, columns k+1..n.
fn tridiagonalize(a: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    let mut taus = vec![0.0; n];
    // (m): B·v of the current step when the previous step's fused pass computed it.
    let mut p_next: Option<Vec<f64>> = None;
    for k in 0..n.saturating_sub(1) {
        d[k] = a[k * n + k];
        let m = n - k - 1;
        // B = a[k+1.., k+1..] (m, m), lower triangle; x = column k below the diagonal.
        let off = (k + 1) * n + k + 1;
        let mut v: Vec<f64> = (0..m).map(|r| a[(k + 1 + r) * n + k]).collect();
        let (beta, tau) = householder(&mut v);
        e[k] = beta;
        taus[k] = tau;
        a[k * n + k + 1..k * n + n].copy_from_slice(&v);
        if tau == 0.0 {
            p_next = None;
            continue;
        }
        let bv = match p_next.take() {
            Some(p) => p,
            None => sym_pass(&mut a[off..], n, m, None, &v),
        };
        // p = τ·B·v, w = p − (τ/2)(pᵀv)·v, B −= v wᵀ + w vᵀ.
        let p: Vec<f64> = bv.iter().map(|x| tau * x).collect();
        let kk = 0.5 * tau * dot(&p, &v);
        let w: Vec<f64> = p.iter().zip(&v).map(|(pr, vr)| pr - kk * vr).collect();
        // Column 0 of B first: the next reflector comes from it, and the fused pass below needs
        // that reflector before it touches the other columns.
        for r in 0..m {
            a[off + r * n] -= v[r] * w[0] + w[r] * v[0];
        }
        if m < 2 {
            p_next = None;
            continue;
        }
        let mut next: Vec<f64> = (1..m).map(|r| a[off + r * n]).collect();
        let (_, next_tau) = householder(&mut next);
        // B' = B[1.., 1..] (m − 1): update it and compute B'·v_next in the same pass.
        let bp = &mut a[off + n + 1..];
        let upd = Update {
            v: &v[1..],
            w: &w[1..],
        };
        let np = sym_pass(
            bp,
            n,
            m - 1,
            Some(upd),
            if next_tau != 0.0 { &next } else { &[] },
        );
        p_next = if next_tau != 0.0 { Some(np) } else { None };
    }
    d[n - 1] = a[(n - 1) * n + n - 1];
    e[n - 1] = 0.0;
    (d, e, taus)
}

/// The rank-2 update b −= v wᵀ + w vᵀ of a fused pass.
#[derive(Clone, Copy)]
struct Update<'a> {
    v: &'a [f64],
    w: &'a [f64],
}

/// One pass over the lower triangle of the symmetric b (m, m; row stride `stride`): applies
/// `update` if given, then returns b·x from the updated values (zeros when x is empty). Rows
/// are split between threads; each accumulates the transposed half in its own vector.
fn sym_pass(b: &mut [f64], stride: usize, m: usize, update: Option<Update>, x: &[f64]) -> Vec<f64> {
    let want_product = !x.is_empty();
    let rows = &mut b[..(m - 1) * stride + m];
    rows.par_chunks_mut(stride)
        .enumerate()
        .fold(
            || vec![0.0f64; if want_product { m } else { 0 }],
            |mut acc, (r, row)| {
                let seg = &mut row[..=r];
                if let Some(u) = update {
                    let (vr, wr) = (u.v[r], u.w[r]);
                    for ((s, vj), wj) in seg.iter_mut().zip(&u.v[..=r]).zip(&u.w[..=r]) {
                        *s -= vr * wj + wr * vj;
                    }
                }
                if want_product {
                    // Row r of b: the stored part (columns ≤ r) gives b[r]·x; the transposed
                    // part adds b[r][j]·x[r] to entry j < r.
                    acc[r] += dot(seg, &x[..=r]);
                    let xr = x[r];
                    for (aj, sj) in acc[..r].iter_mut().zip(&seg[..r]) {
                        *aj += sj * xr;
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![0.0f64; if want_product { m } else { 0 }],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// Turns x (length m ≥ 1) into a Householder reflector: returns (β, τ) with
/// (I − τ v vᵀ)·x = β·e₀, v[0] = 1 and v[1..] written into x[1..]. τ = 0 when x[1..] is zero.
fn householder(x: &mut [f64]) -> (f64, f64) {
    let alpha = x[0];
    let tail: f64 = x[1..].iter().map(|v| v * v).sum();
    if tail == 0.0 {
        return (alpha, 0.0);
    }
    let norm = (alpha * alpha + tail).sqrt();
    let beta = if alpha >= 0.0 { -norm } else { norm };
    let tau = (beta - alpha) / beta;
    let scale = 1.0 / (alpha - beta);
    x[1..].iter_mut().for_each(|v| *v *= scale);
    x[0] = 1.0;
    (beta, tau)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four partial sums let the compiler vectorise without reassociating.
    let mut s = [0.0f64; 4];
    let chunks = a.len() / 4;
    for c in 0..chunks {
        for l in 0..4 {
            s[l] += a[4 * c + l] * b[4 * c + l];
        }
    }
    let mut tail = 0.0;
    for i in 4 * chunks..a.len() {
        tail += a[i] * b[i];
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// Reflectors accumulated per block (compact WY: one block is two gemm calls).
const WY_BLOCK: usize = 32;

/// Qᵀ = H_{n−2}···H_0 (reflector k read from row k, columns k+2..n, of a) as P = I·H_{n−2}·H_{n−3}···H_0. Right-multiplying by H_k touches only rows
/// and columns k+1.., so blocks of reflectors k0..k1 are applied from the last block backwards as
/// P ← P·(H_{k0}···H_{k1−1})ᵀ = P − (P·V)·Tᵀ·Vᵀ with the compact WY form
/// H_{k0}···H_{k1−1} = I − V·T·Vᵀ (T upper triangular, LAPACK's `larft`). Returns P (n, n).
fn form_qt(a: &[f64], taus: &[f64], n: usize) -> Vec<f64> {
    let mut pm = vec![0.0; n * n];
    for i in 0..n {
        pm[i * n + i] = 1.0;
    }
    let mut k1 = n.saturating_sub(1);
    while k1 > 0 {
        let k0 = k1.saturating_sub(WY_BLOCK);
        let nb = k1 - k0;
        let m = n - k0 - 1;
        // (m, nb): reflector k0 + j in column j, on rows j.. of the trailing block.
        let mut v = vec![0.0; m * nb];
        for j in 0..nb {
            let k = k0 + j;
            if taus[k] == 0.0 {
                continue;
            }
            v[j * nb + j] = 1.0;
            for r in j + 1..m {
                v[r * nb + j] = a[k * n + k0 + 1 + r];
            }
        }
        // (nb, nb) upper triangular: T[j][j] = τ_j, T[..j, j] = −τ_j·T[..j, ..j]·(V[:, ..j]ᵀ·v_j).
        let mut t = vec![0.0; nb * nb];
        for j in 0..nb {
            let tau = taus[k0 + j];
            t[j * nb + j] = tau;
            if tau == 0.0 || j == 0 {
                continue;
            }
            let w: Vec<f64> = (0..j)
                .map(|i| (j..m).map(|r| v[r * nb + i] * v[r * nb + j]).sum())
                .collect();
            for i in 0..j {
                let s: f64 = (i..j).map(|q| t[i * nb + q] * w[q]).sum();
                t[i * nb + j] = -tau * s;
            }
        }
        let off = (k0 + 1) * n + k0 + 1;
        // (m, nb): W = P_sub·V.
        let mut pv = vec![0.0; m * nb];
        let vv = View {
            data: &v,
            rs: nb,
            cs: 1,
        };
        gemm_f64(
            m,
            nb,
            m,
            &mut pv,
            nb,
            false,
            View {
                data: &pm[off..],
                rs: n,
                cs: 1,
            },
            vv,
            1.0,
        );
        // (m, nb): W·Tᵀ.
        let mut pvt = vec![0.0; m * nb];
        for r in 0..m {
            for j in 0..nb {
                pvt[r * nb + j] = (j..nb).map(|i| pv[r * nb + i] * t[j * nb + i]).sum();
            }
        }
        // P_sub −= (W·Tᵀ)·Vᵀ.
        let lhs = View {
            data: &pvt,
            rs: nb,
            cs: 1,
        };
        let vt = View {
            data: &v,
            rs: 1,
            cs: nb,
        };
        gemm_f64(m, m, nb, &mut pm[off..], n, true, lhs, vt, -1.0);
        k1 = k0;
    }
    pm
}

/// Implicit QL on the tridiagonal (d, e) with the rotations replayed on the rows of qt (n, n).
/// Returns ascending eigenvalues and the matching eigenvector rows.
fn tridiagonal_ql(
    mut d: Vec<f64>,
    e_sub: Vec<f64>,
    qt: Vec<f64>,
    n: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    // e[i] couples i and i+1 (the layout tql2 uses after its initial shift).
    let mut e = e_sub;
    let mut rot = Rotations::new(qt, n);
    let mut f = 0.0f64;
    let mut tst1 = 0.0f64;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            let mut iter = 0;
            loop {
                iter += 1;
                if iter > MAX_QL_ITERATIONS {
                    return Err(Error::config(format!(
                        "eigen: QL did not converge for eigenvalue {l} of {n} after {MAX_QL_ITERATIONS} iterations"
                    )));
                }
                // Shift from the leading 2×2 block.
                let g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let h = g - d[l];
                for di in d.iter_mut().skip(l + 2) {
                    *di -= h;
                }
                f += h;
                // The implicit QL sweep from m − 1 down to l.
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0f64, 1.0f64, 1.0f64);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0f64, 0.0f64);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    let g = c * e[i];
                    let h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    rot.push(i as u32, c, s);
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    let qt = rot.finish();
    // Sort ascending, moving the rows along.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| d[i].total_cmp(&d[j]));
    let values: Vec<f64> = order.iter().map(|&i| d[i]).collect();
    let mut vectors = vec![0.0; n * n];
    vectors
        .par_chunks_mut(n)
        .zip(order.par_iter())
        .for_each(|(dst, &i)| {
            dst.copy_from_slice(&qt[i * n..(i + 1) * n]);
        });
    Ok((values, vectors))
}

/// Buffered plane rotations on the rows of a matrix stored in column blocks: block b holds
/// columns b·BLOCK_COLS.. of every row, contiguous, so one thread replays a whole buffer on its
/// block while it stays in cache.
struct Rotations {
    n: usize,
    /// (blocks, n, BLOCK_COLS), zero-padded in the last block.
    blocks: Vec<f64>,
    index: Vec<u32>,
    cs: Vec<[f64; 2]>,
}

impl Rotations {
    fn new(m: Vec<f64>, n: usize) -> Self {
        let nb = n.div_ceil(BLOCK_COLS);
        let mut blocks = vec![0.0; nb * n * BLOCK_COLS];
        blocks
            .par_chunks_mut(n * BLOCK_COLS)
            .enumerate()
            .for_each(|(b, blk)| {
                let c0 = b * BLOCK_COLS;
                let w = BLOCK_COLS.min(n - c0);
                for r in 0..n {
                    blk[r * BLOCK_COLS..r * BLOCK_COLS + w]
                        .copy_from_slice(&m[r * n + c0..r * n + c0 + w]);
                }
            });
        Rotations {
            n,
            blocks,
            index: Vec::new(),
            cs: Vec::new(),
        }
    }

    /// Rows i and i+1 become (c·row_i − s·row_{i+1}, s·row_i + c·row_{i+1}).
    fn push(&mut self, i: u32, c: f64, s: f64) {
        self.index.push(i);
        self.cs.push([c, s]);
        if self.index.len() >= ROTATION_BUFFER {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let (index, cs, n) = (&self.index, &self.cs, self.n);
        self.blocks.par_chunks_mut(n * BLOCK_COLS).for_each(|blk| {
            for (&i, &[c, s]) in index.iter().zip(cs) {
                let i = i as usize;
                let (lo, hi) = blk[i * BLOCK_COLS..(i + 2) * BLOCK_COLS].split_at_mut(BLOCK_COLS);
                for (zi, zi1) in lo.iter_mut().zip(hi.iter_mut()) {
                    let h = *zi1;
                    *zi1 = s * *zi + c * h;
                    *zi = c * *zi - s * h;
                }
            }
        });
        self.index.clear();
        self.cs.clear();
    }

    /// Replays what is left and returns the matrix (n, n) row-major.
    fn finish(mut self) -> Vec<f64> {
        self.flush();
        let n = self.n;
        let mut m = vec![0.0; n * n];
        let blocks = &self.blocks;
        m.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
            for (b, chunk) in row.chunks_mut(BLOCK_COLS).enumerate() {
                let src = &blocks[(b * n + r) * BLOCK_COLS..(b * n + r) * BLOCK_COLS + chunk.len()];
                chunk.copy_from_slice(src);
            }
        });
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric matrix with known spectrum: Vᵀ·diag(λ)·V for V from Householder reflections
    /// of fixed vectors (orthogonal by construction), so the test does not rely on the code under
    /// test to produce the expected values.
    fn known(n: usize, values: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mut v = vec![0.0; n * n];
        for i in 0..n {
            v[i * n + i] = 1.0;
        }
        for t in 0..3 {
            let u: Vec<f64> = (0..n)
                .map(|i| ((i * (t + 3) + 1) as f64 * 0.7).sin())
                .collect();
            let uu: f64 = u.iter().map(|x| x * x).sum();
            // V ← V·(I − 2uuᵀ/uᵀu)
            for r in 0..n {
                let s: f64 = (0..n).map(|j| v[r * n + j] * u[j]).sum::<f64>() * 2.0 / uu;
                for j in 0..n {
                    v[r * n + j] -= s * u[j];
                }
            }
        }
        // A = Σ λ_i v_i v_iᵀ with v_i the rows of V.
        let mut a = vec![0.0; n * n];
        for (i, &l) in values.iter().enumerate() {
            for r in 0..n {
                for c in 0..n {
                    a[r * n + c] += l * v[i * n + r] * v[i * n + c];
                }
            }
        }
        (a, v)
    }

    #[test]
    fn recovers_a_known_spectrum_and_reconstructs() {
        // Tolerance: f64 Householder + QL is backward stable, errors ≈ n·ε·‖A‖ ≈ 1e-13 here.
        const TOL: f64 = 1e-10;
        for n in [1usize, 2, 3, 7, 40, 67] {
            let values: Vec<f64> = (0..n)
                .map(|i| (i as f64 - 3.0) * 0.37 + if i % 5 == 0 { 0.0 } else { 0.01 })
                .collect();
            let (a, _) = known(n, &values);
            let eig = sym_eigen(a.clone(), n).unwrap();
            let mut want = values.clone();
            want.sort_by(f64::total_cmp);
            for (g, w) in eig.values.iter().zip(&want) {
                assert!((g - w).abs() < TOL, "n {n}: eigenvalue {g} vs {w}");
            }
            // A·z_i = λ_i·z_i and ZZᵀ = I.
            for i in 0..n {
                let z = &eig.vectors[i * n..(i + 1) * n];
                for r in 0..n {
                    let az: f64 = (0..n).map(|c| a[r * n + c] * z[c]).sum();
                    assert!(
                        (az - eig.values[i] * z[r]).abs() < TOL,
                        "n {n}: residual at ({i}, {r})"
                    );
                }
                for j in 0..n {
                    let zz: f64 = (0..n).map(|c| z[c] * eig.vectors[j * n + c]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!(
                        (zz - want).abs() < TOL,
                        "n {n}: orthogonality at ({i}, {j}): {zz}"
                    );
                }
            }
        }
    }

    #[test]
    fn handles_repeated_and_zero_eigenvalues() {
        // A rank-deficient matrix like a covariance of few samples: a big null space.
        const TOL: f64 = 1e-10;
        let n = 30;
        let values: Vec<f64> = (0..n)
            .map(|i| if i < 20 { 0.0 } else { 1.0 + (i % 3) as f64 })
            .collect();
        let (a, _) = known(n, &values);
        let eig = sym_eigen(a.clone(), n).unwrap();
        let mut want = values.clone();
        want.sort_by(f64::total_cmp);
        for (g, w) in eig.values.iter().zip(&want) {
            assert!((g - w).abs() < TOL, "eigenvalue {g} vs {w}");
        }
        // Reconstruct A = Σ λ z zᵀ.
        for r in 0..n {
            for c in 0..n {
                let s: f64 = (0..n)
                    .map(|i| eig.values[i] * eig.vectors[i * n + r] * eig.vectors[i * n + c])
                    .sum();
                assert!((s - a[r * n + c]).abs() < TOL);
            }
        }
    }

    #[test]
    fn diagonal_input_and_bad_input() {
        let eig = sym_eigen(vec![3.0, 0.0, 0.0, -1.0], 2).unwrap();
        assert_eq!(eig.values, vec![-1.0, 3.0]);
        assert!(sym_eigen(vec![1.0; 3], 2).is_err());
        assert!(sym_eigen(vec![f64::NAN, 0.0, 0.0, 1.0], 2).is_err());
    }
}
