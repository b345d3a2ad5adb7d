//! One folder per op family: `mod.rs` holds the shapes, docs and tests, `cpu.rs` the plain
//! reference loops (rayon over students × images) that every other implementation is checked
//! against. Each op's geometry struct (`ConvGeom`, `NormGeom`, ...) lives in its folder; the ones
//! every op shares ([`ParamAt`], [`Mode`]) live here. `ops/` never imports `crate::backend`, which
//! re-exports these types for the `Backend` contract.

pub mod accuracy;
pub mod conv;
pub mod conv2d;
pub mod im2col;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod norm_relu_pool;
pub mod optim;
pub mod pool;
pub mod precision;
pub mod relu;
pub mod rows;
pub mod scratch;
pub mod step;

use crate::error::{Error, Result};

/// Where one layer's tensors sit inside a student's parameter row of length `row` (= P).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamAt {
    pub weight: usize,
    pub bias: usize,
    pub row: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// Checks that a buffer argument holds exactly `want` elements; the message names the op and the
/// argument so a caller can find the wrong shape.
pub(crate) fn check_len(op: &str, arg: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::shape(format!(
            "{op}: `{arg}` has {got} elements, expected {want}"
        )))
    }
}

/// Checks that a parameter block [at, at + len) fits inside a row of length `row`.
pub(crate) fn check_span(op: &str, what: &str, at: usize, len: usize, row: usize) -> Result<()> {
    if at.checked_add(len).is_some_and(|end| end <= row) {
        Ok(())
    } else {
        Err(Error::shape(format!(
            "{op}: {what} at offset {at} with {len} elements does not fit a row of {row}"
        )))
    }
}
