//! The general convolution on the CUDA backend (`Backend::conv2d_forward` / `conv2d_backward`):
//! k×k window, stride, padding, optional bias (ResNet, VGG, AlexNet, LeNet layers), as implicit
//! GEMMs on conv_gemm.cuh's main loop in cuda/conv2d.cu, one kernel per pass and precision.
//! Reference: `crate::ops::conv2d::cpu`.

use super::{check_len, check_span, gemm_grid, param_row, u32_of, ConvTile};
use super::{GEMM_BK, GRID_YZ_MAX, MAX_SPLITS, MIN_TILES_PER_SPLIT};
use super::{TILE_TF32, TILE_TF32X3, TILE_TF32_DW};
use crate::backend::cuda::params::KernelParams;
use crate::backend::cuda::{ConvPrecision, CudaBackend, CudaBuf};
use crate::backend::ParamAt;
use crate::error::{Error, Result};
use crate::ops::conv2d::Conv2dGeom;
use cudarc::driver::DeviceRepr;

/// cuda/conv2d.cu `Conv2dParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Conv2dParams {
    pub x: u64,      // (S, B, cin, h, w)
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
    pub k: u32,
    pub stride: u32,
    pub pad: u32,
    /// Weight gradient: K chunks per student and window row (grid z = S · k · k_splits).
    pub k_splits: u32,
    pub has_bias: u32,
    /// Forward: this launch's window row (0 writes y, later rows add). Backward input: the
    /// window row and column phase ρ = kx mod stride (ky = ρ = 0 writes dx, later ones add).
    pub ky: u32,
    pub rho: u32,
    pub unused: u32,
}
const _: () = assert!(size_of::<Conv2dParams>() == 128);

// SAFETY: #[repr(C)] struct of u64/u32 fields mirroring cuda/conv2d.cu's, sizes asserted on both
// sides; u64 fields carry device addresses.
unsafe impl DeviceRepr for Conv2dParams {}
unsafe impl KernelParams for Conv2dParams {}

/// Widest window: the kernels keep one presence bit per window column in a u32.
const MAX_K: usize = 32;

