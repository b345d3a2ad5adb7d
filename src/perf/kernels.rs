//! The kernel plan of a cohort, as the CUDA backend launches it with the issue-8 kernels: every
//! launch of one training step and of one test pass, with the work it does (tensor-core GEMM
//! multiply-adds, fp32 multiply-adds on the CUDA cores) and the bytes it must move through HBM.
//!
//! Fusion (issue 8, item 2, built: `Backend::conv_norm_relu_pool_forward`, cuda/conv_norm.cuh):
//! each conv forward's epilogue writes y and per-tile partial norm statistics; where a block
//! (up to 16 register tiles) holds whole planes, the same kernel normalises, ReLUs and pools
//! ([`tail_fused`]), otherwise one norm pass reads y once (no statistics pass). Test passes (item
//! 3, built): the test chunk is gathered once for all S students and layer 1 runs as ONE GEMM
//! with N = S·width (cuda/conv_bf16.cu, "wide"), in the test precision's kernels (bf16 by default:
//! 128 × 128 tiles; TF32).
//! Test passes in TF32 and bf16 run the eval kernel that never stores y (cuda/conv_eval.cu,
//! and in bf16 cuda/conv_eval_plane.cu for 16×16 and 8×8 planes; [`eval_kernel`]) wherever the
//! CUDA backend does: a block holds whole planes on chip and writes only the pooled output, so
//! such a launch moves its input and a quarter of y.
//! Bytes are HBM traffic in fp32: each tensor read or written once per launch (im2col re-reads
//! hit L2/shared memory), plus the fused epilogue's re-read of the y its block just wrote, for
//! the part that the resident blocks' fresh y pushes out of L2 ([`epilogue_reread`]).

use super::gpu::TensorMode;
use crate::backend::cuda::{
    act_bf16_between, eval_kernel_for, EvalKernel, TestPrecision, H100_SMEM_OPTIN,
};
use crate::backend::{NormGeom, NormKind};
use crate::model::ConvNetSpec;

/// GEMM rows (M = images · pixels) of a TF32 conv forward tile: cuda/conv.cu CONV_TF32_TILE and
/// `TILE_TF32` in src/backend/cuda/ops.rs.
pub const TF32_TILE_M: usize = 256;
/// Most register tiles one fused block runs back to back to hold a plane (`MAX_M_SUB` in
/// src/backend/cuda/ops/fused.rs).
const MAX_M_SUB: usize = 16;

/// A conv forward kernel's block in a tensor mode: register-tile rows (BM), columns (BN), and
/// blocks resident per SM. BM × BN: src/backend/cuda/ops.rs `TILE_TF32`, `TILE_TF32X3` and
/// ops/bf16.rs `TILE_BF16`. Residency from `ptxas -v` (nvcc 13.0, sm_90) of the fused forwards:
/// TF32 250 registers × 256 threads = 64 K, the whole register file: 1 block; bf16 247 × 128 and
/// 3xTF32 235 × 128: 2 blocks of ≤ 32 K.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwdTile {
    pub bm: usize,
    pub bn: usize,
    pub per_sm: usize,
}

pub fn fwd_tile(mode: TensorMode) -> FwdTile {
    match mode {
        TensorMode::Tf32 => FwdTile {
            bm: TF32_TILE_M,
            bn: 128,
            per_sm: 1,
        },
        TensorMode::Bf16 => FwdTile {
            bm: 128,
            bn: 128,
            per_sm: 2,
        },
        TensorMode::Tf32x3 => FwdTile {
            bm: 128,
            bn: 64,
            per_sm: 2,
        },
    }
}

/// L2 of the H100 and H200 (NVIDIA H100 Tensor Core GPU Architecture whitepaper: "50 MB L2
/// cache" for H100 SXM5; the H200 keeps the H100's die) and their SM count, for
/// [`epilogue_reread`]. The H100 PCIe (114 SMs, also 50 MB) is counted as the SXM parts.
const L2_BYTES: f64 = 50e6;
const SMS: f64 = 132.0;

/// Rows one fused block covers: a whole instance-norm plane of up to MAX_M_SUB register tiles
/// (src/backend/cuda/ops/fused.rs `m_sub`), else one register tile.
fn block_rows(spec: &ConvNetSpec, d: usize, bm: usize) -> usize {
    let px = spec.block_conv_hw(d).pow(2);
    if spec.norm == NormKind::Instance && px > bm && px % bm == 0 && px / bm <= MAX_M_SUB {
        px
    } else {
        bm
    }
}

