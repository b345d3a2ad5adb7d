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

use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::{ConvPrecision, CudaBackend};
use ddr_fast::backend::{Backend, ConvGeom, Mode, NormGeom, NormKind, ParamAt};

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
    let (b, why) = CudaBackend::real_or_emulated(0);
    if let Some(e) = why {
        eprintln!("cuda_fused: running under EMULATION (no usable GPU: {e})");
    }
    b
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

/// Pass when |got − want| ≤ atol + rtol·|want| everywhere; on failure name the worst index.
fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f32)> = None;
    let mut bad = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if excess.is_nan() || excess > 0.0 {
            bad += 1;
            let e = if excess.is_nan() {
                f32::INFINITY
            } else {
                excess
            };
            if worst.is_none_or(|(_, x)| e > x) {
                worst = Some((i, e));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: {bad} of {} out of tolerance (atol {atol}, rtol {rtol}); worst at {i}: got {} want {}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// One block's layout inside a longer parameter row, and its inputs.
struct Case {
    cg: ConvGeom,
    ng: NormGeom,
    conv_at: ParamAt,
    norm_at: ParamAt,
    running_at: ParamAt,
    x: Vec<f32>,
    params: Vec<f32>,
    running: Vec<f32>,
}

fn case(cg: ConvGeom, kind: NormKind, seed: u64) -> Case {
    let mut r = Rng(seed);
    let (w_len, c) = (cg.cout * cg.cin * 9, cg.cout);
    let conv_at = ParamAt {
        weight: 3,
        bias: 3 + w_len,
        row: 3 + w_len + c + 2 * c + 1,
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
    let ng = NormGeom {
        students: cg.students,
        batch: cg.batch,
        c,
        h: cg.out_h(),
        w: cg.out_w(),
        kind,
        eps: 1e-5,
        momentum: 0.1,
    };
    Case {
        x: r.vec(cg.students * cg.batch * cg.cin * cg.h * cg.w, -1.0, 1.0),
        cg,
        ng,
        conv_at,
        norm_at,
        running_at,
        params,
        running,
    }
}

/// (y, stats, out, running) of one block forward, fused or as the two unfused ops.
fn run<B: Backend>(b: &B, c: &Case, mode: Mode, fused: bool) -> [Vec<f32>; 4] {
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
    if fused {
        let mut scratch = b.alloc::<f32>(b.conv_norm_scratch_len(cg)).unwrap();
        b.conv_norm_relu_pool_forward(
            cg,
            ng,
            mode,
            &xb,
            false,
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
    } else {
        b.conv3x3_forward(cg, &xb, &pb, c.conv_at, &mut y).unwrap();
        b.norm_relu_pool_forward(
            ng,
            mode,
            &y,
            &pb,
            c.norm_at,
            &mut rb,
            c.running_at,
            &mut st,
            &mut out,
        )
        .unwrap();
    }
    [
        b.download(&y).unwrap(),
        b.download(&st).unwrap(),
        b.download(&out).unwrap(),
        b.download(&rb).unwrap(),
    ]
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
    let xb = be.upload(&c.x).unwrap();
    let pb = be.upload(&c.params).unwrap();
    let mut rb = be.upload(&c.running).unwrap();
    let mut y = be.alloc::<f32>(2 * 16).unwrap();
    let mut st = be.alloc::<f32>(4).unwrap();
    let mut out = be.alloc::<f32>(2 * 4).unwrap();
    let mut scratch = be.alloc::<f32>(1).unwrap();
    let err = be
        .conv_norm_relu_pool_forward(
            &c.cg,
            &c.ng,
            Mode::Train,
            &xb,
            false,
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
        .unwrap_err();
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
        &Case {
            x: copies,
            ..case(cg, NormKind::Instance, 15)
        },
        Mode::Eval,
        false,
    );
    let be = cuda().with_conv_precision(ConvPrecision::Tf32x3);
    let xb = be.upload(one).unwrap();
    let pb = be.upload(&c.params).unwrap();
    let mut rb = be.upload(&c.running).unwrap();
    let mut y = be.alloc::<f32>(want[0].len()).unwrap();
    let mut st = be.alloc::<f32>(want[1].len()).unwrap();
    let mut out = be.alloc::<f32>(want[2].len()).unwrap();
    let mut scratch = be.alloc::<f32>(be.conv_norm_scratch_len(&cg)).unwrap();
    be.conv_norm_relu_pool_forward(
        &cg,
        &c.ng,
        Mode::Eval,
        &xb,
        true,
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
    let got = [&y, &st, &out].map(|b| be.download(b).unwrap());
    for (i, name) in ["y", "stats", "out"].iter().enumerate() {
        let what = format!("shared-input fused block {name}");
        assert_close(&what, &got[i], &want[i], F32X3_ATOL, F32X3_RTOL);
    }
}
