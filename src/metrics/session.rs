//! One evaluation as a library call, for callers other than the command line (the Python
//! bindings): settings as DD-Ranking keys, the synthetic set from a path or from arrays in memory,
//! the result as an [`EvalRecord`]. The steps are the CLI's (`cli/eval.rs`): load and validate
//! every input, then `execute::evaluate`, then write the requested outputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cache::identity_of_path;
use super::config::{parse_device, DeviceChoice, EvalConfig, Metric};
use super::execute::{evaluate, Inputs, RunOptions};
use super::inputs::{data_dir, fit_zca, load_real_for, load_syn, load_teachers, to_image_set};
use super::plan::Identities;
use super::report::{write_outputs, EvalRecord};
use super::yaml::apply_yaml_str;
use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::data::synthetic::{synthetic_from_arrays, SynArrays};
use crate::data::{Norm, RealData, SynExpect};
use crate::error::{Error, Result};
use crate::train::trainer::ImageSet;

/// Where the synthetic set comes from.
#[derive(Debug, Clone)]
pub enum SynSource {
    /// A file or folder, as `--syn` takes it.
    Path(PathBuf),
    /// Arrays in memory; `name` (the caller's argument) leads every error about them.
    Arrays { name: String, arrays: SynArrays },
}

/// A config from DD-Ranking keys (YAML or JSON text, `label` naming its origin in messages) on top
/// of ddr-fast's defaults, with `metric` fixed by the caller (DD-Ranking picks it by class), and
/// checked. Returns the config and the warnings (unknown or ignored keys).
pub fn settings(text: &str, label: &str, metric: Metric) -> Result<(EvalConfig, Vec<String>)> {
    let mut cfg = EvalConfig::default();
    let rep = apply_yaml_str(Path::new(label), text, &mut cfg)?;
    cfg.metric = metric;
    if cfg.models().len() > 1 {
        return Err(Error::config(format!(
            "{label}: model_name: a list of models (cross-architecture) is scored by the \
             `ddr-fast eval` command; this call evaluates one model, found {}",
            cfg.model
        )));
    }
    // The metric is the caller's, so the inference warning of a metric-less YAML does not apply.
    let warnings = rep
        .warnings
        .into_iter()
        .filter(|w| !w.contains("no 'metric' key"))
        .collect();
    cfg.validate()?;
    Ok((cfg, warnings))
}

/// The real data of an evaluation as the students see it: normalised, or whitened with ZCA.
pub struct RealInputs {
    pub real: RealData,
    /// The training split (random subsets and the full-data training draw from it).
    pub train: ImageSet,
    pub test: ImageSet,
    /// The normalisation `train` is in; None when ZCA-whitened.
    pub pixel_norm: Option<Norm>,
}

/// Reads the real dataset of `cfg` and brings both splits into the students' input space.
pub fn load_real_inputs(cfg: &EvalConfig) -> Result<RealInputs> {
    let real = load_real_for(cfg)?;
    let zca = fit_zca(cfg, &real)?;
    let train = to_image_set(&real.train, &real, zca.as_ref())?;
    let test = to_image_set(&real.test, &real, zca.as_ref())?;
    let pixel_norm = zca.is_none().then(|| real.norm.clone());
    Ok(RealInputs {
        real,
        train,
        test,
        pixel_norm,
    })
}

/// A synthetic set read and checked against the real data.
pub struct LoadedSyn {
    pub set: ImageSet,
    /// The learning rate stored with the set, if any.
    pub lr: Option<f64>,
    /// Changes when the set's content changes (cache keys).
    pub id: String,
    /// The path or the caller's name, for notes and messages.
    pub origin: String,
}

/// Reads the synthetic set from a path or from arrays in memory.
pub fn load_syn_source(cfg: &EvalConfig, syn: SynSource, real: &RealData) -> Result<LoadedSyn> {
    Ok(match syn {
        SynSource::Path(p) => {
            let (set, lr, id) = load_syn(cfg, &p, real)?;
            LoadedSyn {
                set,
                lr,
                id,
                origin: p.display().to_string(),
            }
        }
        SynSource::Arrays { name, arrays } => {
            let id = arrays.identity();
            let s =
                synthetic_from_arrays(&name, arrays, &SynExpect::for_real(real, Some(cfg.ipc)))?;
            let set = ImageSet {
                images: s.images, // (N, C, H, W), normalised
                labels: s.labels,
                soft: s.soft_labels,
                channels: s.channels,
                size: s.height,
                classes: s.classes,
            };
            LoadedSyn {
                set,
                lr: s.lr.map(f64::from),
                id,
                origin: name,
            }
        }
    })
}