/// The fraction of y the fused epilogue re-reads from HBM rather than L2: it reads back the
/// rows its block just wrote (conv_norm.cuh), while every other resident block writes its own;
/// when the resident blocks' y (rows × BN floats each) exceeds L2, the oldest part of it is gone
/// (LRU): 1 − L2 / footprint. ConvNet-3's layer 1 at 32 px: 1,024-row blocks × 128 channels =
/// 512 KiB each, 132 (TF32) or 264 (bf16) resident: 67 or 135 MB > 50 MB.
pub fn epilogue_reread(rows: usize, bn: usize, per_sm: usize, blocks: usize) -> f64 {
    let resident = (blocks as f64).min(per_sm as f64 * SMS);
    let footprint = resident * (rows * bn) as f64 * F32;
    (1.0 - L2_BYTES / footprint).max(0.0)
}

/// Whether block d's conv kernel finishes the whole block tail (norm → ReLU → pool) itself, as
/// src/backend/cuda/ops/fused.rs decides for the TF32 tile: instance norm when a block (up to 16
/// register tiles run back to back) holds whole planes; eval-mode batch norm and no norm when it
/// holds whole pooling windows; never train-mode batch norm.
pub fn tail_fused(spec: &ConvNetSpec, d: usize, eval: bool) -> bool {
    tail_fused_in(spec, d, eval, TF32_TILE_M)
}

/// [`tail_fused`] for a register tile of `bm` rows.
pub fn tail_fused_in(spec: &ConvNetSpec, d: usize, eval: bool, bm: usize) -> bool {
    let hw = spec.block_conv_hw(d);
    let px = hw * hw;
    match spec.norm {
        NormKind::Instance => bm % px == 0 || (px % bm == 0 && px / bm <= MAX_M_SUB),
        NormKind::Batch if !eval => false,
        _ => hw % 2 == 0 && bm % (2 * hw) == 0 && (bm % px == 0 || px % bm == 0),
    }
}

/// The eval kernel (cuda/conv_eval.cu) a test pass's block d runs in `mode`, as the CUDA backend
/// chooses it on an H100 or H200 (both compute capability 9.0: 227 KiB of opt-in shared memory
/// per block): `eval_kernel_for`, the backend's own rule. None for 3xTF32 test passes and planes
/// no block can hold; those keep the fused forward that stores y.
pub fn eval_kernel(spec: &ConvNetSpec, d: usize, mode: TensorMode) -> Option<EvalKernel> {
    let precision = match mode {
        TensorMode::Tf32 => TestPrecision::Tf32,
        TensorMode::Bf16 => TestPrecision::Bf16,
        TensorMode::Tf32x3 => TestPrecision::Tf32x3,
    };
    let hw = spec.block_conv_hw(d);
    let g = NormGeom {
        students: 1,
        batch: 1,
        c: spec.width,
        h: hw,
        w: hw,
        kind: spec.norm,
        eps: 0.0,
        momentum: 0.0,
    };
    eval_kernel_for(precision, &g, spec.block_cin(d), H100_SMEM_OPTIN)
}

/// Whether block d of a test pass in `mode` stores its pooled output as bf16 for block d + 1: the
/// backend's own rule (`act_bf16_between`: block d's eval kernel writes bf16 and block d + 1's
/// eval kernel reads it) on the kernels [`eval_kernel`] picks: in bf16 test passes of ConvNet-3,
/// blocks 1 → 2 and 2 → 3 (the plane kernel reads bf16 x); never the last block (the head's input).
pub fn act_out_bf16(spec: &ConvNetSpec, d: usize, mode: TensorMode) -> bool {
    d + 1 < spec.depth
        && act_bf16_between(
            eval_kernel(spec, d, mode).as_ref(),
            eval_kernel(spec, d + 1, mode).as_ref(),
        )
}

/// HBM bytes per pooled value block d stores (and block d + 1 reads): 2 in bf16, else 4.
fn act_bytes(bf16: bool) -> f64 {
    if bf16 {
        2.0
    } else {
        F32
    }
}

