//! `ddr-fast eval`: DD-Ranking scores of a distilled set. Settings come from the defaults, then a
//! DD-Ranking YAML (`--config`), then these flags. With no data arguments at all it runs the demo:
//! a herding coreset of the embedded Fashion-MNIST subset scored with a reduced recipe.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::eval_setup::{apply_flags, demo_config, demo_note, is_demo};
use crate::backend::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::metrics::cache::{identity_of_path, Store};
use crate::metrics::config::{parse_device, DeviceChoice, EvalConfig};
use crate::metrics::coreset::{select, FeatureKind, SelectMethod};
use crate::metrics::cost::{estimate, ASSUMED_CPU_FLOPS, ASSUMED_CUDA_FLOPS};
use crate::metrics::execute::{
    cache_dir, evaluate, model_spec, select as select_rows, Inputs, RunOptions,
};
use crate::metrics::inputs::{fit_zca, load_real_for, load_syn, load_teachers, to_image_set};
use crate::metrics::plan::{pack, plan, Identities, PlanSizes};
use crate::metrics::report::{table, write_outputs};
use crate::metrics::yaml::load_yaml;

/// Every setting of an evaluation; each overrides the YAML key named in its help.
#[derive(Args, Debug, Default, Clone)]
pub struct EvalArgs {
    /// A DD-Ranking-style YAML config; flags override its keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// lrs-hard | lrs-soft | ars | acc (YAML: metric; inferred from the keys when absent).
    #[arg(long)]
    pub metric: Option<String>,
    /// CIFAR10, CIFAR100, MNIST, FashionMNIST, TinyImageNet, embedded (YAML: dataset).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder of the real dataset (YAML: real_data_path; default $DDR_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The distilled set: .safetensors, .pt or an image folder (YAML: syn_path).
    #[arg(long)]
    pub syn: Option<PathBuf>,
    /// A learned learning rate for the synthetic set; replaces the lr search for it (YAML: syn_lr).
    #[arg(long)]
    pub syn_lr: Option<f64>,
    /// Images per class (YAML: ipc).
    #[arg(long)]
    pub ipc: Option<usize>,
    /// ConvNet-3, ConvNet-4-BN, ... (YAML: model_name).
    #[arg(long)]
    pub model: Option<String>,
    /// Conv channels (YAML: width; default 128).
    #[arg(long)]
    pub width: Option<usize>,
    /// dsa | mixup | cutmix | none (YAML: data_aug_func).
    #[arg(long)]
    pub aug: Option<String>,
    /// Augmentation parameter KEY=VALUE, repeatable: DSA scale/rotate/flip/brightness/saturation/
    /// contrast/crop/cutout, mixup alpha, cutmix beta (YAML: aug_params).
    #[arg(long = "aug-param")]
    pub aug_params: Vec<String>,
    /// Augment the hard-label trainings of LRS-soft (YAML: use_aug_for_hard).
    #[arg(long)]
    pub use_aug_for_hard: Option<bool>,
    /// hard | soft: the recipe of ARS / acc (YAML: label_type).
    #[arg(long)]
    pub label_type: Option<String>,
    /// S | M (YAML: soft_label_mode).
    #[arg(long)]
    pub soft_label_mode: Option<String>,
    /// kl | sce | mse_gt (YAML: soft_label_criterion).
    #[arg(long)]
    pub criterion: Option<String>,
    /// Soft-label temperature (YAML: loss_fn_kwargs.temperature).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Multiply soft losses by T² (YAML: loss_fn_kwargs.scale_loss).
    #[arg(long)]
    pub scale_loss: Option<bool>,
    /// YAML: loss_fn_kwargs.mse_weight.
    #[arg(long)]
    pub mse_weight: Option<f64>,
    /// YAML: loss_fn_kwargs.ce_weight.
    #[arg(long)]
    pub ce_weight: Option<f64>,
    /// sgd | adam | adamw (YAML: optimizer).
    #[arg(long)]
    pub optimizer: Option<String>,
    /// step | cosineannealing | cosine | none (YAML: lr_scheduler).
    #[arg(long)]
    pub scheduler: Option<String>,
    /// YAML: step_size (default num_epochs / 2).
    #[arg(long)]
    pub step_size: Option<usize>,
    /// YAML: weight_decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// YAML: momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Runs, each with a fresh random subset (YAML: num_eval).
    #[arg(long)]
    pub num_eval: Option<usize>,
    /// YAML: num_epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Epochs of the full-data training (YAML: full_epochs; default num_epochs).
    #[arg(long)]
    pub full_epochs: Option<usize>,
    /// Epochs between tests (YAML: test_interval; default 10 hard, 20 soft/ARS).
    #[arg(long)]
    pub test_interval: Option<usize>,
    /// Comma-separated learning-rate grid (YAML: lr_grid).
    #[arg(long, value_delimiter = ',')]
    pub lr_grid: Option<Vec<f64>>,
    /// Learning rate of the full-data training (YAML: default_lr).
    #[arg(long)]
    pub default_lr: Option<f64>,
    /// YAML: use_zca.
    #[arg(long)]
    pub use_zca: Option<bool>,
    /// YAML: syn_batch_size.
    #[arg(long)]
    pub syn_batch_size: Option<usize>,
    /// YAML: real_batch_size.
    #[arg(long)]
    pub real_batch_size: Option<usize>,
    /// YAML: eval_full_data.
    #[arg(long)]
    pub eval_full_data: Option<bool>,
    /// A known full-data accuracy (fraction) when eval_full_data is false (YAML: full_acc).
    #[arg(long)]
    pub full_acc: Option<f64>,
    /// YAML: teacher_dir.
    #[arg(long)]
    pub teacher_dir: Option<PathBuf>,
    /// Teacher model name, repeatable (YAML: teacher_model_names).
    #[arg(long = "teacher")]
    pub teachers: Vec<String>,
    /// YAML: seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Weight of IOR in α (YAML: lambda).
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Weight of the augmented gap in β (YAML: gamma).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// auto | cpu | cuda | cuda:N (YAML: device).
    #[arg(long)]
    pub device: Option<String>,
    /// Folder for result.json, result.csv and the resume journal.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Shared cache of finished trainings (default $DDR_CACHE_DIR or ~/.cache/ddr-fast).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Neither read nor write the shared cache (the --out journal still allows resuming).
    #[arg(long)]
    pub no_cache: bool,
    /// Print the plan and the estimated time, validate every input, train nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Most students trained together in one cohort.
    #[arg(long, default_value_t = 16)]
    pub max_students: usize,
    /// Throughput in FLOP/s for the --dry-run estimate (default: an assumed figure, printed).
    #[arg(long)]
    pub throughput: Option<f64>,
    /// Test hook: stop after this many cohorts, as if interrupted.
    #[arg(long, hide = true)]
    pub stop_after_cohorts: Option<usize>,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let demo = is_demo(args);
    let mut cfg = if demo {
        demo_config()
    } else {
        EvalConfig::default()
    };
    let mut notes = Vec::new();
    if let Some(path) = &args.config {
        let rep = load_yaml(path, &mut cfg)?;
        for w in rep.warnings {
            eprintln!("warning: {w}");
            notes.push(w);
        }
    }
    apply_flags(args, &mut cfg)?;
    cfg.validate()?;
    if demo {
        let note = demo_note(&cfg);
        eprintln!("{note}");
        notes.push(note);
    }
    let device = match parse_device(&cfg.device)? {
        DeviceChoice::Auto | DeviceChoice::Cpu => "cpu",
        // A dry run only predicts (src/perf), so it needs no GPU.
        DeviceChoice::Cuda(_) if args.dry_run => "cuda",
        DeviceChoice::Cuda(i) => {
            return Err(Error::device(format!(
                "device cuda:{i}: this build has no CUDA backend; use --device cpu (the config's `device` key is overridden by the flag)"
            )))
        }
    };
    let be = Arc::new(CpuBackend::new());
    let described = format!("{} ({})", device, crate::backend::Backend::describe(&*be));

