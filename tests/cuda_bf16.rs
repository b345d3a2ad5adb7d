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
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::{CudaBackend, TestPrecision};
use ddr_fast::backend::{Backend, ConvGeom, Mode, NormGeom, NormKind, ParamAt};
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

/// SplitMix64: reproducible inputs without a dependency.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        lo + (hi - lo) * ((z >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// One block inside a parameter row, and its inputs; x is (S, B, cin, h, w), or one (B, cin, h, w)
/// copy when `shared`.
struct Case {
    cg: ConvGeom,
    ng: NormGeom,
    conv_at: ParamAt,
    norm_at: ParamAt,
    running_at: ParamAt,
    x: Vec<f32>,
    shared: bool,
    params: Vec<f32>,
    running: Vec<f32>,
}

fn case(cg: ConvGeom, kind: NormKind, shared: bool, seed: u64) -> Case {
    let mut r = Rng(seed);
    let (w_len, c) = (cg.cout * cg.cin * 9, cg.cout);
    let conv_at = ParamAt {
        weight: 5,
        bias: 5 + w_len,
        row: 5 + w_len + 3 * c + 2,
    };
    let norm_at = ParamAt {
        weight: conv_at.bias + c,
        bias: conv_at.bias + 2 * c,
        row: conv_at.row,
    };
    let running_at = ParamAt {
        weight: 0,
        bias: c,
        row: 2 * c,
    };
    let bound = 1.0 / ((cg.cin * 9) as f32).sqrt();
    let mut params = r.vec(cg.students * conv_at.row, -bound, bound);
    for s in 0..cg.students {
        for ch in 0..c {
            params[s * conv_at.row + norm_at.weight + ch] += 1.0; // γ near 1
        }
    }
    let mut running = r.vec(cg.students * 2 * c, -0.2, 0.2);
    for s in 0..cg.students {
        for ch in 0..c {
            running[s * 2 * c + c + ch] = r.uniform(0.2, 1.0); // a variance is positive
        }
    }
    let copies = if shared { 1 } else { cg.students };
    Case {
        x: r.vec(copies * cg.batch * cg.cin * cg.h * cg.w, -1.0, 1.0),
        ng: NormGeom {
            students: cg.students,
            batch: cg.batch,
            c,
            h: cg.out_h(),
            w: cg.out_w(),
            kind,
            eps: 1e-5,
            momentum: 0.1,
        },
        cg,
        conv_at,
        norm_at,
        running_at,
        shared,
        params,
        running,
    }
}

/// (y, stats, out) of one eval-mode block forward.
fn run<B: Backend>(b: &B, c: &Case) -> [Vec<f32>; 3] {
    let (cg, ng) = (&c.cg, &c.ng);
    let stats_len = match ng.kind {
        NormKind::Instance => ng.students * ng.batch * ng.c * 2,
        NormKind::Batch => ng.students * ng.c * 2,
        NormKind::None => 0,
    };
    let xb = b.upload(&c.x).unwrap();
    let pb = b.upload(&c.params).unwrap();
    let mut rb = b.upload(&c.running).unwrap();
    let mut y = b
        .alloc::<f32>(cg.students * cg.batch * cg.cout * cg.out_h() * cg.out_w())
        .unwrap();
    let mut st = b.alloc::<f32>(stats_len).unwrap();
    let mut out = b
        .alloc::<f32>(ng.students * ng.batch * ng.c * (ng.h / 2) * (ng.w / 2))
        .unwrap();
    let mut scratch = b.alloc::<f32>(b.conv_norm_scratch_len(cg)).unwrap();
    b.conv_norm_relu_pool_forward(
        cg,
        ng,
        Mode::Eval,
        &xb,
        c.shared,
        &pb,
        c.conv_at,
        c.norm_at,
        &mut rb,
        c.running_at,
        &mut y,
        &mut st,
        &mut scratch,
        &mut out,
    )
    .unwrap();
    [
        b.download(&y).unwrap(),
        b.download(&st).unwrap(),
        b.download(&out).unwrap(),
    ]
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

/// A shared input (a test chunk): one wide GEMM, N = S·cout = 24 columns of three students in one
/// 128-wide tile, so the epilogue walks three students' channel ranges inside one block.
#[test]
fn bf16_wide_first_layer_matches_the_bf16_cpu() {
    let cg = ConvGeom {
        students: 3,
        batch: 2,
        cin: 3,
        cout: 8,
        h: 8,
        w: 8,
        pad: 1,
    };
    check(cg, true, 4);
}

/// TF32 test passes: the wide first layer (cuda/conv_bf16.cu, conv_gemm.cuh's TF32 main loop over
/// N = S·cout) equals one GEMM per student over S copies (cuda/conv.cu) bit for bit: the same main
/// loop, tile and k order compute every output.
#[test]
fn tf32_wide_first_layer_equals_one_gemm_per_student() {
    let be = cuda().with_test_precision(TestPrecision::Tf32);
    let cg = ConvGeom {
        students: 3,
        batch: 2,
        cin: 3,
        cout: 8,
        h: 8,
        w: 8,
        pad: 1,
    };
    for kind in [NormKind::Instance, NormKind::Batch, NormKind::None] {
        let wide = case(cg, kind, true, 5);
        let copies: Vec<f32> = (0..cg.students)
            .flat_map(|_| wide.x.iter().copied())
            .collect();
        let per_student = Case {
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
    let got = forward(
        &cuda().with_test_precision(TestPrecision::Bf16),
        &net,
        s,
        b,
        &x,
        &params,
    );
    let cpu = CpuBackend::new().with_test_precision(GemmPrecision::Bf16);
    let want = forward(&cpu, &net, s, b, &x, &params);
    let tol = BF16_LOGITS_ATOL_OF_MAX * max_abs(&want);
    assert_close("bf16 ConvNet test forward logits", &got, &want, tol, 0.0);
}

fn forward<B: Backend>(
    be: &B,
    net: &ConvNet,
    s: usize,
    b: usize,
    x: &[f32],
    params: &[f32],
) -> Vec<f32> {
    let mut ws = net.workspace(be, s, b, false).unwrap();
    let xb = be.upload(x).unwrap();
    let pb = be.upload(params).unwrap();
    let mut running = be.alloc::<f32>(0).unwrap();
    net.forward_shared_input(be, &mut ws, &xb, &pb, &mut running, Mode::Eval)
        .unwrap();
    be.download(ws.logits()).unwrap()
}
