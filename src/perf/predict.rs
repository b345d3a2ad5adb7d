//! Launch → time on a GPU, and a plan's cohorts → time and students per hour.
//!
//! A GEMM launch takes the longest of three bounds, divided by the assumed main-loop efficiency:
//! - tensor: its (padded) MMAs × the mode's MMAs per multiply-add at the dense datasheet rate;
//! - issue: every HMMA brings `other_per_hmma` other instructions (tools/kernel-report.sh), and an
//!   SM issues 4 warp instructions per clock, so (1 + ratio) · HMMAs / (4 · SMs · clock);
//! - memory: its compulsory bytes at the HBM rate.
//!
//! Streaming launches are memory-bound; every launch costs at least `LAUNCH_S`; each test point
//! adds its blocking downloads ([`TEST_POINT_SYNCS`] × `SYNC_S`); a training step adds none.

/// Blocking device → host reads at each test point of a training (src/train/trainer.rs): the
/// per-epoch loss sums and the stop marks (`EpochTables::read`, two downloads), then the test
/// pass's correct counts (`TestFeed::pass`). A training step reads nothing back: its launches are
/// a replayed step graph and its loss stays on the device (`Backend::loss_watch`;
/// src/train/step_graph.rs), so the model charges no per-step sync.
pub const TEST_POINT_SYNCS: f64 = 3.0;

use super::gpu::{
    GpuSpec, TensorMode, HBM_EFFICIENCY, ISSUE_PER_CLK_SM, L2_EFFICIENCY, LAUNCH_S,
    MAINLOOP_EFFICIENCY, SYNC_S,
};
use super::kernels::{test_chunk_in, train_step, Launch};
use crate::model::ConvNetSpec;

/// The tensor modes of a plan: training (every pass of a step) and test passes (eval-mode
/// forwards, `--test-precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modes {
    pub train: TensorMode,
    pub test: TensorMode,
}

impl Modes {
    /// "TF32" when both agree, else "TF32 + bf16 test".
    pub fn name(&self) -> String {
        if self.train == self.test {
            self.train.name().to_string()
        } else {
            format!("{} + {} test", self.train.name(), self.test.name())
        }
    }
}

/// One mode for training and testing.
impl From<TensorMode> for Modes {
    fn from(m: TensorMode) -> Modes {
        Modes { train: m, test: m }
    }
}

/// The eval kernels of [`MainLoops::eval`], in its order (cuda/conv_eval.cu, then
/// cuda/conv_eval_plane.cu).
pub const EVAL_KERNELS: [&str; 3] = [
    "conv3x3_eval_direct_tf32",
    "conv3x3_eval_direct_bf16",
    "conv3x3_eval_plane_bf16",
];

/// Main-loop instruction mix: other instructions per HMMA of each conv pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MainLoops {
    pub forward: f64,
    pub backward_input: f64,
    pub backward_weight: f64,
    /// The bf16 forward (cuda/conv_bf16.cu), per HMMA.16816 (twice an HMMA.1688's work): the
    /// main loop that copies weights 16 bytes at a time (conv_gemm_bf16.cuh, `b_k_vec4`: K % 4 = 0
    /// and 16-byte aligned weight rows; the kernel report's rows with 128-bit LDGSTS).
    pub bf16_forward: f64,
    /// The same kernels' other main loop, weights by 4-byte copies (layer 1's K = 27, or weight
    /// rows not 16-byte aligned; the report's rows without 128-bit LDGSTS).
    pub bf16_forward_4byte: f64,

    /// The eval kernels that keep y on chip, one per kernel: TF32 direct and bf16 direct
    /// (cuda/conv_eval.cu: A fragments read from the image in shared memory, y in shared memory)
    /// and the bf16 small-plane kernel (cuda/conv_eval_plane.cu: ldmatrix fragments, y in
    /// registers), in [`EVAL_KERNELS`] order; bf16 per HMMA.16816.
    pub eval: [f64; 3],
    /// Where the ratios came from (a kernel report file, or the committed target).
    pub source: &'static str,
}

impl MainLoops {
    /// The issue's target (≤ 4 per HMMA). Not yet reached: the TF32 conv main loops measure
    /// 4.3–5.3 (benches/README.md, "Kernel report"); `DDR_KERNEL_REPORT=<tsv>` uses measured ratios.
    pub fn target() -> MainLoops {
        let r = super::gpu::TARGET_OTHER_PER_HMMA;
        MainLoops {
            forward: r,
            backward_input: r,
            backward_weight: r,
            bf16_forward: r,
            bf16_forward_4byte: r,
            eval: [r; 3],
            source: "the issue's target of ≤ 4 other instructions per HMMA, not yet reached (measured 4.3–5.3; DDR_KERNEL_REPORT=benches/results/kernel-report.tsv uses the measured ratios)",
        }
    }

