//! A training step without the host (issue 14, item 6).
//!
//! Everything that changes from one step to the next lives on the device, so the host's work per
//! epoch is a few small uploads and its work per step is one call:
//! - [`EpochTables`]: the step clock ((4) u32, `crate::ops::step`), each student's permutation
//!   of its images for the epoch (S, N), the epoch's augmentation draws (steps, stride) sampled
//!   on the host by `aug::sample` exactly as before (so every device augments bitwise alike),
//!   the whole run's learning rates (E, S) (uploaded once), and the per-epoch loss sums (E, S)
//!   and stop marks (S) that `Backend::loss_watch` keeps on the device. The host writes the
//!   clock, permutations and draws once per epoch (`Backend::write`: pinned, asynchronous on a
//!   GPU) and reads the sums and stop marks back at test points only.
//! - [`StepGraph`]: one step's launches recorded once and replayed. The backend decides whether
//!   it records (`Backend::begin_recording`): CUDA captures a CUDA graph on its stream (under
//!   emulation, a launch list replayed in order); the CPU does not record and runs the launches
//!   directly every step, which gives the same numbers. The first step of each batch size always
//!   runs directly (it allocates the workspaces a recording must not allocate); the second is
//!   recorded and replayed, and every later one replayed. `DDR_CUDA_GRAPHS=0` makes CUDA run
//!   every step directly, to compare.
//!
//! What the step launches (trainer.rs `step_launches`): `batch_rows` (the step's rows and labels
//! from the permutations at the clock) → `gather_rows` (images, stored soft labels) →
//! `augment_at` (the step's draws from the table) → [mode M: teachers' forward and mean] →
//! forward, loss, backward → `optimizer_step_at` (step number and rate from the clock) →
//! `loss_watch` (sum the losses, mark a NaN/inf student, advance the clock).

use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::step::{CLOCK_EPOCH, CLOCK_EPOCH_FIRST, CLOCK_LEN, CLOCK_STEP};

/// One training step's launches, replayed from a recording where the backend records.
pub struct StepGraph<B: Backend> {
    graph: Option<B::StepGraph>,
    /// Steps run directly so far: the first allocates, so it is never recorded.
    direct: usize,
    /// The backend declined to record (CPU, `DDR_CUDA_GRAPHS=0`): always run directly.
    declined: bool,
}

impl<B: Backend> Default for StepGraph<B> {
    fn default() -> Self {
        StepGraph {
            graph: None,
            direct: 0,
            declined: false,
        }
    }
}

impl<B: Backend> StepGraph<B> {
    /// Runs one step: a replay of the recording if there is one; else `launches` directly (the
    /// first time, or when the backend does not record), or recorded and then replayed.
    /// Every buffer `launches` names must outlive this `StepGraph` unchanged in size.
    pub fn run(&mut self, be: &B, launches: impl FnOnce() -> Result<()>) -> Result<()> {
        if let Some(g) = &self.graph {
            return be.replay(g);
        }
        if self.direct == 0 || self.declined || !be.begin_recording()? {
            self.declined |= self.direct > 0;
            self.direct += 1;
            return launches();
        }
        let ran = launches();
        // End the recording even when a launch failed, so the backend is usable again.
        let graph = be.end_recording();
        ran?;
        let graph = graph?;
        be.replay(&graph)?;
        self.graph = Some(graph);
        Ok(())
    }

    /// Whether later steps replay a recording.
    pub fn recorded(&self) -> bool {
        self.graph.is_some()
    }

    /// The recording, if any (tests count its launches).
    pub fn graph(&self) -> Option<&B::StepGraph> {
        self.graph.as_ref()
    }
}

/// The device-resident per-step values of a cohort's training (see the module docs). Every
/// buffer is allocated once per cohort and only rewritten, so recorded steps stay valid.
pub struct EpochTables<B: Backend> {
    /// (4) u32: `ops::step` CLOCK_*.
    pub clock: B::Buf<u32>,
    /// (S, N) each student's order of its images this epoch.
    pub perms: B::Buf<u32>,
    /// (steps, stride) this epoch's augmentation draws (`ops::step::draws_to_words`); empty
    /// when no student augments.
    pub draws: B::Buf<u32>,
    /// Words per step in `draws`.
    pub stride: usize,
    /// (E, S) every epoch's learning rates.
    pub lrs: B::Buf<f32>,
    /// (E, S) each epoch's sum of per-step losses (f64, as the host summed them).
    pub sums: B::Buf<f64>,
    /// (S) 0 while training, else the 1-based global step whose loss was NaN or infinite.
    pub stopped: B::Buf<u32>,
    students: usize,
}

impl<B: Backend> EpochTables<B> {
    /// Tables for S students of N images, `steps` steps per epoch with `stride` draw words
    /// each (0: no augmentation), and the run's learning rates lrs (E, S).
    pub fn new(
        be: &Arc<B>,
        students: usize,
        n: usize,
        steps: usize,
        stride: usize,
        lrs: &[f32],
    ) -> Result<Self> {
        if students == 0 || lrs.len() % students != 0 {
            return Err(Error::shape(format!(
                "epoch tables: {} learning rates for {students} students",
                lrs.len()
            )));
        }
        let epochs = lrs.len() / students;
        Ok(EpochTables {
            clock: be.alloc(CLOCK_LEN)?,
            perms: be.alloc(students * n)?,
            draws: be.alloc(steps * stride)?,
            stride,
            lrs: be.upload(lrs)?,
            sums: be.alloc(epochs * students)?,
            stopped: be.alloc(students)?,
            students,
        })
    }

    /// The epoch's uploads: its permutations perms (S, N), its draws (steps·stride words, or
    /// none), and the clock set to global step `step` at the start of epoch `epoch`.
    pub fn start_epoch(
        &mut self,
        be: &B,
        epoch: usize,
        step: u32,
        perms: &[u32],
        draws: Option<&[u32]>,
    ) -> Result<()> {
        be.write(perms, &mut self.perms)?;
        if let Some(d) = draws {
            be.write(d, &mut self.draws)?;
        }
        let mut clock = [0u32; CLOCK_LEN];
        clock[CLOCK_STEP] = step;
        clock[CLOCK_EPOCH_FIRST] = step;
        clock[CLOCK_EPOCH] = u32::try_from(epoch)
            .map_err(|_| Error::config(format!("epoch {epoch} does not fit the step clock")))?;
        be.write(&clock, &mut self.clock)
    }

    /// At a test point: the loss sums (E, S) and the stop marks (S), read from the device.
    pub fn read(&self, be: &B) -> Result<(Vec<f64>, Vec<u32>)> {
        Ok((be.download(&self.sums)?, be.download(&self.stopped)?))
    }

    pub fn students(&self) -> usize {
        self.students
    }
}
