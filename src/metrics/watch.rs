//! A handle another thread holds on a running evaluation: it reads the progress and can ask the
//! evaluation to stop. Bindings (Python) run `evaluate` on a worker thread and poll this from the
//! caller's thread, so the caller's callbacks and Ctrl-C never run inside the engine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Progress in training images (students × images × epochs, the unit of the progress bar) and a
/// stop request. All fields are plain atomics: the evaluation writes, the watcher reads.
#[derive(Debug, Default)]
pub struct Watch {
    done: AtomicU64,
    total: AtomicU64,
    stop: AtomicBool,
}

impl Watch {
    pub fn new() -> Watch {
        Watch::default()
    }

    /// (done, total) training images of this call; total is 0 until the plan is known and stays
    /// 0 when everything came from the cache or the journal.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    /// Asks the evaluation to stop before its next cohort. The cohort in flight finishes and is
    /// recorded (journal and cache), then `evaluate` returns `Error::Interrupted`.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    pub(crate) fn set_done(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
    }
}
