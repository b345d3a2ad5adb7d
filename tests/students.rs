//! S students trained together in one cohort equal S separate single-student trainings: every
//! buffer has S outermost and every op computes a student's values with the same arithmetic in the
//! same order whatever S is, so the check is exact (bitwise), for every norm kind, optimizer and a
//! hard and a soft loss, across a schedule change and a partial last batch — for ConvNet and for
//! the layer-list networks (a ResNet and a VGG built as ResNet-18 and VGG-11 are, at small width).

use std::sync::Arc;

use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::{Backend, LossKind, NormKind, OptimizerCfg, OptimizerKind};
use ddr_fast::model::{ConvNetSpec, Net, SplitMix64};
use ddr_fast::train::{Cohort, Schedule};

const STUDENTS: usize = 3;
const SEEDS: [u64; STUDENTS] = [3, 1_000_003, 77];
const LRS: [f32; STUDENTS] = [0.01, 0.05, 0.002];
/// Batch sizes of the steps: full batches, then a partial one (the last batch of an epoch).
const BATCHES: [usize; 4] = [4, 4, 4, 3];

struct Data {
    /// Per step: (S, B, C, H, W) images, (S, B) labels, (S, B, K) soft targets.
    steps: Vec<(Vec<f32>, Vec<u32>, Vec<f32>)>,
}

fn data(spec: &ConvNetSpec) -> Data {
    data_for(spec.image_len(), spec.classes)
}

/// Random steps for images of `img` values and `classes` classes.
fn data_for(img: usize, classes: usize) -> Data {
    let mut rng = SplitMix64::new(2024);
    let steps = BATCHES
        .iter()
        .map(|&b| {
            let x = (0..STUDENTS * b * img)
                .map(|_| 2.0 * rng.next_f32() - 1.0)
                .collect();
            let y = (0..STUDENTS * b)
                .map(|_| (rng.next_u64() % classes as u64) as u32)
                .collect();
            let t = (0..STUDENTS * b * classes)
                .map(|_| 4.0 * rng.next_f32() - 2.0)
                .collect();
            (x, y, t)
        })
        .collect();
    Data { steps }
}

/// Student `s`'s share of a (S, ...) buffer with `per` elements per student.
fn share<T: Clone>(v: &[T], s: usize) -> Vec<T> {
    let per = v.len() / STUDENTS;
    v[s * per..(s + 1) * per].to_vec()
}

/// Trains `students` (indices into SEEDS/LRS) in one cohort; returns per step the losses, then the
/// final parameters, running statistics and eval logits of the last batch, each (S, ...).
fn train<B: Backend>(
    be: &Arc<B>,
    spec: impl Into<Net>,
    opt: OptimizerCfg,
    loss: LossKind,
    d: &Data,
    students: &[usize],
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let seeds: Vec<u64> = students.iter().map(|&s| SEEDS[s]).collect();
    let lrs: Vec<f32> = students.iter().map(|&s| LRS[s]).collect();
    let mut c = Cohort::new(be.clone(), spec, opt, &seeds, &lrs).unwrap();
    let sched = Schedule::Step {
        step_size: 2,
        gamma: 0.1,
    };
    let pick = |v: &[f32]| -> Vec<f32> { students.iter().flat_map(|&s| share(v, s)).collect() };
    let mut losses = Vec::new();
    for (i, ((x, y, t), &b)) in d.steps.iter().zip(&BATCHES).enumerate() {
        c.apply_schedule(&sched, i).unwrap();
        let x = be.upload(&pick(x)).unwrap();
        let y: Vec<u32> = students.iter().flat_map(|&s| share(y, s)).collect();
        let y = be.upload(&y).unwrap();
        let t = be.upload(&pick(t)).unwrap();
        losses.extend(c.train_step(&x, &y, Some(&t), loss, b).unwrap());
    }
    let (x, _, _) = d.steps.last().unwrap();
    let x = be.upload(&pick(x)).unwrap();
    let logits = be
        .download(c.eval_logits(&x, *BATCHES.last().unwrap()).unwrap())
        .unwrap();
    (
        losses,
        be.download(c.params()).unwrap(),
        be.download(c.running()).unwrap(),
        logits,
    )
}

