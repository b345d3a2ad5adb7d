//! The CUDA backend: `Backend` over a small device abstraction with two implementations, a real
//! GPU (cudarc, embedded fatbins) and an emulated one (the same kernels compiled for the host and
//! run on CPU threads). Both go through the same launch code in `ops.rs` and the same
//! `#[repr(C)]` params structs, so the emulated parity tests exercise everything but the silicon.

pub mod choice;
pub mod embedded;
mod emu;
mod ops;
pub mod params;
mod real;
mod selftest;

use std::marker::PhantomData;

use cudarc::driver::CudaSlice;

use crate::backend::Elem;
use crate::error::{Error, Result};
pub use choice::DeviceChoice;
use params::KernelParams;
use real::RealDevice;

/// Threads per block of every kernel; `DDR_BLOCK` in cuda/common.cuh.
const BLOCK: u32 = 128;
/// Blocks per multiprocessor the grid-stride kernels are sized for on a GPU.
const BLOCKS_PER_SM: u32 = 8;
/// Blocks of a grid-stride launch under emulation: blocks run one after another there, and every
/// block costs a barrier round over all its threads, so few blocks keep the emulated suite fast.
const EMU_BLOCKS: u32 = 2;

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
    _t: PhantomData<T>,
}

impl<T> CudaBuf<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How the conv kernels use the TF32 tensor cores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvPrecision {
    /// 3xTF32: operands split into TF32 head + tail, three MMAs per step; close to fp32 (matches
    /// the CPU reference and PyTorch's fp32 golden values) for 3× the tensor-core work.
    Tf32x3,
    /// Plain TF32 (PyTorch's cuDNN default on Ampere and newer): ~1e-3 relative error per conv,
    /// which flips ReLU masks near zero and moves first-layer gradients visibly — but not trained
    /// accuracy: the precision study (benches/README.md, 20 seeds per mode) found TF32's accuracy
    /// distribution indistinguishable from fp32's, so the fastest mode is the default.
    #[default]
    Tf32,
}

/// The compute device for `--device cuda[:N]`, or its emulation.
pub struct CudaBackend {
    dev: Device,
    conv_precision: ConvPrecision,
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
        })
    }

    /// The emulated device: the same kernels run on CPU threads (for tests without a GPU).
    pub fn emulated() -> Self {
        CudaBackend {
            dev: Device::Emulated,
            conv_precision: ConvPrecision::default(),
        }
    }

    /// A real GPU when one is usable, else the emulated device, and why no GPU when there is none.
    pub fn real_or_emulated(ordinal: usize) -> (Self, Option<Error>) {
        match Self::new(ordinal) {
            Ok(b) => (b, None),
            Err(e) => (Self::emulated(), Some(e)),
        }
    }

    /// The same backend with the conv kernels in `p` (default: TF32).
    pub fn with_conv_precision(mut self, p: ConvPrecision) -> Self {
        self.conv_precision = p;
        self
    }

    pub fn conv_precision(&self) -> ConvPrecision {
        self.conv_precision
    }

    pub fn is_emulated(&self) -> bool {
        matches!(self.dev, Device::Emulated)
    }

    fn alloc_bytes(&self, bytes: usize) -> Result<Mem> {
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
        match &self.dev {
            // SAFETY: forwarded from the caller.
            Device::Real(d) => unsafe { d.launch(kernel, grid, block, params) },
            // SAFETY: forwarded from the caller.
            Device::Emulated => unsafe { emu::launch(kernel, grid, block, params) },
        }
    }

    fn upload_into<T: Elem>(&self, host: &[T], mem: &mut Mem) -> Result<()> {
        let bytes = as_bytes(host);
        match (&self.dev, mem) {
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
        Ok(CudaBuf {
            mem: self.alloc_bytes(bytes)?,
            len,
            _t: PhantomData,
        })
    }

    fn download_elems<T: Elem>(&self, src: &CudaBuf<T>) -> Result<Vec<T>> {
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

/// Names of the GPUs the driver sees, or why none can be seen.
pub fn visible_gpus() -> Result<Vec<String>> {
    real::list_gpus()
}
