//! Reads a DD-Ranking-style YAML config into an [`EvalConfig`].
//!
//! Known keys are applied on top of the current values (so defaults stay for absent keys), keys
//! ddr-fast does not need are listed as warnings, and a value ddr-fast cannot honour is one error
//! naming the file and the key. Relative paths stay relative: they resolve against the working
//! directory when used, exactly as DD-Ranking resolves them (a config written for DD-Ranking keeps
//! meaning the same folders when run from the same place).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::config::{
    aug_with_defaults, AugConfig, DatasetInfo, EvalConfig, Metric, MODEL_SEPARATOR,
};
use crate::aug::TvPipeline;
use crate::error::{Error, Result};

/// Keys DD-Ranking reads that ddr-fast accepts without needing them, with the reason.
const IGNORED_KEYS: [(&str, &str); 3] = [
    (
        "num_workers",
        "ddr-fast reads data in-process, there are no loader workers",
    ),
    (
        "random_data_path",
        "random subsets are drawn in memory and their results cached in the cache dir",
    ),
    (
        "dist",
        "ddr-fast trains all students of a cohort on one device; there is no multi-process mode",
    ),
];

/// What a YAML file added besides the settings: warnings to print before planning, and which
/// config fields it set (for the settings' provenance).
#[derive(Debug, Default)]
pub struct YamlReport {
    pub warnings: Vec<String>,
    /// Names of the [`EvalConfig`] fields (as serialised) that a key of the file set.
    pub set: BTreeSet<&'static str>,
    /// `custom_train_trans` in the list form of `yaml_tv`, when the file gives one.
    pub custom_train_trans: Option<TvPipeline>,
}

/// Where `custom_train_trans` applies. DD-Ranking passes it as the `transform` of
/// `datasets.ImageFolder` only, so it acts when the synthetic set is an image folder and is ignored
/// for tensor files (its DSA / Mixup / CutMix `aug_func` runs on the batches either way). ddr-fast
/// does the same: applied per image at every access for a folder ([`train_trans_for`]), ignored
/// with a warning for a tensor file.
fn train_trans_scope(path: &Path, n: usize, cfg: &EvalConfig, report: &mut YamlReport) {
    if cfg.syn_path.as_deref().is_some_and(Path::is_dir) {
        return;
    }
    report.warnings.push(format!(
        "{}: custom_train_trans ({} transform(s)) is ignored for a synthetic set stored as tensors, \
         as DD-Ranking ignores it (it is the transform of an ImageFolder only)",
        path.display(),
        n
    ));
}

/// The `custom_train_trans` the synthetic set's trainings apply: the config's, when the synthetic
/// set is an image folder (as DD-Ranking's `ImageFolder(transform=custom_train_trans)`); None
/// for a tensor file or sets given in memory, which the reference never transforms.
pub fn train_trans_for(cfg: &EvalConfig) -> Option<&TvPipeline> {
    cfg.custom_train_trans
        .as_ref()
        .filter(|_| cfg.syn_path.as_deref().is_some_and(Path::is_dir))
}

/// The [`EvalConfig`] field a YAML key sets; None for keys that set nothing.
fn field_of(key: &str) -> Option<&'static str> {
    Some(match key {
        "metric" => "metric",
        "dataset" => "dataset",
        "real_data_path" => "data_dir",
        "syn_path" | "syn_data_path" | "image_path" => "syn_path",
        "syn_lr" => "syn_lr",
        "ipc" => "ipc",
        "im_size" => "im_size",
        "model_name" => "model",
        "width" | "net_width" => "width",
        "data_aug_func" | "aug_params" => "aug",
        "use_zca" => "use_zca",
        "use_aug_for_hard" => "use_aug_for_hard",
        "label_type" => "label_type",
        "soft_label_mode" => "soft_label_mode",
        "soft_label_criterion" => "criterion",
        "loss_fn_kwargs" => "loss",
        "optimizer" => "optimizer",
        "lr_scheduler" => "scheduler",
        "step_size" => "step_size",
        "weight_decay" => "weight_decay",
        "momentum" => "momentum",
        "num_eval" => "num_eval",
        "num_epochs" => "num_epochs",
        "full_epochs" => "full_epochs",
        "test_interval" => "test_interval",
        "lr_grid" => "lr_grid",
        "default_lr" => "default_lr",
        "syn_batch_size" => "syn_batch_size",
        "real_batch_size" => "real_batch_size",
        "batch_size" => "batch_size",
        "random_data_format" => "random_data_format",
        "custom_train_trans" => "custom_train_trans",
        "eval_full_data" => "eval_full_data",
        "full_acc" => "full_acc",
        "teacher_dir" => "teacher_dir",
        "teacher_model_names" => "teacher_names",
        "seed" => "seed",
        "lambda" => "lambda",
        "gamma" => "gamma",
        "device" => "device",
        "save_path" => "csv_path",
        "out_dir" => "out_dir",
        "cache_dir" => "cache_dir",
        _ => return None,
    })
}

