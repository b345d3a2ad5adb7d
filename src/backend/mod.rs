//! `trait Backend`: the compute contract between the trainer and a device (CPU reference, CUDA).
//!
//! Conventions every implementation follows:
//! - S (students) is the outermost dimension of every buffer; each shape comment names it.
//! - All parameters of all students live in one flat (S, P) buffer; gradients and optimizer state
//!   use the same layout. A layer finds its tensors through [`ParamAt`] offsets into a student's row.
//! - Ops overwrite their outputs (gradients included); nothing accumulates across calls.
//! - The trainer, planner and metrics only see this trait, never a concrete device.
//! - Every op's numerical reference is the plain loop code in `crate::ops::<op>::cpu`; the
//!   `golden` and `students` tests have generic bodies any backend can run.

pub mod cpu;
pub mod cuda;

pub use cuda::choice::{DeviceChoice, Opened, Origin};

use crate::aug::{AugPlan, BatchDims, BatchDraws};

// The geometry of each op lives in its op folder (`ops/` never depends on `backend/`); these
// re-exports keep the `crate::backend::X` paths every caller uses.
use crate::error::{Error, Result};
pub use crate::ops::conv::ConvGeom;
pub use crate::ops::conv2d::Conv2dGeom;
pub use crate::ops::linear::LinearGeom;
pub use crate::ops::loss::LossKind;
pub use crate::ops::norm::{NormLayerGeom, NormLayerKind};
pub use crate::ops::norm_relu_pool::{NormGeom, NormKind};
pub use crate::ops::optim::{OptimizerCfg, OptimizerKind};
pub use crate::ops::pool::{PoolGeom, PoolKind};
pub use crate::ops::{Mode, ParamAt};

/// Device memory the driver reports, in bytes (for sizing cohorts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceMemory {
    pub free: u64,
    pub total: u64,
}

/// Element types a device buffer can hold.
pub trait Elem: Copy + Default + Send + Sync + 'static {}
impl Elem for f32 {}
impl Elem for u32 {}
/// Per-epoch loss sums (`loss_watch`) are accumulated in f64, as the host summed them.
impl Elem for f64 {}

/// The error of a backend that has no kernel for a layer-list op yet.
pub fn no_kernel(device: &str, op: &str) -> Error {
    Error::device(format!(
        "no {device} kernel yet for {op} (only ConvNet students run there so far); use --device cpu"
    ))
}

/// The error of a backend without a `custom_train_trans` kernel.
pub fn no_tv_kernel(device: &str) -> Error {
    Error::device(format!(
        "no {device} kernel yet for custom_train_trans on an image-folder synthetic set \
         (per-image torchvision transforms); use --device cpu, or give the set as a tensor file \
         (DD-Ranking then ignores custom_train_trans)"
    ))
}

/// The compute contract. `Buf<T>` is a device buffer of `len` elements.
pub trait Backend: Send + Sync {
    type Buf<T: Elem>: Send + Sync;

    /// A one-line description of the device ("cpu (2 threads)", "cuda:0 NVIDIA H100 ...").
    fn describe(&self) -> String;

    // ---- memory ------------------------------------------------------------------------------
    /// A zero-filled buffer.
    fn alloc<T: Elem>(&self, len: usize) -> Result<Self::Buf<T>>;
    fn upload<T: Elem>(&self, host: &[T]) -> Result<Self::Buf<T>>;
    /// Overwrite `dst` (same length as `host`) with host data.
    fn write<T: Elem>(&self, host: &[T], dst: &mut Self::Buf<T>) -> Result<()>;
    fn download<T: Elem>(&self, src: &Self::Buf<T>) -> Result<Vec<T>>;
    fn len<T: Elem>(&self, buf: &Self::Buf<T>) -> usize;
    /// Wait until all queued work is done (a no-op on the CPU).
    fn synchronize(&self) -> Result<()>;
    /// Free and total device memory, for sizing cohorts; None where it does not bound S (the
    /// CPU's buffers live in host memory, which pages rather than fails).
    fn memory(&self) -> Result<Option<DeviceMemory>> {
        Ok(None)
    }

