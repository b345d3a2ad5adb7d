//! ddr-fast: DD-Ranking scores (label-robust LRS, augmentation-robust ARS) for distilled datasets,
//! computed by training many small student networks in lock-step on the CPU or a CUDA GPU.
//!
//! Layout: `backend` (the compute contract and its devices), `ops` (one folder per op family),
//! `model` (ConvNet over a flat (S, P) buffer), `train` (optimizers, schedules, cohort trainer),
//! `data` (readers), `aug` (augmentations), `metrics` (plan → scores), `cli` (the command line).

pub mod aug;
pub mod backend;
pub mod cli;
pub mod data;
pub mod error;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod perf;
pub mod report;
pub mod train;

pub use error::{Error, Result};

/// The crate version, as printed by `ddr-fast info` and recorded in every result file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
