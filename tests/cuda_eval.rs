//! The eval-mode block kernel that never stores y (cuda/conv_eval.cu, launcher
//! src/backend/cuda/ops/eval.rs): conv → norm → ReLU → 2×2 pool with the conv tile in shared
//! memory. Checked against the CPU backend rounding its GEMM operands as the kernel's main loop
//! does (`GemmPrecision::Tf32`: truncation; `Bf16`: round to nearest even) for instance norm,
//! eval-mode batch norm and no norm, per block (stats and pooled output) and through a whole
//! ConvNet forward (logits), in both test precisions, with and without a shared input (the wide
//! first layer), on 32×32 and 28×28 planes; smaller planes fall back.
//! Runs on a real GPU when one can be opened, else on the emulated device.
//!
//! `cargo test --release --test cuda_eval`

mod common;

use common::assert_close;
use common::block::convnet_eval_forward as forward;
use common::block::{max_abs, max_diff, y_len, BlockBufs, BlockCase, Rng, PAD_3_1};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::{CudaBackend, TestPrecision};
use ddr_fast::backend::{Backend, ConvGeom, Mode, NormKind};
use ddr_fast::model::{ConvNet, ConvNetSpec};
use ddr_fast::ops::precision::GemmPrecision;

// ---- tolerances ------------------------------------------------------------------------------
/// Normalised, pooled outputs and norm statistics against the CPU rounding the GEMM operands the
/// same way: the products are then exact in fp32 and only the fp32 summation order differs (K ≤
/// 108 terms: ≤ ~K·2⁻²⁴ ≈ 7e-6 of the terms' magnitude in y), which the norm scales by at most
/// max|y| / std ≤ 4 for these uniform inputs; the kernel's rsqrtf and __fdividef add a few ulp.
/// 5e-4 of the largest value holds that with margin and is far below what one operand rounding
/// step moves (TF32 truncation 2⁻¹⁰, bf16 2⁻⁸ relative), which the off-precision check below
/// confirms.
const EVAL_NORMED_ATOL_OF_MAX: f32 = 5e-4;
/// Logits after two blocks and the fp32 linear head: per-block errors of the size above carried
/// through a second norm (≤ 4×) and the head's sum over the features.
const EVAL_LOGITS_ATOL_OF_MAX: f32 = 5e-3;
/// The eval kernel against conv.cu's fused forward on the same device and precision: the same
/// MMA steps over the same groups of 8 (TF32) or 16 (bf16) k compute y bit for bit; the statistics differ only in how they are summed (two
/// passes over shared memory vs shifted sums merged by Chan's formula) and in rsqrtf vs 1/sqrtf.
const SAME_DEVICE_ATOL_OF_MAX: f32 = 1e-5;

fn cuda() -> CudaBackend {
    common::cuda_under_test("cuda_eval")
}

fn cpu(p: TestPrecision) -> CpuBackend {
    CpuBackend::new().with_test_precision(match p {
        TestPrecision::Tf32 => GemmPrecision::Tf32,
        TestPrecision::Bf16 => GemmPrecision::Bf16,
        TestPrecision::Tf32x3 => GemmPrecision::Tf32x3,
    })
}

/// The block of `cg` with `kind` norm inside a padded parameter row, drawn from `seed`.
fn case(cg: ConvGeom, kind: NormKind, shared: bool, seed: u64) -> BlockCase {
    BlockCase::new(cg, kind, shared, PAD_3_1, seed)
}

/// (stats, out) of one eval-mode block forward with a y buffer of `y_len` elements (0: the eval
/// kernel, which leaves y alone; the full conv output: the backend's other path).
fn run<B: Backend>(b: &B, c: &BlockCase, y_len: usize) -> [Vec<f32>; 2] {
    let [_, stats, out, _] = c.forward(b, Mode::Eval, y_len);
    [stats, out]
}

const NAMES: [&str; 2] = ["stats", "out"];

/// Every norm kind in both test precisions: the eval kernel (empty y) against the CPU rounding as
/// it does, against the fused kernel that stores y, and measurably off the CPU in the other
/// rounding (so the tolerance tells the precisions apart).
fn check(cg: ConvGeom, shared: bool, seed: u64) {
    for p in [TestPrecision::Tf32, TestPrecision::Bf16] {
        let be = cuda().with_test_precision(p);
        for kind in [NormKind::Instance, NormKind::Batch, NormKind::None] {
            let c = case(cg, kind, shared, seed);
            assert_eq!(
                be.conv_out_len_eval(&cg, &c.ng),
                0,
                "{p:?} {cg:?}: the eval kernel should hold these planes"
            );
            let got = run(&be, &c, 0);
            let want = run(&cpu(p), &c, y_len(&cg));
            let stored = run(&be, &c, y_len(&cg));
            let tag = format!("{p:?} {kind:?} shared={shared} {cg:?}");
            for i in 0..2 {
                let tol = EVAL_NORMED_ATOL_OF_MAX * max_abs(&want[i]).max(1e-6);
                let what = format!("eval kernel vs CPU {} {tag}", NAMES[i]);
                assert_close(&what, &got[i], &want[i], tol, 0.0);
                let what = format!("eval kernel vs fused (y stored) {} {tag}", NAMES[i]);
                let tol = SAME_DEVICE_ATOL_OF_MAX * max_abs(&stored[i]).max(1e-6);
                assert_close(&what, &got[i], &stored[i], tol, 0.0);
            }
            let other = match p {
                TestPrecision::Bf16 => TestPrecision::Tf32,
                _ => TestPrecision::Bf16,
            };
            let off = run(&cpu(other), &c, y_len(&cg));
            let d = max_diff(&got[1], &off[1]);
            assert!(
                d > 2.0 * EVAL_NORMED_ATOL_OF_MAX * max_abs(&off[1]),
                "{tag}: the eval output is within {d} of the {other:?} CPU: not {p:?} rounding?"
            );
        }
    }
}

