//! What the cohort trainer feeds its students: each student's training set (normalised images,
//! hard labels, optional stored soft labels), the shared test set, the per-epoch shuffles and the
//! per-student seeds, all drawn from counter-based generators so a student's run does not depend
//! on its cohort.

use super::trainer::StudentSetup;
use crate::aug::rng::philox4x32_10;
use crate::aug::{DrawKey, TvPipeline};
use crate::error::{Error, Result};

/// Counter purposes used by the trainer, above the augmentation's (`aug::rng::Purpose` < 64), so
/// the streams never overlap.
const PURPOSE_SHUFFLE: u32 = 0xF0;
const PURPOSE_INIT: u32 = 0xF1;

/// Images of one student or of the test set, all of one shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// (N, C, H, W), already normalised (and ZCA-whitened when asked).
    pub images: Vec<f32>,
    /// (N) class indices.
    pub labels: Vec<u32>,
    /// (N, K) stored logits (soft-label mode S), if any.
    pub soft: Option<Vec<f32>>,
    pub channels: usize,
    pub size: usize,
    pub classes: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// C·H·W.
    pub fn image_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// Checks the buffers against the shape, naming `what` in the error.
    pub fn check(&self, what: &str) -> Result<()> {
        let n = self.len();
        if self.images.len() != n * self.image_len() {
            return Err(Error::shape(format!(
                "{what}: {} image values for {n} labels of {}×{}×{}",
                self.images.len(),
                self.channels,
                self.size,
                self.size
            )));
        }
        if let Some(s) = &self.soft {
            if s.len() != n * self.classes {
                return Err(Error::shape(format!(
                    "{what}: {} soft-label values for {n} images × {} classes",
                    s.len(),
                    self.classes
                )));
            }
        }
        if let Some(&l) = self.labels.iter().find(|&&l| l as usize >= self.classes) {
            return Err(Error::shape(format!(
                "{what}: label {l} outside 0..{}",
                self.classes
            )));
        }
        Ok(())
    }
}

/// The counter-based identity of a student: its draws depend on these and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StudentKey {
    pub seed: u64,
    pub run: u32,
    pub role: u32,
}

impl StudentKey {
    fn word(&self, purpose: u32, step: u32, index: u32) -> u32 {
        let counter = [
            (purpose << 24) | ((index >> 2) & 0x00FF_FFFF),
            step,
            self.run,
            self.role,
        ];
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        philox4x32_10(counter, key)[(index & 3) as usize]
    }

    /// The order of the N training images in `epoch` (Fisher–Yates from the top, position i
    /// swapping with a uniform j ≤ i drawn by multiply-shift from word i).
    pub fn shuffle(&self, epoch: u32, n: usize) -> Vec<u32> {
        let mut p: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let w = self.word(PURPOSE_SHUFFLE, epoch, i as u32);
            let j = ((w as u64 * (i as u64 + 1)) >> 32) as usize;
            p.swap(i, j);
        }
        p
    }

    /// The seed of the student's initial weights (`model::init_params`).
    pub fn init_seed(&self) -> u64 {
        (u64::from(self.word(PURPOSE_INIT, 0, 0)) << 32) | u64::from(self.word(PURPOSE_INIT, 0, 1))
    }
}

/// An epoch's `custom_train_trans` table, `steps` × `stride` words: step j's row holds, student
/// by student and image by image of its batch (S, b_j), the [`TvPipeline::entry`] of that image,
/// drawn from the student's key at global step `first + j` (its DSA key: the draws depend on
/// (seed, run, role, step, image) only, so a student's batches do not depend on its cohort);
/// students without the switch get switched-off entries. Zero-padded to the stride.
#[allow(clippy::too_many_arguments)]
pub fn tv_table(
    pipe: &TvPipeline,
    students: &[StudentSetup<'_>],
    first: u32,
    steps: usize,
    full_b: usize,
    n: usize,
    stride: usize,
    size: usize,
) -> Result<Vec<u32>> {
    let words = pipe.entry_words();
    let mut table = vec![0u32; steps * stride]; // (steps, stride)
    for j in 0..steps {
        let b = full_b.min(n - j * full_b);
        let row = &mut table[j * stride..(j + 1) * stride];
        for (s, st) in students.iter().enumerate() {
            let key = st.tv.then_some(DrawKey {
                seed: st.key.seed,
                run: st.key.run,
                role: st.key.role,
                step: first + j as u32,
            });
            for i in 0..b {
                let e = pipe.entry(key.as_ref(), i, size, size)?;
                row[(s * b + i) * words..][..words].copy_from_slice(&e);
            }
        }
    }
    Ok(table)
}

/// Words per step of [`tv_table`]: S students × `full_b` images × the entry.
pub fn tv_stride(pipe: &TvPipeline, students: usize, full_b: usize) -> usize {
    students * full_b * pipe.entry_words()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_are_permutations_that_change_per_epoch_and_role() {
        let k = StudentKey {
            seed: 7,
            run: 1,
            role: 3,
        };
        let a = k.shuffle(0, 100);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<u32>>());
        assert_ne!(a, k.shuffle(1, 100));
        assert_ne!(a, StudentKey { role: 4, ..k }.shuffle(0, 100));
        assert_eq!(a, k.shuffle(0, 100));
        assert_ne!(k.init_seed(), StudentKey { run: 2, ..k }.init_seed());
    }
}
