//! How many students a cohort can hold on a device: the bytes one student needs (its share of the
//! trainer's buffers, computed from the model and the batch exactly as the trainer allocates them),
//! the bytes shared by the whole cohort (the test set, the teachers), and the free memory the
//! device reports, less a stated margin. The planner prints the result; an out-of-memory error at
//! run time still halves S and retries (`metrics::execute`), so the model only has to be close.

use crate::model::{ConvNetSpec, Net};
use crate::train::trainer::TEST_BATCH;

/// Fraction of the free memory left unused: the CUDA context and loaded modules grow after the
/// query, the allocator rounds and fragments, and the model below ignores a few small buffers
/// (the per-epoch loss sums, the clock).
pub const MEMORY_MARGIN: f64 = 0.15;

pub use crate::backend::DeviceMemory;

/// What decides a cohort's memory besides S.
#[derive(Clone, Debug)]
pub struct CohortShape {
    /// The student network (a ConvNet or a layer list).
    pub net: Net,
    /// Training batch per student.
    pub batch: usize,
    /// Images of a training set of its own per student (random subsets differ per run).
    pub own_images: usize,
    /// Images of a training set all students share (the synthetic set, the full real set): the
    /// trainer uploads each distinct set once per cohort.
    pub shared_images: usize,
    /// Images of the test set (shared).
    pub n_test: usize,
    /// Teachers resident for mode-M targets (shared).
    pub teachers: usize,
}

/// f32 values of one student's forward activations at `batch` images: conv outputs, norm
/// statistics (an upper bound: two per channel and image) and pooled outputs of every block, and
/// the logits; `ConvNet::workspace` allocates exactly these.
fn activation_floats(spec: &ConvNetSpec, batch: usize) -> u64 {
    let w = spec.width as u64;
    let b = batch as u64;
    let mut n = b * spec.classes as u64;
    for d in 0..spec.depth {
        let hw = spec.block_conv_hw(d) as u64;
        n += b * w * hw * hw + 2 * b * w + b * w * (hw / 2) * (hw / 2);
    }
    n
}

/// Rows of the CUDA backend's conv register tiles (TF32 256; 3xTF32 and bf16 128): the scratch
/// holds the partials of whichever gives the most (src/backend/cuda/ops/fused.rs `partials_len`).
const TILE_ROWS: [usize; 2] = [256, 128];

/// f32 values of one student's fused-forward scratch at `batch` images: per block, the per-tile
/// (count, mean, M2) norm partials of the CUDA fused conv + norm (`Backend::conv_norm_scratch_len`
/// / S: m_tiles × width × images per tile × 3), which `ConvNet::workspace` allocates per block.
fn scratch_floats(spec: &ConvNetSpec, batch: usize) -> u64 {
    (0..spec.depth)
        .map(|d| {
            let px = spec.block_conv_hw(d).pow(2);
            TILE_ROWS
                .iter()
                .map(|&bm| {
                    let m_tiles = (batch * px).div_ceil(bm);
                    let seg_max = ((bm - 1) / px.max(1) + 2).min(batch);
                    (m_tiles * spec.width * seg_max * 3) as u64
                })
                .max()
                .unwrap_or(0)
        })
        .sum()
}

/// f32 values of one ConvNet student's workspace at `batch` images: activations (with gradients
/// when training) and the fused forward's scratch.
fn convnet_workspace_floats(spec: &ConvNetSpec, batch: usize, with_grad: bool) -> u64 {
    let a = activation_floats(spec, batch);
    if batch == 0 {
        return 0;
    }
    a * if with_grad { 2 } else { 1 } + scratch_floats(spec, batch)
}

/// f32 values of one student's workspace at `batch` images, for either kind of network. A layer
/// list's evaluation workspace also holds its copy of the shared test chunk
/// (`Net::forward_shared_input` copies the chunk once per student).
fn workspace_floats(net: &Net, batch: usize, with_grad: bool) -> u64 {
    if batch == 0 {
        return 0;
    }
    match (net.convnet(), net.layer_list()) {
        (Some(c), _) => convnet_workspace_floats(&c.spec, batch, with_grad),
        (None, Some(l)) => {
            let copies = if with_grad {
                0
            } else {
                (batch * net.image_len()) as u64
            };
            l.workspace_floats(batch, with_grad) + copies
        }
        (None, None) => unreachable!("a Net is a ConvNet or a layer list"),
    }
}

/// Bytes one student adds to a cohort of this shape.
pub fn student_bytes(c: &CohortShape) -> u64 {
    let net = &c.net;
    let (p, r) = (net.param_len() as u64, net.buffer_len() as u64);
    let img = net.image_len() as u64;
    let k = net.classes() as u64;
    let b = c.batch as u64;
    // Parameters, gradients and two optimizer states (S, P); batch-norm buffers (S, R).
    let weights = 4 * p + r;
    // Training workspace: activations, their gradients and the fused scratch; evaluation
    // workspace at TEST_BATCH (the test chunk itself is one copy for all S: shared_bytes).
    let work = workspace_floats(net, c.batch, true) + workspace_floats(net, TEST_BATCH, false);
    // The batch (images, soft targets, the teachers' mean).
    let batch = b * img + 2 * b * k;
    // Its own training set with stored soft labels.
    let data = c.own_images as u64 * (img + k);
    // The short last batch's training workspace, kept beside the full one (a recorded step
    // names its buffers), and the epoch tables (train::step_graph): a permutation of N and
    // the draws of an epoch, 13 words per image and 7 per step (loss sums, 2 words an epoch,
    // are left to the margin).
    let n = c.own_images.max(c.shared_images) as u64;
    let last = if b > 0 && n > b { n % b } else { 0 };
    let last_work = workspace_floats(net, last as usize, true);
    let tables = n + 13 * n + 7 * n.div_ceil(b.max(1));
    4 * (weights + work + last_work + batch + data + tables) + 4 * 2 * b + 8
}

