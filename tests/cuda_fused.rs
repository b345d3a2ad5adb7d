//! The fused ConvNet block forward (`Backend::conv_norm_relu_pool_forward`: conv → norm → ReLU →
//! 2×2 pool) of the CUDA backend against (1) the CPU reference, which composes
//! `conv3x3_forward` and `norm_relu_pool_forward`, and (2) the CUDA backend's own unfused ops, in
//! train and eval mode, for instance norm, batch norm and no norm, in both conv precisions.
//! Shapes cover each path of the fused kernel: tiles holding whole planes and planes of several
//! register tiles run by one block (the conv kernel finishes the block tail), planes spanning
//! several blocks and blocks spanning several images (the norm pass merges the epilogue's partial
//! statistics), and planes that divide no tile.
//! Runs on a real GPU when one can be opened, else on the emulated device.
//!
//! `cargo test --release --test cuda_fused`

mod common;

use common::assert_close;
use common::block::{max_abs, BlockBufs, BlockCase, PAD_3_1};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::{ConvPrecision, CudaBackend};
use ddr_fast::backend::{Backend, ConvGeom, Mode, NormKind};

// ---- tolerances ------------------------------------------------------------------------------
/// Fused vs unfused on the same device: y comes from the same GEMM code (bit-exact); the norm
/// statistics are merged from per-tile partials instead of per-thread sums, a different f32
/// summation order over ≤ 1,300 values per group: ~n·2⁻²⁴ relative.
const SAME_DEVICE_ATOL: f32 = 2e-5;
const SAME_DEVICE_RTOL: f32 = 2e-4;
/// 3xTF32 vs the CPU's fp32 conv (cuda_parity's SUM tolerances: f32 sums over K = 27 terms and
/// the norm statistics over up to 1,300 values).
const F32X3_ATOL: f32 = 2e-4;
const F32X3_RTOL: f32 = 1e-3;
/// Plain TF32 vs the CPU: y is off by up to ~2e-3 of max|y| (cuda_parity's TF32 bound); the norm
/// divides by the group's std, which for these uniform random inputs is ≥ max|y| / 4, so the
/// normalised, pooled outputs and 1/std carry up to ~8e-3 of their own scale.
const TF32_ATOL_OF_MAX: f32 = 2e-3;
const TF32_NORMED_ATOL_OF_MAX: f32 = 1e-2;
const TF32_NORMED_RTOL: f32 = 1e-2;

fn cuda() -> CudaBackend {
    common::cuda_under_test("cuda_fused")
}

/// The block of `cg` with `kind` norm inside a padded parameter row, drawn from `seed`.
fn case(cg: ConvGeom, kind: NormKind, seed: u64) -> BlockCase {
    BlockCase::new(cg, kind, false, PAD_3_1, seed)
}

/// (y, stats, out, running) of one block forward, fused or as the two unfused ops.
fn run<B: Backend>(b: &B, c: &BlockCase, mode: Mode, fused: bool) -> [Vec<f32>; 4] {
    if fused {
        return c.forward(b, mode, c.y_len());
    }
    let mut bufs = BlockBufs::new(b, c, c.y_len());
    b.conv3x3_forward(&c.cg, &bufs.x, &bufs.params, c.conv_at, &mut bufs.y)
        .unwrap();
    b.norm_relu_pool_forward(
        &c.ng,
        mode,
        &bufs.y,
        &bufs.params,
        c.norm_at,
        &mut bufs.running,
        c.running_at,
        &mut bufs.stats,
        &mut bufs.out,
    )
    .unwrap();
    bufs.download(b)
}

const NAMES: [&str; 4] = ["y", "stats", "out", "running"];

fn check(cg: ConvGeom, seed: u64) {
    for kind in [NormKind::Instance, NormKind::Batch, NormKind::None] {
        let c = case(cg, kind, seed);
        for mode in [Mode::Train, Mode::Eval] {
            let want = run(&CpuBackend::reference(), &c, mode, false);
            for precision in [ConvPrecision::Tf32x3, ConvPrecision::Tf32] {
                let be = cuda().with_conv_precision(precision);
                let got = run(&be, &c, mode, true);
                let unfused = run(&be, &c, mode, false);
                let tag = format!("{kind:?} {mode:?} {precision:?} {cg:?}");
                for (i, name) in NAMES.iter().enumerate() {
                    // Eval-mode batch norm: the unfused CUDA kernel leaves stats unwritten (the
                    // fused path fills them with the running statistics, as the CPU does).
                    if !(i == 1 && kind == NormKind::Batch && mode == Mode::Eval) {
                        let what = format!("fused vs unfused CUDA {name} {tag}");
                        let (a, r) = if i == 0 {
                            (0.0, 0.0) // the same GEMM code: bit-exact
                        } else {
                            (SAME_DEVICE_ATOL, SAME_DEVICE_RTOL)
                        };
                        assert_close(&what, &got[i], &unfused[i], a, r);
                    }
                    let what = format!("fused CUDA vs CPU {name} {tag}");
                    match (precision, i) {
                        (ConvPrecision::Tf32x3, _) => {
                            assert_close(&what, &got[i], &want[i], F32X3_ATOL, F32X3_RTOL)
                        }
                        (ConvPrecision::Tf32, 0) => {
                            let a = TF32_ATOL_OF_MAX * max_abs(&want[0]);
                            assert_close(&what, &got[i], &want[i], a, TF32_ATOL_OF_MAX)
                        }
                        (ConvPrecision::Tf32, _) => {
                            let a = TF32_NORMED_ATOL_OF_MAX * max_abs(&want[i]);
                            assert_close(&what, &got[i], &want[i], a, TF32_NORMED_RTOL)
                        }
                    }
                }
            }
        }
    }
}

