//! Synthetic (distilled) sets, as `eval` consumes them: safetensors, PyTorch `.pt` files and image
//! folders, validated against the real dataset they were distilled from.
//!
//! safetensors: `images` \[N,C,H,W\] (f32/f16/bf16), normalised with the dataset's mean/std unless
//! the file's `__metadata__` has `pixel_space = "true"` (then \[0,1\] pixels, normalised on load);
//! optional `labels` \[N\] (integer), `soft_labels` \[N,K\], `lr` (one element).
//! `.pt`: a tensor of images, or a dict with `images` (or `image_syn`), `labels` (or `label_syn`),
//! `soft_labels`, `lr` (or `syn_lr`; tensor or python float) and optionally `pixel_space: True`.
//! Image folders: one sub-folder per class, 8-bit PNG/JPEG, always pixel space.

use std::path::Path;

use crate::data::pickle::DType;
use crate::data::safetensors_io::load_safetensors;
use crate::data::torch::{load_pt, PtValue, Tensor, TensorData};
use crate::data::{folder, Norm};
use crate::error::{Error, Result};

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

/// What a file held, before validation.
struct RawSyn {
    images: Tensor,
    labels: Option<Tensor>,
    soft: Option<Tensor>,
    lr: Option<f64>,
    pixel_space: bool,
    format: &'static str,
}

/// Load and validate a synthetic set (format from the path: folder, `.safetensors`, `.pt`/`.pth`).
pub fn load_synthetic(path: &Path, expect: &SynExpect) -> Result<SyntheticSet> {
    let raw = read_raw(path)?;
    validate(path, raw, expect)
}

fn read_raw(path: &Path) -> Result<RawSyn> {
    let md = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if md.is_dir() {
        let d = folder::read_class_folders(path, None)?;
        let images = Tensor {
            dtype: DType::U8,
            shape: vec![d.len(), d.channels, d.height, d.width],
            data: TensorData::F32(d.images),
        };
        let labels = Tensor {
            dtype: DType::I64,
            shape: vec![d.labels.len()],
            data: TensorData::I64(d.labels.iter().map(|&l| l as i64).collect()),
        };
        return Ok(RawSyn {
            images,
            labels: Some(labels),
            soft: None,
            lr: None,
            pixel_space: true,
            format: "image-folder",
        });
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => {
            let f = load_safetensors(path)?;
            let images = f.get("images").cloned().ok_or_else(|| {
                let names: Vec<&str> = f.tensors.iter().map(|(n, _)| n.as_str()).collect();
                Error::format(path, format!("no `images` tensor (found {names:?})"))
            })?;
            let lr = match f.get("lr") {
                Some(t) => Some(scalar(path, "lr", t)?),
                None => None,
            };
            let pixel_space = match f
                .metadata
                .get("pixel_space")
                .map(|s| s.to_ascii_lowercase())
            {
                None => false,
                Some(s) if s == "true" || s == "1" => true,
                Some(s) if s == "false" || s == "0" => false,
                Some(s) => {
                    return Err(Error::format(
                        path,
                        format!("metadata pixel_space = {s:?}; expected \"true\" or \"false\""),
                    ))
                }
            };
            Ok(RawSyn {
                images,
                labels: f.get("labels").cloned(),
                soft: f.get("soft_labels").cloned(),
                lr,
                pixel_space,
                format: "safetensors",
            })
        }
        "pt" | "pth" => {
            let v = load_pt(path)?;
            match v {
                PtValue::Tensor(images) => Ok(RawSyn {
                    images,
                    labels: None,
                    soft: None,
                    lr: None,
                    pixel_space: false,
                    format: "pt",
                }),
                PtValue::Dict(_) => {
                    let pick = |keys: &[&str]| keys.iter().find_map(|k| v.get(k));
                    let tensor = |keys: &[&str]| -> Result<Option<Tensor>> {
                        match pick(keys) {
                            None => Ok(None),
                            Some(PtValue::Tensor(t)) => Ok(Some(t.clone())),
                            Some(other) => Err(Error::format(
                                path,
                                format!("`{}` is {}, expected a tensor", keys[0], other.describe()),
                            )),
                        }
                    };
                    let images = tensor(&["images", "image_syn"])?.ok_or_else(|| {
                        Error::format(path, format!("no `images` entry ({})", v.describe()))
                    })?;
                    let lr = match pick(&["lr", "syn_lr"]) {
                        None | Some(PtValue::None) => None,
                        Some(PtValue::Float(f)) => Some(*f),
                        Some(PtValue::Int(i)) => Some(*i as f64),
                        Some(PtValue::Tensor(t)) => Some(scalar(path, "lr", t)?),
                        Some(other) => {
                            return Err(Error::format(
                                path,
                                format!("`lr` is {}, expected a number", other.describe()),
                            ))
                        }
                    };
                    let pixel_space = matches!(v.get("pixel_space"), Some(PtValue::Bool(true)));
                    Ok(RawSyn {
                        images,
                        labels: tensor(&["labels", "label_syn"])?,
                        soft: tensor(&["soft_labels"])?,
                        lr,
                        pixel_space,
                        format: "pt",
                    })
                }
                other => Err(Error::format(
                    path,
                    format!(
                        "holds {}, expected an images tensor or a dict with `images`",
                        other.describe()
                    ),
                )),
            }
        }
        _ => Err(Error::format(
            path,
            "unknown synthetic-set format (expected .safetensors, .pt, .pth or an image folder)",
        )),
    }
}

