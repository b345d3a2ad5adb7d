//! Which kernel runs a conv forward: training forwards use the backend's `ConvPrecision`
//! (cuda/conv.cu); eval-mode forwards (test passes, teacher labels) its `TestPrecision`: bf16 runs
//! cuda/conv_bf16.cu's m16n8k16 kernels, and a shared input (a test chunk read by every student)
//! runs the first layer as ONE GEMM over N = S·cout ("wide": grid z = 1) where the kernel has a
//! wide form (bf16 always, TF32 with the fused norm epilogue; 3xTF32 keeps one GEMM per student).

use super::{ConvTile, GRID_YZ_MAX, TILE_TF32, TILE_TF32X3};
use crate::backend::cuda::{ConvPrecision, CudaBackend, TestPrecision};
use crate::backend::{ConvGeom, Mode};

/// bf16 forward: 128 × 128 over 4 warps (cuda/conv_bf16.cu CONV_BF16_TILE).
pub(super) const TILE_BF16: ConvTile = ConvTile {
    bm: 128,
    bn: 128,
    threads: 128,
};

/// A forward kernel and how to launch it.
#[derive(Clone, Copy, Debug)]
pub(super) struct ForwardKernel {
    pub name: &'static str,
    pub tile: ConvTile,
    /// One GEMM over N = S·cout, grid z = 1 (ConvParams::wide).
    pub wide: bool,
}

/// Whether the wide GEMM's 32-bit gather offsets (student · param_row + weight) and CUDA's grid
/// limit allow it for this geometry.
pub(super) fn wide_fits(g: &ConvGeom, param_row: usize, tile: ConvTile) -> bool {
    g.students > 1
        && g.students
            .checked_mul(param_row)
            .is_some_and(|v| v < 1 << 31)
        && (g.students * g.cout).div_ceil(tile.bn) <= GRID_YZ_MAX
}

impl CudaBackend {
    /// The forward kernel for a conv in `mode` (`fused`: with the norm epilogue) over a shared
    /// input or not, for a parameter row of `param_row` floats.
    pub(super) fn forward_kernel(
        &self,
        g: &ConvGeom,
        mode: Mode,
        x_shared: bool,
        fused: bool,
        param_row: usize,
    ) -> ForwardKernel {
        let k = |name, tile, wide| ForwardKernel { name, tile, wide };
        let test = match mode {
            Mode::Train => TestPrecision::from(self.conv_precision()),
            Mode::Eval => self.test_precision(),
        };
        // A training forward never has a shared input (ConvNet::forward_shared_input is eval).
        let train = mode == Mode::Train;
        match (test, fused) {
            (TestPrecision::Bf16, true) if !train => k(
                "conv3x3_forward_norm_bf16",
                TILE_BF16,
                x_shared && wide_fits(g, param_row, TILE_BF16),
            ),
            (TestPrecision::Bf16, false) if !train => k(
                "conv3x3_forward_bf16",
                TILE_BF16,
                x_shared && wide_fits(g, param_row, TILE_BF16),
            ),
            (TestPrecision::Tf32, true) if x_shared && wide_fits(g, param_row, TILE_TF32) => {
                k("conv3x3_forward_norm_wide_tf32", TILE_TF32, true)
            }
            _ => match (self.conv_precision_for(test), fused) {
                (ConvPrecision::Tf32x3, true) => {
                    k("conv3x3_forward_norm_tf32x3", TILE_TF32X3, false)
                }
                (ConvPrecision::Tf32, true) => k("conv3x3_forward_norm_tf32", TILE_TF32, false),
                (ConvPrecision::Tf32x3, false) => k("conv3x3_forward_tf32x3", TILE_TF32X3, false),
                (ConvPrecision::Tf32, false) => k("conv3x3_forward_tf32", TILE_TF32, false),
            },
        }
    }

    /// conv.cu's precision for a TF32-family mode (bf16 in training: the training precision).
    fn conv_precision_for(&self, p: TestPrecision) -> ConvPrecision {
        match p {
            TestPrecision::Tf32x3 => ConvPrecision::Tf32x3,
            TestPrecision::Tf32 => ConvPrecision::Tf32,
            TestPrecision::Bf16 => self.conv_precision(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(students: usize) -> ConvGeom {
        ConvGeom {
            students,
            batch: 4,
            cin: 3,
            cout: 128,
            h: 32,
            w: 32,
            pad: 1,
        }
    }

    /// Test passes run the test precision, training the training precision; a shared input goes
    /// wide where a wide kernel exists and the offsets fit.
    #[test]
    fn kernel_choice_follows_mode_and_precision() {
        let be = CudaBackend::emulated().with_test_precision(TestPrecision::Bf16);
        let g = geom(16);
        let row = 320_000;
        let k = be.forward_kernel(&g, Mode::Eval, true, true, row);
        assert_eq!((k.name, k.wide), ("conv3x3_forward_norm_bf16", true));
        let k = be.forward_kernel(&g, Mode::Eval, false, true, row);
        assert_eq!((k.name, k.wide), ("conv3x3_forward_norm_bf16", false));
        let k = be.forward_kernel(&g, Mode::Train, false, true, row);
        assert_eq!((k.name, k.wide), ("conv3x3_forward_norm_tf32", false));
        // The default test precision is bf16 (`TestPrecision`'s `#[default]`).
        assert_eq!(
            CudaBackend::emulated().test_precision(),
            TestPrecision::Bf16
        );
        let tf32 = CudaBackend::emulated().with_test_precision(TestPrecision::Tf32);
        let k = tf32.forward_kernel(&g, Mode::Eval, true, true, row);
        assert_eq!((k.name, k.wide), ("conv3x3_forward_norm_wide_tf32", true));
        let k = tf32.forward_kernel(&g, Mode::Eval, true, false, row);
        assert_eq!((k.name, k.wide), ("conv3x3_forward_tf32", false));
        let pinned = CudaBackend::emulated().with_conv_precision(ConvPrecision::Tf32x3);
        let k = pinned.forward_kernel(&g, Mode::Eval, true, true, row);
        assert_eq!((k.name, k.wide), ("conv3x3_forward_norm_tf32x3", false));
        // 16 students × 2²⁸ floats per row overflow the 32-bit gather offsets: one GEMM each.
        let k = be.forward_kernel(&g, Mode::Eval, true, true, 1 << 28);
        assert_eq!((k.name, k.wide), ("conv3x3_forward_norm_bf16", false));
        let k = be.forward_kernel(&geom(1), Mode::Eval, true, true, row);
        assert!(!k.wide, "one student needs no wide GEMM");
    }
}
