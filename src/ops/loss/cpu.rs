//! Plain reference for the training losses and their gradient with respect to the logits, per
//! student. Everything is computed in f64 from the f32 logits and rounded once at the end, so the
//! reference is as close to the exact value as f32 storage allows.

use rayon::prelude::*;

use super::check;
use super::LossKind;
use crate::error::Result;

/// log softmax(z·scale) in f64.
fn log_softmax(z: &[f32], scale: f64) -> Vec<f64> {
    let max = z
        .iter()
        .map(|&v| v as f64 * scale)
        .fold(f64::NEG_INFINITY, f64::max);
    let lse = z
        .iter()
        .map(|&v| (v as f64 * scale - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    z.iter().map(|&v| v as f64 * scale - lse).collect()
}

/// Loss of one image and its d/dz (before the 1/B of the batch mean), in f64.
/// z, t: (K); y the label; d: (K).
fn one_image(kind: LossKind, z: &[f32], t: Option<&[f32]>, y: usize, d: &mut [f64]) -> f64 {
    let ce = |d: &mut [f64], w: f64| -> f64 {
        let ls = log_softmax(z, 1.0);
        for (k, dk) in d.iter_mut().enumerate() {
            *dk += w * (ls[k].exp() - if k == y { 1.0 } else { 0.0 });
        }
        -w * ls[y]
    };
    // KL and SCE share q = softmax(z/T), p = softmax(t/T) and the gradient (q − p)/T.
    let soft = |d: &mut [f64], temperature: f32, scale_loss: bool, kl: bool| -> f64 {
        let t = t.expect("soft losses are only called with targets (checked by the caller)");
        let inv_t = 1.0 / temperature as f64;
        let lq = log_softmax(z, inv_t);
        let lp = log_softmax(t, inv_t);
        let scale = if scale_loss {
            (temperature as f64).powi(2)
        } else {
            1.0
        };
        let mut loss = 0.0;
        for k in 0..z.len() {
            let p = lp[k].exp();
            // PyTorch's kl_div uses xlogy: a zero target contributes 0, never NaN.
            if p > 0.0 {
                loss += if kl { p * (lp[k] - lq[k]) } else { -p * lq[k] };
            }
            d[k] += scale * inv_t * (lq[k].exp() - p);
        }
        scale * loss
    };
    match kind {
        LossKind::CrossEntropy => ce(d, 1.0),
        LossKind::Kl {
            temperature,
            scale_loss,
        } => soft(d, temperature, scale_loss, true),
        LossKind::Sce {
            temperature,
            scale_loss,
        } => soft(d, temperature, scale_loss, false),
        LossKind::MseGt { w_mse, w_ce } => {
            let t = t.expect("MSE-GT is only called with targets (checked by the caller)");
            let k_inv = 1.0 / z.len() as f64;
            let mut mse = 0.0;
            for k in 0..z.len() {
                let diff = z[k] as f64 - t[k] as f64;
                mse += diff * diff;
                d[k] += w_mse as f64 * 2.0 * diff * k_inv;
            }
            w_mse as f64 * mse * k_inv + ce(d, w_ce as f64)
        }
    }
}

/// Per-student mean loss over the batch and d loss / d logits.
/// logits (S, B, K), labels (S, B), soft (S, B, K) for the soft losses, loss (S), dlogits (S, B, K).
#[allow(clippy::too_many_arguments)]
pub fn forward_backward(
    kind: LossKind,
    students: usize,
    batch: usize,
    classes: usize,
    logits: &[f32],
    labels: &[u32],
    soft: Option<&[f32]>,
    loss: &mut [f32],
    dlogits: &mut [f32],
) -> Result<()> {
    check(
        kind,
        students,
        batch,
        classes,
        logits.len(),
        labels,
        soft.map(<[f32]>::len),
        loss.len(),
        dlogits.len(),
    )?;
    let inv_b = 1.0 / batch as f64;
    loss.par_iter_mut()
        .zip(dlogits.par_chunks_mut(batch * classes))
        .enumerate()
        .for_each(|(s, (ls, ds))| {
            let mut total = 0.0;
            let mut d = vec![0f64; classes];
            for b in 0..batch {
                let i = (s * batch + b) * classes;
                let z = &logits[i..][..classes];
                let t = soft.map(|t| &t[i..][..classes]);
                d.fill(0.0);
                total += one_image(kind, z, t, labels[s * batch + b] as usize, &mut d);
                for (o, v) in ds[b * classes..][..classes].iter_mut().zip(&d) {
                    *o = (v * inv_b) as f32;
                }
            }
            *ls = (total * inv_b) as f32;
        });
    Ok(())
}
