//! The eval-mode ConvNet block that never stores the conv output (cuda/conv_eval.cu): conv →
//! norm → ReLU → 2×2 pool in one kernel whose blocks hold whole output planes in shared memory
//! and write only the pooled output. Used by `Backend::conv_norm_relu_pool_forward` in eval mode
//! when the caller passes an empty `y` (the test-pass workspace does where
//! [`CudaBackend::eval_kernel`] finds a kernel: `Backend::conv_out_len_eval` is then 0); any
//! other geometry, 3xTF32 test passes, and calls with a `y` buffer keep ops/fused.rs's kernels.

use super::bf16::wide_fits;
use super::{check_len, gemm_grid, u32_of, ConvTile};
use crate::backend::cuda::params::{
    ConvNormParams, ConvParams, NormParams, NormPartials, ACT_OUT_BF16, ACT_X_BF16,
};
use crate::backend::cuda::{CudaBackend, CudaBuf, Device, TestPrecision};
use crate::backend::{ConvGeom, NormGeom, ParamAt};
use crate::error::{Error, Result};

/// Floats added to each column of the shared y tile (cuda/conv_eval.cu EVAL_PITCH_PAD).
const PITCH_PAD: usize = 16;
/// Opt-in shared memory per block of compute capability 9.0, the H100 (227 KiB: CUDA C
/// Programming Guide, "Technical Specifications per Compute Capability"). The emulated device
/// uses it, so emulation runs the kernel choices an H100 makes.
pub const H100_SMEM_OPTIN: usize = 227 * 1024;

/// The direct kernels (cuda/conv_eval.cu EVAL_DIRECT_*): output columns and threads per block,
/// and the pair-row pitch of the TF32 weight tile.
const DIRECT_BN: usize = 32;
const DIRECT_THREADS: u32 = 256;
const DIRECT_LDB: usize = 2 * DIRECT_BN + 8;

/// The small-plane kernel (cuda/conv_eval_plane.cu PLANE_*): GEMM rows (whole planes of
/// 256 / (oh·ow) images) and output columns per block, threads, and the bytes of one staged
/// weight row (9 taps × 16 channels of bf16, + 16 against bank conflicts).
pub const PLANE_KERNEL: &str = "conv3x3_eval_plane_bf16";
const PLANE_BM: usize = 256;
const PLANE_BN: usize = 128;
const PLANE_THREADS: u32 = 256;
const PLANE_WROW: usize = 9 * 16 * 2 + 16;

/// An eval kernel and its launch shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalKernel {
    pub name: &'static str,
    /// Output columns one block owns.
    pub bn: usize,
    pub threads: u32,
    /// Rows of the conv GEMM one block owns: one image's plane.
    pub tile_m: usize,
    /// Dynamic shared memory of one block, bytes (the kernels declare no static shared memory).
    pub smem_bytes: usize,
}

/// Floats of a direct kernel's shared window for cin input channels and oh × ow output planes
/// (cuda/conv_eval.cu, "Shared window"): the (32, oh·ow + pad) y tile, the zero-padded image
/// ((oh + 2) × (ow + 2) per channel for a stride-1 3×3 conv, whatever its padding), the weights
/// (TF32: a pair row of pitch 2·32 + 8 per 2 k; bf16: 32 per k), the k offsets and the bias, with K
/// rounded up to the main loop's K step (TF32 8, bf16 16).
fn direct_smem_floats(cin: usize, oh: usize, ow: usize, bf16: bool) -> usize {
    let step = if bf16 { 16 } else { 8 };
    let kp = (9 * cin).div_ceil(step) * step;
    let weights = if bf16 {
        kp * DIRECT_BN
    } else {
        kp / 2 * DIRECT_LDB
    };
    DIRECT_BN * (oh * ow + PITCH_PAD)
        + (cin * (oh + 2) * (ow + 2)).div_ceil(4) * 4
        + weights
        + kp
        + DIRECT_BN
}

