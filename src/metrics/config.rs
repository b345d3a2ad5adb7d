//! `EvalConfig`: every setting of one `ddr-fast eval`, with DD-Ranking's defaults.
//!
//! Filled in three layers: defaults here, then a DD-Ranking YAML file (`yaml.rs`), then CLI flags
//! (`cli/eval.rs`). `validate` checks the combination once all layers are applied, so the planner
//! can trust every field.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The learning-rate grid of DD-Ranking's hyper-parameter search (DESIGN.md §2).
pub const DEFAULT_LR_GRID: [f64; 5] = [0.001, 0.005, 0.01, 0.05, 0.1];

/// Which score to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// LRS for a hard-label method: the recipe is hard labels.
    LrsHard,
    /// LRS for a soft-label method: IOR uses the soft-label recipe.
    LrsSoft,
    /// Augmentation-robust score.
    Ars,
    /// Plain tuned accuracy of the synthetic set with its recipe.
    Acc,
}

/// The augmentation of a training (DD-Ranking's `data_aug_func` + `aug_params`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "func")]
pub enum AugConfig {
    None,
    /// Differentiable Siamese augmentation, one op per batch (DESIGN.md §5).
    Dsa {
        scale: f64,
        rotate: f64,
        flip: f64,
        brightness: f64,
        saturation: f64,
        contrast: f64,
        crop: f64,
        cutout: f64,
    },
    /// λ ~ Beta(alpha, alpha).
    Mixup {
        alpha: f64,
    },
    /// λ ~ Beta(beta, beta).
    Cutmix {
        beta: f64,
    },
}

impl AugConfig {
    /// DSA with `ddranking` 0.2.0's default parameters.
    pub fn dsa_default() -> Self {
        AugConfig::Dsa {
            scale: 1.2,
            rotate: 15.0,
            flip: 0.5,
            brightness: 1.0,
            saturation: 2.0,
            contrast: 0.5,
            crop: 0.125,
            cutout: 0.5,
        }
    }

    /// The function name as DD-Ranking's `data_aug_func` spells it.
    pub fn func_name(&self) -> &'static str {
        match self {
            AugConfig::None => "none",
            AugConfig::Dsa { .. } => "dsa",
            AugConfig::Mixup { .. } => "mixup",
            AugConfig::Cutmix { .. } => "cutmix",
        }
    }
}

/// Where soft labels come from (DESIGN.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SoftMode {
    /// One stored logit vector per image.
    S,
    /// Mean teacher logits on each augmented batch.
    M,
}

/// The soft-label loss (DESIGN.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    Kl,
    Sce,
    MseGt,
}

/// DD-Ranking's `loss_fn_kwargs`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossKwargs {
    pub temperature: f64,
    pub scale_loss: bool,
    pub mse_weight: f64,
    pub ce_weight: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// lr₀·0.1^⌊e/step_size⌋.
    Step,
    /// lr₀(1 + cos(πe/N))/2.
    Cosineannealing,
    /// lr₀·½(1 + cos(πe/(2N))): ends at lr₀/2.
    Cosine,
    /// Constant learning rate.
    None,
}

/// Whether the method's own recipe uses hard or soft labels (ARS and `acc` need to know).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelType {
    Hard,
    Soft,
}

/// How random subsets reach the students (DD-Ranking's `random_data_format`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RandomDataFormat {
    /// The subset's tensors as they are.
    #[default]
    Tensor,
    /// Saved as JPEG files (PIL's default quality 75) and read back, as DD-Ranking does.
    Image,
}

impl FromStr for RandomDataFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_lowercase().as_str() {
            "tensor" | "tensors" => Ok(RandomDataFormat::Tensor),
            "image" | "images" => Ok(RandomDataFormat::Image),
            _ => Err(unknown("random_data_format", s, "tensor, image")),
        }
    }
}