/// Apply the keys of `path` to `cfg`.
pub fn load_yaml(path: &Path, cfg: &mut EvalConfig) -> Result<YamlReport> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    apply_yaml_str(path, &text, cfg)
}

/// Apply YAML text (read from `path`, named in messages) to `cfg`.
pub fn apply_yaml_str(path: &Path, text: &str, cfg: &mut EvalConfig) -> Result<YamlReport> {
    let doc: Value = serde_norway::from_str(text)
        .map_err(|e| Error::format(path, format!("not valid YAML: {e}")))?;
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        other => {
            return Err(Error::format(
                path,
                format!(
                    "expected a mapping of keys at the top level, found {}",
                    kind(&other)
                ),
            ))
        }
    };
    let mut report = YamlReport::default();
    let r = Reader { path };
    // aug_params depends on data_aug_func: apply it after the loop whatever the key order.
    let mut aug_params: Option<&Value> = None;
    let mut explicit_metric = false;
    let mut has_label_type = false;
    let mut has_soft_keys = false;

    for (k, v) in &map {
        let key = match k {
            Value::String(s) => s.as_str(),
            other => {
                return Err(Error::format(
                    path,
                    format!("keys must be strings, found {}", kind(other)),
                ))
            }
        };
        match key {
            "metric" => {
                cfg.metric = r.parse(key, v)?;
                explicit_metric = true;
            }
            "dataset" => {
                let name = r.string(key, v)?;
                cfg.dataset = DatasetInfo::parse(&name)
                    .map_err(|e| r.err(key, e.to_string()))?
                    .name
                    .to_string();
            }
            "real_data_path" => cfg.data_dir = r.opt_path(key, v)?,
            "syn_path" | "syn_data_path" | "image_path" => cfg.syn_path = r.opt_path(key, v)?,
            "syn_lr" => cfg.syn_lr = r.opt_f64(key, v)?,
            "ipc" => cfg.ipc = r.usize(key, v)?,
            "im_size" => cfg.im_size = Some(r.pair(key, v)?),
            // A name, or a list of them for a cross-architecture evaluation.
            "model_name" => {
                let names = r.string_list(key, v)?;
                cfg.model = check_model_names(&names).map_err(|m| r.err(key, m))?;
            }
            "width" | "net_width" => cfg.width = r.usize(key, v)?,
            "data_aug_func" => {
                let func = if v.is_null() {
                    "none".to_string()
                } else {
                    r.string(key, v)?
                };
                cfg.aug = aug_with_defaults(&func).map_err(|m| r.err(key, m))?;
            }
            "aug_params" => aug_params = Some(v),
            "use_zca" => cfg.use_zca = r.bool(key, v)?,
            "use_aug_for_hard" => cfg.use_aug_for_hard = r.bool(key, v)?,
            "label_type" => {
                cfg.label_type = r.parse(key, v)?;
                has_label_type = true;
            }
            "soft_label_mode" => {
                cfg.soft_label_mode = r.parse(key, v)?;
                has_soft_keys = true;
            }
            "soft_label_criterion" => {
                cfg.criterion = r.parse(key, v)?;
                has_soft_keys = true;
            }
            "loss_fn_kwargs" => apply_loss_kwargs(&r, v, cfg, &mut report)?,
            "optimizer" => cfg.optimizer = r.parse(key, v)?,
            "lr_scheduler" => cfg.scheduler = r.parse(key, v)?,
            "step_size" => cfg.step_size = Some(r.usize(key, v)?),
            "weight_decay" => cfg.weight_decay = r.f64(key, v)?,
            "momentum" => cfg.momentum = r.f64(key, v)?,
            "num_eval" => cfg.num_eval = r.usize(key, v)?,
            "num_epochs" => cfg.num_epochs = r.usize(key, v)?,
            "full_epochs" => cfg.full_epochs = Some(r.usize(key, v)?),
            "test_interval" => cfg.test_interval = Some(r.usize(key, v)?),
            "lr_grid" => cfg.lr_grid = r.f64_list(key, v)?,
            "default_lr" => cfg.default_lr = r.f64(key, v)?,
            "syn_batch_size" => cfg.syn_batch_size = r.usize(key, v)?,
            "real_batch_size" => cfg.real_batch_size = r.usize(key, v)?,
            // Read only by DD-Ranking's ARS (for all its trainings and tests); see the check below.
            "batch_size" => cfg.batch_size = Some(r.usize(key, v)?),
            "eval_full_data" => cfg.eval_full_data = r.bool(key, v)?,
            "full_acc" => cfg.full_acc = r.opt_f64(key, v)?,
            "teacher_dir" => cfg.teacher_dir = r.opt_path(key, v)?,
            "teacher_model_names" => cfg.teacher_names = r.string_list(key, v)?,
            "seed" => cfg.seed = r.usize(key, v)? as u64,
            "lambda" => cfg.lambda = r.f64(key, v)?,
            "gamma" => cfg.gamma = r.f64(key, v)?,
            "device" => cfg.device = r.string(key, v)?,
            "save_path" => cfg.csv_path = r.opt_path(key, v)?,
            "out_dir" => cfg.out_dir = r.opt_path(key, v)?,
            "cache_dir" => cfg.cache_dir = r.opt_path(key, v)?,
            "random_data_format" => cfg.random_data_format = r.parse(key, v)?,
            "custom_train_trans" => {
                if !v.is_null() {
                    let t = super::yaml_tv::parse_train_trans(path, v)?;
                    cfg.custom_train_trans = Some(t.clone());
                    report.custom_train_trans = Some(t);
                }
            }
            "custom_val_trans" => {
                if !v.is_null() {
                    return Err(r.err(
                        key,
                        "custom validation transforms are not supported; use null".into(),
                    ));
                }
            }
            "stu_use_torchvision" | "tea_use_torchvision" | "use_torchvision" => {
                if r.bool(key, v)? {
                    return Err(r.err(key, "torchvision model variants are not supported; only ddr-fast's own builds of the DD-Ranking networks (false)".into()));
                }
            }
            _ => match IGNORED_KEYS.iter().find(|(k, _)| *k == key) {
                Some((_, why)) => {
                    if key == "dist" && r.bool(key, v)? {
                        report
                            .warnings
                            .push(format!("{}: dist: true ignored: {why}", path.display()));
                    }
                }
                None => report
                    .warnings
                    .push(format!("{}: unknown key '{key}' ignored", path.display())),
            },
        }
    }
    if let Some(v) = aug_params {
        apply_aug_params(&r, v, cfg, &mut report)?;
    }
    if let Some(n) = report.custom_train_trans.as_ref().map(|t| t.0.len()) {
        train_trans_scope(path, n, cfg, &mut report);
    }
    for (k, _) in &map {
        if let Some(field) = k.as_str().and_then(field_of) {
            report.set.insert(field);
        }
    }
    if !explicit_metric {
        // DD-Ranking picks the metric by the Python class, not by a key; the keys each class
        // reads tell them apart: only AugmentationRobustScore reads `label_type`, only the
        // soft-label LRS reads the soft-label keys without it.
        let (metric, why) = if has_label_type {
            (
                Metric::Ars,
                "it sets label_type, which only DD-Ranking's AugmentationRobustScore reads",
            )
        } else if has_soft_keys {
            (Metric::LrsSoft, "it sets soft-label keys")
        } else {
            (Metric::LrsHard, "it sets no soft-label keys")
        };
        cfg.metric = metric;
        report.set.insert("metric");
        report.warnings.push(format!(
            "{}: no 'metric' key; using {metric} because {why} (set metric: or --metric to choose)",
            path.display()
        ));
    }
    if cfg.batch_size.is_some() && cfg.metric != Metric::Ars {
        report.warnings.push(format!(
            "{}: key 'batch_size' is read only by ARS; {} uses syn_batch_size and real_batch_size",
            path.display(),
            cfg.metric
        ));
    }
    Ok(report)
}