/// A learning rate stored with the set becomes `syn_lr` when none was given (noted in `notes`).
/// Returns whether it did.
pub fn adopt_syn_lr(cfg: &mut EvalConfig, syn: &LoadedSyn, notes: &mut Vec<String>) -> bool {
    match (cfg.syn_lr, syn.lr) {
        (None, Some(lr)) => {
            notes.push(format!("syn_lr {lr} read from {}", syn.origin));
            cfg.syn_lr = Some(lr);
            true
        }
        _ => false,
    }
}

/// The evaluation's inputs from the real data and the synthetic set: loads the teachers and
/// names every input's identity for the cache keys. `device` ("cpu", "cuda", "cuda-emulated")
/// goes into the keys too: devices agree to rounding only.
pub fn assemble_inputs(
    cfg: &EvalConfig,
    real: RealInputs,
    syn: ImageSet,
    syn_id: String,
    device: &str,
) -> Result<Inputs> {
    let (teachers, teacher_id) = load_teachers(cfg, &real.real)?;
    // The embedded set is part of the binary: its version identifies it.
    let dataset = match data_dir(cfg) {
        Some(d) if real.real.name != "fashion-mnist-embedded" => {
            format!("{}:{}", real.real.name, identity_of_path(&d)?)
        }
        _ => format!("{}:{}", real.real.name, crate::VERSION),
    };
    Ok(Inputs {
        train: real.train,
        test: real.test,
        syn,
        teachers,
        ids: Identities {
            dataset,
            syn: with_train_trans(cfg, syn_id)?,
            teachers: teacher_id,
            device: device.into(),
            // The CPU's eval forwards are fp32; a CUDA caller sets its `--test-precision`.
            test_precision: None,
        },
        pixel_norm: real.pixel_norm,
    })
}

/// The synthetic set's identity for the cache keys: with the `custom_train_trans` its trainings
/// apply appended (they change every number; the keys hash the whole text).
fn with_train_trans(cfg: &EvalConfig, syn_id: String) -> Result<String> {
    Ok(match crate::metrics::yaml::train_trans_for(cfg) {
        None => syn_id,
        Some(t) => {
            let text = serde_json::to_string(t)
                .map_err(|e| Error::config(format!("custom_train_trans: {e}")))?;
            format!("{syn_id}+custom_train_trans:{text}")
        }
    })
}

/// Reads and validates every input of `cfg` and the synthetic set. A learning rate stored with the
/// set becomes `syn_lr` when none was given (noted in `notes`).
pub fn load_inputs(
    cfg: &mut EvalConfig,
    syn: SynSource,
    notes: &mut Vec<String>,
) -> Result<Inputs> {
    let real = load_real_inputs(cfg)?;
    let syn = load_syn_source(cfg, syn, &real.real)?;
    adopt_syn_lr(cfg, &syn, notes);
    assemble_inputs(cfg, real, syn.set, syn.id, "cpu")
}

/// Loads the inputs, evaluates on the CPU backend and writes `out_dir` / `csv_path` when set.
/// `opts.notes` gains the notes of loading; a `device: cuda` setting runs on the CPU with a note,
/// because `evaluate` has no CUDA path in this build.
pub fn run(mut cfg: EvalConfig, syn: SynSource, mut opts: RunOptions) -> Result<EvalRecord> {
    if let DeviceChoice::Cuda(i) = parse_device(&cfg.device)? {
        opts.notes.push(format!(
            "device cuda:{i} requested; this build evaluates on the CPU backend, so the CPU was used"
        ));
    }
    let inputs = load_inputs(&mut cfg, syn, &mut opts.notes)?;
    let be = Arc::new(CpuBackend::new());
    opts.device = be.describe();
    let subset = |l: &[u32], c: usize, ipc: usize, seed: u64, run: u64| {
        crate::data::random_subset(l, c, ipc, seed, run)
    };
    let rec = evaluate(&be, &cfg, &inputs, &subset, &opts)?;
    write_outputs(&rec, cfg.out_dir.as_deref(), cfg.csv_path.as_deref())?;
    Ok(rec)
}

/// `settings` for an unknown metric name: one error naming it.
pub fn parse_metric(name: &str) -> Result<Metric> {
    name.parse()
        .map_err(|m: String| Error::config(format!("metric: {m}")))
}