/// What a launch costs.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub name: String,
    /// A tensor-core GEMM: (M, N, K) per student and the students (grid z), else None.
    pub gemm: Option<Gemm>,
    /// Multiply-adds on the CUDA cores (linear head, loss): fp32 FMA.
    pub simt_macs: f64,
    /// Compulsory HBM traffic.
    pub bytes: f64,
    /// A conv forward GEMM: the share of its grid-z slices whose weight rows the bf16 kernels copy
    /// 16 bytes at a time (their faster main loop, [`b_vec4_share`]); the rest take the 4-byte
    /// loop. 0 for launches without weights in B.
    pub b_vec4: f64,
    /// Bytes the launch's blocks read through L2 beyond `bytes`: a conv forward's weights, which
    /// every block along M reads whole for its column tile (K × BN floats) however many blocks
    /// share them ([`weight_rereads`]): 128 FLOP per byte for a 256-row tile, the bound that
    /// matters for the bf16 eval kernels. Other operand re-reads through L2 (activation tiles of
    /// the backward GEMMs, gathers that L1 does not catch) are not modelled: 0.
    pub l2_bytes: f64,
}

/// L2 bytes of a conv forward's weight reads (fp32, K × N per student) when each of its blocks
/// along M (`tile_m` rows) reads them again: [`Launch::l2_bytes`].
pub fn weight_rereads(g: &Gemm, tile_m: usize) -> f64 {
    (g.k * g.n * g.students) as f64 * F32 * g.m.div_ceil(tile_m) as f64
}

/// The share of a conv forward's grid-z slices (students, or the one wide slice) that run
/// conv_gemm_bf16.cuh's 16-byte weight loop, by cuda/conv_bf16.cu `FwdPass::b_k_vec4`: K % 4 = 0,
/// a wide GEMM's student stride (the parameter row) a multiple of 4, and the slice's first weight
/// (params + s · row + w_off, params from cudaMalloc: 256-byte aligned) 16-byte aligned. The
/// row and offset are `ParamLayout`'s, which packs tensors without padding: the LRS CIFAR-10
/// ConvNet-3's row of 320,010 floats puts every odd student's weights 8 bytes off, so half the
/// students of blocks 2–3 run the 4-byte loop.
pub fn b_vec4_share(spec: &ConvNetSpec, d: usize, g: &Gemm) -> f64 {
    let layout = crate::model::ParamLayout::new(spec);
    let (row, w_off) = (layout.len, layout.blocks[d].conv.weight);
    if g.k % 4 != 0 {
        return 0.0;
    }
    if g.n > spec.width {
        // Wide (N = S · width, one slice at s = 0): every column's row must be aligned.
        return if row % 4 == 0 && w_off % 4 == 0 {
            1.0
        } else {
            0.0
        };
    }
    let aligned = (0..g.students)
        .filter(|s| (s * row + w_off) % 4 == 0)
        .count();
    aligned as f64 / g.students.max(1) as f64
}

/// One batched GEMM C (M, N) = A (M, K) · B (K, N) per student.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub students: usize,
}

impl Gemm {
    /// Multiply-adds the tensor cores execute: K rounded up to the MMA depth (8 for TF32; the
    /// issue asks that layer 1's K = 27 not be padded to a 64-wide tile), M and N to the 16-wide
    /// fragments.
    pub fn padded_macs(&self) -> f64 {
        let up = |v: usize, q: usize| v.div_ceil(q) * q;
        (up(self.m, 16) * up(self.n, 16) * up(self.k, 8)) as f64 * self.students as f64
    }

    pub fn macs(&self) -> f64 {
        (self.m * self.n * self.k * self.students) as f64
    }
}

const F32: f64 = 4.0;

/// Shapes of conv block d: (cin, cout, conv side).
fn block(spec: &ConvNetSpec, d: usize) -> (usize, usize, usize) {
    (spec.block_cin(d), spec.width, spec.block_conv_hw(d))
}

