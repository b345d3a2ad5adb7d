//! Shards of one evaluation: the plan's trainings split into N disjoint sets of about equal
//! predicted cost, so N processes, GPUs or machines (Slurm array tasks, Kubernetes indexed pods)
//! can train them into one shared cache without talking to each other; `collect` then reduces
//! the scores once every training is there.
//!
//! Every shard derives the same split from the same inputs alone: the plan is a pure function of
//! the config and the inputs' identities, and the split below is a pure function of the plan and
//! the data sizes — never of what is already cached, which differs between shards started at
//! different times. A shard then trains what of its share is not cached yet.
//!
//! The unit of the split is a slice of a cohort group (trainings that may share a cohort: same
//! architecture, data size, epochs, loss, …): each group is cut into at most N contiguous slices
//! of near-equal size, and the slices are dealt to shards by longest-processing-time first (the
//! most expensive slice to the least loaded shard). Cutting groups keeps the split balanced when
//! a group is most of the plan (the syn / random trainings of every learning rate), while keeping
//! each shard's part of a group contiguous means it still trains that part as one cohort (lock-step
//! students are what makes a GPU fast); whole cohorts as units would leave shards idle whenever
//! the plan has fewer cohorts than shards, and cohort sizes depend on each machine's memory,
//! which would make the split differ between machines. The cost of a training is the CPU FLOP
//! model of `cost.rs` (training plus test passes); a GPU's time per FLOP is about the same for
//! every training of one plan (one architecture), so the same split balances GPUs too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::cost::estimate;
use super::execute::{model_spec, plan_sizes, record, run_plan, Inputs, RunOptions, SubsetFn};
use super::plan::{pack, plan, Plan, PlanSizes};
use super::report::EvalRecord;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::metrics::config::EvalConfig;
use crate::model::ConvNetSpec;

/// `I/N`: the I-th (from 0) of N shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || {
            Error::config(format!(
                "--shard '{s}': expected I/N with 0 <= I < N (e.g. 0/4 for the first of four)"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The ids (into `plan.trainings`, ascending) of each of `n` shards.
pub fn assign(
    plan: &Plan,
    sizes: PlanSizes,
    spec: &ConvNetSpec,
    test_len: usize,
    n: usize,
) -> Vec<Vec<usize>> {
    let n = n.max(1);
    let all: Vec<usize> = (0..plan.trainings.len()).collect();
    // FLOPs only: the throughput divides every cost alike, so 1 FLOP/s keeps them exact.
    let cost = |ids: &[usize]| {
        let e = estimate(plan, ids, spec, sizes, test_len, 1.0, "");
        e.train_flop + e.test_flop
    };
    // One "cohort" per group: `pack` without a size bound returns the groups in plan order.
    let mut units: Vec<(f64, Vec<usize>)> = Vec::new();
    for group in pack(plan, &all, sizes, usize::MAX) {
        let m = group.members;
        let k = n.min(m.len());
        let (base, extra) = (m.len() / k, m.len() % k);
        let mut at = 0;
        for s in 0..k {
            let len = base + usize::from(s < extra);
            let ids = m[at..at + len].to_vec();
            at += len;
            units.push((cost(&ids), ids));
        }
    }
    // Most expensive first; equal costs keep plan order, so the result is fully determined.
    units.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1[0].cmp(&b.1[0])));
    let mut load = vec![0f64; n];
    let mut shards = vec![Vec::new(); n];
    for (c, ids) in units {
        let least = (0..n)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .expect("n >= 1");
        load[least] += c;
        shards[least].extend(ids);
    }
    for s in &mut shards {
        s.sort_unstable();
    }
    shards
}

/// What one shard did.
#[derive(Clone, Debug)]
pub struct ShardOutcome {
    pub shard: Shard,
    /// Trainings in this shard's share, of the plan's total.
    pub assigned: usize,
    pub total: usize,
    /// This share's fraction of the plan's predicted cost.
    pub cost_share: f64,
    /// Of the share: found finished (cache or journal), and trained now.
    pub found: usize,
    pub ran: usize,
    /// The cache file this shard's records went to, when it trained anything.
    pub cache_file: Option<PathBuf>,
}

impl ShardOutcome {
    /// One line for the log (tests and the Slurm script read it).
    pub fn line(&self) -> String {
        let file = self
            .cache_file
            .as_ref()
            .map(|p| format!("; records in {}", p.display()))
            .unwrap_or_default();
        format!(
            "shard {}/{}: {} of {} trainings ({:.1}% of the predicted cost): {} already finished, {} trained{file}",
            self.shard.index,
            self.shard.count,
            self.assigned,
            self.total,
            100.0 * self.cost_share,
            self.found,
            self.ran
        )
    }
}

/// Trains the share of `shard` that is not finished yet into the cache (and the journal of
/// `cfg.out_dir`, if any); computes no scores.
pub fn train_shard<B: Backend>(
    be: &Arc<B>,
    cfg: &EvalConfig,
    inputs: &Inputs,
    subset: SubsetFn<'_>,
    opts: &RunOptions,
    shard: Shard,
) -> Result<ShardOutcome> {
    if cfg.no_cache {
        return Err(Error::config(
            "--shard writes its trainings to the shared cache: drop --no-cache",
        ));
    }
    let p = plan(cfg, &inputs.ids)?;
    let sizes = plan_sizes(inputs);
    let spec = model_spec(cfg, &inputs.train)?;
    let shares = assign(&p, sizes, &spec, inputs.test.len(), shard.count);
    let mine = &shares[shard.index];
    let all: Vec<usize> = (0..p.trainings.len()).collect();
    let flop = |ids: &[usize]| {
        let e = estimate(&p, ids, &spec, sizes, inputs.test.len(), 1.0, "");
        e.train_flop + e.test_flop
    };
    let (_, done) = run_plan(be, cfg, inputs, subset, opts, Some(mine))?;
    let ran = mine
        .iter()
        .filter(|id| done.sources.get(id) == Some(&super::report::Source::Ran))
        .count();
    Ok(ShardOutcome {
        shard,
        assigned: mine.len(),
        total: p.trainings.len(),
        cost_share: flop(mine) / flop(&all).max(f64::MIN_POSITIVE),
        found: mine.len() - ran,
        ran,
        cache_file: done.cache_file,
    })
}

