//! `impl Backend for CudaBackend`: per op, check the buffer sizes against the geometry (so a
//! kernel can never run past a buffer), fill the op's params struct, launch. The same code drives
//! the real GPU and the emulated device.

use super::params::{
    ConvParams, CountParams, GatherParams, LinearParams, LossParams, NormBackwardParams,
    NormParams, OptimParams, ScaleAddParams,
};
use super::{ConvPrecision, CudaBackend, CudaBuf};
use crate::aug::{AugPlan, BatchDims, BatchDraws};
use crate::backend::{
    Backend, ConvGeom, Elem, LinearGeom, LossKind, Mode, NormGeom, NormKind, OptimizerCfg,
    OptimizerKind, ParamAt,
};
use crate::error::{Error, Result};

mod bf16;
mod conv2d;
pub(super) mod eval;
mod fused;
pub(super) mod layers;

pub(super) fn check_len(op: &str, arg: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::shape(format!(
            "{op}: `{arg}` has {got} elements, expected {want}"
        )))
    }
}

fn check_span(op: &str, what: &str, at: usize, len: usize, row: usize) -> Result<()> {
    if at.checked_add(len).is_some_and(|end| end <= row) {
        Ok(())
    } else {
        Err(Error::shape(format!(
            "{op}: {what} at offset {at} with {len} elements does not fit a row of {row}"
        )))
    }
}

/// The (S, P) parameter row length, checked against `at.row`.
fn param_row(op: &str, students: usize, params_len: usize, at: ParamAt) -> Result<usize> {
    if students == 0 {
        return Err(Error::shape(format!("{op}: zero students")));
    }
    check_len(op, "params", params_len, students * at.row)?;
    Ok(at.row)
}

pub(super) fn u32_of(op: &str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::shape(format!("{op}: {what} = {v} does not fit in 32 bits")))
}

impl Backend for CudaBackend {
    type Buf<T: Elem> = CudaBuf<T>;
    type StepGraph = super::CudaStepGraph;
    type AugTable = super::AugWorkspace;

    fn describe(&self) -> String {
        self.describe_device()
    }

    fn alloc<T: Elem>(&self, len: usize) -> Result<CudaBuf<T>> {
        self.alloc_elems(len)
    }

    fn upload<T: Elem>(&self, host: &[T]) -> Result<CudaBuf<T>> {
        let mut b = self.alloc_elems::<T>(host.len())?;
        self.upload_into(host, &mut b.mem, false)?;
        Ok(b)
    }

    fn write<T: Elem>(&self, host: &[T], dst: &mut CudaBuf<T>) -> Result<()> {
        check_len("write", "dst", dst.len, host.len())?;
        self.upload_into(host, &mut dst.mem, true)
    }

    fn download<T: Elem>(&self, src: &CudaBuf<T>) -> Result<Vec<T>> {
        self.download_elems(src)
    }

    fn len<T: Elem>(&self, buf: &CudaBuf<T>) -> usize {
        buf.len
    }

    fn synchronize(&self) -> Result<()> {
        self.sync()
    }

    fn memory(&self) -> Result<Option<crate::backend::DeviceMemory>> {
        self.memory_info()
    }

    fn gather_rows(
        &self,
        src: &CudaBuf<f32>,
        row_len: usize,
        idx: &CudaBuf<u32>,
        dst: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "gather_rows";
        if row_len == 0 || src.len % row_len != 0 {
            return Err(Error::shape(format!(
                "{OP}: src of {} elements is not whole rows of {row_len}",
                src.len
            )));
        }
        check_len(OP, "dst", dst.len, idx.len * row_len)?;
        let p = GatherParams {
            src: self.addr(src)?,
            idx: self.addr(idx)?,
            dst: self.addr(dst)?,
            rows: idx.len as u64,
            row_len: row_len as u64,
            src_rows: (src.len / row_len) as u64,
        };
        // SAFETY: dst holds rows·row_len, idx rows entries, and the kernel reads src only at rows
        // below src_rows = src.len / row_len.
        unsafe { self.launch("gather_rows", self.grid_for(p.rows * p.row_len), &p) }
    }

    fn scale_add(
        &self,
        n: usize,
        a: f32,
        x: Option<(&CudaBuf<f32>, usize)>,
        b: f32,
        y: &mut CudaBuf<f32>,
        y_at: usize,
    ) -> Result<()> {
        const OP: &str = "scale_add";
        check_span(OP, "y", y_at, n, y.len)?;
        let (x_addr, x_at) = match x {
            Some((x, at)) => {
                check_span(OP, "x", at, n, x.len)?;
                (self.addr(x)?, at)
            }
            None => (0, 0),
        };
        if n == 0 {
            return Ok(());
        }
        let p = ScaleAddParams {
            x: x_addr,
            y: self.addr(y)?,
            n: n as u64,
            x_at: x_at as u64,
            y_at: y_at as u64,
            a,
            b,
        };
        // SAFETY: y holds y_at + n elements and x (when given) x_at + n, checked above.
        unsafe { self.launch(OP, self.grid_for(p.n), &p) }
    }

