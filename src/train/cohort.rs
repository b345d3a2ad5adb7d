//! `Cohort`: S students of one network (`Net`) trained in lock-step on any `Backend`. It owns the
//! (S, P) parameters, gradients and optimizer state, the (S, R) batch-norm buffers and the
//! per-student learning rates; one `train_step` runs forward → loss → backward → optimizer update
//! for all S students on their own batches. The epoch loop, data and augmentation live above it.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use ddr_fast::backend::{Backend, LossKind, OptimizerCfg, OptimizerKind, cpu::CpuBackend};
//! # use ddr_fast::model::ConvNetSpec;
//! # use ddr_fast::train::{Cohort, Schedule};
//! # fn main() -> ddr_fast::Result<()> {
//! let be = Arc::new(CpuBackend::new());
//! let spec = ConvNetSpec::from_name("ConvNet-3", 3, 32, 10)?;
//! let opt = OptimizerCfg::new(OptimizerKind::Sgd, 5e-4);
//! let mut cohort = Cohort::new(be.clone(), spec, opt, &[0, 1], &[0.01, 0.1])?; // 2 students
//! let sched = Schedule::parse("cosineannealing", 300, 0)?;
//! let (s, b) = (2, 8);
//! let x = be.upload(&vec![0f32; s * b * 3 * 32 * 32])?; // (S, B, C, H, W)
//! let y = be.upload(&vec![0u32; s * b])?; // (S, B)
//! for epoch in 0..300 {
//!     cohort.apply_schedule(&sched, epoch)?;
//!     let losses = cohort.train_step(&x, &y, None, LossKind::CrossEntropy, b)?; // (S)
//! }
//! let logits = cohort.eval_logits(&x, b)?; // (S, B, K), eval mode
//! # Ok(()) }
//! ```

use std::sync::Arc;

use super::optim::OptimState;
use super::schedule::Schedule;
use crate::backend::{Backend, LossKind, Mode, OptimizerCfg};
use crate::error::{Error, Result};
use crate::model::{init_buffers, init_params, Net, NetWorkspace};

pub struct Cohort<B: Backend> {
    backend: Arc<B>,
    net: Net,
    students: usize,
    opt: OptimizerCfg,
    /// (S, P)
    params: B::Buf<f32>,
    /// (S, P), overwritten by every backward.
    grads: B::Buf<f32>,
    state: OptimState<B>,
    /// (S, R) batch-norm running_mean / running_var (empty without batch norm).
    running: B::Buf<f32>,
    /// Train-mode forwards so far: PyTorch's `num_batches_tracked`, the same for every BN layer.
    num_batches_tracked: u64,
    /// (S) the learning rates the schedule scales.
    base_lrs: Vec<f32>,
    /// (S) the learning rates of the next step, on the host and on the device.
    lrs: Vec<f32>,
    lrs_buf: B::Buf<f32>,
    /// Workspaces, one per batch size seen (the full and the last partial batch, the test
    /// chunks), kept for the cohort's life: a recorded step names their buffers, so they must
    /// neither move on the device nor be freed while its graph lives.
    train_ws: Vec<NetWorkspace<B>>,
    eval_ws: Vec<NetWorkspace<B>>,
}

impl<B: Backend> Cohort<B> {
    /// S = `seeds.len()` fresh students (PyTorch-default init, one seed each) with base learning
    /// rates `lrs` (one per student). `net`: a [`Net`], or a ConvNet spec or ConvNet.
    pub fn new(
        backend: Arc<B>,
        net: impl Into<Net>,
        opt: OptimizerCfg,
        seeds: &[u64],
        lrs: &[f32],
    ) -> Result<Self> {
        let net: Net = net.into();
        let p = net.param_len();
        let mut host = vec![0f32; seeds.len() * p]; // (S, P)
        for (row, &seed) in host.chunks_mut(p.max(1)).zip(seeds) {
            init_params(net.layout(), seed, row);
        }
        Self::from_params(backend, net, opt, &host, lrs)
    }

    /// A cohort from given parameters (S, P) on the host (e.g. loaded weights); S = `lrs.len()`.
    /// Batch-norm buffers start at running_mean 0, running_var 1.
    pub fn from_params(
        backend: Arc<B>,
        net: impl Into<Net>,
        opt: OptimizerCfg,
        params: &[f32],
        lrs: &[f32],
    ) -> Result<Self> {
        let net: Net = net.into();
        let s = lrs.len();
        let (p, r) = (net.param_len(), net.buffer_len());
        if s == 0 {
            return Err(Error::config("a cohort needs at least one student"));
        }
        if params.len() != s * p {
            return Err(Error::shape(format!(
                "cohort parameters: got {} values, expected {s} students × {p}",
                params.len()
            )));
        }
        if let Some(bad) = lrs.iter().find(|l| !l.is_finite() || **l < 0.0) {
            return Err(Error::config(format!(
                "learning rates must be finite and ≥ 0, got {bad}"
            )));
        }
        let mut running = vec![0f32; s * r]; // (S, R)
        for row in running.chunks_mut(r.max(1)) {
            init_buffers(net.layout(), row);
        }
        let be = &*backend;
        Ok(Cohort {
            params: be.upload(params)?,
            grads: be.alloc(s * p)?,
            state: OptimState::new(be, &opt, s * p)?,
            running: be.upload(&running)?,
            lrs_buf: be.upload(lrs)?,
            num_batches_tracked: 0,
            base_lrs: lrs.to_vec(),
            lrs: lrs.to_vec(),
            train_ws: Vec::new(),
            eval_ws: Vec::new(),
            students: s,
            opt,
            net,
            backend,
        })
    }

