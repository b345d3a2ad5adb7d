//! Optimizer settings as DD-Ranking uses them (PyTorch defaults plus its weight decay), and the
//! per-cohort optimizer state over the flat (S, P) buffer. The update itself is the backend's
//! `optimizer_step` (reference loops in `crate::ops::optim`).

use crate::backend::{Backend, OptimizerCfg, OptimizerKind};
use crate::error::{Error, Result};

/// SGD momentum used by DD-Ranking.
pub const SGD_MOMENTUM: f32 = 0.9;
/// Adam/AdamW betas and eps (PyTorch defaults).
pub const ADAM_BETAS: (f32, f32) = (0.9, 0.999);
pub const ADAM_EPS: f32 = 1e-8;
/// DD-Ranking's default weight decay.
pub const DEFAULT_WEIGHT_DECAY: f32 = 5e-4;

impl OptimizerKind {
    /// `sgd`, `adam`, `adamw` (case-insensitive), as in DD-Ranking configs.
    pub fn parse(name: &str) -> Result<OptimizerKind> {
        match name.to_ascii_lowercase().as_str() {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::AdamW),
            _ => Err(Error::config(format!(
                "unknown optimizer `{name}` (expected sgd, adam or adamw)"
            ))),
        }
    }
}

impl OptimizerCfg {
    /// The settings DD-Ranking uses for `kind` with the given weight decay: SGD momentum 0.9 (no
    /// dampening, no Nesterov), Adam/AdamW betas (0.9, 0.999) and eps 1e-8.
    pub fn new(kind: OptimizerKind, weight_decay: f32) -> OptimizerCfg {
        OptimizerCfg {
            kind,
            momentum: SGD_MOMENTUM,
            beta1: ADAM_BETAS.0,
            beta2: ADAM_BETAS.1,
            eps: ADAM_EPS,
            weight_decay,
        }
    }
}

/// Optimizer state of S students: the step count (shared: students step in lock-step) and two
/// (S, P) buffers (SGD: momentum in `state1`; Adam/AdamW: m in `state1`, v in `state2`).
pub struct OptimState<B: Backend> {
    /// Steps taken so far; the next step is `step + 1` (PyTorch counts from 1).
    pub step: u32,
    /// (S, P)
    pub state1: B::Buf<f32>,
    /// (S, P), empty for SGD.
    pub state2: B::Buf<f32>,
}

impl<B: Backend> OptimState<B> {
    /// Zero state for `len` = S·P elements.
    pub fn new(be: &B, cfg: &OptimizerCfg, len: usize) -> Result<Self> {
        let len2 = if cfg.kind == OptimizerKind::Sgd {
            0
        } else {
            len
        };
        Ok(OptimState {
            step: 0,
            state1: be.alloc(len)?,
            state2: be.alloc(len2)?,
        })
    }

    /// One update of params (S, P) from grads (S, P) with the per-student learning rates lrs (S).
    pub fn step(
        &mut self,
        be: &B,
        cfg: &OptimizerCfg,
        lrs: &B::Buf<f32>,
        params: &mut B::Buf<f32>,
        grads: &B::Buf<f32>,
    ) -> Result<()> {
        let next = self
            .step
            .checked_add(1)
            .ok_or_else(|| Error::config("optimizer step counter overflow"))?;
        be.optimizer_step(
            cfg,
            next,
            lrs,
            params,
            grads,
            &mut self.state1,
            &mut self.state2,
        )?;
        self.step = next;
        Ok(())
    }
}
