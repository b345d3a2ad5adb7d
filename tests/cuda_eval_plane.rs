//! The bf16 eval kernel of small planes (cuda/conv_eval_plane.cu `conv3x3_eval_plane_bf16`,
//! chosen by src/backend/cuda/ops/eval.rs for bf16 test passes of 64-, 128- and 256-row planes):
//! conv → norm → ReLU → 2×2 pool with y in registers. Checked against the CPU backend rounding
//! its GEMM operands to bf16 as the kernel does (`GemmPrecision::Bf16`) for instance norm,
//! eval-mode batch norm and no norm, per block (stats and pooled output) on 16×16, 8×8 and 8×16
//! planes with several students, odd batches (a last block with missing images) and channel
//! counts that are not a multiple of the 128-wide column tile; with x given as bf16 (packed on
//! the host, contracts.md) bit for bit equal to x given as fp32; and through whole ConvNet-3
//! eval forwards (logits), where blocks 2 and 3 take this kernel.
//! Runs on a real GPU when one can be opened, else on the emulated device.
//!
//! `cargo test --release --test cuda_eval_plane`

mod common;

use common::assert_close;
use common::bf16::pack_bf16;
use common::block::convnet_eval_forward as forward;
use common::block::{max_abs, max_diff, y_len, BlockCase, Rng, PAD_3_1};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::{CudaBackend, TestPrecision};
use ddr_fast::backend::{Backend, ConvGeom, Mode, NormKind};
use ddr_fast::model::{ConvNet, ConvNetSpec};
use ddr_fast::ops::precision::GemmPrecision;

// ---- tolerances ------------------------------------------------------------------------------
/// Normalised, pooled outputs and statistics against the CPU on the same bf16 operands: products
/// of two bf16 values are exact in fp32, so only the summation order of the K = 9·cin ≤ 1,152
/// terms differs (a random-walk error of ~√K·2⁻²⁴ of the terms' scale, ~1e-6 of y here), which
/// the norm scales by at most max|y| / std ≤ 4 for these uniform inputs; rsqrtf and __fdividef
/// add a few ulp. 5e-4 of the largest value holds that with margin and is far below one bf16
/// rounding step of an operand (2⁻⁸ relative), which the TF32 check below confirms.
const PLANE_NORMED_ATOL_OF_MAX: f32 = 5e-4;
/// Logits after three blocks and the fp32 linear head: per-block errors of the size above
/// carried through two more norms (≤ 4× each) and the head's sum over the features.
const PLANE_LOGITS_ATOL_OF_MAX: f32 = 5e-3;

fn cuda() -> CudaBackend {
    common::cuda_under_test("cuda_eval_plane").with_test_precision(TestPrecision::Bf16)
}

fn cpu(p: GemmPrecision) -> CpuBackend {
    CpuBackend::new().with_test_precision(p)
}

/// The block of `cg` with `kind` norm inside a padded parameter row (an odd weight offset: the
/// kernel's weight loads may not assume 16-byte alignment), drawn from `seed`.
fn case(cg: ConvGeom, kind: NormKind, shared: bool, seed: u64) -> BlockCase {
    BlockCase::new(cg, kind, shared, PAD_3_1, seed)
}

/// (stats, out) of one eval-mode block forward with a y buffer of `y_len` elements (0: the eval
/// kernel).
fn run<B: Backend>(b: &B, c: &BlockCase, y_len: usize) -> [Vec<f32>; 2] {
    let [_, stats, out, _] = c.forward(b, Mode::Eval, y_len);
    [stats, out]
}

const NAMES: [&str; 2] = ["stats", "out"];

/// Every norm kind: the plane kernel against the bf16 CPU, the same with x packed as bf16 (bit
/// for bit), and measurably off the TF32 CPU (so the tolerance tells the roundings apart).
fn check(cg: ConvGeom, shared: bool, seed: u64) {
    let be = cuda();
    for kind in [NormKind::Instance, NormKind::Batch, NormKind::None] {
        let c = case(cg, kind, shared, seed);
        assert_eq!(
            be.conv_out_len_eval(&cg, &c.ng),
            0,
            "{cg:?}: the plane kernel should hold these planes"
        );
        let got = run(&be, &c, 0);
        let want = run(&cpu(GemmPrecision::Bf16), &c, y_len(&cg));
        let tag = format!("{kind:?} shared={shared} {cg:?}");
        for i in 0..2 {
            let tol = PLANE_NORMED_ATOL_OF_MAX * max_abs(&want[i]).max(1e-6);
            let what = format!("plane kernel vs bf16 CPU {} {tag}", NAMES[i]);
            assert_close(&what, &got[i], &want[i], tol, 0.0);
        }
        // x as bf16 activations: the kernel rounds fp32 x to the same bf16 values, so the
        // results must be identical.
        let packed_x = BlockCase {
            x: pack_bf16(&c.x),
            ..c.clone()
        };
        let packed = run(&be, &packed_x, 0);
        for i in 0..2 {
            let what = format!("plane kernel, x bf16 vs x fp32, {} {tag}", NAMES[i]);
            assert_close(&what, &packed[i], &got[i], 0.0, 0.0);
        }
        let off = run(&cpu(GemmPrecision::Tf32), &c, y_len(&cg));
        let d = max_diff(&got[1], &off[1]);
        assert!(
            d > 2.0 * PLANE_NORMED_ATOL_OF_MAX * max_abs(&off[1]),
            "{tag}: the plane output is within {d} of the TF32 CPU: not bf16 rounding?"
        );
    }
}

