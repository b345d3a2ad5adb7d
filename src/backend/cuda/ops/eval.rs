//! The eval-mode ConvNet block that never stores the conv output (cuda/conv_eval.cu): conv →
//! norm → ReLU → 2×2 pool in one kernel whose blocks hold whole output planes in shared memory
//! and write only the pooled output. Used by `Backend::conv_norm_relu_pool_forward` in eval mode
//! when the caller passes an empty `y` (the test-pass workspace does where
//! [`CudaBackend::eval_kernel`] finds a kernel: `Backend::conv_out_len_eval` is then 0); any
//! other geometry, 3xTF32 test passes, and calls with a `y` buffer keep ops/fused.rs's kernels.

use super::bf16::wide_fits;
use super::{check_len, gemm_grid, u32_of, ConvTile};
use crate::backend::cuda::params::{ConvNormParams, ConvParams, NormParams, NormPartials};
use crate::backend::cuda::{CudaBackend, CudaBuf, Device, TestPrecision};
use crate::backend::{ConvGeom, NormGeom, ParamAt};
use crate::error::{Error, Result};

/// Floats added to each column of the shared y tile (cuda/conv_eval.cu EVAL_PITCH_PAD).
const PITCH_PAD: usize = 16;
/// Most static shared memory a kernel can declare (48 KiB, CUDA C Programming Guide, "Shared
/// Memory"); the eval kernels' pipeline stages and scratch take up to this (ptxas -v: 40–46 KB),
/// so the dynamic y tile gets the opt-in limit minus this.
const STATIC_SMEM_MAX: usize = 48 * 1024;
/// Opt-in shared memory per block of compute capability 9.0, the H100 (227 KiB: CUDA C
/// Programming Guide, "Technical Specifications per Compute Capability"). The emulated device
/// uses it, so emulation runs the kernel choices an H100 makes.
pub const H100_SMEM_OPTIN: usize = 227 * 1024;
/// Most conv register tiles one block runs to cover a plane (ops/fused.rs MAX_M_SUB).
const MAX_M_SUB: usize = super::fused::MAX_M_SUB;

/// An eval kernel and its launch shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalKernel {
    pub name: &'static str,
    /// The GEMM register tile (cuda/conv_eval.cu EVAL_*_TILE) and block size.
    pub bm: usize,
    pub bn: usize,
    pub threads: u32,
    /// Register tiles per block: tile_m = m_sub · bm rows, whole planes.
    pub m_sub: usize,
}

impl EvalKernel {
    /// Rows of the conv GEMM one block owns.
    pub fn tile_m(&self) -> usize {
        self.m_sub * self.bm
    }
    /// Dynamic shared memory of one block: the (bn, tile_m + pad) fp32 y tile.
    pub fn smem_bytes(&self) -> usize {
        (self.tile_m() + PITCH_PAD) * self.bn * 4
    }
}

