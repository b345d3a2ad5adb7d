//! The `#[repr(C)]` parameter structs passed by value to the kernels, one per kernel family.
//! Each is declared field for field identically in its cuda/*.cu file; the size asserts here and
//! the `static_assert`s there keep the two in step (bindgen is not used: see README, CUDA backend).
//! Pointer fields are device addresses (host addresses under emulation) as u64.

use cudarc::driver::DeviceRepr;

/// cuda/rows.cu `GatherParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GatherParams {
    pub src: u64, // (N, row_len)
    pub idx: u64, // (M) u32
    pub dst: u64, // (M, row_len)
    pub rows: u64,
    pub row_len: u64,
    /// N; an index ≥ N yields a zero row (the launcher rejects such indices where it can).
    pub src_rows: u64,
}
const _: () = assert!(size_of::<GatherParams>() == 48);

/// cuda/rows.cu `ScaleAddParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ScaleAddParams {
    pub x: u64, // (≥ x_at + n) or 0: no x term
    pub y: u64, // (≥ y_at + n)
    pub n: u64,
    pub x_at: u64,
    pub y_at: u64,
    pub a: f32,
    pub b: f32,
}
const _: () = assert!(size_of::<ScaleAddParams>() == 48);

/// cuda/conv.cu `ConvParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvParams {
    pub x: u64,      // (S, B, cin, h, w), or (B, cin, h, w) when x_shared
    pub params: u64, // (S, param_row)
    pub dy: u64,     // (S, B, cout, oh, ow)
    pub out: u64,    // y (S, B, cout, oh, ow) or dx (S, B, cin, h, w)
    pub grads: u64,  // (S, param_row)
    pub param_row: u64,
    pub w_off: u64,
    pub b_off: u64,
    pub students: u32,
    pub batch: u32,
    pub cin: u32,
    pub cout: u32,
    pub h: u32,
    pub w: u32,
    pub oh: u32,
    pub ow: u32,
    pub pad: u32,
    /// Weight gradient: K chunks per student (grid z = students · k_splits); 1 elsewhere.
    pub k_splits: u32,
    /// Forward: 1 when x is one (B, cin, h, w) copy shared by all students.
    pub x_shared: u32,
    /// cuda/conv_bf16.cu only (conv.cu ignores it, as `unused`): 1 with `x_shared` makes the
    /// forward ONE GEMM over N = S·cout (the students' weights side by side), grid z = 1.
    pub wide: u32,
}
const _: () = assert!(size_of::<ConvParams>() == 112);

/// cuda/norm.cu `NormParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NormParams {
    pub y: u64,       // (S, B, c, h, w)
    pub params: u64,  // (S, param_row)
    pub running: u64, // (S, running_row)
    pub stats: u64,   // instance (S, B, c, 2), batch (S, c, 2)
    pub dout: u64,    // (S, B, c, ph, pw)
    pub out: u64,     // forward (S, B, c, ph, pw); backward dy (S, B, c, h, w)
    pub grads: u64,   // (S, param_row)
    pub param_row: u64,
    pub w_off: u64,
    pub b_off: u64,
    pub running_row: u64,
    pub rmean_off: u64,
    pub rvar_off: u64,
    pub students: u32,
    pub batch: u32,
    pub c: u32,
    pub h: u32,
    pub w: u32,
    pub ph: u32,
    pub pw: u32,
    /// 0 instance, 1 batch, 2 none.
    pub kind: u32,
    /// 1 train mode, 0 eval mode.
    pub train: u32,
    /// Storage of an eval block's activations ([`ACT_OUT_BF16`], [`ACT_X_BF16`]); 0 everywhere
    /// else (every kernel but the eval kernels requires 0).
    pub act_bf16: u32,
    pub eps: f32,
    pub momentum: f32,
}
const _: () = assert!(size_of::<NormParams>() == 152);

/// `NormParams::act_bf16` bit: the pooled output `out` (S, B, c, ph, pw) is stored as bf16 (two
/// bytes per value, same element order; rounded to nearest even, the rounding bf16 tensor-core
/// operands get), for the next eval block to read. Test passes in bf16 only: the next conv rounds
/// its operands to bf16 anyway, so the stored values are bit for bit what it would have used.
pub const ACT_OUT_BF16: u32 = 1;
/// `NormParams::act_bf16` bit: the conv input `x` is bf16 (two bytes per value, its usual element
/// order), as an [`ACT_OUT_BF16`] block wrote it.
pub const ACT_X_BF16: u32 = 2;

/// cuda/norm_common.cuh `NormPartials`: the per-tile (count, mean, M2) statistics a fused conv
/// forward leaves for the norm pass.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NormPartials {
    pub partials: u64, // (S, m_tiles, c, seg_max, 3)
    /// Rows of the conv GEMM per M tile (one block's rows).
    pub tile_m: u32,
    pub m_tiles: u32,
    /// Most images one M tile touches.
    pub seg_max: u32,
    /// 1: the conv kernel wrote every output (no norm pass follows).
    pub fused: u32,
    /// Conv register tiles per M tile: tile_m = m_sub · the kernel's BM.
    pub m_sub: u32,
    pub unused: u32,
}
const _: () = assert!(size_of::<NormPartials>() == 32);

