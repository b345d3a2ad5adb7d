//! `ddr-fast eval`: DD-Ranking scores of a distilled set. Settings come from the defaults, then a
//! DD-Ranking YAML (`--config`), then these flags. With no data arguments at all it runs the demo:
//! a herding coreset of the embedded Fashion-MNIST subset scored with a reduced recipe.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::eval_device::{cohort_students, DryTarget};
use super::eval_models::DryTotals;
use super::eval_setup::{apply_flags, demo_config, demo_note, is_demo};
use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, Opened, Origin};
use crate::error::{Error, Result};
use crate::metrics::cache::Store;
use crate::metrics::config::{parse_device, EvalConfig};
use crate::metrics::coreset::{select, FeatureKind, SelectMethod};
use crate::metrics::cost::{estimate_per_image, net_flops, ASSUMED_CPU_FLOPS, ASSUMED_CUDA_FLOPS};
use crate::metrics::execute::{
    cache_dir, model_net, model_spec, select as select_rows, Inputs, RunOptions,
};
use crate::metrics::plan::{pack, plan, PlanSizes};
use crate::metrics::report::{table, write_outputs, EvalRecord};
use crate::metrics::session::{
    adopt_syn_lr, assemble_inputs, load_real_inputs, load_syn_source, SynSource,
};
use crate::metrics::settings::Provenance;
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
    /// CIFAR10, CIFAR100, MNIST, FashionMNIST, TinyImageNet, embedded (YAML: dataset; default CIFAR10).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder of the real dataset (YAML: real_data_path; default $DDR_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The distilled set: .safetensors, .pt or an image folder (YAML: syn_path).
    #[arg(long)]
    pub syn: Option<PathBuf>,
    /// A learned learning rate for the synthetic set; replaces the lr search of the method's own
    /// recipe, never LRS-soft's hard-label one (YAML: syn_lr; default: the file's `lr`, else none).
    #[arg(long)]
    pub syn_lr: Option<f64>,
    /// Images per class (YAML: ipc; default 10).
    #[arg(long)]
    pub ipc: Option<usize>,
    /// ConvNet-3, ConvNet-4-BN, ...; several (comma list or repeated flag) score the set on each
    /// and print one table (README "Cross-architecture scores") (YAML: model_name, a name or a
    /// list; default ConvNet-3).
    #[arg(long, value_delimiter = ',')]
    pub model: Vec<String>,
    /// Conv channels (YAML: width; default 128).
    #[arg(long)]
    pub width: Option<usize>,
    /// dsa | mixup | cutmix | none (YAML: data_aug_func; default cutmix, β 1).
    #[arg(long)]
    pub aug: Option<String>,
    /// Augmentation parameter KEY=VALUE, repeatable: DSA scale/rotate/flip/brightness/saturation/
    /// contrast/crop/cutout, mixup alpha, cutmix beta (YAML: aug_params).
    #[arg(long = "aug-param")]
    pub aug_params: Vec<String>,
    /// Augment the hard-label trainings of LRS-soft (YAML: use_aug_for_hard; default false).
    #[arg(long)]
    pub use_aug_for_hard: Option<bool>,
    /// hard | soft: the recipe of ARS / acc (YAML: label_type; default soft).
    #[arg(long)]
    pub label_type: Option<String>,
    /// S | M (YAML: soft_label_mode; default S).
    #[arg(long)]
    pub soft_label_mode: Option<String>,
    /// kl | sce | mse_gt (YAML: soft_label_criterion; default kl).
    #[arg(long)]
    pub criterion: Option<String>,
    /// Soft-label temperature (YAML: loss_fn_kwargs.temperature; default 1.2).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Multiply soft losses by T² (YAML: loss_fn_kwargs.scale_loss; default false).
    #[arg(long)]
    pub scale_loss: Option<bool>,
    /// YAML: loss_fn_kwargs.mse_weight (default 1.0).
    #[arg(long)]
    pub mse_weight: Option<f64>,
    /// YAML: loss_fn_kwargs.ce_weight (default 0.0).
    #[arg(long)]
    pub ce_weight: Option<f64>,
    /// sgd | adam | adamw (YAML: optimizer; default sgd).
    #[arg(long)]
    pub optimizer: Option<String>,
    /// step | cosineannealing | cosine | none (YAML: lr_scheduler; default step).
    #[arg(long)]
    pub scheduler: Option<String>,
    /// YAML: step_size (default num_epochs / 2).
    #[arg(long)]
    pub step_size: Option<usize>,
    /// YAML: weight_decay (default 0.0005).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// YAML: momentum (default 0.9).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Runs, each with a fresh random subset (YAML: num_eval; default 5).
    #[arg(long)]
    pub num_eval: Option<usize>,
    /// YAML: num_epochs (default 300).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Epochs of the full-data training (YAML: full_epochs; default num_epochs).
    #[arg(long)]
    pub full_epochs: Option<usize>,
    /// Epochs between tests (YAML: test_interval; default 10 hard, 20 soft/ARS).
    #[arg(long)]
    pub test_interval: Option<usize>,
    /// Comma-separated learning-rate grid (YAML: lr_grid; default 0.001,0.005,0.01,0.05,0.1).
    #[arg(long, value_delimiter = ',')]
    pub lr_grid: Option<Vec<f64>>,
    /// Learning rate of the full-data training when DD-Ranking's recipe table has no entry for the
    /// dataset and model (YAML: default_lr; default 0.01).
    #[arg(long)]
    pub default_lr: Option<f64>,
    /// ZCA-whiten raw pixels, kornia eps 0.1 (YAML: use_zca; default false).
    #[arg(long)]
    pub use_zca: Option<bool>,
    /// YAML: syn_batch_size (default 256).
    #[arg(long)]
    pub syn_batch_size: Option<usize>,
    /// YAML: real_batch_size (default 256).
    #[arg(long)]
    pub real_batch_size: Option<usize>,
    /// ARS's batch size for all its trainings and tests (YAML: batch_size; default
    /// syn_batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// tensor | image: image round-trips random subsets through JPEG q75 as DD-Ranking's files do
    /// (YAML: random_data_format; default tensor).
    #[arg(long)]
    pub random_data_format: Option<String>,
    /// Train on the full real set for HLR (YAML: eval_full_data; default false, which needs
    /// --full-acc).
    #[arg(long)]
    pub eval_full_data: Option<bool>,
    /// A known full-data accuracy (fraction) when eval_full_data is false (YAML: full_acc; default
    /// DD-Ranking's cached value, where it has one).
    #[arg(long)]
    pub full_acc: Option<f64>,
    /// Teachers: DIR/<DATASET>/<NAME>/ckpt_best.pt or DIR/<NAME>.{safetensors,pt} (YAML: teacher_dir).
    #[arg(long)]
    pub teacher_dir: Option<PathBuf>,
    /// Teacher model name, repeatable (YAML: teacher_model_names; default ConvNet-3).
    #[arg(long = "teacher")]
    pub teachers: Vec<String>,
    /// Base seed; run i uses seed + i (YAML: seed; default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Weight of IOR in α (YAML: lambda; default 0.5).
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Weight of the augmented gap in β (YAML: gamma; default 0.5).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// auto | cpu | cuda | cuda:N | emulated (YAML: device). auto takes GPU 0 when a driver and
    /// a GPU are present, else the CPU. The YAML's cuda without a GPU runs on the CPU with a
    /// warning; this flag's cuda without a GPU is an error. emulated runs the CUDA kernels on the
    /// host emulator: the GPU's code path, very slow (tests, debugging). cuda:all or cuda:0,1,…
    /// runs one shard process per GPU, then collects (README "Scaling out").
    #[arg(long)]
    pub device: Option<String>,
    /// Tensor-core precision of the test passes (and teacher labels) on a CUDA device: bf16
    /// (default), tf32 or 3xtf32. The precision study (benches/README.md) finds bf16 and tf32
    /// accuracies indistinguishable from fp32's; bf16 is the faster with today's kernels. Training
    /// keeps TF32. Each precision has its own cache entries. The CPU ignores it.
    #[arg(long)]
    pub test_precision: Option<String>,
    /// Device memory in GB that --dry-run plans cohorts for when the GPU asked for is not on this
    /// machine (default 80, an H100's).
    #[arg(long)]
    pub device_memory: Option<f64>,
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
    /// Most students trained together in one cohort (default: 16 on the CPU; on a GPU as many as
    /// its free memory holds, less a 15% margin; an out-of-memory error halves it and retries).
    #[arg(long)]
    pub max_students: Option<usize>,
    /// Throughput in FLOP/s for the --dry-run estimate (default: an assumed figure, printed).
    #[arg(long)]
    pub throughput: Option<f64>,
    /// Train only the I-th of N shards of the plan (0 <= I < N), balanced by predicted cost, into
    /// the shared cache; no scores (README "Scaling out").
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Train nothing: the scores from the cache once every training is there, else which are
    /// missing.
    #[arg(long)]
    pub collect: bool,
    /// With --collect: while trainings are missing, look again every 30 s for up to SECS seconds.
    #[arg(long, value_name = "SECS", requires = "collect")]
    pub wait: Option<u64>,
    /// Run as K shard processes on this machine (their --device; CPU cores split between them),
    /// then collect. --device cuda:all or cuda:0,1,… runs one per GPU without this flag.
    #[arg(long, value_name = "K")]
    pub workers: Option<usize>,
    /// Print a scheduler recipe instead of running: slurm (a job-array script) or k8s (an
    /// Indexed Job manifest), each with the collect step after the shards. Needs --shards.
    #[arg(long, value_name = "slurm|k8s")]
    pub emit: Option<String>,
    /// Shards of the --emit recipe.
    #[arg(long, value_name = "N", requires = "emit")]
    pub shards: Option<usize>,
    /// Container image of --emit k8s (default ddr-fast:<version>).
    #[arg(long, requires = "emit")]
    pub image: Option<String>,
    /// Test hook: stop after this many cohorts, as if interrupted.
    #[arg(long, hide = true)]
    pub stop_after_cohorts: Option<usize>,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let args = &match super::eval_shard::launch(args)? {
        super::eval_shard::Launch::Done => return Ok(()),
        super::eval_shard::Launch::Continue(a) => a,
    };
    let demo = is_demo(args);
    let mut cfg = if demo {
        demo_config()
    } else {
        EvalConfig::default()
    };
    let mut notes = Vec::new();
    let mut prov = Provenance::new(&cfg, if demo { "demo" } else { "default" });
    if let Some(path) = &args.config {
        let rep = load_yaml(path, &mut cfg)?;
        for w in rep.warnings {
            eprintln!("warning: {w}");
            notes.push(w);
        }
        prov.mark(rep.set, &format!("yaml {}", path.display()));
    }
    let before_flags = cfg.clone();
    apply_flags(args, &mut cfg)?;
    prov.mark_changed(&before_flags, &cfg, "flag");
    // Each model's config on its own: a model list is checked before anything trains.
    super::eval_models::validate(&cfg)?;
    test_precision(args)?; // a bad --test-precision fails before any data loads
    if demo {
        let note = demo_note(&cfg);
        eprintln!("{note}");
        notes.push(note);
    }
    // A flag demands its device; the YAML's `device` (every DD-Ranking config says cuda) is a
    // preference that falls back to the CPU with a warning.
    let choice = parse_device(&cfg.device)?;
    let origin = if args.device.is_some() {
        Origin::Flag
    } else {
        Origin::Config
    };
    if args.dry_run {
        let target = DryTarget::resolve(choice, origin, args.device_memory)?;
        eprintln!("{}", target.line);
        if target.kind != "cpu" && !crate::model::net::is_convnet_name(&cfg.model) {
            // The plan would fail at its first cohort: say so now.
            return Err(crate::backend::no_kernel(
                target.kind,
                &format!("{} (its layer-list ops)", cfg.model),
            ));
        }
        let inputs = load_inputs(
            &Arc::new(CpuBackend::new()),
            &mut cfg,
            &mut prov,
            &mut notes,
            demo,
            target.kind,
            key_test_precision(target.kind, args)?,
        )?;
        print!("{}", super::eval_models::settings_text_for(&prov, &cfg));
        return super::eval_models::dry_run_models(&cfg, |m| dry_run(args, m, &inputs, &target));
    }
    if args.collect {
        let kind = super::eval_shard::collect_kind(choice, origin)?;
        let be = Arc::new(CpuBackend::new());
        return run_on(&be, args, cfg, prov, notes, demo, kind);
    }
    let (opened, line) = choice.open(origin)?;
    eprintln!("{line}");
    if line.starts_with("warning:") {
        notes.push(line);
    }
    match opened {
        Opened::Cpu(be) => run_on(&Arc::new(be), args, cfg, prov, notes, demo, "cpu"),
        Opened::Cuda(be) => {
            let be = be.with_test_precision(test_precision(args)?);
            let kind = if be.is_emulated() {
                "cuda-emulated"
            } else {
                "cuda"
            };
            run_on(&Arc::new(be), args, cfg, prov, notes, demo, kind)
        }
    }
}

