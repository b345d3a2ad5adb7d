//! The evaluation pipeline on a tiny in-memory problem (plan → cohorts → trainer → cache → scores):
//! baselines are reused from the cache by another method, an interrupted evaluation resumes with
//! the same numbers, and every run's LRS is the formula applied to its HLR and IOR.

use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::metrics::config::{AugConfig, EvalConfig, Metric, Scheduler};
use ddr_fast::metrics::execute::{evaluate, Inputs, RunOptions};
use ddr_fast::metrics::plan::Identities;
use ddr_fast::metrics::report::{write_outputs, EvalRecord};
use ddr_fast::metrics::scores::lrs_from_parts;
use ddr_fast::train::trainer::ImageSet;
use ddr_fast::Error;

/// LRS recomputed from the JSON's hlr/ior vs the stored lrs: both f64 from the same formula, so
/// only serialisation round-off (≤ 1 ulp) separates them.
const LRS_JSON_ATOL: f64 = 1e-12;

/// Two classes on 3×8×8 images (class sign ± texture), `n` per class.
fn toy(n: usize, offset: u32) -> ImageSet {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for class in 0..2u32 {
        for i in 0..n as u32 {
            let sign = if class == 0 { 0.4 } else { -0.4 };
            for p in 0..192u32 {
                let h = (p.wrapping_mul(2_654_435_761) ^ (i + offset).wrapping_mul(40_503)) % 1000;
                images.push(sign + (h as f32 / 1000.0 - 0.5));
            }
            labels.push(class);
        }
    }
    ImageSet {
        images,
        labels,
        soft: None,
        channels: 3,
        size: 8,
        classes: 2,
    }
}

/// Class-balanced subset keyed by (seed, run): a rotation of each class's indices.
fn subset(
    labels: &[u32],
    classes: usize,
    ipc: usize,
    seed: u64,
    run: u64,
) -> ddr_fast::Result<Vec<usize>> {
    let mut out = Vec::new();
    for c in 0..classes as u32 {
        let pool: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        let start = ((seed + 3 * run) as usize) % pool.len();
        out.extend((0..ipc).map(|k| pool[(start + k) % pool.len()]));
    }
    Ok(out)
}

fn cfg(dir: &std::path::Path, out: &str) -> EvalConfig {
    EvalConfig {
        metric: Metric::LrsHard,
        ipc: 4,
        model: "ConvNet-2".into(),
        width: 4,
        aug: AugConfig::dsa_default(),
        scheduler: Scheduler::Step,
        num_eval: 2,
        num_epochs: 2,
        test_interval: Some(1),
        lr_grid: vec![0.01, 0.05],
        syn_batch_size: 4,
        real_batch_size: 16,
        eval_full_data: true,
        out_dir: Some(dir.join(out)),
        cache_dir: Some(dir.join("cache")),
        ..EvalConfig::default()
    }
}

fn inputs(syn_offset: u32, syn_id: &str) -> Inputs {
    Inputs {
        train: toy(24, 0),
        test: toy(20, 5000),
        syn: toy(4, syn_offset),
        teachers: Vec::new(),
        ids: Identities {
            dataset: "toy".into(),
            syn: syn_id.into(),
            teachers: String::new(),
            device: "cpu".into(),
            test_precision: None,
        },
        pixel_norm: None,
    }
}

fn opts() -> RunOptions {
    RunOptions {
        max_students: 4,
        quiet: true,
        device: "cpu".into(),
        ..RunOptions::default()
    }
}

fn accs(r: &EvalRecord) -> Vec<(String, f64)> {
    r.timings
        .trainings
        .iter()
        .map(|t| (t.key.clone(), t.acc))
        .collect()
}

#[test]
fn cache_is_reused_by_another_method_and_lrs_follows_formula() {
    let dir = tempfile::tempdir().unwrap();
    let be = std::sync::Arc::new(CpuBackend::new());
    let c = cfg(dir.path(), "a");
    let first = evaluate(&be, &c, &inputs(100, "method-a"), &subset, &opts()).unwrap();
    // 2 runs × (2 syn + 2 random) + 1 full.
    assert_eq!(
        (
            first.timings.ran,
            first.timings.cached,
            first.timings.resumed
        ),
        (9, 0, 0)
    );
    write_outputs(&first, c.out_dir.as_deref(), None).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("a/result.json")).unwrap())
            .unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        let (hlr, ior, lrs) = (
            r["hlr"].as_f64().unwrap(),
            r["ior"].as_f64().unwrap(),
            r["lrs"].as_f64().unwrap(),
        );
        let want = lrs_from_parts(hlr, ior, 0.5).lrs;
        assert!(
            (lrs - want).abs() <= LRS_JSON_ATOL,
            "lrs {lrs} vs formula {want}"
        );
    }
    assert!(
        std::fs::read_to_string(dir.path().join("a/result.csv"))
            .unwrap()
            .lines()
            .count()
            >= 4
    );

    // Another method on the same dataset and recipe: only its own syn students are trained.
    let c2 = cfg(dir.path(), "b");
    let second = evaluate(&be, &c2, &inputs(300, "method-b"), &subset, &opts()).unwrap();
    assert_eq!((second.timings.ran, second.timings.cached), (4, 5));
    let cached: Vec<_> = second
        .timings
        .trainings
        .iter()
        .filter(|t| t.what.starts_with("syn"))
        .collect();
    assert!(cached
        .iter()
        .all(|t| t.source == ddr_fast::metrics::report::Source::Ran));
    // The reused baselines carry the accuracies of the first evaluation.
    let a = accs(&first);
    for t in second
        .timings
        .trainings
        .iter()
        .filter(|t| !t.what.starts_with("syn"))
    {
        assert!(a.contains(&(t.key.clone(), t.acc)), "{}", t.what);
    }
}