/// Bytes the cohort needs once, whatever S: the shared training set, the test set and the
/// teachers with their workspace.
pub fn shared_bytes(c: &CohortShape) -> u64 {
    let net = &c.net;
    let img = net.image_len() as u64;
    let k = net.classes() as u64;
    // The test set, the gathered test chunk (one copy read by every student), the shared
    // training set.
    let test = c.n_test as u64 * (img + 1)
        + TEST_BATCH as u64 * img
        + c.shared_images as u64 * (img + k + 1);
    let teachers = c.teachers as u64 * (net.param_len() + net.buffer_len()) as u64;
    let teacher_work = if c.teachers > 0 {
        workspace_floats(net, TEST_BATCH, false)
    } else {
        0
    };
    4 * (test + teachers + teacher_work)
}

/// Students that fit in `mem.free` less [`MEMORY_MARGIN`], at least 1 (a cohort of one that
/// does not fit fails with the device's own out-of-memory error, which names the sizes).
pub fn students_that_fit(mem: DeviceMemory, c: &CohortShape) -> usize {
    let usable = (mem.free as f64 * (1.0 - MEMORY_MARGIN)) as u64;
    let room = usable.saturating_sub(shared_bytes(c));
    ((room / student_bytes(c).max(1)) as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConvNet;

    fn spec(width: usize) -> ConvNetSpec {
        ConvNetSpec::from_name("ConvNet-3", 3, 32, 10)
            .unwrap()
            .with_width(width)
            .unwrap()
    }

    fn shape(width: usize, batch: usize) -> CohortShape {
        CohortShape {
            net: Net::from(spec(width)),
            batch,
            own_images: 100,
            shared_images: 100,
            n_test: 10_000,
            teachers: 1,
        }
    }

    /// The model counts what the trainer allocates: the training workspace of a real ConvNet-3
    /// matches its buffers (checked on the CPU backend, whose buffers are plain vectors).
    #[test]
    fn activations_match_the_workspace() {
        use crate::backend::cpu::CpuBackend;
        let spec = spec(16);
        let be = CpuBackend::new();
        let ws = ConvNet::new(spec).workspace(&be, 1, 5, false).unwrap();
        let mut got = ws.logits().len() as u64;
        for d in 0..spec.depth {
            // The conv output is pooled 2×2 into the block output (even sizes here: 32, 16, 8).
            got += 5 * ws.block_out(d).len() as u64;
        }
        let stats_bound = (0..spec.depth).map(|_| 2 * 5 * 16).sum::<u64>();
        let want = activation_floats(&spec, 5);
        assert!(
            got <= want && want <= got + stats_bound,
            "model {want} floats, workspace {got} (+ ≤ {stats_bound} statistics)"
        );
    }

    /// The scratch model is the CUDA backend's own partials size for its smallest tile, the
    /// largest of its tiles' (what `conv_norm_scratch_len` allocates), per student.
    #[test]
    fn scratch_matches_the_cuda_backend() {
        use crate::backend::cuda::CudaBackend;
        use crate::backend::Backend;
        let spec = spec(16);
        let net = ConvNet::new(spec);
        let be = CudaBackend::emulated();
        for (s, b) in [(1, 5), (3, 7), (2, TEST_BATCH)] {
            let want: usize = (0..spec.depth)
                .map(|d| be.conv_norm_scratch_len(&net.conv_geom(d, s, b)))
                .sum();
            assert_eq!(
                scratch_floats(&spec, b) * s as u64,
                want as u64,
                "S {s} B {b}"
            );
        }
    }

    #[test]
    fn more_memory_more_students_and_wider_nets_fewer() {
        let gb = 1u64 << 30;
        let h100 = DeviceMemory {
            free: 79 * gb,
            total: 80 * gb,
        };
        let small = DeviceMemory {
            free: 8 * gb,
            total: 8 * gb,
        };
        let c = shape(128, 256);
        assert!(students_that_fit(h100, &c) > students_that_fit(small, &c));
        assert!(students_that_fit(h100, &shape(64, 256)) > students_that_fit(h100, &c));
        let tiny = DeviceMemory { free: 1, total: 1 };
        assert_eq!(students_that_fit(tiny, &c), 1);
    }

    /// A layer list's model is exactly what its workspace allocates (CPU buffers are plain
    /// vectors): ResNet-18 (a residual value read twice), VGG-11-BN (batch-norm statistics),
    /// with and without gradients.
    #[test]
    fn layer_list_floats_match_the_workspace() {
        use crate::backend::cpu::CpuBackend;
        let be = CpuBackend::new();
        for name in ["ResNet-18-W4", "VGG-11-W8-BN", "MLP"] {
            let net = Net::from_name(name, 3, 32, 10).unwrap();
            let list = net.layer_list().expect("a layer list");
            for with_grad in [false, true] {
                let (s, b) = (3, 5);
                let ws = list.workspace(&be, s, b, with_grad).unwrap();
                let got = ws.allocated_floats(&be) as u64;
                let want = list.workspace_floats(b, with_grad) * s as u64;
                assert_eq!(got, want, "{name} with_grad {with_grad}");
            }
        }
    }

    /// Cohorts of layer lists are sized too: a ResNet student needs more than a ConvNet-3 one.
    #[test]
    fn resnet_students_cost_more_than_convnet_ones() {
        let mut resnet = shape(128, 256);
        resnet.net = Net::from_name("ResNet-18", 3, 32, 10).unwrap();
        assert!(student_bytes(&resnet) > student_bytes(&shape(128, 256)));
    }
}
