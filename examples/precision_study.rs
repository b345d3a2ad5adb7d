//! Precision study (issue 8, item 4): does a GPU GEMM mode (3xTF32, TF32, bf16) change what a
//! trained student scores? Trains the same random-subset students (same subsets, initialisations,
//! shuffles and augmentations: the seed decides all of them) once per mode on the CPU backend,
//! whose conv and linear GEMM operands are then rounded exactly as that GPU mode rounds them
//! (`ops::precision`), and writes one JSON line per (mode, seed) with the best test accuracy.
//! tools/precision_stats.py compares the modes' distributions with fp32.
//!
//! ```sh
//! cargo run --release --example precision_study -- --data-dir ../shared/data/cifar10 \
//!     --modes fp32,3xtf32,tf32,bf16 --out benches/results/precision_study.jsonl
//! ```
//! Every setting below is a flag; the defaults are the shortened recipe of benches/README.md
//! (width 16, 80 epochs at lr 0.05, tests at epochs 40 and 80 on 1,000 test images), sized for a
//! 2-core machine shared by seven engineers. Modes can run as separate processes (`--modes m`),
//! seeds in parts (`--first-seed`, `--seeds`); the JSON lines are simply concatenated.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ddr_fast::backend::cpu::CpuBackend;
use ddr_fast::backend::{LossKind, OptimizerCfg, OptimizerKind};
use ddr_fast::data::detect::load_named;
use ddr_fast::data::subset::random_subset;
use ddr_fast::error::{Error, Result};
use ddr_fast::metrics::config::{aug_with_defaults, Scheduler};
use ddr_fast::metrics::execute::{aug_plan, select};
use ddr_fast::metrics::inputs::to_image_set;
use ddr_fast::model::{ConvNet, ConvNetSpec};
use ddr_fast::ops::precision::GemmPrecision;
use ddr_fast::train::trainer::{train_cohort, CohortSettings, StudentKey, StudentSetup};

/// The study's settings (all hyperparameters in one place).
struct Study {
    data_dir: PathBuf,
    modes: Vec<GemmPrecision>,
    /// Students per mode; student i draws subset, init, shuffles and augmentations from seed i.
    seeds: usize,
    first_seed: u64,
    ipc: usize,
    width: usize,
    epochs: usize,
    test_interval: usize,
    /// Class-balanced test subset (the same images for every student and mode).
    test_images: usize,
    lr: f32,
    /// Students trained in lock-step per cohort (all seeds of a mode by default).
    cohort: usize,
    out: PathBuf,
}

