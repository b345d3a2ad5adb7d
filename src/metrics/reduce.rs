//! From finished trainings to scores: the tuned accuracy of each quantity (best over learning
//! rates, ties to the first), then HLR / IOR / LRS or ARS per run, then mean ± std over runs.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::cache::Record;
use super::config::{EvalConfig, Metric};
use super::plan::{Plan, Quantity, Slot};
use super::scores::{ars_run, lrs_run, mean_std, MeanStd};
use crate::error::{Error, Result};

/// The best accuracy of one slot and the learning rate that gave it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    pub acc: f64,
    pub lr: f64,
}

/// One run's accuracies, chosen learning rates and scores (all fractions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub run: u32,
    /// seed + run: the seed this run's random subset and students derive from.
    pub seed: u64,
    /// Quantity name → accuracy.
    pub acc: BTreeMap<String, f64>,
    /// Quantity name → chosen learning rate.
    pub lr: BTreeMap<String, f64>,
    /// Score name → value: hlr, ior, alpha, lrs | with_aug, without_aug, beta, ars | accuracy.
    /// Flattened into the run's JSON object, so a run reads `{"run": 0, ..., "hlr": .., "lrs": ..}`.
    #[serde(flatten)]
    pub scores: BTreeMap<String, f64>,
}

/// Everything the reports print.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub metric: Metric,
    pub runs: Vec<RunResult>,
    /// Score or accuracy name → mean ± std over runs.
    pub summary: BTreeMap<String, MeanStd>,
    /// Students stopped by a non-finite loss: "what: why".
    pub stopped: Vec<String>,
}

/// The best accuracy per slot over its trainings, in plan order (the grid order), so ties go to
/// the first learning rate as in DD-Ranking's `if acc > best_acc`.
pub fn tune(plan: &Plan, results: &HashMap<usize, Record>) -> Result<BTreeMap<Slot, Tuned>> {
    let mut best: BTreeMap<Slot, Tuned> = BTreeMap::new();
    for p in &plan.trainings {
        let r = results.get(&p.id).ok_or_else(|| {
            Error::config(format!(
                "internal: training {} ({}) has no result",
                p.id,
                p.training.describe()
            ))
        })?;
        let e = best.entry(p.slot).or_insert(Tuned {
            acc: r.acc,
            lr: p.training.lr,
        });
        if r.acc > e.acc {
            *e = Tuned {
                acc: r.acc,
                lr: p.training.lr,
            };
        }
    }
    Ok(best)
}

