//! The cohort trainer: students trained together equal students trained alone, a separable
//! problem is learned, and a diverging student is stopped and reported.

use ddr_fast::aug::AugPlan;
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::{LossKind, NormKind, OptimizerCfg, OptimizerKind};
use ddr_fast::metrics::config::Scheduler;
use ddr_fast::model::{ConvNet, ConvNetSpec};
use ddr_fast::train::trainer::{train_cohort, CohortSettings, ImageSet, StudentKey, StudentSetup};

/// Two classes on 3×8×8 images: class c has mean brightness ±0.5 plus a small deterministic texture.
fn toy_set(n_per_class: usize, offset: u32) -> ImageSet {
    let (c, s) = (3, 8);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n_per_class as u32 {
        for class in 0..2u32 {
            let sign = if class == 0 { 0.5 } else { -0.5 };
            for p in 0..(c * s * s) as u32 {
                let h = (p.wrapping_mul(2_654_435_761) ^ (i + offset).wrapping_mul(40_503)) % 1000;
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

fn settings(epochs: usize) -> CohortSettings {
    let spec = ConvNetSpec::new(2, 8, NormKind::Instance, 3, 8, 2).unwrap();
    CohortSettings {
        net: ConvNet::new(spec).into(),
        epochs,
        test_interval: 2,
        batch_size: 6,
        loss: LossKind::CrossEntropy,
        optimizer: OptimizerCfg {
            kind: OptimizerKind::Sgd,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 5e-4,
        },
        scheduler: Scheduler::Step,
        step_size: 3,
        aug: AugPlan::None,
        tv: None,
    }
}

#[test]
fn cohort_equals_students_alone_and_learns() {
    let be = std::sync::Arc::new(CpuBackend::new());
    // 20 images with batch 6: three full batches and a partial one of 2.
    let (a, b, test) = (toy_set(10, 0), toy_set(10, 100), toy_set(50, 1000));
    let cs = settings(6);
    let setups = [
        StudentSetup {
            data: &a,
            lr: 0.01,
            key: StudentKey {
                seed: 1,
                run: 0,
                role: 7,
            },
            augment: false,
            tv: false,
            teacher_targets: false,
        },
        StudentSetup {
            data: &b,
            lr: 0.05,
            key: StudentKey {
                seed: 1,
                run: 1,
                role: 9,
            },
            augment: false,
            tv: false,
            teacher_targets: false,
        },
        StudentSetup {
            data: &a,
            lr: 0.001,
            key: StudentKey {
                seed: 2,
                run: 0,
                role: 7,
            },
            augment: false,
            tv: false,
            teacher_targets: false,
        },
    ];
    let together = train_cohort(&be, &cs, &setups, &test, &[], &mut |_, _| {}).unwrap();
    for (i, st) in setups.iter().enumerate() {
        let alone = train_cohort(
            &be,
            &cs,
            std::slice::from_ref(st),
            &test,
            &[],
            &mut |_, _| {},
        )
        .unwrap();
        // Test accuracies are counts over 100 images; students share no computation, so any
        // difference would be a cross-student leak, not rounding.
        assert_eq!(together[i].tests, alone[0].tests, "student {i}");
    }
    // Tests at epochs 2, 4, 6.
    assert_eq!(together[0].tests.len(), 3);
    assert!(
        together[1].best >= 0.9,
        "lr 0.05 on a separable problem reached only {}",
        together[1].best
    );
}

#[test]
fn diverging_student_is_stopped_and_reported() {
    let be = std::sync::Arc::new(CpuBackend::new());
    let (a, test) = (toy_set(10, 0), toy_set(10, 500));
    let cs = settings(4);
    let setups = [
        StudentSetup {
            data: &a,
            lr: 0.05,
            key: StudentKey {
                seed: 1,
                run: 0,
                role: 1,
            },
            augment: false,
            tv: false,
            teacher_targets: false,
        },
        StudentSetup {
            data: &a,
            lr: 1e30,
            key: StudentKey {
                seed: 1,
                run: 0,
                role: 2,
            },
            augment: false,
            tv: false,
            teacher_targets: false,
        },
    ];
    let r = train_cohort(&be, &cs, &setups, &test, &[], &mut |_, _| {}).unwrap();
    assert!(r[0].stopped.is_none());
    let why = r[1].stopped.as_deref().expect("lr 1e30 must diverge");
    assert!(why.contains("loss") && why.contains("epoch"), "{why}");
    assert!(r[1].tests.len() < r[0].tests.len());
}
