//! GEMM operand precision of the GPU modes, reproduced on the CPU for the precision study
//! (issue 8, item 4): the CUDA conv kernels feed the tensor cores TF32 (or, with branch `kernels`,
//! bf16) operands and accumulate in fp32. The CPU backend can round its GEMM operands the same way,
//! so the effect of a GPU mode on trained accuracy is measured without a GPU.
//!
//! Why an fp32 GEMM on rounded operands *is* the GPU arithmetic up to summation order: a TF32 value
//! has an 11-bit significand and a bf16 value an 8-bit one, so the product of two such values fits
//! exactly in fp32's 24 bits; the tensor core, like the CPU GEMM, then adds exact products into an
//! fp32 accumulator. Only the order (and the tensor core's internal alignment) of those additions
//! differs, an fp32-rounding-level effect, far below the operand rounding studied here.

use gemm::{gemm, Parallelism};

use crate::error::{Error, Result};
use crate::ops::scratch::ScratchPool;

/// How GEMM operands are rounded before the fp32-accumulating multiply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GemmPrecision {
    /// Operands used as they are (the CPU reference).
    #[default]
    Fp32,
    /// 3xTF32: each operand split into a TF32 head and the TF32 rounding of its remainder;
    /// a·b ≈ a_tail·b_head + a_head·b_tail + a_head·b_head (the tail·tail term dropped), as
    /// cuda/conv_gemm.cuh does with `split_tf32`.
    Tf32x3,
    /// Plain TF32 as the kernels feed it: raw fp32 registers, of which the tensor core reads the top
    /// 19 bits — truncation toward zero, ≤ 2⁻¹⁰ relative per operand, biased (cuda/mma_tf32.cuh;
    /// the main loops carry no `cvt`, which keeps them within the kernel report's threshold).
    Tf32,
    /// bf16: round to nearest even to 7 explicit mantissa bits (`__float2bfloat16_rn`).
    Bf16,
}

impl GemmPrecision {
    /// Every mode, in the order the study reports them.
    pub const ALL: [GemmPrecision; 4] = [
        GemmPrecision::Fp32,
        GemmPrecision::Tf32x3,
        GemmPrecision::Tf32,
        GemmPrecision::Bf16,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GemmPrecision::Fp32 => "fp32",
            GemmPrecision::Tf32x3 => "3xtf32",
            GemmPrecision::Tf32 => "tf32",
            GemmPrecision::Bf16 => "bf16",
        }
    }

    pub fn parse(s: &str) -> Result<GemmPrecision> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown GEMM precision '{s}': expected one of fp32, 3xtf32, tf32, bf16"
                ))
            })
    }

    /// The operand as the GPU mode reads it (the head, for 3xTF32).
    pub fn head(self, v: f32) -> f32 {
        match self {
            GemmPrecision::Fp32 => v,
            GemmPrecision::Tf32x3 => round_tf32(v),
            GemmPrecision::Tf32 => truncate_tf32(v),
            GemmPrecision::Bf16 => round_bf16(v),
        }
    }

    /// a·b as the GPU mode computes one product (fp32 result).
    pub fn mul(self, a: f32, b: f32) -> f32 {
        match self {
            GemmPrecision::Tf32x3 => {
                let (ah, al) = split_tf32(a);
                let (bh, bl) = split_tf32(b);
                al * bh + ah * bl + ah * bh
            }
            p => p.head(a) * p.head(b),
        }
    }
}

/// Round to nearest, ties away from zero, keeping 10 explicit mantissa bits (the low 13 bits
/// cleared), as `cvt.rna.tf32.f32`; non-finite values pass through. Overflow to infinity on
/// rounding up the largest finite values matches the hardware.
pub fn round_tf32(v: f32) -> f32 {
    if !v.is_finite() {
        return v;
    }
    f32::from_bits((v.to_bits() + 0x1000) & 0xffff_e000)
}

/// What the tensor core reads from an fp32 register in TF32 mode: the top 19 bits (sign, exponent,
/// 10 mantissa bits), i.e. truncation toward zero; non-finite values keep their class.
pub fn truncate_tf32(v: f32) -> f32 {
    if !v.is_finite() {
        return v;
    }
    f32::from_bits(v.to_bits() & 0xffff_e000)
}

/// Round to nearest even keeping 7 explicit mantissa bits (the bf16 value, held in an f32);
/// NaN stays NaN.
pub fn round_bf16(v: f32) -> f32 {
    if v.is_nan() {
        return v;
    }
    let u = v.to_bits();
    let lsb = (u >> 16) & 1;
    f32::from_bits((u.wrapping_add(0x7fff + lsb)) & 0xffff_0000)
}

/// (head, tail): head = tf32(v), tail = tf32(v − head), as the 3xTF32 kernels split an operand.
pub fn split_tf32(v: f32) -> (f32, f32) {
    let h = round_tf32(v);
    (h, round_tf32(v - h))
}

/// A strided matrix operand of the `gemm` crate: element (i, j) at `ptr[i·rs + j·cs]`, lying
/// inside `data` (which is rounded element by element, whatever the strides).
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub cs: isize,
    pub rs: isize,
}

