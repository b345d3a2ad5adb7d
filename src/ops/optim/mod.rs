//! One optimizer step over the flat (S, P) parameter buffer with a learning rate per student
//! (PyTorch semantics, g̃ the gradient the update sees, t the 1-based step):
//! - SGD(momentum μ, weight decay λ): g̃ = g + λp; buf = g̃ at t = 1, else μ·buf + g̃; p ← p − lr·buf.
//! - Adam(β1, β2, eps, λ as L2): g̃ = g + λp; m ← m + (1−β1)(g̃ − m); v ← β2 v + (1−β2) g̃²;
//!   p ← p − (lr/(1−β1ᵗ))·m/(√v/√(1−β2ᵗ) + eps).
//! - AdamW: p ← p·(1 − lr·λ) first, then the Adam update with g̃ = g.
//!
//! Shapes: lrs (S); params, grads, state1, state2 (S, P). SGD: state1 = momentum buffer;
//! Adam/AdamW: state1 = m, state2 = v. All state starts at zero.

pub mod cpu;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerKind {
    Sgd,
    Adam,
    AdamW,
}

/// PyTorch-semantics optimizer settings shared by a cohort; learning rates are per student.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerCfg {
    pub kind: OptimizerKind,
    pub momentum: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// The per-student scalars of an Adam step, computed in f64 like PyTorch's Python floats and
/// rounded once to f32.
#[derive(Clone, Copy, Debug)]
pub struct AdamScalars {
    /// lr / (1 − β1ᵗ)
    pub step_size: f32,
    /// √(1 − β2ᵗ)
    pub bc2_sqrt: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    /// AdamW's decoupled decay factor 1 − lr·λ.
    pub decay: f32,
}

impl AdamScalars {
    pub fn new(cfg: &OptimizerCfg, step: u32, lr: f32) -> AdamScalars {
        let t = step as i32;
        let bc1 = 1.0 - (cfg.beta1 as f64).powi(t);
        let bc2 = 1.0 - (cfg.beta2 as f64).powi(t);
        AdamScalars {
            step_size: (lr as f64 / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            one_minus_beta1: (1.0 - cfg.beta1 as f64) as f32,
            one_minus_beta2: (1.0 - cfg.beta2 as f64) as f32,
            decay: (1.0 - lr as f64 * cfg.weight_decay as f64) as f32,
        }
    }
}

/// Validates the step, the settings and the lengths; returns P.
pub(crate) fn check(
    cfg: &OptimizerCfg,
    step: u32,
    students: usize,
    params: usize,
    grads: usize,
    state1: usize,
    state2: usize,
) -> Result<usize> {
    let op = "optimizer step";
    if step == 0 {
        return Err(Error::config("optimizer step numbers start at 1"));
    }
    if students == 0 || params % students != 0 {
        return Err(Error::shape(format!(
            "{op}: params has {params} elements, not a multiple of {students} students"
        )));
    }
    let p = params / students;
    super::check_len(op, "grads", grads, params)?;
    super::check_len(op, "state1", state1, params)?;
    let adam = matches!(cfg.kind, OptimizerKind::Adam | OptimizerKind::AdamW);
    if adam || state2 != 0 {
        super::check_len(op, "state2", state2, params)?;
    }
    if adam && !(cfg.beta1 >= 0.0 && cfg.beta1 < 1.0 && cfg.beta2 >= 0.0 && cfg.beta2 < 1.0) {
        return Err(Error::config(format!(
            "Adam betas must lie in [0, 1), got ({}, {})",
            cfg.beta1, cfg.beta2
        )));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgd() -> OptimizerCfg {
        OptimizerCfg {
            kind: OptimizerKind::Sgd,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// Two SGD steps with a constant gradient: p moves by lr·g, then lr·(0.9g + g).
    #[test]
    fn sgd_first_step_sets_the_buffer_to_the_gradient() {
        let cfg = sgd();
        let mut p = [1.0f32, 1.0];
        let g = [0.5f32, 0.5];
        let (mut m, mut v) = ([0f32; 2], [0f32; 0]);
        let lrs = [0.1f32, 0.2];
        cpu::step(&cfg, 1, &lrs, &mut p, &g, &mut m, &mut v).unwrap();
        assert_eq!(p, [1.0 - 0.05, 1.0 - 0.1]);
        cpu::step(&cfg, 2, &lrs, &mut p, &g, &mut m, &mut v).unwrap();
        assert!((p[0] - (0.95 - 0.1 * 0.95)).abs() < 1e-7);
        assert!((p[1] - (0.9 - 0.2 * 0.95)).abs() < 1e-7);
    }

    /// Adam's first step moves every element by about lr·sign(g).
    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let cfg = OptimizerCfg {
            kind: OptimizerKind::Adam,
            ..sgd()
        };
        let mut p = [0.0f32, 0.0];
        let g = [3.0f32, -0.01];
        let (mut m, mut v) = ([0f32; 2], [0f32; 2]);
        cpu::step(&cfg, 1, &[0.01], &mut p, &g, &mut m, &mut v).unwrap();
        assert!(
            (p[0] + 0.01).abs() < 1e-7 && (p[1] - 0.01).abs() < 1e-7,
            "{p:?}"
        );
    }

    #[test]
    fn step_zero_is_an_error() {
        let mut p = [0f32];
        assert!(cpu::step(&sgd(), 0, &[0.1], &mut p, &[0.0], &mut [0.0], &mut []).is_err());
    }
}