/// Every launch of one training step: S students, `batch` images each.
pub fn train_step(spec: &ConvNetSpec, s: usize, batch: usize) -> Vec<Launch> {
    let sb = (s * batch) as f64;
    let img = (spec.channels * spec.im_size * spec.im_size) as f64 * F32;
    let mut out = vec![
        stream("gather_rows (batch)", sb * img * 2.0),
        stream("augment (DSA)", sb * img * 2.0),
    ];
    for d in 0..spec.depth {
        let (cin, cout, hw) = block(spec, d);
        let px = (hw * hw) as f64;
        push_block(
            &mut out,
            spec,
            d,
            false,
            TensorMode::Tf32,
            Gemm {
                m: batch * hw * hw,
                n: cout,
                k: 9 * cin,
                students: s,
            },
            sb * px * cin as f64 * F32,
            sb * px * cout as f64 * F32,
            false,
        );
    }
    let (fin, k) = (spec.num_feat(), spec.classes);
    out.push(simt(
        "linear forward",
        sb * (fin * k) as f64,
        sb * (fin + k) as f64 * F32,
    ));
    out.push(simt(
        "loss (+ dlogits)",
        sb * k as f64 * 4.0,
        sb * k as f64 * F32 * 3.0,
    ));
    out.push(simt(
        "linear backward_input",
        sb * (fin * k) as f64,
        sb * (fin + k) as f64 * F32,
    ));
    out.push(simt(
        "linear backward_weight",
        sb * (fin * k) as f64,
        sb * (fin + k) as f64 * F32,
    ));
    for d in (0..spec.depth).rev() {
        let (cin, cout, hw) = block(spec, d);
        let px = (hw * hw) as f64;
        let y_bytes = sb * px * cout as f64 * F32;
        // One pass (cuda/norm.cu norm_relu_pool_backward, a block per (s, c)): read y and the
        // pooled gradient, write dy (a block's second reading of its plane hits L1/L2), and the
        // γ, β and conv bias gradients from the same sums: no other pass over y, dout or dy.
        out.push(stream(
            &format!("norm_relu_pool{} backward (+ γ, β, conv bias grads)", d + 1),
            y_bytes * 2.25,
        ));
        // The split-K slot clear writes the S weight gradients.
        out.push(stream(
            &format!("conv{} backward_weight clear", d + 1),
            (s * cout * 9 * cin) as f64 * F32,
        ));
        out.push(gemm(
            &format!("conv{} backward_weight (split-K)", d + 1),
            Gemm {
                m: cout,
                n: 9 * cin,
                k: batch * hw * hw,
                students: s,
            },
            sb * px * (cin + cout) as f64 * F32,
        ));
        if d > 0 {
            out.push(gemm(
                &format!("conv{} backward_input", d + 1),
                Gemm {
                    m: batch * hw * hw,
                    n: cin,
                    k: 9 * cout,
                    students: s,
                },
                sb * px * (cin + cout) as f64 * F32,
            ));
        }
    }
    // SGD with momentum: read params, grads, momentum; write params, momentum.
    let p = spec_params(spec) as f64 * s as f64;
    out.push(stream("optimizer step", p * F32 * 5.0));
    out
}

/// Every launch of one chunk of a test pass in TF32: `chunk` test images shared by S students.
pub fn test_chunk(spec: &ConvNetSpec, s: usize, chunk: usize) -> Vec<Launch> {
    test_chunk_in(spec, s, chunk, TensorMode::Tf32)
}

/// [`test_chunk`] with the forwards in `mode`'s kernels (their tiles decide what fuses and how
/// much of y the epilogue re-reads from HBM).
pub fn test_chunk_in(spec: &ConvNetSpec, s: usize, chunk: usize, mode: TensorMode) -> Vec<Launch> {
    test_chunk_acts(spec, s, chunk, mode, |d| act_out_bf16(spec, d, mode))
}

/// [`test_chunk_in`] with block d's pooled output stored as bf16 where `out_bf16(d)` (the plan:
/// [`act_out_bf16`]; tests force it to check the byte counts).
fn test_chunk_acts(
    spec: &ConvNetSpec,
    s: usize,
    chunk: usize,
    mode: TensorMode,
    out_bf16: impl Fn(usize) -> bool,
) -> Vec<Launch> {
    let img = (spec.channels * spec.im_size * spec.im_size) as f64 * F32;
    let sc = (s * chunk) as f64;
    let mut out = vec![stream(
        "gather_rows (test chunk, once for all S)",
        chunk as f64 * img * 2.0,
    )];
    for d in 0..spec.depth {
        let (cin, cout, hw) = block(spec, d);
        let px = (hw * hw) as f64;
        let (g, bytes_in) = if d == 0 {
            // Layer 1 of all students as one GEMM: N = S · width over the shared images.
            (
                Gemm {
                    m: chunk * hw * hw,
                    n: s * cout,
                    k: 9 * cin,
                    students: 1,
                },
                chunk as f64 * px * cin as f64 * F32,
            )
        } else {
            (
                Gemm {
                    m: chunk * hw * hw,
                    n: cout,
                    k: 9 * cin,
                    students: s,
                },
                sc * px * cin as f64 * act_bytes(out_bf16(d - 1)),
            )
        };
        push_block(
            &mut out,
            spec,
            d,
            true,
            mode,
            g,
            bytes_in,
            sc * px * cout as f64 * F32,
            out_bf16(d),
        );
    }
    let (fin, k) = (spec.num_feat(), spec.classes);
    out.push(simt(
        "linear forward (eval)",
        sc * (fin * k) as f64,
        sc * (fin + k) as f64 * F32,
    ));
    out.push(simt("count_correct", sc * k as f64, sc * k as f64 * F32));
    out
}