/// The layer-list networks keep the property: ResNet-18's and VGG-11's structure (basic blocks
/// with strided shortcut convs, instance or batch norm, max pools) at width 4 and 8.
#[test]
fn layer_list_cohorts_equal_single_trainings() {
    let be = Arc::new(CpuBackend::new());
    let mut checked = 0;
    for name in [
        "ResNet-18-W4",
        "ResNet-18-W4-BN",
        "VGG-11-W8",
        "VGG-11-W8-BN",
    ] {
        let net = Net::from_name(name, 3, 32, 5).unwrap();
        let d = data_for(net.image_len(), net.classes());
        for (kind, loss) in [
            (OptimizerKind::Sgd, LossKind::CrossEntropy),
            (
                OptimizerKind::Adam,
                LossKind::Kl {
                    temperature: 4.0,
                    scale_loss: true,
                },
            ),
        ] {
            let opt = OptimizerCfg::new(kind, 5e-4);
            let (l3, p3, r3, z3) = train(&be, net.clone(), opt, loss, &d, &[0, 1, 2]);
            let steps = BATCHES.len();
            for s in 0..STUDENTS {
                let (l1, p1, r1, z1) = train(&be, net.clone(), opt, loss, &d, &[s]);
                let case = format!("{name} {kind:?} student {s}");
                let l3s: Vec<f32> = (0..steps).map(|i| l3[i * STUDENTS + s]).collect();
                assert_eq!(l1, l3s, "{case}: losses");
                assert!(p1 == share(&p3, s), "{case}: parameters differ");
                assert!(r1 == share(&r3, s), "{case}: running statistics differ");
                assert!(z1 == share(&z3, s), "{case}: eval logits differ");
                checked += 1;
            }
            assert!(share(&p3, 0) != share(&p3, 1), "{name}: students differ");
        }
    }
    assert_eq!(checked, 4 * 2 * STUDENTS);
}

#[test]
fn a_cohort_of_three_equals_three_single_trainings() {
    cohort_equals_single_trainings(&Arc::new(CpuBackend::new()));
}

/// The test body, for any backend (a device adds one `#[test]` calling it).
fn cohort_equals_single_trainings<B: Backend>(be: &Arc<B>) {
    let mut checked = 0;
    for norm in [NormKind::Instance, NormKind::Batch, NormKind::None] {
        let spec = ConvNetSpec::new(2, 6, norm, 3, 8, 5).unwrap();
        let d = data(&spec);
        for kind in [
            OptimizerKind::Sgd,
            OptimizerKind::Adam,
            OptimizerKind::AdamW,
        ] {
            let opt = OptimizerCfg::new(kind, 5e-4);
            for loss in [
                LossKind::CrossEntropy,
                LossKind::Kl {
                    temperature: 4.0,
                    scale_loss: true,
                },
            ] {
                let (l3, p3, r3, z3) = train(be, spec, opt, loss, &d, &[0, 1, 2]);
                let steps = BATCHES.len();
                for s in 0..STUDENTS {
                    let (l1, p1, r1, z1) = train(be, spec, opt, loss, &d, &[s]);
                    let case = format!("{norm:?} {kind:?} {loss:?} student {s}");
                    let l3s: Vec<f32> = (0..steps).map(|i| l3[i * STUDENTS + s]).collect();
                    assert_eq!(l1, l3s, "{case}: losses");
                    assert!(p1 == share(&p3, s), "{case}: parameters differ");
                    assert!(r1 == share(&r3, s), "{case}: running statistics differ");
                    assert!(z1 == share(&z3, s), "{case}: eval logits differ");
                    checked += 1;
                }
                // The students really differ (different seeds, rates and data).
                assert!(share(&p3, 0) != share(&p3, 1));
            }
        }
    }
    assert_eq!(checked, 3 * 3 * 2 * STUDENTS);
}

/// A training that learns: a hundred SGD steps on a fixed batch drive the loss down (a
/// sanity check that the update has the right sign and the pieces fit together).
#[test]
fn training_reduces_the_loss_on_a_fixed_batch() {
    let spec = ConvNetSpec::new(2, 8, NormKind::Instance, 3, 8, 4).unwrap();
    let be = Arc::new(CpuBackend::new());
    let mut c = Cohort::new(
        be.clone(),
        spec,
        OptimizerCfg::new(OptimizerKind::Sgd, 5e-4),
        &[9],
        &[0.05],
    )
    .unwrap();
    let d = data(&spec);
    let (x, y, _) = &d.steps[0];
    let (x, y) = (
        be.upload(&share(x, 0)).unwrap(),
        be.upload(&share(y, 0)).unwrap(),
    );
    let first = c
        .train_step(&x, &y, None, LossKind::CrossEntropy, 4)
        .unwrap()[0];
    let mut last = first;
    for _ in 0..100 {
        last = c
            .train_step(&x, &y, None, LossKind::CrossEntropy, 4)
            .unwrap()[0];
    }
    assert!(last < 0.1 * first, "loss went from {first} to {last}");
    let mut correct = be.alloc::<u32>(1).unwrap();
    c.count_correct(&x, &y, 4, &mut correct).unwrap();
    assert_eq!(
        be.download(&correct).unwrap(),
        vec![4],
        "a memorised batch is classified right"
    );
}
