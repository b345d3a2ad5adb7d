//! The training plan of one evaluation (DESIGN.md §2, §6): which students are trained, on what data,
//! with which labels, augmentation and learning rate; which accuracy each one feeds; and how they
//! are packed into cohorts that the trainer runs in lock-step.
//!
//! A training's identity is its content: two evaluations that need the same baseline (the same
//! random subset, recipe, learning rate and seed) produce the same [`Training::key`], which is how
//! the cache reuses full-data and random-subset results across methods.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{
    AugConfig, Criterion, EvalConfig, LossKwargs, Metric, Optimizer, RandomDataFormat, Scheduler,
    SoftMode,
};
use crate::error::{Error, Result};

/// Bumped whenever a change in the trainer or the engine changes what a training returns, so
/// cached results from older code are never reused.
/// 2: random subsets may be JPEG round-tripped (`random_data_format: image`), ZCA is fitted on
/// raw pixels, the full-data training follows DD-Ranking's own recipe table.
pub const TRAINER_REVISION: u32 = 2;

/// Where a student's training images come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DataSource {
    /// The distilled set under evaluation.
    Syn,
    /// A class-balanced random subset of the real training set, drawn for `run`; `format` Image
    /// means its images went through DD-Ranking's JPEG files.
    Random {
        ipc: usize,
        run: u32,
        #[serde(default)]
        format: RandomDataFormat,
    },
    /// The whole real training set.
    Full,
}

/// The targets a student learns from (DESIGN.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelMode {
    Hard,
    /// One stored logit vector per image (the set's own, or the teacher's on a random subset).
    SoftStored,
    /// Mean teacher logits on each augmented batch.
    SoftTeacher,
}

/// The quantities the scores are built from; each is the best over its trainings' learning rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Acc(full real data, hard labels): one value shared by all runs.
    FullHard,
    SynHard,
    /// Acc(syn, the method's recipe); for hard-label LRS this is SynHard itself.
    SynRecipe,
    RdmRecipe,
    SynAug,
    SynNoAug,
    RdmAug,
    RdmNoAug,
}

impl Quantity {
    pub fn name(&self) -> &'static str {
        match self {
            Quantity::FullHard => "full_hard",
            Quantity::SynHard => "syn_hard",
            Quantity::SynRecipe => "syn_recipe",
            Quantity::RdmRecipe => "rdm_recipe",
            Quantity::SynAug => "syn_aug",
            Quantity::SynNoAug => "syn_noaug",
            Quantity::RdmAug => "rdm_aug",
            Quantity::RdmNoAug => "rdm_noaug",
        }
    }
}

/// Where a training's accuracy goes: (quantity, run); full data has no run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Slot {
    pub quantity: Quantity,
    pub run: Option<u32>,
}

/// Optimizer settings of one training (the learning rate is per training, outside).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub optimizer: Optimizer,
    pub weight_decay: f64,
    pub momentum: f64,
    pub scheduler: Scheduler,
    pub step_size: usize,
}

/// Everything a training's result depends on, apart from the identity of its inputs (dataset,
/// synthetic set, teachers), which [`Identities`] adds to the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Training {
    pub data: DataSource,
    pub labels: LabelMode,
    /// The soft-label loss; None for hard labels (cross-entropy).
    pub criterion: Option<(Criterion, LossKwargs)>,
    /// The augmentation when switched on for this student.
    pub aug: Option<AugConfig>,
    pub lr: f64,
    /// Position of `lr` in the grid (`u8::MAX` for a user-given syn_lr); part of the role.
    pub lr_index: u8,
    pub seed: u64,
    pub run: u32,
    pub epochs: usize,
    pub test_interval: usize,
    pub batch_size: usize,
    pub recipe: Recipe,
    pub model: String,
    pub width: usize,
    pub use_zca: bool,
}

impl Training {
    /// The student's role in its run, for the counter-based generators (init, shuffle, aug).
    /// A function of the training's content only, so the same baseline draws the same numbers in
    /// whichever evaluation or cohort it runs.
    pub fn role(&self) -> u32 {
        let data = match self.data {
            DataSource::Syn => 0u32,
            DataSource::Random { .. } => 1,
            DataSource::Full => 2,
        };
        let labels = match self.labels {
            LabelMode::Hard => 0u32,
            LabelMode::SoftStored => 1,
            LabelMode::SoftTeacher => 2,
        };
        let aug = u32::from(self.aug.is_some());
        (((data * 4 + labels) * 2 + aug) << 8) | u32::from(self.lr_index)
    }

