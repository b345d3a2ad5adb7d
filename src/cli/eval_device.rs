//! The device side of `ddr-fast eval`: which device a dry run plans for (a GPU that is not on this
//! machine included, from a stated memory size) and how many students a cohort holds there.

use crate::backend::cuda::choice::why_not;
use crate::backend::cuda::CudaBackend;
use crate::backend::{Backend, DeviceChoice, DeviceMemory, Origin};
use crate::error::Result;
use crate::metrics::config::EvalConfig;
use crate::metrics::execute::{model_net, Inputs};
use crate::metrics::plan::{n_train, plan, DataSource, PlanSizes, Training};
use crate::train::memory::{
    shared_bytes, student_bytes, students_that_fit, CohortShape, MEMORY_MARGIN,
};

/// Students per cohort where device memory does not bound S (the CPU, the unbounded emulator):
/// enough to amortise each op's fixed cost over students, small enough that a cohort's
/// activations stay within a few GB of host memory at width 128.
pub const DEFAULT_STUDENTS: usize = 16;

/// Device memory a dry run assumes for a GPU that is not on this machine: an H100 SXM's 80 GB.
pub const ASSUMED_GPU_GB: f64 = 80.0;

/// What a dry run plans for.
pub struct DryTarget {
    /// "cpu", "cuda" or "cuda-emulated": the device kind of the cache keys and the estimate.
    pub kind: &'static str,
    /// The device in words.
    pub describe: String,
    /// Its memory, when it bounds the cohort size.
    pub memory: Option<DeviceMemory>,
    /// The line printed to stderr: which device and, when it is not the one asked for, why.
    pub line: String,
}

impl DryTarget {
    /// The device a dry run plans for. Like `DeviceChoice::open`, except that a flag's
    /// `cuda[:N]` without that GPU plans for one with `gb` (default [`ASSUMED_GPU_GB`]) GB instead
    /// of failing: planning a GPU run needs no GPU.
    pub fn resolve(choice: DeviceChoice, origin: Origin, gb: Option<f64>) -> Result<Self> {
        let stated = |gb: f64| {
            let total = (gb * 1e9) as u64;
            DeviceMemory { free: total, total }
        };
        let cpu = |line: String| DryTarget {
            kind: "cpu",
            describe: crate::backend::cpu::CpuBackend::new().describe(),
            memory: None,
            line,
        };
        let gpu = |b: CudaBackend, line: String| -> Result<DryTarget> {
            let memory = match gb {
                Some(g) => Some(stated(g)),
                None => b.memory()?,
            };
            Ok(DryTarget {
                kind: if b.is_emulated() {
                    "cuda-emulated"
                } else {
                    "cuda"
                },
                describe: b.describe(),
                memory,
                line,
            })
        };
        match (choice, origin) {
            (DeviceChoice::Cpu, _) => Ok(cpu("device: cpu".into())),
            (DeviceChoice::Emulated, _) => gpu(
                CudaBackend::emulated(),
                "device: cuda-emulated (the CUDA kernels on the host emulator; very slow)".into(),
            ),
            (DeviceChoice::Auto, _) => match CudaBackend::new(0) {
                Ok(b) => gpu(b, "device: cuda:0 (auto: a GPU is present)".into()),
                Err(e) => Ok(cpu(format!(
                    "device: cpu (auto: no usable GPU: {})",
                    why_not(&e)
                ))),
            },
            (DeviceChoice::Cuda(n), origin) => match (CudaBackend::new(n), origin) {
                (Ok(b), _) => gpu(b, format!("device: cuda:{n}")),
                (Err(e), Origin::Config) => Ok(cpu(format!(
                    "warning: the config asks for device cuda:{n}, but {}; planning for the CPU \
                     instead (pass --device to choose)",
                    why_not(&e)
                ))),
                (Err(e), Origin::Flag) => {
                    let g = gb.unwrap_or(ASSUMED_GPU_GB);
                    let source = if gb.is_some() {
                        "given by --device-memory"
                    } else {
                        "assumed: an H100's; pass --device-memory GB to change"
                    };
                    Ok(DryTarget {
                        kind: "cuda",
                        describe: format!("cuda:{n} with {g} GB of memory ({source})"),
                        memory: Some(stated(g)),
                        line: format!(
                            "note: no GPU on this machine ({}); planning for cuda:{n} with {g} GB \
                             of memory ({source})",
                            why_not(&e)
                        ),
                    })
                }
            },
        }
    }
}

/// Students per cohort and why: `--max-students` when given, else as many as the device's free
/// memory holds for the plan's most demanding training (largest batch and training set), else
/// [`DEFAULT_STUDENTS`].
pub fn cohort_students(
    given: Option<usize>,
    memory: Option<DeviceMemory>,
    cfg: &EvalConfig,
    inputs: &Inputs,
) -> Result<(usize, String)> {
    if let Some(n) = given {
        return Ok((n.max(1), "--max-students".into()));
    }
    let Some(mem) = memory else {
        return Ok((
            DEFAULT_STUDENTS,
            "the default where device memory does not bound it".into(),
        ));
    };
    let p = plan(cfg, &inputs.ids)?;
    let sizes = PlanSizes {
        n_syn: inputs.syn.len(),
        n_full: inputs.train.len(),
        classes: inputs.train.classes,
    };
    let worst = |f: &dyn Fn(&Training) -> usize| {
        p.trainings
            .iter()
            .map(|t| f(&t.training))
            .max()
            .unwrap_or(0)
    };
    let own = |t: &Training| matches!(t.data, DataSource::Random { .. });
    let shape = CohortShape {
        net: model_net(cfg, &inputs.train)?,
        batch: worst(&|t| t.batch_size).max(1),
        own_images: worst(&|t| if own(t) { n_train(t, sizes) } else { 0 }),
        shared_images: worst(&|t| if own(t) { 0 } else { n_train(t, sizes) }),
        n_test: inputs.test.len(),
        teachers: inputs.teachers.len(),
    };
    let s = students_that_fit(mem, &shape);
    let gb = |b: u64| b as f64 / 1e9;
    Ok((
        s,
        format!(
            "{:.1} GB free of {:.1} GB less a {:.0}% margin; {:.1} MB per student (batch {}, {} \
             images of its own) + {:.2} GB shared (training sets of {} images, test set, teachers)",
            gb(mem.free),
            gb(mem.total),
            100.0 * MEMORY_MARGIN,
            student_bytes(&shape) as f64 / 1e6,
            shape.batch,
            shape.own_images,
            gb(shared_bytes(&shape)),
            shape.shared_images
        ),
    ))
}