/// Every setting of one evaluation. Paths are as given (relative ones resolve against the working
/// directory, as in DD-Ranking); `None` means "not given".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    pub metric: Metric,
    /// Canonical dataset name (see [`DatasetInfo::parse`]); "embedded" is the built-in demo set.
    pub dataset: String,
    pub data_dir: Option<PathBuf>,
    /// The distilled set (safetensors, .pt or an image folder). None → the demo's herding coreset.
    pub syn_path: Option<PathBuf>,
    /// A learning rate learned by the method: replaces the grid search for the synthetic set only.
    pub syn_lr: Option<f64>,
    pub ipc: usize,
    pub im_size: Option<[usize; 2]>,
    /// `ConvNet-3`, `ConvNet-4-BN`, ... (DESIGN.md §4). Several names joined by
    /// [`MODEL_SEPARATOR`] ask for a cross-architecture evaluation: `cli/eval_models.rs` runs one
    /// evaluation per name, each with a config holding that one name ([`EvalConfig::models`]).
    pub model: String,
    /// Channels of every conv layer (DESIGN.md default 128; the demo uses fewer).
    pub width: usize,
    pub aug: AugConfig,
    /// LRS-soft: augment the hard-label trainings too (DD-Ranking's `use_aug_for_hard`).
    pub use_aug_for_hard: bool,
    pub label_type: LabelType,
    pub soft_label_mode: SoftMode,
    pub criterion: Criterion,
    pub loss: LossKwargs,
    pub optimizer: Optimizer,
    pub scheduler: Scheduler,
    /// Epochs between learning-rate drops of the `step` scheduler; None → num_epochs / 2.
    pub step_size: Option<usize>,
    pub weight_decay: f64,
    pub momentum: f64,
    pub num_eval: usize,
    pub num_epochs: usize,
    /// Epochs between tests; None → the metric's reference interval (10 hard, 20 soft / ARS).
    pub test_interval: Option<usize>,
    pub lr_grid: Vec<f64>,
    /// Learning rate of the full-data training (DD-Ranking's `default_lr`).
    pub default_lr: f64,
    /// Epochs of the full-data training; None → num_epochs.
    pub full_epochs: Option<usize>,
    pub use_zca: bool,
    pub syn_batch_size: usize,
    pub real_batch_size: usize,
    /// ARS's only batch key (`batch_size`): its trainings and tests use it; None → syn_batch_size.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// How DD-Ranking stores random subsets (`random_data_format`): `Image` round-trips them
    /// through JPEG files (quality 75), `Tensor` keeps them exact.
    #[serde(default)]
    pub random_data_format: RandomDataFormat,
    /// DD-Ranking's `custom_train_trans` (YAML list form): applied per image, at every access, to
    /// an image-folder synthetic set (`metrics::yaml::train_trans_for` says when).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_train_trans: Option<crate::aug::TvPipeline>,
    /// Train on the full real set for HLR; false needs `full_acc` (or a DD-Ranking cached value).
    pub eval_full_data: bool,
    /// A known full-data accuracy (fraction) used when `eval_full_data` is false.
    pub full_acc: Option<f64>,
    pub teacher_dir: Option<PathBuf>,
    pub teacher_names: Vec<String>,
    pub seed: u64,
    pub lambda: f64,
    pub gamma: f64,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    pub out_dir: Option<PathBuf>,
    /// Where DD-Ranking's `save_path` asked for the CSV.
    pub csv_path: Option<PathBuf>,
    /// Cache of finished trainings; None → `<out_dir>/cache` or `./.ddr-cache`.
    pub cache_dir: Option<PathBuf>,
    pub no_cache: bool,
}

impl Default for EvalConfig {
    /// `ddranking` 0.2.0's constructor defaults (README "Defaults"): CutMix β 1, KL at T 1.2,
    /// MSE-GT weights 1 / 0, soft labels for ARS, no augmentation of LRS-soft's hard-label
    /// trainings, no full-data training. Where the reference has none (its `step_size` None makes
    /// StepLR fail) ddr-fast's choice is documented next to the field.
    fn default() -> Self {
        EvalConfig {
            metric: Metric::LrsHard,
            dataset: "cifar10".into(),
            data_dir: None,
            syn_path: None,
            syn_lr: None,
            ipc: 10,
            im_size: None,
            model: "ConvNet-3".into(),
            width: 128,
            aug: AugConfig::Cutmix { beta: 1.0 },
            use_aug_for_hard: false,
            label_type: LabelType::Soft,
            soft_label_mode: SoftMode::S,
            criterion: Criterion::Kl,
            loss: LossKwargs {
                temperature: 1.2,
                scale_loss: false,
                mse_weight: 1.0,
                ce_weight: 0.0,
            },
            optimizer: Optimizer::Sgd,
            scheduler: Scheduler::Step,
            step_size: None,
            weight_decay: 5e-4,
            momentum: 0.9,
            num_eval: 5,
            num_epochs: 300,
            test_interval: None,
            lr_grid: DEFAULT_LR_GRID.to_vec(),
            default_lr: 0.01,
            full_epochs: None,
            use_zca: false,
            syn_batch_size: 256,
            real_batch_size: 256,
            batch_size: None,
            random_data_format: RandomDataFormat::Tensor,
            custom_train_trans: None,
            eval_full_data: false,
            full_acc: None,
            teacher_dir: None,
            teacher_names: vec!["ConvNet-3".into()],
            seed: 0,
            lambda: crate::metrics::scores::DEFAULT_LAMBDA,
            gamma: crate::metrics::scores::DEFAULT_GAMMA,
            device: "auto".into(),
            out_dir: None,
            csv_path: None,
            cache_dir: None,
            no_cache: false,
        }
    }
}

