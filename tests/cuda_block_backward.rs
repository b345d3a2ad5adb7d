//! One ConvNet block's backward (`Backend::conv_norm_relu_pool_backward`: norm → ReLU → pool
//! backward, then the conv backward) on the CUDA backend, where one kernel per (student, channel)
//! writes dy, the norm's γ and β gradients and the conv bias gradient (Σ dy), against (1) the
//! same backend's separate ops (`norm_relu_pool_backward` then `conv3x3_backward`, whose bias
//! kernel reads dy back) and (2) the CPU reference, which composes those two ops. Instance norm,
//! batch norm and no norm; planes that fit one block's threads and planes larger than them; more
//! (student, channel) pairs than the emulator's 16 blocks, so blocks loop over pairs.
//! Runs on a real GPU when one can be opened, else on the emulated device.
//!
//! `cargo test --release --test cuda_block_backward`

use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::{ConvPrecision, CudaBackend};
use ddr_fast::backend::{Backend, ConvGeom, Mode, NormGeom, NormKind, ParamAt};

// ---- tolerances ------------------------------------------------------------------------------
/// CUDA vs the CPU (as tests/cuda_parity.rs): dy is a difference of near-equal terms scaled by
/// 1/std, so its absolute error follows the largest term, not dy itself.
const NORM_BWD_ATOL: f32 = 5e-4;
/// Sums over a whole batch and image (weight, γ and β gradients, dx over cout·9 terms): f32 sums
/// of a few hundred to a thousand terms in another order, ~n·2⁻²⁴·Σ|terms| (cuda_parity's SUM).
const SUM_ATOL: f32 = 2e-4;
const SUM_RTOL: f32 = 1e-3;
/// A marker for gradient entries no op of the block writes: they must come back unchanged.
const UNTOUCHED: f32 = 7.0;

