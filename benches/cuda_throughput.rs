//! Training throughput of a ConvNet-3 cohort (CIFAR shape: 3×32×32, width 128, instance norm,
//! 10 classes, SGD, cross-entropy) on one device: images/s over all students, and the
//! students/hour it implies for a CIFAR-10 IPC-10 evaluation student (DESIGN §7: 80.5 TFLOP per
//! student at 297 MFLOP per training image ≈ 271k training-image equivalents, tests included).
//!
//! `cargo bench --bench cuda_throughput` — settings from the environment:
//! DDR_BENCH_DEVICE auto|cpu|cuda[:N]|emulated (default auto), DDR_BENCH_STUDENTS (8),
//! DDR_BENCH_BATCH (256), DDR_BENCH_STEPS (20), DDR_BENCH_WARMUP (3).
//! The last line is machine-readable: `RESULT device=... images_per_s=... students_per_hour=...`.

use std::sync::Arc;
use std::time::Instant;

use ddr_fast::backend::{
    Backend, DeviceChoice, LossKind, NormKind, Opened, OptimizerCfg, OptimizerKind, Origin,
};
use ddr_fast::model::{ConvNetSpec, SplitMix64};
use ddr_fast::train::Cohort;

/// Training-image equivalents of one CIFAR-10 IPC-10 student (DESIGN §7: 80.5e12 / 297e6).
const IMAGES_PER_STUDENT: f64 = 80.5e12 / 297e6;

fn env_usize(key: &str, default: usize) -> usize {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v} is not a number")),
        Err(_) => default,
    }
}

struct Settings {
    students: usize,
    batch: usize,
    steps: usize,
    warmup: usize,
}

/// Seconds per training step, timed over `steps` after `warmup`, the device synchronised inside
/// the timed region.
fn time_steps<B: Backend>(be: B, s: &Settings) -> (String, f64) {
    let spec = ConvNetSpec::new(3, 128, NormKind::Instance, 3, 32, 10).expect("ConvNet-3 spec");
    let opt = OptimizerCfg {
        kind: OptimizerKind::Sgd,
        momentum: 0.9,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 5e-4,
    };
    let be = Arc::new(be);
    let seeds: Vec<u64> = (0..s.students as u64).collect();
    let lrs = vec![0.01f32; s.students];
    let mut cohort = Cohort::new(be.clone(), spec, opt, &seeds, &lrs).expect("cohort");
    let mut rng = SplitMix64::new(7);
    let x: Vec<f32> = (0..s.students * s.batch * spec.image_len())
        .map(|_| rng.next_f32() - 0.5)
        .collect();
    let y: Vec<u32> = (0..s.students * s.batch)
        .map(|_| (rng.next_u64() % 10) as u32)
        .collect();
    let (xb, yb) = (
        be.upload(&x).expect("upload x"),
        be.upload(&y).expect("upload y"),
    );
    let mut step = || {
        cohort
            .train_step(&xb, &yb, None, LossKind::CrossEntropy, s.batch)
            .expect("train step");
    };
    for _ in 0..s.warmup {
        step();
    }
    be.synchronize().expect("sync");
    let t0 = Instant::now();
    for _ in 0..s.steps {
        step();
    }
    be.synchronize().expect("sync");
    (be.describe(), t0.elapsed().as_secs_f64() / s.steps as f64)
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes its settings from the environment only.
    let s = Settings {
        students: env_usize("DDR_BENCH_STUDENTS", 8),
        batch: env_usize("DDR_BENCH_BATCH", 256),
        steps: env_usize("DDR_BENCH_STEPS", 20),
        warmup: env_usize("DDR_BENCH_WARMUP", 3),
    };
    let device = std::env::var("DDR_BENCH_DEVICE").unwrap_or_else(|_| "auto".into());
    let choice = DeviceChoice::parse(&device).expect("DDR_BENCH_DEVICE");
    let (opened, line) = choice.open(Origin::Flag).expect("open DDR_BENCH_DEVICE");
    eprintln!("{line}");
    let (desc, per_step) = match opened {
        Opened::Cpu(b) => time_steps(b, &s),
        Opened::Cuda(b) => time_steps(b, &s),
    };
    let images_per_s = (s.students * s.batch) as f64 / per_step;
    let students_per_hour = 3600.0 * images_per_s / IMAGES_PER_STUDENT;
    println!(
        "ConvNet-3 32px train step: S={} B={} steps={} on {desc}: {:.1} ms/step, {images_per_s:.0} images/s, \
         {students_per_hour:.1} CIFAR-10 IPC-10 students/hour",
        s.students,
        s.batch,
        s.steps,
        per_step * 1e3
    );
    println!(
        "RESULT device={desc:?} students={} batch={} ms_per_step={:.3} images_per_s={images_per_s:.1} \
         students_per_hour={students_per_hour:.2}",
        s.students,
        s.batch,
        per_step * 1e3
    );
}