/// Separates the names of a cross-architecture model list in [`EvalConfig::model`].
pub const MODEL_SEPARATOR: char = ',';

/// DD-Ranking's `REAL_DATA_ACC_CACHE` (ddranking/utils/train_and_eval.py): full-data accuracies in
/// percent it uses instead of training when `eval_full_data` is false, keyed by its own spellings.
pub const REFERENCE_FULL_ACC: [(&str, &str, f64); 2] = [
    ("ImageNet1K", "ResNet-18-BN", 56.5),
    ("TinyImageNet", "ResNet-18-BN", 46.4),
];

/// What the planner needs to know about a dataset before reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatasetInfo {
    pub name: &'static str,
    pub classes: usize,
    pub channels: usize,
    pub size: usize,
    pub train_len: usize,
    pub test_len: usize,
}

impl DatasetInfo {
    /// Accepts DD-Ranking's names (`CIFAR10`, `TinyImageNet`, ...) and ddr-fast's lower-case ones.
    pub fn parse(name: &str) -> Result<DatasetInfo> {
        let key: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        let d = |name, classes, channels, size, train_len, test_len| DatasetInfo {
            name,
            classes,
            channels,
            size,
            train_len,
            test_len,
        };
        Ok(match key.as_str() {
            "cifar10" => d("cifar10", 10, 3, 32, 50_000, 10_000),
            "cifar100" => d("cifar100", 100, 3, 32, 50_000, 10_000),
            "mnist" => d("mnist", 10, 1, 28, 60_000, 10_000),
            "fashionmnist" => d("fashion-mnist", 10, 1, 28, 60_000, 10_000),
            "tinyimagenet" => d("tinyimagenet", 200, 3, 64, 100_000, 10_000),
            "embedded" | "fashionmnistembedded" => {
                d("fashion-mnist-embedded", 10, 1, 28, 2_000, 1_000)
            }
            _ => {
                return Err(Error::config(format!(
                    "dataset: unknown dataset '{name}'; expected one of CIFAR10, CIFAR100, MNIST, \
                     FashionMNIST, TinyImageNet, embedded"
                )))
            }
        })
    }
}

impl DatasetInfo {
    /// The name as DD-Ranking spells it (its table keys and teacher folders use this spelling).
    pub fn reference_name(&self) -> &'static str {
        match self.name {
            "cifar10" => "CIFAR10",
            "cifar100" => "CIFAR100",
            "mnist" => "MNIST",
            "fashion-mnist" => "FashionMNIST",
            "tinyimagenet" => "TinyImageNet",
            other => other,
        }
    }
}

impl EvalConfig {
    /// The dataset's fixed facts (classes, image shape, split sizes).
    pub fn dataset_info(&self) -> Result<DatasetInfo> {
        DatasetInfo::parse(&self.dataset)
    }

    /// The student models of this evaluation, in the order given: one name, or several for a
    /// cross-architecture evaluation.
    pub fn models(&self) -> Vec<&str> {
        self.model.split(MODEL_SEPARATOR).map(str::trim).collect()
    }

    /// Epochs between tests: the configured value or the reference's per-metric default.
    pub fn test_interval(&self) -> usize {
        self.test_interval.unwrap_or(match self.metric {
            Metric::LrsHard | Metric::Acc => 10,
            Metric::LrsSoft | Metric::Ars => 20,
        })
    }