/// What `collect` found.
pub enum Collected {
    /// Every training was finished: the scores.
    Done(Box<EvalRecord>),
    /// Some were not: how many and which ([`missing_text`]).
    Missing(String),
}

/// Reduces the scores from the cache and the journal, training nothing; names what is missing.
pub fn collect(cfg: &EvalConfig, inputs: &Inputs, opts: &RunOptions) -> Result<Collected> {
    let t0 = std::time::Instant::now();
    let never = |_: &[u32], _: usize, _: usize, _: u64, _: u64| -> Result<Vec<usize>> {
        Err(Error::config(
            "collect trains nothing and must not draw a random subset",
        ))
    };
    // No training runs, so no device work: the CPU backend is only a type here.
    let be = Arc::new(crate::backend::cpu::CpuBackend::new());
    let (p, done) = run_plan(&be, cfg, inputs, &never, opts, Some(&[]))?;
    let missing: Vec<usize> = (0..p.trainings.len())
        .filter(|id| !done.results.contains_key(id))
        .collect();
    if !missing.is_empty() {
        return Ok(Collected::Missing(missing_text(&p, &missing)));
    }
    Ok(Collected::Done(Box::new(record(cfg, opts, &p, &done, t0)?)))
}

/// "4 of 21 trainings are not finished yet: 2 × syn_hard (…), …": count and roles.
pub fn missing_text(p: &Plan, missing: &[usize]) -> String {
    let mut by_role: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for &id in missing {
        let t = &p.trainings[id];
        by_role
            .entry(t.slot.quantity.name())
            .or_default()
            .push(format!("[{id}] {}", t.training.describe()));
    }
    let parts: Vec<String> = by_role
        .iter()
        .map(|(role, list)| {
            let shown: Vec<&str> = list.iter().take(3).map(String::as_str).collect();
            let more = if list.len() > 3 {
                format!(", … {} more", list.len() - 3)
            } else {
                String::new()
            };
            format!("{} × {role} ({}{more})", list.len(), shown.join("; "))
        })
        .collect();
    format!(
        "collect: {} of {} trainings are not finished yet: {}. Run (or rerun) the shards that own \
         them — `ddr-fast eval … --shard I/N` with the same settings and cache — then collect again",
        missing.len(),
        p.trainings.len(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::config::{EvalConfig, Metric};
    use crate::metrics::plan::Identities;

    /// Loads are sums of f64 FLOP counts (~1e13): their rounding, far below one training's cost.
    const FLOP_SUM_RTOL: f64 = 1e-6;

    fn setup(metric: Metric) -> (Plan, PlanSizes, ConvNetSpec) {
        let cfg = EvalConfig {
            metric,
            num_eval: 3,
            eval_full_data: true,
            ..EvalConfig::default()
        };
        let p = plan(&cfg, &Identities::default()).unwrap();
        let sizes = PlanSizes {
            n_syn: 100,
            n_full: 50_000,
            classes: 10,
        };
        let spec = ConvNetSpec::from_name("ConvNet-3", 3, 32, 10).unwrap();
        (p, sizes, spec)
    }

    #[test]
    fn shards_are_disjoint_cover_the_plan_and_repeat() {
        for metric in [Metric::LrsHard, Metric::LrsSoft, Metric::Ars] {
            let (p, sizes, spec) = setup(metric);
            for n in [1, 2, 3, 7, 100] {
                let a = assign(&p, sizes, &spec, 10_000, n);
                assert_eq!(a.len(), n);
                let mut all: Vec<usize> = a.iter().flatten().copied().collect();
                all.sort_unstable();
                let want: Vec<usize> = (0..p.trainings.len()).collect();
                assert_eq!(all, want, "{metric:?} n {n}: not a partition");
                assert_eq!(a, assign(&p, sizes, &spec, 10_000, n), "not deterministic");
            }
        }
    }

    #[test]
    fn shards_balance_predicted_cost() {
        // LRS-hard without full data: 3 runs × 5 lrs × (syn + rdm), all of one cost → shards of
        // 3 may differ by one training's cost at most.
        let (mut p, sizes, spec) = setup(Metric::LrsHard);
        p.trainings.retain(|t| t.slot.run.is_some());
        for (i, t) in p.trainings.iter_mut().enumerate() {
            t.id = i;
        }
        let cost = |ids: &[usize]| {
            let e = estimate(&p, ids, &spec, sizes, 10_000, 1.0, "");
            e.train_flop + e.test_flop
        };
        let one = cost(&[0]);
        let a = assign(&p, sizes, &spec, 10_000, 3);
        let loads: Vec<f64> = a.iter().map(|s| cost(s)).collect();
        let (lo, hi) = loads
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), &c| (l.min(c), h.max(c)));
        assert!(
            hi - lo <= one * (1.0 + FLOP_SUM_RTOL),
            "loads {loads:?}, one training {one}"
        );
    }

    #[test]
    fn shard_spec_parses_and_rejects() {
        assert_eq!(
            "2/5".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 5 }
        );
        for bad in ["5/5", "1/0", "x/3", "3", "-1/2"] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains("--shard") && e.contains(bad), "{e}");
        }
    }
}