/// Checks a model name with the engine's parser: the ConvNet forms (`ConvNet`, `ConvNet-3`,
/// `ConvNetD4`, `ConvNet-3-BN`, `ConvNet-3-W64`, ...) and every other DD-Ranking student
/// (`ResNet-18-BN`, `VGG-11`, `AlexNet`, `LeNet`, `MLP`, ...); returns (depth, norm name), depth 0
/// for the families without one.
pub fn check_model_name(name: &str) -> std::result::Result<(usize, &'static str), String> {
    // The parsers also check the input shape; a CIFAR-like input accepts every supported name.
    if let Ok(spec) = crate::model::ConvNetSpec::from_name(name, 3, 32, 10) {
        let norm = match spec.norm {
            crate::backend::NormKind::Instance => "instance",
            crate::backend::NormKind::Batch => "batch",
            crate::backend::NormKind::None => "none",
        };
        return Ok((spec.depth, norm));
    }
    let net = crate::model::Net::from_name(name, 3, 32, 10).map_err(|e| e.to_string())?;
    let depth = name
        .split('-')
        .nth(1)
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let norm = match net.layers().unwrap_or(&[]).iter().find_map(|l| match l.op {
        crate::model::Op::Norm { kind, .. } => Some(kind),
        _ => None,
    }) {
        Some(crate::backend::NormLayerKind::Batch) => "batch",
        Some(_) => "instance",
        None => "none",
    };
    Ok((depth, norm))
}

