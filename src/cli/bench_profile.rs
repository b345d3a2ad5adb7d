//! `ddr-fast bench --profile`: a `Backend` wrapper that times every op call (wall and CPU time,
//! per op and layer shape), so the benchmark can say where a training step's time goes without
//! a sampling profiler. It calls `synchronize` after each op, so on an asynchronous device the
//! times are per op (and the total is slower than an unprofiled run).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use super::bench::process_cpu_seconds;
use crate::aug::{AugPlan, BatchDims, BatchDraws};
use crate::backend::{
    Backend, Conv2dGeom, ConvGeom, Elem, LinearGeom, LossKind, Mode, NormGeom, NormLayerGeom,
    OptimizerCfg, ParamAt, PoolGeom,
};
use crate::error::Result;

/// Totals of one op label: calls, wall seconds, CPU seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpTotals {
    pub calls: usize,
    pub wall: f64,
    pub cpu: f64,
}

/// Delegates to `inner`, timing each compute op under a label such as `conv fwd 128→128 16px`.
pub struct Timed<'a, B: Backend> {
    inner: &'a B,
    totals: Mutex<BTreeMap<String, OpTotals>>,
}

impl<'a, B: Backend> Timed<'a, B> {
    pub fn new(inner: &'a B) -> Self {
        Timed {
            inner,
            totals: Mutex::new(BTreeMap::new()),
        }
    }

