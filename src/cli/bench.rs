//! `ddr-fast bench [--json] [--device cpu] [--model NAME] [--students S] [--batch B] ...`: how
//! many images per second one training step of a student (default ConvNet-3: width 128, instance
//! norm; any DD-Ranking model name; 3×32×32, 10 classes) and one test pass over 10,000 images run at, for comparison with PyTorch on the same machine
//! (benches/README.md). [`Workload`] is shared with the criterion bench benches/train_step.rs.
//!
//! Timing: warm-up first (fills the scratch pools and caches), then each repeat timed alone; the
//! report gives mean ± std over repeats. On a machine shared with other jobs wall time overstates
//! the cost, so the CPU time of this process's threads is reported next to it.

use std::time::Instant;

use clap::Args;

use super::bench_profile::Timed;
use crate::backend::{
    Backend, DeviceChoice, LossKind, Mode, Opened, OptimizerCfg, OptimizerKind, Origin,
};
use crate::error::{Error, Result};
use crate::model::{init_buffers, init_params, ConvNetSpec, Net, NetWorkspace, SplitMix64};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// auto | cpu | cuda | cuda:N | emulated. `emulated` runs the CUDA kernels on the host
    /// emulator (very slow: use tiny sizes, e.g. --batch 2 --test-images 8).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Model name, as DD-Ranking spells it: ConvNet-3, ResNet-18-BN, VGG-11, AlexNet, LeNet, MLP, …
    #[arg(long, default_value = "ConvNet-3")]
    pub model: String,
    /// Students trained in lock-step (each on its own batch).
    #[arg(long, default_value_t = 1)]
    pub students: usize,
    /// Training batch per student.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Images in the test pass (every student sees all of them).
    #[arg(long, default_value_t = 10_000)]
    pub test_images: usize,
    /// Images per student per forward in the test pass.
    #[arg(long, default_value_t = 500)]
    pub test_batch: usize,
    /// Untimed training steps (and test batches) before timing.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed training steps.
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// Timed test passes.
    #[arg(long, default_value_t = 2)]
    pub test_repeats: usize,
    /// CPU threads (default: rayon's, i.e. all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Instead of the throughput run, time every op of `repeats` training steps and of
    /// `warmup` test batches and print where the time goes.
    #[arg(long)]
    pub profile: bool,
    /// Print the performance model's predicted times of this workload on H100/H200 (src/perf)
    /// instead of running it; runs on any machine.
    #[arg(long)]
    pub predict: bool,
    /// With --predict: a `bench --json` output measured on a GPU, shown against the prediction.
    #[arg(long, requires = "predict")]
    pub measured: Option<std::path::PathBuf>,
}

/// The benchmark's model, sizes and data: S students of `spec`, SGD with momentum (the DD-Ranking
/// recipe), random images and labels (speed does not depend on their values).
#[derive(Clone, Debug)]
pub struct WorkloadCfg {
    pub spec: ConvNetSpec,
    pub students: usize,
    pub batch: usize,
    pub test_images: usize,
    pub test_batch: usize,
}

impl WorkloadCfg {
    /// ConvNet-3 on CIFAR-10-shaped data: the workload PyTorch was measured on (issue 2, item 4).
    pub fn convnet3(
        students: usize,
        batch: usize,
        test_images: usize,
        test_batch: usize,
    ) -> Result<Self> {
        let spec = ConvNetSpec::from_name("ConvNet-3", 3, 32, 10)?;
        WorkloadCfg {
            spec,
            students,
            batch,
            test_images,
            test_batch,
        }
        .checked()
    }

    fn checked(self) -> Result<Self> {
        if self.students == 0 || self.batch == 0 || self.test_images == 0 || self.test_batch == 0 {
            return Err(Error::config(format!(
                "bench: students, batch, test images and test batch must be positive, got {}, {}, {}, {}",
                self.students, self.batch, self.test_images, self.test_batch
            )));
        }
        Ok(self)
    }
}

/// One test forward size: its workspace, input and per-batch labels.
struct TestShape<B: Backend> {
    batch: usize,
    ws: NetWorkspace<B>,
    /// (S, batch, C, H, W)
    x: B::Buf<f32>,
}

