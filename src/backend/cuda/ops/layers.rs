//! The layer-list ops of the non-ConvNet students on the CUDA backend (`Backend::norm_*`,
//! `relu_*`, `pool_*`; kernels in cuda/layers.cu). Each launcher runs the CPU reference's own
//! shape checks (`crate::ops::{norm, pool}::check`), so both backends refuse the same inputs with
//! the same messages, then fills the kernel's params struct and launches.

use std::ffi::c_void;

use cudarc::driver::DeviceRepr;

use super::{check_len, u32_of};
use crate::backend::cuda::params::KernelParams;
use crate::backend::cuda::{CudaBackend, CudaBuf};
use crate::backend::{Mode, NormLayerGeom, NormLayerKind, ParamAt, PoolGeom, PoolKind};
use crate::error::{Error, Result};

/// cuda/layers.cu `NormLayerParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NormLayerParams {
    pub x: u64,       // (S, B, c, h, w)
    pub params: u64,  // (S, param_row)
    pub running: u64, // (S, running_row), batch norm only (0 otherwise)
    pub stats: u64,   // group (S, B, groups, 2), batch (S, c, 2)
    pub dy: u64,      // (S, B, c, h, w), backward only
    pub out: u64,     // forward y, backward dx: (S, B, c, h, w)
    pub grads: u64,   // (S, param_row), backward only
    pub param_row: u64,
    pub w_off: u64,
    pub b_off: u64,
    pub running_row: u64,
    pub rmean_off: u64,
    pub rvar_off: u64,
    pub students: u32,
    pub batch: u32,
    pub c: u32,
    pub hw: u32,
    /// Group norm: groups per image; 0: batch norm.
    pub groups: u32,
    /// 1 train mode, 0 eval mode (batch norm only).
    pub train: u32,
    pub eps: f32,
    pub momentum: f32,
}
const _: () = assert!(size_of::<NormLayerParams>() == 136);

/// cuda/layers.cu `ReluParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReluParams {
    pub x: u64,   // forward x, backward the forward's y: (n)
    pub dy: u64,  // (n), backward only
    pub out: u64, // forward y, backward dx: (n)
    pub n: u64,
}
const _: () = assert!(size_of::<ReluParams>() == 32);

/// cuda/layers.cu `PoolParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolParams {
    pub x: u64,   // (planes, h, w)
    pub dy: u64,  // (planes, oh, ow), backward only
    pub out: u64, // forward y (planes, oh, ow), backward dx (planes, h, w)
    pub planes: u64,
    pub h: u32,
    pub w: u32,
    pub oh: u32,
    pub ow: u32,
    pub k: u32,
    pub stride: u32,
    pub pad: u32,
    /// 0 max, 1 average.
    pub kind: u32,
}
const _: () = assert!(size_of::<PoolParams>() == 64);

// SAFETY: #[repr(C)] structs of u64/u32/f32 fields mirroring the CUDA structs, sizes asserted on
// both sides; u64 fields carry device addresses.
unsafe impl DeviceRepr for NormLayerParams {}
unsafe impl DeviceRepr for ReluParams {}
unsafe impl DeviceRepr for PoolParams {}
unsafe impl KernelParams for NormLayerParams {}
unsafe impl KernelParams for ReluParams {}
unsafe impl KernelParams for PoolParams {}

/// Normalisation groups ("pairs" of saved statistics) of `g`: one block each.
fn pairs(g: &NormLayerGeom) -> u64 {
    (g.stats_len() / 2) as u64
}