    // ---- inputs: read and validate everything before planning ------------------------------
    let real = load_real_for(&cfg)?;
    let zca = fit_zca(&cfg, &real)?;
    let train = to_image_set(&real.train, &real, zca.as_ref())?;
    let test = to_image_set(&real.test, &real, zca.as_ref())?;
    let (syn, syn_id) = match &cfg.syn_path {
        Some(p) => {
            let (set, lr, id) = load_syn(&cfg, p, &real)?;
            if cfg.syn_lr.is_none() {
                if let Some(lr) = lr {
                    notes.push(format!("syn_lr {lr} read from {}", p.display()));
                    cfg.syn_lr = Some(lr);
                }
            }
            (set, id)
        }
        None if demo => {
            // Pixel features: ConvNet features of 2,000 images cost minutes on a loaded 2-core CPU,
            // more than the demo's whole budget (`ddr-fast select --features convnet` has them).
            let idx = select(
                &be,
                &train,
                SelectMethod::Herding,
                FeatureKind::Pixels,
                cfg.ipc,
                cfg.seed,
            )?;
            let id = format!("herding-pixels:{idx:?}");
            (select_rows(&train, &idx), id)
        }
        None => {
            return Err(Error::config(
                "no synthetic set: pass --syn PATH (or syn_path in the config)",
            ))
        }
    };
    let (teachers, teacher_id) = load_teachers(&cfg, &real)?;
    let dataset_id = match crate::metrics::inputs::data_dir(&cfg) {
        Some(d) if real.name != "fashion-mnist-embedded" => {
            format!("{}:{}", real.name, identity_of_path(&d)?)
        }
        _ => format!("{}:{}", real.name, crate::VERSION),
    };
    let ids = Identities {
        dataset: dataset_id,
        syn: syn_id,
        teachers: teacher_id,
        device: device.to_string(),
    };
    let inputs = Inputs {
        train,
        test,
        syn,
        teachers,
        ids,
    };

