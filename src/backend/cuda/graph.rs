//! Recording a training step once and replaying it (issue 14, item 6). On a GPU the step's
//! launches are captured from the backend's own stream (cudarc's `begin_capture`/`end_capture`,
//! thread-local capture mode) into a CUDA graph, instantiated once and launched every step. Under
//! emulation the same launches are recorded as a list (kernel entry, geometry, a copy of the
//! params struct) and replayed in order — the code the GPU runs, executed the way a graph would
//! execute it, so the emulated tests cover recording and replay.
//!
//! While recording, a memory operation (alloc, upload, write, download, synchronise) is refused
//! with an error on both devices: a stream capture cannot contain a pageable copy or a host wait,
//! and a buffer allocated during capture would not be the one the graph replays. The emulator
//! enforcing this is what proves that a step's launches need no host.
//!
//! `DDR_CUDA_GRAPHS=0` (read when the backend is made) turns recording off: the trainer then runs
//! every step's launches directly, to compare (tools/gpu-check.sh does).

use std::sync::Mutex;

use cudarc::driver::sys;

use super::params::KernelParams;
use super::{emu, CudaBackend, Device};
use crate::error::{Error, Result};

/// A recorded step: an instantiated CUDA graph, or the emulated launch list.
pub struct CudaStepGraph {
    kind: GraphKind,
}

enum GraphKind {
    Real(RealGraph),
    Emu(Vec<emu::Recorded>),
}

/// cudarc's graph holds raw driver handles, so it is not `Send` by itself.
struct RealGraph(cudarc::driver::CudaGraph);

// SAFETY: the graph is launched only through `CudaBackend::replay(&self)`, which cudarc binds
// to the context first; CUDA graph execs may be launched from any thread of the context, and
// the trainer never launches one graph from two threads at once (it owns the step).
unsafe impl Send for RealGraph {}

/// What a backend is recording now.
pub(super) enum Recording {
    Emu(Vec<emu::Recorded>),
    Real,
}

/// Whether steps are recorded: on unless `DDR_CUDA_GRAPHS=0`.
pub(super) fn graphs_from_env() -> bool {
    !matches!(
        std::env::var("DDR_CUDA_GRAPHS").as_deref().map(str::trim),
        Ok("0")
    )
}

pub(super) type RecordingSlot = Mutex<Option<Recording>>;

impl CudaBackend {
    /// The same backend with step recording on or off (default: on unless `DDR_CUDA_GRAPHS=0`).
    pub fn with_graphs(mut self, on: bool) -> Self {
        self.graphs = on;
        self
    }

    /// Whether training steps are recorded and replayed.
    pub fn graphs(&self) -> bool {
        self.graphs
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Recording>> {
        self.recording.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An error when a step is being recorded: `what` cannot be part of one.
    pub(super) fn refuse_while_recording(&self, what: &str) -> Result<()> {
        if self.slot().is_some() {
            return Err(Error::device(format!(
                "{what} inside a recorded training step: a step may only launch kernels on \
                 buffers made before it (a CUDA graph cannot hold copies, waits or allocations)"
            )));
        }
        Ok(())
    }

    /// Under emulation while recording: keeps the launch for the graph instead of running it
    /// and returns true. On a GPU the stream capture itself records, so the launch goes ahead.
    pub(super) fn record_launch<P: KernelParams>(
        &self,
        kernel: &str,
        grid: [u32; 3],
        block: u32,
        params: &P,
    ) -> Result<bool> {
        match &mut *self.slot() {
            Some(Recording::Emu(list)) => {
                list.push(emu::record(kernel, grid, block, params)?);
                Ok(true)
            }
            Some(Recording::Real) | None => Ok(false),
        }
    }

    pub(super) fn begin_recording_impl(&self) -> Result<bool> {
        if !self.graphs {
            return Ok(false);
        }
        let mut slot = self.slot();
        if slot.is_some() {
            return Err(Error::device("a step is already being recorded"));
        }
        *slot = Some(match &self.dev {
            Device::Emulated => Recording::Emu(Vec::new()),
            Device::Real(d) => {
                d.stream
                    .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                    .map_err(|e| super::real::driver_error("starting a CUDA graph capture", e))?;
                Recording::Real
            }
        });
        Ok(true)
    }

    pub(super) fn end_recording_impl(&self) -> Result<CudaStepGraph> {
        let rec = self
            .slot()
            .take()
            .ok_or_else(|| Error::device("end_recording without begin_recording"))?;
        let kind = match (rec, &self.dev) {
            (Recording::Emu(list), _) => GraphKind::Emu(list),
            (Recording::Real, Device::Real(d)) => {
                let g = d
                    .stream
                    .end_capture(sys::CUgraphInstantiate_flags(0))
                    .map_err(|e| {
                        super::real::driver_error("ending the CUDA graph capture of a step", e)
                    })?
                    .ok_or_else(|| Error::device("the captured training step holds no work"))?;
                GraphKind::Real(RealGraph(g))
            }
            (Recording::Real, Device::Emulated) => {
                return Err(Error::device("a GPU capture on the emulated device"))
            }
        };
        Ok(CudaStepGraph { kind })
    }

    /// Recorded steps replayed so far by this backend.
    pub fn replays(&self) -> u64 {
        self.replays.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn replay_impl(&self, g: &CudaStepGraph) -> Result<()> {
        self.refuse_while_recording("replaying a step")?;
        self.replays
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match &g.kind {
            GraphKind::Real(r) => {
                r.0.launch()
                    .map_err(|e| super::real::driver_error("launching a recorded training step", e))
            }
            GraphKind::Emu(list) => {
                for l in list {
                    // SAFETY: the trainer keeps every buffer a recorded step names alive and
                    // unresized for as long as it keeps the graph (StepGraph lives in the feed
                    // that owns them, and the cohort's buffers outlive the feeds).
                    unsafe { l.run() };
                }
                Ok(())
            }
        }
    }
}

impl CudaStepGraph {
    /// Launches in the graph (emulated: the recorded list; GPU: not counted, None).
    pub fn launches(&self) -> Option<usize> {
        match &self.kind {
            GraphKind::Emu(l) => Some(l.len()),
            GraphKind::Real(_) => None,
        }
    }
}
