//! The per-step bookkeeping of a training step that runs without the host (issue 14, item 6):
//! everything that changes from one step to the next is read on the device from a small *clock*
//! buffer and from per-epoch tables uploaded once, so one recorded step (a CUDA graph) can be
//! replayed for every step of the run. These are the plain reference loops; the CUDA kernels
//! (cuda/rows.cu `batch_rows`, `step_words`, `loss_watch`) repeat them.
//!
//! The clock, (CLOCK_LEN) u32: [`CLOCK_STEP`] optimizer steps done so far (the run's global step,
//! advanced by `loss_watch` at the end of every step), [`CLOCK_EPOCH_FIRST`] the global step the
//! current epoch began at, [`CLOCK_EPOCH`] the 0-based epoch. The host writes it once per epoch
//! (`[t, t, e, 0]`); the step within the epoch is `clock[STEP] − clock[EPOCH_FIRST]`.

pub mod cpu;

use crate::aug::{BatchDraws, ImageDraws, StudentDraws};
use crate::error::{Error, Result};

/// u32 words of the clock buffer.
pub const CLOCK_LEN: usize = 4;
/// Steps done so far over the whole run (the next optimizer step is this + 1).
pub const CLOCK_STEP: usize = 0;
/// The global step the current epoch began at.
pub const CLOCK_EPOCH_FIRST: usize = 1;
/// The current epoch, 0-based (the row of the per-epoch learning-rate and loss tables).
pub const CLOCK_EPOCH: usize = 2;

/// u32 words of one student's / one image's draws (every field is 4 bytes wide).
pub const STUDENT_WORDS: usize = size_of::<StudentDraws>() / 4;
pub const IMAGE_WORDS: usize = size_of::<ImageDraws>() / 4;

/// Words of one step in an epoch's draw table for S students and batches of `full_batch`: the
/// (S, 7) student words, then the (S, b, 13) image words (a short last batch uses a prefix).
pub fn draw_stride(students: usize, full_batch: usize) -> usize {
    students * STUDENT_WORDS + students * full_batch * IMAGE_WORDS
}

/// A step's draws as table words: (S, 7) student words then (S, B, 13) image words.
pub fn draws_to_words(d: &BatchDraws) -> Vec<u32> {
    let mut out =
        Vec::with_capacity(d.students.len() * STUDENT_WORDS + d.images.len() * IMAGE_WORDS);
    for s in &d.students {
        out.extend_from_slice(&[
            s.ops,
            s.mix_self.to_bits(),
            s.mix_other.to_bits(),
            s.box_r0 as u32,
            s.box_r1 as u32,
            s.box_c0 as u32,
            s.box_c1 as u32,
        ]);
    }
    for i in &d.images {
        out.extend_from_slice(&[
            i.scale_x.to_bits(),
            i.scale_y.to_bits(),
            i.rot_cos.to_bits(),
            i.rot_sin.to_bits(),
            i.flip,
            i.brightness.to_bits(),
            i.saturation.to_bits(),
            i.contrast.to_bits(),
            i.crop_x as u32,
            i.crop_y as u32,
            i.cutout_x as u32,
            i.cutout_y as u32,
            i.partner,
        ]);
    }
    out
}

/// The inverse of [`draws_to_words`] for S students and batches of `batch`.
pub fn draws_from_words(words: &[u32], students: usize, batch: usize) -> Result<BatchDraws> {
    let want = students * STUDENT_WORDS + students * batch * IMAGE_WORDS;
    if words.len() < want {
        return Err(Error::shape(format!(
            "draw table: {} words for a step of {students} students × {batch} images ({want})",
            words.len()
        )));
    }
    let (sw, iw) = words[..want].split_at(students * STUDENT_WORDS);
    let f = f32::from_bits;
    let students = sw
        .chunks_exact(STUDENT_WORDS)
        .map(|w| StudentDraws {
            ops: w[0],
            mix_self: f(w[1]),
            mix_other: f(w[2]),
            box_r0: w[3] as i32,
            box_r1: w[4] as i32,
            box_c0: w[5] as i32,
            box_c1: w[6] as i32,
        })
        .collect();
    let images = iw
        .chunks_exact(IMAGE_WORDS)
        .map(|w| ImageDraws {
            scale_x: f(w[0]),
            scale_y: f(w[1]),
            rot_cos: f(w[2]),
            rot_sin: f(w[3]),
            flip: w[4],
            brightness: f(w[5]),
            saturation: f(w[6]),
            contrast: f(w[7]),
            crop_x: w[8] as i32,
            crop_y: w[9] as i32,
            cutout_x: w[10] as i32,
            cutout_y: w[11] as i32,
            partner: w[12],
        })
        .collect();
    Ok(BatchDraws { students, images })
}

/// The step within the epoch the clock points at.
pub fn step_in_epoch(clock: &[u32]) -> Result<usize> {
    if clock.len() != CLOCK_LEN || clock[CLOCK_STEP] < clock[CLOCK_EPOCH_FIRST] {
        return Err(Error::shape(format!(
            "step clock {clock:?}: expected {CLOCK_LEN} words with step ≥ epoch start"
        )));
    }
    Ok((clock[CLOCK_STEP] - clock[CLOCK_EPOCH_FIRST]) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_survive_the_word_table_bit_for_bit() {
        let d = BatchDraws {
            students: vec![
                StudentDraws {
                    ops: 0b1011,
                    mix_self: 0.3,
                    mix_other: 0.7,
                    box_r0: -1,
                    box_r1: 4,
                    box_c0: 2,
                    box_c1: 3,
                };
                2
            ],
            images: (0..6)
                .map(|i| ImageDraws {
                    scale_x: 1.0 + i as f32,
                    rot_sin: -0.5,
                    flip: i % 2,
                    crop_x: -(i as i32),
                    partner: 5 - i,
                    contrast: f32::NAN,
                    ..ImageDraws::default()
                })
                .collect(),
        };
        let w = draws_to_words(&d);
        assert_eq!(w.len(), draw_stride(2, 3));
        let back = draws_from_words(&w, 2, 3).unwrap();
        assert_eq!(draws_to_words(&back), w, "a field changed its bits");
        assert!(draws_from_words(&w[1..], 2, 3).is_err());
    }

    #[test]
    fn the_step_in_the_epoch_comes_from_the_clock() {
        assert_eq!(step_in_epoch(&[7, 5, 1, 0]).unwrap(), 2);
        assert!(step_in_epoch(&[4, 5, 1, 0]).is_err());
        assert!(step_in_epoch(&[4, 5]).is_err());
    }
}
