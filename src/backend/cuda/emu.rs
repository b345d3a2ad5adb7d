//! The emulated device: kernels compiled by the host C++ compiler against cuda/host_emu.h (see
//! build.rs) and run on CPU threads, over plain host memory. It lets the whole CUDA backend, with
//! its real launch code and params structs, run in CI and on machines without a GPU.

use std::ffi::c_void;

use crate::error::{Error, Result};

/// `emu_<kernel>(grid[3], block[3], &params)`: the hand-written entry at the end of each .cu file.
pub(super) type EmuEntry =
    unsafe extern "C" fn(grid: *const u32, block: *const u32, params: *const c_void);

unsafe extern "C" {
    fn emu_gather_rows(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_scale_add(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_batch_rows(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_step_words(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_loss_watch(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_forward_tf32x3(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_forward_tf32(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_forward_norm_tf32x3(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_forward_norm_tf32(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_forward_bf16(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_forward_norm_bf16(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_forward_norm_wide_tf32(
        grid: *const u32,
        block: *const u32,
        params: *const c_void,
    );
    fn emu_conv3x3_eval_direct_tf32(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_eval_direct_bf16(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_eval_plane_bf16(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_norm_relu_pool_forward_partials(
        grid: *const u32,
        block: *const u32,
        params: *const c_void,
    );
    fn emu_conv3x3_backward_input_tf32x3(
        grid: *const u32,
        block: *const u32,
        params: *const c_void,
    );
    fn emu_conv3x3_backward_input_tf32(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_backward_weight_tf32x3(
        grid: *const u32,
        block: *const u32,
        params: *const c_void,
    );
    fn emu_conv3x3_backward_weight_tf32(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv3x3_backward_weight_clear(
        grid: *const u32,
        block: *const u32,
        params: *const c_void,
    );
    fn emu_conv3x3_backward_bias(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_norm_relu_pool_forward(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_norm_relu_pool_backward(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_linear_forward(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_linear_backward_input(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_linear_backward_weight(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_loss_forward_backward(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_count_correct(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_optimizer_step(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_selftest_primitives(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_aug_warp(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_aug_flip(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_aug_color(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_aug_crop(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_aug_cutout(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_aug_mixup(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_aug_cutmix(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_aug_copy_back(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_zca_whiten(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv2d_forward_tf32x3(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv2d_forward_tf32(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv2d_backward_input_tf32x3(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv2d_backward_input_tf32(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv2d_backward_weight_tf32x3(
        grid: *const u32,
        block: *const u32,
        params: *const c_void,
    );
    fn emu_conv2d_backward_weight_tf32(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv2d_backward_weight_clear(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_conv2d_backward_bias(grid: *const u32, block: *const u32, params: *const c_void);
    fn emu_aug_tv(grid: *const u32, block: *const u32, params: *const c_void);
}

/// The emulated entry point of a kernel, by its CUDA name.
fn entry(kernel: &str) -> Option<EmuEntry> {
    let f: EmuEntry = match kernel {
        "gather_rows" => emu_gather_rows,
        "scale_add" => emu_scale_add,
        "batch_rows" => emu_batch_rows,
        "step_words" => emu_step_words,
        "loss_watch" => emu_loss_watch,
        "conv3x3_forward_tf32x3" => emu_conv3x3_forward_tf32x3,
        "conv3x3_forward_tf32" => emu_conv3x3_forward_tf32,
        "conv3x3_forward_norm_tf32x3" => emu_conv3x3_forward_norm_tf32x3,
        "conv3x3_forward_norm_tf32" => emu_conv3x3_forward_norm_tf32,
        "conv3x3_forward_bf16" => emu_conv3x3_forward_bf16,
        "conv3x3_forward_norm_bf16" => emu_conv3x3_forward_norm_bf16,
        "conv3x3_forward_norm_wide_tf32" => emu_conv3x3_forward_norm_wide_tf32,
        "conv3x3_eval_direct_tf32" => emu_conv3x3_eval_direct_tf32,
        "conv3x3_eval_direct_bf16" => emu_conv3x3_eval_direct_bf16,
        "conv3x3_eval_plane_bf16" => emu_conv3x3_eval_plane_bf16,
        "norm_relu_pool_forward_partials" => emu_norm_relu_pool_forward_partials,
        "conv3x3_backward_input_tf32x3" => emu_conv3x3_backward_input_tf32x3,
        "conv3x3_backward_input_tf32" => emu_conv3x3_backward_input_tf32,
        "conv3x3_backward_weight_tf32x3" => emu_conv3x3_backward_weight_tf32x3,
        "conv3x3_backward_weight_tf32" => emu_conv3x3_backward_weight_tf32,
        "conv3x3_backward_weight_clear" => emu_conv3x3_backward_weight_clear,
        "conv3x3_backward_bias" => emu_conv3x3_backward_bias,
        "norm_relu_pool_forward" => emu_norm_relu_pool_forward,
        "norm_relu_pool_backward" => emu_norm_relu_pool_backward,
        "linear_forward" => emu_linear_forward,
        "linear_backward_input" => emu_linear_backward_input,
        "linear_backward_weight" => emu_linear_backward_weight,
        "loss_forward_backward" => emu_loss_forward_backward,
        "count_correct" => emu_count_correct,
        "optimizer_step" => emu_optimizer_step,
        "selftest_primitives" => emu_selftest_primitives,
        "aug_warp" => emu_aug_warp,
        "aug_flip" => emu_aug_flip,
        "aug_color" => emu_aug_color,
        "aug_crop" => emu_aug_crop,
        "aug_cutout" => emu_aug_cutout,
        "aug_mixup" => emu_aug_mixup,
        "aug_cutmix" => emu_aug_cutmix,
        "aug_copy_back" => emu_aug_copy_back,
        "aug_tv" => emu_aug_tv,
        "zca_whiten" => emu_zca_whiten,
        "conv2d_forward_tf32x3" => emu_conv2d_forward_tf32x3,
        "conv2d_forward_tf32" => emu_conv2d_forward_tf32,
        "conv2d_backward_input_tf32x3" => emu_conv2d_backward_input_tf32x3,
        "conv2d_backward_input_tf32" => emu_conv2d_backward_input_tf32,
        "conv2d_backward_weight_tf32x3" => emu_conv2d_backward_weight_tf32x3,
        "conv2d_backward_weight_tf32" => emu_conv2d_backward_weight_tf32,
        "conv2d_backward_weight_clear" => emu_conv2d_backward_weight_clear,
        "conv2d_backward_bias" => emu_conv2d_backward_bias,
        _ => return super::ops::layers::emu_entry(kernel),
    };
    Some(f)
}

/// Host memory standing in for device memory; u64 words so every element type is aligned.
pub struct EmuMem {
    words: Vec<u64>,
}

impl EmuMem {
    pub fn zeroed(bytes: usize) -> Self {
        EmuMem {
            words: vec![0u64; bytes.div_ceil(8).max(1)],
        }
    }
    pub fn addr(&self) -> u64 {
        self.words.as_ptr() as u64
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: a u64 slice viewed as its bytes; same allocation, 8× the length.
        unsafe {
            std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.words.len() * 8)
        }
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, with unique access through &mut self.
        unsafe {
            std::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, self.words.len() * 8)
        }
    }
}

/// Runs one kernel on the emulated device; returns when it has finished.
///
/// # Safety
/// `params` must be the params struct `kernel` expects, and every address in it must point to
/// live `EmuMem` of the sizes the kernel reads and writes.
pub unsafe fn launch<P>(kernel: &str, grid: [u32; 3], block: u32, params: &P) -> Result<()> {
    let f = entry(kernel).ok_or_else(|| {
        Error::device(format!(
            "kernel `{kernel}` has no emulated entry (cuda/*.cu emu_{kernel})"
        ))
    })?;
    let b = [block, 1, 1];
    // SAFETY: forwarded from the caller; the entry copies the struct before running.
    unsafe {
        f(
            grid.as_ptr(),
            b.as_ptr(),
            params as *const P as *const c_void,
        )
    };
    Ok(())
}

/// A launch recorded instead of run (a step being recorded as a graph): the kernel's entry, its
/// geometry and a copy of its params struct, run again by `run`.
pub struct Recorded {
    entry: EmuEntry,
    grid: [u32; 3],
    block: [u32; 3],
    /// The params struct's bytes, in u64 words so that it is aligned for every field.
    params: Vec<u64>,
}

/// Records one launch for later replays (see [`Recorded`]).
pub fn record<P: Copy>(kernel: &str, grid: [u32; 3], block: u32, params: &P) -> Result<Recorded> {
    let entry = entry(kernel).ok_or_else(|| {
        Error::device(format!(
            "kernel `{kernel}` has no emulated entry (cuda/*.cu emu_{kernel})"
        ))
    })?;
    let mut words = vec![0u64; size_of::<P>().div_ceil(8)];
    // SAFETY: `words` holds at least size_of::<P>() bytes; P is a plain #[repr(C)] params struct.
    unsafe {
        std::ptr::copy_nonoverlapping(
            params as *const P as *const u8,
            words.as_mut_ptr() as *mut u8,
            size_of::<P>(),
        )
    };
    Ok(Recorded {
        entry,
        grid,
        block: [block, 1, 1],
        params: words,
    })
}

impl Recorded {
    /// Runs the recorded launch once more; returns when it has finished.
    ///
    /// # Safety
    /// The buffers the recorded params point to must still be alive, of the sizes they had when
    /// it was recorded (the trainer keeps every buffer of a recorded step for the graph's life).
    pub unsafe fn run(&self) {
        // SAFETY: forwarded from the caller; the bytes are a copy of a valid params struct.
        unsafe {
            (self.entry)(
                self.grid.as_ptr(),
                self.block.as_ptr(),
                self.params.as_ptr() as *const c_void,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::embedded;

    #[test]
    fn every_kernel_has_an_emulated_entry() {
        // Names come from the .cu sources (build.rs), with or without nvcc.
        let names = embedded::kernel_names();
        assert!(!names.is_empty(), "build.rs found no kernels in cuda/*.cu");
        let missing: Vec<_> = names.iter().filter(|k| entry(k).is_none()).collect();
        assert!(
            missing.is_empty(),
            "kernels without an emu_ entry in emu.rs: {missing:?}"
        );
    }
}
