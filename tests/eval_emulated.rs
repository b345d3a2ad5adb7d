//! The whole evaluation on the CUDA code path, under the host emulator (issue 14, item 8): the
//! `eval` command's `evaluate` over `CudaBackend` — the same launchers, params structs and kernels a
//! GPU runs, with the trainer's device data path (gather, augment, device teachers, broadcast test
//! batches) — on a tiny LRS-soft plan with DSA and a mode-M teacher, against the CPU backend on the
//! same plan. It prints whether it ran on a GPU or under emulation and how long each took.
//!
//! The plan is sized for the emulator on a loaded 2-core machine: the embedded Fashion-MNIST reduced
//! to 200 training and 40 test images (28×28: a 1-channel ConvNet is defined at MNIST's size
//! only), ConvNet-2 of width 4, 2 students per cohort, 2 epochs.

mod common;

use std::sync::Arc;
use std::time::Instant;

use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::{CudaBackend, TestPrecision};
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
/// Accuracy tolerance per training: one test image. The CUDA path runs in its default modes (TF32
/// training, bf16 test passes and teacher labels) against the CPU backend with its test passes
/// and teacher labels rounded to bf16 as the kernels round them ([`cpu_twin`]), so the test
/// forwards differ only in summation order; training differs by TF32's operand rounding
/// (relative error ~1e-3 per conv) as well. After two epochs a test image whose two top logits
/// lie that close can flip its prediction. Anything beyond one image is a real difference of the
/// code paths. (Against a plain fp32 CPU, bf16 test passes would add their own ~4e-3 relative
/// error to every logit, teacher labels included: what the precision study measured to leave
/// accuracy distributions unmoved, but not what a one-image tolerance can hold per training.)
const ACC_ATOL: f64 = 1.0 / N_TEST as f64;
/// Score tolerance: HLR and IOR are differences of two accuracies (≤ 2·ACC_ATOL each), α a convex
/// combination of them (≤ 2·ACC_ATOL) and LRS = robust_score(α) has slope ≤ e/(e − 1/e) < 1.2 on
/// [−1, 1]: ≤ 2.4·ACC_ATOL, rounded up to 3.
const SCORE_ATOL: f64 = 3.0 * ACC_ATOL;

/// The CPU reference of the CUDA backend's default test precision: eval-mode conv forwards (test
/// passes, teacher labels) rounded as `TestPrecision::default()` rounds them on the device.
fn cpu_twin() -> CpuBackend {
    CpuBackend::new().with_test_precision(TestPrecision::default().gemm())
}

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
            net: net.into(),
            params,
            running,
        }],
        ids: Identities {
            dataset: "embedded-200-40".into(),
            syn: "first-per-class".into(),
            teachers: "random-init".into(),
            device: "any".into(),
            test_precision: None,
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
    eval_matches_the_cpu("ConvNet-2");
}

/// A layer-list student (a narrow ResNet-18-BN: strided and 1×1 convs, batch norm in train and
/// eval mode, residual adds, global pooling) through the whole evaluation on the CUDA path: its
/// kernels and the cohort sizing of a layer list.
#[test]
fn emulated_eval_of_a_layer_list_matches_the_cpu() {
    eval_matches_the_cpu("ResNet-18-W4-BN");
}

