//! The checks a synthetic set must pass before training: shape and channels against the dataset,
//! N = IPC × classes, labels in range and class-balanced (class-major when absent), soft labels
//! [N, K], a positive finite lr, every value finite; pixel-space images are normalised here.

use std::path::Path;

use super::read::RawSyn;
use super::{SynExpect, SyntheticSet};
use crate::data::torch::TensorData;
use crate::error::{Error, Result};

pub(super) fn validate(path: &Path, raw: RawSyn, e: &SynExpect) -> Result<SyntheticSet> {
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
