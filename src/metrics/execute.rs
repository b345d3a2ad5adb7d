//! Runs a plan: looks every training up in the resume journal and the shared cache, packs the rest
//! into cohorts, trains them with the cohort trainer, records each finished cohort before starting
//! the next, and reduces everything into an [`EvalRecord`].

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::cache::{Record, Store};
use super::config::{AugConfig, Criterion, EvalConfig, Metric, Optimizer, RandomDataFormat};
use super::plan::{
    pack, plan, Cohort, DataSource, Identities, LabelMode, Plan, PlanSizes, Training,
};
use super::reduce::reduce;
use super::report::{Curve, EvalRecord, Source, Timings, TrainingTiming};
use super::watch::Watch;
use crate::aug::{AugPlan, DsaMode, DsaParams};
use crate::backend::{Backend, LossKind, OptimizerCfg, OptimizerKind};
use crate::error::{Error, Result};
use crate::model::{ConvNetSpec, Net};
use crate::train::trainer::{
    train_cohort_on, CohortSettings, DeviceSet, ImageSet, StudentKey, StudentSetup, Teacher,
};

/// Everything an evaluation reads, loaded and normalised.
pub struct Inputs {
    /// The full real training set (random subsets are drawn from it).
    pub train: ImageSet,
    pub test: ImageSet,
    /// The synthetic set under evaluation.
    pub syn: ImageSet,
    pub teachers: Vec<Teacher>,
    pub ids: Identities,
    /// The normalisation `train` is in (None when ZCA-whitened): undone and redone around the
    /// JPEG round trip of `random_data_format: image`.
    pub pixel_norm: Option<crate::data::Norm>,
}

/// How to run (not what to compute: that is the config).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Most students per cohort (memory bound).
    pub max_students: usize,
    pub quiet: bool,
    /// Test hook: stop with `Error::Interrupted` after this many cohorts (their results recorded).
    pub stop_after_cohorts: Option<usize>,
    /// Lines added to the record's notes.
    pub notes: Vec<String>,
    /// Describes the device in the record.
    pub device: String,
    /// Progress and stop requests from another thread (the Python bindings); None for the CLI.
    pub watch: Option<Arc<Watch>>,
}

/// Draws a class-balanced random subset of the real training set for `run`:
/// `(labels, classes, ipc, seed, run) → indices`, class-major.
pub type SubsetFn<'a> = &'a dyn Fn(&[u32], usize, usize, u64, u64) -> Result<Vec<usize>>;

/// Where the cache and the journal live.
pub fn cache_dir(cfg: &EvalConfig) -> PathBuf {
    if let Some(d) = &cfg.cache_dir {
        return d.clone();
    }
    if let Ok(d) = std::env::var("DDR_CACHE_DIR") {
        return PathBuf::from(d);
    }
    match std::env::var("HOME") {
        Ok(h) => PathBuf::from(h).join(".cache").join("ddr-fast"),
        Err(_) => PathBuf::from(".ddr-cache"),
    }
}

/// Plans, runs (or reuses) every training and reduces them into scores.
pub fn evaluate<B: Backend>(
    be: &Arc<B>,
    cfg: &EvalConfig,
    inputs: &Inputs,
    subset: SubsetFn<'_>,
    opts: &RunOptions,
) -> Result<EvalRecord> {
    let t0 = Instant::now();
    let (plan, done) = run_plan(be, cfg, inputs, subset, opts, None)?;
    record(cfg, opts, &plan, &done, t0)
}

/// The trainings of one plan after a run: every finished one's record and where it came from.
pub struct Trained {
    pub results: HashMap<usize, Record>,
    pub sources: HashMap<usize, Source>,
    /// Seconds spent training cohorts in this call.
    pub train_s: f64,
    pub cohorts_run: usize,
    /// The file this call's cache records went to (None with no_cache or nothing trained).
    pub cache_file: Option<PathBuf>,
}