/// One block's forward launches. A test pass's block with an [`eval_kernel`]: one launch that
/// reads `bytes_in` and writes the pooled output (a quarter of y's `y_bytes`; half that when
/// `out_bf16`, bf16 activations for the next block; only an eval kernel writes bf16,
/// `act_bf16_between`, so the other launches ignore it). Otherwise the conv
/// (reading `bytes_in`, writing y of `y_bytes`) with the norm statistics in its epilogue, then either nothing more (the conv kernel also wrote the
/// pooled output, a quarter of y) or one norm → ReLU → pool pass (read y, write the pooled output).
/// The epilogue's re-read of y costs HBM bytes where L2 cannot hold it ([`epilogue_reread`]).
#[allow(clippy::too_many_arguments)]
fn push_block(
    out: &mut Vec<Launch>,
    spec: &ConvNetSpec,
    d: usize,
    eval: bool,
    mode: TensorMode,
    g: Gemm,
    bytes_in: f64,
    y_bytes: f64,
    out_bf16: bool,
) {
    let b_vec4 = b_vec4_share(spec, d, &g);
    if let Some(k) = eval.then(|| eval_kernel(spec, d, mode)).flatten() {
        // y stays in shared memory: read the input, write the pooled quarter of y. The name
        // carries the kernel's, whose main loop the kernel report measures (predict.rs).
        out.push(Launch {
            b_vec4,
            l2_bytes: weight_rereads(&g, k.tile_m),
            ..gemm(
                &format!(
                    "conv{} forward + norm + ReLU + pool (eval, y on chip: {})",
                    d + 1,
                    k.name
                ),
                g,
                bytes_in + y_bytes * 0.25 * act_bytes(out_bf16) / F32,
            )
        });
        return;
    }
    let t = fwd_tile(mode);
    let fused = tail_fused_in(spec, d, eval, t.bm);
    let rows = block_rows(spec, d, t.bm);
    let blocks = g.m.div_ceil(rows) * g.n.div_ceil(t.bn) * g.students;
    let reread = y_bytes * epilogue_reread(rows, t.bn.min(g.n), t.per_sm, blocks);
    let tag = if eval { " (eval)" } else { "" };
    if fused {
        out.push(Launch {
            b_vec4,
            l2_bytes: weight_rereads(&g, t.bm),
            ..gemm(
                &format!("conv{} forward + norm + ReLU + pool{tag}", d + 1),
                g,
                bytes_in + y_bytes * 1.25 + reread,
            )
        });
    } else {
        out.push(Launch {
            b_vec4,
            l2_bytes: weight_rereads(&g, t.bm),
            ..gemm(
                &format!("conv{} forward + norm statistics{tag}", d + 1),
                g,
                bytes_in + y_bytes + reread,
            )
        });
        out.push(stream(
            &format!("norm_relu_pool{} forward from partials{tag}", d + 1),
            y_bytes * 1.25,
        ));
    }
}

/// Parameters per student (conv weights + biases + norm affine + linear), as the flat row holds.
pub fn spec_params(spec: &ConvNetSpec) -> usize {
    let mut p = 0;
    for d in 0..spec.depth {
        let (cin, cout, _) = block(spec, d);
        p += cout * cin * 9 + cout + 2 * cout;
    }
    p + spec.num_feat() * spec.classes + spec.classes
}

fn gemm(name: &str, g: Gemm, bytes: f64) -> Launch {
    Launch {
        name: name.to_string(),
        gemm: Some(g),
        simt_macs: 0.0,
        bytes,
        l2_bytes: 0.0,
        // By K alone (a training backward in bf16 is a what-if: no kernel says how it loads);
        // conv forwards set the share their weight rows allow (push_block).
        b_vec4: if g.k % 4 == 0 { 1.0 } else { 0.0 },
    }
}

fn stream(name: &str, bytes: f64) -> Launch {
    Launch {
        name: name.to_string(),
        gemm: None,
        simt_macs: 0.0,
        bytes,
        l2_bytes: 0.0,
        b_vec4: 0.0,
    }
}

