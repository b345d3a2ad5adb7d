//! Criterion benchmark of issue 8, item 7: one training step (batch 100 per student) and one test
//! pass of a ConvNet-3 cohort (width 128, instance norm, CIFAR shape) at S = 1, 8, 64, 256
//! students, on every backend present: the CPU always; CUDA when a GPU opens; the emulated CUDA
//! device only when asked (DDR_BENCH_EMULATED=1), at a tiny width, since it runs kernels on CPU
//! threads. Throughput is in student-images per second (S × images).
//!
//! `cargo bench --bench cohort_sizes` — settings from the environment:
//! DDR_BENCH_SIZES (default "1,8,64,256"), DDR_BENCH_TEST_IMAGES (default 10000),
//! DDR_BENCH_MAX_GIB (skip a size whose buffers would exceed this; default 4 on the CPU, which
//! shares 24 GiB with other jobs, 60 on a GPU). A skipped size prints why.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::CudaBackend;
use ddr_fast::backend::Backend;
use ddr_fast::cli::bench::{Workload, WorkloadCfg};
use ddr_fast::model::ConvNetSpec;

const BATCH: usize = 100;
/// Student-images per test forward: the test chunk shrinks as S grows so activations stay bounded.
const TEST_ROWS_PER_FORWARD: usize = 12_800;
/// fp32 bytes per training image of ConvNet-3 width 128, an estimate (not measured): conv outputs
/// kept for backward (128·(32² + 16² + 8²)·4 ≈ 0.7 MB), pooled outputs and their gradients
/// (≈ 0.9 MB more), im2col scratch: ≈ 2 MB, doubled for margin.
const TRAIN_BYTES_PER_IMAGE: f64 = 4.0 * 1024.0 * 1024.0;
/// fp32 bytes per test row in flight (conv1 output and its normalised copy): 2 × 128 × 32² × 4.
const TEST_BYTES_PER_ROW: f64 = 1.0 * 1024.0 * 1024.0;

fn env_list(key: &str, default: &str) -> Vec<usize> {
    std::env::var(key)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{key}: '{v}' is not a number"))
        })
        .collect()
}

fn env_f64(key: &str, default: f64) -> f64 {
    std::env::var(key)
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{key}: '{v}' is not a number"))
        })
        .unwrap_or(default)
}

fn run_sizes<B: Backend>(c: &mut Criterion, be: &B, label: &str, width: usize, max_gib: f64) {
    let test_images = env_list("DDR_BENCH_TEST_IMAGES", "10000")[0];
    let mut g = c.benchmark_group(format!("cohort_{label}"));
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    for s in env_list("DDR_BENCH_SIZES", "1,8,64,256") {
        let test_batch = (TEST_ROWS_PER_FORWARD / s).clamp(1, 500);
        let need = (s * BATCH) as f64 * TRAIN_BYTES_PER_IMAGE
            + (s * test_batch) as f64 * TEST_BYTES_PER_ROW;
        let need_gib = need * (width as f64 / 128.0) / (1u64 << 30) as f64;
        if need_gib > max_gib {
            eprintln!(
                "cohort_{label}: S = {s} skipped: needs ≈ {need_gib:.1} GiB > DDR_BENCH_MAX_GIB = {max_gib}"
            );
            continue;
        }
        let spec = ConvNetSpec::from_name("ConvNet-3", 3, 32, 10)
            .and_then(|sp| sp.with_width(width))
            .expect("ConvNet-3 spec");
        let cfg = WorkloadCfg {
            spec,
            students: s,
            batch: BATCH,
            test_images,
            test_batch,
        };
        let mut w = Workload::new(be, &cfg).expect("allocating the workload");
        g.throughput(Throughput::Elements(w.train_images() as u64));
        g.measurement_time(Duration::from_secs(10));
        g.bench_with_input(BenchmarkId::new("train_step_b100", s), &s, |b, _| {
            b.iter(|| w.train_step().expect("training step"))
        });
        g.throughput(Throughput::Elements(w.test_images() as u64));
        g.measurement_time(Duration::from_secs(30));
        g.bench_with_input(
            BenchmarkId::new(format!("test_pass_{test_images}"), s),
            &s,
            |b, _| b.iter(|| w.test_pass(None).expect("test pass")),
        );
    }
    g.finish();
}

fn cohorts(c: &mut Criterion) {
    run_sizes(
        c,
        &CpuBackend::new(),
        "cpu",
        128,
        env_f64("DDR_BENCH_MAX_GIB", 4.0),
    );
    match CudaBackend::new(0) {
        Ok(be) => run_sizes(c, &be, "cuda", 128, env_f64("DDR_BENCH_MAX_GIB", 60.0)),
        Err(e) => eprintln!("cohort_cuda: not run: {e}"),
    }
    if std::env::var("DDR_BENCH_EMULATED").is_ok_and(|v| v == "1") {
        // Width 8 and S ≤ 8: the emulator runs every CUDA thread on the CPU.
        std::env::set_var("DDR_BENCH_SIZES", "1,8");
        std::env::set_var("DDR_BENCH_TEST_IMAGES", "500");
        run_sizes(c, &CudaBackend::emulated(), "emulated_w8", 8, 1.0);
    }
}

criterion_group!(benches, cohorts);
criterion_main!(benches);