/// Reduces a plan whose trainings are all finished into the evaluation's record.
pub(crate) fn record(
    cfg: &EvalConfig,
    opts: &RunOptions,
    plan: &Plan,
    done: &Trained,
    t0: Instant,
) -> Result<EvalRecord> {
    let outcome = reduce(cfg, plan, &done.results)?;
    let timings = timings(
        plan,
        &done.results,
        &done.sources,
        t0.elapsed().as_secs_f64(),
        done.train_s,
        done.cohorts_run,
    );
    Ok(EvalRecord {
        ddr_fast_version: crate::VERSION.to_string(),
        device: opts.device.clone(),
        config: cfg.clone(),
        settings: Default::default(),
        timings,
        outcome,
        notes: opts.notes.clone(),
    })
}

/// Plans the evaluation, takes every training it can from the journal and the cache, and trains
/// the rest — only those in `only` when given (a shard's share; empty for `--collect`).
pub(crate) fn run_plan<B: Backend>(
    be: &Arc<B>,
    cfg: &EvalConfig,
    inputs: &Inputs,
    subset: SubsetFn<'_>,
    opts: &RunOptions,
    only: Option<&[usize]>,
) -> Result<(Plan, Trained)> {
    cfg.validate()?;
    let plan = plan(cfg, &inputs.ids)?;
    let sizes = plan_sizes(inputs);

    let cache = if cfg.no_cache {
        None
    } else {
        Some(Store::open(&cache_dir(cfg), "trainings.jsonl")?)
    };
    let journal = match &cfg.out_dir {
        Some(d) => Some(Store::open(d, "journal.jsonl")?),
        None => None,
    };
    let journal_map = journal
        .as_ref()
        .map(|s| s.load())
        .transpose()?
        .unwrap_or_default();
    let cache_map = cache
        .as_ref()
        .map(|s| s.load())
        .transpose()?
        .unwrap_or_default();

    let mut results: HashMap<usize, Record> = HashMap::new();
    let mut sources: HashMap<usize, Source> = HashMap::new();
    let mut todo = Vec::new();
    for p in &plan.trainings {
        if let Some(r) = journal_map.get(&p.key) {
            results.insert(p.id, r.clone());
            sources.insert(p.id, Source::Resumed);
        } else if let Some(r) = cache_map.get(&p.key) {
            results.insert(p.id, r.clone());
            sources.insert(p.id, Source::Cached);
        } else if only.is_none_or(|o| o.contains(&p.id)) {
            todo.push(p.id);
        }
    }
    let cohorts = pack(&plan, &todo, sizes, opts.max_students.max(1));

    let net = model_net(cfg, &inputs.train)?;
    let total_work: u64 = cohorts
        .iter()
        .map(|c| {
            (c.members.len() * c.n_train * plan.trainings[c.members[0]].training.epochs) as u64
        })
        .sum();
    let bar = progress_bar(total_work, opts.quiet);
    let watch = opts.watch.as_deref();
    if let Some(w) = watch {
        w.set_total(total_work);
    }
    let mut subsets: HashMap<u32, ImageSet> = HashMap::new();
    let tv = super::yaml::train_trans_for(cfg);
    let syn_pixels = match tv {
        Some(_) => Some(pixel_syn_set(cfg, inputs)?),
        None => None,
    };
    let mut train_s = 0.0;
    // On the device once, shared by every cohort (only when something is left to train).
    let test = if cohorts.is_empty() {
        None
    } else {
        Some(DeviceSet::upload(be, &inputs.test, "test set")?)
    };
    // Out of device memory: the cohort in flight is split in halves and retried, and every later
    // cohort is held to that size; finished cohorts are already in the journal and the cache.
    let mut queue: std::collections::VecDeque<Cohort> = cohorts.into_iter().collect();
    let mut cap = usize::MAX;
    let mut ci = 0;
    while let Some(cohort) = queue.pop_front() {
        if cohort.members.len() > cap {
            for part in cohort.members.chunks(cap).rev() {
                queue.push_front(Cohort {
                    members: part.to_vec(),
                    n_train: cohort.n_train,
                });
            }
            continue;
        }
        let cohort = &cohort;
        if opts.stop_after_cohorts == Some(ci) || watch.is_some_and(Watch::stop_requested) {
            bar.finish_and_clear();
            return Err(Error::Interrupted);
        }
        let first = &plan.trainings[cohort.members[0]].training;
        // Random subsets (and their mode-S teacher labels) are built once per run and reused by
        // every learning rate of that run.
        for &id in &cohort.members {
            let t = &plan.trainings[id].training;
            if let DataSource::Random { ipc, run, format } = t.data {
                if let std::collections::hash_map::Entry::Vacant(e) = subsets.entry(run) {
                    let idx = subset(
                        &inputs.train.labels,
                        inputs.train.classes,
                        ipc,
                        cfg.seed,
                        u64::from(run),
                    )?;
                    let mut s = select(&inputs.train, &idx);
                    if format == RandomDataFormat::Image {
                        let norm = inputs.pixel_norm.as_ref().ok_or_else(|| {
                            Error::config(
                                "random_data_format: image needs images in pixel space; with \
                                 use_zca DD-Ranking would de-normalise whitened images (use tensor)",
                            )
                        })?;
                        crate::data::jpeg::round_trip_normalised(
                            &mut s.images,
                            s.channels,
                            s.size,
                            norm,
                        )?;
                    }
                    e.insert(s);
                }
                if t.labels == LabelMode::SoftStored && subsets[&run].soft.is_none() {
                    let s = subsets.get_mut(&run).expect("subset inserted above");
                    s.soft = Some(teacher_logits(be, &inputs.teachers, s)?);
                }
            }
        }
        let cs = cohort_settings(cfg, first, net.clone())?;
        let setups: Vec<StudentSetup<'_>> = cohort
            .members
            .iter()
            .map(|&id| {
                let t = &plan.trainings[id].training;
                // DD-Ranking's ImageFolder gets custom_train_trans in LRS, and in ARS for the
                // augmented runs only (the others get its default transform).
                let tv_on = t.data == DataSource::Syn
                    && syn_pixels.is_some()
                    && (cfg.metric != Metric::Ars || t.aug.is_some());
                let data = match &t.data {
                    DataSource::Syn if tv_on => syn_pixels.as_ref().expect("tv_on"),
                    DataSource::Syn => &inputs.syn,
                    DataSource::Random { run, .. } => &subsets[run],
                    DataSource::Full => &inputs.train,
                };
                StudentSetup {
                    data,
                    lr: t.lr as f32,
                    key: StudentKey {
                        seed: t.seed,
                        run: t.run,
                        role: t.role(),
                    },
                    augment: t.aug.is_some(),
                    tv: tv_on,
                    teacher_targets: t.labels == LabelMode::SoftTeacher,
                }
            })
            .collect();
        for (&id, st) in cohort.members.iter().zip(&setups) {
            let t = &plan.trainings[id].training;
            if t.labels == LabelMode::SoftStored && st.data.soft.is_none() {
                return Err(Error::config(format!(
                    "{}: soft-label mode S needs stored soft labels; the synthetic set has none \
                     (use soft_label_mode: M with teachers)",
                    t.describe()
                )));
            }
        }
        let tc = Instant::now();
        let work_per_epoch = (cohort.members.len() * cohort.n_train) as u64;
        let done_before = bar.position();
        let out = match train_cohort_on(
            be,
            &cs,
            &setups,
            test.as_ref().expect("uploaded when there are cohorts"),
            &inputs.teachers,
            &mut |e, _| {
                let done = done_before + work_per_epoch * e as u64;
                bar.set_position(done);
                if let Some(w) = watch {
                    w.set_done(done);
                }
            },
        ) {
            Err(Error::OutOfMemory(why)) if cohort.members.len() > 1 => {
                cap = cohort.members.len().div_ceil(2);
                bar.suspend(|| {
                    eprintln!(
                        "out of device memory with {} students per cohort ({why}); retrying with {cap}",
                        cohort.members.len()
                    )
                });
                bar.set_position(done_before);
                queue.push_front(cohort.clone());
                continue;
            }
            other => other?,
        };
        ci += 1;
        let secs = tc.elapsed().as_secs_f64();
        train_s += secs;
        let per = secs / cohort.members.len() as f64;
        let records: Vec<Record> = cohort
            .members
            .iter()
            .zip(out)
            .map(|(&id, r)| Record {
                key: plan.trainings[id].key.clone(),
                acc: r.best,
                tests: r.tests,
                train_loss: r.train_loss,
                stopped: r.stopped,
                seconds: per,
                what: plan.trainings[id].training.describe(),
            })
            .collect();
        // Recorded before the next cohort starts: a kill loses at most the cohort in flight.
        if let Some(j) = &journal {
            j.append(&records)?;
        }
        if let Some(c) = &cache {
            c.append(&records)?;
        }
        for (&id, r) in cohort.members.iter().zip(records) {
            results.insert(id, r);
            sources.insert(id, Source::Ran);
        }
    }
    bar.finish_and_clear();
    let cache_file = cache
        .as_ref()
        .filter(|_| ci > 0)
        .map(|c| c.writer_path().to_path_buf());
    Ok((
        plan,
        Trained {
            results,
            sources,
            train_s,
            cohorts_run: ci,
            cache_file,
        },
    ))
}

