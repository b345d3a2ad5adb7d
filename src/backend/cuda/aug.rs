//! The CUDA launchers of the augmentations (cuda/aug.cu) and of ZCA whitening (cuda/zca.cu).
//!
//! The draws of a step are sampled on the host (`crate::aug::sample`) and uploaded as they are:
//! `StudentDraws` and `ImageDraws` are `#[repr(C)]` structs of 4-byte fields, declared identically
//! in cuda/aug.cu, so the kernels read bitwise the parameters the CPU reference uses.
//! An [`AugWorkspace`] holds the uploaded draws and the scratch batch of the out-of-place ops; a
//! caller on the hot path keeps one per batch shape and rewrites its draws each step
//! ([`CudaBackend::write_draws`]), so the addresses the kernels see stay fixed; `Backend::augment`
//! makes a fresh one per call.

use super::ops::{check_len, u32_of};
use super::params::{AugParams, ZcaParams};
use super::{CudaBackend, CudaBuf};
use crate::aug::draws::DSA_OPS;
use crate::aug::draws::{
    OP_COLOR, OP_CROP, OP_CUTMIX, OP_CUTOUT, OP_FLIP, OP_MIXUP, OP_ROTATE, OP_SCALE,
};
use crate::aug::StudentDraws;
use crate::aug::{check_draws, dsa_params, AugPlan, BatchDims, BatchDraws, ImageDraws};
use crate::error::{Error, Result};

/// u32 words of one `StudentDraws` / `ImageDraws` (all their fields are 4 bytes wide).
const STUDENT_WORDS: usize = size_of::<StudentDraws>() / 4;
const IMAGE_WORDS: usize = size_of::<ImageDraws>() / 4;

/// The ops that write out of place (cuda/aug.cu OP_MOVES): scale, rotate, crop, mixup, cutmix.
const MOVES: u32 = OP_SCALE | OP_ROTATE | OP_CROP | OP_MIXUP | OP_CUTMIX;

/// Every op in the order `crate::aug::plan::apply_student` runs them, with its kernel.
const OPS: [(u32, &str); 8] = [
    (OP_SCALE, "aug_warp"),
    (OP_ROTATE, "aug_warp"),
    (OP_FLIP, "aug_flip"),
    (OP_COLOR, "aug_color"),
    (OP_CROP, "aug_crop"),
    (OP_CUTOUT, "aug_cutout"),
    (OP_MIXUP, "aug_mixup"),
    (OP_CUTMIX, "aug_cutmix"),
];

/// The device side of one cohort step's augmentation.
pub struct AugWorkspace {
    dims: BatchDims,
    /// (S, 7) u32: `StudentDraws`.
    students: CudaBuf<u32>,
    /// (S, B, 13) u32: `ImageDraws`.
    images: CudaBuf<u32>,
    /// (S, B, C, H, W): the other buffer of the out-of-place ops.
    scratch: CudaBuf<f32>,
    /// OR of every student's ops: the kernels a step launches.
    ops: u32,
    /// Some student ran an odd number of out-of-place ops: its batch ends in scratch.
    copy_back: bool,
}

impl AugWorkspace {
    pub fn dims(&self) -> BatchDims {
        self.dims
    }
}

fn student_words(s: &[StudentDraws]) -> &[u32] {
    // SAFETY: StudentDraws is #[repr(C)] with STUDENT_WORDS 4-byte fields and no padding (size
    // asserted in draws.rs and cuda/aug.cu); its alignment is 4.
    unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u32, s.len() * STUDENT_WORDS) }
}

fn image_words(s: &[ImageDraws]) -> &[u32] {
    // SAFETY: as for `student_words`, IMAGE_WORDS 4-byte fields.
    unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u32, s.len() * IMAGE_WORDS) }
}

impl CudaBackend {
    /// A workspace for batches of `dims` (draws zero: no op runs until `write_draws`).
    pub fn aug_workspace(&self, dims: BatchDims) -> Result<AugWorkspace> {
        Ok(AugWorkspace {
            dims,
            students: self.alloc_elems(dims.students * STUDENT_WORDS)?,
            images: self.alloc_elems(dims.students * dims.batch * IMAGE_WORDS)?,
            scratch: self.alloc_elems(dims.len())?,
            ops: 0,
            copy_back: false,
        })
    }