/// The one value of a scalar tensor (0-d or [1]).
fn scalar(path: &Path, name: &str, t: &Tensor) -> Result<f64> {
    if t.numel() != 1 {
        return Err(Error::format(
            path,
            format!("`{name}` has shape {:?}, expected a single value", t.shape),
        ));
    }
    Ok(t.to_f32()[0] as f64)
}

fn validate(path: &Path, raw: RawSyn, e: &SynExpect) -> Result<SyntheticSet> {
    let s = &raw.images.shape;
    if s.len() != 4 {
        return Err(Error::format(
            path,
            format!("`images` has shape {s:?}, expected [N, C, H, W]"),
        ));
    }
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let TensorData::F32(mut images) = raw.images.data else {
        return Err(Error::format(
            path,
            format!(
                "`images` has dtype {}, expected a float type (f32, f16, bf16)",
                raw.images.dtype.name()
            ),
        ));
    };
    if (c, h, w) != (e.channels, e.height, e.width) {
        return Err(Error::format(
            path,
            format!(
                "images are {c}x{h}x{w} (C×H×W) but the dataset's are {}x{}x{}",
                e.channels, e.height, e.width
            ),
        ));
    }
    if n == 0 {
        return Err(Error::format(path, "`images` is empty (N = 0)"));
    }
    if let Some(i) = images.iter().position(|v| !v.is_finite()) {
        return Err(Error::format(
            path,
            format!(
                "`images` has a non-finite value ({}) at flat index {i}",
                images[i]
            ),
        ));
    }
    let ipc = match e.ipc {
        Some(ipc) if ipc * e.classes != n => {
            return Err(Error::format(
                path,
                format!(
                    "{n} images, but IPC {ipc} × {} classes = {}",
                    e.classes,
                    ipc * e.classes
                ),
            ))
        }
        Some(ipc) => ipc,
        None if n % e.classes != 0 => {
            return Err(Error::format(
                path,
                format!(
                    "{n} images is not a whole number of images per class for {} classes",
                    e.classes
                ),
            ))
        }
        None => n / e.classes,
    };
    let labels_given = raw.labels.is_some();
    let labels: Vec<u32> = match raw.labels {
        None => (0..n).map(|i| (i / ipc) as u32).collect(), // class-major (DESIGN.md §3)
        Some(t) => {
            if t.shape != [n] {
                return Err(Error::format(
                    path,
                    format!("`labels` has shape {:?}, expected [{n}]", t.shape),
                ));
            }
            let TensorData::I64(v) = t.data else {
                return Err(Error::format(
                    path,
                    format!(
                        "`labels` has dtype {}, expected an integer type",
                        t.dtype.name()
                    ),
                ));
            };
            let mut out = Vec::with_capacity(n);
            for (i, &l) in v.iter().enumerate() {
                if l < 0 || l as usize >= e.classes {
                    return Err(Error::format(
                        path,
                        format!(
                            "`labels`[{i}] = {l} out of range (expected 0..{})",
                            e.classes - 1
                        ),
                    ));
                }
                out.push(l as u32);
            }
            let mut counts = vec![0usize; e.classes];
            for &l in &out {
                counts[l as usize] += 1;
            }
            if let Some(cl) = counts.iter().position(|&k| k != ipc) {
                return Err(Error::format(
                    path,
                    format!("class {cl} has {} images in `labels`, expected IPC = {ipc} for every class", counts[cl]),
                ));
            }
            out
        }
    };
    let soft_labels = match raw.soft {
        None => None,
        Some(t) => {
            if t.shape != [n, e.classes] {
                return Err(Error::format(
                    path,
                    format!(
                        "`soft_labels` has shape {:?}, expected [{n}, {}]",
                        t.shape, e.classes
                    ),
                ));
            }
            let v = t.to_f32();
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::format(
                    path,
                    format!("`soft_labels` has a non-finite value at flat index {i}"),
                ));
            }
            Some(v)
        }
    };
    let lr = match raw.lr {
        None => None,
        Some(lr) if lr.is_finite() && lr > 0.0 => Some(lr as f32),
        Some(lr) => {
            return Err(Error::format(
                path,
                format!("`lr` = {lr}, expected a finite positive learning rate"),
            ))
        }
    };
    let pixel = e.pixel_space.unwrap_or(raw.pixel_space);
    if pixel {
        e.norm.apply(&mut images, c, h * w);
    }
    Ok(SyntheticSet {
        images,
        labels,
        soft_labels,
        lr,
        classes: e.classes,
        ipc,
        channels: c,
        height: h,
        width: w,
        labels_given,
        was_pixel_space: pixel,
        format: raw.format.to_string(),
    })
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