/// Reads and validates every input (real data, ZCA, the synthetic set, teachers) before planning.
/// `kind` ("cpu", "cuda", "cuda-emulated") goes into the cache keys: devices agree to rounding
/// only; so does `test` ([`key_test_precision`]), the test passes' mode where it changes them.
fn load_inputs<B: Backend>(
    be: &Arc<B>,
    cfg: &mut EvalConfig,
    prov: &mut Provenance,
    notes: &mut Vec<String>,
    demo: bool,
    kind: &str,
    test: Option<String>,
) -> Result<Inputs> {
    let real = load_real_inputs(cfg)?;
    let (syn, syn_id) = match cfg.syn_path.clone() {
        Some(p) => {
            let syn = load_syn_source(cfg, SynSource::Path(p), &real.real)?;
            if adopt_syn_lr(cfg, &syn, notes) {
                prov.mark(["syn_lr"], &format!("file {}", syn.origin));
            }
            (syn.set, syn.id)
        }
        None if demo => {
            // Pixel features: ConvNet features of 2,000 images cost minutes on a loaded 2-core CPU,
            // more than the demo's whole budget (`ddr-fast select --features convnet` has them).
            let idx = select(
                be,
                &real.train,
                SelectMethod::Herding,
                FeatureKind::Pixels,
                cfg.ipc,
                cfg.seed,
            )?;
            let id = format!("herding-pixels:{idx:?}");
            (select_rows(&real.train, &idx), id)
        }
        None => {
            return Err(Error::config(
                "no synthetic set: pass --syn PATH (or syn_path in the config)",
            ))
        }
    };
    let mut inputs = assemble_inputs(cfg, real, syn, syn_id, kind)?;
    inputs.ids.test_precision = test;
    Ok(inputs)
}

