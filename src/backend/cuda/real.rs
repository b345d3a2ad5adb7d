//! The real device: one CUDA context through cudarc's dynamically loaded driver API, the embedded
//! fatbins loaded once as modules, every kernel function looked up once and cached by name.
//! cudarc's per-launch event tracking is disabled: work goes to one stream in order and the
//! backend synchronises explicitly (downloads and `Backend::synchronize`). That stream is a
//! dedicated one, not the legacy default stream, because CUDA graph capture (graph.rs) refuses
//! the latter. Recurring uploads (`Backend::write`: the trainer's per-epoch tables) go through
//! page-locked staging buffers kept per size, so they are real asynchronous copies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::CUresult;
use cudarc::driver::{
    result as cu, sys, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError,
    LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use super::embedded::{self, HOW_TO_GET_KERNELS};
use super::params::KernelParams;
use crate::error::{Error, Result};

/// The CUDA version the embedded kernels were compiled with (13.0) as the driver reports it.
const NEEDED_DRIVER_API: i32 = 13000;
/// Page-locked staging kept at most (bytes over all sizes): the trainer's per-epoch tables are a
/// few MB; a larger recurring upload falls back to a pageable copy rather than pin more RAM.
const STAGING_MAX_BYTES: usize = 256 << 20;

pub struct RealDevice {
    /// Holds the context (and so every buffer and module of it) alive.
    pub stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    pub name: String,
    pub ordinal: usize,
    pub sm_count: u32,
    /// Most shared memory one block may use after opting in (bytes): bounds the dynamic shared
    /// memory of the eval kernels (cuda/conv_eval.cu).
    pub smem_optin: usize,
    pub capability: (i32, i32),
    /// The most recent launch (kernel, grid, block): a kernel's fault surfaces at the next
    /// synchronisation, and the message then names the likeliest culprit.
    last_launch: Mutex<Option<(&'static str, [u32; 3], u32)>>,
    /// Page-locked staging buffers by byte length (`upload_staged`).
    staging: Mutex<HashMap<usize, PinnedHostSlice<u8>>>,
}

/// Turns a driver error into a message a user can act on.
pub fn driver_error(what: &str, e: DriverError) -> Error {
    if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        return Error::OutOfMemory(format!(
            "{what}: {e}; use fewer students per cohort (--max-students) or a smaller batch"
        ));
    }
    let hint = match e.0 {
        CUresult::CUDA_ERROR_NO_DEVICE => "; no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES)",
        CUresult::CUDA_ERROR_INVALID_DEVICE => "; no such GPU ordinal",
        CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU | CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION => {
            "; the embedded kernels do not fit this GPU or driver (they need compute capability 8.0 or newer and an NVIDIA driver 580 or newer, i.e. CUDA 13.0)"
        }
        _ => "",
    };
    Error::device(format!("{what}: {e}{hint}"))
}

/// Whether the CUDA driver library can be loaded on this machine.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen libcuda; no CUDA call is made.
    unsafe { sys::is_culib_present() }
}