fn infer_dataset(path: &Path, raw: &RawSyn) -> Result<String> {
    let s = &raw.images.shape;
    if s.len() != 4 {
        return Err(Error::format(
            path,
            format!("`images` has shape {s:?}, expected [N, C, H, W]"),
        ));
    }
    let hint = match (&raw.soft, &raw.labels) {
        (Some(t), _) if t.shape.len() == 2 => Some(t.shape[1]),
        (
            _,
            Some(Tensor {
                data: TensorData::I64(v),
                ..
            }),
        ) => v.iter().max().map(|&m| m.max(0) as usize + 1),
        _ => None,
    };
    let name = match (s[1], s[2], s[3]) {
        (3, 32, 32) if hint.is_some_and(|k| k > 10) => "cifar100",
        (3, 32, 32) => "cifar10",
        (1, 28, 28) => "fashion-mnist",
        (3, 64, 64) => "tinyimagenet",
        (c, h, w) => {
            return Err(Error::format(
                path,
                format!("cannot tell the dataset of {c}x{h}x{w} images; pass --dataset"),
            ))
        }
    };
    Ok(name.to_string())
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

/// The tensor of a one-tensor file, or the entry under one of `keys` (a python float becomes a
/// 0-d tensor so a learned lr saved with `torch.save(lr.item())`-style code also loads).
fn single_tensor(path: &Path, keys: &[&str]) -> Result<Tensor> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "safetensors" {
        let f = load_safetensors(path)?;
        if f.tensors.len() == 1 {
            return Ok(f.tensors[0].1.clone());
        }
        return keys
            .iter()
            .find_map(|k| f.get(k).cloned())
            .ok_or_else(|| Error::format(path, format!("no `{}` tensor", keys[0])));
    }
    let v = load_pt(path)?;
    let found = match &v {
        PtValue::Dict(_) => keys.iter().find_map(|k| v.get(k)).cloned(),
        other => Some(other.clone()),
    };
    match found {
        Some(PtValue::Tensor(t)) => Ok(t),
        Some(PtValue::Float(f)) => Ok(Tensor {
            dtype: DType::F64,
            shape: vec![],
            data: TensorData::F32(vec![f as f32]),
        }),
        Some(other) => Err(Error::format(
            path,
            format!("holds {}, expected a tensor", other.describe()),
        )),
        None => Err(Error::format(
            path,
            format!("no `{}` entry ({})", keys[0], v.describe()),
        )),
    }
}