    fn for_launch(&self, l: &Launch, mode: TensorMode) -> f64 {
        let name = &l.name;
        // An eval-kernel launch ends with its kernel's name (kernels.rs push_block).
        if let Some(i) = EVAL_KERNELS
            .iter()
            .position(|k| name.ends_with(&format!("{k})")))
        {
            return self.eval[i];
        }
        if mode == TensorMode::Bf16 {
            // Only the forward has bf16 kernels; a bf16 training pass is a what-if at its ratios.
            // Each grid-z slice runs the loop its weight rows allow (`Launch::b_vec4`).
            l.b_vec4 * self.bf16_forward + (1.0 - l.b_vec4) * self.bf16_forward_4byte
        } else if name.contains("backward_weight") {
            self.backward_weight
        } else if name.contains("backward_input") {
            self.backward_input
        } else {
            self.forward
        }
    }
}

/// How one launch's time was bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Tensor,
    Issue,
    Memory,
    /// Operand reads through L2 ([`Launch::l2_bytes`]).
    L2,
    Simt,
    Launch,
}

/// Seconds of one launch and what bounded it.
pub fn launch_time(l: &Launch, gpu: &GpuSpec, mode: TensorMode, loops: &MainLoops) -> (f64, Bound) {
    let mut best = (l.bytes / (gpu.hbm_bytes * HBM_EFFICIENCY), Bound::Memory);
    let mut take = |t: f64, b: Bound| {
        if t > best.0 {
            best = (t, b);
        }
    };
    take(l.l2_bytes / (gpu.l2_bytes() * L2_EFFICIENCY), Bound::L2);
    if let Some(g) = l.gemm {
        let macs = g.padded_macs() * mode.mma_per_mac();
        let tensor = 2.0 * macs / gpu.tensor_flops(mode) / MAINLOOP_EFFICIENCY;
        let hmma = macs / mode.macs_per_hmma();
        let slots = hmma * (1.0 + loops.for_launch(l, mode));
        let issue =
            slots / (ISSUE_PER_CLK_SM * gpu.sms as f64 * gpu.clock_hz()) / MAINLOOP_EFFICIENCY;
        take(tensor, Bound::Tensor);
        take(issue, Bound::Issue);
    }
    if l.simt_macs > 0.0 {
        // Small reductions (K = 10 classes, fin = 2,048): half the fp32 peak at best.
        take(2.0 * l.simt_macs / (gpu.fp32_flops * 0.5), Bound::Simt);
    }
    take(LAUNCH_S, Bound::Launch);
    best
}

/// Seconds of one training step and one test pass of `test_len` images for a cohort of `s`.
#[allow(clippy::too_many_arguments)]
pub fn cohort_times(
    spec: &ConvNetSpec,
    s: usize,
    batch: usize,
    test_len: usize,
    test_chunk_len: usize,
    gpu: &GpuSpec,
    modes: impl Into<Modes>,
    loops: &MainLoops,
) -> (f64, f64) {
    let modes = modes.into();
    let sum = |ls: Vec<Launch>, mode: TensorMode| {
        ls.iter()
            .map(|l| launch_time(l, gpu, mode, loops).0)
            .sum::<f64>()
    };
    let step = sum(train_step(spec, s, batch), modes.train);
    let full = test_len / test_chunk_len.max(1);
    let rest = test_len % test_chunk_len.max(1);
    let chunk = |n| sum(test_chunk_in(spec, s, n, modes.test), modes.test);
    let mut test = full as f64 * chunk(test_chunk_len) + TEST_POINT_SYNCS * SYNC_S;
    if rest > 0 {
        test += chunk(rest);
    }
    (step, test)
}

/// One cohort of the plan, as the model needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CohortWork {
    pub students: usize,
    pub n_train: usize,
    pub batch: usize,
    pub epochs: usize,
    pub tests: usize,
}

/// Seconds of a whole cohort training.
#[allow(clippy::too_many_arguments)]
pub fn cohort_seconds(
    spec: &ConvNetSpec,
    c: &CohortWork,
    test_len: usize,
    test_chunk_len: usize,
    gpu: &GpuSpec,
    modes: impl Into<Modes>,
    loops: &MainLoops,
) -> f64 {
    let mode = modes.into();
    let b = c.batch.min(c.n_train).max(1);
    let full = c.n_train / b;
    let rest = c.n_train % b;
    let (step, test) = cohort_times(
        spec,
        c.students,
        b,
        test_len,
        test_chunk_len,
        gpu,
        mode,
        loops,
    );
    let mut epoch = full as f64 * step;
    if rest > 0 {
        epoch += cohort_times(spec, c.students, rest, 0, test_chunk_len, gpu, mode, loops).0;
    }
    c.epochs as f64 * epoch + c.tests as f64 * test
}

