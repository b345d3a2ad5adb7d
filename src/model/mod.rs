//! ConvNet students over a flat (S, P) parameter buffer: specs, parameter layout, init, forward and
//! a hand-written backward.
//!
//! Building and running S students:
//! ```no_run
//! # use ddr_fast::{backend::{Backend, Mode, cpu::CpuBackend}, model::*};
//! # fn main() -> ddr_fast::Result<()> {
//! let be = CpuBackend::new();
//! let net = ConvNet::new(ConvNetSpec::from_name("ConvNet-3", 3, 32, 10)?);
//! let (s, b) = (2, 4);
//! let mut params = vec![0f32; s * net.param_len()]; // (S, P)
//! for (i, row) in params.chunks_mut(net.param_len()).enumerate() {
//!     init_params(&net.layout, 1000 + i as u64, row);
//! }
//! let mut running = vec![0f32; s * net.buffer_len()]; // (S, R)
//! let x = vec![0f32; s * b * 3 * 32 * 32]; // (S, B, C, H, W)
//! let mut ws = net.workspace(&be, s, b, false)?;
//! net.forward(&be, &mut ws, &x, &params, &mut running, Mode::Eval)?;
//! let logits = be.download(ws.logits())?; // (S, B, K)
//! # Ok(()) }
//! ```

pub mod convnet;
pub mod init;
pub mod layers;
pub mod layout;
pub mod net;
pub mod spec;
mod zoo;

pub use convnet::{ConvNet, Workspace};
pub use init::{init_buffers, init_params, SplitMix64};
pub use layers::{Layer, LayerList, Op};
pub use layout::{BlockAt, Entry, ParamLayout};
pub use net::{Net, NetWorkspace};
pub use spec::ConvNetSpec;
