//! Hook for ZCA whitening (DESIGN.md §3: fit on the whole training set, eps 0.1,
//! x' = (x − μ)·U·diag((S + eps)^−½)·Uᵀ). The fit itself belongs to the `aug` module, which
//! implements it against the golden files; this module only hands it the data in the agreed
//! layout, so the reader side and the whitening side meet at one function.

use crate::data::{Dataset, Norm};

/// ZCA regularisation used by DD-Ranking's reference (kornia ZCAWhitening, eps 0.1).
pub const ZCA_EPS: f32 = 0.1;

/// The training images as the ZCA fit consumes them: normalised with `norm`, flattened to
/// (N, D) with D = C·H·W in (C, H, W) order. Returns the matrix and D.
pub fn fit_input(train: &Dataset, norm: &Norm) -> (Vec<f32>, usize) {
    (train.normalised(norm), train.image_len()) // (N, D)
}
