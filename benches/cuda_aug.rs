//! Augmentation throughput of one cohort step (CIFAR shape: 3×32×32) per plan: DSA mode M (all six
//! ops), DSA mode S, Mixup, CutMix. Per step: the host samples the draws (`aug::sample`), uploads
//! them into a kept workspace and runs the kernels (CUDA), or runs `aug::apply` (CPU). Reported:
//! ms per step for sampling and for augmenting, and the augmenting bandwidth as the batch bytes
//! read + written once per op (a lower bound of the traffic, for comparison with the card's peak).
//!
//! `cargo bench --bench cuda_aug` — settings from the environment: DDR_BENCH_DEVICE
//! auto|cpu|cuda[:N]|emulated (default auto), DDR_BENCH_STUDENTS (8), DDR_BENCH_BATCH (256),
//! DDR_BENCH_STEPS (20), DDR_BENCH_WARMUP (3). Last lines machine-readable: `RESULT plan=... ...`.

use std::time::Instant;

use ddr_fast::aug::{self, AugPlan, BatchDims, BatchDraws, DrawKey, DsaMode, DsaParams};
use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::cuda::CudaBackend;
use ddr_fast::backend::{Backend, DeviceChoice, Opened, Origin};
use ddr_fast::error::Result;

fn env_usize(key: &str, default: usize) -> usize {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v} is not a number")),
        Err(_) => default,
    }
}

/// One device's way of augmenting a step: CPU `aug::apply`, or CUDA with a kept workspace.
trait Augmenter {
    fn describe(&self) -> String;
    fn step(&mut self, plan: &AugPlan, draws: &BatchDraws) -> Result<()>;
    fn sync(&self) -> Result<()>;
}

struct Cpu {
    dims: BatchDims,
    x: Vec<f32>, // (S, B, C, H, W)
}

impl Augmenter for Cpu {
    fn describe(&self) -> String {
        CpuBackend::new().describe()
    }
    fn step(&mut self, plan: &AugPlan, draws: &BatchDraws) -> Result<()> {
        aug::apply(plan, draws, self.dims, &mut self.x)
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

struct Cuda {
    be: CudaBackend,
    ws: ddr_fast::backend::cuda::AugWorkspace,
    x: ddr_fast::backend::cuda::CudaBuf<f32>, // (S, B, C, H, W)
}

impl Augmenter for Cuda {
    fn describe(&self) -> String {
        self.be.describe()
    }
    fn step(&mut self, plan: &AugPlan, draws: &BatchDraws) -> Result<()> {
        self.be.write_draws(draws, &mut self.ws)?;
        self.be.augment_with(plan, &mut self.ws, &mut self.x)
    }
    fn sync(&self) -> Result<()> {
        self.be.synchronize()
    }
}

fn cuda(be: CudaBackend, dims: BatchDims, x: &[f32]) -> Box<dyn Augmenter> {
    let ws = be.aug_workspace(dims).expect("workspace");
    let x = be.upload(x).expect("upload");
    Box::new(Cuda { be, ws, x })
}

fn main() {
    let dims = BatchDims {
        students: env_usize("DDR_BENCH_STUDENTS", 8),
        batch: env_usize("DDR_BENCH_BATCH", 256),
        c: 3,
        h: 32,
        w: 32,
    };
    let (steps, warmup) = (
        env_usize("DDR_BENCH_STEPS", 20),
        env_usize("DDR_BENCH_WARMUP", 3),
    );
    let x: Vec<f32> = (0..dims.len())
        .map(|i| ((i * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let device = std::env::var("DDR_BENCH_DEVICE").unwrap_or_else(|_| "auto".into());
    let choice = DeviceChoice::parse(&device).expect("DDR_BENCH_DEVICE");
    let (opened, line) = choice.open(Origin::Flag).expect("open DDR_BENCH_DEVICE");
    eprintln!("{line}");
    let mut dev: Box<dyn Augmenter> = match opened {
        Opened::Cpu(_) => Box::new(Cpu { dims, x: x.clone() }),
        Opened::Cuda(b) => cuda(b, dims, &x),
    };
    let dsa = |mode| AugPlan::Dsa {
        params: DsaParams::ddranking(),
        mode,
    };
    // Ops (batch passes) per plan: mode M runs six, mode S one per student, the mixes one.
    for (name, plan, passes) in [
        ("dsa_m", dsa(DsaMode::All), 6.0),
        ("dsa_s", dsa(DsaMode::Single), 1.0),
        ("mixup", AugPlan::Mixup { alpha: 1.0 }, 1.0),
        ("cutmix", AugPlan::Cutmix { beta: 1.0 }, 1.0),
    ] {
        let keys = |step: u32| -> Vec<Option<DrawKey>> {
            (0..dims.students as u32)
                .map(|role| {
                    Some(DrawKey {
                        seed: 1,
                        run: 0,
                        role,
                        step,
                    })
                })
                .collect()
        };
        let t0 = Instant::now();
        let draws: Vec<BatchDraws> = (0..(warmup + steps) as u32)
            .map(|s| aug::sample(&plan, &keys(s), dims).expect("sample"))
            .collect();
        let sample_ms = t0.elapsed().as_secs_f64() * 1e3 / (warmup + steps) as f64;
        for d in &draws[..warmup] {
            dev.step(&plan, d).expect("augment");
        }
        dev.sync().expect("sync");
        let t = Instant::now();
        for d in &draws[warmup..] {
            dev.step(&plan, d).expect("augment");
        }
        dev.sync().expect("sync");
        let ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
        let gbps = passes * 2.0 * 4.0 * dims.len() as f64 / (ms * 1e-3) / 1e9;
        println!(
            "{name:>6} S={} B={} 3x32x32 on {}: sample {sample_ms:.3} ms, augment {ms:.3} ms/step \
             (≥ {gbps:.1} GB/s)",
            dims.students,
            dims.batch,
            dev.describe()
        );
        println!(
            "RESULT plan={name} device={:?} students={} batch={} sample_ms={sample_ms:.4} \
             augment_ms={ms:.4} min_gb_per_s={gbps:.2}",
            dev.describe(),
            dims.students,
            dims.batch
        );
    }
}