/// Bytes of the plane kernel's shared window (cuda/conv_eval_plane.cu, "Shared window"): two
/// (128, PLANE_WROW) bf16 weight buffers, the (4, 128) float reduction rows, and the block's
/// 256 / (oh·ow) images zero-padded to (oh + 2) × (ow + 2) pixels of cin bf16 channels + 16 bytes.
fn plane_smem_bytes(cin: usize, oh: usize, ow: usize) -> usize {
    let imgs = PLANE_BM / (oh * ow);
    2 * PLANE_BN * PLANE_WROW + 4 * PLANE_BN * 4 + imgs * (oh + 2) * (ow + 2) * (2 * cin + 16)
}

/// Smallest plane (rows = h·w) the direct eval kernels take. Smaller planes fit one register tile of the
/// stored-y fused forward (TF32 256 × 128, conv.cu / conv_bf16.cu), which then finishes the tail
/// in-kernel from L1/L2; its y write is not what bounds those layers (performance model: ConvNet-3
/// layers 2–3 of a test pass are tensor/issue-bound), and their 128 input channels would not fit
/// the direct kernels' window beside y anyway. So the eval kernel is used where y is the cost:
/// ConvNet's 32×32 first layer (5 GB of y per student per 10,000-image test pass).
const MIN_PLANE_ROWS: usize = 257;

/// The eval kernel for a block of norm geometry `g` (the conv output of a stride-1, pad-1 3×3
/// conv) with `cin` input channels, or None: 3xTF32 has none (its test passes are the near-fp32
/// check), odd planes cannot pool, planes below [`MIN_PLANE_ROWS`] take the bf16 plane kernel
/// ([`PLANE_KERNEL`]: y in registers) when it holds them, else keep the stored-y forward, and a
/// block's window must fit the `smem_optin` bytes of shared memory a block may use.
pub fn eval_kernel_for(
    p: TestPrecision,
    g: &NormGeom,
    cin: usize,
    smem_optin: usize,
) -> Option<EvalKernel> {
    let ohw = g.h * g.w;
    if g.h % 2 != 0 || g.w % 2 != 0 {
        return None;
    }
    if ohw < MIN_PLANE_ROWS {
        return plane_kernel_for(p, g, cin, smem_optin);
    }
    let (name, bf16) = match p {
        TestPrecision::Tf32x3 => return None,
        TestPrecision::Tf32 => ("conv3x3_eval_direct_tf32", false),
        TestPrecision::Bf16 => ("conv3x3_eval_direct_bf16", true),
    };
    let k = EvalKernel {
        name,
        bn: DIRECT_BN,
        threads: DIRECT_THREADS,
        tile_m: ohw,
        smem_bytes: direct_smem_floats(cin, g.h, g.w, bf16) * 4,
    };
    (k.smem_bytes <= smem_optin).then_some(k)
}

/// The bf16 plane kernel, for planes of 64, 128 or 256 rows (a warp's 16 pooling windows in one
/// image, whole images per 256-row block) and input channels in blocks of 16 (its k16 steps);
/// TF32 test passes keep the stored-y forward.
fn plane_kernel_for(
    p: TestPrecision,
    g: &NormGeom,
    cin: usize,
    smem_optin: usize,
) -> Option<EvalKernel> {
    let ohw = g.h * g.w;
    if p != TestPrecision::Bf16 || !matches!(ohw, 64 | 128 | 256) || cin == 0 || cin % 16 != 0 {
        return None;
    }
    let k = EvalKernel {
        name: PLANE_KERNEL,
        bn: PLANE_BN,
        threads: PLANE_THREADS,
        tile_m: PLANE_BM,
        smem_bytes: plane_smem_bytes(cin, g.h, g.w),
    };
    (k.smem_bytes <= smem_optin).then_some(k)
}

/// The eval kernels that may store their pooled output as bf16 (`NormParams::act_bf16` bit
/// [`ACT_OUT_BF16`]): the bf16 direct kernel and the bf16 plane kernel. The TF32 one always
/// stores fp32; the launcher refuses a bf16 `out` for it.
const BF16_OUT_WRITERS: &[&str] = &["conv3x3_eval_direct_bf16", PLANE_KERNEL];

