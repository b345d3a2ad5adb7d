//! `custom_train_trans` in training (issue #9 item 5): the trainer transforms each gathered image
//! of a student with the switch on, at every step, from the student's keyed RNG (DSA's key), before
//! the batch augmentation — as DD-Ranking's ImageFolder applies its `transform` in `__getitem__`
//! before `aug_func`. Checked here: a cohort equals its students trained alone, bitwise; the
//! transforms change the training; the step's transformed batch is `TvPipeline::apply_batch` on
//! the gathered images with the same key; and an image-folder evaluation through the CLI applies
//! them (YAML → trainer) and keys its cache on them.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ddr_fast::aug::{AugPlan, DrawKey, DsaMode, DsaParams, TvPipeline, TvTransform};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::{Backend, LossKind, NormKind, OptimizerCfg, OptimizerKind};
use ddr_fast::metrics::config::Scheduler;
use ddr_fast::model::{ConvNet, ConvNetSpec};
use ddr_fast::ops::step::{CLOCK_EPOCH, CLOCK_EPOCH_FIRST, CLOCK_LEN, CLOCK_STEP};
use ddr_fast::train::trainer::{
    train_cohort_keep, tv_stride, tv_table, CohortSettings, DeviceSet, ImageSet, StudentKey,
    StudentSetup,
};

const SIZE: usize = 16;

/// Every stage the YAML takes, keeping 16 × 16 (what the student takes).
fn pipeline() -> TvPipeline {
    TvPipeline(vec![
        TvTransform::RandomResizedCrop {
            size: SIZE,
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
        },
        TvTransform::RandomHorizontalFlip { p: 0.5 },
        TvTransform::RandomCrop {
            size: SIZE,
            padding: 2,
        },
        TvTransform::Normalize {
            mean: vec![0.5, 0.4, 0.3],
            std: vec![0.25, 0.2, 0.3],
        },
    ])
}

/// Two classes of 3 × 16 × 16 [0, 1] pixels: a bright left half or a bright top half, plus a
/// deterministic texture, so crops and flips change what the network sees.
fn pixel_set(n_per_class: usize, offset: u32) -> ImageSet {
    let mut images = Vec::new(); // (N, 3, SIZE, SIZE)
    let mut labels = Vec::new(); // (N)
    for i in 0..n_per_class as u32 {
        for class in 0..2u32 {
            for p in 0..(3 * SIZE * SIZE) as u32 {
                let (y, x) = ((p as usize / SIZE) % SIZE, p as usize % SIZE);
                let on = if class == 0 {
                    x < SIZE / 2
                } else {
                    y < SIZE / 2
                };
                let h = (p.wrapping_mul(2_654_435_761) ^ (i + offset).wrapping_mul(40_503)) % 256;
                images.push(if on { 0.6 } else { 0.2 } + h as f32 / 1024.0);
            }
            labels.push(class);
        }
    }
    ImageSet {
        images,
        labels,
        soft: None,
        channels: 3,
        size: SIZE,
        classes: 2,
    }
}

fn settings(epochs: usize, tv: Option<TvPipeline>) -> CohortSettings {
    let spec = ConvNetSpec::new(2, 4, NormKind::Instance, 3, SIZE, 2).unwrap();
    CohortSettings {
        net: ConvNet::new(spec).into(),
        epochs,
        test_interval: 1,
        batch_size: 6,
        loss: LossKind::CrossEntropy,
        optimizer: OptimizerCfg::new(OptimizerKind::Sgd, 5e-4),
        scheduler: Scheduler::Step,
        step_size: 2,
        aug: AugPlan::Dsa {
            params: DsaParams::ddranking(),
            mode: DsaMode::Single,
        },
        tv,
    }
}

fn setup(data: &ImageSet, role: u32, augment: bool, tv: bool) -> StudentSetup<'_> {
    StudentSetup {
        data,
        lr: 0.01,
        key: StudentKey {
            seed: 5,
            run: 1,
            role,
        },
        augment,
        tv,
        teacher_targets: false,
    }
}