    pub fn students(&self) -> usize {
        self.students
    }
    pub fn net(&self) -> &Net {
        &self.net
    }
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }
    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u32 {
        self.state.step
    }
    /// Train-mode forwards so far (PyTorch's `num_batches_tracked` of every BN layer).
    pub fn num_batches_tracked(&self) -> u64 {
        self.num_batches_tracked
    }
    /// (S) learning rates of the next step.
    pub fn lrs(&self) -> &[f32] {
        &self.lrs
    }
    /// (S, P) parameters.
    pub fn params(&self) -> &B::Buf<f32> {
        &self.params
    }
    /// (S, P) gradients of the last step.
    pub fn grads(&self) -> &B::Buf<f32> {
        &self.grads
    }
    /// (S, R) batch-norm running statistics.
    pub fn running(&self) -> &B::Buf<f32> {
        &self.running
    }

    /// Sets the learning rates (S) of the following steps.
    pub fn set_lrs(&mut self, lrs: &[f32]) -> Result<()> {
        if lrs.len() != self.students {
            return Err(Error::shape(format!(
                "set_lrs: got {} rates for {} students",
                lrs.len(),
                self.students
            )));
        }
        self.lrs.copy_from_slice(lrs);
        self.backend.write(lrs, &mut self.lrs_buf)
    }

    /// Sets every student's rate to `schedule.lr(base_lr, epoch)`; call once at the start of each
    /// epoch (0-based), which is PyTorch's scheduler.step() after every epoch.
    pub fn apply_schedule(&mut self, schedule: &Schedule, epoch: usize) -> Result<()> {
        let lrs: Vec<f32> = self
            .base_lrs
            .iter()
            .map(|&l| schedule.lr(l, epoch))
            .collect();
        self.set_lrs(&lrs)
    }

    /// Overwrites the parameters (S, P) from the host; optimizer state is kept.
    pub fn set_params(&mut self, host: &[f32]) -> Result<()> {
        self.backend.write(host, &mut self.params)
    }

    /// Overwrites the batch-norm buffers (S, R) from the host.
    pub fn set_running(&mut self, host: &[f32]) -> Result<()> {
        self.backend.write(host, &mut self.running)
    }

    fn check_x(&self, x: &B::Buf<f32>, batch: usize) -> Result<()> {
        let want = self.students * batch * self.net.image_len();
        let (c, size) = self.net.input();
        let got = self.backend.len(x);
        if batch == 0 || got != want {
            return Err(Error::shape(format!(
                "cohort input: got {got} values, expected (S {}, B {batch}, {}×{}×{}) = {want}",
                self.students, c, size, size
            )));
        }
        Ok(())
    }

    /// One training step for every student on its own batch: train-mode forward, loss, backward,
    /// optimizer update. x (S, B, C, H, W), labels (S, B), soft (S, B, K) for the soft losses.
    /// Returns the per-student loss (S) before the update.
    pub fn train_step(
        &mut self,
        x: &B::Buf<f32>,
        labels: &B::Buf<u32>,
        soft: Option<&B::Buf<f32>>,
        loss: LossKind,
        batch: usize,
    ) -> Result<Vec<f32>> {
        self.check_x(x, batch)?;
        let be = &*self.backend;
        let i = workspace_for(&mut self.train_ws, batch, || {
            self.net.workspace(be, self.students, batch, true)
        })?;
        let ws = &mut self.train_ws[i];
        self.net
            .forward(be, ws, x, &self.params, &mut self.running, Mode::Train)?;
        if self.net.has_batch_norm() {
            self.num_batches_tracked += 1;
        }
        self.net.loss(be, ws, loss, labels, soft)?;
        self.net
            .backward(be, ws, x, &self.params, &mut self.grads)?;
        self.state
            .step(be, &self.opt, &self.lrs_buf, &mut self.params, &self.grads)?;
        be.download(ws.loss().expect("train workspaces carry a loss buffer"))
    }

    /// The launches of one training step with nothing read from the host, for a step that is
    /// recorded once and replayed (`train::step_graph`): as `train_step`, but the optimizer takes
    /// its step number and the rates (row clock[EPOCH] of lrs (E, S)) from the device clock, and
    /// the loss (S) stays on the device ([`Cohort::step_loss`]). The host's step counters are
    /// advanced separately, by [`Cohort::count_steps`], since a replay does not run this code.
    #[allow(clippy::too_many_arguments)]
    pub fn train_step_launches(
        &mut self,
        x: &B::Buf<f32>,
        labels: &B::Buf<u32>,
        soft: Option<&B::Buf<f32>>,
        loss: LossKind,
        batch: usize,
        clock: &B::Buf<u32>,
        lrs: &B::Buf<f32>,
    ) -> Result<()> {
        self.check_x(x, batch)?;
        let be = &*self.backend;
        let i = workspace_for(&mut self.train_ws, batch, || {
            self.net.workspace(be, self.students, batch, true)
        })?;
        let ws = &mut self.train_ws[i];
        self.net
            .forward(be, ws, x, &self.params, &mut self.running, Mode::Train)?;
        self.net.loss(be, ws, loss, labels, soft)?;
        self.net
            .backward(be, ws, x, &self.params, &mut self.grads)?;
        be.optimizer_step_at(
            &self.opt,
            self.students,
            clock,
            lrs,
            &mut self.params,
            &self.grads,
            &mut self.state.state1,
            &mut self.state.state2,
        )
    }

    /// Counts `n` steps run by [`Cohort::train_step_launches`] or replays of them in the host's
    /// step counters (`steps`, `num_batches_tracked`).
    pub fn count_steps(&mut self, n: u32) {
        self.state.step += n;
        if self.net.has_batch_norm() {
            self.num_batches_tracked += n as u64;
        }
    }

    /// (S) the losses of the last training step of batch size `batch`, on the device.
    pub fn step_loss(&self, batch: usize) -> Result<&B::Buf<f32>> {
        self.train_ws
            .iter()
            .find(|ws| ws.batch() == batch)
            .and_then(|ws| ws.loss())
            .ok_or_else(|| Error::config(format!("no training step of batch {batch} ran yet")))
    }

    /// Eval-mode logits (S, B, K) of x (S, B, C, H, W); batch norm uses the running statistics.
    pub fn eval_logits(&mut self, x: &B::Buf<f32>, batch: usize) -> Result<&B::Buf<f32>> {
        self.check_x(x, batch)?;
        let be = &*self.backend;
        let i = workspace_for(&mut self.eval_ws, batch, || {
            self.net.workspace(be, self.students, batch, false)
        })?;
        let ws = &mut self.eval_ws[i];
        self.net
            .forward(be, ws, x, &self.params, &mut self.running, Mode::Eval)?;
        Ok(ws.logits())
    }

    /// Eval-mode logits (S, B, K) of every student on the same images x (B, C, H, W): one copy
    /// read by all S (`Net::forward_shared_input`; the CUDA backend runs the first conv as one
    /// GEMM over the S students' weights). Equal to [`Cohort::eval_logits`] on S copies of x.
    pub fn eval_logits_shared(&mut self, x: &B::Buf<f32>, batch: usize) -> Result<&B::Buf<f32>> {
        let want = batch * self.net.image_len();
        let got = self.backend.len(x);
        if batch == 0 || got != want {
            return Err(Error::shape(format!(
                "shared cohort input: got {got} values, expected (B {batch}, {}×{}×{}) = {want}",
                self.net.input().0,
                self.net.input().1,
                self.net.input().1
            )));
        }
        let be = &*self.backend;
        // The eval workspaces are kept per batch size, so every test point reuses them.
        let i = workspace_for(&mut self.eval_ws, batch, || {
            self.net.workspace(be, self.students, batch, false)
        })?;
        let ws = &mut self.eval_ws[i];
        self.net
            .forward_shared_input(be, ws, x, &self.params, &mut self.running, Mode::Eval)?;
        Ok(ws.logits())
    }

    /// [`Cohort::count_correct`] with every student on the same images x (B, C, H, W)
    /// ([`Cohort::eval_logits_shared`]); labels (S, B).
    pub fn count_correct_shared(
        &mut self,
        x: &B::Buf<f32>,
        labels: &B::Buf<u32>,
        batch: usize,
        correct: &mut B::Buf<u32>,
    ) -> Result<()> {
        let (s, k) = (self.students, self.net.classes());
        let backend = Arc::clone(&self.backend);
        let logits = self.eval_logits_shared(x, batch)?;
        backend.count_correct(s, batch, k, logits, labels, correct)
    }

    /// Adds to correct (S) each student's number of right eval-mode predictions on x
    /// (S, B, C, H, W) with labels (S, B).
    pub fn count_correct(
        &mut self,
        x: &B::Buf<f32>,
        labels: &B::Buf<u32>,
        batch: usize,
        correct: &mut B::Buf<u32>,
    ) -> Result<()> {
        let (s, k) = (self.students, self.net.classes());
        let backend = Arc::clone(&self.backend);
        let logits = self.eval_logits(x, batch)?;
        backend.count_correct(s, batch, k, logits, labels, correct)
    }
}

/// The index of the workspace for `batch` in `list`, made by `make` the first time.
fn workspace_for<B: Backend>(
    list: &mut Vec<NetWorkspace<B>>,
    batch: usize,
    make: impl FnOnce() -> Result<NetWorkspace<B>>,
) -> Result<usize> {
    if let Some(i) = list.iter().position(|ws| ws.batch() == batch) {
        return Ok(i);
    }
    list.push(make()?);
    Ok(list.len() - 1)
}