    if args.dry_run {
        return dry_run(args, &cfg, &inputs, device);
    }
    let opts = RunOptions {
        max_students: args.max_students,
        quiet: args.quiet,
        stop_after_cohorts: args.stop_after_cohorts,
        notes,
        device: described,
    };
    let subset = |l: &[u32], c: usize, ipc: usize, seed: u64, run: u64| {
        crate::data::random_subset(l, c, ipc, seed, run)
    };
    let rec = evaluate(&be, &cfg, &inputs, &subset, &opts)?;
    print!("{}", table(&cfg, &rec));
    write_outputs(&rec, cfg.out_dir.as_deref(), cfg.csv_path.as_deref())?;
    if let Some(d) = &cfg.out_dir {
        println!("  wrote {}", d.join("result.json").display());
    }
    Ok(())
}

/// Prints the plan, its cohorts and the estimated time; trains nothing.
fn dry_run(args: &EvalArgs, cfg: &EvalConfig, inputs: &Inputs, device: &str) -> Result<()> {
    let p = plan(cfg, &inputs.ids)?;
    let sizes = PlanSizes {
        n_syn: inputs.syn.len(),
        n_full: inputs.train.len(),
        classes: inputs.train.classes,
    };
    let load = |s: Option<Store>| s.map(|s| s.load()).transpose();
    let cache = load(if cfg.no_cache {
        None
    } else {
        Some(Store::open(&cache_dir(cfg), "trainings.jsonl")?)
    })?
    .unwrap_or_default();
    let journal = load(
        cfg.out_dir
            .as_ref()
            .map(|d| Store::open(d, "journal.jsonl"))
            .transpose()?,
    )?
    .unwrap_or_default();
    let todo: Vec<usize> = p
        .trainings
        .iter()
        .filter(|t| !cache.contains_key(&t.key) && !journal.contains_key(&t.key))
        .map(|t| t.id)
        .collect();
    let cohorts = pack(&p, &todo, sizes, args.max_students);
    println!(
        "plan: {} on {} IPC {} ({} synthetic images), {} run(s), model {} width {}",
        cfg.metric,
        cfg.dataset,
        cfg.ipc,
        inputs.syn.len(),
        p.runs,
        cfg.model,
        cfg.width
    );
    println!(
        "  {} trainings: {} to train in {} cohort(s), {} already finished (cache or journal)",
        p.trainings.len(),
        todo.len(),
        cohorts.len(),
        p.trainings.len() - todo.len()
    );
    for t in &p.trainings {
        let state = if journal.contains_key(&t.key) {
            "resume"
        } else if cache.contains_key(&t.key) {
            "cached"
        } else {
            "train"
        };
        let tr = &t.training;
        println!(
            "  [{:>3}] {:<6} {:<11} {:<48} epochs {:>4} test every {:>3} batch {:>3}  key {}",
            t.id,
            state,
            t.slot.quantity.name(),
            tr.describe(),
            tr.epochs,
            tr.test_interval,
            tr.batch_size,
            &t.key[..12]
        );
    }
    for (i, c) in cohorts.iter().enumerate() {
        let t = &p.trainings[c.members[0]].training;
        println!(
            "  cohort {:>2}: {:>2} students × {} epochs on {} images each, batch {}, members {:?}",
            i + 1,
            c.members.len(),
            t.epochs,
            c.n_train,
            t.batch_size,
            c.members
        );
    }
    let spec = model_spec(cfg, &inputs.train)?;
    let (flops, source) = match args.throughput {
        Some(f) => (f, "given by --throughput".to_string()),
        None if device == "cpu" => (
            ASSUMED_CPU_FLOPS,
            "assumed for this CPU, not measured (pass --throughput)".to_string(),
        ),
        None => (
            ASSUMED_CUDA_FLOPS,
            "assumed for one GPU, not measured (pass --throughput)".to_string(),
        ),
    };
    let e = estimate(&p, &todo, &spec, sizes, inputs.test.len(), flops, &source);
    println!(
        "  estimated: {:.3e} FLOP training + {:.3e} FLOP testing ≈ {} on {device} at {:.0} GFLOP/s ({})",
        e.train_flop,
        e.test_flop,
        human_time(e.seconds),
        e.flops_per_s / 1e9,
        e.throughput_source
    );
    if device != "cpu" {
        let test_len = inputs.test.len();
        print!(
            "{}",
            crate::perf::dry_run_report(&p, &cohorts, &spec, sizes, test_len)?
        );
    }
    println!(
        "  inputs validated: real data {} train / {} test images; no training was run",
        inputs.train.len(),
        inputs.test.len()
    );
    Ok(())
}

fn human_time(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