/// Trains the students as one cohort on the CPU; returns each student's results and final
/// weights (P).
fn train(
    cs: &CohortSettings,
    students: &[StudentSetup<'_>],
    test: &ImageSet,
) -> Vec<(Vec<f64>, Vec<f64>, Vec<f32>)> {
    train_on(&Arc::new(CpuBackend::new()), cs, students, test)
}

/// As [`train`], on `be`: per student (test accuracies, epoch losses, final weights (P)).
fn train_on<B: Backend>(
    be: &Arc<B>,
    cs: &CohortSettings,
    students: &[StudentSetup<'_>],
    test: &ImageSet,
) -> Vec<(Vec<f64>, Vec<f64>, Vec<f32>)> {
    let test = DeviceSet::upload(be, test, "test").unwrap();
    let (res, cohort) = train_cohort_keep(be, cs, students, &test, &[], &mut |_, _| {}).unwrap();
    let params = be.download(cohort.params()).unwrap(); // (S, P)
    let p = params.len() / students.len();
    res.into_iter()
        .zip(params.chunks_exact(p))
        .map(|(r, w)| (r.tests, r.train_loss, w.to_vec()))
        .collect()
}

/// 14 images in batches of 6 (6, 6, 2: the short last batch too), 3 epochs.
#[test]
fn cohort_equals_separate_runs_bitwise_and_transforms_change_training() {
    let (a, b, test) = (pixel_set(7, 0), pixel_set(7, 50), pixel_set(20, 900));
    let cs = settings(3, Some(pipeline()));
    // With and without DSA after the transforms, and one student without them.
    let students = [
        setup(&a, 3, true, true),
        setup(&b, 4, false, true),
        setup(&a, 5, true, false),
    ];
    let together = train(&cs, &students, &test);
    for (i, st) in students.iter().enumerate() {
        let alone = train(&cs, std::slice::from_ref(st), &test);
        assert_eq!(together[i].1, alone[0].1, "student {i}: training losses");
        assert_eq!(together[i].2, alone[0].2, "student {i}: final weights");
        assert_eq!(together[i].0, alone[0].0, "student {i}: test accuracies");
    }
    // The same students without the transforms train differently (and a student without the
    // switch is untouched by its cohort's transforms: it equals its run without them).
    let off = train(&settings(3, None), &[setup(&a, 3, true, false)], &test);
    assert_ne!(together[0].2, off[0].2, "the transforms changed nothing");
    assert_ne!(together[0].1, off[0].1, "the transforms changed no loss");
    let plain = train(&settings(3, None), &[setup(&a, 5, true, false)], &test);
    assert_eq!(
        together[2].2, plain[0].2,
        "a switched-off student was transformed"
    );
}

/// The step's table and the backend op give exactly `TvPipeline::apply_batch` with the student's
/// key at that step, image by image; switched-off students' images are left as they are.
#[test]
fn step_batch_is_the_tv_transform_with_the_same_draws() {
    let be = CpuBackend::new();
    let pipe = pipeline();
    let (a, b) = (pixel_set(7, 0), pixel_set(7, 50));
    let students = [setup(&a, 3, true, true), setup(&b, 4, false, false)];
    let (n, full_b, steps, first) = (a.len(), 6, 3, 6u32); // the epoch starting at global step 6
    let stride = tv_stride(&pipe, students.len(), full_b);
    let table = tv_table(&pipe, &students, first, steps, full_b, n, stride, SIZE).unwrap();
    let img = 3 * SIZE * SIZE;
    for j in 0..steps {
        let bj = full_b.min(n - j * full_b);
        // A batch as the trainer gathers it: each student's own images in its epoch order.
        let mut x = Vec::new(); // (S·bj, 3, SIZE, SIZE)
        for st in &students {
            let order = st.key.shuffle(1, n);
            for &r in &order[j * full_b..j * full_b + bj] {
                x.extend_from_slice(&st.data.images[r as usize * img..][..img]);
            }
        }
        let gathered = x.clone();
        let mut clock = vec![0u32; CLOCK_LEN]; // the trainer's clock at step j of epoch 1
        clock[CLOCK_STEP] = first + j as u32;
        clock[CLOCK_EPOCH_FIRST] = first;
        clock[CLOCK_EPOCH] = 1;
        let dims = ddr_fast::aug::BatchDims {
            students: 2,
            batch: bj,
            c: 3,
            h: SIZE,
            w: SIZE,
        };
        be.tv_at(&pipe, &clock, &table, stride, dims, &mut x)
            .unwrap();
        let key = DrawKey {
            seed: 5,
            run: 1,
            role: 3,
            step: first + j as u32,
        };
        let want = pipe
            .apply_batch(&key, &gathered[..bj * img], bj, 3, SIZE, SIZE)
            .unwrap();
        if let Some(i) = (0..want.len()).find(|&i| x[i].to_bits() != want[i].to_bits()) {
            panic!(
                "step {j}: value {i} (image {}) is {} in the trainer's batch, {} from tv.rs",
                i / img,
                x[i],
                want[i]
            );
        }
        assert_eq!(
            x[bj * img..],
            gathered[bj * img..],
            "step {j}: student 1 moved"
        );
        assert_ne!(
            x[..bj * img],
            gathered[..bj * img],
            "step {j}: nothing changed"
        );
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ddr-fast"))
}

/// A 10-class image folder of 28 × 28 gray PNGs (the embedded dataset's shape), 2 per class.
fn write_folder(dir: &Path) {
    for c in 0..10u32 {
        let sub = dir.join(format!("c{c}"));
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..2u32 {
            let img = image::GrayImage::from_fn(28, 28, |x, y| {
                let bar = (x / 3 + y / 5 + c) % 4 == 0;
                image::Luma([if bar {
                    200
                } else {
                    ((x * 7 + y * 3 + i * 11) % 60) as u8
                }])
            });
            img.save(sub.join(format!("{i}.png"))).unwrap();
        }
    }
}

/// Runs a shortened evaluation of the folder with `yaml`; returns result.json.
fn eval(tmp: &Path, name: &str, yaml: &str, cache: &Path) -> serde_json::Value {
    let cfg = tmp.join(format!("{name}.yaml"));
    std::fs::write(&cfg, yaml).unwrap();
    let out = bin()
        .args([
            "eval", "--quiet", "--metric", "lrs-hard", "--ipc", "2", "--width", "4",
        ])
        .args(["--epochs", "2", "--full-epochs", "1", "--num-eval", "1"])
        .args(["--dataset", "embedded", "--eval-full-data", "true"])
        .args([
            "--test-interval",
            "1",
            "--lr-grid",
            "0.01",
            "--device",
            "cpu",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(tmp.join(name))
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(tmp.join(name).join("result.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// YAML → trainer on an image folder: the evaluation runs, reproduces in a separate process, and
/// its synthetic-set trainings are keyed on the transforms (not served from the cache of a run
/// without them).
#[test]
fn image_folder_eval_applies_custom_train_trans() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("syn");
    write_folder(&folder);
    let base = format!("syn_data_path: {}\n", folder.display());
    let tv = "custom_train_trans: [{RandomCrop: {size: 28, padding: 4}}, RandomHorizontalFlip, \
              ToTensor, {Normalize: {mean: [0.286], std: [0.353]}}]\n";
    let with = format!("{base}{tv}");
    let a = eval(tmp.path(), "a", &with, &tmp.path().join("cache_a"));
    let b = eval(tmp.path(), "b", &with, &tmp.path().join("cache_b"));
    let syn = |r: &serde_json::Value| r["runs"][0]["acc"]["syn_hard"].clone();
    assert!(syn(&a).as_f64().is_some(), "{a}");
    assert_eq!(syn(&a), syn(&b), "separate processes disagree");
    assert!(
        a["config"]["custom_train_trans"].is_array(),
        "the record does not show the transforms: {}",
        a["config"]
    );
    // Without the transforms, sharing run a's cache: the random-subset and full-data trainings
    // come from it, the synthetic set's do not (their key changed).
    let c = eval(tmp.path(), "c", &base, &tmp.path().join("cache_a"));
    let t = &c["timings"];
    let source_of = |what: &str| -> Vec<String> {
        t["trainings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["what"].as_str().unwrap().starts_with(what))
            .map(|r| r["source"].as_str().unwrap().to_string())
            .collect()
    };
    let (syn, rdm) = (source_of("syn"), source_of("rdm"));
    assert!(!syn.is_empty() && syn.iter().all(|s| s == "ran"), "{t}");
    assert!(!rdm.is_empty() && rdm.iter().all(|s| s == "cached"), "{t}");
}

// ---- the CUDA kernel (cuda/aug_tv.cu) against the CPU path ------------------------------------

/// Transformed pixels, CUDA vs CPU. The kernel repeats the reference's f32 operations in its
/// order with contraction off (`__fmul_rn`/`__fadd_rn`, IEEE division) and its f64 steps in f64,
/// so the results are expected bitwise equal (the test prints the largest |Δ|); this admits
/// last-bit differences only (a few ulp of values ≤ 8 after Normalize), while a wrong tap, box or
/// flip moves a pixel of these textured images by ≥ 1e-3.
const TV_ATOL: f32 = 4e-6;
const TV_RTOL: f32 = 1e-6;

/// Fails naming the worst index (and its image) when |got − want| > atol + rtol·|want| anywhere.
fn assert_close(what: &str, got: &[f32], want: &[f32], img: usize, atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let excess = |i: usize| (got[i] - want[i]).abs() - (atol + rtol * want[i].abs());
    let worst = (0..want.len())
        .max_by(|&a, &b| excess(a).total_cmp(&excess(b)))
        .unwrap();
    assert!(
        // An incomparable (NaN) excess is not "over"; a NaN or infinite got fails on its own.
        excess(worst).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            && got[worst].is_finite(),
        "{what}: worst at {worst} (image {}): cuda {} vs cpu {} (|Δ| {:e})",
        worst / img,
        got[worst],
        want[worst],
        (got[worst] - want[worst]).abs()
    );
}

/// `n` images of c × size × size with a fine texture in [0, 1] (every pixel differs from its
/// neighbours, so a shifted box or a missed flip shows).
fn texture_set(n: usize, c: usize, size: usize) -> ImageSet {
    ImageSet {
        images: (0..n * c * size * size)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) % 1000) as f32 / 999.0)
            .collect(), // (n, c, size, size)
        labels: vec![0; n],
        soft: None,
        channels: c,
        size,
        classes: 1,
    }
}

/// Runs `pipe` through `Backend::tv_at` on the CPU and on CUDA (a GPU, else the emulator) for
/// two students, one switched off, over an epoch of a full batch of 5 and a short one of 2 that
/// starts at global step 10; returns per step (gathered x, CPU result, CUDA result), each
/// (2·bj, c, size, size).
#[allow(clippy::type_complexity)]
fn both_devices(pipe: &TvPipeline, data: &ImageSet) -> Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let cuda = common::cuda_under_test("tv_train");
    let cpu = CpuBackend::new();
    let (n, c, size) = (data.len(), data.channels, data.size);
    let img = c * size * size;
    let students = [setup(data, 3, false, true), setup(data, 4, false, false)];
    let (full_b, steps, first) = (5, 2, 10u32);
    let stride = tv_stride(pipe, 2, full_b);
    let table = tv_table(pipe, &students, first, steps, full_b, n, stride, size).unwrap();
    let table_dev = cuda.upload(&table).unwrap();
    (0..steps)
        .map(|j| {
            let bj = full_b.min(n - j * full_b);
            // Student 0 takes the first bj images, student 1 the last bj.
            let x: Vec<f32> = data.images[j * full_b * img..][..bj * img]
                .iter()
                .chain(&data.images[(n - bj) * img..])
                .copied()
                .collect(); // (2·bj, c, size, size)
            let mut clock = vec![0u32; CLOCK_LEN];
            (clock[CLOCK_STEP], clock[CLOCK_EPOCH_FIRST]) = (first + j as u32, first);
            let dims = ddr_fast::aug::BatchDims {
                students: 2,
                batch: bj,
                c,
                h: size,
                w: size,
            };
            let mut want = x.clone();
            cpu.tv_at(pipe, &clock, &table, stride, dims, &mut want)
                .unwrap();
            let mut got_dev = cuda.upload(&x).unwrap();
            let clock_dev = cuda.upload(&clock).unwrap();
            cuda.tv_at(pipe, &clock_dev, &table_dev, stride, dims, &mut got_dev)
                .unwrap();
            (x, want, cuda.download(&got_dev).unwrap())
        })
        .collect()
}

/// Every stage kind on 3 × 32 × 32 and 1 × 28 × 28, a short batch and a switched-off student:
/// the CUDA batch is the CPU batch within [`TV_ATOL`]/[`TV_RTOL`], and the CPU batch is
/// `TvPipeline::apply_batch` drawing from the student's key itself (the table carries exactly
/// its draws).
#[test]
fn cuda_kernel_matches_the_cpu_reference() {
    for (c, size, scale) in [(3usize, 32usize, (0.08, 1.0)), (1, 28, (0.5, 1.0))] {
        let pipe = TvPipeline(vec![
            TvTransform::RandomResizedCrop {
                size,
                scale,
                ratio: (0.75, 4.0 / 3.0),
            },
            TvTransform::RandomHorizontalFlip { p: 0.5 },
            TvTransform::RandomCrop { size, padding: 4 },
            TvTransform::Normalize {
                mean: vec![0.45; c],
                std: vec![0.27; c],
            },
        ]);
        let data = texture_set(7, c, size);
        let img = c * size * size;
        for (j, (x, want, got)) in both_devices(&pipe, &data).into_iter().enumerate() {
            let what = format!("{c}×{size} step {j}");
            let max = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (g, w)| m.max((g - w).abs()));
            common::announce(&format!("tv_train: {what}: largest |cuda − cpu| {max:e}"));
            assert_close(&what, &got, &want, img, TV_ATOL, TV_RTOL);
            let bj = x.len() / img / 2;
            let key = DrawKey {
                seed: 5,
                run: 1,
                role: 3,
                step: 10 + j as u32,
            };
            let drawn = pipe.apply_batch(&key, &x[..bj * img], bj, c, size, size);
            assert_eq!(want[..bj * img], drawn.unwrap(), "{what}: table vs key");
            assert_eq!(got[bj * img..], x[bj * img..], "{what}: switched-off moved");
            assert_ne!(
                want[..bj * img],
                x[..bj * img],
                "{what}: nothing transformed"
            );
        }
    }
}

/// The draws exactly: without arithmetic (flips, zero-padded crops, and a RandomResizedCrop
/// whose box is always the whole image) the kernel only moves pixels, so CUDA equals the CPU
/// bitwise, every image of every step.
#[test]
fn cuda_kernel_moves_pixels_exactly_as_the_cpu_draws() {
    let size = 20;
    let pipe = TvPipeline(vec![
        TvTransform::RandomHorizontalFlip { p: 0.5 },
        TvTransform::RandomCrop { size, padding: 3 },
        TvTransform::RandomResizedCrop {
            size,
            scale: (1.0, 1.0),
            ratio: (1.0, 1.0),
        },
        TvTransform::RandomCrop { size, padding: 1 },
    ]);
    let data = texture_set(7, 2, size);
    let img = 2 * size * size;
    for (j, (x, want, got)) in both_devices(&pipe, &data).into_iter().enumerate() {
        if let Some(i) = (0..want.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
            panic!(
                "step {j}: value {i} (image {}) is {} on CUDA, {} on the CPU",
                i / img,
                got[i],
                want[i]
            );
        }
        assert_ne!(want, x, "step {j}: nothing moved");
    }
}

/// What the kernel cannot hold is refused before training, naming the way out; what it holds
/// is accepted.
#[test]
fn cuda_refuses_what_the_kernel_cannot_hold() {
    let cuda = common::cuda_under_test("tv_train");
    let flip = TvPipeline(vec![TvTransform::RandomHorizontalFlip { p: 0.5 }]);
    assert!(cuda.tv_supports(&flip, 3, 32).is_ok());
    assert!(cuda.tv_supports(&pipeline(), 3, SIZE).is_ok());
    assert!(cuda.tv_supports(&flip, 3, 64).is_ok());
    let e = cuda.tv_supports(&flip, 3, 96).unwrap_err().to_string();
    assert!(e.contains("--device cpu") && e.contains("3×96×96"), "{e}");
}

/// Training losses, CUDA vs CPU, over 3 epochs of a ConvNet-2 at 3xTF32 (fp32-accurate convs):
/// the paths differ only in summation order (relative ~1e-6 per op on a GPU), which the 9 SGD
/// steps carry into the per-epoch mean losses; measured ≤ 1.2e-7 relative under emulation, so
/// 1e-4 leaves a GPU's reordering room while the transforms themselves move these losses far
/// more (the test prints the with/without difference and asserts it exceeds 10·LOSS_RTOL).
const LOSS_RTOL: f64 = 1e-4;
/// Test accuracy: one of the 40 test images whose two logits lie that close may flip.
const ACC_ATOL: f64 = 1.0 / 40.0;

/// End to end: a cohort trained with the transforms (with and without DSA after them, and a
/// student without them) on CUDA follows its CPU training; the transforms changed the CUDA run.
#[test]
fn cuda_training_with_transforms_follows_the_cpu() {
    use ddr_fast::backend::cuda::ConvPrecision;
    let (a, b, test) = (pixel_set(7, 0), pixel_set(7, 50), pixel_set(20, 900));
    let cs = settings(3, Some(pipeline()));
    let students = [
        setup(&a, 3, true, true),
        setup(&b, 4, false, true),
        setup(&a, 5, true, false),
    ];
    let cuda =
        || Arc::new(common::cuda_under_test("tv_train").with_conv_precision(ConvPrecision::Tf32x3));
    let on_cpu = train_on(&Arc::new(CpuBackend::new()), &cs, &students, &test);
    let on_cuda = train_on(&cuda(), &cs, &students, &test);
    for (i, (g, w)) in on_cuda.iter().zip(&on_cpu).enumerate() {
        let worst = (0..w.1.len())
            .map(|e| ((g.1[e] - w.1[e]).abs() / w.1[e].abs(), e))
            .fold((0.0, 0), |m, v| if v.0 > m.0 { v } else { m });
        common::announce(&format!(
            "tv_train: student {i} epoch losses cuda {:?} cpu {:?} (worst rel {:.1e} at epoch {})",
            g.1, w.1, worst.0, worst.1
        ));
        assert!(
            g.1.len() == w.1.len() && worst.0 <= LOSS_RTOL,
            "student {i}: losses cuda {:?} vs cpu {:?}",
            g.1,
            w.1
        );
        assert_eq!(g.0.len(), w.0.len(), "student {i}: tests");
        for (e, (ga, wa)) in g.0.iter().zip(&w.0).enumerate() {
            assert!(
                (ga - wa).abs() <= ACC_ATOL + 1e-12,
                "student {i} test {e}: accuracy cuda {ga} vs cpu {wa}"
            );
        }
    }
    let off = train_on(
        &cuda(),
        &settings(3, None),
        &[setup(&a, 3, true, false)],
        &test,
    );
    let moved = (0..off[0].1.len())
        .map(|e| (on_cuda[0].1[e] - off[0].1[e]).abs() / off[0].1[e])
        .fold(0f64, f64::max);
    common::announce(&format!(
        "tv_train: student 0 without the transforms on CUDA: losses {:?} (largest rel change {moved:.1e})",
        off[0].1
    ));
    assert!(
        moved > 10.0 * LOSS_RTOL,
        "the transforms changed the CUDA losses by {moved:e} only"
    );
}
