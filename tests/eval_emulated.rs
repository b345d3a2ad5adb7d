//! The whole evaluation on the CUDA code path, under the host emulator (issue 14, item 8): the
//! `eval` command's `evaluate` over `CudaBackend` — the same launchers, params structs and kernels a
//! GPU runs, with the trainer's device data path (gather, augment, device teachers, broadcast test
//! batches) — on a tiny LRS-soft plan with DSA and a mode-M teacher, against the CPU backend on the
//! same plan. It prints whether it ran on a GPU or under emulation and how long each took.
//!
//! The plan is sized for the emulator on a loaded 2-core machine: the embedded Fashion-MNIST reduced
//! to 200 training and 40 test images (28×28: a 1-channel ConvNet is defined at MNIST's size
//! only), ConvNet-2 of width 4, 2 students per cohort, 2 epochs.

use std::sync::Arc;
use std::time::Instant;

use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::CudaBackend;
use ddr_fast::backend::Backend;
use ddr_fast::metrics::config::{AugConfig, Criterion, EvalConfig, Metric, Scheduler, SoftMode};
use ddr_fast::metrics::execute::{evaluate, select, Inputs, RunOptions};
use ddr_fast::metrics::inputs::{load_real_for, to_image_set};
use ddr_fast::metrics::plan::Identities;
use ddr_fast::metrics::report::EvalRecord;
use ddr_fast::model::{init_buffers, init_params, ConvNet, ConvNetSpec};
use ddr_fast::train::trainer::{ImageSet, Teacher};

/// Images of the reduced test set.
const N_TEST: usize = 40;
/// Accuracy tolerance per training: one test image. The kernels sum in another order than the
/// CPU reference and the convolutions use 3xTF32 (relative error ~1e-6); after two epochs a test
/// image whose two top logits lie that close can flip its prediction. Anything beyond one image
/// is a real difference of the code paths.
const ACC_ATOL: f64 = 1.0 / N_TEST as f64;
/// Score tolerance: HLR and IOR are differences of two accuracies (≤ 2·ACC_ATOL each), α a convex
/// combination of them (≤ 2·ACC_ATOL) and LRS = robust_score(α) has slope ≤ e/(e − 1/e) < 1.2 on
/// [−1, 1]: ≤ 2.4·ACC_ATOL, rounded up to 3.
const SCORE_ATOL: f64 = 3.0 * ACC_ATOL;

/// The first `per_class` images of every class (the embedded sets are stored class by class).
fn balanced(set: &ImageSet, per_class: usize) -> ImageSet {
    let idx: Vec<usize> = (0..set.classes as u32)
        .flat_map(|k| {
            (0..set.len())
                .filter(move |&i| set.labels[i] == k)
                .take(per_class)
        })
        .collect();
    select(set, &idx)
}

fn cfg(dir: &std::path::Path) -> EvalConfig {
    EvalConfig {
        metric: Metric::LrsSoft,
        dataset: "fashion-mnist-embedded".into(),
        ipc: 1,
        model: "ConvNet-2".into(),
        width: 4,
        aug: AugConfig::dsa_default(),
        soft_label_mode: SoftMode::M,
        criterion: Criterion::Kl,
        teacher_names: vec!["ConvNet-2".into()],
        scheduler: Scheduler::Step,
        num_eval: 1,
        num_epochs: 2,
        test_interval: Some(1),
        lr_grid: vec![0.01],
        syn_batch_size: 4,
        real_batch_size: 8,
        eval_full_data: false,
        full_acc: Some(0.8),
        no_cache: true,
        cache_dir: Some(dir.join("cache")),
        ..EvalConfig::default()
    }
}

fn inputs(c: &EvalConfig) -> Inputs {
    let real = load_real_for(c).expect("the embedded Fashion-MNIST subset");
    let train = balanced(&to_image_set(&real.train, &real, None).unwrap(), 20);
    let test = balanced(&to_image_set(&real.test, &real, None).unwrap(), N_TEST / 10);
    // The synthetic set: the first image of each class.
    let syn_idx: Vec<usize> = (0..train.classes as u32)
        .filter_map(|k| train.labels.iter().position(|&l| l == k))
        .collect();
    let syn = select(&train, &syn_idx);
    // A randomly initialised teacher of the students' architecture: the parity of the mode-M
    // path does not need a good one.
    let spec = ConvNetSpec::from_name("ConvNet-2", train.channels, train.size, train.classes)
        .unwrap()
        .with_width(4)
        .unwrap();
    let net = ConvNet::new(spec);
    let mut params = vec![0f32; net.param_len()]; // (P)
    init_params(&net.layout, 7, &mut params);
    let mut running = vec![0f32; net.buffer_len()]; // (R)
    init_buffers(&net.layout, &mut running);
    Inputs {
        train,
        test,
        syn,
        teachers: vec![Teacher {
            net,
            params,
            running,
        }],
        ids: Identities {
            dataset: "embedded-200-40".into(),
            syn: "first-per-class".into(),
            teachers: "random-init".into(),
            device: "any".into(),
        },
        pixel_norm: None,
    }
}

