//! The CUDA backend: `Backend` over a small device abstraction with two implementations, a real
//! GPU (cudarc, embedded fatbins) and an emulated one (the same kernels compiled for the host and
//! run on CPU threads). Both go through the same launch code in `ops.rs` and the same
//! `#[repr(C)]` params structs, so the emulated parity tests exercise everything but the silicon.

mod aug;
mod aug_tv;
pub mod choice;
pub mod embedded;
mod emu;
mod graph;
mod ops;
pub mod params;
mod real;
mod selftest;
mod step;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cudarc::driver::CudaSlice;

use crate::backend::Elem;
use crate::error::{Error, Result};
pub use aug::AugWorkspace;
pub use choice::DeviceChoice;
pub use graph::CudaStepGraph;
pub use ops::eval::{act_bf16_between, eval_kernel_for, reads_bf16_x, EvalKernel, H100_SMEM_OPTIN};
use params::KernelParams;
use real::RealDevice;

/// Threads per block of every kernel; `DDR_BLOCK` in cuda/common.cuh.
const BLOCK: u32 = 128;
/// Blocks per multiprocessor the grid-stride kernels are sized for on a GPU.
const BLOCKS_PER_SM: u32 = 8;
/// Blocks of a grid-stride launch under emulation: the emulator spreads blocks over one worker per
/// host core (cuda/host_emu.h), so enough blocks to keep up to 16 cores busy; a block costs little
/// beyond its work (its 128 threads are fibers), so more would only add scheduling.
const EMU_BLOCKS: u32 = 16;

enum Device {
    Real(Box<RealDevice>),
    Emulated,
}

enum Mem {
    Real(CudaSlice<u8>),
    Emu(emu::EmuMem),
}

/// A device buffer of `len` elements of T.
pub struct CudaBuf<T> {
    mem: Mem,
    len: usize,
    /// Its bytes counted against an emulated memory size, given back on drop.
    _charge: Option<Charge>,
    _t: PhantomData<T>,
}

/// An emulated device's memory size and what its live buffers hold (fault injection: the
/// emulator has no memory limit of its own, so out-of-memory handling needs one to be tested).
#[derive(Debug)]
struct EmuBudget {
    total: u64,
    used: AtomicU64,
    /// The most `used` has been.
    peak: AtomicU64,
}

/// Bytes of one live buffer counted in an [`EmuBudget`].
struct Charge {
    budget: Arc<EmuBudget>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl<T> CudaBuf<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How the conv kernels use the TF32 tensor cores. Each mode has its own kernels
/// (`conv3x3_<pass>_tf32x3`, `conv3x3_<pass>_tf32` in cuda/conv.cu), so the kernel report
/// (tools/kernel-report.sh) sees each main loop separately.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvPrecision {
    /// 3xTF32: operands split into TF32 head + tail, three MMAs per step; close to fp32 (matches
    /// the CPU reference and PyTorch's fp32 golden values) for 3× the tensor-core work.
    Tf32x3,
    /// Plain TF32 (PyTorch's cuDNN default on Ampere and newer; the tensor cores read the fp32
    /// operands truncated to TF32): ~1e-3 relative error per conv, which flips ReLU masks near
    /// zero and moves first-layer gradients visibly — but not trained
    /// accuracy: the precision study (benches/README.md, 20 seeds per mode) found TF32's accuracy
    /// distribution indistinguishable from fp32's, so the fastest mode is the default.
    #[default]
    Tf32,
}