    /// Tests during training: every `test_interval` epochs and after the last one.
    pub fn num_tests(&self) -> usize {
        self.epochs / self.test_interval + usize::from(self.epochs % self.test_interval != 0)
    }

    /// A short human description for plans and logs.
    pub fn describe(&self) -> String {
        let data = match &self.data {
            DataSource::Syn => "syn".to_string(),
            DataSource::Random {
                ipc,
                run,
                format: RandomDataFormat::Tensor,
            } => format!("rdm(ipc {ipc}, run {run})"),
            DataSource::Random { ipc, run, .. } => format!("rdm-jpeg(ipc {ipc}, run {run})"),
            DataSource::Full => "full".to_string(),
        };
        let labels = match self.labels {
            LabelMode::Hard => "hard",
            LabelMode::SoftStored => "soft-S",
            LabelMode::SoftTeacher => "soft-M",
        };
        let aug = self.aug.map(|a| a.func_name()).unwrap_or("no-aug");
        format!("{data} {labels} {aug} lr {} run {}", self.lr, self.run)
    }

    /// What must be equal for students to share a cohort (DESIGN.md §6): architecture, input
    /// shape, epochs, batch size, test schedule, loss and optimizer family. Data, augmentation
    /// switch, learning rate and seed may differ per student (one evaluation has one augmentation
    /// function, so the switch is all that varies).
    fn cohort_key(&self, n_train: usize) -> String {
        format!(
            "{}|w{}|n{}|b{}|e{}|t{}|{:?}|{:?}|{:?}|{:?}|{}",
            self.model,
            self.width,
            n_train,
            self.batch_size,
            self.epochs,
            self.test_interval,
            self.criterion,
            self.recipe,
            self.labels == LabelMode::SoftTeacher,
            self.data == DataSource::Full,
            self.use_zca,
        )
    }
}

/// The identities of the inputs, folded into every cache key. Each is a string that changes when
/// the input's content changes (see `cache::identity_of_path`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identities {
    pub dataset: String,
    pub syn: String,
    pub teachers: String,
    /// The device kind ("cpu", "cuda"): results agree only to rounding across devices.
    pub device: String,
    /// The tensor-core mode of the test passes and teacher labels (`--test-precision`) where it
    /// changes the numbers: on a CUDA device (real or emulated). None on the CPU, whose eval
    /// forwards are fp32 whatever the flag says; absent from the key text when None, so CPU keys
    /// are those written before this field existed and older CPU caches stay readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_precision: Option<String>,
}

/// One planned training and the accuracy slot it feeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub id: usize,
    pub slot: Slot,
    pub training: Training,
    /// Hash of everything the result depends on.
    pub key: String,
    /// True for trainings that do not depend on the method (full data, random subsets): the ones
    /// worth sharing across evaluations.
    pub method_independent: bool,
}

/// Students trained together in lock-step (ids into [`Plan::trainings`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cohort {
    pub members: Vec<usize>,
    /// Images in each member's training set (shared within the cohort).
    pub n_train: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub metric: Metric,
    pub trainings: Vec<Planned>,
    pub runs: u32,
}

/// DD-Ranking's `REAL_DATA_TRAINING_CONFIG` (ddranking/utils/train_and_eval.py) for the models
/// ddr-fast builds: (dataset as DD-Ranking spells it, model, lr, weight decay, StepLR step size).
/// Every entry is SGD with momentum 0.9 and StepLR γ 0.1; its `batch_size` and `num_epochs`
/// columns are not used by the reference (it trains `num_epochs` of the evaluator at
/// `real_batch_size`), so they are not copied.
const REFERENCE_FULL_RECIPES: [(&str, &str, f64, f64, usize); 5] = [
    ("CIFAR10", "ConvNet-3", 0.01, 5e-4, 100),
    ("CIFAR10", "ConvNet-3-BN", 0.01, 5e-4, 100),
    ("CIFAR100", "ConvNet-3", 0.01, 5e-4, 100),
    ("CIFAR100", "ConvNet-3-BN", 0.01, 5e-4, 100),
    ("TinyImageNet", "ConvNet-4-BN", 0.01, 5e-4, 50),
];