impl CudaBackend {
    /// The params both norm passes share, after the reference's checks of the geometry, γ/β
    /// span and the x, stats (and `bufs`) lengths.
    #[allow(clippy::too_many_arguments)] // the norm ops' own arguments, as the two callers hold them
    fn norm_layer_params(
        &self,
        op: &str,
        g: &NormLayerGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        stats: &CudaBuf<f32>,
        bufs: &[(&str, usize)],
    ) -> Result<NormLayerParams> {
        let mut all = vec![("x", x.len, g.len()), ("stats", stats.len, g.stats_len())];
        all.extend(bufs.iter().map(|&(n, l)| (n, l, g.len())));
        crate::ops::norm::check(g, at, None, op, &all)?;
        check_len(op, "params", params.len, g.students * at.row)?;
        let hw = g.h * g.w;
        // One group's elements are indexed in 32 bits in the kernel (FastDiv: below 2³¹).
        let group = match g.kind {
            NormLayerKind::Group { groups } => g.c / groups * hw,
            NormLayerKind::Batch => g.batch * hw,
        };
        if group >= 1 << 31 {
            return Err(Error::shape(format!(
                "{op}: a normalisation group of {group} elements does not fit the kernel's 31-bit index"
            )));
        }
        Ok(NormLayerParams {
            x: self.addr(x)?,
            params: self.addr(params)?,
            stats: self.addr(stats)?,
            param_row: at.row as u64,
            w_off: at.weight as u64,
            b_off: at.bias as u64,
            students: u32_of(op, "students", g.students)?,
            batch: u32_of(op, "batch", g.batch)?,
            c: u32_of(op, "channels", g.c)?,
            hw: u32_of(op, "h·w", hw)?,
            groups: match g.kind {
                NormLayerKind::Group { groups } => u32_of(op, "groups", groups)?,
                NormLayerKind::Batch => 0,
            },
            eps: g.eps,
            momentum: g.momentum,
            ..Default::default()
        })
    }

    /// `Backend::norm_forward` (see there for the shapes).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn norm_layer_forward(
        &self,
        g: &NormLayerGeom,
        mode: Mode,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        running: &CudaBuf<f32>,
        running_at: ParamAt,
        stats: &CudaBuf<f32>,
        y: &CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "norm forward";
        let mut p = self.norm_layer_params(OP, g, x, params, at, stats, &[("y", y.len)])?;
        crate::ops::norm::check(g, at, Some((running.len, running_at)), OP, &[])?;
        p.out = self.addr(y)?;
        p.train = u32::from(mode == Mode::Train);
        if g.kind == NormLayerKind::Batch {
            p.running = self.addr(running)?;
            p.running_row = running_at.row as u64;
            p.rmean_off = running_at.weight as u64;
            p.rvar_off = running_at.bias as u64;
        }
        if g.is_empty() {
            return Ok(());
        }
        // SAFETY: x, y, stats, params and (batch norm) running checked against the geometry
        // above; one block per normalisation group, each writing only its group's y and stats.
        unsafe { self.launch("norm_layer_forward", self.grid_for_groups(pairs(g)), &p) }
    }

    /// `Backend::norm_backward` (see there for the shapes).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn norm_layer_backward(
        &self,
        g: &NormLayerGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        stats: &CudaBuf<f32>,
        dy: &CudaBuf<f32>,
        dx: &CudaBuf<f32>,
        grads: &CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "norm backward";
        let mut p = self.norm_layer_params(
            OP,
            g,
            x,
            params,
            at,
            stats,
            &[("dy", dy.len), ("dx", dx.len)],
        )?;
        check_len(OP, "grads", grads.len, g.students * at.row)?;
        p.dy = self.addr(dy)?;
        p.out = self.addr(dx)?;
        p.grads = self.addr(grads)?;
        if g.is_empty() {
            return Ok(());
        }
        let sc = (g.students * g.c) as u64;
        // SAFETY: x, dy, dx, stats, params and grads checked against the geometry above; the
        // first kernel writes dx by normalisation group, the second γ/β by (student, channel).
        unsafe {
            self.launch("norm_layer_backward", self.grid_for_groups(pairs(g)), &p)?;
            self.launch("norm_layer_backward_params", self.grid_for_groups(sc), &p)
        }
    }

    /// `Backend::relu_forward` / `relu_backward` (`dy` given): out = max(x, 0) or dy where x > 0.
    pub(super) fn relu(
        &self,
        x: &CudaBuf<f32>,
        dy: Option<&CudaBuf<f32>>,
        out: &CudaBuf<f32>,
    ) -> Result<()> {
        let (op, kernel) = match dy {
            None => ("relu forward", "relu_forward"),
            Some(_) => ("relu backward", "relu_backward"),
        };
        let oname = if dy.is_some() { "dx" } else { "y" };
        check_len(op, oname, out.len, x.len)?;
        let mut p = ReluParams {
            x: self.addr(x)?,
            out: self.addr(out)?,
            n: x.len as u64,
            ..Default::default()
        };
        if let Some(dy) = dy {
            check_len(op, "dy", dy.len, x.len)?;
            p.dy = self.addr(dy)?;
        }
        if p.n == 0 {
            return Ok(());
        }
        // SAFETY: x, out (and dy) hold n elements each, checked above.
        unsafe { self.launch(kernel, self.grid_for(p.n), &p) }
    }

    /// `Backend::pool_forward` / `pool_backward` (`dy` given, out = dx).
    pub(super) fn pool(
        &self,
        g: &PoolGeom,
        x: &CudaBuf<f32>,
        dy: Option<&CudaBuf<f32>>,
        out: &CudaBuf<f32>,
    ) -> Result<()> {
        let (op, kernel) = match dy {
            None => ("pool forward", "pool_forward"),
            Some(_) => ("pool backward", "pool_backward"),
        };
        match dy {
            None => crate::ops::pool::check(
                g,
                op,
                &[("x", x.len, g.in_len()), ("y", out.len, g.out_len())],
            )?,
            Some(dy) => crate::ops::pool::check(
                g,
                op,
                &[
                    ("x", x.len, g.in_len()),
                    ("dy", dy.len, g.out_len()),
                    ("dx", out.len, g.in_len()),
                ],
            )?,
        }
        if g.planes() == 0 {
            return Ok(());
        }
        let u = |what, v| u32_of(op, what, v);
        // Plane offsets are 32-bit in the kernel (indices within one plane).
        if (g.h * g.w).max(g.out_h() * g.out_w()) >= 1 << 31 {
            return Err(Error::shape(format!(
                "{op}: a {}×{} plane does not fit the kernel's 31-bit index",
                g.h, g.w
            )));
        }
        let p = PoolParams {
            x: self.addr(x)?,
            dy: dy.map(|d| self.addr(d)).transpose()?.unwrap_or(0),
            out: self.addr(out)?,
            planes: g.planes() as u64,
            h: u("h", g.h)?,
            w: u("w", g.w)?,
            oh: u("oh", g.out_h())?,
            ow: u("ow", g.out_w())?,
            k: u("k", g.k)?,
            stride: u("stride", g.stride)?,
            pad: u("pad", g.pad)?,
            kind: match g.kind {
                PoolKind::Max => 0,
                PoolKind::Avg => 1,
            },
        };
        let n = if dy.is_some() {
            g.in_len()
        } else {
            g.out_len()
        };
        // SAFETY: x, out (and dy) checked against the geometry above; one thread per output
        // (forward) or per input (backward), each writing only its own element.
        unsafe { self.launch(kernel, self.grid_for(n as u64), &p) }
    }
}

