//! The test-pass (eval-mode) conv forwards of the CUDA backend in bf16 (cuda/conv_bf16.cu:
//! m16n8k16, fp32 accumulation, operands rounded to nearest even) against the CPU backend rounding
//! its GEMM operands the same way (`CpuBackend::with_test_precision(GemmPrecision::Bf16)`), and the
//! shared-input first layer as ONE GEMM over N = S·cout ("wide") against one GEMM per student.
//! Each check also fails on purpose against the unrounded (fp32) and the TF32-rounded CPU, so the
//! tolerances below really tell bf16 rounding apart from the others.
//! Runs on a real GPU when one can be opened, else on the emulated device (tiny shapes).
//!
//! `cargo test --release --test cuda_bf16`

mod common;

use common::assert_close;
use common::block::{convnet_eval_forward, max_abs, max_diff, BlockCase, Rng, RowPad};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::{CudaBackend, TestPrecision};
use ddr_fast::backend::{Backend, ConvGeom, Mode, NormKind};
use ddr_fast::model::{ConvNet, ConvNetSpec};
use ddr_fast::ops::precision::GemmPrecision;

// ---- tolerances ------------------------------------------------------------------------------
/// bf16 GPU vs bf16-rounded CPU, conv output y: the operands are rounded identically (round to
/// nearest even) and their products are exact in fp32, so only the fp32 summation order differs
/// (K ≤ 108 terms here: ≤ ~K·2⁻²⁴ ≈ 7e-6 of the terms' magnitude). 1e-4 of max|y| holds that
/// with margin, and is still ~40× below what bf16 rounding itself moves y (≈ 2⁻⁸ relative per
/// operand), so an unrounded or TF32-rounded kernel fails it (checked below).
const BF16_Y_ATOL_OF_MAX: f32 = 1e-4;
/// Normalised, pooled outputs and norm statistics: the norm divides y's error by the group's
/// std (≥ max|y| / 4 for these uniform inputs), so 4× the y bound, rounded up.
const BF16_NORMED_ATOL_OF_MAX: f32 = 5e-4;
/// Logits after two bf16 blocks and the fp32 linear head: per-layer errors of the size above,
/// carried through two norms (each ≤ 4×) and the head's sum over the features.
const BF16_LOGITS_ATOL_OF_MAX: f32 = 5e-3;

fn cuda() -> CudaBackend {
    common::cuda_under_test("cuda_bf16")
}

/// The block of `cg` with `kind` norm, its parameters 5 entries into rows that run 2 past them.
fn case(cg: ConvGeom, kind: NormKind, shared: bool, seed: u64) -> BlockCase {
    BlockCase::new(cg, kind, shared, RowPad { lead: 5, tail: 2 }, seed)
}

/// (y, stats, out) of one eval-mode block forward.
fn run<B: Backend>(b: &B, c: &BlockCase) -> [Vec<f32>; 3] {
    let [y, stats, out, _] = c.forward(b, Mode::Eval, c.y_len());
    [y, stats, out]
}

const NAMES: [&str; 3] = ["y", "stats", "out"];

fn tolerance(i: usize, want: &[f32]) -> f32 {
    let of_max = if i == 0 {
        BF16_Y_ATOL_OF_MAX
    } else {
        BF16_NORMED_ATOL_OF_MAX
    };
    of_max * max_abs(want).max(1e-6)
}

/// The CUDA bf16 test precision against the bf16-rounded CPU for every norm kind; and the same
/// kernel output measurably off the fp32 and TF32 CPU (the rounding is really bf16's).
fn check(cg: ConvGeom, shared: bool, seed: u64) {
    let be = cuda().with_test_precision(TestPrecision::Bf16);
    let cpu_bf16 = CpuBackend::new().with_test_precision(GemmPrecision::Bf16);
    for kind in [NormKind::Instance, NormKind::Batch, NormKind::None] {
        let c = case(cg, kind, shared, seed);
        let got = run(&be, &c);
        let want = run(&cpu_bf16, &c);
        for i in 0..3 {
            let what = format!(
                "bf16 CUDA vs bf16 CPU {} {kind:?} shared={shared} {cg:?}",
                NAMES[i]
            );
            assert_close(&what, &got[i], &want[i], tolerance(i, &want[i]), 0.0);
        }
        for other in [GemmPrecision::Fp32, GemmPrecision::Tf32] {
            let off = run(&CpuBackend::new().with_test_precision(other), &c);
            let d = max_diff(&got[0], &off[0]);
            assert!(
                d > 2.0 * tolerance(0, &off[0]),
                "{kind:?} {cg:?}: bf16 y within {d} of the {} CPU: not bf16 rounding?",
                other.name()
            );
        }
    }
}