/// 32×32 planes (the direct kernels: one image per block), with cout = 40 not a multiple of the 32-wide column tile, 3 images (blocks are whole images) and
/// K = 36 (padded with zero weights to 40 for TF32, 48 for bf16).
#[test]
fn eval_block_matches_the_cpu() {
    let cg = ConvGeom {
        students: 2,
        batch: 3,
        cin: 4,
        cout: 40,
        h: 32,
        w: 32,
        pad: 1,
    };
    check(cg, false, 1);
}

/// A shared input (a test chunk's first layer): one wide GEMM over N = S·cout = 3·24 columns, so
/// a 32-wide column tile spans two students' channels.
#[test]
fn eval_wide_first_layer_matches_the_cpu() {
    let cg = ConvGeom {
        students: 3,
        batch: 2,
        cin: 3,
        cout: 24,
        h: 32,
        w: 32,
        pad: 1,
    };
    check(cg, true, 4);
}

/// 28×28 planes with one input channel (MNIST's first layer): image rows of 28 pixels straddle
/// the direct kernels' 16-row fragments, and the last warp tile runs past the plane (rows
/// 784..799 are read from row 0, never stored); K = 9 is padded to one K step.
#[test]
fn eval_28px_planes_match_the_cpu() {
    let cg = ConvGeom {
        students: 2,
        batch: 2,
        cin: 1,
        cout: 16,
        h: 28,
        w: 28,
        pad: 1,
    };
    check(cg, false, 9);
}

/// Planes the eval kernel does not take (10×10; 16×16 and 8×8, below MIN_PLANE_ROWS: the
/// stored-y forward finishes them in-kernel; 32×32 of 128 input channels) and 3xTF32 test
/// passes keep the stored-y path: the backend asks for the whole y, and refuses an empty one with
/// a message naming the fix.
#[test]
fn other_shapes_fall_back_to_the_stored_y() {
    let cg = ConvGeom {
        students: 1,
        batch: 2,
        cin: 3,
        cout: 8,
        h: 10,
        w: 10,
        pad: 1,
    };
    let c = case(cg, NormKind::Instance, false, 6);
    let be = cuda();
    assert_eq!(be.conv_out_len_eval(&cg, &c.ng), y_len(&cg));
    for p in [TestPrecision::Tf32, TestPrecision::Bf16] {
        for hw in [16, 8] {
            let small = ConvGeom { h: hw, w: hw, ..cg };
            let cs = case(small, NormKind::Instance, false, 6);
            let be = cuda().with_test_precision(p);
            assert_eq!(be.conv_out_len_eval(&small, &cs.ng), y_len(&small));
        }
    }
    // 32×32 planes of 128 input channels: the direct kernels' padded image (592 KB) does not fit a
    // block's shared memory.
    let deep = ConvGeom {
        cin: 128,
        h: 32,
        w: 32,
        ..cg
    };
    let cd = case(deep, NormKind::Instance, false, 6);
    assert_eq!(be.conv_out_len_eval(&deep, &cd.ng), y_len(&deep));
    let x3 = cuda().with_test_precision(TestPrecision::Tf32x3);
    let big = ConvGeom { h: 32, w: 32, ..cg };
    let c32 = case(big, NormKind::Instance, false, 6);
    assert_eq!(x3.conv_out_len_eval(&big, &c32.ng), y_len(&big));
    let mut bufs = BlockBufs::new(&be, &c, 0);
    let e = bufs.forward(&be, &c, Mode::Eval).unwrap_err().to_string();
    assert!(
        e.contains("10×10") && e.contains("conv_out_len_eval"),
        "{e}"
    );
}

/// Whole eval forwards of small ConvNets at 32 px (instance norm and batch norm), as the trainer's
/// test pass runs them (an eval-only workspace, which holds no y for block 1: the eval kernel;
/// block 2's 16×16 planes keep the stored-y forward): CUDA logits against the CPU in each test
/// precision, on a shared chunk and on per-student images.
#[test]
fn convnet_eval_forward_matches_the_cpu() {
    for (name, seed) in [("ConvNet-2-W8", 7), ("ConvNet-2-W8-BN", 8)] {
        let spec = ConvNetSpec::from_name(name, 3, 32, 4).unwrap();
        let net = ConvNet::new(spec);
        let (s, b) = (3, 4);
        let mut r = Rng(seed);
        let shared_x = r.vec(b * 3 * 32 * 32, -1.0, 1.0); // (B, 3, 32, 32)
        let own_x = r.vec(s * b * 3 * 32 * 32, -1.0, 1.0); // (S, B, 3, 32, 32)
        let params = r.vec(s * net.param_len(), -0.3, 0.3); // (S, P)
        let mut running = r.vec(s * net.buffer_len(), 0.2, 1.0); // (S, R): var > 0
        if net.buffer_len() == 0 {
            running.clear();
        }
        for p in [TestPrecision::Tf32, TestPrecision::Bf16] {
            let be = cuda().with_test_precision(p);
            for shared in [true, false] {
                let x = if shared { &shared_x } else { &own_x };
                let got = forward(&be, &net, s, b, x, shared, &params, &running);
                let want = forward(&cpu(p), &net, s, b, x, shared, &params, &running);
                let tol = EVAL_LOGITS_ATOL_OF_MAX * max_abs(&want);
                let what = format!("{name} {p:?} shared={shared} eval logits");
                assert_close(&what, &got, &want, tol, 0.0);
            }
        }
    }
}