fn simt(name: &str, macs: f64, bytes: f64) -> Launch {
    Launch {
        name: name.to_string(),
        gemm: None,
        simt_macs: macs,
        bytes,
        l2_bytes: 0.0,
        b_vec4: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convnet3() -> ConvNetSpec {
        ConvNetSpec::from_name("ConvNet-3", 3, 32, 10).unwrap()
    }

    /// Which bf16 main loop each conv forward runs mirrors `FwdPass::b_k_vec4`: layer 1 (K = 27)
    /// the 4-byte one always; blocks 2–3 (K = 1,152) the 16-byte one for the students whose
    /// weights start 16-byte aligned, which with ConvNet-3's unpadded 320,010-float row is every
    /// even student; a row that is a multiple of 4 (CIFAR-100's) aligns them all.
    #[test]
    fn bf16_weight_loop_follows_k_and_the_row_alignment() {
        let spec = convnet3();
        let layout = crate::model::ParamLayout::new(&spec);
        assert_eq!(layout.len, 320_010, "ConvNet-3, width 128, 10 classes");
        let g = |d: usize, n: usize, students: usize| Gemm {
            m: 500 * spec.block_conv_hw(d).pow(2),
            n,
            k: 9 * spec.block_cin(d),
            students,
        };
        // Layer 1: K = 27 is never a multiple of 4, wide or per student.
        assert_eq!(b_vec4_share(&spec, 0, &g(0, 16 * 128, 1)), 0.0);
        assert_eq!(b_vec4_share(&spec, 0, &g(0, 128, 4)), 0.0);
        // Blocks 2 and 3: even students aligned, odd ones 8 bytes off.
        for d in [1, 2] {
            assert_eq!(layout.blocks[d].conv.weight % 4, 0);
            assert_eq!(b_vec4_share(&spec, d, &g(d, 128, 16)), 0.5);
            assert_eq!(b_vec4_share(&spec, d, &g(d, 128, 3)), 2.0 / 3.0);
            assert_eq!(b_vec4_share(&spec, d, &g(d, 128, 1)), 1.0);
            // Wide over students: the row itself must be a multiple of 4.
            assert_eq!(b_vec4_share(&spec, d, &g(d, 16 * 128, 1)), 0.0);
        }
        // A row that is a multiple of 4 aligns every student: 100 classes, 320,010 − 20,490 +
        // 204,900 = 504,420 floats.
        let c100 = ConvNetSpec::from_name("ConvNet-3", 3, 32, 100).unwrap();
        assert_eq!(crate::model::ParamLayout::new(&c100).len % 4, 0);
        assert_eq!(b_vec4_share(&c100, 1, &g(1, 128, 16)), 1.0);
        assert_eq!(b_vec4_share(&c100, 1, &g(1, 16 * 128, 1)), 1.0);
        // The plan's launches carry it: a bf16 test pass's conv2 launch half, conv1's none.
        let plan = test_chunk_in(&spec, 16, 500, TensorMode::Bf16);
        let share = |prefix: &str| {
            plan.iter()
                .find(|l| l.name.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} launch in {plan:?}"))
                .b_vec4
        };
        assert_eq!(share("conv1 forward"), 0.0);
        assert_eq!(share("conv2 forward"), 0.5);
    }

    /// The plan's multiply-adds are the cost model's FLOPs (DESIGN.md §7: 297 MFLOP per training
    /// image, 101.5 MFLOP per test image), so no launch is missing or counted twice.
    #[test]
    fn plan_work_matches_the_flop_count() {
        let spec = convnet3();
        let (fwd, train) = crate::metrics::cost::convnet_flops(&spec);
        let macs = |ls: &[Launch]| {
            ls.iter()
                .map(|l| {
                    l.gemm.map_or(0.0, |g| g.macs())
                        + if l.name.starts_with("linear") {
                            l.simt_macs
                        } else {
                            0.0
                        }
                })
                .sum::<f64>()
        };
        let (s, b) = (3, 100);
        let step = macs(&train_step(&spec, s, b)) * 2.0 / (s * b) as f64;
        assert!(
            (step - train).abs() / train < 1e-9,
            "step {step} vs {train}"
        );
        let test = macs(&test_chunk(&spec, s, 500)) * 2.0 / (s * 500) as f64;
        assert!((test - fwd).abs() / fwd < 1e-9, "test {test} vs {fwd}");
    }

    /// Layer 1's K = 27 costs 32/27 in padded MMAs, not the 64/27 of a 64-deep tile.
    #[test]
    fn layer1_k_pads_to_the_mma_depth_only() {
        let g = Gemm {
            m: 102_400,
            n: 128,
            k: 27,
            students: 1,
        };
        assert!((g.padded_macs() / g.macs() - 32.0 / 27.0).abs() < 1e-12);
    }

    /// ConvNet-3 at 32 px with instance norm: every block finishes inside the conv kernel (block
    /// 1's 1,024-row planes as 4 register tiles of one block), so the forward has no norm pass; a
    /// 40 px input (1,600-row planes, not a whole number of tiles) keeps one; with batch norm every block fuses in eval
    /// mode and none in train mode.
    #[test]
    fn which_blocks_fuse() {
        let spec = convnet3();
        assert!((0..3).all(|d| tail_fused(&spec, d, false)));
        let names: Vec<String> = train_step(&spec, 2, 10)
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("norm_relu_pool") && n.contains("forward"))
                .count(),
            0
        );
        let odd = ConvNetSpec::from_name("ConvNet-3", 3, 40, 10).unwrap();
        assert!(!tail_fused(&odd, 0, false));
        let bn = ConvNetSpec::from_name("ConvNet-3-BN", 3, 32, 10).unwrap();
        assert!((0..3).all(|d| tail_fused(&bn, d, true) && !tail_fused(&bn, d, false)));
    }

    /// Layer 1's 512 KiB blocks overflow L2 (132 × 512 KiB = 67 MB in TF32, twice that with the
    /// bf16 kernel's 2 resident blocks per SM); layer 2's 256-row blocks (128 KiB) fit.
    /// Only forwards that store y pay it: training, and 3xTF32 test passes.
    #[test]
    fn the_epilogue_rereads_what_l2_cannot_hold() {
        let f = |rows, per_sm| epilogue_reread(rows, 128, per_sm, 100_000);
        assert!((f(1024, 1) - (1.0 - 50e6 / (132.0 * 1024.0 * 128.0 * 4.0))).abs() < 1e-12);
        assert!(f(1024, 2) > f(1024, 1));
        assert_eq!(f(256, 1), 0.0);
        assert_eq!(epilogue_reread(1024, 128, 1, 10), 0.0, "10 blocks fit");
        // 3xTF32 test passes have no eval kernel: layer 1 stores y and re-reads part of it.
        let spec = convnet3();
        let x3 = test_chunk_in(&spec, 16, 500, TensorMode::Tf32x3);
        let (y, input) = (
            500.0 * 16.0 * 1024.0 * 128.0 * F32,
            500.0 * 1024.0 * 3.0 * F32,
        );
        assert!(x3[1].bytes > input + 1.25 * y, "{}", x3[1].bytes);
    }

    /// TF32 and bf16 test passes of ConvNet-3 run block 1 (32×32 planes) in the eval kernel the
    /// backend picks (the direct one): one launch moving its input and the pooled quarter of y;
    /// blocks 2–3 keep the stored-y fused forward in TF32 (the backend's MIN_PLANE_ROWS) and run
    /// the plane kernel in bf16; no norm pass; training still writes y.
    #[test]
    fn test_passes_keep_y_on_chip() {
        let spec = convnet3();
        for mode in [TensorMode::Tf32, TensorMode::Bf16] {
            let plan = test_chunk_in(&spec, 16, 500, mode);
            assert!(!plan.iter().any(|l| l.name.starts_with("norm_relu_pool")));
            let l1 = &plan[1];
            let direct = if mode == TensorMode::Tf32 {
                "conv3x3_eval_direct_tf32"
            } else {
                "conv3x3_eval_direct_bf16"
            };
            assert!(l1.name.ends_with(&format!("{direct})")), "{}", l1.name);
            let (y, input) = (
                500.0 * 16.0 * 1024.0 * 128.0 * F32,
                500.0 * 1024.0 * 3.0 * F32,
            );
            // bf16: block 1's pooled output is stored as bf16 for block 2 (2 bytes a value).
            let act = if mode == TensorMode::Tf32 { 1.0 } else { 0.5 };
            assert_eq!(l1.bytes, input + 0.25 * y * act);
            if mode == TensorMode::Tf32 {
                assert_eq!(eval_kernel(&spec, 1, mode), None);
                assert!(!plan[2].name.contains("on chip") && plan[2].bytes > 1.25 * y / 4.0);
            } else {
                // bf16: blocks 2 (16×16) and 3 (8×8) run the plane kernel, y in registers: they
                // read their input (128 channels of the same plane: as many values as their y,
                // stored bf16) and write a quarter of their y (bf16 for block 3, fp32 for the
                // head).
                for (d, px, out) in [(1, 256.0, 0.5), (2, 64.0, 1.0)] {
                    let k = eval_kernel(&spec, d, mode).unwrap();
                    assert_eq!(k.name, "conv3x3_eval_plane_bf16");
                    let l = &plan[1 + d];
                    assert!(l.name.ends_with("conv3x3_eval_plane_bf16)"), "{}", l.name);
                    let y_d = 500.0 * 16.0 * px * 128.0 * F32;
                    assert_eq!(l.bytes, 0.5 * y_d + 0.25 * y_d * out);
                }
            }
        }
        assert_eq!(eval_kernel(&spec, 0, TensorMode::Tf32x3), None);
        assert!(train_step(&spec, 2, 10)
            .iter()
            .all(|l| !l.name.contains("on chip")));
    }

    /// bf16 activations between eval blocks follow the backend's rule (`act_bf16_between`): a
    /// bf16 eval kernel writes bf16 only for a next block whose eval kernel reads it (the plane
    /// kernel). bf16 test passes of ConvNet-3 store blocks 1 and 2's outputs as bf16, not block
    /// 3's (the head's input); TF32 and 3xTF32 test passes keep every activation fp32.
    #[test]
    fn activations_are_bf16_between_bf16_eval_blocks() {
        let spec = convnet3();
        for mode in [TensorMode::Tf32, TensorMode::Bf16, TensorMode::Tf32x3] {
            let bf16 = |d: usize| mode == TensorMode::Bf16 && d < 2;
            assert!(
                (0..3).all(|d| act_out_bf16(&spec, d, mode) == bf16(d)),
                "{mode:?}"
            );
            let plan = test_chunk_in(&spec, 16, 500, mode);
            assert_eq!(plan, test_chunk_acts(&spec, 16, 500, mode, bf16));
        }
    }

    /// Where block 1 stores bf16 (forced here: the plan once a block-2 kernel reads it), its
    /// launch writes 2 bytes per pooled value instead of 4 and block 2 reads 2; nothing else
    /// moves (the same kernels, names and multiply-adds).
    #[test]
    fn bf16_activations_halve_the_pooled_bytes() {
        let spec = convnet3();
        let mode = TensorMode::Bf16;
        let (s, chunk) = (16, 500);
        let f32s = test_chunk_acts(&spec, s, chunk, mode, |_| false);
        let bf16 = test_chunk_acts(&spec, s, chunk, mode, |d| d == 0);
        let pooled1 = (s * chunk * 128 * 16 * 16) as f64; // (S, chunk, 128, 16, 16) values
        let input = chunk as f64 * 1024.0 * 3.0 * F32;
        assert_eq!(bf16[1].bytes, input + pooled1 * 2.0);
        assert_eq!(f32s[1].bytes, input + pooled1 * F32);
        // Block 2's other terms (y, an epilogue re-read) are the same in both: up to rounding.
        let saved = f32s[2].bytes - bf16[2].bytes;
        assert!(
            (saved - pooled1 * 2.0).abs() <= 1e-12 * f32s[2].bytes,
            "{saved}"
        );
        assert_eq!(bf16.len(), f32s.len());
        for (i, (a, b)) in bf16.iter().zip(&f32s).enumerate() {
            assert_eq!(
                (&a.name, a.gemm, a.simt_macs),
                (&b.name, b.gemm, b.simt_macs)
            );
            if i > 2 {
                assert_eq!(a.bytes, b.bytes, "{}", a.name);
            }
        }
    }

    /// The forwards charge their weights once per block along M: ConvNet-3's block 2 in a bf16
    /// test pass (plane kernel, one 16×16 image per 256-row block) reads its 590 KB of fp32
    /// weights once per image and student; the training forward once per 256-row register tile.
    #[test]
    fn forwards_reread_their_weights_per_block() {
        let spec = convnet3();
        let (s, chunk) = (4, 10);
        let plan = test_chunk_in(&spec, s, chunk, TensorMode::Bf16);
        let w2 = (128 * 1152) as f64 * F32;
        assert_eq!(plan[2].l2_bytes, w2 * (s * chunk) as f64);
        let train = train_step(&spec, s, 100);
        let fwd2 = train
            .iter()
            .find(|l| l.name.starts_with("conv2 forward"))
            .unwrap();
        assert_eq!(
            fwd2.l2_bytes,
            w2 * s as f64 * (100 * 256 / TF32_TILE_M) as f64
        );
        assert!(train
            .iter()
            .filter(|l| !l.name.contains("forward"))
            .all(|l| l.l2_bytes == 0.0));
    }

    #[test]
    fn parameter_count_of_convnet3() {
        // 3→128, 128→128, 128→128 convs with bias and affine norm, 2048→10 linear.
        let want = (128 * 27 + 128 * 3) + 2 * (128 * 1152 + 128 * 3) + 2048 * 10 + 10;
        assert_eq!(spec_params(&convnet3()), want);
    }
}
