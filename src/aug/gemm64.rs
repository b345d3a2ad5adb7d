//! A bounds-checked wrapper over the `gemm` crate for the f64 products of ZCA (covariance,
//! blocked Householder accumulation, the final U·diag·Uᵀ), with row/column strides so that
//! sub-blocks and transposes need no copies.

/// A strided matrix view: element (i, j) is at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f64],
    pub rs: usize,
    pub cs: usize,
}

/// Index one past the last element an (r, c) matrix with these strides touches.
fn span(rs: usize, cs: usize, r: usize, c: usize) -> usize {
    if r == 0 || c == 0 {
        0
    } else {
        (r - 1) * rs + (c - 1) * cs + 1
    }
}

/// dst (m, n; row stride dst_rs, column stride 1) = [dst +] beta·lhs (m, k)·rhs (k, n).
/// Panics (an invariant of the callers in this module tree) when a view is too short.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_f64(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f64],
    dst_rs: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    beta: f64,
) {
    assert!(
        dst.len() >= span(dst_rs, 1, m, n),
        "gemm_f64: dst too short for {m}×{n}"
    );
    assert!(
        lhs.data.len() >= span(lhs.rs, lhs.cs, m, k),
        "gemm_f64: lhs too short for {m}×{k}"
    );
    assert!(
        rhs.data.len() >= span(rhs.rs, rhs.cs, k, n),
        "gemm_f64: rhs too short for {k}×{n}"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above bound every element the strides reach in dst, lhs and rhs; dst
    // is a unique borrow, so it cannot alias the operands.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}
