//! CPU arg-max comparison, rayon over students.

use rayon::prelude::*;

use crate::error::Result;
use crate::ops::check_len;

/// Adds to correct (S) the number of images whose arg-max logit equals the label.
/// logits (S, B, K), labels (S, B), correct (S).
pub fn count_correct(
    students: usize,
    batch: usize,
    classes: usize,
    logits: &[f32],
    labels: &[u32],
    correct: &mut [u32],
) -> Result<()> {
    let op = "count_correct";
    check_len(op, "logits", logits.len(), students * batch * classes)?;
    check_len(op, "labels", labels.len(), students * batch)?;
    check_len(op, "correct", correct.len(), students)?;
    if classes == 0 {
        return Ok(());
    }
    correct.par_iter_mut().enumerate().for_each(|(s, c)| {
        for b in 0..batch {
            let z = &logits[(s * batch + b) * classes..][..classes];
            let mut best = 0;
            for k in 1..classes {
                // NaN never wins, so a diverged student scores as predicting class 0.
                if z[k] > z[best] {
                    best = k;
                }
            }
            if best as u32 == labels[s * batch + b] {
                *c += 1;
            }
        }
    });
    Ok(())
}