/// The kernels per test precision: (name, bm, bn, threads, most register tiles per block). The
/// narrow ones hold a 32×32 plane's 1024 rows (4 TF32 / 8 bf16 register tiles, 32 columns).
/// cuda/conv_eval.cu also builds 64- and 128-column kernels for planes of ≤ 256 rows
/// (`conv3x3_eval_tf32`, `conv3x3_eval_bf16`); they are not chosen (see [`MIN_PLANE_ROWS`]).
type Row = (&'static str, usize, usize, u32, usize);
const TF32_KERNELS: [Row; 1] = [("conv3x3_eval_narrow_tf32", 256, 32, 256, MAX_M_SUB)];
const BF16_KERNELS: [Row; 1] = [("conv3x3_eval_narrow_bf16", 128, 32, 64, MAX_M_SUB)];

/// Smallest plane (rows = h·w) the eval kernel takes. Smaller planes fit one register tile of the
/// stored-y fused forward (TF32 256 × 128, conv.cu / conv_bf16.cu), which then finishes the tail
/// in-kernel from L1/L2; its y write is not what bounds those layers (performance model: ConvNet-3
/// layers 2–3 of a test pass are tensor/issue-bound), while the eval kernels' narrower tiles
/// issue more per MMA (kernel report, sm_90: 5.25 other instructions per HMMA.1688 for the
/// 256 × 64 eval tile against 3.0 for the fused forward's 256 × 128; bf16 13.0 against 10.4). So
/// the eval kernel is used where y is the cost: ConvNet's 32×32 first layer (5 GB of y per
/// student per 10,000-image test pass).
const MIN_PLANE_ROWS: usize = 257;

/// The eval kernel for a block of norm geometry `g` (the conv output), or None: 3xTF32 has none
/// (its test passes are the near-fp32 check), odd planes cannot pool, planes below
/// [`MIN_PLANE_ROWS`] keep the stored-y forward, and a block must hold whole
/// planes (a plane a whole number of register tiles, or a tile a whole number of planes) in the
/// `smem_optin` bytes of shared memory a block may use.
pub fn eval_kernel_for(p: TestPrecision, g: &NormGeom, smem_optin: usize) -> Option<EvalKernel> {
    let table = match p {
        TestPrecision::Tf32 => &TF32_KERNELS,
        TestPrecision::Bf16 => &BF16_KERNELS,
        TestPrecision::Tf32x3 => return None,
    };
    let ohw = g.h * g.w;
    if g.h % 2 != 0 || g.w % 2 != 0 || ohw < MIN_PLANE_ROWS {
        return None;
    }
    let budget = smem_optin.saturating_sub(STATIC_SMEM_MAX);
    table.iter().find_map(|&(name, bm, bn, threads, most)| {
        let m_sub = if ohw <= bm {
            (bm % ohw == 0).then_some(1)?
        } else {
            (ohw % bm == 0 && ohw / bm <= most).then_some(ohw / bm)?
        };
        let k = EvalKernel {
            name,
            bm,
            bn,
            threads,
            m_sub,
        };
        (k.smem_bytes() <= budget).then_some(k)
    })
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
    pub(super) fn eval_kernel(&self, g: &NormGeom) -> Option<EvalKernel> {
        eval_kernel_for(self.test_precision(), g, self.smem_optin())
    }

    /// `Backend::conv_norm_relu_pool_forward` in eval mode without a y buffer: one launch of the
    /// eval kernel; `stats` is filled as by the fused forward, `out` gets the pooled output.
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
        let k = self.eval_kernel(ng).ok_or_else(|| {
            Error::shape(format!(
                "{OP}: no eval kernel holds whole {}×{} planes in {:?}; pass a y buffer of \
                 conv_out_len_eval elements",
                ng.h,
                ng.w,
                self.test_precision()
            ))
        })?;
        let conv = self.conv_params(OP, cg, x, params, conv_at, x_shared)?;
        check_len(
            OP,
            "out",
            out.len,
            ng.students * ng.batch * ng.c * (ng.h / 2) * (ng.w / 2),
        )?;
        let mut norm = NormParams {
            out: self.addr(out)?,
            train: 0,
            ..self.norm_params_without_y(OP, ng, params, norm_at, stats)?
        };
        self.with_running(OP, ng, running, running_at, &mut norm)?;
        let tile = ConvTile {
            bm: k.bm,
            bn: k.bn,
            threads: k.threads,
        };
        let wide = x_shared && wide_fits(cg, conv.param_row as usize, tile);
        let conv = ConvParams {
            wide: u32::from(wide),
            ..conv
        };
        let m = cg.batch * cg.out_h() * cg.out_w();
        let part = NormPartials {
            tile_m: u32_of(OP, "tile", k.tile_m())?,
            m_tiles: u32_of(OP, "M tiles", m.div_ceil(k.tile_m()))?,
            m_sub: k.m_sub as u32, // ≤ MAX_M_SUB
            ..NormPartials::default()
        };
        let block_tile = ConvTile {
            bm: k.tile_m(),
            ..tile
        };
        let grid = if wide {
            gemm_grid(OP, block_tile, m, cg.students * cg.cout, 1)?
        } else {
            gemm_grid(OP, block_tile, m, cg.cout, cg.students)?
        };
        let q = ConvNormParams { conv, norm, part };
        // SAFETY: x, params, stats, out and running checked above against the geometry; y is
        // neither read nor written (conv.out and norm.y are null); the grid covers (B·oh·ow,
        // cout) per student (wide: (B·oh·ow, S·cout) once, with S·param_row < 2³¹ by
        // wide_fits) in blocks of tile_m rows, whole planes (eval_kernel_for), with the
        // kernel's block size and its (bn, tile_m + pad) y tile of dynamic shared memory, which
        // eval_kernel_for kept within the device's opt-in limit.
        unsafe { self.launch_block_smem(k.name, grid, k.threads, k.smem_bytes() as u32, &q) }
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

    /// ConvNet-3 at 32 px on an H100: 32×32 planes take the narrow kernels (4 TF32 / 8 bf16
    /// register tiles per block), 16×16 and 8×8 keep the stored-y forward; 3xTF32, odd planes and a
    /// device with too little shared memory (an sm_86 card's 99 KiB) fall back.
    #[test]
    fn kernel_choice_by_plane_and_device() {
        use TestPrecision::*;
        let h100 = H100_SMEM_OPTIN;
        let k = eval_kernel_for(Tf32, &geom(32), h100).unwrap();
        assert_eq!(
            (k.name, k.m_sub, k.tile_m()),
            ("conv3x3_eval_narrow_tf32", 4, 1024)
        );
        assert!(k.smem_bytes() + STATIC_SMEM_MAX <= h100);
        let k = eval_kernel_for(Bf16, &geom(32), h100).unwrap();
        assert_eq!((k.name, k.m_sub), ("conv3x3_eval_narrow_bf16", 8));
        for small in [16, 8] {
            assert_eq!(eval_kernel_for(Tf32, &geom(small), h100), None);
            assert_eq!(eval_kernel_for(Bf16, &geom(small), h100), None);
        }
        assert_eq!(eval_kernel_for(Tf32x3, &geom(32), h100), None);
        assert_eq!(eval_kernel_for(Tf32, &geom(7), h100), None);
        assert_eq!(eval_kernel_for(Tf32, &geom(32), 99 * 1024), None);
        // 24×24 = 576 rows: not a whole number of 256-row tiles.
        assert_eq!(eval_kernel_for(Tf32, &geom(24), h100), None);
        // 48×48 = 2304 rows = 9 TF32 tiles, but 297 KB of y: more than an H100's block gets.
        assert_eq!(eval_kernel_for(Tf32, &geom(48), h100), None);
    }
}