/// The full-data training's learning rate and recipe: DD-Ranking's table entry for (dataset,
/// model), else (where the reference has none and fails with a KeyError) SGD at `default_lr`,
/// momentum 0.9, weight decay 5e-4 and the config's scheduler (README "Deliberate differences").
pub fn full_data_recipe(cfg: &EvalConfig) -> Result<(f64, Recipe)> {
    let info = cfg.dataset_info()?;
    let sgd = |lr, weight_decay, scheduler, step_size| {
        (
            lr,
            Recipe {
                optimizer: Optimizer::Sgd,
                weight_decay,
                momentum: 0.9,
                scheduler,
                step_size,
            },
        )
    };
    Ok(
        match REFERENCE_FULL_RECIPES
            .iter()
            .find(|(d, m, ..)| *d == info.reference_name() && *m == cfg.model)
        {
            Some(&(_, _, lr, wd, step)) => sgd(lr, wd, Scheduler::Step, step),
            None => sgd(cfg.default_lr, 5e-4, cfg.scheduler, cfg.step_size()),
        },
    )
}

/// Inputs the planner needs besides the config: sizes known only once the data is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanSizes {
    /// Images in the synthetic set (IPC × classes for a class-balanced set).
    pub n_syn: usize,
    pub n_full: usize,
    pub classes: usize,
}