/// The kernels and tiles of one precision: (forward, input gradient, weight gradient).
fn kernels(p: ConvPrecision) -> [(&'static str, ConvTile); 3] {
    match p {
        ConvPrecision::Tf32x3 => [
            ("conv2d_forward_tf32x3", TILE_TF32X3),
            ("conv2d_backward_input_tf32x3", TILE_TF32X3),
            ("conv2d_backward_weight_tf32x3", TILE_TF32X3),
        ],
        ConvPrecision::Tf32 => [
            ("conv2d_forward_tf32", TILE_TF32),
            ("conv2d_backward_input_tf32", TILE_TF32),
            ("conv2d_backward_weight_tf32", TILE_TF32_DW),
        ],
    }
}

/// K chunks per student and window row of the weight gradient (K = B·oh·ow), as conv3x3's
/// `weight_grad_splits`, with the k window rows also on grid z.
fn weight_grad_splits(g: &Conv2dGeom) -> u32 {
    let tiles = (g.batch * g.out_h() * g.out_w()).div_ceil(GEMM_BK);
    let by_grid = (GRID_YZ_MAX / (g.students * g.k).max(1)).max(1);
    (tiles / MIN_TILES_PER_SPLIT).clamp(1, MAX_SPLITS.min(by_grid)) as u32
}

impl CudaBackend {
    /// The parts of Conv2dParams every pass shares, after checking the geometry, x and params.
    fn conv2d_params(
        &self,
        op: &str,
        g: &Conv2dGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
    ) -> Result<Conv2dParams> {
        if g.k == 0 || g.stride == 0 || g.h + 2 * g.pad < g.k || g.w + 2 * g.pad < g.k {
            return Err(Error::shape(format!(
                "{op}: a {k}×{k} window with stride {s} and padding {p} does not fit a {h}×{w} input",
                k = g.k,
                s = g.stride,
                p = g.pad,
                h = g.h,
                w = g.w
            )));
        }
        if g.k > MAX_K {
            return Err(Error::shape(format!(
                "{op}: a {k}×{k} window is wider than the CUDA kernels' {MAX_K} columns",
                k = g.k
            )));
        }
        // The kernels index inside one student's tensors in 32 bits (signed gather offsets).
        let (oh, ow) = (g.out_h(), g.out_w());
        let per_student = g.batch * g.cin.max(g.cout) * (g.h * g.w).max(oh * ow);
        if per_student >= 1 << 31 || g.cout * g.cin * g.k * g.k >= 1 << 31 {
            return Err(Error::shape(format!(
                "{op}: {} images of {}×{} with {}/{} channels per student exceed the kernels' \
                 32-bit indexing; use a smaller batch",
                g.batch, g.h, g.w, g.cin, g.cout
            )));
        }
        let row = param_row(op, g.students, params.len, at)?;
        check_span(op, "conv weight", at.weight, g.weight_len(), row)?;
        if g.bias {
            check_span(op, "conv bias", at.bias, g.cout, row)?;
        }
        check_len(op, "x", x.len, g.in_len())?;
        Ok(Conv2dParams {
            x: self.addr(x)?,
            params: self.addr(params)?,
            param_row: row as u64,
            w_off: at.weight as u64,
            b_off: if g.bias { at.bias as u64 } else { 0 },
            students: u32_of(op, "students", g.students)?,
            batch: u32_of(op, "batch", g.batch)?,
            cin: u32_of(op, "cin", g.cin)?,
            cout: u32_of(op, "cout", g.cout)?,
            h: u32_of(op, "h", g.h)?,
            w: u32_of(op, "w", g.w)?,
            oh: u32_of(op, "out h", oh)?,
            ow: u32_of(op, "out w", ow)?,
            k: g.k as u32, // ≤ MAX_K
            stride: u32_of(op, "stride", g.stride)?,
            pad: u32_of(op, "pad", g.pad)?,
            k_splits: 1,
            has_bias: u32::from(g.bias),
            ..Conv2dParams::default()
        })
    }

    /// `Backend::conv2d_forward`: x (S, B, cin, h, w) → y (S, B, cout, oh, ow).
    pub(in crate::backend::cuda) fn conv2d_fwd(
        &self,
        g: &Conv2dGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        y: &CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "conv2d_forward";
        let p = self.conv2d_params(OP, g, x, params, at)?;
        check_len(OP, "y", y.len, g.out_len())?;
        if g.batch == 0 {
            return Ok(());
        }
        let p = Conv2dParams {
            out: self.addr(y)?,
            ..p
        };
        let [(name, tile), _, _] = kernels(self.conv_precision());
        let grid = gemm_grid(
            OP,
            tile,
            g.batch * g.out_h() * g.out_w(),
            g.cout,
            g.students,
        )?;
        for ky in 0..p.k {
            let p = Conv2dParams { ky, ..p };
            // SAFETY: x, params, y sizes checked against the geometry above, per-student
            // offsets < 2³¹ and k ≤ 32 (the kernel's column bits); the grid covers (B·oh·ow,
            // cout) per student with the kernel's own tile and block size, the kernel
            // bounds-checks the edges; ky < k.
            unsafe { self.launch_block(name, grid, tile.threads, &p)? };
        }
        Ok(())
    }

    /// `Backend::conv2d_backward`: dy (S, B, cout, oh, ow) → dx (S, B, cin, h, w) when asked,
    /// dW (and db) written into grads (S, P) at `at`.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::backend::cuda) fn conv2d_bwd(
        &self,
        g: &Conv2dGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        dy: &CudaBuf<f32>,
        dx: Option<&CudaBuf<f32>>,
        grads: &CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "conv2d_backward";
        let p = self.conv2d_params(OP, g, x, params, at)?;
        check_len(OP, "dy", dy.len, g.out_len())?;
        check_len(OP, "grads", grads.len, params.len)?;
        if let Some(dx) = dx {
            check_len(OP, "dx", dx.len, x.len)?;
        }
        let k_splits = weight_grad_splits(g);
        let p = Conv2dParams {
            dy: self.addr(dy)?,
            grads: self.addr(grads)?,
            k_splits,
            ..p
        };
        let [_, (dx_name, dx_tile), (dw_name, dw_tile)] = kernels(self.conv_precision());
        let mut grid_w = gemm_grid(OP, dw_tile, g.cout, g.cin * g.k, g.students)?;
        let z = g.students * g.k * k_splits as usize;
        if z > GRID_YZ_MAX {
            return Err(Error::shape(format!(
                "{OP}: {} students × {} window rows exceed CUDA's grid limit of {GRID_YZ_MAX}",
                g.students, g.k
            )));
        }
        grid_w[2] = z as u32;
        let slots = (g.students * g.weight_len()) as u64;
        // SAFETY: x, params, dy, grads sizes checked against the geometry; the clear kernel
        // zeroes the S weight slots (cout·cin·k·k at w_off), the weight kernel's grid covers
        // (cout, cin·k) per student, window row and K chunk and adds into those slots.
        unsafe {
            self.launch("conv2d_backward_weight_clear", self.grid_for(slots), &p)?;
            if g.batch > 0 {
                self.launch_block(dw_name, grid_w, dw_tile.threads, &p)?;
            }
        }
        if g.bias {
            let pairs = (g.students * g.cout) as u64;
            // SAFETY: as above; the bias span (cout at b_off) was checked to fit the row.
            unsafe { self.launch("conv2d_backward_bias", self.grid_for_groups(pairs), &p)? };
        }
        if let (Some(dx), true) = (dx, g.batch > 0) {
            let p = Conv2dParams {
                out: self.addr(dx)?,
                ..p
            };
            let grid = gemm_grid(OP, dx_tile, g.batch * g.h * g.w, g.cin, g.students)?;
            // One launch per window row and column phase (cuda/conv2d.cu says why).
            for ky in 0..p.k {
                for rho in 0..p.stride.min(p.k) {
                    let p = Conv2dParams { ky, rho, ..p };
                    // SAFETY: dx has the size of x, checked above; the grid covers (B·h·w, cin)
                    // per student with the kernel's tile and block size; ky < k, ρ < min(s, k).
                    unsafe { self.launch_block(dx_name, grid, dx_tile.threads, &p)? };
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(students: usize, batch: usize, hw: usize, k: usize) -> Conv2dGeom {
        Conv2dGeom {
            students,
            batch,
            cin: 64,
            cout: 64,
            h: hw,
            w: hw,
            k,
            stride: 1,
            pad: k / 2,
            bias: false,
        }
    }

    /// Large K splits up to MAX_SPLITS; grid z (S · k · splits) stays inside CUDA's limit.
    #[test]
    fn weight_grad_splits_stay_inside_the_grid() {
        assert_eq!(weight_grad_splits(&geom(1, 1, 8, 3)), 1);
        assert_eq!(weight_grad_splits(&geom(1, 256, 32, 3)), MAX_SPLITS as u32);
        for (s, k) in [(1000, 3), (4000, 11), (65_535, 1)] {
            let g = geom(s, 256, 32, k);
            let z = s * k * weight_grad_splits(&g) as usize;
            assert!(z <= GRID_YZ_MAX, "{s} {k}: {z}");
        }
    }
}