    fn conv3x3_forward(
        &self,
        g: &ConvGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        y: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.conv_forward(g, x, false, params, at, y)
    }

    fn conv3x3_forward_shared_input(
        &self,
        g: &ConvGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        y: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.conv_forward(g, x, true, params, at, y)
    }

    fn conv_norm_relu_pool_forward(
        &self,
        cg: &ConvGeom,
        ng: &NormGeom,
        mode: Mode,
        x: &CudaBuf<f32>,
        x_shared: bool,
        params: &CudaBuf<f32>,
        conv_at: ParamAt,
        norm_at: ParamAt,
        running: &mut CudaBuf<f32>,
        running_at: ParamAt,
        y: &mut CudaBuf<f32>,
        stats: &mut CudaBuf<f32>,
        scratch: &mut CudaBuf<f32>,
        out: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.conv_norm_forward(
            cg, ng, mode, x, x_shared, params, conv_at, norm_at, running, running_at, y, stats,
            scratch, out,
        )
    }

    fn conv_norm_scratch_len(&self, g: &ConvGeom) -> usize {
        self.conv_norm_partials_len(g)
    }

    fn conv_out_len_eval(&self, cg: &ConvGeom, ng: &NormGeom) -> usize {
        match self.eval_kernel(cg, ng) {
            Some(_) => 0,
            None => cg.students * cg.batch * cg.cout * cg.out_h() * cg.out_w(),
        }
    }

    fn eval_out_bf16(
        &self,
        cg: &ConvGeom,
        ng: &NormGeom,
        next_cg: &ConvGeom,
        next_ng: &NormGeom,
    ) -> bool {
        self.eval_out_bf16_for(cg, ng, next_cg, next_ng)
    }

