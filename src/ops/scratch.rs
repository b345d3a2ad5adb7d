//! Reusable f32 scratch buffers for the CPU fast paths (im2col columns, transposed weights, partial
//! weight gradients). The CPU backend owns one pool, so a training step allocates nothing after its
//! first call: every rayon task borrows a buffer and hands it back when its guard drops.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// A stack of idle buffers. Owned by a backend (never global); shared by its rayon tasks.
#[derive(Debug, Default)]
pub struct ScratchPool {
    idle: Mutex<Vec<Vec<f32>>>,
}

/// A borrowed buffer of exactly the asked length; its contents are unspecified (callers overwrite).
/// Returns to the pool on drop.
pub struct Scratch<'a> {
    pool: &'a ScratchPool,
    buf: Vec<f32>,
    /// The asked length; `buf` may be longer.
    len: usize,
}

/// A clone starts empty: scratch contents are never shared, and buffers refill on first use.
impl Clone for ScratchPool {
    fn clone(&self) -> Self {
        ScratchPool::new()
    }
}

impl ScratchPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer of `len` elements: the smallest idle one that is large enough, else the largest
    /// one grown, so after warm-up the pool holds one buffer per concurrent use and a training
    /// step neither allocates nor page-faults.
    pub fn take(&self, len: usize) -> Scratch<'_> {
        // A poisoned lock only means another task panicked while pushing or popping a Vec; the
        // stack itself is still a valid list of buffers, so keep using it.
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let fits = (0..idle.len())
            .filter(|&i| idle[i].len() >= len)
            .min_by_key(|&i| idle[i].len());
        let pick = fits.or_else(|| (0..idle.len()).max_by_key(|&i| idle[i].len()));
        let mut buf = match pick {
            Some(i) => idle.swap_remove(i),
            None => Vec::new(),
        };
        drop(idle);
        // Buffers keep their full initialised length; only growth writes (zeros).
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        Scratch {
            pool: self,
            buf,
            len,
        }
    }

    /// Bytes held by idle buffers (for tests and memory reports).
    pub fn idle_bytes(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.iter()
            .map(|b| b.capacity() * std::mem::size_of::<f32>())
            .sum()
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push(buf);
    }
}

impl Deref for Scratch<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl DerefMut for Scratch<'_> {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_not_reallocated() {
        let pool = ScratchPool::new();
        {
            let a = pool.take(1000);
            assert_eq!(a.len(), 1000);
        }
        let held = pool.idle_bytes();
        assert!(
            held >= 4000,
            "the returned buffer should be idle in the pool, held {held} bytes"
        );
        {
            let b = pool.take(500);
            assert_eq!(b.len(), 500);
            assert_eq!(
                pool.idle_bytes(),
                0,
                "the idle buffer should have been handed out"
            );
        }
        assert_eq!(
            pool.idle_bytes(),
            held,
            "a smaller request must not grow the pool"
        );
    }
}
