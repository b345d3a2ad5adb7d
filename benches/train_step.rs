//! Criterion benchmark of the issue-2 workload on the CPU backend: one training step of ConvNet-3
//! (width 128, instance norm, batch 100, 3×32×32, 10 classes; forward, cross-entropy, backward,
//! SGD) and one test pass over 10,000 images. Throughput is reported in images per second.
//! `cargo bench --bench train_step` (about 2–3 minutes on 2 idle cores; see benches/README.md).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::cli::bench::{Workload, WorkloadCfg};

/// The PyTorch measurement's shape: one student, batch 100; the test pass covers 10,000 images
/// in forwards of 500.
const STUDENTS: usize = 1;
const BATCH: usize = 100;
const TEST_IMAGES: usize = 10_000;
const TEST_BATCH: usize = 500;

fn workload(c: &mut Criterion) {
    let be = CpuBackend::new();
    let cfg = WorkloadCfg::convnet3(STUDENTS, BATCH, TEST_IMAGES, TEST_BATCH)
        .expect("the ConvNet-3 workload is valid");
    let mut w = Workload::new(&be, &cfg).expect("allocating the workload");

    let mut g = c.benchmark_group("convnet3_cpu");
    g.sample_size(10).warm_up_time(Duration::from_secs(2));

    g.throughput(Throughput::Elements(w.train_images() as u64));
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("train_step_b100", |b| {
        b.iter(|| w.train_step().expect("training step"))
    });

    // Each pass takes seconds: criterion stretches the measurement time to fit its 10 samples.
    g.throughput(Throughput::Elements(w.test_images() as u64));
    g.measurement_time(Duration::from_secs(60));
    g.bench_function("test_pass_10k", |b| {
        b.iter(|| w.test_pass(None).expect("test pass"))
    });
    g.finish();
}

criterion_group!(benches, workload);
criterion_main!(benches);