/// Turn a validated config into its trainings (DESIGN.md §2).
pub fn plan(cfg: &EvalConfig, ids: &Identities) -> Result<Plan> {
    if cfg.lr_grid.len() >= usize::from(u8::MAX) {
        return Err(Error::config(format!(
            "lr grid: at most {} learning rates, found {}",
            u8::MAX - 1,
            cfg.lr_grid.len()
        )));
    }
    let recipe = Recipe {
        optimizer: cfg.optimizer,
        weight_decay: cfg.weight_decay,
        momentum: cfg.momentum,
        scheduler: cfg.scheduler,
        step_size: cfg.step_size(),
    };
    // Random subsets in mode S get their stored logits from the teacher once (DESIGN.md §3).
    let soft = match cfg.soft_label_mode {
        SoftMode::S => LabelMode::SoftStored,
        SoftMode::M => LabelMode::SoftTeacher,
    };
    let base = |data: DataSource, labels: LabelMode, aug: bool, run: u32| Training {
        // ARS reads one batch key for all its trainings; the LRS metrics read two.
        batch_size: match (cfg.metric, &data) {
            (Metric::Ars, _) => cfg.ars_batch_size(),
            (_, DataSource::Full) => cfg.real_batch_size,
            _ => cfg.syn_batch_size,
        },
        criterion: (labels != LabelMode::Hard).then_some((cfg.criterion, cfg.loss)),
        data,
        labels,
        aug: if aug {
            Some(cfg.aug).filter(|a| *a != AugConfig::None)
        } else {
            None
        },
        lr: 0.0,
        lr_index: 0,
        seed: cfg.seed,
        run,
        epochs: cfg.num_epochs,
        test_interval: cfg.test_interval(),
        recipe,
        model: cfg.model.clone(),
        width: cfg.width,
        use_zca: cfg.use_zca,
    };

    let mut out: Vec<(Slot, Training)> = Vec::new();
    // One student per grid learning rate; a user-given syn_lr replaces the search for Syn data,
    // except in LRS-soft's hard-label training, which DD-Ranking always searches (DESIGN.md §2).
    let mut tuned = |slot: Slot, t: Training| {
        let searched_anyway = slot.quantity == Quantity::SynHard && cfg.metric == Metric::LrsSoft;
        if t.data == DataSource::Syn && !searched_anyway {
            if let Some(lr) = cfg.syn_lr {
                out.push((
                    slot,
                    Training {
                        lr,
                        lr_index: u8::MAX,
                        ..t
                    },
                ));
                return;
            }
        }
        for (i, &lr) in cfg.lr_grid.iter().enumerate() {
            out.push((
                slot,
                Training {
                    lr,
                    lr_index: i as u8,
                    ..t.clone()
                },
            ));
        }
    };
    let rdm = |run| DataSource::Random {
        ipc: cfg.ipc,
        run,
        format: cfg.random_data_format,
    };
    let slot = |quantity, run: u32| Slot {
        quantity,
        run: Some(run),
    };
    let recipe_labels = if cfg.recipe_is_soft() {
        soft
    } else {
        LabelMode::Hard
    };

    for run in 0..cfg.num_eval as u32 {
        match cfg.metric {
            Metric::LrsHard => {
                // The recipe is hard labels: IOR reuses Acc(syn, hard) (no separate syn-recipe student).
                tuned(
                    slot(Quantity::SynHard, run),
                    base(DataSource::Syn, LabelMode::Hard, true, run),
                );
                tuned(
                    slot(Quantity::RdmRecipe, run),
                    base(rdm(run), LabelMode::Hard, true, run),
                );
            }
            Metric::LrsSoft => {
                let hard_aug = cfg.use_aug_for_hard;
                tuned(
                    slot(Quantity::SynHard, run),
                    base(DataSource::Syn, LabelMode::Hard, hard_aug, run),
                );
                tuned(
                    slot(Quantity::SynRecipe, run),
                    base(DataSource::Syn, soft, true, run),
                );
                tuned(
                    slot(Quantity::RdmRecipe, run),
                    base(rdm(run), soft, true, run),
                );
            }
            Metric::Ars => {
                let l = recipe_labels;
                tuned(
                    slot(Quantity::SynAug, run),
                    base(DataSource::Syn, l, true, run),
                );
                tuned(
                    slot(Quantity::SynNoAug, run),
                    base(DataSource::Syn, l, false, run),
                );
                tuned(slot(Quantity::RdmAug, run), base(rdm(run), l, true, run));
                tuned(slot(Quantity::RdmNoAug, run), base(rdm(run), l, false, run));
            }
            Metric::Acc => {
                tuned(
                    slot(Quantity::SynRecipe, run),
                    base(DataSource::Syn, recipe_labels, true, run),
                );
            }
        }
    }
    if matches!(cfg.metric, Metric::LrsHard | Metric::LrsSoft) && cfg.eval_full_data {
        // DD-Ranking trains the full-data student with its own per-(dataset, model) recipe, not
        // the method's, without a search; LRS-hard never augments it (`aug_func if mode ==
        // 'syn'`), LRS-soft only with use_aug_for_hard. It does not depend on the run, so it is
        // trained once (DESIGN.md §2).
        let aug = cfg.metric == Metric::LrsSoft && cfg.use_aug_for_hard;
        let mut t = base(DataSource::Full, LabelMode::Hard, aug, 0);
        let (lr, full_recipe) = full_data_recipe(cfg)?;
        t.lr = lr;
        t.epochs = cfg.full_epochs();
        t.recipe = full_recipe;
        out.push((
            Slot {
                quantity: Quantity::FullHard,
                run: None,
            },
            t,
        ));
    }

    let trainings = out
        .into_iter()
        .enumerate()
        .map(|(id, (slot, training))| {
            let method_independent = training.data != DataSource::Syn;
            let key = super::cache::training_key(&training, ids)?;
            Ok(Planned {
                id,
                slot,
                training,
                key,
                method_independent,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Plan {
        metric: cfg.metric,
        trainings,
        runs: cfg.num_eval as u32,
    })
}

/// Pack the given trainings (ids into `plan.trainings`) into cohorts of at most `max_students`,
/// in a deterministic order (plan order within each group).
pub fn pack(plan: &Plan, todo: &[usize], sizes: PlanSizes, max_students: usize) -> Vec<Cohort> {
    let max_students = max_students.max(1);
    let mut groups: BTreeMap<String, (usize, Vec<usize>)> = BTreeMap::new();
    for &id in todo {
        let t = &plan.trainings[id].training;
        let n = n_train(t, sizes);
        let e = groups.entry(t.cohort_key(n)).or_insert((n, Vec::new()));
        e.1.push(id);
    }
    // Groups in order of their first training, so the plan reads like the config.
    let mut groups: Vec<(usize, Vec<usize>)> = groups.into_values().collect();
    groups.sort_by_key(|(_, ids)| ids[0]);
    let mut cohorts = Vec::new();
    for (n, ids) in groups {
        for chunk in ids.chunks(max_students) {
            cohorts.push(Cohort {
                members: chunk.to_vec(),
                n_train: n,
            });
        }
    }
    cohorts
}

/// Images a training sees per epoch.
pub fn n_train(t: &Training, sizes: PlanSizes) -> usize {
    match t.data {
        DataSource::Syn => sizes.n_syn,
        DataSource::Random { ipc, .. } => ipc * sizes.classes,
        DataSource::Full => sizes.n_full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(metric: Metric) -> EvalConfig {
        EvalConfig {
            metric,
            num_eval: 3,
            eval_full_data: true,
            ..EvalConfig::default()
        }
    }

    fn count(p: &Plan, q: Quantity) -> usize {
        p.trainings.iter().filter(|t| t.slot.quantity == q).count()
    }

    #[test]
    fn lrs_hard_plan_matches_design() {
        let p = plan(&cfg(Metric::LrsHard), &Identities::default()).unwrap();
        // Per run: 5 grid students on syn, 5 on a fresh random subset; full data once.
        assert_eq!(count(&p, Quantity::SynHard), 3 * 5);
        assert_eq!(count(&p, Quantity::RdmRecipe), 3 * 5);
        assert_eq!(count(&p, Quantity::FullHard), 1);
        let full = p
            .trainings
            .iter()
            .find(|t| t.slot.quantity == Quantity::FullHard)
            .unwrap();
        assert_eq!(full.training.lr, 0.01);
        assert_eq!(full.training.batch_size, 256);
        let runs: std::collections::BTreeSet<_> = p
            .trainings
            .iter()
            .filter_map(|t| match t.training.data {
                DataSource::Random { run, .. } => Some(run),
                _ => None,
            })
            .collect();
        assert_eq!(runs.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn syn_lr_replaces_search_for_syn_only() {
        let c = EvalConfig {
            syn_lr: Some(0.02),
            ..cfg(Metric::LrsSoft)
        };
        let p = plan(&c, &Identities::default()).unwrap();
        assert_eq!(count(&p, Quantity::SynRecipe), 3);
        assert!(p
            .trainings
            .iter()
            .filter(|t| t.slot.quantity == Quantity::SynRecipe)
            .all(|t| t.training.lr == 0.02));
        // The hard-label syn accuracy of the soft metric and the random baseline are still
        // searched over the whole grid (DD-Ranking: `hyper_param_search=True` for both).
        assert_eq!(count(&p, Quantity::SynHard), 3 * 5);
        assert!(p
            .trainings
            .iter()
            .filter(|t| t.slot.quantity == Quantity::SynHard)
            .all(|t| t.training.lr_index != u8::MAX));
        assert_eq!(count(&p, Quantity::RdmRecipe), 15);
        // LRS-hard: syn_lr does replace the search of its (only) synthetic training.
        let h = plan(
            &EvalConfig {
                syn_lr: Some(0.02),
                ..cfg(Metric::LrsHard)
            },
            &Identities::default(),
        )
        .unwrap();
        assert_eq!(count(&h, Quantity::SynHard), 3);
    }

    fn full(p: &Plan) -> &Training {
        &p.trainings
            .iter()
            .find(|t| t.slot.quantity == Quantity::FullHard)
            .expect("a full-data training")
            .training
    }

    #[test]
    fn full_data_is_augmented_only_by_lrs_soft_with_use_aug_for_hard() {
        let with_full = |m| EvalConfig {
            eval_full_data: true,
            aug: AugConfig::dsa_default(),
            ..cfg(m)
        };
        let hard = plan(&with_full(Metric::LrsHard), &Identities::default()).unwrap();
        assert_eq!(
            full(&hard).aug,
            None,
            "LRS-hard augments only 'syn' trainings"
        );
        for flag in [false, true] {
            let c = EvalConfig {
                use_aug_for_hard: flag,
                ..with_full(Metric::LrsSoft)
            };
            let p = plan(&c, &Identities::default()).unwrap();
            assert_eq!(full(&p).aug.is_some(), flag);
        }
    }

    #[test]
    fn full_data_uses_the_reference_recipe_table() {
        let c = EvalConfig {
            eval_full_data: true,
            optimizer: Optimizer::Adamw,
            scheduler: Scheduler::Cosine,
            weight_decay: 0.01,
            default_lr: 0.5,
            ..cfg(Metric::LrsHard)
        };
        let p = plan(&c, &Identities::default()).unwrap();
        let t = full(&p);
        assert_eq!(t.lr, 0.01);
        assert_eq!(
            t.recipe,
            Recipe {
                optimizer: Optimizer::Sgd,
                weight_decay: 5e-4,
                momentum: 0.9,
                scheduler: Scheduler::Step,
                step_size: 100,
            }
        );
        assert_eq!(t.batch_size, c.real_batch_size);
        assert_eq!(t.epochs, c.num_epochs);
        // No table entry (the reference fails): default_lr with the config's scheduler.
        let other = EvalConfig {
            model: "ConvNet-4".into(),
            ..c.clone()
        };
        let o = plan(&other, &Identities::default()).unwrap();
        assert_eq!(full(&o).lr, 0.5);
        assert_eq!(full(&o).recipe.scheduler, Scheduler::Cosine);
    }

    #[test]
    fn ars_trains_at_its_batch_size() {
        let c = EvalConfig {
            batch_size: Some(1024),
            syn_batch_size: 100,
            ..cfg(Metric::Ars)
        };
        let p = plan(&c, &Identities::default()).unwrap();
        assert!(p.trainings.iter().all(|t| t.training.batch_size == 1024));
        // Without the key, ARS falls back to syn_batch_size.
        let c = EvalConfig {
            syn_batch_size: 100,
            ..cfg(Metric::Ars)
        };
        let p = plan(&c, &Identities::default()).unwrap();
        assert!(p.trainings.iter().all(|t| t.training.batch_size == 100));
    }

    #[test]
    fn jpeg_random_subsets_have_their_own_keys() {
        let ids = Identities::default();
        let a = plan(&cfg(Metric::LrsHard), &ids).unwrap();
        let b = plan(
            &EvalConfig {
                random_data_format: RandomDataFormat::Image,
                ..cfg(Metric::LrsHard)
            },
            &ids,
        )
        .unwrap();
        for (x, y) in a.trainings.iter().zip(&b.trainings) {
            let random = matches!(x.training.data, DataSource::Random { .. });
            assert_eq!(x.key != y.key, random, "{}", x.training.describe());
        }
    }

    #[test]
    fn ars_plan_has_four_tuned_quantities() {
        let c = EvalConfig {
            num_eval: 2,
            ..cfg(Metric::Ars)
        };
        let p = plan(&c, &Identities::default()).unwrap();
        for q in [
            Quantity::SynAug,
            Quantity::SynNoAug,
            Quantity::RdmAug,
            Quantity::RdmNoAug,
        ] {
            assert_eq!(count(&p, q), 10, "{q:?}");
        }
        assert!(p
            .trainings
            .iter()
            .filter(|t| t.slot.quantity == Quantity::RdmNoAug)
            .all(|t| t.training.aug.is_none()));
    }

    #[test]
    fn keys_are_unique_and_shared_across_metrics() {
        let ids = Identities {
            dataset: "d".into(),
            syn: "s".into(),
            teachers: String::new(),
            device: "cpu".into(),
            test_precision: None,
        };
        let p = plan(&cfg(Metric::LrsHard), &ids).unwrap();
        let keys: std::collections::HashSet<_> = p.trainings.iter().map(|t| &t.key).collect();
        assert_eq!(keys.len(), p.trainings.len());
        // Another method (another syn file) reuses every random and full-data key.
        let other = Identities {
            syn: "other".into(),
            ..ids.clone()
        };
        let q = plan(&cfg(Metric::LrsHard), &other).unwrap();
        for (a, b) in p.trainings.iter().zip(&q.trainings) {
            assert_eq!(
                a.key == b.key,
                a.method_independent,
                "{}",
                a.training.describe()
            );
        }
    }

    #[test]
    fn packing_groups_by_shape_and_caps_size() {
        let p = plan(&cfg(Metric::LrsHard), &Identities::default()).unwrap();
        let sizes = PlanSizes {
            n_syn: 100,
            n_full: 50_000,
            classes: 10,
        };
        let all: Vec<usize> = (0..p.trainings.len()).collect();
        let cohorts = pack(&p, &all, sizes, 8);
        let total: usize = cohorts.iter().map(|c| c.members.len()).sum();
        assert_eq!(total, p.trainings.len());
        assert!(cohorts.iter().all(|c| c.members.len() <= 8));
        // The full-data student never shares a cohort with 100-image students.
        let full = cohorts.iter().find(|c| c.n_train == 50_000).unwrap();
        assert_eq!(full.members.len(), 1);
    }
}