    pub fn step_size(&self) -> usize {
        self.step_size.unwrap_or((self.num_epochs / 2).max(1))
    }

    pub fn full_epochs(&self) -> usize {
        self.full_epochs.unwrap_or(self.num_epochs)
    }

    /// The full-data accuracy used when `eval_full_data` is false: the given one, else
    /// DD-Ranking's `REAL_DATA_ACC_CACHE` entry for (dataset, model), as a fraction.
    pub fn known_full_acc(&self) -> Option<f64> {
        self.full_acc.or_else(|| {
            let info = self.dataset_info().ok()?;
            REFERENCE_FULL_ACC
                .iter()
                .find(|(d, m, _)| *d == info.reference_name() && *m == self.model)
                .map(|(_, _, pct)| pct / 100.0)
        })
    }

    /// ARS's batch size (its one `batch_size` key), else the synthetic batch size.
    pub fn ars_batch_size(&self) -> usize {
        self.batch_size.unwrap_or(self.syn_batch_size)
    }

    /// Whether the method's recipe (IOR / ARS trainings) uses soft labels.
    pub fn recipe_is_soft(&self) -> bool {
        match self.metric {
            Metric::LrsHard => false,
            Metric::LrsSoft => true,
            Metric::Ars | Metric::Acc => self.label_type == LabelType::Soft,
        }
    }

    /// Checks the combination of settings; every message names the setting.
    pub fn validate(&self) -> Result<()> {
        let info = self.dataset_info()?;
        let positive = |what: &str, v: usize| {
            if v == 0 {
                Err(Error::config(format!("{what} must be at least 1, found 0")))
            } else {
                Ok(())
            }
        };
        positive("ipc", self.ipc)?;
        positive("num_eval", self.num_eval)?;
        positive("num_epochs", self.num_epochs)?;
        positive("test_interval", self.test_interval())?;
        positive("syn_batch_size", self.syn_batch_size)?;
        positive("real_batch_size", self.real_batch_size)?;
        if let Some(b) = self.batch_size {
            positive("batch_size", b)?;
        }
        positive("width", self.width)?;
        if let Some(s) = self.step_size {
            positive("step_size", s)?;
        }
        if let Some(e) = self.full_epochs {
            positive("full_epochs", e)?;
        }
        if info.train_len > 0 && self.ipc * info.classes > info.train_len {
            return Err(Error::config(format!(
                "ipc: {} images per class × {} classes exceeds the {} training images of {}",
                self.ipc, info.classes, info.train_len, info.name
            )));
        }
        if let Some([h, w]) = self.im_size {
            if h != info.size || w != info.size {
                return Err(Error::config(format!(
                    "im_size: [{h}, {w}] does not match {} images of {}×{} (resizing is not supported)",
                    info.name, info.size, info.size
                )));
            }
        }
        if self.lr_grid.is_empty() {
            return Err(Error::config("lr grid: needs at least one learning rate"));
        }
        for (what, v) in self
            .lr_grid
            .iter()
            .map(|v| ("lr grid", *v))
            .chain(self.syn_lr.map(|v| ("syn_lr", v)))
            .chain([("default_lr", self.default_lr)])
        {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::config(format!(
                    "{what}: learning rates must be finite and > 0, found {v}"
                )));
            }
        }
        for (what, v) in [("lambda", self.lambda), ("gamma", self.gamma)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::config(format!(
                    "{what} must be in [0, 1], found {v}"
                )));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config(format!(
                "weight_decay must be ≥ 0, found {}",
                self.weight_decay
            )));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(Error::config(format!(
                "momentum must be in [0, 1), found {}",
                self.momentum
            )));
        }
        if !(self.loss.temperature.is_finite() && self.loss.temperature > 0.0) {
            return Err(Error::config(format!(
                "loss_fn_kwargs.temperature must be > 0, found {}",
                self.loss.temperature
            )));
        }
        if !self.eval_full_data
            && self.known_full_acc().is_none()
            && matches!(self.metric, Metric::LrsHard | Metric::LrsSoft)
        {
            return Err(Error::config(format!(
                "eval_full_data is false (DD-Ranking's default) and DD-Ranking caches no full-data \
                 accuracy for {}-{}: pass --eval-full-data true (YAML eval_full_data: true) to train \
                 it, or --full-acc FRACTION to give it",
                info.reference_name(),
                self.model
            )));
        }
        if let Some(a) = self.full_acc {
            if !(0.0..=1.0).contains(&a) {
                return Err(Error::config(format!(
                    "full_acc must be a fraction in [0, 1], found {a}"
                )));
            }
        }
        if self.recipe_is_soft() && self.teacher_names.is_empty() {
            return Err(Error::config(
                "teacher_model_names: a soft-label recipe needs at least one teacher",
            ));
        }
        if self.metric == Metric::Ars && self.aug == AugConfig::None {
            return Err(Error::config("data_aug_func: ARS compares training with and without augmentation; 'none' leaves nothing to compare"));
        }
        parse_device(&self.device)?;
        Ok(())
    }
}