/// The emulated entries of cuda/layers.cu's kernels (`emu.rs` falls back to these).
pub(in crate::backend::cuda) fn emu_entry(
    kernel: &str,
) -> Option<crate::backend::cuda::emu::EmuEntry> {
    unsafe extern "C" {
        fn emu_norm_layer_forward(grid: *const u32, block: *const u32, params: *const c_void);
        fn emu_norm_layer_backward(grid: *const u32, block: *const u32, params: *const c_void);
        fn emu_norm_layer_backward_params(
            grid: *const u32,
            block: *const u32,
            params: *const c_void,
        );
        fn emu_relu_forward(grid: *const u32, block: *const u32, params: *const c_void);
        fn emu_relu_backward(grid: *const u32, block: *const u32, params: *const c_void);
        fn emu_pool_forward(grid: *const u32, block: *const u32, params: *const c_void);
        fn emu_pool_backward(grid: *const u32, block: *const u32, params: *const c_void);
    }
    Some(match kernel {
        "norm_layer_forward" => emu_norm_layer_forward,
        "norm_layer_backward" => emu_norm_layer_backward,
        "norm_layer_backward_params" => emu_norm_layer_backward_params,
        "relu_forward" => emu_relu_forward,
        "relu_backward" => emu_relu_backward,
        "pool_forward" => emu_pool_forward,
        "pool_backward" => emu_pool_backward,
        _ => return None,
    })
}