/// dst (m, n) [+]= a (m, k) · b (k, n), with both operands rounded as `p` says and fp32
/// accumulation; `accumulate` keeps dst's contents (else they are overwritten). `dst` rows are
/// `dst_rs` apart, columns contiguous. Single-threaded: callers run it inside their rayon tasks.
#[allow(clippy::too_many_arguments)]
pub fn gemm_rounded(
    p: GemmPrecision,
    pool: &ScratchPool,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: isize,
    accumulate: bool,
    a: Operand<'_>,
    b: Operand<'_>,
) {
    assert!(
        m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs as usize + n,
        "gemm_rounded: dst of {} elements is too short for ({m}, {n}) with row stride {dst_rs}",
        dst.len()
    );
    match p {
        GemmPrecision::Fp32 => raw(m, n, k, dst, dst_rs, accumulate, a, b),
        GemmPrecision::Tf32 | GemmPrecision::Bf16 => {
            let ah = rounded(pool, a.data, |v| p.head(v)); // same layout as a
            let bh = rounded(pool, b.data, |v| p.head(v)); // same layout as b
            raw(m, n, k, dst, dst_rs, accumulate, with(a, &ah), with(b, &bh));
        }
        GemmPrecision::Tf32x3 => {
            let ah = rounded(pool, a.data, round_tf32);
            let al = rounded(pool, a.data, |v| split_tf32(v).1);
            let bh = rounded(pool, b.data, round_tf32);
            let bl = rounded(pool, b.data, |v| split_tf32(v).1);
            // Small terms first, as the kernel adds tail·head + head·tail before head·head.
            raw(m, n, k, dst, dst_rs, accumulate, with(a, &al), with(b, &bh));
            raw(m, n, k, dst, dst_rs, true, with(a, &ah), with(b, &bl));
            raw(m, n, k, dst, dst_rs, true, with(a, &ah), with(b, &bh));
        }
    }
}

fn rounded<'p>(
    pool: &'p ScratchPool,
    src: &[f32],
    f: impl Fn(f32) -> f32,
) -> crate::ops::scratch::Scratch<'p> {
    let mut out = pool.take(src.len());
    for (o, &v) in out.iter_mut().zip(src) {
        *o = f(v);
    }
    out
}

fn with<'a>(o: Operand<'_>, data: &'a [f32]) -> Operand<'a> {
    Operand {
        data,
        cs: o.cs,
        rs: o.rs,
    }
}