/// cuda/conv.cu `ConvNormParams`: the fused conv forward + norm epilogue.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvNormParams {
    pub conv: ConvParams,
    pub norm: NormParams,
    pub part: NormPartials,
}
const _: () = assert!(size_of::<ConvNormParams>() == 296);

/// cuda/norm_common.cuh `NormPartialsParams`: the norm pass after a fused conv forward.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NormPartialsParams {
    pub norm: NormParams,
    pub part: NormPartials,
}
const _: () = assert!(size_of::<NormPartialsParams>() == 184);

/// cuda/norm.cu `NormBackwardParams`: the block tail's backward, and where it writes the
/// gradient of the bias of the conv that produced y (Σ dy per channel) when `conv_bias` is 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NormBackwardParams {
    pub norm: NormParams,
    /// The conv bias (c) at grads[s · norm.param_row + conv_bias_off].
    pub conv_bias_off: u64,
    pub conv_bias: u32,
    pub unused: u32,
}
const _: () = assert!(size_of::<NormBackwardParams>() == 168);

/// cuda/linear.cu `LinearParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinearParams {
    pub x: u64,      // (S, B, fin)
    pub params: u64, // (S, param_row)
    pub dout: u64,   // (S, B, fout)
    pub out: u64,    // y (S, B, fout) or dx (S, B, fin)
    pub grads: u64,  // (S, param_row)
    pub param_row: u64,
    pub w_off: u64,
    pub b_off: u64,
    pub students: u32,
    pub batch: u32,
    pub fin: u32,
    pub fout: u32,
}
const _: () = assert!(size_of::<LinearParams>() == 80);

/// cuda/loss.cu `LossParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LossParams {
    pub logits: u64,  // (S, B, K)
    pub labels: u64,  // (S, B) u32
    pub soft: u64,    // (S, B, K)
    pub loss: u64,    // (S)
    pub dlogits: u64, // (S, B, K)
    pub students: u32,
    pub batch: u32,
    pub classes: u32,
    /// 0 CE, 1 KL, 2 SCE, 3 MSE-GT.
    pub kind: u32,
    pub temperature: f32,
    pub scale: f32,
    pub w_mse: f32,
    pub w_ce: f32,
}
const _: () = assert!(size_of::<LossParams>() == 72);

/// cuda/loss.cu `CountParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CountParams {
    pub logits: u64,  // (S, B, K)
    pub labels: u64,  // (S, B) u32
    pub correct: u64, // (S) u32
    pub students: u32,
    pub batch: u32,
    pub classes: u32,
    pub unused: u32,
}
const _: () = assert!(size_of::<CountParams>() == 40);

/// cuda/optim.cu `OptimParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OptimParams {
    pub params: u64, // (S, P)
    pub grads: u64,  // (S, P)
    pub state1: u64, // (S, P)
    pub state2: u64, // (S, P)
    pub lrs: u64,    // (S)
    pub n: u64,
    pub row: u64,
    pub step: u32,
    /// 0 SGD, 1 Adam, 2 AdamW.
    pub kind: u32,
    pub momentum: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub unused: f32,
    /// (4) u32 step clock, or 0: when set the kernel takes the step and the lrs (E, S) row from it.
    pub clock: u64,
}
const _: () = assert!(size_of::<OptimParams>() == 96);

/// cuda/rows.cu `BatchRowsParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchRowsParams {
    pub clock: u64,      // (4) u32
    pub perms: u64,      // (S, N) u32
    pub base: u64,       // (S) u32
    pub row_labels: u64, // (R) u32
    pub idx: u64,        // (S·b) u32
    pub labels: u64,     // (S·b) u32
    pub students: u64,
    pub n: u64,
    pub batch: u64,
    pub full_batch: u64,
    pub rows: u64,
}
const _: () = assert!(size_of::<BatchRowsParams>() == 88);

/// cuda/rows.cu `StepWordsParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StepWordsParams {
    pub clock: u64, // (4) u32
    pub table: u64, // (steps, stride) u32
    pub dst: u64,   // (n) u32
    pub stride: u64,
    pub at: u64,
    pub n: u64,
    pub table_len: u64,
}
const _: () = assert!(size_of::<StepWordsParams>() == 56);

/// cuda/rows.cu `LossWatchParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LossWatchParams {
    pub clock: u64,   // (4) u32
    pub loss: u64,    // (S) f32
    pub sums: u64,    // (E, S) f64
    pub stopped: u64, // (S) u32
    pub students: u64,
    pub epochs: u64,
}
const _: () = assert!(size_of::<LossWatchParams>() == 48);

/// cuda/selftest.cu `SelftestParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SelftestParams {
    pub shfl: u64,      // (64) u32
    pub shfl_down: u64, // (64) u32
    pub shfl_xor: u64,  // (64) u32
    pub counters: u64,  // (2) u32
    pub fsum: u64,      // (1) f32
    pub a: u64,         // (16·8) column-major
    pub b: u64,         // (8·16) column-major
    pub d: u64,         // (16·16) row-major
}
const _: () = assert!(size_of::<SelftestParams>() == 64);

