//! The settings side of `ddr-fast eval`: the demo's reduced recipe and the flags that override the
//! YAML keys (every flag is optional; an absent flag leaves the key's value alone).

use super::eval::EvalArgs;
use crate::error::{Error, Result};
use crate::metrics::config::{aug_with_defaults, AugConfig, DatasetInfo, EvalConfig, Metric};
use crate::metrics::yaml::check_model_names;

/// What the demo prints and records about itself, with the recipe it actually ran.
pub fn demo_note(c: &EvalConfig) -> String {
    format!(
        "demo: herding coreset (IPC {}, pixel features) of the embedded Fashion-MNIST subset (2,000 train / \
         1,000 test images) scored with LRS (hard labels) against random subsets, with a REDUCED recipe \
         ({} width {}, {} runs, lr grid {:?}, {} epochs, full data {} epochs, tests every {} epochs) chosen so \
         the demo takes about 3 minutes on an idle 2-core CPU; its numbers show the pipeline and are not \
         comparable to published DD-Ranking scores",
        c.ipc,
        c.model,
        c.width,
        c.num_eval,
        c.lr_grid,
        c.num_epochs,
        c.full_epochs(),
        c.test_interval()
    )
}

/// No config, no synthetic set and no real data named: run the demo.
pub fn is_demo(a: &EvalArgs) -> bool {
    a.config.is_none()
        && a.syn.is_none()
        && a.data_dir.is_none()
        && a.dataset.as_deref().is_none_or(|d| {
            DatasetInfo::parse(d)
                .map(|i| i.name == "fashion-mnist-embedded")
                .unwrap_or(false)
        })
}

/// The demo's reduced recipe; flags still override it. Sized to about 3 minutes on an idle 2-core
/// CPU with the reference CPU engine, so that its scores say something: 5 runs (DD-Ranking's
/// num_eval) over DD-Ranking's whole learning-rate grid, 100 epochs (the students' accuracy has
/// levelled off; at 16 epochs it still climbed), tests every 10. Measured: 236 CPU-seconds (user +
/// sys), 51 trainings; 17 min wall on this machine while other builds loaded it (load average
/// 10–18, the demo got 23% of a core); an estimated 2–4 min when the two cores are free (half to
/// all of the CPU time: rayon keeps both busy for most of it). The previous recipe (2 runs, 3 rates, 16 epochs) took 12 CPU-s.
pub fn demo_config() -> EvalConfig {
    EvalConfig {
        metric: Metric::LrsHard,
        dataset: "fashion-mnist-embedded".into(),
        ipc: 10,
        model: "ConvNet-3".into(),
        width: 16,
        num_eval: 5,
        lr_grid: vec![0.001, 0.005, 0.01, 0.05, 0.1],
        num_epochs: 100,
        full_epochs: Some(20),
        test_interval: Some(10),
        syn_batch_size: 50,
        real_batch_size: 64,
        // A hard-label method's usual recipe (DSA), and the full-data training it needs: the
        // reference's defaults (CutMix, no full-data training) would leave HLR without a value.
        aug: AugConfig::dsa_default(),
        eval_full_data: true,
        ..EvalConfig::default()
    }
}

fn parsed<T: std::str::FromStr<Err = String>>(flag: &str, v: &Option<String>) -> Result<Option<T>> {
    v.as_deref()
        .map(|s| {
            s.parse::<T>()
                .map_err(|m| Error::config(format!("--{flag}: {m}")))
        })
        .transpose()
}

/// Overrides the config with every flag given.
pub fn apply_flags(a: &EvalArgs, c: &mut EvalConfig) -> Result<()> {
    set_fields(a, c)?;
    if let Some(f) = &a.aug {
        c.aug = aug_with_defaults(f).map_err(|m| Error::config(format!("--aug: {m}")))?;
    }
    for kv in &a.aug_params {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            Error::config(format!("--aug-param: expected KEY=VALUE, found '{kv}'"))
        })?;
        let x: f64 = v
            .trim()
            .parse()
            .map_err(|_| Error::config(format!("--aug-param {k}: '{v}' is not a number")))?;
        let slot = match (&mut c.aug, k.trim()) {
            (AugConfig::Dsa { scale, .. }, "scale") => scale,
            (AugConfig::Dsa { rotate, .. }, "rotate") => rotate,
            (AugConfig::Dsa { flip, .. }, "flip") => flip,
            (AugConfig::Dsa { brightness, .. }, "brightness") => brightness,
            (AugConfig::Dsa { saturation, .. }, "saturation") => saturation,
            (AugConfig::Dsa { contrast, .. }, "contrast") => contrast,
            (AugConfig::Dsa { crop, .. }, "crop") => crop,
            (AugConfig::Dsa { cutout, .. }, "cutout") => cutout,
            (AugConfig::Mixup { alpha }, "alpha" | "lambda") => alpha,
            (AugConfig::Cutmix { beta }, "beta") => beta,
            (aug, key) => {
                return Err(Error::config(format!(
                    "--aug-param: '{key}' is not a parameter of {}",
                    aug.func_name()
                )));
            }
        };
        *slot = x;
    }
    Ok(())
}