fn run<B: Backend>(be: &Arc<B>, c: &EvalConfig, inputs: &Inputs) -> (EvalRecord, f64) {
    let t = Instant::now();
    let opts = RunOptions {
        max_students: 2,
        quiet: true,
        device: be.describe(),
        ..RunOptions::default()
    };
    let subset = |l: &[u32], k: usize, ipc: usize, seed: u64, run: u64| {
        ddr_fast::data::random_subset(l, k, ipc, seed, run)
    };
    let rec = evaluate(be, c, inputs, &subset, &opts).expect("evaluate");
    (rec, t.elapsed().as_secs_f64())
}

#[test]
fn emulated_eval_matches_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let inputs = inputs(&c);
    let (gpu, why) = CudaBackend::real_or_emulated(0);
    let where_ = match &why {
        None => "on a GPU".to_string(),
        Some(e) => format!("under emulation ({e})"),
    };
    let (cpu_rec, cpu_s) = run(&Arc::new(CpuBackend::new()), &c, &inputs);
    // Emulated with a memory size only to learn the peak for the out-of-memory check below.
    let gpu = Arc::new(match why {
        None => gpu,
        Some(_) => CudaBackend::emulated_with_memory(u64::MAX),
    });
    let (cuda_rec, cuda_s) = run(&gpu, &c, &inputs);
    eprintln!(
        "eval_emulated: CUDA path ran {where_} in {cuda_s:.1} s ({} trainings); CPU backend {cpu_s:.1} s",
        cuda_rec.timings.trainings.len()
    );
    assert!(
        cuda_rec.timings.ran >= 2,
        "nothing trained on the CUDA path"
    );
    let mut worst = (0.0f64, String::new());
    for (a, b) in cuda_rec
        .timings
        .trainings
        .iter()
        .zip(&cpu_rec.timings.trainings)
    {
        assert_eq!(a.key, b.key, "the two plans differ");
        let d = (a.acc - b.acc).abs();
        if d > worst.0 {
            worst = (d, a.what.clone());
        }
    }
    eprintln!(
        "eval_emulated: worst accuracy difference {:.4} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= ACC_ATOL,
        "accuracy differs by {} > {ACC_ATOL} in {}",
        worst.0,
        worst.1
    );
    assert!(
        cuda_rec.outcome.stopped.is_empty(),
        "{:?}",
        cuda_rec.outcome.stopped
    );
    for (name, want) in &cpu_rec.outcome.summary {
        let got = cuda_rec.outcome.summary[name].mean;
        assert!(
            (got - want.mean).abs() <= SCORE_ATOL,
            "{name}: CUDA path {got}, CPU {} (tolerance {SCORE_ATOL})",
            want.mean
        );
    }
    assert!(cpu_rec.outcome.summary.contains_key("lrs"));

    // Out of memory (fault injection: an emulated device one byte smaller than the run's peak):
    // the cohort that needed the peak is halved and retried, and nothing changes but the cohorts.
    let Some(peak) = gpu.emulated_peak() else {
        return; // a real GPU: its memory is not ours to shrink
    };
    let (small, small_s) = run(
        &Arc::new(CudaBackend::emulated_with_memory(peak - 1)),
        &c,
        &inputs,
    );
    eprintln!(
        "eval_emulated: with {} bytes instead of {peak}: {} cohorts instead of {} ({small_s:.1} s)",
        peak - 1,
        small.timings.cohorts_run,
        cuda_rec.timings.cohorts_run
    );
    assert!(small.timings.cohorts_run > cuda_rec.timings.cohorts_run);
    for (a, b) in small
        .timings
        .trainings
        .iter()
        .zip(&cpu_rec.timings.trainings)
    {
        assert!(
            (a.acc - b.acc).abs() <= ACC_ATOL,
            "after halving, {}: {} vs CPU {}",
            a.what,
            a.acc,
            b.acc
        );
    }
}