/// cuda/aug.cu `AugParams`: one augmentation op over a cohort batch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AugParams {
    pub x: u64,        // (S, B, C, H, W), augmented in place
    pub scratch: u64,  // (S, B, C, H, W), the other buffer of the out-of-place ops
    pub students: u64, // (S) StudentDraws
    pub images: u64,   // (S, B) ImageDraws
    pub students_n: u32,
    pub batch: u32,
    pub c: u32,
    pub h: u32,
    pub w: u32,
    /// aug_warp: OP_SCALE or OP_ROTATE.
    pub op: u32,
    /// DSA strengths rounded to f32, as the CPU reference rounds them.
    pub brightness: f32,
    pub saturation: f32,
    pub contrast: f32,
    /// Cutout sides along rows and columns: int(len·ratio + 0.5).
    pub cutout_h: i32,
    pub cutout_w: i32,
    pub unused: u32,
}
const _: () = assert!(size_of::<AugParams>() == 80);

/// cuda/zca.cu `ZcaParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ZcaParams {
    pub x: u64,         // (N, D)
    pub mean: u64,      // (D)
    pub transform: u64, // (D, D)
    pub out: u64,       // (N, D)
    pub rows: u64,
    pub dim: u64,
}
const _: () = assert!(size_of::<ZcaParams>() == 48);

/// Stages a `TvParams` carries (cuda/aug_tv.cu TV_MAX_STAGES = `crate::aug::tv::MAX_STAGES`).
pub const TV_MAX_STAGES: usize = 16;
/// Channels a Normalize stage carries (cuda/aug_tv.cu TV_MAX_C).
pub const TV_MAX_C: usize = 4;

/// cuda/aug_tv.cu `TvParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TvParams {
    pub clock: u64, // (4) u32
    pub table: u64, // (steps, stride) u32
    pub x: u64,     // (S·B, C, H, W) f32
    pub stride: u64,
    pub images: u64,
    pub c: u32,
    pub size: u32,
    pub stages: u32,
    pub pad: u32,
    pub kind: [u32; TV_MAX_STAGES],
    pub padding: [u32; TV_MAX_STAGES],
    pub mean: [[f32; TV_MAX_C]; TV_MAX_STAGES],
    pub std: [[f32; TV_MAX_C]; TV_MAX_STAGES],
}
const _: () = assert!(size_of::<TvParams>() == 696);

/// A params struct a kernel takes by value: plain old data with no padding surprises. `Debug`
/// so a failing launch can print the sizes it was given.
///
/// # Safety
/// Implementors are `#[repr(C)]`, `Copy`, and laid out exactly as the CUDA struct of the same name.
pub unsafe trait KernelParams: DeviceRepr + Copy + std::fmt::Debug {}

// SAFETY (all below): #[repr(C)] structs of u64/u32/f32 fields mirroring the CUDA structs, with the
// sizes asserted on both sides; u64 fields carry device addresses.
unsafe impl DeviceRepr for GatherParams {}
unsafe impl DeviceRepr for ScaleAddParams {}
unsafe impl DeviceRepr for ConvParams {}
unsafe impl DeviceRepr for NormParams {}
unsafe impl DeviceRepr for ConvNormParams {}
unsafe impl DeviceRepr for NormPartialsParams {}
unsafe impl DeviceRepr for NormBackwardParams {}
unsafe impl DeviceRepr for LinearParams {}
unsafe impl DeviceRepr for LossParams {}
unsafe impl DeviceRepr for CountParams {}
unsafe impl DeviceRepr for OptimParams {}
unsafe impl DeviceRepr for SelftestParams {}
unsafe impl DeviceRepr for AugParams {}
unsafe impl DeviceRepr for ZcaParams {}
unsafe impl DeviceRepr for TvParams {}
unsafe impl DeviceRepr for BatchRowsParams {}
unsafe impl DeviceRepr for StepWordsParams {}
unsafe impl DeviceRepr for LossWatchParams {}
unsafe impl KernelParams for GatherParams {}
unsafe impl KernelParams for TvParams {}
unsafe impl KernelParams for ScaleAddParams {}
unsafe impl KernelParams for ConvParams {}
unsafe impl KernelParams for NormParams {}
unsafe impl KernelParams for ConvNormParams {}
unsafe impl KernelParams for NormPartialsParams {}
unsafe impl KernelParams for NormBackwardParams {}
unsafe impl KernelParams for LinearParams {}
unsafe impl KernelParams for LossParams {}
unsafe impl KernelParams for CountParams {}
unsafe impl KernelParams for OptimParams {}
unsafe impl KernelParams for SelftestParams {}
unsafe impl KernelParams for AugParams {}
unsafe impl KernelParams for ZcaParams {}
unsafe impl KernelParams for BatchRowsParams {}
unsafe impl KernelParams for StepWordsParams {}
unsafe impl KernelParams for LossWatchParams {}