impl Study {
    fn from_args() -> Result<Study> {
        let mut s = Study {
            data_dir: PathBuf::from("../shared/data/cifar10"),
            modes: GemmPrecision::ALL.to_vec(),
            seeds: 20,
            first_seed: 0,
            ipc: 10,
            width: 16,
            epochs: 80,
            test_interval: 40,
            test_images: 1000,
            lr: 0.05,
            cohort: 20,
            out: PathBuf::from("precision.jsonl"),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let v = it
                .next()
                .ok_or_else(|| Error::config(format!("{flag}: missing value")))?;
            let num = |v: &str| {
                v.parse::<usize>().map_err(|_| {
                    Error::config(format!("{flag}: expected a whole number, found '{v}'"))
                })
            };
            match flag.as_str() {
                "--data-dir" => s.data_dir = PathBuf::from(v),
                "--modes" => {
                    s.modes = v
                        .split(',')
                        .map(GemmPrecision::parse)
                        .collect::<Result<_>>()?
                }
                "--seeds" => s.seeds = num(v)?,
                "--first-seed" => s.first_seed = num(v)? as u64,
                "--ipc" => s.ipc = num(v)?,
                "--width" => s.width = num(v)?,
                "--epochs" => s.epochs = num(v)?,
                "--test-interval" => s.test_interval = num(v)?,
                "--test-images" => s.test_images = num(v)?,
                "--cohort" => s.cohort = num(v)?.max(1),
                "--lr" => {
                    s.lr = v.parse().map_err(|_| {
                        Error::config(format!("--lr: expected a number, found '{v}'"))
                    })?
                }
                "--out" => s.out = PathBuf::from(v),
                _ => return Err(Error::config(format!("unknown flag {flag}"))),
            }
        }
        Ok(s)
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("precision_study: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let st = Study::from_args()?;
    // Only the 20 subsets and the test subset are kept: the full sets (≈ 1.4 GB as f32 with their
    // raw copies) are dropped before training, so several modes can run side by side.
    let (subsets, test, seeds, shape) = {
        let real = load_named("cifar10", Some(&st.data_dir))?;
        let train = to_image_set(&real.train, &real, None)?;
        let test_all = to_image_set(&real.test, &real, None)?;
        let per_class = st.test_images / test_all.classes;
        let test_idx = random_subset(&test_all.labels, test_all.classes, per_class, 0x7e57, 0)?;
        let seeds: Vec<u64> = (0..st.seeds as u64).map(|i| st.first_seed + i).collect();
        let subsets = seeds
            .iter()
            .map(|&seed| {
                let idx = random_subset(&train.labels, train.classes, st.ipc, seed, 0)?;
                Ok(select(&train, &idx))
            })
            .collect::<Result<Vec<_>>>()?;
        let shape = (train.channels, train.size, train.classes);
        (subsets, select(&test_all, &test_idx), seeds, shape)
    };
    let spec =
        ConvNetSpec::from_name("ConvNet-3", shape.0, shape.1, shape.2)?.with_width(st.width)?;
    // LRS-hard's recipe (shared config): SGD, momentum 0.9, weight decay 5e-4, StepLR at half the
    // epochs, DSA, batch 256 (one batch per epoch at IPC 10).
    let settings = CohortSettings {
        net: ConvNet::new(spec).into(),
        epochs: st.epochs,
        test_interval: st.test_interval,
        batch_size: 256,
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
        step_size: (st.epochs / 2).max(1),
        aug: aug_plan(&aug_with_defaults("dsa").map_err(Error::config)?),
        tv: None,
    };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&st.out)
        .map_err(|e| Error::config(format!("{}: {e}", st.out.display())))?;
    for &mode in &st.modes {
        let be = Arc::new(CpuBackend::with_precision(mode));
        for chunk in (0..seeds.len()).collect::<Vec<_>>().chunks(st.cohort) {
            let t0 = Instant::now();
            let students: Vec<StudentSetup<'_>> = chunk
                .iter()
                .map(|&i| StudentSetup {
                    data: &subsets[i],
                    lr: st.lr,
                    key: StudentKey {
                        seed: seeds[i],
                        run: 0,
                        role: 0,
                    },
                    augment: true,
                    teacher_targets: false,
                    tv: false,
                })
                .collect();
            let results = train_cohort(&be, &settings, &students, &test, &[], &mut |_, _| {})?;
            let secs = t0.elapsed().as_secs_f64();
            for (&i, r) in chunk.iter().zip(&results) {
                let line = serde_json::json!({
                    "mode": mode.name(),
                    "seed": seeds[i],
                    "best": r.best,
                    "tests": r.tests,
                    "stopped": r.stopped,
                    "ipc": st.ipc,
                    "width": st.width,
                    "epochs": st.epochs,
                    "test_interval": st.test_interval,
                    "test_images": test.len(),
                    "lr": st.lr,
                    "cohort_seconds": secs,
                    "cohort_size": chunk.len(),
                });
                writeln!(out, "{line}")
                    .map_err(|e| Error::config(format!("{}: {e}", st.out.display())))?;
            }
            out.flush().ok();
            eprintln!(
                "{}: seeds {:?}..={:?} done in {secs:.0} s, best {:?}",
                mode.name(),
                seeds[chunk[0]],
                seeds[*chunk.last().unwrap()],
                results
                    .iter()
                    .map(|r| (r.best * 1000.0).round() / 10.0)
                    .collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}
