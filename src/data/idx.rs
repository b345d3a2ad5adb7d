//! MNIST-family IDX files (raw or .gz): images with magic 0x00000803 (uint8, N×H×W) and labels with
//! magic 0x00000801 (uint8, N). Header dimensions are checked against the data length before any
//! allocation, so a lying count cannot trigger a huge allocation.

use std::path::{Path, PathBuf};

use crate::data::io::{checked_product, read_maybe_gz, u8_to_unit, Cursor};
use crate::data::Dataset;
use crate::error::{Error, Result};

/// Largest decompressed IDX file accepted (full MNIST train images are 47 MB).
const MAX_IDX_BYTES: u64 = 1 << 30;

/// Parse an IDX buffer with the given magic: its dimensions and the data bytes that follow.
pub fn parse<'a>(
    path: &'a Path,
    buf: &'a [u8],
    magic: u32,
    ndim: usize,
) -> Result<(Vec<usize>, &'a [u8])> {
    let mut cur = Cursor::new(path, buf);
    let m = cur.u32_be()?;
    if m != magic {
        return Err(Error::format(
            path,
            format!("wrong IDX magic 0x{m:08x}, expected 0x{magic:08x}"),
        ));
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        dims.push(cur.u32_be()? as usize);
    }
    let need = checked_product(path, &dims, "IDX header")?;
    if need != cur.remaining() {
        return Err(Error::format(
            path,
            format!(
                "IDX header says {dims:?} = {need} bytes of data but the file holds {} (truncated or lying header)",
                cur.remaining()
            ),
        ));
    }
    let data = cur.take(need)?;
    Ok((dims, data))
}

/// Read an image file and its label file into one split with 10 classes.
pub fn read_split(images: &Path, labels: &Path, class_names: &[String]) -> Result<Dataset> {
    let ib = read_maybe_gz(images, MAX_IDX_BYTES)?;
    let (dims, pixels) = parse(images, &ib, 0x0000_0803, 3)?;
    let lb = read_maybe_gz(labels, MAX_IDX_BYTES)?;
    let (ldims, lab) = parse(labels, &lb, 0x0000_0801, 1)?;
    if ldims[0] != dims[0] {
        return Err(Error::format(
            labels,
            format!(
                "{} labels for {} images in {}",
                ldims[0],
                dims[0],
                images.display()
            ),
        ));
    }
    if dims[0] == 0 || dims[1] == 0 || dims[2] == 0 {
        return Err(Error::format(
            images,
            format!("empty IDX image array {dims:?}"),
        ));
    }
    let classes = class_names.len();
    let mut out = Vec::with_capacity(lab.len());
    for (i, &l) in lab.iter().enumerate() {
        if l as usize >= classes {
            return Err(Error::format(
                labels,
                format!(
                    "label {i} is {l}, out of range (expected 0..{})",
                    classes - 1
                ),
            ));
        }
        out.push(l as u32);
    }
    Ok(Dataset {
        images: u8_to_unit(pixels),
        labels: out,
        classes,
        channels: 1,
        height: dims[1],
        width: dims[2],
        class_names: class_names.to_vec(),
    })
}

/// Find `<stem>` or `<stem>.gz` in a folder (also the `t10k-images.idx3-ubyte` spelling).
pub fn find(dir: &Path, stems: &[&str]) -> Option<PathBuf> {
    for s in stems {
        for name in [s.to_string(), format!("{s}.gz")] {
            let p = dir.join(&name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Write an IDX file (used by tests and the embedded-set tool): magic, big-endian dims, data.
pub fn encode(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