/// Everything a training step and a test pass touch, allocated once.
pub struct Workload<'a, B: Backend> {
    be: &'a B,
    net: Net,
    cfg: WorkloadCfg,
    opt: OptimizerCfg,
    step: u32,
    /// (S, P) parameters, gradients, momentum, unused second optimizer state.
    params: B::Buf<f32>,
    grads: B::Buf<f32>,
    state1: B::Buf<f32>,
    state2: B::Buf<f32>,
    /// (S, R) batch-norm running statistics (empty for instance norm).
    running: B::Buf<f32>,
    /// (S) learning rates.
    lrs: B::Buf<f32>,
    /// (S, B, C, H, W) and (S, B)
    x: B::Buf<f32>,
    labels: B::Buf<u32>,
    ws: NetWorkspace<B>,
    /// (N, C·H·W): the test set, resident on the device.
    test_set: B::Buf<f32>,
    /// (N) test labels, one copy per student per batch is gathered on the host once.
    test_labels: Vec<u32>,
    /// Full test batches, then the remainder if N is not a multiple of the test batch.
    test_shapes: Vec<TestShape<B>>,
    /// (S) correct counts of the last test pass.
    correct: B::Buf<u32>,
}

/// Deterministic uniform values in [−1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut g = SplitMix64::new(seed);
    (0..n).map(|_| 2.0 * g.next_f32() - 1.0).collect()
}

impl<'a, B: Backend> Workload<'a, B> {
    /// The workload of `cfg.spec` (a ConvNet).
    pub fn new(be: &'a B, cfg: &WorkloadCfg) -> Result<Self> {
        Self::with_net(be, cfg, Net::from(cfg.spec))
    }

    /// The workload of any student `net` at the sizes of `cfg` (its `spec` is not used).
    pub fn with_net(be: &'a B, cfg: &WorkloadCfg, net: Net) -> Result<Self> {
        let cfg = cfg.clone().checked()?;
        let (s, p, r) = (cfg.students, net.param_len(), net.buffer_len());
        let mut params = vec![0f32; s * p]; // (S, P)
        for (i, row) in params.chunks_mut(p).enumerate() {
            init_params(net.layout(), 1000 + i as u64, row);
        }
        let mut running = vec![0f32; s * r]; // (S, R)
        for row in running.chunks_mut(r.max(1)) {
            init_buffers(net.layout(), row);
        }
        let img = net.image_len();
        let classes = net.classes() as u64;
        let mut g = SplitMix64::new(7);
        let labels: Vec<u32> = (0..s * cfg.batch)
            .map(|_| (g.next_u64() % classes) as u32)
            .collect();
        let test_labels: Vec<u32> = (0..cfg.test_images)
            .map(|_| (g.next_u64() % classes) as u32)
            .collect();
        let mut test_shapes = Vec::new();
        let tail = cfg.test_images % cfg.test_batch;
        for tb in [cfg.test_batch.min(cfg.test_images), tail] {
            if tb > 0 && test_shapes.iter().all(|t: &TestShape<B>| t.batch != tb) {
                test_shapes.push(TestShape {
                    batch: tb,
                    ws: net.workspace(be, s, tb, false)?,
                    x: be.alloc(s * tb * img)?,
                });
            }
        }
        Ok(Workload {
            be,
            opt: OptimizerCfg {
                kind: OptimizerKind::Sgd,
                momentum: 0.9,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 5e-4,
            },
            step: 0,
            params: be.upload(&params)?,
            grads: be.alloc(s * p)?,
            state1: be.alloc(s * p)?,
            state2: be.alloc(s * p)?,
            running: be.upload(&running)?,
            lrs: be.upload(&vec![0.01f32; s])?,
            x: be.upload(&values(s * cfg.batch * img, 11))?,
            labels: be.upload(&labels)?,
            ws: net.workspace(be, s, cfg.batch, true)?,
            test_set: be.upload(&values(cfg.test_images * img, 13))?,
            test_labels,
            test_shapes,
            correct: be.alloc(s)?,
            net,
            cfg,
        })
    }

    /// Student-images per training step (S·B).
    pub fn train_images(&self) -> usize {
        self.cfg.students * self.cfg.batch
    }

    /// Student-images per test pass (S·N).
    pub fn test_images(&self) -> usize {
        self.cfg.students * self.cfg.test_images
    }