/// Checks every name of a model list with [`check_model_name`] and joins them into the form
/// `EvalConfig::model` holds (one name, or several separated by [`MODEL_SEPARATOR`] for a
/// cross-architecture evaluation). An empty list or a name given twice is an error too.
pub fn check_model_names(names: &[String]) -> std::result::Result<String, String> {
    if names.is_empty() {
        return Err("expected at least one model name".into());
    }
    for (i, n) in names.iter().enumerate() {
        let n = n.trim();
        check_model_name(n).map_err(|e| format!("model '{n}': {e}"))?;
        if names[..i].iter().any(|m| m.trim() == n) {
            return Err(format!("model '{n}' is listed twice"));
        }
    }
    let trimmed: Vec<&str> = names.iter().map(|n| n.trim()).collect();
    Ok(trimmed.join(&MODEL_SEPARATOR.to_string()))
}

fn apply_loss_kwargs(
    r: &Reader,
    v: &Value,
    cfg: &mut EvalConfig,
    report: &mut YamlReport,
) -> Result<()> {
    if v.is_null() {
        return Ok(());
    }
    let m = r.mapping("loss_fn_kwargs", v)?;
    for (k, v) in m {
        let key = r.string("loss_fn_kwargs", k)?;
        let full = format!("loss_fn_kwargs.{key}");
        match key.as_str() {
            "temperature" => cfg.loss.temperature = r.f64(&full, v)?,
            "scale_loss" => cfg.loss.scale_loss = r.bool(&full, v)?,
            "mse_weight" => cfg.loss.mse_weight = r.f64(&full, v)?,
            "ce_weight" => cfg.loss.ce_weight = r.f64(&full, v)?,
            _ => report.warnings.push(format!(
                "{}: unknown key '{full}' ignored",
                r.path.display()
            )),
        }
    }
    Ok(())
}

