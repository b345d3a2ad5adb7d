//! The fused ConvNet block forward on the CUDA backend (`Backend::conv_norm_relu_pool_forward`):
//! `conv3x3_forward_norm_*` (cuda/conv.cu, its norm epilogue in cuda/conv_norm.cuh) writes y and
//! per-tile (count, mean, M2) partial statistics, and finishes the whole block tail where the tile
//! shape allows it; otherwise `norm_relu_pool_forward_partials` (cuda/norm.cu) merges the partials
//! and makes the one normalise → ReLU → pool pass, with no statistics pass over y.

use super::{check_len, check_span, gemm_grid, norm_groups, u32_of, ConvTile};
use super::{TILE_TF32, TILE_TF32X3};
use crate::backend::cuda::params::{
    ConvNormParams, ConvParams, NormParams, NormPartials, NormPartialsParams,
};
use crate::backend::cuda::{CudaBackend, CudaBuf};
use crate::backend::{ConvGeom, Mode, NormGeom, NormKind, ParamAt};
use crate::error::{Error, Result};

/// Most images one M tile of `bm` conv-GEMM rows touches when each image has `ohw` rows.
fn seg_max(bm: usize, ohw: usize, batch: usize) -> usize {
    ((bm - 1) / ohw + 2).min(batch)
}

/// Most conv register tiles one block runs back to back to hold a whole plane (its rows are
/// then done serially: 16 × 256 rows covers a 64×64 image in TF32).
pub const MAX_M_SUB: usize = 16;

/// Conv register tiles per block: enough consecutive tiles to hold a whole instance-norm plane
/// when a plane is a whole number of tiles (32×32 = 4 TF32 tiles), else 1.
fn m_sub(t: ConvTile, g: &NormGeom) -> usize {
    let ohw = g.h * g.w;
    let k = ohw / t.bm;
    if g.kind == NormKind::Instance && ohw > t.bm && ohw % t.bm == 0 && k <= MAX_M_SUB {
        k
    } else {
        1
    }
}

/// Elements of the partial statistics of a forward with `tile_m` rows per block:
/// (S, m_tiles, cout, seg_max, 3).
fn partials_len(tile_m: usize, g: &ConvGeom) -> usize {
    let ohw = g.out_h() * g.out_w();
    let m_tiles = (g.batch * ohw).div_ceil(tile_m);
    g.students * m_tiles * g.cout * seg_max(tile_m, ohw, g.batch) * 3
}

/// Whether the conv kernel can finish every output of the block tail itself with `tile_m` rows
/// per block: instance norm when each block holds whole planes; eval-mode batch norm and no norm
/// when each block holds whole 2×2 pooling windows (blocks and planes nest, and both start on
/// even rows). Train-mode batch norm needs the whole batch's statistics first.
fn fully_fused(tile_m: usize, g: &NormGeom, mode: Mode) -> bool {
    let ohw = g.h * g.w;
    match (g.kind, mode) {
        (NormKind::Instance, _) => tile_m % ohw == 0,
        (NormKind::Batch, Mode::Train) => false,
        _ => {
            g.h % 2 == 0
                && g.w % 2 == 0
                && tile_m % (2 * g.w) == 0
                && (tile_m % ohw == 0 || ohw % tile_m == 0)
        }
    }
}

impl CudaBackend {
    /// Scratch for either precision's tile, so a backend whose precision changes keeps working.
    pub(super) fn conv_norm_partials_len(&self, g: &ConvGeom) -> usize {
        // One register tile per block gives the most partials (more, shorter tiles); the bf16
        // tile (ops/bf16.rs) has 3xTF32's 128 rows.
        partials_len(TILE_TF32.bm, g)
            .max(partials_len(TILE_TF32X3.bm, g))
            .max(partials_len(super::bf16::TILE_BF16.bm, g))
    }

    /// Batch norm's running statistics into the norm params (checked against the geometry).
    pub(super) fn with_running(
        &self,
        op: &str,
        g: &NormGeom,
        running: &CudaBuf<f32>,
        running_at: ParamAt,
        p: &mut NormParams,
    ) -> Result<()> {
        if g.kind == NormKind::Batch {
            check_len(op, "running", running.len, g.students * running_at.row)?;
            check_span(op, "running mean", running_at.weight, g.c, running_at.row)?;
            check_span(op, "running var", running_at.bias, g.c, running_at.row)?;
            p.running = self.addr(running)?;
            p.running_row = running_at.row as u64;
            p.rmean_off = running_at.weight as u64;
            p.rvar_off = running_at.bias as u64;
        }
        Ok(())
    }