    /// Forget what was recorded (after warm-up).
    pub fn reset(&self) {
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// (label, totals), largest wall time first.
    pub fn report(&self) -> Vec<(String, OpTotals)> {
        let t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = t.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by(|a, b| b.1.wall.total_cmp(&a.1.wall));
        v
    }

    fn time<R>(&self, label: impl FnOnce() -> String, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let (c0, w0) = (process_cpu_seconds(), Instant::now());
        let r = f()?;
        self.inner.synchronize()?;
        let wall = w0.elapsed().as_secs_f64();
        let cpu = process_cpu_seconds()
            .zip(c0)
            .map_or(f64::NAN, |(a, b)| a - b);
        let mut t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let e = t.entry(label()).or_default();
        e.calls += 1;
        e.wall += wall;
        e.cpu += cpu;
        Ok(r)
    }
}

fn conv_label(pass: &str, g: &ConvGeom) -> String {
    format!("conv {pass} {}→{} {}px", g.cin, g.cout, g.h)
}

fn conv2d_label(pass: &str, g: &Conv2dGeom) -> String {
    format!(
        "conv{}x{} s{} {pass} {}→{} {}px",
        g.k, g.k, g.stride, g.cin, g.cout, g.h
    )
}

/// A layer-list norm or pool call: its kind, channels and input size.
fn layer_label(what: &str, kind: &impl std::fmt::Debug, c: usize, h: usize) -> String {
    format!("{what} {kind:?} {c}ch {h}px")
}

fn norm_label(pass: &str, g: &NormGeom) -> String {
    format!("norm+relu+pool {pass} {:?} {}ch {}px", g.kind, g.c, g.h)
}

impl<B: Backend> Backend for Timed<'_, B> {
    type Buf<T: Elem> = B::Buf<T>;
    /// Profiled steps are not recorded: each op runs (and is timed) on its own.
    type StepGraph = ();
    type AugTable = B::AugTable;

    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn alloc<T: Elem>(&self, len: usize) -> Result<Self::Buf<T>> {
        self.inner.alloc(len)
    }
    fn upload<T: Elem>(&self, host: &[T]) -> Result<Self::Buf<T>> {
        self.time(|| "upload".into(), || self.inner.upload(host))
    }
    fn write<T: Elem>(&self, host: &[T], dst: &mut Self::Buf<T>) -> Result<()> {
        self.time(|| "write".into(), || self.inner.write(host, dst))
    }
    fn download<T: Elem>(&self, src: &Self::Buf<T>) -> Result<Vec<T>> {
        self.time(|| "download".into(), || self.inner.download(src))
    }
    fn len<T: Elem>(&self, buf: &Self::Buf<T>) -> usize {
        self.inner.len(buf)
    }
    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }

    fn gather_rows(
        &self,
        src: &Self::Buf<f32>,
        row_len: usize,
        idx: &Self::Buf<u32>,
        dst: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(
            || "gather_rows".into(),
            || self.inner.gather_rows(src, row_len, idx, dst),
        )
    }

    fn scale_add(
        &self,
        n: usize,
        a: f32,
        x: Option<(&Self::Buf<f32>, usize)>,
        b: f32,
        y: &mut Self::Buf<f32>,
        y_at: usize,
    ) -> Result<()> {
        self.time(
            || "scale_add".into(),
            || self.inner.scale_add(n, a, x, b, y, y_at),
        )
    }

    fn memory(&self) -> Result<Option<crate::backend::DeviceMemory>> {
        self.inner.memory()
    }

    fn conv3x3_forward(
        &self,
        g: &ConvGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        y: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(
            || conv_label("fwd", g),
            || self.inner.conv3x3_forward(g, x, params, at, y),
        )
    }

    fn conv3x3_backward(
        &self,
        g: &ConvGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        dy: &Self::Buf<f32>,
        dx: Option<&mut Self::Buf<f32>>,
        grads: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let pass = if dx.is_some() {
            "bwd (dW, dx)"
        } else {
            "bwd (dW)"
        };
        self.time(
            || conv_label(pass, g),
            || self.inner.conv3x3_backward(g, x, params, at, dy, dx, grads),
        )
    }

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
    ) -> Result<()> {
        self.time(
            || norm_label("fwd", g),
            || {
                self.inner
                    .norm_relu_pool_forward(g, mode, y, params, at, running, running_at, stats, out)
            },
        )
    }

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
    ) -> Result<()> {
        self.time(
            || norm_label("bwd", g),
            || {
                self.inner
                    .norm_relu_pool_backward(g, y, params, at, stats, dout, dy, grads)
            },
        )
    }

    fn linear_forward(
        &self,
        g: &LinearGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        out: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(
            || "linear fwd".into(),
            || self.inner.linear_forward(g, x, params, at, out),
        )
    }

    fn linear_backward(
        &self,
        g: &LinearGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        dout: &Self::Buf<f32>,
        dx: Option<&mut Self::Buf<f32>>,
        grads: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(
            || "linear bwd".into(),
            || {
                self.inner
                    .linear_backward(g, x, params, at, dout, dx, grads)
            },
        )
    }

    // ---- layer-list ops (every student but ConvNet) ----

    fn has_layer_ops(&self) -> bool {
        self.inner.has_layer_ops()
    }

    fn conv2d_forward(
        &self,
        g: &Conv2dGeom,
        x: &Self::Buf<f32>,
        params: &Self::Buf<f32>,
        at: ParamAt,
        y: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(
            || conv2d_label("fwd", g),
            || self.inner.conv2d_forward(g, x, params, at, y),
        )
    }

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
        let pass = if dx.is_some() {
            "bwd (dW, dx)"
        } else {
            "bwd (dW)"
        };
        self.time(
            || conv2d_label(pass, g),
            || self.inner.conv2d_backward(g, x, params, at, dy, dx, grads),
        )
    }

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
        self.time(
            || layer_label("norm fwd", &g.kind, g.c, g.h),
            || {
                self.inner
                    .norm_forward(g, mode, x, params, at, running, running_at, stats, y)
            },
        )
    }

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
        self.time(
            || layer_label("norm bwd", &g.kind, g.c, g.h),
            || {
                self.inner
                    .norm_backward(g, x, params, at, stats, dy, dx, grads)
            },
        )
    }

    fn relu_forward(&self, x: &Self::Buf<f32>, y: &mut Self::Buf<f32>) -> Result<()> {
        self.time(|| "relu fwd".into(), || self.inner.relu_forward(x, y))
    }

    fn relu_backward(
        &self,
        y: &Self::Buf<f32>,
        dy: &Self::Buf<f32>,
        dx: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(|| "relu bwd".into(), || self.inner.relu_backward(y, dy, dx))
    }

    fn pool_forward(&self, g: &PoolGeom, x: &Self::Buf<f32>, y: &mut Self::Buf<f32>) -> Result<()> {
        self.time(
            || layer_label("pool fwd", &g.kind, g.c, g.h),
            || self.inner.pool_forward(g, x, y),
        )
    }

    fn pool_backward(
        &self,
        g: &PoolGeom,
        x: &Self::Buf<f32>,
        dy: &Self::Buf<f32>,
        dx: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(
            || layer_label("pool bwd", &g.kind, g.c, g.h),
            || self.inner.pool_backward(g, x, dy, dx),
        )
    }

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
    ) -> Result<()> {
        self.time(
            || "loss".into(),
            || {
                self.inner.loss(
                    kind, students, batch, classes, logits, labels, soft, loss, dlogits,
                )
            },
        )
    }

    fn optimizer_step(
        &self,
        cfg: &OptimizerCfg,
        step: u32,
        lrs: &Self::Buf<f32>,
        params: &mut Self::Buf<f32>,
        grads: &Self::Buf<f32>,
        state1: &mut Self::Buf<f32>,
        state2: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(
            || "optimizer step".into(),
            || {
                self.inner
                    .optimizer_step(cfg, step, lrs, params, grads, state1, state2)
            },
        )
    }

    fn augment(
        &self,
        plan: &AugPlan,
        draws: &BatchDraws,
        dims: BatchDims,
        x: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(
            || "augment".into(),
            || self.inner.augment(plan, draws, dims, x),
        )
    }

    fn zca_whiten(
        &self,
        dim: usize,
        mean: &Self::Buf<f32>,
        transform: &Self::Buf<f32>,
        x: &Self::Buf<f32>,
        out: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(
            || "zca_whiten".into(),
            || self.inner.zca_whiten(dim, mean, transform, x, out),
        )
    }

    fn count_correct(
        &self,
        students: usize,
        batch: usize,
        classes: usize,
        logits: &Self::Buf<f32>,
        labels: &Self::Buf<u32>,
        correct: &mut Self::Buf<u32>,
    ) -> Result<()> {
        self.time(
            || "count_correct".into(),
            || {
                self.inner
                    .count_correct(students, batch, classes, logits, labels, correct)
            },
        )
    }

    // The step bookkeeping (graph branch, issue 14): delegated and timed like the other ops.
    fn batch_rows(
        &self,
        clock: &Self::Buf<u32>,
        perms: &Self::Buf<u32>,
        base: &Self::Buf<u32>,
        row_labels: &Self::Buf<u32>,
        full_batch: usize,
        idx: &mut Self::Buf<u32>,
        labels: &mut Self::Buf<u32>,
    ) -> Result<()> {
        self.time(
            || "batch_rows".into(),
            || {
                self.inner
                    .batch_rows(clock, perms, base, row_labels, full_batch, idx, labels)
            },
        )
    }

    fn aug_table(&self, plan: &AugPlan, dims: BatchDims) -> Result<Self::AugTable> {
        self.inner.aug_table(plan, dims)
    }

    fn augment_at(
        &self,
        plan: &AugPlan,
        clock: &Self::Buf<u32>,
        table: &Self::Buf<u32>,
        stride: usize,
        ws: &mut Self::AugTable,
        x: &mut Self::Buf<f32>,
    ) -> Result<()> {
        self.time(
            || "augment".into(),
            || self.inner.augment_at(plan, clock, table, stride, ws, x),
        )
    }

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
    ) -> Result<()> {
        self.time(
            || "optimizer step".into(),
            || {
                self.inner
                    .optimizer_step_at(cfg, students, clock, lrs, params, grads, state1, state2)
            },
        )
    }

    fn loss_watch(
        &self,
        clock: &mut Self::Buf<u32>,
        loss: &Self::Buf<f32>,
        sums: &mut Self::Buf<f64>,
        stopped: &mut Self::Buf<u32>,
    ) -> Result<()> {
        self.time(
            || "loss_watch".into(),
            || self.inner.loss_watch(clock, loss, sums, stopped),
        )
    }
}