fn apply_aug_params(
    r: &Reader,
    v: &Value,
    cfg: &mut EvalConfig,
    report: &mut YamlReport,
) -> Result<()> {
    if v.is_null() {
        return Ok(());
    }
    let m = r.mapping("aug_params", v)?;
    for (k, v) in m {
        let key = r.string("aug_params", k)?;
        let full = format!("aug_params.{key}");
        let known = match (&mut cfg.aug, key.as_str()) {
            (AugConfig::Dsa { scale, .. }, "scale") => Some(scale),
            (AugConfig::Dsa { rotate, .. }, "rotate") => Some(rotate),
            (AugConfig::Dsa { flip, .. }, "flip") => Some(flip),
            (AugConfig::Dsa { brightness, .. }, "brightness") => Some(brightness),
            (AugConfig::Dsa { saturation, .. }, "saturation") => Some(saturation),
            (AugConfig::Dsa { contrast, .. }, "contrast") => Some(contrast),
            (AugConfig::Dsa { crop, .. }, "crop") => Some(crop),
            (AugConfig::Dsa { cutout, .. }, "cutout") => Some(cutout),
            (AugConfig::Mixup { alpha }, "lambda" | "alpha") => Some(alpha),
            (AugConfig::Cutmix { beta }, "beta") => Some(beta),
            _ => None,
        };
        match known {
            Some(slot) => {
                let x = r.f64(&full, v)?;
                if !x.is_finite() || x < 0.0 {
                    return Err(r.err(&full, format!("expected a finite value ≥ 0, found {x}")));
                }
                *slot = x;
            }
            None => {
                // The probability keys are always 1 in DD-Ranking's metrics; anything else changes
                // the protocol, so it is refused rather than ignored.
                if key == "latestseed" {
                    // DD-Ranking's DSA reseeds torch per op when this is not -1 (it needs the key
                    // present); ddr-fast's counter-based generator is seeded by `seed` instead.
                    if r.f64(&full, v)? != -1.0 {
                        report.warnings.push(format!(
                            "{}: '{full}' ignored: ddr-fast's augmentation draws are seeded by `seed`",
                            r.path.display()
                        ));
                    }
                } else if matches!(key.as_str(), "cutmix_p" | "mixup_p") {
                    let p = r.f64(&full, v)?;
                    if p != 1.0 {
                        return Err(r.err(
                            &full,
                            format!("only 1.0 (always apply) is supported, found {p}"),
                        ));
                    }
                } else {
                    report.warnings.push(format!(
                        "{}: key '{full}' does not apply to data_aug_func {}; ignored",
                        r.path.display(),
                        cfg.aug.func_name()
                    ));
                }
            }
        }
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Typed access to values, every error naming the file and the key.
struct Reader<'a> {
    path: &'a Path,
}

impl Reader<'_> {
    fn err(&self, key: &str, msg: String) -> Error {
        Error::format(self.path, format!("key '{key}': {msg}"))
    }

    fn expected(&self, key: &str, what: &str, v: &Value) -> Error {
        self.err(
            key,
            format!("expected {what}, found {} ({})", kind(v), short(v)),
        )
    }

    fn string(&self, key: &str, v: &Value) -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(self.expected(key, "a string", v)),
        }
    }

    fn parse<T: std::str::FromStr<Err = String>>(&self, key: &str, v: &Value) -> Result<T> {
        let s = self.string(key, v)?;
        s.parse().map_err(|m| self.err(key, m))
    }

    fn f64(&self, key: &str, v: &Value) -> Result<f64> {
        match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| self.expected(key, "a number", v)),
            // YAML 1.1 writers sometimes quote floats like "1e-3".
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| self.expected(key, "a number", v)),
            _ => Err(self.expected(key, "a number", v)),
        }
    }

    fn opt_f64(&self, key: &str, v: &Value) -> Result<Option<f64>> {
        if v.is_null() {
            Ok(None)
        } else {
            self.f64(key, v).map(Some)
        }
    }

    fn usize(&self, key: &str, v: &Value) -> Result<usize> {
        match v.as_u64() {
            Some(n) => usize::try_from(n).map_err(|_| self.expected(key, "a whole number", v)),
            None => Err(self.expected(key, "a whole number ≥ 0", v)),
        }
    }

    fn bool(&self, key: &str, v: &Value) -> Result<bool> {
        v.as_bool()
            .ok_or_else(|| self.expected(key, "true or false", v))
    }

    fn opt_path(&self, key: &str, v: &Value) -> Result<Option<PathBuf>> {
        if v.is_null() {
            Ok(None)
        } else {
            self.string(key, v).map(|s| Some(PathBuf::from(s)))
        }
    }

    fn pair(&self, key: &str, v: &Value) -> Result<[usize; 2]> {
        match v {
            Value::Sequence(s) if s.len() == 2 => {
                Ok([self.usize(key, &s[0])?, self.usize(key, &s[1])?])
            }
            _ => Err(self.expected(key, "a list of two whole numbers [H, W]", v)),
        }
    }

    fn f64_list(&self, key: &str, v: &Value) -> Result<Vec<f64>> {
        match v {
            Value::Sequence(s) => s.iter().map(|x| self.f64(key, x)).collect(),
            _ => Ok(vec![self.f64(key, v)?]),
        }
    }

    fn string_list(&self, key: &str, v: &Value) -> Result<Vec<String>> {
        match v {
            Value::Sequence(s) => s.iter().map(|x| self.string(key, x)).collect(),
            Value::Null => Ok(Vec::new()),
            _ => Ok(vec![self.string(key, v)?]),
        }
    }

    fn mapping<'v>(&self, key: &str, v: &'v Value) -> Result<&'v Mapping> {
        v.as_mapping()
            .ok_or_else(|| self.expected(key, "a mapping", v))
    }
}