/// The CUDA path's evaluation of `model` (trained on the CUDA backend, emulated without a GPU)
/// agrees with the CPU backend's to [`ACC_ATOL`] per training and [`SCORE_ATOL`] per score, and
/// survives an out-of-memory fault by halving the cohort.
fn eval_matches_the_cpu(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    let c = EvalConfig {
        model: model.into(),
        ..cfg(dir.path())
    };
    let inputs = inputs(&c);
    let (gpu, why) = CudaBackend::real_or_emulated(0);
    let where_ = match &why {
        None => "on a GPU".to_string(),
        Some(e) => format!("under emulation ({e})"),
    };
    let (cpu_rec, cpu_s) = run(&Arc::new(cpu_twin()), &c, &inputs);
    // Emulated with a memory size only to learn the peak for the out-of-memory check below.
    let gpu = Arc::new(match why {
        None => gpu,
        Some(_) => CudaBackend::emulated_with_memory(u64::MAX),
    });
    let (cuda_rec, cuda_s) = run(&gpu, &c, &inputs);
    crate::common::announce(&format!(
        "eval_emulated: {model}: CUDA path ran {where_} in {cuda_s:.1} s ({} trainings); CPU backend {cpu_s:.1} s",
        cuda_rec.timings.trainings.len()
    ));
    assert!(
        cuda_rec.timings.ran >= 2,
        "nothing trained on the CUDA path"
    );
    let mut worst = (0.0f64, String::from("every training equal"));
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
    crate::common::announce(&format!(
        "eval_emulated: {model}: worst accuracy difference {:.4} ({})",
        worst.0, worst.1
    ));
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
    crate::common::announce(&format!(
        "eval_emulated: {model}: with {} bytes instead of {peak}: {} cohorts instead of {} ({small_s:.1} s)",
        peak - 1,
        small.timings.cohorts_run,
        cuda_rec.timings.cohorts_run
    ));
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

// ---- the step without the host (issue 14, item 6) ----------------------------------------------

mod step {
    use std::sync::Arc;

    use ddr_fast::aug::{AugPlan, DsaMode, DsaParams};
    use ddr_fast::backend::cpu::CpuBackend;
    use ddr_fast::backend::cuda::CudaBackend;
    use ddr_fast::backend::{Backend, LossKind, NormKind, OptimizerCfg, OptimizerKind};
    use ddr_fast::metrics::config::Scheduler;
    use ddr_fast::model::{init_buffers, init_params, ConvNet, ConvNetSpec};
    use ddr_fast::train::trainer::{
        train_cohort_keep, CohortSettings, DeviceSet, ImageSet, StudentKey, StudentResult,
        StudentSetup, Teacher,
    };

    /// Two classes on 3×8×8 images (small enough for the emulator): class c has mean brightness
    /// ±0.5 plus a deterministic texture.
    fn toy_set(n_per_class: usize, offset: u32) -> ImageSet {
        let (c, s) = (3, 8);
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n_per_class as u32 {
            for class in 0..2u32 {
                let sign = if class == 0 { 0.5 } else { -0.5 };
                for p in 0..(c * s * s) as u32 {
                    let h =
                        (p.wrapping_mul(2_654_435_761) ^ (i + offset).wrapping_mul(40_503)) % 1000;
                    images.push(sign + (h as f32 / 1000.0 - 0.5) * 0.6);
                }
                labels.push(class);
            }
        }
        ImageSet {
            images,
            labels,
            soft: None,
            channels: c,
            size: s,
            classes: 2,
        }
    }

    /// 20 images in batches of 8: steps of 8, 8 and 4, so both the full and the short last batch
    /// get their own recorded step.
    fn settings(epochs: usize, aug: AugPlan, loss: LossKind) -> CohortSettings {
        let spec = ConvNetSpec::new(2, 4, NormKind::Instance, 3, 8, 2).unwrap();
        CohortSettings {
            net: ConvNet::new(spec).into(),
            epochs,
            test_interval: 1,
            batch_size: 8,
            loss,
            optimizer: OptimizerCfg::new(OptimizerKind::Adam, 5e-4),
            scheduler: Scheduler::Step,
            step_size: 2,
            aug,
            tv: None,
        }
    }

    fn key(role: u32) -> StudentKey {
        StudentKey {
            seed: 3,
            run: 0,
            role,
        }
    }

    fn setup(data: &ImageSet, role: u32, augment: bool, teacher: bool) -> StudentSetup<'_> {
        StudentSetup {
            data,
            lr: 0.01,
            key: key(role),
            augment,
            tv: false,
            teacher_targets: teacher,
        }
    }

    /// A randomly initialised teacher of the students' architecture (mode M's path).
    fn teacher(cs: &CohortSettings) -> Teacher {
        let net = cs.net.clone();
        let mut params = vec![0f32; net.param_len()]; // (P)
        init_params(net.layout(), 11, &mut params);
        let mut running = vec![0f32; net.buffer_len()]; // (R)
        init_buffers(net.layout(), &mut running);
        Teacher {
            net,
            params,
            running,
        }
    }

    /// Trains `students` and returns the results, the trained parameters (S, P) and the
    /// backend's replay count.
    fn train<B: Backend>(
        be: &Arc<B>,
        cs: &CohortSettings,
        students: &[StudentSetup<'_>],
        teachers: &[Teacher],
    ) -> (Vec<StudentResult>, Vec<f32>) {
        let test = DeviceSet::upload(be, &toy_set(10, 500), "test set").unwrap();
        let (r, cohort) =
            train_cohort_keep(be, cs, students, &test, teachers, &mut |_, _| {}).unwrap();
        (r, be.download(cohort.params()).unwrap())
    }

    #[test]
    fn a_replayed_step_equals_its_launches_run_directly() {
        // DSA in mode M on one student, a mode-M teacher's targets on the other, KL loss: every
        // kind of per-step value (rows, draws, step number, rate, soft targets) is exercised.
        let aug = AugPlan::Dsa {
            params: DsaParams::ddranking(),
            mode: DsaMode::All,
        };
        let cs = settings(
            3,
            aug,
            LossKind::Kl {
                temperature: 4.0,
                scale_loss: false,
            },
        );
        let (a, b) = (toy_set(10, 0), toy_set(10, 77));
        let students = [setup(&a, 1, true, true), setup(&b, 2, false, true)];
        let teachers = [teacher(&cs)];
        let graphs = Arc::new(CudaBackend::emulated().with_graphs(true));
        let direct = Arc::new(CudaBackend::emulated().with_graphs(false));
        let (r_g, p_g) = train(&graphs, &cs, &students, &teachers);
        let (r_d, p_d) = train(&direct, &cs, &students, &teachers);
        // 3 epochs × 3 steps; per batch size the first run is direct and the second recorded
        // (then replayed): full batches replay from step 2, the short one from epoch 2.
        crate::common::announce(&format!(
            "step graphs: {} replays of 9 steps with graphs on, {} with DDR_CUDA_GRAPHS=0",
            graphs.replays(),
            direct.replays()
        ));
        assert_eq!(
            graphs.replays(),
            9 - 2,
            "every step but the first of each size replays"
        );
        assert_eq!(direct.replays(), 0);
        // Host work: per epoch 3 writes (clock, permutations, draws), per test point 3 reads
        // (loss sums, stop marks, correct counts); once, the teacher's running statistics
        // (a write, only with batch norm) and this test's read of the parameters. Nothing per
        // step.
        let (writes, reads, _) = graphs.host_work();
        crate::common::announce(&format!(
            "step graphs: host work over 3 epochs of 3 steps: {writes} writes, {reads} reads"
        ));
        let teacher_writes = u64::from(!teachers[0].running.is_empty());
        assert_eq!((writes, reads), (3 * 3 + teacher_writes, 3 * 3 + 1));
        assert_eq!(direct.host_work().0, writes);
        let worst = p_g
            .iter()
            .zip(&p_d)
            .enumerate()
            .find(|(_, (g, d))| g.to_bits() != d.to_bits());
        assert!(
            worst.is_none(),
            "replayed and direct steps differ at parameter {:?}",
            worst
        );
        assert_eq!(r_g, r_d, "results (tests, losses) differ");
        assert_eq!(r_g[0].train_loss.len(), 3);
        assert!(r_g
            .iter()
            .all(|r| r.train_loss.iter().all(|l| l.is_finite() && *l > 0.0)));
    }

    /// The step (1-based) of epoch 1 in which image `i` of a student's N images is trained on.
    fn step_of(key: StudentKey, i: u32, n: usize, batch: usize) -> usize {
        let order = key.shuffle(0, n);
        let pos = order.iter().position(|&r| r == i).unwrap();
        pos / batch + 1
    }

    /// The set with stored soft labels (N, 2): logit 2 for its class, 0 for the other.
    fn with_soft(mut set: ImageSet) -> ImageSet {
        let soft = set
            .labels
            .iter()
            .flat_map(|&l| [2.0 * (l == 0) as u8 as f32, 2.0 * (l == 1) as u8 as f32])
            .collect();
        set.soft = Some(soft);
        set
    }

    fn nan_stops_one_student<B: Backend>(be: &Arc<B>, device: &str) -> Vec<StudentResult> {
        // The NaN goes into a stored soft label under MSE-GT, whose loss reads the target
        // directly: a NaN pixel would not do (ReLU, a max with 0, drops NaN, so the loss stays
        // finite), nor would KL (a NaN target probability is skipped like a zero one, xlogy,
        // and shows only a step later through the weights).
        let mse = LossKind::MseGt {
            w_mse: 1.0,
            w_ce: 1.0,
        };
        let cs = settings(2, AugPlan::None, mse);
        let good = with_soft(toy_set(10, 0));
        let mut bad = with_soft(toy_set(10, 0));
        let poisoned = 13u32; // an image index; its first soft label becomes NaN
        bad.soft.as_mut().unwrap()[poisoned as usize * 2] = f32::NAN;
        let students = [setup(&good, 1, false, false), setup(&bad, 2, false, false)];
        let (r, _) = train(be, &cs, &students, &[]);
        let want = format!("epoch 1 step {}", step_of(key(2), poisoned, 20, 8));
        crate::common::announce(&format!("nan ({device}): {:?}", r[1].stopped));
        assert!(
            r[0].stopped.is_none(),
            "{device}: the healthy student stopped"
        );
        assert_eq!(r[0].tests.len(), 2, "{device}");
        assert_eq!(r[0].train_loss.len(), 2, "{device}");
        let why = r[1]
            .stopped
            .as_deref()
            .expect("a NaN pixel must stop its student");
        assert!(why.contains(&want), "{device}: `{why}` should name {want}");
        assert!(r[1].tests.is_empty(), "{device}: tested after diverging");
        assert!(
            r[1].train_loss.is_empty(),
            "{device}: epoch 1 never completed"
        );
        r
    }

    #[test]
    fn a_nan_in_one_students_data_stops_only_that_student() {
        let cpu = nan_stops_one_student(&Arc::new(CpuBackend::new()), "cpu");
        let emu = nan_stops_one_student(&Arc::new(CudaBackend::emulated()), "emulated");
        assert_eq!(cpu[1].stopped, emu[1].stopped);
    }
}
