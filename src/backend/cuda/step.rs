//! The launchers of the step bookkeeping (cuda/rows.cu `batch_rows`, `step_words`, `loss_watch`;
//! cuda/optim.cu `optimizer_step` reading the clock): what lets a recorded step replay at every
//! step. Reference loops and the clock's layout: `crate::ops::step`.

use super::ops::check_len;
use super::params::{BatchRowsParams, LossWatchParams, StepWordsParams};
use super::{CudaBackend, CudaBuf, BLOCK};
use crate::backend::OptimizerCfg;
use crate::error::{Error, Result};
use crate::ops::step::CLOCK_LEN;

impl CudaBackend {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_rows_kernel(
        &self,
        clock: &CudaBuf<u32>,
        perms: &CudaBuf<u32>,
        base: &CudaBuf<u32>,
        row_labels: &CudaBuf<u32>,
        full_batch: usize,
        idx: &mut CudaBuf<u32>,
        labels: &mut CudaBuf<u32>,
    ) -> Result<()> {
        const OP: &str = "batch_rows";
        check_len(OP, "clock", clock.len, CLOCK_LEN)?;
        let s_n = base.len;
        if s_n == 0 || perms.len % s_n != 0 || idx.len % s_n != 0 {
            return Err(Error::shape(format!(
                "{OP}: perms {} and idx {} are not whole rows of {s_n} students",
                perms.len, idx.len
            )));
        }
        check_len(OP, "labels", labels.len, idx.len)?;
        let (n, b) = (perms.len / s_n, idx.len / s_n);
        if b == 0 || b > full_batch || full_batch > n {
            return Err(Error::shape(format!(
                "{OP}: a batch of {b} (full {full_batch}) from epochs of {n} images"
            )));
        }
        let p = BatchRowsParams {
            clock: self.addr(clock)?,
            perms: self.addr(perms)?,
            base: self.addr(base)?,
            row_labels: self.addr(row_labels)?,
            idx: self.addr(idx)?,
            labels: self.addr(labels)?,
            students: s_n as u64,
            n: n as u64,
            batch: b as u64,
            full_batch: full_batch as u64,
            rows: row_labels.len as u64,
        };
        // SAFETY: clock holds 4 words, perms S·N, base S, idx and labels S·b (checked above);
        // the kernel reads perms only below N per student and row_labels only below R.
        unsafe { self.launch(OP, self.grid_for(idx.len as u64), &p) }
    }

    /// dst = the `dst.len()` words at `at` of the clock's step in table (steps, stride).
    pub(super) fn step_words_kernel(
        &self,
        clock: &CudaBuf<u32>,
        table: &CudaBuf<u32>,
        stride: usize,
        at: usize,
        dst: &mut CudaBuf<u32>,
    ) -> Result<()> {
        const OP: &str = "step_words";
        check_len(OP, "clock", clock.len, CLOCK_LEN)?;
        if at + dst.len > stride {
            return Err(Error::shape(format!(
                "{OP}: words [{at}, {}) do not fit a step of {stride}",
                at + dst.len
            )));
        }
        if dst.len == 0 {
            return Ok(());
        }
        let p = StepWordsParams {
            clock: self.addr(clock)?,
            table: self.addr(table)?,
            dst: self.addr(dst)?,
            stride: stride as u64,
            at: at as u64,
            n: dst.len as u64,
            table_len: table.len as u64,
        };
        // SAFETY: dst holds n words; the kernel reads table only below table_len.
        unsafe { self.launch(OP, self.grid_for(p.n), &p) }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn optimizer_step_at_kernel(
        &self,
        cfg: &OptimizerCfg,
        students: usize,
        clock: &CudaBuf<u32>,
        lrs: &CudaBuf<f32>,
        params: &mut CudaBuf<f32>,
        grads: &CudaBuf<f32>,
        state1: &mut CudaBuf<f32>,
        state2: &mut CudaBuf<f32>,
    ) -> Result<()> {
        const OP: &str = "optimizer_step";
        check_len(OP, "clock", clock.len, CLOCK_LEN)?;
        if students == 0 || params.len % students != 0 || lrs.len % students != 0 {
            return Err(Error::shape(format!(
                "{OP}: params of {} and lrs of {} for {students} students",
                params.len, lrs.len
            )));
        }
        let clock = self.addr(clock)?;
        let p = self.optim_params(cfg, students, 0, lrs, clock, params, grads, state1, state2)?;
        if p.row == 0 {
            return Ok(());
        }
        // SAFETY: params, grads, state1 (state2 for Adam) hold n elements; lrs holds E rows of S
        // and the trainer writes clock[EPOCH] < E (one lrs row per epoch of the run).
        unsafe { self.launch(OP, self.grid_for(p.n), &p) }
    }

    pub(super) fn loss_watch_kernel(
        &self,
        clock: &mut CudaBuf<u32>,
        loss: &CudaBuf<f32>,
        sums: &mut CudaBuf<f64>,
        stopped: &mut CudaBuf<u32>,
    ) -> Result<()> {
        const OP: &str = "loss_watch";
        check_len(OP, "clock", clock.len, CLOCK_LEN)?;
        let s_n = loss.len;
        check_len(OP, "stopped", stopped.len, s_n)?;
        if s_n == 0 || sums.len % s_n != 0 {
            return Err(Error::shape(format!(
                "{OP}: sums of {} are not whole rows of {s_n} students",
                sums.len
            )));
        }
        let p = LossWatchParams {
            clock: self.addr(clock)?,
            loss: self.addr(loss)?,
            sums: self.addr(sums)?,
            stopped: self.addr(stopped)?,
            students: s_n as u64,
            epochs: (sums.len / s_n) as u64,
        };
        // SAFETY: loss and stopped hold S, sums E·S (E = epochs, the kernel skips rows past it).
        // One block: its barrier orders every read of the clock before the advance.
        unsafe { self.launch_block(OP, [1, 1, 1], BLOCK, &p) }
    }
}
