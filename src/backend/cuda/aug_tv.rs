//! The CUDA launcher of `custom_train_trans` (cuda/aug_tv.cu `aug_tv`, `Backend::tv_at`): the
//! step's entries are read on the device from the epoch's table at the clock's step, so a recorded
//! step replays at every step. Reference: `crate::aug::TvPipeline::apply_entry` per image.

use super::ops::{check_len, u32_of};
use super::params::{TvParams, TV_MAX_C, TV_MAX_STAGES};
use super::{CudaBackend, CudaBuf};
use crate::aug::{BatchDims, TvPipeline, TvTransform};
use crate::error::{Error, Result};
use crate::ops::step::CLOCK_LEN;

/// Stage kinds of cuda/aug_tv.cu (TV_RRC, TV_FLIP, TV_CROP, TV_NORM).
const KIND_RRC: u32 = 1;
const KIND_FLIP: u32 = 2;
const KIND_CROP: u32 = 3;
const KIND_NORM: u32 = 4;

/// Values of one channel plane the kernel stages in shared memory (cuda/aug_tv.cu TV_PLANE:
/// 64 × 64, twice, 32 KiB of the 48 KiB a block may hold statically).
pub const TV_PLANE: usize = 64 * 64;

/// The kernel's settings for `pipe` on images of `c` × `size` × `size`, or why it cannot run it:
/// every stage must keep the size (RandomResizedCrop then only upscales its box), a channel plane
/// must fit in shared memory, and a Normalize carries at most [`TV_MAX_C`] channels.
pub fn tv_stages(pipe: &TvPipeline, c: usize, size: usize) -> Result<TvParams> {
    let refuse = |why: String| {
        Error::device(format!(
            "custom_train_trans on CUDA: {why}; use --device cpu for this pipeline"
        ))
    };
    if size * size > TV_PLANE || c > TV_MAX_C {
        return Err(refuse(format!(
            "the kernel holds images of at most 64×64 pixels and {TV_MAX_C} channels, these are \
             {c}×{size}×{size}"
        )));
    }
    if pipe.0.len() > TV_MAX_STAGES {
        return Err(refuse(format!("more than {TV_MAX_STAGES} transforms")));
    }
    let mut p = TvParams {
        c: c as u32,
        size: size as u32,
        stages: pipe.0.len() as u32,
        ..TvParams::default()
    };
    for (i, t) in pipe.0.iter().enumerate() {
        if t.out_hw(size, size)? != (size, size) {
            return Err(refuse(format!(
                "stage {i} ({t:?}) changes the {size}×{size} image size"
            )));
        }
        p.kind[i] = match t {
            TvTransform::RandomResizedCrop { .. } => KIND_RRC,
            TvTransform::RandomHorizontalFlip { .. } => KIND_FLIP,
            TvTransform::RandomCrop { padding, .. } => {
                p.padding[i] = u32_of("aug_tv", "padding", *padding)?;
                KIND_CROP
            }
            TvTransform::Normalize { mean, std } => {
                if mean.len() != c || std.len() != c || std.contains(&0.0) {
                    return Err(Error::config(format!(
                        "Normalize needs one mean and one non-zero std per channel ({c}), got \
                         mean {mean:?}, std {std:?}"
                    )));
                }
                p.mean[i][..c].copy_from_slice(mean);
                p.std[i][..c].copy_from_slice(std);
                KIND_NORM
            }
        };
    }
    Ok(p)
}

impl CudaBackend {
    /// `Backend::tv_at`: x (S·B, C, H, W) transformed in place with the entries at the clock's
    /// step of table (steps, stride).
    pub(super) fn tv_at_table(
        &self,
        pipe: &TvPipeline,
        clock: &CudaBuf<u32>,
        table: &CudaBuf<u32>,
        stride: usize,
        dims: BatchDims,
        x: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "aug_tv";
        check_len(OP, "clock", clock.len, CLOCK_LEN)?;
        if dims.h != dims.w {
            return Err(Error::shape(format!(
                "{OP}: images of {}×{} (square only)",
                dims.h, dims.w
            )));
        }
        let images = dims.students * dims.batch;
        check_len(OP, "x", x.len, images * dims.c * dims.h * dims.w)?;
        if images * pipe.entry_words() > stride || stride == 0 || table.len % stride != 0 {
            return Err(Error::shape(format!(
                "{OP}: {images} entries of {} words do not fit steps of {stride} in a table of {}",
                pipe.entry_words(),
                table.len
            )));
        }
        let mut p = tv_stages(pipe, dims.c, dims.h)?;
        p.clock = self.addr(clock)?;
        p.table = self.addr(table)?;
        p.x = self.addr(x)?;
        p.stride = stride as u64;
        p.images = images as u64;
        let planes = (images * dims.c) as u64;
        // SAFETY: clock holds 4 words; each step of table has `images` entries of the pipeline's
        // words (checked above; the trainer's clock stays below the table's steps, as for
        // augment_at); x holds `images`·c planes of size² ≤ TV_PLANE values (tv_stages).
        unsafe { self.launch(OP, self.grid_for_groups(planes), &p) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel cannot hold is refused with the reason, not run.
    #[test]
    fn stages_refuse_size_changes_and_large_images() {
        let crop = |size| TvPipeline(vec![TvTransform::RandomCrop { size, padding: 4 }]);
        assert!(tv_stages(&crop(32), 3, 32).is_ok());
        let e = tv_stages(&crop(28), 3, 32).unwrap_err().to_string();
        assert!(e.contains("changes") && e.contains("--device cpu"), "{e}");
        assert!(tv_stages(&crop(64), 3, 64).is_ok());
        let e = tv_stages(&crop(96), 3, 96).unwrap_err().to_string();
        assert!(e.contains("3×96×96"), "{e}");
    }
}
