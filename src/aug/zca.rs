//! ZCA whitening as DD-Ranking fits it (kornia `ZCAWhitening(eps=0.1, compute_inv=True)` over
//! samples along dim 0): mean μ over the training images, unbiased covariance
//! Σ = (X − μ)ᵀ(X − μ)/(N − 1), transform W = U·diag(1/√(S + eps))·Uᵀ, x' = (x − μ)·W.
//! The covariance and eigendecomposition are f64 (kornia's are f32: ours is the closer one to the
//! exact transform); the transform is stored and applied in f32 like kornia's.

use rayon::prelude::*;

use super::eigen::sym_eigen;
use super::gemm64::{gemm_f64, View};
use crate::error::{Error, Result};

/// DD-Ranking's ZCA regulariser.
pub const ZCA_EPS: f64 = 0.1;

/// Rows of X centred and multiplied per covariance chunk (bounds the f64 copy to 32 MiB at D = 3072).
const COV_CHUNK_ROWS: usize = 1365;
/// Column block of the covariance products (a 512×512 f64 block is 2 MiB).
const COV_BLOCK: usize = 512;

/// A fitted whitening for images of `dim` = C·H·W values.
#[derive(Clone, Debug, PartialEq)]
pub struct Zca {
    pub dim: usize,
    /// (D)
    pub mean: Vec<f32>,
    /// (D, D), symmetric.
    pub transform: Vec<f32>,
}

impl Zca {
    /// Fits on x (N, D) with N ≥ 2 (the unbiased covariance needs two samples).
    pub fn fit(x: &[f32], n: usize, dim: usize, eps: f64) -> Result<Zca> {
        if n < 2 || dim == 0 {
            return Err(Error::config(format!(
                "ZCA: fitting needs at least 2 images of at least 1 value, got {n} of {dim}"
            )));
        }
        if x.len() != n * dim {
            return Err(Error::shape(format!(
                "ZCA fit: {} values for ({n}, {dim})",
                x.len()
            )));
        }
        if eps.is_nan() || eps <= 0.0 {
            return Err(Error::config(format!(
                "ZCA: eps must be positive, got {eps}"
            )));
        }
        let mean64 = column_mean(x, n, dim);
        let cov = covariance(x, n, dim, &mean64);
        let eig = sym_eigen(cov, dim)?;
        // W = Σ_i f_i z_i z_iᵀ = Gᵀ·G with G = diag(√f)·Z (rows z_i), f_i = 1/√(λ_i + eps).
        // λ_i ≥ −rounding for a covariance, so λ + eps > 0 for any sensible eps.
        let mut g = eig.vectors;
        g.par_chunks_mut(dim)
            .zip(eig.values.par_iter())
            .for_each(|(row, &l)| {
                let f = 1.0 / (l + eps).max(f64::MIN_POSITIVE).sqrt();
                let sf = f.sqrt();
                row.iter_mut().for_each(|v| *v *= sf);
            });
        let mut w = vec![0.0f64; dim * dim];
        // w (D, D) = gᵀ (D, D) · g (D, D).
        let gt = View {
            data: &g,
            rs: 1,
            cs: dim,
        };
        gemm_f64(
            dim,
            dim,
            dim,
            &mut w,
            dim,
            false,
            gt,
            View {
                data: &g,
                rs: dim,
                cs: 1,
            },
            1.0,
        );
        Ok(Zca {
            dim,
            mean: mean64.iter().map(|&m| m as f32).collect(),
            transform: w.iter().map(|&v| v as f32).collect(),
        })
    }

    /// x (N, D) → out (N, D) = (x − μ)·W, in f32.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        whiten(self.dim, &self.mean, &self.transform, x, out)
    }
}