/// Reduce the finished trainings of `plan` into per-run scores and their summary.
pub fn reduce(cfg: &EvalConfig, plan: &Plan, results: &HashMap<usize, Record>) -> Result<Outcome> {
    let tuned = tune(plan, results)?;
    let full = match tuned.get(&Slot {
        quantity: Quantity::FullHard,
        run: None,
    }) {
        Some(t) => Some(*t),
        None => cfg.known_full_acc().map(|acc| Tuned { acc, lr: f64::NAN }),
    };
    let mut runs = Vec::new();
    for run in 0..plan.runs {
        let get = |q: Quantity| {
            tuned
                .get(&Slot {
                    quantity: q,
                    run: Some(run),
                })
                .copied()
                .ok_or_else(|| {
                    Error::config(format!("internal: run {run} has no {} accuracy", q.name()))
                })
        };
        let mut acc = BTreeMap::new();
        let mut lr = BTreeMap::new();
        let mut put = |q: Quantity, t: Tuned| {
            acc.insert(q.name().to_string(), t.acc);
            if t.lr.is_finite() {
                lr.insert(q.name().to_string(), t.lr);
            }
        };
        let mut scores = BTreeMap::new();
        match plan.metric {
            Metric::LrsHard | Metric::LrsSoft => {
                let full = full.ok_or_else(|| Error::config("internal: no full-data accuracy"))?;
                let syn_hard = get(Quantity::SynHard)?;
                let syn_recipe = if plan.metric == Metric::LrsHard {
                    syn_hard
                } else {
                    get(Quantity::SynRecipe)?
                };
                let rdm = get(Quantity::RdmRecipe)?;
                put(Quantity::FullHard, full);
                put(Quantity::SynHard, syn_hard);
                if plan.metric == Metric::LrsSoft {
                    put(Quantity::SynRecipe, syn_recipe);
                }
                put(Quantity::RdmRecipe, rdm);
                let s = lrs_run(full.acc, syn_hard.acc, syn_recipe.acc, rdm.acc, cfg.lambda)?;
                scores.insert("hlr".into(), s.hlr);
                scores.insert("ior".into(), s.ior);
                scores.insert("alpha".into(), s.alpha);
                scores.insert("lrs".into(), s.lrs);
            }
            Metric::Ars => {
                let (sa, sn, ra, rn) = (
                    get(Quantity::SynAug)?,
                    get(Quantity::SynNoAug)?,
                    get(Quantity::RdmAug)?,
                    get(Quantity::RdmNoAug)?,
                );
                for (q, t) in [
                    (Quantity::SynAug, sa),
                    (Quantity::SynNoAug, sn),
                    (Quantity::RdmAug, ra),
                    (Quantity::RdmNoAug, rn),
                ] {
                    put(q, t);
                }
                let s = ars_run(sa.acc, ra.acc, sn.acc, rn.acc, cfg.gamma)?;
                scores.insert("with_aug".into(), s.with_aug);
                scores.insert("without_aug".into(), s.without_aug);
                scores.insert("beta".into(), s.beta);
                scores.insert("ars".into(), s.ars);
            }
            Metric::Acc => {
                let t = get(Quantity::SynRecipe)?;
                put(Quantity::SynRecipe, t);
                scores.insert("accuracy".into(), t.acc);
            }
        }
        runs.push(RunResult {
            run,
            seed: cfg.seed + u64::from(run),
            acc,
            lr,
            scores,
        });
    }
    let mut summary = BTreeMap::new();
    if let Some(first) = runs.first() {
        let names: Vec<String> = first
            .scores
            .keys()
            .chain(first.acc.keys())
            .cloned()
            .collect();
        for name in names {
            let xs: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.scores.get(&name).or_else(|| r.acc.get(&name)).copied())
                .collect();
            summary.insert(name.clone(), mean_std(&name, &xs)?);
        }
    }
    let stopped = plan
        .trainings
        .iter()
        .filter_map(|p| {
            let r = results.get(&p.id)?;
            r.stopped
                .as_ref()
                .map(|why| format!("{}: {why}", p.training.describe()))
        })
        .collect();
    Ok(Outcome {
        metric: plan.metric,
        runs,
        summary,
        stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::plan::{plan, Identities};
    use crate::metrics::scores::lrs_from_parts;

    /// Exact decimal differences of f64 inputs: only rounding separates them.
    const EXACT_ATOL: f64 = 1e-12;

    fn fake_results(
        p: &Plan,
        acc_of: impl Fn(&crate::metrics::plan::Planned) -> f64,
    ) -> HashMap<usize, Record> {
        p.trainings
            .iter()
            .map(|t| {
                let acc = acc_of(t);
                (
                    t.id,
                    Record {
                        key: t.key.clone(),
                        acc,
                        tests: vec![acc],
                        train_loss: Vec::new(),
                        stopped: None,
                        seconds: 0.0,
                        what: String::new(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn best_lr_wins_ties_go_first_and_lrs_follows_formula() {
        let cfg = EvalConfig {
            num_eval: 2,
            eval_full_data: true,
            ..EvalConfig::default()
        };
        let p = plan(&cfg, &Identities::default()).unwrap();
        // Accuracy peaks at lr 0.01 for syn (with a tie at 0.05) and rises with lr for random.
        let out = reduce(
            &cfg,
            &p,
            &fake_results(&p, |t| match t.slot.quantity {
                Quantity::FullHard => 0.848,
                Quantity::SynHard => [0.30, 0.40, 0.449, 0.449, 0.20][t.training.lr_index as usize],
                _ => 0.05 * (t.training.lr_index as f64 + 1.0) + 0.01 * t.training.run as f64,
            }),
        )
        .unwrap();
        for r in &out.runs {
            assert_eq!(r.lr["syn_hard"], 0.01);
            assert_eq!(r.lr["rdm_recipe"], 0.1);
            let want = lrs_from_parts(0.848 - 0.449, 0.449 - r.acc["rdm_recipe"], 0.5).lrs;
            assert!((r.scores["lrs"] - want).abs() <= EXACT_ATOL);
        }
        // rdm: 0.25 and 0.26 → mean 0.255, population std 0.005.
        assert!((out.summary["rdm_recipe"].mean - 0.255).abs() <= EXACT_ATOL);
        assert!((out.summary["rdm_recipe"].std - 0.005).abs() <= EXACT_ATOL);
    }
}