/// The sizes the planner and the packer need, from the loaded inputs.
pub fn plan_sizes(inputs: &Inputs) -> PlanSizes {
    PlanSizes {
        n_syn: inputs.syn.len(),
        n_full: inputs.train.len(),
        classes: inputs.train.classes,
    }
}

fn timings(
    plan: &Plan,
    results: &HashMap<usize, Record>,
    sources: &HashMap<usize, Source>,
    total_s: f64,
    train_s: f64,
    cohorts_run: usize,
) -> Timings {
    let trainings: Vec<TrainingTiming> = plan
        .trainings
        .iter()
        .map(|p| {
            let r = &results[&p.id];
            TrainingTiming {
                id: p.id,
                what: p.training.describe(),
                key: p.key.clone(),
                source: sources[&p.id],
                seconds: r.seconds,
                acc: r.acc,
                curve: Curve {
                    quantity: p.slot.quantity.name().to_string(),
                    run: p.slot.run,
                    lr: p.training.lr,
                    epochs: p.training.epochs,
                    test_interval: p.training.test_interval,
                    tests: r.tests.clone(),
                    train_loss: r.train_loss.clone(),
                    stopped: r.stopped.clone(),
                },
            }
        })
        .collect();
    let count = |s: Source| trainings.iter().filter(|t| t.source == s).count();
    Timings {
        total_s,
        train_s,
        ran: count(Source::Ran),
        cached: count(Source::Cached),
        resumed: count(Source::Resumed),
        cohorts_run,
        trainings,
    }
}

fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40} {percent:>3}% training images  elapsed {elapsed_precise}  ETA {eta_precise}",
        ) {
            bar.set_style(style);
        }
    }
    bar
}

/// The student network for this dataset: any DD-Ranking model name (`width` applies to ConvNet).
pub fn model_net(cfg: &EvalConfig, train: &ImageSet) -> Result<Net> {
    if crate::model::net::is_convnet_name(&cfg.model) {
        return Ok(Net::from(model_spec(cfg, train)?));
    }
    Net::from_name(&cfg.model, train.channels, train.size, train.classes)
}

/// The ConvNet spec of the student (the FLOP and memory models are ConvNet's); an error naming
/// the model for the other families.
pub fn model_spec(cfg: &EvalConfig, train: &ImageSet) -> Result<ConvNetSpec> {
    ConvNetSpec::from_name(&cfg.model, train.channels, train.size, train.classes)?
        .with_width(cfg.width)
}

/// The rows `idx` of a set, in that order.
pub fn select(set: &ImageSet, idx: &[usize]) -> ImageSet {
    let n = set.image_len();
    let k = set.classes;
    let mut images = Vec::with_capacity(idx.len() * n); // (M, C, H, W)
    let mut labels = Vec::with_capacity(idx.len()); // (M)
    let mut soft = set.soft.as_ref().map(|_| Vec::with_capacity(idx.len() * k)); // (M, K)
    for &i in idx {
        images.extend_from_slice(&set.images[i * n..(i + 1) * n]);
        labels.push(set.labels[i]);
        if let (Some(dst), Some(src)) = (soft.as_mut(), set.soft.as_ref()) {
            dst.extend_from_slice(&src[i * k..(i + 1) * k]);
        }
    }
    ImageSet {
        images,
        labels,
        soft,
        ..*set
    }
}