/// The compute device a user asked for: the one parser every command shares.
pub use crate::backend::DeviceChoice;

pub fn parse_device(s: &str) -> Result<DeviceChoice> {
    DeviceChoice::parse(s)
}

// ---- names as DD-Ranking spells them ---------------------------------------------------------

fn unknown(what: &str, found: &str, expected: &str) -> String {
    format!("unsupported {what} '{found}'; expected one of {expected}")
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_lowercase().replace('_', "-").as_str() {
            "lrs-hard" | "lrs" => Ok(Metric::LrsHard),
            "lrs-soft" => Ok(Metric::LrsSoft),
            "ars" => Ok(Metric::Ars),
            "acc" | "accuracy" => Ok(Metric::Acc),
            _ => Err(unknown("metric", s, "lrs-hard, lrs-soft, ars, acc")),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::LrsHard => "lrs-hard",
            Metric::LrsSoft => "lrs-soft",
            Metric::Ars => "ars",
            Metric::Acc => "acc",
        })
    }
}

impl FromStr for SoftMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "S" | "s" => Ok(SoftMode::S),
            "M" | "m" => Ok(SoftMode::M),
            _ => Err(unknown("soft label mode", s, "S, M")),
        }
    }
}

impl FromStr for Criterion {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_lowercase().as_str() {
            "kl" => Ok(Criterion::Kl),
            "sce" => Ok(Criterion::Sce),
            "mse_gt" | "mse-gt" => Ok(Criterion::MseGt),
            _ => Err(unknown("soft label criterion", s, "kl, sce, mse_gt")),
        }
    }
}

impl FromStr for Optimizer {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_lowercase().as_str() {
            "sgd" => Ok(Optimizer::Sgd),
            "adam" => Ok(Optimizer::Adam),
            "adamw" => Ok(Optimizer::Adamw),
            _ => Err(unknown("optimizer", s, "sgd, adam, adamw")),
        }
    }
}

impl FromStr for Scheduler {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_lowercase().as_str() {
            "step" | "steplr" => Ok(Scheduler::Step),
            "cosineannealing" | "cosineannealinglr" => Ok(Scheduler::Cosineannealing),
            "cosine" => Ok(Scheduler::Cosine),
            "none" | "constant" => Ok(Scheduler::None),
            _ => Err(unknown(
                "lr scheduler",
                s,
                "step, cosineannealing, cosine, none",
            )),
        }
    }
}

impl FromStr for LabelType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_lowercase().as_str() {
            "hard" => Ok(LabelType::Hard),
            "soft" => Ok(LabelType::Soft),
            _ => Err(unknown("label type", s, "hard, soft")),
        }
    }
}

/// The augmentation named `func` with default parameters (DD-Ranking's defaults).
pub fn aug_with_defaults(func: &str) -> std::result::Result<AugConfig, String> {
    match func.to_lowercase().as_str() {
        "dsa" => Ok(AugConfig::dsa_default()),
        // Beta(1, 1): λ uniform on [0, 1]; `aug_params.lambda` (or `alpha`) sets another.
        "mixup" => Ok(AugConfig::Mixup { alpha: 1.0 }),
        "cutmix" => Ok(AugConfig::Cutmix { beta: 1.0 }),
        "none" | "null" | "" => Ok(AugConfig::None),
        _ => Err(unknown("data_aug_func", func, "dsa, mixup, cutmix, none")),
    }
}