/// The driver's CUDA API version (e.g. 13000 for 13.0), after loading and initialising it.
pub fn driver_version() -> Result<i32> {
    if !driver_present() {
        return Err(Error::device(
            "no CUDA driver: libcuda.so could not be loaded (install the NVIDIA driver, or use --device cpu)",
        ));
    }
    cu::init().map_err(|e| driver_error("initialising the CUDA driver", e))?;
    let mut v = 0;
    // SAFETY: the driver is loaded and initialised; `v` is a valid out pointer.
    unsafe { sys::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(|e| driver_error("asking the driver version", e))?;
    Ok(v)
}

/// Names of the GPUs the driver sees (empty when there is no driver).
pub fn list_gpus() -> Result<Vec<String>> {
    driver_version()?;
    let n = cu::device::get_count().map_err(|e| driver_error("counting GPUs", e))?;
    (0..n)
        .map(|i| {
            let dev = cu::device::get(i).map_err(|e| driver_error("opening a GPU", e))?;
            cu::device::get_name(dev).map_err(|e| driver_error("reading a GPU name", e))
        })
        .collect()
}

impl RealDevice {
    pub fn open(ordinal: usize) -> Result<Self> {
        if !embedded::BUILT_WITH_NVCC {
            return Err(Error::device(HOW_TO_GET_KERNELS));
        }
        let version = driver_version()?;
        if version < NEEDED_DRIVER_API {
            return Err(Error::device(format!(
                "the NVIDIA driver supports CUDA {}.{}, but the kernels were built with CUDA 13.0: \
                 update the driver to 580 or newer (or use --device cpu)",
                version / 1000,
                (version % 1000) / 10
            )));
        }
        let count = cu::device::get_count().map_err(|e| driver_error("counting GPUs", e))?;
        if count == 0 {
            return Err(Error::device(
                "the CUDA driver is installed but sees no GPU (use --device cpu)",
            ));
        }
        if ordinal >= count as usize {
            return Err(Error::device(format!(
                "cuda:{ordinal} asked for, but only {count} GPU(s) are visible"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| driver_error(&format!("creating a context on cuda:{ordinal}"), e))?;
        // SAFETY: called before any buffer or stream of this context exists; all work then goes to
        // one stream in order, with explicit synchronisation.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| driver_error("creating a CUDA stream", e))?;
        let name = ctx
            .name()
            .map_err(|e| driver_error("reading the GPU name", e))?;
        let capability = ctx
            .compute_capability()
            .map_err(|e| driver_error("reading the compute capability", e))?;
        if capability.0 < 8 {
            return Err(Error::device(format!(
                "{name} has compute capability {}.{}; the kernels need 8.0 or newer (TF32 tensor cores)",
                capability.0, capability.1
            )));
        }
        let sm_count = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| driver_error("reading the multiprocessor count", e))?
            as u32;
        let smem_optin = ctx
            .attribute(
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .map_err(|e| driver_error("reading the opt-in shared memory per block", e))?
            as usize;
        let mut functions = HashMap::new();
        for m in embedded::MODULES {
            let module = ctx
                .load_module(Ptx::from_binary(m.fatbin.to_vec()))
                .map_err(|e| driver_error(&format!("loading the kernels of {}", m.file), e))?;
            for &k in m.kernels {
                let f = module
                    .load_function(k)
                    .map_err(|e| driver_error(&format!("finding kernel {k}"), e))?;
                functions.insert(k, f);
            }
        }
        Ok(RealDevice {
            stream,
            functions,
            name,
            ordinal,
            sm_count,
            smem_optin,
            capability,
            last_launch: Mutex::new(None),
            staging: Mutex::new(HashMap::new()),
        })
    }

    pub fn alloc_zeroed(&self, bytes: usize) -> Result<CudaSlice<u8>> {
        self.stream.alloc_zeros::<u8>(bytes.max(1)).map_err(|e| {
            driver_error(
                &format!("allocating {bytes} bytes on cuda:{}", self.ordinal),
                e,
            )
        })
    }

    pub fn addr(&self, mem: &CudaSlice<u8>) -> u64 {
        let (ptr, _sync) = mem.device_ptr(&self.stream);
        ptr
    }

    pub fn upload(&self, host: &[u8], dst: &mut CudaSlice<u8>) -> Result<()> {
        self.stream
            .memcpy_htod(host, dst)
            .map_err(|e| driver_error("copying to the GPU", e))
    }

    /// `upload` through a page-locked staging buffer of exactly `host.len()` bytes, kept for the
    /// next upload of that size: the copy is asynchronous, and writing the staging buffer again
    /// waits (on its event) only for that buffer's previous copy, never for the whole stream.
    pub fn upload_staged(&self, host: &[u8], dst: &mut CudaSlice<u8>) -> Result<()> {
        let mut staging = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        if host.is_empty() {
            return Ok(());
        }
        if !staging.contains_key(&host.len()) {
            let held: usize = staging.keys().sum();
            if held + host.len() > STAGING_MAX_BYTES {
                return self.upload(host, dst);
            }
            // SAFETY: the buffer is written in full below before any copy reads it.
            let pinned = unsafe { self.stream.context().alloc_pinned::<u8>(host.len()) }
                .map_err(|e| driver_error("allocating page-locked staging memory", e))?;
            staging.insert(host.len(), pinned);
        }
        let pinned = staging
            .get_mut(&host.len())
            .expect("a staging buffer of this size, inserted above");
        pinned
            .as_mut_slice()
            .map_err(|e| driver_error("waiting for a staging buffer", e))?
            .copy_from_slice(host);
        let mut view = dst.slice_mut(0..host.len());
        self.stream
            .memcpy_htod(&*pinned, &mut view)
            .map_err(|e| driver_error("copying to the GPU", e))
    }

    pub fn download(&self, src: &CudaSlice<u8>, host: &mut [u8]) -> Result<()> {
        let view = src.slice(0..host.len());
        self.stream
            .memcpy_dtoh(&view, host)
            .map_err(|e| driver_error(&self.after_launches("copying from the GPU"), e))?;
        self.synchronize()
    }

    /// Free and total memory of this GPU, as the driver reports them now.
    pub fn memory(&self) -> Result<crate::backend::DeviceMemory> {
        let (free, total) = self
            .stream
            .context()
            .mem_get_info()
            .map_err(|e| driver_error("asking the free GPU memory", e))?;
        Ok(crate::backend::DeviceMemory {
            free: free as u64,
            total: total as u64,
        })
    }

    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver_error(&self.after_launches("waiting for the GPU"), e))
    }

    /// `what`, plus the last kernel launched when there was one: a kernel's fault is reported by
    /// whatever waits for the GPU next, so that kernel (or one shortly before it) is the suspect.
    fn after_launches(&self, what: &str) -> String {
        match *self.last_launch.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((kernel, grid, block)) => format!(
                "{what} (last kernel launched: {kernel}, grid {grid:?} × block {block}; faults are \
                 reported late, rerun with CUDA_LAUNCH_BLOCKING=1 to pin one to its kernel)"
            ),
            None => what.to_string(),
        }
    }

    /// # Safety
    /// `params` must be the struct `kernel` takes, with addresses of live buffers of the sizes the
    /// kernel touches.
    pub unsafe fn launch<P: KernelParams>(
        &self,
        kernel: &str,
        grid: [u32; 3],
        block: u32,
        smem: u32,
        params: &P,
    ) -> Result<()> {
        let (&name, f) = self.functions.get_key_value(kernel).ok_or_else(|| {
            Error::device(format!("kernel `{kernel}` is not in the embedded modules"))
        })?;
        if smem > 0 {
            // Dynamic shared memory beyond 48 KiB needs the kernel's opt-in (a function
            // attribute, not a stream operation, so it is also allowed while capturing a graph).
            f.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
            .map_err(|e| {
                driver_error(
                    &format!("allowing {kernel} {smem} bytes of shared memory"),
                    e,
                )
            })?;
        }
        let cfg = LaunchConfig {
            grid_dim: (grid[0], grid[1], grid[2]),
            block_dim: (block, 1, 1),
            shared_mem_bytes: smem,
        };
        let mut b = self.stream.launch_builder(f);
        b.arg(params);
        *self.last_launch.lock().unwrap_or_else(|e| e.into_inner()) = Some((name, grid, block));
        // SAFETY: forwarded from the caller.
        unsafe { b.launch(cfg) }.map_err(|e| {
            let what =
                format!("launching {kernel} (grid {grid:?} × block {block}, params {params:?})");
            driver_error(&what, e)
        })?;
        Ok(())
    }
}