/// The eval kernels that read their input x as bf16 when `act_bf16` has
/// [`ACT_X_BF16`](crate::backend::cuda::params::ACT_X_BF16): the bf16 plane kernel
/// (cuda/conv_eval_plane.cu), which runs ConvNet-3's blocks 2–3 in bf16 test passes. THE list
/// that turns bf16 activations on, in the backend ([`CudaBackend::eval_out_bf16`] via
/// [`act_bf16_between`]) and in the performance model alike: block 1 → 2 and block 2 → 3 of a
/// bf16 test pass store bf16; the last block's output (the linear head's input) stays fp32.
const BF16_X_READERS: &[&str] = &[PLANE_KERNEL];

/// Whether kernel `name` reads a bf16 x (see [`BF16_X_READERS`]).
pub fn reads_bf16_x(name: &str) -> bool {
    BF16_X_READERS.contains(&name)
}

/// Whether block d's pooled output may be stored as bf16 between two eval blocks of a test pass:
/// only when the kernel producing it (`producer`, block d's eval kernel) writes bf16 AND the
/// kernel consuming it (`consumer`, block d + 1's eval kernel) reads bf16. Without an eval kernel
/// a block runs the stored-y forward, which neither writes nor reads bf16 activations. The
/// backend ([`CudaBackend::eval_out_bf16`]) and the performance model (src/perf/kernels.rs) both
/// decide by this function, each with its own kernel choice (`eval_kernel_for`).
pub fn act_bf16_between(producer: Option<&EvalKernel>, consumer: Option<&EvalKernel>) -> bool {
    producer.is_some_and(|k| BF16_OUT_WRITERS.contains(&k.name))
        && consumer.is_some_and(|k| reads_bf16_x(k.name))
}

/// The storage of an eval block's pooled output of `n` values, from the buffer's length
/// (contracts: ⌈n/2⌉ f32 slots hold n bf16 values, n slots hold fp32): the `act_bf16` bit to
/// set, or the usual length error. A bf16 buffer is refused for a kernel that cannot write one.
fn out_format(op: &str, k: &EvalKernel, got: usize, n: usize) -> Result<u32> {
    if got == n {
        return Ok(0);
    }
    if got == n.div_ceil(2) {
        if BF16_OUT_WRITERS.contains(&k.name) {
            return Ok(ACT_OUT_BF16);
        }
        return Err(Error::shape(format!(
            "{op}: `out` has {got} elements, the bf16 storage of {n} values, but {} writes \
             fp32 only; expected {n}",
            k.name
        )));
    }
    check_len(op, "out", got, n).map(|_| 0)
}

impl CudaBackend {
    /// Opt-in shared memory per block of this device (the emulated one: an H100's).
    fn smem_optin(&self) -> usize {
        match &self.dev {
            Device::Real(d) => d.smem_optin,
            Device::Emulated => H100_SMEM_OPTIN,
        }
    }

    /// The eval kernel this backend runs for a block of geometry `g` in its test precision.
    pub(super) fn eval_kernel(&self, cg: &ConvGeom, g: &NormGeom) -> Option<EvalKernel> {
        // The plane kernel reads its padded images with pad 1 (oh = h); the direct kernels take
        // any padding.
        eval_kernel_for(self.test_precision(), g, cg.cin, self.smem_optin())
            .filter(|k| k.name != PLANE_KERNEL || cg.pad == 1)
    }

    /// `Backend::eval_out_bf16`: block `cg` → `ng` and the next block each run an eval kernel,
    /// and [`act_bf16_between`] says the pair passes bf16.
    pub(super) fn eval_out_bf16_for(
        &self,
        cg: &ConvGeom,
        ng: &NormGeom,
        next_cg: &ConvGeom,
        next_ng: &NormGeom,
    ) -> bool {
        act_bf16_between(
            self.eval_kernel(cg, ng).as_ref(),
            self.eval_kernel(next_cg, next_ng).as_ref(),
        )
    }

