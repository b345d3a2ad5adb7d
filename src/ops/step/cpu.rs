//! CPU reference of the step bookkeeping (see the module docs for the clock).

use super::{step_in_epoch, CLOCK_EPOCH, CLOCK_STEP};
use crate::error::{Error, Result};

/// The step's batch rows and labels from the epoch's permutations: for student s and image i of
/// the step's batch (b = idx.len() / S), idx[s·b + i] = base[s] + perms[s·N + j·full_batch + i]
/// and labels[s·b + i] = row_labels[idx[s·b + i]], j the step within the epoch.
/// clock (4), perms (S, N), base (S), row_labels (R), idx and labels (S·b).
pub fn batch_rows(
    clock: &[u32],
    perms: &[u32],
    base: &[u32],
    row_labels: &[u32],
    full_batch: usize,
    idx: &mut [u32],
    labels: &mut [u32],
) -> Result<()> {
    const OP: &str = "batch_rows";
    let s_n = base.len();
    if s_n == 0 || perms.len() % s_n != 0 || idx.len() % s_n != 0 || labels.len() != idx.len() {
        return Err(Error::shape(format!(
            "{OP}: perms {}, idx {}, labels {} for {s_n} students",
            perms.len(),
            idx.len(),
            labels.len()
        )));
    }
    let (n, b) = (perms.len() / s_n, idx.len() / s_n);
    let lo = step_in_epoch(clock)? * full_batch;
    if lo + b > n || b > full_batch {
        return Err(Error::shape(format!(
            "{OP}: a batch of {b} at {lo} overruns an epoch of {n} images (batches of {full_batch})"
        )));
    }
    for s in 0..s_n {
        for i in 0..b {
            let row = base[s] + perms[s * n + lo + i];
            let label = *row_labels.get(row as usize).ok_or_else(|| {
                Error::shape(format!("{OP}: row {row} past {} labels", row_labels.len()))
            })?;
            idx[s * b + i] = row;
            labels[s * b + i] = label;
        }
    }
    Ok(())
}

/// dst = table[j·stride .. j·stride + dst.len()], j the step within the epoch.
pub fn step_words(clock: &[u32], table: &[u32], stride: usize, dst: &mut [u32]) -> Result<()> {
    let at = step_in_epoch(clock)? * stride;
    let src = table.get(at..at + dst.len()).ok_or_else(|| {
        Error::shape(format!(
            "step_words: words [{at}, {}) past a table of {}",
            at + dst.len(),
            table.len()
        ))
    })?;
    dst.copy_from_slice(src);
    Ok(())
}

/// Watches the step's losses (S): a student not yet stopped whose loss is not finite is stopped
/// at this step (stopped[s] = the 1-based global step), otherwise its loss is added to
/// sums[epoch·S + s]. Then the clock advances by one step. sums (E, S), stopped (S).
pub fn loss_watch(
    clock: &mut [u32],
    loss: &[f32],
    sums: &mut [f64],
    stopped: &mut [u32],
) -> Result<()> {
    const OP: &str = "loss_watch";
    let s_n = loss.len();
    let e = clock.get(CLOCK_EPOCH).copied().unwrap_or(u32::MAX) as usize;
    step_in_epoch(clock)?;
    if stopped.len() != s_n || sums.len() < (e + 1) * s_n {
        return Err(Error::shape(format!(
            "{OP}: loss {s_n}, stopped {}, sums {} at epoch {e}",
            stopped.len(),
            sums.len()
        )));
    }
    let step = clock[CLOCK_STEP];
    for (s, &l) in loss.iter().enumerate() {
        if stopped[s] != 0 {
            continue;
        }
        if l.is_finite() {
            sums[e * s_n + s] += l as f64;
        } else {
            stopped[s] = step + 1;
        }
    }
    clock[CLOCK_STEP] = step + 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_gathered_from_the_permutation_at_the_clock() {
        // 2 students over 5 images, batches of 2; step 2 of the epoch is the short last one.
        let perms = [4, 3, 2, 1, 0, 0, 1, 2, 3, 4]; // (S, N)
        let base = [0, 5]; // the second student's set follows the first's
        let row_labels: Vec<u32> = (0..10).map(|r| 100 + r).collect(); // (R)
        let (mut idx, mut labels) = ([0u32; 4], [0u32; 4]);
        batch_rows(
            &[11, 10, 3, 0],
            &perms,
            &base,
            &row_labels,
            2,
            &mut idx,
            &mut labels,
        )
        .unwrap();
        assert_eq!(idx, [2, 1, 7, 8]);
        assert_eq!(labels, [102, 101, 107, 108]);
        let (mut idx, mut labels) = ([0u32; 2], [0u32; 2]);
        batch_rows(
            &[12, 10, 3, 0],
            &perms,
            &base,
            &row_labels,
            2,
            &mut idx,
            &mut labels,
        )
        .unwrap();
        assert_eq!(idx, [0, 9]);
        // Past the epoch: an error, not a read out of bounds.
        assert!(batch_rows(
            &[13, 10, 3, 0],
            &perms,
            &base,
            &row_labels,
            2,
            &mut idx,
            &mut labels
        )
        .is_err());
    }

    #[test]
    fn losses_are_summed_per_epoch_until_a_student_diverges() {
        let mut clock = [4, 4, 1, 0];
        let mut sums = [0f64; 4]; // (E 2, S 2)
        let mut stopped = [0u32; 2];
        loss_watch(&mut clock, &[1.5, 2.0], &mut sums, &mut stopped).unwrap();
        loss_watch(&mut clock, &[0.5, f32::NAN], &mut sums, &mut stopped).unwrap();
        loss_watch(&mut clock, &[1.0, 3.0], &mut sums, &mut stopped).unwrap();
        assert_eq!(sums, [0.0, 0.0, 3.0, 2.0]);
        assert_eq!(stopped, [0, 6], "student 1 stopped at its 6th step");
        assert_eq!(clock, [7, 4, 1, 0]);
    }
}