    // ---- data movement -----------------------------------------------------------------------
    /// dst[m, :] = src[idx[m], :] with rows of `row_len`. src (N, row_len), idx (M), dst (M, row_len).
    fn gather_rows(
        &self,
        src: &Self::Buf<f32>,
        row_len: usize,
        idx: &Self::Buf<u32>,
        dst: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// y[y_at + i] = a·x[x_at + i] + b·y[y_at + i] for i < n; x is (buffer, x_at) or None to drop
    /// its term; b = 0 leaves y unread. Reference: `crate::ops::rows::cpu::scale_add`.
    #[allow(clippy::too_many_arguments)]
    fn scale_add(
        &self,
        n: usize,
        a: f32,
        x: Option<(&Self::Buf<f32>, usize)>,
        b: f32,
        y: &mut Self::Buf<f32>,
        y_at: usize,
    ) -> Result<()>;

    // ---- model ops ---------------------------------------------------------------------------
    /// x (S, B, cin, h, w), params (S, P) → y (S, B, cout, oh, ow).
    fn conv3x3_forward(
        &self,
        g: &ConvGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        y: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// The forward of a first layer whose input all S students share: x (B, cin, h, w), params
    /// (S, P) → y (S, B, cout, oh, ow) (`g.students` = S). For test passes, where every student
    /// sees the same test images: the CUDA backend reads one copy of them for all students instead
    /// of S gathered copies. Reference (this default): `conv3x3_forward` on S broadcast copies of x.
    fn conv3x3_forward_shared_input(
        &self,
        g: &ConvGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        y: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let want = g.batch * g.cin * g.h * g.w;
        if self.len(x) != want {
            return Err(Error::shape(format!(
                "conv3x3_forward_shared_input: `x` has {} elements, expected {want} (one copy of \
                 {} images of {}×{}×{})",
                self.len(x),
                g.batch,
                g.cin,
                g.h,
                g.w
            )));
        }
        let one = self.download(x)?;
        let all: Vec<f32> = (0..g.students).flat_map(|_| one.iter().copied()).collect();
        let xs = self.upload(&all)?; // (S, B, cin, h, w)
        self.conv3x3_forward(g, &xs, params, at, y)
    }

    /// One ConvNet block's forward, conv → norm → ReLU → 2×2 pool: x (S, B, cin, h, w) → y
    /// (S, B, cout, oh, ow) (kept for backward) and out (S, B, cout, oh/2, ow/2), with `stats` and
    /// `running` as [`Backend::norm_relu_pool_forward`] fills them; `ng` describes y. `scratch` holds
    /// [`Backend::conv_norm_scratch_len`] elements. The CUDA backend fuses the norm statistics (and
    /// where the tile shape allows, the whole tail) into the conv epilogue. Reference (this
    /// default): `conv3x3_forward` (or `conv3x3_forward_shared_input` when `x_shared`: x is one
    /// (B, cin, h, w) copy read by every student, a test pass's first block) then
    /// `norm_relu_pool_forward`. In eval mode `y` may be empty where
    /// [`Backend::conv_out_len_eval`] says 0: it is then neither written nor read.
    #[allow(clippy::too_many_arguments)]
    fn conv_norm_relu_pool_forward(
        &self,
        cg: &ConvGeom,
        ng: &NormGeom,
        mode: Mode,
        x: &Self::Buf<f32>,
        x_shared: bool,
        params: &Self::Buf<f32>,
        conv_at: ParamAt,
        norm_at: ParamAt,
        running: &mut Self::Buf<f32>,
        running_at: ParamAt,
        y: &mut Self::Buf<f32>,
        stats: &mut Self::Buf<f32>,
        scratch: &mut Self::Buf<f32>,
        out: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let _ = scratch; // the composition needs none
        if x_shared {
            self.conv3x3_forward_shared_input(cg, x, params, conv_at, y)?;
        } else {
            self.conv3x3_forward(cg, x, params, conv_at, y)?;
        }
        self.norm_relu_pool_forward(
            ng, mode, y, params, norm_at, running, running_at, stats, out,
        )
    }

    /// Elements of the scratch buffer [`Backend::conv_norm_relu_pool_forward`] needs for `g`
    /// (0 for the reference composition).
    fn conv_norm_scratch_len(&self, g: &ConvGeom) -> usize {
        let _ = g;
        0
    }

    /// Elements the `y` buffer of an eval-mode [`Backend::conv_norm_relu_pool_forward`] needs
    /// for the block `cg` → `ng`: the whole conv output by default; 0 where the backend has an
    /// eval kernel that keeps y on chip (CUDA: cuda/conv_eval.cu), which then takes an empty `y`
    /// and leaves it unwritten (test passes need only the pooled output).
    fn conv_out_len_eval(&self, cg: &ConvGeom, ng: &NormGeom) -> usize {
        let _ = ng;
        cg.students * cg.batch * cg.cout * cg.out_h() * cg.out_w()
    }

    /// Whether an eval-only workspace may store the pooled output of block `cg` → `ng` as bf16
    /// for the next block `next_cg` → `next_ng` of a test pass: a buffer of ⌈n/2⌉ f32 slots for
    /// its n values (value i the bf16 at byte 2·i, round to nearest even), which
    /// [`Backend::conv_norm_relu_pool_forward`] of this block then writes and of the next block
    /// reads. Only where both blocks' kernels handle it (CUDA, bf16 test passes: a bf16 eval
    /// kernel writing, the bf16 plane kernel reading, i.e. ConvNet-3's blocks 1 → 2 and 2 → 3;
    /// the consumer rounds its input to bf16 anyway, so the logits are bit for bit those of fp32
    /// activations). Default: no, every activation is fp32, and every op refuses a half-length
    /// buffer.
    fn eval_out_bf16(
        &self,
        cg: &ConvGeom,
        ng: &NormGeom,
        next_cg: &ConvGeom,
        next_ng: &NormGeom,
    ) -> bool {
        let _ = (cg, ng, next_cg, next_ng);
        false
    }

    /// dy (S, B, cout, oh, ow) → dx (S, B, cin, h, w) when asked, and the weight and bias
    /// gradients written into grads (S, P) at `at`.
    #[allow(clippy::too_many_arguments)]
    fn conv3x3_backward(
        &self,
        g: &ConvGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        dy: &Self::Buf<f32>,
        dx: Option<&mut Self::Buf<f32>>,
        grads: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// One ConvNet block's backward, the reverse of [`Backend::conv_norm_relu_pool_forward`]:
    /// dout (S, B, cout, oh/2, ow/2) → dy (S, B, cout, oh, ow) (scratch the caller owns, left
    /// holding d loss / d y) → dx (S, B, cin, h, w) when asked; the norm γ/β (`norm_at`) and conv
    /// weight and bias (`conv_at`) gradients into grads. x, y and stats as the forward saw and
    /// saved them; `ng` describes y. Reference (this default): `norm_relu_pool_backward` then
    /// `conv3x3_backward`. The CUDA backend sums the conv bias gradient (Σ dy per channel) in the
    /// norm backward's pass that writes dy, instead of reading dy once more.
    #[allow(clippy::too_many_arguments)]
    fn conv_norm_relu_pool_backward(
        &self,
        cg: &ConvGeom,
        ng: &NormGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        conv_at: ParamAt,
        norm_at: ParamAt,
        y: &Self::Buf<f32>,
        stats: &Self::Buf<f32>,
        dout: &Self::Buf<f32>,
        dy: &mut Self::Buf<f32>,
        dx: Option<&mut Self::Buf<f32>>,
        grads: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.norm_relu_pool_backward(ng, y, params, norm_at, stats, dout, dy, grads)?;
        self.conv3x3_backward(cg, x, params, conv_at, dy, dx, grads)
    }

    /// y (S, B, c, h, w) → out (S, B, c, h/2, w/2) (h, w even). Saves what backward needs in
    /// `stats` (instance: (S, B, c, 2) = (mean, 1/std); batch: (S, c, 2); none: empty). Batch norm
    /// in train mode updates `running` (S, R), running_mean at `running_at.weight` and running_var
    /// (unbiased, n/(n−1)) at `running_at.bias`, `running_at.row` = R; in eval mode it normalises
    /// with them (and still fills `stats`). Instance norm and none ignore `running`. `at.weight` /
    /// `at.bias` are γ and β in the (S, P) row (ignored without a norm). Reference:
    /// `crate::ops::norm_relu_pool::cpu`.
    #[allow(clippy::too_many_arguments)]
    fn norm_relu_pool_forward(
        &self,
        g: &NormGeom,
        mode: Mode,
        y: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        running: &mut Self::Buf<f32>,
        running_at: ParamAt,
        stats: &mut Self::Buf<f32>,
        out: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// dout (S, B, c, h/2, w/2) → dy (S, B, c, h, w), γ and β gradients into grads at `at`.
    /// Train-mode semantics: the statistics saved by forward depend on y and their gradient is
    /// included (batch norm: over the whole batch).
    #[allow(clippy::too_many_arguments)]
    fn norm_relu_pool_backward(
        &self,
        g: &NormGeom,
        y: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        stats: &Self::Buf<f32>,
        dout: &Self::Buf<f32>,
        dy: &mut Self::Buf<f32>,
        grads: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// x (S, B, fin), params (S, P) → out (S, B, fout).
    fn linear_forward(
        &self,
        g: &LinearGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        out: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// dout (S, B, fout) → dx (S, B, fin) when asked; weight and bias gradients into grads at `at`.
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &self,
        g: &LinearGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        dout: &Self::Buf<f32>,
        dx: Option<&mut Self::Buf<f32>>,
        grads: &mut Self::Buf<f32>,
    ) -> Result<()>;

    // ---- layer-list ops (every student but ConvNet; references: `crate::ops::{conv2d, norm,
    // relu, pool}::cpu`). A backend without kernels for them keeps these defaults, which return
    // [`no_kernel`]'s error, and says so in [`Backend::has_layer_ops`] so a plan is refused up front.

    /// Whether this backend runs the layer-list ops below (false: only ConvNet students).
    fn has_layer_ops(&self) -> bool {
        false
    }

    /// x (S, B, cin, h, w), params (S, P) → y (S, B, cout, oh, ow).
    fn conv2d_forward(
        &self,
        g: &Conv2dGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        y: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let _ = (g, x, params, at, y);
        Err(no_kernel(&self.describe(), "conv2d"))
    }

    /// dy (S, B, cout, oh, ow) → dx (S, B, cin, h, w) when asked; weight (and bias) gradients
    /// written into grads (S, P) at `at`.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &self,
        g: &Conv2dGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        dy: &Self::Buf<f32>,
        dx: Option<&mut Self::Buf<f32>>,
        grads: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let _ = (g, x, params, at, dy, dx, grads);
        Err(no_kernel(&self.describe(), "conv2d backward"))
    }

    /// Group or batch norm: x → y (S, B, c, h, w), statistics into `stats`
    /// ([`NormLayerGeom::stats_len`]); batch norm updates (train) or reads (eval) running (S, R)
    /// at `running_at` as [`Backend::norm_relu_pool_forward`] does.
    #[allow(clippy::too_many_arguments)]
    fn norm_forward(
        &self,
        g: &NormLayerGeom,
        mode: Mode,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        running: &mut Self::Buf<f32>,
        running_at: ParamAt,
        stats: &mut Self::Buf<f32>,
        y: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let _ = (g, mode, x, params, at, running, running_at, stats, y);
        Err(no_kernel(&self.describe(), "norm"))
    }

    /// dy → dx (S, B, c, h, w), γ and β gradients into grads at `at` (train-mode semantics).
    #[allow(clippy::too_many_arguments)]
    fn norm_backward(
        &self,
        g: &NormLayerGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        stats: &Self::Buf<f32>,
        dy: &Self::Buf<f32>,
        dx: &mut Self::Buf<f32>,
        grads: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let _ = (g, x, params, at, stats, dy, dx, grads);
        Err(no_kernel(&self.describe(), "norm backward"))
    }

    /// y = max(x, 0) elementwise (same lengths).
    fn relu_forward(&self, x: &Self::Buf<f32>, y: &mut Self::Buf<f32>) -> Result<()> {
        let _ = (x, y);
        Err(no_kernel(&self.describe(), "relu"))
    }

    /// dx = dy where the forward's output y > 0, else 0.
    fn relu_backward(
        &self,
        y: &Self::Buf<f32>,
        dy: &Self::Buf<f32>,
        dx: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let _ = (y, dy, dx);
        Err(no_kernel(&self.describe(), "relu backward"))
    }

    /// Max or average pooling x (S, B, c, h, w) → y (S, B, c, oh, ow).
    fn pool_forward(&self, g: &PoolGeom, x: &Self::Buf<f32>, y: &mut Self::Buf<f32>) -> Result<()> {
        let _ = (g, x, y);
        Err(no_kernel(&self.describe(), "pool"))
    }

    /// dy (S, B, c, oh, ow) → dx (S, B, c, h, w); x is the forward's input.
    fn pool_backward(
        &self,
        g: &PoolGeom,
        x: &Self::Buf<f32>,
        dy: &Self::Buf<f32>,
        dx: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let _ = (g, x, dy, dx);
        Err(no_kernel(&self.describe(), "pool backward"))
    }

    /// logits (S, B, K), labels (S, B), soft targets (S, B, K) for the soft losses → the loss per
    /// student (S) and d loss / d logits (S, B, K).
    #[allow(clippy::too_many_arguments)]
    fn loss(
        &self,
        kind: LossKind,
        students: usize,
        batch: usize,
        classes: usize,
        logits: &Self::Buf<f32>,
        labels: &Self::Buf<u32>,
        soft: Option<&Self::Buf<f32>>,
        loss: &mut Self::Buf<f32>,
        dlogits: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// One optimizer step (1-based `step`) over params, grads, state1, state2 (all (S, P)) with the
    /// per-student learning rates lrs (S). SGD keeps its momentum in state1; Adam/AdamW m and v.
    #[allow(clippy::too_many_arguments)]
    fn optimizer_step(
        &self,
        cfg: &OptimizerCfg,
        step: u32,
        lrs: &Self::Buf<f32>,
        params: &mut Self::Buf<f32>,
        grads: &Self::Buf<f32>,
        state1: &mut Self::Buf<f32>,
        state2: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// Augments x (S, B, C, H, W) in place with one step's draws, sampled on the host from each
    /// student's key by `crate::aug::sample` (so every device augments with the same numbers).
    /// Reference: `crate::aug::apply`.
    fn augment(
        &self,
        plan: &AugPlan,
        draws: &BatchDraws,
        dims: BatchDims,
        x: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// ZCA whitening: out (N, D) = (x (N, D) − mean (D)) · transform (D, D), with the whitening
    /// fitted on the host by `crate::aug::Zca::fit` and its mean and transform uploaded once.
    /// Reference: `crate::aug::zca::whiten`.
    fn zca_whiten(
        &self,
        dim: usize,
        mean: &Self::Buf<f32>,
        transform: &Self::Buf<f32>,
        x: &Self::Buf<f32>,
        out: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// Adds to correct (S) the number of rows whose arg-max logit (first on ties) equals the label.
    /// logits (S, B, K), labels (S, B).
    fn count_correct(
        &self,
        students: usize,
        batch: usize,
        classes: usize,
        logits: &Self::Buf<f32>,
        labels: &Self::Buf<u32>,
        correct: &mut Self::Buf<u32>,
    ) -> Result<()>;

    // ---- the step without the host (reference loops: `crate::ops::step`) -------------------
    // A training step reads everything that changes from step to step on the device: the batch
    // rows from per-epoch permutations, the augmentation draws from a per-epoch table, the
    // optimizer step and learning rate from a clock buffer, and it watches its losses there. So
    // one step can be recorded once and replayed (`begin_recording` … `replay`); a backend that
    // does not record (the CPU) runs the same launches directly every step, with the same
    // results. The trainer's `train::step_graph::StepGraph` drives this.

    /// A recorded training step: a CUDA graph on a GPU, the recorded launch list under
    /// emulation; `()` where nothing is recorded.
    type StepGraph: Send;
    /// The device side of augmenting from a per-epoch draw table: the step's draws and a scratch
    /// batch at fixed addresses (CUDA); `()` on the CPU.
    type AugTable: Send;

    /// Starts recording: until `end_recording`, launches are recorded instead of run, and a
    /// memory operation (alloc, upload, write, download) is an error, as it would break a CUDA
    /// stream capture. Ok(false): this backend does not record (the CPU, or CUDA with
    /// `DDR_CUDA_GRAPHS=0`); the caller then runs its launches directly.
    fn begin_recording(&self) -> Result<bool> {
        Ok(false)
    }
    /// Ends the recording begun by `begin_recording` (Ok(true)) and returns it, ready to replay.
    fn end_recording(&self) -> Result<Self::StepGraph> {
        Err(Error::device(format!(
            "{} does not record steps (begin_recording said so)",
            self.describe()
        )))
    }
    /// Runs a recorded step once more, on the current contents of the buffers it names.
    fn replay(&self, graph: &Self::StepGraph) -> Result<()> {
        let _ = graph;
        Err(Error::device(format!(
            "{} does not record steps, so it cannot replay one",
            self.describe()
        )))
    }

    /// The step's batch rows idx (S·b) and labels (S·b) from the epoch's permutations perms
    /// (S, N), each student's first row base (S) and the labels of every row row_labels (R), at
    /// the step within the epoch that clock (4) points at, batches of `full_batch`.
    /// Reference: `crate::ops::step::cpu::batch_rows`.
    #[allow(clippy::too_many_arguments)]
    fn batch_rows(
        &self,
        clock: &Self::Buf<u32>,
        perms: &Self::Buf<u32>,
        base: &Self::Buf<u32>,
        row_labels: &Self::Buf<u32>,
        full_batch: usize,
        idx: &mut Self::Buf<u32>,
        labels: &mut Self::Buf<u32>,
    ) -> Result<()>;

    /// The fixed-address side of `augment_at` for batches of `dims`, launching the kernels of
    /// every op `plan` can draw (each skips the students whose draws leave it out).
    fn aug_table(&self, plan: &AugPlan, dims: BatchDims) -> Result<Self::AugTable>;

    /// `augment` with the draws of the step clock (4) points at, read from an epoch's table
    /// (steps, stride) of `ops::step::draws_to_words` words. Reference: `crate::aug::apply` on
    /// the decoded draws.
    fn augment_at(
        &self,
        plan: &AugPlan,
        clock: &Self::Buf<u32>,
        table: &Self::Buf<u32>,
        stride: usize,
        ws: &mut Self::AugTable,
        x: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// Ok when [`Backend::tv_at`] runs `pipe` on c × size × size images here; else why not (the
    /// trainer asks before training, so a pipeline a device cannot run is refused up front).
    fn tv_supports(&self, pipe: &crate::aug::TvPipeline, c: usize, size: usize) -> Result<()> {
        let _ = (pipe, c, size);
        Err(no_tv_kernel(&self.describe()))
    }

    /// `custom_train_trans` on the step's gathered batch x (S·B, C, H, W), in place (its stages
    /// keep H × W: the trainer checks), with the entries of the step clock (4) points at, read
    /// from an epoch's table (steps, stride) of S·B entries of `pipe.entry_words()` words
    /// (`TvPipeline::entry`). Reference: `TvPipeline::apply_entry` per image.
    fn tv_at(
        &self,
        pipe: &crate::aug::TvPipeline,
        clock: &Self::Buf<u32>,
        table: &Self::Buf<u32>,
        stride: usize,
        dims: BatchDims,
        x: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let _ = (pipe, clock, table, stride, dims, x);
        Err(no_tv_kernel(&self.describe()))
    }

    /// `optimizer_step` with the step number clock[STEP] + 1 and the learning rates of row
    /// clock[EPOCH] of lrs (E, S), both read on the device.
    #[allow(clippy::too_many_arguments)]
    fn optimizer_step_at(
        &self,
        cfg: &OptimizerCfg,
        students: usize,
        clock: &Self::Buf<u32>,
        lrs: &Self::Buf<f32>,
        params: &mut Self::Buf<f32>,
        grads: &Self::Buf<f32>,
        state1: &mut Self::Buf<f32>,
        state2: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// Adds each running student's loss (S) to sums (E, S) at row clock[EPOCH], stops (stopped
    /// (S) = 1-based global step) a student whose loss is NaN or infinite, then advances the
    /// clock by one step. Reference: `crate::ops::step::cpu::loss_watch`.
    fn loss_watch(
        &self,
        clock: &mut Self::Buf<u32>,
        loss: &Self::Buf<f32>,
        sums: &mut Self::Buf<f64>,
        stopped: &mut Self::Buf<u32>,
    ) -> Result<()>;
}
