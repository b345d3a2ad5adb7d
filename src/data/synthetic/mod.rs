//! Synthetic (distilled) sets, as `eval` consumes them: safetensors, PyTorch `.pt` files and image
//! folders, validated against the real dataset they were distilled from.
//!
//! safetensors: `images` \[N,C,H,W\] (f32/f16/bf16), normalised with the dataset's mean/std unless
//! the file's `__metadata__` has `pixel_space = "true"` (then \[0,1\] pixels, normalised on load);
//! optional `labels` \[N\] (integer), `soft_labels` \[N,K\], `lr` (one element).
//! `.pt`: a tensor of images, or a dict with `images` (or `image_syn`), `labels` (or `label_syn`),
//! `soft_labels`, `lr` (or `syn_lr`; tensor or python float) and optionally `pixel_space: True`.
//! Image folders: one sub-folder per class, 8-bit PNG/JPEG, always pixel space.

mod memory;
mod read;
mod validate;

pub use memory::{synthetic_from_arrays, SynArrays};

use std::path::Path;

use crate::data::Norm;
use crate::error::{Error, Result};

use read::{infer_dataset, read_raw, scalar, single_tensor};
use validate::validate;

/// What the synthetic set must match: the real dataset's classes and image shape, its
/// normalisation, and the IPC if the user stated one.
#[derive(Debug, Clone, PartialEq)]
pub struct SynExpect {
    pub classes: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// None: IPC = N / classes (N must divide evenly).
    pub ipc: Option<usize>,
    pub norm: Norm,
    /// Overrides the file's own pixel-space marker when Some.
    pub pixel_space: Option<bool>,
}

impl SynExpect {
    /// Expectations derived from a loaded real dataset.
    pub fn for_real(real: &crate::data::RealData, ipc: Option<usize>) -> SynExpect {
        SynExpect {
            classes: real.train.classes,
            channels: real.train.channels,
            height: real.train.height,
            width: real.train.width,
            ipc,
            norm: real.norm.clone(),
            pixel_space: None,
        }
    }

    /// Expectations for a dataset known by name, without reading it (for `data info`).
    pub fn for_name(name: &str, ipc: Option<usize>) -> Option<SynExpect> {
        let (classes, channels, side) = match name {
            "cifar10" => (10, 3, 32),
            "cifar100" => (100, 3, 32),
            "mnist" | "fashion-mnist" | "fashion-mnist-embedded" => (10, 1, 28),
            "tinyimagenet" => (200, 3, 64),
            _ => return None,
        };
        let norm = Norm::for_dataset(name.trim_end_matches("-embedded"))?;
        Some(SynExpect {
            classes,
            channels,
            height: side,
            width: side,
            ipc,
            norm,
            pixel_space: None,
        })
    }
}

/// A validated synthetic set, ready for training.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSet {
    /// (N, C, H, W) normalised with the dataset's mean/std (what the trainer consumes).
    pub images: Vec<f32>,
    /// (N,) hard labels: from the file, or class-major ⌊i / ipc⌋ when the file has none.
    pub labels: Vec<u32>,
    /// (N, K) stored soft labels (logits or probabilities, as the method saved them).
    pub soft_labels: Option<Vec<f32>>,
    /// A learned learning rate stored with the set.
    pub lr: Option<f32>,
    pub classes: usize,
    pub ipc: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Whether `labels` came from the file (false: class-major order was assumed).
    pub labels_given: bool,
    /// Whether the file held \[0,1\] pixels (normalised on load).
    pub was_pixel_space: bool,
    /// "safetensors", "pt" or "image-folder".
    pub format: String,
}

impl SyntheticSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Load and validate a synthetic set (format from the path: folder, `.safetensors`, `.pt`/`.pth`).
pub fn load_synthetic(path: &Path, expect: &SynExpect) -> Result<SyntheticSet> {
    let raw = read_raw(path)?;
    validate(path, raw, expect)
}

/// Load a synthetic set for `data info`: the dataset is the one named, or inferred from the image
/// shape and the label count (3×32×32 → cifar10, or cifar100 when labels reach past 9;
/// 1×28×28 → fashion-mnist; 3×64×64 → tinyimagenet). Returns the set and the dataset name used.
pub fn load_synthetic_for(
    path: &Path,
    dataset: Option<&str>,
    ipc: Option<usize>,
) -> Result<(SyntheticSet, String)> {
    let raw = read_raw(path)?;
    let name = match dataset {
        Some(n) => n.to_string(),
        None => infer_dataset(path, &raw)?,
    };
    let e = SynExpect::for_name(&name, ipc).ok_or_else(|| {
        Error::config(format!(
            "unknown dataset {name} (known: cifar10, cifar100, mnist, fashion-mnist, tinyimagenet)"
        ))
    })?;
    Ok((validate(path, raw, &e)?, name))
}

/// A synthetic set spread over several files, as MTT-style code saves it (`images_best.pt`,
/// `labels_best.pt`, `lr_best.pt`, ...). Each extra file holds one tensor (or a dict / safetensors
/// file with the matching key); it replaces what the images file held for that entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynFiles {
    pub images: std::path::PathBuf,
    pub labels: Option<std::path::PathBuf>,
    pub soft_labels: Option<std::path::PathBuf>,
    pub lr: Option<std::path::PathBuf>,
}

/// Load and validate a synthetic set from separate files.
pub fn load_synthetic_files(files: &SynFiles, expect: &SynExpect) -> Result<SyntheticSet> {
    let mut raw = read_raw(&files.images)?;
    if let Some(p) = &files.labels {
        raw.labels = Some(single_tensor(p, &["labels", "label_syn"])?);
    }
    if let Some(p) = &files.soft_labels {
        raw.soft = Some(single_tensor(p, &["soft_labels"])?);
    }
    if let Some(p) = &files.lr {
        let t = single_tensor(p, &["lr", "syn_lr"])?;
        raw.lr = Some(scalar(p, "lr", &t)?);
    }
    validate(&files.images, raw, expect)
}