    /// `Backend::conv_norm_relu_pool_forward` (see there for the shapes).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_norm_forward(
        &self,
        cg: &ConvGeom,
        ng: &NormGeom,
        mode: Mode,
        x: &CudaBuf<f32>,
        x_shared: bool,
        params: &CudaBuf<f32>,
        conv_at: ParamAt,
        norm_at: ParamAt,
        running: &CudaBuf<f32>,
        running_at: ParamAt,
        y: &CudaBuf<f32>,
        stats: &CudaBuf<f32>,
        scratch: &CudaBuf<f32>,
        out: &CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "conv_norm_relu_pool_forward";
        let (oh, ow) = (cg.out_h(), cg.out_w());
        if (ng.students, ng.batch, ng.c, ng.h, ng.w) != (cg.students, cg.batch, cg.cout, oh, ow) {
            return Err(Error::shape(format!(
                "{OP}: the norm geometry {ng:?} does not describe the conv output of {cg:?}"
            )));
        }
        if mode == Mode::Eval && y.len == 0 {
            // The test-pass workspace holds no y (conv_out_len_eval): the eval kernel.
            return self.conv_norm_eval(
                cg, ng, x, x_shared, params, conv_at, norm_at, running, running_at, stats, out,
            );
        }
        let conv = self.conv_params(OP, cg, x, params, conv_at, x_shared)?;
        let y_len = cg.students * cg.batch * cg.cout * oh * ow;
        check_len(OP, "y", y.len, y_len)?;
        let conv = ConvParams {
            out: self.addr(y)?,
            ..conv
        };
        let norm = self.norm_params(OP, ng, y, params, norm_at, stats)?;
        check_len(
            OP,
            "out",
            out.len,
            ng.students * ng.batch * ng.c * (ng.h / 2) * (ng.w / 2),
        )?;
        let mut norm = NormParams {
            out: self.addr(out)?,
            train: u32::from(mode == Mode::Train),
            ..norm
        };
        self.with_running(OP, ng, running, running_at, &mut norm)?;
        // Eval mode runs the test precision; a shared input one wide GEMM where it can (bf16.rs).
        let k = self.forward_kernel(cg, mode, x_shared, true, conv.param_row as usize);
        let (kernel, tile) = (k.name, k.tile);
        let conv = ConvParams {
            wide: u32::from(k.wide),
            ..conv
        };
        let m_sub = m_sub(tile, ng);
        let tile_m = tile.bm * m_sub;
        let need = partials_len(tile_m, cg);
        if scratch.len < need {
            return Err(Error::shape(format!(
                "{OP}: `scratch` has {} elements, needs {need} (conv_norm_scratch_len)",
                scratch.len
            )));
        }
        let ohw = oh * ow;
        let m = cg.batch * ohw;
        let fused = fully_fused(tile_m, ng, mode);
        let part = NormPartials {
            partials: self.addr(scratch)?,
            tile_m: u32_of(OP, "tile", tile_m)?,
            m_tiles: u32_of(OP, "M tiles", m.div_ceil(tile_m))?,
            seg_max: u32_of(OP, "segments", seg_max(tile_m, ohw, cg.batch))?,
            fused: u32::from(fused),
            m_sub: m_sub as u32, // ≤ MAX_M_SUB
            unused: 0,
        };
        let block_tile = ConvTile { bm: tile_m, ..tile };
        let grid = if k.wide {
            gemm_grid(OP, block_tile, m, cg.students * cg.cout, 1)?
        } else {
            gemm_grid(OP, block_tile, m, cg.cout, cg.students)?
        };
        let q = ConvNormParams { conv, norm, part };
        // SAFETY: x, params, y, stats, out, running and scratch sizes checked above against the
        // geometry (scratch ≥ the (S, m_tiles, cout, seg_max, 3) partials of this tile); the grid
        // covers (B·oh·ow, cout) per student (wide: (B·oh·ow, S·cout) once, the students'
        // columns side by side) with blocks of part.tile_m = m_sub · BM rows (the kernel's own
        // register tile, run m_sub times) and the kernel's block size.
        unsafe { self.launch_block(kernel, grid, tile.threads, &q)? };
        if !fused {
            let p = NormPartialsParams { norm, part };
            // SAFETY: as above; one block per normalisation group reads the partials the conv
            // kernel wrote for that group's images and channel.
            unsafe {
                self.launch(
                    "norm_relu_pool_forward_partials",
                    self.grid_for_groups(norm_groups(ng)),
                    &p,
                )?
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(kind: NormKind, hw: usize) -> NormGeom {
        NormGeom {
            students: 1,
            batch: 4,
            c: 8,
            h: hw,
            w: hw,
            kind,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    fn rows(t: ConvTile, g: &NormGeom) -> usize {
        t.bm * m_sub(t, g)
    }

    /// ConvNet-3 at 32 px: instance norm fuses fully at every block in both precisions (a 32×32
    /// plane is 4 TF32 or 8 3xTF32 register tiles run by one block); eval-mode batch norm fuses
    /// at every size; train-mode batch norm never; odd planes keep their norm pass.
    #[test]
    fn which_shapes_fuse_fully() {
        use NormKind::*;
        for t in [TILE_TF32, TILE_TF32X3] {
            for hw in [32, 16, 8] {
                let g = geom(Instance, hw);
                assert!(fully_fused(rows(t, &g), &g, Mode::Train), "{hw}");
                assert!(fully_fused(rows(t, &g), &g, Mode::Eval), "{hw}");
            }
        }
        assert_eq!(m_sub(TILE_TF32, &geom(Instance, 32)), 4);
        assert_eq!(m_sub(TILE_TF32X3, &geom(Instance, 32)), 8);
        assert_eq!(m_sub(TILE_TF32, &geom(Batch, 32)), 1);
        for hw in [32, 16, 8] {
            let g = geom(Batch, hw);
            assert!(fully_fused(rows(TILE_TF32, &g), &g, Mode::Eval), "{hw}");
            assert!(!fully_fused(rows(TILE_TF32, &g), &g, Mode::Train), "{hw}");
        }
        let (odd, planes) = (geom(Batch, 7), geom(None, 18));
        assert!(!fully_fused(rows(TILE_TF32, &odd), &odd, Mode::Eval));
        assert!(!fully_fused(rows(TILE_TF32, &planes), &planes, Mode::Eval));
        let big = geom(Instance, 18);
        assert!(!fully_fused(rows(TILE_TF32, &big), &big, Mode::Train));
    }

    /// A tile of 256 rows over 324-row images touches at most 2 images; over 64-row images 4.
    #[test]
    fn segments_per_tile() {
        assert_eq!(seg_max(256, 324, 9), 2);
        assert_eq!(seg_max(256, 64, 9), 5);
        assert_eq!(seg_max(256, 64, 3), 3);
    }
}