    fn conv3x3_backward(
        &self,
        g: &ConvGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        dy: &CudaBuf<f32>,
        dx: Option<&mut CudaBuf<f32>>,
        grads: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.conv3x3_bwd(g, x, params, at, dy, dx, grads, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_norm_relu_pool_backward(
        &self,
        cg: &ConvGeom,
        ng: &NormGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        conv_at: ParamAt,
        norm_at: ParamAt,
        y: &CudaBuf<f32>,
        stats: &CudaBuf<f32>,
        dout: &CudaBuf<f32>,
        dy: &mut CudaBuf<f32>,
        dx: Option<&mut CudaBuf<f32>>,
        grads: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "conv_norm_relu_pool_backward";
        let (oh, ow) = (cg.out_h(), cg.out_w());
        if (ng.students, ng.batch, ng.c, ng.h, ng.w) != (cg.students, cg.batch, cg.cout, oh, ow) {
            return Err(Error::shape(format!(
                "{OP}: the norm geometry {ng:?} does not describe the conv output of {cg:?}"
            )));
        }
        // The norm backward writes the conv bias gradient as it writes dy; the conv backward then
        // skips its pass over dy for it.
        self.norm_relu_pool_bwd(
            ng,
            y,
            params,
            norm_at,
            stats,
            dout,
            dy,
            grads,
            Some(conv_at),
        )?;
        self.conv3x3_bwd(cg, x, params, conv_at, dy, dx, grads, false)
    }

    /// conv2d (cuda/conv2d.cu), norm, ReLU and pool (cuda/layers.cu): every layer-list student.
    fn has_layer_ops(&self) -> bool {
        true
    }

    fn conv2d_forward(
        &self,
        g: &crate::backend::Conv2dGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        y: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.conv2d_fwd(g, x, params, at, y)
    }

    fn conv2d_backward(
        &self,
        g: &crate::backend::Conv2dGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        dy: &CudaBuf<f32>,
        dx: Option<&mut CudaBuf<f32>>,
        grads: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.conv2d_bwd(g, x, params, at, dy, dx.map(|d| &*d), grads)
    }

    fn norm_relu_pool_forward(
        &self,
        g: &NormGeom,
        mode: Mode,
        y: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        running: &mut CudaBuf<f32>,
        running_at: ParamAt,
        stats: &mut CudaBuf<f32>,
        out: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "norm_relu_pool_forward";
        let p = self.norm_params(OP, g, y, params, at, stats)?;
        check_len(
            OP,
            "out",
            out.len,
            g.students * g.batch * g.c * (g.h / 2) * (g.w / 2),
        )?;
        let mut p = NormParams {
            out: self.addr(out)?,
            train: u32::from(mode == Mode::Train),
            ..p
        };
        self.with_running(OP, g, running, running_at, &mut p)?;
        let groups = norm_groups(g);
        // SAFETY: y, params, stats, out and (batch norm) running sizes checked above.
        unsafe { self.launch("norm_relu_pool_forward", self.grid_for_groups(groups), &p) }
    }

    fn norm_relu_pool_backward(
        &self,
        g: &NormGeom,
        y: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        stats: &CudaBuf<f32>,
        dout: &CudaBuf<f32>,
        dy: &mut CudaBuf<f32>,
        grads: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.norm_relu_pool_bwd(g, y, params, at, stats, dout, dy, grads, None)
    }

    // The layer-list ops (cuda/layers.cu, launchers in ops/layers.rs). `has_layer_ops` stays
    // false until the conv2d kernels are in too.
    fn norm_forward(
        &self,
        g: &crate::backend::NormLayerGeom,
        mode: Mode,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        running: &mut CudaBuf<f32>,
        running_at: ParamAt,
        stats: &mut CudaBuf<f32>,
        y: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.norm_layer_forward(g, mode, x, params, at, running, running_at, stats, y)
    }

    fn norm_backward(
        &self,
        g: &crate::backend::NormLayerGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        stats: &CudaBuf<f32>,
        dy: &CudaBuf<f32>,
        dx: &mut CudaBuf<f32>,
        grads: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.norm_layer_backward(g, x, params, at, stats, dy, dx, grads)
    }

    fn relu_forward(&self, x: &CudaBuf<f32>, y: &mut CudaBuf<f32>) -> Result<()> {
        self.relu(x, None, y)
    }

    fn relu_backward(
        &self,
        y: &CudaBuf<f32>,
        dy: &CudaBuf<f32>,
        dx: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.relu(y, Some(dy), dx)
    }

    fn pool_forward(
        &self,
        g: &crate::backend::PoolGeom,
        x: &CudaBuf<f32>,
        y: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.pool(g, x, None, y)
    }

    fn pool_backward(
        &self,
        g: &crate::backend::PoolGeom,
        x: &CudaBuf<f32>,
        dy: &CudaBuf<f32>,
        dx: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.pool(g, x, Some(dy), dx)
    }

    fn linear_forward(
        &self,
        g: &LinearGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        out: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "linear_forward";
        let p = self.linear_params(OP, g, x, params, at)?;
        check_len(OP, "out", out.len, g.students * g.batch * g.fout)?;
        let p = LinearParams {
            out: self.addr(out)?,
            ..p
        };
        // SAFETY: x, params, out sizes checked against the geometry.
        unsafe { self.launch("linear_forward", self.grid_for(out.len as u64), &p) }
    }

    fn linear_backward(
        &self,
        g: &LinearGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        dout: &CudaBuf<f32>,
        dx: Option<&mut CudaBuf<f32>>,
        grads: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "linear_backward";
        let p = self.linear_params(OP, g, x, params, at)?;
        check_len(OP, "dout", dout.len, g.students * g.batch * g.fout)?;
        check_len(OP, "grads", grads.len, params.len)?;
        let p = LinearParams {
            dout: self.addr(dout)?,
            grads: self.addr(grads)?,
            ..p
        };
        let n_w = (g.students * g.fout * (g.fin + 1)) as u64;
        // SAFETY: x, params, dout, grads sizes checked against the geometry.
        unsafe { self.launch("linear_backward_weight", self.grid_for(n_w), &p)? };
        if let Some(dx) = dx {
            check_len(OP, "dx", dx.len, x.len)?;
            let p = LinearParams {
                out: self.addr(dx)?,
                ..p
            };
            // SAFETY: dx has the size of x.
            unsafe { self.launch("linear_backward_input", self.grid_for(dx.len as u64), &p)? };
        }
        Ok(())
    }

    fn loss(
        &self,
        kind: LossKind,
        students: usize,
        batch: usize,
        classes: usize,
        logits: &CudaBuf<f32>,
        labels: &CudaBuf<u32>,
        soft: Option<&CudaBuf<f32>>,
        loss: &mut CudaBuf<f32>,
        dlogits: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "loss";
        if students == 0 || batch == 0 || classes == 0 {
            return Err(Error::shape(format!(
                "{OP}: empty shape S={students} B={batch} K={classes}"
            )));
        }
        let n = students * batch * classes;
        check_len(OP, "logits", logits.len, n)?;
        check_len(OP, "labels", labels.len, students * batch)?;
        check_len(OP, "loss", loss.len, students)?;
        check_len(OP, "dlogits", dlogits.len, n)?;
        let (code, temperature, scale, w_mse, w_ce, needs_soft) = match kind {
            LossKind::CrossEntropy => (0, 1.0, 1.0, 0.0, 1.0, false),
            LossKind::Kl {
                temperature,
                scale_loss,
            }
            | LossKind::Sce {
                temperature,
                scale_loss,
            } => {
                // The kernel tells KL (1) from SCE (2); both share the T² scaling rule.
                let code = if matches!(kind, LossKind::Kl { .. }) {
                    1
                } else {
                    2
                };
                let scale = if scale_loss {
                    temperature * temperature
                } else {
                    1.0
                };
                (code, temperature, scale, 0.0, 0.0, true)
            }
            LossKind::MseGt { w_mse, w_ce } => (3, 1.0, 1.0, w_mse, w_ce, true),
        };
        if temperature.is_nan() || temperature <= 0.0 {
            return Err(Error::config(format!(
                "{OP}: temperature must be positive, got {temperature}"
            )));
        }
        let soft_addr = match (needs_soft, soft) {
            (true, Some(s)) => {
                check_len(OP, "soft", s.len, n)?;
                self.addr(s)?
            }
            (true, None) => {
                return Err(Error::config(format!(
                    "{OP}: {kind:?} needs soft targets, none given"
                )))
            }
            (false, _) => 0,
        };
        let p = LossParams {
            logits: self.addr(logits)?,
            labels: self.addr(labels)?,
            soft: soft_addr,
            loss: self.addr(loss)?,
            dlogits: self.addr(dlogits)?,
            students: u32_of(OP, "students", students)?,
            batch: u32_of(OP, "batch", batch)?,
            classes: u32_of(OP, "classes", classes)?,
            kind: code,
            temperature,
            scale,
            w_mse,
            w_ce,
        };
        // SAFETY: all sizes checked above; one block per student (grid = S).
        unsafe { self.launch("loss_forward_backward", p.students, &p) }
    }

    fn optimizer_step(
        &self,
        cfg: &OptimizerCfg,
        step: u32,
        lrs: &CudaBuf<f32>,
        params: &mut CudaBuf<f32>,
        grads: &CudaBuf<f32>,
        state1: &mut CudaBuf<f32>,
        state2: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "optimizer_step";
        let students = lrs.len;
        if students == 0 || params.len % students != 0 {
            return Err(Error::shape(format!(
                "{OP}: params of {} elements for {students} students",
                params.len
            )));
        }
        if step == 0 {
            return Err(Error::config(format!("{OP}: steps are 1-based, got 0")));
        }
        let p = self.optim_params(cfg, students, step, lrs, 0, params, grads, state1, state2)?;
        if p.row == 0 {
            return Ok(());
        }
        // SAFETY: params, grads, state1 (and state2 for Adam) hold n elements, lrs n / row.
        unsafe { self.launch("optimizer_step", self.grid_for(p.n), &p) }
    }

    fn augment(
        &self,
        plan: &AugPlan,
        draws: &BatchDraws,
        dims: BatchDims,
        x: &mut CudaBuf<f32>,
    ) -> Result<()> {
        // A fresh workspace per call; the trainer's hot path can keep one (`augment_with`).
        // Nothing to allocate when no student is augmented this step (e.g. `AugPlan::None`).
        check_len("augment", "x", x.len, dims.len())?;
        if draws.students.iter().all(|s| s.ops == 0) {
            return crate::aug::check_draws(draws, dims);
        }
        let mut ws = self.aug_workspace(dims)?;
        self.write_draws(draws, &mut ws)?;
        self.augment_with(plan, &mut ws, x)
    }

    fn zca_whiten(
        &self,
        dim: usize,
        mean: &CudaBuf<f32>,
        transform: &CudaBuf<f32>,
        x: &CudaBuf<f32>,
        out: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.zca_whiten_kernel(dim, mean, transform, x, out)
    }

    fn count_correct(
        &self,
        students: usize,
        batch: usize,
        classes: usize,
        logits: &CudaBuf<f32>,
        labels: &CudaBuf<u32>,
        correct: &mut CudaBuf<u32>,
    ) -> Result<()> {
        const OP: &str = "count_correct";
        if students == 0 || classes == 0 {
            return Err(Error::shape(format!(
                "{OP}: empty shape S={students} K={classes}"
            )));
        }
        check_len(OP, "logits", logits.len, students * batch * classes)?;
        check_len(OP, "labels", labels.len, students * batch)?;
        check_len(OP, "correct", correct.len, students)?;
        let p = CountParams {
            logits: self.addr(logits)?,
            labels: self.addr(labels)?,
            correct: self.addr(correct)?,
            students: u32_of(OP, "students", students)?,
            batch: u32_of(OP, "batch", batch)?,
            classes: u32_of(OP, "classes", classes)?,
            unused: 0,
        };
        // SAFETY: sizes checked above; one block per student (grid = S).
        unsafe { self.launch("count_correct", p.students, &p) }
    }

    // ---- the step without the host: graph.rs, step.rs, aug.rs (graph branch) -----------------
    fn begin_recording(&self) -> Result<bool> {
        self.begin_recording_impl()
    }
    fn end_recording(&self) -> Result<super::CudaStepGraph> {
        self.end_recording_impl()
    }
    fn replay(&self, graph: &super::CudaStepGraph) -> Result<()> {
        self.replay_impl(graph)
    }
    fn batch_rows(
        &self,
        clock: &CudaBuf<u32>,
        perms: &CudaBuf<u32>,
        base: &CudaBuf<u32>,
        row_labels: &CudaBuf<u32>,
        full_batch: usize,
        idx: &mut CudaBuf<u32>,
        labels: &mut CudaBuf<u32>,
    ) -> Result<()> {
        self.batch_rows_kernel(clock, perms, base, row_labels, full_batch, idx, labels)
    }
    fn aug_table(&self, plan: &AugPlan, dims: BatchDims) -> Result<super::AugWorkspace> {
        self.aug_table_workspace(plan, dims)
    }
    fn augment_at(
        &self,
        plan: &AugPlan,
        clock: &CudaBuf<u32>,
        table: &CudaBuf<u32>,
        stride: usize,
        ws: &mut super::AugWorkspace,
        x: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.augment_at_table(plan, clock, table, stride, ws, x)
    }
    fn tv_supports(&self, pipe: &crate::aug::TvPipeline, c: usize, size: usize) -> Result<()> {
        super::aug_tv::tv_stages(pipe, c, size).map(|_| ())
    }
    fn tv_at(
        &self,
        pipe: &crate::aug::TvPipeline,
        clock: &CudaBuf<u32>,
        table: &CudaBuf<u32>,
        stride: usize,
        dims: BatchDims,
        x: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.tv_at_table(pipe, clock, table, stride, dims, x)
    }
    fn optimizer_step_at(
        &self,
        cfg: &OptimizerCfg,
        students: usize,
        clock: &CudaBuf<u32>,
        lrs: &CudaBuf<f32>,
        params: &mut CudaBuf<f32>,
        grads: &CudaBuf<f32>,
        state1: &mut CudaBuf<f32>,
        state2: &mut CudaBuf<f32>,
    ) -> Result<()> {
        self.optimizer_step_at_kernel(cfg, students, clock, lrs, params, grads, state1, state2)
    }
    fn loss_watch(
        &self,
        clock: &mut CudaBuf<u32>,
        loss: &CudaBuf<f32>,
        sums: &mut CudaBuf<f64>,
        stopped: &mut CudaBuf<u32>,
    ) -> Result<()> {
        self.loss_watch_kernel(clock, loss, sums, stopped)
    }
}

/// The block tile (M × N) and block size of a conv GEMM kernel: cuda/conv.cu's CONV_*_TILE and
/// CONV_*_THREADS, which these must match.
#[derive(Clone, Copy, Debug)]
struct ConvTile {
    bm: usize,
    bn: usize,
    threads: u32,
}
/// TF32 forward and input gradient: 256 × 128 over 8 warps.
const TILE_TF32: ConvTile = ConvTile {
    bm: 256,
    bn: 128,
    threads: 256,
};
/// TF32 weight gradient: the same tile turned (M = cout is small, N = cin·9 large).
const TILE_TF32_DW: ConvTile = ConvTile {
    bm: 128,
    bn: 256,
    threads: 256,
};
/// 3xTF32, every pass: 128 × 64 over 4 warps (registers for the operand tails).
const TILE_TF32X3: ConvTile = ConvTile {
    bm: 128,
    bn: 64,
    threads: 128,
};
/// K per pipeline stage of the conv GEMMs (GEMM_BK in cuda/conv_gemm.cuh).
const GEMM_BK: usize = 8;
/// Fewest K tiles a weight-gradient chunk gets: below this the pipeline's prologue and the
/// epilogue's atomics outweigh the extra parallelism.
const MIN_TILES_PER_SPLIT: usize = 64;
/// Most K chunks per student: enough blocks to fill a GPU with a handful of students.
const MAX_SPLITS: usize = 64;
/// CUDA's limit on grid y and z.
const GRID_YZ_MAX: usize = 65_535;

/// K chunks per student of the weight gradient (K = B·oh·ow, up to 10⁵: one block per output
/// tile would leave most of a GPU idle for the small cout × cin·9 outputs).
fn weight_grad_splits(g: &ConvGeom) -> u32 {
    let tiles = (g.batch * g.out_h() * g.out_w()).div_ceil(GEMM_BK);
    let by_grid = (GRID_YZ_MAX / g.students.max(1)).max(1);
    (tiles / MIN_TILES_PER_SPLIT).clamp(1, MAX_SPLITS.min(by_grid)) as u32
}

/// Grid (⌈m / bm⌉, ⌈n / bn⌉, students) of a conv GEMM, checked against CUDA's grid limits.
fn gemm_grid(op: &str, t: ConvTile, m: usize, n: usize, students: usize) -> Result<[u32; 3]> {
    let (x, y) = (m.div_ceil(t.bm).max(1), n.div_ceil(t.bn).max(1));
    if y > GRID_YZ_MAX || students > GRID_YZ_MAX || x > u32::MAX as usize / 2 {
        return Err(Error::shape(format!(
            "{op}: GEMM of {m}×{n} for {students} students exceeds CUDA's grid limits"
        )));
    }
    Ok([x as u32, y as u32, students as u32])
}

fn norm_groups(g: &NormGeom) -> u64 {
    match g.kind {
        NormKind::Batch => (g.students * g.c) as u64,
        _ => (g.students * g.batch * g.c) as u64,
    }
}

impl CudaBackend {
    /// Both conv forwards: x (S, B, cin, h, w), or (B, cin, h, w) read by every student when
    /// `x_shared`.
    fn conv_forward(
        &self,
        g: &ConvGeom,
        x: &CudaBuf<f32>,
        x_shared: bool,
        params: &CudaBuf<f32>,
        at: ParamAt,
        y: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "conv3x3_forward";
        let p = self.conv_params(OP, g, x, params, at, x_shared)?;
        check_len(
            OP,
            "y",
            y.len,
            g.students * g.batch * g.cout * g.out_h() * g.out_w(),
        )?;
        let p = ConvParams {
            out: self.addr(y)?,
            ..p
        };
        // A shared input is a test pass's chunk: eval mode, the test precision.
        let mode = if x_shared { Mode::Eval } else { Mode::Train };
        let k = self.forward_kernel(g, mode, x_shared, false, p.param_row as usize);
        let p = ConvParams {
            wide: u32::from(k.wide),
            ..p
        };
        let (n, z) = if k.wide {
            (g.students * g.cout, 1)
        } else {
            (g.cout, g.students)
        };
        let grid = gemm_grid(OP, k.tile, g.batch * g.out_h() * g.out_w(), n, z)?;
        // SAFETY: x (one or S copies, as x_shared says), params, y sizes checked against the
        // geometry above; the grid covers (B·oh·ow, cout) per student (or, wide, (B·oh·ow,
        // S·cout) once, with S·param_row < 2³¹ checked by forward_kernel) with the kernel's own
        // tile and block size, and the kernel bounds-checks the tile edges.
        unsafe { self.launch_block(k.name, grid, k.tile.threads, &p) }
    }

    /// The parts of ConvParams every conv kernel shares, after checking x and params.
    /// `x_shared`: x is one (B, cin, h, w) copy read by every student (forward only).
    fn conv_params(
        &self,
        op: &str,
        g: &ConvGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        x_shared: bool,
    ) -> Result<ConvParams> {
        self.conv_params_act(op, g, x, params, at, x_shared, false)
    }

    /// [`Self::conv_params`] with x holding bf16 activations when `x_bf16` (⌈n/2⌉ f32 slots for
    /// n values; the kernel gets `ACT_X_BF16`).
    #[allow(clippy::too_many_arguments)]
    fn conv_params_act(
        &self,
        op: &str,
        g: &ConvGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        x_shared: bool,
        x_bf16: bool,
    ) -> Result<ConvParams> {
        if g.h + 2 * g.pad < 3 || g.w + 2 * g.pad < 3 {
            return Err(Error::shape(format!(
                "{op}: {}×{} input with padding {} is smaller than 3×3",
                g.h, g.w, g.pad
            )));
        }
        // The conv kernels index inside one student's tensors in 32 bits (signed gather offsets).
        let per_student =
            g.batch * g.cin.max(g.cout).max(9) * g.h.max(g.out_h()) * g.w.max(g.out_w());
        if per_student >= 1 << 31 {
            return Err(Error::shape(format!(
                "{op}: {} images of {}×{} per student exceed the kernels' 32-bit indexing; \
                 use a smaller batch",
                g.batch, g.h, g.w
            )));
        }
        let row = param_row(op, g.students, params.len, at)?;
        check_span(op, "conv weight", at.weight, g.cout * g.cin * 9, row)?;
        check_span(op, "conv bias", at.bias, g.cout, row)?;
        let copies = if x_shared { 1 } else { g.students };
        let x_elems = copies * g.batch * g.cin * g.h * g.w;
        let x_len = if x_bf16 { x_elems.div_ceil(2) } else { x_elems };
        check_len(op, "x", x.len, x_len)?;
        Ok(ConvParams {
            x: self.addr(x)?,
            params: self.addr(params)?,
            param_row: row as u64,
            w_off: at.weight as u64,
            b_off: at.bias as u64,
            students: u32_of(op, "students", g.students)?,
            batch: u32_of(op, "batch", g.batch)?,
            cin: u32_of(op, "cin", g.cin)?,
            cout: u32_of(op, "cout", g.cout)?,
            h: u32_of(op, "h", g.h)?,
            w: u32_of(op, "w", g.w)?,
            oh: u32_of(op, "out h", g.out_h())?,
            ow: u32_of(op, "out w", g.out_w())?,
            pad: u32_of(op, "pad", g.pad)?,
            k_splits: 1,
            x_shared: u32::from(x_shared),
            ..ConvParams::default()
        })
    }

    /// `Backend::conv3x3_backward`; without `bias` the bias gradient is left to the caller
    /// (`conv_norm_relu_pool_backward`: the norm backward wrote it).
    #[allow(clippy::too_many_arguments)]
    fn conv3x3_bwd(
        &self,
        g: &ConvGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        dy: &CudaBuf<f32>,
        dx: Option<&mut CudaBuf<f32>>,
        grads: &mut CudaBuf<f32>,
        bias: bool,
    ) -> Result<()> {
        const OP: &str = "conv3x3_backward";
        let p = self.conv_params(OP, g, x, params, at, false)?;
        check_len(
            OP,
            "dy",
            dy.len,
            g.students * g.batch * g.cout * g.out_h() * g.out_w(),
        )?;
        check_len(OP, "grads", grads.len, params.len)?;
        let p = ConvParams {
            dy: self.addr(dy)?,
            grads: self.addr(grads)?,
            ..p
        };
        let (dw_kernel, dx_kernel, dw_tile, dx_tile) = match self.conv_precision() {
            ConvPrecision::Tf32x3 => (
                "conv3x3_backward_weight_tf32x3",
                "conv3x3_backward_input_tf32x3",
                TILE_TF32X3,
                TILE_TF32X3,
            ),
            ConvPrecision::Tf32 => (
                "conv3x3_backward_weight_tf32",
                "conv3x3_backward_input_tf32",
                TILE_TF32_DW,
                TILE_TF32,
            ),
        };
        let k_splits = weight_grad_splits(g);
        let p = ConvParams { k_splits, ..p };
        let mut grid_w = gemm_grid(OP, dw_tile, g.cout, g.cin * 9, g.students)?;
        grid_w[2] *= k_splits; // k_splits · S ≤ GRID_YZ_MAX by weight_grad_splits
        let slots = (g.students * g.cout * g.cin * 9) as u64;
        let pairs = (g.students * g.cout) as u64;
        // SAFETY: x, params, dy, grads sizes checked against the geometry; the clear kernel
        // zeroes the S weight slots (cout·cin·9 at w_off), the weight kernel's grid covers
        // (cout, cin·9) per student and K chunk and adds into those slots, the bias kernel loops
        // over the S·cout pairs.
        unsafe {
            self.launch("conv3x3_backward_weight_clear", self.grid_for(slots), &p)?;
            self.launch_block(dw_kernel, grid_w, dw_tile.threads, &p)?;
            if bias {
                self.launch("conv3x3_backward_bias", self.grid_for_groups(pairs), &p)?;
            }
        }
        if let Some(dx) = dx {
            check_len(OP, "dx", dx.len, x.len)?;
            let p = ConvParams {
                out: self.addr(dx)?,
                k_splits: 1,
                ..p
            };
            let grid = gemm_grid(OP, dx_tile, g.batch * g.h * g.w, g.cin, g.students)?;
            // SAFETY: dx has the size of x, checked above; the grid covers (B·h·w, cin).
            unsafe { self.launch_block(dx_kernel, grid, dx_tile.threads, &p)? };
        }
        Ok(())
    }

    /// `Backend::norm_relu_pool_backward`; with `conv_bias` (the conv that produced y) the same
    /// kernel also writes that conv's bias gradient, Σ dy per channel, into grads.
    #[allow(clippy::too_many_arguments)]
    fn norm_relu_pool_bwd(
        &self,
        g: &NormGeom,
        y: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        stats: &CudaBuf<f32>,
        dout: &CudaBuf<f32>,
        dy: &mut CudaBuf<f32>,
        grads: &mut CudaBuf<f32>,
        conv_bias: Option<ParamAt>,
    ) -> Result<()> {
        const OP: &str = "norm_relu_pool_backward";
        let p = self.norm_params(OP, g, y, params, at, stats)?;
        check_len(
            OP,
            "dout",
            dout.len,
            g.students * g.batch * g.c * (g.h / 2) * (g.w / 2),
        )?;
        check_len(OP, "dy", dy.len, y.len)?;
        check_len(OP, "grads", grads.len, params.len)?;
        let p = NormParams {
            dout: self.addr(dout)?,
            out: self.addr(dy)?,
            grads: self.addr(grads)?,
            train: 1,
            ..p
        };
        let mut q = NormBackwardParams {
            norm: p,
            ..NormBackwardParams::default()
        };
        if let Some(at) = conv_bias {
            let row = param_row(OP, g.students, params.len, at)?;
            check_span(OP, "conv bias", at.bias, g.c, row)?;
            q.norm.param_row = row as u64; // the norm's row too, when it has one (same buffer)
            q.conv_bias_off = at.bias as u64;
            q.conv_bias = 1;
        }
        // One block per (s, c) writes dy of its B planes and (with a norm) the γ and β gradients.
        let pairs = (g.students * g.c) as u64;
        // SAFETY: y, params, stats, dout, dy, grads sizes checked above, and the conv bias span
        // inside the row; the kernel writes only dy, and inside grads the γ and β gradients and
        // (asked) the conv bias gradient.
        unsafe { self.launch("norm_relu_pool_backward", self.grid_for_groups(pairs), &q) }
    }

    fn norm_params(
        &self,
        op: &str,
        g: &NormGeom,
        y: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
        stats: &CudaBuf<f32>,
    ) -> Result<NormParams> {
        check_len(op, "y", y.len, g.students * g.batch * g.c * g.h * g.w)?;
        Ok(NormParams {
            y: self.addr(y)?,
            ..self.norm_params_without_y(op, g, params, at, stats)?
        })
    }

    /// `norm_params` with `y` left null: for the eval kernel (ops/eval.rs), which never stores
    /// or reads a y buffer.
    fn norm_params_without_y(
        &self,
        op: &str,
        g: &NormGeom,
        params: &CudaBuf<f32>,
        at: ParamAt,
        stats: &CudaBuf<f32>,
    ) -> Result<NormParams> {
        if g.h < 2 || g.w < 2 {
            return Err(Error::shape(format!(
                "{op}: {}×{} is too small for 2×2 pooling",
                g.h, g.w
            )));
        }
        let (kind, stats_len) = match g.kind {
            NormKind::Instance => (0, g.students * g.batch * g.c * 2),
            NormKind::Batch => (1, g.students * g.c * 2),
            NormKind::None => (2, stats.len),
        };
        check_len(op, "stats", stats.len, stats_len)?;
        let mut p = NormParams {
            students: u32_of(op, "students", g.students)?,
            batch: u32_of(op, "batch", g.batch)?,
            c: u32_of(op, "c", g.c)?,
            h: u32_of(op, "h", g.h)?,
            w: u32_of(op, "w", g.w)?,
            ph: u32_of(op, "h/2", g.h / 2)?,
            pw: u32_of(op, "w/2", g.w / 2)?,
            kind,
            eps: g.eps,
            momentum: g.momentum,
            ..NormParams::default()
        };
        if g.kind != NormKind::None {
            let row = param_row(op, g.students, params.len, at)?;
            check_span(op, "norm weight", at.weight, g.c, row)?;
            check_span(op, "norm bias", at.bias, g.c, row)?;
            p.params = self.addr(params)?;
            p.stats = self.addr(stats)?;
            p.param_row = row as u64;
            p.w_off = at.weight as u64;
            p.b_off = at.bias as u64;
        }
        Ok(p)
    }

    fn linear_params(
        &self,
        op: &str,
        g: &LinearGeom,
        x: &CudaBuf<f32>,
        params: &CudaBuf<f32>,
        at: ParamAt,
    ) -> Result<LinearParams> {
        let row = param_row(op, g.students, params.len, at)?;
        check_span(op, "linear weight", at.weight, g.fout * g.fin, row)?;
        check_span(op, "linear bias", at.bias, g.fout, row)?;
        check_len(op, "x", x.len, g.students * g.batch * g.fin)?;
        Ok(LinearParams {
            x: self.addr(x)?,
            params: self.addr(params)?,
            param_row: row as u64,
            w_off: at.weight as u64,
            b_off: at.bias as u64,
            students: u32_of(op, "students", g.students)?,
            batch: u32_of(op, "batch", g.batch)?,
            fin: u32_of(op, "fin", g.fin)?,
            fout: u32_of(op, "fout", g.fout)?,
            ..LinearParams::default()
        })
    }

    /// The optimizer kernel's arguments after the checks both launchers share (`optimizer_step`
    /// with the step as an argument; `optimizer_step_at` with `clock`, a device address, giving
    /// the step and the epoch's row of `lrs`). `students` divides `params`' length.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn optim_params(
        &self,
        cfg: &OptimizerCfg,
        students: usize,
        step: u32,
        lrs: &CudaBuf<f32>,
        clock: u64,
        params: &mut CudaBuf<f32>,
        grads: &CudaBuf<f32>,
        state1: &mut CudaBuf<f32>,
        state2: &mut CudaBuf<f32>,
    ) -> Result<OptimParams> {
        const OP: &str = "optimizer_step";
        check_len(OP, "grads", grads.len, params.len)?;
        check_len(OP, "state1", state1.len, params.len)?;
        let kind = match cfg.kind {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Adam => 1,
            OptimizerKind::AdamW => 2,
        };
        if kind != 0 {
            check_len(OP, "state2", state2.len, params.len)?;
        }
        Ok(OptimParams {
            params: self.addr(params)?,
            grads: self.addr(grads)?,
            state1: self.addr(state1)?,
            state2: if kind != 0 { self.addr(state2)? } else { 0 },
            lrs: self.addr(lrs)?,
            n: params.len as u64,
            row: (params.len / students) as u64,
            step,
            kind,
            momentum: cfg.momentum,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            unused: 0.0,
            clock,
        })
    }
}