    /// A workspace for augmenting from an epoch's draw table (`Backend::augment_at`): its launch
    /// list is every op `plan` can draw, fixed for the run so that a recorded step replays it;
    /// each kernel skips the students whose draws of the step leave its op out.
    pub fn aug_table_workspace(&self, plan: &AugPlan, dims: BatchDims) -> Result<AugWorkspace> {
        let mut ws = self.aug_workspace(dims)?;
        ws.ops = match plan {
            AugPlan::None => 0,
            AugPlan::Dsa { .. } => DSA_OPS.iter().fold(0, |acc, op| acc | op),
            AugPlan::Mixup { .. } => OP_MIXUP,
            AugPlan::Cutmix { .. } => OP_CUTMIX,
        };
        // aug_copy_back copies only the students whose batch ended in scratch.
        ws.copy_back = ws.ops & MOVES != 0;
        Ok(ws)
    }

    /// `Backend::augment_at`: the step's draws copied on the device from the table (steps,
    /// stride) at the clock's step into the workspace, then `augment_with`.
    pub(super) fn augment_at_table(
        &self,
        plan: &AugPlan,
        clock: &CudaBuf<u32>,
        table: &CudaBuf<u32>,
        stride: usize,
        ws: &mut AugWorkspace,
        x: &mut CudaBuf<f32>,
    ) -> Result<()> {
        let student_words = ws.students.len;
        self.step_words_kernel(clock, table, stride, 0, &mut ws.students)?;
        self.step_words_kernel(clock, table, stride, student_words, &mut ws.images)?;
        self.augment_with(plan, ws, x)
    }

    /// Checks one step's draws against the workspace's batch shape and uploads them.
    pub fn write_draws(&self, draws: &BatchDraws, ws: &mut AugWorkspace) -> Result<()> {
        check_draws(draws, ws.dims)?;
        self.upload_into(student_words(&draws.students), &mut ws.students.mem, true)?;
        self.upload_into(image_words(&draws.images), &mut ws.images.mem, true)?;
        ws.ops = draws.students.iter().fold(0, |acc, s| acc | s.ops);
        ws.copy_back = draws
            .students
            .iter()
            .any(|s| (s.ops & MOVES).count_ones() % 2 == 1);
        Ok(())
    }

    /// The draws as the kernels read them, downloaded (for checking the upload bit for bit).
    pub fn read_draws(&self, ws: &AugWorkspace) -> Result<BatchDraws> {
        let words = self.download_elems(&ws.students)?;
        let mut students = vec![StudentDraws::default(); ws.dims.students];
        let words_i = self.download_elems(&ws.images)?;
        let mut images = vec![ImageDraws::default(); ws.dims.students * ws.dims.batch];
        // SAFETY: the destinations hold exactly words.len() / words_i.len() u32 words (lengths
        // from the same dims), and every bit pattern is a valid f32 / i32 / u32 field.
        unsafe {
            std::ptr::copy_nonoverlapping(
                words.as_ptr(),
                students.as_mut_ptr() as *mut u32,
                words.len(),
            );
            std::ptr::copy_nonoverlapping(
                words_i.as_ptr(),
                images.as_mut_ptr() as *mut u32,
                words_i.len(),
            );
        }
        Ok(BatchDraws { students, images })
    }

