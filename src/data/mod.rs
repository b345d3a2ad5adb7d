//! Data in: real datasets, synthetic sets, PyTorch files, teachers, random subsets.
//!
//! Everything here is for the eval planner and the `ddr-fast data` command. Real datasets are held
//! in \[0,1\] pixel space; the trainer normalises them with [`Norm`] (DESIGN.md §3) when it copies
//! them to a device. Every reader checks sizes against the file length before allocating, so a
//! lying header gives an error, never a huge allocation or a panic.
//!
//! How `eval` uses it:
//! - real data: [`load_named`]`("cifar10", Some(dir))` (or [`load_real`]`(dir)` to detect) →
//!   [`RealData`] `{ train, test, norm, .. }`; `"fashion-mnist-embedded"` needs no folder
//!   ([`embedded::fashion_mnist`]). Train on `real.train.normalised(&real.norm)`.
//! - a synthetic set: [`load_synthetic`]`(path, &SynExpect::for_real(&real, Some(ipc)))` →
//!   [`SyntheticSet`] with normalised images, hard labels (class-major if the file has none),
//!   optional soft labels and lr.
//! - a random subset for run r: `real.train.select(&`[`random_subset`]`(&real.train.labels,
//!   classes, ipc, seed, r)?)`.
//! - a teacher: [`load_teacher`]`(path)` → name → (shape, values); [`save_teacher`] writes it back.
//! - ZCA: [`zca::fit_input`] hands the aug module the raw-pixel (N, D) training matrix.

pub mod cifar;
pub mod detect;
pub mod embedded;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod io;
pub mod jpeg;
pub mod pickle;
pub mod safetensors_io;
pub mod stats;
pub mod subset;
pub mod synthetic;
pub mod teacher;
pub mod torch;
pub mod zca;

pub use detect::{load_named, load_real, RealFormat};
pub use stats::{channel_stats, ChannelStats};
pub use subset::random_subset;
pub use synthetic::{load_synthetic, load_synthetic_files, SynExpect, SynFiles, SyntheticSet};
pub use teacher::{load_teacher, save_teacher, TeacherWeights};

/// One split of a dataset, in \[0,1\] pixel space.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// (N, C, H, W) pixel values in \[0,1\] (uint8 / 255 for the 8-bit formats); never normalised.
    pub images: Vec<f32>,
    /// (N,) class index in 0..classes.
    pub labels: Vec<u32>,
    pub classes: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// (classes,) human-readable names; may be "0", "1", ... when the format has none.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Floats per image: C·H·W.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// (C, H, W) of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// (classes,) number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// A copy of the images normalised per channel: (x − mean_c) / std_c. (N, C, H, W)
    pub fn normalised(&self, norm: &Norm) -> Vec<f32> {
        let mut out = self.images.clone();
        norm.apply(&mut out, self.channels, self.height * self.width);
        out
    }

    /// The images normalised per channel, consuming the split (no second copy of a large set).
    /// (N, C, H, W)
    pub fn into_normalised(self, norm: &Norm) -> Vec<f32> {
        let (c, plane) = (self.channels, self.height * self.width);
        let mut out = self.images;
        norm.apply(&mut out, c, plane);
        out
    }

    /// The images at the given indices, in that order: a new split (used for random subsets).
    pub fn select(&self, idx: &[usize]) -> Dataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(idx.len() * n); // (len(idx), C, H, W)
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            images,
            labels,
            ..self.empty_like()
        }
    }

    /// Same classes and shape, no images.
    pub fn empty_like(&self) -> Dataset {
        Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            classes: self.classes,
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
        }
    }
}

/// A real dataset: its training and test splits and how to normalise them.
#[derive(Debug, Clone, PartialEq)]
pub struct RealData {
    pub train: Dataset,
    pub test: Dataset,
    /// Canonical dataset name: "cifar10", "cifar100", "mnist", "fashion-mnist", "tinyimagenet",
    /// "imagenet-subset" or "imagefolder".
    pub name: String,
    /// On-disk layout it was read from, e.g. "cifar10-binary", "cifar100-python", "idx.gz".
    pub format: String,
    /// Per-channel normalisation the trainer applies (DESIGN.md §3).
    pub norm: Norm,
}

/// Per-channel normalisation constants: x' = (x − mean_c) / std_c on \[0,1\] pixel values.
#[derive(Debug, Clone, PartialEq)]
pub struct Norm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Norm {
    /// CIFAR-10 and CIFAR-100 (DESIGN.md §3; the values used by DC/DSA/MTT and DD-Ranking).
    pub fn cifar() -> Norm {
        Norm {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2023, 0.1994, 0.2010],
        }
    }

    /// TinyImageNet and ImageNet subsets: the torchvision ImageNet constants (DESIGN.md §3).
    pub fn imagenet() -> Norm {
        Norm {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// MNIST: 0.1307 / 0.3081, the constants of the PyTorch MNIST example, also used by the
    /// dataset-distillation `get_dataset` helpers (DC/DSA/MTT utils.py) that DD-Ranking follows.
    pub fn mnist() -> Norm {
        Norm {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// Fashion-MNIST: 0.2861 / 0.3530, from the same `get_dataset` helpers (DC/DSA/MTT utils.py).
    pub fn fashion_mnist() -> Norm {
        Norm {
            mean: vec![0.2861],
            std: vec![0.3530],
        }
    }

    /// Mean 0, std 1 per channel: leaves values unchanged (image folders of unknown origin).
    pub fn identity(channels: usize) -> Norm {
        Norm {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// The constants for a canonical dataset name, or None if the name is unknown.
    pub fn for_dataset(name: &str) -> Option<Norm> {
        match name {
            "cifar10" | "cifar100" => Some(Norm::cifar()),
            "tinyimagenet" | "imagenet-subset" | "imagefolder" => Some(Norm::imagenet()),
            "mnist" => Some(Norm::mnist()),
            "fashion-mnist" => Some(Norm::fashion_mnist()),
            _ => None,
        }
    }

    /// Normalise in place. `x`: (N, C, plane) with plane = H·W.
    pub fn apply(&self, x: &mut [f32], channels: usize, plane: usize) {
        for (k, v) in x.iter_mut().enumerate() {
            let c = (k / plane) % channels;
            *v = (*v - self.mean[c]) / self.std[c];
        }
    }

    /// Undo [`Norm::apply`] in place. `x`: (N, C, plane).
    pub fn invert(&self, x: &mut [f32], channels: usize, plane: usize) {
        for (k, v) in x.iter_mut().enumerate() {
            let c = (k / plane) % channels;
            *v = *v * self.std[c] + self.mean[c];
        }
    }
}