/// out (N, D) = (x (N, D) − mean (D)) · transform (D, D), in f32: the CPU reference of
/// `Backend::zca_whiten`, and what [`Zca::apply`] runs.
pub fn whiten(d: usize, mean: &[f32], transform: &[f32], x: &[f32], out: &mut [f32]) -> Result<()> {
    if d == 0 || mean.len() != d || transform.len() != d * d {
        return Err(Error::shape(format!(
            "ZCA apply: a mean of {} and a transform of {} values for rows of {d}",
            mean.len(),
            transform.len()
        )));
    }
    if x.len() % d != 0 || out.len() != x.len() {
        return Err(Error::shape(format!(
            "ZCA apply: {} input and {} output values for rows of {d}",
            x.len(),
            out.len()
        )));
    }
    // (N, D): centred input.
    let mut xc: Vec<f32> = x.to_vec();
    xc.par_chunks_mut(d).for_each(|row| {
        row.iter_mut().zip(mean).for_each(|(v, m)| *v -= m);
    });
    // Rows at a time so the f32 gemm sees big blocks without a second copy of all of X.
    for (chunk_in, chunk_out) in xc.chunks(4096 * d).zip(out.chunks_mut(4096 * d)) {
        let rows = chunk_in.len() / d;
        // SAFETY: chunk_in (rows, d), transform (d, d), chunk_out (rows, d), row-major,
        // lengths checked above; gemm writes only chunk_out.
        unsafe {
            gemm::gemm(
                rows,
                d,
                d,
                chunk_out.as_mut_ptr(),
                1,
                d as isize,
                false,
                chunk_in.as_ptr(),
                1,
                d as isize,
                transform.as_ptr(),
                1,
                d as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
    }
    Ok(())
}

/// Mean of each column of x (N, D), in f64.
fn column_mean(x: &[f32], n: usize, dim: usize) -> Vec<f64> {
    let mut mean = vec![0.0f64; dim];
    for row in x.chunks(dim) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    mean
}

/// (X − μ)ᵀ(X − μ)/(N − 1) in f64, chunk by chunk of rows; only the blocks on and below the
/// diagonal are multiplied (the upper ones are mirrored), which halves the dominant cost.
/// Returns (D, D).
fn covariance(x: &[f32], n: usize, dim: usize, mean: &[f64]) -> Vec<f64> {
    let mut cov = vec![0.0f64; dim * dim];
    let mut first = true;
    for chunk in x.chunks(COV_CHUNK_ROWS * dim) {
        let rows = chunk.len() / dim;
        // (rows, D): centred chunk in f64.
        let mut xc = vec![0.0f64; chunk.len()];
        xc.par_chunks_mut(dim)
            .zip(chunk.par_chunks(dim))
            .for_each(|(dst, src)| {
                dst.iter_mut()
                    .zip(src)
                    .zip(mean)
                    .for_each(|((d, &s), m)| *d = s as f64 - m);
            });
        for bi in (0..dim).step_by(COV_BLOCK) {
            let hi = COV_BLOCK.min(dim - bi);
            for bj in (0..=bi).step_by(COV_BLOCK) {
                let wj = COV_BLOCK.min(dim - bj);
                // cov[bi.., bj..] (hi, wj) += xc[:, bi..]ᵀ (hi, rows) · xc[:, bj..] (rows, wj).
                let lhs = View {
                    data: &xc[bi..],
                    rs: 1,
                    cs: dim,
                };
                let rhs = View {
                    data: &xc[bj..],
                    rs: dim,
                    cs: 1,
                };
                gemm_f64(
                    hi,
                    wj,
                    rows,
                    &mut cov[bi * dim + bj..],
                    dim,
                    !first,
                    lhs,
                    rhs,
                    1.0,
                );
            }
        }
        first = false;
    }
    let scale = 1.0 / (n - 1) as f64;
    cov.par_iter_mut().for_each(|v| *v *= scale);
    // Mirror the lower triangle (diagonal blocks are symmetric up to gemm's rounding: take their
    // lower halves too, so the matrix is exactly symmetric for the eigensolver).
    for i in 0..dim {
        for j in 0..i {
            cov[j * dim + i] = cov[i * dim + j];
        }
    }
    cov
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, d: usize) -> Vec<f32> {
        (0..n * d)
            .map(|i| (((i * 7919) % 1009) as f32 / 1009.0 - 0.5) * (1.0 + (i % d) as f32 * 0.1))
            .collect()
    }

    #[test]
    fn whitened_training_data_has_near_identity_covariance() {
        // With N ≫ D the covariance has full rank and W·Σ·W = Σ·(Σ + eps)⁻¹ whose eigenvalues
        // are λ/(λ + eps); check the fitted whitening against that on the training data itself.
        let (n, d) = (400, 12);
        let x = data(n, d);
        let zca = Zca::fit(&x, n, d, ZCA_EPS).unwrap();
        let mut y = vec![0.0; x.len()];
        zca.apply(&x, &mut y).unwrap();
        // Mean of the whitened data is 0 (to f32 rounding of values of size ~1).
        for j in 0..d {
            let m: f64 = (0..n).map(|i| y[i * d + j] as f64).sum::<f64>() / n as f64;
            assert!(m.abs() < 1e-5, "column {j} mean {m}");
        }
        // Transform is symmetric.
        for i in 0..d {
            for j in 0..d {
                assert_eq!(zca.transform[i * d + j], zca.transform[j * d + i]);
            }
        }
        // trace(cov(y)) = Σ λ/(λ + eps) < D, and every variance of y is below 1.
        let var =
            |j: usize| (0..n).map(|i| (y[i * d + j] as f64).powi(2)).sum::<f64>() / (n - 1) as f64;
        for j in 0..d {
            assert!(
                var(j) < 1.0 && var(j) > 0.0,
                "column {j} variance {}",
                var(j)
            );
        }
    }

    /// Speed of a CIFAR-sized fit (D = 3072); a benchmark, so ignored by default:
    /// `cargo test --release --lib zca_fit_speed_d3072 -- --ignored --nocapture`.
    /// Data: 50,000 rows of correlated values (a smooth random field per row plus noise).
    /// CPU seconds (user + system) of this process so far, from /proc/self/stat (USER_HZ = 100):
    /// on a shared machine wall time says little, CPU time / threads says what a free machine gives.
    fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<f64> = after
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        // Fields 14 and 15 of the file are utime and stime; `after` starts at field 3.
        (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
    }

    #[test]
    #[ignore]
    fn zca_fit_speed_d3072() {
        use crate::aug::rng::{DrawKey, Purpose};
        let n: usize = std::env::var("ZCA_BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50_000);
        let d = 3072usize;
        let t0 = std::time::Instant::now();
        let mut x = vec![0.0f32; n * d];
        x.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
            let k = DrawKey {
                seed: 1,
                run: 0,
                role: 0,
                step: i as u32,
            };
            let mut acc = 0.0f32;
            for (j, v) in row.iter_mut().enumerate() {
                let u = k.uniform_f32(Purpose::Brightness, j as u32) - 0.5;
                acc = 0.95 * acc + u;
                *v = acc + 0.1 * u;
            }
        });
        eprintln!("data {:.1} s", t0.elapsed().as_secs_f64());
        let (t, c) = (std::time::Instant::now(), cpu_seconds());
        let mean = column_mean(&x, n, d);
        let cov = covariance(&x, n, d, &mean);
        eprintln!(
            "covariance (N = {n}) {:.1} s wall, {:.1} s CPU",
            t.elapsed().as_secs_f64(),
            cpu_seconds() - c
        );
        let (t, c) = (std::time::Instant::now(), cpu_seconds());
        let eig = sym_eigen(cov.clone(), d).unwrap();
        eprintln!(
            "eigen {:.1} s wall, {:.1} s CPU",
            t.elapsed().as_secs_f64(),
            cpu_seconds() - c
        );
        // Spot-check the decomposition: ‖C·z − λ·z‖ for the largest and a middle eigenvalue.
        for i in [d - 1, d / 2] {
            let z = &eig.vectors[i * d..(i + 1) * d];
            let res = (0..d)
                .map(|r| (0..d).map(|c| cov[r * d + c] * z[c]).sum::<f64>() - eig.values[i] * z[r])
                .fold(0.0f64, |m, v| m.max(v.abs()));
            eprintln!(
                "eigenvalue {i}: {:.4e}, max residual {res:.2e}",
                eig.values[i]
            );
            assert!(res < 1e-8 * eig.values[d - 1]);
        }
        let (t, c) = (std::time::Instant::now(), cpu_seconds());
        let zca = Zca::fit(&x, n, d, ZCA_EPS).unwrap();
        eprintln!(
            "whole fit {:.1} s wall, {:.1} s CPU",
            t.elapsed().as_secs_f64(),
            cpu_seconds() - c
        );
        let t = std::time::Instant::now();
        let m = n.min(10_000);
        let mut out = vec![0.0f32; m * d];
        zca.apply(&x[..m * d], &mut out).unwrap();
        eprintln!("apply to {m} images {:.1} s", t.elapsed().as_secs_f64());
    }

    #[test]
    fn blocked_covariance_matches_the_definition() {
        // D = 600 spans two column blocks and N = 1400 two row chunks: every block path runs.
        // Tolerance: both are f64 sums of 1400 products of values ≤ ~60, error ≲ 1e-10.
        let (n, d) = (1400, 600);
        let x = data(n, d);
        let mean = column_mean(&x, n, d);
        let cov = covariance(&x, n, d, &mean);
        for &(i, j) in &[
            (0, 0),
            (3, 599),
            (599, 3),
            (511, 512),
            (512, 511),
            (599, 599),
            (100, 550),
        ] {
            let want: f64 = (0..n)
                .map(|r| (x[r * d + i] as f64 - mean[i]) * (x[r * d + j] as f64 - mean[j]))
                .sum::<f64>()
                / (n - 1) as f64;
            assert!(
                (cov[i * d + j] - want).abs() < 1e-9 * want.abs().max(1.0),
                "({i}, {j})"
            );
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(Zca::fit(&[1.0; 6], 3, 3, ZCA_EPS).is_err());
        assert!(Zca::fit(&[1.0; 3], 1, 3, ZCA_EPS).is_err());
        let zca = Zca::fit(&data(10, 3), 10, 3, ZCA_EPS).unwrap();
        let mut out = vec![0.0; 5];
        assert!(zca.apply(&[0.0; 6], &mut out).is_err());
    }
}