    /// One training step of every student: forward, cross-entropy, backward, SGD update.
    pub fn train_step(&mut self) -> Result<()> {
        let (be, net) = (self.be, &self.net);
        net.forward(
            be,
            &mut self.ws,
            &self.x,
            &self.params,
            &mut self.running,
            Mode::Train,
        )?;
        net.loss(be, &mut self.ws, LossKind::CrossEntropy, &self.labels, None)?;
        net.backward(be, &mut self.ws, &self.x, &self.params, &mut self.grads)?;
        self.step += 1;
        be.optimizer_step(
            &self.opt,
            self.step,
            &self.lrs,
            &mut self.params,
            &self.grads,
            &mut self.state1,
            &mut self.state2,
        )?;
        be.synchronize()
    }

    /// Test forwards over the first `limit` images (all N when `None`), every student on the same
    /// images: gather the batch from the resident test set, eval-mode forward, count correct.
    /// Returns the number of test images covered.
    pub fn test_pass(&mut self, limit: Option<usize>) -> Result<usize> {
        let (be, s) = (self.be, self.cfg.students);
        let n = limit
            .unwrap_or(self.cfg.test_images)
            .min(self.cfg.test_images);
        let img = self.net.image_len();
        be.write(&vec![0u32; s], &mut self.correct)?;
        let mut start = 0;
        while start < n {
            let len = self.cfg.test_batch.min(self.cfg.test_images - start);
            let shape = self
                .test_shapes
                .iter_mut()
                .find(|t| t.batch == len)
                .expect("a workspace exists for the full and the remainder batch size");
            // (S·len) row indices: every student reads images start .. start + len.
            let idx: Vec<u32> = (0..s)
                .flat_map(|_| (start..start + len).map(|i| i as u32))
                .collect();
            let idx = be.upload(&idx)?;
            be.gather_rows(&self.test_set, img, &idx, &mut shape.x)?;
            let labels: Vec<u32> = (0..s)
                .flat_map(|_| self.test_labels[start..start + len].iter().copied())
                .collect();
            let labels = be.upload(&labels)?;
            self.net.forward(
                be,
                &mut shape.ws,
                &shape.x,
                &self.params,
                &mut self.running,
                Mode::Eval,
            )?;
            be.count_correct(
                s,
                len,
                self.net.classes(),
                shape.ws.logits(),
                &labels,
                &mut self.correct,
            )?;
            start += len;
        }
        be.synchronize()?;
        Ok(n)
    }
}

/// CPU seconds run by this process's threads so far (Linux scheduler counters, nanoseconds);
/// `None` where /proc is unavailable.
pub fn process_cpu_seconds() -> Option<f64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut ns = 0u64;
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 * 1e-9)
}

/// The 1-minute load average, to record how busy the machine was during a measurement.
fn load_average() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Wall and CPU seconds of each timed repeat.
struct Timings {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Timings {
    fn measure(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timings> {
        let mut t = Timings {
            wall: Vec::new(),
            cpu: Vec::new(),
        };
        for _ in 0..repeats {
            let (c0, w0) = (process_cpu_seconds(), Instant::now());
            f()?;
            t.wall.push(w0.elapsed().as_secs_f64());
            t.cpu.push(
                process_cpu_seconds()
                    .zip(c0)
                    .map_or(f64::NAN, |(a, b)| a - b),
            );
        }
        Ok(t)
    }
}

/// Mean and population standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.predict {
        let (c, m) = (workload_cfg(args)?, args.measured.as_deref());
        let r = crate::perf::bench_predict_report(&c.spec, c.students, c.batch, c.test_images, m)?;
        print!("{r}");
        return Ok(());
    }
    let choice = DeviceChoice::parse(&args.device)
        .map_err(|e| Error::config(format!("bench --device: {e}")))?;
    let (opened, line) = choice.open(Origin::Flag)?;
    eprintln!("{line}");
    let on_device = || match &opened {
        Opened::Cpu(be) => run_on(be, args),
        Opened::Cuda(be) => run_on(be, args),
    };
    match args.threads {
        // The CPU backend's threads (the emulator runs its own pool).
        Some(t) => rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| Error::config(format!("bench: cannot start {t} threads: {e}")))?
            .install(on_device),
        None => on_device(),
    }
}

/// The benchmarked student: `--model` on CIFAR-10-shaped input.
fn bench_net(args: &BenchArgs) -> Result<Net> {
    Net::from_name(&args.model, 3, 32, 10)
}