#[allow(clippy::too_many_arguments)]
fn raw(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: isize,
    accumulate: bool,
    a: Operand<'_>,
    b: Operand<'_>,
) {
    let last = |o: &Operand<'_>, r: usize, c: usize| {
        (r.saturating_sub(1)) as isize * o.rs + (c.saturating_sub(1)) as isize * o.cs
    };
    assert!(
        (last(&a, m, k) as usize) < a.data.len().max(1)
            && (last(&b, k, n) as usize) < b.data.len().max(1),
        "gemm_rounded: an operand is too short for ({m}, {k}) · ({k}, {n})"
    );
    // SAFETY: dst holds (m, n) at row stride dst_rs and unit column stride (asserted above in
    // gemm_rounded); a and b hold their (m, k) and (k, n) elements at their strides (asserted
    // here: the last element lies inside each slice; strides are non-negative at every call).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs,
            accumulate,
            a.data.as_ptr(),
            a.cs,
            a.rs,
            b.data.as_ptr(),
            b.cs,
            b.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_rounds_to_nearest_with_ties_away_from_zero() {
        let ulp = 2f32.powi(-10); // TF32 spacing in [1, 2)
        assert_eq!(round_tf32(1.0 + ulp / 2.0), 1.0 + ulp); // tie: away from zero
        assert_eq!(round_tf32(-(1.0 + ulp / 2.0)), -(1.0 + ulp));
        assert_eq!(round_tf32(1.0 + ulp * 0.49), 1.0);
        assert_eq!(round_tf32(1.0 + ulp * 1.5), 1.0 + 2.0 * ulp); // tie, away (not to even)
        assert_eq!(round_tf32(f32::INFINITY), f32::INFINITY);
        assert!(round_tf32(f32::NAN).is_nan());
        assert_eq!(round_tf32(3.0), 3.0);
    }

    #[test]
    fn tf32_mode_truncates_as_the_tensor_core_reads_fp32() {
        let ulp = 2f32.powi(-10); // TF32 spacing in [1, 2)
        let p = GemmPrecision::Tf32;
        assert_eq!(p.head(1.0 + ulp * 0.99), 1.0); // toward zero, not to nearest
        assert_eq!(p.head(-(1.0 + ulp * 0.99)), -1.0);
        assert_eq!(p.head(1.0 + ulp * 1.5), 1.0 + ulp);
        assert_eq!(p.head(3.0), 3.0);
        assert_eq!(p.head(f32::NEG_INFINITY), f32::NEG_INFINITY);
        // 3xTF32's head is the rounded one (its kernels round with cvt.rna before the split).
        assert_eq!(GemmPrecision::Tf32x3.head(1.0 + ulp * 0.99), 1.0 + ulp);
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        let ulp = 2f32.powi(-7); // bf16 spacing in [1, 2)
        assert_eq!(round_bf16(1.0 + ulp / 2.0), 1.0); // tie to even (1.0)
        assert_eq!(round_bf16(1.0 + ulp * 1.5), 1.0 + 2.0 * ulp); // tie to even (up)
        assert_eq!(round_bf16(1.0 + ulp * 0.51), 1.0 + ulp);
        assert_eq!(round_bf16(-1.0 - ulp * 0.51), -1.0 - ulp);
        assert_eq!(
            round_bf16(half::bf16::from_f32(0.1234).to_f32()),
            half::bf16::from_f32(0.1234).to_f32()
        );
        for v in [0.1f32, -3.7, 1e-30, 6.5e4, 0.333_333] {
            assert_eq!(round_bf16(v), half::bf16::from_f32(v).to_f32(), "v = {v}");
        }
    }

    #[test]
    fn split_tf32_keeps_about_21_bits() {
        for v in [0.1f32, -3.7, 1.0 / 3.0, 12345.678] {
            let (h, l) = split_tf32(v);
            let rel = ((h + l - v) / v).abs();
            // head 11 bits + tail 11 bits ≈ 22; the tail's own rounding leaves ≤ 2^-21.
            assert!(rel <= 2f32.powi(-21), "v = {v}: rel error {rel}");
            assert!(((round_tf32(v) - v) / v).abs() > rel || rel == 0.0);
        }
    }

    /// The rounded GEMM equals a plain f64 dot product of the rounded operands, up to fp32
    /// accumulation over k = 37 terms (products are exact, so only the sums round).
    #[test]
    fn gemm_rounded_matches_products_of_rounded_operands() {
        let (m, n, k) = (5, 7, 37);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.3)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 13.1)
            .collect();
        let pool = ScratchPool::new();
        for p in GemmPrecision::ALL {
            let mut c = vec![0f32; m * n];
            let ao = Operand {
                data: &a,
                cs: 1,
                rs: k as isize,
            };
            let bo = Operand {
                data: &b,
                cs: 1,
                rs: n as isize,
            };
            gemm_rounded(p, &pool, m, n, k, &mut c, n as isize, false, ao, bo);
            let mut worst = (0.0f64, 0usize);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|t| p.mul(a[i * k + t], b[t * n + j]) as f64)
                        .sum();
                    let err = (c[i * n + j] as f64 - want).abs();
                    if err > worst.0 {
                        worst = (err, i * n + j);
                    }
                }
            }
            // fp32 sums of 37 terms of size ≤ 9: a few ulps of the running sum (≤ 333).
            const FP32_SUM_ATOL: f64 = 1e-4;
            assert!(
                worst.0 <= FP32_SUM_ATOL,
                "{p:?}: worst error {} at {}",
                worst.0,
                worst.1
            );
        }
    }

    /// The modes really differ: TF32 and bf16 move a GEMM by their rounding, 3xTF32 stays near fp32.
    /// (No order between TF32 and bf16: on these all-positive operands TF32's truncation errors all
    /// point one way and add up, while bf16's round-to-nearest errors partly cancel.)
    #[test]
    fn modes_are_ordered_by_their_error() {
        let (m, n, k) = (4, 4, 64);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 31 % 89) as f32 + 0.37) / 41.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 29 % 83) as f32 + 0.11) / 37.0)
            .collect();
        let pool = ScratchPool::new();
        let err = |p: GemmPrecision| {
            let mut c = vec![0f32; m * n];
            let ao = Operand {
                data: &a,
                cs: 1,
                rs: k as isize,
            };
            let bo = Operand {
                data: &b,
                cs: 1,
                rs: n as isize,
            };
            gemm_rounded(p, &pool, m, n, k, &mut c, n as isize, false, ao, bo);
            (0..m * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    let exact: f64 = (0..k)
                        .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                        .sum();
                    ((c[ij] as f64 - exact) / exact).abs()
                })
                .fold(0.0, f64::max)
        };
        let (e32, e3, et, eb) = (
            err(GemmPrecision::Fp32),
            err(GemmPrecision::Tf32x3),
            err(GemmPrecision::Tf32),
            err(GemmPrecision::Bf16),
        );
        assert!(e3 < 1e-5 && e32 < 1e-5, "fp32 {e32}, 3xtf32 {e3}");
        assert!(et > 1e-5 && eb > 1e-5, "tf32 {et}, bf16 {eb}");
    }

    #[test]
    fn parse_names_every_mode_and_rejects_others() {
        for p in GemmPrecision::ALL {
            assert_eq!(GemmPrecision::parse(p.name()).unwrap(), p);
        }
        let e = GemmPrecision::parse("fp16").unwrap_err().to_string();
        assert!(e.contains("fp16") && e.contains("bf16"), "{e}");
    }
}
