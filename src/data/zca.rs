//! Hook for ZCA whitening (DESIGN.md §3: fit on the whole training set in raw [0, 1] pixels,
//! eps 0.1, x' = (x − μ)·U·diag((S + eps)^−½)·Uᵀ). The fit itself belongs to the `aug` module;
//! this module only hands it the data in the agreed layout, so the reader side and the whitening
//! side meet at one function.

use crate::data::Dataset;

/// ZCA regularisation used by DD-Ranking's reference (kornia ZCAWhitening, eps 0.1).
pub const ZCA_EPS: f32 = 0.1;

/// The training images as the ZCA fit consumes them: raw [0, 1] pixels, *not* normalised
/// (DD-Ranking's `get_dataset` uses `ToTensor()` alone when `use_zca` is set), flattened to
/// (N, D) with D = C·H·W in (C, H, W) order. Returns the matrix and D.
pub fn fit_input(train: &Dataset) -> (&[f32], usize) {
    (&train.images, train.image_len()) // (N, D)
}
