//! The CPU backend: rayon over students and images, the numerical reference for every other
//! device. Thin: each trait method forwards to the op's CPU function in `crate::ops`, so a faster
//! CPU path for one op is swapped in by changing one call here.

use super::{
    Backend, Conv2dGeom, ConvGeom, Elem, LinearGeom, LossKind, Mode, NormGeom, NormLayerGeom,
    OptimizerCfg, ParamAt, PoolGeom,
};
use crate::aug::{self, AugPlan, BatchDims, BatchDraws};
use crate::error::Result;
use crate::ops;
use crate::ops::precision::GemmPrecision;
use rayon::prelude::*;

/// Runs every op on the CPU with rayon's global pool. Buffers are plain `Vec`s.
#[derive(Clone, Debug, Default)]
pub struct CpuBackend {
    /// Scratch of the fast conv path (im2col columns, Winograd tiles), reused across calls.
    scratch: ops::scratch::ScratchPool,
    /// Run the plain reference loops instead of the fast paths (parity tests, debugging).
    reference: bool,
    /// How conv and linear GEMM operands are rounded: fp32 (the default), or as a GPU mode does
    /// (the precision study; conv then runs on im2col, see `ops::conv::cpu_fast::forward_prec`).
    precision: GemmPrecision,
    /// Eval-mode conv forwards (test passes) rounded as this mode instead of `precision`: the
    /// CPU twin of the CUDA backend's `TestPrecision` (`--test-precision`). None: `precision`.
    test_precision: Option<GemmPrecision>,
}

impl CpuBackend {
    /// The backend with its fast paths (GEMM convolutions).
    pub fn new() -> CpuBackend {
        CpuBackend::default()
    }

    /// The backend running only the plain reference loops.
    pub fn reference() -> CpuBackend {
        CpuBackend {
            reference: true,
            ..CpuBackend::default()
        }
    }

    /// The fast backend with conv and linear GEMM operands rounded as GPU mode `p` rounds them.
    pub fn with_precision(p: GemmPrecision) -> CpuBackend {
        CpuBackend {
            precision: p,
            ..CpuBackend::default()
        }
    }

    pub fn precision(&self) -> GemmPrecision {
        self.precision
    }

    /// The same backend with eval-mode conv forwards (test passes, teacher labels) rounded as GPU
    /// mode `p` (e.g. `GemmPrecision::Bf16`, the CUDA backend's default test precision), training
    /// left as it was: the reference the bf16 test-pass kernels are checked against.
    pub fn with_test_precision(mut self, p: GemmPrecision) -> CpuBackend {
        self.test_precision = Some(p);
        self
    }

    /// conv3x3_forward in GEMM precision `p` (the plain loops on the reference backend).
    fn conv_forward_in(
        &self,
        p: GemmPrecision,
        g: &ConvGeom,
        x: &[f32],
        params: &[f32],
        at: ParamAt,
        y: &mut [f32],
    ) -> Result<()> {
        if self.reference {
            return ops::conv::cpu::forward(g, x, params, at, y);
        }
        ops::conv::cpu_fast::forward_prec(p, g, x, params, at, y, &self.scratch)
    }

    /// The GPU-mode emulation applies (fast path in a non-fp32 mode).
    fn rounds(&self) -> bool {
        !self.reference && self.precision != GemmPrecision::Fp32
    }
}

impl Backend for CpuBackend {
    type Buf<T: Elem> = Vec<T>;
    /// Steps are not recorded: each runs its ops directly.
    type StepGraph = ();
    type AugTable = BatchDims;

    fn describe(&self) -> String {
        let mut mode = match self.precision {
            GemmPrecision::Fp32 => String::new(),
            p => format!(", GEMM operands rounded as {}", p.name()),
        };
        if let Some(p) = self.test_precision {
            mode.push_str(&format!(", test passes rounded as {}", p.name()));
        }
        format!("cpu ({} threads{mode})", rayon::current_num_threads())
    }

    fn alloc<T: Elem>(&self, len: usize) -> Result<Vec<T>> {
        Ok(vec![T::default(); len])
    }

    fn upload<T: Elem>(&self, host: &[T]) -> Result<Vec<T>> {
        Ok(host.to_vec())
    }

    fn write<T: Elem>(&self, host: &[T], dst: &mut Vec<T>) -> Result<()> {
        ops::check_len("write", "dst", dst.len(), host.len())?;
        dst.copy_from_slice(host);
        Ok(())
    }

