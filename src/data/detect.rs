//! Real-dataset format detection from a path, and loading of the detected format into [`RealData`].
//! Used by `eval` (`--dataset NAME --data-dir DIR`) and by `ddr-fast data info`.

use std::path::{Path, PathBuf};

use crate::data::cifar::{self, Cifar};
use crate::data::{folder, idx, Norm, RealData};
use crate::error::{Error, Result};

/// A real-dataset layout found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealFormat {
    Cifar10Binary(PathBuf),
    Cifar100Binary(PathBuf),
    Cifar10Python(PathBuf),
    Cifar100Python(PathBuf),
    /// IDX files; `fashion` when the path names Fashion-MNIST (the files themselves cannot tell).
    Idx {
        dir: PathBuf,
        fashion: bool,
    },
    TinyImageNet(PathBuf),
    /// `train/` plus `val/` or `test/`, each with one folder per class.
    ImageFolder(PathBuf),
}

impl RealFormat {
    /// Canonical dataset name (as in [`RealData::name`]).
    pub fn dataset_name(&self) -> &'static str {
        match self {
            RealFormat::Cifar10Binary(_) | RealFormat::Cifar10Python(_) => "cifar10",
            RealFormat::Cifar100Binary(_) | RealFormat::Cifar100Python(_) => "cifar100",
            RealFormat::Idx { fashion: true, .. } => "fashion-mnist",
            RealFormat::Idx { fashion: false, .. } => "mnist",
            RealFormat::TinyImageNet(_) => "tinyimagenet",
            RealFormat::ImageFolder(_) => "imagefolder",
        }
    }
}

/// Sub-folders the official archives (and torchvision) unpack into.
const KNOWN_SUBDIRS: [&str; 10] = [
    "cifar-10-batches-bin",
    "cifar-10-batches-py",
    "cifar-100-binary",
    "cifar-100-python",
    "tiny-imagenet-200",
    "FashionMNIST/raw",
    "fashion-mnist",
    "MNIST/raw",
    "mnist",
    "raw",
];

/// Detect the layout of a dataset folder (or of one of its well-known sub-folders).
pub fn detect(path: &Path) -> Result<RealFormat> {
    let md = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !md.is_dir() {
        return Err(Error::format(
            path,
            "a real dataset is a folder (CIFAR batches, IDX files or class folders)",
        ));
    }
    let mut listing = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    if listing.next().is_none() {
        return Err(Error::format(path, "folder is empty"));
    }
    if let Some(f) = detect_here(path) {
        return Ok(f);
    }
    for sub in KNOWN_SUBDIRS {
        let p = path.join(sub);
        if p.is_dir() {
            if let Some(f) = detect_here(&p) {
                return Ok(f);
            }
        }
    }
    Err(Error::format(
        path,
        "no known dataset layout found (expected CIFAR-10/100 binary or python batches, MNIST-style IDX files, \
         TinyImageNet, or train/ and val/ class folders)",
    ))
}

fn detect_here(dir: &Path) -> Option<RealFormat> {
    let has = |name: &str| dir.join(name).is_file();
    let d = dir.to_path_buf();
    if has("data_batch_1.bin") || has("test_batch.bin") {
        return Some(RealFormat::Cifar10Binary(d));
    }
    if has("train.bin") && has("test.bin") {
        return Some(RealFormat::Cifar100Binary(d));
    }
    if has("data_batch_1") || (has("test_batch") && has("batches.meta")) {
        return Some(RealFormat::Cifar10Python(d));
    }
    if has("train") && has("test") && has("meta") {
        return Some(RealFormat::Cifar100Python(d));
    }
    if idx::find(dir, &["train-images-idx3-ubyte", "train-images.idx3-ubyte"]).is_some() {
        let lower = dir.to_string_lossy().to_lowercase();
        return Some(RealFormat::Idx {
            dir: d,
            fashion: lower.contains("fashion") || lower.contains("fmnist"),
        });
    }
    if has("wnids.txt") && dir.join("train").is_dir() {
        return Some(RealFormat::TinyImageNet(d));
    }
    if dir.join("train").is_dir() && (dir.join("val").is_dir() || dir.join("test").is_dir()) {
        return Some(RealFormat::ImageFolder(d));
    }
    None
}