fn cuda() -> CudaBackend {
    let (b, why) = CudaBackend::real_or_emulated(0);
    if let Some(e) = why {
        eprintln!("cuda_block_backward: running under EMULATION (no usable GPU: {e})");
    }
    b.with_conv_precision(ConvPrecision::Tf32x3)
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

/// One block inside a longer parameter row (entries before, between and after its parameters
/// that nothing may write), its forward's saved tensors and a pooled gradient.
struct Case {
    cg: ConvGeom,
    ng: NormGeom,
    conv_at: ParamAt,
    norm_at: ParamAt,
    x: Vec<f32>,
    params: Vec<f32>,
    y: Vec<f32>,
    stats: Vec<f32>,
    dout: Vec<f32>,
}

fn case(cg: ConvGeom, kind: NormKind, seed: u64) -> Case {
    let mut r = Rng(seed);
    let (w_len, c) = (cg.cout * cg.cin * 9, cg.cout);
    let conv_at = ParamAt {
        weight: 3,
        bias: 3 + w_len,
        row: 3 + w_len + 3 * c + 1,
    };
    let norm_at = ParamAt {
        weight: conv_at.bias + c,
        bias: conv_at.bias + 2 * c,
        row: conv_at.row,
    };
    let bound = 1.0 / ((cg.cin * 9) as f32).sqrt();
    let mut params = r.vec(cg.students * conv_at.row, -bound, bound);
    for s in 0..cg.students {
        for ch in 0..c {
            params[s * conv_at.row + norm_at.weight + ch] += 1.0; // γ near 1
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
    let x = r.vec(cg.students * cg.batch * cg.cin * cg.h * cg.w, -1.0, 1.0);
    // y and the statistics as the CPU reference's train-mode forward saves them.
    let cpu = CpuBackend::reference();
    let stats_len = match kind {
        NormKind::Instance => ng.students * ng.batch * c * 2,
        NormKind::Batch => ng.students * c * 2,
        NormKind::None => 0,
    };
    let y_len = cg.students * cg.batch * c * ng.h * ng.w;
    let pooled = cg.students * cg.batch * c * (ng.h / 2) * (ng.w / 2);
    let (xb, pb) = (cpu.upload(&x).unwrap(), cpu.upload(&params).unwrap());
    let mut running = cpu.upload(&vec![0.5f32; cg.students * 2 * c]).unwrap();
    let (mut y, mut st) = (cpu.alloc(y_len).unwrap(), cpu.alloc(stats_len).unwrap());
    let (mut scratch, mut out) = (cpu.alloc(0).unwrap(), cpu.alloc(pooled).unwrap());
    let running_at = ParamAt {
        weight: 0,
        bias: c,
        row: 2 * c,
    };
    cpu.conv_norm_relu_pool_forward(
        &cg,
        &ng,
        Mode::Train,
        &xb,
        false,
        &pb,
        conv_at,
        norm_at,
        &mut running,
        running_at,
        &mut y,
        &mut st,
        &mut scratch,
        &mut out,
    )
    .unwrap();
    Case {
        cg,
        ng,
        conv_at,
        norm_at,
        dout: r.vec(pooled, -1.0, 1.0),
        y: cpu.download(&y).unwrap(),
        stats: cpu.download(&st).unwrap(),
        x,
        params,
    }
}

/// (dy, dx, grads) of the block backward: through `conv_norm_relu_pool_backward` (`fused`) or
/// the two separate ops.
fn run<B: Backend>(b: &B, c: &Case, fused: bool) -> [Vec<f32>; 3] {
    let (xb, pb) = (b.upload(&c.x).unwrap(), b.upload(&c.params).unwrap());
    let (yb, sb, db) = (
        b.upload(&c.y).unwrap(),
        b.upload(&c.stats).unwrap(),
        b.upload(&c.dout).unwrap(),
    );
    let mut dy = b.alloc::<f32>(c.y.len()).unwrap();
    let mut dx = b.alloc::<f32>(c.x.len()).unwrap();
    let mut grads = b.upload(&vec![UNTOUCHED; c.params.len()]).unwrap();
    if fused {
        b.conv_norm_relu_pool_backward(
            &c.cg,
            &c.ng,
            &xb,
            &pb,
            c.conv_at,
            c.norm_at,
            &yb,
            &sb,
            &db,
            &mut dy,
            Some(&mut dx),
            &mut grads,
        )
        .unwrap();
    } else {
        b.norm_relu_pool_backward(&c.ng, &yb, &pb, c.norm_at, &sb, &db, &mut dy, &mut grads)
            .unwrap();
        b.conv3x3_backward(&c.cg, &xb, &pb, c.conv_at, &dy, Some(&mut dx), &mut grads)
            .unwrap();
    }
    [
        b.download(&dy).unwrap(),
        b.download(&dx).unwrap(),
        b.download(&grads).unwrap(),
    ]
}

fn check(cg: ConvGeom, seed: u64) {
    for kind in [NormKind::Instance, NormKind::Batch, NormKind::None] {
        let c = case(cg, kind, seed);
        let tag = format!("{kind:?} {cg:?}");
        let want = run(&CpuBackend::reference(), &c, false);
        let be = cuda();
        let got = run(&be, &c, true);
        let apart = run(&be, &c, false);
        // The conv bias entries of every student's row: summed in another order by the fused
        // kernel (per thread over its elements, then over the block) than by the bias kernel.
        let row = c.conv_at.row;
        let is_bias = |i: usize| (c.conv_at.bias..c.conv_at.bias + c.cg.cout).contains(&(i % row));
        // Two f32 sums of the same n terms in different orders: each within n·2⁻²⁴·Σ|terms| of
        // the exact sum, so apart by at most n·2⁻²³·Σ|dy| (Σ|dy| of a channel at its largest).
        let n = c.cg.batch * c.ng.h * c.ng.w;
        let plane = c.ng.h * c.ng.w;
        let mut abs_sum = vec![0f32; c.cg.students * c.cg.cout];
        for (i, v) in got[0].iter().enumerate() {
            let (s, ch) = (i / plane / c.cg.cout / c.cg.batch, (i / plane) % c.cg.cout);
            abs_sum[s * c.cg.cout + ch] += v.abs();
        }
        let bias_atol = n as f32 * f32::EPSILON * abs_sum.iter().fold(0f32, |m, &v| m.max(v));
        // Same device: dy and dx from the same arithmetic, bit-exact; the gradients too except
        // the conv bias.
        assert_close(
            &format!("dy fused vs separate CUDA {tag}"),
            &got[0],
            &apart[0],
            0.0,
            0.0,
        );
        assert_close(
            &format!("dx fused vs separate CUDA {tag}"),
            &got[1],
            &apart[1],
            0.0,
            0.0,
        );
        let (bias_got, rest_got): (Vec<(usize, f32)>, Vec<(usize, f32)>) = got[2]
            .iter()
            .copied()
            .enumerate()
            .partition(|(i, _)| is_bias(*i));
        let (bias_apart, rest_apart): (Vec<(usize, f32)>, Vec<(usize, f32)>) = apart[2]
            .iter()
            .copied()
            .enumerate()
            .partition(|(i, _)| is_bias(*i));
        let vals = |v: &[(usize, f32)]| v.iter().map(|p| p.1).collect::<Vec<f32>>();
        assert_close(
            &format!("grads except conv bias, fused vs separate CUDA {tag}"),
            &vals(&rest_got),
            &vals(&rest_apart),
            0.0,
            0.0,
        );
        assert_close(
            &format!("conv bias grad, fused vs separate CUDA {tag}"),
            &vals(&bias_got),
            &vals(&bias_apart),
            bias_atol,
            0.0,
        );
        // Against the CPU reference (3xTF32 conv, near fp32).
        assert_close(
            &format!("dy CUDA vs CPU {tag}"),
            &got[0],
            &want[0],
            NORM_BWD_ATOL,
            SUM_RTOL,
        );
        assert_close(
            &format!("dx CUDA vs CPU {tag}"),
            &got[1],
            &want[1],
            SUM_ATOL,
            SUM_RTOL,
        );
        let (bias_want, rest_want): (Vec<(usize, f32)>, Vec<(usize, f32)>) = want[2]
            .iter()
            .copied()
            .enumerate()
            .partition(|(i, _)| is_bias(*i));
        assert_close(
            &format!("grads except conv bias, CUDA vs CPU {tag}"),
            &vals(&rest_got),
            &vals(&rest_want),
            SUM_ATOL,
            SUM_RTOL,
        );
        // Σ dy over n elements each within NORM_BWD_ATOL of the CPU's (no norm: dy = dz, the
        // same products on both), plus the summation order.
        let dy_err = if kind == NormKind::None {
            0.0
        } else {
            NORM_BWD_ATOL
        };
        let atol = n as f32 * dy_err + bias_atol;
        assert_close(
            &format!("conv bias grad, CUDA vs CPU {tag}"),
            &vals(&bias_got),
            &vals(&bias_want),
            atol,
            0.0,
        );
        // No norm: Σ dy is the pooled gradient spread over the ReLU's open inputs, far from zero,
        // so the bias checks above compare real sums, not two round-off residues.
        if kind == NormKind::None {
            let largest = vals(&bias_want).iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                largest > 10.0 * atol,
                "{tag}: bias gradients up to {largest}, too small against {atol} to test"
            );
        }
        let untouched = |g: &[f32]| g.iter().filter(|&&v| v == UNTOUCHED).count();
        assert_eq!(
            untouched(&got[2]),
            untouched(&want[2]),
            "{tag}: gradient entries left unwritten"
        );
    }
}

/// 8×8 conv outputs (64 elements: half a block of threads idle); 3 students × 8 channels = 24
/// (student, channel) pairs, more than the emulator's 16 blocks.
#[test]
fn block_backward_small_planes() {
    check(
        ConvGeom {
            students: 3,
            batch: 3,
            cin: 4,
            cout: 8,
            h: 8,
            w: 8,
            pad: 1,
        },
        1,
    );
}

/// 12×12 conv outputs from a 14×14 input without padding: 144 elements per plane, more than a
/// block's threads, so each thread walks several per plane; batch 5.
#[test]
fn block_backward_planes_larger_than_a_block() {
    check(
        ConvGeom {
            students: 2,
            batch: 5,
            cin: 3,
            cout: 6,
            h: 14,
            w: 14,
            pad: 0,
        },
        2,
    );
}