/// Where a cohort's predicted time goes: seconds of the whole cohort training per kind of launch
/// (conv GEMMs, norm passes, ... of training steps and of test passes, launch-bound launches and
/// the blocking syncs), largest first. The kinds sum to [`cohort_seconds`].
#[allow(clippy::too_many_arguments)]
pub fn cohort_breakdown(
    spec: &ConvNetSpec,
    c: &CohortWork,
    test_len: usize,
    test_chunk_len: usize,
    gpu: &GpuSpec,
    modes: impl Into<Modes>,
    loops: &MainLoops,
) -> Vec<(String, f64)> {
    let modes = modes.into();
    let mut kinds: Vec<(String, f64)> = Vec::new();
    let mut add = |kind: String, t: f64| match kinds.iter_mut().find(|k| k.0 == kind) {
        Some(k) => k.1 += t,
        None => kinds.push((kind, t)),
    };
    let mut charge = |ls: Vec<Launch>, times: f64, pass: &str| {
        let mode = if pass == "test" {
            modes.test
        } else {
            modes.train
        };
        for l in &ls {
            let (t, bound) = launch_time(l, gpu, mode, loops);
            let kind = if bound == Bound::Launch {
                format!(
                    "{pass}: launch-bound launches (≤ {:.0} µs of work)",
                    LAUNCH_S * 1e6
                )
            } else {
                format!("{pass}: {} ({bound:?}-bound)", launch_kind(&l.name))
            };
            add(kind, t * times);
        }
    };
    let b = c.batch.min(c.n_train).max(1);
    let (full, rest) = (c.n_train / b, c.n_train % b);
    let steps = (c.epochs * full) as f64;
    charge(train_step(spec, c.students, b), steps, "train");
    if rest > 0 {
        charge(train_step(spec, c.students, rest), c.epochs as f64, "train");
    }
    let chunk = test_chunk_len.max(1);
    let tests = c.tests as f64;
    charge(
        test_chunk_in(spec, c.students, chunk, modes.test),
        tests * (test_len / chunk) as f64,
        "test",
    );
    if test_len % chunk > 0 {
        charge(
            test_chunk_in(spec, c.students, test_len % chunk, modes.test),
            tests,
            "test",
        );
    }
    add(
        "test: blocking syncs".into(),
        tests * TEST_POINT_SYNCS * SYNC_S,
    );
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    kinds
}

/// The kind of a launch for [`cohort_breakdown`], from its name in the kernel plan.
fn launch_kind(name: &str) -> &'static str {
    if name.starts_with("conv") {
        if name.contains("backward_weight") {
            "conv GEMM weight gradient"
        } else if name.contains("backward_input") {
            "conv GEMM input gradient"
        } else {
            "conv GEMM forward"
        }
    } else if name.starts_with("norm") {
        "norm → ReLU → pool passes"
    } else if name.starts_with("linear") || name.starts_with("loss") || name.starts_with("count") {
        "linear head, loss, count"
    } else if name.starts_with("optimizer") {
        "optimizer step"
    } else {
        "gather, augment"
    }
}

#[cfg(test)]
mod tests {
    use super::super::gpu::{H100_SXM, H200_SXM};
    use super::*;

    fn convnet3() -> ConvNetSpec {
        ConvNetSpec::from_name("ConvNet-3", 3, 32, 10).unwrap()
    }

    fn ipc10(students: usize) -> CohortWork {
        CohortWork {
            students,
            n_train: 100,
            batch: 256,
            epochs: 1000,
            tests: 50,
        }
    }

    /// The model never beats the arithmetic floor (80.5 TFLOP per student at the dense rate).
    #[test]
    fn never_faster_than_the_tensor_floor() {
        let spec = convnet3();
        for mode in TensorMode::ALL {
            let t = cohort_seconds(
                &spec,
                &ipc10(16),
                10_000,
                500,
                &H100_SXM,
                mode,
                &MainLoops::target(),
            ) / 16.0;
            let floor = 80.5e12 * mode.mma_per_mac() / H100_SXM.tensor_flops(mode);
            assert!(
                t > floor,
                "{mode:?}: {t} s per student below the floor {floor}"
            );
        }
    }

    /// More instructions per HMMA, more bandwidth, and more students per launch move the
    /// prediction the way they must.
    #[test]
    fn prediction_responds_to_its_inputs() {
        let spec = convnet3();
        let t = |gpu: &GpuSpec, loops: &MainLoops, s: usize| {
            cohort_seconds(&spec, &ipc10(s), 10_000, 500, gpu, TensorMode::Tf32, loops) / s as f64
        };
        let slow = MainLoops {
            forward: 20.0,
            backward_input: 20.0,
            backward_weight: 20.0,
            bf16_forward: 20.0,
            bf16_forward_4byte: 20.0,
            eval: [20.0; 3],
            source: "test",
        };
        let target = MainLoops::target();
        assert!(t(&H100_SXM, &slow, 16) > 1.5 * t(&H100_SXM, &target, 16));
        assert!(t(&H200_SXM, &target, 16) < t(&H100_SXM, &target, 16));
        assert!(t(&H100_SXM, &target, 1) > t(&H100_SXM, &target, 16));
    }