    /// `Backend::conv_norm_relu_pool_forward` in eval mode without a y buffer: one launch of the
    /// eval kernel; `stats` is filled as by the fused forward, `out` gets the pooled output,
    /// (S, B, c, h/2, w/2) in fp32, or in bf16 when `out` has half as many slots (⌈n/2⌉, the
    /// eval workspace's buffer where `Backend::eval_out_bf16` said yes; bf16 kernel only).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_norm_eval(
        &self,
        cg: &ConvGeom,
        ng: &NormGeom,
        x: &CudaBuf<f32>,
        x_shared: bool,
        params: &CudaBuf<f32>,
        conv_at: ParamAt,
        norm_at: ParamAt,
        running: &CudaBuf<f32>,
        running_at: ParamAt,
        stats: &CudaBuf<f32>,
        out: &CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "conv_norm_relu_pool_forward (eval, no y)";
        let k = self.eval_kernel(cg, ng).ok_or_else(|| {
            Error::shape(format!(
                "{OP}: no eval kernel holds whole {}×{} planes in {:?}; pass a y buffer of \
                 conv_out_len_eval elements",
                ng.h,
                ng.w,
                self.test_precision()
            ))
        })?;
        // x of ⌈n/2⌉ slots holds bf16 activations (contracts: the launcher infers the format from
        // the length); only BF16_X_READERS (the plane kernel) read them as such.
        let copies = if x_shared { 1 } else { cg.students };
        let x_elems = copies * cg.batch * cg.cin * cg.h * cg.w;
        let x_bf16 = x.len != x_elems && x.len == x_elems.div_ceil(2);
        if x_bf16 && !reads_bf16_x(k.name) {
            return Err(Error::shape(format!(
                "{OP}: `x` has {} elements, expected {x_elems} (that many slots would hold bf16 \
                 activations, which {} does not read; readers: {BF16_X_READERS:?})",
                x.len, k.name
            )));
        }
        let conv = self.conv_params_act(OP, cg, x, params, conv_at, x_shared, x_bf16)?;
        let n_out = ng.students * ng.batch * ng.c * (ng.h / 2) * (ng.w / 2);
        let out_bf16 = out_format(OP, &k, out.len, n_out)?;
        let mut norm = NormParams {
            out: self.addr(out)?,
            train: 0,
            act_bf16: if x_bf16 { ACT_X_BF16 } else { 0 } | out_bf16,
            ..self.norm_params_without_y(OP, ng, params, norm_at, stats)?
        };
        self.with_running(OP, ng, running, running_at, &mut norm)?;
        let tile = ConvTile {
            bm: k.tile_m,
            bn: k.bn,
            threads: k.threads,
        };
        // The plane kernel's grid z is always the student.
        let wide =
            x_shared && k.name != PLANE_KERNEL && wide_fits(cg, conv.param_row as usize, tile);
        let conv = ConvParams {
            wide: u32::from(wide),
            ..conv
        };
        let m = cg.batch * cg.out_h() * cg.out_w();
        let part = NormPartials {
            tile_m: u32_of(OP, "tile", k.tile_m)?,
            m_tiles: u32_of(OP, "M tiles", m.div_ceil(k.tile_m))?,
            m_sub: 1,
            ..NormPartials::default()
        };
        let grid = if wide {
            gemm_grid(OP, tile, m, cg.students * cg.cout, 1)?
        } else {
            gemm_grid(OP, tile, m, cg.cout, cg.students)?
        };
        let q = ConvNormParams { conv, norm, part };
        // SAFETY: x, params, stats, out and running checked above against the geometry (out:
        // n fp32 values, or ⌈n/2⌉ slots = the 2n bytes of n bf16 with ACT_OUT_BF16, which only
        // BF16_OUT_WRITERS get, out_format; x likewise with ACT_X_BF16 for BF16_X_READERS only,
        // its length checked by conv_params_act); y is
        // neither read nor written (conv.out and norm.y are null); the grid covers (B·oh·ow,
        // cout) per student (wide: (B·oh·ow, S·cout) once, with S·param_row < 2³¹ by
        // wide_fits) in blocks of tile_m rows, whole planes (eval_kernel_for), with the
        // kernel's block size and its window of dynamic shared memory (y, the padded image of
        // cg.cin channels, the weights), which eval_kernel_for sized from this geometry and kept
        // within the device's opt-in limit.
        unsafe { self.launch_block_smem(k.name, grid, k.threads, k.smem_bytes as u32, &q) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::NormKind;

    fn geom(hw: usize) -> NormGeom {
        NormGeom {
            students: 2,
            batch: 4,
            c: 128,
            h: hw,
            w: hw,
            kind: NormKind::Instance,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// ConvNet-3 at 32 px on an H100: 32×32 planes of layer 1 (3 input channels) take the
    /// direct kernels (one image per block, a 152 KB window); 16×16 and 8×8 take the bf16 plane
    /// kernel in bf16 test passes and keep the stored-y forward in TF32; 3xTF32, odd planes, too many input channels for the window and a device with too
    /// little shared memory (an sm_86 card's 99 KiB) fall back.
    #[test]
    fn kernel_choice_by_plane_and_device() {
        use TestPrecision::*;
        let h100 = H100_SMEM_OPTIN;
        let k = eval_kernel_for(Tf32, &geom(32), 3, h100).unwrap();
        assert_eq!(
            (k.name, k.tile_m, k.bn),
            ("conv3x3_eval_direct_tf32", 1024, 32)
        );
        // y 32 × 1040, image 3 × 34 × 34, weights 4 K steps × 4 pair rows × 72, k offsets 32
        // (K = 27 → 32), bias 32.
        assert_eq!(k.smem_bytes, (33_280 + 3_468 + 1_152 + 32 + 32) * 4);
        let k = eval_kernel_for(Bf16, &geom(32), 3, h100).unwrap();
        assert_eq!(k.name, "conv3x3_eval_direct_bf16");
        // Weights 32 × 32 (K = 27 → 32), k offsets 32.
        assert_eq!(k.smem_bytes, (33_280 + 3_468 + 1_024 + 32 + 32) * 4);
        // 16×16 and 8×8 planes of 128 channels: the bf16 plane kernel (one image, 168,000 bytes:
        // weights 2 × 128 × 304, reduction rows 2,048, image 18 × 18 × 272; four images,
        // 188,672 bytes: 4 × 10 × 10 × 272); TF32 keeps the stored-y forward.
        for (small, imgs) in [(16, 1), (8, 4)] {
            assert_eq!(eval_kernel_for(Tf32, &geom(small), 128, h100), None);
            let k = eval_kernel_for(Bf16, &geom(small), 128, h100).unwrap();
            assert_eq!((k.name, k.tile_m, k.bn), (PLANE_KERNEL, 256, 128));
            let image = imgs * (small + 2) * (small + 2) * 272;
            assert_eq!(k.smem_bytes, 2 * 128 * 304 + 2_048 + image);
        }
        assert_eq!(plane_smem_bytes(128, 16, 16), 168_000);
        assert_eq!(plane_smem_bytes(128, 8, 8), 188_672);
        // 16 channels of input in a k16 step: 120 do not divide; 4×4 planes (16 rows) split a
        // warp's windows over images; an sm_86 card's 99 KiB does not hold the window.
        assert_eq!(eval_kernel_for(Bf16, &geom(16), 120, h100), None);
        assert_eq!(eval_kernel_for(Bf16, &geom(4), 128, h100), None);
        assert_eq!(eval_kernel_for(Bf16, &geom(8), 128, 99 * 1024), None);
        assert_eq!(eval_kernel_for(Tf32x3, &geom(32), 3, h100), None);
        assert_eq!(eval_kernel_for(Tf32, &geom(7), 3, h100), None);
        assert_eq!(eval_kernel_for(Tf32, &geom(32), 3, 99 * 1024), None);
        // Layer 2 of a 64 px ConvNet: 128 channels of 34 × 34 do not fit beside y.
        assert_eq!(eval_kernel_for(Tf32, &geom(32), 128, h100), None);
        // 28×28 (MNIST's first layer, one channel) fits.
        assert!(eval_kernel_for(Tf32, &geom(28), 1, h100).is_some());
        assert!(eval_kernel_for(Bf16, &geom(28), 1, h100).is_some());
        // 48×48: 297 KB of y, more than an H100's block gets.
        assert_eq!(eval_kernel_for(Tf32, &geom(48), 3, h100), None);
    }
}