/// How the eval-mode conv forwards of test passes (and teacher labels) use the tensor cores
/// (`--test-precision`): an accuracy-only pass may be cheaper than training. Each mode's kernels:
/// 3xTF32 and TF32 cuda/conv.cu's (TF32's shared-input first layer cuda/conv_bf16.cu's wide
/// GEMM), bf16 cuda/conv_bf16.cu's (m16n8k16, fp32 accumulate, operands rounded to nearest even,
/// as the CPU's `GemmPrecision::Bf16`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TestPrecision {
    Tf32x3,
    /// TF32 m16n8k8 kernels (cuda/conv.cu, the eval kernels of cuda/conv_eval.cu): the default
    /// until the bf16 main loops caught up (see `Bf16`).
    Tf32,
    /// The default: the fastest mode whose accuracy distribution matches fp32's. The precision
    /// study (benches/README.md, 20 seeds per mode) finds TF32 and bf16 both indistinguishable
    /// from fp32; bf16 m16n8k16 kernels (cuda/conv_bf16.cu, cuda/conv_eval.cu) have twice TF32's
    /// tensor rate, and since their main loops issue 3.9–4.5 other instructions per HMMA.16816
    /// (10.4 when TF32 was chosen) the performance model on the measured kernel report
    /// (`DDR_KERNEL_REPORT=benches/results/kernel-report.tsv`, sm_90) puts bf16 test passes ahead:
    /// H100 8,160 vs 6,847 students/h with TF32 ones (benches/README.md, "Default").
    #[default]
    Bf16,
}

impl TestPrecision {
    pub const ALL: [TestPrecision; 3] = [
        TestPrecision::Tf32x3,
        TestPrecision::Tf32,
        TestPrecision::Bf16,
    ];

    pub fn name(self) -> &'static str {
        self.gemm().name()
    }

    /// How the CPU backend rounds GEMM operands to reproduce this mode
    /// (`CpuBackend::with_test_precision`).
    pub fn gemm(self) -> crate::ops::precision::GemmPrecision {
        use crate::ops::precision::GemmPrecision;
        match self {
            TestPrecision::Tf32x3 => GemmPrecision::Tf32x3,
            TestPrecision::Tf32 => GemmPrecision::Tf32,
            TestPrecision::Bf16 => GemmPrecision::Bf16,
        }
    }

    pub fn parse(s: &str) -> Result<TestPrecision> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown test precision '{s}': expected one of 3xtf32, tf32, bf16"
                ))
            })
    }
}

impl From<ConvPrecision> for TestPrecision {
    fn from(p: ConvPrecision) -> Self {
        match p {
            ConvPrecision::Tf32x3 => TestPrecision::Tf32x3,
            ConvPrecision::Tf32 => TestPrecision::Tf32,
        }
    }
}

/// The compute device for `--device cuda[:N]`, or its emulation.
pub struct CudaBackend {
    dev: Device,
    conv_precision: ConvPrecision,
    /// Eval-mode conv forwards (test passes, teacher labels); default bf16 (`TestPrecision`).
    test_precision: TestPrecision,
    /// Emulated only: a device memory size that allocations fail beyond (None: unlimited).
    emu_budget: Option<Arc<EmuBudget>>,
    /// Record training steps and replay them (`DDR_CUDA_GRAPHS=0` turns it off).
    graphs: bool,
    /// The step being recorded, if any (graph.rs).
    recording: graph::RecordingSlot,
    /// Recorded steps replayed so far (tests and the README's host-work counts).
    replays: AtomicU64,
    /// Host → device overwrites (`Backend::write`) and device → host reads so far (ditto).
    writes: AtomicU64,
    reads: AtomicU64,
}

fn as_bytes<T: Elem>(s: &[T]) -> &[u8] {
    // SAFETY: Elem types (f32, u32, ...) are plain data without padding; same memory, byte length.
    unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, std::mem::size_of_val(s)) }
}

fn as_bytes_mut<T: Elem>(s: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; every byte pattern is a valid f32/u32.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut u8, std::mem::size_of_val(s)) }
}

impl CudaBackend {
    /// The GPU with this ordinal, with clear errors for no driver, no GPU, an old driver or a
    /// build without kernels.
    pub fn new(ordinal: usize) -> Result<Self> {
        Ok(CudaBackend {
            dev: Device::Real(Box::new(RealDevice::open(ordinal)?)),
            conv_precision: ConvPrecision::default(),
            test_precision: TestPrecision::default(),
            emu_budget: None,
            graphs: graph::graphs_from_env(),
            recording: Default::default(),
            replays: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        })
    }