/// The one-to-one flag → field assignments.
fn set_fields(a: &EvalArgs, c: &mut EvalConfig) -> Result<()> {
    if let Some(m) = parsed::<Metric>("metric", &a.metric)? {
        c.metric = m;
    }
    if let Some(d) = &a.dataset {
        c.dataset = DatasetInfo::parse(d)?.name.to_string();
    }
    if !a.model.is_empty() {
        c.model =
            check_model_names(&a.model).map_err(|e| Error::config(format!("--model: {e}")))?;
    }
    if let Some(v) = parsed("label-type", &a.label_type)? {
        c.label_type = v;
    }
    if let Some(v) = parsed("soft-label-mode", &a.soft_label_mode)? {
        c.soft_label_mode = v;
    }
    if let Some(v) = parsed("criterion", &a.criterion)? {
        c.criterion = v;
    }
    if let Some(v) = parsed("optimizer", &a.optimizer)? {
        c.optimizer = v;
    }
    if let Some(v) = parsed("scheduler", &a.scheduler)? {
        c.scheduler = v;
    }
    if let Some(v) = parsed("random-data-format", &a.random_data_format)? {
        c.random_data_format = v;
    }
    if a.batch_size.is_some() {
        c.batch_size = a.batch_size;
    }
    let set_opt = |dst: &mut Option<std::path::PathBuf>, v: &Option<std::path::PathBuf>| {
        if v.is_some() {
            dst.clone_from(v);
        }
    };
    set_opt(&mut c.data_dir, &a.data_dir);
    set_opt(&mut c.syn_path, &a.syn);
    set_opt(&mut c.teacher_dir, &a.teacher_dir);
    set_opt(&mut c.out_dir, &a.out);
    set_opt(&mut c.cache_dir, &a.cache_dir);
    if a.syn_lr.is_some() {
        c.syn_lr = a.syn_lr;
    }
    if a.full_acc.is_some() {
        c.full_acc = a.full_acc;
    }
    if a.step_size.is_some() {
        c.step_size = a.step_size;
    }
    if a.full_epochs.is_some() {
        c.full_epochs = a.full_epochs;
    }
    if a.test_interval.is_some() {
        c.test_interval = a.test_interval;
    }
    for (dst, v) in [
        (&mut c.ipc, a.ipc),
        (&mut c.width, a.width),
        (&mut c.num_eval, a.num_eval),
        (&mut c.num_epochs, a.epochs),
        (&mut c.syn_batch_size, a.syn_batch_size),
        (&mut c.real_batch_size, a.real_batch_size),
    ] {
        if let Some(v) = v {
            *dst = v;
        }
    }
    for (dst, v) in [
        (&mut c.loss.temperature, a.temperature),
        (&mut c.loss.mse_weight, a.mse_weight),
        (&mut c.loss.ce_weight, a.ce_weight),
        (&mut c.weight_decay, a.weight_decay),
        (&mut c.momentum, a.momentum),
        (&mut c.default_lr, a.default_lr),
        (&mut c.lambda, a.lambda),
        (&mut c.gamma, a.gamma),
    ] {
        if let Some(v) = v {
            *dst = v;
        }
    }
    for (dst, v) in [
        (&mut c.use_aug_for_hard, a.use_aug_for_hard),
        (&mut c.loss.scale_loss, a.scale_loss),
        (&mut c.use_zca, a.use_zca),
        (&mut c.eval_full_data, a.eval_full_data),
    ] {
        if let Some(v) = v {
            *dst = v;
        }
    }
    if let Some(g) = &a.lr_grid {
        c.lr_grid = g.clone();
    }
    if !a.teachers.is_empty() {
        c.teacher_names = a.teachers.clone();
    }
    if let Some(s) = a.seed {
        c.seed = s;
    }
    if let Some(d) = &a.device {
        c.device = d.clone();
    }
    if a.no_cache {
        c.no_cache = true;
    }
    Ok(())
}
