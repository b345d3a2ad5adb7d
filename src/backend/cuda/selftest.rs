//! `CudaBackend::selftest`: runs cuda/selftest.cu, which exercises every CUDA primitive the host
//! emulator re-implements (shuffles, atomics, wmma TF32 in column-major layout), and checks the
//! results against answers computed here. On a GPU this shows the hardware behaves as the
//! emulator assumes; emulated, it checks the emulator itself.

use super::params::SelftestParams;
use super::CudaBackend;
use crate::backend::Backend;
use crate::error::{Error, Result};

/// Threads of the self-test's single block: two warps, so shuffles never cross a warp.
const THREADS: usize = 64;

/// CUDA's cvt.rna.tf32.f32: round to nearest (ties away), 10 mantissa bits kept.
fn tf32(x: f32) -> f32 {
    f32::from_bits((x.to_bits().wrapping_add(0x1000)) & 0xffff_e000)
}

fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) -> Result<()> {
    match got.iter().zip(want).position(|(g, w)| g != w) {
        None => Ok(()),
        Some(i) => Err(Error::device(format!(
            "self-test {what}: element {i} is {:?}, expected {:?}",
            got[i], want[i]
        ))),
    }
}

impl CudaBackend {
    /// Runs the primitives self-test; an error names the first primitive that disagrees.
    pub fn selftest(&self) -> Result<()> {
        // A (16×8) and B (8×16) column-major, small exact binary fractions plus a TF32 rounding case.
        let a: Vec<f32> = (0..128)
            .map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.0)
            .collect();
        let mut b: Vec<f32> = (0..128)
            .map(|i| ((i * 5) % 11) as f32 * 0.5 - 2.0)
            .collect();
        b[3] = 1.0 + 3.0 * f32::EPSILON; // not a TF32 number: rounds to 1.0
        let shfl = self.alloc::<u32>(THREADS)?;
        let shfl_down = self.alloc::<u32>(THREADS)?;
        let shfl_xor = self.alloc::<u32>(THREADS)?;
        let counters = self.alloc::<u32>(2)?;
        let fsum = self.alloc::<f32>(1)?;
        let (ab, bb) = (self.upload(&a)?, self.upload(&b)?);
        let d = self.alloc::<f32>(256)?;
        let p = SelftestParams {
            shfl: self.addr(&shfl)?,
            shfl_down: self.addr(&shfl_down)?,
            shfl_xor: self.addr(&shfl_xor)?,
            counters: self.addr(&counters)?,
            fsum: self.addr(&fsum)?,
            a: self.addr(&ab)?,
            b: self.addr(&bb)?,
            d: self.addr(&d)?,
        };
        // SAFETY: every buffer above has the length SelftestParams documents; one block of 64.
        unsafe { self.launch_block("selftest_primitives", [1, 1, 1], THREADS as u32, &p)? };

        let lanes = |t: usize| (t / 32 * 32, t % 32);
        let want_shfl: Vec<u32> = (0..THREADS)
            .map(|t| (10 * (lanes(t).0 + (lanes(t).1 + 3) % 32)) as u32)
            .collect();
        let want_down: Vec<u32> = (0..THREADS)
            .map(|t| if lanes(t).1 + 5 < 32 { t + 5 } else { t } as u32)
            .collect();
        let want_xor: Vec<u32> = (0..THREADS)
            .map(|t| (lanes(t).0..lanes(t).0 + 32).sum::<usize>() as u32)
            .collect();
        expect("__shfl_sync", &self.download(&shfl)?, &want_shfl)?;
        expect("__shfl_down_sync", &self.download(&shfl_down)?, &want_down)?;
        expect("__shfl_xor_sync", &self.download(&shfl_xor)?, &want_xor)?;
        expect(
            "atomicAdd/atomicMax (u32)",
            &self.download(&counters)?,
            &[64, 63],
        )?;
        expect("atomicAdd (f32)", &self.download(&fsum)?, &[32.0])?;

        // D = tf32(A)·tf32(B) + 1, every product and partial sum exact in f32 for these inputs.
        let mut want_d = vec![0f32; 256];
        for r in 0..16 {
            for c in 0..16 {
                let dot: f32 = (0..8)
                    .map(|k| tf32(a[k * 16 + r]) * tf32(b[c * 8 + k]))
                    .sum();
                want_d[r * 16 + c] = 1.0 + dot;
            }
        }
        expect("wmma tf32 col-major mma", &self.download(&d)?, &want_d)
    }
}
