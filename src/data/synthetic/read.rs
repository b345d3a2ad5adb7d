//! Reading a synthetic set's files into raw tensors (safetensors, `.pt`, image folders, and the
//! one-tensor files of MTT-style sets), before any check against the dataset.

use std::path::Path;

use crate::data::folder;
use crate::data::pickle::DType;
use crate::data::safetensors_io::load_safetensors;
use crate::data::torch::{load_pt, PtValue, Tensor, TensorData};
use crate::error::{Error, Result};

/// What a file held, before validation.
pub(super) struct RawSyn {
    pub(super) images: Tensor,
    pub(super) labels: Option<Tensor>,
    pub(super) soft: Option<Tensor>,
    pub(super) lr: Option<f64>,
    pub(super) pixel_space: bool,
    pub(super) format: &'static str,
}

pub(super) fn read_raw(path: &Path) -> Result<RawSyn> {
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
            let images = f.images(path)?.clone();
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
pub(super) fn scalar(path: &Path, name: &str, t: &Tensor) -> Result<f64> {
    if t.numel() != 1 {
        return Err(Error::format(
            path,
            format!("`{name}` has shape {:?}, expected a single value", t.shape),
        ));
    }
    Ok(t.to_f32()[0] as f64)
}

pub(super) fn infer_dataset(path: &Path, raw: &RawSyn) -> Result<String> {
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

/// The tensor of a one-tensor file, or the entry under one of `keys` (a python float becomes a
/// 0-d tensor so a learned lr saved with `torch.save(lr.item())`-style code also loads).
pub(super) fn single_tensor(path: &Path, keys: &[&str]) -> Result<Tensor> {
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