    fn download<T: Elem>(&self, src: &Vec<T>) -> Result<Vec<T>> {
        Ok(src.clone())
    }

    fn len<T: Elem>(&self, buf: &Vec<T>) -> usize {
        buf.len()
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn gather_rows(
        &self,
        src: &Vec<f32>,
        row_len: usize,
        idx: &Vec<u32>,
        dst: &mut Vec<f32>,
    ) -> Result<()> {
        ops::rows::cpu::gather_rows(src, row_len, idx, dst)
    }

    fn scale_add(
        &self,
        n: usize,
        a: f32,
        x: Option<(&Vec<f32>, usize)>,
        b: f32,
        y: &mut Vec<f32>,
        y_at: usize,
    ) -> Result<()> {
        ops::rows::cpu::scale_add(n, a, x.map(|(v, at)| (v.as_slice(), at)), b, y, y_at)
    }

    fn conv3x3_forward(
        &self,
        g: &ConvGeom,
        x: &Vec<f32>,
        params: &Vec<f32>,
        at: ParamAt,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        self.conv_forward_in(self.precision, g, x, params, at, y)
    }

    /// The reference composition (conv, then norm → ReLU → pool), with an eval-mode conv in the
    /// test precision when one is set; without one, exactly the trait's default.
    fn conv_norm_relu_pool_forward(
        &self,
        cg: &ConvGeom,
        ng: &NormGeom,
        mode: Mode,
        x: &Vec<f32>,
        x_shared: bool,
        params: &Vec<f32>,
        conv_at: ParamAt,
        norm_at: ParamAt,
        running: &mut Vec<f32>,
        running_at: ParamAt,
        y: &mut Vec<f32>,
        stats: &mut Vec<f32>,
        scratch: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let _ = scratch; // the composition needs none
        match (mode, self.test_precision) {
            (Mode::Eval, Some(p)) => {
                let copies: Vec<f32>;
                let x = if x_shared {
                    let want = cg.batch * cg.cin * cg.h * cg.w;
                    ops::check_len("conv_norm_relu_pool_forward", "x", x.len(), want)?;
                    copies = (0..cg.students).flat_map(|_| x.iter().copied()).collect();
                    &copies // (S, B, cin, h, w)
                } else {
                    x
                };
                self.conv_forward_in(p, cg, x, params, conv_at, y)?;
            }
            _ if x_shared => self.conv3x3_forward_shared_input(cg, x, params, conv_at, y)?,
            _ => self.conv3x3_forward(cg, x, params, conv_at, y)?,
        }
        self.norm_relu_pool_forward(
            ng, mode, y, params, norm_at, running, running_at, stats, out,
        )
    }

    fn conv3x3_backward(
        &self,
        g: &ConvGeom,
        x: &Vec<f32>,
        params: &Vec<f32>,
        at: ParamAt,
        dy: &Vec<f32>,
        dx: Option<&mut Vec<f32>>,
        grads: &mut Vec<f32>,
    ) -> Result<()> {
        if self.reference {
            if let Some(dx) = dx {
                ops::conv::cpu::backward_input(g, params, at, dy, dx)?;
            }
            return ops::conv::cpu::backward_weight(g, x, dy, at, grads);
        }
        let (p, pool) = (self.precision, &self.scratch);
        if let Some(dx) = dx {
            ops::conv::cpu_fast::backward_input_prec(p, g, params, at, dy, dx, pool)?;
        }
        ops::conv::cpu_fast::backward_weight_prec(p, g, x, dy, at, grads, pool)
    }

    fn norm_relu_pool_forward(
        &self,
        g: &NormGeom,
        mode: Mode,
        y: &Vec<f32>,
        params: &Vec<f32>,
        at: ParamAt,
        running: &mut Vec<f32>,
        running_at: ParamAt,
        stats: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let f = if self.reference {
            ops::norm_relu_pool::cpu::forward
        } else {
            ops::norm_relu_pool::cpu_fast::forward
        };
        f(g, mode, y, params, at, running, running_at, stats, out)
    }

    fn norm_relu_pool_backward(
        &self,
        g: &NormGeom,
        y: &Vec<f32>,
        params: &Vec<f32>,
        at: ParamAt,
        stats: &Vec<f32>,
        dout: &Vec<f32>,
        dy: &mut Vec<f32>,
        grads: &mut Vec<f32>,
    ) -> Result<()> {
        if self.reference {
            return ops::norm_relu_pool::cpu::backward(g, y, params, at, stats, dout, dy, grads);
        }
        ops::norm_relu_pool::cpu_fast::backward(
            g,
            y,
            params,
            at,
            stats,
            dout,
            dy,
            grads,
            &self.scratch,
        )
    }

    fn linear_forward(
        &self,
        g: &LinearGeom,
        x: &Vec<f32>,
        params: &Vec<f32>,
        at: ParamAt,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if self.rounds() {
            return ops::linear::rounded::forward(self.precision, g, x, params, at, out);
        }
        ops::linear::cpu::forward(g, x, params, at, out)
    }

    fn linear_backward(
        &self,
        g: &LinearGeom,
        x: &Vec<f32>,
        params: &Vec<f32>,
        at: ParamAt,
        dout: &Vec<f32>,
        dx: Option<&mut Vec<f32>>,
        grads: &mut Vec<f32>,
    ) -> Result<()> {
        if self.rounds() {
            let p = self.precision;
            if let Some(dx) = dx {
                ops::linear::rounded::backward_input(p, g, params, at, dout, dx)?;
            }
            return ops::linear::rounded::backward_weight(p, g, x, dout, at, grads);
        }
        if let Some(dx) = dx {
            ops::linear::cpu::backward_input(g, params, at, dout, dx)?;
        }
        ops::linear::cpu::backward_weight(g, x, dout, at, grads)
    }

    fn has_layer_ops(&self) -> bool {
        true
    }

    fn conv2d_forward(
        &self,
        g: &Conv2dGeom,
        x: &Vec<f32>,
        params: &Vec<f32>,
        at: ParamAt,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        if self.reference {
            return ops::conv2d::cpu::forward(g, x, params, at, y);
        }
        ops::conv2d::cpu_fast::forward(g, x, params, at, y, &self.scratch)
    }

    fn conv2d_backward(
        &self,
        g: &Conv2dGeom,
        x: &Vec<f32>,
        params: &Vec<f32>,
        at: ParamAt,
        dy: &Vec<f32>,
        dx: Option<&mut Vec<f32>>,
        grads: &mut Vec<f32>,
    ) -> Result<()> {
        if self.reference {
            if let Some(dx) = dx {
                ops::conv2d::cpu::backward_input(g, params, at, dy, dx)?;
            }
            return ops::conv2d::cpu::backward_weight(g, x, dy, at, grads);
        }
        if let Some(dx) = dx {
            ops::conv2d::cpu_fast::backward_input(g, params, at, dy, dx, &self.scratch)?;
        }
        ops::conv2d::cpu_fast::backward_weight(g, x, dy, at, grads, &self.scratch)
    }

    fn norm_forward(
        &self,
        g: &NormLayerGeom,
        mode: Mode,
        x: &Vec<f32>,
        params: &Vec<f32>,
        at: ParamAt,
        running: &mut Vec<f32>,
        running_at: ParamAt,
        stats: &mut Vec<f32>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        ops::norm::cpu::forward(g, mode, x, params, at, running, running_at, stats, y)
    }

    fn norm_backward(
        &self,
        g: &NormLayerGeom,
        x: &Vec<f32>,
        params: &Vec<f32>,
        at: ParamAt,
        stats: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
        grads: &mut Vec<f32>,
    ) -> Result<()> {
        ops::norm::cpu::backward(g, x, params, at, stats, dy, dx, grads)
    }

    fn relu_forward(&self, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        ops::relu::cpu::forward(x, y)
    }

    fn relu_backward(&self, y: &Vec<f32>, dy: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        ops::relu::cpu::backward(y, dy, dx)
    }

    fn pool_forward(&self, g: &PoolGeom, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        ops::pool::cpu::forward(g, x, y)
    }

    fn pool_backward(
        &self,
        g: &PoolGeom,
        x: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        ops::pool::cpu::backward(g, x, dy, dx)
    }

    fn loss(
        &self,
        kind: LossKind,
        students: usize,
        batch: usize,
        classes: usize,
        logits: &Vec<f32>,
        labels: &Vec<u32>,
        soft: Option<&Vec<f32>>,
        loss: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
    ) -> Result<()> {
        let soft = soft.map(|v| v.as_slice());
        ops::loss::cpu::forward_backward(
            kind, students, batch, classes, logits, labels, soft, loss, dlogits,
        )
    }

    fn optimizer_step(
        &self,
        cfg: &OptimizerCfg,
        step: u32,
        lrs: &Vec<f32>,
        params: &mut Vec<f32>,
        grads: &Vec<f32>,
        state1: &mut Vec<f32>,
        state2: &mut Vec<f32>,
    ) -> Result<()> {
        ops::optim::cpu::step(cfg, step, lrs, params, grads, state1, state2)
    }

    fn augment(
        &self,
        plan: &AugPlan,
        draws: &BatchDraws,
        dims: BatchDims,
        x: &mut Vec<f32>,
    ) -> Result<()> {
        aug::apply(plan, draws, dims, x)
    }

    fn zca_whiten(
        &self,
        dim: usize,
        mean: &Vec<f32>,
        transform: &Vec<f32>,
        x: &Vec<f32>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        aug::zca::whiten(dim, mean, transform, x, out)
    }

    fn count_correct(
        &self,
        students: usize,
        batch: usize,
        classes: usize,
        logits: &Vec<f32>,
        labels: &Vec<u32>,
        correct: &mut Vec<u32>,
    ) -> Result<()> {
        ops::accuracy::cpu::count_correct(students, batch, classes, logits, labels, correct)
    }

    fn batch_rows(
        &self,
        clock: &Vec<u32>,
        perms: &Vec<u32>,
        base: &Vec<u32>,
        row_labels: &Vec<u32>,
        full_batch: usize,
        idx: &mut Vec<u32>,
        labels: &mut Vec<u32>,
    ) -> Result<()> {
        ops::step::cpu::batch_rows(clock, perms, base, row_labels, full_batch, idx, labels)
    }

    fn aug_table(&self, _plan: &AugPlan, dims: BatchDims) -> Result<BatchDims> {
        Ok(dims)
    }

    fn augment_at(
        &self,
        plan: &AugPlan,
        clock: &Vec<u32>,
        table: &Vec<u32>,
        stride: usize,
        dims: &mut BatchDims,
        x: &mut Vec<f32>,
    ) -> Result<()> {
        let at = ops::step::step_in_epoch(clock)? * stride;
        let words = table.get(at..).unwrap_or_default();
        let draws = ops::step::draws_from_words(words, dims.students, dims.batch)?;
        aug::apply(plan, &draws, *dims, x)
    }

    fn tv_supports(&self, _pipe: &crate::aug::TvPipeline, _c: usize, _size: usize) -> Result<()> {
        Ok(())
    }

    fn tv_at(
        &self,
        pipe: &crate::aug::TvPipeline,
        clock: &Vec<u32>,
        table: &Vec<u32>,
        stride: usize,
        dims: BatchDims,
        x: &mut Vec<f32>,
    ) -> Result<()> {
        let at = ops::step::step_in_epoch(clock)? * stride;
        let (rows, words) = (dims.students * dims.batch, pipe.entry_words());
        let img = dims.c * dims.h * dims.w;
        let entries = table.get(at..at + rows * words).ok_or_else(|| {
            crate::error::Error::shape(format!(
                "tv_at: the table ({} words) has no {rows} entries at word {at}",
                table.len()
            ))
        })?;
        ops::check_len("tv_at", "x", x.len(), rows * img)?;
        x.par_chunks_mut(img)
            .zip(entries.par_chunks(words))
            .try_for_each(|(im, e)| {
                if let Some(y) = pipe.apply_entry(e, im, dims.c, dims.h, dims.w)? {
                    ops::check_len("tv_at", "transformed image", y.len(), img)?;
                    im.copy_from_slice(&y);
                }
                Ok(())
            })
    }

    fn optimizer_step_at(
        &self,
        cfg: &OptimizerCfg,
        students: usize,
        clock: &Vec<u32>,
        lrs: &Vec<f32>,
        params: &mut Vec<f32>,
        grads: &Vec<f32>,
        state1: &mut Vec<f32>,
        state2: &mut Vec<f32>,
    ) -> Result<()> {
        ops::step::step_in_epoch(clock)?;
        let (step, e) = (
            clock[ops::step::CLOCK_STEP],
            clock[ops::step::CLOCK_EPOCH] as usize,
        );
        let row = lrs.get(e * students..(e + 1) * students).ok_or_else(|| {
            crate::error::Error::shape(format!(
                "optimizer_step_at: no learning rates for epoch {e} of {students} students in {}",
                lrs.len()
            ))
        })?;
        ops::optim::cpu::step(cfg, step + 1, row, params, grads, state1, state2)
    }

    fn loss_watch(
        &self,
        clock: &mut Vec<u32>,
        loss: &Vec<f32>,
        sums: &mut Vec<f64>,
        stopped: &mut Vec<u32>,
    ) -> Result<()> {
        ops::step::cpu::loss_watch(clock, loss, sums, stopped)
    }
}