    /// Augments x (S, B, C, H, W) in place with the draws in `ws`: one launch per op some student
    /// runs, in `apply_student`'s order, then the copy back of batches left in scratch.
    pub fn augment_with(
        &self,
        plan: &AugPlan,
        ws: &mut AugWorkspace,
        x: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "augment";
        let d = ws.dims;
        check_len(OP, "x", x.len, d.len())?;
        if d.is_empty() || ws.ops == 0 {
            return Ok(());
        }
        let dsa = dsa_params(plan);
        let mut p = AugParams {
            x: self.addr(x)?,
            scratch: self.addr(&ws.scratch)?,
            students: self.addr(&ws.students)?,
            images: self.addr(&ws.images)?,
            students_n: u32_of(OP, "students", d.students)?,
            batch: u32_of(OP, "batch", d.batch)?,
            c: u32_of(OP, "channels", d.c)?,
            h: u32_of(OP, "height", d.h)?,
            w: u32_of(OP, "width", d.w)?,
            op: 0,
            brightness: dsa.brightness as f32,
            saturation: dsa.saturation as f32,
            contrast: dsa.contrast as f32,
            cutout_h: dsa.cutout_size(d.h),
            cutout_w: dsa.cutout_size(d.w),
            unused: 0,
        };
        let pixels = (d.students * d.batch * d.h * d.w) as u64;
        for (op, kernel) in OPS {
            if ws.ops & op == 0 {
                continue;
            }
            p.op = op;
            let grid = match op {
                OP_FLIP => self.grid_for(pixels / d.w as u64 * (d.w / 2) as u64 * d.c as u64),
                OP_COLOR => self.grid_for_groups((d.students * d.batch) as u64),
                OP_MIXUP | OP_CUTMIX => self.grid_for(d.len() as u64),
                _ => self.grid_for(pixels),
            };
            // SAFETY: x and scratch hold S·B·C·H·W values (x checked above, scratch allocated
            // from the same dims), students S·7 and images S·B·13 words; the draws passed
            // check_draws (partners < B, CutMix boxes inside the image), and every other index a
            // kernel forms is clamped or bounds-checked against (H, W).
            unsafe { self.launch(kernel, grid, &p)? };
        }
        if ws.copy_back {
            // SAFETY: as above.
            unsafe { self.launch("aug_copy_back", self.grid_for(d.len() as u64), &p)? };
        }
        Ok(())
    }

    /// `Backend::zca_whiten` on the device: out (N, D) = (x − mean)·transform, one tiled kernel.
    pub(super) fn zca_whiten_kernel(
        &self,
        dim: usize,
        mean: &CudaBuf<f32>,
        transform: &CudaBuf<f32>,
        x: &CudaBuf<f32>,
        out: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "zca_whiten";
        let square = dim
            .checked_mul(dim)
            .filter(|_| dim > 0)
            .ok_or_else(|| Error::shape(format!("{OP}: rows of {dim} values have no transform")))?;
        check_len(OP, "mean", mean.len, dim)?;
        check_len(OP, "transform", transform.len, square)?;
        if x.len % dim != 0 {
            return Err(Error::shape(format!(
                "{OP}: x of {} values is not whole rows of {dim}",
                x.len
            )));
        }
        check_len(OP, "out", out.len, x.len)?;
        let rows = x.len / dim;
        if rows == 0 {
            return Ok(());
        }
        let tiles = |n: usize| n.div_ceil(ZCA_TILE);
        let grid_y = u32::try_from(tiles(rows))
            .ok()
            .filter(|&y| y <= GRID_YZ_MAX)
            .ok_or_else(|| {
                Error::shape(format!(
                    "{OP}: {rows} rows exceed CUDA's grid limit ({} rows per launch)",
                    GRID_YZ_MAX as usize * ZCA_TILE
                ))
            })?;
        let p = ZcaParams {
            x: self.addr(x)?,
            mean: self.addr(mean)?,
            transform: self.addr(transform)?,
            out: self.addr(out)?,
            rows: rows as u64,
            dim: dim as u64,
        };
        // SAFETY: x and out hold rows·dim values, mean dim, transform dim²; the grid covers
        // (⌈dim/64⌉, ⌈rows/64⌉) tiles and the kernel bounds-checks the tile edges.
        unsafe { self.launch_3d(OP, [tiles(dim) as u32, grid_y, 1], &p) }
    }
}

/// ZCA_TILE in cuda/zca.cu: rows and columns of out per block.
const ZCA_TILE: usize = 64;
/// CUDA's limit on grid y.
const GRID_YZ_MAX: u32 = 65_535;
