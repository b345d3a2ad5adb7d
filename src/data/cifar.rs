//! CIFAR-10 and CIFAR-100 readers, both official layouts (DESIGN.md §8):
//! binary batches (records of `[label][1024 R][1024 G][1024 B]`, CIFAR-100 with `[coarse][fine]` first)
//! and python batches (pickled dicts with `data` uint8 N×3072 and `labels` / `fine_labels`).

use std::path::Path;

use crate::data::io::{file_len, read_file, u8_to_unit, MAX_FILE_BYTES};
use crate::data::pickle::{self, Allow, Obj};
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Pixels per CIFAR image: 3 × 32 × 32.
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;

pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Which CIFAR: decides the record header and the number of classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cifar {
    C10,
    C100,
}

impl Cifar {
    pub fn classes(self) -> usize {
        match self {
            Cifar::C10 => 10,
            Cifar::C100 => 100,
        }
    }

    /// Label bytes before the pixels of each binary record.
    fn header(self) -> usize {
        match self {
            Cifar::C10 => 1,
            Cifar::C100 => 2,
        }
    }
}

/// An empty split with CIFAR's shape.
pub fn empty(kind: Cifar, class_names: Vec<String>) -> Dataset {
    Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        classes: kind.classes(),
        channels: 3,
        height: 32,
        width: 32,
        class_names,
    }
}

/// Append the records of one binary batch file to `out`. The file length must be a whole number
/// of records; every label must be a valid class.
pub fn read_binary(path: &Path, kind: Cifar, out: &mut Dataset) -> Result<()> {
    let rec = kind.header() + CIFAR_PIXELS;
    let len = file_len(path)?;
    if len == 0 || len % rec as u64 != 0 {
        return Err(Error::format(
            path,
            format!("size {len} bytes is not a whole number of {rec}-byte CIFAR records (truncated or not a CIFAR batch)"),
        ));
    }
    let buf = read_file(path, MAX_FILE_BYTES)?;
    let n = buf.len() / rec;
    out.images.reserve(n * CIFAR_PIXELS);
    out.labels.reserve(n);
    for (i, r) in buf.chunks_exact(rec).enumerate() {
        let label = r[kind.header() - 1]; // CIFAR-100: the fine label is the second byte
        if label as usize >= kind.classes() {
            return Err(Error::format(
                path,
                format!(
                    "record {i}: label {label} out of range (expected 0..{})",
                    kind.classes() - 1
                ),
            ));
        }
        out.labels.push(label as u32);
        out.images.extend(u8_to_unit(&r[kind.header()..]));
    }
    Ok(())
}

/// Append the images of one python batch (a pickled dict) to `out`.
pub fn read_python(path: &Path, kind: Cifar, out: &mut Dataset) -> Result<()> {
    let buf = read_file(path, MAX_FILE_BYTES)?;
    let p = pickle::load(path, &buf, Allow::NumpyArrays)?;
    let label_key = match kind {
        Cifar::C10 => "labels",
        Cifar::C100 => "fine_labels",
    };
    let data = p
        .dict_get(p.root, "data")
        .ok_or_else(|| Error::format(path, "CIFAR python batch has no `data` key"))?;
    let arr = match p.obj(data) {
        Some(Obj::NdArray(a)) => a,
        _ => return Err(Error::format(path, "`data` is not a numpy array")),
    };
    if arr.dtype != "u1" {
        return Err(Error::format(
            path,
            format!("`data` has dtype {:?}, expected uint8 (u1)", arr.dtype),
        ));
    }
    if arr.shape.len() != 2 || arr.shape[1] != CIFAR_PIXELS {
        return Err(Error::format(
            path,
            format!("`data` has shape {:?}, expected [N, 3072]", arr.shape),
        ));
    }
    let n = arr.shape[0];
    if arr.data.len() != n * CIFAR_PIXELS {
        return Err(Error::format(
            path,
            format!(
                "`data` holds {} bytes, its shape {:?} needs {}",
                arr.data.len(),
                arr.shape,
                n * CIFAR_PIXELS
            ),
        ));
    }
    let labels = p
        .dict_get(p.root, label_key)
        .and_then(|v| p.seq(v))
        .ok_or_else(|| {
            Error::format(
                path,
                format!("CIFAR python batch has no `{label_key}` list"),
            )
        })?;
    if labels.len() != n {
        return Err(Error::format(
            path,
            format!("{} labels for {n} images in `{label_key}`", labels.len()),
        ));
    }
    for (i, l) in labels.iter().enumerate() {
        match l {
            pickle::Value::Int(v) if (*v as u64) < kind.classes() as u64 && *v >= 0 => {
                out.labels.push(*v as u32)
            }
            other => {
                return Err(Error::format(
                    path,
                    format!(
                        "`{label_key}`[{i}] = {other:?} out of range (expected 0..{})",
                        kind.classes() - 1
                    ),
                ))
            }
        }
    }
    out.images.extend(u8_to_unit(&arr.data));
    Ok(())
}

/// CIFAR-100 fine class names from the python `meta` pickle (`fine_label_names`), if readable.
pub fn python_fine_names(meta: &Path) -> Option<Vec<String>> {
    let buf = read_file(meta, 1 << 20).ok()?;
    let p = pickle::load(meta, &buf, Allow::NumpyArrays).ok()?;
    let list = p.seq(p.dict_get(p.root, "fine_label_names")?)?;
    let names: Option<Vec<String>> = list.iter().map(|&v| p.as_str(v)).collect();
    names.filter(|n| n.len() == 100)
}

/// Class names from a text file with one name per line (blank lines skipped), if it is there and
/// has the right count; otherwise "0", "1", ...
pub fn class_names(meta: Option<&Path>, classes: usize) -> Vec<String> {
    let numbered = || (0..classes).map(|c| c.to_string()).collect();
    let Some(path) = meta else { return numbered() };
    match read_file(path, 1 << 20) {
        Ok(b) => {
            let names: Vec<String> = String::from_utf8_lossy(&b)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            if names.len() == classes {
                names
            } else {
                numbered()
            }
        }
        Err(_) => numbered(),
    }
}