/// 8×8 planes: every tile holds whole planes (and whole pooling windows), so instance norm and
/// eval-mode batch norm finish inside the conv kernel; train-mode batch norm merges partials.
#[test]
fn fused_block_whole_planes_in_a_tile() {
    check(
        ConvGeom {
            students: 2,
            batch: 3,
            cin: 3,
            cout: 5,
            h: 8,
            w: 8,
            pad: 1,
        },
        11,
    );
}

/// 32×32 planes (1,024 rows): one block runs 4 TF32 (8 3xTF32) register tiles back to back to
/// hold a whole plane, so instance norm still finishes inside the conv kernel; train-mode batch
/// norm merges the partials of many tiles.
#[test]
fn fused_block_planes_of_several_register_tiles() {
    check(
        ConvGeom {
            students: 1,
            batch: 2,
            cin: 2,
            cout: 3,
            h: 32,
            w: 32,
            pad: 1,
        },
        16,
    );
}

/// 18×18 planes (324 rows): planes span tiles and tiles span images, so every kind goes through
/// the partial statistics and the norm pass.
#[test]
fn fused_block_planes_across_tiles() {
    check(
        ConvGeom {
            students: 1,
            batch: 2,
            cin: 2,
            cout: 3,
            h: 18,
            w: 18,
            pad: 1,
        },
        12,
    );
}

/// 10×10 planes (100 rows): a tile holds neither whole planes nor whole pooling windows in
/// step with the planes, so every kind — eval-mode batch norm and no norm too — goes through the
/// norm pass after the fused conv.
#[test]
fn fused_block_planes_not_dividing_a_tile() {
    check(
        ConvGeom {
            students: 2,
            batch: 3,
            cin: 3,
            cout: 4,
            h: 10,
            w: 10,
            pad: 1,
        },
        13,
    );
}

/// A scratch buffer shorter than `conv_norm_scratch_len` is an error naming it, not an overrun.
#[test]
fn short_scratch_is_refused() {
    let c = case(
        ConvGeom {
            students: 1,
            batch: 1,
            cin: 1,
            cout: 2,
            h: 4,
            w: 4,
            pad: 1,
        },
        NormKind::Instance,
        14,
    );
    let be = cuda();
    let mut bufs = BlockBufs::new(&be, &c, c.y_len());
    bufs.scratch = be.alloc::<f32>(1).unwrap();
    let err = bufs.forward(&be, &c, Mode::Train).unwrap_err();
    assert!(err.to_string().contains("scratch"), "{err}");
}

/// A test pass's first block: one copy of the images read by every student, against the CPU
/// reference (the forward on S broadcast copies).
#[test]
fn fused_block_with_a_shared_input() {
    let cg = ConvGeom {
        students: 3,
        batch: 2,
        cin: 3,
        cout: 4,
        h: 8,
        w: 8,
        pad: 1,
    };
    let c = case(cg, NormKind::Instance, 15);
    let one = &c.x[..cg.batch * cg.cin * cg.h * cg.w]; // (B, cin, h, w)
    let copies: Vec<f32> = (0..cg.students).flat_map(|_| one.iter().copied()).collect();
    let want = run(
        &CpuBackend::reference(),
        &BlockCase {
            x: copies,
            ..case(cg, NormKind::Instance, 15)
        },
        Mode::Eval,
        false,
    );
    let shared = BlockCase {
        x: one.to_vec(),
        shared: true,
        ..c.clone()
    };
    let be = cuda().with_conv_precision(ConvPrecision::Tf32x3);
    let got = shared.forward(&be, Mode::Eval, shared.y_len());
    for (i, name) in ["y", "stats", "out"].iter().enumerate() {
        let what = format!("shared-input fused block {name}");
        assert_close(&what, &got[i], &want[i], F32X3_ATOL, F32X3_RTOL);
    }
}
