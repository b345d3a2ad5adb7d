//! `ddr-fast train-teacher`: trains one ConvNet on the full real training set (hard labels) and
//! saves it as safetensors under PyTorch's state_dict names, for soft-label evaluations.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::backend::{
    Backend, DeviceChoice, LossKind, Opened, OptimizerCfg, OptimizerKind, Origin,
};
use crate::data::save_teacher;
use crate::error::Result;
use crate::metrics::config::{AugConfig, DatasetInfo, EvalConfig, Scheduler};
use crate::metrics::execute::aug_plan;
use crate::metrics::inputs::{load_real_for, to_image_set, weights_of};
use crate::model::{ConvNet, ConvNetSpec};
use crate::train::trainer::{
    train_cohort_keep, CohortSettings, DeviceSet, ImageSet, StudentKey, StudentSetup,
};

#[derive(Args, Debug)]
pub struct TrainTeacherArgs {
    /// CIFAR10, CIFAR100, MNIST, FashionMNIST, TinyImageNet, embedded.
    #[arg(long, default_value = "embedded")]
    pub dataset: String,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Teacher architecture (ConvNet-3, ConvNet-3-BN, ConvNet-3-W64, ...).
    #[arg(long, default_value = "ConvNet-3")]
    pub model: String,
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Train with DSA augmentation.
    #[arg(long, default_value_t = true)]
    pub dsa: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output .safetensors (e.g. teacher_models/ConvNet-3.safetensors, where eval looks).
    #[arg(long)]
    pub out: PathBuf,
    /// auto | cpu | cuda | cuda:N | emulated.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

pub fn run(a: &TrainTeacherArgs) -> Result<()> {
    let cfg = EvalConfig {
        dataset: DatasetInfo::parse(&a.dataset)?.name.to_string(),
        data_dir: a.data_dir.clone(),
        ..EvalConfig::default()
    };
    let real = load_real_for(&cfg)?;
    let train = to_image_set(&real.train, &real, None)?;
    let test = to_image_set(&real.test, &real, None)?;
    let (opened, line) = DeviceChoice::parse(&a.device)?.open(Origin::Flag)?;
    eprintln!("{line}");
    match opened {
        Opened::Cpu(be) => train_on(&Arc::new(be), a, &real.name, &train, &test),
        Opened::Cuda(be) => train_on(&Arc::new(be), a, &real.name, &train, &test),
    }
}

/// Trains the teacher on one device and saves it.
fn train_on<B: Backend>(
    be: &Arc<B>,
    a: &TrainTeacherArgs,
    dataset: &str,
    train: &ImageSet,
    test: &ImageSet,
) -> Result<()> {
    let spec = ConvNetSpec::from_name(&a.model, train.channels, train.size, train.classes)?;
    let cs = CohortSettings {
        net: ConvNet::new(spec).into(),
        epochs: a.epochs,
        test_interval: a.epochs.clamp(1, 10),
        batch_size: a.batch_size,
        loss: LossKind::CrossEntropy,
        optimizer: OptimizerCfg {
            kind: OptimizerKind::Sgd,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 5e-4,
        },
        scheduler: Scheduler::Cosineannealing,
        step_size: a.epochs.div_ceil(2),
        aug: aug_plan(&if a.dsa {
            AugConfig::dsa_default()
        } else {
            AugConfig::None
        }),
        tv: None,
    };
    // The role is outside the planner's range (< 2^13), so a teacher never shares a student's draws.
    let key = StudentKey {
        seed: a.seed,
        run: 0,
        role: 0xFFFF,
    };
    let setup = StudentSetup {
        data: train,
        lr: a.lr,
        key,
        augment: a.dsa,
        tv: false,
        teacher_targets: false,
    };
    let test = DeviceSet::upload(be, test, "test set")?;
    let (res, cohort) = train_cohort_keep(be, &cs, &[setup], &test, &[], &mut |e, n| {
        eprint!("\repoch {e}/{n}")
    })?;
    eprintln!();
    let params = be.download(cohort.params())?; // (1, P)
    let running = be.download(cohort.running())?; // (1, R)
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| crate::Error::io(parent, e))?;
    }
    save_teacher(&a.out, &weights_of(&cs.net, &params, &running))?;
    let r = &res[0];
    if let Some(why) = &r.stopped {
        eprintln!("warning: training stopped: {why}");
    }
    println!(
        "teacher {} on {}: best test accuracy {:.2}%; saved {}",
        a.model,
        dataset,
        100.0 * r.best,
        a.out.display()
    );
    Ok(())
}