    /// The emulated device: the same kernels run on CPU threads (for tests without a GPU).
    pub fn emulated() -> Self {
        CudaBackend {
            dev: Device::Emulated,
            conv_precision: ConvPrecision::default(),
            test_precision: TestPrecision::default(),
            emu_budget: None,
            graphs: graph::graphs_from_env(),
            recording: Default::default(),
            replays: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    /// The emulated device with `total` bytes of memory: `memory()` reports it, and an allocation
    /// past it fails with the out-of-memory error a GPU gives (tests of cohort sizing and of the
    /// halve-and-retry path).
    pub fn emulated_with_memory(total: u64) -> Self {
        CudaBackend {
            emu_budget: Some(Arc::new(EmuBudget {
                total,
                used: AtomicU64::new(0),
                peak: AtomicU64::new(0),
            })),
            ..Self::emulated()
        }
    }

    /// Free and total memory: the driver's numbers on a GPU, the budget under emulation.
    pub fn memory_info(&self) -> Result<Option<crate::backend::DeviceMemory>> {
        match (&self.dev, &self.emu_budget) {
            (Device::Real(d), _) => d.memory().map(Some),
            (Device::Emulated, Some(b)) => Ok(Some(crate::backend::DeviceMemory {
                free: b.total.saturating_sub(b.used.load(Ordering::Relaxed)),
                total: b.total,
            })),
            (Device::Emulated, None) => Ok(None),
        }
    }

    /// Counts `bytes` against the emulated budget, or the out-of-memory error.
    fn charge(&self, bytes: usize) -> Result<Option<Charge>> {
        let Some(b) = &self.emu_budget else {
            return Ok(None);
        };
        let bytes = bytes as u64;
        let before = b.used.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > b.total {
            b.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Error::OutOfMemory(format!(
                "allocating {bytes} bytes on the emulated device: {before} of its {} bytes are in use",
                b.total
            )));
        }
        b.peak.fetch_max(before + bytes, Ordering::Relaxed);
        Ok(Some(Charge {
            budget: Arc::clone(b),
            bytes,
        }))
    }

    /// Emulated with a memory size: the most bytes its buffers have held at once.
    pub fn emulated_peak(&self) -> Option<u64> {
        self.emu_budget
            .as_ref()
            .map(|b| b.peak.load(Ordering::Relaxed))
    }

    /// A real GPU when one is usable, else the emulated device, and why no GPU when there is none.
    pub fn real_or_emulated(ordinal: usize) -> (Self, Option<Error>) {
        match Self::new(ordinal) {
            Ok(b) => (b, None),
            Err(e) => (Self::emulated(), Some(e)),
        }
    }

    /// The same backend with every conv kernel in `p` (default: TF32 for training, bf16 for
    /// test passes): training and eval-mode forwards both (so a test pinning 3xTF32 gets 3xTF32
    /// everywhere); [`CudaBackend::with_test_precision`] then sets the test passes apart.
    pub fn with_conv_precision(mut self, p: ConvPrecision) -> Self {
        self.conv_precision = p;
        self.test_precision = p.into();
        self
    }

    /// The same backend with eval-mode conv forwards (test passes, teacher labels) in `p`.
    pub fn with_test_precision(mut self, p: TestPrecision) -> Self {
        self.test_precision = p;
        self
    }

    pub fn test_precision(&self) -> TestPrecision {
        self.test_precision
    }

    pub fn conv_precision(&self) -> ConvPrecision {
        self.conv_precision
    }

    /// Host work so far: (overwrites of device buffers from the host, reads back to the host,
    /// recorded steps replayed). Counts, not times: what the README's step section quotes.
    pub fn host_work(&self) -> (u64, u64, u64) {
        (
            self.writes.load(Ordering::Relaxed),
            self.reads.load(Ordering::Relaxed),
            self.replays.load(Ordering::Relaxed),
        )
    }

    pub fn is_emulated(&self) -> bool {
        matches!(self.dev, Device::Emulated)
    }

    fn alloc_bytes(&self, bytes: usize) -> Result<Mem> {
        self.refuse_while_recording("allocating device memory")?;
        Ok(match &self.dev {
            Device::Real(d) => Mem::Real(d.alloc_zeroed(bytes)?),
            Device::Emulated => Mem::Emu(emu::EmuMem::zeroed(bytes)),
        })
    }

    /// The device address of a buffer, for a params struct.
    fn addr<T>(&self, buf: &CudaBuf<T>) -> Result<u64> {
        match (&self.dev, &buf.mem) {
            (Device::Real(d), Mem::Real(m)) => Ok(d.addr(m)),
            (Device::Emulated, Mem::Emu(m)) => Ok(m.addr()),
            _ => Err(Error::device(
                "a buffer from another CUDA backend (real vs emulated) was passed in",
            )),
        }
    }

    /// Grid size of a grid-stride kernel over `n` elements.
    fn grid_for(&self, n: u64) -> u32 {
        let cap = match &self.dev {
            Device::Real(d) => d.sm_count.max(1) * BLOCKS_PER_SM,
            Device::Emulated => EMU_BLOCKS,
        };
        n.div_ceil(BLOCK as u64).clamp(1, cap as u64) as u32
    }

    /// Grid size of a kernel whose blocks loop over `groups` independent groups.
    fn grid_for_groups(&self, groups: u64) -> u32 {
        let cap = match &self.dev {
            Device::Real(d) => d.sm_count.max(1) * BLOCKS_PER_SM,
            Device::Emulated => EMU_BLOCKS,
        };
        groups.clamp(1, cap as u64) as u32
    }

    /// # Safety
    /// `params` must be the struct `kernel` takes, holding addresses (from `addr`) of buffers at
    /// least as large as the sizes in it imply; the callers in ops.rs check those sizes first.
    unsafe fn launch<P: KernelParams>(&self, kernel: &str, grid: u32, params: &P) -> Result<()> {
        // SAFETY: forwarded from the caller.
        unsafe { self.launch_3d(kernel, [grid, 1, 1], params) }
    }

    /// As `launch`, with a 3-D grid (x, y, z).
    ///
    /// # Safety
    /// As for `launch`.
    unsafe fn launch_3d<P: KernelParams>(
        &self,
        kernel: &str,
        grid: [u32; 3],
        params: &P,
    ) -> Result<()> {
        // SAFETY: forwarded from the caller.
        unsafe { self.launch_block(kernel, grid, BLOCK, params) }
    }

    /// As `launch_3d`, with a block size other than the kernels' usual `BLOCK`.
    ///
    /// # Safety
    /// As for `launch`; `block` must be the size the kernel is written for.
    unsafe fn launch_block<P: KernelParams>(
        &self,
        kernel: &str,
        grid: [u32; 3],
        block: u32,
        params: &P,
    ) -> Result<()> {
        // SAFETY: forwarded from the caller.
        unsafe { self.launch_block_smem(kernel, grid, block, 0, params) }
    }

    /// As `launch_block`, with `smem` bytes of dynamic shared memory per block (the emulated
    /// device ignores it: its kernels keep such tiles in thread-local arrays).
    ///
    /// # Safety
    /// As for `launch`; `smem` must be what the kernel expects and within the device's limit.
    unsafe fn launch_block_smem<P: KernelParams>(
        &self,
        kernel: &str,
        grid: [u32; 3],
        block: u32,
        smem: u32,
        params: &P,
    ) -> Result<()> {
        check_geometry(kernel, grid, block, params)?;
        if self.record_launch(kernel, grid, block, params)? {
            return Ok(());
        }
        match &self.dev {
            // SAFETY: forwarded from the caller.
            Device::Real(d) => unsafe { d.launch(kernel, grid, block, smem, params) },
            // SAFETY: forwarded from the caller.
            Device::Emulated => unsafe { emu::launch(kernel, grid, block, params) },
        }
    }

    /// Copies host data into a buffer; `staged`: through pinned staging (a recurring upload of
    /// the same size, e.g. the trainer's per-epoch tables) rather than from pageable memory.
    fn upload_into<T: Elem>(&self, host: &[T], mem: &mut Mem, staged: bool) -> Result<()> {
        self.refuse_while_recording("copying to the device")?;
        if staged {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        let bytes = as_bytes(host);
        match (&self.dev, mem) {
            (Device::Real(d), Mem::Real(m)) if staged => d.upload_staged(bytes, m),
            (Device::Real(d), Mem::Real(m)) => d.upload(bytes, m),
            (Device::Emulated, Mem::Emu(m)) => {
                m.bytes_mut()[..bytes.len()].copy_from_slice(bytes);
                Ok(())
            }
            _ => Err(Error::device(
                "a buffer from another CUDA backend (real vs emulated) was passed in",
            )),
        }
    }

    fn describe_device(&self) -> String {
        match &self.dev {
            Device::Real(d) => format!(
                "cuda:{} {} (sm_{}{})",
                d.ordinal, d.name, d.capability.0, d.capability.1
            ),
            Device::Emulated => "cuda-emulated (kernels on CPU threads)".to_string(),
        }
    }

    fn sync(&self) -> Result<()> {
        self.refuse_while_recording("waiting for the device")?;
        match &self.dev {
            Device::Real(d) => d.synchronize(),
            Device::Emulated => Ok(()),
        }
    }

    fn alloc_elems<T: Elem>(&self, len: usize) -> Result<CudaBuf<T>> {
        let bytes = len.checked_mul(size_of::<T>()).ok_or_else(|| {
            Error::device(format!(
                "buffer of {len} elements overflows the address space"
            ))
        })?;
        let charge = self.charge(bytes)?;
        Ok(CudaBuf {
            mem: self.alloc_bytes(bytes)?,
            len,
            _charge: charge,
            _t: PhantomData,
        })
    }

    fn download_elems<T: Elem>(&self, src: &CudaBuf<T>) -> Result<Vec<T>> {
        self.refuse_while_recording("copying from the device")?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        let mut out = vec![T::default(); src.len];
        let bytes = as_bytes_mut(&mut out);
        match (&self.dev, &src.mem) {
            (Device::Real(d), Mem::Real(m)) => d.download(m, bytes)?,
            (Device::Emulated, Mem::Emu(m)) => bytes.copy_from_slice(&m.bytes()[..bytes.len()]),
            _ => {
                return Err(Error::device(
                    "a buffer from another CUDA backend (real vs emulated) was passed in",
                ))
            }
        }
        Ok(out)
    }
}

/// Refuses a launch the GPU would reject (or the emulator abort on), naming the kernel, its
/// geometry and its params, so a launcher bug reads as one rather than as a driver error code.
fn check_geometry<P: KernelParams>(
    kernel: &str,
    grid: [u32; 3],
    block: u32,
    params: &P,
) -> Result<()> {
    let block_ok = block > 0 && block % 32 == 0 && block <= 1024;
    let grid_ok = !grid.contains(&0) && grid[1] <= 65_535 && grid[2] <= 65_535;
    if block_ok && grid_ok {
        return Ok(());
    }
    Err(Error::device(format!(
        "kernel {kernel}: invalid launch geometry grid {grid:?} × block {block} (a block is 32 to \
         1024 threads in steps of 32; no grid dimension is 0, y and z are at most 65535); params {params:?}"
    )))
}

/// Names of the GPUs the driver sees, or why none can be seen.
pub fn visible_gpus() -> Result<Vec<String>> {
    real::list_gpus()
}

#[cfg(test)]
mod tests {
    use super::*;
    use params::OptimParams;

    #[test]
    fn a_bad_launch_geometry_names_the_kernel_and_its_sizes() {
        let be = CudaBackend::emulated();
        // SAFETY: the geometry check refuses this launch before any memory is touched.
        let err =
            unsafe { be.launch_block("optimizer_step", [3, 1, 1], 100, &OptimParams::default()) }
                .expect_err("a 100-thread block is not a whole number of warps");
        let msg = err.to_string();
        for part in ["optimizer_step", "[3, 1, 1]", "block 100", "OptimParams"] {
            assert!(msg.contains(part), "`{part}` missing from: {msg}");
        }
    }
}
