//! Plain reference for one optimizer step over the flat (S, P) buffers, with PyTorch's
//! arithmetic (torch.optim single-tensor code paths) and one learning rate per student.

use rayon::prelude::*;

use super::{check, AdamScalars};
use super::{OptimizerCfg, OptimizerKind};
use crate::error::Result;

/// One step `step` (1-based) for every student. lrs (S); params, grads, state1, state2 (S, P).
/// SGD keeps its momentum buffer in state1 (state2 may be empty); Adam and AdamW keep m in state1
/// and v in state2.
pub fn step(
    cfg: &OptimizerCfg,
    step: u32,
    lrs: &[f32],
    params: &mut [f32],
    grads: &[f32],
    state1: &mut [f32],
    state2: &mut [f32],
) -> Result<()> {
    let p_len = check(
        cfg,
        step,
        lrs.len(),
        params.len(),
        grads.len(),
        state1.len(),
        state2.len(),
    )?;
    let students = lrs.len();
    if p_len == 0 || students == 0 {
        return Ok(());
    }
    let wd = cfg.weight_decay;
    match cfg.kind {
        OptimizerKind::Sgd => {
            params
                .par_chunks_mut(p_len)
                .zip(state1.par_chunks_mut(p_len))
                .enumerate()
                .for_each(|(s, (p, buf))| {
                    let lr = lrs[s];
                    let g = &grads[s * p_len..][..p_len];
                    for i in 0..p_len {
                        let gt = if wd != 0.0 { g[i] + wd * p[i] } else { g[i] };
                        // PyTorch's first step sets the buffer to the gradient (no 0.9·0 + g).
                        buf[i] = if step == 1 {
                            gt
                        } else {
                            buf[i] * cfg.momentum + gt
                        };
                        p[i] += -lr * buf[i];
                    }
                });
        }
        OptimizerKind::Adam | OptimizerKind::AdamW => {
            let decoupled = cfg.kind == OptimizerKind::AdamW;
            params
                .par_chunks_mut(p_len)
                .zip(state1.par_chunks_mut(p_len))
                .zip(state2.par_chunks_mut(p_len))
                .enumerate()
                .for_each(|(s, ((p, m), v))| {
                    let sc = AdamScalars::new(cfg, step, lrs[s]);
                    let g = &grads[s * p_len..][..p_len];
                    for i in 0..p_len {
                        let gt = if decoupled {
                            p[i] *= sc.decay;
                            g[i]
                        } else if wd != 0.0 {
                            g[i] + wd * p[i]
                        } else {
                            g[i]
                        };
                        // exp_avg.lerp_(g, 1 − β1): PyTorch's lerp for weights below one half.
                        m[i] += sc.one_minus_beta1 * (gt - m[i]);
                        v[i] = v[i] * cfg.beta2 + sc.one_minus_beta2 * gt * gt;
                        // eps after the bias correction of √v, as PyTorch places it.
                        let denom = v[i].sqrt() / sc.bc2_sqrt + cfg.eps;
                        p[i] += -sc.step_size * (m[i] / denom);
                    }
                });
        }
    }
    Ok(())
}