/// Detect and load a real dataset: both splits, validated.
pub fn load_real(path: &Path) -> Result<RealData> {
    let fmt = detect(path)?;
    load_format(&fmt)
}

/// Load a real dataset and check that it is the one asked for (`cifar10`, `cifar100`, `mnist`,
/// `fashion-mnist`, `tinyimagenet`, `imagefolder`); `fashion-mnist-embedded` needs no folder.
pub fn load_named(name: &str, dir: Option<&Path>) -> Result<RealData> {
    if name == "fashion-mnist-embedded" {
        return crate::data::embedded::fashion_mnist();
    }
    let dir = dir
        .ok_or_else(|| Error::config(format!("dataset {name} needs a data folder (--data-dir)")))?;
    // IDX files cannot tell MNIST from Fashion-MNIST, and any class-folder tree can be an
    // ImageNet subset: those names accept either layout and trust the name asked for.
    let accepts = |found: &str| {
        found == name
            || (name == "mnist" && found == "fashion-mnist")
            || (name == "fashion-mnist" && found == "mnist")
            || (name == "imagenet-subset" && found == "imagefolder")
    };
    // A data folder may hold several datasets: look at the folder and its well-known
    // sub-folders for the one asked for before settling on whatever is found first.
    let mut found = Vec::new();
    let mut candidates = vec![dir.to_path_buf()];
    candidates.extend(
        KNOWN_SUBDIRS
            .iter()
            .map(|s| dir.join(s))
            .filter(|p| p.is_dir()),
    );
    for c in &candidates {
        if let Some(fmt) = detect_here(c) {
            if accepts(fmt.dataset_name()) {
                let mut data = load_format(&fmt)?;
                if data.name != name {
                    data.name = name.to_string();
                    data.norm = Norm::for_dataset(name).unwrap_or(data.norm);
                }
                return Ok(data);
            }
            found.push(fmt.dataset_name());
        }
    }
    if found.is_empty() {
        detect(dir)?; // the precise "empty" / "no known layout" error
    }
    Err(Error::format(
        dir,
        format!(
            "asked for dataset {name} but the folder holds {}",
            found.join(", ")
        ),
    ))
}

/// An ImageNet subset: `train/` and `val/` class folders restricted to (and ordered by) a class
/// list, e.g. the wnids of ImageNette or ImageWoof; normalised with the ImageNet constants.
pub fn load_imagenet_subset(root: &Path, classes: &[String]) -> Result<RealData> {
    if classes.is_empty() {
        return Err(Error::config("ImageNet subset: the class list is empty"));
    }
    let (train, test) = folder::load_image_folder_splits(root, Some(classes))?;
    check_splits(&RealFormat::ImageFolder(root.to_path_buf()), &train, &test)?;
    Ok(RealData {
        train,
        test,
        name: "imagenet-subset".into(),
        format: "image-folders".into(),
        norm: Norm::imagenet(),
    })
}

