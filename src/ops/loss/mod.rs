//! Training losses, each the mean over the batch, with d loss / d logits (ddranking 0.2.0):
//! - CE: −(1/B)Σ log softmax(z)[y]; d = (softmax(z) − onehot(y))/B.
//! - KL(T, scale_loss): (1/B)Σ p·(log p − log q), p = softmax(t/T), q = softmax(z/T); d = (q − p)/(T·B).
//! - SCE(T, scale_loss): (1/B)Σ −p·log q; same d. Both ×T² when `scale_loss`.
//! - MSE-GT(w_mse, w_ce): w_mse·mean over B·K of (z − t)² + w_ce·CE; d = 2w_mse(z − t)/(B·K) + w_ce·d_CE.
//!
//! Shapes: logits (S, B, K), labels (S, B), soft targets t (S, B, K), loss (S), dlogits (S, B, K).
//! The target side is constant: no gradient flows into t.

pub mod cpu;

use super::check_len;
use crate::error::{Error, Result};

/// Training losses (DESIGN.md §3), each the mean over the batch.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LossKind {
    CrossEntropy,
    Kl { temperature: f32, scale_loss: bool },
    Sce { temperature: f32, scale_loss: bool },
    MseGt { w_mse: f32, w_ce: f32 },
}

/// True when the loss reads soft targets.
pub fn needs_soft(kind: LossKind) -> bool {
    !matches!(kind, LossKind::CrossEntropy)
}

/// True when the loss reads hard labels.
pub fn needs_labels(kind: LossKind) -> bool {
    matches!(kind, LossKind::CrossEntropy | LossKind::MseGt { .. })
}

/// Validates lengths, the presence of soft targets, the temperature and (when the loss reads them)
/// that every label lies in [0, K).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check(
    kind: LossKind,
    students: usize,
    batch: usize,
    classes: usize,
    logits_len: usize,
    labels: &[u32],
    soft_len: Option<usize>,
    loss_len: usize,
    dlogits_len: usize,
) -> Result<()> {
    let op = "loss";
    if batch == 0 || classes == 0 {
        return Err(Error::shape(format!(
            "loss: batch {batch} and classes {classes} must be positive"
        )));
    }
    check_len(op, "logits", logits_len, students * batch * classes)?;
    check_len(op, "labels", labels.len(), students * batch)?;
    check_len(op, "loss", loss_len, students)?;
    check_len(op, "dlogits", dlogits_len, students * batch * classes)?;
    match (needs_soft(kind), soft_len) {
        (true, None) => {
            return Err(Error::config(format!(
                "loss {kind:?} needs soft targets, none were given"
            )))
        }
        (true, Some(n)) => check_len(op, "soft targets", n, students * batch * classes)?,
        (false, _) => {}
    }
    if let LossKind::Kl { temperature, .. } | LossKind::Sce { temperature, .. } = kind {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(Error::config(format!(
                "loss temperature must be positive, got {temperature}"
            )));
        }
    }
    if needs_labels(kind) {
        if let Some((i, &y)) = labels
            .iter()
            .enumerate()
            .find(|(_, &y)| y as usize >= classes)
        {
            return Err(Error::shape(format!(
                "loss: label {y} at position {i} is not in [0, {classes})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform logits: CE = ln K, and the gradient is (1/K − onehot)/B.
    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_k() {
        let (b, k) = (2, 4);
        let logits = vec![0.3f32; b * k];
        let labels = [1u32, 3];
        let mut loss = [0f32];
        let mut d = vec![0f32; b * k];
        cpu::forward_backward(
            LossKind::CrossEntropy,
            1,
            b,
            k,
            &logits,
            &labels,
            None,
            &mut loss,
            &mut d,
        )
        .unwrap();
        assert!((loss[0] - (k as f32).ln()).abs() < 1e-6);
        assert!((d[1] - (0.25 - 1.0) / 2.0).abs() < 1e-7);
        assert!((d[0] - 0.25 / 2.0).abs() < 1e-7);
    }

    /// KL of a distribution with itself is 0; SCE of it is its entropy.
    #[test]
    fn kl_to_itself_is_zero() {
        let z = [0.1f32, -1.0, 2.0];
        let kind = LossKind::Kl {
            temperature: 2.0,
            scale_loss: true,
        };
        let mut loss = [1f32];
        let mut d = [1f32; 3];
        cpu::forward_backward(kind, 1, 1, 3, &z, &[0], Some(&z), &mut loss, &mut d).unwrap();
        assert!(loss[0].abs() < 1e-7);
        assert!(d.iter().all(|v| v.abs() < 1e-7));
    }

    #[test]
    fn bad_labels_and_missing_targets_are_errors() {
        let mut loss = [0f32];
        let mut d = [0f32; 2];
        let ce = LossKind::CrossEntropy;
        assert!(
            cpu::forward_backward(ce, 1, 1, 2, &[0.0; 2], &[2], None, &mut loss, &mut d).is_err()
        );
        let sce = LossKind::Sce {
            temperature: 1.0,
            scale_loss: false,
        };
        assert!(
            cpu::forward_backward(sce, 1, 1, 2, &[0.0; 2], &[0], None, &mut loss, &mut d).is_err()
        );
    }
}