#[test]
fn interrupted_evaluation_resumes_with_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let be = std::sync::Arc::new(CpuBackend::new());
    let c = EvalConfig {
        no_cache: true,
        ..cfg(dir.path(), "r")
    };
    let stop = RunOptions {
        stop_after_cohorts: Some(1),
        ..opts()
    };
    match evaluate(&be, &c, &inputs(100, "m"), &subset, &stop) {
        Err(Error::Interrupted) => {}
        other => panic!(
            "expected an interruption, got {:?}",
            other.map(|r| r.timings.ran)
        ),
    }
    let resumed = evaluate(&be, &c, &inputs(100, "m"), &subset, &opts()).unwrap();
    assert_eq!(
        resumed.timings.resumed, 4,
        "the first cohort (4 students) is read back"
    );
    assert_eq!(resumed.timings.ran, 5);
    let fresh_cfg = EvalConfig {
        no_cache: true,
        ..cfg(dir.path(), "fresh")
    };
    let fresh = evaluate(&be, &fresh_cfg, &inputs(100, "m"), &subset, &opts()).unwrap();
    assert_eq!(accs(&resumed), accs(&fresh));
    assert_eq!(resumed.outcome.summary, fresh.outcome.summary);
}

/// A random-init teacher of the toy shape (its logits are arbitrary but finite: enough to exercise
/// the soft-label paths, not to judge them).
fn toy_teacher() -> ddr_fast::train::trainer::Teacher {
    use ddr_fast::model::{init_buffers, init_params, ConvNet, ConvNetSpec};
    let net = ConvNet::new(ConvNetSpec::from_name("ConvNet-2-W4", 3, 8, 2).unwrap());
    let mut params = vec![0f32; net.param_len()];
    init_params(&net.layout, 9, &mut params);
    let mut running = vec![0f32; net.buffer_len()];
    init_buffers(&net.layout, &mut running);
    ddr_fast::train::trainer::Teacher {
        net: net.into(),
        params,
        running,
    }
}

#[test]
fn soft_label_modes_and_ars_run_end_to_end() {
    use ddr_fast::metrics::config::{Criterion, SoftMode};
    let dir = tempfile::tempdir().unwrap();
    let be = std::sync::Arc::new(CpuBackend::new());
    let mut inp = inputs(100, "soft");
    // Mode S: the synthetic set stores one logit vector per image.
    inp.syn.soft = Some(
        inp.syn
            .labels
            .iter()
            .flat_map(|&l| if l == 0 { [2.0, -2.0] } else { [-2.0, 2.0] })
            .collect(),
    );
    inp.teachers = vec![toy_teacher()];
    for (metric, mode, runs_want) in [
        (Metric::LrsSoft, SoftMode::S, 2),
        (Metric::LrsSoft, SoftMode::M, 2),
        (Metric::Ars, SoftMode::M, 2),
    ] {
        let c = EvalConfig {
            metric,
            soft_label_mode: mode,
            criterion: Criterion::Kl,
            label_type: ddr_fast::metrics::config::LabelType::Soft,
            no_cache: true,
            out_dir: None,
            ..cfg(dir.path(), "unused")
        };
        let r = evaluate(&be, &c, &inp, &subset, &opts()).unwrap();
        assert_eq!(r.outcome.runs.len(), runs_want, "{metric} {mode:?}");
        let score = if metric == Metric::Ars { "ars" } else { "lrs" };
        for run in &r.outcome.runs {
            let s = run.scores[score];
            assert!(
                s.is_finite() && (0.0..=1.0).contains(&s),
                "{metric} {mode:?}: {score} {s}"
            );
        }
        assert!(r.outcome.stopped.is_empty(), "{:?}", r.outcome.stopped);
    }
    // Mode S without stored soft labels is refused with a message saying what is missing.
    let mut bare = inputs(100, "bare");
    bare.teachers = vec![toy_teacher()];
    let c = EvalConfig {
        metric: Metric::LrsSoft,
        soft_label_mode: SoftMode::S,
        no_cache: true,
        out_dir: None,
        ..cfg(dir.path(), "x")
    };
    let e = evaluate(&be, &c, &bare, &subset, &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("mode S") && e.contains("soft labels"), "{e}");
}