/// Whole planes per block (8×8, 64 rows), a 32×32 plane as 8 register tiles of one block, and
/// 10×10 planes that divide no tile (the norm pass finishes from the epilogue's partials).
#[test]
fn bf16_block_forward_matches_the_bf16_cpu() {
    for (h, seed) in [(8, 1), (32, 2), (10, 3)] {
        let cg = ConvGeom {
            students: 2,
            batch: 2,
            cin: 5,
            cout: 12,
            h,
            w: h,
            pad: 1,
        };
        check(cg, false, seed);
    }
}

/// Three students' first layer on a shared 8×8 input: N = S·cout = 24 columns.
const WIDE: ConvGeom = ConvGeom {
    students: 3,
    batch: 2,
    cin: 3,
    cout: 8,
    h: 8,
    w: 8,
    pad: 1,
};

/// A shared input (a test chunk): one wide GEMM, N = S·cout = 24 columns of three students in one
/// 128-wide tile, so the epilogue walks three students' channel ranges inside one block.
#[test]
fn bf16_wide_first_layer_matches_the_bf16_cpu() {
    let cg = WIDE;
    check(cg, true, 4);
}

/// TF32 test passes: the wide first layer (cuda/conv_bf16.cu, conv_gemm.cuh's TF32 main loop over
/// N = S·cout) equals one GEMM per student over S copies (cuda/conv.cu) bit for bit: the same main
/// loop, tile and k order compute every output.
#[test]
fn tf32_wide_first_layer_equals_one_gemm_per_student() {
    let be = cuda().with_test_precision(TestPrecision::Tf32);
    let cg = WIDE;
    for kind in [NormKind::Instance, NormKind::Batch, NormKind::None] {
        let wide = case(cg, kind, true, 5);
        let copies: Vec<f32> = (0..cg.students)
            .flat_map(|_| wide.x.iter().copied())
            .collect();
        let per_student = BlockCase {
            x: copies,
            shared: false,
            ..case(cg, kind, true, 5)
        };
        let (a, b) = (run(&be, &wide), run(&be, &per_student));
        for i in 0..3 {
            assert_eq!(a[i], b[i], "TF32 wide vs per student {} {kind:?}", NAMES[i]);
        }
    }
}

/// A whole test forward of a small ConvNet on one shared chunk (`forward_shared_input`, as the
/// trainer's test pass runs it): bf16 CUDA logits against the bf16-rounded CPU.
#[test]
fn convnet_shared_test_forward_matches_the_bf16_cpu() {
    let spec = ConvNetSpec::from_name("ConvNet-2-W8", 3, 8, 4).unwrap();
    let net = ConvNet::new(spec);
    let (s, b) = (3, 4);
    let mut r = Rng(6);
    let x = r.vec(b * 3 * 8 * 8, -1.0, 1.0); // (B, 3, 8, 8)
    let params = r.vec(s * net.param_len(), -0.3, 0.3); // (S, P)
    let be = cuda().with_test_precision(TestPrecision::Bf16);
    let got = convnet_eval_forward(&be, &net, s, b, &x, true, &params, &[]);
    let cpu = CpuBackend::new().with_test_precision(GemmPrecision::Bf16);
    let want = convnet_eval_forward(&cpu, &net, s, b, &x, true, &params, &[]);
    let tol = BF16_LOGITS_ATOL_OF_MAX * max_abs(&want);
    assert_close("bf16 ConvNet test forward logits", &got, &want, tol, 0.0);
}