/// The sizes of the run; `spec` is the model's for a ConvNet (the perf model needs it) and
/// ConvNet-3's otherwise (unused: `Workload::with_net` takes the network).
fn workload_cfg(args: &BenchArgs) -> Result<WorkloadCfg> {
    let spec = match bench_net(args)?.convnet() {
        Some(c) => c.spec,
        None if args.predict => {
            return Err(Error::config(format!(
                "bench --predict: the performance model covers ConvNet only, not {}",
                args.model
            )))
        }
        None => ConvNetSpec::from_name("ConvNet-3", 3, 32, 10)?,
    };
    WorkloadCfg {
        spec,
        students: args.students,
        batch: args.batch,
        test_images: args.test_images,
        test_batch: args.test_batch,
    }
    .checked()
}

fn run_on<B: Backend>(be: &B, args: &BenchArgs) -> Result<()> {
    if args.profile {
        return profile_on(be, args);
    }
    let cfg = workload_cfg(args)?;
    let net = bench_net(args)?;
    let conv = net.convnet().map(|c| c.spec);
    let mut w = Workload::with_net(be, &cfg, net)?;
    let threads = rayon::current_num_threads();
    let load_before = load_average();
    for _ in 0..args.warmup {
        w.train_step()?;
    }
    let train = Timings::measure(args.repeats.max(1), || w.train_step())?;
    w.test_pass(Some(args.warmup * args.test_batch))?;
    let test = Timings::measure(args.test_repeats.max(1), || w.test_pass(None).map(|_| ()))?;
    let load_after = load_average();

    let (tw, tw_sd) = mean_std(&train.wall);
    let (tc, _) = mean_std(&train.cpu);
    let (ew, ew_sd) = mean_std(&test.wall);
    let (ec, _) = mean_std(&test.cpu);
    let th = threads as f64;
    let report = serde_json::json!({
        "train_step_img_per_s": w.train_images() as f64 / tw,
        "test_img_per_s": w.test_images() as f64 / ew,
        "device": be.describe(),
        "threads": threads,
        "model": args.model,
        "width": conv.map(|s| s.width),
        "norm": conv.map(|s| format!("{:?}", s.norm)),
        "students": args.students,
        "batch": args.batch,
        "test_images": args.test_images,
        "test_batch": args.test_batch,
        "warmup": args.warmup,
        "n_train_steps": train.wall.len(),
        "n_test_passes": test.wall.len(),
        "train_step_ms_mean": tw * 1e3,
        "train_step_ms_std": tw_sd * 1e3,
        "test_pass_s_mean": ew,
        "test_pass_s_std": ew_sd,
        // Throughput per CPU-second of `threads` busy threads: what the wall numbers would be on
        // an otherwise idle machine if the threads were never descheduled.
        "train_step_img_per_s_cpu_time": w.train_images() as f64 / (tc / th),
        "test_img_per_s_cpu_time": w.test_images() as f64 / (ec / th),
        "cpu_busy_fraction": (train.cpu.iter().sum::<f64>() + test.cpu.iter().sum::<f64>())
            / ((train.wall.iter().sum::<f64>() + test.wall.iter().sum::<f64>()) * th),
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": load_after,
        "version": crate::VERSION,
    });
    if args.json {
        println!("{report:#}");
    } else {
        println!(
            "ddr-fast {} bench of {} on {}",
            crate::VERSION,
            args.model,
            be.describe()
        );
        println!(
            "{} students × batch {}: training step {:.1} ± {:.1} ms  → {:.0} img/s  ({:.0} img/s by CPU time)",
            args.students,
            args.batch,
            tw * 1e3,
            tw_sd * 1e3,
            report["train_step_img_per_s"].as_f64().unwrap_or(f64::NAN),
            report["train_step_img_per_s_cpu_time"].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "test pass over {} images (batch {}): {:.2} ± {:.2} s → {:.0} img/s  ({:.0} img/s by CPU time)",
            args.test_images,
            args.test_batch,
            ew,
            ew_sd,
            report["test_img_per_s"].as_f64().unwrap_or(f64::NAN),
            report["test_img_per_s_cpu_time"].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "load average before/after: {:?} / {:?}; CPU busy fraction {:.2}",
            load_before,
            load_after,
            report["cpu_busy_fraction"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// The per-op breakdown of `repeats` training steps and `warmup` (≥ 1) test batches.
fn profile_on<B: Backend>(be: &B, args: &BenchArgs) -> Result<()> {
    let timed = Timed::new(be);
    let mut w = Workload::with_net(&timed, &workload_cfg(args)?, bench_net(args)?)?;
    w.train_step()?;
    let th = rayon::current_num_threads() as f64;
    let print = |title: &str, per: f64, what: &str| {
        let rows = timed.report();
        let total: f64 = rows.iter().map(|r| r.1.wall).sum();
        println!("{title}");
        println!(
            "{:<40} {:>10} {:>10} {:>7}",
            "op", "wall ms", "CPU ms/th", "share"
        );
        for (label, t) in &rows {
            println!(
                "{label:<40} {:>10.2} {:>10.2} {:>6.1}%",
                t.wall / per * 1e3,
                t.cpu / th / per * 1e3,
                100.0 * t.wall / total
            );
        }
        println!("{:<40} {:>10.2}   (per {what})", "total", total / per * 1e3);
    };
    timed.reset();
    let steps = args.repeats.max(1);
    for _ in 0..steps {
        w.train_step()?;
    }
    print(
        &format!(
            "training step, {} students × batch {}, {steps} steps, {th} threads",
            args.students, args.batch
        ),
        steps as f64,
        "step",
    );
    let batches = args.warmup.max(1);
    w.test_pass(Some(args.test_batch))?;
    timed.reset();
    w.test_pass(Some(batches * args.test_batch))?;
    print(
        &format!(
            "\ntest forward, {batches} batches of {} images",
            args.test_batch
        ),
        batches as f64,
        "test batch",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    /// A tiny workload runs end to end: the step changes every student's parameters, and a test
    /// pass with a remainder batch counts at most one correct answer per student and image.
    #[test]
    fn tiny_workload_trains_and_tests() {
        let be = CpuBackend::new();
        let spec = ConvNetSpec::from_name("ConvNet-2-W8", 3, 32, 10).unwrap();
        let cfg = WorkloadCfg {
            spec,
            students: 2,
            batch: 3,
            test_images: 7,
            test_batch: 4,
        };
        let mut w = Workload::new(&be, &cfg).unwrap();
        let before = be.download(&w.params).unwrap();
        w.train_step().unwrap();
        let after = be.download(&w.params).unwrap();
        for (s, (a, b)) in before
            .chunks(w.net.param_len())
            .zip(after.chunks(w.net.param_len()))
            .enumerate()
        {
            assert_ne!(a, b, "student {s} did not move");
        }
        assert_eq!(w.test_pass(None).unwrap(), 7);
        let correct = be.download(&w.correct).unwrap();
        assert!(
            correct.iter().all(|&c| c <= 7),
            "correct counts {correct:?} exceed the 7 images"
        );
        assert_eq!((w.train_images(), w.test_images()), (6, 14));
    }

    #[test]
    fn unknown_device_is_a_clear_error() {
        let args = BenchArgs {
            json: true,
            device: "tpu".into(),
            model: "ConvNet-3".into(),
            students: 1,
            batch: 1,
            test_images: 1,
            test_batch: 1,
            warmup: 0,
            repeats: 1,
            test_repeats: 1,
            threads: None,
            profile: false,
            predict: false,
            measured: None,
        };
        let err = run(&args).unwrap_err().to_string();
        assert!(
            err.contains("tpu") && err.contains("cpu") && err.contains("emulated"),
            "unhelpful error: {err}"
        );
    }

    /// The emulated device runs the same workload through the CUDA backend (tiny sizes: the
    /// emulator is slow), and `--device cuda` is accepted by the parser: with a GPU it runs, without
    /// one it is one error naming the device.
    #[test]
    fn emulated_runs_and_cuda_is_accepted() {
        let tiny = |device: &str| BenchArgs {
            json: true,
            device: device.into(),
            model: "ConvNet-2-W8".into(),
            students: 2,
            batch: 2,
            test_images: 4,
            test_batch: 2,
            warmup: 1,
            repeats: 1,
            test_repeats: 1,
            threads: None,
            profile: false,
            predict: false,
            measured: None,
        };
        run(&tiny("emulated")).unwrap();
        if crate::backend::cuda::CudaBackend::new(0).is_err() {
            let err = run(&tiny("cuda")).unwrap_err().to_string();
            assert!(err.contains("--device cuda:0"), "unhelpful error: {err}");
        }
    }
}
