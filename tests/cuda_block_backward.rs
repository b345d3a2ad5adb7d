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

mod common;

use common::assert_close;
use common::block::{BlockCase, Rng, PAD_3_1};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::{ConvPrecision, CudaBackend};
use ddr_fast::backend::{Backend, ConvGeom, Mode, NormKind};

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
    common::cuda_under_test("cuda_block_backward").with_conv_precision(ConvPrecision::Tf32x3)
}

/// One block inside a longer parameter row (entries before, between and after its parameters
/// that nothing may write), its forward's saved tensors and a pooled gradient.
struct Case {
    block: BlockCase,
    /// (S, B, cout, oh, ow): the conv output as the CPU reference's train-mode forward saves it.
    y: Vec<f32>,
    /// (S, B, cout, 2) or (S, cout, 2): that forward's norm statistics; empty without a norm.
    stats: Vec<f32>,
    /// (S, B, cout, oh/2, ow/2): the gradient of the pooled output.
    dout: Vec<f32>,
}

/// Drawn from `seed` in this order: the parameters, x, the pooled gradient.
fn case(cg: ConvGeom, kind: NormKind, seed: u64) -> Case {
    let mut r = Rng(seed);
    let mut block = BlockCase::params_only(cg, kind, PAD_3_1, &mut r);
    block.x = r.vec(cg.students * cg.batch * cg.cin * cg.h * cg.w, -1.0, 1.0);
    // Running statistics the train-mode forward updates; the backward never reads them.
    block.running = vec![0.5f32; cg.students * 2 * cg.cout];
    let [y, stats, ..] = block.forward(&CpuBackend::reference(), Mode::Train, block.y_len());
    Case {
        dout: r.vec(block.pooled_len(), -1.0, 1.0),
        y,
        stats,
        block,
    }
}

/// (bias, rest): the entries of `g` at the conv bias of every student's row (as `is_bias` says),
/// and all the others, each in order.
fn split_bias(g: &[f32], is_bias: impl Fn(usize) -> bool) -> (Vec<f32>, Vec<f32>) {
    let (mut bias, mut rest) = (Vec::new(), Vec::new());
    for (i, &v) in g.iter().enumerate() {
        if is_bias(i) {
            bias.push(v);
        } else {
            rest.push(v);
        }
    }
    (bias, rest)
}

/// (dy, dx, grads) of the block backward: through `conv_norm_relu_pool_backward` (`fused`) or
/// the two separate ops.
fn run<B: Backend>(b: &B, c: &Case, fused: bool) -> [Vec<f32>; 3] {
    let k = &c.block;
    let (xb, pb) = (b.upload(&k.x).unwrap(), b.upload(&k.params).unwrap());
    let (yb, sb, db) = (
        b.upload(&c.y).unwrap(),
        b.upload(&c.stats).unwrap(),
        b.upload(&c.dout).unwrap(),
    );
    let mut dy = b.alloc::<f32>(c.y.len()).unwrap();
    let mut dx = b.alloc::<f32>(k.x.len()).unwrap();
    let mut grads = b.upload(&vec![UNTOUCHED; k.params.len()]).unwrap();
    if fused {
        b.conv_norm_relu_pool_backward(
            &k.cg,
            &k.ng,
            &xb,
            &pb,
            k.conv_at,
            k.norm_at,
            &yb,
            &sb,
            &db,
            &mut dy,
            Some(&mut dx),
            &mut grads,
        )
        .unwrap();
    } else {
        b.norm_relu_pool_backward(&k.ng, &yb, &pb, k.norm_at, &sb, &db, &mut dy, &mut grads)
            .unwrap();
        b.conv3x3_backward(&k.cg, &xb, &pb, k.conv_at, &dy, Some(&mut dx), &mut grads)
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
        let (ng, conv_at) = (&c.block.ng, c.block.conv_at);
        let tag = format!("{kind:?} {cg:?}");
        let want = run(&CpuBackend::reference(), &c, false);
        let be = cuda();
        let got = run(&be, &c, true);
        let apart = run(&be, &c, false);
        // The conv bias entries of every student's row: summed in another order by the fused
        // kernel (per thread over its elements, then over the block) than by the bias kernel.
        let row = conv_at.row;
        let is_bias = |i: usize| (conv_at.bias..conv_at.bias + cg.cout).contains(&(i % row));
        // Two f32 sums of the same n terms in different orders: each within n·2⁻²⁴·Σ|terms| of
        // the exact sum, so apart by at most n·2⁻²³·Σ|dy| (Σ|dy| of a channel at its largest).
        let n = cg.batch * ng.h * ng.w;
        let plane = ng.h * ng.w;
        let mut abs_sum = vec![0f32; cg.students * cg.cout];
        for (i, v) in got[0].iter().enumerate() {
            let (s, ch) = (i / plane / cg.cout / cg.batch, (i / plane) % cg.cout);
            abs_sum[s * cg.cout + ch] += v.abs();
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
        let (bias_got, rest_got) = split_bias(&got[2], is_bias);
        let (bias_apart, rest_apart) = split_bias(&apart[2], is_bias);
        assert_close(
            &format!("grads except conv bias, fused vs separate CUDA {tag}"),
            &rest_got,
            &rest_apart,
            0.0,
            0.0,
        );
        assert_close(
            &format!("conv bias grad, fused vs separate CUDA {tag}"),
            &bias_got,
            &bias_apart,
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
        let (bias_want, rest_want) = split_bias(&want[2], is_bias);
        assert_close(
            &format!("grads except conv bias, CUDA vs CPU {tag}"),
            &rest_got,
            &rest_want,
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
            &bias_got,
            &bias_want,
            atol,
            0.0,
        );
        // No norm: Σ dy is the pooled gradient spread over the ReLU's open inputs, far from zero,
        // so the bias checks above compare real sums, not two round-off residues.
        if kind == NormKind::None {
            let largest = bias_want.iter().fold(0f32, |m, v| m.max(v.abs()));
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