/// A value as it would appear in the file, cut short for messages.
fn short(v: &Value) -> String {
    let s = serde_norway::to_string(v).unwrap_or_default();
    let s = s.trim();
    if s.len() > 40 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(40).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::config::{Criterion, Optimizer, Scheduler, SoftMode};

    fn load(text: &str) -> Result<(EvalConfig, YamlReport)> {
        let mut cfg = EvalConfig::default();
        let rep = apply_yaml_str(Path::new("t.yaml"), text, &mut cfg)?;
        Ok((cfg, rep))
    }

    #[test]
    fn keys_apply_and_unknown_keys_warn() {
        let (cfg, rep) = load(
            "dataset: CIFAR100\nipc: 50\nsoft_label_mode: M\nsoft_label_criterion: kl\noptimizer: adamw\n\
             lr_scheduler: cosine\nloss_fn_kwargs: {temperature: 20.0, scale_loss: true}\nmystery: 3\n",
        )
        .unwrap();
        assert_eq!(cfg.dataset, "cifar100");
        assert_eq!(cfg.ipc, 50);
        assert_eq!(cfg.soft_label_mode, SoftMode::M);
        assert_eq!(cfg.criterion, Criterion::Kl);
        assert_eq!(cfg.optimizer, Optimizer::Adamw);
        assert_eq!(cfg.scheduler, Scheduler::Cosine);
        assert_eq!(cfg.loss.temperature, 20.0);
        assert!(cfg.loss.scale_loss);
        assert_eq!(cfg.metric, Metric::LrsSoft);
        assert!(
            rep.warnings.iter().any(|w| w.contains("'mystery'")),
            "{:?}",
            rep.warnings
        );
    }

    #[test]
    fn aug_params_apply_in_any_key_order() {
        let (cfg, _) = load("aug_params: {beta: 0.5}\ndata_aug_func: cutmix\n").unwrap();
        assert_eq!(cfg.aug, AugConfig::Cutmix { beta: 0.5 });
    }

    #[test]
    fn unsupported_values_name_file_and_key() {
        for (text, key) in [
            ("optimizer: rmsprop\n", "optimizer"),
            ("ipc: -3\n", "ipc"),
            ("model_name: ResNet-20\n", "model_name"),
            ("custom_train_trans: foo\n", "custom_train_trans"),
            ("data_aug_func: autoaugment\n", "data_aug_func"),
            (
                "loss_fn_kwargs: {temperature: hot}\n",
                "loss_fn_kwargs.temperature",
            ),
            (
                "aug_params: {cutmix_p: 0.5}\ndata_aug_func: cutmix\n",
                "aug_params.cutmix_p",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(
                e.contains("t.yaml") && e.contains(&format!("'{key}'")),
                "{text:?} → {e}"
            );
        }
    }

    /// The reference applies custom_train_trans to image folders only: ignored (with a warning)
    /// for tensor files, applied to a folder.
    #[test]
    fn custom_train_trans_scope_follows_the_reference() {
        let text =
            "custom_train_trans: [RandomHorizontalFlip, {RandomCrop: {size: 32, padding: 4}}]\n";
        let (cfg, rep) = load(&format!("syn_data_path: images.pt\n{text}")).unwrap();
        assert_eq!(rep.custom_train_trans.as_ref().map(|t| t.0.len()), Some(2));
        assert!(rep
            .warnings
            .iter()
            .any(|w| w.contains("custom_train_trans") && w.contains("ignored")));
        assert!(train_trans_for(&cfg).is_none());
        let dir = std::env::temp_dir().join(format!("ddr_tv_scope_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cfg, rep) = load(&format!("syn_data_path: {}\n{text}", dir.display())).unwrap();
        assert!(!rep
            .warnings
            .iter()
            .any(|w| w.contains("custom_train_trans")));
        assert_eq!(train_trans_for(&cfg).map(|t| t.0.len()), Some(2));
        std::fs::remove_dir_all(&dir).ok();
        assert!(rep.set.contains("custom_train_trans"));
    }

    #[test]
    fn defaults_are_the_reference_constructors() {
        // An empty file leaves every default: ddranking 0.2.0's constructor defaults.
        let (cfg, _) = load("metric: lrs-soft\n").unwrap();
        assert_eq!(cfg.aug, AugConfig::Cutmix { beta: 1.0 });
        assert!(!cfg.use_aug_for_hard);
        assert_eq!(cfg.criterion, Criterion::Kl);
        assert_eq!(cfg.loss.temperature, 1.2);
        assert!(!cfg.loss.scale_loss);
        assert_eq!((cfg.loss.mse_weight, cfg.loss.ce_weight), (1.0, 0.0));
        assert_eq!(cfg.label_type, crate::metrics::config::LabelType::Soft);
        assert_eq!(cfg.soft_label_mode, SoftMode::S);
        assert!(!cfg.eval_full_data);
        assert_eq!((cfg.num_epochs, cfg.num_eval, cfg.ipc), (300, 5, 10));
        assert_eq!((cfg.syn_batch_size, cfg.real_batch_size), (256, 256));
        assert_eq!((cfg.weight_decay, cfg.momentum), (5e-4, 0.9));
        assert_eq!(cfg.optimizer, Optimizer::Sgd);
        assert_eq!(cfg.scheduler, Scheduler::Step);
    }

    #[test]
    fn ars_batch_size_and_random_format_are_read() {
        let (cfg, rep) = load(
            "label_type: soft\nbatch_size: 1024\nrandom_data_format: image\n\
             data_aug_func: dsa\naug_params: {latestseed: -1, flip: 0.5}\n",
        )
        .unwrap();
        assert_eq!(cfg.metric, Metric::Ars);
        assert_eq!(cfg.batch_size, Some(1024));
        assert_eq!(cfg.ars_batch_size(), 1024);
        assert_eq!(
            cfg.random_data_format,
            crate::metrics::config::RandomDataFormat::Image
        );
        assert!(
            rep.warnings.iter().all(|w| !w.contains("batch_size")
                && !w.contains("latestseed")
                && !w.contains("random_data_format")),
            "{:?}",
            rep.warnings
        );
        assert!(rep.set.contains("batch_size") && rep.set.contains("random_data_format"));
        // Only ARS reads batch_size: the LRS metrics warn that it changes nothing for them.
        let (_, rep) = load("metric: lrs-hard\nbatch_size: 64\n").unwrap();
        assert!(
            rep.warnings.iter().any(|w| w.contains("'batch_size'")),
            "{:?}",
            rep.warnings
        );
        let e = load("random_data_format: png\n").unwrap_err().to_string();
        assert!(e.contains("'random_data_format'"), "{e}");
    }

    /// `model_name` as a list (cross-architecture) or a string; every name checked.
    #[test]
    fn model_name_lists() {
        let (cfg, _) = load("model_name: [ConvNet-3, ConvNet-2-BN]\n").unwrap();
        assert_eq!(cfg.models(), ["ConvNet-3", "ConvNet-2-BN"]);
        let (cfg, _) = load("model_name: ConvNet-4\n").unwrap();
        assert_eq!(cfg.models(), ["ConvNet-4"]);
        for (text, want) in [
            ("model_name: []\n", "at least one"),
            ("model_name: [ConvNet-3, Foo-1]\n", "Foo-1"),
            ("model_name: [ConvNet-3, ConvNet-3]\n", "listed twice"),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains("model_name") && e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn model_names() {
        assert_eq!(check_model_name("ConvNet-3").unwrap(), (3, "instance"));
        assert_eq!(check_model_name("ConvNet-4-BN").unwrap(), (4, "batch"));
        assert_eq!(check_model_name("ConvNetD4").unwrap(), (4, "instance"));
        assert!(check_model_name("ConvNet-9").is_err());
        assert_eq!(check_model_name("ResNet-18").unwrap(), (18, "instance"));
        assert_eq!(check_model_name("VGG-11-BN").unwrap(), (11, "batch"));
        assert_eq!(check_model_name("AlexNet").unwrap(), (0, "none"));
        assert!(check_model_name("ResNet-20").is_err());
    }
}
