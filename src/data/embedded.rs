//! The default dataset compiled into the binary: a class-balanced Fashion-MNIST subset
//! (2,000 train + 1,000 test, 28×28 gray; MIT licence, data/embedded/LICENSE-fashion-mnist.txt),
//! so `eval` and the demo have real data with no download. Built by tools/make_embedded_fmnist.py.

use std::path::Path;

use crate::data::idx::{parse_idx, FASHION_CLASSES};
use crate::data::io::gunzip;
use crate::data::{Dataset, Norm, RealData};
use crate::error::{Error, Result};

const TRAIN_IMAGES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/embedded/fmnist-train-images-idx3-ubyte.gz"
));
const TRAIN_LABELS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/embedded/fmnist-train-labels-idx1-ubyte.gz"
));
const TEST_IMAGES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/embedded/fmnist-t10k-images-idx3-ubyte.gz"
));
const TEST_LABELS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/embedded/fmnist-t10k-labels-idx1-ubyte.gz"
));

/// Decompressed size cap: 2,000 images of 784 bytes plus headers fit easily.
const MAX_EMBEDDED_BYTES: u64 = 8 << 20;

fn split(images: &[u8], labels: &[u8], what: &str) -> Result<Dataset> {
    let name = format!("<embedded fashion-mnist {what}>");
    let path = Path::new(&name);
    let ib = gunzip(path, images, MAX_EMBEDDED_BYTES)?;
    let (dims, px) = parse_idx(path, &ib, 0x0000_0803, 3)?;
    let lb = gunzip(path, labels, MAX_EMBEDDED_BYTES)?;
    let (ldims, lab) = parse_idx(path, &lb, 0x0000_0801, 1)?;
    if ldims[0] != dims[0] || lab.iter().any(|&l| l >= 10) {
        return Err(Error::format(
            path,
            "embedded labels do not match the images (corrupt build)",
        ));
    }
    Ok(Dataset {
        images: px.iter().map(|&b| b as f32 / 255.0).collect(), // (N, 1, 28, 28)
        labels: lab.iter().map(|&l| l as u32).collect(),
        classes: 10,
        channels: 1,
        height: dims[1],
        width: dims[2],
        class_names: FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}

/// The embedded Fashion-MNIST subset, normalised like Fashion-MNIST (mean .2861, std .3530).
pub fn fashion_mnist() -> Result<RealData> {
    Ok(RealData {
        train: split(TRAIN_IMAGES, TRAIN_LABELS, "train")?,
        test: split(TEST_IMAGES, TEST_LABELS, "test")?,
        name: "fashion-mnist-embedded".to_string(),
        format: "embedded idx.gz".to_string(),
        norm: Norm::fashion_mnist(),
    })
}