/// 16×16 planes (layer 2 of ConvNet-3 at 32 px: one image per block) with 128 output channels,
/// 2 students, an odd batch of 3, 32 input channels (two 16-channel weight blocks: the staging
/// pipeline's both buffers).
#[test]
fn plane16_matches_the_cpu() {
    let cg = ConvGeom {
        students: 2,
        batch: 3,
        cin: 32,
        cout: 128,
        h: 16,
        w: 16,
        pad: 1,
    };
    check(cg, false, 11);
}

/// 8×8 planes (layer 3: four images per block) with a batch of 5 (the second block holds one
/// real image and three of zeros), cout = 40 (columns past it masked), three students, 48 input
/// channels (three weight blocks: the buffers alternate twice).
#[test]
fn plane8_odd_batch_matches_the_cpu() {
    let cg = ConvGeom {
        students: 3,
        batch: 5,
        cin: 48,
        cout: 40,
        h: 8,
        w: 8,
        pad: 1,
    };
    check(cg, false, 12);
}

/// 8×16 planes (128 rows: two warps per image, two images per block), a shared input and
/// cout = 136 (two column blocks, the second 8 wide).
#[test]
fn plane8x16_shared_input_matches_the_cpu() {
    let cg = ConvGeom {
        students: 2,
        batch: 3,
        cin: 16,
        cout: 136,
        h: 8,
        w: 16,
        pad: 1,
    };
    check(cg, true, 13);
}

/// The kernel choice: TF32 test passes, input channels not a multiple of 16, planes of other
/// row counts (4×4: 16 rows) and pad 0 keep the stored-y forward.
#[test]
fn other_planes_keep_the_stored_y() {
    let base = ConvGeom {
        students: 1,
        batch: 2,
        cin: 16,
        cout: 8,
        h: 16,
        w: 16,
        pad: 1,
    };
    let tf32 = cuda().with_test_precision(TestPrecision::Tf32);
    let be = cuda();
    let c = case(base, NormKind::Instance, false, 5);
    assert_eq!(be.conv_out_len_eval(&base, &c.ng), 0);
    assert_eq!(tf32.conv_out_len_eval(&base, &c.ng), y_len(&base));
    for cg in [
        ConvGeom { cin: 24, ..base },
        ConvGeom { h: 4, w: 4, ..base },
        ConvGeom {
            h: 18,
            w: 18,
            pad: 0,
            ..base
        },
    ] {
        let c = case(cg, NormKind::Instance, false, 5);
        assert_eq!(be.conv_out_len_eval(&cg, &c.ng), y_len(&cg), "{cg:?}");
    }
}

/// Whole eval forwards of ConvNet-3 at 32 px (instance norm and batch norm, width 16): block 1
/// runs the direct kernel, blocks 2 (16×16) and 3 (8×8) this one; CUDA logits against the bf16
/// CPU, on a shared chunk and on per-student images.
#[test]
fn convnet3_eval_forward_matches_the_cpu() {
    for (name, seed) in [("ConvNet-3-W16", 21), ("ConvNet-3-W16-BN", 22)] {
        let spec = ConvNetSpec::from_name(name, 3, 32, 4).unwrap();
        let net = ConvNet::new(spec);
        let (s, b) = (2, 3);
        let mut r = Rng(seed);
        let shared_x = r.vec(b * 3 * 32 * 32, -1.0, 1.0); // (B, 3, 32, 32)
        let own_x = r.vec(s * b * 3 * 32 * 32, -1.0, 1.0); // (S, B, 3, 32, 32)
        let params = r.vec(s * net.param_len(), -0.3, 0.3); // (S, P)
        let mut running = r.vec(s * net.buffer_len(), 0.2, 1.0); // (S, R): var > 0
        if net.buffer_len() == 0 {
            running.clear();
        }
        let be = cuda();
        for shared in [true, false] {
            let x = if shared { &shared_x } else { &own_x };
            let got = forward(&be, &net, s, b, x, shared, &params, &running);
            let cpu = cpu(GemmPrecision::Bf16);
            let want = forward(&cpu, &net, s, b, x, shared, &params, &running);
            let tol = PLANE_LOGITS_ATOL_OF_MAX * max_abs(&want);
            let what = format!("{name} bf16 shared={shared} eval logits");
            assert_close(&what, &got, &want, tol, 0.0);
        }
    }
}
