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

/// f32 values `ConvNet::workspace` holds per image: every block's conv output and pooled output
/// (the norm statistics, 2 per channel, are negligible) plus the logits.
fn activation_floats(spec: &ConvNetSpec) -> usize {
    let w = spec.width;
    let per_block: usize = (0..spec.depth)
        .map(|d| {
            let hw = spec.block_conv_hw(d);
            w * hw * hw + w * (hw / 2) * (hw / 2)
        })
        .sum();
    per_block + spec.classes
}

/// Bytes the CPU workload allocates at S students: the training workspace (activations and
/// their gradients at batch 100), the test workspace and the gathered test batch at `test_batch`
/// images per student. Peak RSS measured with /usr/bin/time on ConvNet-3 width 128 (N = 1000,
/// test batch 500): 0.61 GiB at S = 1 and 4.68 GiB at S = 8 against 0.57 and 4.53 GiB from this
/// sum, the rest being the process itself and the scratch pool (benches/REPORT.md, memory table).
fn workload_bytes(spec: &ConvNetSpec, s: usize, test_batch: usize) -> f64 {
    let act = activation_floats(spec);
    let train = s * BATCH * 2 * act;
    let test = s * test_batch * (act + spec.image_len());
    4.0 * (train + test) as f64
}

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
        let spec = ConvNetSpec::from_name("ConvNet-3", 3, 32, 10)
            .and_then(|sp| sp.with_width(width))
            .expect("ConvNet-3 spec");
        let need_gib = workload_bytes(&spec, s, test_batch) / (1u64 << 30) as f64;
        if need_gib > max_gib {
            eprintln!(
                "cohort_{label}: S = {s} skipped: needs ≈ {need_gib:.1} GiB > DDR_BENCH_MAX_GIB = {max_gib}"
            );
            continue;
        }
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