/// Load one detected layout.
pub fn load_format(fmt: &RealFormat) -> Result<RealData> {
    let name = fmt.dataset_name().to_string();
    let norm = Norm::for_dataset(&name).unwrap_or_else(Norm::imagenet);
    let (train, test, format) = match fmt {
        RealFormat::Cifar10Binary(d) => {
            let names = cifar::class_names(Some(&d.join("batches.meta.txt")), 10);
            let mut train = cifar::empty(Cifar::C10, names.clone());
            for i in 1..=5 {
                cifar::read_binary(
                    &d.join(format!("data_batch_{i}.bin")),
                    Cifar::C10,
                    &mut train,
                )?;
            }
            let mut test = cifar::empty(Cifar::C10, names);
            cifar::read_binary(&d.join("test_batch.bin"), Cifar::C10, &mut test)?;
            (train, test, "cifar10-binary")
        }
        RealFormat::Cifar100Binary(d) => {
            let names = cifar::class_names(Some(&d.join("fine_label_names.txt")), 100);
            let mut train = cifar::empty(Cifar::C100, names.clone());
            cifar::read_binary(&d.join("train.bin"), Cifar::C100, &mut train)?;
            let mut test = cifar::empty(Cifar::C100, names);
            cifar::read_binary(&d.join("test.bin"), Cifar::C100, &mut test)?;
            (train, test, "cifar100-binary")
        }
        RealFormat::Cifar10Python(d) => {
            let names: Vec<String> = cifar::CIFAR10_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect();
            let mut train = cifar::empty(Cifar::C10, names.clone());
            for i in 1..=5 {
                cifar::read_python(&d.join(format!("data_batch_{i}")), Cifar::C10, &mut train)?;
            }
            let mut test = cifar::empty(Cifar::C10, names);
            cifar::read_python(&d.join("test_batch"), Cifar::C10, &mut test)?;
            (train, test, "cifar10-python")
        }
        RealFormat::Cifar100Python(d) => {
            let names = cifar::python_fine_names(&d.join("meta"))
                .unwrap_or_else(|| cifar::class_names(None, 100));
            let mut train = cifar::empty(Cifar::C100, names.clone());
            cifar::read_python(&d.join("train"), Cifar::C100, &mut train)?;
            let mut test = cifar::empty(Cifar::C100, names);
            cifar::read_python(&d.join("test"), Cifar::C100, &mut test)?;
            (train, test, "cifar100-python")
        }
        RealFormat::Idx { dir, fashion } => {
            let names: Vec<String> = if *fashion {
                idx::FASHION_CLASSES.iter().map(|s| s.to_string()).collect()
            } else {
                (0..10).map(|c| c.to_string()).collect()
            };
            let missing = |what: &str| Error::format(dir, format!("IDX folder has no {what} file"));
            let ti = idx::find(dir, &["train-images-idx3-ubyte", "train-images.idx3-ubyte"])
                .ok_or_else(|| missing("train-images-idx3-ubyte"))?;
            let tl = idx::find(dir, &["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"])
                .ok_or_else(|| missing("train-labels-idx1-ubyte"))?;
            let si = idx::find(dir, &["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"])
                .ok_or_else(|| missing("t10k-images-idx3-ubyte"))?;
            let sl = idx::find(dir, &["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"])
                .ok_or_else(|| missing("t10k-labels-idx1-ubyte"))?;
            let format = if crate::data::io::is_gz(&ti) {
                "idx.gz"
            } else {
                "idx"
            };
            (
                idx::read_split(&ti, &tl, &names)?,
                idx::read_split(&si, &sl, &names)?,
                format,
            )
        }
        RealFormat::TinyImageNet(d) => {
            let (train, test) = folder::load_tinyimagenet(d)?;
            (train, test, "tinyimagenet-folders")
        }
        RealFormat::ImageFolder(d) => {
            let (train, test) = folder::load_image_folder_splits(d, None)?;
            (train, test, "image-folders")
        }
    };
    check_splits(fmt, &train, &test)?;
    Ok(RealData {
        train,
        test,
        name,
        format: format.to_string(),
        norm,
    })
}

/// The two splits must agree in shape and classes and must not be empty.
fn check_splits(
    fmt: &RealFormat,
    train: &crate::data::Dataset,
    test: &crate::data::Dataset,
) -> Result<()> {
    let dir = match fmt {
        RealFormat::Cifar10Binary(d)
        | RealFormat::Cifar100Binary(d)
        | RealFormat::Cifar10Python(d)
        | RealFormat::Cifar100Python(d)
        | RealFormat::TinyImageNet(d)
        | RealFormat::ImageFolder(d) => d,
        RealFormat::Idx { dir, .. } => dir,
    };
    if train.is_empty() || test.is_empty() {
        return Err(Error::format(dir, "a split is empty"));
    }
    if (train.channels, train.height, train.width) != (test.channels, test.height, test.width) {
        return Err(Error::format(
            dir,
            format!(
                "train images are {}x{}x{} but test images are {}x{}x{}",
                train.channels, train.height, train.width, test.channels, test.height, test.width
            ),
        ));
    }
    if train.classes != test.classes {
        return Err(Error::format(
            dir,
            format!("train has {} classes, test {}", train.classes, test.classes),
        ));
    }
    Ok(())
}