/// Mean teacher logits on the un-augmented images of `set` (soft-label mode S for random subsets).
fn teacher_logits<B: Backend>(
    be: &Arc<B>,
    teachers: &[Teacher],
    set: &ImageSet,
) -> Result<Vec<f32>> {
    if teachers.is_empty() {
        return Err(Error::config(
            "soft labels for random subsets need a teacher (teacher_dir / teacher_model_names)",
        ));
    }
    let k = set.classes;
    let mut mean = vec![0f32; set.len() * k]; // (N, K)
    for t in teachers {
        let logits = crate::train::trainer::teacher_forward(be, t, &set.images, set.len())?;
        mean.iter_mut()
            .zip(&logits)
            .for_each(|(a, b)| *a += b / teachers.len() as f32);
    }
    Ok(mean)
}

fn cohort_settings(cfg: &EvalConfig, t: &Training, net: Net) -> Result<CohortSettings> {
    let loss = match t.criterion {
        None => LossKind::CrossEntropy,
        Some((Criterion::Kl, k)) => LossKind::Kl {
            temperature: k.temperature as f32,
            scale_loss: k.scale_loss,
        },
        Some((Criterion::Sce, k)) => LossKind::Sce {
            temperature: k.temperature as f32,
            scale_loss: k.scale_loss,
        },
        Some((Criterion::MseGt, k)) => LossKind::MseGt {
            w_mse: k.mse_weight as f32,
            w_ce: k.ce_weight as f32,
        },
    };
    let kind = match t.recipe.optimizer {
        Optimizer::Sgd => OptimizerKind::Sgd,
        Optimizer::Adam => OptimizerKind::Adam,
        Optimizer::Adamw => OptimizerKind::AdamW,
    };
    Ok(CohortSettings {
        net,
        epochs: t.epochs,
        test_interval: t.test_interval,
        batch_size: t.batch_size,
        loss,
        optimizer: OptimizerCfg {
            kind,
            momentum: t.recipe.momentum as f32,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: t.recipe.weight_decay as f32,
        },
        scheduler: t.recipe.scheduler,
        step_size: t.recipe.step_size,
        aug: aug_plan(&cfg.aug),
        tv: super::yaml::train_trans_for(cfg).cloned(),
    })
}

/// The image-folder synthetic set as the reference's `ToTensor` gives it to `custom_train_trans`:
/// [0, 1] pixels, k/255 exactly (the folder holds 8-bit images; the loader normalised them, so
/// the normalisation is undone and the values snapped back to their 8-bit levels).
fn pixel_syn_set(cfg: &EvalConfig, inputs: &Inputs) -> Result<ImageSet> {
    let conflict = if cfg.use_zca {
        Some("use_zca (DD-Ranking would whiten tensors only)")
    } else if cfg.random_data_format == RandomDataFormat::Image {
        Some(
            "random_data_format: image (DD-Ranking also transforms the random subsets' JPEG \
             folders; ddr-fast does not yet)",
        )
    } else {
        None
    };
    let norm = match (conflict, inputs.pixel_norm.as_ref()) {
        (None, Some(n)) => n,
        (c, _) => {
            return Err(Error::config(format!(
                "custom_train_trans on an image-folder synthetic set cannot be combined with {}",
                c.unwrap_or("a whitened training set")
            )))
        }
    };
    let mut set = inputs.syn.clone();
    let plane = set.size * set.size;
    norm.invert(&mut set.images, set.channels, plane); // (N, C, H, W) in [0, 1]
    for v in &mut set.images {
        *v = (*v * 255.0).round().clamp(0.0, 255.0) / 255.0;
    }
    Ok(set)
}

/// The augmentation engineer's plan for a config's augmentation (DSA in mode S, as the metrics use).
pub fn aug_plan(a: &AugConfig) -> AugPlan {
    match *a {
        AugConfig::None => AugPlan::None,
        AugConfig::Dsa {
            scale,
            rotate,
            flip,
            brightness,
            saturation,
            contrast,
            crop,
            cutout,
        } => AugPlan::Dsa {
            params: DsaParams {
                scale,
                rotate,
                flip,
                brightness,
                saturation,
                contrast,
                crop,
                cutout,
            },
            mode: DsaMode::Single,
        },
        AugConfig::Mixup { alpha } => AugPlan::Mixup { alpha },
        AugConfig::Cutmix { beta } => AugPlan::Cutmix { beta },
    }
}