/// The test precision that enters the cache keys on device `kind`: on CUDA (a GPU or the
/// emulator, both run the mode's own kernels) `--test-precision` or its default, so a TF32-test
/// result is never reused for a bf16-test run; None on the CPU, whose eval forwards are fp32
/// whatever the flag says, so its keys (and older CPU caches) do not change.
fn key_test_precision(kind: &str, args: &EvalArgs) -> Result<Option<String>> {
    if kind == "cpu" {
        return Ok(None);
    }
    Ok(Some(test_precision(args)?.name().to_string()))
}

/// Loads the inputs, sizes the cohorts for the device and runs the evaluation on it.
fn run_on<B: Backend>(
    be: &Arc<B>,
    args: &EvalArgs,
    mut cfg: EvalConfig,
    mut prov: Provenance,
    mut notes: Vec<String>,
    demo: bool,
    kind: &str,
) -> Result<()> {
    let t0 = std::time::Instant::now();
    // A model this device has no kernels for is refused before anything is loaded or trained.
    crate::model::net::check_model_backend(&cfg.model, &**be)?;
    let test = key_test_precision(kind, args)?;
    let inputs = load_inputs(be, &mut cfg, &mut prov, &mut notes, demo, kind, test)?;
    print!("{}", super::eval_models::settings_text_for(&prov, &cfg));
    super::eval_models::score_models(&cfg, |m| score(be, args, m, &prov, notes.clone(), &inputs))?;
    eprintln!(
        "evaluated on {} in {:.1} s",
        be.describe(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One model's evaluation (`cfg` names one model): trains or reuses its trainings as the flags
/// ask, prints its table and writes its outputs. None for a shard: its trainings are in the
/// cache, the scores come from --collect.
fn score<B: Backend>(
    be: &Arc<B>,
    args: &EvalArgs,
    cfg: &EvalConfig,
    prov: &Provenance,
    notes: Vec<String>,
    inputs: &Inputs,
) -> Result<Option<EvalRecord>> {
    let (max_students, why) = cohort_students(args.max_students, be.memory()?, cfg, inputs)?;
    eprintln!("cohorts: up to {max_students} students ({why})");
    let opts = RunOptions {
        max_students,
        quiet: args.quiet,
        stop_after_cohorts: args.stop_after_cohorts,
        notes,
        device: be.describe(),
        watch: None,
    };
    let subset = |l: &[u32], c: usize, ipc: usize, seed: u64, run: u64| {
        crate::data::random_subset(l, c, ipc, seed, run)
    };
    let mode = super::eval_shard::evaluate_mode(be, args, cfg, inputs, &subset, &opts)?;
    let Some(mut rec) = mode else {
        return Ok(None);
    };
    rec.settings = prov.resolve(cfg);
    print!("{}", table(cfg, &rec));
    write_outputs(&rec, cfg.out_dir.as_deref(), cfg.csv_path.as_deref())?;
    if let Some(d) = &cfg.out_dir {
        println!("  wrote {}", d.join("result.json").display());
        println!(
            "  wrote {}",
            crate::report::write_eval_report(&rec, d)?.display()
        );
    }
    Ok(Some(rec))
}

/// Prints the plan, its cohorts and the estimated time of one model; trains nothing. Returns the
/// counts a model list sums up.
fn dry_run(
    args: &EvalArgs,
    cfg: &EvalConfig,
    inputs: &Inputs,
    target: &DryTarget,
) -> Result<DryTotals> {
    let device = target.kind;
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
    let (max_students, why) = cohort_students(args.max_students, target.memory, cfg, inputs)?;
    let cohorts = pack(&p, &todo, sizes, max_students);
    println!("device: {}", target.describe);
    println!("  cohorts: up to {max_students} students each ({why})");
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
    // ConvNet's exact FLOP count, or a layer list's conv and linear layers (cost::net_flops).
    let net = model_net(cfg, &inputs.train)?;
    let convnet = net.convnet().is_some();
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
    // The assumed rates come from ConvNet; the other families run other kernels (im2col conv2d,
    // per-layer norm and pooling) at rates this estimate does not know.
    let source = if convnet || args.throughput.is_some() {
        source
    } else {
        format!("{source}; a ConvNet rate, not measured for {}", cfg.model)
    };
    let e = estimate_per_image(
        &p,
        &todo,
        net_flops(&net),
        sizes,
        inputs.test.len(),
        flops,
        &source,
    );
    println!(
        "  estimated: {:.3e} FLOP training + {:.3e} FLOP testing ≈ {} on {device} at {:.0} GFLOP/s ({})",
        e.train_flop,
        e.test_flop,
        human_time(e.seconds),
        e.flops_per_s / 1e9,
        e.throughput_source
    );
    if target.kind != "cpu" {
        // Only ConvNet reaches here on a GPU (the others were refused above).
        let spec = model_spec(cfg, &inputs.train)?;
        let test_len = inputs.test.len();
        print!(
            "{}",
            crate::perf::dry_run_report(
                &p,
                &cohorts,
                &spec,
                sizes,
                test_len,
                crate::perf::test_modes(test_precision(args)?),
            )?
        );
    }
    println!(
        "  inputs validated: real data {} train / {} test images; no training was run",
        inputs.train.len(),
        inputs.test.len()
    );
    Ok(DryTotals {
        trainings: p.trainings.len(),
        todo: todo.len(),
        cohorts: cohorts.len(),
        seconds: e.seconds,
    })
}

pub(super) fn human_time(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// `--test-precision`, or the CUDA backend's default (`TestPrecision`'s `#[default]`, bf16).
pub fn test_precision(args: &EvalArgs) -> Result<crate::backend::cuda::TestPrecision> {
    match &args.test_precision {
        Some(t) => crate::backend::cuda::TestPrecision::parse(t)
            .map_err(|e| crate::error::Error::config(format!("--test-precision: {e}"))),
        None => Ok(crate::backend::cuda::TestPrecision::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--test-precision` keys CUDA results (real or emulated) and leaves CPU keys alone: the CPU
    /// never reads the flag.
    #[test]
    fn test_precision_enters_the_key_on_cuda_only() {
        let args = |p: Option<&str>| EvalArgs {
            test_precision: p.map(Into::into),
            ..EvalArgs::default()
        };
        let key = |kind: &str, p: Option<&str>| key_test_precision(kind, &args(p)).unwrap();
        assert_eq!(key("cpu", Some("bf16")), None);
        assert_eq!(key("cpu", None), None);
        assert_eq!(key("cuda", Some("BF16")).as_deref(), Some("bf16"));
        assert_eq!(
            key("cuda-emulated", Some("3xtf32")).as_deref(),
            Some("3xtf32")
        );
        assert!(key_test_precision("cuda", &args(Some("fp16"))).is_err());
    }

    /// No flag means the backend's default test precision, and the key says so: a run without
    /// the flag shares its cache entries with `--test-precision <default>` and with no other.
    #[test]
    fn the_default_test_precision_keys_as_itself() {
        use crate::backend::cuda::TestPrecision;
        let args = |p: Option<&str>| EvalArgs {
            test_precision: p.map(Into::into),
            ..EvalArgs::default()
        };
        assert_eq!(test_precision(&args(None)).unwrap(), TestPrecision::Bf16);
        for kind in ["cuda", "cuda-emulated"] {
            let default = key_test_precision(kind, &args(None)).unwrap();
            assert_eq!(default.as_deref(), Some(TestPrecision::default().name()));
            for p in TestPrecision::ALL {
                let explicit = key_test_precision(kind, &args(Some(p.name()))).unwrap();
                assert_eq!(
                    explicit == default,
                    p == TestPrecision::default(),
                    "{kind}: --test-precision {} against no flag",
                    p.name()
                );
            }
        }
    }

    /// Whole cache keys, as the evaluation builds them from `--test-precision`: every CUDA test
    /// precision gets keys of its own (a bf16-test accuracy is never served to a TF32-test run,
    /// nor the reverse), and the CPU's keys ignore the flag.
    #[test]
    fn two_test_precisions_never_share_a_cache_key() {
        use crate::backend::cuda::TestPrecision;
        use crate::metrics::cache::training_key;
        use crate::metrics::config::{EvalConfig, Metric};
        use crate::metrics::plan::{plan, Identities};
        let cfg = EvalConfig {
            metric: Metric::LrsHard,
            eval_full_data: true,
            ..EvalConfig::default()
        };
        let ids = |kind: &str, p: Option<&str>| Identities {
            dataset: "d".into(),
            syn: "s".into(),
            teachers: "t".into(),
            device: kind.into(),
            test_precision: key_test_precision(
                kind,
                &EvalArgs {
                    test_precision: p.map(Into::into),
                    ..EvalArgs::default()
                },
            )
            .unwrap(),
        };
        let trainings = plan(&cfg, &ids("cpu", None)).unwrap().trainings;
        assert!(!trainings.is_empty());
        for t in trainings.iter().map(|t| &t.training) {
            for kind in ["cuda", "cuda-emulated"] {
                let keys: Vec<String> = TestPrecision::ALL
                    .iter()
                    .map(|p| training_key(t, &ids(kind, Some(p.name()))).unwrap())
                    .collect();
                let distinct: std::collections::HashSet<&String> = keys.iter().collect();
                assert_eq!(distinct.len(), keys.len(), "{kind}: {}", t.describe());
                let default = training_key(t, &ids(kind, None)).unwrap();
                assert_eq!(
                    Some(&default),
                    TestPrecision::ALL
                        .iter()
                        .position(|&p| p == TestPrecision::default())
                        .map(|i| &keys[i])
                );
            }
            let cpu = |p| training_key(t, &ids("cpu", p)).unwrap();
            assert_eq!(cpu(None), cpu(Some("tf32")));
            assert_eq!(cpu(None), cpu(Some("bf16")));
        }
    }
}