    /// The breakdown's kinds add up to the cohort's time.
    #[test]
    fn breakdown_sums_to_the_cohort_time() {
        let spec = convnet3();
        let loops = MainLoops::target();
        let (c, gpu, mode) = (ipc10(16), H100_SXM, TensorMode::Tf32);
        let total = cohort_seconds(&spec, &c, 10_000, 500, &gpu, mode, &loops);
        let parts = cohort_breakdown(&spec, &c, 10_000, 500, &gpu, mode, &loops);
        let sum: f64 = parts.iter().map(|p| p.1).sum();
        assert!(
            (sum - total).abs() / total < 1e-9,
            "{sum} vs {total}: {parts:?}"
        );
        assert!(parts.windows(2).all(|w| w[0].1 >= w[1].1));
    }

    /// A bf16 launch takes the main loops its grid slices run (`Launch::b_vec4`): layer 1's
    /// K = 27 the 4-byte loop, blocks 2–3 half each (ConvNet-3's odd students' weights are not
    /// 16-byte aligned); the eval kernel its own slot; a TF32 launch neither.
    #[test]
    fn bf16_launches_take_the_loop_their_weights_allow() {
        let loops = MainLoops {
            bf16_forward: 4.0,
            bf16_forward_4byte: 5.0,
            forward: 3.0,
            ..MainLoops::target()
        };
        let ratio = |plan: &[Launch], prefix: &str, mode: TensorMode| {
            let l = plan
                .iter()
                .find(|l| l.name.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} launch"));
            loops.for_launch(l, mode)
        };
        let train = train_step(&convnet3(), 16, 256);
        assert_eq!(ratio(&train, "conv1 forward", TensorMode::Bf16), 5.0);
        assert_eq!(ratio(&train, "conv2 forward", TensorMode::Bf16), 4.5);
        assert_eq!(ratio(&train, "conv2 forward", TensorMode::Tf32), 3.0);
        // A test pass: blocks run by an eval kernel take its slot, the others the mix.
        let test = test_chunk_in(&convnet3(), 16, 500, TensorMode::Bf16);
        for (d, mix) in [(1, 5.0), (2, 4.5), (3, 4.5)] {
            let prefix = format!("conv{d} forward");
            let l = test.iter().find(|l| l.name.starts_with(&prefix)).unwrap();
            let want = match EVAL_KERNELS
                .iter()
                .position(|k| l.name.ends_with(&format!("{k})")))
            {
                Some(i) => loops.eval[i],
                None => mix,
            };
            assert_eq!(ratio(&test, &prefix, TensorMode::Bf16), want, "{}", l.name);
        }
        // One student: its weights start aligned, all 16-byte.
        let one = train_step(&convnet3(), 1, 256);
        assert_eq!(ratio(&one, "conv2 forward", TensorMode::Bf16), 4.0);
    }

    /// A tiny launch costs the launch overhead; a big GEMM at ratio 20 is issue-bound.
    #[test]
    fn bounds_are_named_right() {
        let loops = MainLoops {
            forward: 20.0,
            backward_input: 20.0,
            backward_weight: 20.0,
            bf16_forward: 20.0,
            bf16_forward_4byte: 20.0,
            eval: [20.0; 3],
            source: "test",
        };
        let tiny = Launch {
            name: "x".into(),
            gemm: None,
            simt_macs: 0.0,
            bytes: 8.0,
            b_vec4: 0.0,
            l2_bytes: 0.0,
        };
        // A launch whose L2 reads outlast its HBM bytes and tensor work is L2-bound.
        let l2 = Launch {
            l2_bytes: 1e12,
            ..tiny.clone()
        };
        let (t, b) = launch_time(&l2, &H100_SXM, TensorMode::Tf32, &loops);
        assert_eq!(b, Bound::L2);
        assert!((t - 1e12 / (H100_SXM.l2_bytes() * L2_EFFICIENCY)).abs() < 1e-12 * t);
        assert_eq!(
            launch_time(&tiny, &H100_SXM, TensorMode::Tf32, &loops).1,
            Bound::Launch
        );
        let plan = train_step(&convnet3(), 16, 100);
        let big = plan
            .iter()
            .find(|l| l.name.starts_with("conv2 forward"))
            .expect("the plan has conv2's forward");
        assert_eq!(
            launch_time(big, &H100_SXM, TensorMode::Tf32, &loops).1,
            Bound::Issue
        );
    }
}
